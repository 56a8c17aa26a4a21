"""Run ``segment`` or ``qsm`` over every subject of a dataset folder (GUI-free core).

Two layouts are recognised (:func:`find_batch_subjects`):

**BIDS** (``DIR/sub-*/anat/`` or ``DIR/sub-*/ses-*/anat/``): segmentation reads
``*_FLAIR.nii[.gz]`` (required), ``*_T1w``, ``*_T2w``, a brain mask ``*_mask`` and a
susceptibility map ``*_Chimap`` (optional; adds susceptibility columns to ``lesions.csv``);
QSM reads ``*_localfield.nii[.gz]`` (local field in ppm; BIDS has no standard suffix for it,
this is our convention) and ``*_mask`` (required). Subjects are named ``sub-X`` or
``sub-X_ses-Y``. An anat folder with two candidates for one role (two runs) is reported as a
failed subject naming both files.

**Folder per subject** (what ``napari-fanet simulate`` writes): ``DIR/NAME/flair.nii.gz``
(+ ``t1``, ``t2``, ``brain_mask``, ``chi``) for segmentation, ``DIR/NAME/local_field.nii.gz`` +
``brain_mask.nii.gz`` (+ ``meta.json`` for the B0 direction) for QSM.

:func:`run_batch` calls a ``process(subject, folder)`` function for each subject with its own
output folder ``OUT/NAME``; a subject whose outputs all exist is skipped unless ``overwrite``,
and an exception in one subject is recorded (its message in the summary row) without stopping
the others. It is a generator of :class:`BatchEvent` so front ends can draw progress and stop.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_fanet.io.atomic import atomic_write
from napari_fanet.tasks.subjects import EXTENSIONS, find_file

__all__ = [
    "BatchEvent",
    "BatchSubject",
    "chi_summary",
    "find_batch_subjects",
    "run_batch",
    "summary_csv",
]

TASKS = ("segment", "qsm")
#: Roles per task: (role, plain-layout stem, BIDS suffix, required).
_ROLES = {
    "segment": (
        ("flair", "flair", "FLAIR", True),
        ("t1", "t1", "T1w", False),
        ("t2", "t2", "T2w", False),
        ("brain_mask", "brain_mask", "mask", False),
        ("chi", "chi", "Chimap", False),
    ),
    "qsm": (
        ("field", "local_field", "localfield", True),
        ("mask", "brain_mask", "mask", True),
    ),
}
#: Percentiles of chi (ppm) inside the mask in the QSM summary.
CHI_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


@dataclass(frozen=True)
class BatchSubject:
    """One subject found in a dataset folder.

    Attributes
    ----------
    name : str
        Output folder name (``sub-01``, ``sub-01_ses-1`` or the plain folder's name).
    files : dict of str to Path
        Input file per role (``flair``, ``t1``, ``t2``, ``brain_mask``; or ``field``, ``mask``).
    problem : str or None
        Why the subject cannot run (a missing or ambiguous file); it is then reported as failed.
    """

    name: str
    files: Mapping[str, Path] = field(default_factory=dict)
    problem: str | None = None


@dataclass(frozen=True)
class BatchEvent:
    """Progress of :func:`run_batch` after one subject.

    Attributes
    ----------
    index, total : int
        Subjects finished so far (1-based) and in all.
    subject : str
        The subject's name.
    status : str
        ``"done"``, ``"skipped"`` (outputs already there) or ``"failed"``.
    row : dict
        Its summary row (``subject``, ``status``, the task's statistics, ``error``).
    """

    index: int
    total: int
    subject: str
    status: str
    row: dict


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return task


def _bids_match(anat: Path, suffix: str) -> list[Path]:
    return sorted(p for ext in EXTENSIONS for p in anat.glob(f"*_{suffix}{ext}") if p.is_file())


def _bids_subject(name: str, anat: Path, task: str) -> BatchSubject:
    files: dict[str, Path] = {}
    problems = []
    for role, _stem, suffix, required in _ROLES[task]:
        found = _bids_match(anat, suffix)
        if len(found) > 1:
            listed = ", ".join(p.name for p in found)
            problems.append(f"{len(found)} *_{suffix} files in {anat} ({listed}): keep one")
        elif found:
            files[role] = found[0]
        elif required:
            problems.append(f"no *_{suffix}.nii.gz in {anat}")
    return BatchSubject(name, files, "; ".join(problems) or None)


def _plain_subject(folder: Path, task: str) -> BatchSubject:
    files: dict[str, Path] = {}
    problems = []
    for role, stem, _suffix, required in _ROLES[task]:
        path = find_file(folder, stem, required=False)
        if path is not None:
            files[role] = path
        elif required:
            problems.append(f"no {stem}.nii.gz in {folder}")
    return BatchSubject(folder.name, files, "; ".join(problems) or None)


def find_batch_subjects(root: str | Path, task: str) -> tuple[str, list[BatchSubject]]:
    """Find the subjects of a BIDS dataset or of a folder-per-subject layout.

    Parameters
    ----------
    root : str or Path
        Dataset folder.
    task : str
        ``"segment"`` or ``"qsm"``.

    Returns
    -------
    layout : str
        ``"bids"`` (any ``sub-*`` folder with an ``anat`` folder) or ``"folders"``.
    subjects : list of BatchSubject
        Sorted by name; subjects with a missing required file carry a ``problem``.
    """
    task = _check_task(task)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    anats = sorted(root.glob("sub-*/anat")) + sorted(root.glob("sub-*/ses-*/anat"))
    if anats:
        subjects = []
        for anat in anats:
            parts = anat.relative_to(root).parts[:-1]  # ("sub-X",) or ("sub-X", "ses-Y")
            subjects.append(_bids_subject("_".join(parts), anat, task))
        return "bids", sorted(subjects, key=lambda s: s.name)
    key = _ROLES[task][0][1]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    subjects = [_plain_subject(p, task) for p in folders if find_file(p, key, required=False)]
    if not subjects:
        raise ValueError(
            f"{root} holds no {task} subjects: expected BIDS sub-*/anat/ folders or one folder "
            f"per subject with {key}.nii.gz"
        )
    return "folders", subjects


def chi_summary(chi: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Summary statistics of a susceptibility map inside a mask.

    Parameters
    ----------
    chi : np.ndarray
        Susceptibility (ppm), shape ``(X, Y, Z)``.
    mask : np.ndarray
        Brain mask (non-zero inside), same shape.

    Returns
    -------
    dict
        ``chi_mean_ppm``, ``chi_sd_ppm`` (population SD) and ``chi_pNN_ppm`` for
        :data:`CHI_PERCENTILES`, over the voxels of the mask.
    """
    chi, mask = np.asarray(chi), np.asarray(mask) != 0
    if chi.shape != mask.shape:
        raise ValueError(
            f"chi and mask must have the same shape, got {chi.shape} and {mask.shape}"
        )
    if not mask.any():
        raise ValueError("the mask is empty: no susceptibility statistics")
    values = chi[mask].astype(np.float64)
    out = {"chi_mean_ppm": float(values.mean()), "chi_sd_ppm": float(values.std())}
    for p, v in zip(CHI_PERCENTILES, np.percentile(values, CHI_PERCENTILES), strict=True):
        out[f"chi_p{p:02d}_ppm"] = float(v)
    return out


#: Statistics columns of each command's summary CSV.
_SUMMARY_STATS = {
    "segment": ("n_lesions", "lesion_volume_ml"),
    "qsm": ("chi_mean_ppm", "chi_sd_ppm", *(f"chi_p{p:02d}_ppm" for p in CHI_PERCENTILES)),
}


def summary_columns(task: str) -> tuple[str, ...]:
    """Columns of the summary CSV of ``task``."""
    return ("subject", "status", *_SUMMARY_STATS[_check_task(task)], "error")


def summary_csv(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    """Summary rows as CSV text (missing values empty, floats to 6 significant digits)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(_cell(row.get(c)) for c in columns)
    return buffer.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), suffix=".csv")


def run_batch(
    subjects: Sequence[BatchSubject],
    out: str | Path,
    process: Callable[[BatchSubject, Path], Mapping],
    *,
    task: str,
    outputs: Sequence[str],
    summarise: Callable[[BatchSubject, Path], Mapping] | None = None,
    overwrite: bool = False,
    summary_name: str | None = None,
) -> Iterator[BatchEvent]:
    """Process every subject into ``out/NAME``, writing a summary CSV after each one.

    Parameters
    ----------
    subjects : sequence of BatchSubject
        From :func:`find_batch_subjects`.
    out : str or Path
        Output root (created); subject ``NAME`` writes into ``out/NAME``.
    process : callable
        ``process(subject, folder) -> dict`` of summary statistics; it writes the outputs.
        Any exception fails that subject only (its message goes into the row's ``error``).
    task : str
        ``"segment"`` or ``"qsm"`` (chooses the summary columns).
    outputs : sequence of str
        File names a finished subject has in its folder (all present: skipped).
    summarise : callable, optional
        ``summarise(subject, folder) -> dict`` for a skipped subject (from its files); an
        exception leaves its statistics empty with the message in ``error``.
    overwrite : bool
        Process subjects whose outputs exist too.
    summary_name : str, optional
        Summary file name in ``out`` (default ``{task}_summary.csv``).

    Yields
    ------
    BatchEvent
        One per subject, after it is finished and the summary is written.
    """
    columns = summary_columns(task)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / (summary_name or f"{task}_summary.csv")
    rows: list[dict] = []
    for index, subject in enumerate(subjects, start=1):
        folder = out / subject.name
        row: dict = {"subject": subject.name}
        if subject.problem is not None:
            row.update(status="failed", error=subject.problem)
        elif not overwrite and all((folder / name).is_file() for name in outputs):
            row["status"] = "skipped"
            if summarise is not None:
                try:
                    row.update(summarise(subject, folder))
                except Exception as exc:  # a summary problem is reported only
                    row["error"] = f"outputs exist but cannot be summarised: {_message(exc)}"
        else:
            try:
                row.update(process(subject, folder))
                row["status"] = "done"
            except Exception as exc:  # one subject must not stop the batch
                row.update(status="failed", error=_message(exc))
        rows.append(row)
        _write_text(summary_path, summary_csv(rows, columns))
        yield BatchEvent(index, len(subjects), subject.name, row["status"], row)


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())  # one line, for the CSV and stderr
