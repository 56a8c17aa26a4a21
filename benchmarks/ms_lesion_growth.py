"""Intensity-guided lesion growth after the lesion-mask rule, chosen leave-one-out (issue 12).

Would the segmentation gain from growing each kept lesion into the hyperintense FLAIR around it, as
LST's lesion growth algorithm grows its seeds? Starting from the default lesion mask
(:data:`napari_fanet.tasks.lesion_mask.DEFAULT_RULE`: probability above 0.5, a seed above 0.95, at
least 10 mm^3, since 2026-12-07 also at least 2 mm inside the brain mask on average),
``grow(k, floor)`` adds every voxel 26-connected to a kept lesion through voxels whose robust FLAIR
z-score exceeds ``k`` and whose probability exceeds ``floor``. The z-score is the FLAIR threshold
baseline's (bias-corrected FLAIR, median and MAD of the FLAIR-only white-matter mask, 0 outside
that mask: :mod:`napari_fanet.baselines.lesion_threshold`), the same in every input mode. For every
held-out subject one setting for all modes is chosen on the other subjects (best mean of Dice and
L-F1, ties to no growth), then scores the held-out subject; a line then gives the choice on all
subjects. A last table shows, per subject, how bright its reference lesions are against its white
matter (z-score percentiles beside the other white matter's 99th) and the network's median
probability inside them (:func:`lesion_contrast`).

Input as ``ms_postprocessing.py``: ``--maps DIR`` holds ``SUBJECT-MODE/lesion_probability.nii.gz``
from each subject's leave-one-out model (``--predict PATTERN`` writes the missing ones first).

Usage::

    PYTHONPATH=src python benchmarks/ms_lesion_growth.py --data DATA --maps MAPS \\
        --predict 'benchmarks/results/ms-loo12/fanet-seg-without-{subject}.pt'
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

# benchmarks/ is on sys.path when run as a script
from ms_postprocessing import cases_and_maps, load_map, map_parser
from napari_fanet.baselines.lesion_threshold import flair_white_matter_mask, flair_zscore
from napari_fanet.evaluation.real import volume_ml
from napari_fanet.metrics.segmentation import LESION_STRUCTURE, segmentation_metrics
from napari_fanet.tasks.lesion_mask import DEFAULT_RULE, lesion_mask

#: A growth setting ``(z threshold, probability floor)``; None is no growth.
Growth = tuple[float, float] | None
Z_THRESHOLDS = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0)
FLOORS = (0.0, 0.01, 0.1)
GRID: list[Growth] = [None, *itertools.product(Z_THRESHOLDS, FLOORS)]


def grow_lesions(
    mask: np.ndarray, zscore: np.ndarray, probability: np.ndarray, growth: Growth
) -> np.ndarray:
    """``mask`` plus what is 26-connected to it through voxels above both of ``growth``'s levels.

    Parameters
    ----------
    mask : np.ndarray
        ``(X, Y, Z)`` bool lesion mask (the lesion-mask rule's).
    zscore, probability : np.ndarray
        ``(X, Y, Z)`` FLAIR z-score and lesion probability.
    growth : tuple of float or None
        ``(z threshold, probability floor)``, a floor of 0 meaning none; None returns ``mask``
        unchanged.

    Returns
    -------
    np.ndarray
        ``(X, Y, Z)`` bool; contains ``mask``.
    """
    if growth is None:
        return mask
    z_threshold, floor = growth
    bright = zscore > z_threshold
    candidates = mask | (bright & (probability > floor) if floor > 0 else bright)
    labels, _ = ndimage.label(candidates, structure=LESION_STRUCTURE)
    touched = np.unique(labels[mask])
    return np.isin(labels, touched[touched > 0])


def score_growths(case, probability: np.ndarray, zscore: np.ndarray) -> dict[Growth, tuple]:
    """``{growth: (Dice, L-F1, predicted mL)}`` of one subject's map for every grid setting."""
    mask = lesion_mask(probability, case.voxel_size, DEFAULT_RULE, case.brain).astype(bool)
    out = {}
    for growth in GRID:
        grown = grow_lesions(mask, zscore, probability, growth)
        metrics = segmentation_metrics(grown, case.lesions)
        out[growth] = (
            float(metrics["dice"]),
            float(metrics["lf1"]),
            volume_ml(grown, case.voxel_size),
        )
    return out


def lesion_contrast(case, zscore: np.ndarray, wm: np.ndarray, probability: np.ndarray) -> dict:
    """How bright the reference lesions are against the white matter, and how sure the network is.

    Returns the 10th, 50th and 90th percentiles of the FLAIR z-score over the reference lesion
    voxels inside ``wm``, the 99th percentile over ``wm``'s other voxels, the fraction of lesion
    voxels inside ``wm``, and the median probability over the lesion voxels.
    """
    lesions = case.lesions.astype(bool)
    inside = lesions & wm
    return {
        "lesion_z_p10_p50_p90": [float(v) for v in np.percentile(zscore[inside], [10, 50, 90])],
        "other_wm_z_p99": float(np.percentile(zscore[wm & ~lesions], 99)),
        "lesion_fraction_in_wm": float(inside.sum() / max(lesions.sum(), 1)),
        "lesion_probability_median": float(np.median(probability[lesions])),
    }


def _objective(scores: dict, keys, growth: Growth) -> float:
    return float(np.mean([(scores[k][growth][0] + scores[k][growth][1]) / 2 for k in keys]))


def choose(scores: dict, keys) -> Growth:
    """The grid setting with the best mean of Dice and L-F1 over ``keys``; ties to no growth."""
    return max(GRID, key=lambda g: (round(_objective(scores, keys, g), 10), g is None))


def leave_one_out(scores: dict[tuple[str, str], dict]) -> dict[tuple[str, str], dict]:
    """Per ``(subject, mode)``: the setting chosen on the other subjects (all modes) and scores."""
    subjects = {subject for subject, _ in scores}
    if len(subjects) < 2:
        raise ValueError(f"leave-one-out needs at least 2 subjects, got {len(subjects)}")
    rows = {}
    for key in scores:
        growth = choose(scores, [k for k in scores if k[0] != key[0]])
        rows[key] = {"growth": growth, "grown": scores[key][growth], "rule": scores[key][None]}
    return rows


def _growth_text(growth: Growth) -> str:
    return "none" if growth is None else f"z > {growth[0]:g}, p > {growth[1]:g}"


def report(mode: str, rows: dict) -> str:
    """Markdown table of one mode's leave-one-out rows plus their means."""
    lines = [
        f"### {mode}",
        "",
        "| subject | lesion-mask rule: Dice / L-F1 / mL | growth chosen on the others | "
        "Dice / L-F1 / mL with it |",
        "|---|---|---|---|",
    ]
    for (subject, _), r in rows.items():
        lines.append(
            f"| {subject} | {r['rule'][0]:.3f} / {r['rule'][1]:.3f} / {r['rule'][2]:.2f} | "
            f"{_growth_text(r['growth'])} | "
            f"{r['grown'][0]:.3f} / {r['grown'][1]:.3f} / {r['grown'][2]:.2f} |"
        )
    mean = {k: np.mean([r[k][:2] for r in rows.values()], axis=0) for k in ("rule", "grown")}
    lines.append(
        f"| mean | {mean['rule'][0]:.3f} / {mean['rule'][1]:.3f} | | "
        f"{mean['grown'][0]:.3f} / {mean['grown'][1]:.3f} |"
    )
    return "\n".join(lines)


def contrast_report(contrast: dict[str, dict]) -> str:
    """Markdown table of :func:`lesion_contrast` per subject and mode."""
    lines = [
        "| subject, mode | lesion FLAIR z: p10 / median / p90 | other WM z, p99 | "
        "lesion voxels in the WM mask | median probability in the lesions |",
        "|---|---|---|---|---|",
    ]
    for key, c in contrast.items():
        p10, p50, p90 = c["lesion_z_p10_p50_p90"]
        lines.append(
            f"| {key.replace('|', ', ')} | {p10:.2f} / {p50:.2f} / {p90:.2f} | "
            f"{c['other_wm_z_p99']:.2f} | {c['lesion_fraction_in_wm']:.2f} | "
            f"{c['lesion_probability_median']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = map_parser(__doc__)
    args = parser.parse_args(argv)
    cases, maps = cases_and_maps(parser, args)
    scores: dict[tuple[str, str], dict] = {}
    contrast: dict[str, dict] = {}
    for case in cases:
        flair = case.images["flair"].data
        wm = flair_white_matter_mask(flair, case.brain, voxel_size=case.voxel_size)
        zscore = flair_zscore(flair, case.brain, wm, voxel_size=case.voxel_size)
        for mode in args.modes:
            probability = load_map(parser, maps, case, mode)
            scores[case.name, mode] = score_growths(case, probability, zscore)
            if case.lesions.any() and (wm & case.lesions.astype(bool)).any():
                contrast[f"{case.name}|{mode}"] = lesion_contrast(case, zscore, wm, probability)
    try:
        rows = leave_one_out(scores)
    except ValueError as exc:
        parser.error(f"--data: {exc}")
    for mode in args.modes:
        print(report(mode, {k: r for k, r in rows.items() if k[1] == mode}) + "\n")
    overall = choose(scores, list(scores))
    print(f"chosen on all subjects: {_growth_text(overall)}\n")
    print(contrast_report(contrast))
    results = {
        "leave_one_out": {f"{s}|{m}": r for (s, m), r in rows.items()},
        "chosen_on_all": overall,
        "contrast": contrast,
        "scores": {
            f"{s}|{m}": {_growth_text(g): v for g, v in by.items()}
            for (s, m), by in scores.items()
        },
    }
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
