r"""How many small synthetic lesions a segmentation model finds once they are put into a scan.

Usage::

    PYTHONPATH=src python benchmarks/inserted_lesions.py --data ../shared/data/open-ms-lesjak2017 \
        --models 'runs/ms-loo18/fanet-seg-without-{subject}.pt' [--modes flair] \
        [--severity 0.125] [--count 40] [--seed 0] [--out TABLE.md]

Into each subject of ``--data`` (real patients, or simulated subjects: any folder
``napari-fanet evaluate --data`` reads; a T1 is needed to find the white matter) ``--count``
lesions of the simulator's shape are put into the white matter away from its own lesions, every
one with the same ``--severity`` (0: FLAIR x 1.2, 1: x 1.6 of the tissue around it; T2 and T1
alike, :data:`napari_fanet.simulation.lesion_insertion.INSERTED_CONTRAST`). The subject is then
segmented as ``segment`` would (``--models``: a checkpoint, a shipped name, or a leave-one-out
pattern with ``{subject}``; ``segment``'s defaults, roughness matching included) and each
inserted lesion (26-connected, at least 3 voxels) is counted as reached where the probability
gets to 0.5 and 0.95 anywhere in it, by size bin.

Unlike the reference lesions' detection (``benchmarks/results/ms-loo19/size_detection.py``),
the lesions' size, contrast and site are known and equal across subjects, so the table tells a
model that misses small lesions on real backgrounds from one whose real small lesions differ.
Each subject's lesions depend only on ``--seed`` and its position in the folder: every model
sees the same ones.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_fanet.evaluation.lesion_sizes import (
    BINS,
    LEVELS,
    bin_labels,
    count_cells,
    detection_by_size,
    reference_lesions,
    tally,
)
from napari_fanet.simulation.lesion_insertion import InsertionParams, insert_lesions


def inserted_case(case, rng: np.random.Generator, count: int, severity: float):
    """``case`` with ``count`` lesions of ``severity`` inserted, and their mask.

    Parameters
    ----------
    case : napari_fanet.evaluation.real.RealCase
        The subject (a T1 needed).
    rng : np.random.Generator
        Source of the lesions.
    count : int
        Lesions to insert.
    severity : float
        Every lesion's severity in [0, 1].

    Returns
    -------
    case : RealCase
        The same subject with the inserted lesions in every channel.
    inserted : np.ndarray
        ``(X, Y, Z)`` bool: the inserted lesions only.
    """
    from napari_fanet.io.nifti import Volume

    images = {name: volume.data for name, volume in case.images.items()}
    new, mask, _ = insert_lesions(
        rng,
        images,
        case.lesions,
        case.brain,
        case.voxel_size,
        count,
        InsertionParams(severity=(severity, severity)),
    )
    volumes = {
        name: Volume(new[name], volume.affine, volume.header)
        for name, volume in case.images.items()
    }
    return replace(case, images=volumes), (mask > 0) & ~case.lesions


def table(cases, models, modes: list[str], count: int, severity: float, seed: int) -> str:
    """The markdown table: per model, mode and subject, the inserted lesions reached by size."""
    from napari_fanet.engine.inference import WindowSettings
    from napari_fanet.evaluation.real import segment_mode

    header = " | ".join(bin_labels())
    lines = [
        f"Inserted lesions (severity {severity}) reaching probability "
        + " / ".join(map(str, LEVELS))
        + " anywhere, of all in the bin",
        "",
        f"| model | mode | subject | {header} |",
        "|---|---|---|" + "---|" * len(BINS),
    ]
    inserted = {
        case.name: inserted_case(case, np.random.default_rng([seed, index]), count, severity)
        for index, case in enumerate(cases)
    }
    for model in models:
        for mode in modes:
            totals = np.zeros((len(BINS), 1 + len(LEVELS)), dtype=int)
            for case in cases:
                if not case.has_mode(mode):
                    continue
                print(f"segmenting {case.name} ({mode}) with {model.name}", file=sys.stderr)
                new_case, lesions = inserted[case.name]
                result = segment_mode(model, new_case, mode, WindowSettings())
                probability = np.asarray(result.outputs["probability"], dtype=np.float32)
                counts = tally(detection_by_size(*reference_lesions(lesions), probability))
                totals += counts
                cells = count_cells(counts)
                lines.append(f"| {model.name} | {mode} | {case.name} | {' | '.join(cells)} |")
            cells = count_cells(totals)
            lines.append(f"| {model.name} | {mode} | **all** | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print (and with ``--out`` write) the table; returns the exit status."""
    from napari_fanet.cli.base import CommandError
    from napari_fanet.cli.evaluate_real import seg_models
    from napari_fanet.evaluation.real import INPUT_MODES, load_real_cases

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="subjects, one folder each")
    parser.add_argument(
        "--models", nargs="+", required=True, help="checkpoints, names or patterns with {subject}"
    )
    parser.add_argument("--modes", nargs="+", default=["flair"], choices=sorted(INPUT_MODES))
    parser.add_argument("--severity", type=float, default=0.125, help="0-1 (default 0.125)")
    parser.add_argument("--count", type=int, default=40, help="lesions per subject")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if not 0 <= args.severity <= 1:
        parser.error(f"--severity: expected a value in [0, 1], got {args.severity}")
    if args.count < 1:
        parser.error(f"--count: expected an integer >= 1, got {args.count}")
    if args.seed < 0:
        parser.error(f"--seed: expected an integer >= 0, got {args.seed}")
    try:
        cases = load_real_cases(args.data)
        models = [m for name in args.models for m in seg_models(name, [c.name for c in cases])]
        text = table(cases, models, args.modes, args.count, args.severity, args.seed)
    except (OSError, ValueError, CommandError) as exc:
        parser.error(str(exc))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
