"""The FA attention inspector dock widget: click a voxel, see its rank-one attention factors.

Layout and wiring only. The computation is
:class:`napari_fanet.engine.attention_inspection.AttentionInspector` (definitions in that
module's docstring); it runs in a napari ``thread_worker`` generator (through
:func:`._jobs.streamed`) and reuses its forward pass when only the display options change.
The plots are :class:`._attention_plots.FactorPlots`. A click in the canvas (2D: the voxel
under the cursor; 3D: the brightest voxel on the ray through the cursor) or the typed
coordinates choose the voxel. The map is one Image layer on the FA block's cell grid, scaled and
translated onto the anatomy (:func:`._layers.coarse_placement`), half transparent, with napari's
colour bar and a legend in the dock; only a rotated network frame (QSM with a tilted B0) falls
back to the map up-sampled onto the input grid.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QSizePolicy

from napari_fanet._widgets._attention_plots import FactorPlots
from napari_fanet._widgets._inputs import TaskInputs
from napari_fanet._widgets._jobs import streamed
from napari_fanet._widgets._layers import (
    coarse_placement,
    fading_colormap,
    folded_section,
    message_label,
    placement,
)

if TYPE_CHECKING:
    from napari.layers import Layer, Points
    from napari.qt.threading import GeneratorWorker

    from napari_fanet.engine.attention_inspection import AttentionInspector, AttentionView
    from napari_fanet.engine.model_catalog import ModelEntry
    from napari_fanet.engine.prediction_request import PredictionRequest
    from napari_fanet.engine.streaming import Progress

IMAGE_OR_LABELS = (Image, Labels)
#: Rows shown: effective ``M_a = I + beta_a A_a`` (what the block applies) or raw softmax.
ROWS = {"effective M = I + β·A": True, "raw softmax A": False}
MAP_NAME = "FA attention map"
MARKER_NAME = "FA inspected voxel"
CLICK_PIXELS = 3  # a press and release further apart than this (screen pixels) is a drag
MAP_OPACITY = 0.55
LEVEL_NAMES = {0: "full res.", 1: "1/2 res.", 2: "1/4 res.", 3: "1/8 res.", 4: "bottleneck"}
LEGEND_PLACEHOLDER = "The legend of the map appears here after the first inspection."


class AttentionInspectorWidget(TaskInputs):
    """Dock widget: pick inputs and an FA model, click a voxel, see its attention factors."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(
            napari_viewer,
            title="FA attention inspector",
            model_tooltip="Models with a folded-attention (FA) block: shipped or added "
            "checkpoints (models without one are not listed).",
        )
        from napari_fanet.engine import attention_inspection

        self._core = attention_inspection
        self._inspector = attention_inspection.AttentionInspector()
        self._worker: GeneratorWorker | None = None
        self._pending = False
        self._map_layer: Image | None = None
        self._marker_layer: Points | None = None
        self.last_view: AttentionView | None = None
        v = napari_viewer
        self.level = ComboBox(
            label="FA level",
            choices=self._level_choices,
            tooltip="Which folded-attention block to inspect, by U-Net level: level l works on "
            "cells of 2^l voxels (1/2^l resolution). The finest level the model has (chosen "
            "by default) gives the most detailed map; 4 is the bottleneck (16-voxel cells).",
        )
        self.window = SpinBox(
            label="Window",
            value=0,
            min=0,
            max=512,
            step=16,
            tooltip="0 (default): the network sees the whole volume, once; every later click "
            "reuses that pass. Otherwise a window of this many voxels (model grid, multiple of "
            "16) around the voxel, for volumes too large for memory: a new pass whenever the "
            "window moves.",
        )
        self.rows = ComboBox(
            label="Rows",
            choices=list(ROWS),
            tooltip="Effective rows M = I + β·A (what the trained block applies to g(X)) or "
            "the raw softmax rows A.",
        )
        self.channel = SpinBox(
            label="Output channel",
            value=-1,
            min=-1,
            max=4095,
            tooltip="Channel q of the clicked element: its row of the channel matrix is "
            "plotted; -1 = the mean of all rows.",
        )
        self.source_channel = SpinBox(
            label="Input channel",
            value=-1,
            min=-1,
            max=4095,
            tooltip="Feature map q' of g(X) whose weights the map shows; -1 = summed over all "
            "(the channel choice only scales the rank-one map).",
        )
        self.show_matrices = CheckBox(
            text="Show matrices", tooltip="Also show the four affinity matrices as heat maps."
        )
        self.on_click = CheckBox(
            text="Inspect on click",
            value=True,
            tooltip="Left click in the canvas inspects the voxel under the cursor (2D) or the "
            "brightest voxel along the ray (3D). Dragging still pans and rotates.",
        )
        self.x = SpinBox(label="x", max=100_000, tooltip="Voxel index along the first axis.")
        self.y = SpinBox(label="y", max=100_000, tooltip="Voxel index along the second axis.")
        self.z = SpinBox(label="z", max=100_000, tooltip="Voxel index along the third axis.")
        self.inspect_button = PushButton(
            text="Inspect", tooltip="Inspect the typed voxel (x, y, z) of the input layers."
        )
        self.status = message_label("Click a voxel or type its coordinates.")
        self.beta_label = message_label(label="β (D, H, W, C)")
        self.beta_label.tooltip = "The inspected block's learned gates (0 at initialisation)."
        self.legend = message_label(LEGEND_PLACEHOLDER)
        for label in (self.status, self.legend):  # long wrapped text must not widen the dock
            label.native.setMinimumWidth(120)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.legend.tooltip = (
            "What the map layer shows. Its colour bar is drawn on the canvas (layer "
            "controls: the layer's colour bar)."
        )
        self.show_advanced, self.advanced = folded_section(
            "Advanced options", [self.window, self.rows, self.channel, self.source_channel]
        )
        self.extend(
            [
                *self.input_fields(), self.level, self.show_advanced, self.advanced,
                self.show_matrices, self.on_click, self.x, self.y, self.z, self.inspect_button,
                self.status, self.legend, self.beta_label,
            ]
        )  # fmt: skip

        self.plots = FactorPlots()
        self.form.layout().addWidget(self.plots.factor_canvas)
        self.form.layout().addWidget(self.plots.matrix_canvas)

        self.inspect_button.changed.connect(self.inspect)
        for w in (self.rows, self.channel, self.source_channel, self.level):
            w.changed.connect(self._refresh)
        self.model.changed.connect(self._on_model)
        self.show_matrices.changed.connect(self._on_show_matrices)
        callbacks = v.mouse_drag_callbacks
        callback = self._on_mouse
        callbacks.append(callback)
        self.native.destroyed.connect(
            lambda *_: callbacks.remove(callback) if callback in callbacks else None
        )
        self.connect_inputs()
        self._on_model()

    def model_entries(self) -> dict[str, ModelEntry]:
        """Only models with a folded-attention block."""
        from napari_fanet.engine.attention_inspection import fa_models

        return {e.name: e for e in fa_models(self.task_name)}

    def _level_choices(self, _: Any = None) -> list[tuple[str, int]]:
        """The chosen model's FA levels, finest first, as (text, level) pairs."""
        entry = self.model_entries().get(self.model.value or "")
        if entry is None:
            return []
        try:
            levels = self._core.fa_levels(entry.path)
        except (OSError, ValueError, KeyError):  # unreadable: the inspection will say why
            return []
        return [
            (f"{lv}: {LEVEL_NAMES[lv]}, {2**lv}-voxel cells", lv)
            for lv in levels
            if lv in LEVEL_NAMES
        ]

    def _on_model(self, *_: Any) -> None:
        """Offer the new model's levels and choose its finest (the most detailed map)."""
        self.level.choices = []  # magicgui keeps the order of choices that stay: start afresh
        self.level.choices = self._level_choices  # and layer events refresh them from the model
        if self.level.choices:
            self.level.value = self.level.choices[0]

    def build_request(self) -> PredictionRequest:
        """The inputs, model and B0 direction as a :class:`PredictionRequest`."""
        return self.request()

    # ------------------------------------------------------------------ clicking
    def _on_mouse(self, viewer: Any, event: Any) -> Any:
        """Mouse-drag callback: a left click without dragging inspects the voxel under it."""
        if not self.on_click.value or getattr(event, "button", 1) != 1:
            return
        position = np.asarray(event.position, dtype=float)
        screen = np.asarray(getattr(event, "pos", position), dtype=float)
        direction = getattr(event, "view_direction", None)
        displayed = list(getattr(event, "dims_displayed", []))
        dragged = False
        yield
        while event.type == "mouse_move":
            moved = np.asarray(getattr(event, "pos", event.position), dtype=float) - screen
            dragged = dragged or float(np.abs(moved).max()) > CLICK_PIXELS
            yield
        if not dragged:
            self.pick(position, view_direction=direction, dims_displayed=displayed)

    def pick(
        self,
        position: Any,
        *,
        view_direction: Any = None,
        dims_displayed: Any = None,
    ) -> GeneratorWorker | None:
        """Inspect the voxel at world ``position`` (3D view: the brightest one on the ray)."""
        source = self.source_layer()
        if source is None:
            show_error("FA attention inspector: choose the input layers first")
            return None
        data = np.asarray(source.data)
        if view_direction is not None and dims_displayed is not None and len(dims_displayed) == 3:
            start, end = source.get_ray_intersections(
                position, view_direction, list(dims_displayed), world=True
            )
            if start is None:
                return None  # the ray misses the volume
            voxel = self._core.voxel_on_ray(data, start[-3:], end[-3:])
        else:
            voxel = tuple(int(c) for c in np.rint(source.world_to_data(position))[-3:])
        if not all(0 <= c < n for c, n in zip(voxel, data.shape[-3:], strict=True)):
            show_info(f"FA attention inspector: voxel {voxel} is outside {source.name!r}")
            return None
        for box, c in zip((self.x, self.y, self.z), voxel, strict=True):
            box.value = c
        return self.inspect()

    # ------------------------------------------------------------------ running
    def inspect(self, *_: Any) -> GeneratorWorker | None:
        """Inspect the typed voxel in a worker; returns the worker (None if not started)."""
        request = self.build_request()
        found = request.problems()
        if not request.model:
            found.append(f"no {self.task_name} model with a folded-attention block: add one")
        if found:
            show_error("FA attention inspector: " + "; ".join(found))
            return None
        if self._worker is not None:  # run again with the newest fields when this one ends
            self._pending = True
            return None
        voxel = (self.x.value, self.y.value, self.z.value)
        options = {
            "level": self.level.value,
            "window": self.window.value or None,
            "effective": ROWS[self.rows.value],
            "channel": self.channel.value,
            "source_channel": self.source_channel.value,
        }
        source = self.source_layer()
        worker = thread_worker(_inspect, start_thread=False, ignore_errors=True)(
            self._inspector, request, voxel, options
        )
        worker.returned.connect(lambda view: self._show(view, source))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.status.value = f"Inspecting voxel {voxel}..."
        worker.start()
        return worker

    def _refresh(self, *_: Any) -> None:
        if self.last_view is not None:
            self.inspect()  # the forward pass is reused: only the factors are recomputed

    def _on_error(self, exc: BaseException) -> None:
        self.status.value = f"Failed: {exc}"
        show_error(f"FA attention inspector: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        self._worker = None
        if self._pending:
            self._pending = False
            self.inspect()

    # ------------------------------------------------------------------ output
    def _show(self, view: AttentionView, source: Layer | None) -> None:
        self.last_view = view
        v = self._viewer
        name = f"{MAP_NAME} {view.voxel}"
        if view.grid is not None:  # the cell grid itself, scaled onto the anatomy
            data = view.rank_one.spatial_map.astype(np.float32)
            place = coarse_placement(source, view.grid.scale, view.grid.offset)
        else:  # rotated frame (QSM, tilted B0): the map up-sampled onto the input grid
            data = view.image_map
            place = placement(source)
        top = float(data.max())
        limits = (0.0, top if top > 0 else 1.0)
        layer = self._map_layer
        if layer is None or layer not in v.layers:
            # Clear where the weights are low and half transparent elsewhere, so the anatomy
            # shows through (additive blending would saturate to white over bright tissue).
            layer = v.add_image(data, name=name, **place, opacity=MAP_OPACITY,
                                colormap=fading_colormap("inferno"), blending="translucent",
                                contrast_limits=limits)  # fmt: skip
            layer.colorbar.visible = True  # napari >= 0.6: a colour bar on the canvas
            self._map_layer = layer
        else:
            layer.data = data
            _update(layer, place)  # each changed transform redraws the canvas: only those
            layer.contrast_limits = limits
            layer.name = name
        marker = self._marker_layer
        if marker is None or marker not in v.layers:
            self._marker_layer = v.add_points(
                [view.voxel], name=MARKER_NAME, size=3, face_color="cyan", **placement(source)
            )
        else:
            _update(marker, placement(source))
            marker.data = [view.voxel]
        self.channel.max = self.source_channel.max = view.bottleneck_shape[0] - 1
        self.beta_label.value = ", ".join(f"{b:+.4f}" for b in view.beta)
        kind = "effective M" if view.effective else "raw A"
        extent = "whole volume" if view.whole_volume else f"window {view.window_shape}"
        self.status.value = (
            f"voxel {view.voxel} -> level-{view.level} cell {view.cell} of "
            f"{view.bottleneck_shape[1:]} ({kind}; {extent}; forward pass "
            f"{'reused' if view.reused_forward else 'run'})"
        )
        self.legend.value = f"{view.legend()} Colour bar: weight (top right of the canvas)."
        self.plots.show_factors(view)
        if self.show_matrices.value:
            self.plots.show_matrices(view)

    def _on_show_matrices(self, *_: Any) -> None:
        self.plots.matrix_canvas.setVisible(self.show_matrices.value)
        if self.show_matrices.value and self.last_view is not None:
            self.plots.show_matrices(self.last_view)


def _update(layer: Layer, place: dict[str, Any]) -> None:
    """Set the placement attributes of ``layer`` that differ from ``place``."""
    for key, value in place.items():
        current = layer.affine.affine_matrix if key == "affine" else getattr(layer, key)
        if key == "metadata":
            same = current == value
        else:
            old, new = np.asarray(current), np.asarray(value)
            same = old.shape == new.shape and np.allclose(old, new)
        if not same:
            setattr(layer, key, value)


def _inspect(
    inspector: AttentionInspector,
    request: PredictionRequest,
    voxel: tuple[int, int, int],
    options: dict,
) -> Generator[Progress, None, AttentionView | object]:
    """Worker body: the inspection in a thread, yielding so napari can abort it."""
    return (yield from streamed(lambda *_: inspector.inspect_request(request, voxel, **options)))
