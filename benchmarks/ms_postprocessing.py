"""Post-processing of lesion probability maps tuned leave-one-out: threshold and smallest lesion.

Does the segmentation gain from a different probability threshold, or from dropping predicted
lesions smaller than some size (as many lesion tools do), when both are chosen on the *other*
subjects? For every input mode and held-out subject this picks, over a grid of thresholds and
smallest-lesion sizes, the pair with the best mean of Dice and L-F1 on the other subjects, then
scores the held-out subject with it. The product's setting (threshold 0.5, lesions of 3 voxels
or more) is the reference row.

Input: ``--maps DIR`` holds ``SUBJECT-MODE/lesion_probability.nii.gz``, one per subject and input
mode, each written by ``napari-fanet segment`` with the leave-one-out model that did not see
``SUBJECT`` (so the maps are leave-one-out too); ``--data DIR`` holds ``SUBJECT/`` with the
reference lesion mask (``napari_fanet.evaluation.real``'s layout). Scoring is the project's own:
lesions are 26-connected components of at least 3 voxels, in both masks.

Usage::

    for p in patient07 patient19 patient26; do  # flair; add --t1/--t2 for the other modes
        napari-fanet segment --flair DATA/$p/flair.nii.gz \
            --model benchmarks/results/ms-loo3/fanet-seg-without-$p.pt --out MAPS/$p-flair
    done
    PYTHONPATH=src python benchmarks/ms_postprocessing.py --data DATA --maps MAPS --modes flair
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_fanet.evaluation.real import load_real_cases
from napari_fanet.metrics.segmentation import label_lesions, segmentation_metrics

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MIN_SIZES = (3, 6, 10, 20, 40, 80)
#: The product's setting: ``segment --threshold`` default, lesions of 3 voxels or more.
PRODUCT = (0.5, 3)


def score_grid(
    probability: np.ndarray, reference: np.ndarray, thresholds, min_sizes
) -> dict[tuple[float, int], tuple[float, float]]:
    """``{(threshold, smallest lesion): (Dice, L-F1)}`` of one ``(X, Y, Z)`` probability map."""
    out = {}
    for t in thresholds:
        labels, _ = label_lesions(probability > t, min_size=1)
        sizes = np.bincount(labels.ravel())
        for s in min_sizes:
            keep = sizes >= s
            keep[0] = False
            metrics = segmentation_metrics(keep[labels], reference)
            out[t, s] = (float(metrics["dice"]), float(metrics["lf1"]))
    return out


def leave_one_out(scores: dict[str, dict]) -> dict[str, dict]:
    """Per subject: the setting best on the others (mean of Dice and L-F1) and its scores."""
    if len(scores) < 2:
        raise ValueError(f"leave-one-out needs at least 2 subjects, got {len(scores)}")
    out = {}
    for subject in scores:
        others = [s for s in scores if s != subject]
        settings = list(scores[subject])
        best = max(settings, key=lambda k: np.mean([sum(scores[o][k]) / 2 for o in others]))
        out[subject] = {
            "setting": list(best),
            "dice": scores[subject][best][0],
            "lf1": scores[subject][best][1],
            "product_dice": scores[subject][PRODUCT][0],
            "product_lf1": scores[subject][PRODUCT][1],
        }
    return out


def report(mode: str, rows: dict[str, dict]) -> str:
    """Markdown table of one mode's :func:`leave_one_out` rows plus their means."""
    lines = [
        f"### {mode}",
        "",
        "| subject | threshold 0.5, lesions >= 3 voxels: Dice / L-F1 | setting chosen on the "
        "others (threshold, voxels) | Dice / L-F1 with it |",
        "|---|---|---|---|",
    ]
    for subject, r in rows.items():
        lines.append(
            f"| {subject} | {r['product_dice']:.3f} / {r['product_lf1']:.3f} | "
            f"{r['setting'][0]}, {r['setting'][1]} | {r['dice']:.3f} / {r['lf1']:.3f} |"
        )
    mean = {k: np.mean([r[k] for r in rows.values()]) for k in ("product_dice", "product_lf1")}
    tuned = {k: np.mean([r[k] for r in rows.values()]) for k in ("dice", "lf1")}
    lines.append(
        f"| mean | {mean['product_dice']:.3f} / {mean['product_lf1']:.3f} | | "
        f"{tuned['dice']:.3f} / {tuned['lf1']:.3f} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="real subjects with reference lesions")
    parser.add_argument("--maps", required=True, help="SUBJECT-MODE/lesion_probability.nii.gz")
    parser.add_argument("--modes", nargs="+", default=["flair", "t1-flair", "t1-t2-flair"])
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    try:
        cases = load_real_cases(args.data)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(f"--data: {exc}")
    results = {}
    for mode in args.modes:
        scores = {}
        for case in cases:
            path = Path(args.maps) / f"{case.name}-{mode}" / "lesion_probability.nii.gz"
            if not path.is_file():
                parser.error(f"--maps: expected {path} (from napari-fanet segment), not found")
            probability = np.asarray(nib.load(path).dataobj, dtype=np.float32)
            if probability.shape != case.lesions.shape:
                parser.error(
                    f"--maps: {path} has shape {probability.shape}, expected "
                    f"{case.lesions.shape} (the reference of {case.name})"
                )
            scores[case.name] = score_grid(probability, case.lesions, THRESHOLDS, MIN_SIZES)
        try:
            results[mode] = leave_one_out(scores)
        except ValueError as exc:
            parser.error(f"--data: {exc}")
        print(report(mode, results[mode]) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
