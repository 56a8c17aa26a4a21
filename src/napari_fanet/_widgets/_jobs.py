"""Run core jobs in napari workers: progress as yields, cancellation, and errors that surface.

napari's ``thread_worker`` (superqt) treats a ``RuntimeError`` leaving a generator as "the worker
was deleted": it warns and emits neither ``errored`` nor ``finished``. Torch raises RuntimeError
for many real failures and the core's ``InferenceCancelled`` is one too, so :func:`streamed`
turns a cancellation into the :data:`CANCELLED` result and other RuntimeErrors into
:class:`JobError`, which the worker reports normally.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_fanet.engine.streaming import Progress

#: Result of a job that was cancelled by its stop flag.
CANCELLED = object()


class JobError(Exception):
    """A RuntimeError raised by a core job, re-raised so that napari's worker reports it."""


def streamed(job: Callable[[Callable, Callable], Any]) -> Generator[Progress, None, Any]:
    """Generator for ``thread_worker``: yields the job's progress, returns its result.

    ``job(progress, should_stop)`` runs in a thread (see
    :func:`napari_fanet.engine.streaming.stream_job`). While it runs, napari's process keeps
    the memory it frees for reuse, as the command line does, and gives it back to the system
    when the job ends (:func:`napari_fanet.engine.memory.retained_during`;
    ``NAPARI_FANET_RETAIN_MEMORY=0`` leaves glibc's allocator alone).
    """
    from napari_fanet.engine import memory
    from napari_fanet.engine.inference import InferenceCancelled
    from napari_fanet.engine.streaming import stream_job

    with memory.retained_during(default=True):
        try:
            return (yield from stream_job(job))
        except InferenceCancelled:
            return CANCELLED
        except RuntimeError as exc:
            raise JobError(f"{type(exc).__name__}: {exc}") from exc
