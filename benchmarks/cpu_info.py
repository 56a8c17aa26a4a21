"""Name the CPU a benchmark ran on, so that a results file says which machine it describes.

The project's machines differ from session to session (an AMD EPYC with AVX2 one day, an Intel
Xeon with AVX-512 the next), and the FA / convolution ratio of issue 13 depends on which:
``benchmarks/README.md`` records both. Linux only reads ``/proc/cpuinfo``; elsewhere the answer
falls back on :mod:`platform`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
#: Vector extensions worth naming, widest first (``/proc/cpuinfo`` flag -> label).
VECTOR_FLAGS = (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))


def parse_cpuinfo(text: str) -> tuple[str | None, set[str]]:
    """The first ``model name`` and the first ``flags`` set of a ``/proc/cpuinfo`` text.

    Parameters
    ----------
    text : str
        Contents of ``/proc/cpuinfo``.

    Returns
    -------
    tuple
        ``(model name or None, set of flags)``.
    """
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip() or None
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def describe(model: str | None, flags: set[str], cores: int | None) -> str:
    """``"<model>, <cores> cores, <vector extensions>"``; missing parts are left out."""
    parts = [model or platform.processor() or platform.machine() or "unknown CPU"]
    if cores:
        parts.append(f"{cores} cores")
    vectors = [label for flag, label in VECTOR_FLAGS if flag in flags]
    if vectors:
        parts.append(" + ".join(vectors))
    return ", ".join(parts)


def cpu_description() -> str:
    """This machine's CPU, for a benchmark's header, e.g. ``"AMD EPYC 7B13, 2 cores, AVX2"``."""
    try:
        model, flags = parse_cpuinfo(CPUINFO.read_text())
    except OSError:
        model, flags = None, set()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    return describe(model, flags, cores)
