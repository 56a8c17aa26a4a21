"""Tiny on-disk datasets in the simulator's folder layout, made without the simulator."""

import pytest


@pytest.fixture(scope="session")
def ms_dataset(tmp_path_factory, write_ms_subject):
    root = tmp_path_factory.mktemp("ms")
    for i in range(3):
        write_ms_subject(root / f"sub-{i:04d}", seed=i)
    return root


@pytest.fixture(scope="session")
def qsm_dataset(tmp_path_factory, write_qsm_subject):
    root = tmp_path_factory.mktemp("qsm")
    for i in range(3):
        write_qsm_subject(root / f"sub-{i:04d}", seed=100 + i, b0_dir=(0.1, 0.0, 1.0))
    return root
