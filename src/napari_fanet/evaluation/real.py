"""Segmentation models on real, labelled MS scans, per subject and input mode, beside a baseline.

``shared/EVALUATION.md`` asks for real scans first: per patient Dice, LTPR, LPPV, L-F1 and
lesion volume error, beside a FLAIR-threshold baseline tuned on the *other* patients
(leave-one-out), never on the patient it is scored on.

A folder of subjects (:func:`load_real_cases`) holds one sub-folder per subject with
``flair``, optional ``t1``/``t2``, a lesion mask (``lesion_mask`` or ``consensus_lesions``) and
an optional ``brain_mask`` (default: the non-zero FLAIR voxels), all on one grid. Every input
mode (:data:`INPUT_MODES`: ``flair``, ``t1-flair``, ``t2-flair``, ``t1-t2-flair``) that a
subject's files allow is scored; a model that cannot take a mode (trained without modality
dropout) gets a row with the reason instead of numbers.

The baseline (:mod:`napari_fanet.baselines.lesion_threshold`) thresholds the robust z-score of the
bias-corrected FLAIR inside white matter, with white matter from the T1 when the mode has one
and from the FLAIR otherwise
(:func:`~napari_fanet.baselines.lesion_threshold.flair_white_matter_mask`); its threshold for
subject ``i`` maximises the mean Dice over the other subjects.

Metrics follow ``shared/EVALUATION.md``: Dice per subject; 26-connected lesions of at least
``min_size`` voxels; LTPR, LPPV (standard, not the paper's), L-F1; volumes in mL from the
voxel size; ``volume_error_ml`` = predicted minus reference volume.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_fanet.baselines import lesion_threshold as lt
from napari_fanet.engine.inference import WindowSettings
from napari_fanet.engine.predict import (
    PredictionResult,
    segment,
    supports_missing_modalities,
)
from napari_fanet.evaluation.scoring import Method, MethodResult, run_and_score
from napari_fanet.io.nifti import Volume, check_same_grid, load_volume
from napari_fanet.metrics.segmentation import dice, label_lesions
from napari_fanet.tasks import SEGMENTATION
from napari_fanet.tasks.lesion_mask import DEFAULT_THRESHOLD, LesionMaskRule
from napari_fanet.tasks.subjects import find_file, find_lesion_mask, list_subjects

#: Input modes: name -> modalities given to the model (the others are left out).
INPUT_MODES = {
    "flair": ("flair",),
    "t1-flair": ("t1", "flair"),
    "t2-flair": ("t2", "flair"),
    "t1-t2-flair": ("t1", "t2", "flair"),
}
MODALITIES = ("t1", "t2", "flair")
BASELINE = "FLAIR threshold (LOO)"
NEEDS_ALL = "model needs T1, T2 and FLAIR (trained without modality dropout)"
METRIC_KEYS = ("dice", "ltpr", "lppv", "lf1", "volume_gt_ml", "volume_pred_ml", "volume_error_ml")


@dataclass
class RealCase:
    """One labelled subject on its files' grid (no reorientation: metrics do not need it).

    Attributes
    ----------
    name : str
        Folder name.
    images : dict of str to Volume
        ``"flair"`` and whichever of ``"t1"``, ``"t2"`` exist.
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask.
    lesions : np.ndarray
        ``(X, Y, Z)`` bool reference lesions.
    """

    name: str
    images: dict[str, Volume]
    brain: np.ndarray
    lesions: np.ndarray

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size (mm) along the array axes."""
        return self.images["flair"].voxel_size

    def has_mode(self, mode: str) -> bool:
        """Whether the subject has every modality of ``mode``."""
        return all(m in self.images for m in INPUT_MODES[mode])


def load_real_cases(root: str | Path) -> list[RealCase]:
    """Every subject of ``root`` (see the module docstring for the layout)."""
    cases = []
    for folder in list_subjects(root, "segmentation"):
        images = {"flair": load_volume(find_file(folder, "flair"))}
        for m in ("t1", "t2"):
            path = find_file(folder, m, required=False)
            if path is not None:
                images[m] = load_volume(path)
        lesion = load_volume(find_lesion_mask(folder))
        brain_path = find_file(folder, "brain_mask", required=False)
        brain_vol = load_volume(brain_path) if brain_path is not None else None
        check_same_grid(
            {**images, "lesion mask": lesion, **({"brain_mask": brain_vol} if brain_vol else {})}
        )
        brain = brain_vol.data > 0.5 if brain_vol is not None else images["flair"].data != 0
        if not brain.any():
            raise ValueError(f"{folder}: the brain mask (or the non-zero FLAIR) is empty")
        cases.append(RealCase(folder.name, images, brain, lesion.data > 0.5))
    return cases


def volume_ml(mask: np.ndarray, voxel_size: Sequence[float]) -> float:
    """Volume of a binary mask in mL (``voxels * prod(voxel_size) / 1000``)."""
    return float(np.count_nonzero(mask)) * float(np.prod(voxel_size)) / 1000.0


def case_row(result: MethodResult, case: RealCase) -> dict[str, float]:
    """Dice, LTPR, LPPV, L-F1, lesion counts and volumes (mL) of one scored prediction."""
    m = result.metrics
    pred = result.outputs[SEGMENTATION.output].astype(bool)
    gt_ml, pred_ml = volume_ml(case.lesions, case.voxel_size), volume_ml(pred, case.voxel_size)
    return {
        **SEGMENTATION.case_scores(m),
        "n_gt": int(m["n_gt"]),
        "n_pred": int(m["n_pred"]),
        "volume_gt_ml": gt_ml,
        "volume_pred_ml": pred_ml,
        "volume_error_ml": pred_ml - gt_ml,
    }


def score_case(pred: np.ndarray, case: RealCase, *, min_size: int = 3) -> dict[str, float]:
    """:func:`case_row` of a given lesion mask ``(X, Y, Z)`` (scored by the task's comparison)."""
    (result,) = run_and_score(
        SEGMENTATION,
        [Method("given", lambda _: np.asarray(pred, dtype=bool))],
        case,
        case.lesions,
        compare_options={"min_size": min_size},
    )
    return case_row(result, case)


def baseline_zscore(case: RealCase, mode: str) -> np.ndarray:
    """Robust FLAIR z-score inside white matter (from the T1 if ``mode`` has one)."""
    flair, vs = case.images["flair"].data, case.voxel_size
    if "t1" in INPUT_MODES[mode]:
        wm = lt.white_matter_mask(case.images["t1"].data, case.brain, voxel_size=vs)
    else:
        wm = lt.flair_white_matter_mask(flair, case.brain, voxel_size=vs)
    return lt.flair_zscore(flair, case.brain, wm, voxel_size=vs)


def threshold_zscore(z: np.ndarray, threshold: float, *, min_size: int = 3) -> np.ndarray:
    """Voxels with ``z > threshold`` in 26-connected components of at least ``min_size``."""
    return label_lesions(z > threshold, min_size=min_size)[0] > 0


def leave_one_out_thresholds(
    zmaps: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    candidates: Sequence[float] = tuple(lt.DEFAULT_THRESHOLDS),
    *,
    min_size: int = 3,
) -> list[float]:
    """For each subject, the threshold with the best mean Dice over the *other* subjects.

    Parameters
    ----------
    zmaps : sequence of np.ndarray
        Per subject, the ``(X, Y, Z)`` z-score map (:func:`baseline_zscore`).
    references : sequence of np.ndarray
        Per subject, the ``(X, Y, Z)`` bool reference lesions.
    candidates : sequence of float
        Thresholds to try.
    min_size : int
        Smallest component kept (voxels).

    Returns
    -------
    list of float
        One threshold per subject (ties: the lowest).
    """
    if len(zmaps) != len(references) or len(zmaps) < 2:
        raise ValueError(
            "leave-one-out tuning needs at least 2 subjects with one reference each, got "
            f"{len(zmaps)} z-maps and {len(references)} references"
        )
    values = [float(c) for c in candidates]
    if not values:
        raise ValueError("candidates must hold at least one threshold")
    scores = np.array(
        [[dice(threshold_zscore(z, t, min_size=min_size), g) for t in values]
         for z, g in zip(zmaps, references, strict=True)]
    )  # fmt: skip
    out = []
    for i in range(len(zmaps)):
        others = np.delete(scores, i, axis=0).mean(axis=0)
        out.append(max(values, key=lambda t, o=others: (o[values.index(t)], -t)))
    return out


@dataclass
class SegModel:
    """A loaded segmentation model under a display name."""

    name: str
    model: object
    checkpoint: dict

    def for_case(self, case: str) -> tuple[object, dict]:
        """``(model, checkpoint)`` that scores ``case`` (the same one for every case)."""
        return self.model, self.checkpoint


SUBJECT_FIELD = "{subject}"


class LeaveOneOutModels(SegModel):
    """A leave-one-out family: case ``X`` is scored by the checkpoint trained without ``X``.

    Parameters
    ----------
    name : str
        Display name.
    pattern : str
        Checkpoint path with the field ``{subject}``, replaced by each case's folder name (for
        example ``runs/ms-loo/fanet-seg-without-{subject}/last.pt``).
    cases : sequence of str
        Case names; each needs its checkpoint (``FileNotFoundError`` naming the missing ones).
    loader : callable
        ``path -> (model, checkpoint)``.
    """

    def __init__(
        self,
        name: str,
        pattern: str,
        cases: Sequence[str],
        loader: Callable[[str], tuple[object, dict]],
    ) -> None:
        if SUBJECT_FIELD not in pattern:
            raise ValueError(f"a leave-one-out pattern needs {SUBJECT_FIELD}, got {pattern!r}")
        paths = {case: pattern.replace(SUBJECT_FIELD, case) for case in cases}
        missing = [p for p in paths.values() if not Path(p).exists()]
        if missing:
            raise FileNotFoundError(
                f"leave-one-out checkpoints missing for {len(missing)} of {len(paths)} "
                f"subjects: {', '.join(missing)}"
            )
        self._loaded = {case: loader(path) for case, path in paths.items()}
        first_model, first_checkpoint = next(iter(self._loaded.values()))
        super().__init__(name, first_model, first_checkpoint)
        self.pattern = pattern

    def for_case(self, case: str) -> tuple[object, dict]:
        """The checkpoint trained without ``case``."""
        return self._loaded[case]


def predict_mode(
    model: SegModel, case: RealCase, mode: str, settings: WindowSettings, **options: object
) -> np.ndarray:
    """The model's lesion mask for ``case`` given only the modalities of ``mode``.

    ``options`` go to :func:`~napari_fanet.engine.predict.segment` (the lesion-mask rule:
    ``seed_threshold``, ``min_lesion_mm3``, ``min_edge_distance_mm``; its defaults otherwise).
    """
    return segment_mode(model, case, mode, settings, **options).outputs["mask"].astype(bool)


def segment_mode(
    model: SegModel, case: RealCase, mode: str, settings: WindowSettings, **options: object
) -> PredictionResult:
    """:func:`~napari_fanet.engine.predict.segment` of ``case`` with the modalities of ``mode``.

    The brain is the case's own (its mask file, else the non-zero FLAIR), on the FLAIR's grid.
    """
    given = {m: case.images.get(m) if m in INPUT_MODES[mode] else None for m in ("t1", "t2")}
    network, checkpoint = model.for_case(case.name)
    return segment(
        network,
        checkpoint,
        given["t1"],
        given["t2"],
        case.images["flair"],
        brain_mask=Volume(case.brain.astype(np.float32), case.images["flair"].affine),
        settings=settings,
        **options,
    )


def evaluate_real(
    cases: Sequence[RealCase],
    models: Sequence[SegModel],
    modes: Sequence[str],
    settings: WindowSettings,
    *,
    min_size: int = 3,
    prediction_options: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Per subject, mode and method (models, then the LOO baseline): metrics or a reason.

    ``prediction_options`` go to every network's :func:`predict_mode` (the lesion-mask rule).

    Returns
    -------
    list of dict
        Rows with ``subject``, ``mode``, ``method`` and either the keys of :func:`case_row`
        plus ``seconds`` (and ``threshold`` for the baseline), or ``skipped`` (the reason).
    """
    unknown = [m for m in modes if m not in INPUT_MODES]
    if unknown:
        raise ValueError(f"unknown input modes {unknown}; choose from {list(INPUT_MODES)}")
    rows: list[dict] = []
    say = progress or (lambda _: None)
    options = {"min_size": min_size}
    for mode in modes:
        usable = [c for c in cases if c.has_mode(mode)]
        for case in cases:
            if not case.has_mode(mode):
                for method in [m.name for m in models] + [BASELINE]:
                    reason = (
                        f"no {' or '.join(m for m in INPUT_MODES[mode] if m not in case.images)}"
                    )
                    rows.append(_skipped(case, mode, method, reason))
        for model in models:
            if INPUT_MODES[mode] != MODALITIES and not supports_missing_modalities(
                model.checkpoint
            ):
                for case in usable:
                    rows.append(_skipped(case, mode, model.name, NEEDS_ALL))
                continue
            method = Method(
                model.name,
                lambda c, m=model, md=mode: predict_mode(
                    m, c, md, settings, **(prediction_options or {})
                ),
            )
            for case in usable:
                say(f"{model.name} on {case.name} ({mode})")
                try:
                    (result,) = run_and_score(
                        SEGMENTATION, [method], case, case.lesions, compare_options=options
                    )
                except ValueError as exc:
                    rows.append(_skipped(case, mode, model.name, str(exc)))
                    continue
                seconds = result.seconds + result.score_seconds
                rows.append(_row(case, mode, model.name, case_row(result, case), seconds))
        if len(usable) < 2:
            for case in usable:
                rows.append(_skipped(case, mode, BASELINE, "leave-one-out needs 2+ subjects"))
            continue
        say(f"baseline ({mode}): z-maps and leave-one-out thresholds")
        t0 = time.perf_counter()
        zmaps = [baseline_zscore(c, mode) for c in usable]
        thresholds = leave_one_out_thresholds(
            zmaps, [c.lesions for c in usable], min_size=min_size
        )
        seconds = (time.perf_counter() - t0) / len(usable)
        for case, z, t in zip(usable, zmaps, thresholds, strict=True):
            baseline = Method(
                BASELINE, lambda _, z=z, t=t: threshold_zscore(z, t, min_size=min_size)
            )
            (result,) = run_and_score(
                SEGMENTATION, [baseline], case, case.lesions, compare_options=options
            )
            row = {**case_row(result, case), "threshold": t}
            rows.append(_row(case, mode, BASELINE, row, seconds + result.score_seconds))
    return rows


def _row(case: RealCase, mode: str, method: str, metrics: dict, seconds: float) -> dict:
    return {"subject": case.name, "mode": mode, "method": method, **metrics, "seconds": seconds}


def _skipped(case: RealCase, mode: str, method: str, reason: str) -> dict:
    return {"subject": case.name, "mode": mode, "method": method, "skipped": reason}


def markdown_report(rows: Sequence[dict], title: str, *, mask_rule: dict | None = None) -> str:
    """Per mode, a table of every subject and method, then the mean over subjects.

    ``mask_rule`` (``seed_threshold``, ``min_lesion_mm3``, ``min_edge_distance_mm``), when
    given, is stated under the tables: how the networks' probabilities became masks.
    """
    lines = [f"## {title}", ""]
    for mode in dict.fromkeys(r["mode"] for r in rows):
        lines += [f"### Input mode: {mode}", ""]
        head = [
            "subject",
            "method",
            "Dice",
            "LTPR",
            "LPPV",
            "L-F1",
            "GT mL",
            "pred mL",
            "error mL",
        ]
        lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        scored: dict[str, list[dict]] = {}
        for r in (r for r in rows if r["mode"] == mode):
            if "skipped" in r:
                lines.append(f"| {r['subject']} | {r['method']} | n/a: {r['skipped']} |")
                continue
            scored.setdefault(r["method"], []).append(r)
            method = r["method"] + (f" (z > {r['threshold']:g})" if "threshold" in r else "")
            cells = [f"{r[k]:.3f}" for k in ("dice", "ltpr", "lppv", "lf1")]
            cells += [f"{r[k]:.2f}" for k in ("volume_gt_ml", "volume_pred_ml")]
            cells.append(f"{r['volume_error_ml']:+.2f}")
            lines.append(f"| {r['subject']} | {method} | " + " | ".join(cells) + " |")
        for method, rs in scored.items():
            cells = [
                f"**{np.mean([r[k] for r in rs]):.3f}**" for k in ("dice", "ltpr", "lppv", "lf1")
            ]
            cells += ["", "", f"**{np.mean([abs(r['volume_error_ml']) for r in rs]):.2f}** (abs)"]
            lines.append(f"| mean of {len(rs)} | {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(
        "Dice per subject; lesions are 26-connected components of at least 3 voxels; LPPV is "
        "the standard one (predicted lesions overlapping a reference lesion / predicted "
        "lesions); error mL = predicted minus reference lesion volume. The FLAIR threshold is "
        "tuned on the other subjects only (leave-one-out, mean Dice)."
    )
    if mask_rule is not None:
        rule = LesionMaskRule(
            DEFAULT_THRESHOLD,
            mask_rule.get("seed_threshold"),
            mask_rule.get("min_lesion_mm3", 0.0),
            mask_rule.get("min_edge_distance_mm", 0.0),
        )
        lines[-1] += f" The networks' masks: {rule.describe()}. {prediction_sentence(mask_rule)}"
    return "\n".join(lines)


def roughness_sentence(options: dict) -> str:
    """Whether the FLAIRs were matched to each model's training roughness, in words.

    Empty when ``options`` does not say (``match_roughness`` absent).
    """
    if "match_roughness" not in options:
        return ""
    if options["match_roughness"]:
        return (
            "FLAIRs rougher than a model's real training scans were smoothed to their "
            "roughness first (--match-roughness)."
        )
    return "FLAIRs were not roughness-matched (--no-match-roughness)."


def window_sentence(options: dict) -> str:
    """How many window grids the probabilities were averaged over, in words.

    Empty when ``options`` does not say (``window_shifts`` absent).
    """
    if "window_shifts" not in options:
        return ""
    shifts = options["window_shifts"]
    if shifts == 1:
        return "One grid of windows on the brain's bounding box (--window-shifts 1)."
    return (
        f"Probabilities averaged over {shifts} grids of windows on the brain's bounding box, "
        f"shifted by 1/{shifts} of a window step (--window-shifts {shifts})."
    )


def prediction_sentence(options: dict) -> str:
    """:func:`roughness_sentence` and :func:`window_sentence` of ``options``, in one line."""
    return " ".join(s for s in (roughness_sentence(options), window_sentence(options)) if s)
