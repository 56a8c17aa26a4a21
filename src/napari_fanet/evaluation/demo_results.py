"""What the demo computes: loaded models, one task's results, the whole run (plain dataclasses).

Shared by :mod:`napari_fanet.evaluation.demo` (which fills them) and
:mod:`napari_fanet.evaluation.demo_figures` (which draws them), so neither imports the other's
caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_fanet.io.nifti import Volume

__all__ = ["DemoModel", "DemoResult", "TaskResult"]


@dataclass
class DemoModel:
    """A loaded checkpoint; ``key`` names its output files and its rows in the tables."""

    key: str
    source: str
    shipped: bool
    model: Any
    checkpoint: dict

    @property
    def task(self) -> str:
        """``"segmentation"`` or ``"qsm"``."""
        return self.model.config.task

    @property
    def label(self) -> str:
        """Row label: the key, plus the file name for a checkpoint that was not shipped."""
        return self.key if self.shipped else f"{self.key} [{Path(self.source).name}]"


@dataclass
class TaskResult:
    """One task's results.

    ``rows``: one metrics row per method; ``volumes``: maps to save (file stem -> array on the
    grid of ``reference``); ``images`` and ``panels`` (row label -> map): figure inputs.
    """

    rows: list[dict]
    reference: Volume
    volumes: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    panels: dict[str, np.ndarray] = field(default_factory=dict)
    note: str | None = None


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: the ``metrics.json`` content and the files written."""

    summary: dict
    files: list[Path]
