"""Tests for ``napari_fanet._widgets._jobs``: core jobs in napari workers."""

from __future__ import annotations

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


def test_the_plugin_leaves_napari_s_allocator_alone_by_default(monkeypatch):
    from napari_fanet._widgets._jobs import streamed

    calls = []
    monkeypatch.setattr(memory, "retain_freed_memory", lambda default=True: calls.append(default))
    assert _run(streamed(lambda progress, should_stop: 42)) == 42
    assert calls == [False]


def test_a_cancelled_job_returns_cancelled(monkeypatch):
    monkeypatch.setattr(memory, "retain_freed_memory", lambda default=True: False)

    def job(progress, should_stop):
        raise InferenceCancelled("stopped")

    assert _run(streamed(job)) is CANCELLED


def test_a_runtime_error_becomes_a_job_error(monkeypatch):
    monkeypatch.setattr(memory, "retain_freed_memory", lambda default=True: False)

    def job(progress, should_stop):
        raise RuntimeError("out of memory at window 3")

    with pytest.raises(JobError, match="RuntimeError: out of memory at window 3"):
        _run(streamed(job))
