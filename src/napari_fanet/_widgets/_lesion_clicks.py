"""One-click lesion edits on an annotation Labels layer (a napari mouse callback).

With the annotation layer selected, Ctrl+click (Cmd+click on macOS) removes the lesion under the
cursor and Ctrl+Shift+click keeps only that lesion: a 26-connected component of voxels with the
clicked label value (:func:`napari_fanet.engine.annotations.remove_component` and
:func:`~napari_fanet.engine.annotations.keep_component`). Each click is one undoable edit
(``Labels.data_setitem``). In a 3D view the first labelled voxel along the click's ray is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.utils.notifications import show_info

TITLE = "FA-Net training"
CLICK_HELP = (
    "Select the annotation layer (pan/zoom mode): Ctrl+click (Cmd+click) removes the lesion "
    "under the cursor, Ctrl+Shift+click keeps only that lesion; Ctrl+Z undoes."
)


def _clicked_voxel(layer: Any, event: Any) -> tuple[int, int, int] | None:
    from napari_fanet.engine.annotations import first_labelled_voxel, voxel_index

    data = np.asarray(layer.data)
    dims = list(getattr(event, "dims_displayed", []) or [])
    direction = getattr(event, "view_direction", None)
    if len(dims) == 3 and direction is not None:  # 3D view: the first lesion along the ray
        start, end = layer.get_ray_intersections(event.position, direction, dims, world=True)
        if start is None or end is None:
            return None
        return first_labelled_voxel(data, start, end)
    try:
        return voxel_index(data.shape, layer.world_to_data(event.position))
    except ValueError:
        return None


def lesion_click(layer: Any, event: Any) -> None:
    """Mouse callback of the annotation layer: Ctrl+click removes a lesion, +Shift keeps it."""
    modifiers = tuple(getattr(event, "modifiers", ()) or ())
    if not any(m == "Control" for m in modifiers) or event.type != "mouse_press":
        return
    from napari_fanet.engine.annotations import keep_component, remove_component

    keep = any(m == "Shift" for m in modifiers)
    voxel = _clicked_voxel(layer, event)
    if voxel is None:
        show_info(f"{TITLE}: no lesion under the cursor")
        return
    old = np.asarray(layer.data)
    try:
        new = (keep_component if keep else remove_component)(old, voxel)
    except ValueError as exc:
        show_info(f"{TITLE}: {exc}")
        return
    changed = np.nonzero(new != old)
    if changed[0].size:
        layer.data_setitem(changed, new[changed])  # one undoable edit (Ctrl+Z)
    event.handled = True
