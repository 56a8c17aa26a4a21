"""Smoke tests of the benchmark scripts: tiny sizes, no timing checks (timings live in README)."""

import importlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

#: Packaging, benchmark smoke runs, DDP and the demo: run by default, deselect with
#: ``-m "not integration"``.
pytestmark = pytest.mark.integration

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SRC = BENCHMARKS.parent / "src"


@pytest.fixture
def bench(monkeypatch):
    """Import benchmark scripts as modules; their child processes must find the package too."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    return importlib.import_module


def _finite(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def _usage_error(capsys, main, *args) -> str:
    """Call a benchmark's ``main(*args)``, expect argparse's usage error; returns its stderr."""
    with pytest.raises(SystemExit) as exit_:
        main(*args)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_inference_selection_always_includes_the_backbone(bench):
    inference = bench("inference")
    assert inference.selected(["ag-seg"]) == ["unet-seg", "ag-seg"]
    assert inference.selected(["sa-qsm", "fanet-seg"]) == [
        "unet-seg",
        "fanet-seg",
        "qsmnet",
        "sa-qsm",
    ]
    assert inference.selected(None) == inference.ALL_MODELS


def test_inference_main_tiny_both_modes(bench, tmp_path):
    inference = bench("inference")
    # FA-Net and its backbone only: every (model, mode) is a fresh process of a few seconds.
    argv = [
        "--shape", "20", "24", "20", "--features", "8", "8", "8", "8", "8",
        "--roi", "16", "16", "16", "--budget", "0", "--threads", "1", "--wait-idle", "0",
        "--models", "fanet-seg", "--out", str(tmp_path),
    ]  # fmt: skip
    inference.main(argv)
    data = json.loads((tmp_path / "inference_cpu.json").read_text())
    models = {"unet-seg", "fanet-seg"}
    assert set(data["results"]) == {"sliding", "whole"}
    for mode, rows in data["results"].items():
        assert set(rows) == models, mode
        for name, row in rows.items():
            assert "error" not in row, (mode, name, row)
            assert _finite(row["time_ratio"]) and _finite(row["memory_ratio"]), (mode, name)
            assert len(row["times_ms"]) >= 3
        assert rows["fanet-seg"]["attention_calls"] == (4 if mode == "sliding" else 1)
        assert _finite(rows["fanet-seg"]["attention_share"]), mode
        assert rows["unet-seg"]["attention_calls"] == 0
        assert rows["unet-seg"]["time_ratio"] == 1.0
    checks = {(c["task"], c["mode"]) for c in data["check"]}
    assert checks == {("segmentation", "sliding"), ("segmentation", "whole")}
    assert all(isinstance(c["pass"], bool) for c in data["check"])
    text = (tmp_path / "inference_cpu.md").read_text()
    assert "### segmentation, whole" in text and "Overall: **" in text


def test_attention_cost_main_tiny(bench, tmp_path):
    pytest.importorskip("matplotlib")
    attention_cost = bench("attention_cost")
    argv = ["--channels", "8", "--main-size", "8", "--sizes", "8", "--budget", "0.1"]
    attention_cost.main([*argv, "--out", str(tmp_path)])
    data = json.loads((tmp_path / "attention_cost_cpu.json").read_text())
    assert set(data["main"]) == set(attention_cost.MODULES)
    for name, row in data["main"].items():
        assert "error" not in row, (name, row)
        assert _finite(row["median_ms"]) and row["flops_all"] > 0, name
    assert set(data["sweep"]) == {"8"}
    assert (tmp_path / "attention_cost_cpu.png").stat().st_size > 0


def test_fa_vs_backbone_report_pairs_by_seed_and_subject(bench):
    mod = bench("fa_vs_backbone")
    args = mod.argparse.Namespace(
        task="qsm", seeds=[0, 1], steps=10, patch=16, subjects=2, n_test=2
    )

    def rows(nrmse):
        return [{"nrmse": v, "hfen": v / 2, "ssim": 0.5} for v in nrmse]

    result = {
        "per_subject": {
            "fanet-qsm-s0": rows([40.0, 42.0]),
            "qsmnet-s0": rows([41.0, 44.0]),  # FA better by 1.5 on average
            "fanet-qsm-s1": rows([45.0, 45.0]),
            "qsmnet-s1": rows([44.0, 44.0]),  # backbone better by 1.0
            "CFL2": rows([50.0, 50.0]),
        }
    }
    text = mod.report(args, result)
    assert "| nrmse | 0 | 41.000 | 42.500 | -1.500 | fanet-qsm |" in text
    assert "| nrmse | 1 | 45.000 | 44.000 | +1.000 | qsmnet |" in text
    assert "| nrmse | mean over seeds | | | -0.250 (sd 1.768) | |" in text
    assert "| ssim | 0 | 0.500 | 0.500 | +0.000 | tie |" in text
    assert "Classical CFL2 on the same subjects: nrmse 50.000" in text


def _loo_json(path, dice_by_subject):
    rows = [
        {"subject": subject, "mode": mode, "method": method, "dice": dice, "lf1": dice / 2}
        for mode in ("flair", "t1-flair")
        for subject, dice in dice_by_subject.items()
        for method in ("fanet-seg-without-held-out (LOO)", "FLAIR threshold (LOO)")
    ]
    path.write_text(json.dumps({"per_subject": rows}))
    return path


def test_fa_vs_backbone_loo_report_pairs_seeds_modes_and_patients(bench, tmp_path):
    mod = bench("fa_vs_backbone")
    pairs = [
        (1, _loo_json(tmp_path / "a1.json", {"p1": 0.5, "p2": 0.3}),
         _loo_json(tmp_path / "b1.json", {"p1": 0.4, "p2": 0.3})),
        (2, _loo_json(tmp_path / "a2.json", {"p1": 0.2, "p2": 0.2}),
         _loo_json(tmp_path / "b2.json", {"p1": 0.3, "p2": 0.3})),
    ]  # fmt: skip
    text = mod.loo_report(pairs)
    assert "| flair | 1 | 0.400 | 0.350 | +0.050 | 0.200 | 0.175 | +0.025 |" in text
    assert "| t1-flair | 2 | 0.200 | 0.300 | -0.100 | 0.100 | 0.150 | -0.050 |" in text
    assert (
        "| flair | mean over seeds |  |  | -0.025 (sd 0.106) |  |  | -0.012 (sd 0.053) |" in text
    )
    other = _loo_json(tmp_path / "c.json", {"p1": 0.5})
    with pytest.raises(SystemExit, match="the two reports must score the same modes and cases"):
        mod.loo_report([(3, pairs[0][1], other)])
    with pytest.raises(SystemExit, match=r"expected an 'evaluate --data' evaluation\.json"):
        mod.loo_report([(3, tmp_path / "missing.json", other)])


def test_fa_vs_backbone_simulated_report_pairs_methods_per_seed(bench, tmp_path):
    mod = bench("fa_vs_backbone")
    rows = {
        "a1": [{"dice": 0.5, "lf1": 0.6}, {"dice": 0.3, "lf1": 0.4}],
        "b1": [{"dice": 0.4, "lf1": 0.6}, {"dice": 0.3, "lf1": 0.2}],
    }
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps({"per_subject": rows, "test_cases": ["seed-1", "seed-2"]}))
    text = mod.simulated_report([(1, path, "a1", "b1"), (2, path, "b1", "a1")])
    assert "| simulated | 1 | 0.400 | 0.350 | +0.050 | 0.500 | 0.400 | +0.100 |" in text
    assert "| simulated | mean over seeds |  |  | +0.000 (sd 0.071) |" in text
    with pytest.raises(SystemExit, match="with a method 'c1'"):
        mod.simulated_report([(1, path, "a1", "c1")])


def test_fa_vs_backbone_simulated_seed_must_be_an_integer(bench, monkeypatch, capsys):
    mod = bench("fa_vs_backbone")
    argv = ["fa_vs_backbone.py", "--simulated", "one", "e.json", "a", "b"]
    monkeypatch.setattr(mod.sys, "argv", argv)
    err = _usage_error(capsys, mod.main)
    assert "--simulated: expected SEED (an integer) JSON WITH WITHOUT" in err


def test_smv_cost_runs_on_a_coarse_head(bench, capsys):
    row = bench("smv_cost").main(["--voxel", "8"])
    assert row["shape"] == [23, 27, 23] and _finite(row["seconds"]) and _finite(row["peak_rss_gb"])
    assert "| 8 mm | (23, 27, 23) | 1 |" in capsys.readouterr().out


def test_smv_cost_rejects_bad_arguments(bench, capsys):
    err = _usage_error(capsys, bench("smv_cost").main, ["--voxel", "0"])
    assert "expected --voxel > 0 and --threads >= 1, got 0.0, 1" in err


def test_fa_vs_backbone_loo_seed_must_be_an_integer(bench, monkeypatch, capsys):
    mod = bench("fa_vs_backbone")
    monkeypatch.setattr(mod.sys, "argv", ["fa_vs_backbone.py", "--loo", "one", "a.json", "b.json"])
    err = _usage_error(capsys, mod.main)
    assert "--loo: expected SEED (an integer) WITH_JSON WITHOUT_JSON" in err


def test_fa_vs_backbone_train_command_is_the_documented_recipe(bench, tmp_path):
    mod = bench("fa_vs_backbone")
    args = mod.argparse.Namespace(subjects=8, steps=600, patch=48, device="cpu", threads=1)
    cmd = mod.train_command(args, "fanet-qsm", 2, tmp_path / "run")
    assert cmd[1:4] == ["-m", "napari_fanet", "train"]
    joined = " ".join(cmd[4:])
    assert "--model fanet-qsm --simulate 8 --simulate-val 2 --steps 600" in joined
    assert "--patch-size 48 48 48 --val-every 300 --seed 2 --device cpu --threads 1" in joined


def test_cli_speed_table_marks_the_60_s_target(bench):
    cli_speed = bench("cli_speed")
    rows = [
        {"model": "fanet-seg", "mode": "flair", "seconds": [41.0, 39.5], "median_s": 41.0,
         "pass": True, "load": 1.0},
        {"model": "unet-seg", "mode": "t1-t2-flair", "mirror": "on", "window_shifts": "2",
         "seconds": [75.2], "median_s": 75.2, "pass": False, "load": 2.5},
    ]  # fmt: skip
    text = cli_speed.table(rows, 2)
    assert "182 x 218 x 182" in text and "Target: 60 s" in text
    assert "| fanet-seg | flair | default | default | 41.0 | 41.0, 39.5 | 1.00 | PASS |" in text
    assert "| unet-seg | t1-t2-flair | on | 2 | 75.2 | 75.2 | 2.50 | FAIL |" in text


def test_cli_speed_passes_the_mirror_setting_to_segment(bench, monkeypatch, tmp_path):
    cli_speed = bench("cli_speed")
    seen = []
    monkeypatch.setattr(cli_speed.subprocess, "run", lambda cmd, **kw: seen.append(cmd))
    for mirror in ("default", "on", "off"):
        cli_speed.time_segment(tmp_path, "fanet-seg", "flair", 2, tmp_path / "out", mirror)
    flags = [[a for a in cmd if "mirror" in a] for cmd in seen]
    assert flags == [[], ["--mirror"], ["--no-mirror"]]
    seen.clear()
    for shifts in ("default", "2"):
        cli_speed.time_segment(
            tmp_path, "fanet-seg", "flair", 2, tmp_path / "out", window_shifts=shifts
        )
    assert [cmd[cmd.index("--no-progress") + 1 :] for cmd in seen] == [
        [],
        ["--window-shifts", "2"],
    ]
    rows = []
    monkeypatch.setattr(cli_speed, "simulate_subject", lambda folder: folder)
    monkeypatch.setattr(cli_speed, "time_segment", lambda *a, **kw: rows.append(kw) or 1.0)
    out = cli_speed.run(["fanet-seg"], ["flair"], 2, 1, ("on",), ("1", "2"))
    assert [r["window_shifts"] for r in out] == ["1", "2"] == [kw["window_shifts"] for kw in rows]


@pytest.mark.slow
def test_cli_speed_runs_the_real_cli(bench, tmp_path):
    rows = bench("cli_speed").main(["--modes", "flair", "--out", str(tmp_path)])
    assert rows[0]["model"] == "fanet-seg" and _finite(rows[0]["median_s"])
    assert json.loads((tmp_path / "cli_segment.json").read_text())[0]["mode"] == "flair"


def test_qsm_physics_slope_and_sample_rows(bench, monkeypatch):
    qsm_physics = bench("qsm_physics")
    x = np.array([1.0, 2.0, 3.0])
    assert qsm_physics.slope(2.5 * x, x) == pytest.approx(2.5)
    from napari_fanet.engine.inference import WindowSettings
    from napari_fanet.engine.predict import load_model

    monkeypatch.setattr(qsm_physics, "CROP", (slice(30, 62), slice(38, 70), slice(34, 66)))
    model, ckpt = load_model("qsmnet")
    settings = WindowSettings(roi_size=(32, 32, 32), overlap=0.0, device="cpu")
    slopes, sign = qsm_physics.sample_rows(model, ckpt, settings)
    assert set(slopes) == set(qsm_physics.SCALES)
    assert all(abs(s - 1) < 0.05 for s in slopes.values())
    assert 0 <= sign < 0.01


def test_attention_entropy_main_tiny(bench, tmp_path, capsys):
    """A tiny FA-Net with two FA levels on the sample case: one row per block and axis."""
    import torch

    from napari_fanet.models import build_model, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = build_model(
        "fanet-seg",
        features=(8, 8, 8, 8, 8),
        attention_levels=(2, 4),
        attention_kwargs={"scale": "sqrt"},
    )
    shipped = load_checkpoint(SRC / "napari_fanet" / "weights" / "fanet-seg.pt")[1]
    path = save_checkpoint(tmp_path / "tiny.pt", model, extra=shipped["extra"])
    entropy = bench("attention_entropy")
    assert entropy.main(["--models", str(path), "--threads", "1"]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| tiny | sample |")]
    assert len(rows) == 8  # two blocks x four axes
    for row in rows:
        relative = float(row.split("|")[7])
        assert 0.0 <= relative <= 1.0


def test_attention_entropy_cosine_table_falls_with_the_scale(bench, tmp_path, capsys):
    """Softmax entropy never rises with the energies' scale: each row of the table falls."""
    import torch

    from napari_fanet.models import build_model, load_checkpoint, save_checkpoint

    torch.manual_seed(1)
    model = build_model("fanet-seg", features=(8, 8, 8, 8, 8), attention_levels=(2, 4))
    shipped = load_checkpoint(SRC / "napari_fanet" / "weights" / "fanet-seg.pt")[1]
    path = save_checkpoint(tmp_path / "tiny.pt", model, extra=shipped["extra"])
    entropy = bench("attention_entropy")
    argv = ["--models", str(path), "--threads", "1", "--cosine-scales", "1", "10", "1000"]
    assert entropy.main(argv) == 0
    table = capsys.readouterr().out.split("with cosine energies times S")[1]
    rows = [line for line in table.splitlines() if line.startswith("| tiny | sample |")]
    assert len(rows) == 8
    for row in rows:
        values = [float(v) for v in row.split("|")[6:9]]
        assert 1.0 >= values[0] >= values[1] >= values[2] >= 0.0
    assert min(float(r.split("|")[6]) for r in rows) > 0.5  # 1 x cosine: nearly uniform


def test_attention_entropy_refuses_non_positive_cosine_scales(bench, tmp_path, capsys):
    entropy = bench("attention_entropy")
    model = SRC / "napari_fanet" / "weights" / "fanet-qsm.pt"
    err = _usage_error(
        capsys, entropy.main, ["--models", str(model), "--cosine-scales", "10", "0"]
    )
    assert "--cosine-scales: expected positive finite numbers, got [10.0, 0.0]" in err


def test_attention_entropy_refuses_a_missing_model(bench, tmp_path, capsys):
    entropy = bench("attention_entropy")
    err = _usage_error(capsys, entropy.main, ["--models", str(tmp_path / "none.pt")])
    assert "--models: expected a checkpoint file, got" in err


def test_attention_entropy_refuses_a_missing_sample_case(bench, tmp_path, capsys, monkeypatch):
    """Run from a copy without sample_data/: a usage error, not a StopIteration traceback."""
    entropy = bench("attention_entropy")
    monkeypatch.setitem(entropy.SAMPLES, "qsm", tmp_path / "no-sample")
    model = SRC / "napari_fanet" / "weights" / "fanet-qsm.pt"
    err = _usage_error(capsys, entropy.main, ["--models", str(model)])
    assert "expected a case with local_field / brain_mask in" in err and "found none" in err


def _ms_case(root, name, lesions, affine):
    import nibabel as nib

    folder = root / name
    folder.mkdir(parents=True)
    flair = np.ones(lesions.shape, dtype=np.float32)
    nib.save(nib.Nifti1Image(flair, affine), folder / "flair.nii.gz")
    nib.save(nib.Nifti1Image(lesions.astype(np.uint8), affine), folder / "lesion_mask.nii.gz")


def test_ms_postprocessing_tunes_leave_one_out(bench, tmp_path, capsys):
    import nibabel as nib

    post = bench("ms_postprocessing")
    affine = np.eye(4)
    data, maps = tmp_path / "data", tmp_path / "maps"
    rng = np.random.default_rng(0)
    for i, name in enumerate(("a", "b", "c")):
        lesions = np.zeros((24, 24, 24), bool)
        lesions[4:10, 4:10, 4:10] = True
        lesions[14 + i : 17 + i, 14:17, 14:17] = True
        _ms_case(data, name, lesions, affine)
        # The truth, faint, plus a small bright false lesion: a larger smallest lesion helps.
        probability = np.where(lesions, 0.65, 0.0) + 0.05 * rng.random(lesions.shape)
        probability[19:21, 1:3, 1:3] = 0.9  # an 8-voxel false lesion
        (maps / f"{name}-flair").mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(probability.astype(np.float32), affine),
            maps / f"{name}-flair" / "lesion_probability.nii.gz",
        )
    out = tmp_path / "post.json"
    results = post.main(["--data", str(data), "--maps", str(maps), "--modes", "flair"])
    post.main(["--data", str(data), "--maps", str(maps), "--modes", "flair", "--json", str(out)])
    assert json.loads(out.read_text()) == results
    table = capsys.readouterr().out
    assert "| mean |" in table and "rule chosen on the others" in table
    for row in results["flair"].values():
        threshold, seed, smallest = row["setting"]
        assert threshold < 0.65 and seed is None and smallest in (10, 20)  # keeps 27, drops 8
        assert row["dice"] == pytest.approx(1.0) and row["lf1"] == pytest.approx(1.0)
        assert row["product_dice"] < 1.0 and row["product_lf1"] < 1.0


def _seed_cases(data, maps, affine):
    """Three subjects whose false lesions are faint and large: only a seed rule removes them."""
    import nibabel as nib

    for i, name in enumerate(("a", "b", "c")):
        lesions = np.zeros((24, 24, 24), bool)
        lesions[4:10, 4:10, 4:10] = True
        _ms_case(data, name, lesions, affine)
        probability = np.where(lesions, 0.7, 0.0)
        probability[6 + i, 6, 6] = 0.99  # the true lesion's confident core
        probability[14:20, 14:20, 14:20] = 0.6  # a faint 216-voxel false lesion
        (maps / f"{name}-flair").mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(probability.astype(np.float32), affine),
            maps / f"{name}-flair" / "lesion_probability.nii.gz",
        )


def test_ms_postprocessing_seed_grid_and_fixed_rule(bench, tmp_path, capsys):
    post = bench("ms_postprocessing")
    data, maps = tmp_path / "data", tmp_path / "maps"
    _seed_cases(data, maps, np.diag([2.0, 2.0, 2.0, 1.0]))  # 8 mm^3 voxels
    argv = ["--data", str(data), "--maps", str(maps), "--modes", "flair"]
    results = post.main([*argv, "--grid", "seed-at-0.5", "--pooled"])
    for row in results["flair"].values():
        threshold, seed, _ = row["setting"]
        assert threshold == 0.5 and seed >= 0.6  # the faint lesion peaks at 0.6: no seed
        assert row["dice"] == pytest.approx(1.0) and row["lf1"] == pytest.approx(1.0)
        assert row["product_lf1"] == pytest.approx(2 / 3)  # 1 of 2 predicted lesions is true
    fixed = post.main([*argv, "--fixed", "0.95", "16"])
    for row in fixed["flair"].values():
        assert row["setting"] == [0.5, 0.95, 16.0]
        assert row["dice"] == pytest.approx(1.0) and row["product_dice"] < 1.0
    none = post.main([*argv, "--fixed", "none", "16"])  # 216 voxels are far above 16 mm^3
    assert all(r["lf1"] == pytest.approx(2 / 3) for r in none["flair"].values())
    assert "rule (threshold, seed, smallest mm^3)" in capsys.readouterr().out
    err = _usage_error(capsys, post.main, [*argv, "--fixed", "0.3", "0"])
    assert "--fixed: seed threshold (0.3) must be at least the threshold (0.5)" in err
    for bad, message in (
        (["high", "10"], "expected a seed threshold or 'none', got 'high'"),
        (["0.9", "big"], "expected a smallest lesion volume in mm^3, got 'big'"),
    ):
        assert f"--fixed: {message}" in _usage_error(capsys, post.main, [*argv, "--fixed", *bad])


def test_ms_postprocessing_predicts_missing_maps_leave_one_out(bench, tmp_path, capsys):
    import nibabel as nib
    import torch

    from napari_fanet.models import build_model, save_checkpoint

    post = bench("ms_postprocessing")
    data = tmp_path / "data"
    lesions = np.zeros((16, 16, 16), bool)
    lesions[4:8, 4:8, 4:8] = True
    for name in ("a", "b"):
        _ms_case(data, name, lesions, np.diag([4.0, 4.0, 4.0, 1.0]))
        for modality in ("t1", "t2"):
            nib.save(
                nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.diag([4.0, 4.0, 4.0, 1.0])),
                data / name / f"{modality}.nii.gz",
            )
        torch.manual_seed(0)
        model = build_model("unet-seg", features=(8, 8, 8, 8, 16))
        save_checkpoint(tmp_path / f"without-{name}.pt", model, extra={"voxel_size": [4.0] * 3})
    maps = tmp_path / "maps"
    argv = ["--data", str(data), "--maps", str(maps), "--modes", "t1-t2-flair"]
    results = post.main([*argv, "--predict", str(tmp_path / "without-{subject}.pt")])
    for name in ("a", "b"):
        written = nib.load(maps / f"{name}-t1-t2-flair" / "lesion_probability.nii.gz")
        assert written.shape == (16, 16, 16)
        np.testing.assert_array_equal(written.affine, np.diag([4.0, 4.0, 4.0, 1.0]))
    assert set(results["t1-t2-flair"]) == {"a", "b"}
    # the maps exist now; a pattern without {subject} is refused before any is looked at
    err = _usage_error(capsys, post.main, [*argv, "--predict", str(tmp_path / "no-field.pt")])
    assert "--predict: --predict needs {subject} in the checkpoint path, got" in err


def _two_small_cases(root):
    """Subjects ``a`` and ``b`` under ``root``: an (8, 8, 8) FLAIR and one 27-voxel lesion."""
    lesions = np.zeros((8, 8, 8), bool)
    lesions[2:5, 2:5, 2:5] = True
    for name in ("a", "b"):
        _ms_case(root, name, lesions, np.eye(4))


def test_ms_postprocessing_refuses_missing_maps(bench, tmp_path, capsys):
    post = bench("ms_postprocessing")
    _two_small_cases(tmp_path / "data")
    argv = ["--data", str(tmp_path / "data"), "--maps", str(tmp_path), "--modes", "flair"]
    err = _usage_error(capsys, post.main, argv)
    assert "a-flair/lesion_probability.nii.gz (from napari-fanet segment), not found" in err
    with pytest.raises(ValueError, match="at least 2 subjects, got 1"):
        post.leave_one_out({"a": {}}, [])


def test_ms_postprocessing_refuses_a_map_on_another_grid(bench, tmp_path, capsys):
    import nibabel as nib

    post = bench("ms_postprocessing")
    _two_small_cases(tmp_path / "data")
    for name in ("a", "b"):
        (tmp_path / "maps" / f"{name}-flair").mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(np.zeros((8, 8, 6), np.float32), np.eye(4)),
            tmp_path / "maps" / f"{name}-flair" / "lesion_probability.nii.gz",
        )
    argv = ["--data", str(tmp_path / "data"), "--maps", str(tmp_path / "maps")]
    err = _usage_error(capsys, post.main, [*argv, "--modes", "flair"])
    assert "has shape (8, 8, 6), expected (8, 8, 8) (the reference of a)" in err
    missing = ["--data", str(tmp_path / "none"), "--maps", str(tmp_path / "maps")]
    assert "--data: data folder not found:" in _usage_error(capsys, post.main, missing)


def test_thick_slice_data_writes_thick_flair_and_masks(bench, tmp_path, capsys):
    import nibabel as nib

    thick = bench("thick_slice_data")
    lesions = np.zeros((12, 12, 20), bool)
    lesions[4:8, 4:8, 5:15] = True
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    _ms_case(tmp_path / "data", "p1", lesions, affine)
    written = thick.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "thick")])
    assert written == [tmp_path / "thick" / "p1"]
    flair = nib.load(written[0] / "flair.nii.gz")
    mask = nib.load(written[0] / "lesion_mask.nii.gz")
    assert flair.shape == mask.shape == (12, 12, 4)  # 20 slices of 1 mm -> 4 of 5 mm
    np.testing.assert_allclose(flair.affine, np.diag([1.0, 1.0, 5.0, 1.0]))
    np.testing.assert_allclose(flair.get_fdata(), 1.0, atol=1e-5)  # a flat image stays flat
    assert np.asarray(mask.dataobj)[5, 5, 2] == 1 and np.asarray(mask.dataobj)[0, 0, 2] == 0
    assert "p1: flair, lesion_mask" in capsys.readouterr().out
    argv = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "x"), "--factor", "0.5"]
    err = _usage_error(capsys, thick.main, argv)
    assert "--factor: expected a slice thickness of at least 1 voxel, got 0.5" in err
    missing = ["--data", str(tmp_path / "none"), "--out", str(tmp_path / "x")]
    assert "--data: data folder not found:" in _usage_error(capsys, thick.main, missing)


def test_cli_speed_adds_the_extra_environment(bench, monkeypatch, tmp_path):
    cli_speed = bench("cli_speed")
    seen = []
    monkeypatch.setattr(cli_speed.subprocess, "run", lambda cmd, **kw: seen.append(kw["env"]))
    cli_speed.time_segment(
        tmp_path, "fanet-seg", "flair", 2, tmp_path / "out", extra_env={"NAPARI_FANET_X": "1"}
    )
    assert seen[0]["NAPARI_FANET_X"] == "1" and seen[0]["OMP_NUM_THREADS"] == "2"


def test_attention_cost_refuses_kept_memory_where_the_c_library_cannot(bench, monkeypatch):
    attention_cost = bench("attention_cost")
    monkeypatch.setattr(attention_cost, "retain_freed_memory", lambda default=True: False)
    argv = ["--ratio-child", "--retain-memory", "--child-size", "4", "4", "4", "--channels", "4"]
    with pytest.raises(SystemExit, match="--retain-memory: this C library cannot keep freed"):
        attention_cost.main(argv)


def test_attention_cost_child_keeps_memory_against_a_zero_outside(bench, monkeypatch):
    attention_cost = bench("attention_cost")
    monkeypatch.setenv("NAPARI_FANET_RETAIN_MEMORY", "0")
    seen = []

    def run(cmd, **kw):
        seen.append((cmd, kw["env"]))
        raise RuntimeError("stop after the command is built")

    monkeypatch.setattr(attention_cost.subprocess, "run", run)
    for retain in (False, True):
        with pytest.raises(RuntimeError, match="stop after"):
            attention_cost.run_ratio(4, (4, 4, 4), 1, 1, None, retain)
    (plain_cmd, plain_env), (kept_cmd, kept_env) = seen
    assert "--retain-memory" not in plain_cmd and plain_env["NAPARI_FANET_RETAIN_MEMORY"] == "0"
    assert "--retain-memory" in kept_cmd and kept_env["NAPARI_FANET_RETAIN_MEMORY"] == "1"


def test_attention_cost_ratio_with_and_without_kept_memory(bench, tmp_path):
    attention_cost = bench("attention_cost")
    from napari_fanet.engine.memory import _glibc_mallopt

    if _glibc_mallopt() is None:
        pytest.skip("glibc's mallopt is not available")
    argv = ["--ratio", "--retain-memory", "--channels", "8", "--main-size", "8", "--repeats", "2"]
    attention_cost.main([*argv, "--out", str(tmp_path)])
    data = json.loads((tmp_path / "attention_ratio_cpu.json").read_text())
    assert list(data) == ["idle", "idle, freed memory kept"]
    for condition in data.values():
        assert _finite(condition["rows"]["FA"]["ratio"])
    text = (tmp_path / "attention_ratio_cpu.md").read_text()
    assert "| idle, freed memory kept, 2 threads | FA |" in text


def test_memory_retention_table_gives_the_ratio_and_the_checks(bench):
    memory_retention = bench("memory_retention")
    off, on = memory_retention.SETTINGS
    times = {off: [50.0, 48.0, 49.0], on: [33.0, 34.0, 32.0]}
    checks = {"segment: identical lesion masks": True, "train: identical final weights": False}
    result = {"times": {"segment (FLAIR, 1 mm brain)": times}, "checks": checks, "load": 0.5}
    text = memory_retention.table(result, 2)
    row = "| segment (FLAIR, 1 mm brain) | 49.0 | 33.0 | 50.0, 48.0, 49.0 / 33.0, 34.0, 32.0 "
    assert row in text
    assert f"| {33 / 49:.3f} |" in text
    assert "- segment: identical lesion masks: yes" in text
    assert "- train: identical final weights: NO" in text


def test_memory_retention_table_gives_the_memory_left_after_the_napari_job(bench):
    memory_retention = bench("memory_retention")
    off, on = memory_retention.SETTINGS
    result = {
        "times": {"segment as a napari job (one process)": {off: [48.0], on: [32.0]}},
        "resident_mib": {off: [557.0, 550.0, 602.0], on: [456.0, 456.0, 457.0]},
        "checks": {"napari job: identical lesion masks": True},
        "load": 0.5,
    }
    text = memory_retention.table(result, 2)
    assert f"| 48.0 | 32.0 | 48.0 / 32.0 | {32 / 48:.3f} |" in text
    assert f"Resident after the napari job ({off}): median 557 MiB (557, 550, 602)." in text
    assert f"Resident after the napari job ({on}): median 456 MiB (456, 456, 457)." in text
    assert "- napari job: identical lesion masks: yes" in text


@pytest.mark.slow
def test_memory_retention_runs_the_napari_job_both_ways(bench, tmp_path):
    memory_retention = bench("memory_retention")
    argv = ["--rounds", "1", "--skip-segment", "--skip-train", "--in-process"]
    result = memory_retention.main([*argv, "--out", str(tmp_path)])
    (times,) = result["times"].values()
    assert all(_finite(t) for ts in times.values() for t in ts)
    assert all(0 < m < 10_000 for ms in result["resident_mib"].values() for m in ms)
    assert result["checks"] == {"napari job: identical lesion masks": True}


def test_memory_retention_trains_both_ways_with_the_same_weights(bench, tmp_path):
    memory_retention = bench("memory_retention")
    result = memory_retention.main(
        ["--rounds", "1", "--steps", "1", "--skip-segment", "--out", str(tmp_path)]
    )
    (times,) = result["times"].values()
    assert all(_finite(t) for ts in times.values() for t in ts)
    assert result["checks"] == {"train: identical final weights": True}
    assert "identical final weights: yes" in (tmp_path / "memory_retention.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "--rounds and --steps must be at least 1, got 0 and 40"),
        (["--skip-segment", "--skip-train"], "leave nothing to time without --in-process"),
    ],
)
def test_memory_retention_refuses_bad_arguments(bench, capsys, argv, message):
    assert message in _usage_error(capsys, bench("memory_retention").main, argv)


def _growth_case(root, maps, name, shift):
    """A FLAIR with CSF, white and grey matter and one bright 7^3 lesion in the white matter;
    the network is sure of the lesion's 3^3 core only (at 8 mm^3 voxels: 216 mm^3)."""
    rng = np.random.default_rng(shift)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    flair = np.full((32, 32, 32), 1.4) + 0.02 * rng.standard_normal((32, 32, 32))  # grey matter
    flair[6:26, 6:26, 6:26] = 1.0 + 0.05 * rng.standard_normal((20, 20, 20))  # white matter
    flair[14:18, 20:24, 14:18] = 0.3  # a ventricle
    lesions = np.zeros(flair.shape, bool)
    lesions[9 + shift : 16 + shift, 9:16, 9:16] = True
    flair[lesions] = 2.0
    probability = np.zeros(flair.shape, np.float32)
    probability[11 + shift : 14 + shift, 11:14, 11:14] = 0.99
    _write_map_case(root / name, maps / f"{name}-flair", affine, flair, lesions, probability)


def _write_map_case(folder, map_folder, affine, flair, lesions, probability):
    """A subject folder (FLAIR, lesion mask) and its FLAIR-mode probability map's folder."""
    import nibabel as nib

    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(flair.astype(np.float32), affine), folder / "flair.nii.gz")
    nib.save(nib.Nifti1Image(lesions.astype(np.uint8), affine), folder / "lesion_mask.nii.gz")
    map_folder.mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(probability.astype(np.float32), affine),
        map_folder / "lesion_probability.nii.gz",
    )


def test_ms_lesion_growth_grows_into_the_bright_lesion_leave_one_out(bench, tmp_path, capsys):
    growth = bench("ms_lesion_growth")
    data, maps = tmp_path / "data", tmp_path / "maps"
    for shift, name in enumerate(("a", "b", "c")):
        _growth_case(data, maps, name, shift)
    out = tmp_path / "growth.json"
    argv = ["--data", str(data), "--maps", str(maps), "--modes", "flair"]
    results = growth.main([*argv, "--json", str(out)])
    assert json.loads(out.read_text())["chosen_on_all"] == list(results["chosen_on_all"])
    for row in results["leave_one_out"].values():
        assert row["growth"] is not None  # every fold grows
        assert row["rule"][0] == pytest.approx(2 * 27 / (27 + 343))  # the core alone
        assert row["grown"][0] == pytest.approx(1.0)  # grown to the whole bright lesion
        assert row["grown"][2] == pytest.approx(343 * 8 / 1000)  # mL
    for contrast in results["contrast"].values():  # the lesions are far brighter than the WM
        assert contrast["lesion_fraction_in_wm"] == pytest.approx(1.0)
        assert contrast["lesion_z_p10_p50_p90"][0] > 5 * contrast["other_wm_z_p99"] > 0
        assert contrast["lesion_probability_median"] == 0.0  # only the 3^3 core is predicted
    assert set(results["contrast"]) == {"a|flair", "b|flair", "c|flair"}
    printed = capsys.readouterr().out
    assert "growth chosen on the others" in printed and "chosen on all subjects: z > " in printed
    assert "| a, flair |" in printed


def test_ms_lesion_growth_keeps_the_mask_without_growth_and_refuses_one_subject(bench):
    growth = bench("ms_lesion_growth")
    mask = np.zeros((6, 6, 6), bool)
    mask[1, 1, 1] = True
    zscore = np.full(mask.shape, 9.0)
    probability = np.zeros(mask.shape)
    assert growth.grow_lesions(mask, zscore, probability, None) is mask
    assert growth.grow_lesions(mask, zscore, probability, (2.0, 0.0)).all()  # all connected
    assert growth.grow_lesions(mask, zscore, probability, (2.0, 0.01)).sum() == 1  # floor
    with pytest.raises(ValueError, match="at least 2 subjects, got 1"):
        growth.leave_one_out({("a", "flair"): {}})


def test_roughness_cost_covers_no_smoothing_some_and_every_sigma(bench, capsys):
    cost = bench("roughness_cost")
    rows = cost.main(["--shape", "40", "48", "40", "--repeats", "1"])
    sigmas = [row["sigma_mm"] for row in rows]
    assert sigmas[0] == 0 and 0 < sigmas[1] < 1.5 and sigmas[2] == 1.5
    assert rows[0]["r"] < cost.TARGET < rows[1]["r"] < rows[2]["r"]
    assert all(_finite(row["step_s"]) for row in rows)
    assert "| very rough |" in capsys.readouterr().out
    assert "at least 16 voxels" in _usage_error(capsys, cost.main, ["--shape", "8", "8", "8"])
    assert "at least 1, got 0" in _usage_error(capsys, cost.main, ["--repeats", "0"])


CPUINFO_SAMPLE = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse avx avx2 fma
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse avx avx2 fma avx512f
"""


def test_cpu_info_names_the_first_model_and_its_widest_vectors(bench):
    cpu_info = bench("cpu_info")
    model, flags = cpu_info.parse_cpuinfo(CPUINFO_SAMPLE)
    assert model == "AMD EPYC 7B13"
    assert "avx2" in flags and "avx512f" not in flags  # the first processor's flags
    assert cpu_info.describe(model, flags, 2) == "AMD EPYC 7B13, 2 cores, AVX2"
    assert cpu_info.describe("X", {"avx512f", "avx2", "amx_tile"}, None) == (
        "X, AMX + AVX-512 + AVX2"
    )
    assert cpu_info.parse_cpuinfo("") == (None, set())
    assert cpu_info.describe(None, set(), 4).endswith("4 cores")


def test_cpu_description_reads_cpuinfo_and_falls_back_without_it(bench, monkeypatch, tmp_path):
    cpu_info = bench("cpu_info")
    monkeypatch.setattr(cpu_info.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    fake = tmp_path / "cpuinfo"
    fake.write_text(CPUINFO_SAMPLE)
    monkeypatch.setattr(cpu_info, "CPUINFO", fake)
    assert cpu_info.cpu_description() == "AMD EPYC 7B13, 2 cores, AVX2"
    monkeypatch.setattr(cpu_info, "CPUINFO", tmp_path / "no-cpuinfo")
    monkeypatch.setattr(cpu_info.platform, "processor", lambda: "")
    monkeypatch.setattr(cpu_info.platform, "machine", lambda: "x86_64")
    assert cpu_info.cpu_description() == "x86_64, 2 cores"  # platform's name, no extensions


def test_error_structure_basis_and_bands(bench, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS / "results" / "qsm-chain"))
    structure = bench("error_structure")
    mask = np.zeros((5, 6, 7), dtype=bool)
    mask[1:4, 1:5, 2:6] = True
    for degree, terms in ((1, 4), (2, 10), (3, 20)):
        assert structure.polynomial_basis(mask.shape, mask, degree).shape == (mask.sum(), terms)
    rng = np.random.default_rng(0)
    truth = rng.normal(size=mask.shape)
    # an error equal to the truth holds all of its energy, split over the bands
    assert sum(structure.band_energies(truth, truth)) == pytest.approx(100.0)
    basis = structure.polynomial_basis(mask.shape, mask, 1)
    plane = basis @ np.array([1.0, 2.0, -1.0, 0.5])
    assert np.allclose(structure.without_fit(plane, plane, basis), 0.0, atol=1e-10)


def test_qsm_chain_scripts_share_their_subject_arguments(bench, monkeypatch, capsys):
    import argparse

    monkeypatch.syspath_prepend(str(BENCHMARKS / "results" / "qsm-chain"))
    subject_args = bench("subject_args")

    def parse(*argv, **options):
        parser = argparse.ArgumentParser(prog="script")
        subject_args.add_subject_arguments(parser, **options)
        return subject_args.subject_params(parser, parser.parse_args(list(argv)))

    assert parse("--snr", "200", "400").snr == (200.0, 400.0)
    assert parse().snr == subject_args.GREParams().snr  # the simulator's default noise
    with pytest.raises(SystemExit):
        parse("--snr", "400", "200")
    assert "--snr: expected 0 < LO <= HI, got [400.0, 200.0]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--seeds", "-1")
    assert "--seeds: expected non-negative integers, got [-1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(snr_required=True)
    assert "required: --snr" in capsys.readouterr().err


def test_size_detection_counts_the_reference_lesions_a_map_reaches(
    bench, monkeypatch, tmp_path, capsys
):
    import nibabel as nib

    monkeypatch.syspath_prepend(str(BENCHMARKS / "results" / "ms-loo19"))
    sizes = bench("size_detection")
    ref = np.zeros((30, 30, 30), dtype=bool)
    ref[2:4, 2:4, 2:4] = True  # 8 voxels: found at 0.6
    ref[10:13, 10:13, 10:12] = True  # 18 voxels: missed
    ref[20:25, 20:25, 20:25] = True  # 125 voxels: found at 0.99
    ref[28, 28, 28] = True  # 1 voxel: below the 3-voxel floor, never counted
    prob = np.zeros(ref.shape, dtype=np.float32)
    prob[3, 3, 3], prob[22, 22, 22], prob[28, 28, 28] = 0.6, 0.99, 1.0
    data, maps = tmp_path / "data", tmp_path / "maps"
    (data / "p1").mkdir(parents=True)
    (maps / "p1-flair").mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(ref.astype(np.uint8), np.eye(4)), data / "p1" / "consensus_lesions.nii.gz"
    )
    nib.save(nib.Nifti1Image(prob, np.eye(4)), maps / "p1-flair" / "lesion_probability.nii.gz")
    out = tmp_path / "table.md"
    argv = ["--data", str(data), "--maps", str(maps), "--patients", "p1", "--out", str(out)]
    assert sizes.main(argv) == 0
    assert (
        "| maps | flair | p1 | 1 / 0 of 1 | 0 / 0 of 1 | 0 / 0 of 0 | 1 / 1 of 1 |"
        in out.read_text()
    )
    with pytest.raises(SystemExit):
        sizes.main([*argv[:-2], "--modes", "t1-flair"])  # no such map: a usage error
    assert "expected a probability map at" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sizes.main([*argv, "--reference-name", "lesion_mask.nii.gz"])  # a simulated layout
    assert "expected a reference lesion mask at" in capsys.readouterr().err


def test_inserted_lesions_counts_what_a_model_finds_of_the_same_lesions(
    bench, tmp_path, capsys, write_white_matter_patient
):
    import torch

    from napari_fanet.models import build_model, save_checkpoint

    inserted = bench("inserted_lesions")
    for seed, name in enumerate(("p1", "p2")):
        write_white_matter_patient(tmp_path / "data" / name, seed)
    torch.manual_seed(0)
    model = tmp_path / "tiny.pt"
    network = build_model("unet-seg", features=(8, 8, 8, 8, 16))
    save_checkpoint(model, network, extra={"voxel_size": [1.0] * 3})
    out = tmp_path / "table.md"
    argv = ["--data", str(tmp_path / "data"), "--models", str(model), str(model)]
    argv += ["--modes", "t1-t2-flair", "--count", "4", "--out", str(out)]
    assert inserted.main(argv) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| tiny")]
    assert len(rows) == 6  # two models x (two subjects + all)
    assert rows[:3] == rows[3:]  # the same lesions, the same network: the same counts
    totals = [int(cell.split(" of ")[1]) for cell in rows[2].strip("| ").split(" | ")[3:]]
    assert 1 <= sum(totals) <= 8  # at most 4 lesions per subject, all counted
    bad = [
        (["--severity", "1.5"], "--severity: expected a value in [0, 1], got 1.5"),
        (["--count", "0"], "--count: expected an integer >= 1, got 0"),
        (["--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
    ]
    for extra, message in bad:
        assert message in _usage_error(capsys, inserted.main, [*argv, *extra])
    missing = ["--data", str(tmp_path / "nowhere"), "--models", str(model)]
    assert "nowhere" in _usage_error(capsys, inserted.main, missing)


def test_small_lesion_contrast_measures_lesions_over_the_brain_median(
    bench, monkeypatch, tmp_path, capsys
):
    import nibabel as nib

    monkeypatch.syspath_prepend(str(BENCHMARKS / "results" / "ms-loo19"))
    contrast = bench("small_lesion_contrast")
    flair = np.ones((20, 20, 20), dtype=np.float32)
    lesions = np.zeros(flair.shape, dtype=bool)
    lesions[2:4, 2:4, 2:4] = True  # 8 voxels at 1.5, one of them at 2
    flair[lesions] = 1.5
    flair[2, 2, 2] = 2.0
    brain = np.ones(flair.shape, dtype=bool)
    rows = contrast.lesion_brightness(flair, lesions, brain)
    assert rows[3, 10] == (1, 2.0, pytest.approx((7 * 1.5 + 2.0) / 8))
    assert rows[10, 30][0] == 0 and np.isnan(rows[10, 30][1])
    with pytest.raises(ValueError, match="non-empty brain mask of one shape"):
        contrast.lesion_brightness(flair, lesions, np.zeros_like(brain))
    data, sims = tmp_path / "data", tmp_path / "sims"
    for folder, names in (
        (data / "p1", {"flair": flair, "consensus_lesions": lesions}),
        (sims / "sub-0000", {"flair": flair, "lesion_mask": lesions, "brain_mask": brain}),
    ):
        folder.mkdir(parents=True)
        for name, array in names.items():
            image = nib.Nifti1Image(array.astype(np.float32), np.eye(4))
            nib.save(image, folder / f"{name}.nii.gz")
    argv = ["--data", str(data), "--sims", str(sims), "--patients", "p1"]
    assert contrast.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| p1 | 1: 2.00 / 1.56 | 0: nan / nan |" in printed
    assert "| sims (1 subjects) | 1: 2.00 / 1.56 |" in printed
    with pytest.raises(SystemExit):
        contrast.main(["--data", str(data), "--sims", str(tmp_path / "none"), "--patients", "p1"])
    assert "expected simulated subjects sub-* in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        contrast.main(["--data", str(data), "--sims", str(sims)])  # no patient07 here
    assert "expected a NIfTI file at" in capsys.readouterr().err


def _edge_case(root, maps, name, rim_lesion):
    """A 1 mm box brain with a deep reference lesion that the map finds and, with
    ``rim_lesion``, a bright false lesion in the brain's outermost layer that the map finds
    too."""
    affine = np.eye(4)
    flair = np.zeros((24, 24, 24), np.float32)
    flair[2:22, 2:22, 2:22] = 1.0
    lesions = np.zeros(flair.shape, np.uint8)
    lesions[10:13, 10:13, 10:13] = 1
    probability = np.where(lesions > 0, 0.99, 0.01).astype(np.float32)
    if rim_lesion:
        probability[2, 8:12, 8:12] = 0.99  # 16 voxels, each 1 mm from outside the brain
    _write_map_case(root / name, maps / f"{name}-flair", affine, flair, lesions, probability)


def test_ms_edge_rule_drops_the_rim_lesion_and_keeps_the_deep_one(bench, tmp_path, capsys):
    edge = bench("ms_edge_rule")
    data, maps = tmp_path / "data", tmp_path / "maps"
    _edge_case(data, maps, "a", rim_lesion=True)
    _edge_case(data, maps, "b", rim_lesion=False)
    out = tmp_path / "edge.json"
    argv = ["--data", str(data), "--maps", str(maps), "--modes", "flair"]
    results = edge.main([*argv, "--json", str(out)])
    assert json.loads(out.read_text()) == results
    a, b = results["flair"]["a"], results["flair"]["b"]
    assert (a["dropped_true"], a["dropped_false"]) == (0, 1)
    assert a["without"]["lppv"] == pytest.approx(0.5) and a["with"]["lppv"] == 1.0
    assert a["without"]["dice"] == pytest.approx(2 * 27 / (27 + 43)) and a["with"]["dice"] == 1
    assert b["with"] == b["without"] and (b["dropped_true"], b["dropped_false"]) == (0, 0)
    assert 9 < a["reference_depth_min_mm"] < 11 and a["reference_below"] == 0
    printed = capsys.readouterr().out
    assert "| a | 0.771 -> 1.000 | 1.000 -> 1.000 | 0.500 -> 1.000 |" in printed
    assert "| **mean of 2** |" in printed and "less than 2 mm inside the brain mask" in printed
    # a rule deeper than the reference lesion drops it, and says so
    deep = edge.main([*argv, "--edge", "12"])["flair"]["a"]
    assert deep["dropped_true"] == 1 and deep["reference_below"] == 1


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_ms_edge_rule_refuses_a_bad_edge(bench, tmp_path, capsys, value):
    edge = bench("ms_edge_rule")
    argv = ["--data", str(tmp_path), "--maps", str(tmp_path), f"--edge={value}"]
    assert f"--edge: expected a number of mm > 0, got {float(value)}" in _usage_error(
        capsys, edge.main, argv
    )


def _spots_case(root, maps, lesion_probability, spot_probability):
    """A 1 mm brain with white matter (T1 bright), grey matter and a ventricle; two small
    FLAIR-bright lesions (labelled) and two equally bright spots (not labelled) deep in the
    white matter, the map giving each kind one probability."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    shape = (40, 40, 40)
    brain = np.zeros(shape, bool)
    brain[4:36, 4:36, 4:36] = True
    t1 = np.where(brain, 0.5, 0.0)
    t1[7:33, 7:33, 7:33] = 1.0  # white matter inside a 3-voxel grey-matter shell
    t1[18:22, 18:22, 18:22] = 0.2  # a ventricle
    flair = np.where(t1 == 1.0, 1.0, 1.3) * brain
    flair[18:22, 18:22, 18:22] = 0.2
    flair += 0.05 * rng.standard_normal(shape) * brain
    lesions = np.zeros(shape, np.uint8)
    probability = np.full(shape, 0.001, np.float32)
    for corner in ((11, 11, 11), (26, 26, 26)):
        cube = tuple(slice(c, c + 2) for c in corner)
        lesions[cube] = 1
        flair[cube] = 2.0
        probability[cube] = lesion_probability
    for corner in ((11, 26, 11), (26, 11, 26)):
        cube = tuple(slice(c, c + 2) for c in corner)
        flair[cube] = 2.0
        probability[cube] = spot_probability
    affine = np.eye(4)
    _write_map_case(root, maps / f"{root.name}-flair", affine, flair, lesions, probability)
    nib.save(nib.Nifti1Image(t1.astype(np.float32), affine), root / "t1.nii.gz")


@pytest.mark.parametrize(("lesion_p", "spot_p", "expected"), [(0.9, 0.1, 1.0), (0.1, 0.9, 0.0)])
def test_small_lesion_separation_ranks_lesions_against_spots(
    bench, tmp_path, capsys, lesion_p, spot_p, expected
):
    separation = bench("small_lesion_separation")
    data, maps = tmp_path / "data", tmp_path / "maps"
    _spots_case(data / "a", maps, lesion_p, spot_p)
    out = tmp_path / "sep.json"
    argv = ["--data", str(data), "--maps", str(maps), "--modes", "flair", "--contrast", "3"]
    row = separation.main([*argv, "--json", str(out)])["flair"]["a"]
    assert json.loads(out.read_text())["flair"]["a"]["auc"] == row["auc"] == expected
    assert row["lesions"]["count"] == row["spots"]["count"] == 2
    assert row["lesions"]["reach_0.5"] == (2 if lesion_p > 0.5 else 0)
    assert row["lesions"]["median"] == pytest.approx(lesion_p)
    assert "| **pooled** |" in capsys.readouterr().out


def test_small_lesion_separation_auc_and_usage_errors(bench, tmp_path, capsys):
    separation = bench("small_lesion_separation")
    assert separation.auc(np.array([0.2, 0.8]), np.array([0.5])) == 0.5
    assert separation.auc(np.array([0.5]), np.array([0.5])) == 0.5
    assert separation.auc(np.array([]), np.array([0.5])) is None
    base = ["--data", str(tmp_path), "--maps", str(tmp_path)]
    message = "--sizes: expected 1 <= LO <= HI, got 5 3"
    assert message in _usage_error(capsys, separation.main, [*base, "--sizes", "5", "3"])
    message = "--contrast: expected a number > 0, got -1.0"
    assert message in _usage_error(capsys, separation.main, [*base, "--contrast", "-1"])


def test_small_lesion_separation_names_a_subject_without_deep_white_matter(
    bench, tmp_path, capsys
):
    """A brain too thin to hold white matter 4 mm deep is a usage error, not a traceback."""
    separation = bench("small_lesion_separation")
    data, maps = tmp_path / "data", tmp_path / "maps"
    flair = np.zeros((20, 20, 20), np.float32)
    flair[8:12, 2:18, 2:18] = 1.0 + 0.1 * np.random.default_rng(0).random((4, 16, 16))
    lesions = np.zeros(flair.shape, np.uint8)
    lesions[9:11, 9:11, 9:11] = 1
    _write_map_case(data / "thin", maps / "thin-flair", np.eye(4), flair, lesions, flair * 0)
    argv = ["--data", str(data), "--maps", str(maps), "--modes", "flair"]
    err = _usage_error(capsys, separation.main, argv)
    assert "--data: thin (flair): " in err and "wm" in err.lower()


def _ensemble_case(data, maps, name, probability_scale, modes=("flair",)):
    """A 1 mm box brain with one deep reference lesion; each mode's map gives it
    ``0.99 * probability_scale`` (the edge rule keeps it: it lies 8 mm deep)."""
    import nibabel as nib

    affine = np.eye(4)
    flair = np.zeros((24, 24, 24), np.float32)
    flair[2:22, 2:22, 2:22] = 1.0
    lesions = np.zeros(flair.shape, np.uint8)
    lesions[10:13, 10:13, 10:13] = 1
    probability = np.where(lesions > 0, 0.99 * probability_scale, 0.01).astype(np.float32)
    _write_map_case(data / name, maps / f"{name}-{modes[0]}", affine, flair, lesions, probability)
    t1 = np.where(flair > 0, 0.8, 0.0).astype(np.float32)
    nib.save(nib.Nifti1Image(t1, affine), data / name / "t1.nii.gz")
    for mode in modes[1:]:
        (maps / f"{name}-{mode}").mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(probability, affine),
            maps / f"{name}-{mode}" / "lesion_probability.nii.gz",
        )


def test_ms_map_ensemble_averages_folders_and_modes(bench, tmp_path, capsys):
    ensemble = bench("ms_map_ensemble")
    data, maps, member = tmp_path / "data", tmp_path / "maps", tmp_path / "member"
    _ensemble_case(data, maps, "a", 1.0, ("flair", "t1-flair"))
    _ensemble_case(tmp_path / "unused", member, "a", 0.0, ("flair", "t1-flair"))
    out = tmp_path / "ens.json"
    argv = ["--data", str(data), "--maps", str(maps), "--modes", "flair"]
    # the member misses the lesion: the mean (0.495) is below the seed, so nothing is kept
    results = ensemble.main([*argv, "--members", str(member), "--json", str(out)])
    assert json.loads(out.read_text()) == results
    row = results["flair"]["a"]
    assert row["single"]["dice"] == 1.0 and row["single"]["lf1"] == 1.0
    assert row["ensemble"]["dice"] == 0.0 and row["ensemble"]["ltpr"] == 0.0
    printed = capsys.readouterr().out
    assert "ensemble of 2 maps (maps/flair, member/flair)" in printed
    assert "| a | 1.000 -> 0.000 | 1.000 -> 0.000 |" in printed
    # FLAIR's map added to T1 + FLAIR's, both finding the lesion: unchanged
    argv_t1 = ["--data", str(data), "--maps", str(maps), "--modes", "t1-flair"]
    row = ensemble.main([*argv_t1, "--add-modes", "flair"])["t1-flair"]["a"]
    assert row["single"] == row["ensemble"] and row["ensemble"]["dice"] == 1.0
    assert "(maps/t1-flair, maps/flair)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "expected --members or --add-modes: an ensemble of one map is the map"),
        (["--add-modes", "t1-flair"], "--add-modes: t1-flair needs t1, which input mode flair"),
        (["--add-modes", "flair"], "--add-modes: every added mode is the target itself"),
        (["--modes", "t3", "--add-modes", "flair"], "--modes: unknown input modes ['t3']"),
    ],
)
def test_ms_map_ensemble_refuses_what_it_cannot_average(bench, tmp_path, capsys, extra, message):
    ensemble = bench("ms_map_ensemble")
    argv = ["--data", str(tmp_path), "--maps", str(tmp_path), "--modes", "flair", *extra]
    assert message in _usage_error(capsys, ensemble.main, argv)


def test_ms_map_ensemble_names_a_missing_member_map(bench, tmp_path, capsys):
    ensemble = bench("ms_map_ensemble")
    data, maps = tmp_path / "data", tmp_path / "maps"
    _ensemble_case(data, maps, "a", 1.0)
    argv = ["--data", str(data), "--maps", str(maps), "--modes", "flair"]
    err = _usage_error(capsys, ensemble.main, [*argv, "--members", str(tmp_path / "none")])
    assert f"--maps: expected {tmp_path / 'none' / 'a-flair' / 'lesion_probability.nii.gz'}" in err


def _world_image(shape=(12, 14, 10)):
    import nibabel as nib

    data = np.zeros(shape, np.float32)
    data[3:9, 4:11, 2:8] = np.random.default_rng(0).uniform(100, 500, (6, 7, 6))
    affine = np.array([[-1.0, 0, 0, 10], [0, 1.0, 0, -20], [0, 0, 1.5, 5], [0, 0, 0, 1]])
    return nib.Nifti1Image(data, affine)


def test_segment_input_variants_keep_the_world_image(bench):
    from nibabel.processing import resample_from_to

    variants = bench("segment_input_variants")
    image = _world_image()
    data = np.asarray(image.dataobj)
    for copy in (variants.reoriented(image), variants.padded(image, 3)):
        assert copy.shape != image.shape
        back = np.asarray(resample_from_to(copy, image, order=0).dataobj)
        np.testing.assert_array_equal(back, data)
    stored = variants.as_int16(image)
    assert stored.get_data_dtype() == np.int16
    values = np.asarray(stored.dataobj, np.float64)
    assert np.percentile(np.abs(values[values != 0]), 99) == pytest.approx(1000, abs=1)
    noisy = np.asarray(variants.with_background_noise(image, 0.03).dataobj)
    assert (noisy[data == 0] > 0).all() and (noisy >= data).all()
    copies = variants.variants(image)
    assert copies["0.8 mm, cubic"][1] is None
    fine, mask = copies["0.8 mm, cubic, with a brain mask"]
    assert mask.shape == fine.shape and set(np.unique(np.asarray(mask.dataobj))) == {0, 1}


def test_segment_input_variants_table_and_usage(bench, tmp_path, capsys):
    variants = bench("segment_input_variants")
    rows = [
        {"copy": "as given", "shape": [4, 5, 6], "dice_reference": 0.8, "dice_as_given": 1.0,
         "lesion_ml": 10.09, "reference_ml": 8.2},
        {"copy": "background noise", "shape": [4, 5, 6], "refused": "the FLAIR does not look"},
    ]  # fmt: skip
    text = variants.table(rows, "patient26")
    assert "| as given | 4 x 5 x 6 | 0.800 | 1.000 | 10.09 (8.20) | |" in text
    assert "| background noise | 4 x 5 x 6 | | | | the FLAIR does not look |" in text
    assert variants.dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    err = _usage_error(capsys, variants.main, ["--subject", str(tmp_path), "--work", "w"])
    assert f"--subject must hold flair.nii.gz; {tmp_path / 'flair.nii.gz'} does not exist" in err
    subject = tmp_path / "s"
    subject.mkdir()
    for name in ("flair", "consensus_lesions"):
        (subject / f"{name}.nii.gz").write_bytes(b"")
    argv = ["--subject", str(subject), "--work", "w", "--only", "thin slices"]
    err = _usage_error(capsys, variants.main, argv)
    assert "--only takes copies among ['as given', 'reoriented'" in err
    assert "got ['thin slices']" in err


def test_segment_input_variants_score_on_the_copy_and_original_grids(bench, tmp_path):
    import nibabel as nib

    variants = bench("segment_input_variants")
    flair = _world_image()
    reference = nib.Nifti1Image((np.asarray(flair.dataobj) > 300).astype(np.uint8), flair.affine)
    copy = variants.padded(reference, 2)  # the reference itself, on a padded grid
    nib.save(copy, tmp_path / "mask.nii.gz")
    scores, on_original = variants.score(tmp_path / "mask.nii.gz", flair, reference, None)
    assert scores["dice_reference"] == 1.0 and scores["dice_as_given"] == 1.0
    expected_ml = float(np.asarray(reference.dataobj).sum()) * 1.5 / 1000
    assert scores["lesion_ml"] == pytest.approx(expected_ml)
    np.testing.assert_array_equal(on_original, np.asarray(reference.dataobj) > 0)
    empty = np.zeros(flair.shape, bool)
    scores, _ = variants.score(tmp_path / "mask.nii.gz", flair, reference, empty)
    assert scores["dice_as_given"] == 0


def test_segment_input_variants_refuses_a_missing_model(bench, tmp_path, capsys):
    variants = bench("segment_input_variants")
    subject = tmp_path / "patient01"
    subject.mkdir()
    for name in ("flair", "consensus_lesions"):
        (subject / f"{name}.nii.gz").write_bytes(b"")
    argv = ["--subject", str(subject), "--work", "w", "--model", str(tmp_path / "m-{subject}.pt")]
    err = _usage_error(capsys, variants.main, argv)
    assert f"--model {tmp_path / 'm-patient01.pt'} does not exist" in err


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("pad_subjects.py", ["nowhere", "out", "16"], "usage: pad_subjects.py SOURCE_FOLDER"),
        ("pad_subjects.py", [".", "out", "x"], "WIDTH be a whole number"),
        ("compare.py", ["a.md"], "usage: compare.py FIRST.md SECOND.md"),
    ],
)
def test_window_alignment_scripts_say_what_they_expect(tmp_path, script, args, message):
    import subprocess
    import sys

    path = BENCHMARKS / "results" / "window-alignment" / script
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(SRC), str(BENCHMARKS)))}
    done = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr


def test_sample_case_windows_says_what_it_expects(tmp_path):
    import subprocess
    import sys

    path = BENCHMARKS / "results" / "windows-on-the-brain" / "sample_case_windows.py"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, str(path), "extra"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "usage: sample_case_windows.py (no arguments; needs" in done.stderr


@pytest.mark.parametrize("args", [[], ["x", "evaluate"], ["12", "segment"]])
def test_margin_shift_says_what_it_expects(tmp_path, args):
    import subprocess
    import sys

    path = BENCHMARKS / "results" / "windows-on-the-brain" / "margin_shift.py"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "usage: margin_shift.py MARGIN evaluate ARGS..." in done.stderr


def test_margin_shift_moves_the_windows_and_nothing_else(tmp_path, monkeypatch):
    import importlib.util

    import torch

    from napari_fanet.engine import averaged_prediction, predict

    path = BENCHMARKS / "results" / "windows-on-the-brain" / "margin_shift.py"
    spec = importlib.util.spec_from_file_location("margin_shift", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = {}

    def fake_main(argv):
        image = np.ones((1, 4, 4, 4), np.float32)
        crop, _ = predict.crop_to_brain(image, np.ones((4, 4, 4), bool))
        seen["shape"] = crop.shape
        seen["inner"] = predict.without_margin(torch.from_numpy(crop)).shape
        seen["argv"] = argv
        return 0

    monkeypatch.setattr(module, "cli_main", fake_main)
    assert module.main(["12", "evaluate", "--task", "ms"]) == 0
    assert seen == {
        "shape": (1, 28, 28, 28),
        "inner": (1, 4, 4, 4),
        "argv": ["evaluate", "--task", "ms"],
    }
    assert predict.crop_to_brain is averaged_prediction.crop_to_brain  # restored afterwards


def test_window_alignment_compare_pairs_rows(tmp_path):
    import subprocess
    import sys

    def report(path, dice):
        path.write_text(
            "### Input mode: flair\n\n| subject | method | Dice | LTPR | LPPV | L-F1 |\n"
            f"| patient07 | f (LOO) | {dice} | 0.5 | 0.5 | 0.400 |\n"
            "| patient07 | FLAIR threshold (LOO) (z > 2) | 0.1 | 0.5 | 0.5 | 0.1 |\n"
        )

    report(tmp_path / "a.md", 0.300)
    report(tmp_path / "b.md", 0.350)
    path = BENCHMARKS / "results" / "window-alignment" / "compare.py"
    done = subprocess.run(
        [sys.executable, str(path), "a.md", "b.md"], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "| flair | patient07 | 0.300 / 0.350 (+0.050) | 0.400 / 0.400 (+0.000) |" in done.stdout
    assert "threshold" not in done.stdout
