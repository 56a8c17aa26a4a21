"""``napari-fanet demo``: every shipped model and the classical baselines on the sample data.

The work is done by :func:`napari_fanet.evaluation.demo.run_demo`; this module parses the
arguments, sends progress lines to stderr and prints the two metric tables and the output paths to
stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_fanet.cli.base import Command, CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``napari-fanet demo``."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("fanet-demo"),
        metavar="DIR",
        help="output folder (created; default ./fanet-demo)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help="shipped model names or checkpoint files, each run on its own task "
        "(default: every shipped model)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="sample-data folder with ms/sub-0000, qsm/sub-0000 and baselines.json "
        "(default: the repository's sample_data, else the cases are simulated again)",
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``napari-fanet demo``."""
    from napari_fanet.evaluation.demo import run_demo, tables_text

    try:
        result = run_demo(
            args.out, device=args.device, models=args.models, data=args.data, log=_progress
        )
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(tables_text(result.summary))
    print(f"\nwrote {len(result.files)} files to {args.out}:")
    for path in result.files:
        print(f"  {path}")
    print(f"total {result.summary['seconds_total']:.1f} s")
    return 0


COMMAND = Command(
    "demo",
    "run the shipped models and classical baselines on the sample data (metrics, figures)",
    add_arguments,
    run,
    description=(
        "MS lesion segmentation and QSM reconstruction of the shipped sample cases with every "
        "shipped model (or --models) beside the classical baselines (FLAIR threshold; TKD, "
        "CFL2) with their parameters tuned on validation subjects. Writes NIfTI maps, "
        "metrics.md, metrics.json and figures/{ms,qsm}.png to DIR."
    ),
)
