"""The shipped MS recipe on the three real MS patients must beat the leave-one-out threshold.

Real scans (``shared/data/open-ms-lesjak2017``; Lesjak et al., Neuroinformatics 16:51-63,
2018, CC-BY) never enter the repository: the tests skip when the folder is absent. They are
``slow`` (several minutes on a CPU): run them with

    pytest tests/evaluation/test_real_ms_patients.py -m slow -v

The shipped ``fanet-seg`` was fine-tuned on these patients (its model card says so), so it may
not be scored on them. What is scored is its recipe, leave-one-out: each patient is segmented by
the run of the same recipe that never saw that patient
(``benchmarks/results/ms-loo12/fanet-seg-without-<patient>.pt``: for each fold, the average
of the weights of two seeds of the same stage of ``scripts/ms_loo_recipe.py``; see the model
card, stage 12), with the roughness target of the two FLAIRs that fold trained on recorded in
a copy (stage 18: ``segment`` smooths a rougher FLAIR by default). The
FLAIR-threshold baseline's threshold for each patient is tuned on the other two only
(shared/EVALUATION.md). Every input mode with a FLAIR is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "open-ms-lesjak2017"
LOO = ROOT / "benchmarks" / "results" / "ms-loo12" / "fanet-seg-without-{subject}.pt"
PATIENTS = ("patient07", "patient19", "patient26")
MODES = ("flair", "t1-flair", "t1-t2-flair")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if not DATA.is_dir():
        pytest.skip(f"real MS patients not available (no {DATA}; see shared/data/README.md)")
    from napari_fanet.engine.inference import WindowSettings
    from napari_fanet.engine.roughness_target import with_roughness_target
    from napari_fanet.evaluation.real import (
        BASELINE,
        LeaveOneOutModels,
        evaluate_real,
        load_real_cases,
    )
    from napari_fanet.models import load_checkpoint

    folds = tmp_path_factory.mktemp("stage18")
    for patient in PATIENTS:
        others = [DATA / p / "flair.nii.gz" for p in PATIENTS if p != patient]
        source = str(LOO).format(subject=patient)
        with_roughness_target(source, folds / f"fanet-seg-without-{patient}.pt", others)
    cases = load_real_cases(DATA)
    pattern = str(folds / "fanet-seg-without-{subject}.pt")
    family = LeaveOneOutModels("loo", pattern, [c.name for c in cases], load_checkpoint)
    rows = evaluate_real(cases, [family], list(MODES), WindowSettings(device="auto"))
    return {(r["subject"], r["mode"], r["method"]): r for r in rows}, BASELINE


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("patient", PATIENTS)
def test_leave_one_out_fanet_seg_beats_the_loo_flair_threshold(results, patient, mode) -> None:
    rows, baseline = results
    net, base = rows[patient, mode, "loo"], rows[patient, mode, baseline]
    assert "skipped" not in net, net.get("skipped")
    assert net["dice"] > base["dice"], (
        f"{patient} ({mode}): fanet-seg trained without it has Dice {net['dice']:.3f} (L-F1 "
        f"{net['lf1']:.3f}), not above the FLAIR threshold tuned on the other patients "
        f"(z > {base['threshold']:g}): Dice {base['dice']:.3f} (L-F1 {base['lf1']:.3f})"
    )


def test_the_shipped_card_says_the_patients_were_used() -> None:
    card = (ROOT / "src" / "napari_fanet" / "weights" / "fanet-seg.md").read_text()
    assert "Lesjak" in card and "leave-one-out" in card


def test_the_shipped_weights_record_the_patients_roughness() -> None:
    if not DATA.is_dir():
        pytest.skip(f"real MS patients not available (no {DATA}; see shared/data/README.md)")
    from napari_fanet.engine.predict import load_model
    from napari_fanet.engine.roughness_target import flair_roughness_target
    from napari_fanet.tasks.roughness import roughness_target

    flairs = [DATA / p / "flair.nii.gz" for p in PATIENTS]
    for name in ("fanet-seg", "unet-seg"):
        _, checkpoint = load_model(name)
        expected = flair_roughness_target(flairs, checkpoint)
        assert roughness_target(checkpoint) == pytest.approx(expected, rel=1e-6), name
