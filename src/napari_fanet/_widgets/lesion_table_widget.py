"""The lesion table dock widget: one row per lesion of a labels layer; click a row to go there.

Layout and wiring only: the table is :func:`napari_fanet.evaluation.lesion_table.lesion_table` (its
docstring defines the columns, the 26-connected lesions and the location classes) on the
chosen labels layer, optionally with a probability and a susceptibility image layer on the
same grid. World coordinates are napari's (the layer's scale, translate, rotate, shear and
affine), which for layers opened with this plugin's reader are the scan's millimetres.

- Clicking a row centres the camera on the lesion's centroid and moves the slice there.
- "Delete lesion" sets the selected lesion's voxels to 0 with ``Labels.data_setitem``, one
  undoable step in the layer's history (Ctrl+Z in napari, or ``layer.undo()``).
- The table follows the mask: painting, filling, erasing, ``layer.data = ...`` and undo
  recompute it (events are coalesced for 250 ms; the computation runs in a napari
  ``thread_worker``, one at a time, and is skipped when the mask did not change).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, PushButton, SpinBox
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QAbstractItemView, QTableWidget, QTableWidgetItem

from napari_fanet._widgets._layers import layer_picker, message_label, selected_layer

if TYPE_CHECKING:
    from napari.layers import Layer
    from napari.qt.threading import FunctionWorker

    from napari_fanet.evaluation.lesion_table import LesionTable

#: Header of each table column
#: (keys of :class:`~napari_fanet.evaluation.lesion_table.LesionTable`).
HEADERS = {
    "id": "id",
    "volume_ml": "volume (mL)",
    "n_voxels": "voxels",
    "centroid_x_mm": "x (mm)",
    "centroid_y_mm": "y (mm)",
    "centroid_z_mm": "z (mm)",
    "location": "location",
    "max_probability": "max p",
    "mean_probability": "mean p",
    "mean_chi_ppm": "mean χ (ppm)",
    "rim_minus_core_chi_ppm": "rim - core χ (ppm)",
}
DEBOUNCE_MS = 250


def world_affine(layer: Any) -> np.ndarray:
    """The 4x4 data-to-world affine of a 3D layer (probed through ``layer.data_to_world``)."""
    origin = np.asarray(layer.data_to_world((0.0, 0.0, 0.0)), dtype=np.float64)
    affine = np.eye(4)
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = 1.0
        affine[:3, axis] = np.asarray(layer.data_to_world(step), dtype=np.float64) - origin
    affine[:3, 3] = origin
    return affine


def _camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _text(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class LesionTableWidget(Container):
    """Dock widget: the lesions of a labels layer as a table (go to, delete, live update)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=True)
        from napari_fanet.evaluation import lesion_table

        self._core = lesion_table
        self.viewer = v = napari_viewer
        self.mask = layer_picker(v, "Lesion mask", (Labels,), tooltip="Any non-zero voxel.")
        self.probability = layer_picker(
            v, "Probability", (Image,), optional=True, tooltip="Lesion probability (0-1)."
        )
        self.chi = layer_picker(
            v, "Susceptibility", (Image,), optional=True, tooltip="QSM map (ppm), same grid."
        )
        self.min_size = SpinBox(
            label="Min size (voxels)",
            value=3,
            min=1,
            max=100_000,
            tooltip="Smaller 26-connected components are not lesions (3 as EVALUATION.md).",
        )
        self.summary = message_label()
        self.delete_button = PushButton(text="Delete lesion", enabled=False)
        self.extend([self.mask, self.probability, self.chi, self.min_size, self.delete_button])
        self.table = QTableWidget()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.native.layout().addWidget(self.table)
        self.append(self.summary)

        self.result: LesionTable | None = None  # the last table shown
        self._result_mask: np.ndarray | None = None  # the mask it was measured on
        self._worker: FunctionWorker | None = None
        self._pending = False
        self._closed = False
        self._shown_key: Any = None
        self._shown_mask: np.ndarray | None = None
        self._watched: Layer | None = None
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.refresh)

        self.table.itemSelectionChanged.connect(self._on_select)
        self.delete_button.clicked.connect(self.delete_selected)
        for picker in (self.mask, self.probability, self.chi, self.min_size):
            picker.changed.connect(self._inputs_changed)
        layer_events = (
            v.layers.events.inserted,
            v.layers.events.removed,
            v.layers.events.reordered,
        )
        for event in layer_events:
            event.connect(self._layers_changed)

        def unsubscribe(*_: Any) -> None:  # the Qt side is gone: stop listening to napari
            self._closed = True
            self._timer.stop()
            for event in layer_events:
                event.disconnect(self._layers_changed)
            self._watch(None)

        self.native.destroyed.connect(unsubscribe)
        self._layers_changed()

    # -- inputs -------------------------------------------------------------------------------

    def _layers_changed(self, *_: Any) -> None:
        self.reset_choices()
        names = [c for c in self.mask.choices if c is not None]
        if self.mask.value is None and names:  # prefer a layer named like a lesion mask
            self.mask.value = next((n for n in names if "lesion" in n.lower()), names[0])
        self._inputs_changed()

    def _inputs_changed(self, *_: Any) -> None:
        self._watch(selected_layer(self.viewer, self.mask))
        self.refresh()

    def _watch(self, layer: Layer | None) -> None:
        """Listen to the edits of ``layer`` (paint, fill, erase, new data, undo) only."""
        if layer is self._watched:
            return
        for old in (self._watched,) if self._watched is not None else ():
            for event in (old.events.paint, old.events.data, old.events.set_data):
                event.disconnect(self.schedule_refresh)
        if layer is not None:
            for event in (layer.events.paint, layer.events.data, layer.events.set_data):
                event.connect(self.schedule_refresh)
        self._watched = layer

    def schedule_refresh(self, *_: Any) -> None:
        """Recompute after the edits stop for :data:`DEBOUNCE_MS` (painting sends many)."""
        self._timer.start()

    # -- table --------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Recompute the table from the chosen layers (skipped if nothing changed)."""
        layer = selected_layer(self.viewer, self.mask)
        if layer is None:
            self._show(None, "Choose a labels layer holding the lesion mask.")
            return
        data = np.asarray(layer.data)
        extras = {}
        for name, picker in (("probability", self.probability), ("chi", self.chi)):
            other = selected_layer(self.viewer, picker)
            if other is not None:
                extras[name] = np.asarray(other.data)
        key = (id(layer), *(id(v) for v in extras.values()), tuple(extras), self.min_size.value)
        binary = data != 0
        if key == self._shown_key and np.array_equal(binary, self._shown_mask):
            return
        if self._worker is not None:  # one computation at a time; the newest inputs next
            self._pending = True
            return
        self._shown_key, self._shown_mask = key, binary
        if data.ndim != 3:
            self._show(None, f"'{layer.name}' is {data.ndim}D: the lesion table needs 3D data.")
            return
        compute = thread_worker(self._core.lesion_table, start_thread=False, ignore_errors=True)
        worker = compute(binary, world_affine(layer), min_size=int(self.min_size.value), **extras)
        worker.returned.connect(lambda table: self._on_result(table, binary))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.summary.value = "Measuring lesions..."
        worker.start()

    @property
    def busy(self) -> bool:
        """Whether a table is being computed or waits to be."""
        return self._worker is not None or self._pending or self._timer.isActive()

    def _on_result(self, table: LesionTable, binary: np.ndarray) -> None:
        if not self._closed:
            self._result_mask = binary
            self._show(table, f"{len(table)} lesions, {table.total_volume_ml:.3f} mL in all.")

    def _on_error(self, exc: BaseException) -> None:
        if not self._closed:  # bad inputs (grids that differ): said in the summary line
            self._show(None, str(exc))

    def _on_finished(self) -> None:
        self._worker = None
        if self._pending and not self._closed:
            self._pending = False
            self.refresh()

    def _show(self, table: LesionTable | None, message: str) -> None:
        self.result = table
        self.summary.value = message
        self.table.clearContents()
        columns = table.columns if table is not None else ()
        rows = table.rows if table is not None else ()
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels([HEADERS.get(c, c) for c in columns])
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, column in enumerate(columns):
                self.table.setItem(r, c, QTableWidgetItem(_text(row[column])))
        self.table.resizeColumnsToContents()
        self.delete_button.enabled = False

    def selected_row(self) -> dict | None:
        """The selected lesion's row, or None."""
        rows = self.table.selectionModel().selectedRows()
        if self.result is None or not rows:
            return None
        return self.result.rows[rows[0].row()]

    def _on_select(self) -> None:
        row = self.selected_row()
        self.delete_button.enabled = row is not None
        if row is not None:
            self.go_to(row)

    def go_to(self, row: dict) -> None:
        """Centre the camera and the slices on a lesion's centroid (world coordinates)."""
        centre = [row[f"centroid_{a}_mm"] for a in "xyz"]
        ndim = self.viewer.dims.ndim
        self.viewer.dims.set_point(tuple(range(ndim - 3, ndim)), centre)
        _camera(self.viewer).center = centre

    def delete_selected(self) -> None:
        """Set the selected lesion's voxels to 0 as one undoable edit of the labels layer."""
        row, layer = self.selected_row(), selected_layer(self.viewer, self.mask)
        if row is None or layer is None:
            return
        if not np.array_equal(np.asarray(layer.data) != 0, self._result_mask):
            self.refresh()
            self.summary.value = (
                "The mask changed since the table was made: updating it; select the lesion again."
            )
            return
        indices = np.nonzero(self.result.labels == row["id"])
        layer.data_setitem(indices, 0)
        self.refresh()
