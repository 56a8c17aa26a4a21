"""Tests for ``napari_fanet.engine.memory``: keeping freed memory in the process."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from napari_fanet.engine import memory

SRC = Path(memory.__file__).resolve().parents[2]


@pytest.fixture
def fresh(monkeypatch):
    """A process state where retention was never applied and the variable is unset."""
    monkeypatch.setattr(memory, "_applied", False)
    monkeypatch.delenv(memory.ENV_VAR, raising=False)


@pytest.fixture
def recorded_mallopt(monkeypatch, fresh):
    """Replace glibc's ``mallopt`` by a recorder that accepts every call."""
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: mallopt)
    return calls


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        (None, True, True),
        (None, False, False),
        ("", False, False),
        ("1", False, True),
        (" On ", False, True),
        ("TRUE", False, True),
        ("yes", False, True),
        ("0", True, False),
        ("off", True, False),
        ("False", True, False),
        ("no", True, False),
    ],
)
def test_wanted_reads_the_variable_else_the_default(value, default, expected):
    environ = {} if value is None else {memory.ENV_VAR: value}
    assert memory.wanted(default, environ) is expected


@pytest.mark.parametrize("default", [True, False])
def test_wanted_warns_on_an_unknown_value_and_keeps_the_default(default, caplog):
    with caplog.at_level(logging.WARNING, logger=memory.__name__):
        assert memory.wanted(default, {memory.ENV_VAR: "maybe"}) is default
    assert "NAPARI_FANET_RETAIN_MEMORY must be one of 1/on/true/yes" in caplog.text
    assert "got 'maybe'" in caplog.text


def test_retain_raises_both_thresholds_once(recorded_mallopt):
    assert memory.retain_freed_memory() is True
    assert recorded_mallopt == [
        (memory.M_TRIM_THRESHOLD, memory.TRIM_THRESHOLD),
        (memory.M_MMAP_THRESHOLD, memory.MMAP_THRESHOLD),
    ]
    assert memory.retain_freed_memory() is True  # already applied: nothing more
    assert len(recorded_mallopt) == 2


def test_retain_follows_the_default_and_the_variable(recorded_mallopt, monkeypatch):
    assert memory.retain_freed_memory(default=False) is False
    monkeypatch.setenv(memory.ENV_VAR, "0")
    assert memory.retain_freed_memory(default=True) is False
    assert recorded_mallopt == []
    monkeypatch.setenv(memory.ENV_VAR, "1")
    assert memory.retain_freed_memory(default=False) is True
    assert len(recorded_mallopt) == 2


def test_retain_changes_nothing_without_glibc(fresh, monkeypatch):
    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: None)
    assert memory.retain_freed_memory() is False
    assert memory._applied is False


def test_retain_reports_a_refusal(fresh, monkeypatch):
    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: lambda param, value: 0)
    assert memory.retain_freed_memory() is False
    assert memory._applied is False


def test_glibc_mallopt_is_found_on_glibc_only():
    found = memory._glibc_mallopt()
    is_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert (found is not None) is is_glibc


FAULTS_SCRIPT = """
import resource, sys
import numpy as np
from napari_fanet.engine.memory import retain_freed_memory
if sys.argv[1] == "on":
    assert retain_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = np.ones(16 * 2**20, np.float32)  # 64 MiB, above glibc's default mmap threshold
del block
before = faults()
block = np.ones(16 * 2**20, np.float32)  # the same size again
print(faults() - before)
"""


def _faults_of_second_block(setting: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != memory.ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", FAULTS_SCRIPT, setting],
        capture_output=True, text=True, check=True, env=env, timeout=120,
    )  # fmt: skip
    return int(out.stdout.strip())


@pytest.mark.skipif(memory._glibc_mallopt() is None, reason="glibc's mallopt is not available")
def test_a_freed_block_is_reused_without_page_faults():
    """The real effect, in fresh processes: a freed 64 MiB block comes back without faults."""
    plain = _faults_of_second_block("off")
    retained = _faults_of_second_block("on")
    assert plain >= 16, f"expected the plain allocator to fault the block in again, got {plain}"
    assert retained * 10 <= plain, (plain, retained)
