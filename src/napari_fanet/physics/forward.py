"""The QSM forward model: susceptibility (ppm) to field (ppm of B0), and ppm <-> Hz.

Conventions (``shared/EVALUATION.md``):

- Arrays are torch tensors (or numpy arrays) whose **last three dimensions** are the spatial
  axes ``(X, Y, Z)`` = array axes 0, 1, 2; leading dimensions (batch, channel) are carried
  along. A numpy array in gives a numpy array out, a tensor in gives a tensor out (same device).
  float32 and float64 are kept; any other real dtype is computed and returned as float64.
- ``k`` comes from ``torch.fft.fftfreq(n, d=voxel_size[i])`` per axis, in cycles/mm, so
  anisotropic voxels are handled; the kernel is in the unshifted FFT layout.
- ``b0_dir`` is the main-field direction in **array axes** (normalised to a unit vector here).
- Susceptibility in ppm gives a field in ppm of B0 (:func:`field_to_hz` converts to Hz).
- Before every FFT the volume is zero padded to at least ``pad_factor`` times its size per axis
  (see :func:`~napari_fanet.physics.dipole.padded_shape`); zeros are appended after the data,
  which for a circular convolution is equivalent to centring it, and the result is cropped back.

:func:`spatial_input` and :func:`filter_by_dipole` are shared with the classical inversions
(:mod:`napari_fanet.baselines.dipole_inversion`: TKD, CFL2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from napari_fanet.physics.dipole import dipole_kernel, fft_apply
from napari_fanet.physics.tensor_checks import (
    apply_mask,
    as_tensor,
    check_b0_dir,
    check_number,
    check_voxel_size,
    restore,
)

__all__ = ["field_to_hz", "filter_by_dipole", "forward_field", "hz_to_field", "spatial_input"]

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
        Susceptibility (ppm), shape ``(..., X, Y, Z)``.
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
    x, was_numpy = spatial_input(chi, "chi", voxel_size, b0_dir)
    return filter_by_dipole(x, was_numpy, voxel_size, b0_dir, pad_factor, None, lambda d: d)


def spatial_input(
    data: Array, name: str, voxel_size: Sequence[float], b0_dir: Sequence[float]
) -> tuple[torch.Tensor, bool]:
    """Check the input volume and the geometry shared by every dipole-kernel operation."""
    x, was_numpy = as_tensor(data, name)
    check_voxel_size(voxel_size)
    check_b0_dir(b0_dir)
    return x, was_numpy


def filter_by_dipole(
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
