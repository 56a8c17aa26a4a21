"""Run a callback-style job in a thread and see it as a generator of progress events.

The core's long functions (:func:`~napari_fanet.engine.predict.segment`,
:func:`~napari_fanet.engine.predict.reconstruct_qsm`) report progress through a callback and
poll a stop flag. A GUI worker wants a generator instead: it yields between steps, which is where
napari's ``thread_worker`` shows progress and honours an abort. :func:`stream_job` is that
adapter; it knows nothing about Qt.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: A job: called as ``job(progress, should_stop)``, returns its result.
Job = Callable[[Callable[[int, int], None], Callable[[], bool]], T]


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` steps (windows, iterations) of a running job."""

    done: int
    total: int

    @property
    def fraction(self) -> float:
        """Progress in ``[0, 1]`` (0 while the total is unknown)."""
        return min(self.done / self.total, 1.0) if self.total > 0 else 0.0


_DONE = object()


def stream_job(job: Job, *, poll_s: float = 0.05) -> Generator[Progress, None, T]:
    """Run ``job`` in a daemon thread; yield its progress; return its result or raise its error.

    Closing the generator (``close()``, or garbage collection after an abort) sets the stop flag
    the job polls and waits for the thread to end, so no work outlives the caller.

    Parameters
    ----------
    job : callable
        ``job(progress, should_stop)``: calls ``progress(done, total)`` as it goes and stops
        (typically by raising) once ``should_stop()`` is true.
    poll_s : float
        How often the generator wakes up to yield control while no progress arrives.

    Yields
    ------
    Progress
        Each progress report of the job, in order, and a repeat of the last one every
        ``poll_s`` seconds without news (so a consumer can check for an abort).
    """
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = job(lambda d, t: events.put(Progress(int(d), int(t))), stop.is_set)
        except BaseException as exc:  # re-raised in the consumer's thread
            outcome["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=target, name="napari-fanet job", daemon=True)
    thread.start()
    last = Progress(0, 0)
    try:
        while True:
            try:
                event = events.get(timeout=poll_s)
            except queue.Empty:
                yield last
                continue
            if event is _DONE:
                break
            last = event
            yield event
    finally:
        stop.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
