"""Where the two synthetic sample cases live: in the wheel, in a checkout, or in a local cache.

The cases are ``ms/sub-0000`` (T1, T2, FLAIR, brain and lesion masks) and ``qsm/sub-0000``
(magnitude, local field, brain mask, susceptibility), simulated with seed :data:`SAMPLE_SEED` at
2 mm. :func:`sample_data_folder` finds them in this order: the copy packaged inside the wheel
(``napari_fanet/sample_data``), the ``sample_data/`` folder of a source checkout, else a copy
simulated once (locally, nothing is downloaded) into a per-user cache folder. GUI-free; the
simulator is imported only when it has to run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

logger = logging.getLogger(__name__)

SUBJECT = "sub-0000"
SAMPLE_SEED = 90000
TASKS = ("ms", "qsm")


def _complete(folder: Path) -> bool:
    return all((folder / task / SUBJECT).is_dir() for task in TASKS)


def packaged_sample_data() -> Path | None:
    """The copy inside the installed package (``napari_fanet/sample_data``), or None."""
    folder = files("napari_fanet") / "sample_data"
    return folder if isinstance(folder, Path) and _complete(folder) else None


def repository_sample_data() -> Path | None:
    """``sample_data/`` of a source checkout (beside ``src/``), or None."""
    folder = Path(__file__).resolve().parents[3] / "sample_data"
    return folder if _complete(folder) else None


def shipped_sample_data() -> Path | None:
    """The packaged copy, else the checkout's ``sample_data/``, else None."""
    return packaged_sample_data() or repository_sample_data()


def cache_folder() -> Path:
    """Per-user cache of simulated sample data (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    from napari_fanet import __version__

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "napari-fanet" / __version__ / "sample_data"


def simulate_sample_data(folder: Path) -> Path:
    """Simulate the two sample cases into ``folder`` (the shipped files are bit-identical)."""
    from napari_fanet.simulation.dataset import iter_simulate_dataset

    folder = Path(folder)
    for task in TASKS:
        for _ in iter_simulate_dataset(folder / task, task, 1, SAMPLE_SEED, voxel_size=2.0):
            pass
    return folder


def sample_data_folder() -> Path:
    """A folder with ``ms/sub-0000`` and ``qsm/sub-0000``: shipped, or simulated once.

    Without a shipped copy the cases are simulated into a temporary folder beside
    :func:`cache_folder` and renamed onto it when complete, so an interrupted run leaves no
    partial cache behind.
    """
    shipped = shipped_sample_data()
    if shipped is not None:
        return shipped
    cache = cache_folder()
    if _complete(cache):
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    logger.info("no shipped sample data: simulating it (seed %d) into %s", SAMPLE_SEED, cache)
    tmp = Path(tempfile.mkdtemp(prefix=".sample_data-", dir=cache.parent))
    try:
        simulate_sample_data(tmp)
        if not _complete(cache):  # else another process finished first: keep its copy
            shutil.rmtree(cache, ignore_errors=True)  # a partial folder from elsewhere
            tmp.rename(cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache
