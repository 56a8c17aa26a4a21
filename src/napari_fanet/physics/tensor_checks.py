"""Input checks and numpy <-> torch conversions shared by the dipole code (physics, baselines)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from napari_fanet.io.b0_direction import B0Direction
from napari_fanet.io.checks import check_voxel_size

__all__ = [
    "apply_mask",
    "as_tensor",
    "check_b0_dir",
    "check_number",
    "check_pad_factor",
    "check_voxel_size",
    "restore",
]

_KEPT_DTYPES = (torch.float32, torch.float64)


def as_tensor(x: Any, name: str, *, allow_bool: bool = False) -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, was_numpy)`` for a real array with at least 3 dims ``(..., X, Y, Z)``.

    float32 and float64 are kept; other real dtypes become float64 (bool is kept for masks
    when ``allow_bool``). Data arrays (not masks) must be finite.
    """
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}")
        arr = np.ascontiguousarray(x)
        if not arr.flags.writeable:  # torch.from_numpy warns on read-only memory
            arr = arr.copy()
        tensor, was_numpy = torch.from_numpy(arr), True
    elif isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be a real tensor, got dtype {x.dtype}")
        tensor, was_numpy = x, False
    else:
        raise TypeError(f"{name} must be a torch.Tensor or np.ndarray, got {type(x).__name__}")
    if tensor.ndim < 3:
        raise ValueError(
            f"{name} must have at least 3 dims (..., X, Y, Z), got shape {tuple(tensor.shape)}"
        )
    if allow_bool and tensor.dtype == torch.bool:
        return tensor, was_numpy
    if tensor.dtype not in _KEPT_DTYPES:
        tensor = tensor.to(torch.float64)
    if not allow_bool and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor, was_numpy


def restore(x: torch.Tensor, was_numpy: bool) -> Any:
    """Give back a numpy array when the input was one, else the tensor."""
    return x.detach().cpu().numpy() if was_numpy else x


def check_b0_dir(b0_dir: Sequence[float]) -> tuple[float, float, float]:
    """The unit vector of a B0 direction (validated once, by ``io.b0_direction.B0Direction``)."""
    return B0Direction(b0_dir).unit()


def check_number(value: Any, name: str, *, positive: bool) -> float:
    """A finite real number, ``> 0`` when ``positive`` else ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (value <= 0 if positive else value < 0):
        rule = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")
    return value


def check_pad_factor(pad_factor: Any) -> float:
    """A finite number ``>= 1``."""
    if isinstance(pad_factor, bool) or not isinstance(
        pad_factor, (int, float, np.floating, np.integer)
    ):
        raise TypeError(f"pad_factor must be a number, got {type(pad_factor).__name__}")
    if not (math.isfinite(pad_factor) and pad_factor >= 1):
        raise ValueError(f"pad_factor must be a finite number >= 1, got {pad_factor!r}")
    return float(pad_factor)


def apply_mask(chi: torch.Tensor, mask: Any) -> torch.Tensor:
    """Multiply by ``mask != 0``; ``mask`` has the spatial or the full shape of ``chi``."""
    if mask is None:
        return chi
    m, _ = as_tensor(mask, "mask", allow_bool=True)
    spatial = tuple(chi.shape[-3:])
    if tuple(m.shape) not in (spatial, tuple(chi.shape)):
        raise ValueError(
            f"mask must have the spatial shape {spatial} or the full shape "
            f"{tuple(chi.shape)}, got {tuple(m.shape)}"
        )
    return chi * (m.to(chi.device) != 0).to(chi.dtype)
