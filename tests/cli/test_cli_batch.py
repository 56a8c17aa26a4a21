"""``napari-fanet segment/qsm --batch DIR`` and ``segment``'s ``lesions.csv``, end to end.

Tiny models are trained for two steps on 24 x 28 x 20 subjects (tests/conftest.py); what is
checked is the plumbing: one folder per subject, the summary CSV (against numbers computed here
from the written files), skipping, --overwrite, and that a broken subject fails alone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_fanet.cli import main

TINY = ["--features", "8", "8", "8", "8", "16", "--patch-size", "16", "16", "16"]
RUN = ["--device", "cpu", "--tile", "16", "16", "16", "--no-progress"]


def quietly(argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def train(data, out, model):
    argv = ["train", "--data", str(data), "--model", model, *TINY, "--steps", "1"]
    assert quietly([*argv, "--device", "cpu", "--out", str(out)]) == 0
    return out / "last.pt"


@pytest.fixture(scope="module")
def ms_root(tmp_path_factory, write_ms_subject):
    root = tmp_path_factory.mktemp("ms_batch")
    for i in range(2):
        write_ms_subject(root / f"s{i}", seed=i)
    return root


@pytest.fixture(scope="module")
def seg_model(ms_root, tmp_path_factory):
    return train(ms_root, tmp_path_factory.mktemp("seg_model"), "unet-seg")


@pytest.fixture(scope="module")
def qsm_root(tmp_path_factory, write_qsm_subject):
    root = tmp_path_factory.mktemp("qsm_batch")
    for i in range(2):
        write_qsm_subject(root / f"q{i}", seed=50 + i)
    return root


@pytest.fixture(scope="module")
def qsm_model(qsm_root, tmp_path_factory):
    return train(qsm_root, tmp_path_factory.mktemp("qsm_model"), "qsmnet")


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def count_lesions(mask_path, min_size=3):
    """Lesions of a written mask, labelled here with scipy (26-connectivity, >= 3 voxels)."""
    mask = np.asarray(nib.load(mask_path).dataobj) > 0
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= min_size).sum()), sizes[sizes >= min_size]


def test_segment_writes_a_lesion_table_matching_its_mask(seg_model, ms_root, tmp_path, capsys):
    case = ms_root / "s0"
    out = tmp_path / "out"
    argv = ["segment"]
    for m in ("t1", "t2", "flair"):
        argv += [f"--{m}", str(case / f"{m}.nii.gz")]
    flair = nib.load(case / "flair.nii.gz")
    chi = np.full(flair.shape, 0.04, dtype=np.float32)
    nib.save(nib.Nifti1Image(chi, flair.affine), tmp_path / "chi.nii.gz")
    argv += ["--chi", str(tmp_path / "chi.nii.gz")]
    argv += ["--model", str(seg_model), "--out", str(out), "--threshold", "0.3", *RUN]
    argv += ["--seed-threshold", "none", "--min-lesion-volume", "0"]  # keep every component
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = read_csv(out / "lesions.csv")
    n, sizes = count_lesions(out / "lesion_mask.nii.gz")
    assert n >= 1  # threshold 0.3: the barely trained model calls the lesion box (and more)
    assert summary["lesions"] == len(rows) == n
    assert sorted(int(r["n_voxels"]) for r in rows) == sorted(sizes.tolist())
    assert summary["lesion_volume_ml"] == pytest.approx(sizes.sum() * 64 / 1000, abs=1e-4)
    assert summary["files"]["lesions"] == str(out / "lesions.csv")
    header = (out / "lesions.csv").read_text().splitlines()[0].split(",")
    assert header[:7] == [
        "id",
        "volume_ml",
        "n_voxels",
        "centroid_x_mm",
        "centroid_y_mm",
        "centroid_z_mm",
        "location",
    ]
    assert header[7:] == [
        "max_probability",
        "mean_probability",
        "mean_chi_ppm",
        "rim_minus_core_chi_ppm",
    ]
    for row in rows:  # a uniform map: every lesion's mean is it, no rim contrast
        assert float(row["mean_chi_ppm"]) == pytest.approx(0.04)
        assert float(row["rim_minus_core_chi_ppm"]) == pytest.approx(0.0, abs=1e-7)


def test_segment_batch_folders_skip_overwrite_and_a_failing_subject(
    seg_model, ms_root, tmp_path, capsys
):
    data = tmp_path / "data"
    shutil.copytree(ms_root, data)
    broken = data / "s1" / "flair.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4), dtype=np.float32), np.eye(4)), broken)
    out = tmp_path / "out"
    argv = ["segment", "--batch", str(data), "--model", str(seg_model), "--out", str(out), *RUN]

    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "napari-fanet segment: s1 failed: FLAIR (flair.nii.gz): expected a 3D volume" in (
        captured.err
    )
    report = json.loads(captured.out)
    assert (report["done"], report["skipped"], report["failed"]) == (1, 0, 1)
    rows = {r["subject"]: r for r in read_csv(out / "segment_summary.csv")}
    assert rows["s0"]["status"] == "done" and rows["s0"]["error"] == ""
    n, sizes = count_lesions(out / "s0" / "lesion_mask.nii.gz")
    assert int(rows["s0"]["n_lesions"]) == n
    assert float(rows["s0"]["lesion_volume_ml"]) == pytest.approx(sizes.sum() * 0.064, abs=1e-4)
    assert rows["s1"]["status"] == "failed" and "expected a 3D volume" in rows["s1"]["error"]
    assert not (out / "s1").exists()  # all outputs or none

    # fixed: the finished subject is skipped (and still summarised), the other one runs
    shutil.copy(ms_root / "s1" / "flair.nii.gz", broken)
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["done"], report["skipped"], report["failed"]) == (1, 1, 0)
    rows = {r["subject"]: r for r in read_csv(out / "segment_summary.csv")}
    assert rows["s0"]["status"] == "skipped" and int(rows["s0"]["n_lesions"]) == n
    assert rows["s1"]["status"] == "done"

    assert main([*argv, "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 2


def test_segment_batch_reads_a_bids_dataset(seg_model, ms_root, tmp_path, capsys):
    anat = tmp_path / "bids" / "sub-01" / "ses-a" / "anat"
    anat.mkdir(parents=True)
    for name, suffix in (("flair", "FLAIR"), ("t1", "T1w"), ("t2", "T2w")):
        shutil.copy(ms_root / "s0" / f"{name}.nii.gz", anat / f"sub-01_ses-a_{suffix}.nii.gz")
    out = tmp_path / "out"
    argv = ["segment", "--batch", str(tmp_path / "bids"), "--model", str(seg_model)]
    assert main([*argv, "--out", str(out), *RUN]) == 0
    assert json.loads(capsys.readouterr().out)["layout"] == "bids"
    assert (out / "sub-01_ses-a" / "lesions.csv").is_file()
    mask = nib.load(out / "sub-01_ses-a" / "lesion_mask.nii.gz")
    np.testing.assert_array_equal(mask.affine, nib.load(anat / "sub-01_ses-a_FLAIR.nii.gz").affine)


def test_qsm_batch_summary_statistics(qsm_model, qsm_root, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["qsm", "--batch", str(qsm_root), "--model", str(qsm_model), "--out", str(out), *RUN]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["done"] == 2
    rows = read_csv(out / "qsm_summary.csv")
    assert [r["subject"] for r in rows] == ["q0", "q1"]
    for row in rows:
        chi = nib.load(out / row["subject"] / "chi.nii.gz").get_fdata()
        mask = np.asarray(nib.load(qsm_root / row["subject"] / "brain_mask.nii.gz").dataobj) > 0
        inside = chi[mask]
        assert float(row["chi_mean_ppm"]) == pytest.approx(inside.mean(), rel=1e-4, abs=1e-8)
        assert float(row["chi_sd_ppm"]) == pytest.approx(inside.std(), rel=1e-4)
        assert float(row["chi_p95_ppm"]) == pytest.approx(np.percentile(inside, 95), rel=1e-4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["segment", "--batch", "D", "--t1", "t1.nii.gz"], "--t1 cannot be given with --batch"),
        (["segment", "--batch", "D", "--chi", "c.nii.gz"], "--chi cannot be given with --batch"),
        (["segment", "--flair", "f.nii.gz", "--overwrite"], "--overwrite only applies with"),
        (["qsm", "--batch", "D", "--mask", "m.nii.gz"], "--mask cannot be given with --batch"),
        (["qsm", "--batch", "D", "--te", "5"], "--te: --batch runs --model on local fields"),
        (["segment"], "one of the arguments --flair --batch is required"),
        (["segment", "--flair", "f", "--batch", "D"], "not allowed with argument"),
    ],
)
def test_batch_usage_errors_exit_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_batch_on_a_missing_folder_exits_1(tmp_path, capsys):
    argv = ["segment", "--batch", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    assert f"napari-fanet segment: error: --batch: dataset folder not found: {tmp_path}" in (
        capsys.readouterr().err
    )
