"""Segmentation logits averaged over views of one scan, on windows that follow the brain.

The 64^3 sliding windows of :func:`~napari_fanet.engine.inference.predict_volume` fall where
the array puts them; where they fall moves a lesion's probability (padding a real patient by 16
voxels moved one patient's lesion F1 by 0.12). So :func:`brain_box` crops the prediction to the
brain, which makes a result independent of the field of view (a padded copy gives the same
mask), and :func:`averaged_logits` averages the class probabilities of the scan, its
left-right mirror image and of window grids shifted by fractions of a window step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_fanet.engine.inference import (
    WindowSettings,
    count_windows,
    predict_volume,
    window_step,
)

#: Segmentation averages the lesion probability of the scan with that of its left-right mirror
#: image unless told otherwise. The CLI and the widget say the same.
MIRROR_DEFAULT = True
#: Window grids averaged unless told otherwise (1: one grid; N: grids shifted by k/N of a step).
#: Chosen by a rule written before the measurement (the ``fanet-seg`` model card, "Windows that
#: follow the brain"): with the crop, 2 grids raised every mode's leave-one-out mean Dice and
#: kept a 1 mm whole-brain ``segment`` under 60 s on 2 cores.
WINDOW_SHIFTS_DEFAULT = 2
#: Most window grids one prediction may average (each costs one more network pass).
MAX_WINDOW_SHIFTS = 8
#: The left-right axis of a canonical (RAS) ``(1, C, X, Y, Z)`` network input.
LEFT_RIGHT_DIM = 2
#: Zero voxels kept around the brain's bounding box when cropping to it.
BRAIN_BOX_MARGIN = 4


def check_window_shifts(shifts: object) -> int:
    """``shifts`` as an int in ``[1, MAX_WINDOW_SHIFTS]``; a ValueError naming it otherwise."""
    if isinstance(shifts, bool) or not isinstance(shifts, int | np.integer):
        raise ValueError(
            f"window shifts must be a whole number from 1 to {MAX_WINDOW_SHIFTS}, got {shifts!r}"
        )
    if not 1 <= int(shifts) <= MAX_WINDOW_SHIFTS:
        raise ValueError(f"window shifts must be from 1 to {MAX_WINDOW_SHIFTS}, got {shifts}")
    return int(shifts)


def brain_box(brain: np.ndarray) -> tuple[slice, slice, slice]:
    """Slices of the bounding box of ``brain``.

    Parameters
    ----------
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask.

    Returns
    -------
    tuple of 3 slice
        ``brain[box]`` holds every brain voxel.

    Raises
    ------
    ValueError
        The mask is not 3D, or holds no voxel.
    """
    brain = np.asarray(brain)
    if brain.ndim != 3:
        raise ValueError(f"the brain mask must be 3D (X, Y, Z), got shape {brain.shape}")
    inside = np.argwhere(brain)
    if inside.size == 0:
        raise ValueError("cannot crop to the brain: the brain mask is empty")
    low, high = inside.min(axis=0), inside.max(axis=0) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def crop_to_brain(
    image: np.ndarray, brain: np.ndarray, margin: int = BRAIN_BOX_MARGIN
) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
    """``image`` on the brain's bounding box with ``margin`` zero voxels on every side.

    The margin is zero padding, never the array's own voxels, so the crop is the same wherever
    the brain lies in the field of view (outside the brain a network input is zero).

    Parameters
    ----------
    image : np.ndarray
        ``(C, X, Y, Z)`` network input.
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask.
    margin : int
        Zero voxels around the box; :func:`without_margin` takes them off a prediction.

    Returns
    -------
    crop : np.ndarray
        ``(C, x + 2 margin, y + 2 margin, z + 2 margin)`` for a box of ``(x, y, z)`` voxels.
    box : tuple of 3 slice
        :func:`brain_box` of ``brain``.
    """
    if margin < 0:
        raise ValueError(f"margin must be 0 or more voxels, got {margin}")
    box = brain_box(brain)
    crop = np.pad(image[(slice(None), *box)], ((0, 0), *((margin, margin),) * 3))
    return crop, box


def without_margin(tensor: torch.Tensor, margin: int = BRAIN_BOX_MARGIN) -> torch.Tensor:
    """``(..., X, Y, Z)`` ``tensor`` less ``margin`` voxels on every side of the last 3 axes."""
    inner = tuple(slice(margin, size - margin) for size in tensor.shape[-3:])
    return tensor[(..., *inner)]


def shift_offsets(settings: WindowSettings, shifts: int) -> list[tuple[int, int, int]]:
    """Zero voxels to pad before each axis for each of ``shifts`` window grids.

    The k-th grid (k = 0 .. shifts - 1) lies ``k / shifts`` of a window step further along
    every axis; the first is no shift.
    """
    steps = [window_step(r, settings.overlap) for r in settings.roi_size]
    return [tuple(round(k * s / shifts) for s in steps) for k in range(shifts)]


def averaged_logits(
    model: nn.Module,
    image: torch.Tensor,
    settings: WindowSettings,
    *,
    mirror: bool,
    shifts: int = WINDOW_SHIFTS_DEFAULT,
    progress: Callable[[int, int], None] | None = None,
    **window_options: Any,
) -> torch.Tensor:
    """Class logits of ``image``, optionally averaged over its mirror image and window grids.

    Parameters
    ----------
    model : torch.nn.Module
        Segmentation network (class logits).
    image : torch.Tensor
        Shape ``(1, C, X, Y, Z)``, canonical (RAS) orientation, so ``X`` runs left to right.
    settings : WindowSettings
        Tiling, device and precision.
    mirror : bool
        Also predict the image flipped along ``X`` and flip that prediction back (test-time
        augmentation; the brain is nearly symmetric).
    shifts : int
        Window grids: the image is also predicted with ``1 .. shifts - 1`` shifts of the grid
        (:func:`shift_offsets`: zero padding before each axis, cut off again). With the mirror,
        ``2 * shifts`` passes.
    progress : callable, optional
        ``progress(done, total)`` over the windows of all passes.
    **window_options
        ``should_stop`` and ``report``, given to each
        :func:`~napari_fanet.engine.inference.predict_volume` pass.

    Returns
    -------
    torch.Tensor
        Shape ``(1, K, X, Y, Z)``: the logits of the one pass, or the log of the mean class
        probabilities of all passes (whose softmax is that mean).
    """
    shifts = check_window_shifts(shifts)
    views = [
        (flip, pad)
        for pad in shift_offsets(settings, shifts)
        for flip in ((False, True) if mirror else (False,))
    ]
    spatial = image.shape[2:]
    totals = [
        count_windows(
            [s + p for s, p in zip(spatial, pad, strict=True)], settings.roi_size, settings.overlap
        )
        for _, pad in views
    ]
    done = {"before": 0}

    def all_passes(count: int, total: int) -> None:
        if progress is not None:
            progress(done["before"] + min(count, total), sum(totals))

    kwargs = {"progress": all_passes, **window_options}
    summed = None
    for (flip, pad), total in zip(views, totals, strict=True):
        view = torch.flip(image, dims=[LEFT_RIGHT_DIM]) if flip else image
        # (1, C, X + px, Y + py, Z + pz): zeros before each axis move the window grid
        view = torch.nn.functional.pad(view, (pad[2], 0, pad[1], 0, pad[0], 0))
        logits = predict_volume(model, view, settings, **kwargs)
        logits = logits[:, :, pad[0] :, pad[1] :, pad[2] :]  # (1, K, X, Y, Z)
        if flip:
            logits = torch.flip(logits, dims=[LEFT_RIGHT_DIM])
        if len(views) == 1:
            return logits
        probabilities = torch.softmax(logits, dim=1)
        summed = probabilities if summed is None else summed + probabilities
        done["before"] += total
    mean = summed / len(views)
    return torch.log(mean.clamp_min(torch.finfo(mean.dtype).tiny))
