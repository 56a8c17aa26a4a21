"""Classical MS lesion baseline: a tuned intensity threshold on bias-corrected FLAIR inside WM.

``shared/EVALUATION.md``: "a tuned intensity threshold on the bias-corrected FLAIR inside white
matter (synthetic lesions are easy; a network must beat this)". The pipeline is

1. :func:`correct_bias`: homomorphic bias correction of the FLAIR (a simple stand-in for N4);
2. :func:`white_matter_mask`: 3-class multi-Otsu on T1 inside the brain, brightest class,
   dilated by a ball in mm (2 mm by default, whatever the voxel size) and hole-filled so
   T1-dark lesions inside or next to the WM are not excluded;
3. :func:`flair_threshold_segment`: robust z-score of the corrected FLAIR inside that WM mask
   (median and MAD of the WM voxels), thresholded, small components removed;
4. :func:`tune_flair_threshold`: the threshold with the best mean Dice (or L-F1) over cases.

Inputs are numpy arrays ``(X, Y, Z)``; masks are boolean (or 0/1). Every length is in mm and
every function that needs one takes ``voxel_size`` (mm along array axes 0, 1, 2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu

from napari_fanet.io.checks import (
    as_mask,
    as_volume,
    check_min_size,
    check_nonempty,
    check_same_shape,
    check_voxel_size,
)
from napari_fanet.metrics.segmentation import dice, label_lesions, lesion_metrics

__all__ = [
    "DEFAULT_THRESHOLDS",
    "correct_bias",
    "ellipsoid_structure",
    "flair_threshold_segment",
    "flair_white_matter_mask",
    "flair_zscore",
    "tune_flair_threshold",
    "white_matter_mask",
]

#: Default candidate thresholds (robust z-scores) for :func:`tune_flair_threshold`.
DEFAULT_THRESHOLDS = np.arange(1.5, 6.01, 0.25)

#: Scale of the median absolute deviation that estimates a Gaussian standard deviation.
MAD_TO_STD = 1.4826


def _image_and_mask(image, brain_mask, name: str) -> tuple[np.ndarray, np.ndarray]:
    img, m = as_volume(image, name), as_mask(brain_mask, "brain_mask")
    check_same_shape(**{name: img, "brain_mask": m})
    check_nonempty(m, "brain_mask")
    return img, m


def correct_bias(
    image: np.ndarray,
    brain_mask: np.ndarray,
    *,
    sigma_mm: float = 30.0,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Homomorphic bias correction: divide by a heavily smoothed copy of the image.

    The smooth estimate is a normalised convolution inside the brain,
    ``G * (image M) / G * M`` with a Gaussian ``G`` of ``sigma_mm`` (per axis
    ``sigma_mm / voxel_size``), so the background does not darken the brain edge. The result is
    ``image / smooth`` rescaled so its mean inside the brain equals the input's, and 0 outside
    the brain. A simple stand-in for N4: it also flattens real tissue contrast on scales of
    ``sigma_mm``, so keep ``sigma_mm`` well above the size of lesions and gyri.

    Parameters
    ----------
    image : np.ndarray
        Intensity image (e.g. FLAIR), shape ``(X, Y, Z)``, positive inside the brain.
    brain_mask : np.ndarray
        Boolean brain mask, same shape, not empty.
    sigma_mm : float
        Width of the Gaussian in mm (positive).
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2.

    Returns
    -------
    np.ndarray
        Corrected image, shape ``(X, Y, Z)``, float32 for float32/small-integer input, else
        float64.
    """
    img, m = _image_and_mask(image, brain_mask, "image")
    vs = check_voxel_size(voxel_size)
    if isinstance(sigma_mm, bool) or not isinstance(sigma_mm, (int, float, np.number)):
        raise TypeError(f"sigma_mm must be a number, got {type(sigma_mm).__name__}")
    if not (np.isfinite(sigma_mm) and sigma_mm > 0):
        raise ValueError(f"sigma_mm must be a positive number (mm), got {sigma_mm!r}")
    sigma = [float(sigma_mm) / v for v in vs]
    weights = m.astype(np.float64)
    num = ndimage.gaussian_filter(img * weights, sigma, mode="constant")
    den = ndimage.gaussian_filter(weights, sigma, mode="constant")
    smooth = num[m] / den[m]
    if not (smooth > 0).all():
        raise ValueError("image must be positive inside the brain mask for bias correction")
    out = np.zeros(img.shape, dtype=np.float64)
    ratio = img[m] / smooth
    out[m] = ratio * (img[m].mean() / ratio.mean())
    return out.astype(np.result_type(np.asarray(image).dtype, np.float32), copy=False)


def _check_length_mm(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number (mm), got {type(value).__name__}")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 (mm), got {value!r}")
    return float(value)


def ellipsoid_structure(radius_mm: float, voxel_size: Sequence[float]) -> np.ndarray:
    """Ball of radius ``radius_mm`` in physical space as a voxel structuring element.

    Voxel offset ``(i, j, k)`` is in the element when
    ``(i v0)^2 + (j v1)^2 + (k v2)^2 <= radius_mm^2`` (``v`` the voxel size), so on
    anisotropic grids the element is an ellipsoid in voxels and a ball in mm. The centre is
    always in; a radius below the smallest voxel size gives the single centre voxel.

    Parameters
    ----------
    radius_mm : float
        Radius in mm (>= 0).
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2.

    Returns
    -------
    np.ndarray
        Boolean array of shape ``(2 r0 + 1, 2 r1 + 1, 2 r2 + 1)`` with
        ``r_i = floor(radius_mm / v_i)``.
    """
    r = _check_length_mm(radius_mm, "radius_mm")
    vs = check_voxel_size(voxel_size)
    # a relative tolerance keeps offsets that lie exactly on the sphere (e.g. 2 mm at 2 mm voxels)
    tol = 1e-9 * max(r, 1.0)
    half = [int(np.floor((r + tol) / v)) for v in vs]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist2 = sum((g * v) ** 2 for g, v in zip(grids, vs, strict=True))
    return np.asarray(dist2 <= (r + tol) ** 2)


def _three_class_thresholds(values: np.ndarray, name: str) -> tuple[float, float]:
    """The two multi-Otsu thresholds of ``values`` (brain intensities) into 3 classes."""
    if np.unique(values).size < 3:
        raise ValueError(f"{name} needs at least 3 distinct values inside the brain for 3 classes")
    low, high = threshold_multiotsu(values, classes=3)
    return float(low), float(high)


def white_matter_mask(
    t1: np.ndarray,
    brain_mask: np.ndarray,
    *,
    dilation_mm: float = 2.0,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    fill_holes: bool = True,
) -> np.ndarray:
    """White matter from a T1-weighted image: brightest of 3 multi-Otsu classes in the brain.

    ``skimage.filters.threshold_multiotsu(t1[brain], classes=3)`` splits CSF, GM and WM; WM
    is the brightest class on T1-weighted images. MS lesions are dark on T1 and would be cut
    out, so the class is then dilated by a ball of ``dilation_mm`` millimetres
    (:func:`ellipsoid_structure`, so the same physical margin on any grid, anisotropic ones
    included; juxtacortical and periventricular lesions at the WM border) and its enclosed
    holes are filled in 3D (lesions inside the WM; this also adds enclosed regions such as the
    ventricles, which are dark on FLAIR). The result is restricted to the brain mask.

    The dilation is in mm, not voxels: a fixed number of voxels grows the mask by more tissue
    on coarse grids (at 2 mm, two 26-connected dilations cover most of the grey matter and the
    z-score statistics then come from GM rather than WM). Along an axis whose voxel size
    exceeds ``dilation_mm`` the mask does not grow (2 mm on 3 mm voxels: no dilation at all).

    Parameters
    ----------
    t1 : np.ndarray
        T1-weighted image, shape ``(X, Y, Z)``.
    brain_mask : np.ndarray
        Boolean brain mask, same shape, not empty.
    dilation_mm : float
        Dilation radius in mm (>= 0; 0 means no dilation).
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2.
    fill_holes : bool
        Fill enclosed holes of the (dilated) WM class.

    Returns
    -------
    np.ndarray
        Boolean WM mask, shape ``(X, Y, Z)``.
    """
    img, m = _image_and_mask(t1, brain_mask, "t1")
    structure = ellipsoid_structure(_check_length_mm(dilation_mm, "dilation_mm"), voxel_size)
    wm = m & (img > _three_class_thresholds(img[m], "t1")[1])
    if structure.size > 1:
        wm = ndimage.binary_dilation(wm, structure=structure)
    if fill_holes:
        wm = ndimage.binary_fill_holes(wm)
    return wm & m


def flair_zscore(
    flair: np.ndarray,
    brain_mask: np.ndarray,
    wm_mask: np.ndarray,
    *,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    sigma_mm: float = 30.0,
    bias_correct: bool = True,
) -> np.ndarray:
    """Robust z-score of the (bias-corrected) FLAIR relative to the white matter.

    ``z = (x - median) / (1.4826 MAD)`` with median and MAD taken over the WM voxels (inside
    the brain), so the few lesion voxels barely move them.

    Parameters
    ----------
    flair : np.ndarray
        FLAIR image, shape ``(X, Y, Z)``.
    brain_mask, wm_mask : np.ndarray
        Boolean masks, same shape; ``wm_mask`` must have voxels inside the brain.
    voxel_size : sequence of float
        Voxel size in mm (for the bias correction; give :func:`white_matter_mask` the same).
    sigma_mm : float
        Width of the bias-correction Gaussian in mm.
    bias_correct : bool
        Apply :func:`correct_bias` first (default); ``False`` only for comparisons.

    Returns
    -------
    np.ndarray
        float64 z-score map, shape ``(X, Y, Z)``, 0 outside ``wm_mask & brain_mask``.
    """
    img, m = _image_and_mask(flair, brain_mask, "flair")
    wm = as_mask(wm_mask, "wm_mask")
    check_same_shape(flair=img, wm_mask=wm)
    wm = wm & m
    check_nonempty(wm, "wm_mask (inside the brain)")
    if bias_correct:
        img = correct_bias(img, m, sigma_mm=sigma_mm, voxel_size=voxel_size).astype(np.float64)
    else:
        check_voxel_size(voxel_size)
    values = img[wm]
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    if mad == 0:
        raise ValueError("FLAIR is constant on most WM voxels (MAD = 0): z-score undefined")
    z = np.zeros(img.shape)
    z[wm] = (values - median) / (MAD_TO_STD * mad)
    return z


def _threshold_z(z: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    labels, _ = label_lesions(z > threshold, min_size=min_size)
    return labels > 0


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
        raise TypeError(f"threshold must be a number (z-score), got {type(threshold).__name__}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return float(threshold)


def flair_threshold_segment(
    flair: np.ndarray,
    brain_mask: np.ndarray,
    wm_mask: np.ndarray,
    threshold: float,
    *,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    min_size: int = 3,
    sigma_mm: float = 30.0,
    bias_correct: bool = True,
) -> np.ndarray:
    """Lesions = WM voxels whose robust FLAIR z-score exceeds ``threshold``.

    See :func:`flair_zscore` for the z-score; components (26-connectivity) smaller than
    ``min_size`` voxels are removed.

    Parameters
    ----------
    flair : np.ndarray
        FLAIR image, shape ``(X, Y, Z)``.
    brain_mask, wm_mask : np.ndarray
        Boolean masks, same shape (see :func:`white_matter_mask`).
    threshold : float
        Threshold in units of the robust WM standard deviation (z-score).
    voxel_size : sequence of float
        Voxel size in mm.
    min_size : int
        Smallest lesion kept, in voxels (>= 1).
    sigma_mm : float
        Width of the bias-correction Gaussian in mm.
    bias_correct : bool
        Bias-correct the FLAIR first (default).

    Returns
    -------
    np.ndarray
        Boolean lesion mask, shape ``(X, Y, Z)``.
    """
    t = _check_threshold(threshold)
    min_size = check_min_size(min_size)
    z = flair_zscore(
        flair,
        brain_mask,
        wm_mask,
        voxel_size=voxel_size,
        sigma_mm=sigma_mm,
        bias_correct=bias_correct,
    )
    return _threshold_z(z, t, min_size)


_CASE_KEYS = ("flair", "t1", "brain_mask", "lesion_mask")


def tune_flair_threshold(
    cases: Sequence[Mapping[str, Any]],
    candidates: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    metric: str = "dice",
    min_size: int = 3,
    sigma_mm: float = 30.0,
    bias_correct: bool = True,
    wm_dilation_mm: float = 2.0,
) -> tuple[float, dict[float, float]]:
    """Pick the z-score threshold with the best mean score over validation cases.

    Each case is segmented with :func:`white_matter_mask` (from its T1, with the case's
    voxel size) and :func:`flair_threshold_segment`; the z-score map is computed once per case.

    Parameters
    ----------
    cases : sequence of dict
        Each with ``"flair"``, ``"t1"``, ``"brain_mask"``, ``"lesion_mask"`` (arrays
        ``(X, Y, Z)``) and optionally ``"voxel_size"`` (mm, default 1 mm isotropic; used for
        the WM dilation and the bias correction).
    candidates : sequence of float
        Thresholds to try (default 1.5 to 6.0 in steps of 0.25).
    metric : {"dice", "lf1"}
        Mean Dice (default) or mean lesion-wise F1 (:func:`~napari_fanet.metrics.lesion_metrics`,
        same ``min_size``) over cases.
    min_size : int
        Smallest lesion kept and counted, in voxels.
    sigma_mm : float
        Width of the bias-correction Gaussian in mm.
    bias_correct : bool
        Bias-correct the FLAIR first (default).
    wm_dilation_mm : float
        ``dilation_mm`` of :func:`white_matter_mask`.

    Returns
    -------
    best : float
        Threshold with the highest mean score (the lowest such threshold on ties).
    scores : dict
        ``{threshold: mean score}`` for every candidate.
    """
    if metric not in ("dice", "lf1"):
        raise ValueError(f"metric must be 'dice' or 'lf1', got {metric!r}")
    if isinstance(cases, Mapping) or len(cases) == 0:
        raise ValueError("cases must be a non-empty sequence of dicts")
    values = [_check_threshold(float(c)) for c in np.atleast_1d(np.asarray(candidates, float))]
    if not values:
        raise ValueError("candidates must contain at least one threshold, got none")
    min_size = check_min_size(min_size)
    _check_length_mm(wm_dilation_mm, "wm_dilation_mm")
    totals = dict.fromkeys(values, 0.0)
    for i, case in enumerate(cases):
        missing = [k for k in _CASE_KEYS if k not in case]
        if missing:
            raise ValueError(f"case {i} is missing keys {missing}; expected {list(_CASE_KEYS)}")
        vs = case.get("voxel_size", (1.0, 1.0, 1.0))
        wm = white_matter_mask(
            case["t1"], case["brain_mask"], dilation_mm=wm_dilation_mm, voxel_size=vs
        )
        z = flair_zscore(
            case["flair"],
            case["brain_mask"],
            wm,
            voxel_size=vs,
            sigma_mm=sigma_mm,
            bias_correct=bias_correct,
        )
        gt = as_mask(case["lesion_mask"], f"case {i} lesion_mask")
        check_same_shape(flair=z, lesion_mask=gt)
        for t in values:
            seg = _threshold_z(z, t, min_size)
            if metric == "dice":
                totals[t] += dice(seg, gt)
            else:
                totals[t] += float(lesion_metrics(seg, gt, min_size=min_size)["lf1"])
    scores = {t: total / len(cases) for t, total in totals.items()}
    best = max(values, key=lambda t: (scores[t], -t))
    return best, scores


def flair_white_matter_mask(
    flair: np.ndarray,
    brain_mask: np.ndarray,
    *,
    dilation_mm: float = 2.0,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """White matter from a FLAIR alone (no T1): the middle of 3 multi-Otsu classes.

    On FLAIR, CSF is darkest, white matter next, grey matter and lesions brightest, so the
    middle class of ``threshold_multiotsu(flair[brain], classes=3)`` is mostly white matter. As
    in :func:`white_matter_mask` it is dilated by a ball of ``dilation_mm`` and hole-filled, so
    lesions inside or next to the white matter stay in. Coarser than the T1 version (cortex
    partly included): the baseline for FLAIR-only input.

    Parameters
    ----------
    flair : np.ndarray
        FLAIR image, shape ``(X, Y, Z)``.
    brain_mask : np.ndarray
        Boolean brain mask, same shape, not empty.
    dilation_mm : float
        Dilation radius in mm (>= 0).
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2.

    Returns
    -------
    np.ndarray
        Boolean WM mask, shape ``(X, Y, Z)``.
    """
    img, m = _image_and_mask(flair, brain_mask, "flair")
    structure = ellipsoid_structure(_check_length_mm(dilation_mm, "dilation_mm"), voxel_size)
    low, high = _three_class_thresholds(img[m], "flair")
    wm = m & (img > low) & (img <= high)
    if structure.size > 1:
        wm = ndimage.binary_dilation(wm, structure=structure)
    return ndimage.binary_fill_holes(wm) & m
