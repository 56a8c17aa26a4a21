"""Averaged leave-one-out probability maps against one map: does a read-out ensemble help?

``segment`` already averages two predictions (the scan and its left-right mirror image). This
scores what averaging more of them would do, without running a network: for each subject and
target input mode of ``--modes``, the *single* map is ``--maps``'s map of that mode, the
*ensemble* the voxel-wise mean of

- that map and the same subject's and mode's map in every ``--members`` folder (for example the
  leave-one-out maps of other training stages), and
- with ``--add-modes``, the maps of those input modes in the same folders (for example the
  FLAIR-only map beside the T1 + FLAIR one). An added mode must use only modalities the target
  mode has (the prediction a user of that mode could also run); a target mode without all of an
  added mode's modalities is a usage error, and the target itself is never added twice.

Both become masks by ``segment``'s default rule (threshold, seed, smallest lesion and the
brain-edge rule on the subject's brain) and are scored with the project's lesion metrics
(Dice, LTPR, LPPV, L-F1; lesions are 26-connected components of at least 3 voxels). Nothing is
tuned.

Input as for ``benchmarks/ms_postprocessing.py`` (shared arguments): each folder holds
``SUBJECT-MODE/lesion_probability.nii.gz`` from the leave-one-out model that did not see
``SUBJECT``; ``--data DIR`` the subjects with their reference lesions and brain.

Usage::

    PYTHONPATH=src:benchmarks python benchmarks/ms_map_ensemble.py \\
        --data ../shared/data/open-ms-lesjak2017 --maps runs/maps-loo18 \\
        --modes t1-flair t1-t2-flair --add-modes flair
    PYTHONPATH=src:benchmarks python benchmarks/ms_map_ensemble.py \\
        --data ../shared/data/open-ms-lesjak2017 --maps runs/maps-loo18 \\
        --members runs/maps-loo19 runs/maps-loo20 --modes flair t1-t2-flair
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ms_postprocessing import (
    change_cells,
    lesion_scores,
    load_map,
    map_parser,
    score_every_map,
)
from napari_fanet.evaluation.real import INPUT_MODES
from napari_fanet.tasks.lesion_mask import DEFAULT_RULE, lesion_mask


def ensemble_sources(
    maps: Path, members: list[Path], mode: str, add_modes: list[str]
) -> list[tuple[Path, str]]:
    """The ``(folder, input mode)`` maps averaged for ``mode``: every folder, every mode.

    Raises
    ------
    ValueError
        An added mode needs a modality that ``mode`` does not have.
    """
    modes = [mode]
    for extra in add_modes:
        missing = [m for m in INPUT_MODES[extra] if m not in INPUT_MODES[mode]]
        if missing:
            raise ValueError(
                f"{extra} needs {' and '.join(missing)}, which input mode {mode} does not have "
                f"(its modalities: {', '.join(INPUT_MODES[mode])})"
            )
        if extra not in modes:
            modes.append(extra)
    return [(folder, m) for folder in (maps, *members) for m in modes]


def masks_scores(case, probability: np.ndarray) -> dict[str, float]:
    """The lesion metrics of ``segment``'s default mask of one ``(X, Y, Z)`` map."""
    return lesion_scores(
        lesion_mask(probability, case.voxel_size, DEFAULT_RULE, case.brain), case.lesions
    )


def report(mode: str, rows: dict[str, dict], sources: list[tuple[Path, str]]) -> str:
    """A markdown table of one target mode's subjects: single map -> ensemble."""
    names = ", ".join(f"{folder.name}/{m}" for folder, m in sources)
    lines = [
        f"### Input mode: {mode}; ensemble of {len(sources)} maps ({names})",
        "",
        "| subject | Dice | LTPR | LPPV | L-F1 |",
        "|---|---|---|---|---|",
    ]
    cells, mean_cells = change_cells(rows, "single", "ensemble")
    lines += [f"| {name} | {' | '.join(cells[name])} |" for name in rows]
    lines.append(f"| **mean of {len(rows)}** | {' | '.join(mean_cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = map_parser(__doc__)
    parser.add_argument(
        "--members", nargs="+", type=Path, default=[], metavar="DIR",
        help="more map folders averaged with --maps (same SUBJECT-MODE layout)",
    )  # fmt: skip
    parser.add_argument(
        "--add-modes", nargs="+", default=[], choices=sorted(INPUT_MODES), metavar="MODE",
        help="also average these input modes' maps (modalities the target mode has)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    unknown = [m for m in args.modes if m not in INPUT_MODES]
    if unknown:
        parser.error(f"--modes: unknown input modes {unknown}; choose from {list(INPUT_MODES)}")
    if not args.members and not args.add_modes:
        parser.error("expected --members or --add-modes: an ensemble of one map is the map")
    sources = {}
    for mode in args.modes:
        try:
            sources[mode] = ensemble_sources(Path(args.maps), args.members, mode, args.add_modes)
        except ValueError as exc:
            parser.error(f"--add-modes: {exc}")
    if any(len(s) < 2 for s in sources.values()):
        parser.error("--add-modes: every added mode is the target itself: nothing to average")

    def score(case, probability: np.ndarray, mode: str) -> dict:
        maps = [load_map(parser, folder, case, m) for folder, m in sources[mode]]
        return {
            "single": masks_scores(case, probability),
            "ensemble": masks_scores(case, np.mean(maps, axis=0)),
        }

    return score_every_map(
        parser, args, score, lambda mode, rows: report(mode, rows, sources[mode])
    )


if __name__ == "__main__":
    main()
