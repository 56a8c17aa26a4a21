"""``napari-fanet demo`` on the shipped sample cases, end to end through ``cli.main``.

The segmentation models are the shipped weights; the QSM model is a throwaway checkpoint
trained here for 5 steps (its numbers are meaningless; only the plumbing is checked). The
baseline rows are checked against ``sample_data/baselines.json``, which
``scripts/make_sample_data.py`` measured independently of the demo.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import struct

import nibabel as nib
import numpy as np
import pytest

from napari_fanet.cli import main
from napari_fanet.engine.inference import WindowSettings
from napari_fanet.engine.predict import shipped_weights
from napari_fanet.evaluation import demo
from napari_fanet.metrics import segmentation_error_labels

#: Packaging, benchmark smoke runs, DDP and the demo: run by default, deselect with
#: ``-m "not integration"``.
pytestmark = pytest.mark.integration

DATA = demo.repository_sample_data()
SEG_MODELS = ("fanet-seg", "unet-seg")
MS_KINDS = ("lesion_probability", "lesion_mask", "error_labels")
MS_FILES = ["flair_threshold_mask"] + [f"{m}_{kind}" for m in SEG_MODELS for kind in MS_KINDS]
QSM_FILES = ["fanet-qsm_chi", "fanet-qsm_abs_error", "tkd_chi", "cfl2_chi"]
CPU = WindowSettings(roi_size=(64, 64, 64), overlap=0.25, device="cpu")

needs_data = pytest.mark.skipif(DATA is None, reason="needs the repository's sample_data/")
needs_weights = pytest.mark.skipif(
    not set(SEG_MODELS) <= set(shipped_weights()), reason="needs the shipped segmentation weights"
)


def run(argv):
    """``main(argv)``; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_qsm(tmp_path_factory):
    """A 5-step fanet-qsm checkpoint (never written into the package's weights folder)."""
    out = tmp_path_factory.mktemp("tiny_qsm")
    argv = ["train", "--model", "fanet-qsm", "--simulate", "1", "--steps", "5",
            "--patch-size", "16", "16", "16", "--features", "8", "8", "8", "8", "16",
            "--no-augment", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert run(argv)[0] == 0
    return out / "last.pt"


@pytest.fixture(scope="module")
def demo_run(tiny_qsm, tmp_path_factory):
    if DATA is None or not set(SEG_MODELS) <= set(shipped_weights()):
        pytest.skip("needs the repository's sample_data/ and the shipped segmentation weights")
    out = tmp_path_factory.mktemp("demo")
    argv = ["demo", "--out", str(out), "--device", "cpu", "--models", *SEG_MODELS, str(tiny_qsm)]
    rc, stdout, stderr = run(argv)
    return rc, out, stdout, stderr


def test_demo_exit_status_and_files(demo_run):
    rc, out, stdout, stderr = demo_run
    assert rc == 0, stderr
    expected = [f"ms/{f}.nii.gz" for f in MS_FILES] + [f"qsm/{f}.nii.gz" for f in QSM_FILES]
    expected += ["figures/ms.png", "figures/qsm.png", "metrics.json", "metrics.md"]
    for name in expected:
        assert (out / name).is_file(), name
        assert str(out / name) in stdout
    assert sorted(json.loads((out / "metrics.json").read_text())["files"]) == sorted(expected)
    assert not list(out.rglob(".*.tmp*")), "temporary files left behind"
    assert "ms: segmenting with fanet-seg" in stderr and "qsm: reconstructing" in stderr


def test_demo_nifti_affines_and_values(demo_run, default_lesion_mask):
    _, out, _, _ = demo_run
    sources = {"ms": DATA / "ms" / "sub-0000" / "flair.nii.gz"}
    sources["qsm"] = DATA / "qsm" / "sub-0000" / "local_field.nii.gz"
    for task, files in (("ms", MS_FILES), ("qsm", QSM_FILES)):
        src = nib.load(sources[task])
        for name in files:
            img = nib.load(out / task / f"{name}.nii.gz")
            assert img.shape == src.shape, name
            np.testing.assert_allclose(img.affine, src.affine, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(img.header.get_sform(), src.affine, atol=1e-6)
    gt = nib.load(DATA / "ms" / "sub-0000" / "lesion_mask.nii.gz").get_fdata() > 0.5
    for m in SEG_MODELS:
        prob = nib.load(out / "ms" / f"{m}_lesion_probability.nii.gz").get_fdata()
        mask = np.asarray(nib.load(out / "ms" / f"{m}_lesion_mask.nii.gz").dataobj)
        labels = np.asarray(nib.load(out / "ms" / f"{m}_error_labels.nii.gz").dataobj)
        assert mask.dtype == labels.dtype == np.uint8
        assert 0 <= prob.min() and prob.max() <= 1
        zooms = nib.load(sources["ms"]).header.get_zooms()[:3]
        brain = nib.load(DATA / "ms" / "sub-0000" / "brain_mask.nii.gz").get_fdata() > 0.5
        np.testing.assert_array_equal(mask, default_lesion_mask(prob, zooms, brain))
        np.testing.assert_array_equal(labels, segmentation_error_labels(mask, gt))
    ref = nib.load(DATA / "qsm" / "sub-0000" / "chi.nii.gz").get_fdata()
    brain = nib.load(DATA / "qsm" / "sub-0000" / "brain_mask.nii.gz").get_fdata() > 0.5
    chi = nib.load(out / "qsm" / "fanet-qsm_chi.nii.gz").get_fdata()
    err = nib.load(out / "qsm" / "fanet-qsm_abs_error.nii.gz").get_fdata()
    np.testing.assert_allclose(err, np.abs(chi - ref) * brain, atol=1e-6)


def test_demo_metrics_json(demo_run):
    _, out, _, _ = demo_run
    summary = json.loads((out / "metrics.json").read_text())
    ms, qsm = summary["ms"], summary["qsm"]
    assert [r["method"] for r in ms["rows"]] == [*SEG_MODELS, "flair-threshold"]
    assert [r["method"] for r in qsm["rows"]] == ["fanet-qsm", "tkd", "cfl2"]
    assert ms["note"] is None and qsm["note"] is None
    assert ms["n_gt_lesions"] == 10
    for rows, columns in ((ms["rows"], demo.MS_COLUMNS), (qsm["rows"], demo.QSM_COLUMNS)):
        for row in rows:
            for key, _, _ in columns:
                assert math.isfinite(row[key]), (row["method"], key)
    assert {k: p["value"] for k, p in summary["parameters"].items()} == demo.BUILTIN_PARAMETERS
    assert all("baselines.json" in p["source"] for p in summary["parameters"].values())
    assert summary["models"][2]["shipped"] is False
    assert summary["settings"]["tile"] == [64, 64, 64] and summary["seconds_total"] > 0
    # the conventions state the mask rule the rows were scored with, not a plain threshold
    rule = "Model masks: 26-connected lesions of probability > 0.5, holding a voxel above 0.95"
    assert rule in ms["conventions"]


def test_demo_baselines_reproduce_baselines_json(demo_run):
    _, out, _, _ = demo_run
    summary = json.loads((out / "metrics.json").read_text())
    expected = json.loads((DATA / "baselines.json").read_text())
    rows = {r["method"]: r for r in summary["ms"]["rows"] + summary["qsm"]["rows"]}
    for key in ("dice", "ltpr", "lppv", "lf1"):
        assert rows["flair-threshold"][key] == pytest.approx(
            expected["ms"]["sample"]["t1_wm"][key]
        )
    for method in ("tkd", "cfl2"):
        for key, value in expected["qsm"]["sample"][method].items():
            assert rows[method][key] == pytest.approx(value, rel=1e-5), (method, key)


def test_demo_markdown_and_stdout(demo_run):
    _, out, stdout, _ = demo_run
    text = (out / "metrics.md").read_text()
    needles = (
        "| fanet-seg |",
        "| FLAIR threshold (z = 3.25) |",
        "| TKD (threshold = 0.225) |",
        "| CFL2 (lambda = 0.00562) |",
        "fanet-qsm [last.pt]",
        "26-connected",
        "not demeaned",
        "XSIM",
        "validation seeds 10000-10004",
        "Total",
    )
    for needle in needles:
        assert needle in text, needle
    assert demo.tables_text(json.loads((out / "metrics.json").read_text())) in stdout


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_demo_figures(demo_run):
    from matplotlib.image import imread

    _, out, _, _ = demo_run
    for name, min_width in (("ms.png", 900), ("qsm.png", 700)):
        width, height = png_size(out / "figures" / name)
        assert width >= min_width and height >= 300, (name, width, height)
        pixels = imread(out / "figures" / name)
        assert pixels.shape[:2] == (height, width) and pixels[..., :3].std() > 0.1


# -- pieces (fast) --------------------------------------------------------------------------------


@needs_data
def test_builtin_parameters_match_baselines_json():
    params = demo.load_parameters(DATA / "baselines.json")
    assert {k: p["value"] for k, p in params.items()} == demo.BUILTIN_PARAMETERS
    assert "validation seed 10000" in params["tkd_threshold"]["source"]


def test_load_parameters_missing_and_malformed(tmp_path):
    params = demo.load_parameters(tmp_path / "baselines.json")
    assert {k: p["value"] for k, p in params.items()} == demo.BUILTIN_PARAMETERS
    assert all("built-in copy" in p["source"] for p in params.values())
    (tmp_path / "baselines.json").write_text(json.dumps({"ms": {}}))
    with pytest.raises(ValueError, match=r"expected the layout of sample_data/baselines\.json"):
        demo.load_parameters(tmp_path / "baselines.json")


def test_b0_directions():
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.0, 2.0, 3.0])  # anisotropic voxels
    world, array = demo.b0_directions({"b0_dir_world": [1.0, 0.0, 0.0]}, affine)
    np.testing.assert_allclose(world, [1, 0, 0])
    np.testing.assert_allclose(array, [0, -1, 0], atol=1e-12)  # world x is array axis -1
    world, array = demo.b0_directions({"b0_dir": [0.0, 0.0, 2.0]}, affine)
    np.testing.assert_allclose(world, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(array, [0, 0, 1], atol=1e-12)
    with pytest.raises(ValueError, match="expected 'b0_dir_world' or 'b0_dir'"):
        demo.b0_directions({}, affine)


@needs_data
def test_sample_meta_b0_directions_agree():
    meta = json.loads((DATA / "qsm" / "sub-0000" / "meta.json").read_text())
    affine = nib.load(DATA / "qsm" / "sub-0000" / "local_field.nii.gz").affine
    _, from_world = demo.b0_directions({"b0_dir_world": meta["b0_dir_world"]}, affine)
    np.testing.assert_allclose(from_world, meta["b0_dir"], atol=1e-6)


def test_resolve_models(tiny_qsm, tmp_path):
    copy = tmp_path / "copy.pt"
    shutil.copy(tiny_qsm, copy)
    models = demo.resolve_models([str(tiny_qsm), str(tiny_qsm), str(copy)])
    assert [m.key for m in models] == ["fanet-qsm", "fanet-qsm-2"]
    assert [m.label for m in models] == ["fanet-qsm [last.pt]", "fanet-qsm-2 [copy.pt]"]
    assert {m.task for m in models} == {"qsm"} and not any(m.shipped for m in models)
    with pytest.raises(FileNotFoundError, match="no checkpoint file nope"):
        demo.resolve_models(["nope"])


def test_prepare_output_errors(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        demo.prepare_output(file)
    with pytest.raises(OSError, match="cannot create output folder"):
        demo.prepare_output(file / "sub")
    assert demo.prepare_output(tmp_path / "new") == tmp_path / "new"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["figures", "ms", "qsm"]


def test_cli_demo_bad_out_and_bad_model(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    rc, _, stderr = run(["demo", "--out", str(file), "--device", "cpu"])
    assert rc == 1 and "napari-fanet demo: error: output" in stderr and "not a folder" in stderr
    rc, _, stderr = run(["demo", "--out", str(tmp_path / "o"), "--models", str(tmp_path / "x.pt")])
    assert rc == 1 and "no checkpoint file" in stderr
    assert not (tmp_path / "o").exists()  # refused before anything was created
    rc, _, stderr = run(["demo", "--out", str(tmp_path / "o"), "--data", str(tmp_path)])
    assert rc == 1 and "no ms/sub-0000 folder" in stderr


@needs_data
def test_failed_run_leaves_earlier_files_untouched(tiny_qsm, tmp_path, monkeypatch):
    (tmp_path / "metrics.json").write_text("earlier run")

    def broken(*args, **kwargs):
        raise ValueError("qsm failed")

    monkeypatch.setattr(demo, "run_qsm", broken)
    argv = ["demo", "--out", str(tmp_path), "--device", "cpu", "--models", str(tiny_qsm)]
    rc, _, stderr = run(argv)
    assert rc == 1 and "qsm failed" in stderr
    assert (tmp_path / "metrics.json").read_text() == "earlier run"
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "metrics.json"]


@needs_data
def test_tasks_without_models_run_the_baselines(tmp_path):
    lines = []
    params = demo.load_parameters(DATA / "baselines.json")
    ms = demo.run_ms(DATA / "ms" / "sub-0000", [], 3.25, CPU, lines.append)
    qsm = demo.run_qsm(DATA / "qsm" / "sub-0000", [], params, CPU, lines.append)
    assert [r["method"] for r in ms.rows] == ["flair-threshold"]
    assert [r["method"] for r in qsm.rows] == ["tkd", "cfl2"]
    assert "no segmentation model available" in ms.note and "no QSM model available" in qsm.note
    assert any("no QSM model available" in line for line in lines)
    assert set(qsm.volumes) == {"tkd_chi", "cfl2_chi"}
    table = demo.markdown_table(qsm.rows, demo.QSM_COLUMNS, qsm.note)
    assert "| *no QSM model available" in table and table.count("\n") == 4
    for figure, result in ((demo.figure_ms, ms), (demo.figure_qsm, qsm)):
        path = figure(tmp_path / f"{figure.__name__}.png", result)
        assert min(png_size(path)) >= 300


@pytest.mark.slow
@needs_data
def test_simulated_sample_data_is_identical_to_shipped(tmp_path):
    folder = demo.simulate_sample_data(tmp_path)
    for task, names in (("ms", ("t1", "t2", "flair", "lesion_mask", "brain_mask")),
                        ("qsm", ("local_field", "chi", "brain_mask"))):  # fmt: skip
        for name in names:
            new = nib.load(folder / task / "sub-0000" / f"{name}.nii.gz")
            old = nib.load(DATA / task / "sub-0000" / f"{name}.nii.gz")
            np.testing.assert_array_equal(np.asarray(new.dataobj), np.asarray(old.dataobj))
            np.testing.assert_allclose(new.affine, old.affine)
