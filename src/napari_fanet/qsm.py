"""QSM physics: dipole kernel, forward model, and the classical inversions TKD and CFL2.

Conventions (``shared/EVALUATION.md``):

- Arrays are torch tensors (or numpy arrays) whose **last three dimensions** are the spatial
  axes ``(D, H, W)`` = array axes 0, 1, 2; leading dimensions (batch, channel) are carried
  along. A numpy array in gives a numpy array out, a tensor in gives a tensor out (same device).
  float32 and float64 are kept; any other real dtype is computed and returned as float64.
- ``k`` comes from ``torch.fft.fftfreq(n, d=voxel_size[i])`` per axis, in cycles/mm, so
  anisotropic voxels are handled; the kernel is in the unshifted FFT layout.
- ``b0_dir`` is the main-field direction in **array axes** (normalised to a unit vector here).
- Susceptibility in ppm gives a field in ppm of B0 (:func:`field_to_hz` converts to Hz).
- Before every FFT the volume is zero padded to at least ``pad_factor`` times its size per axis
  (see :func:`padded_shape`); zeros are appended after the data, which for a circular
  convolution is equivalent to centring it, and the result is cropped back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ._qsm_utils import (
    apply_mask,
    as_tensor,
    check_b0_dir,
    check_number,
    check_voxel_size,
    fft_apply,
    restore,
)
from .qsm_kernels import dipole_kernel, gradient_kernel, padded_shape

__all__ = [
    "cfl2",
    "dipole_kernel",
    "field_to_hz",
    "forward_field",
    "gradient_kernel",
    "hz_to_field",
    "padded_shape",
    "tkd",
    "tune_parameter",
]

Array = Any  # torch.Tensor or np.ndarray


def forward_field(
    chi: Array,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    pad_factor: float = 1.5,
) -> Array:
    """Field perturbation ``real(ifftn(D * fftn(chi)))`` of a susceptibility map.

    Parameters
    ----------
    chi : torch.Tensor or np.ndarray
        Susceptibility (ppm), shape ``(..., D, H, W)``.
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2.
    b0_dir : sequence of float
        Main-field direction in array axes (normalised here).
    pad_factor : float
        Zero padding factor per axis, at least 1 (see :func:`padded_shape`).

    Returns
    -------
    torch.Tensor or np.ndarray
        Field in ppm of B0 (Lorentz-corrected: zero inside a uniformly magnetised sphere),
        same shape, type, dtype and device as ``chi``.
    """
    x, was_numpy = _spatial_input(chi, "chi", voxel_size, b0_dir)
    return _filter_by_dipole(x, was_numpy, voxel_size, b0_dir, pad_factor, None, lambda d: d)


def _spatial_input(
    data: Array, name: str, voxel_size: Sequence[float], b0_dir: Sequence[float]
) -> tuple[torch.Tensor, bool]:
    """Check the input volume and the geometry shared by every dipole-kernel operation."""
    x, was_numpy = as_tensor(data, name)
    check_voxel_size(voxel_size)
    check_b0_dir(b0_dir)
    return x, was_numpy


def _filter_by_dipole(
    x: torch.Tensor,
    was_numpy: bool,
    voxel_size: Sequence[float],
    b0_dir: Sequence[float],
    pad_factor: float,
    mask: Array | None,
    from_dipole: Callable[[torch.Tensor], torch.Tensor],
) -> Array:
    """``ifftn(F(x) * from_dipole(D))`` on the padded grid, cropped, masked, in ``x``'s type.

    ``from_dipole`` maps the dipole kernel ``D`` of the padded grid (unshifted layout, ``x``'s
    dtype and device) to the kernel actually applied.
    """

    def kernel(shape: tuple[int, ...]) -> torch.Tensor:
        d = dipole_kernel(shape, voxel_size, b0_dir, dtype=x.dtype, device=x.device)
        return from_dipole(d)

    return restore(apply_mask(fft_apply(x, kernel, pad_factor), mask), was_numpy)


def field_to_hz(field_ppm: Array, b0_tesla: float, gamma_mhz_per_t: float = 42.577) -> Array:
    """Convert a field in ppm of B0 to Hz: ``hz = ppm * gamma_bar[MHz/T] * B0[T]``.

    ``1e-6 * (gamma_bar * 1e6) * B0 = gamma_bar * B0`` Hz per ppm, e.g. 127.7 Hz/ppm at 3 T for
    protons (``gamma_bar = gamma / 2 pi = 42.577 MHz/T``). Positive values are frequencies
    above the Larmor frequency (paramagnetic sources along B0).

    Parameters
    ----------
    field_ppm : float, torch.Tensor or np.ndarray
        Field in ppm of B0.
    b0_tesla : float
        Main field strength in tesla, positive.
    gamma_mhz_per_t : float
        Reduced gyromagnetic ratio in MHz/T, positive.

    Returns
    -------
    float, torch.Tensor or np.ndarray
        Field in Hz, same type as ``field_ppm``.
    """
    return field_ppm * _hz_per_ppm(b0_tesla, gamma_mhz_per_t)


def hz_to_field(field_hz: Array, b0_tesla: float, gamma_mhz_per_t: float = 42.577) -> Array:
    """Inverse of :func:`field_to_hz`: ``ppm = hz / (gamma_bar[MHz/T] * B0[T])``.

    Parameters
    ----------
    field_hz : float, torch.Tensor or np.ndarray
        Field in Hz.
    b0_tesla : float
        Main field strength in tesla, positive.
    gamma_mhz_per_t : float
        Reduced gyromagnetic ratio in MHz/T, positive.

    Returns
    -------
    float, torch.Tensor or np.ndarray
        Field in ppm of B0, same type as ``field_hz``.
    """
    return field_hz / _hz_per_ppm(b0_tesla, gamma_mhz_per_t)


def _hz_per_ppm(b0_tesla: float, gamma_mhz_per_t: float) -> float:
    b0 = check_number(b0_tesla, "b0_tesla", positive=True)
    return b0 * check_number(gamma_mhz_per_t, "gamma_mhz_per_t", positive=True)


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
        Local field in ppm of B0, shape ``(..., D, H, W)``, used as given (zero it outside
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
        Shape ``(D, H, W)`` or the full shape; the result is multiplied by ``mask != 0``.

    Returns
    -------
    torch.Tensor or np.ndarray
        Susceptibility in ppm, same shape, type, dtype and device as ``field``.
    """
    x, was_numpy = _spatial_input(field, "field", voxel_size, b0_dir)
    t = check_number(threshold, "threshold", positive=True)

    def inverse(d: torch.Tensor) -> torch.Tensor:
        inv = torch.sign(d) / t
        big = d.abs() > t
        inv[big] = 1.0 / d[big]
        return inv

    return _filter_by_dipole(x, was_numpy, voxel_size, b0_dir, pad_factor, mask, inverse)


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
        Local field in ppm of B0, shape ``(..., D, H, W)``, used as given.
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2.
    b0_dir : sequence of float
        Main-field direction in array axes.
    lam : float
        Regularisation weight, ``lam >= 0``.
    pad_factor : float
        Zero padding factor per axis, at least 1.
    mask : torch.Tensor or np.ndarray, optional
        Shape ``(D, H, W)`` or the full shape; the result is multiplied by ``mask != 0``.

    Returns
    -------
    torch.Tensor or np.ndarray
        Susceptibility in ppm, same shape, type, dtype and device as ``field``.
    """
    x, was_numpy = _spatial_input(field, "field", voxel_size, b0_dir)
    lam_value = check_number(lam, "lam", positive=False)

    def inverse(d: torch.Tensor) -> torch.Tensor:
        denom = d**2 + lam_value * gradient_kernel(tuple(d.shape), dtype=x.dtype, device=x.device)
        inv = torch.zeros_like(d)
        ok = denom > 0
        inv[ok] = d[ok] / denom[ok]
        return inv

    return _filter_by_dipole(x, was_numpy, voxel_size, b0_dir, pad_factor, mask, inverse)


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
        Local field (ppm), shape ``(D, H, W)``.
    reference : torch.Tensor or np.ndarray
        Ground-truth susceptibility (ppm), shape ``(D, H, W)``.
    mask : torch.Tensor or np.ndarray
        Brain mask, shape ``(D, H, W)``; applied to each reconstruction and to the metric.
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
    from .metrics import nrmse  # numpy-only; imported here to keep qsm import light

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
        raise ValueError(f"field must be 3D (D, H, W) for tuning, got shape {tuple(x.shape)}")
    recon = tkd if method == "tkd" else cfl2
    key = "threshold" if method == "tkd" else "lam"
    scores: dict[float, float] = {}
    for value in values:
        chi = recon(x, voxel_size, b0_dir, pad_factor=pad_factor, mask=None, **{key: value})
        pred = restore(chi, True) * m
        scores[value] = nrmse(pred, ref, m, demean=metric == "nrmse_demeaned")
    best = min(values, key=lambda v: scores[v])
    return best, scores
