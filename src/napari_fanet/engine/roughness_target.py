"""A segmentation model's roughness target, from the real FLAIR files it trained on.

``segment`` smooths a FLAIR rougher than the real scans its model trained on
(:mod:`napari_fanet.tasks.roughness`); the target is their median fine roughness, each FLAIR
measured on the model's grid as ``segment`` puts it there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_fanet.engine.predict import as_canonical, seg_model_channels
from napari_fanet.io.nifti import load_volume
from napari_fanet.models.checkpoint import copy_with_extra, read_checkpoint
from napari_fanet.tasks.roughness import TARGET_KEY, median_roughness

__all__ = ["flair_roughness_target", "with_roughness_target"]

#: Non-zero voxels inspected to tell a FLAIR from a mask (a mask has one or two values).
MASK_CHECK_VOXELS = 100_000


def flair_roughness_target(flairs: Sequence[str | os.PathLike], checkpoint: dict) -> float:
    """The median fine roughness of skull-stripped FLAIR files on ``checkpoint``'s grid.

    Parameters
    ----------
    flairs : sequence of path
        NIfTI FLAIRs, skull-stripped (their non-zero voxels are the brain).
    checkpoint : dict
        The segmentation model's checkpoint (``extra["voxel_size"]``: its grid).

    Returns
    -------
    float
        The value for ``extra["roughness_target"]``.

    Raises
    ------
    FileNotFoundError, ValueError
        A file cannot be read as a 3D volume, a FLAIR is all zeros or has at most two distinct
        non-zero values (a mask given by mistake), its brain is too thin to measure, or no
        FLAIR is given.
    """
    scans = []
    for path in flairs:
        arrays, voxel, _, _ = as_canonical({"FLAIR": load_volume(path)}, None)
        channels, brain, _, _ = seg_model_channels(arrays, voxel, checkpoint)
        levels = np.unique(arrays["FLAIR"][arrays["FLAIR"] != 0][:MASK_CHECK_VOXELS]).size
        if levels <= 2:
            raise ValueError(
                f"{path}: expected a FLAIR with graded intensities, got an image with "
                f"{levels} distinct non-zero value(s) (a mask?)"
            )
        scans.append((channels["FLAIR"], brain))
    return median_roughness(scans)


def with_roughness_target(
    source: str | os.PathLike,
    target: str | os.PathLike,
    flairs: Sequence[str | os.PathLike],
) -> float:
    """Write checkpoint ``source`` to ``target`` with the roughness target of ``flairs``.

    ``extra["roughness_target"]`` is :func:`flair_roughness_target` of ``flairs`` and
    ``extra["roughness_target_scans"]`` their file names; everything else is copied unchanged,
    atomically (``target`` may be ``source``).

    Returns
    -------
    float
        The target written.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`flair_roughness_target`, or ``source`` is not a checkpoint.
    """
    value = flair_roughness_target(flairs, read_checkpoint(source))
    names = [Path(p).as_posix() for p in flairs]
    copy_with_extra(source, target, {TARGET_KEY: value, "roughness_target_scans": names})
    return value
