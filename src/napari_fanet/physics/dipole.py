"""Dipole and gradient kernels of the QSM forward model, in the unshifted FFT layout.

``k`` comes from ``torch.fft.fftfreq(n, d=voxel_size[i])`` per axis (cycles/mm), so anisotropic
voxels are handled; ``b0_dir`` is given in array axes ``(0, 1, 2)`` = ``(X, Y, Z)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from napari_fanet.physics.tensor_checks import check_b0_dir, check_pad_factor, check_voxel_size

__all__ = [
    "dipole_kernel",
    "fft_apply",
    "gradient_kernel",
    "padded_shape",
]


def padded_shape(shape: Sequence[int], pad_factor: float = 1.5) -> tuple[int, int, int]:
    """FFT size per axis: ``ceil(pad_factor * n)``, rounded up to even when it grows.

    ``pad_factor=1`` means no padding (exact circular convolution on the input grid).

    Parameters
    ----------
    shape : sequence of int
        Spatial shape ``(X, Y, Z)``.
    pad_factor : float
        At least 1.

    Returns
    -------
    tuple of int
        Padded shape ``(D', H', W')`` with ``D' >= D`` etc.
    """
    pad_factor = check_pad_factor(pad_factor)
    out = []
    for n in shape:
        m = max(int(n), math.ceil(pad_factor * n - 1e-9))
        out.append(m + (m % 2) if m > n else m)
    return tuple(out)  # type: ignore[return-value]


def _frequencies(
    shape: Sequence[int], voxel_size: Sequence[float], dtype: torch.dtype, device: Any
) -> list[torch.Tensor]:
    """Broadcastable ``k`` grids (cycles/mm), shapes ``(D,1,1)``, ``(1,H,1)``, ``(1,1,W)``."""
    grids = []
    for axis, (n, d) in enumerate(zip(shape, voxel_size, strict=True)):
        k = torch.fft.fftfreq(int(n), d=float(d), dtype=dtype, device=device)
        view = [1, 1, 1]
        view[axis] = int(n)
        grids.append(k.view(view))
    return grids


def dipole_kernel(
    shape: Sequence[int],
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Unit dipole kernel ``D(k) = 1/3 - (k . b0)^2 / |k|^2`` with ``D(0) = 0``.

    ``k_i = fftfreq(n_i, d=voxel_size[i])`` (cycles/mm). On an even axis the Nyquist sample
    ``-1/(2 d)`` also stands for ``+1/(2 d)``; with an oblique ``b0`` the two give different
    values, so the kernel is made Hermitian-symmetric, ``(D(k) + D(-k)) / 2`` on the grid. This
    changes only those Nyquist planes, and is what taking the real part after the inverse FFT
    of a real input implies anyway. Everywhere else the formula is used as is.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape ``(X, Y, Z)`` of the (padded) FFT grid.
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2; ``k`` is ``fftfreq(n, d=voxel_size[i])``.
    b0_dir : sequence of float
        Main-field direction in array axes; normalised here.
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``.
    device : torch.device or str, optional
        Device of the result.

    Returns
    -------
    torch.Tensor
        Shape ``(X, Y, Z)``, unshifted FFT layout, values in ``[-2/3, 1/3]``. Computed in
        float64; values within ``8 * eps`` of zero (grid points on the magic cone, where the
        exact value is 0) are set to exactly zero before the cast to ``dtype``.
    """
    _check_shape(shape)
    _check_dtype(dtype)
    vs = check_voxel_size(voxel_size)
    b0 = check_b0_dir(b0_dir)
    kx, ky, kz = _frequencies(shape, vs, torch.float64, device)  # computed in float64
    k2 = kx**2 + ky**2 + kz**2  # (X, Y, Z)
    kb = kx * b0[0] + ky * b0[1] + kz * b0[2]  # (X, Y, Z)
    k2[0, 0, 0] = 1.0  # avoid 0/0; D(0) is set below
    kernel = 1.0 / 3.0 - kb**2 / k2
    kernel[0, 0, 0] = 0.0
    # Hermitian symmetrisation D <- (D[i] + D[-i mod n]) / 2: changes only the Nyquist planes of
    # even axes with an oblique b0, where fftfreq's -1/(2d) also stands for +1/(2d).
    mirrored = torch.roll(torch.flip(kernel, dims=(0, 1, 2)), shifts=(1, 1, 1), dims=(0, 1, 2))
    kernel = 0.5 * (kernel + mirrored)
    # Grid points on the magic cone are zero up to rounding: make them exactly zero.
    kernel[kernel.abs() <= 8 * torch.finfo(torch.float64).eps] = 0.0
    return kernel.to(dtype)


def _check_shape(shape: Sequence[int]) -> None:
    try:
        ok = len(shape) == 3 and all(
            not isinstance(n, bool) and int(n) == n and n >= 1 for n in shape
        )
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"shape must be 3 positive integers (X, Y, Z), got {shape!r}")


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")


def gradient_kernel(
    shape: Sequence[int], *, dtype: torch.dtype = torch.float64, device: Any = None
) -> torch.Tensor:
    """``|E(k)|^2 = sum_i |1 - exp(-2 pi i k_i)|^2 = sum_i 4 sin^2(pi k_i)``, k in cycles/voxel.

    The Fourier transform of forward differences between neighbouring voxels along the three
    axes (per voxel, not divided by the voxel size), as in the closed-form L2 method of
    Bilgic et al.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape ``(X, Y, Z)`` of the FFT grid.
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``.
    device : torch.device or str, optional
        Device of the result.

    Returns
    -------
    torch.Tensor
        Shape ``(X, Y, Z)``, unshifted FFT layout, zero at ``k = 0``, at most 12.
    """
    _check_shape(shape)
    _check_dtype(dtype)
    kx, ky, kz = _frequencies(shape, (1.0, 1.0, 1.0), torch.float64, device)
    e2 = 4.0 * (torch.sin(math.pi * kx) ** 2 + torch.sin(math.pi * ky) ** 2)  # (D, H, 1)
    return (e2 + 4.0 * torch.sin(math.pi * kz) ** 2).to(dtype)  # (X, Y, Z)


def fft_apply(x: torch.Tensor, kernel_fn: Any, pad_factor: float) -> torch.Tensor:
    """Zero pad the last three dims (appended), multiply the FFT by a kernel, crop back.

    ``kernel_fn(padded_shape)`` returns a real ``(D', H', W')`` kernel in the unshifted layout.
    """
    spatial = tuple(x.shape[-3:])
    pshape = padded_shape(spatial, pad_factor)
    xk = torch.fft.fftn(x, s=pshape, dim=(-3, -2, -1))  # zeros appended: (..., D', H', W')
    out = torch.fft.ifftn(xk * kernel_fn(pshape), dim=(-3, -2, -1)).real  # (..., D', H', W')
    return out[..., : spatial[0], : spatial[1], : spatial[2]].contiguous()  # (..., X, Y, Z)
