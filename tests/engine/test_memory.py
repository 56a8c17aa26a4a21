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
    monkeypatch.setattr(memory, "_holders", 0)
    monkeypatch.delenv(memory.ENV_VAR, raising=False)


@pytest.fixture
def recorded_mallopt(monkeypatch, fresh):
    """Replace glibc's ``mallopt`` by a recorder that accepts every call."""
    calls: list[tuple[int, int]] = []

    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: mallopt)

    def malloc_trim(pad: int) -> int:
        calls.append(("trim", pad))
        return 1

    monkeypatch.setattr(memory, "_glibc_malloc_trim", lambda: malloc_trim)
    return calls


RAISED = [
    (memory.M_TRIM_THRESHOLD, memory.TRIM_THRESHOLD),
    (memory.M_MMAP_THRESHOLD, memory.MMAP_THRESHOLD),
]
RELEASED = [
    (memory.M_TRIM_THRESHOLD, memory.RELEASED_TRIM_THRESHOLD),
    (memory.M_MMAP_THRESHOLD, memory.RELEASED_MMAP_THRESHOLD),
    ("trim", 0),
]


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


def _run_fresh(script: str, *args: str) -> str:
    """Standard output of ``script`` in a fresh interpreter, without :data:`memory.ENV_VAR`."""
    env = {k: v for k, v in os.environ.items() if k != memory.ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True, text=True, check=True, env=env, timeout=120,
    )  # fmt: skip
    return out.stdout


def _faults_of_second_block(setting: str) -> int:
    return int(_run_fresh(FAULTS_SCRIPT, setting).strip())


@pytest.mark.skipif(memory._glibc_mallopt() is None, reason="glibc's mallopt is not available")
def test_a_freed_block_is_reused_without_page_faults():
    """The real effect, in fresh processes: a freed 64 MiB block comes back without faults."""
    plain = _faults_of_second_block("off")
    retained = _faults_of_second_block("on")
    assert plain >= 16, f"expected the plain allocator to fault the block in again, got {plain}"
    assert retained * 10 <= plain, (plain, retained)


def test_retained_during_raises_the_thresholds_then_gives_the_memory_back(recorded_mallopt):
    with memory.retained_during() as kept:
        assert kept is True
        assert recorded_mallopt == RAISED
    assert recorded_mallopt == RAISED + RELEASED
    assert memory._holders == 0
    assert memory.RELEASED_TRIM_THRESHOLD == 64 * 2**20
    assert memory.RELEASED_MMAP_THRESHOLD == 32 * 2**20


def test_overlapping_blocks_give_the_memory_back_after_the_last(recorded_mallopt):
    outer = memory.retained_during()
    inner = memory.retained_during()
    assert outer.__enter__() is True
    assert inner.__enter__() is True  # already raised: no second call
    assert recorded_mallopt == RAISED
    outer.__exit__(None, None, None)  # the other block still runs: nothing given back
    assert recorded_mallopt == RAISED
    inner.__exit__(None, None, None)
    assert recorded_mallopt == RAISED + RELEASED


def test_retained_during_gives_the_memory_back_when_the_work_fails(recorded_mallopt):
    with pytest.raises(ValueError, match="the job failed"), memory.retained_during():
        raise ValueError("the job failed")
    assert recorded_mallopt == RAISED + RELEASED
    assert memory._holders == 0


def test_retained_during_undoes_nothing_in_a_process_that_keeps_memory_for_good(
    recorded_mallopt,
):
    assert memory.retain_freed_memory() is True
    with memory.retained_during() as kept:
        assert kept is True
    assert recorded_mallopt == RAISED  # no release


def test_a_permanent_retention_inside_a_block_is_not_undone(recorded_mallopt):
    with memory.retained_during():
        memory.retain_freed_memory()
    assert recorded_mallopt == RAISED + RAISED  # set again for good, never released


def test_retained_during_follows_the_default_and_the_variable(recorded_mallopt, monkeypatch):
    with memory.retained_during(default=False) as kept:
        assert kept is False
    monkeypatch.setenv(memory.ENV_VAR, "off")
    with memory.retained_during(default=True) as kept:
        assert kept is False
    assert recorded_mallopt == []
    monkeypatch.setenv(memory.ENV_VAR, "1")
    with memory.retained_during(default=False) as kept:
        assert kept is True
    assert recorded_mallopt == RAISED + RELEASED


def test_retained_during_changes_nothing_without_glibc_or_after_a_refusal(fresh, monkeypatch):
    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: None)
    with memory.retained_during() as kept:
        assert kept is False
    calls = []
    monkeypatch.setattr(memory, "_glibc_mallopt", lambda: lambda p, v: calls.append(p) or 0)
    monkeypatch.setattr(memory, "_glibc_malloc_trim", lambda: lambda pad: calls.append("trim"))
    with memory.retained_during() as kept:
        assert kept is False
    assert calls == [memory.M_TRIM_THRESHOLD]  # refused at once; nothing to give back
    assert memory._holders == 0


RELEASE_SCRIPT = """
import resource
import numpy as np
from napari_fanet.engine.memory import retained_during
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
base = resident_mib()
with retained_during():
    blocks = [np.ones(2 * 2**20, np.float32) for _ in range(32)]  # 32 x 8 MiB
    del blocks
    kept = resident_mib() - base
    before = faults()
    blocks = [np.ones(2 * 2**20, np.float32) for _ in range(32)]  # the same again
    refaults = faults() - before
    del blocks
after = resident_mib() - base
print(kept, refaults, after)
"""


@pytest.mark.skipif(memory._glibc_mallopt() is None, reason="glibc's mallopt is not available")
def test_a_block_reuses_freed_memory_and_gives_it_back_at_its_end():
    """The real effect, in a fresh process: 256 MiB freed in a block is reused, then returned."""
    kept, refaults, after = (float(v) for v in _run_fresh(RELEASE_SCRIPT).split())
    assert kept >= 200, f"expected the freed 256 MiB to stay resident in the block, got {kept}"
    assert refaults < 2000, f"expected the second 256 MiB to reuse the first: {refaults} faults"
    assert after <= 32, f"expected the memory back after the block, still {after} MiB resident"
