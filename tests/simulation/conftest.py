"""Shared, session-cached phantoms (small grids keep the suite fast)."""

from __future__ import annotations

import pytest

from napari_fanet.simulation import simulate_ms_subject, simulate_qsm_subject


@pytest.fixture(scope="session")
def qsm4():
    """A QSM subject at 4 mm (46 x 55 x 46)."""
    return simulate_qsm_subject(123, 4.0)


@pytest.fixture(scope="session")
def ms3():
    """An MS subject at 3 mm (61 x 73 x 61): lesions of a few voxels are still resolved."""
    return simulate_ms_subject(123, 3.0)
