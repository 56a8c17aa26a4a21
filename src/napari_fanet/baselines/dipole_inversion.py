"""The classical QSM dipole inversions: TKD and CFL2, and the tuning of their parameter.

The dipole kernel is :mod:`napari_fanet.physics.dipole`; the forward model and the conventions
these follow (spatial axes last, B0 in array axes, numpy in gives numpy out, zero padded FFT
grid) are in :mod:`napari_fanet.physics.forward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from napari_fanet.physics.dipole import gradient_kernel
from napari_fanet.physics.forward import filter_by_dipole, spatial_input
from napari_fanet.physics.tensor_checks import (
    as_tensor,
    check_number,
    restore,
)

__all__ = ["cfl2", "tkd", "tune_parameter"]

Array = Any  # torch.Tensor or np.ndarray


def tkd(
    field: Array,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    threshold: float = 0.19,
    pad_factor: float = 1.5,
    mask: Array | None = None,
) -> Array:
    """Thresholded k-space division (TKD, Shmueli et al. 2009).

    ``chi = ifftn(F(field) * Dinv)`` with ``Dinv = 1/D`` where ``|D| > threshold`` and
    ``Dinv = sign(D) / threshold`` elsewhere (the kernel is truncated to ``sign(D) * t``
    before inversion, not set to zero). Where ``D == 0`` exactly (``k = 0`` and grid points on
    the magic cone) ``sign(D) = 0``, so those components are set to zero: the result has zero
    mean over the padded grid. No correction of the truncation bias is applied.

    Parameters
    ----------
    field : torch.Tensor or np.ndarray
        Local field in ppm of B0, shape ``(..., X, Y, Z)``, used as given (zero it outside
        the brain beforehand).
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2.
    b0_dir : sequence of float
        Main-field direction in array axes.
    threshold : float
        Truncation level ``t > 0``.
    pad_factor : float
        Zero padding factor per axis, at least 1.
    mask : torch.Tensor or np.ndarray, optional
        Shape ``(X, Y, Z)`` or the full shape; the result is multiplied by ``mask != 0``.

    Returns
    -------
    torch.Tensor or np.ndarray
        Susceptibility in ppm, same shape, type, dtype and device as ``field``.
    """
    x, was_numpy = spatial_input(field, "field", voxel_size, b0_dir)
    t = check_number(threshold, "threshold", positive=True)

    def inverse(d: torch.Tensor) -> torch.Tensor:
        inv = torch.sign(d) / t
        big = d.abs() > t
        inv[big] = 1.0 / d[big]
        return inv

    return filter_by_dipole(x, was_numpy, voxel_size, b0_dir, pad_factor, mask, inverse)


def cfl2(
    field: Array,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    lam: float = 1e-2,
    pad_factor: float = 1.5,
    mask: Array | None = None,
) -> Array:
    """Closed-form L2 inversion with gradient regularisation (CFL2, Bilgic et al. 2014).

    ``chi = ifftn(conj(D) F(field) / (|D|^2 + lam |E|^2))`` with ``|E|^2`` from
    :func:`gradient_kernel` (forward differences per voxel, k in cycles/voxel, so ``lam`` does
    not depend on the voxel size). The ``k = 0`` component (``0 / 0``) and any other point
    where the denominator vanishes are set to zero. ``lam = 0`` is the plain ``1/D`` inverse.

    Parameters
    ----------
    field : torch.Tensor or np.ndarray
        Local field in ppm of B0, shape ``(..., X, Y, Z)``, used as given.
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2.
    b0_dir : sequence of float
        Main-field direction in array axes.
    lam : float
        Regularisation weight, ``lam >= 0``.
    pad_factor : float
        Zero padding factor per axis, at least 1.
    mask : torch.Tensor or np.ndarray, optional
        Shape ``(X, Y, Z)`` or the full shape; the result is multiplied by ``mask != 0``.

    Returns
    -------
    torch.Tensor or np.ndarray
        Susceptibility in ppm, same shape, type, dtype and device as ``field``.
    """
    x, was_numpy = spatial_input(field, "field", voxel_size, b0_dir)
    lam_value = check_number(lam, "lam", positive=False)

    def inverse(d: torch.Tensor) -> torch.Tensor:
        denom = d**2 + lam_value * gradient_kernel(tuple(d.shape), dtype=x.dtype, device=x.device)
        inv = torch.zeros_like(d)
        ok = denom > 0
        inv[ok] = d[ok] / denom[ok]
        return inv

    return filter_by_dipole(x, was_numpy, voxel_size, b0_dir, pad_factor, mask, inverse)


def tune_parameter(
    method: str,
    field: Array,
    reference: Array,
    mask: Array,
    voxel_size: Sequence[float],
    b0_dir: Sequence[float],
    candidates: Sequence[float],
    *,
    metric: str = "nrmse",
    pad_factor: float = 1.5,
) -> tuple[float, dict[float, float]]:
    """Pick the TKD threshold or the CFL2 ``lam`` with the lowest error on a validation case.

    Parameters
    ----------
    method : {"tkd", "cfl2"}
        ``"tkd"`` tunes ``threshold``, ``"cfl2"`` tunes ``lam``.
    field : torch.Tensor or np.ndarray
        Local field (ppm), shape ``(X, Y, Z)``.
    reference : torch.Tensor or np.ndarray
        Ground-truth susceptibility (ppm), shape ``(X, Y, Z)``.
    mask : torch.Tensor or np.ndarray
        Brain mask, shape ``(X, Y, Z)``; applied to each reconstruction and to the metric.
    voxel_size, b0_dir : sequence of float
        As in :func:`tkd`.
    candidates : sequence of float
        Values to try (non-empty).
    metric : {"nrmse", "nrmse_demeaned"}
        ``"nrmse"`` (default): plain NRMSE in percent inside the mask, not demeaned, so the
        mean offset left by ``D(0) = 0`` counts as error. ``"nrmse_demeaned"``: each map's
        mean inside the mask is subtracted first (challenge 2.0 style).
    pad_factor : float
        Zero padding factor per axis.

    Returns
    -------
    best : float
        Candidate with the lowest score (the first one on ties).
    scores : dict
        ``{candidate: score}`` for every candidate.
    """
    from napari_fanet.metrics import nrmse  # numpy-only; imported here to keep qsm import light

    if method not in ("tkd", "cfl2"):
        raise ValueError(f"method must be 'tkd' or 'cfl2', got {method!r}")
    if metric not in ("nrmse", "nrmse_demeaned"):
        raise ValueError(f"metric must be 'nrmse' or 'nrmse_demeaned', got {metric!r}")
    values = [float(c) for c in np.atleast_1d(np.asarray(candidates, dtype=np.float64))]
    if not values:
        raise ValueError("candidates must contain at least one value, got an empty sequence")
    x, _ = as_tensor(field, "field")
    ref = restore(as_tensor(reference, "reference")[0], True)
    m = restore(as_tensor(mask, "mask", allow_bool=True)[0], True) != 0
    if x.ndim != 3:
        raise ValueError(f"field must be 3D (X, Y, Z) for tuning, got shape {tuple(x.shape)}")
    recon = tkd if method == "tkd" else cfl2
    key = "threshold" if method == "tkd" else "lam"
    scores: dict[float, float] = {}
    for value in values:
        chi = recon(x, voxel_size, b0_dir, pad_factor=pad_factor, mask=None, **{key: value})
        pred = restore(chi, True) * m
        scores[value] = nrmse(pred, ref, m, demean=metric == "nrmse_demeaned")
    best = min(values, key=lambda v: scores[v])
    return best, scores
