"""``napari-fanet simulate``: write a synthetic MS or QSM dataset (deterministic from a seed)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_fanet.cli.base import (
    FAMILY_CHOICES,
    Command,
    CommandError,
    UsageError,
    non_negative_int,
    positive_float,
    positive_int,
)


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        required=True,
        choices=("qsm", "ms"),
        help="qsm: local field, susceptibility, magnitude, brain mask; "
        "ms: T1, T2, FLAIR, lesion/brain/white-matter masks",
    )
    parser.add_argument(
        "--subjects", type=positive_int, required=True, metavar="N", help="number of subjects"
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        required=True,
        metavar="S",
        help="seed of the first subject (subject i uses S + i). Convention: train 0, "
        "validation 10000, test 20000, sample data 90000",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--voxel-size",
        type=positive_float,
        nargs=3,
        default=(2.0, 2.0, 2.0),
        metavar=("X", "Y", "Z"),
        help="voxel size in mm, 0.25-10 (default: 2 2 2; anisotropic allowed, e.g. 1 1 3)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into DIR even if it is not empty (replaces dataset.json and sub-* folders)",
    )
    parser.add_argument(
        "--family",
        choices=FAMILY_CHOICES,
        default="phantom",
        help="generator family: phantom (default); for --task ms, randomised "
        "(domain-randomised contrast, lesion load 0.1-80 mL, scanner artefacts; use "
        "--voxel-size 1 1 1), randomised-v2 (its generator version 2: uniform, sharp-edged "
        "confluent lesions; reproduces older datasets), randomised-v4 (version 4: regional "
        "bright grey matter, unlabelled), randomised-v5 (version 5: version 4 plus atrophy, "
        "lateral ventricles grown by 1-6 mm on 60%% of the subjects), randomised-v6 (version "
        "6: version 4 plus a fine texture over tissue and lesions) or randomised-v7 (version 7: "
        "version 4 with smaller discrete lesions, from 2 mm across); for --task qsm, "
        "fullrange, chain or chain-vsharp (see napari-fanet train --help)",
    )
    parser.add_argument(
        "--no-noise", action="store_true", help="noise-free data (for tests and debugging)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _run_simulate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_fanet.simulation.dataset import iter_simulate_dataset

    try:
        events = iter_simulate_dataset(
            args.out,
            args.task,
            args.subjects,
            args.seed,
            voxel_size=tuple(args.voxel_size),
            overwrite=args.overwrite,
            noise=not args.no_noise,
            family=args.family,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except OSError as exc:  # FileExistsError (non-empty DIR), permissions, ...
        raise CommandError(str(exc)) from exc
    with tqdm(
        total=args.subjects,
        desc=f"simulate {args.task}",
        unit="subject",
        file=sys.stderr,
        disable=args.no_progress,
    ) as bar:
        try:
            for _event in events:
                bar.update(1)
        except OSError as exc:
            raise CommandError(f"writing {args.out} failed: {exc}") from exc
    noun = "subject" if args.subjects == 1 else "subjects"
    print(f"wrote {args.subjects} {args.task} {noun} to {args.out}")
    return 0


COMMAND = Command(
    "simulate",
    "simulate a synthetic MS or QSM dataset (deterministic from a seed)",
    _add_simulate_arguments,
    _run_simulate,
    description=(
        "Simulate subjects from the shipped MNI152 2009 template and write them to DIR: "
        "dataset.json and one sub-NNNN folder per subject (NIfTI files and meta.json). "
        "The same seed gives the same data. See napari_fanet.simulation for the layout."
    ),
)
