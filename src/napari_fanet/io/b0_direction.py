"""B0 directions between world (scanner, mm) axes and the array axes of a grid.

The dipole kernel (:mod:`napari_fanet.physics.dipole`) takes B0 in array axes; scanners and
``meta.json`` give it in world axes. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["array_to_world_direction", "world_to_array_direction"]


def _unit_columns(affine: Any) -> Any:
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    return linear / np.linalg.norm(linear, axis=0)


def world_to_array_direction(direction: Sequence[float], affine: Any) -> Any:
    """A world (scanner, mm) direction in the array axes of the grid ``affine``, as a unit vector.

    Only the rotation and flips of the affine matter (its columns are normalised), so the result
    is right for anisotropic voxels: it is the direction the dipole kernel expects.
    """
    out = np.linalg.solve(_unit_columns(affine), np.asarray(direction, dtype=np.float64))
    return out / np.linalg.norm(out)


def array_to_world_direction(direction: Sequence[float], affine: Any) -> Any:
    """Inverse of :func:`world_to_array_direction`."""
    out = _unit_columns(affine) @ np.asarray(direction, dtype=np.float64)
    return out / np.linalg.norm(out)
