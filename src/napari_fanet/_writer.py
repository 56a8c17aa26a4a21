"""npe2 writers: an image or labels layer as NIfTI, with its source affine when it has one.

A layer opened by this plugin (or made by its widgets) carries ``metadata["nifti"]``; its data
goes back onto the source voxel grid and is written with the source affine and header, so the
file overlays the source in any viewer. Other layers are written as displayed, with the affine
``diag(scale)`` + ``translate`` (see :func:`napari_fanet.io.layers.layer_to_nifti`). Files are
written atomically: images as float32, labels as the smallest integer type that holds them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_fanet.io.layers import layer_to_nifti
from napari_fanet.io.nifti import NIFTI_SUFFIXES, save_volume


def _nifti_path(path: str) -> str:
    """``path``, with ``.nii.gz`` appended when it has no NIfTI suffix."""
    return path if str(path).lower().endswith(NIFTI_SUFFIXES) else f"{path}.nii.gz"


def _layer_array(data: Any, meta: dict, kind: str) -> np.ndarray:
    """The layer's full-resolution array; refuses RGB images."""
    name = meta.get("name", "layer")
    if meta.get("rgb"):
        raise ValueError(
            f"{name}: expected a scalar (grayscale) 3D {kind} layer to save as NIfTI, "
            "got an RGB layer"
        )
    if meta.get("multiscale"):
        data = data[0]
    return np.asarray(data)


def _write(path: str, data: Any, meta: dict, kind: str) -> list[str]:
    name = meta.get("name", "layer")
    array = _layer_array(data, meta, kind)
    try:
        array, reference = layer_to_nifti(
            array, meta.get("metadata"), meta.get("scale"), meta.get("translate")
        )
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    if kind == "labels":
        if array.dtype.kind not in "biu":
            raise ValueError(f"{name}: expected integer labels, got {array.dtype} data")
        dtype = None  # save_volume picks uint8 / int16 / int32 / int64
    else:
        dtype = np.float32
    out = save_volume(_nifti_path(path), array, reference, dtype=dtype)
    return [str(out)]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Save an image layer as NIfTI (float32) with its source affine; return the file written.

    Parameters
    ----------
    path : str
        Destination ``.nii.gz`` or ``.nii`` (``.nii.gz`` is appended to other names).
    data : array-like
        The layer data, 3D ``(x, y, z)``.
    meta : dict
        The layer's state (``name``, ``scale``, ``translate``, ``metadata`` ...).
    """
    return _write(path, data, meta, "image")


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Save a labels layer as NIfTI (smallest integer type) with its source affine.

    Parameters
    ----------
    path : str
        Destination ``.nii.gz`` or ``.nii`` (``.nii.gz`` is appended to other names).
    data : array-like
        The layer data, 3D ``(x, y, z)`` integers.
    meta : dict
        The layer's state (``name``, ``scale``, ``translate``, ``metadata`` ...).
    """
    return _write(path, data, meta, "labels")
