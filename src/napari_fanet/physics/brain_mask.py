"""Brain mask from GRE magnitude when none is given: Otsu, morphology, largest component, holes.

Steps on the echo-combined magnitude ``sqrt(sum_e m_e^2)`` (root-sum-of-squares over echoes):

1. light Gaussian smoothing (``smooth_voxels``, default 1 voxel) to tame noise;
2. Otsu threshold (:func:`skimage.filters.threshold_otsu`) times ``threshold_scale``;
3. binary opening with a ball of ``open_voxels`` (cuts thin bridges to scalp or vessels);
4. the largest 6-connected component;
5. binary closing with a ball of ``close_voxels`` and 3D hole filling (dark CSF, veins and
   iron-rich nuclei with low T2* signal stay inside).

After the echo fit, :func:`reliable_mask` drops the voxels whose field is much noisier than the
brain's typical voxel (the rim of background noise a smoothed threshold lets in, whose phase is
random and would leak into every background-removal kernel that reaches it).

This is a pragmatic mask for phase processing of brain-extracted or tightly cropped data; a
whole-head image with bright scalp needs a proper brain extraction tool instead.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["magnitude_mask", "reliable_mask"]


def magnitude_mask(
    magnitude: np.ndarray,
    *,
    smooth_voxels: float = 1.0,
    threshold_scale: float = 1.0,
    open_voxels: int = 1,
    close_voxels: int = 2,
) -> np.ndarray:
    """Brain mask from a magnitude image (module docstring).

    Parameters
    ----------
    magnitude : np.ndarray
        Shape ``(X, Y, Z)`` or ``(X, Y, Z, E)`` (echoes last), non-negative, any units.
    smooth_voxels : float
        Gaussian sigma in voxels before thresholding (0: none).
    threshold_scale : float
        Multiplies the Otsu threshold (below 1 keeps darker tissue), > 0.
    open_voxels, close_voxels : int
        Radii in voxels of the opening and closing balls (0: skip).

    Returns
    -------
    np.ndarray
        bool, shape ``(X, Y, Z)``.

    Raises
    ------
    ValueError
        If the magnitude is not 3D/4D, not finite, constant, or a parameter is out of range.
    """
    from skimage.filters import threshold_otsu
    from skimage.morphology import ball

    mag = np.asarray(magnitude, dtype=np.float64)
    if mag.ndim == 4:
        mag = np.sqrt((mag**2).sum(axis=-1))  # (X, Y, Z) root-sum-of-squares over echoes
    if mag.ndim != 3:
        raise ValueError(f"magnitude must be (X, Y, Z) or (X, Y, Z, E), got shape {mag.shape}")
    if not np.all(np.isfinite(mag)):
        raise ValueError("magnitude contains NaN or infinite values")
    if not smooth_voxels >= 0:
        raise ValueError(f"smooth_voxels must be >= 0, got {smooth_voxels!r}")
    if not threshold_scale > 0:
        raise ValueError(f"threshold_scale must be > 0, got {threshold_scale!r}")
    for name, value in (("open_voxels", open_voxels), ("close_voxels", close_voxels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if float(mag.max()) <= float(mag.min()):
        raise ValueError(f"magnitude is constant ({float(mag.min())!r}): no brain to find")
    smooth = ndi.gaussian_filter(mag, smooth_voxels) if smooth_voxels > 0 else mag
    mask = smooth > threshold_otsu(smooth) * threshold_scale
    if open_voxels:
        mask = ndi.binary_opening(mask, ball(open_voxels))
    labels, n = ndi.label(mask)
    if n == 0:
        raise ValueError(
            "no brain found in the magnitude: expected a bright region larger than the "
            f"opening's ball of radius {open_voxels} voxels, got none above the Otsu threshold; "
            "give a brain mask instead"
        )
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = labels == int(np.argmax(sizes))
    if close_voxels:
        pad = close_voxels + 1  # closing near the border must not clip the mask
        padded = np.pad(mask, pad)
        padded = ndi.binary_closing(padded, ball(close_voxels))
        mask = padded[pad:-pad, pad:-pad, pad:-pad]
    return ndi.binary_fill_holes(mask)


def reliable_mask(mask: np.ndarray, sigma: np.ndarray, *, factor: float = 3.0) -> np.ndarray:
    """Keep the mask's voxels whose field noise is at most ``factor`` times its median.

    Then the largest 6-connected component is kept and its holes are filled (dark veins and
    iron-rich nuclei inside the brain come back).

    Parameters
    ----------
    mask : np.ndarray
        Brain mask, shape ``(X, Y, Z)``.
    sigma : np.ndarray
        Field standard deviation (any units, e.g. Hz), shape ``(X, Y, Z)``; inf allowed.
    factor : float
        Largest ratio to the median inside the mask, > 1.

    Returns
    -------
    np.ndarray
        bool, shape ``(X, Y, Z)``, inside ``mask``.

    Raises
    ------
    ValueError
        If the shapes differ, the mask is empty or ``factor`` is not > 1.
    """
    m = np.asarray(mask) != 0
    sd = np.asarray(sigma, dtype=np.float64)
    if sd.shape != m.shape:
        raise ValueError(f"sigma must have the mask's shape {m.shape}, got {sd.shape}")
    if not m.any():
        raise ValueError("mask is empty: nothing to refine")
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    keep = m & (sd <= factor * float(np.median(sd[m])))
    labels, n = ndi.label(keep)
    if n == 0:
        return keep
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndi.binary_fill_holes(labels == int(np.argmax(sizes))) & m
