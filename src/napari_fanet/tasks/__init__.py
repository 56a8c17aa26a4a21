"""One :class:`Task` object per task, looked up by name.

>>> get_task("ms") is get_task("segmentation") is SEGMENTATION
True

Layer: below the engine (which runs the windows, the training loop and the prediction
functions), above models, simulation and baselines. Training, prediction, evaluation, the CLI
and the widgets call a task's methods instead of branching on its name.
"""

from __future__ import annotations

from typing import Any

from napari_fanet.tasks.base import Task
from napari_fanet.tasks.names import ALIASES, TASK_NAMES, canonical_name
from napari_fanet.tasks.qsm import QSMTask
from napari_fanet.tasks.segmentation import SegmentationTask

SEGMENTATION = SegmentationTask()
QSM = QSMTask()
#: Every task by the name checkpoints store.
TASKS: dict[str, Task] = {t.name: t for t in (SEGMENTATION, QSM)}

__all__ = [
    "ALIASES",
    "QSM",
    "SEGMENTATION",
    "TASKS",
    "TASK_NAMES",
    "Task",
    "get_task",
    "task_of_subject",
]


def get_task(name: str | Task) -> Task:
    """The task called ``name`` (``"segmentation"``, ``"qsm"``, or the alias ``"ms"``).

    A :class:`Task` is returned as it is. ``ValueError`` lists the valid names otherwise.
    """
    if isinstance(name, Task):
        return name
    return TASKS[canonical_name(name)]


def task_of_subject(subject: Any) -> Task:
    """The task whose training subject ``subject`` is."""
    return next(t for t in TASKS.values() if t.owns_subject(subject))
