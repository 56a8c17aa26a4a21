"""The brain-edge rule on leave-one-out maps: what dropping lesions in the brain's rim changes.

Does ``segment`` gain from dropping the lesions that lie in the outermost millimetres of the
brain mask (:class:`napari_fanet.tasks.lesion_mask.LesionMaskRule`'s ``min_edge_distance_mm``)?
Each map becomes a mask by the rule ``segment`` used before the edge rule (threshold 0.5, a
seed above 0.95, at least 10 mm^3) and by the same rule with ``--edge MM``; both are scored
with the project's lesion metrics. Per subject and input mode the table gives Dice, LTPR, LPPV
and L-F1 without and with the edge rule, the predicted lesions the edge rule drops that touch a
reference lesion and those that do not, and how deep the subject's reference lesions lie (the
smallest mean distance from the outside of the brain mask, and how many lie less than ``MM``
deep). Nothing is tuned: ``MM`` is given.

Input as for ``benchmarks/ms_postprocessing.py`` (shared arguments): ``--maps DIR`` holds
``SUBJECT-MODE/lesion_probability.nii.gz`` from the leave-one-out model that did not see
``SUBJECT`` (``--predict PATTERN`` writes the missing ones first); ``--data DIR`` the subjects
with their reference lesions and brain (a ``brain_mask`` file, else the non-zero FLAIR).

Usage::

    PYTHONPATH=src:benchmarks python benchmarks/ms_edge_rule.py \\
        --data ../shared/data/open-ms-lesjak2017 --maps runs/maps-loo18 --edge 2
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from ms_postprocessing import (
    change_cells,
    lesion_scores,
    map_parser,
    score_every_map,
)
from napari_fanet.metrics.segmentation import LESION_STRUCTURE, label_lesions
from napari_fanet.tasks.lesion_mask import (
    DEFAULT_MIN_EDGE_DISTANCE_MM,
    DEFAULT_MIN_LESION_MM3,
    DEFAULT_SEED_THRESHOLD,
    DEFAULT_THRESHOLD,
    LesionMaskRule,
    lesion_mask,
    mean_edge_distance,
)

#: ``segment``'s rule before the edge rule (2026-12-06 to 2026-12-07).
WITHOUT_EDGE = LesionMaskRule(DEFAULT_THRESHOLD, DEFAULT_SEED_THRESHOLD, DEFAULT_MIN_LESION_MM3)


def edge_effect(case, probability: np.ndarray, edge_mm: float) -> dict:
    """Scores of one map without and with the edge rule, and what the rule drops.

    Parameters
    ----------
    case : RealCase
        The subject (reference lesions, brain, voxel size).
    probability : np.ndarray
        ``(X, Y, Z)`` lesion probability on the subject's grid.
    edge_mm : float
        The edge rule's smallest mean depth in the brain mask, mm.

    Returns
    -------
    dict
        ``"without"`` / ``"with"``: ``{metric: value}`` for ``LESION_METRICS``;
        ``"dropped_true"`` / ``"dropped_false"``: predicted lesions the rule drops that touch a
        reference lesion / do not; ``"reference_depth_min_mm"`` (None without reference
        lesions) and ``"reference_below"``: the reference lesions' smallest mean depth and how
        many lie less than ``edge_mm`` deep.
    """
    vox = case.voxel_size
    with_edge = dataclasses.replace(WITHOUT_EDGE, min_edge_distance_mm=edge_mm)
    before = lesion_mask(probability, vox, WITHOUT_EDGE).astype(bool)
    after = lesion_mask(probability, vox, with_edge, case.brain).astype(bool)
    dropped, count = ndimage.label(before & ~after, structure=LESION_STRUCTURE)
    touching = np.unique(dropped[case.lesions])
    true_dropped = int(np.count_nonzero(touching))
    reference, n_reference = label_lesions(case.lesions)
    depth = mean_edge_distance(reference, n_reference, case.brain, vox)[1:]  # (n_reference,)
    return {
        "without": lesion_scores(before, case.lesions),
        "with": lesion_scores(after, case.lesions),
        "dropped_true": true_dropped,
        "dropped_false": count - true_dropped,
        "reference_depth_min_mm": float(depth.min()) if depth.size else None,
        "reference_below": int((depth < edge_mm).sum()),
    }


def report(mode: str, rows: dict[str, dict], edge_mm: float) -> str:
    """A markdown table of one input mode's subjects and their mean."""
    lines = [
        f"### Input mode: {mode}, edge rule {edge_mm:g} mm",
        "",
        "| subject | Dice | LTPR | LPPV | L-F1 | dropped: on a lesion / not | "
        "reference lesions: shallowest (mm), below the rule |",
        "|---|---|---|---|---|---|---|",
    ]

    cells, mean_cells = change_cells(rows, "without", "with")
    for name, row in rows.items():
        depth = row["reference_depth_min_mm"]
        shallow = "none" if depth is None else f"{depth:.2f}"
        lines.append(
            f"| {name} | {' | '.join(cells[name])} | {row['dropped_true']} / "
            f"{row['dropped_false']} | {shallow}, {row['reference_below']} |"
        )
    true = sum(r["dropped_true"] for r in rows.values())
    false = sum(r["dropped_false"] for r in rows.values())
    below = sum(r["reference_below"] for r in rows.values())
    means = " | ".join(mean_cells)
    lines.append(f"| **mean of {len(rows)}** | {means} | {true} / {false} | {below} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = map_parser(__doc__)
    parser.add_argument(
        "--edge",
        type=float,
        default=DEFAULT_MIN_EDGE_DISTANCE_MM,
        metavar="MM",
        help=f"the edge rule's smallest mean depth, mm (default {DEFAULT_MIN_EDGE_DISTANCE_MM:g})",
    )
    args = parser.parse_args(argv)
    if not (np.isfinite(args.edge) and args.edge > 0):
        parser.error(f"--edge: expected a number of mm > 0, got {args.edge}")
    results = score_every_map(
        parser,
        args,
        lambda case, probability, _mode: edge_effect(case, probability, args.edge),
        lambda mode, rows: report(mode, rows, args.edge),
    )
    print(
        f"Masks: {WITHOUT_EDGE.describe()}; the edge rule also drops a lesion whose voxels lie "
        f"on average less than {args.edge:g} mm inside the brain mask (voxel centres to the "
        "nearest voxel outside it). Lesions: 26-connected, at least 3 voxels."
    )
    return results


if __name__ == "__main__":
    main()
