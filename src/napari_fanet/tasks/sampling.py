"""Random training patches and their augmentation, reproducible from a numpy ``Generator``.

Every random choice draws from the generator it is given, so the training loop can derive one
generator per (seed, rank, step) and a resumed run sees exactly the batches of an uninterrupted
one. Augmentations use MONAI's array transforms seeded from that generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_fanet.tasks.losses import IGNORE_INDEX
from napari_fanet.tasks.subjects import SEG_MODALITIES, QSMSubject, SegSubject


def crop(
    array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float = 0
) -> np.ndarray:
    """Crop the last three axes of ``array`` at ``start`` with ``size``, padding with ``fill``.

    ``start`` may be negative or run past the end (the volume is smaller than the patch).
    """
    spatial = array.shape[-3:]
    out = np.full((*array.shape[:-3], *size), fill, dtype=array.dtype)
    src, dst = [], []
    for s0, n, dim in zip(start, size, spatial, strict=True):
        lo, hi = max(s0, 0), min(s0 + n, dim)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - s0, lo - s0 + max(hi - lo, 0)))
    out[(..., *dst)] = array[(..., *src)]
    return out


def patch_start(
    rng: np.random.Generator, shape: Sequence[int], size: Sequence[int], candidates: np.ndarray
) -> list[int]:
    """Start corner of a patch centred on a random voxel of ``candidates`` ``(n, 3)``."""
    centre = candidates[rng.integers(len(candidates))]
    return [int(c) - n // 2 for c, n in zip(centre, size, strict=True)]


def sample_seg_patch(
    subject: SegSubject, rng: np.random.Generator, size: Sequence[int], *, p_lesion: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(3, *size)`` image patch and ``(*size)`` label patch.

    With probability ``p_lesion`` the patch is centred on a lesion voxel (lesions are rare),
    otherwise on a random brain voxel.
    """
    if subject.label is None:
        raise ValueError(f"subject {subject.name} has no lesion mask to train on")
    lesion = np.argwhere(subject.label == 1)
    pool = lesion if len(lesion) and rng.random() < p_lesion else np.argwhere(subject.brain)
    start = patch_start(rng, subject.brain.shape, size, pool)
    return crop(subject.image, start, size), crop(subject.label, start, size, fill=0)


#: Probability that :func:`augment_seg` changes the lesion contrast of a patch with lesions
#: (when it is given a ``lesion_contrast`` range).
P_LESION_CONTRAST = 0.5


def scale_lesion_contrast(
    image: np.ndarray,
    label: np.ndarray,
    factors: Sequence[float],
    *,
    edge_sigma: float = 0.7,
    background_sigma: float = 3.0,
) -> np.ndarray:
    """Scale each channel's lesion contrast against the tissue around the lesions.

    In channel ``k`` every lesion voxel moves from the local background ``b`` towards (factor
    below 1) or away from (above 1) it: ``x + (f_k - 1) * s * (x - b)``, where ``s`` is the
    lesion mask softened at its edge (a Gaussian of ``edge_sigma`` voxels, 1 inside the
    lesion) and ``b`` is the mean of the non-lesion brain voxels nearby (a Gaussian of
    ``background_sigma`` voxels normalised by the same Gaussian of the tissue mask). A factor
    of 1 leaves the channel as it was; outside the brain (all channels exactly 0, as
    :func:`~.preprocessing.seg_network_image` gives them) nothing changes.

    Parameters
    ----------
    image : np.ndarray
        ``(K, *P)`` z-scored channels, 0 outside the brain.
    label : np.ndarray
        ``(*P)`` labels, 1 = lesion.
    factors : sequence of float
        One contrast factor per channel, each >= 0.
    edge_sigma, background_sigma : float
        Widths (voxels) of the lesion edge and of the background average.

    Returns
    -------
    np.ndarray
        ``(K, *P)`` float32; ``image`` itself is not changed.

    Raises
    ------
    ValueError
        If the number of factors is not the number of channels, or a factor is negative or
        not finite.
    """
    factors = np.asarray(factors, dtype=np.float64)
    if factors.shape != (image.shape[0],) or not np.all(np.isfinite(factors) & (factors >= 0)):
        raise ValueError(
            f"expected {image.shape[0]} finite contrast factors >= 0 (one per channel), "
            f"got {factors.tolist()}"
        )
    out = np.array(image, dtype=np.float32, copy=True)
    lesion = label == 1
    if not lesion.any():
        return out
    brain = np.any(image != 0, axis=0)
    soft = np.maximum(ndimage.gaussian_filter(lesion.astype(np.float32), edge_sigma), lesion)
    soft *= brain
    tissue = (brain & ~lesion).astype(np.float32)
    weight = ndimage.gaussian_filter(tissue, background_sigma)  # (*P)
    for k, factor in enumerate(factors):
        if factor == 1:
            continue
        total = ndimage.gaussian_filter(image[k] * tissue, background_sigma)
        background = np.where(weight > 1e-3, total / np.maximum(weight, 1e-3), image[k])
        out[k] += ((factor - 1) * soft * (image[k] - background)).astype(np.float32)
    return out


def augment_seg(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    *,
    p_elastic: float = 0.3,
    p_shift: float = 0.5,
    lesion_contrast: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lesion contrast, elastic deformation (MONAI ``Rand3DElastic``), an intensity shift.

    With ``lesion_contrast = (lo, hi)``, a patch with lesions has, with probability
    :data:`P_LESION_CONTRAST`, each channel's lesion contrast scaled by a factor drawn from
    ``U(lo, hi)`` per channel (:func:`scale_lesion_contrast`); without it the generator draws
    exactly what it drew before the option existed. The image channels and two label channels
    (lesion, unlabelled) are then warped together in one call with linear interpolation; the
    label is rebuilt by thresholding at 0.5. Last, a per-channel intensity shift.
    """
    from monai.transforms import Rand3DElastic, RandShiftIntensity

    if lesion_contrast is not None and (label == 1).any() and rng.random() < P_LESION_CONTRAST:
        lo, hi = lesion_contrast
        image = scale_lesion_contrast(image, label, rng.uniform(lo, hi, size=image.shape[0]))
    if rng.random() < p_elastic:
        elastic = Rand3DElastic(
            sigma_range=(4.0, 6.0),
            magnitude_range=(20.0, 60.0),
            prob=1.0,
            rotate_range=(0.15, 0.15, 0.15),
            scale_range=(0.1, 0.1, 0.1),
            padding_mode="zeros",
        )
        elastic.set_random_state(seed=int(rng.integers(2**31)))
        stacked = np.concatenate([image, (label == 1)[None], (label == IGNORE_INDEX)[None]])
        warped = np.asarray(elastic(stacked.astype(np.float32), mode="bilinear"))
        image = warped[:-2].astype(np.float32)
        label = (warped[-2] > 0.5).astype(label.dtype)
        label[warped[-1] > 0.5] = IGNORE_INDEX
    if rng.random() < p_shift:
        shift = RandShiftIntensity(offsets=0.2, prob=1.0, channel_wise=True)
        shift.set_random_state(seed=int(rng.integers(2**31)))
        image = np.asarray(shift(image), dtype=np.float32)
    return image, label


#: Input modes of :func:`drop_modalities` (channels kept, in ``SEG_MODALITIES`` names) and their
#: probabilities: FLAIR is always kept.
MODALITY_DROPOUT = {
    ("flair",): 0.3,
    ("t1", "flair"): 0.2,
    ("t2", "flair"): 0.1,
    ("t1", "t2", "flair"): 0.4,
}


def drop_modalities(
    image: np.ndarray,
    rng: np.random.Generator,
    modes: dict[tuple[str, ...], float] | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Zero the channels of a random input mode's missing modalities (modality dropout).

    A network trained so learns to segment from FLAIR alone, T1 + FLAIR, T2 + FLAIR or all
    three, with a missing modality given as an all-zero channel (what prediction does when one
    is not available; the present channels are z-scored inside the brain either way).

    Parameters
    ----------
    image : np.ndarray
        ``(3, *P)`` patch, channels in :data:`~.subjects.SEG_MODALITIES` order (T1, T2, FLAIR).
    rng : np.random.Generator
        Source of the draw.
    modes : dict, optional
        ``{kept modalities: probability}`` (default :data:`MODALITY_DROPOUT`); the
        probabilities must be non-negative and sum to 1.

    Returns
    -------
    image : np.ndarray
        ``(3, *P)`` float32 copy with the dropped channels set to 0.
    kept : tuple of str
        The modalities kept.
    """
    modes = MODALITY_DROPOUT if modes is None else modes
    probs = np.asarray(list(modes.values()), dtype=np.float64)
    if probs.size == 0 or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
        raise ValueError(
            f"modes must map input modes to probabilities >= 0 summing to 1, got {modes!r}"
        )
    unknown = sorted({m for kept in modes for m in kept} - set(SEG_MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown} in modes; expected {SEG_MODALITIES}")
    if image.shape[0] != len(SEG_MODALITIES):
        raise ValueError(
            f"image must have {len(SEG_MODALITIES)} channels {SEG_MODALITIES}, "
            f"got shape {image.shape}"
        )
    kept = list(modes)[int(rng.choice(len(probs), p=probs / probs.sum()))]
    out = np.array(image, dtype=np.float32, copy=True)
    for channel, name in enumerate(SEG_MODALITIES):
        if name not in kept:
            out[channel] = 0.0
    return out, tuple(kept)


def sample_qsm_patch(
    subject: QSMSubject, rng: np.random.Generator, size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(field, chi, mask)`` patches, each ``(*size)``, centred on a random brain voxel."""
    if subject.chi is None:
        raise ValueError(f"subject {subject.name} has no reference susceptibility (chi)")
    start = patch_start(rng, subject.mask.shape, size, np.argwhere(subject.mask))
    return (
        crop(subject.field, start, size),
        crop(subject.chi, start, size),
        crop(subject.mask.astype(np.float32), start, size),
    )


def rotate_in_plane(
    volumes: Sequence[np.ndarray], b0_dir: np.ndarray, degrees: float
) -> tuple[list[np.ndarray], np.ndarray]:
    """Rotate volumes about the slice axis (array axis 2) and the B0 vector with them.

    A point at array offset ``(x, y)`` from the centre moves to ``R (x, y)`` with
    ``R = [[cos, -sin], [sin, cos]]``; B0's first two components rotate by the same ``R``.
    """
    theta = np.deg2rad(degrees)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    out = []
    for vol in volumes:
        centre = (np.array(vol.shape[:2]) - 1) / 2
        # output voxel o samples input at R^T (o - c) + c
        matrix = np.eye(3)
        matrix[:2, :2] = rot.T
        offset = np.zeros(3)
        offset[:2] = centre - rot.T @ centre
        out.append(ndimage.affine_transform(vol, matrix, offset=offset, order=1, mode="constant"))
    b0 = np.asarray(b0_dir, dtype=np.float64).copy()
    b0[:2] = rot @ b0[:2]
    return out, b0
