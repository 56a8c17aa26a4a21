"""Held-out evaluation: models against each other and against the classical baselines.

Subjects are simulated from test seeds (20000+, disjoint from training 0+ and validation 10000+)
or read from a folder. Classical baselines have their parameter tuned on validation subjects
(never on the test subjects). Every method is scored per subject with the conventions of
``EVALUATION.md``; summaries give mean and standard deviation over subjects, and paired
differences between two methods come with a bootstrap 95% confidence interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_fanet.baselines import dipole_inversion as qsm
from napari_fanet.baselines import lesion_threshold as lt
from napari_fanet.engine.inference import WindowSettings
from napari_fanet.engine.predict import reconstruct_qsm, segment
from napari_fanet.io.b0_direction import world_to_array_direction
from napari_fanet.io.nifti import Volume
from napari_fanet.metrics import qsm_metrics, segmentation_metrics

TKD_THRESHOLDS = (0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.3)
CFL2_LAMBDAS = tuple(float(v) for v in np.logspace(-3.5, -0.5, 13))


@dataclass
class EvalCase:
    """One evaluation subject: input Volumes, reference arrays (array axes = Volume axes)."""

    name: str
    inputs: dict[str, Volume]
    reference: np.ndarray
    mask: np.ndarray
    voxel_size: tuple[float, float, float]
    b0_world: tuple[float, float, float] = (0.0, 0.0, 1.0)
    extra: dict = field(default_factory=dict)


def simulated_cases(task: str, seeds: Sequence[int], voxel_size=(2.0, 2.0, 2.0)) -> list[EvalCase]:
    """Evaluation cases simulated from ``seeds`` ("ms" or "qsm")."""
    from napari_fanet.simulation.dataset import simulate_subject

    cases = []
    for seed in seeds:
        s = simulate_subject(task, int(seed), tuple(voxel_size))
        vol = lambda a, s=s: Volume(np.asarray(a, dtype=np.float32), s.affine)  # noqa: E731
        if task == "ms":
            inputs = {k: vol(getattr(s, k)) for k in ("t1", "t2", "flair")}
            inputs["brain_mask"] = vol(s.brain_mask)
            cases.append(
                EvalCase(
                    f"seed-{seed}",
                    inputs,
                    s.lesion_mask.astype(bool),
                    s.brain_mask.astype(bool),
                    s.voxel_size,
                )
            )
        else:
            inputs = {"local_field": vol(s.local_field), "brain_mask": vol(s.mask)}
            cases.append(
                EvalCase(
                    f"seed-{seed}",
                    inputs,
                    s.chi,
                    s.mask.astype(bool),
                    s.voxel_size,
                    tuple(s.b0_dir_world),
                )
            )
    return cases


def _b0_array(case: EvalCase) -> np.ndarray:
    return world_to_array_direction(case.b0_world, case.inputs["local_field"].affine)


def tune_classical(task: str, val_cases: Sequence[EvalCase]) -> dict[str, float]:
    """Parameters of the classical baselines, tuned on validation cases."""
    if task == "ms":
        cases = [
            {
                "flair": c.inputs["flair"].data,
                "t1": c.inputs["t1"].data,
                "brain_mask": c.mask,
                "lesion_mask": c.reference,
                "voxel_size": c.voxel_size,
            }
            for c in val_cases
        ]
        best, _ = lt.tune_flair_threshold(cases)
        return {"flair_z": float(best)}
    params = {}
    for method, grid in (("tkd", TKD_THRESHOLDS), ("cfl2", CFL2_LAMBDAS)):
        scores: dict[float, list[float]] = {v: [] for v in grid}
        for c in val_cases:
            _, s = qsm.tune_parameter(
                method,
                c.inputs["local_field"].data,
                c.reference,
                c.mask,
                c.voxel_size,
                _b0_array(c),
                grid,
            )
            for v in grid:
                scores[v].append(s[v])
        params[method] = float(min(grid, key=lambda v: np.mean(scores[v])))
    return params


def classical_methods(task: str, params: dict[str, float]) -> dict[str, Callable]:
    """Each classical baseline as ``method(case) -> prediction array``."""
    if task == "ms":

        def flair_threshold(c: EvalCase) -> np.ndarray:
            wm = lt.white_matter_mask(c.inputs["t1"].data, c.mask, voxel_size=c.voxel_size)
            return lt.flair_threshold_segment(
                c.inputs["flair"].data, c.mask, wm, params["flair_z"], voxel_size=c.voxel_size
            )

        return {"FLAIR threshold": flair_threshold}

    def tkd(c: EvalCase) -> np.ndarray:
        return qsm.tkd(
            c.inputs["local_field"].data,
            c.voxel_size,
            _b0_array(c),
            threshold=params["tkd"],
            mask=c.mask,
        )

    def cfl2(c: EvalCase) -> np.ndarray:
        return qsm.cfl2(
            c.inputs["local_field"].data,
            c.voxel_size,
            _b0_array(c),
            lam=params["cfl2"],
            mask=c.mask,
        )

    return {"TKD": tkd, "CFL2": cfl2}


def model_method(
    task: str, model, ckpt: dict, settings: WindowSettings, **qsm_options: object
) -> Callable:
    """A loaded network as ``method(case) -> prediction array``.

    ``qsm_options`` go to :func:`~.predict.reconstruct_qsm` (``data_consistency``,
    ``dc_lambda``).
    """
    if task == "ms":
        return lambda c: (
            segment(
                model,
                ckpt,
                c.inputs["t1"],
                c.inputs["t2"],
                c.inputs["flair"],
                brain_mask=c.inputs["brain_mask"],
                settings=settings,
            )
            .outputs["mask"]
            .astype(bool)
        )
    return lambda c: reconstruct_qsm(
        model,
        ckpt,
        c.inputs["local_field"],
        c.inputs["brain_mask"],
        b0_dir=c.b0_world,
        settings=settings,
        **qsm_options,
    ).outputs["chi"]


def score(task: str, pred: np.ndarray, case: EvalCase) -> dict[str, float]:
    """Metrics of one prediction (EVALUATION.md conventions)."""
    if task == "ms":
        m = segmentation_metrics(pred, case.reference)
        return {k: float(m[k]) for k in ("dice", "ltpr", "lppv", "lf1")}
    return qsm_metrics(pred, case.reference, case.mask)


def run_evaluation(
    task: str, methods: dict[str, Callable], cases: Sequence[EvalCase], progress=None
) -> dict[str, list[dict[str, float]]]:
    """Per-subject metrics (plus ``seconds``) of every method on every case."""
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    for i, case in enumerate(cases):
        for name, method in methods.items():
            t0 = time.perf_counter()
            pred = method(case)
            rows[name].append({**score(task, pred, case), "seconds": time.perf_counter() - t0})
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
