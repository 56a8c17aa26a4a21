"""Lesion-mask rules for probability maps, tuned leave-one-out: threshold, seed, smallest lesion.

Does the segmentation gain from a different way of turning the network's lesion probability
into a mask, when the rule is chosen on the *other* subjects? A rule
(:class:`napari_fanet.tasks.lesion_mask.LesionMaskRule`) keeps the 26-connected components of
``probability > threshold`` that hold a voxel above a seed threshold (none: every component) and
measure at least a smallest volume. For every held-out subject this picks, over a grid of rules,
the one with the best mean of Dice and L-F1 on the other subjects (per input mode, or with
``--pooled`` one rule for all modes), then scores the held-out subject with it. The reference
row is ``probability > 0.5``, the mask before 2026-12-06.

Grids (``--grid``):

- ``threshold-size`` (the first-stage analysis): thresholds 0.2-0.7, smallest lesion 3-80 voxels.
- ``seed``: thresholds 0.1-0.5, seed thresholds 0.5-0.95, smallest lesion 3-20 voxels.
- ``seed-at-0.5``: the ``seed`` grid at threshold 0.5 only.

With ``--fixed SEED VOLUME`` nothing is tuned: every subject is scored with that rule
(threshold 0.5, ``none`` for no seed, volume in mm^3) beside the reference.

Input: ``--maps DIR`` holds ``SUBJECT-MODE/lesion_probability.nii.gz``, one per subject and input
mode, each from the leave-one-out model that did not see ``SUBJECT`` (so the maps are
leave-one-out too); ``--predict PATTERN`` writes the missing ones first with the checkpoints
``PATTERN`` (``{subject}`` replaced by each subject's folder name), as ``evaluate --data`` runs
them. ``--data DIR`` holds ``SUBJECT/`` with the reference lesion mask
(``napari_fanet.evaluation.real``'s layout). Scoring is the project's own: lesions are
26-connected components of at least 3 voxels, in both masks. Smallest lesions are given in
voxels of the map's grid.

Usage::

    PYTHONPATH=src python benchmarks/ms_postprocessing.py --data DATA --maps MAPS \\
        --predict 'benchmarks/results/ms-loo8/fanet-seg-without-{subject}.pt' --grid seed --pooled
    PYTHONPATH=src python benchmarks/ms_postprocessing.py --data DATA --maps MAPS --fixed 0.95 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_fanet.evaluation.real import RealCase, load_real_cases
from napari_fanet.metrics.segmentation import segmentation_metrics
from napari_fanet.tasks.lesion_mask import LesionMaskRule, lesion_mask

#: A rule as ``(threshold, seed threshold or None, smallest lesion in voxels)``.
Setting = tuple[float, float | None, int]

GRIDS: dict[str, list[Setting]] = {
    "threshold-size": [
        (t, None, s) for t in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7) for s in (3, 6, 10, 20, 40, 80)
    ],
    "seed": [
        (t, h, s)
        for t, h, s in itertools.product(
            (0.1, 0.2, 0.3, 0.4, 0.5), (0.5, 0.6, 0.7, 0.8, 0.9, 0.95), (3, 5, 10, 20)
        )
        if h >= t
    ],
}
GRIDS["seed-at-0.5"] = [g for g in GRIDS["seed"] if g[0] == 0.5]
#: The mask before 2026-12-06: ``probability > 0.5``, every component.
REFERENCE: Setting = (0.5, None, 0)
MODES = ("flair", "t1-flair", "t1-t2-flair")


def voxel_volume(case: RealCase) -> float:
    """Volume of one voxel of ``case`` in mm^3."""
    return float(np.prod(case.voxel_size))


def score_rules(
    probability: np.ndarray, reference: np.ndarray, settings, volume_mm3: float = 1.0
) -> dict[Setting, tuple[float, float]]:
    """``{setting: (Dice, L-F1)}`` of one ``(X, Y, Z)`` probability map under each rule."""
    out = {}
    for threshold, seed, size in settings:
        rule = LesionMaskRule(threshold, seed, size * volume_mm3)
        mask = lesion_mask(probability, (1.0, 1.0, volume_mm3), rule).astype(bool)
        metrics = segmentation_metrics(mask, reference)
        out[threshold, seed, size] = (float(metrics["dice"]), float(metrics["lf1"]))
    return out


def _objective(scores: dict[str, dict], subjects, setting: Setting) -> float:
    """Mean over ``subjects`` (and over modes when scores are per mode) of (Dice + L-F1) / 2."""
    return float(np.mean([sum(scores[s][setting]) / 2 for s in subjects]))


def _preference(setting: Setting) -> tuple:
    """Ties go to the rule closest to the reference: lowest seed, highest threshold, smallest."""
    threshold, seed, size = setting
    return (-(seed if seed is not None else 0.0), threshold, -size)


def leave_one_out(scores: dict[str, dict], settings) -> dict[str, dict]:
    """Per subject: the setting best on the others and its scores, beside the reference's.

    ``scores`` is ``{subject: {setting: (Dice, L-F1)}}``; with pooled modes the subject key is
    ``(subject, mode)`` and the others are every key of another subject.
    """
    subjects = list(dict.fromkeys(k[0] if isinstance(k, tuple) else k for k in scores))
    if len(subjects) < 2:
        raise ValueError(f"leave-one-out needs at least 2 subjects, got {len(subjects)}")

    def subject_of(key):
        return key[0] if isinstance(key, tuple) else key

    out = {}
    for key in scores:
        others = [k for k in scores if subject_of(k) != subject_of(key)]
        best = max(
            settings, key=lambda g: (round(_objective(scores, others, g), 10), _preference(g))
        )
        out[key] = {
            "setting": list(best),
            "dice": scores[key][best][0],
            "lf1": scores[key][best][1],
            "product_dice": scores[key][REFERENCE][0],
            "product_lf1": scores[key][REFERENCE][1],
        }
    return out


def _setting_text(setting) -> str:
    threshold, seed, size = setting
    return f"{threshold:g}, {'none' if seed is None else f'{seed:g}'}, {size:g}"


def report(mode: str, rows: dict, rule_header: str) -> str:
    """Markdown table of one mode's rows (:func:`leave_one_out` or fixed) plus their means."""
    lines = [
        f"### {mode}",
        "",
        f"| subject | probability > 0.5: Dice / L-F1 | {rule_header} | Dice / L-F1 with it |",
        "|---|---|---|---|",
    ]
    for subject, r in rows.items():
        lines.append(
            f"| {subject} | {r['product_dice']:.3f} / {r['product_lf1']:.3f} | "
            f"{_setting_text(r['setting'])} | {r['dice']:.3f} / {r['lf1']:.3f} |"
        )
    mean = {k: np.mean([r[k] for r in rows.values()]) for k in ("product_dice", "product_lf1")}
    tuned = {k: np.mean([r[k] for r in rows.values()]) for k in ("dice", "lf1")}
    lines.append(
        f"| mean | {mean['product_dice']:.3f} / {mean['product_lf1']:.3f} | | "
        f"{tuned['dice']:.3f} / {tuned['lf1']:.3f} |"
    )
    return "\n".join(lines)


def write_missing_maps(
    cases, modes, maps: Path, pattern: str, match_roughness: bool | None = None
) -> None:
    """``SUBJECT-MODE/lesion_probability.nii.gz`` for every pair not yet in ``maps``.

    ``match_roughness`` goes to ``segment`` (None: its default).
    """
    from napari_fanet.engine.inference import WindowSettings
    from napari_fanet.evaluation.real import SUBJECT_FIELD, LeaveOneOutModels, segment_mode
    from napari_fanet.io.nifti import save_volume
    from napari_fanet.models import load_checkpoint

    if SUBJECT_FIELD not in pattern:
        raise ValueError(f"--predict needs {SUBJECT_FIELD} in the checkpoint path, got {pattern}")
    family = LeaveOneOutModels("loo", pattern, [c.name for c in cases], load_checkpoint)
    for case, mode in itertools.product(cases, modes):
        path = maps / f"{case.name}-{mode}" / "lesion_probability.nii.gz"
        if path.is_file() or not case.has_mode(mode):
            continue
        print(f"segmenting {case.name} ({mode})", file=sys.stderr)
        options = {} if match_roughness is None else {"match_roughness": match_roughness}
        result = segment_mode(family, case, mode, WindowSettings(), **options)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_volume(path, result.outputs["probability"], case.images["flair"])


def load_map(parser, maps: Path, case: RealCase, mode: str) -> np.ndarray:
    path = maps / f"{case.name}-{mode}" / "lesion_probability.nii.gz"
    if not path.is_file():
        parser.error(f"--maps: expected {path} (from napari-fanet segment), not found")
    probability = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    if probability.shape != case.lesions.shape:
        parser.error(
            f"--maps: {path} has shape {probability.shape}, expected "
            f"{case.lesions.shape} (the reference of {case.name})"
        )
    return probability


def _fixed_rule(seed: str, volume: str) -> LesionMaskRule:
    """``--fixed SEED VOLUME`` as a rule at threshold 0.5; ValueError says what is wrong."""
    try:
        seed_value = None if seed.lower() == "none" else float(seed)
    except ValueError:
        raise ValueError(f"expected a seed threshold or 'none', got {seed!r}") from None
    try:
        volume_value = float(volume)
    except ValueError:
        raise ValueError(f"expected a smallest lesion volume in mm^3, got {volume!r}") from None
    return LesionMaskRule(0.5, seed_value, volume_value)


def map_parser(doc: str) -> argparse.ArgumentParser:
    """The argument parser of a script that scores leave-one-out probability maps.

    Described by the first line of ``doc`` (the script's docstring), with ``--data``,
    ``--maps``, ``--modes``, ``--predict``, ``--match-roughness`` and ``--json``, which every such
    script (this one, ``ms_lesion_growth.py``, ``ms_edge_rule.py``, ``ms_map_ensemble.py``,
    ``small_lesion_separation.py``) takes alike.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", required=True, help="real subjects with reference lesions")
    parser.add_argument("--maps", required=True, help="SUBJECT-MODE/lesion_probability.nii.gz")
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--predict", metavar="PATTERN", help="write missing maps first")
    parser.add_argument(
        "--match-roughness",
        action=argparse.BooleanOptionalAction,
        help="with --predict: segment's --[no-]match-roughness (default: segment's default)",
    )
    parser.add_argument("--json", default=None, help="also write the numbers here")
    return parser


def cases_and_maps(parser: argparse.ArgumentParser, args) -> tuple[list[RealCase], Path]:
    """The subjects of ``--data`` and the ``--maps`` folder, its missing maps written first when
    ``--predict`` is given; a usage error says what is wrong."""
    try:
        cases = load_real_cases(args.data)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(f"--data: {exc}")
    maps = Path(args.maps)
    if args.predict:
        try:
            write_missing_maps(cases, args.modes, maps, args.predict, args.match_roughness)
        except (FileNotFoundError, ValueError) as exc:
            parser.error(f"--predict: {exc}")
    return cases, maps


#: The lesion metrics the map scripts report, in table order.
LESION_METRICS = ("dice", "ltpr", "lppv", "lf1")


def lesion_scores(mask: np.ndarray, lesions: np.ndarray) -> dict[str, float]:
    """:data:`LESION_METRICS` of a ``(X, Y, Z)`` mask against the reference lesions."""
    metrics = segmentation_metrics(mask.astype(bool), lesions)
    return {m: float(metrics[m]) for m in LESION_METRICS}


def change_cells(
    rows: dict[str, dict], before: str, after: str
) -> tuple[dict[str, list[str]], list[str]]:
    """Markdown cells ``"0.123 -> 0.456"`` of :data:`LESION_METRICS`, per subject and mean.

    ``rows`` maps a subject to ``{before: scores, after: scores, ...}``. Returns each subject's
    cells and the cells of the means over the subjects.
    """

    def cells(first: dict, second: dict) -> list[str]:
        return [f"{first[m]:.3f} -> {second[m]:.3f}" for m in LESION_METRICS]

    mean = {
        key: {m: float(np.mean([r[key][m] for r in rows.values()])) for m in LESION_METRICS}
        for key in (before, after)
    }
    per_subject = {name: cells(row[before], row[after]) for name, row in rows.items()}
    return per_subject, cells(mean[before], mean[after])


def score_every_map(parser, args, score, report) -> dict[str, dict]:
    """``score(case, probability, mode)`` of every subject's map in every mode of ``--modes``.

    Prints ``report(mode, rows)`` per mode, writes ``--json`` when given, and returns
    ``{mode: {subject: score}}`` (shared by ``ms_edge_rule.py``, ``small_lesion_separation.py``
    and ``ms_map_ensemble.py``). A subject ``score`` cannot work on (a ``ValueError``, such as a
    brain with no white matter) ends in a usage error naming the subject and the mode.
    """
    cases, maps = cases_and_maps(parser, args)
    results: dict[str, dict] = {mode: {} for mode in args.modes}
    for mode, case in itertools.product(args.modes, cases):
        probability = load_map(parser, maps, case, mode)
        try:
            results[mode][case.name] = score(case, probability, mode)
        except ValueError as exc:
            parser.error(f"--data: {case.name} ({mode}): {exc}")
    for mode in args.modes:
        print(report(mode, results[mode]) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = map_parser(__doc__)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="threshold-size")
    parser.add_argument("--pooled", action="store_true", help="one rule for every mode")
    parser.add_argument(
        "--fixed",
        nargs=2,
        metavar=("SEED", "VOLUME"),
        help="score this rule (threshold 0.5; seed or 'none'; smallest lesion in mm^3) instead "
        "of tuning one",
    )
    args = parser.parse_args(argv)
    cases, maps = cases_and_maps(parser, args)
    if args.fixed:
        try:
            fixed = _fixed_rule(*args.fixed)
        except ValueError as exc:
            parser.error(f"--fixed: {exc}")
    scores: dict[str, dict] = {mode: {} for mode in args.modes}
    for mode, case in itertools.product(args.modes, cases):
        probability = load_map(parser, maps, case, mode)
        volume = voxel_volume(case)
        if args.fixed:
            size = fixed.min_volume_mm3 / volume
            settings = [REFERENCE, (0.5, fixed.seed_threshold, size)]
        else:
            settings = [REFERENCE, *GRIDS[args.grid]]
        scores[mode][case.name] = score_rules(probability, case.lesions, settings, volume)
    results: dict[str, dict] = {}
    if args.fixed:
        for mode in args.modes:
            results[mode] = {
                name: {
                    "setting": [*chosen[:2], fixed.min_volume_mm3],
                    "dice": by_setting[chosen][0],
                    "lf1": by_setting[chosen][1],
                    "product_dice": by_setting[REFERENCE][0],
                    "product_lf1": by_setting[REFERENCE][1],
                }
                for name, by_setting in scores[mode].items()
                for chosen in [next(k for k in by_setting if k != REFERENCE)]
            }
        header = "rule (threshold, seed, smallest mm^3)"
    else:
        grid = GRIDS[args.grid]
        try:
            if args.pooled:
                pooled = {(n, m): scores[m][n] for m in args.modes for n in scores[m]}
                rows = leave_one_out(pooled, grid)
                for mode in args.modes:
                    results[mode] = {n: r for (n, m), r in rows.items() if m == mode}
            else:
                results = {mode: leave_one_out(scores[mode], grid) for mode in args.modes}
        except ValueError as exc:
            parser.error(f"--data: {exc}")
        header = "rule chosen on the others (threshold, seed, smallest voxels)"
    for mode in args.modes:
        print(report(mode, results[mode], header) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
