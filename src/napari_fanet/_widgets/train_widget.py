"""The Train dock widget: fine-tune FA-Net on the user's annotations in a child process.

Layout and wiring only. Start exports the chosen layers to a run folder
(:mod:`napari_fanet.engine.training_export`) and launches ``python -m napari_fanet train`` as a
child process (:class:`napari_fanet.engine.training_run.TrainingRun`); a napari ``thread_worker``
reads its events into the progress bar, the loss curve and the log. Stop ends the run gracefully
(the child finishes its step and keeps ``last.pt``); closing the widget or napari stops the
child. A finished or stopped run is published to the model catalog with a model card, so it
appears (and is selected) in the FA-Net widget.

Annotation helpers: "Copy to annotation layer" makes an editable Labels copy of a predicted
mask; with the annotation layer selected, Ctrl+click (Cmd+click on macOS) removes the lesion
under the cursor and Ctrl+Shift+click keeps only that lesion (a 26-connected component of one
label value); each is one undoable edit. Use them in pan/zoom mode: in paint mode the brush also
paints where you click. In a 3D view the first labelled voxel along the click's ray is used.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    FileEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    TextEdit,
)
from napari.layers import Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from napari_fanet._widgets._inputs import IMAGE_OR_LABELS, TaskInputs
from napari_fanet._widgets._jobs import JobError
from napari_fanet._widgets._layers import (
    add_labels,
    device_picker,
    folded_section,
    layer_picker,
    message_label,
    select_by_guess,
    selected_layer,
)
from napari_fanet._widgets._lesion_clicks import CLICK_HELP, lesion_click
from napari_fanet._widgets._loss_plot import LossPlot
from napari_fanet.io.layers import LayerVolume

if TYPE_CHECKING:
    from napari.layers import Layer
    from napari.qt.threading import GeneratorWorker

    from napari_fanet.engine.model_catalog import ModelEntry
    from napari_fanet.engine.training_run import RunOutcome, TrainingRun, TrainRequest

TITLE = "FA-Net training"
NEW_MODEL = "(new model, random weights)"
LEARNING_RATES = [
    ("1e-3 (training a new model)", 1e-3),
    ("3e-4", 3e-4),
    ("1e-4 (fine-tuning)", 1e-4),
    ("3e-5", 3e-5),
    ("1e-5", 1e-5),
]
LOG_LINES = 500


class TrainWidget(TaskInputs):
    """Dock widget: export layers and an annotation, fine-tune a model, watch it, publish it."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer, title=TITLE, model_tooltip="Weights to fine-tune.")
        from napari_fanet.engine import (
            annotations,
            model_card,
            prediction_request,
            training_export,
            training_run,
        )

        self._annotations = annotations
        self._requests = prediction_request
        self._export = training_export
        self._training = training_run
        self._cards = model_card
        self._worker: GeneratorWorker | None = None
        self._run: TrainingRun | None = None
        self._holder: dict[str, Any] = {}  # run and worker, for the destroyed/quit handlers
        self._click_layer: Layer | None = None
        self._pending: tuple[str, str] = ("", "")  # name and origin of the model being trained
        self.last_outcome: RunOutcome | None = None
        self.last_model: ModelEntry | None = None

        v = napari_viewer
        self.model.label = "Starting model"
        self.chi = layer_picker(
            v, "Reference χ", tooltip="Reference susceptibility (ppm) the model should learn."
        )
        self.annotation = layer_picker(
            v,
            "Annotation",
            (Labels,),
            tooltip="Labels layer with your corrected mask or scribbles, on the FLAIR grid.\n"
            + CLICK_HELP,
        )
        mode_help = "\n".join(annotations.MODE_HELP[m] for m in annotations.ANNOTATION_MODES)
        self.mode = ComboBox(
            label="Annotation mode", choices=list(annotations.ANNOTATION_MODES), tooltip=mode_help
        )
        self.prediction = layer_picker(
            v,
            "Prediction",
            IMAGE_OR_LABELS,
            optional=True,
            tooltip="A predicted lesion mask (or probability map) to start the annotation from.",
        )
        self.copy_button = PushButton(
            text="Copy prediction to annotation layer",
            tooltip="Add an editable Labels copy of the prediction (lesion = 1) on its grid and "
            "choose it as the annotation.",
        )
        self.click_help = message_label(CLICK_HELP)
        self.steps = SpinBox(
            label="Steps", value=200, min=1, max=100_000, step=50, tooltip="Optimiser steps."
        )
        self.lr = ComboBox(
            label="Learning rate",
            choices=LEARNING_RATES,
            value=1e-4,
            tooltip="Adam learning rate, divided by 10 at 50, 70 and 90% of the steps.",
        )
        self.batch_size = SpinBox(label="Batch size", value=2, min=1, max=64, tooltip="Patches.")
        self.patch = SpinBox(
            label="Patch size",
            value=64,
            min=16,
            max=256,
            step=16,
            tooltip="Edge of the cubic training patches in voxels (multiple of 16).",
        )
        self.val_every = SpinBox(
            label="Validate every",
            value=50,
            min=0,
            max=100_000,
            tooltip="Validate (and save last.pt, best.pt) every N steps; 0: only at the end.",
        )
        self.device = device_picker(
            "auto: CUDA, then Apple MPS, then CPU. The GPU is released when it ends."
        )
        self.threads = SpinBox(
            label="CPU threads",
            value=max(1, (os.cpu_count() or 2) - 1),
            min=1,
            max=max(1, os.cpu_count() or 1),
            tooltip="Torch threads of the training process (leave one for the viewer).",
        )
        self.validation = ComboBox(
            label="Validation",
            choices=list(training_export.VALIDATION_CHOICES),
            tooltip="none; same case: the exported case (shows the fit to your annotation); "
            "folder: subjects in the trainer's layout (see napari_fanet.tasks.subjects).",
        )
        self.val_folder = FileEdit(
            label="Validation folder", mode="d", tooltip="Folder of validation subjects."
        )
        self.runs_root = FileEdit(
            label="Runs folder",
            mode="d",
            value=training_export.default_runs_root(),
            tooltip="Each run gets a new sub-folder <date-time> with the exported layers, the "
            "log and the checkpoints ($NAPARI_FANET_RUNS sets the default).",
        )
        self.problems = message_label()
        self.start_button = PushButton(text="Start training", tooltip="Export and train.")
        self.stop_button = PushButton(
            text="Stop", enabled=False, tooltip="Stop after the current step, keeping last.pt."
        )
        self.progress = ProgressBar(label="Progress", min=0, max=100, value=0)
        self.status = message_label("idle", label="Status")
        self.plot = LossPlot()
        self.log = TextEdit(label="Log", value="")
        self.log.read_only = True
        self.log.native.document().setMaximumBlockCount(LOG_LINES)
        self.show_advanced, self.advanced = folded_section(
            "Advanced options",
            [self.lr, self.batch_size, self.patch, self.val_every, self.device, self.threads],
        )
        self.extend(
            [
                self.task, self.t1, self.t2, self.flair, self.field, self.chi, self.b0,
                self.mask, self.annotation, self.mode, self.prediction, self.copy_button,
                self.click_help, self.model, self.checkpoint, self.steps,
                self.show_advanced, self.advanced,
                self.validation, self.val_folder, self.runs_root, self.problems,
                self.start_button, self.stop_button, self.progress, self.status, self.plot,
                self.log,
            ]
        )  # fmt: skip

        self.model.changed.connect(self._on_start_model)
        self.validation.changed.connect(self._on_validation)
        self.annotation.changed.connect(self._attach_clicks)
        self.copy_button.changed.connect(self.copy_prediction)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        for w in (self.t1, self.t2, self.flair, self.field, self.chi, self.mask, self.annotation):
            w.changed.connect(self._refresh_problems)
        holder = self._holder
        self.native.destroyed.connect(lambda *_: _shutdown(holder))
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(lambda: _shutdown(holder))
        self.connect_inputs()
        self._on_validation()

    # ------------------------------------------------------------------ state
    def _model_choices(self, _: Any = None) -> list[str]:
        return [*self.model_entries(), NEW_MODEL]

    def reset_choices(self, *_: Any) -> None:
        """Refresh layer and model lists, guess unset layers, re-check the inputs."""
        super().reset_choices()
        select_by_guess(self.chi, "susceptibility reference", self._requests.guess_layer)
        self._attach_clicks()
        self._refresh_problems()

    def _on_task(self, *_: Any) -> None:
        shown = self._reference_fields()[self.task_name]
        for fields in self._reference_fields().values():
            for w in fields:
                w.visible = w in shown
        super()._on_task()
        last = self._catalog.last_trained(self.task_name)
        existing = [c for c in self.model.choices if c != NEW_MODEL]
        if last is not None and last.name in existing:
            self.model.value = last.name
        elif self.model.value == NEW_MODEL and existing:
            self.model.value = existing[0]  # fine-tune a real model unless asked otherwise
        self._on_start_model()

    def _on_validation(self, *_: Any) -> None:
        self.val_folder.visible = self.validation.value == self._export.VALIDATION_FOLDER

    def _on_start_model(self, *_: Any) -> None:
        new = self.model.value == NEW_MODEL
        if new and self.lr.value == 1e-4:
            self.lr.value = 1e-3
        elif not new and self.lr.value == 1e-3:
            self.lr.value = 1e-4
        self._refresh_problems()  # T1 and T2 are optional for some starting models only

    def _start_model_file(self) -> str:
        """The starting model's checkpoint file, or ``""`` for a new model."""
        entry = self.model_entries().get(self.model.value)
        return "" if entry is None else str(entry.path)

    def _show_model_card(self, *_: Any) -> None:
        super()._show_model_card()
        if self.model.value == NEW_MODEL:
            self.model.tooltip = "A new model with random weights (train thousands of steps)."

    def _refresh_problems(self, *_: Any) -> list[str]:
        found = []
        for picker, what in self._required().items():
            if selected_layer(self._viewer, picker) is None:
                found.append(f"choose a {what} layer")
        self.problems.value = "\n".join(f"• {p}" for p in found)
        self.start_button.enabled = not found and self._worker is None
        return found

    def _reference_fields(self) -> dict[str, tuple[Any, ...]]:
        """What each task trains from, beside its inputs: an annotation, or a reference map."""
        return {
            "segmentation": (self.annotation, self.mode, self.prediction, self.copy_button,
                             self.click_help),
            "qsm": (self.chi,),
        }  # fmt: skip

    def _required(self) -> dict[Any, str]:
        """Picker -> what to ask for: the task's required inputs, then what it trains from.

        T1 and T2 are optional when the starting model was trained for missing modalities.
        """
        task = self.current_task
        accepts_missing = task.has_optional_modalities and (
            self._requests.model_accepts_missing_modalities(self._start_model_file())
        )
        optional = task.optional_roles(missing_modalities=accepts_missing)
        inputs = {picker: role for role, picker in self.roles().items() if role not in optional}
        targets = {
            "segmentation": {self.annotation: "annotation (Labels)"},
            "qsm": {self.chi: "reference susceptibility"},
        }[self.task_name]
        return {**inputs, **targets}

    # ------------------------------------------------------------------ helpers
    def copy_prediction(self, *_: Any) -> Layer | None:
        """Add an editable Labels copy of the prediction and choose it as the annotation."""
        source = selected_layer(self._viewer, self.prediction)
        if source is None:
            show_error(f"{TITLE}: choose a prediction layer to copy")
            return None
        try:
            data = self._annotations.mask_to_annotation(np.asarray(source.data), self.mode.value)
        except ValueError as exc:
            show_error(f"{TITLE}: cannot copy {source.name!r}: {exc}")
            return None
        layer = add_labels(self._viewer, data, source, f"annotation ({source.name})", opacity=0.6)
        self.annotation.value = layer.name
        return layer

    def _attach_clicks(self, *_: Any) -> None:
        layer = selected_layer(self._viewer, self.annotation)
        if layer is self._click_layer:
            return
        previous = self._click_layer
        if previous is not None and lesion_click in previous.mouse_drag_callbacks:
            previous.mouse_drag_callbacks.remove(lesion_click)
        if layer is not None and lesion_click not in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.append(lesion_click)
        self._click_layer = layer

    # ------------------------------------------------------------------ running
    def _layer_array(self, picker: ComboBox) -> LayerVolume | None:
        layer = selected_layer(self._viewer, picker)
        if layer is None:
            return None
        return LayerVolume.of_layer(layer)

    def _export_case(self, run_dir: Path) -> dict:
        export = {"segmentation": self._export_seg_case, "qsm": self._export_qsm_case}
        return export[self.task_name](run_dir)

    def _export_seg_case(self, run_dir: Path) -> dict:
        a = self._layer_array
        return self._export.export_seg_case(
            run_dir, a(self.t1), a(self.t2), a(self.flair), a(self.annotation),
            self.mode.value, a(self.mask), model=self._start_model_file(),
        )  # fmt: skip

    def _export_qsm_case(self, run_dir: Path) -> dict:
        a = self._layer_array
        b0 = self.b0_direction()  # ValueError: shown by the caller like any export failure
        return self._export.export_qsm_case(run_dir, a(self.field), a(self.chi), a(self.mask), b0)

    def _request(self, run_dir: Path) -> tuple[TrainRequest, str, str]:
        """The TrainRequest, the starting model's description and the new model's name."""
        name = self.model.value
        entry = self.model_entries().get(name)
        if name != NEW_MODEL and entry is None:
            raise ValueError(f"starting model {name!r} is not available any more")
        val = self._export.validation_folder(
            self.validation.value, run_dir / "data", self.task_name, self.val_folder.value
        )
        kwargs = dict(
            data=run_dir / "data", out=run_dir, val=val, steps=self.steps.value,
            lr=float(self.lr.value), batch_size=self.batch_size.value,
            patch_size=(self.patch.value,) * 3, val_every=self.val_every.value,
            device=self.device.value, threads=self.threads.value,
        )  # fmt: skip
        if entry is None:
            base = self.current_task.default_model
            request = self._training.TrainRequest(model=base, **kwargs)
            start = f"a new `{base}` model (random weights)"
        else:
            from napari_fanet.models import read_checkpoint

            base = read_checkpoint(entry.path)["config"]["name"]
            request = self._training.TrainRequest(init=entry.path, **kwargs)
            start = f"`{entry.name}` (`{entry.path}`)"
        new_name = self._cards.default_model_name(base, run_dir, fine_tuned=entry is not None)
        return request, start, new_name

    def start(self, *_: Any) -> GeneratorWorker | None:
        """Export the layers to a new run folder and start training; returns the worker."""
        if self._worker is not None or self._refresh_problems():
            return None
        try:
            run_dir = self._export.new_run_folder(self.runs_root.value)
        except OSError as exc:
            show_error(f"{TITLE}: cannot create a run folder in {self.runs_root.value}: {exc}")
            return None
        try:
            request, start_model, name = self._request(run_dir)  # checks the settings first
            self._export_case(run_dir)
            run = self._training.TrainingRun(request)
            run.start()
        except Exception as exc:  # any failure here (a bad layer, an unreadable model) is shown
            _remove_if_empty(run_dir)
            what = "" if isinstance(exc, (OSError, ValueError)) else f"{type(exc).__name__}: "
            self.problems.value = f"• {what}{exc}"
            self.status.value = "not started"
            show_error(f"{TITLE}: {what}{exc}")
            return None
        self._run = self._holder["run"] = run
        self._pending = (name, start_model)
        worker = thread_worker(_follow, start_thread=False, ignore_errors=True)(run)
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_outcome)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = self._holder["worker"] = worker
        self.plot.clear()
        self.log.native.clear()
        self._log_line(f"run folder: {run_dir}")
        self.progress.max, self.progress.value = request.steps, 0
        self.status.value = f"starting ({run_dir.name})"
        self.start_button.enabled = False
        self.stop_button.enabled = True
        worker.start()
        return worker

    def stop(self, *_: Any) -> None:
        """Stop the run after its current step; last.pt is kept."""
        if self._run is not None and self._run.running:
            self._run.stop()
            self.status.value = "stopping after the current step..."
            self.stop_button.enabled = False

    def _log_line(self, text: str) -> None:
        self.log.native.append(text)

    def _on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self.progress.max = event["steps"]
            self.progress.value = event.get("step", 0)
            self.status.value = f"training on {event.get('device')}"
        elif kind == "step":
            self.progress.value = event["step"]
            self.progress.label = f"Step {event['step']}/{event['steps']}"
        self.plot.add_event(event)
        self._log_line(self._training.format_event(event))

    def _on_outcome(self, outcome: RunOutcome) -> None:
        self.last_outcome = outcome
        name, start_model = self._pending
        if outcome.status == "failed":
            self.status.value = "failed (see the log)"
            tail = "\n".join(outcome.log_tail[-8:])
            show_error(f"{TITLE}: {outcome.message}\n{tail}")
            return
        if outcome.checkpoint is None:
            self.status.value = outcome.message
            show_info(f"{TITLE}: {outcome.message}; no model was added")
            return
        try:
            entry = self._cards.publish_model(
                outcome, name, command=self._run.command, start_model=start_model
            )
        except (OSError, ValueError) as exc:
            self.status.value = "could not publish the model"
            show_error(f"{TITLE}: cannot add the trained model: {exc}")
            return
        self.last_model = entry
        self.status.value = f"{outcome.status}: model {entry.name}"
        self._log_line(f"model {entry.name}: {entry.path} (card {entry.card})")
        show_info(f"{TITLE}: {outcome.message}; model {entry.name!r} added to the model lists")

    def _on_error(self, exc: BaseException) -> None:
        what = "" if isinstance(exc, JobError) else f"{type(exc).__name__}: "
        self.status.value = "error (see the log)"
        self._log_line(f"error: {what}{exc}")
        show_error(f"{TITLE}: {what}{exc}")

    def _on_finished(self) -> None:
        self._worker = None
        self._holder.clear()
        self.stop_button.enabled = False
        self.progress.label = "Progress"
        self._refresh_problems()


def _follow(run: TrainingRun) -> Generator[dict, None, RunOutcome]:
    """Worker body: the child's events; its outcome is the worker's result."""
    try:
        return (yield from run.events())
    except RuntimeError as exc:  # superqt would swallow it (see _jobs)
        raise JobError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        run.shutdown()  # no-op when the child has exited; else (worker quit, error) stop it


def _remove_if_empty(folder: Path) -> None:
    """Remove a run folder that an aborted start left empty (nothing is lost)."""
    try:
        folder.rmdir()
    except OSError:
        pass


def _shutdown(holder: dict[str, Any]) -> None:
    """Stop the child when the widget or napari goes away; its worker reports to no one."""
    worker = holder.get("worker")
    if worker is not None:
        for signal in (worker.yielded, worker.returned, worker.errored, worker.finished):
            try:
                signal.disconnect()
            except (RuntimeError, TypeError):  # nothing connected, or already deleted
                pass
    run = holder.get("run")
    if run is not None:
        run.shutdown()
