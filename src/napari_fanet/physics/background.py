"""Background field removal: V-SHARP and PDF, from the total field (ppm) to the local field (ppm).

The total field inside the brain mask ``M`` is the local field (from sources inside ``M``)
plus the background field (from sources outside: air-tissue boundaries, the head's shape,
shims), which is harmonic inside ``M``. Both methods take and return ppm of B0 (Hz work the
same: both are linear), arrays of shape ``(X, Y, Z)``.

- :func:`vsharp` (Li et al. 2011, Wu et al. 2012): a harmonic function equals its spherical
  mean, so ``(delta - S_r) * f`` (``S_r`` the normalised sphere of radius ``r`` mm) removes the
  background wherever the sphere fits in the mask. Radii go from large to small; each voxel
  takes the largest radius whose sphere fits, so the mask is eroded only by the smallest radius.
  The local field is then recovered by deconvolving with the largest kernel, with a truncated
  inverse: ``1 / (1 - S_rmax(k))`` where ``|1 - S_rmax(k)| > threshold``, 0 elsewhere.
- :func:`pdf` (projection onto dipole fields, Liu et al. 2011): fit the field inside ``M`` with
  susceptibility sources outside ``M`` (on the volume's grid),
  ``min_chi_b || W M (f - D (1 - M) chi_b) ||^2``, by conjugate gradients on the normal
  equations; the local field is ``M (f - D (1 - M) chi_b)``. ``D`` is the dipole convolution of
  :mod:`napari_fanet.physics.dipole` on the zero padded grid, the same one as
  :func:`napari_fanet.physics.forward.forward_field`. No erosion; the part of the local field
  that dipoles outside ``M`` can mimic (small for brain shapes) is lost.

LBV (Laplace equation in ``M``) is :func:`napari_fanet.physics.lbv.lbv`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from napari_fanet.io.checks import check_voxel_size

__all__ = [
    "BACKGROUND_METHODS",
    "SMVHighPass",
    "default_radii",
    "pdf",
    "smv_high_pass",
    "vsharp",
]

#: Background removal methods of the phase chain (``"lbv"``: :func:`.lbv.lbv`).
BACKGROUND_METHODS = ("vsharp", "pdf", "lbv")


def default_radii(voxel_size: Sequence[float]) -> tuple[float, ...]:
    """V-SHARP radii in mm, largest first.

    12, 10, 8, 6, 5, 4, 3, 2, 1 mm, none below the largest voxel edge (a smaller sphere is a
    single voxel); that edge itself when none is left.
    """
    edge = max(float(v) for v in voxel_size)
    radii = tuple(r for r in (12.0, 10.0, 8.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0) if r >= edge)
    return radii or (edge,)


def _sphere_spectrum(
    pshape: tuple[int, int, int], voxel_size: Sequence[float], radius_mm: float
) -> np.ndarray:
    """Real spectrum (rfftn layout) of the normalised sphere of ``radius_mm`` at the origin."""
    dist2 = np.zeros(pshape)
    for axis, (n, d) in enumerate(zip(pshape, voxel_size, strict=True)):
        idx = np.fft.fftfreq(n) * n * d  # signed offset in mm, wrapped around the grid
        view = [1, 1, 1]
        view[axis] = n
        dist2 = dist2 + (idx**2).reshape(view)
    sphere = (dist2 <= radius_mm**2 + 1e-9).astype(np.float64)
    sphere /= sphere.sum()
    return np.fft.rfftn(sphere).real  # symmetric kernel: imaginary part is rounding


@dataclass(frozen=True)
class SMVHighPass:
    """The background-free part of a total field: ``(delta - S_r) * f`` per voxel.

    Attributes
    ----------
    filtered : np.ndarray
        float64 ``(X, Y, Z)``: ``f - S_r * f`` with ``r`` the largest radius whose sphere fits
        in the mask at that voxel; 0 where none fits.
    assigned : np.ndarray
        bool ``(X, Y, Z)``: where ``filtered`` is defined (the mask eroded by the smallest
        radius).
    bands : tuple of (float, np.ndarray, np.ndarray)
        Per radius that some voxel took, largest first: ``(radius_mm, high_pass, voxels)`` with
        ``high_pass = 1 - S_r(k)`` in real-FFT layout ``(X', Y', Z'//2+1)`` on the padded grid
        and ``voxels`` the bool ``(X, Y, Z)`` voxels that took it.
    largest_high_pass : np.ndarray
        ``1 - S_rmax(k)`` of the largest radius asked for (real-FFT layout).
    padded_shape : tuple of 3 int
        The zero padded FFT grid ``(X', Y', Z')``.
    """

    filtered: np.ndarray
    assigned: np.ndarray
    bands: tuple[tuple[float, np.ndarray, np.ndarray], ...]
    largest_high_pass: np.ndarray
    padded_shape: tuple[int, int, int]


def smv_high_pass(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    radii_mm: Sequence[float] | None = None,
    pad_factor: float = 1.5,
) -> SMVHighPass:
    """V-SHARP's first step: remove the background by spherical means, without deconvolving.

    A harmonic background equals its spherical mean, so ``(delta - S_r) * f`` holds only the
    local field's own high-pass part wherever the sphere of radius ``r`` fits in the mask.
    Radii go from large to small and each voxel takes the largest that fits.

    Parameters
    ----------
    field : np.ndarray
        Total field ``(X, Y, Z)`` (ppm or Hz); only values inside ``mask`` are used.
    mask : np.ndarray
        Brain mask ``(X, Y, Z)``.
    voxel_size : sequence of float
        Voxel size in mm.
    radii_mm : sequence of float, optional
        Sphere radii in mm (any order). Default :func:`default_radii`.
    pad_factor : float
        Zero padding of the FFT grid per axis, at least 1.

    Returns
    -------
    SMVHighPass

    Raises
    ------
    ValueError
        If shapes differ, the field is not finite in the mask, a radius is not positive, or
        the smallest sphere fits nowhere in the mask.
    """
    from napari_fanet.physics.dipole import padded_shape

    f, m = _check_inputs(field, mask)
    vs = check_voxel_size(voxel_size)
    radii = default_radii(vs) if radii_mm is None else tuple(float(r) for r in radii_mm)
    if not radii or not all(math.isfinite(r) and r > 0 for r in radii):
        raise ValueError(f"radii_mm must be positive numbers (mm), got {radii_mm!r}")
    radii = tuple(sorted(set(radii), reverse=True))
    shape = f.shape
    pshape = padded_shape(shape, pad_factor)
    crop = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    mask_k = _rfft(m.astype(np.float64), pshape)  # (X', Y', Z'//2+1)
    field_k = _rfft(np.where(m, f, 0.0), pshape)
    filtered = np.zeros(shape)
    assigned = np.zeros(shape, dtype=bool)
    bands = []
    largest = None
    for r in radii:
        s_k = _sphere_spectrum(pshape, vs, r)
        largest = s_k if largest is None else largest
        fits = _irfft(mask_k * s_k, pshape)[crop] > 1.0 - 1e-6  # the sphere fits inside M
        new = fits & m & ~assigned
        if new.any():
            filtered[new] = (f - _irfft(field_k * s_k, pshape)[crop])[new]  # (delta - S_r) * f
            assigned |= new
            bands.append((r, 1.0 - s_k, new))
    if not assigned.any():
        raise ValueError(
            f"no voxel of the mask holds a sphere of radius {radii[-1]:g} mm: the mask is too "
            "small or thin for V-SHARP (use smaller radii_mm or PDF)"
        )
    return SMVHighPass(filtered, assigned, tuple(bands), 1.0 - largest, pshape)


def vsharp(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    radii_mm: Sequence[float] | None = None,
    threshold: float = 0.05,
    pad_factor: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """V-SHARP background removal (module docstring).

    Parameters
    ----------
    field : np.ndarray
        Total field (ppm or Hz), shape ``(X, Y, Z)``; only values inside ``mask`` are used.
    mask : np.ndarray
        Brain mask, shape ``(X, Y, Z)``.
    voxel_size : sequence of float
        Voxel size in mm.
    radii_mm : sequence of float, optional
        Sphere radii in mm (any order; used largest first). Default :func:`default_radii`.
    threshold : float
        Truncation of the deconvolution, in ``(0, 1)``.
    pad_factor : float
        Zero padding of the FFT grid per axis, at least 1.

    Returns
    -------
    local : np.ndarray
        Local field in the units of ``field``, float64, zero outside ``eroded``.
    eroded : np.ndarray
        bool, the mask eroded by the smallest radius: where ``local`` is defined.

    Raises
    ------
    ValueError
        If shapes differ, the field is not finite, a radius is not positive, ``threshold`` is
        outside ``(0, 1)``, or the smallest sphere fits nowhere in the mask.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    f, _ = _check_inputs(field, mask)
    smv = smv_high_pass(f, mask, voxel_size, radii_mm=radii_mm, pad_factor=pad_factor)
    pshape, shape = smv.padded_shape, f.shape
    crop = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    combined, assigned = smv.filtered, smv.assigned
    high_pass = smv.largest_high_pass  # (delta - S_rmax)(k)
    keep = np.abs(high_pass) > threshold
    inverse = np.where(keep, 1.0 / np.where(keep, high_pass, 1.0), 0.0)
    local = _irfft(_rfft(combined, pshape) * inverse, pshape)[crop]
    return np.where(assigned, local, 0.0), assigned


def pdf(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    weights: np.ndarray | None = None,
    max_iter: int = 200,
    tol: float = 1e-3,
    pad_factor: float = 1.5,
    extend_fov: bool = True,
) -> np.ndarray:
    """Projection onto dipole fields (module docstring).

    Parameters
    ----------
    field : np.ndarray
        Total field in ppm of B0 (or Hz), shape ``(X, Y, Z)``; only values inside ``mask``
        are used.
    mask : np.ndarray
        Brain mask, shape ``(X, Y, Z)``.
    voxel_size : sequence of float
        Voxel size in mm.
    b0_dir : sequence of float
        Main-field direction in array axes.
    weights : np.ndarray, optional
        Non-negative reliability weights ``W`` (e.g. ``1 / sigma_hz``), shape ``(X, Y, Z)``;
        normalised to mean 1 inside the mask. Default 1.
    max_iter : int
        Conjugate-gradient iterations at most, >= 1.
    tol : float
        Stop when the normal-equation residual norm falls below ``tol`` times its start.
    pad_factor : float
        Zero padding of the FFT grid per axis, at least 1.
    extend_fov : bool
        Let background sources sit anywhere on the padded FFT grid outside the mask (default),
        not only inside the volume: a brain that nearly fills the field of view still has
        sources all around it (the padded grid is periodic, so the padding surrounds the
        volume on every side). False: sources inside the volume only (Liu et al.'s original).

    Returns
    -------
    np.ndarray
        Local field in the units of ``field``, float64, zero outside the mask.

    Raises
    ------
    ValueError
        If shapes differ, values are not finite, the weights are negative or all zero inside
        the mask, or ``max_iter``/``tol`` are out of range.
    """
    from napari_fanet.physics.dipole import dipole_kernel, padded_shape
    from napari_fanet.physics.tensor_checks import check_b0_dir

    f, m = _check_inputs(field, mask)
    vs = check_voxel_size(voxel_size)
    b0 = check_b0_dir(b0_dir)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    w = np.ones(f.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != f.shape:
        raise ValueError(f"weights must have the field's shape {f.shape}, got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w[m] > 0):
        raise ValueError("weights must be finite, non-negative and not all zero in the mask")
    w = np.where(m, w / w[m].mean(), 0.0)
    shape = f.shape
    pshape = padded_shape(shape, pad_factor)
    # numpy FFTs: on a few shared CPU cores torch's are several times slower here
    kernel = dipole_kernel(pshape, vs, b0, dtype=torch.float64).numpy()
    kernel = kernel[..., : pshape[2] // 2 + 1]  # rfftn layout: (X', Y', Z'//2+1)
    crop = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    if extend_fov:  # sources anywhere on the padded grid except the mask
        outside = np.ones(pshape)
        outside[crop] = 1.0 - m
    else:  # sources on the volume's grid only
        outside = 1.0 - m.astype(np.float64)
    w2 = w**2

    def to_data(x: np.ndarray) -> np.ndarray:  # D: sources -> field on (X, Y, Z)
        return _irfft(_rfft(x, pshape) * kernel, pshape)[crop]

    def to_sources(y: np.ndarray) -> np.ndarray:  # D^T: (X, Y, Z) -> source grid
        out = _irfft(_rfft(y, pshape) * kernel, pshape)  # (X', Y', Z')
        return out if extend_fov else out[crop]

    def normal(x: np.ndarray) -> np.ndarray:  # (1-M) D^T M W^2 M D (1-M) x
        return outside * to_sources(w2 * to_data(outside * x))

    b = outside * to_sources(w2 * np.where(m, f, 0.0))
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = float((r * r).sum())
    stop = (tol * math.sqrt(rr)) ** 2
    for _ in range(max_iter):
        if rr <= stop or rr == 0.0:
            break
        q = normal(p)
        alpha = rr / float((p * q).sum())
        x += alpha * p
        r -= alpha * q
        rr_new = float((r * r).sum())
        p = r + (rr_new / rr) * p
        rr = rr_new
    background = to_data(outside * x)
    return np.where(m, f - background, 0.0)


def _check_inputs(field: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(field, dtype=np.float64)
    if f.ndim != 3:
        raise ValueError(f"field must be 3D (X, Y, Z), got shape {f.shape}")
    m = np.asarray(mask) != 0
    if m.shape != f.shape:
        raise ValueError(f"mask must have the field's shape {f.shape}, got {m.shape}")
    if not m.any():
        raise ValueError("mask is empty: no brain to remove the background from")
    if not np.all(np.isfinite(f[m])):
        raise ValueError("field contains NaN or infinite values inside the mask")
    return f, m


def _rfft(x: np.ndarray, pshape: tuple[int, int, int]) -> np.ndarray:
    """Real FFT of ``x`` zero padded (zeros appended) to ``pshape``: ``(X', Y', Z'//2+1)``."""
    return np.fft.rfftn(x, s=pshape, axes=(0, 1, 2))


def _irfft(spectrum: np.ndarray, pshape: tuple[int, int, int]) -> np.ndarray:
    """Inverse of :func:`_rfft` on the padded grid ``pshape`` (not cropped)."""
    return np.fft.irfftn(spectrum, s=pshape, axes=(0, 1, 2))
