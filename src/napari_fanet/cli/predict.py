"""``napari-fanet segment`` and ``napari-fanet qsm``: run a model on NIfTI files."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from napari_fanet.cli.base import (
    Command,
    CommandError,
    UsageError,
    finite_float,
    non_negative_float,
    overlap_fraction,
    positive_float,
    probability,
    tile_size,
    window_shifts,
)
from napari_fanet.cli.predict_io import (
    _b0_direction,
    _check_out,
    _load,
    _model,
    _progress_bar,
    _save,
    _settings,
)

WINDOW_HELP = "sliding-window tile size in voxels, 16-512 (default 64 64 64)"
BATCH_HELP = (
    "run every subject of a dataset folder instead (BIDS or one folder per subject; see "
    "napari-fanet {task} --help): one output folder per subject under --out"
)
OVERWRITE_HELP = "with --batch: run again the subjects whose outputs already exist"


def add_common(
    parser: argparse.ArgumentParser, default_model: str | None, model_help: str | None = None
) -> None:
    """Model, device, tiling and output arguments shared by ``segment`` and ``qsm``.

    ``default_model`` None: the command picks the model after parsing (``model_help`` says how).
    """
    parser.add_argument(
        "--model",
        default=default_model,
        help=model_help or f"shipped model name or checkpoint file (default {default_model})",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument("--tile", type=tile_size, nargs=3, default=(64, 64, 64), help=WINDOW_HELP)
    parser.add_argument(
        "--overlap", type=overlap_fraction, default=0.5, help="tile overlap in [0, 1)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _predict(args: argparse.Namespace, desc: str, run: Callable):
    """Call ``run(settings=..., progress=...)`` under a progress bar; bad input -> CommandError.

    ``--out`` is checked first, so an unwritable output folder fails before the inference.
    """
    _check_out(args)
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
    summary = _write_outputs(args, model, result, outputs, reference, dtypes, **extra)
    print(json.dumps(summary, indent=1))
    return 0


def _write_outputs(
    args: argparse.Namespace,
    model,
    result,
    outputs: dict,
    reference,
    dtypes: dict,
    texts: dict | None = None,
    **extra: object,
) -> dict:
    """Save ``outputs`` (and ``texts``) under ``args.out``; return the JSON summary."""
    return {
        "model": model.config.name,
        "device": result.report.device,
        **extra,
        "files": _save(args.out, outputs, reference, dtypes, texts),
        "messages": result.report.messages,
    }


#: The mask rule's defaults as ``--help`` shows them (without importing the package's core;
#: a test checks them against :mod:`napari_fanet.tasks.lesion_mask`).
SEED_THRESHOLD_HELP = "0.95"
MIN_LESION_HELP = "10"
MIN_EDGE_DISTANCE_HELP = "2"
#: Marks an option the user did not give (``--seed-threshold none`` is a value of its own).
UNSET = object()


def add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``napari-fanet segment``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--flair", type=Path, help="FLAIR NIfTI (.nii/.nii.gz)")
    source.add_argument(
        "--batch", type=Path, metavar="DIR", help=BATCH_HELP.format(task="segment")
    )
    for modality in ("t1", "t2"):
        parser.add_argument(
            f"--{modality}",
            type=Path,
            help=f"{modality.upper()} NIfTI, co-registered with the FLAIR (optional for models "
            "trained with modality dropout, as the shipped fanet-seg; the shipped unet-seg "
            "needs it)",
        )
    parser.add_argument(
        "--brain-mask",
        type=Path,
        help="brain mask (default: the non-zero FLAIR voxels: the FLAIR must be skull-stripped; "
        "without a mask a FLAIR that does not look skull-stripped is refused)",
    )
    parser.add_argument(
        "--chi",
        type=Path,
        help="susceptibility map (ppm, e.g. from napari-fanet qsm), registered with the FLAIR: "
        "adds each lesion's mean susceptibility and rim-minus-core contrast to lesions.csv",
    )
    parser.add_argument(
        "--threshold",
        type=probability,
        default=0.5,
        help="lesion probability threshold, strictly between 0 and 1 (default 0.5)",
    )
    add_mask_rule_arguments(parser)
    parser.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        help="also segment the left-right mirror image and average the two probabilities "
        "(test-time augmentation; twice the network time; default: on)",
    )
    add_window_shifts_argument(parser)
    add_roughness_argument(parser)
    add_common(parser, "fanet-seg")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


#: napari_fanet.engine.predict.WINDOW_SHIFTS_DEFAULT (a test checks that they agree).
WINDOW_SHIFTS_HELP = 2


def add_window_shifts_argument(parser: Any) -> None:
    """``--window-shifts N`` (None when not given; :func:`window_shifts_option` reads it)."""
    parser.add_argument(
        "--window-shifts",
        type=window_shifts,
        metavar="N",
        help="average the lesion probability over N grids of sliding windows, each shifted "
        "by 1/N of a window step along every axis, so that a lesion depends less on where the "
        "windows fall (test-time augmentation; N times the network time, 2N with the mirror; "
        f"1 to 8; default: {WINDOW_SHIFTS_HELP})",
    )


def window_shifts_option(args: argparse.Namespace) -> int:
    """``--window-shifts`` as given, else the core's default."""
    from napari_fanet.engine.predict import WINDOW_SHIFTS_DEFAULT

    given = getattr(args, "window_shifts", None)
    return WINDOW_SHIFTS_DEFAULT if given is None else given


#: napari_fanet.tasks.roughness.MATCH_ROUGHNESS_DEFAULT in words (a test checks they agree).
MATCH_ROUGHNESS_HELP = "on"


def add_roughness_argument(parser: Any) -> None:
    """``--match-roughness`` / ``--no-match-roughness`` (None when not given)."""
    parser.add_argument(
        "--match-roughness",
        action=argparse.BooleanOptionalAction,
        help="smooth a FLAIR rougher than the real scans the model was trained on until it "
        "is not, before segmenting (models that record no training roughness are not "
        f"affected; default: {MATCH_ROUGHNESS_HELP})",
    )


def match_roughness_option(args: argparse.Namespace) -> bool:
    """``--match-roughness`` as given, else the core's default."""
    from napari_fanet.tasks.roughness import MATCH_ROUGHNESS_DEFAULT

    return MATCH_ROUGHNESS_DEFAULT if args.match_roughness is None else args.match_roughness


def add_mask_rule_arguments(parser: Any) -> None:
    """``--seed-threshold``, ``--min-lesion-volume``, ``--min-edge-distance`` on a parser or group.

    :func:`mask_rule_options` reads them.
    """
    parser.add_argument(
        "--seed-threshold",
        type=seed_threshold,
        default=UNSET,
        metavar="P",
        help="keep a lesion (26-connected voxels above --threshold) only if one of its voxels "
        "is above P, at least --threshold and below 1; 'none' keeps every lesion "
        f"(default {SEED_THRESHOLD_HELP})",
    )
    parser.add_argument(
        "--min-lesion-volume",
        type=non_negative_float,
        default=UNSET,
        metavar="MM3",
        help=f"smallest lesion kept, in mm^3; 0 keeps every lesion (default {MIN_LESION_HELP})",
    )
    parser.add_argument(
        "--min-edge-distance",
        type=non_negative_float,
        default=UNSET,
        metavar="MM",
        help="drop a lesion whose voxels lie on average less than MM inside the brain mask "
        "(the bright rim of a skull-stripped brain: cortex, CSF, stripping edge); 0 keeps "
        f"every lesion (default {MIN_EDGE_DISTANCE_HELP})",
    )


def mask_rule_options(args: argparse.Namespace, threshold: float | None = None) -> dict:
    """The mask rule's options as given, else the defaults, checked together.

    Returns ``seed_threshold``, ``min_lesion_mm3`` and ``min_edge_distance_mm``.

    Raises
    ------
    UsageError
        The threshold, seed threshold, minimum volume and edge distance cannot work together.
    """
    from napari_fanet.tasks.lesion_mask import (
        DEFAULT_MIN_EDGE_DISTANCE_MM,
        DEFAULT_MIN_LESION_MM3,
        DEFAULT_SEED_THRESHOLD,
        DEFAULT_THRESHOLD,
        LesionMaskRule,
    )

    seed = DEFAULT_SEED_THRESHOLD if args.seed_threshold is UNSET else args.seed_threshold
    volume = DEFAULT_MIN_LESION_MM3 if args.min_lesion_volume is UNSET else args.min_lesion_volume
    edge = (
        DEFAULT_MIN_EDGE_DISTANCE_MM if args.min_edge_distance is UNSET else args.min_edge_distance
    )
    try:
        LesionMaskRule(DEFAULT_THRESHOLD if threshold is None else threshold, seed, volume, edge)
    except ValueError as exc:
        raise UsageError(
            f"--threshold/--seed-threshold/--min-lesion-volume/--min-edge-distance: {exc}"
        ) from exc
    return {"seed_threshold": seed, "min_lesion_mm3": volume, "min_edge_distance_mm": edge}


def seed_threshold(text: str) -> float | None:
    """Parse ``--seed-threshold``: a probability strictly between 0 and 1, or ``none``."""
    if text.strip().lower() in ("none", "off"):
        return None
    return probability(text)


def run_segment(args: argparse.Namespace) -> int:
    """Run ``napari-fanet segment`` (one subject, or every subject of ``--batch DIR``)."""
    from napari_fanet.cli.batch import check_overwrite, run_batch_command

    check_overwrite(args)
    options = mask_rule_options(args, args.threshold)
    args.seed_threshold = options["seed_threshold"]
    args.min_lesion_volume = options["min_lesion_mm3"]
    args.min_edge_distance = options["min_edge_distance_mm"]
    if args.batch is not None:
        return run_batch_command(args, _segment_one)
    print(json.dumps(_segment_one(args), indent=1))
    return 0


def _segment_one(args: argparse.Namespace, loaded: tuple | None = None) -> dict:
    """Segment one subject into ``args.out``; return the JSON summary.

    ``loaded`` is ``(model, checkpoint)`` when the caller loaded the model already (batch).
    """
    from napari_fanet.engine.predict import MIRROR_DEFAULT, segment
    from napari_fanet.evaluation.lesion_table import lesion_table
    from napari_fanet.tasks.lesion_mask import LesionMaskRule

    given = [m for m in ("flair", "t1", "t2") if getattr(args, m)]
    vols = {m: _load(getattr(args, m), m.upper()) for m in given}
    if getattr(args, "chi", None) is not None:
        vols["chi"] = _load(args.chi, "susceptibility map")
    mask = _load(args.brain_mask, "brain mask") if args.brain_mask else None
    vols, mask = _on_flair_grid(vols, mask)
    model, ckpt = loaded or _model(args.model)
    run = partial(
        segment,
        model,
        ckpt,
        vols.get("t1"),
        vols.get("t2"),
        vols["flair"],
        brain_mask=mask,
        threshold=args.threshold,
        seed_threshold=args.seed_threshold,
        min_lesion_mm3=args.min_lesion_volume,
        min_edge_distance_mm=args.min_edge_distance,
        mirror=MIRROR_DEFAULT if args.mirror is None else args.mirror,
        window_shifts=window_shifts_option(args),
        match_roughness=match_roughness_option(args),
    )
    result = _predict(args, "segment", run)
    outputs = {
        "lesion_probability": result.outputs["probability"],
        "lesion_mask": result.outputs["mask"],
    }
    lesion_voxels = int(result.outputs["mask"].sum())
    table = lesion_table(
        result.outputs["mask"],
        vols["flair"].affine,
        probability=result.outputs["probability"],
        chi=vols["chi"].data if "chi" in vols else None,
    )
    return _write_outputs(
        args,
        model,
        result,
        outputs,
        vols["flair"],
        {"lesion_mask": "uint8"},
        {"lesions.csv": table.to_csv()},
        mask_rule=LesionMaskRule(
            args.threshold, args.seed_threshold, args.min_lesion_volume, args.min_edge_distance
        ).describe(),
        lesion_voxels=lesion_voxels,
        lesions=len(table),
        lesion_volume_ml=round(table.total_volume_ml, 4),
    )


def _on_flair_grid(vols: dict, mask):
    """T1, T2 and the brain mask resampled onto the FLAIR's grid where theirs differs.

    Resampling goes through the affines (nibabel ``resample_from_to``; trilinear for images,
    nearest for the mask), so the files must be registered in world space; a line on stderr
    says which inputs were resampled.
    """
    from napari_fanet.io.resample import describe_grid, resample_to_reference, same_grid

    flair = vols["flair"]
    others = {**{k: v for k, v in vols.items() if k != "flair"}, "brain mask": mask}
    for name, vol in others.items():
        if vol is None or same_grid(vol, flair):
            continue
        print(
            f"{name.upper() if name != 'brain mask' else name} is on another grid "
            f"({describe_grid(vol)}) than the FLAIR ({describe_grid(flair)}): resampled onto "
            "the FLAIR grid through the affines (nibabel resample_from_to, "
            f"{'nearest' if name == 'brain mask' else 'trilinear'})",
            file=sys.stderr,
        )
        try:
            moved = resample_to_reference(vol, flair, order=0 if name == "brain mask" else 1)
        except ValueError as exc:
            raise CommandError(f"{name}: {exc}") from exc
        if name == "brain mask":
            mask = moved
        else:
            vols[name] = moved
    return vols, mask


def add_qsm_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``napari-fanet qsm``."""
    from napari_fanet.cli.qsm_phase import add_phase_arguments

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--field", type=Path, help="local field NIfTI, in ppm")
    source.add_argument("--batch", type=Path, metavar="DIR", help=BATCH_HELP.format(task="qsm"))
    source.add_argument(
        "--phase",
        type=Path,
        nargs="+",
        help="multi-echo GRE phase instead of --field: one 4D NIfTI (echoes last) or one 3D "
        "file per echo, in echo order; runs the phase chain first (see the phase options)",
    )
    parser.add_argument(
        "--mask",
        type=Path,
        help="brain mask NIfTI (required with --field; with --phase default: from the magnitude)",
    )
    add_phase_arguments(parser)
    parser.add_argument(
        "--b0-dir",
        type=finite_float,
        nargs=3,
        default=None,
        metavar=("X", "Y", "Z"),
        help="main-field direction in scanner (world) axes; its sign does not matter. Default: "
        "read from a JSON sidecar next to --field or the first --phase file (NAME.json: B0Dir "
        "or b0_dir_world) or meta.json in its folder, else 0 0 1",
    )
    dc = parser.add_mutually_exclusive_group()
    dc.add_argument(
        "--data-consistency",
        choices=("cg", "kspace", "smv"),
        default=None,
        help="make the network's map consistent with the field: cg (the default with --field; "
        "data term inside the mask, conjugate gradients), kspace (closed form on the padded "
        "grid) or smv (--phase only, and its default: the raw map matched to the total field "
        "through spherical means, which keeps the part of the local field that background "
        "removal loses)",
    )
    dc.add_argument(
        "--no-data-consistency",
        action="store_true",
        help="the raw network output (for ablation)",
    )
    parser.add_argument(
        "--dc-lambda",
        type=_dc_lambda,
        default=None,
        help="weight of the network's map against the field in data consistency "
        "(a number > 0; default auto: estimated for each volume from the field's noise and the "
        "network's residual, halved for the smv fit of --phase, as measured on simulations)",
    )
    add_common(
        parser,
        None,
        "shipped model name or checkpoint file (default fanet-qsm for --field, fanet-qsm-phase "
        "for --phase: fanet-qsm fine-tuned on simulated phase through this chain)",
    )
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def _dc_lambda(text: str) -> float | str:
    """``--dc-lambda``: ``auto`` or a positive number."""
    return "auto" if text.strip().lower() == "auto" else positive_float(text)


def run_qsm(args: argparse.Namespace) -> int:
    """Run ``napari-fanet qsm``."""
    from napari_fanet.cli.batch import check_overwrite, run_batch_command
    from napari_fanet.cli.qsm_phase import check_field_arguments, run_qsm_phase

    check_overwrite(args)
    if args.model is None:
        from napari_fanet.tasks import QSM

        args.model = QSM.default_model_for(phase=args.phase is not None)
    if args.phase is not None:
        return run_qsm_phase(args)
    if args.data_consistency == "smv":
        raise UsageError(
            "--data-consistency smv needs --phase: it matches the total field, and a local "
            "--field has none"
        )
    if args.batch is not None:
        return run_batch_command(args, _qsm_one)
    check_field_arguments(args)
    print(json.dumps(_qsm_one(args), indent=1))
    return 0


def _qsm_one(args: argparse.Namespace, loaded: tuple | None = None) -> dict:
    """Reconstruct one ``--field`` into ``args.out``; return the JSON summary.

    ``loaded`` is ``(model, checkpoint)`` when the caller loaded the model already (batch).
    """
    from napari_fanet.engine.predict import reconstruct_qsm

    field, mask = _load(args.field, "local field"), _load(args.mask, "brain mask")
    b0_dir = _b0_direction(args, field.affine)
    model, ckpt = loaded or _model(args.model)
    method = "none" if args.no_data_consistency else (args.data_consistency or "cg")
    options: dict = {"data_consistency": method}
    if args.dc_lambda is not None:
        options["dc_lambda"] = args.dc_lambda
    run = partial(reconstruct_qsm, model, ckpt, field, mask, b0_dir=b0_dir, **options)
    result = _predict(args, "qsm", run)
    return _write_outputs(args, model, result, {"chi": result.outputs["chi"]}, field, {})


SEGMENT = Command(
    "segment",
    "segment MS lesions in FLAIR (+ optional T1/T2) NIfTI files",
    add_segment_arguments,
    run_segment,
    description=(
        "Segment MS lesions from a FLAIR and, if available, a T1 and a T2 (FLAIR alone, T1 + "
        "FLAIR, T2 + FLAIR or all three for models trained with modality dropout; the shipped"
        " fanet-seg takes any of them, the shipped unet-seg needs all three). Inputs must be "
        "skull-stripped (0 outside the brain) or come with --brain-mask; without a mask, a FLAIR"
        " whose background reaches the array's faces is refused, and the nearly-zero residue "
        "that resampling after skull stripping leaves is kept out of the brain. T1, T2 and the "
        "mask "
        "may be on other grids than the FLAIR: they are resampled onto the FLAIR grid through"
        " their affines (nibabel resample_from_to), so they must be registered to it in world"
        " space. Writes OUT/lesion_probability.nii.gz and OUT/lesion_mask.nii.gz on the FLAIR"
        " grid, and OUT/lesions.csv: one row per lesion (26-connected, >= 3 voxels): volume, "
        "world centroid, probability, location class (from the MNI template: the FLAIR is "
        "assumed to be registered to MNI space; see napari_fanet.evaluation.lesion_table). "
        "--batch DIR runs every subject of DIR into OUT/SUBJECT/ and writes "
        "OUT/segment_summary.csv (lesion count and volume per subject); subjects with outputs"
        " are skipped unless --overwrite, a failing subject does not stop the others (exit "
        "status 1 if any failed). DIR is BIDS (sub-*/[ses-*/]anat/*_FLAIR.nii.gz, optional "
        "*_T1w, *_T2w, *_mask, *_Chimap) or one folder per subject (NAME/flair.nii.gz, "
        "optional t1, t2, brain_mask, chi)."
    ),
)
QSM = Command(
    "qsm",
    "reconstruct a susceptibility map (ppm) from a local field (ppm)",
    add_qsm_arguments,
    run_qsm,
    description=(
        "Reconstruct a susceptibility map (ppm) from a local field (--field + --mask) or from "
        "multi-echo phase (--phase). --batch DIR runs every subject of DIR into OUT/SUBJECT/ "
        "and writes OUT/qsm_summary.csv (mean, SD and percentiles of chi in the mask per "
        "subject); subjects with outputs are skipped unless --overwrite, a failing subject "
        "does not stop the others (exit status 1 if any failed). DIR is BIDS "
        "(sub-*/[ses-*/]anat/*_localfield.nii.gz + *_mask.nii.gz, B0 from the field's JSON "
        "sidecar) or one folder per subject (NAME/local_field.nii.gz + brain_mask.nii.gz, "
        "optional meta.json)."
    ),
)
