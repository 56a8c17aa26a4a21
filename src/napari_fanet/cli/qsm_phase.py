"""``napari-fanet qsm --phase``: scanner phase to susceptibility on the command line.

The options of the phase path (:func:`add_phase_arguments`) and its run (:func:`run_qsm_phase`),
kept out of :mod:`napari_fanet.cli.predict`, which owns the ``qsm`` command and calls in here when
``--phase`` is given. The work is one core call,
:func:`napari_fanet.engine.phase_qsm.phase_to_susceptibility`; this module loads the files
(:func:`napari_fanet.physics.gre_io.load_multi_echo`), resolves the B0 direction (world axes),
reports progress on stderr and writes every output with the phase's affine, all or none.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_fanet.cli.base import CommandError, UsageError, positive_float

#: Options that only mean something with --phase (attribute, flag).
PHASE_ONLY = (
    ("magnitude", "--magnitude"),
    ("te", "--te"),
    ("b0_tesla", "--b0-tesla"),
    ("unwrap", "--unwrap"),
    ("bfr", "--bfr"),
)
#: Smallest echo time (ms) --te accepts: smaller values were almost surely given in seconds.
MIN_TE_MS = 0.1
#: Copies of the core's choices and defaults, so that ``--help`` imports neither torch nor the
#: physics package (a test keeps them equal to ``physics.unwrap.UNWRAP_METHODS``,
#: ``physics.background.BACKGROUND_METHODS``, ``physics.phase_chain.DEFAULT_BACKGROUND`` and
#: ``engine.phase_qsm``'s).
UNWRAP_CHOICES = ("laplacian", "quality")
BFR_CHOICES = ("vsharp", "pdf", "lbv")
BFR_DEFAULT = "lbv"
METHOD_CHOICES = ("fanet", "cfl2", "tkd")
CFL2_LAMBDA = 0.00562
TKD_THRESHOLD = 0.225


def add_phase_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``napari-fanet qsm --phase`` (added to the ``qsm`` parser)."""
    group = parser.add_argument_group(
        "phase input (--phase)",
        "From multi-echo GRE phase: scale to radians (the assumed scaling is printed), brain "
        "mask (Otsu on the magnitude unless --mask), unwrap, weighted echo fit (field in Hz and "
        "ppm), background removal (local field, ppm), then the dipole inversion (chi, ppm).",
    )
    group.add_argument(
        "--magnitude",
        type=Path,
        nargs="+",
        help="magnitude, same layout and grid as --phase (required with --phase)",
    )
    group.add_argument(
        "--te",
        type=positive_float,
        nargs="+",
        metavar="MS",
        help="echo times in milliseconds, one per echo, increasing (default: EchoTime, in "
        "seconds, from BIDS JSON sidecars next to the phase files)",
    )
    group.add_argument(
        "--b0-tesla", type=positive_float, help="main field strength in tesla (required)"
    )
    group.add_argument(
        "--unwrap", choices=UNWRAP_CHOICES, help="spatial unwrapping (default laplacian)"
    )
    group.add_argument(
        "--bfr",
        choices=BFR_CHOICES,
        help=(
            f"background field removal (default {BFR_DEFAULT}: solves the Laplace equation in "
            "the mask, which it erodes by one voxel; vsharp erodes it by its smallest sphere "
            "radius; pdf uses the B0 direction)"
        ),
    )
    group.add_argument(
        "--method",
        choices=METHOD_CHOICES,
        default="fanet",
        help="dipole inversion: fanet (default, --model with data consistency), cfl2 (closed-form "
        f"L2, lambda {CFL2_LAMBDA:g}) or tkd (threshold {TKD_THRESHOLD:g}); "
        "those two values were tuned on simulated validation subjects",
    )


def check_field_arguments(args: argparse.Namespace) -> None:
    """Refuse phase-only options with ``--field`` and a missing ``--mask`` (UsageError)."""
    given = [flag for name, flag in PHASE_ONLY if getattr(args, name) is not None]
    if given:
        raise UsageError(f"{', '.join(given)} only apply with --phase, not with --field")
    if args.method != "fanet":
        raise UsageError(f"--method {args.method} needs --phase; --field runs --model")
    if args.mask is None:
        raise UsageError("--field needs --mask (the brain mask of the local field)")


def _check_phase_arguments(args: argparse.Namespace) -> None:
    if args.magnitude is None:
        raise UsageError("--phase needs --magnitude (it weights the echo fit and gives the mask)")
    if args.b0_tesla is None:
        raise UsageError("--phase needs --b0-tesla (the main field strength in tesla, e.g. 3)")
    if args.te is not None and min(args.te) < MIN_TE_MS:
        raise UsageError(
            f"--te is in milliseconds, got {' '.join(f'{t:g}' for t in args.te)}: were they "
            "given in seconds?"
        )
    if args.method != "fanet" and (
        args.no_data_consistency or args.dc_lambda is not None or args.data_consistency == "smv"
    ):
        raise UsageError(
            "--data-consistency smv, --no-data-consistency and --dc-lambda only apply with "
            f"--method fanet, got --method {args.method}"
        )


def _load_inputs(args: argparse.Namespace):
    """The multi-echo data and the optional mask (3D, on the phase's grid)."""
    from napari_fanet.cli.predict_io import FOUR_D_CLI_HINT, _load
    from napari_fanet.io.nifti import FOUR_D_HINT, check_same_grid
    from napari_fanet.physics.gre_io import load_multi_echo

    try:
        gre = load_multi_echo(args.phase, args.magnitude, te_ms=args.te)
    except (FileNotFoundError, ValueError) as exc:
        message = str(exc).replace(FOUR_D_HINT, FOUR_D_CLI_HINT)
        if args.te is not None and "echo time" in message:
            message = f"--te: {message}"
        raise CommandError(message) from exc
    except OSError as exc:
        raise CommandError(f"cannot read the phase or magnitude: {exc.strerror or exc}") from exc
    mask = None
    if args.mask is not None:
        mask = _load(args.mask, "brain mask")
        try:
            check_same_grid({"phase": gre.reference, "brain mask": mask})
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
    return gre, mask


def _stage_progress(args: argparse.Namespace):
    """``progress(stage, done, total)`` printing chain steps on stderr and a bar for the tiles."""
    from napari_fanet.cli.predict_io import _progress_bar
    from napari_fanet.physics.phase_chain import STEPS

    tiles: dict = {}  # the tile bar and its update function, made at the first tile

    def progress(stage: str, done: int, total: int) -> None:
        if stage in STEPS:
            if not args.no_progress:
                print(f"phase chain: {stage} done ({done}/{total})", file=sys.stderr)
            return
        if not tiles:
            tiles["bar"], tiles["update"] = _progress_bar(args, "qsm")
        tiles["update"](done, total)

    def close() -> None:
        if tiles:
            tiles["bar"].close()

    return progress, close


def run_qsm_phase(args: argparse.Namespace) -> int:
    """Run ``napari-fanet qsm --phase ...`` (module docstring)."""
    from napari_fanet.cli.predict_io import OUTPUT_NAMES, _b0_direction, _model, _save, _settings
    from napari_fanet.engine.phase_qsm import DEFAULT_PHASE_DC_METHOD, phase_to_susceptibility
    from napari_fanet.io.atomic import check_output_folder
    from napari_fanet.physics.phase_chain import PhaseChainSettings

    _check_phase_arguments(args)
    try:
        check_output_folder(args.out, OUTPUT_NAMES["qsm-phase"])
    except OSError as exc:
        raise CommandError(f"--out: {exc}") from exc
    gre, mask = _load_inputs(args)
    b0_world = _b0_direction(args, gre.reference.affine)
    model = ckpt = None
    options: dict = {"method": args.method}
    if args.method == "fanet":
        model, ckpt = _model(args.model)
        options.update(
            model=model,
            checkpoint=ckpt,
            data_consistency="none"
            if args.no_data_consistency
            else (args.data_consistency or DEFAULT_PHASE_DC_METHOD),
            window_settings=_settings(args),
        )
        if args.dc_lambda is not None:
            options["dc_lambda"] = args.dc_lambda
    settings = PhaseChainSettings(
        b0_tesla=args.b0_tesla,
        unwrap=args.unwrap or "laplacian",
        background=args.bfr or BFR_DEFAULT,
    )
    progress, close = _stage_progress(args)
    try:
        result = phase_to_susceptibility(
            gre.phase,
            gre.echo_times_s,
            gre.reference.affine,
            magnitude=gre.magnitude,
            mask=None if mask is None else mask.data,
            b0_dir_world=b0_world,
            chain_settings=settings,
            progress=progress,
            **options,
        )
    except (ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        close()
    chain = result.chain
    print(f"Phase scaling: {chain.scaling.description}", file=sys.stderr)
    sigma = chain.sigma_hz if chain.sigma_hz is not None else np.zeros_like(chain.field_hz)
    outputs = {
        "field_hz": chain.field_hz,
        "field_ppm": chain.field_ppm,
        "local_field": chain.local_field_ppm,
        "brain_mask": chain.local_mask,
        "chi": result.chi,
        "field_sigma_hz": np.nan_to_num(sigma * chain.mask, nan=0.0, posinf=0.0),
    }
    outputs = {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()}
    summary = {
        "method": args.method,
        "model": None if model is None else model.config.name,
        "device": result.device or "cpu",
        "phase_scaling": chain.scaling.description,
        "echo_times_ms": [round(float(t) * 1000, 6) for t in gre.echo_times_s],
        "echo_times_from": "--te" if gre.te_source == "te_ms" else "sidecars",
        "b0_tesla": args.b0_tesla,
        "b0_dir_world": list(result.b0_dir_world),
        "b0_dir_array": list(result.b0_dir_array),
        "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
        "files": _save(args.out, outputs, gre.reference, {"brain_mask": "uint8"}),
        "messages": result.messages,
    }
    print(json.dumps(summary, indent=1))
    return 0
