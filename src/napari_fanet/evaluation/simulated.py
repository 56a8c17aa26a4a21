"""Held-out evaluation: models against each other and against the classical baselines.

Subjects are simulated from test seeds (20000+, disjoint from training 0+ and validation 10000+)
or read from a folder. Classical baselines have their parameter tuned on validation subjects
(never on the test subjects). Every method is scored per subject with the conventions of
``EVALUATION.md``; summaries give mean and standard deviation over subjects, and paired
differences between two methods come with a bootstrap 95% confidence interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from napari_fanet.engine.inference import WindowSettings
from napari_fanet.engine.predict import predict_task
from napari_fanet.evaluation.scoring import Method, run_and_score
from napari_fanet.tasks import get_task
from napari_fanet.tasks.cases import EvalCase as EvalCase  # re-exported
from napari_fanet.tasks.qsm import CFL2_LAMBDAS as CFL2_LAMBDAS  # re-exported
from napari_fanet.tasks.qsm import TKD_THRESHOLDS as TKD_THRESHOLDS  # re-exported


def simulated_cases(task: str, seeds: Sequence[int], voxel_size=(2.0, 2.0, 2.0)) -> list[EvalCase]:
    """Evaluation cases simulated from ``seeds`` ("ms" or "qsm")."""
    chosen = get_task(task)
    return [chosen.simulated_case(int(seed), tuple(voxel_size)) for seed in seeds]


def tune_classical(task: str, val_cases: Sequence[EvalCase]) -> dict[str, float]:
    """Parameters of the classical baselines, tuned on validation cases."""
    return get_task(task).tune_baselines(val_cases)


def classical_methods(task: str, params: dict[str, float]) -> dict[str, Callable]:
    """Each classical baseline as ``method(case) -> prediction array``."""
    return get_task(task).baselines(params)


def model_method(
    task: str, model, ckpt: dict, settings: WindowSettings, **options: object
) -> Callable:
    """A loaded network as ``method(case) -> prediction array``.

    ``options`` go to the task's prediction function (QSM: ``data_consistency``,
    ``dc_lambda``; segmentation: ``seed_threshold``, ``min_lesion_mm3``,
    ``min_edge_distance_mm``).
    """
    chosen = get_task(task)

    def method(case: EvalCase) -> np.ndarray:
        result = predict_task(
            chosen,
            model,
            ckpt,
            chosen.case_inputs(case),
            settings=settings,
            **chosen.case_options(case),
            **options,
        )
        return chosen.case_prediction(result.outputs)

    return method


def network_methods(
    task: str, models: dict[str, tuple], settings: WindowSettings, **options: object
) -> dict[str, Callable]:
    """Each network as ``method(case)``, and its :attr:`~napari_fanet.tasks.Task.ablations`.

    QSM adds the raw network (no data consistency) beside the default pipeline. ``options``
    are prediction options for every network (segmentation: the lesion-mask rule).
    """
    chosen = get_task(task)
    methods = {}
    for name, (model, ckpt) in models.items():
        methods[name] = model_method(task, model, ckpt, settings, **options)
        for suffix, extra in chosen.ablations.items():
            both = {**options, **extra}
            methods[f"{name}{suffix}"] = model_method(task, model, ckpt, settings, **both)
    return methods


def score(task: str, pred: np.ndarray, case: EvalCase) -> dict[str, float]:
    """Metrics of one prediction (EVALUATION.md conventions)."""
    return get_task(task).score(pred, case)


def run_evaluation(
    task: str, methods: dict[str, Callable], cases: Sequence[EvalCase], progress=None
) -> dict[str, list[dict[str, float]]]:
    """Per-subject metrics (plus ``seconds``) of every method on every case.

    Each case goes through :func:`~napari_fanet.evaluation.scoring.run_and_score` (the task's
    comparison); a row keeps :meth:`~napari_fanet.tasks.Task.case_scores` of it, and
    ``seconds`` counts the prediction and its scoring.
    """
    chosen = get_task(task)
    named = [Method(name, method) for name, method in methods.items()]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    for i, case in enumerate(cases):
        for result in run_and_score(chosen, named, case, case.reference, case.mask):
            seconds = result.seconds + result.score_seconds
            rows[result.name].append({**chosen.case_scores(result.metrics), "seconds": seconds})
        if progress is not None:
            progress(i + 1, len(cases))
    return rows


def summarise(rows: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, tuple]]:
    """``{method: {metric: (mean, std)}}`` over subjects."""
    return {
        name: {
            k: (
                float(np.mean([r[k] for r in rs])),
                float(np.std([r[k] for r in rs], ddof=1) if len(rs) > 1 else 0.0),
            )
            for k in rs[0]
        }
        for name, rs in rows.items()
        if rs
    }


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, n_boot: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired subjects and its bootstrap 95% confidence interval."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.size == 0:
        raise ValueError("paired_difference needs at least one pair")
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def markdown_table(summary: dict[str, dict[str, tuple]], metrics: Sequence[str]) -> str:
    """Mean ± std table of ``metrics`` per method."""
    lines = ["| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, s in summary.items():
        cells = [f"{s[m][0]:.3f} ± {s[m][1]:.3f}" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
