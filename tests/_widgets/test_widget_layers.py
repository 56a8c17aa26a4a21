"""Layer placement helpers of the dock widgets (no viewer needed)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari", reason="needs napari")

from napari.layers import Image

from napari_fanet._widgets._layers import coarse_placement


@pytest.mark.parametrize(
    ("rotate", "shear"), [(0.0, None), (30.0, None), (-20.0, [0.1, -0.2, 0.3])]
)
def test_coarse_placement_puts_each_cell_on_its_source_voxels(rotate, shear):
    affine = np.eye(4)
    affine[:3, 3] = (1.0, -2.0, 0.5)  # a physical-to-world shift on top
    source = Image(
        np.zeros((20, 18, 12)), scale=(1.0, 0.8, 1.5), translate=(10.0, -4.0, 3.0),
        rotate=rotate, shear=shear, affine=affine,
    )  # fmt: skip
    scale, offset = (4.0, 4.0, 4.0), (-2.5, 0.5, -4.5)
    cells = Image(np.zeros((5, 5, 4)), **coarse_placement(source, scale, offset))
    for cell in [(0, 0, 0), (1, 2, 3), (4, 4, 0)]:
        # Cell c is centred on source data coordinate offset + scale * c.
        centre = np.asarray(offset) + np.asarray(scale) * np.asarray(cell)
        np.testing.assert_allclose(
            cells.data_to_world(cell), source.data_to_world(centre), atol=1e-9
        )
