"""Input checks shared by the metric modules, the QSM helpers and the lesion baseline (private)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_fanet.io.formatting import format_numbers


def as_volume(x: Any, name: str) -> np.ndarray:
    """A finite, real, 3D ``(X, Y, Z)`` array as float64."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"{name} must be 3D (X, Y, Z), got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_mask(x: Any, name: str) -> np.ndarray:
    """A 3D binary array (bool, or numbers that are all 0 or 1) as bool."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a boolean (binary) array, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"{name} must be 3D (X, Y, Z), got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be binary (bool or only 0 and 1 values)")
        arr = arr.astype(bool)
    return arr


def check_same_shape(**arrays: np.ndarray) -> None:
    """Raise a ValueError naming every shape unless all arrays have the same shape."""
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"shapes must match, got {listed}")


def check_nonempty(mask: np.ndarray, name: str = "mask") -> None:
    """Raise a ValueError when the mask has no voxel set."""
    if not mask.any():
        raise ValueError(f"{name} is empty: metrics inside it are undefined")


def check_min_size(min_size: Any) -> int:
    """An integer ``>= 1``."""
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)):
        raise TypeError(f"min_size must be an integer, got {type(min_size).__name__}")
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1 voxel, got {min_size!r}")
    return int(min_size)


def check_voxel_size(voxel_size: Sequence[float]) -> tuple[float, float, float]:
    """Three positive finite numbers (mm) along array axes 0, 1, 2."""
    try:
        values = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"voxel_size must be 3 positive numbers (mm), got {format_numbers(voxel_size)}"
        ) from None
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"voxel_size must be 3 positive numbers (mm), got {format_numbers(voxel_size)}"
        )
    return values  # type: ignore[return-value]


def prepare_maps(pred: Any, ref: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check ``pred``, ``ref`` (3D, finite) and a non-empty ``mask`` of the same shape."""
    p, r, m = as_volume(pred, "pred"), as_volume(ref, "ref"), as_mask(mask, "mask")
    check_same_shape(pred=p, ref=r, mask=m)
    check_nonempty(m)
    return p, r, m
