"""Which models a user can pick: the shipped weights plus checkpoints added during a session.

The FA-Net widget lists these; the Train widget adds the models it trains. A model is known by a
display name and a checkpoint path; its task is read from the checkpoint's config.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from ..models import read_checkpoint
from .predict import shipped_weights

log = logging.getLogger(__name__)

TASKS = ("segmentation", "qsm")


@dataclass(frozen=True)
class ModelEntry:
    """A checkpoint the user can run.

    Parameters
    ----------
    name : str
        Display name (the shipped name, or a name given when the model was added).
    path : Path
        The checkpoint file.
    task : {"segmentation", "qsm"}
        What the model predicts.
    shipped : bool
        Whether it ships with the package.
    """

    name: str
    path: Path
    task: str
    shipped: bool


_added: dict[str, ModelEntry] = {}


@functools.lru_cache(maxsize=64)
def _task_of(path: str, mtime_ns: int) -> str | None:
    return read_checkpoint(path)["config"].get("task")


def checkpoint_task(path: str | Path) -> str:
    """The task (``"segmentation"`` or ``"qsm"``) of the model stored in a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    task = _task_of(str(path), path.stat().st_mtime_ns)
    if task not in TASKS:
        raise ValueError(f"{path}: expected a segmentation or qsm model, got task {task!r}")
    return task


def add_model(path: str | Path, name: str | None = None) -> ModelEntry:
    """Make a checkpoint available under ``name`` (default: its file stem) for this session.

    Re-adding the same name replaces the entry; shipped names cannot be replaced.
    """
    path = Path(path).resolve()
    task = checkpoint_task(path)
    name = name or path.stem
    if name in shipped_weights():
        raise ValueError(f"{name!r} is the name of a shipped model; choose another name")
    entry = ModelEntry(name, path, task, shipped=False)
    _added[name] = entry
    return entry


def available_models(task: str | None = None) -> list[ModelEntry]:
    """Shipped models first (sorted), then added ones (in order), optionally for one task."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    entries = []
    for name, path in sorted(shipped_weights().items()):
        try:
            entries.append(ModelEntry(name, path, checkpoint_task(path), shipped=True))
        except ValueError as exc:  # a broken shipped file must not hide the others
            log.warning("skipping shipped model %s: %s", name, exc)
    entries.extend(e for e in _added.values() if e.path.is_file())
    return [e for e in entries if task is None or e.task == task]
