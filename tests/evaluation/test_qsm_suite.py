"""The QSM out-of-distribution suite: per-family evaluation, tables, and its CLI."""

from __future__ import annotations

import pytest

from napari_fanet.cli import main
from napari_fanet.evaluation.qsm_suite import FamilyResult, run_family, suite_markdown, suite_names


def test_run_family_tunes_baselines_on_the_family_and_scores_them():
    result = run_family("noise-1ppb", {}, n_test=2, n_val=1)
    assert set(result.rows) == {"TKD", "CFL2"} and len(result.rows["CFL2"]) == 2
    assert set(result.params) == {"tkd", "cfl2"}
    mean, lo, hi = result.against("CFL2", "nrmse")["TKD"]
    assert lo <= mean <= hi
    text = suite_markdown([result])
    assert "### noise-1ppb: 1 ppb field noise" in text and "| TKD |" in text


def test_against_is_the_paired_mean_difference():
    rows = {
        "CFL2": [{"nrmse": 40.0, "hfen": 30.0}, {"nrmse": 50.0, "hfen": 30.0}],
        "net": [{"nrmse": 30.0, "hfen": 20.0}, {"nrmse": 44.0, "hfen": 26.0}],
    }
    res = FamilyResult("x", "y", {"cfl2": 0.01, "tkd": 0.2}, rows)
    mean, lo, hi = res.against(metric="nrmse")["net"]
    assert mean == pytest.approx(-8.0) and lo <= mean <= hi
    assert res.summary()["net"]["hfen"][0] == pytest.approx(23.0)


def test_run_family_refuses_empty_draws():
    with pytest.raises(ValueError, match="n_test and n_val must be at least 1, got 0 and 1"):
        run_family("geometric", {}, n_test=0, n_val=1)


def test_suite_cli_usage_errors(capsys):
    assert main(["evaluate", "--task", "ms", "--suite", "ood", "--models", "fanet-seg"]) == 2
    assert "--suite ood is a QSM suite: use it with --task qsm, not ms" in capsys.readouterr().err
    argv = ["evaluate", "--task", "qsm", "--suite", "ood", "--families", "mri", "--models", "x"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--families: unknown mri; expected some of " + ", ".join(suite_names()) in err


def test_run_family_starts_at_the_seed_offset(monkeypatch):
    from napari_fanet.evaluation import qsm_suite

    drawn = []
    monkeypatch.setattr(
        qsm_suite,
        "family_cases",
        lambda fam, indices, validation: drawn.append((list(indices), validation)) or [],
    )
    monkeypatch.setattr(
        qsm_suite, "tune_classical", lambda task, cases: {"cfl2": 0.01, "tkd": 0.2}
    )
    monkeypatch.setattr(qsm_suite, "run_evaluation", lambda task, methods, cases, progress: {})
    run_family("geometric", {}, n_test=2, n_val=1, first_index=100)
    assert drawn == [([100], True), ([100, 101], False)]


def test_run_family_refuses_draws_past_the_validation_offset():
    with pytest.raises(
        ValueError, match="a seed offset of 499 with 2 subjects needs draws up to 500"
    ):
        run_family("geometric", {}, n_test=2, n_val=1, first_index=499)


def test_suite_cli_refuses_a_seed_offset_past_the_draws(capsys):
    argv = ["evaluate", "--task", "qsm", "--suite", "ood", "--models", "fanet-qsm"]
    assert main([*argv, "--seed-offset", "498", "--n-test", "3"]) == 2
    err = capsys.readouterr().err
    assert "--seed-offset/--n-test/--n-val: a seed offset of 498 with 3 subjects needs" in err
    assert "draws up to 500; each family of the suite has draws 0 to 499" in err
