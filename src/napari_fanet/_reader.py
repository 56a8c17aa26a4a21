"""npe2 reader: ``.nii``/``.nii.gz`` volumes as layers at their world position, affine kept.

Each file becomes one layer (see :mod:`napari_fanet.io.layers` for the placement and the
``metadata["nifti"]`` entry that lets the plugin's writers restore the source affine); a 4D file
(multi-echo GRE phase or magnitude) becomes one ``(V, x, y, z)`` layer with its volumes on a
slider and the echo times of its BIDS sidecar in ``metadata["echo_times_ms"]``, and so do 3D
files opened as a stack (per-echo BIDS files ``echo-<n>`` in echo order). Integer
masks (a file name containing ``mask``, ``label`` or ``seg``, values small non-negative
integers) open as labels, everything else as float32 images. An empty viewer shows them as axial
slices, anterior up, in the radiological convention (:mod:`napari_fanet._widgets.axial_view`). The
reader never raises for a file it cannot use: it says why and returns None so that napari can try
another reader.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from napari_fanet._widgets.axial_view import request_axial_view
from napari_fanet.io.layers import (
    ECHO_TIMES_KEY,
    NIFTI_METADATA_KEY,
    OBLIQUE_TOLERANCE_DEGREES,
    oblique_warning,
    volume_to_layer_data,
)
from napari_fanet.io.nifti import FOUR_D_HINT, NIFTI_SUFFIXES, load_volume
from napari_fanet.physics.gre_io import load_echoes, read_echo_times, sidecar_path

logger = logging.getLogger(__name__)

LABEL_WORDS = ("mask", "label", "seg")
#: The BIDS echo entity of a file name, ``echo-<index>`` (``sub-01_echo-2_part-phase_MEGRE``).
ECHO_ENTITY = re.compile(r"(?:^|_)echo-(\d+)(?=_|$)")
#: How a stack refuses a 4D file (instead of the loader's hint for programmers).
STACK_4D_HINT = ": a 4D file opens on its own, not in a stack"
#: Largest value of a file opened as labels (larger integer images open as images).
MAX_LABEL = 65535

LayerData = tuple[np.ndarray, dict, str]
PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


def _notify(message: str) -> None:
    """Log ``message``, and show it in napari when napari is running."""
    logger.warning("%s", message)
    if "napari" in sys.modules:
        from napari.utils.notifications import show_warning

        show_warning(message)


def _is_nifti(path: object) -> bool:
    return isinstance(path, (str, os.PathLike)) and str(path).lower().endswith(NIFTI_SUFFIXES)


def layer_name(path: str | os.PathLike) -> str:
    """The file name without ``.nii``/``.nii.gz``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData] | None] | None:
    """Return :func:`read_nifti` if ``path`` is a NIfTI file (or a list of them), else None.

    Parameters
    ----------
    path : str or list of str
        What napari asks to open.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(paths, (list, tuple)) or not paths:
        return None
    return read_nifti if all(_is_nifti(p) for p in paths) else None


def _is_labels(name: str, data: np.ndarray) -> bool:
    """Whether a volume looks like a mask or label map (by its name and values)."""
    if not any(word in name.lower() for word in LABEL_WORDS) or data.dtype.kind not in "iuf":
        return False
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        return False
    return data.size > 0 and data.min() >= 0 and data.max() <= MAX_LABEL


def sidecar_echo_times_ms(
    paths: Sequence[str | os.PathLike], n_volumes: int
) -> list[float] | None:
    """Echo times (ms) from the BIDS sidecars ``NAME.json`` of ``paths``, or None.

    One 4D file (``EchoTime``: a list of ``n_volumes`` seconds) or one 3D file per volume (each
    ``EchoTime`` one number of seconds). None when a sidecar is missing; sidecars whose echo
    times do not fit are reported (as a warning for several volumes, in the log for one 3D
    file, whose sidecar may describe any sequence) and ignored.
    """
    if not all(sidecar_path(p).is_file() for p in paths):
        return None
    try:
        seconds = read_echo_times(paths, n_volumes)
    except ValueError as exc:
        names = ", ".join(Path(p).name for p in paths)
        message = f"napari-fanet: {names}: echo times not read from the sidecars: {exc}"
        if n_volumes > 1:
            _notify(message)
        else:
            logger.info("%s", message)
        return None
    return [round(float(t) * 1000.0, 6) for t in seconds]


def read_layer(path: str | os.PathLike) -> LayerData | None:
    """One NIfTI file as a layer data tuple, or None (with a message) if it cannot be shown.

    A 4D file ``(X, Y, Z, V)`` (multi-echo phase or magnitude) opens as one ``(V, x, y, z)``
    image layer with the volumes on a slider; echo times from its BIDS sidecar go to
    ``metadata["echo_times_ms"]``, where the FA-Net widget finds them.
    """
    name = layer_name(path)
    try:
        volume = load_volume(path, allow_4d=True, dtype=None, name=Path(path).name)
    except Exception as exc:  # unreadable, corrupt, missing, not real-valued ...
        _notify(f"napari-fanet cannot open {path}: {exc}")
        return None
    if volume.ndim == 3 and _is_labels(name, volume.data):
        layer_type = "labels"
    else:
        volume.data = volume.data.astype(np.float32, copy=False)
        layer_type = "image"
    n_volumes = volume.data.shape[3] if volume.ndim == 4 else 1
    echo_times = sidecar_echo_times_ms([path], n_volumes)
    metadata = {} if echo_times is None else {ECHO_TIMES_KEY: echo_times}
    return _checked(
        volume_to_layer_data(volume, name=name, layer_type=layer_type, metadata=metadata)
    )


def _checked(layer: LayerData) -> LayerData:
    """``layer``, after a warning when its file is oblique (shown on its closest axes)."""
    degrees = layer[1]["metadata"][NIFTI_METADATA_KEY]["oblique_degrees"]
    if degrees > OBLIQUE_TOLERANCE_DEGREES:
        _notify(oblique_warning(layer[1]["name"], degrees))
    return layer


def echo_index(path: str | os.PathLike) -> int | None:
    """The BIDS echo entity of a file name (``sub-01_echo-2_part-phase_MEGRE`` -> 2), or None."""
    match = ECHO_ENTITY.search(layer_name(path))
    return None if match is None else int(match.group(1))


def stack_name(paths: Sequence[str | os.PathLike]) -> str:
    """A stacked layer's name: the first file's, without its echo entity when it has one."""
    name = layer_name(paths[0])
    if echo_index(paths[0]) is None:
        return f"{name} (stack of {len(paths)})"
    return ECHO_ENTITY.sub("", name).strip("_") or name


def read_stack(paths: Sequence[str | os.PathLike]) -> LayerData:
    """3D files on one grid as one ``(V, x, y, z)`` image layer, in echo order for BIDS echoes.

    Raises
    ------
    ValueError
        If a file does not load or is not a 3D image (4D, a mask or label map), or the grids
        differ (:func:`~napari_fanet.physics.gre_io.load_echoes`).
    """
    if all(echo_index(p) is not None for p in paths):
        paths = sorted(paths, key=echo_index)
    try:
        _, stacked = load_echoes(paths, "stacked", dtype=np.float32)  # 3D files on one grid
    except ValueError as exc:
        raise ValueError(str(exc).replace(FOUR_D_HINT, STACK_4D_HINT)) from None
    for path, echo in zip(paths, np.moveaxis(stacked.data, -1, 0), strict=True):
        if _is_labels(layer_name(path), echo):
            raise ValueError(f"{Path(path).name} is a mask or label map: only 3D images stack")
    echo_times = sidecar_echo_times_ms(paths, len(paths))
    metadata = {} if echo_times is None else {ECHO_TIMES_KEY: echo_times}
    return _checked(volume_to_layer_data(stacked, name=stack_name(paths), metadata=metadata))


def read_nifti(path: PathOrPaths) -> list[LayerData] | None:
    """Read one NIfTI file, or a stack of them; unusable files are skipped with a message.

    napari hands the reader a list only when it was asked to open files as a stack (File >
    Open Files as Stack, ``viewer.open(paths, stack=True)``). 3D images on one grid then become
    one ``(V, x, y, z)`` layer (BIDS echoes ``echo-<n>`` in echo order, the echo times of
    their sidecars in ``metadata["echo_times_ms"]``: per-echo GRE files for the FA-Net widget's
    phase input); anything else (a mask, a 4D file, another grid) opens file by file, with a
    message saying why.

    Parameters
    ----------
    path : str or list of str
        ``.nii``/``.nii.gz`` files.

    Returns
    -------
    list of LayerDataTuple or None
        The stacked layer, or one tuple per readable 3D or 4D file; None when no file could be
        read.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers = None
    if len(paths) > 1:
        try:
            layers = [read_stack(paths)]
        except Exception as exc:  # unreadable, another grid, not 3D images ...
            _notify(f"napari-fanet: opening {len(paths)} files one by one, not as a stack: {exc}")
    if layers is None:
        layers = [layer for p in paths if (layer := read_layer(p)) is not None]
    if layers:
        request_axial_view()  # an empty viewer shows them axial
    return layers or None
