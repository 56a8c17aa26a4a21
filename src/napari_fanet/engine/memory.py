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
process keeps its peak memory until it exits, which is why the command line (whose processes
end with their command, the training child included) turns it on and the napari plugin, which
lives in napari's own process, leaves the allocator alone unless asked to.

The environment variable :data:`ENV_VAR` overrides either default: ``1`` (or ``on``, ``true``,
``yes``) turns it on, ``0`` (or ``off``, ``false``, ``no``) off. Elsewhere than glibc (macOS,
Windows, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Callable

__all__ = ["ENV_VAR", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "retain_freed_memory", "wanted"]

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

_applied = False


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


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    """The ``mallopt`` of this process's C library if it is glibc, else ``None``."""
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols of this process, its C library's included
    except OSError:
        return None
    # Only glibc has gnu_get_libc_version (musl, for one, has a mallopt that does nothing).
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


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
    # mallopt returns 1 on success and 0 on error
    trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    if not (trim and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)):
        logger.debug("mallopt refused the thresholds: the allocator is left as it is")
        return False
    _applied = True
    logger.debug("freed memory is kept in the process (trim and mmap thresholds raised)")
    return True
