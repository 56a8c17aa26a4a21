"""Evaluation on labelled (real) subjects: loading, leave-one-out baseline, modes, reports, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_fanet.baselines.lesion_threshold import flair_white_matter_mask
from napari_fanet.cli import main
from napari_fanet.engine.inference import WindowSettings
from napari_fanet.evaluation.real import (
    BASELINE,
    NEEDS_ALL,
    LeaveOneOutModels,
    SegModel,
    evaluate_real,
    leave_one_out_thresholds,
    load_real_cases,
    markdown_report,
    score_case,
    threshold_zscore,
)
from napari_fanet.models import build_model, load_checkpoint, save_checkpoint

TINY = (8, 8, 8, 8, 16)
SETTINGS = WindowSettings(roi_size=(16, 16, 16), overlap=0.25, device="cpu")


@pytest.fixture(scope="module")
def real_like(tmp_path_factory, write_ms_subject):
    """Three subjects as the Lesjak release names them; the last has no T2."""
    root = tmp_path_factory.mktemp("real")
    for i in range(3):
        folder = write_ms_subject(root / f"patient{i:02d}", seed=20 + i)
        (folder / "lesion_mask.nii.gz").rename(folder / "consensus_lesions.nii.gz")
        (folder / "brain_mask.nii.gz").unlink()  # skull-stripped: the brain is FLAIR != 0
    (root / "patient02" / "t2.nii.gz").unlink()
    return root


@pytest.fixture(scope="module")
def old_model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "tiny.pt"
    save_checkpoint(path, build_model("unet-seg", features=TINY), extra={"voxel_size": [4.0] * 3})
    return path


def test_load_real_cases_reads_consensus_masks_and_optional_t2(real_like) -> None:
    cases = load_real_cases(real_like)
    assert [c.name for c in cases] == ["patient00", "patient01", "patient02"]
    assert cases[0].has_mode("t1-t2-flair") and not cases[2].has_mode("t1-t2-flair")
    assert cases[2].has_mode("t1-flair") and cases[2].voxel_size == (4.0, 4.0, 4.0)
    assert cases[0].lesions.any() and np.array_equal(
        cases[0].brain, cases[0].images["flair"].data != 0
    )


def test_score_case_volumes_in_ml(real_like) -> None:
    case = load_real_cases(real_like)[0]
    pred = np.zeros_like(case.lesions)
    pred[0, 0, 0:3] = True  # 3 voxels of 64 mm^3, no overlap
    row = score_case(pred, case)
    gt_ml = case.lesions.sum() * 64 / 1000
    assert row["volume_gt_ml"] == pytest.approx(gt_ml)
    assert row["volume_error_ml"] == pytest.approx(0.192 - gt_ml)
    assert row["dice"] == 0.0 and row["ltpr"] == 0.0 and row["n_pred"] == 1


def _dice(a, b):
    return 1.0 if a.sum() + b.sum() == 0 else 2 * (a & b).sum() / (a.sum() + b.sum())


def test_leave_one_out_never_uses_the_scored_subject() -> None:
    rng = np.random.default_rng(0)
    zmaps, refs = [], []
    for level in (2.0, 3.0, 5.0):  # lesions stand out by a different margin in each subject
        gt = np.zeros((12, 12, 12), bool)
        gt[3:7, 3:7, 3:7] = True
        z = rng.uniform(0, 1.9, gt.shape) + gt * level
        zmaps.append(z)
        refs.append(gt)
    candidates = (1.0, 2.5, 4.0)
    chosen = leave_one_out_thresholds(zmaps, refs, candidates)
    for i in range(3):  # independent brute force over the other subjects
        others = [j for j in range(3) if j != i]
        means = [np.mean([_dice(zmaps[j] > t, refs[j]) for j in others]) for t in candidates]
        assert chosen[i] == candidates[int(np.argmax(means))]
    np.testing.assert_array_equal(threshold_zscore(zmaps[0], 4.0), np.zeros_like(refs[0]))


def test_leave_one_out_errors() -> None:
    z = np.zeros((4, 4, 4))
    with pytest.raises(ValueError, match="needs at least 2 subjects"):
        leave_one_out_thresholds([z], [z > 0])
    with pytest.raises(ValueError, match="candidates must hold at least one threshold"):
        leave_one_out_thresholds([z, z], [z > 0, z > 0], ())


def test_flair_white_matter_is_the_middle_class() -> None:
    brain = np.zeros((20, 20, 20), bool)
    brain[2:18, 2:18, 2:18] = True
    flair = np.where(brain, 80.0, 0.0)  # grey matter
    flair[6:14, 6:14, 6:14] = 50.0  # white matter
    flair[9:11, 9:11, 9:11] = 10.0  # CSF inside it
    wm = flair_white_matter_mask(flair, brain, dilation_mm=0.0)
    expected = np.zeros_like(brain)
    expected[6:14, 6:14, 6:14] = True  # the enclosed CSF is filled in
    np.testing.assert_array_equal(wm, expected)
    with pytest.raises(ValueError, match="flair needs at least 3 distinct values"):
        flair_white_matter_mask(brain * 1.0, brain)


def test_evaluate_real_rows_per_mode_with_reasons(real_like, old_model) -> None:
    cases = load_real_cases(real_like)
    model, ckpt = load_checkpoint(old_model)
    rows = evaluate_real(
        cases, [SegModel("tiny", model, ckpt)], ["flair", "t1-t2-flair"], SETTINGS
    )
    by = {(r["subject"], r["mode"], r["method"]): r for r in rows}
    assert len(rows) == 3 * 2 * 2
    assert by["patient00", "flair", "tiny"]["skipped"] == NEEDS_ALL
    assert by["patient02", "t1-t2-flair", "tiny"]["skipped"] == "no t2"
    scored = by["patient00", "t1-t2-flair", "tiny"]
    assert 0 <= scored["dice"] <= 1 and scored["seconds"] > 0
    base = by["patient01", "flair", BASELINE]
    assert base["threshold"] in np.arange(1.5, 6.01, 0.25) and 0 <= base["dice"] <= 1
    # two subjects have T2: the baseline still runs leave-one-out between them
    assert "threshold" in by["patient00", "t1-t2-flair", BASELINE]
    text = markdown_report(rows, "tiny")
    assert "### Input mode: flair" in text and "n/a: no t2" in text and "mean of 3" in text
    with pytest.raises(ValueError, match=r"unknown input modes \['pd'\]"):
        evaluate_real(cases, [], ["pd"], SETTINGS)


def test_cli_evaluate_on_a_data_folder(real_like, old_model, tmp_path, capsys) -> None:
    argv = ["evaluate", "--task", "ms", "--data", str(real_like), "--models", str(old_model)]
    cpu = ["--device", "cpu", "--tile", "16", "16", "16"]
    assert main([*argv, *cpu, "--modes", "t1-flair", "--out", str(tmp_path / "ev")]) == 0
    payload = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert payload["methods"] == ["tiny", BASELINE] and payload["modes"] == ["t1-flair"]
    assert len(payload["per_subject"]) == 6
    assert (tmp_path / "ev" / "evaluation.md").read_text().startswith("## MS segmentation on 3")
    capsys.readouterr()
    qsm = ["evaluate", "--task", "qsm", "--data", str(real_like), "--models", str(old_model)]
    assert main(qsm) == 2
    assert "--data is for --task ms" in capsys.readouterr().err
    assert main([*argv[:4], str(tmp_path / "none"), *argv[5:]]) == 1
    assert "data folder not found" in capsys.readouterr().err


def test_cli_evaluate_passes_the_window_overlap(
    real_like, old_model, tmp_path, monkeypatch
) -> None:
    import napari_fanet.evaluation.real as rev

    seen = []
    original = rev.evaluate_real

    def recording(cases, models, modes, settings, **kwargs):
        seen.append(settings.overlap)
        return original(cases, models, modes, settings, **kwargs)

    monkeypatch.setattr(rev, "evaluate_real", recording)
    argv = ["evaluate", "--task", "ms", "--data", str(real_like), "--models", str(old_model)]
    cpu = ["--device", "cpu", "--tile", "16", "16", "16", "--modes", "t1-flair"]
    assert main([*argv, *cpu]) == 0
    assert main([*argv, *cpu, "--overlap", "0.25"]) == 0
    assert seen == [0.5, 0.25]


def test_cli_evaluate_passes_the_mask_rule(real_like, old_model, tmp_path, monkeypatch, capsys):
    """--seed-threshold / --min-lesion-volume / --min-edge-distance / --match-roughness /
    --window-shifts reach segment(); the report states them."""
    import napari_fanet.evaluation.real as rev
    from napari_fanet.engine.predict import WINDOW_SHIFTS_DEFAULT
    from napari_fanet.tasks.lesion_mask import (
        DEFAULT_MIN_EDGE_DISTANCE_MM,
        DEFAULT_MIN_LESION_MM3,
        DEFAULT_SEED_THRESHOLD,
    )
    from napari_fanet.tasks.roughness import MATCH_ROUGHNESS_DEFAULT

    seen, matched, grids = [], [], []
    original = rev.segment

    def recording(*args, **kwargs):
        seen.append(
            (kwargs["seed_threshold"], kwargs["min_lesion_mm3"], kwargs["min_edge_distance_mm"])
        )
        matched.append(kwargs["match_roughness"])
        grids.append(kwargs["window_shifts"])
        return original(*args, **kwargs)

    monkeypatch.setattr(rev, "segment", recording)
    argv = ["evaluate", "--task", "ms", "--data", str(real_like), "--models", str(old_model)]
    cpu = ["--device", "cpu", "--tile", "16", "16", "16", "--modes", "t1-t2-flair"]
    rule = ["--seed-threshold", "0.8", "--min-lesion-volume", "128", "--min-edge-distance", "0"]
    assert main([*argv, *cpu, *rule, "--out", str(tmp_path / "ev")]) == 0
    assert set(seen) == {(0.8, 128.0, 0.0)} and len(seen) == 2  # patient02 has no T2
    report = (tmp_path / "ev" / "evaluation.md").read_text()
    assert "of probability > 0.5, holding a voxel above 0.8, of at least 128 mm^3." in report
    payload = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert payload["mask_rule"] == {
        "threshold": 0.5,
        "seed_threshold": 0.8,
        "min_lesion_mm3": 128,
        "min_edge_distance_mm": 0,
        "match_roughness": MATCH_ROUGHNESS_DEFAULT,
        "window_shifts": WINDOW_SHIFTS_DEFAULT,
    }
    assert set(grids) == {WINDOW_SHIFTS_DEFAULT}
    grids.clear()
    assert main([*argv, *cpu, "--window-shifts", "2", "--out", str(tmp_path / "grids")]) == 0
    assert set(grids) == {2}
    assert "--window-shifts 2" in (tmp_path / "grids" / "evaluation.md").read_text()
    seen.clear()
    matched.clear()
    assert main([*argv, *cpu, "--out", str(tmp_path / "default")]) == 0
    expected = (DEFAULT_SEED_THRESHOLD, DEFAULT_MIN_LESION_MM3, DEFAULT_MIN_EDGE_DISTANCE_MM)
    assert set(seen) == {expected}
    report = (tmp_path / "default" / "evaluation.md").read_text()
    assert "lying on average at least 2 mm inside the brain mask." in report
    assert set(matched) == {MATCH_ROUGHNESS_DEFAULT}
    for flag, value, said in (
        ("--match-roughness", True, "were smoothed to their roughness first"),
        ("--no-match-roughness", False, "FLAIRs were not roughness-matched"),
    ):
        matched.clear()
        assert main([*argv, *cpu, flag, "--out", str(tmp_path / flag)]) == 0
        assert set(matched) == {value}
        assert said in (tmp_path / flag / "evaluation.md").read_text()
    capsys.readouterr()
    qsm = ["evaluate", "--task", "qsm", "--models", "fanet-qsm", "--seed-threshold", "0.9"]
    assert main(qsm) == 2
    err = capsys.readouterr().err
    assert "--seed-threshold: MS segmentation options are for --task ms only" in err
    edge = ["evaluate", "--task", "qsm", "--models", "fanet-qsm", "--min-edge-distance", "1"]
    assert main(edge) == 2
    err = capsys.readouterr().err
    assert "--min-edge-distance: MS segmentation options are for --task ms only" in err
    assert main(["evaluate", "--task", "qsm", "--models", "fanet-qsm", "--match-roughness"]) == 2
    err = capsys.readouterr().err
    assert "--[no-]match-roughness: MS segmentation options are for --task ms only" in err
    assert (
        main(["evaluate", "--task", "qsm", "--models", "fanet-qsm", "--window-shifts", "2"]) == 2
    )
    err = capsys.readouterr().err
    assert "--window-shifts: MS segmentation options are for --task ms only" in err


def test_leave_one_out_family_scores_each_subject_with_its_own_run(
    real_like, old_model, tmp_path
) -> None:
    cases = load_real_cases(real_like)
    names = [c.name for c in cases]
    for name in names[:2]:
        (tmp_path / f"without-{name}").mkdir()
        (tmp_path / f"without-{name}" / "last.pt").write_bytes(old_model.read_bytes())
    pattern = str(tmp_path / "without-{subject}" / "last.pt")
    with pytest.raises(FileNotFoundError, match=r"missing for 1 of 3 subjects: .*patient02"):
        LeaveOneOutModels("loo", pattern, names, load_checkpoint)
    with pytest.raises(ValueError, match=r"needs \{subject\}"):
        LeaveOneOutModels("loo", str(old_model), names, load_checkpoint)
    loaded = []
    family = LeaveOneOutModels(
        "loo", pattern, names[:2], lambda p: loaded.append(p) or load_checkpoint(p)
    )
    assert loaded == [pattern.replace("{subject}", n) for n in names[:2]]
    assert family.for_case(names[1]) is not family.for_case(names[0])
    rows = evaluate_real(cases[:2], [family], ["t1-t2-flair"], SETTINGS)
    assert {r["subject"] for r in rows if r["method"] == "loo"} == set(names[:2])


def test_cli_evaluate_leave_one_out_pattern(real_like, old_model, tmp_path, capsys) -> None:
    pattern = str(tmp_path / "tiny-without-{subject}" / "last.pt")
    argv = ["evaluate", "--task", "ms", "--data", str(real_like), "--models", pattern]
    cpu = ["--device", "cpu", "--tile", "16", "16", "16", "--modes", "t1-flair"]
    assert main([*argv, *cpu]) == 1
    assert "leave-one-out checkpoints missing for 3 of 3" in capsys.readouterr().err
    for name in ("patient00", "patient01", "patient02"):
        (tmp_path / f"tiny-without-{name}").mkdir()
        (tmp_path / f"tiny-without-{name}" / "last.pt").write_bytes(old_model.read_bytes())
    assert main([*argv, *cpu, "--out", str(tmp_path / "ev")]) == 0
    payload = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert payload["methods"][0] == "tiny-without-held-out (LOO)"


def test_window_sentence_says_how_many_grids_were_averaged() -> None:
    from napari_fanet.evaluation.real import prediction_sentence, window_sentence

    assert window_sentence({}) == ""
    assert "One grid of windows on the brain's bounding box" in window_sentence(
        {"window_shifts": 1}
    )
    two = window_sentence({"window_shifts": 2})
    assert "averaged over 2 grids" in two and "1/2 of a window step (--window-shifts 2)" in two
    both = prediction_sentence({"match_roughness": True, "window_shifts": 2})
    assert both.startswith("FLAIRs rougher") and both.endswith(two)


def test_roughness_sentence_says_whether_flairs_were_matched() -> None:
    from napari_fanet.evaluation.real import roughness_sentence

    assert roughness_sentence({}) == ""
    assert "smoothed to their roughness first" in roughness_sentence({"match_roughness": True})
    assert "not roughness-matched" in roughness_sentence({"match_roughness": False})
