"""``napari-fanet evaluate``: models against each other and the classical baselines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_fanet.cli.base import (
    Command,
    CommandError,
    UsageError,
    load_models,
    non_negative_int,
    overlap_fraction,
    positive_int,
    tile_size,
    voxel_size_mm,
)
from napari_fanet.cli.predict import (
    UNSET,
    add_mask_rule_arguments,
    add_roughness_argument,
    add_window_shifts_argument,
    mask_rule_options,
    match_roughness_option,
    window_shifts_option,
)

OUTPUT_NAMES = ("evaluation.md", "evaluation.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``napari-fanet evaluate``."""
    parser.add_argument("--task", required=True, choices=("ms", "qsm"))
    parser.add_argument(
        "--models",
        nargs="+",
        required=True,
        help="shipped model names or checkpoint files; with --data, a checkpoint path holding "
        "{subject} is a leave-one-out family: each subject is scored by the checkpoint whose "
        "path has its folder name there (the run trained without it)",
    )
    parser.add_argument(
        "--n-test", type=positive_int, default=10, help="simulated test subjects (seeds 20000+)"
    )
    parser.add_argument(
        "--n-val",
        type=positive_int,
        default=3,
        help="simulated validation subjects for tuning baselines (10000+)",
    )
    parser.add_argument(
        "--seed-offset",
        type=non_negative_int,
        default=0,
        help="added to the test and validation seeds (with --suite ood: each family's first "
        "draw, 0-499)",
    )
    parser.add_argument(
        "--voxel-size",
        type=voxel_size_mm,
        nargs=3,
        default=(2.0, 2.0, 2.0),
        help="voxel size of the simulated subjects in mm, 0.25-10 (default 2 2 2)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument(
        "--tile",
        type=tile_size,
        nargs=3,
        default=(64, 64, 64),
        help="sliding-window tile size in voxels, 16-512 (default 64 64 64)",
    )
    parser.add_argument(
        "--overlap",
        type=overlap_fraction,
        default=0.5,
        help="sliding-window overlap in [0, 1) (default 0.5)",
    )
    parser.add_argument("--out", type=Path, help="write evaluation.md and evaluation.json here")
    suite = parser.add_argument_group("out-of-distribution suite (--task qsm)")
    suite.add_argument(
        "--suite",
        choices=("test", "ood"),
        default="test",
        help="test: the simulated test split (default); ood: phantom families training never "
        "draws (geometric, haemorrhage, calcification, voxel sizes, B0 tilts, noise levels), "
        "baselines tuned on each family's own validation draws",
    )
    suite.add_argument(
        "--families",
        nargs="+",
        metavar="NAME",
        help="with --suite ood: only these families (default: all)",
    )
    masks = parser.add_argument_group("lesion masks (--task ms), as napari-fanet segment")
    add_mask_rule_arguments(masks)
    add_roughness_argument(masks)
    add_window_shifts_argument(masks)
    real = parser.add_argument_group("real scans (--task ms)")
    real.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="evaluate on labelled subjects in DIR instead of simulated ones: one folder each "
        "with flair, optional t1/t2, lesion_mask or consensus_lesions, optional brain_mask "
        "(NIfTI); the FLAIR-threshold baseline is tuned leave-one-out on the other subjects",
    )
    real.add_argument(
        "--modes",
        nargs="+",
        choices=("flair", "t1-flair", "t2-flair", "t1-t2-flair"),
        default=("flair", "t1-flair", "t1-t2-flair"),
        help="with --data: input modes to score (default flair t1-flair t1-t2-flair)",
    )


def prediction_options(args: argparse.Namespace) -> dict:
    """The networks' prediction options the command line sets (MS: mask rule, roughness).

    Raises
    ------
    UsageError
        An MS option with ``--task qsm``, or options that cannot work together.
    """
    from napari_fanet.tasks import get_task

    given = [
        option
        for option, value in (
            ("--seed-threshold", args.seed_threshold),
            ("--min-lesion-volume", args.min_lesion_volume),
            ("--min-edge-distance", args.min_edge_distance),
            ("--[no-]match-roughness", UNSET if args.match_roughness is None else True),
            ("--window-shifts", UNSET if args.window_shifts is None else True),
        )
        if value is not UNSET
    ]
    if "seed_threshold" not in get_task(args.task).prediction_options:
        if given:
            raise UsageError(f"{'/'.join(given)}: MS segmentation options are for --task ms only")
        return {}
    return {
        **mask_rule_options(args),
        "match_roughness": match_roughness_option(args),
        "window_shifts": window_shifts_option(args),
    }


def run(args: argparse.Namespace) -> int:
    """Run ``napari-fanet evaluate``."""
    args.prediction_options = prediction_options(args)
    if args.data is not None:
        from napari_fanet.cli.evaluate_real import run_real

        return run_real(args)
    if args.suite == "ood":
        from napari_fanet.cli.evaluate_ood import run_ood

        return run_ood(args)
    from napari_fanet.engine.inference import WindowSettings
    from napari_fanet.evaluation import simulated as ev
    from napari_fanet.evaluation.real import prediction_sentence
    from napari_fanet.io.atomic import check_output_folder, write_files_atomically
    from napari_fanet.tasks import get_task
    from napari_fanet.tasks.lesion_mask import DEFAULT_THRESHOLD, LesionMaskRule

    if args.out:  # before the evaluation, which takes minutes
        try:
            check_output_folder(args.out, OUTPUT_NAMES)
        except OSError as exc:
            raise CommandError(f"--out: {exc}") from exc
    settings = WindowSettings(roi_size=tuple(args.tile), overlap=args.overlap, device=args.device)
    task = get_task(args.task)
    # each network, and its ablations (QSM: the raw network beside the default pipeline)
    models = load_models(args.models, task.name)
    methods = ev.network_methods(args.task, models, settings, **args.prediction_options)
    vox = tuple(args.voxel_size)
    print(f"simulating {args.n_val} validation subjects, tuning baselines", file=sys.stderr)
    val = ev.simulated_cases(
        args.task, [10_000 + args.seed_offset + i for i in range(args.n_val)], vox
    )
    params = ev.tune_classical(args.task, val)
    methods.update(ev.classical_methods(args.task, params))
    test = ev.simulated_cases(
        args.task, [20_000 + args.seed_offset + i for i in range(args.n_test)], vox
    )
    rows = ev.run_evaluation(
        args.task, methods, test, progress=lambda i, n: print(f"subject {i}/{n}", file=sys.stderr)
    )
    summary = ev.summarise(rows)
    text = [
        f"## {args.task.upper()} evaluation: {args.n_test} simulated test subjects "
        f"(seeds {20_000 + args.seed_offset}+), baselines tuned on {args.n_val} validation "
        f"subjects (seeds {10_000 + args.seed_offset}+): {params}",
        "",
        ev.markdown_table(summary, task.evaluation_metrics),
    ]
    if args.prediction_options:  # MS: how the networks' probabilities became masks
        options = args.prediction_options
        rule = LesionMaskRule(
            DEFAULT_THRESHOLD,
            options["seed_threshold"],
            options["min_lesion_mm3"],
            options["min_edge_distance_mm"],
        )
        text += ["", f"Networks' lesion masks: {rule.describe()}. {prediction_sentence(options)}"]
    names = list(methods)
    paired = {}
    if len(args.models) >= 2:
        a, b = Path(args.models[0]).stem, Path(args.models[1]).stem
        text += ["", f"Paired differences {a} - {b} (mean, bootstrap 95% CI):", ""]
        for metric in task.paired_metrics:
            d = ev.paired_difference([r[metric] for r in rows[a]], [r[metric] for r in rows[b]])
            paired[metric] = d
            text.append(f"- {metric}: {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]")
    report = "\n".join(text)
    print(report)
    if args.out:
        payload = {
            "task": args.task,
            "methods": names,
            "params": params,
            "per_subject": rows,
            "summary": summary,
            "paired": paired,
            "test_cases": [c.name for c in test],
            "prediction_options": args.prediction_options,
        }
        writers = {
            "evaluation.md": lambda p: p.write_text(report + "\n"),
            "evaluation.json": lambda p: p.write_text(json.dumps(payload, indent=1)),
        }
        try:
            write_files_atomically(args.out, writers)  # both files or neither
        except OSError as exc:
            raise CommandError(
                f"writing to {args.out} failed; no output was written: {exc}"
            ) from exc
    return 0


COMMAND = Command(
    "evaluate",
    "compare models and classical baselines on held-out simulated subjects",
    add_arguments,
    run,
)
