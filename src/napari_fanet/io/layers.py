"""NIfTI volumes as napari layer data and back, keeping the source affine (GUI-free).

A volume is shown as its RAS+ closest-canonical array (:func:`napari_fanet.io.nifti.to_canonical`)
with axes ``(x, y, z)``, ``scale`` = voxel sizes and ``translate`` = the canonical affine's
offset; for a non-oblique affine that places every voxel at its world (mm) coordinate. A 4D
file ``(X, Y, Z, V)`` (multi-echo phase, for example) becomes ``(V, x, y, z)``: its volumes on
the first axis, which napari shows as a slider. The source affine and header travel in
``layer.metadata["nifti"]`` (:data:`NIFTI_METADATA_KEY`):

==================== =========================================================================
``affine``           (4, 4) float64 affine of the source file
``header``           copy of the source nibabel header (None for an array without one)
``path``             source file as str (None when the volume was not loaded from a file)
``orientation``      :class:`napari_fanet.io.nifti.Orientation` from :func:`to_canonical`
``canonical_affine`` (4, 4) float64 affine of the displayed (canonical) array
``oblique_degrees``  :func:`oblique_degrees` of the source affine
==================== =========================================================================

:func:`layer_to_nifti` turns a layer back into what :func:`~napari_fanet.io.nifti.save_volume`
needs: the source grid and affine when the metadata still fits the layer, else
``scale``/``translate``. :class:`LayerVolume` is a layer's array with that grid, as the engine
takes it from the widgets (prediction inputs, training export). This module imports numpy and
nibabel only: the napari adapters (``_reader``, ``_writer``, ``_sample_data``) and the widgets
build on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_fanet.io.nifti import Orientation, Volume, from_canonical, to_canonical

logger = logging.getLogger(__name__)

NIFTI_METADATA_KEY = "nifti"
#: ``layer.metadata`` key of a layer's echo times in ms (the reader fills it from a file's BIDS
#: sidecar; the FA-Net widget's phase input reads it).
ECHO_TIMES_KEY = "echo_times_ms"
#: Affines whose voxel axes are further than this from the world axes count as oblique.
OBLIQUE_TOLERANCE_DEGREES = 0.5
LAYER_TYPES = ("image", "labels")


@dataclass(frozen=True, eq=False)
class LayerVolume:
    """One layer's array and its grid, GUI-free: what the engine takes from a layer.

    Parameters
    ----------
    name : str
        Layer name (used in messages and ``export.json``).
    data : array-like
        The displayed array ``(X, Y, Z)``, or ``(E, X, Y, Z)`` for multi-echo phase.
    scale : sequence of float, optional
        ``layer.scale``: the voxel size in mm, one entry per axis of ``data``.
    translate : sequence of float, optional
        ``layer.translate`` (used with ``scale`` when there is no fitting ``"nifti"`` entry).
    metadata : mapping, optional
        ``layer.metadata``; its :data:`NIFTI_METADATA_KEY` entry holds the source affine.
    """

    name: str
    data: Any
    scale: Sequence[float] | None = None
    translate: Sequence[float] | None = None
    metadata: Mapping | None = None

    @classmethod
    def of_layer(cls, layer: Any) -> LayerVolume:
        """The volume of a napari layer; ``data`` becomes a numpy array.

        ``layer`` is anything with ``name``, ``data``, ``scale``, ``translate`` and ``metadata``
        (this module does not import napari).
        """
        return cls(
            layer.name,
            np.asarray(layer.data),
            tuple(layer.scale),
            tuple(layer.translate),
            layer.metadata,
        )

    def voxel_size(self) -> tuple[float, ...]:
        """The scale as floats; 1.0 per axis (at least 3) when the scale is unknown."""
        if self.scale is None:
            return (1.0,) * max(np.ndim(self.data), 3)
        return tuple(float(s) for s in self.scale)


def oblique_degrees(affine: np.ndarray) -> float:
    """Largest angle (degrees) between a voxel axis and its closest world axis.

    Parameters
    ----------
    affine : numpy.ndarray
        A ``(4, 4)`` (or ``(3, 3)``) voxel-to-world matrix with non-zero columns.

    Returns
    -------
    float
        0 for a grid aligned with the world axes (any permutation or flip), up to about 54.7.
    """
    rzs = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(rzs, axis=0)
    if rzs.shape != (3, 3) or not np.all(norms > 0):
        raise ValueError(
            f"expected a (4, 4) affine with non-zero voxel axes, got {np.round(rzs, 4).tolist()}"
        )
    cosines = np.max(np.abs(rzs / norms), axis=0)  # per voxel axis: its closest world axis
    return float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).max())


def oblique_warning(name: str, degrees: float) -> str:
    """The message shown when an oblique volume is displayed axis-aligned."""
    return (
        f"{name}: the voxel grid is oblique (rotated {degrees:.1f} degrees from the world "
        "axes). napari shows the volume axis-aligned (the rotation is not displayed); the true "
        "affine is kept in layer.metadata and restored when the layer is saved as NIfTI with "
        "napari-fanet."
    )


def _as_labels(data: np.ndarray, name: str) -> np.ndarray:
    """Integer data for a labels layer: bool -> uint8, integral floats -> the smallest int."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype.kind in "iu":
        return data
    if data.dtype.kind == "f" and np.all(np.isfinite(data)) and np.all(data == np.round(data)):
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        dtype = np.result_type(np.min_scalar_type(lo), np.min_scalar_type(hi))
        return data.astype(dtype)
    raise ValueError(f"{name}: expected integer values for a labels layer, got {data.dtype} data")


def volume_to_layer_data(
    volume: Volume, *, name: str, layer_type: str = "image", **kwargs: Any
) -> tuple[np.ndarray, dict, str]:
    """A napari layer data tuple that shows ``volume`` at its world position.

    Parameters
    ----------
    volume : Volume
        A 3D volume with its affine (and header, path), or a 4D one ``(X, Y, Z, V)`` (image
        layers only): its layer is ``(V, x, y, z)``, the volumes on the first (slider) axis with
        scale 1 and translate 0, each volume placed as a 3D file would be.
    name : str
        Layer name.
    layer_type : str
        ``"image"`` or ``"labels"`` (labels data is made integer: bool -> uint8, integral
        floats -> the smallest integer type).
    **kwargs
        Further layer keyword arguments (``colormap``, ``contrast_limits``, ``visible`` ...);
        a ``metadata`` dict is merged with the ``"nifti"`` entry.

    Returns
    -------
    tuple of (numpy.ndarray, dict, str)
        Canonical (RAS+) data ``(x, y, z)`` or ``(V, x, y, z)``, layer keyword arguments
        (``name``, ``scale``, ``translate``, ``metadata`` and ``kwargs``) and the layer type.
        ``metadata["nifti"]["oblique_degrees"]`` exceeds :data:`OBLIQUE_TOLERANCE_DEGREES`
        when the display is only approximate: show :func:`oblique_warning` then.
    """
    if layer_type not in LAYER_TYPES:
        raise ValueError(f"layer_type must be one of {LAYER_TYPES}, got {layer_type!r}")
    if volume.ndim == 4 and layer_type == "labels":
        raise ValueError(
            f"{name}: expected a 3D volume for a labels layer, got 4D data of shape "
            f"{volume.data.shape}"
        )
    canonical, orientation = to_canonical(volume)
    data = canonical.data
    if layer_type == "labels":
        data = _as_labels(data, name)
    # A 4D volume (X, Y, Z, V), such as multi-echo phase, shows its volumes on a slider
    # (the first axis), so each volume is an (x, y, z) grid placed like a 3D file.
    leading = ()
    if volume.ndim == 4:
        data = np.ascontiguousarray(np.moveaxis(data, -1, 0))  # (V, x, y, z)
        leading = (0,)
    nifti = {
        "affine": volume.affine.copy(),
        "header": None if volume.header is None else volume.header.copy(),
        "path": None if volume.path is None else str(volume.path),
        "orientation": orientation,
        "canonical_affine": canonical.affine.copy(),
        "oblique_degrees": oblique_degrees(volume.affine),
    }
    metadata = {**dict(kwargs.pop("metadata", None) or {}), NIFTI_METADATA_KEY: nifti}
    layer_kwargs = {
        "name": name,
        "scale": tuple(float(s) for s in (*[1] * len(leading), *canonical.voxel_size)),
        "translate": tuple(float(t) for t in (*leading, *canonical.affine[:3, 3])),
        **kwargs,
        "metadata": metadata,
    }
    return data, layer_kwargs, layer_type


def _fitting_nifti(metadata: Mapping | None, shape: tuple[int, ...]) -> dict | None:
    """The ``"nifti"`` entry of ``metadata`` if it is complete and its grid is ``shape[-3:]``."""
    nifti = (metadata or {}).get(NIFTI_METADATA_KEY)
    if not isinstance(nifti, Mapping):
        return None
    orientation, affine = nifti.get("orientation"), nifti.get("affine")
    if not isinstance(orientation, Orientation) or np.shape(affine) != (4, 4):
        return None
    return dict(nifti) if orientation.canonical_shape == shape[-3:] else None


def _check_3d_or_4d(data: np.ndarray) -> np.ndarray:
    """``data`` as ``(x, y, z)`` or ``(V, x, y, z)`` (leading size-1 axis dropped); else raise."""
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.ndim not in (3, 4):
        raise ValueError(
            f"expected 3D layer data (x, y, z), or 4D (volumes, x, y, z), to save as NIfTI, got "
            f"{data.ndim}D data of shape {data.shape}"
        )
    return data


def _last3(values: Sequence[float] | None, default: float, what: str) -> np.ndarray:
    if values is None:
        return np.full(3, default)
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < 3:
        raise ValueError(f"expected a {what} of 3 values (x, y, z), got {values.tolist()}")
    return values[-3:]


def layer_to_nifti(
    data: np.ndarray,
    metadata: Mapping | None,
    scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
) -> tuple[np.ndarray, Volume | np.ndarray]:
    """What to write for a layer: ``(array, reference)`` for :func:`~.nifti.save_volume`.

    When ``metadata["nifti"]`` fits the layer (its canonical shape is the data's shape), the data
    goes back onto the source grid and the reference carries the source affine and header, so
    the file overlays the source. Otherwise (an array from another reader, a cropped layer) the
    data is written as displayed with the affine ``diag(scale)`` + ``translate``.

    Parameters
    ----------
    data : array-like
        Layer data ``(x, y, z)``, ``(1, x, y, z)``, or ``(V, x, y, z)`` (volumes first, as
        :func:`volume_to_layer_data` shows a 4D file).
    metadata : mapping or None
        ``layer.metadata``.
    scale, translate : sequence of float, optional
        The layer's scale and translate (last three entries used; default 1 and 0).

    Returns
    -------
    tuple of (numpy.ndarray, Volume or numpy.ndarray)
        The array, ``(X, Y, Z)`` or ``(X, Y, Z, V)``, and the reference (a Volume, or a
        ``(4, 4)`` affine) for ``save_volume``.
    """
    data = _check_3d_or_4d(np.asarray(data))
    nifti = _fitting_nifti(metadata, data.shape)
    if nifti is not None:
        orientation = nifti["orientation"]
        placeholder = np.broadcast_to(np.uint8(0), orientation.shape)  # no memory
        reference = Volume(placeholder, nifti["affine"], header=nifti.get("header"))
        if data.ndim == 4:  # (V, x, y, z) -> (X, Y, Z, V) on the source grid
            volumes = [from_canonical(v, orientation) for v in data]
            return np.stack(volumes, axis=-1), reference
        return from_canonical(data, orientation), reference
    if (metadata or {}).get(NIFTI_METADATA_KEY) is not None:
        logger.info(
            "layer metadata['%s'] does not fit data of shape %s: saving with scale/translate",
            NIFTI_METADATA_KEY,
            data.shape,
        )
    affine = np.diag([*_last3(scale, 1.0, "scale"), 1.0])
    affine[:3, 3] = _last3(translate, 0.0, "translate")
    return (np.moveaxis(data, 0, -1) if data.ndim == 4 else data), affine
