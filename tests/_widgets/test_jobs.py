"""Tests for ``napari_fanet._widgets._jobs``: core jobs in napari workers."""

from __future__ import annotations

import contextlib

import pytest

from napari_fanet._widgets._jobs import CANCELLED, JobError, streamed
from napari_fanet.engine import memory
from napari_fanet.engine.inference import InferenceCancelled


def _run(gen):
    """Drive a ``streamed`` generator to its end; returns its result."""
    with pytest.raises(StopIteration) as stop:
        while True:
            next(gen)
    return stop.value.value


@pytest.fixture
def blocks(monkeypatch):
    """Record ``memory.retained_during``: its default, and whether the job ran inside it."""
    events: list[object] = []

    @contextlib.contextmanager
    def retained_during(default=True):
        events.append(("enter", default))
        try:
            yield default
        finally:
            events.append("exit")

    monkeypatch.setattr(memory, "retained_during", retained_during)
    return events


def test_a_job_runs_with_freed_memory_kept_then_given_back(blocks):
    def job(progress, should_stop):
        blocks.append("job")
        return 42

    assert _run(streamed(job)) == 42
    assert blocks == [("enter", True), "job", "exit"]


def test_a_cancelled_job_returns_cancelled(blocks):
    def job(progress, should_stop):
        raise InferenceCancelled("stopped")

    assert _run(streamed(job)) is CANCELLED
    assert blocks == [("enter", True), "exit"]


def test_a_runtime_error_becomes_a_job_error(blocks):
    def job(progress, should_stop):
        raise RuntimeError("out of memory at window 3")

    with pytest.raises(JobError, match="RuntimeError: out of memory at window 3"):
        _run(streamed(job))
    assert blocks == [("enter", True), "exit"]
