"""The first view of a NIfTI volume: axial, anterior up, radiological (like ITK-SNAP, Slicer).

napari shows the last two array axes of a layer. The plugin's layers are RAS+ canonical arrays
``(x, y, z)`` (see :mod:`napari_fanet.io.layers`), so napari's default view is a sagittal-like
``(y, z)`` slice, turned 90 degrees. The layer data stays canonical (the writer, the widgets and
the engine rely on it); only the viewer is changed: ``dims.order`` shows ``(y, x)`` with ``z``
on the slider, and ``camera.orientation`` puts anterior (+y) up and the subject's right (+x) on
the screen's left, the radiological convention. Nothing is copied or transposed, so a file ->
layer -> file round trip stays exact.

Reader and sample functions return layer data tuples and never see the viewer, so they call
:func:`request_axial_view`: it hooks the current viewer's layer insertion once, and when the
first layer of an empty viewer is one of the plugin's (it carries ``metadata["nifti"]``), it
calls :func:`axial_view` and says which convention is shown. A viewer that already shows layers
keeps the view its user chose.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

#: Screen side of the subject's right for each convention (``camera.orientation`` horizontal).
CONVENTIONS = {"radiological": "left", "neurological": "right"}
DEFAULT_CONVENTION = "radiological"
#: Slider labels of the canonical axes (in 2D only the z slider shows).
AXIS_LABELS = ("x (L→R)", "y (P→A)", "z (I→S)")
#: Slider label of a 4D layer's first axis (the volumes of a 4D file: echoes, for GRE).
VOLUME_LABEL = "volume (echo)"

_hooked: weakref.WeakSet = weakref.WeakSet()


def convention_note(convention: str = DEFAULT_CONVENTION) -> str:
    """One line saying what the axial view shows, for notifications and tooltips."""
    side = "right" if convention == "radiological" else "left"
    return (
        f"axial slices, anterior up, {convention} convention: the subject's left is on the "
        f"screen's {side}"
    )


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, before ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def axial_view(viewer: Any, convention: str = DEFAULT_CONVENTION) -> None:
    """Show axial slices of ``(x, y, z)`` RAS+ layers: anterior up, ``convention`` left/right.

    Parameters
    ----------
    viewer : napari.Viewer
        A viewer showing 3D canonical (RAS+) layers ``(x, y, z)``, or 4D ones
        ``(volume, x, y, z)`` (a 4D file: the volume and z on sliders).
    convention : str
        ``"radiological"`` (subject's right on the screen's left; ITK-SNAP, Slicer) or
        ``"neurological"`` (subject's right on the screen's right; FSLeyes' default).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {tuple(CONVENTIONS)}, got {convention!r}")
    if viewer.dims.ndim == 3:
        viewer.dims.order = (2, 1, 0)  # displayed (y, x): rows anterior-posterior, columns x
        viewer.dims.axis_labels = AXIS_LABELS
    elif viewer.dims.ndim == 4:  # (volume, x, y, z): a 4D file, its volumes on a slider
        viewer.dims.order = (0, 3, 2, 1)
        viewer.dims.axis_labels = (VOLUME_LABEL, *AXIS_LABELS)
    else:
        return  # not an (x, y, z) volume: keep napari's view
    camera = camera_of(viewer)
    if hasattr(camera, "orientation"):  # napari >= 0.6
        # Depth: radiological looks from the feet (+z away), neurological from the head; either
        # way the 3D view is a rotation of the subject, never a mirror image.
        depth = "away" if convention == "radiological" else "towards"
        camera.orientation = (depth, "up", CONVENTIONS[convention])
    viewer.reset_view()


def _on_inserted(viewer_ref: weakref.ref, event: Any) -> None:
    viewer = viewer_ref()
    layer = getattr(event, "value", None)
    if viewer is None or layer is None or len(viewer.layers) != 1:
        return
    if "nifti" not in getattr(layer, "metadata", {}):
        return
    axial_view(viewer)
    from napari.utils.notifications import show_info

    show_info(f"napari-fanet: {convention_note()}")


def request_axial_view(viewer: Any = None) -> None:
    """Make the plugin's first layer in an empty viewer open in :func:`axial_view`.

    Parameters
    ----------
    viewer : napari.Viewer, optional
        The viewer to hook; default: napari's current viewer (none: nothing happens, e.g. when
        a reader is called outside napari).
    """
    if viewer is None:
        if "napari" not in sys.modules:
            return
        from napari import current_viewer

        viewer = current_viewer()
    if viewer is None or viewer in _hooked:
        return
    _hooked.add(viewer)
    ref = weakref.ref(viewer)
    # position="last": run after napari's own handler has set dims.ndim for the new layer.
    viewer.layers.events.inserted.connect(lambda event: _on_inserted(ref, event), position="last")
