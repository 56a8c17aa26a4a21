"""The part every FA-Net dock widget shares: task, input layers, B0 direction and model.

:class:`TaskInputs` builds those fields, guesses the layers from their names, fills the B0
direction from layer metadata, adds checkpoint files to the model list, and turns the fields into
a :class:`~napari_fanet.engine.prediction_request.PredictionRequest`. Subclasses add their own
fields and buttons (``extend``) and call :meth:`connect_inputs` at the end of ``__init__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FileEdit, LineEdit
from napari.layers import Image, Labels
from napari.utils.notifications import show_error

from napari_fanet._widgets._layers import layer_picker, select_by_guess, selected_layer
from napari_fanet.io.b0_direction import B0Direction, parse_b0_text
from napari_fanet.io.layers import LayerVolume

if TYPE_CHECKING:
    from napari.layers import Layer

    from napari_fanet.engine.model_catalog import ModelEntry
    from napari_fanet.engine.prediction_request import PredictionRequest
    from napari_fanet.tasks import Task

TASKS = {"MS lesion segmentation": "segmentation", "QSM reconstruction": "qsm"}
IMAGE_OR_LABELS = (Image, Labels)


class TaskInputs(Container):
    """Base dock widget with the task, input-layer, B0 and model fields.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are offered.
    title : str
        Prefix of notifications (the widget's name).
    model_tooltip : str
        Tooltip of the model list.
    """

    def __init__(self, napari_viewer: Any, *, title: str, model_tooltip: str) -> None:
        super().__init__(labels=True, scrollable=True)
        from napari_fanet.engine import model_catalog, prediction_request

        self._viewer = napari_viewer
        self._catalog = model_catalog
        self._requests = prediction_request
        self.title = title
        v = napari_viewer
        self.task = ComboBox(label="Task", choices=list(TASKS), tooltip="What to compute.")
        self.t1 = layer_picker(
            v,
            "T1",
            optional=True,
            tooltip="T1-weighted image on the FLAIR's grid (optional with a model trained for "
            "missing modalities; (none) leaves it out).",
        )
        self.t2 = layer_picker(
            v,
            "T2",
            optional=True,
            tooltip="T2-weighted image on the FLAIR's grid (optional with a model trained for "
            "missing modalities; (none) leaves it out).",
        )
        self.flair = layer_picker(
            v,
            "FLAIR",
            tooltip="FLAIR image (3D Image layer), skull-stripped or with a brain mask: results "
            "are placed on its grid.",
        )
        self.field = layer_picker(
            v, "Local field", tooltip="Background-removed local field in ppm of B0 (3D Image)."
        )
        self.mask = layer_picker(
            v,
            "Brain mask",
            IMAGE_OR_LABELS,
            optional=True,
            tooltip="Brain mask (non-zero inside). Required for QSM; for segmentation, "
            "(none) uses the non-zero FLAIR voxels (skull-stripped input; a FLAIR that does not "
            "look skull-stripped is refused).",
        )
        self.b0 = LineEdit(
            label="B0 direction",
            value="0, 0, 1",
            tooltip="QSM: main-field direction in the layer's array axes (x, y, z); filled "
            "from the layer's metadata when the file provides it.",
        )
        self._model_tooltip = model_tooltip
        self.model = ComboBox(label="Model", choices=self._model_choices, tooltip=model_tooltip)
        self.checkpoint = FileEdit(
            label="Add checkpoint",
            mode="r",
            filter="*.pt",
            tooltip="A checkpoint written by napari-fanet train; it joins the model list.",
        )

    @property
    def native(self) -> Any:
        """The scroll area around the fields: what napari docks.

        magicgui's ``native`` of a scrollable container is the widget inside the scroll area,
        and napari docks ``native``: without this the scroll area would be dropped and a long
        dock would stretch the window past a laptop screen. :attr:`form` holds the fields.
        """
        return self.root_native_widget

    @property
    def form(self) -> Any:
        """The QWidget inside the scroll area whose layout holds the fields."""
        return self.root_native_widget.widget()

    # ------------------------------------------------------------------ fields
    def input_fields(self) -> list[Any]:
        """The shared fields, in display order (for ``extend``)."""
        return [
            self.task, self.t1, self.t2, self.flair, self.field, self.mask, self.b0,
            self.model, self.checkpoint,
        ]  # fmt: skip

    def connect_inputs(self) -> None:
        """Wire the shared fields and the viewer's layer list; call once, last in __init__."""
        self.task.changed.connect(self._on_task)
        self.checkpoint.changed.connect(self._on_checkpoint)
        self.field.changed.connect(self._fill_b0)
        self.model.changed.connect(self._show_model_card)
        for event in (self._viewer.layers.events.inserted, self._viewer.layers.events.removed):
            event.connect(self.reset_choices)
        unsubscribe = self._catalog.subscribe(self._on_catalog_changed)
        self.native.destroyed.connect(lambda *_: unsubscribe())
        self.reset_choices()
        self._on_task()
        self._show_model_card()
        self._fit_screen()

    def _fit_screen(self) -> None:
        """Let the dock shrink to a quarter of the screen (it scrolls), but not further.

        napari squeezes a dock added below another one to its minimum height; a quarter of the
        screen keeps a few fields visible in each of up to three docks on a 768-pixel screen.
        """
        from qtpy.QtGui import QGuiApplication

        screen = QGuiApplication.primaryScreen()
        quarter = 200 if screen is None else screen.availableGeometry().height() // 4
        self.native.setMinimumHeight(min(self.form.sizeHint().height(), quarter))

    @property
    def task_name(self) -> str:
        """``"segmentation"`` or ``"qsm"``."""
        return TASKS[self.task.value]

    @property
    def current_task(self) -> Task:
        """The :class:`~napari_fanet.tasks.Task` the task field names."""
        from napari_fanet.tasks import get_task

        return get_task(self.task_name)

    def role_pickers(self) -> dict[str, ComboBox]:
        """Every input role's layer picker, by role name (:mod:`napari_fanet.tasks.roles`)."""
        return {
            "T1": self.t1, "T2": self.t2, "FLAIR": self.flair, "local field": self.field,
            "brain mask": self.mask,
        }  # fmt: skip

    def model_entries(self) -> dict[str, ModelEntry]:
        """The models offered for the current task, by name (override to filter)."""
        return {e.name: e for e in self._catalog.available_models(self.task_name)}

    def _model_choices(self, _: Any = None) -> list[str]:
        return list(self.model_entries())

    def roles(self) -> dict[str, ComboBox]:
        """Input role -> layer picker, for the current task (its roles, in order)."""
        pickers = self.role_pickers()
        return {role: pickers[role] for role in self.current_task.role_names}

    def source_layer(self) -> Layer | None:
        """The layer whose grid results are placed on (the FLAIR, or the local field)."""
        return selected_layer(self._viewer, self.role_pickers()[self.current_task.grid_role])

    def request(self, **kwargs: Any) -> PredictionRequest:
        """The :class:`PredictionRequest` of the current fields (``kwargs``: its options)."""
        inputs = {}
        for role, picker in self.roles().items():
            layer = selected_layer(self._viewer, picker)
            inputs[role] = None if layer is None else LayerVolume.of_layer(layer)
        b0, problems = None, ()
        if "b0_dir" in self.current_task.prediction_options:
            try:
                b0 = self.b0_direction()
            except ValueError as exc:  # listed by the request's problems()
                problems = (str(exc),)
        entry = self.model_entries().get(self.model.value or "")
        model = "" if entry is None else str(entry.path)
        return self._requests.PredictionRequest(
            self.task_name, inputs, model, b0_dir=b0, field_problems=problems, **kwargs
        )

    def b0_direction(self) -> B0Direction:
        """The B0 direction typed in the field; ValueError says why the text is not one."""
        return parse_b0_text(self.b0.value)

    # ------------------------------------------------------------------ reactions
    def reset_choices(self, *_: Any) -> None:
        """Refresh layer and model lists, then guess unset layers from their names."""
        super().reset_choices()
        for picker, role in (
            (self.t1, "T1"), (self.t2, "T2"), (self.flair, "FLAIR"),
            (self.field, "local field"), (self.mask, "brain mask"),
        ):  # fmt: skip
            select_by_guess(picker, role, self._requests.guess_layer)

    def _on_task(self, *_: Any) -> None:
        task = self.current_task
        for role, picker in self.role_pickers().items():
            picker.visible = role in task.role_names
        self.b0.visible = "b0_dir" in task.prediction_options
        self.reset_choices()
        self._fill_b0()

    def _fill_b0(self, *_: Any) -> None:
        layer = selected_layer(self._viewer, self.field)
        if layer is not None:
            b0 = self._requests.b0_direction_from_metadata(layer.metadata)
            if b0 is not None:
                self.b0.value = ", ".join(f"{c:.4g}" for c in b0)

    def _on_catalog_changed(self, entry: ModelEntry) -> None:
        """List a newly added model; select it if it is for this task and offered here."""
        self.model.reset_choices()
        from napari_fanet.tasks import get_task

        if get_task(entry.task) is self.current_task and entry.name in self.model.choices:
            self.model.value = entry.name

    def _show_model_card(self, *_: Any) -> None:
        entry = self.model_entries().get(self.model.value or "")
        card = "" if entry is None else "\n\n" + self._catalog.card_summary(entry)
        self.model.tooltip = self._model_tooltip + card

    def _on_checkpoint(self, *_: Any) -> None:
        path = self.checkpoint.value
        if not path or not path.is_file():
            return
        try:
            entry = self._catalog.add_model(path)
        except (OSError, ValueError) as exc:
            show_error(f"{self.title}: cannot use {path.name}: {exc}")
            return
        self.task.value = {t: k for k, t in TASKS.items()}[entry.task]
        self.model.reset_choices()
        if entry.name not in self.model.choices:
            show_error(f"{self.title}: {path.name} cannot be used here (see the model tooltip)")
            return
        self.model.value = entry.name
