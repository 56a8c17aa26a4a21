"""``napari-fanet evaluate``: models against each other and the classical baselines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli import Command, CommandError, non_negative_int, positive_float, positive_int

METRICS = {
    "ms": ("dice", "ltpr", "lppv", "lf1", "seconds"),
    "qsm": ("nrmse", "nrmse_demeaned", "hfen", "ssim", "xsim", "psnr", "seconds"),
}
PAIRED = {"ms": ("dice", "lf1"), "qsm": ("nrmse", "hfen", "ssim")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``napari-fanet evaluate``."""
    parser.add_argument("--task", required=True, choices=("ms", "qsm"))
    parser.add_argument(
        "--models", nargs="+", required=True, help="shipped model names or checkpoint files"
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
        help="added to the test and validation seeds",
    )
    parser.add_argument("--voxel-size", type=positive_float, nargs=3, default=(2.0, 2.0, 2.0))
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument("--tile", type=positive_int, nargs=3, default=(64, 64, 64))
    parser.add_argument("--out", type=Path, help="write evaluation.md and evaluation.json here")


def run(args: argparse.Namespace) -> int:
    """Run ``napari-fanet evaluate``."""
    from .atomic import atomic_write
    from .engine import evaluation as ev
    from .engine.inference import WindowSettings
    from .engine.predict import load_model

    settings = WindowSettings(roi_size=tuple(args.tile), overlap=0.5, device=args.device)
    methods = {}
    for name in args.models:
        try:
            model, ckpt = load_model(name)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        want = "segmentation" if args.task == "ms" else "qsm"
        if model.config.task != want:
            raise CommandError(f"{name} is a {model.config.task} model, not {want}")
        methods[Path(name).stem] = ev.model_method(args.task, model, ckpt, settings)
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
        ev.markdown_table(summary, METRICS[args.task]),
    ]
    names = list(methods)
    paired = {}
    if len(args.models) >= 2:
        a, b = Path(args.models[0]).stem, Path(args.models[1]).stem
        text += ["", f"Paired differences {a} - {b} (mean, bootstrap 95% CI):", ""]
        for metric in PAIRED[args.task]:
            d = ev.paired_difference([r[metric] for r in rows[a]], [r[metric] for r in rows[b]])
            paired[metric] = d
            text.append(f"- {metric}: {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]")
    report = "\n".join(text)
    print(report)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {
            "task": args.task,
            "methods": names,
            "params": params,
            "per_subject": rows,
            "summary": summary,
            "paired": paired,
            "test_cases": [c.name for c in test],
        }
        atomic_write(args.out / "evaluation.md", lambda p: p.write_text(report + "\n"))
        atomic_write(
            args.out / "evaluation.json", lambda p: p.write_text(json.dumps(payload, indent=1))
        )
    return 0


COMMAND = Command(
    "evaluate",
    "compare models and classical baselines on held-out simulated subjects",
    add_arguments,
    run,
)
