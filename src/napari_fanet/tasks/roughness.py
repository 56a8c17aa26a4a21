"""Fine roughness of a scan, and the gentlest smoothing that brings it down to a target.

The leave-one-out ``fanet-seg`` folds weigh a bright region against the roughness of the tissue
around it: smoothing the brain around a real patient's lesions makes them call more lesion,
smoothing the lesions less (``benchmarks/results/ms-patient19/local_smoothing.md``). A FLAIR
rougher than the real scans a model trained on is under-called. :func:`fine_roughness`
measures that roughness without a tissue segmentation, and :func:`match_roughness` smooths a
scan, never roughens it, until it is no rougher than a target. A checkpoint records its target,
the median roughness of the real FLAIRs it trained on (:data:`TARGET_KEY`,
:func:`median_roughness`); ``segment`` matches the FLAIR to it with :func:`match_flair`.

Arrays are ``(X, Y, Z)``; sigmas are in mm.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_fanet.io.checks import as_mask, as_volume, check_same_shape, check_voxel_size

__all__ = [
    "FINE_SCALES",
    "MATCH_ROUGHNESS_DEFAULT",
    "MATCH_SIGMAS_MM",
    "TARGET_KEY",
    "fine_roughness",
    "match_flair",
    "match_roughness",
    "median_roughness",
    "roughness_target",
]

#: The Gaussian sigmas :func:`match_roughness` tries, gentlest first (mm).
MATCH_SIGMAS_MM = tuple(round(0.05 * i, 2) for i in range(31))
#: Voxels eroded from the brain before the spread is taken (its edge weighs little then).
EDGE_VOXELS = 3
#: The median absolute deviation of a normal distribution times this is its standard deviation.
MAD_TO_SD = 1.4826
#: ``segment`` smooths a FLAIR rougher than the real scans the model trained on
#: (:func:`match_flair`) unless told otherwise; a checkpoint without a recorded target is never
#: smoothed. The CLI's help and the widget's checkbox say the same (tests check they agree).
#: On since 2026-12-07 (``fanet-seg``'s card, "stage 18").
MATCH_ROUGHNESS_DEFAULT = True
#: The band :func:`fine_roughness` measures by default: the image (sigma 0) minus its Gaussian
#: blur of sigma 1 voxel.
FINE_SCALES = (0.0, 1.0)
#: Checkpoint ``extra`` key: the median :func:`fine_roughness` of the real FLAIRs it trained on.
TARGET_KEY = "roughness_target"


def _finite_positive(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and value > 0
    )


def _check_pair(image: np.ndarray, brain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image, brain = as_volume(image, "image"), as_mask(brain, "brain")
    check_same_shape(image=image, brain=brain)
    return image.astype(np.float32), brain


def _check_scales(scales: Sequence[float]) -> tuple[float, float]:
    values = tuple(float(v) for v in scales)
    if len(values) != 2 or not (0 <= values[0] < values[1] and math.isfinite(values[1])):
        raise ValueError(
            f"scales must be two Gaussian sigmas in voxels, 0 <= fine < coarse, got {scales!r}"
        )
    return values


def fine_roughness(
    image: np.ndarray, brain: np.ndarray, scales: Sequence[float] = FINE_SCALES
) -> float:
    """Fine roughness of ``image`` in ``brain``: the robust spread of its high pass, relative.

    The high pass is the image minus its Gaussian blur of sigma 1 voxel (``scales`` (0, 1);
    other scales give the band-pass of the blur at ``scales[0]`` minus that at ``scales[1]``);
    its spread is ``MAD_TO_SD`` times its median absolute deviation over the brain eroded by
    ``EDGE_VOXELS``; the result is that spread over the image's median in the brain.

    Parameters
    ----------
    image : np.ndarray
        ``(X, Y, Z)`` scan (a FLAIR), on a grid of about 1 mm.
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask.
    scales : pair of float
        Gaussian sigmas (voxels) of the band, ``0 <= fine < coarse``; 0 is the image itself.

    Returns
    -------
    float
        Dimensionless; the shared real FLAIRs give 0.075-0.114.

    Raises
    ------
    ValueError
        Either array is not 3D, the image is not finite, the mask not binary, the shapes
        differ, the eroded brain is empty, the brain's median is not positive, or ``scales``
        is not two sigmas with ``0 <= fine < coarse``.
    TypeError
        The image is not numeric, or the mask not boolean or numeric.
    """
    image, brain = _check_pair(image, brain)
    fine, coarse = _check_scales(scales)
    core = ndimage.binary_erosion(brain, iterations=EDGE_VOXELS)
    if not core.any():
        raise ValueError(
            f"expected a brain mask thicker than {2 * EDGE_VOXELS} voxels, got "
            f"{int(brain.sum())} brain voxels and none left after erosion"
        )
    median = float(np.median(image[brain]))
    if not median > 0:
        raise ValueError(f"expected a positive median intensity in the brain, got {median}")
    sharp = image if fine == 0 else ndimage.gaussian_filter(image, fine)
    high = (sharp - ndimage.gaussian_filter(image, coarse))[core]
    spread = MAD_TO_SD * float(np.median(np.abs(high - np.median(high))))
    return spread / median


def match_roughness(
    image: np.ndarray,
    brain: np.ndarray,
    target: float,
    voxel_size: Sequence[float],
    sigmas_mm: Sequence[float] = MATCH_SIGMAS_MM,
    scales: Sequence[float] = FINE_SCALES,
) -> tuple[np.ndarray, float, float]:
    """``image`` smoothed by the first of ``sigmas_mm`` that makes it no rougher than ``target``.

    Parameters
    ----------
    image, brain : np.ndarray
        ``(X, Y, Z)`` scan and bool brain mask.
    target : float
        The roughness to reach (:func:`fine_roughness`), positive.
    voxel_size : sequence of 3 float
        mm.
    sigmas_mm : sequence of float
        Gaussian sigmas to try in order (the last is used if none reaches the target); 0 leaves
        the image as it is.
    scales : pair of float
        The band whose roughness is matched (:func:`fine_roughness`).

    Returns
    -------
    image : np.ndarray
        ``(X, Y, Z)`` float32: smoothed inside the brain, 0 outside; ``image`` itself (as
        float32) when it is already no rougher than ``target``.
    sigma_mm : float
        The sigma used.
    roughness : float
        Its roughness afterwards.

    Raises
    ------
    ValueError
        ``target`` is not a finite positive number, ``voxel_size`` is not 3 positive numbers,
        no sigma is given or one is negative, or as :func:`fine_roughness`.
    TypeError
        As :func:`fine_roughness`.
    """
    image, brain = _check_pair(image, brain)
    _check_scales(scales)
    if not _finite_positive(target):
        raise ValueError(f"target must be a finite positive number, got {target!r}")
    vox = np.asarray(check_voxel_size(voxel_size))
    sigmas = [float(s) for s in sigmas_mm]
    if not sigmas or min(sigmas) < 0:
        raise ValueError(f"sigmas_mm must be one or more numbers >= 0, got {sigmas_mm!r}")
    for sigma in sigmas:
        if sigma == 0:
            out = image
        else:
            blurred = ndimage.gaussian_filter(image, sigma / vox)
            out = np.where(brain, blurred, 0).astype(np.float32)
        roughness = fine_roughness(out, brain, scales)
        if roughness <= target:
            break
    return out, sigma, roughness


def median_roughness(scans: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """The median :func:`fine_roughness` of ``(image, brain)`` pairs: a checkpoint's target.

    Parameters
    ----------
    scans : sequence of (np.ndarray, np.ndarray)
        ``(X, Y, Z)`` FLAIRs (each on a grid of about the model's voxel size) and their bool
        brain masks.

    Returns
    -------
    float
        The value to store as ``extra[TARGET_KEY]``.

    Raises
    ------
    ValueError
        No scan is given, or as :func:`fine_roughness`.
    """
    if not scans:
        raise ValueError("expected one or more (FLAIR, brain) pairs, got none")
    return float(np.median([fine_roughness(image, brain) for image, brain in scans]))


def roughness_target(checkpoint: dict) -> float | None:
    """The roughness target recorded in ``checkpoint`` (``extra[TARGET_KEY]``), or None.

    Raises
    ------
    ValueError
        The recorded value is not a finite positive number.
    """
    value = (checkpoint.get("extra") or {}).get(TARGET_KEY)
    if value is None:
        return None
    if not _finite_positive(value):
        raise ValueError(
            f"checkpoint extra[{TARGET_KEY!r}] must be a finite positive number, got {value!r}"
        )
    return float(value)


def match_flair(
    flair: np.ndarray, brain: np.ndarray, target: float, voxel_size: Sequence[float]
) -> tuple[np.ndarray, str]:
    """``flair`` matched to ``target`` (:func:`match_roughness`), and what was done, in words.

    A brain too thin to measure, or a FLAIR whose brain median is not positive, is left as it
    is, and the message says why: the segmentation still runs, on the FLAIR as given.

    Parameters
    ----------
    flair, brain : np.ndarray
        ``(X, Y, Z)`` FLAIR and bool brain mask on the model's grid.
    target : float
        The model's :func:`roughness_target`.
    voxel_size : sequence of 3 float
        Of that grid (mm).

    Returns
    -------
    flair : np.ndarray
        ``(X, Y, Z)`` float32.
    message : str
        For the user: the roughness, the target and the smoothing (or why there was none).
    """
    try:
        before = fine_roughness(flair, brain)
    except ValueError as error:
        return flair.astype(np.float32), f"FLAIR roughness not matched to the model's: {error}"
    if before <= target:
        return flair.astype(np.float32), (
            f"FLAIR fine roughness {before:.4f} is within the model's training scans' "
            f"{target:.4f}: not smoothed"
        )
    matched, sigma, after = match_roughness(flair, brain, target, voxel_size)
    return matched, (
        f"FLAIR fine roughness {before:.4f} is above the model's training scans' {target:.4f}: "
        f"smoothed in the brain by a Gaussian of sigma {sigma:g} mm (now {after:.4f}) before "
        "segmentation; --no-match-roughness (or the widget's 'Match roughness') turns it off"
    )
