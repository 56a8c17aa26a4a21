"""``napari-fanet segment --batch DIR`` and ``qsm --batch DIR``: every subject of a dataset.

The subjects, the skip/overwrite rule, the per-subject error handling and the summary CSV are
:mod:`napari_fanet.engine.batch`; this module builds each subject's arguments, runs the same
one-subject code as the single-file command (:mod:`napari_fanet.cli.predict`) with the model
loaded once, and draws one progress bar over the subjects on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from napari_fanet.cli.base import CommandError, UsageError


def check_overwrite(args: argparse.Namespace) -> None:
    """Refuse ``--overwrite`` without ``--batch`` (a single run always replaces its outputs)."""
    if getattr(args, "overwrite", False) and getattr(args, "batch", None) is None:
        raise UsageError("--overwrite only applies with --batch (a single run replaces its files)")


def _no_phase_options(args: argparse.Namespace) -> None:
    """``qsm --batch`` runs the network on local fields: refuse the phase chain's options."""
    from napari_fanet.cli.qsm_phase import PHASE_ONLY

    phase = [flag for name, flag in PHASE_ONLY if getattr(args, name, None) is not None]
    if phase or args.method != "fanet":
        listed = ", ".join(phase) or f"--method {args.method}"
        raise UsageError(f"{listed}: --batch runs --model on local fields, not the phase chain")


def _segment_files(files: dict) -> dict:
    return {
        "flair": files["flair"],
        "t1": files.get("t1"),
        "t2": files.get("t2"),
        "brain_mask": files.get("brain_mask"),
        "chi": files.get("chi"),
    }


def _qsm_files(files: dict) -> dict:
    return {"field": files["field"], "mask": files["mask"], "phase": None}


def _lesion_summary(subject, folder: Path) -> dict:
    """Lesion count and volume of a finished subject, read back from its ``lesions.csv``."""
    with open(folder / "lesions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    volume = sum(float(r["volume_ml"]) for r in rows)
    return {"n_lesions": len(rows), "lesion_volume_ml": volume}


def _chi_summary(subject, folder: Path) -> dict:
    """Susceptibility statistics of a finished subject, read back from its ``chi.nii.gz``."""
    from napari_fanet.engine.batch import chi_summary
    from napari_fanet.io.nifti import load_volume

    chi = load_volume(folder / "chi.nii.gz", name="chi").data
    mask = load_volume(subject.files["mask"], name="brain mask").data
    return chi_summary(chi, mask)


@dataclass(frozen=True)
class _BatchCommand:
    """What ``--batch`` does differently per command (``segment``, ``qsm``).

    Attributes
    ----------
    per_subject : tuple of (str, str)
        ``(argument, flag)`` pairs that come from each subject's folder, not the command line.
    check : callable
        Further checks of the arguments (raises :class:`UsageError`).
    files : callable
        A subject's files -> the arguments of the one-subject function.
    summarise : callable
        ``(subject, folder)`` -> summary statistics, read back from the output files.
    """

    per_subject: tuple[tuple[str, str], ...]
    check: Callable[[argparse.Namespace], None]
    files: Callable[[dict], dict]
    summarise: Callable[[object, Path], dict]


_COMMANDS = {
    "segment": _BatchCommand(
        (("t1", "--t1"), ("t2", "--t2"), ("brain_mask", "--brain-mask"), ("chi", "--chi")),
        lambda args: None,
        _segment_files,
        _lesion_summary,
    ),
    "qsm": _BatchCommand((("mask", "--mask"),), _no_phase_options, _qsm_files, _chi_summary),
}


def _check_arguments(args: argparse.Namespace, command: str) -> None:
    spec = _COMMANDS[command]
    given = [flag for name, flag in spec.per_subject if getattr(args, name, None) is not None]
    if given:
        raise UsageError(
            f"{', '.join(given)} cannot be given with --batch: each subject's files are found "
            f"in its folder (see napari-fanet {command} --help)"
        )
    spec.check(args)


def _subject_args(args: argparse.Namespace, command: str, subject, folder: Path):
    values = {**vars(args), "out": folder, "no_progress": True, "batch": None}
    values.update(_COMMANDS[command].files(subject.files))
    return argparse.Namespace(**values)


def _summarise(command: str, subject, folder: Path) -> dict:
    """Summary statistics of a finished subject, read back from its output files."""
    return _COMMANDS[command].summarise(subject, folder)


def _process(subject, folder: Path, *, args, task: str, one: Callable, loaded: tuple) -> dict:
    one(_subject_args(args, task, subject, folder), loaded)
    return _summarise(task, subject, folder)


def run_batch_command(args: argparse.Namespace, one: Callable) -> int:
    """Run ``one(subject_args, (model, checkpoint))`` for every subject of ``args.batch``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``segment`` or ``qsm`` arguments (``args.command`` names the task).
    one : callable
        The one-subject function of :mod:`napari_fanet.cli.predict`; it writes into
        ``subject_args.out``.

    Returns
    -------
    int
        0 when every subject was done or skipped, 1 when any failed.
    """
    from tqdm import tqdm

    from napari_fanet.cli.predict_io import OUTPUT_NAMES, _model
    from napari_fanet.engine.batch import find_batch_subjects, run_batch

    task = args.command
    _check_arguments(args, task)
    try:
        layout, subjects = find_batch_subjects(args.batch, task)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(f"--batch: {exc}") from exc
    loaded = _model(args.model)
    print(f"{len(subjects)} subjects ({layout} layout) in {args.batch}", file=sys.stderr)
    events = run_batch(
        subjects,
        args.out,
        partial(_process, args=args, task=task, one=one, loaded=loaded),
        task=task,
        outputs=OUTPUT_NAMES[task],
        summarise=partial(_summarise, task),
        overwrite=args.overwrite,
    )
    counts = {"done": 0, "skipped": 0, "failed": 0}
    try:
        with tqdm(
            total=len(subjects),
            desc=f"{task} batch",
            unit="subject",
            file=sys.stderr,
            disable=args.no_progress,
        ) as bar:
            for event in events:
                counts[event.status] += 1
                if event.status == "failed":
                    message = f"{event.subject} failed: {event.row['error']}"
                    tqdm.write(f"napari-fanet {task}: {message}", file=sys.stderr)
                bar.update(1)
    except OSError as exc:  # the summary CSV or the output root cannot be written
        raise CommandError(f"--out {args.out}: {exc}") from exc
    summary = {
        "layout": layout,
        "subjects": len(subjects),
        **counts,
        "summary": str(Path(args.out) / f"{task}_summary.csv"),
    }
    print(json.dumps(summary, indent=1))
    return 1 if counts["failed"] else 0
