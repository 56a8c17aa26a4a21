"""The shipped fanet-seg on the three real MS patients must beat the leave-one-out threshold.

Real scans (``shared/data/open-ms-lesjak2017``; Lesjak et al., Neuroinformatics 16:51-63,
2018, CC-BY) never enter the repository: the test skips when the folder is absent. It is
``slow`` (a few minutes on a CPU): run it with

    pytest tests/evaluation/test_real_ms_patients.py -m slow -v

The FLAIR-threshold baseline's threshold for each patient is tuned on the other two only
(shared/EVALUATION.md); the model gets T1, T2 and FLAIR (the shipped model needs all three).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "open-ms-lesjak2017"
MODE = "t1-t2-flair"


@pytest.fixture(scope="module")
def results():
    if not DATA.is_dir():
        pytest.skip(f"real MS patients not available (no {DATA}; see shared/data/README.md)")
    from napari_fanet.engine.inference import WindowSettings
    from napari_fanet.engine.predict import load_model
    from napari_fanet.evaluation.real import BASELINE, SegModel, evaluate_real, load_real_cases

    cases = load_real_cases(DATA)
    model, ckpt = load_model("fanet-seg")
    rows = evaluate_real(
        cases, [SegModel("fanet-seg", model, ckpt)], [MODE], WindowSettings(device="auto")
    )
    return {(r["subject"], r["method"]): r for r in rows}, BASELINE


@pytest.mark.parametrize("patient", ["patient07", "patient19", "patient26"])
def test_shipped_fanet_seg_beats_the_loo_flair_threshold(results, patient) -> None:
    rows, baseline = results
    net, base = rows[patient, "fanet-seg"], rows[patient, baseline]
    assert "skipped" not in net, net.get("skipped")
    assert net["dice"] > base["dice"], (
        f"{patient}: fanet-seg Dice {net['dice']:.3f} (L-F1 {net['lf1']:.3f}) does not beat "
        f"the FLAIR threshold tuned on the other patients (z > {base['threshold']:g}): Dice "
        f"{base['dice']:.3f} (L-F1 {base['lf1']:.3f})"
    )
