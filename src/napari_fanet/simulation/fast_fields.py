"""Fast grid helpers of the randomised MS simulator: regrid between diagonal grids, smooth noise.

The helpers in :mod:`._random` evaluate B-splines at every world point, which is exact but costs
seconds on a 1 mm grid (7 million voxels). The randomised simulator instead

- warps the 2 mm template once and carries its maps to the finer grid with
  :func:`regrid` (a diagonal affine transform, scipy's fast zoom path, then a small Gaussian so
  trilinear interpolation leaves no 2 mm facets), and
- draws smooth random fields (bias, texture, lesion irregularity) with :func:`smooth_noise`:
  white noise on a coarse grid, Gaussian-smoothed there, trilinearly upsampled.

Both work on the diagonal RAS grids of :func:`~.template.mni_grid` (array axes = world axes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi


def _diagonal(affine: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    affine = np.asarray(affine, dtype=np.float64)
    linear = affine[:3, :3]
    if affine.shape != (4, 4) or not np.allclose(linear, np.diag(np.diag(linear))):
        raise ValueError(f"{what} must be a 4x4 affine with a diagonal 3x3 part, got {affine!r}")
    return np.diag(linear).copy(), affine[:3, 3].copy()


def regrid(
    array: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: Sequence[int],
    dst_affine: np.ndarray,
    *,
    order: int = 1,
    smooth: bool = True,
) -> np.ndarray:
    """Resample ``array`` from one diagonal grid onto another covering the same world space.

    Destination voxel ``i`` takes the source value at index
    ``(dst_origin - src_origin + dst_voxel * i) / src_voxel`` (edge values beyond the source).
    When the destination is finer and ``smooth`` is true, a Gaussian of
    ``0.35 * src_voxel / dst_voxel`` destination voxels then rounds off the facets of trilinear
    interpolation (a cheap stand-in for cubic splines, 5x faster on 1 mm grids).

    Parameters
    ----------
    array : np.ndarray
        ``(X, Y, Z)`` source values.
    src_affine, dst_affine : np.ndarray
        4x4 voxel-to-world affines with diagonal linear parts.
    dst_shape : sequence of 3 int
        Destination shape.
    order : int
        Spline order (0 nearest, 1 trilinear).
    smooth : bool
        Apply the Gaussian after upsampling.

    Returns
    -------
    np.ndarray
        float32 ``dst_shape`` array.
    """
    src_vox, src_origin = _diagonal(src_affine, "src_affine")
    dst_vox, dst_origin = _diagonal(dst_affine, "dst_affine")
    out = ndi.affine_transform(
        np.asarray(array, dtype=np.float32),
        dst_vox / src_vox,
        offset=(dst_origin - src_origin) / src_vox,
        output_shape=tuple(int(n) for n in dst_shape),
        order=order,
        mode="nearest",
    )
    ratio = src_vox / dst_vox
    if smooth and order > 0 and np.any(ratio > 1.01):
        out = ndi.gaussian_filter(out, np.where(ratio > 1.01, 0.35 * ratio, 0.0), mode="nearest")
    return out.astype(np.float32, copy=False)


def smooth_noise(
    rng: np.random.Generator,
    shape: Sequence[int],
    correlation_vox: float,
    *,
    coarse_factor: int | None = None,
) -> np.ndarray:
    """A smooth random field with zero mean and unit standard deviation, shape ``shape``.

    White noise on a grid ``coarse_factor`` times coarser (default: about a quarter of the
    correlation length, at least 1) is smoothed there by a Gaussian of
    ``correlation_vox / coarse_factor`` coarse voxels and upsampled trilinearly.

    Parameters
    ----------
    rng : np.random.Generator
        Source of the noise.
    shape : sequence of 3 int
        Output shape.
    correlation_vox : float
        Gaussian width (standard deviation) in output voxels; larger is smoother (> 0).
    coarse_factor : int, optional
        Downsampling of the grid the noise is drawn on.

    Returns
    -------
    np.ndarray
        float32 array of ``shape``.
    """
    if not correlation_vox > 0:
        raise ValueError(f"correlation_vox must be positive, got {correlation_vox!r}")
    shape = tuple(int(n) for n in shape)
    factor = coarse_factor or max(1, int(correlation_vox // 4))
    coarse_shape = tuple(n // factor + 2 for n in shape)
    noise = rng.standard_normal(coarse_shape).astype(np.float32)
    noise = ndi.gaussian_filter(noise, correlation_vox / factor, mode="wrap")
    if factor > 1:
        # output voxel i sits at coarse index i / factor
        noise = ndi.affine_transform(
            noise, [1.0 / factor] * 3, output_shape=shape, order=1, mode="nearest"
        )
    else:
        noise = noise[tuple(slice(0, n) for n in shape)]
    std = float(noise.std())
    return ((noise - noise.mean()) / (std if std > 0 else 1.0)).astype(np.float32)
