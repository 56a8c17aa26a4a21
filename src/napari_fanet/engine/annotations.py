"""Annotations painted in the viewer, as the trainer reads them, and one-click lesion edits.

Two annotation modes (:data:`ANNOTATION_MODES`) turn a Labels layer into the trainer's
``lesion_mask`` (0 background, 1 lesion, :data:`~napari_fanet.tasks.losses.IGNORE_INDEX` = 255
unlabelled, see :mod:`napari_fanet.tasks.subjects`):

``"full mask"``
    A corrected mask: 0 is background, any value > 0 is lesion. Every voxel is trained on.
``"scribbles"``
    Sparse strokes: :data:`SCRIBBLE_UNPAINTED` (0) is not trained on (255), :data:`SCRIBBLE_LESION`
    (1) is lesion, :data:`SCRIBBLE_NOT_LESION` (2) is "not lesion" (0). Other values are refused.

:func:`remove_component` and :func:`keep_component` edit a mask one lesion at a time (a lesion is
a 26-connected component of voxels with one label value); :func:`mask_to_annotation` makes an
editable copy of a predicted mask. All functions return new arrays. GUI-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_fanet.tasks.losses import IGNORE_INDEX

FULL_MASK = "full mask"
SCRIBBLES = "scribbles"
ANNOTATION_MODES = (FULL_MASK, SCRIBBLES)

SCRIBBLE_UNPAINTED = 0
SCRIBBLE_LESION = 1
SCRIBBLE_NOT_LESION = 2

#: One-line description of the label values of each mode (shown as tooltips).
MODE_HELP = {
    FULL_MASK: "full mask: 0 = background, any value > 0 = lesion; every voxel is trained on",
    SCRIBBLES: (
        f"scribbles: {SCRIBBLE_LESION} = lesion, {SCRIBBLE_NOT_LESION} = not lesion, "
        f"{SCRIBBLE_UNPAINTED} = unpainted (ignored by the training loss)"
    ),
}

_CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


def _check_3d_integer(mask: np.ndarray, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(
            f"{what} must be a 3D volume, got {mask.ndim}D data of shape {mask.shape}"
        )
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)):
            raise ValueError(f"{what} contains NaN or Inf values")
        if not np.all(mask == np.round(mask)):
            raise ValueError(f"{what} must hold whole numbers (label values), got fractions")
    elif mask.dtype.kind not in "biu":
        raise ValueError(f"{what} must hold integer label values, got {mask.dtype} data")
    return mask


def annotation_to_label(annotation: np.ndarray, mode: str, *, name: str = "annotation") -> dict:
    """The trainer's ``lesion_mask`` for an annotation, with voxel counts.

    Parameters
    ----------
    annotation : numpy.ndarray
        3D integer array (a Labels layer's data).
    mode : {"full mask", "scribbles"}
        How to read the values (see the module docstring).
    name : str
        Name used in error messages (the layer's name).

    Returns
    -------
    dict
        ``label`` (uint8 array of 0, 1, 255) and the counts ``lesion``, ``background`` and
        ``ignored`` (voxels).

    Raises
    ------
    ValueError
        For an unknown mode, a non-3D or non-integer array, scribble values other than 0/1/2, a
        full mask without lesion voxels, or scribbles with nothing painted.
    """
    if mode not in ANNOTATION_MODES:
        raise ValueError(f"annotation mode must be one of {ANNOTATION_MODES}, got {mode!r}")
    data = _check_3d_integer(annotation, f"annotation {name!r}")
    if mode == FULL_MASK:
        lesion = data > 0
        if not lesion.any():
            raise ValueError(
                f"annotation {name!r} is empty: a full mask needs at least one lesion voxel "
                "(to teach 'not lesion' only, paint scribbles with label 2)"
            )
        label = lesion.astype(np.uint8)
    else:
        values = np.unique(data)
        bad = np.setdiff1d(values, [SCRIBBLE_UNPAINTED, SCRIBBLE_LESION, SCRIBBLE_NOT_LESION])
        if bad.size:
            raise ValueError(
                f"annotation {name!r} holds label values {bad[:5].tolist()}: scribbles use "
                f"{SCRIBBLE_LESION} (lesion), {SCRIBBLE_NOT_LESION} (not lesion) and "
                f"{SCRIBBLE_UNPAINTED} (unpainted)"
            )
        label = np.full(data.shape, IGNORE_INDEX, dtype=np.uint8)
        label[data == SCRIBBLE_LESION] = 1
        label[data == SCRIBBLE_NOT_LESION] = 0
        if not np.any(label != IGNORE_INDEX):
            raise ValueError(
                f"annotation {name!r} is empty: paint lesion ({SCRIBBLE_LESION}) or not-lesion "
                f"({SCRIBBLE_NOT_LESION}) scribbles first"
            )
    return {
        "label": label,
        "lesion": int(np.count_nonzero(label == 1)),
        "background": int(np.count_nonzero(label == 0)),
        "ignored": int(np.count_nonzero(label == IGNORE_INDEX)),
    }


def voxel_index(mask_shape: Sequence[int], position: Sequence[float]) -> tuple[int, int, int]:
    """The voxel containing a data coordinate (last three entries), or ValueError if outside."""
    coords = np.asarray(position, dtype=np.float64).ravel()[-3:]
    if coords.size != 3 or not np.all(np.isfinite(coords)):
        raise ValueError(f"expected a finite 3D position, got {list(position)!r}")
    index = tuple(int(i) for i in np.round(coords))
    if any(not 0 <= i < s for i, s in zip(index, mask_shape, strict=True)):
        raise ValueError(f"position {index} is outside the volume of shape {tuple(mask_shape)}")
    return index


def first_labelled_voxel(
    mask: np.ndarray, start: Sequence[float], end: Sequence[float]
) -> tuple[int, int, int] | None:
    """The first voxel with a non-zero label on the segment ``start -> end`` (data coordinates).

    Used for clicks in a 3D view, where the click is a ray through the volume. None if the
    segment crosses no labelled voxel.
    """
    mask = np.asarray(mask)
    a = np.asarray(start, dtype=np.float64)[-3:]
    b = np.asarray(end, dtype=np.float64)[-3:]
    n = max(2, int(np.ceil(np.linalg.norm(b - a) * 2)) + 1)  # half-voxel steps
    points = np.round(a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)).astype(int)
    inside = np.all((points >= 0) & (points < np.array(mask.shape)), axis=1)
    for p in points[inside]:
        if mask[tuple(p)] != 0:
            return tuple(int(i) for i in p)
    return None


def _component(mask: np.ndarray, voxel: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(same_value, component)``: voxels with the clicked value, and its 26-connected part."""
    mask = _check_3d_integer(mask, "mask")
    index = voxel_index(mask.shape, voxel)
    value = mask[index]
    if value == 0:
        raise ValueError(
            f"voxel {index} is background (label 0): click on a lesion to remove or keep it"
        )
    same = mask == value
    components, _ = ndimage.label(same, structure=_CONNECTIVITY_26)
    return same, components == components[index]


def remove_component(mask: np.ndarray, voxel: Sequence[int], *, fill: int = 0) -> np.ndarray:
    """A copy of ``mask`` without the lesion containing ``voxel``.

    The lesion is the 26-connected component of voxels holding the clicked voxel's label value;
    its voxels become ``fill``. Raises ValueError when the voxel is background or outside.
    """
    _, component = _component(mask, voxel)
    out = np.array(mask, copy=True)
    out[component] = fill
    return out


def keep_component(mask: np.ndarray, voxel: Sequence[int], *, fill: int = 0) -> np.ndarray:
    """A copy of ``mask`` where the lesion containing ``voxel`` is the only one of its label.

    Other components with the same label value become ``fill``; other label values (for example
    "not lesion" scribbles) are kept. Raises ValueError when the voxel is background or outside.
    """
    same, component = _component(mask, voxel)
    out = np.array(mask, copy=True)
    out[same & ~component] = fill
    return out


def mask_to_annotation(mask: np.ndarray, mode: str = FULL_MASK) -> np.ndarray:
    """An editable annotation (uint8) from a predicted mask or probability map.

    Non-zero voxels (or, for float data, voxels above 0.5) become lesion: label 1 in both modes
    (in scribbles mode the other voxels stay unpainted, 0). Raises ValueError for non-3D data,
    NaNs or an unknown mode.
    """
    if mode not in ANNOTATION_MODES:
        raise ValueError(f"annotation mode must be one of {ANNOTATION_MODES}, got {mode!r}")
    data = np.asarray(mask)
    if data.ndim != 3:
        raise ValueError(f"mask must be a 3D volume, got {data.ndim}D data of shape {data.shape}")
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):
            raise ValueError("mask contains NaN or Inf values")
        lesion = data > 0.5
    else:
        lesion = data != 0
    return lesion.astype(np.uint8) * SCRIBBLE_LESION
