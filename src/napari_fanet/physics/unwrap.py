"""Spatial (3D) phase unwrapping: Laplacian (FFT, padded grid) and quality-guided (scikit-image).

Both take wrapped phase in radians of shape ``(X, Y, Z)`` and return unwrapped phase in radians
of the same shape, zero outside the mask.

- :func:`laplacian_unwrap`: the discrete Laplacian of the unwrapped phase is computed from the
  *wrapped* differences between neighbouring voxels inside the mask,
  ``lap(v) = sum_axes sum_(n = v +- e_i) wrap(phi_n - phi_v) / d_i^2`` (exact wherever
  neighbours differ by less than pi; Schofield and Zhu's ``cos lap(sin) - sin lap(cos)`` is its
  small-difference approximation ``sin(phi_n - phi_v)``), then the Poisson equation is solved by
  FFT on a zero padded grid with the same discrete Laplacian kernel
  ``L(k) = sum_i (2 cos(2 pi k_i) - 2) / d_i^2`` (``k_i`` in cycles/voxel, ``L(0)`` term set to
  zero). The result is smooth and robust to noise and to isolated phase singularities, but it
  is *not* congruent to the input modulo 2 pi: it equals the true phase plus a function that is
  harmonic inside the mask (constant, linear, ...; it comes from the mask boundary). Background
  field removal (SHARP, PDF) removes harmonic fields, so that ambiguity costs nothing there.
- :func:`quality_unwrap`: scikit-image's :func:`skimage.restoration.unwrap_phase` (3D,
  reliability-sorted path following, Abdul-Rahman et al. 2007), restricted to the mask. The
  result differs from the input by whole multiples of 2 pi at every voxel; the one global 2 pi
  multiple left undetermined is chosen so that the median inside the mask lies in ``[-pi, pi)``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import numpy as np

from napari_fanet.io.checks import check_voxel_size

__all__ = ["UNWRAP_METHODS", "laplacian_unwrap", "quality_unwrap", "unwrap_phase", "wrap"]

UNWRAP_METHODS = ("laplacian", "quality")


def wrap(phase: np.ndarray) -> np.ndarray:
    """Wrap radians into ``[-pi, pi)``: ``(phase + pi) mod 2 pi - pi`` (float64)."""
    return np.mod(np.asarray(phase, dtype=np.float64) + math.pi, 2 * math.pi) - math.pi


def laplacian_unwrap(
    phase: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    mask: np.ndarray | None = None,
    pad_factor: float = 1.5,
) -> np.ndarray:
    """Laplacian (FFT-based, padded grid) unwrapping of wrapped 3D phase.

    Parameters
    ----------
    phase : np.ndarray
        Wrapped phase in radians, shape ``(X, Y, Z)``.
    voxel_size : sequence of float
        Voxel size in mm along the array axes (weights of the discrete Laplacian).
    mask : np.ndarray, optional
        Shape ``(X, Y, Z)``; only differences between two voxels inside it are used, and the
        result is zero outside it. Default: the whole volume.
    pad_factor : float
        Zero padding of the FFT grid per axis, at least 1 (see
        :func:`napari_fanet.physics.dipole.padded_shape`).

    Returns
    -------
    np.ndarray
        Unwrapped phase in radians, float64, shape ``(X, Y, Z)``, up to a function harmonic
        inside the mask (see the module docstring); its mean inside the mask is set to the
        circular mean of the input there.

    Raises
    ------
    ValueError
        If the phase is not 3D, not finite, the mask has another shape or is empty, or the
        voxel size is not 3 positive numbers.
    """
    from napari_fanet.physics.dipole import padded_shape

    phi, m = _check(phase, mask)
    vs = check_voxel_size(voxel_size)
    source = np.zeros(phi.shape, dtype=np.float64)  # discrete Laplacian of the unwrapped phase
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        lo_t, hi_t = tuple(lo), tuple(hi)
        both = m[lo_t] & m[hi_t]  # neighbour pairs inside the mask, shape (.., n-1 on axis, ..)
        diff = np.where(both, wrap(phi[hi_t] - phi[lo_t]), 0.0) / vs[axis] ** 2
        source[lo_t] += diff  # forward neighbour of the lower voxel
        source[hi_t] -= diff  # backward neighbour of the upper voxel
    pshape = padded_shape(phi.shape, pad_factor)
    kernel = np.zeros(pshape, dtype=np.float64)
    for axis, (n, d) in enumerate(zip(pshape, vs, strict=True)):
        k = np.fft.fftfreq(n)  # cycles/voxel
        view = [1, 1, 1]
        view[axis] = n
        kernel = kernel + ((2.0 * np.cos(2 * math.pi * k) - 2.0) / d**2).reshape(view)
    kernel[0, 0, 0] = 1.0  # the k = 0 component of the source is zero; keep it zero
    spectrum = np.fft.rfftn(source, s=pshape, axes=(0, 1, 2))  # zeros appended: (X', Y', Z'//2+1)
    half = kernel[:, :, : spectrum.shape[2]]
    spectrum /= half
    spectrum[0, 0, 0] = 0.0
    out = np.fft.irfftn(spectrum, s=pshape, axes=(0, 1, 2))  # (X', Y', Z')
    out = out[: phi.shape[0], : phi.shape[1], : phi.shape[2]]  # (X, Y, Z)
    circular_mean = float(np.angle(np.exp(1j * phi[m]).mean()))
    out = out - out[m].mean() + circular_mean
    return np.where(m, out, 0.0)


def quality_unwrap(phase: np.ndarray, *, mask: np.ndarray | None = None) -> np.ndarray:
    """Quality-guided 3D unwrapping with :func:`skimage.restoration.unwrap_phase`.

    Parameters
    ----------
    phase : np.ndarray
        Wrapped phase in radians, shape ``(X, Y, Z)`` (rewrapped to ``[-pi, pi)`` here).
    mask : np.ndarray, optional
        Shape ``(X, Y, Z)``; voxels outside it are ignored and set to zero in the result.

    Returns
    -------
    np.ndarray
        Unwrapped phase in radians, float64, shape ``(X, Y, Z)``; congruent to the input
        modulo 2 pi inside the mask, median inside the mask in ``[-pi, pi)``.

    Raises
    ------
    ValueError
        As :func:`laplacian_unwrap`.
    """
    from skimage.restoration import unwrap_phase as sk_unwrap

    phi, m = _check(phase, mask)
    wrapped = np.ma.masked_array(wrap(phi), mask=~m)
    # the seed of the (deterministic) start point is `rng` since scikit-image 0.22, `seed` before
    key = "rng" if "rng" in inspect.signature(sk_unwrap).parameters else "seed"
    out = np.ma.filled(sk_unwrap(wrapped, wrap_around=False, **{key: 0}), 0.0)
    out = out.astype(np.float64)
    out -= 2 * math.pi * math.floor((float(np.median(out[m])) + math.pi) / (2 * math.pi))
    return np.where(m, out, 0.0)


def unwrap_phase(
    phase: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    method: str = "laplacian",
    mask: np.ndarray | None = None,
    pad_factor: float = 1.5,
) -> np.ndarray:
    """Unwrap 3D phase (radians) with ``method`` ``"laplacian"`` or ``"quality"``.

    See :func:`laplacian_unwrap` and :func:`quality_unwrap`; ``voxel_size`` and ``pad_factor``
    are used by the Laplacian method only.

    Raises
    ------
    ValueError
        If ``method`` is not one of :data:`UNWRAP_METHODS`.
    """
    if method == "laplacian":
        return laplacian_unwrap(phase, voxel_size, mask=mask, pad_factor=pad_factor)
    if method == "quality":
        return quality_unwrap(phase, mask=mask)
    raise ValueError(f"method must be one of {UNWRAP_METHODS}, got {method!r}")


def _check(phase: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    phi = np.asarray(phase, dtype=np.float64)
    if phi.ndim != 3:
        raise ValueError(f"phase must be 3D (X, Y, Z), got shape {phi.shape}")
    if not np.all(np.isfinite(phi)):
        raise ValueError("phase contains NaN or infinite values")
    if mask is None:
        return phi, np.ones(phi.shape, dtype=bool)
    m = np.asarray(mask) != 0
    if m.shape != phi.shape:
        raise ValueError(f"mask must have the phase's shape {phi.shape}, got {m.shape}")
    if not m.any():
        raise ValueError("mask is empty: expected at least one voxel inside, nothing to unwrap")
    return phi, m
