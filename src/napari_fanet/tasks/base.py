"""The :class:`Task` interface that the engine, evaluation, CLI and widgets call.

A task owns its input roles and their checks, its preprocessing (defined once, in
:mod:`.preprocessing`), its batches, loss and validation, its scoring and comparison with a
reference, its classical baselines, its default model and its simulation family. Callers look a
task up by name (:func:`napari_fanet.tasks.get_task`) and never branch on which one it is.

The window inference belongs to the engine (a layer above): :meth:`Task.validate` takes it as
``infer``, a function from a ``(C, X, Y, Z)`` network input to the network's
``(1, C_out, X, Y, Z)`` output tensor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_fanet.tasks.cases import EvalCase
from napari_fanet.tasks.roles import InputRole

#: Window inference as the engine runs it: ``(C, X, Y, Z)`` input -> ``(1, C_out, X, Y, Z)``.
Infer = Callable[[np.ndarray], torch.Tensor]
#: A method of an evaluation: a case in, the prediction (mask or map) out.
Method = Callable[[EvalCase], np.ndarray]


class UnusableSetting(ValueError):
    """A training setting the task cannot use; ``setting`` names the ``TrainConfig`` field."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class Task(ABC):
    """One task: segmentation or QSM.

    Attributes
    ----------
    name : str
        The name checkpoints store (``config.task``).
    simulation_name : str
        The simulator's and the ``simulate``/``evaluate`` commands' name (``"ms"``, ``"qsm"``).
    title : str
        For people (``"MS lesion segmentation"``).
    roles : tuple of InputRole
        The inputs, in the order the viewer lists them.
    grid_role : str
        The role whose voxel grid the results are placed on.
    default_model : str
        The shipped model used when none is named.
    primary_metric : tuple of (str, bool)
        Validation metric that picks ``best.pt``, and whether larger is better.
    evaluation_metrics, paired_metrics : tuple of str
        Columns of the ``evaluate`` table, and the metrics compared between two models.
    prediction_options : tuple of str
        Keyword options of the engine's prediction function for this task.
    ablations : dict
        Extra network variants an evaluation scores: name suffix -> prediction options.
    output : str
        The prediction output an evaluation scores (``"mask"``, ``"chi"``).
    phase_input : bool
        Whether the task can also start from multi-echo phase (:data:`~.roles.PHASE_ROLES`).
    default_phase_model : str or None
        The shipped model used from phase when none is named (``phase_input`` tasks).
    lesion_losses : bool
        Whether the task has lesions, so that training can add the per-lesion loss
        (``TrainConfig.blob_weight``) and scale the lesion contrast
        (``TrainConfig.lesion_contrast``).
    """

    name: str
    simulation_name: str
    title: str
    roles: tuple[InputRole, ...]
    grid_role: str
    default_model: str
    primary_metric: tuple[str, bool]
    evaluation_metrics: tuple[str, ...]
    paired_metrics: tuple[str, ...]
    prediction_options: tuple[str, ...]
    ablations: dict[str, dict[str, Any]]
    output: str
    phase_input: bool = False
    default_phase_model: str | None = None
    lesion_losses: bool = False

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    # ------------------------------------------------------------------ names and models
    def default_model_for(self, *, phase: bool) -> str:
        """The shipped model used when none is named: from phase, or from the usual inputs.

        ``phase=True`` gives :attr:`default_phase_model` where the task has one, else
        :attr:`default_model`.
        """
        return (self.default_phase_model if phase else None) or self.default_model

    def is_default_model(self, name: str | None) -> bool:
        """Whether ``name`` is one of this task's shipped defaults (either input)."""
        return name in {self.default_model, self.default_phase_model} - {None}

    @property
    def families(self) -> tuple[str, ...]:
        """Simulation families of this task (:data:`napari_fanet.simulation.dataset.FAMILIES`)."""
        from napari_fanet.simulation.dataset import FAMILIES

        return tuple(FAMILIES[self.simulation_name])

    def check_family(self, family: str) -> str:
        """``family`` if the simulator has it for this task; ``ValueError`` otherwise."""
        from napari_fanet.simulation.dataset import check_family

        return check_family(self.simulation_name, family)

    def owns(self, model: nn.Module) -> bool:
        """Whether ``model`` (a network with a ``config``) was built for this task."""
        return getattr(getattr(model, "config", None), "task", None) == self.name

    def check_model(self, model: nn.Module) -> None:
        """``ValueError`` naming both tasks when ``model`` is not for this one."""
        if not self.owns(model):
            raise ValueError(
                f"model {model.config.name!r} is a {model.config.task} model, not {self.name}"
            )

    # ------------------------------------------------------------------ inputs
    @property
    def role_names(self) -> tuple[str, ...]:
        """Names of :attr:`roles`, in order."""
        return tuple(r.name for r in self.roles)

    def optional_roles(self, *, missing_modalities: bool = False) -> tuple[str, ...]:
        """Roles that may be left empty; with ``missing_modalities`` also T1 and T2."""
        return tuple(
            r.name
            for r in self.roles
            if not r.required or (missing_modalities and r.dropout_optional)
        )

    @property
    def has_optional_modalities(self) -> bool:
        """Whether some roles are optional only for models trained with modality dropout."""
        return any(r.dropout_optional for r in self.roles)

    def optional_roles_for(self, checkpoint: dict) -> tuple[str, ...]:
        """Roles a model of ``checkpoint`` can do without (T1/T2 after modality dropout)."""
        dropout = bool((checkpoint.get("extra") or {}).get("modality_dropout", False))
        return self.optional_roles(missing_modalities=dropout)

    @abstractmethod
    def check_inputs(self, arrays: Mapping[str, Any], checkpoint: dict) -> None:
        """``ValueError`` when the inputs by role cannot be predicted with ``checkpoint``."""

    # ------------------------------------------------------------------ subjects
    def list_subjects(self, root: str | Path) -> list[Path]:
        """Subject folders of this task under ``root`` (:mod:`.subjects` layout)."""
        from napari_fanet.tasks.subjects import list_subjects

        return list_subjects(root, self.name)

    @abstractmethod
    def load_subject(self, folder: str | Path) -> Any:
        """A training subject read from ``folder``."""

    @abstractmethod
    def owns_subject(self, subject: Any) -> bool:
        """Whether ``subject`` is a training subject of this task."""

    @abstractmethod
    def simulated_subject(self, seed: int, voxel_size: Sequence[float], family: str) -> Any:
        """A training subject simulated from ``seed``."""

    def simulate_subjects(
        self,
        n: int,
        first_seed: int,
        voxel_size: Sequence[float] = (2.0, 2.0, 2.0),
        *,
        family: str = "phantom",
    ) -> list[Any]:
        """``n`` simulated training subjects with seeds ``first_seed + i``."""
        return [self.simulated_subject(first_seed + i, voxel_size, family) for i in range(n)]

    # ------------------------------------------------------------------ training
    def check_training_config(self, config: Any) -> None:
        """Refuse training settings this task cannot use.

        Raises
        ------
        UnusableSetting
            ``config.blob_weight > 0`` or ``config.lesion_contrast`` set for a task without
            lesions.
        """
        if self.lesion_losses:
            return
        weight = float(getattr(config, "blob_weight", 0.0))
        if weight > 0:
            raise UnusableSetting(
                "blob_weight",
                f"a per-lesion loss needs a task with lesions (segmentation), got a {self.name} "
                f"model (blob_weight={weight:g})",
            )
        contrast = getattr(config, "lesion_contrast", None)
        if contrast is not None:
            raise UnusableSetting(
                "lesion_contrast",
                "lesion-contrast augmentation needs a task with lesions (segmentation), got a "
                f"{self.name} model (lesion_contrast={tuple(contrast)})",
            )

    @abstractmethod
    def prepare_training(
        self, train: Sequence[Any], val: Sequence[Any], extra: dict, config: Any
    ) -> tuple[list[Any], list[Any]]:
        """Subjects as the batches and validation use them; records what prediction needs.

        ``extra`` is the checkpoint's ``extra`` dict; this adds the task's entries (QSM: the
        preprocessing scales; segmentation: whether modality dropout was used).
        """

    @abstractmethod
    def batch(
        self, subjects: Sequence[Any], rng: np.random.Generator, config: Any, extra: dict
    ) -> dict[str, torch.Tensor]:
        """A training batch of random patches (tensors by name)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of ``model`` on ``batch``."""

    @abstractmethod
    def validate(
        self, subjects: Sequence[Any], infer: Infer, extra: dict, config: Any
    ) -> dict[str, float]:
        """Mean validation metrics over whole subjects (``val_loss`` and the primary metric)."""

    # ------------------------------------------------------------------ evaluation
    @abstractmethod
    def simulated_case(self, seed: int, voxel_size: Sequence[float]) -> EvalCase:
        """An evaluation case simulated from ``seed``."""

    @abstractmethod
    def tune_baselines(self, cases: Sequence[EvalCase]) -> dict[str, float]:
        """Parameters of the classical baselines, tuned on (validation) ``cases``."""

    @abstractmethod
    def baselines(self, params: dict[str, float]) -> dict[str, Method]:
        """Each classical baseline as ``method(case) -> prediction``."""

    @abstractmethod
    def score(self, prediction: np.ndarray, case: EvalCase) -> dict[str, float]:
        """Metrics of one prediction against the case's reference (EVALUATION.md)."""

    def case_scores(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """The metrics of a :meth:`compare` an evaluation row keeps (:meth:`score`'s keys)."""
        return dict(metrics)

    def case_inputs(self, case: EvalCase) -> dict[str, Any]:
        """The case's input Volumes by role name (what the prediction functions take)."""
        return {r.name: case.inputs[r.file] for r in self.roles if r.file in case.inputs}

    def option_problems(self, options: Mapping[str, Any]) -> list[str]:
        """Problems with prediction options (by :attr:`prediction_options` name), as sentences.

        The widget shows them before anything runs; empty when every option is usable.
        """
        return []

    def case_options(self, case: EvalCase) -> dict[str, Any]:
        """Prediction options a case sets (QSM: its B0 direction)."""
        return {}

    def case_prediction(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The prediction output an evaluation scores (:attr:`output`)."""
        return outputs[self.output]

    @abstractmethod
    def compare(
        self, outputs: Mapping[str, np.ndarray], reference: np.ndarray, mask: np.ndarray | None
    ) -> Any:
        """The :class:`~.comparison.Comparison` of a prediction's outputs with a reference.

        A task may take keyword options (segmentation: ``min_size``), which
        :func:`~napari_fanet.evaluation.scoring.run_and_score` passes as ``compare_options``.
        """
