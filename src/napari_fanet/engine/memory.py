"""Keep freed memory inside the process, so large tensors stop faulting pages in again.

On Linux, glibc's ``malloc`` hands large blocks back to the kernel as soon as they are freed: a
block above the *mmap threshold* is unmapped, and free space above the *trim threshold* at the
top of the heap is released. The next tensor of that size then touches fresh pages, and each
first touch is a page fault. A network's forward pass frees and reallocates blocks of tens of
megabytes at every layer, so it faults the same memory in again and again. On the project's
2-core virtual machine a fault costs about 2.5 us (8 MiB of fresh pages take about 5 ms), and one
3x3x3 convolution at ``(1, 64, 32, 32, 32)`` faulted up to 6000 pages per call.

:func:`retain_freed_memory` raises both thresholds (``mallopt``), so freed blocks stay in the
heap and are reused. The results are bit for bit the same; only the time changes. Measured on the
project's CPU (``benchmarks/memory_retention.py``): ``napari-fanet segment`` on a 1 mm brain
took about a third less time, and 40 training steps about a seventh less. The cost is that the
process keeps its peak memory until it exits. The command line, whose processes end with their
command (the training child included), turns it on for good.

The napari plugin lives in napari's own process, so it keeps freed memory only while one of its
jobs runs (:func:`retained_during`): when the last job ends, the thresholds go to
:data:`RELEASED_MMAP_THRESHOLD` and :data:`RELEASED_TRIM_THRESHOLD` and ``malloc_trim`` hands
the kept memory back to the system. Measured on a 1 mm brain segmented in one process as the
plugin's job does it: 48.6 s with glibc's defaults, 32.4 s inside :func:`retained_during`, the
same mask, and 456 MiB resident after the job against 557 MiB
(``benchmarks/memory_retention.py --skip-segment --skip-train --in-process``).

The environment variable :data:`ENV_VAR` overrides either default: ``1`` (or ``on``, ``true``,
``yes``) turns it on, ``0`` (or ``off``, ``false``, ``no``) off. Elsewhere than glibc (macOS,
Windows, musl) nothing is changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import threading
from collections.abc import Callable, Iterator

__all__ = [
    "ENV_VAR",
    "MMAP_THRESHOLD",
    "RELEASED_MMAP_THRESHOLD",
    "RELEASED_TRIM_THRESHOLD",
    "TRIM_THRESHOLD",
    "retain_freed_memory",
    "retained_during",
    "wanted",
]

logger = logging.getLogger(__name__)

#: Environment variable that turns the retention on (``1``) or off (``0``) in any process.
ENV_VAR = "NAPARI_FANET_RETAIN_MEMORY"
_ON = ("1", "on", "true", "yes")
_OFF = ("0", "off", "false", "no")
#: ``mallopt`` parameter numbers (``<malloc.h>``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Free space at the top of the heap is given back only above this (the largest C ``int``).
TRIM_THRESHOLD = 2**31 - 1
#: Blocks above this (1 GiB) still get their own mapping, so one huge array is given back.
MMAP_THRESHOLD = 2**30
#: After :func:`retained_during`: glibc's own upper limits for its dynamic thresholds on 64-bit
#: systems (setting a threshold once turns glibc's adjustment off for good, so the limits that
#: adjustment would reach after large frees are set instead of its 128 KiB start).
RELEASED_MMAP_THRESHOLD = 32 * 2**20
RELEASED_TRIM_THRESHOLD = 2 * RELEASED_MMAP_THRESHOLD

_applied = False  # retained for good (:func:`retain_freed_memory`)
_holders = 0  # :func:`retained_during` blocks running now
_lock = threading.Lock()


def wanted(default: bool, environ: dict[str, str] | None = None) -> bool:
    """Whether to retain freed memory: :data:`ENV_VAR` if set, else ``default``.

    Parameters
    ----------
    default : bool
        The caller's default (the command line: on; the napari plugin: off).
    environ : dict, optional
        The environment to read (default ``os.environ``).

    Returns
    -------
    bool
        An unrecognised value logs a warning that names the accepted ones and keeps ``default``.
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR)
    if value is None or not value.strip():
        return default
    if value.strip().lower() in _ON:
        return True
    if value.strip().lower() in _OFF:
        return False
    logger.warning(
        "%s must be one of %s (on) or %s (off), got %r; using the default (%s)",
        ENV_VAR, "/".join(_ON), "/".join(_OFF), value, "on" if default else "off",
    )  # fmt: skip
    return default


def _glibc_function(name: str, argtypes: tuple) -> Callable[..., int] | None:
    """Function ``name`` of this process's C library if it is glibc, else ``None``."""
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols of this process, its C library's included
    except OSError:
        return None
    # Only glibc has gnu_get_libc_version (musl, for one, has a mallopt that does nothing).
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, name):
        return None
    function = getattr(libc, name)
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    """The ``mallopt`` of this process's C library if it is glibc, else ``None``."""
    return _glibc_function("mallopt", (ctypes.c_int, ctypes.c_int))


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """The ``malloc_trim`` of this process's C library if it is glibc, else ``None``."""
    return _glibc_function("malloc_trim", (ctypes.c_size_t,))


def _set_thresholds(mallopt: Callable[[int, int], int], trim: int, mmap: int) -> bool:
    """Set glibc's trim and mmap thresholds; False if ``mallopt`` refused either."""
    # mallopt returns 1 on success and 0 on error
    return bool(mallopt(M_TRIM_THRESHOLD, trim) and mallopt(M_MMAP_THRESHOLD, mmap))


def retain_freed_memory(default: bool = True) -> bool:
    """Keep freed memory in the process for reuse (see the module docstring).

    Safe to call more than once; only the first call that applies changes anything.

    Parameters
    ----------
    default : bool
        Whether to apply it when :data:`ENV_VAR` is not set.

    Returns
    -------
    bool
        True if the process now retains freed memory (applied now or before); False if it was
        not wanted, or this C library offers no way to do it.
    """
    global _applied
    if _applied:
        return True
    if not wanted(default):
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        logger.debug("not glibc: the allocator is left as it is")
        return False
    with _lock:
        if not _set_thresholds(mallopt, TRIM_THRESHOLD, MMAP_THRESHOLD):
            logger.debug("mallopt refused the thresholds: the allocator is left as it is")
            return False
        _applied = True
    logger.debug("freed memory is kept in the process (trim and mmap thresholds raised)")
    return True


@contextlib.contextmanager
def retained_during(default: bool = True) -> Iterator[bool]:
    """Keep freed memory in the process for the enclosed work only, then give it back.

    For work that runs inside a long-lived process (the napari plugin's jobs). On entry the
    thresholds are raised as :func:`retain_freed_memory` does; when the last of the blocks
    running at the same time (in any thread) ends, however it ends, they are set to
    :data:`RELEASED_TRIM_THRESHOLD` and :data:`RELEASED_MMAP_THRESHOLD` and ``malloc_trim``
    returns the free memory to the system. Nothing is undone in a process that retains freed
    memory for good.

    Parameters
    ----------
    default : bool
        Whether to keep freed memory when :data:`ENV_VAR` is not set.

    Yields
    ------
    bool
        True while freed memory is kept; False if it was not wanted, or this C library offers
        no way to do it.
    """
    global _holders
    if _applied:
        yield True
        return
    mallopt = _glibc_mallopt() if wanted(default) else None
    with _lock:
        active = mallopt is not None and (
            _holders > 0 or _set_thresholds(mallopt, TRIM_THRESHOLD, MMAP_THRESHOLD)
        )
        if active:
            _holders += 1
    if not active:
        yield False
        return
    try:
        yield True
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and not _applied:
                _set_thresholds(mallopt, RELEASED_TRIM_THRESHOLD, RELEASED_MMAP_THRESHOLD)
                malloc_trim = _glibc_malloc_trim()
                if malloc_trim is not None:
                    malloc_trim(0)
