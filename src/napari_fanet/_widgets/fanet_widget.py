"""The FA-Net dock widget: MS lesion segmentation or QSM reconstruction of the chosen layers.

Layout and wiring only. The checks and the prediction are
:class:`napari_fanet.engine.prediction_request.PredictionRequest`; one core function,
:func:`napari_fanet.evaluation.scoring.predict_and_compare`, runs it and compares the result
with a reference (:mod:`napari_fanet.tasks.comparison`); the work runs in a napari
``thread_worker`` generator (through :func:`napari_fanet.engine.streaming.stream_job`) so the
viewer stays responsive and Cancel works. Torch is imported when the widget is created, not when
napari starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    TextEdit,
)
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from napari_fanet._widgets._inputs import IMAGE_OR_LABELS, TaskInputs
from napari_fanet._widgets._jobs import CANCELLED, JobError, streamed
from napari_fanet._widgets._layers import (
    NONE_CHOICE,
    add_image,
    add_labels,
    device_picker,
    error_colormap,
    fading_colormap,
    folded_section,
    layer_picker,
    message_label,
    placement,
    select_by_guess,
    selected_layer,
    signed_error_colormap,
)
from napari_fanet.io.formatting import format_number
from napari_fanet.io.layers import ECHO_TIMES_KEY

#: The core's default, napari_fanet.engine.predict.MIRROR_DEFAULT (not imported here: the
#: engine imports torch; a test checks that the two agree).
MIRROR = True
#: The core's default, napari_fanet.engine.predict.WINDOW_SHIFTS_DEFAULT, and its largest value
#: (napari_fanet.engine.averaged_prediction.MAX_WINDOW_SHIFTS; a test checks both).
WINDOW_SHIFTS = 2
MAX_WINDOW_SHIFTS = 8
#: The core's default, napari_fanet.tasks.roughness.MATCH_ROUGHNESS_DEFAULT (a test checks).
MATCH_ROUGHNESS = True
#: The core's mask-rule defaults (napari_fanet.tasks.lesion_mask; a test checks that they
#: agree). A seed threshold equal to the threshold keeps every lesion, as None does there.
SEED_THRESHOLD: float | None = 0.95
MIN_LESION_MM3 = 10.0
MIN_EDGE_DISTANCE_MM = 2.0

if TYPE_CHECKING:
    from napari.layers import Layer
    from napari.qt.threading import GeneratorWorker

    from napari_fanet.engine.predict import PredictionResult
    from napari_fanet.engine.prediction_request import PredictionRequest
    from napari_fanet.engine.streaming import Progress
    from napari_fanet.tasks.comparison import Comparison

RUN_TEXT = {"segmentation": "Segment", "qsm": "Reconstruct QSM"}
#: QSM input choices: a local field, or multi-echo phase + magnitude through the phase chain.
QSM_INPUTS = ("local field", "phase + magnitude")
REFERENCE_ROLE = {"segmentation": "lesion reference", "qsm": "susceptibility reference"}


class FANetWidget(TaskInputs):
    """Dock widget: pick a task, its input layers and a model; run; compare with a reference."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(
            napari_viewer, title="FA-Net", model_tooltip="Shipped weights or added files."
        )
        self._worker: GeneratorWorker | None = None
        self._cancel = threading.Event()
        self.last_comparison: Comparison | None = None

        v = napari_viewer
        self.device = device_picker()
        self.tile = SpinBox(
            label="Tile size",
            value=64,
            min=16,
            max=256,
            step=16,
            tooltip="Sliding-window size in voxels (multiples of 16). Smaller uses less memory.",
        )
        self.overlap = FloatSpinBox(
            label="Overlap",
            value=0.5,
            min=0.0,
            max=0.9,
            step=0.05,
            tooltip="Fraction of overlap between neighbouring tiles (Gaussian blending).",
        )
        self.threshold = FloatSpinBox(
            label="Threshold",
            value=0.5,
            min=0.01,
            max=0.99,
            step=0.05,
            tooltip="Lesion probability above which a voxel joins the mask.",
        )
        self.seed_threshold = FloatSpinBox(
            label="Seed threshold",
            value=0.5 if SEED_THRESHOLD is None else SEED_THRESHOLD,
            min=0.01,
            max=0.99,
            step=0.05,
            tooltip="Keep a lesion (touching voxels above the threshold) only if one of its "
            "voxels is above this. Faint blobs the network was never sure of go; a lesion with "
            "a confident core keeps its rim. Equal to the threshold: keep every lesion.",
        )
        self.min_lesion = FloatSpinBox(
            label="Min lesion (mm³)",
            value=MIN_LESION_MM3,
            min=0.0,
            max=10000.0,
            step=1.0,
            tooltip="Smallest lesion kept, in cubic millimetres (0: keep every lesion).",
        )
        self.min_edge_distance = FloatSpinBox(
            label="Min depth in brain (mm)",
            value=MIN_EDGE_DISTANCE_MM,
            min=0.0,
            max=50.0,
            step=0.5,
            tooltip="Drop a lesion whose voxels lie on average less than this far inside the "
            "brain mask: the bright rim of a skull-stripped brain (cortex, CSF, stripping "
            "edge), where white-matter lesions are not. 0: keep every lesion.",
        )
        self.mirror = CheckBox(
            text="Mirror (left-right)",
            value=MIRROR,
            tooltip="Segmentation: also segment the left-right mirror image and average the two "
            "probabilities (test-time augmentation). Takes twice as long.",
        )
        self.window_shifts = SpinBox(
            label="Window grids",
            value=WINDOW_SHIFTS,
            min=1,
            max=MAX_WINDOW_SHIFTS,
            tooltip="Segmentation: average the probability over this many grids of tiles, each "
            "shifted by a fraction of a tile step, so that a lesion's result depends less on "
            "where the tiles fall. Each grid adds one pass (two with the mirror).",
        )
        self.match_roughness = CheckBox(
            text="Match roughness",
            value=MATCH_ROUGHNESS,
            tooltip="Segmentation: if the FLAIR is rougher (noisier, finer-textured) than the "
            "real scans the model was trained on, smooth it in the brain until it is not, "
            "before segmenting. Models that record no training roughness are not affected.",
        )
        self.data_consistency = CheckBox(
            text="Data consistency",
            value=True,
            tooltip="QSM: make the network's map explain the measured field (a weighted "
            "least-squares fit inside the brain mask, started from the network's map). Off: the "
            "raw network output, for comparison.",
        )
        self.dc_lambda = FloatSpinBox(
            label="DC lambda",
            value=0.0,
            min=0.0,
            max=10.0,
            step=0.005,
            tooltip="QSM: weight of the network's map against the field. 0 (default): "
            "automatic, estimated for each volume from the field's noise and from how far the "
            "network's map is from explaining the field. Smaller trusts the field more, larger "
            "keeps the network's map.",
        )
        # QSM from multi-echo phase (engine.prediction_request.PhaseOptions)
        self.qsm_input = ComboBox(
            label="QSM input",
            choices=list(QSM_INPUTS),
            tooltip="Local field (ppm), or multi-echo GRE phase and magnitude: scaled to "
            "radians, masked, unwrapped, fitted over echoes (Hz) and background-removed (ppm) "
            "before the network. The model follows: fanet-qsm for a local field, "
            "fanet-qsm-phase (trained on simulated phase through this chain) for phase.",
        )
        self.phase = layer_picker(
            v,
            "Phase",
            tooltip="Phase, (echoes, X, Y, Z) or one echo (X, Y, Z); radians or scanner units "
            "(the scaling assumed is reported).",
        )
        self.magnitude = layer_picker(v, "Magnitude", tooltip="Magnitude, the phase's shape.")
        self.te = LineEdit(
            label="Echo times (ms)",
            value="4, 8, 12",
            tooltip="One per echo, increasing. Filled in from the phase file's BIDS sidecar "
            "(EchoTime) when it has one.",
        )
        self.b0_tesla = FloatSpinBox(
            label="B0 (T)", value=3.0, min=0.1, max=21.1, step=0.5, tooltip="Field strength."
        )
        self.unwrap = ComboBox(
            label="Unwrapping", choices=["laplacian", "quality"], tooltip="3D phase unwrapping."
        )
        self.bfr = ComboBox(
            label="Background removal",
            choices=["lbv", "vsharp", "pdf"],
            value="lbv",  # the phase chain's default (a test keeps them equal)
            tooltip="LBV (default: Laplace equation in the mask, erodes it by one voxel), "
            "V-SHARP (erodes the mask by its smallest sphere) or PDF (uses the B0 direction).",
        )
        self.total_field_dc = CheckBox(
            text="Match the total field (SMV)",
            value=True,
            tooltip="With data consistency on (default): fit the network's map to the total "
            "field through spherical means instead of to the background-removed local field. It "
            "keeps the part of the local field that background removal loses: on simulated "
            "validation heads (LBV), chi NRMSE 1.5 points lower at typical noise and 10.1 with "
            "low noise. Off: fit the local field, as for a local-field input. Costs about 13 s "
            "per 2 mm head and 3 min per 1 mm head on one core.",
        )
        self.phase_fields = [
            self.phase, self.magnitude, self.te, self.b0_tesla, self.unwrap, self.bfr,
            self.total_field_dc,
        ]  # fmt: skip
        self.reference = layer_picker(
            v,
            "Reference",
            IMAGE_OR_LABELS,
            optional=True,
            tooltip="Optional ground truth (lesion mask or susceptibility in ppm): adds error "
            "maps and metrics.",
        )
        self.problems = message_label()
        self.run_button = PushButton(text="Segment", tooltip="Run the model on the chosen layers.")
        self.cancel_button = PushButton(text="Cancel", enabled=False, tooltip="Stop the run.")
        self.progress = ProgressBar(label="Progress", min=0, max=100, value=0)
        self.metrics = TextEdit(label="Metrics", value="")
        self.metrics.read_only = True
        self.copy_button = PushButton(text="Copy metrics", tooltip="Copy the metrics as text.")
        self.show_advanced, self.advanced = folded_section(
            "Advanced options",
            [self.device, self.tile, self.overlap, self.window_shifts, self.dc_lambda],
        )
        self.extend(
            [
                self.qsm_input, *self.input_fields(), *self.phase_fields, self.threshold,
                self.seed_threshold, self.min_lesion, self.min_edge_distance, self.mirror,
                self.match_roughness, self.data_consistency, self.show_advanced, self.advanced,
                self.reference, self.problems, self.run_button,
                self.cancel_button, self.progress, self.metrics, self.copy_button,
            ]
        )  # fmt: skip

        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.copy_button.changed.connect(self._copy_metrics)
        self.data_consistency.changed.connect(self._on_data_consistency)
        self.qsm_input.changed.connect(self._on_qsm_input)
        self.phase.changed.connect(self._on_phase_layer)
        for w in (self.qsm_input, *self.phase_fields):
            w.changed.connect(self._refresh_problems)
            w.changed.connect(self._clear_metrics)
        for w in (
            self.t1, self.t2, self.flair, self.field, self.mask, self.b0, self.model,
            self.threshold, self.seed_threshold, self.min_lesion, self.min_edge_distance,
        ):  # fmt: skip
            w.changed.connect(self._refresh_problems)
        for w in (
            self.task, self.t1, self.t2, self.flair, self.field, self.mask, self.b0,
            self.model, self.threshold, self.seed_threshold, self.min_lesion,
            self.min_edge_distance, self.mirror, self.window_shifts, self.match_roughness,
            self.reference,
        ):  # fmt: skip
            w.changed.connect(self._clear_metrics)
        self.connect_inputs()

    def reset_choices(self, *_: Any) -> None:
        """Refresh layer and model lists, guess unset layers, re-check the inputs."""
        super().reset_choices()
        role = REFERENCE_ROLE[self.task_name]
        select_by_guess(self.reference, role, self._requests.guess_layer)
        for picker, role in ((self.phase, "phase"), (self.magnitude, "magnitude")):
            select_by_guess(picker, role, self._requests.guess_layer)
        self._refresh_problems()

    def _on_task(self, *_: Any) -> None:
        options = self.current_task.prediction_options
        self.threshold.visible = "threshold" in options
        self.seed_threshold.visible = "seed_threshold" in options
        self.min_lesion.visible = "min_lesion_mm3" in options
        self.min_edge_distance.visible = "min_edge_distance_mm" in options
        self.mirror.visible = "mirror" in options
        self.window_shifts.visible = "window_shifts" in options
        self.match_roughness.visible = "match_roughness" in options
        self.data_consistency.visible = "data_consistency" in options
        self.dc_lambda.visible = "dc_lambda" in options and self.data_consistency.value
        self.run_button.text = RUN_TEXT[self.task_name]
        self.reference.value = NONE_CHOICE
        super()._on_task()
        self._on_qsm_input()

    @property
    def phase_mode(self) -> bool:
        """QSM from phase + magnitude (else from a local field)."""
        return self.current_task.phase_input and self.qsm_input.value == QSM_INPUTS[1]

    def _on_qsm_input(self, *_: Any) -> None:
        task = self.current_task
        self.qsm_input.visible = task.phase_input
        for w in self.phase_fields:
            w.visible = self.phase_mode
        self.field.visible = "local field" in task.role_names and not self.phase_mode
        self._select_default_model()

    def _on_phase_layer(self, *_: Any) -> None:
        """Fill in the echo times the phase layer carries (its file's BIDS sidecar)."""
        layer = selected_layer(self._viewer, self.phase)
        times = None if layer is None else layer.metadata.get(ECHO_TIMES_KEY)
        if times:
            self.te.value = ", ".join(format_number(t, 6) for t in times)

    def _select_default_model(self) -> None:
        """Switch between the task's two shipped defaults (local field, phase) with the input.

        A model the user picked that is neither default is kept.
        """
        task = self.current_task
        if not task.phase_input or not task.is_default_model(self.model.value):
            return
        wanted = task.default_model_for(phase=self.phase_mode)
        if wanted in self.model.choices:
            self.model.value = wanted

    def roles(self) -> dict[str, Any]:
        """Input role -> layer picker; phase mode: phase, magnitude and the optional mask."""
        if self.phase_mode:
            return {"phase": self.phase, "magnitude": self.magnitude, "brain mask": self.mask}
        return super().roles()

    def source_layer(self) -> Layer | None:
        """The layer whose grid results are placed on (the phase in phase mode)."""
        if self.phase_mode:
            return selected_layer(self._viewer, self.phase)
        return super().source_layer()

    def _on_data_consistency(self, *_: Any) -> None:
        options = self.current_task.prediction_options
        self.dc_lambda.visible = "dc_lambda" in options and self.data_consistency.value

    def build_request(self) -> PredictionRequest:
        """The :class:`PredictionRequest` the current fields describe."""
        from napari_fanet.engine.inference import WindowSettings

        settings = WindowSettings(
            roi_size=(self.tile.value,) * 3, overlap=self.overlap.value, device=self.device.value
        )
        return self.request(
            settings=settings,
            threshold=self.threshold.value,
            seed_threshold=self.seed_threshold.value,
            min_lesion_mm3=self.min_lesion.value,
            min_edge_distance_mm=self.min_edge_distance.value,
            mirror=self.mirror.value,
            window_shifts=self.window_shifts.value,
            match_roughness=self.match_roughness.value,
            data_consistency=self._data_consistency_method(),
            dc_lambda=self.dc_lambda.value or "auto",
            phase=None
            if not self.phase_mode
            else self._requests.PhaseOptions(
                self.te.value, self.b0_tesla.value, self.unwrap.value, self.bfr.value
            ),
        )

    def _data_consistency_method(self) -> str:
        """``"none"``, ``"cg"`` or, in phase mode with the total field chosen, ``"smv"``."""
        if not self.data_consistency.value:
            return "none"
        return "smv" if self.phase_mode and self.total_field_dc.value else "cg"

    def _refresh_problems(self, *_: Any) -> list[str]:
        found = self.build_request().problems()
        if not self.model.value:
            found.append(f"no {self.task_name} model available: add a checkpoint")
        self.problems.value = "\n".join(f"• {p}" for p in found)
        self.run_button.enabled = not found and self._worker is None
        return found

    # ------------------------------------------------------------------ running
    def run(self, *_: Any) -> GeneratorWorker | None:
        """Start the prediction in a worker; returns the worker (None if inputs are invalid)."""
        if self._worker is not None or self._refresh_problems():
            return None
        request = self.build_request()
        source = self.source_layer()
        ref_layer = selected_layer(self._viewer, self.reference)
        reference = None if ref_layer is None else np.asarray(ref_layer.data)
        mask_layer = selected_layer(self._viewer, self.mask)
        mask = None if mask_layer is None else np.asarray(mask_layer.data)
        self._cancel.clear()
        worker = thread_worker(_predict_and_compare, start_thread=False, ignore_errors=True)(
            request, reference, mask, self._cancel
        )
        worker.yielded.connect(self._on_progress)
        name = self.model.value
        worker.returned.connect(lambda out: self._on_result(out, request, name, source, ref_layer))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        worker.start()
        return worker

    def cancel(self, *_: Any) -> None:
        """Ask the running prediction to stop after the current tiles; nothing is added."""
        self._cancel.set()

    def _clear_metrics(self, *_: Any) -> None:
        """The inputs changed: the last run's metrics no longer describe them."""
        self.metrics.value = ""
        self.last_comparison = None

    def _on_progress(self, event: Progress) -> None:
        self.progress.value = round(100 * event.fraction)
        if event.total:
            self.progress.label = f"Tiles {event.done}/{event.total}"

    def _on_result(
        self,
        out: tuple[PredictionResult, Comparison | None] | object,
        request: PredictionRequest,
        name: str,
        source: Layer | None,
        ref_layer: Layer | None,
    ) -> None:
        if out is CANCELLED:
            show_info("FA-Net: run cancelled; no layer was added")
            return
        result, comparison = out
        v = self._viewer
        if "probability" in result.outputs:  # segmentation: probability and lesion mask
            add_image(v, result.outputs["probability"], source, f"lesion probability ({name})",
                      colormap="magma", contrast_limits=(0, 1), visible=False)  # fmt: skip
            shown = add_labels(v, result.outputs["mask"], source, f"lesion mask ({name})",
                               opacity=0.6)  # fmt: skip
        elif "field_hz" in result.outputs:  # from phase: the chain's maps too, on a 3D grid
            grid = _spatial_placement(source)
            v.add_image(result.outputs["field_hz"], name=f"total field ({name}, Hz)",
                        colormap="twilight_shifted", visible=False, **grid)  # fmt: skip
            v.add_image(result.outputs["local_field"], name=f"local field ({name}, ppm)",
                        colormap="gray", contrast_limits=(-0.05, 0.05), visible=False,
                        **grid)  # fmt: skip
            v.add_labels(result.outputs["mask"], name=f"brain mask ({name})", opacity=0.3,
                         visible=False, **grid)  # fmt: skip
            shown = v.add_image(result.outputs["chi"], name=f"susceptibility ({name}, ppm)",
                                colormap="gray", contrast_limits=(-0.15, 0.15),
                                **grid)  # fmt: skip
        else:
            shown = add_image(v, result.outputs["chi"], source, f"susceptibility ({name}, ppm)",
                              colormap="gray", contrast_limits=(-0.15, 0.15))  # fmt: skip
        self.last_comparison = comparison
        if comparison is not None:
            if "errors" in comparison.maps:
                add_labels(v, comparison.maps["errors"], ref_layer, f"errors TP/FP/FN ({name})",
                           colormap=error_colormap(), opacity=0.7)  # fmt: skip
            else:
                # Error maps come hidden, clear where the error is small, so the map shows.
                add_image(v, comparison.maps["signed error"], ref_layer,
                          f"signed error ({name}, ppm)", colormap=signed_error_colormap(),
                          contrast_limits=(-0.1, 0.1), opacity=0.8, visible=False)  # fmt: skip
                add_image(v, comparison.maps["absolute error"], ref_layer,
                          f"absolute error ({name}, ppm)", colormap=fading_colormap("magma"),
                          contrast_limits=(0, 0.1), opacity=0.8, visible=False)  # fmt: skip
            self.metrics.value = comparison.text
        v.layers.selection.active = shown  # the result, not the last error map added
        notes = "; ".join(result.report.messages)
        show_info(f"FA-Net: {RUN_TEXT[request.task]} done with {name} on "
                  f"{result.report.device}" + (f" ({notes})" if notes else ""))  # fmt: skip

    def _on_error(self, exc: BaseException) -> None:
        what = "" if isinstance(exc, JobError) else f"{type(exc).__name__}: "
        show_error(f"FA-Net: {what}{exc}")

    def _on_finished(self) -> None:
        self._worker = None
        self.cancel_button.enabled = False
        self.progress.value = 0  # finished, cancelled or failed: nothing is running
        self.progress.label = "Progress"
        self._refresh_problems()

    def _copy_metrics(self, *_: Any) -> None:
        from qtpy.QtGui import QGuiApplication

        QGuiApplication.clipboard().setText(self.metrics.value)


def _spatial_placement(source: Layer) -> dict[str, Any]:
    """:func:`._layers.placement` of a 3D ``source``; of a 4D one, its last three axes.

    A 4D phase layer is ``(echoes, X, Y, Z)``; the chain's maps are ``(X, Y, Z)``. Only the
    scale and translation of the spatial axes carry over (plus the NIfTI metadata).
    """
    grid = placement(source)
    if source.ndim == 3:
        return grid
    return {
        "scale": grid["scale"][-3:],
        "translate": grid["translate"][-3:],
        "metadata": grid["metadata"],
    }


def _predict_and_compare(
    request: PredictionRequest,
    reference: np.ndarray | None,
    mask: np.ndarray | None,
    cancel: threading.Event,
) -> Generator[Progress, None, tuple[PredictionResult, Comparison | None] | object]:
    """Worker body: stream the progress of ``predict_and_compare``; return what it returns."""
    from napari_fanet.evaluation.scoring import predict_and_compare

    def job(
        progress: Callable[[int, int], None], should_stop: Callable[[], bool]
    ) -> tuple[PredictionResult, Comparison | None]:
        def stop() -> bool:
            return should_stop() or cancel.is_set()

        return predict_and_compare(request, reference, mask, progress, stop)

    return (yield from streamed(job))
