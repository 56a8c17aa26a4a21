"""``napari-fanet segment`` and ``napari-fanet qsm``: run a model on NIfTI files."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from .cli import Command, CommandError, positive_int

WINDOW_HELP = "sliding-window tile size in voxels (default 64 64 64)"


def add_common(parser: argparse.ArgumentParser, default_model: str) -> None:
    """Model, device, tiling and output arguments shared by ``segment`` and ``qsm``."""
    parser.add_argument(
        "--model",
        default=default_model,
        help=f"shipped model name or checkpoint file (default {default_model})",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument(
        "--tile", type=positive_int, nargs=3, default=(64, 64, 64), help=WINDOW_HELP
    )
    parser.add_argument("--overlap", type=float, default=0.5, help="tile overlap in [0, 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _settings(args: argparse.Namespace):
    from .engine.inference import WindowSettings

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
    from .io import load_volume

    try:
        return load_volume(path, name=f"{what} ({path.name})")
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def _model(name: str):
    from .engine.predict import load_model

    try:
        return load_model(name)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc


def _save(out: Path, outputs: dict, reference, dtypes: dict) -> dict[str, str]:
    from .io import save_volume

    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, array in outputs.items():
        path = out / f"{name}.nii.gz"
        save_volume(path, array, reference, dtype=dtypes.get(name))
        written[name] = str(path)
    return written


def _predict(args: argparse.Namespace, desc: str, run: Callable):
    """Call ``run(settings=..., progress=...)`` under a progress bar; bad input -> CommandError."""
    bar, update = _progress_bar(args, desc)
    try:
        return run(settings=_settings(args), progress=update)
    except (ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        bar.close()


def _write_and_report(
    args: argparse.Namespace,
    model,
    result,
    outputs: dict,
    reference,
    dtypes: dict,
    **extra: object,
) -> int:
    """Save ``outputs`` under ``args.out`` and print a JSON summary (``extra`` after "device")."""
    summary = {
        "model": model.config.name,
        "device": result.report.device,
        **extra,
        "files": _save(args.out, outputs, reference, dtypes),
        "messages": result.report.messages,
    }
    print(json.dumps(summary, indent=1))
    return 0


def add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``napari-fanet segment``."""
    for modality in ("t1", "t2", "flair"):
        parser.add_argument(
            f"--{modality}",
            type=Path,
            required=True,
            help=f"{modality.upper()} NIfTI (.nii/.nii.gz), co-registered",
        )
    parser.add_argument("--brain-mask", type=Path, help="brain mask (default: FLAIR != 0)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability threshold")
    add_common(parser, "fanet-seg")


def run_segment(args: argparse.Namespace) -> int:
    """Run ``napari-fanet segment``."""
    from .engine.predict import segment

    vols = {m: _load(getattr(args, m), m.upper()) for m in ("t1", "t2", "flair")}
    mask = _load(args.brain_mask, "brain mask") if args.brain_mask else None
    model, ckpt = _model(args.model)
    run = partial(
        segment,
        model,
        ckpt,
        vols["t1"],
        vols["t2"],
        vols["flair"],
        brain_mask=mask,
        threshold=args.threshold,
    )
    result = _predict(args, "segment", run)
    outputs = {
        "lesion_probability": result.outputs["probability"],
        "lesion_mask": result.outputs["mask"],
    }
    lesion_voxels = int(result.outputs["mask"].sum())
    return _write_and_report(
        args,
        model,
        result,
        outputs,
        vols["flair"],
        {"lesion_mask": "uint8"},
        lesion_voxels=lesion_voxels,
    )


def add_qsm_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``napari-fanet qsm``."""
    parser.add_argument("--field", type=Path, required=True, help="local field NIfTI, in ppm")
    parser.add_argument("--mask", type=Path, required=True, help="brain mask NIfTI")
    parser.add_argument(
        "--b0-dir",
        type=float,
        nargs=3,
        default=(0.0, 0.0, 1.0),
        metavar=("X", "Y", "Z"),
        help="main-field direction in scanner (world) axes (default 0 0 1)",
    )
    add_common(parser, "fanet-qsm")


def run_qsm(args: argparse.Namespace) -> int:
    """Run ``napari-fanet qsm``."""
    from .engine.predict import reconstruct_qsm

    field, mask = _load(args.field, "local field"), _load(args.mask, "brain mask")
    model, ckpt = _model(args.model)
    run = partial(reconstruct_qsm, model, ckpt, field, mask, b0_dir=tuple(args.b0_dir))
    result = _predict(args, "qsm", run)
    return _write_and_report(args, model, result, {"chi": result.outputs["chi"]}, field, {})


SEGMENT = Command(
    "segment", "segment MS lesions in T1/T2/FLAIR NIfTI files", add_segment_arguments, run_segment
)
QSM = Command(
    "qsm",
    "reconstruct a susceptibility map (ppm) from a local field (ppm)",
    add_qsm_arguments,
    run_qsm,
)
