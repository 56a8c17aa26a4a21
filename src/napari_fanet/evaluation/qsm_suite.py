"""The QSM out-of-distribution suite: every method on phantom families training never draws.

For each family of :mod:`napari_fanet.simulation.qsm_families`, ``n_test`` subjects are
simulated from the family's test seeds and ``n_val`` from its validation seeds. TKD and CFL2
have their parameter tuned on the validation draws of the same family (never on the test
subjects). Every network runs with its default pipeline (data consistency on) and, for the
ablation, without it (``"(raw)"``). Scores follow ``EVALUATION.md`` (NRMSE and HFEN inside the
mask; the tables report the demeaned NRMSE beside the plain one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from napari_fanet.engine.inference import WindowSettings
from napari_fanet.evaluation.simulated import (
    EvalCase,
    classical_methods,
    model_method,
    paired_difference,
    run_evaluation,
    summarise,
    tune_classical,
)
from napari_fanet.simulation.qsm_families import FAMILIES, VALIDATION_OFFSET, QSMFamily, family
from napari_fanet.tasks.qsm import simulated_qsm_case

#: Metrics of the suite's tables.
SUITE_METRICS = ("nrmse", "nrmse_demeaned", "hfen", "ssim")


def family_cases(fam: QSMFamily, indices: Sequence[int], *, validation: bool) -> list[EvalCase]:
    """Evaluation cases of ``fam``: simulated subjects ``indices`` (test or validation seeds)."""
    from napari_fanet.simulation.qsm_phantom import simulate_qsm_subject

    cases = []
    for i in indices:
        seed = fam.seed(int(i), validation=validation)
        s = simulate_qsm_subject(seed, fam.voxel_size, params=fam.params)
        cases.append(simulated_qsm_case(f"{fam.name}-seed-{seed}", s))
    return cases


def network_methods(
    models: dict[str, tuple[object, dict]],
    settings: WindowSettings,
    *,
    dc_lambda: float | None = None,
    ablation: bool = True,
) -> dict[str, Callable[[EvalCase], np.ndarray]]:
    """Each network as ``method(case)``: default pipeline, and raw output when ``ablation``."""
    methods: dict[str, Callable[[EvalCase], np.ndarray]] = {}
    default = {} if dc_lambda is None else {"dc_lambda": dc_lambda}
    for name, (model, ckpt) in models.items():
        methods[name] = model_method("qsm", model, ckpt, settings, **default)
        if ablation:
            raw = model_method("qsm", model, ckpt, settings, data_consistency="none")
            methods[f"{name} (raw)"] = raw
    return methods


@dataclass
class FamilyResult:
    """Per-subject rows, summary and paired differences against CFL2 of one family."""

    family: str
    description: str
    params: dict[str, float]
    rows: dict[str, list[dict[str, float]]]

    def summary(self) -> dict[str, dict[str, tuple]]:
        """``{method: {metric: (mean, sd)}}``."""
        return summarise(self.rows)

    def against(self, baseline: str = "CFL2", metric: str = "nrmse") -> dict[str, tuple]:
        """Paired mean difference ``method - baseline`` of ``metric`` with its bootstrap CI."""
        base = [r[metric] for r in self.rows[baseline]]
        return {
            name: paired_difference([r[metric] for r in rs], base)
            for name, rs in self.rows.items()
            if name != baseline
        }


def check_draws(n_test: int, n_val: int, first_index: int = 0) -> None:
    """Raise ``ValueError`` unless each family has the draws ``run_family`` would use.

    Each family has test and validation draws numbered 0 to ``VALIDATION_OFFSET - 1``; the
    suite uses ``first_index`` to ``first_index + max(n_test, n_val) - 1``.
    """
    if n_test < 1 or n_val < 1:
        raise ValueError(f"n_test and n_val must be at least 1, got {n_test} and {n_val}")
    count = max(n_test, n_val)
    if first_index < 0 or first_index + count > VALIDATION_OFFSET:
        raise ValueError(
            f"a seed offset of {first_index} with {count} subjects needs draws up to "
            f"{first_index + count - 1}; each family of the suite has draws 0 to "
            f"{VALIDATION_OFFSET - 1}"
        )


def run_family(
    name: str,
    models: dict[str, tuple[object, dict]],
    *,
    n_test: int = 5,
    n_val: int = 2,
    settings: WindowSettings | None = None,
    dc_lambda: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    first_index: int = 0,
) -> FamilyResult:
    """Evaluate ``models`` and the tuned classical baselines on one family.

    Test subjects are the family's draws ``first_index`` to ``first_index + n_test - 1``, and
    the baselines are tuned on its validation draws ``first_index`` onwards (``first_index`` is
    ``evaluate --seed-offset``; see :meth:`QSMFamily.seed` for the seeds).
    """
    check_draws(n_test, n_val, first_index)
    fam = family(name)
    val_range = range(first_index, first_index + n_val)
    params = tune_classical("qsm", family_cases(fam, val_range, validation=True))
    methods = network_methods(models, settings or WindowSettings(), dc_lambda=dc_lambda)
    methods.update(classical_methods("qsm", params))
    cases = family_cases(fam, range(first_index, first_index + n_test), validation=False)
    rows = run_evaluation("qsm", methods, cases, progress=progress)
    return FamilyResult(fam.name, fam.description, params, rows)


def suite_names() -> list[str]:
    """Names of the families of the suite, in order."""
    return [f.name for f in FAMILIES]


def suite_markdown(results: Sequence[FamilyResult]) -> str:
    """One table per family (mean ± sd) and the paired NRMSE/HFEN differences against CFL2."""
    parts = []
    for res in results:
        summary = res.summary()
        parts.append(f"### {res.family}: {res.description}\n")
        parts.append(
            f"CFL2 lambda {res.params['cfl2']:.4g}, TKD threshold {res.params['tkd']:.3g} "
            f"(tuned on this family's validation draws); n = {len(next(iter(res.rows.values())))}"
            "\n"
        )
        header = "| method | " + " | ".join(SUITE_METRICS) + " |"
        lines = [header, "|---" * (len(SUITE_METRICS) + 1) + "|"]
        for method, stats in summary.items():
            cells = [f"{stats[m][0]:.2f} ± {stats[m][1]:.2f}" for m in SUITE_METRICS]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
        diff_lines = ["| method - CFL2 | NRMSE [95% CI] | HFEN [95% CI] |", "|---|---|---|"]
        nrmse_diff, hfen_diff = res.against(metric="nrmse"), res.against(metric="hfen")
        for method in nrmse_diff:
            n, h = nrmse_diff[method], hfen_diff[method]
            diff_lines.append(
                f"| {method} | {n[0]:+.2f} [{n[1]:+.2f}, {n[2]:+.2f}] "
                f"| {h[0]:+.2f} [{h[1]:+.2f}, {h[2]:+.2f}] |"
            )
        parts.append("\n".join(diff_lines) + "\n")
    return "\n".join(parts)
