"""Inputs, models and outputs shared by the prediction commands.

``segment``, ``qsm``, ``--batch`` and the phase-to-susceptibility path of ``qsm`` share: loading
NIfTI files with CLI messages, loading a model, the sliding-window settings, the progress bar and
writing the outputs atomically.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from napari_fanet.cli.base import CommandError

FOUR_D_CLI_HINT = "; give one 3D volume (one echo or time point, split off with fslsplit)"
#: The files each command writes into --out (checked before inference).
OUTPUT_NAMES = {
    "segment": ("lesion_probability.nii.gz", "lesion_mask.nii.gz", "lesions.csv"),
    "qsm": ("chi.nii.gz",),
    # qsm --phase (cli/qsm_phase.py): the chain's maps, the susceptibility and the field noise
    "qsm-phase": tuple(
        f"{n}.nii.gz"
        for n in ("field_hz", "field_ppm", "local_field", "brain_mask", "chi", "field_sigma_hz")
    ),
}


def _settings(args: argparse.Namespace):
    from napari_fanet.engine.inference import WindowSettings

    try:
        return WindowSettings(roi_size=tuple(args.tile), overlap=args.overlap, device=args.device)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _progress_bar(args: argparse.Namespace, desc: str):
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="tile", file=sys.stderr, disable=args.no_progress)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


def _load(path: Path, what: str):
    from napari_fanet.io.nifti import FOUR_D_HINT, load_volume

    label = f"{what} ({path.name})"
    try:
        return load_volume(path, name=label)
    except (FileNotFoundError, ValueError) as exc:
        # the Python hint (allow_4d=True) means nothing on the command line
        message = str(exc).replace(FOUR_D_HINT, FOUR_D_CLI_HINT)
        raise CommandError(message) from exc
    except OSError as exc:  # permissions, a folder given as a file...
        raise CommandError(f"{label}: cannot read {path}: {exc.strerror or exc}") from exc


def _model(name: str):
    from napari_fanet.engine.predict import load_model

    try:
        return load_model(name)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def _check_out(args: argparse.Namespace) -> None:
    """Refuse an ``--out`` the outputs cannot be written to, before any inference."""
    from napari_fanet.io.atomic import check_output_folder

    try:
        check_output_folder(args.out, OUTPUT_NAMES.get(args.command, ()))
    except OSError as exc:
        raise CommandError(f"--out: {exc}") from exc


def _save(
    out: Path, outputs: dict, reference, dtypes: dict, texts: dict | None = None
) -> dict[str, str]:
    """Write every output into ``out`` (all of them or, on any error, none).

    ``outputs`` maps a name to an array (written as ``NAME.nii.gz``); ``texts`` maps a file
    name (such as ``lesions.csv``) to its text, reported under its stem.
    """
    from napari_fanet.io.atomic import write_files_atomically

    writers = {
        f"{name}.nii.gz": partial(_save_one, array=a, reference=reference, dtype=dtypes.get(name))
        for name, a in outputs.items()
    }
    texts = texts or {}
    writers.update({name: partial(_save_text, text=text) for name, text in texts.items()})
    try:
        paths = write_files_atomically(out, writers)
    except (OSError, ValueError) as exc:
        raise CommandError(f"writing to {out} failed; no output was written: {exc}") from exc
    files = {name: str(paths[f"{name}.nii.gz"]) for name in outputs}
    files.update({Path(name).stem: str(paths[name]) for name in texts})
    return files


def _save_text(path: Path, *, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _save_one(path: Path, *, array, reference, dtype) -> None:
    from napari_fanet.io.nifti import save_volume

    save_volume(path, array, reference, dtype=dtype)


def _b0_direction(args: argparse.Namespace, field_affine) -> tuple[float, float, float]:
    """``--b0-dir``, else the field's JSON sidecar or ``meta.json``, else scanner z."""
    from napari_fanet.io.nifti import read_b0_metadata

    if args.b0_dir is not None:
        return tuple(args.b0_dir)
    try:
        found = read_b0_metadata(
            args.field if args.field is not None else args.phase[0], field_affine
        )
    except ValueError as exc:
        raise CommandError(f"{exc}; give --b0-dir X Y Z to override it") from exc
    if found is None:
        return (0.0, 0.0, 1.0)
    direction, source = found
    print(f"B0 direction {_fmt(direction)} (scanner axes) read from {source}", file=sys.stderr)
    return direction


def _fmt(values) -> str:
    return " ".join(f"{float(v):.4g}" for v in values)
