"""Which models a user can pick: the shipped weights plus checkpoints added during a session.

The FA-Net widget lists these; the Train widget adds the models it trains. A model is known by a
display name and a checkpoint path; its task is read from the checkpoint's config, and its model
card (``NAME.md`` beside the checkpoint, or the one given when it was added) describes it.

Widgets that list models :func:`subscribe` to changes: :func:`add_model` calls every subscriber
with the new entry, in the calling thread (call it from the GUI thread when widgets listen).
Models added with ``trained=True`` are remembered in order; :func:`last_trained` is the newest.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from napari_fanet.engine.predict import shipped_weights
from napari_fanet.models import read_checkpoint
from napari_fanet.tasks import get_task
from napari_fanet.tasks.names import TASK_NAMES

log = logging.getLogger(__name__)

TASKS = TASK_NAMES


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
    card : Path or None
        Its model card (markdown), if there is one.
    """

    name: str
    path: Path
    task: str
    shipped: bool
    card: Path | None = None


_added: dict[str, ModelEntry] = {}
_trained: list[str] = []  # names of models trained in this session, oldest first
_subscribers: list[Callable[[], Callable[[ModelEntry], None] | None]] = []
CARD_SUMMARY_LINES = 25


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


def _card_beside(path: Path) -> Path | None:
    card = path.with_suffix(".md")
    return card if card.is_file() else None


def add_model(
    path: str | Path,
    name: str | None = None,
    *,
    card: str | Path | None = None,
    trained: bool = False,
) -> ModelEntry:
    """Make a checkpoint available under ``name`` (default: its file stem) for this session.

    Re-adding the same name replaces the entry; shipped names cannot be replaced. ``card`` is
    the model card (default: ``NAME.md`` beside the checkpoint, if present); ``trained`` marks a
    model trained in this session (see :func:`last_trained`). Subscribers are then notified.
    """
    path = Path(path).resolve()
    task = checkpoint_task(path)
    name = name or path.stem
    if name in shipped_weights():
        raise ValueError(f"{name!r} is the name of a shipped model; choose another name")
    card_path = Path(card).resolve() if card is not None else _card_beside(path)
    entry = ModelEntry(name, path, task, shipped=False, card=card_path)
    _added[name] = entry
    if trained:
        if name in _trained:
            _trained.remove(name)
        _trained.append(name)
    _notify(entry)
    return entry


def last_trained(task: str | None = None) -> ModelEntry | None:
    """The newest model added with ``trained=True`` (for ``task``) whose file still exists."""
    for name in reversed(_trained):
        entry = _added.get(name)
        if entry is not None and entry.path.is_file() and _for_task(entry, task):
            return entry
    return None


def subscribe(callback: Callable[[ModelEntry], None]) -> Callable[[], None]:
    """Call ``callback(entry)`` after every :func:`add_model`; returns an unsubscribe function.

    Bound methods are held weakly, so a deleted widget drops out by itself; an exception in a
    callback is logged and does not stop the others.
    """
    ref: Callable[[], Callable[[ModelEntry], None] | None]
    if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
        ref = weakref.WeakMethod(callback)  # type: ignore[arg-type]
    else:
        ref = lambda: callback  # noqa: E731
    _subscribers.append(ref)

    def unsubscribe() -> None:
        if ref in _subscribers:
            _subscribers.remove(ref)

    return unsubscribe


def _notify(entry: ModelEntry) -> None:
    for ref in list(_subscribers):
        callback = ref()
        if callback is None:
            _subscribers.remove(ref)
            continue
        try:
            callback(entry)
        except Exception:  # a broken listener must not break adding a model
            log.exception("model catalog subscriber %r failed", callback)


def card_summary(entry: ModelEntry, max_lines: int = CARD_SUMMARY_LINES) -> str:
    """The first lines of the entry's model card, or a one-line description without a card."""
    kind = "shipped" if entry.shipped else "added"
    head = f"{entry.name} ({kind} {entry.task} model): {entry.path}"
    if entry.card is None or not entry.card.is_file():
        return head
    lines = entry.card.read_text(encoding="utf-8", errors="replace").splitlines()
    text = "\n".join(lines[:max_lines])
    return text + ("\n..." if len(lines) > max_lines else "")


def available_models(task: str | None = None) -> list[ModelEntry]:
    """Shipped models first (sorted), then added ones (in order), optionally for one task."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    entries = []
    for name, path in sorted(shipped_weights().items()):
        try:
            kind = checkpoint_task(path)
            entries.append(ModelEntry(name, path, kind, shipped=True, card=_card_beside(path)))
        except ValueError as exc:  # a broken shipped file must not hide the others
            log.warning("skipping shipped model %s: %s", name, exc)
    entries.extend(e for e in _added.values() if e.path.is_file())
    return [e for e in entries if _for_task(e, task)]


def _for_task(entry: ModelEntry, task: str | None) -> bool:
    """Whether ``entry`` is a model of ``task`` (of any task when None)."""
    return task is None or get_task(entry.task) is get_task(task)
