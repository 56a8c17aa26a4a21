"""Bad input to any command gets one clear line (exit 1 or 2), never a traceback or half output.

Covers issue 14: numeric options, voxel sizes, output folders (checked before inference, written
all or none), damaged or foreign files, malformed checkpoints and ``train --resume`` with other
settings. Subjects are the 24 x 28 x 20, 4 mm ones of ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_fanet.cli import main
from napari_fanet.io import atomic
from napari_fanet.models import read_checkpoint

TINY_MODEL = ["--features", "8", "8", "8", "8", "16", "--patch-size", "16", "16", "16"]
CPU = ["--device", "cpu"]
TILE = ["--tile", "16", "16", "16", "--no-progress"]


def run_quietly(argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def train_argv(data, out, model="unet-seg", *extra):
    return [
        "train", "--data", str(data), "--model", model, *TINY_MODEL, "--steps", "2",
        "--val-every", "0", *CPU, "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ms_data(tmp_path_factory, write_ms_subject):
    root = tmp_path_factory.mktemp("ms")
    write_ms_subject(root / "sub-0000", seed=0)
    return root


@pytest.fixture(scope="module")
def qsm_data(tmp_path_factory, write_qsm_subject):
    root = tmp_path_factory.mktemp("qsm")
    write_qsm_subject(root / "sub-0000", seed=100)
    return root


@pytest.fixture(scope="module")
def seg_ckpt(ms_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg_run")
    assert run_quietly(train_argv(ms_data, out)) == 0
    return out / "last.pt"


def segment_argv(folder, model, out, *extra):
    files = [a for m in ("t1", "t2", "flair") for a in (f"--{m}", str(folder / f"{m}.nii.gz"))]
    return ["segment", *files, "--model", str(model), "--out", str(out), *CPU, *TILE, *extra]


def qsm_argv(folder, model, out, *extra):
    return [
        "qsm", "--field", str(folder / "local_field.nii.gz"), "--mask",
        str(folder / "brain_mask.nii.gz"), "--model", str(model), "--out", str(out), *CPU,
        *TILE, *extra,
    ]  # fmt: skip


def error_line(capsys, status_expected, status):
    err = capsys.readouterr().err
    assert status == status_expected, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def no_inference(monkeypatch):
    """Fail the test if a prediction starts (the checks must come first)."""
    from napari_fanet.engine import predict

    def forbidden(*args, **kwargs):
        raise AssertionError("inference started before the inputs were checked")

    monkeypatch.setattr(predict, "segment", forbidden)
    monkeypatch.setattr(predict, "reconstruct_qsm", forbidden)


# -- numeric options (item 11) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--threshold", "nan"], "argument --threshold: expected a number > 0 and < 1, got nan"),
        (["--threshold", "2"], "argument --threshold: expected a number > 0 and < 1, got 2"),
        (["--threshold", "0"], "argument --threshold: expected a number > 0 and < 1, got 0"),
        (["--threshold", "half"], "expected a number > 0 and < 1, got 'half'"),
        (
            ["--tile", "1", "1", "1"],
            "argument --tile: expected an integer >= 16 and <= 512, got 1",
        ),
        (["--tile", "64", "64", "9999"], "expected an integer >= 16 and <= 512, got 9999"),
        (["--overlap", "1"], "argument --overlap: expected a number >= 0 and < 1, got 1"),
        (["--overlap", "nan"], "argument --overlap: expected a number >= 0 and < 1, got nan"),
        (
            ["--seed-threshold", "1"],
            "argument --seed-threshold: expected a number > 0 and < 1, got 1",
        ),
        (["--seed-threshold", "high"], "expected a number > 0 and < 1, got 'high'"),
        (
            ["--min-lesion-volume", "-1"],
            "argument --min-lesion-volume: expected a number >= 0, got -1",
        ),
        (
            ["--threshold", "0.6", "--seed-threshold", "0.4"],
            "--threshold/--seed-threshold/--min-lesion-volume/--min-edge-distance: seed "
            "threshold (0.4) must be at least the threshold (0.6)",
        ),
        (
            ["--min-edge-distance", "-2"],
            "argument --min-edge-distance: expected a number >= 0, got -2",
        ),
        (
            ["--min-edge-distance", "inf"],
            "argument --min-edge-distance: expected a number >= 0, got inf",
        ),
    ],
)
def test_segment_numeric_options_are_validated(ms_data, tmp_path, capsys, option, message):
    argv = segment_argv(ms_data / "sub-0000", "unet-seg", tmp_path / "out", *option)
    err = error_line(capsys, 2, main(argv))
    assert message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--b0-dir", "nan", "0", "1"], "argument --b0-dir: expected a finite number, got nan"),
        (["--b0-dir", "inf", "0", "1"], "argument --b0-dir: expected a finite number, got inf"),
        (["--b0-dir", "z", "0", "1"], "argument --b0-dir: expected a number, got 'z'"),
    ],
)
def test_qsm_b0_dir_must_be_finite(qsm_data, tmp_path, capsys, option, message):
    argv = qsm_argv(qsm_data / "sub-0000", "qsmnet", tmp_path / "out", *option)
    assert message in error_line(capsys, 2, main(argv))


def test_qsm_all_zero_b0_dir_says_not_all_zero(qsm_data, tmp_path, capsys):
    pytest.importorskip("napari_fanet.weights")
    argv = qsm_argv(qsm_data / "sub-0000", "qsmnet", tmp_path / "out", "--b0-dir", "0", "0", "0")
    err = error_line(capsys, 1, main(argv))
    assert "B0 direction must be 3 numbers, not all zero; got (0, 0, 0)" in err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--lr", "nan"], "argument --lr: expected a number > 0 and <= 1, got nan"),
        (["--lr", "0"], "argument --lr: expected a number > 0 and <= 1, got 0"),
        (["--lr", "5"], "argument --lr: expected a number > 0 and <= 1, got 5"),
        (["--patch-size", "8", "8", "8"], "argument --patch-size: expected an integer >= 16"),
        (["--voxel-size", "20", "2", "2"], "argument --voxel-size: expected a number >= 0.25"),
        (["--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
        (["--p-lesion", "1.5"], "argument --p-lesion: expected a number >= 0 and <= 1, got 1.5"),
        (["--blob-weight", "-1"], "argument --blob-weight: expected a number >= 0, got -1"),
        (["--blob-weight", "inf"], "argument --blob-weight: expected a number >= 0, got inf"),
        (
            ["--lesion-contrast", "-1", "1"],
            "argument --lesion-contrast: expected a number >= 0, got -1",
        ),
        (
            ["--lesion-contrast", "1.1", "0.6"],
            "invalid training setting lesion_contrast=(1.1, 0.6)",
        ),
        (
            ["--lesion-contrast", "0.6", "1.1", "--no-augment"],
            "lesion_contrast is an augmentation: expected augment=True, got augment=False",
        ),
    ],
)
def test_train_numeric_options_are_validated(ms_data, tmp_path, capsys, option, message):
    argv = [*train_argv(ms_data, tmp_path / "run"), *option]
    assert message in error_line(capsys, 2, main(argv))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--tile", "1", "1", "1"],
            "argument --tile: expected an integer >= 16 and <= 512, got 1",
        ),
        (["--voxel-size", "0.1", "2", "2"], "argument --voxel-size: expected a number >= 0.25"),
        (["--n-test", "0"], "argument --n-test: expected an integer >= 1, got 0"),
        (["--overlap", "1"], "argument --overlap: expected a number >= 0 and < 1, got 1"),
    ],
)
def test_evaluate_numeric_options_are_validated(capsys, option, message):
    argv = ["evaluate", "--task", "ms", "--models", "unet-seg", *option]
    assert message in error_line(capsys, 2, main(argv))


# -- input files and voxel sizes (items 6, 9, 10, 17) ------------------------------------------


def _copy_subject(folder, dest, *, flair=None, affine=None):
    dest.mkdir()
    for name in ("t1", "t2", "flair"):
        img = nib.load(folder / f"{name}.nii.gz")
        data = np.asarray(img.dataobj, dtype=np.float32)
        if name == "flair" and flair is not None:
            data = flair(data)
        new = nib.Nifti1Image(data, img.affine if affine is None else affine)
        nib.save(new, dest / f"{name}.nii.gz")
    return dest


def test_segment_4d_input_names_no_python_argument(seg_ckpt, ms_data, tmp_path, capsys):
    four = tmp_path / "flair4d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((24, 28, 20, 2), np.float32), np.eye(4)), four)
    argv = segment_argv(ms_data / "sub-0000", seg_ckpt, tmp_path / "out")
    argv[argv.index("--flair") + 1] = str(four)
    err = error_line(capsys, 1, main(argv))
    assert (
        "FLAIR (flair4d.nii.gz): expected a 3D volume, got 4D data of shape (24, 28, 20, 2); "
        "give one 3D volume" in err
    )
    assert "allow_4d" not in err


def test_segment_refuses_a_damaged_gzip_file(seg_ckpt, ms_data, tmp_path, capsys, no_inference):
    case = _copy_subject(ms_data / "sub-0000", tmp_path / "case")
    raw = bytearray((case / "t2.nii.gz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (case / "t2.nii.gz").write_bytes(bytes(raw))
    err = error_line(capsys, 1, main(segment_argv(case, seg_ckpt, tmp_path / "out")))
    assert (
        "napari-fanet segment: error: T2 (t2.nii.gz): expected an intact gzip-compressed " in err
    )


@pytest.mark.parametrize("size", [50.0, 0.01])
def test_segment_refuses_voxel_sizes_out_of_range(seg_ckpt, ms_data, tmp_path, capsys, size):
    case = _copy_subject(
        ms_data / "sub-0000", tmp_path / "case", affine=np.diag([size, size, size, 1.0])
    )
    err = error_line(capsys, 1, main(segment_argv(case, seg_ckpt, tmp_path / "out")))
    assert (
        f"expected voxel sizes between 0.25 and 10 mm, got ({size:g}, {size:g}, {size:g}) mm"
        in (err)
    )
    assert not (tmp_path / "out").exists()


def test_segment_all_zero_flair_says_so(seg_ckpt, ms_data, tmp_path, capsys):
    case = _copy_subject(ms_data / "sub-0000", tmp_path / "case", flair=np.zeros_like)
    err = error_line(capsys, 1, main(segment_argv(case, seg_ckpt, tmp_path / "out")))
    assert (
        "napari-fanet segment: error: FLAIR is all zeros: expected a skull-stripped FLAIR" in err
    )
    assert "brain mask is empty" not in err


def test_segment_refuses_a_flair_that_is_not_skull_stripped(seg_ckpt, ms_data, tmp_path, capsys):
    rng = np.random.default_rng(0)
    case = _copy_subject(
        ms_data / "sub-0000", tmp_path / "case", flair=lambda a: a + rng.rayleigh(20.0, a.shape)
    )
    err = error_line(capsys, 1, main(segment_argv(case, seg_ckpt, tmp_path / "out")))
    assert (
        "napari-fanet segment: error: the FLAIR does not look skull-stripped: 6 of the 6 faces "
        "of its array are mostly non-zero" in err
    )
    assert not (tmp_path / "out").exists()
    # with a brain mask the same FLAIR is segmented
    mask = tmp_path / "brain.nii.gz"
    flair = nib.load(ms_data / "sub-0000" / "flair.nii.gz")
    brain = (np.asarray(flair.dataobj) != 0).astype(np.uint8)
    nib.save(nib.Nifti1Image(brain, flair.affine), mask)
    argv = segment_argv(case, seg_ckpt, tmp_path / "out", "--brain-mask", str(mask))
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "lesion_mask.nii.gz").exists()


def test_segment_leaves_resampling_residue_out_of_the_brain(seg_ckpt, ms_data, tmp_path, capsys):
    def with_residue(flair):
        out = flair.copy()
        out[(flair == 0) & (np.indices(flair.shape).sum(0) % 2 == 0)] = 1e-9
        return out

    clean = _copy_subject(ms_data / "sub-0000", tmp_path / "clean")
    noisy = _copy_subject(ms_data / "sub-0000", tmp_path / "residue", flair=with_residue)
    assert main(segment_argv(clean, seg_ckpt, tmp_path / "a")) == 0
    capsys.readouterr()
    assert main(segment_argv(noisy, seg_ckpt, tmp_path / "b")) == 0
    out = capsys.readouterr().out
    assert "of the FLAIR's non-zero voxels are nearly zero" in out
    for name in ("lesion_probability", "lesion_mask"):
        a = np.asarray(nib.load(tmp_path / "a" / f"{name}.nii.gz").dataobj)
        b = np.asarray(nib.load(tmp_path / "b" / f"{name}.nii.gz").dataobj)
        np.testing.assert_array_equal(a, b)  # the same brain, the same result


def test_segment_keeps_qform_and_sform_of_the_input(seg_ckpt, ms_data, tmp_path, capsys):
    case = _copy_subject(ms_data / "sub-0000", tmp_path / "case")
    qforms = {}
    for name in ("t1", "t2", "flair"):
        img = nib.load(case / f"{name}.nii.gz")
        data, sform = np.asarray(img.dataobj), img.affine
        qform = sform.copy()
        qform[:3, 3] += (2.0, -1.0, 0.5)
        out = nib.Nifti1Image(data, sform)
        out.header.set_qform(qform, code=1)
        out.header.set_sform(sform, code=2)
        nib.save(out, case / f"{name}.nii.gz")
        qforms[name] = (qform, sform)
    assert main(segment_argv(case, seg_ckpt, tmp_path / "out")) == 0
    for name in ("lesion_probability", "lesion_mask"):
        hdr = nib.load(tmp_path / "out" / f"{name}.nii.gz").header
        np.testing.assert_allclose(hdr.get_qform(), qforms["flair"][0], atol=1e-5)
        np.testing.assert_allclose(hdr.get_sform(), qforms["flair"][1], atol=1e-6)


# -- output folders (item 12) ---------------------------------------------------------------


def test_segment_out_is_a_file(seg_ckpt, ms_data, tmp_path, capsys, no_inference):
    out = tmp_path / "out"
    out.write_text("not a folder")
    err = error_line(capsys, 1, main(segment_argv(ms_data / "sub-0000", seg_ckpt, out)))
    assert f"napari-fanet segment: error: --out: output folder {out}: expected a folder" in err
    assert out.read_text() == "not a folder"


def test_segment_folder_in_the_way(seg_ckpt, ms_data, tmp_path, capsys, no_inference):
    out = tmp_path / "out"
    (out / "lesion_mask.nii.gz").mkdir(parents=True)
    err = error_line(capsys, 1, main(segment_argv(ms_data / "sub-0000", seg_ckpt, out)))
    assert "lesion_mask.nii.gz: expected a file name there, got a folder" in err
    assert sorted(p.name for p in out.iterdir()) == ["lesion_mask.nii.gz"]


def test_qsm_out_not_writable(qsm_data, tmp_path, capsys, monkeypatch, no_inference):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", denied)
    out = tmp_path / "out"
    err = error_line(capsys, 1, main(qsm_argv(qsm_data / "sub-0000", "qsmnet", out)))
    assert "--out: output folder" in err and "expected a writable folder" in err
    assert not out.exists()


def test_segment_writes_all_outputs_or_none(seg_ckpt, ms_data, tmp_path, capsys, monkeypatch):
    from napari_fanet.io import nifti as fanet_io

    real_save = fanet_io.save_volume

    def fails_on_the_mask(path, data, reference, **kwargs):
        if "lesion_mask" in str(path):
            raise OSError(28, "No space left on device")
        return real_save(path, data, reference, **kwargs)

    monkeypatch.setattr(fanet_io, "save_volume", fails_on_the_mask)
    out = tmp_path / "out"
    err = error_line(capsys, 1, main(segment_argv(ms_data / "sub-0000", seg_ckpt, out)))
    assert f"writing to {out} failed; no output was written" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []

    out.mkdir()
    (out / "lesion_probability.nii.gz").write_text("previous run")
    error_line(capsys, 1, main(segment_argv(ms_data / "sub-0000", seg_ckpt, out)))
    assert sorted(p.name for p in out.iterdir()) == ["lesion_probability.nii.gz"]
    assert (out / "lesion_probability.nii.gz").read_text() == "previous run"


def test_train_out_is_a_file(ms_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.write_text("x")
    err = error_line(capsys, 1, main(train_argv(ms_data, out)))
    assert f"napari-fanet train: error: --out: output folder {out}: expected a folder" in err


# -- checkpoints and resume (items 13, 14) -----------------------------------------------------


def _bad_checkpoint(path, seg_ckpt, **config_changes):
    ckpt = read_checkpoint(seg_ckpt)
    ckpt["config"] = {**ckpt["config"], **config_changes}
    for key in [k for k, v in config_changes.items() if v is None]:
        del ckpt["config"][key]
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"in_channels": None}, "expected a model config of ModelConfig fields, got a malformed"),
        ({"colour": "red"}, "expected a model config of ModelConfig fields, got a malformed"),
        ({"task": "ct"}, "expected a model config of ModelConfig fields, got a malformed"),
        ({"features": [8, 8]}, "expected a model config that builds a network, got a malformed"),
    ],
)
def test_malformed_checkpoint_config(seg_ckpt, ms_data, tmp_path, capsys, changes, message):
    bad = _bad_checkpoint(tmp_path / "bad.pt", seg_ckpt, **changes)
    err = error_line(capsys, 1, main(segment_argv(ms_data / "sub-0000", bad, tmp_path / "o")))
    assert f"napari-fanet segment: error: {bad}: {message}" in err
    status = main(train_argv(ms_data, tmp_path / "run", "unet-seg", "--init", str(bad)))
    assert f"napari-fanet train: error: {bad}: {message}" in error_line(capsys, status, status)
    assert status in (1, 2)


def test_resume_continues_the_checkpoints_model_and_says_what_differs(
    ms_data, tmp_path, capsys, caplog
):
    run = tmp_path / "run"
    assert run_quietly(train_argv(ms_data, run, "unet-seg")) == 0
    stale = [run / ".last.pt.0123456789ab.tmp", run / ".best.pt.abcdef012345.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")  # left by a SIGKILL during a save
    argv = train_argv(ms_data, run, "fanet-seg", "--resume", "--events")
    argv[argv.index("--steps") + 1] = "3"
    argv[argv.index("--features") + 1 : argv.index("--features") + 6] = ["16"] * 5
    assert main(argv) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    assert events[0]["event"] == "start" and events[0]["model"] == "unet-seg"
    assert events[0]["notes"] == [
        "continuing the checkpoint's model 'unet-seg', not --model 'fanet-seg'",
        "continuing the checkpoint's features [8, 8, 8, 8, 16], not --features "
        "[16, 16, 16, 16, 16]",
    ]
    assert "--resume: continuing the checkpoint's model 'unet-seg'" in caplog.text  # stderr
    assert "removed .last.pt.0123456789ab.tmp" in caplog.text
    assert [e["step"] for e in events if e["event"] == "step"] == [3]
    assert not any(p.exists() for p in stale)
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["config"]["name"] == "unet-seg" and ckpt["epoch"] == 3
    assert ckpt["extra"]["train_config"]["features"] == [8, 8, 8, 8, 16]


def test_resume_reports_changed_training_settings(ms_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_quietly(train_argv(ms_data, run, "unet-seg")) == 0
    argv = train_argv(ms_data, run, "unet-seg", "--resume", "--events", "--lr", "0.0005")
    argv[argv.index("--steps") + 1] = "3"
    assert main(argv) == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert events[0]["notes"] == ["lr changes from 0.001 to 0.0005"]


def test_resume_of_a_qsm_run_with_a_segmentation_model_name(qsm_data, tmp_path, caplog):
    run = tmp_path / "run"
    assert run_quietly(train_argv(qsm_data, run, "qsmnet")) == 0
    argv = train_argv(qsm_data, run, "unet-seg", "--resume")
    argv[argv.index("--steps") + 1] = "3"
    assert main(argv) == 0  # the data are read for the checkpoint's task, not --model's
    assert "continuing the checkpoint's model 'qsmnet'" in caplog.text


def test_evaluate_checks_out_before_evaluating(tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("x")
    command = ["evaluate", "--task", "ms", "--models", "no-such-model"]  # not loaded yet
    err = error_line(capsys, 1, main([*command, "--out", str(out)]))
    assert f"error: --out: output folder {out}: expected a folder, but it is a file" in err


def test_qsm_refuses_voxel_sizes_out_of_range(qsm_data, tmp_path, capsys):
    case = tmp_path / "case"
    case.mkdir()
    for name in ("local_field", "brain_mask"):
        img = nib.load(qsm_data / "sub-0000" / f"{name}.nii.gz")
        big = nib.Nifti1Image(np.asarray(img.dataobj), np.diag([50.0, 50.0, 50.0, 1.0]))
        nib.save(big, case / f"{name}.nii.gz")
    err = error_line(capsys, 1, main(qsm_argv(case, "qsmnet", tmp_path / "out")))
    assert "expected voxel sizes between 0.25 and 10 mm, got (50, 50, 50) mm" in err
    assert not (tmp_path / "out").exists()


def test_segment_unreadable_input_is_one_line(seg_ckpt, ms_data, tmp_path, capsys, monkeypatch):
    from napari_fanet.io import nifti as fanet_io

    def denied(path, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fanet_io, "load_volume", denied)
    err = error_line(capsys, 1, main(segment_argv(ms_data / "sub-0000", seg_ckpt, tmp_path / "o")))
    line = r"segment: error: \w+ \((t1|t2|flair)\.nii\.gz\): cannot read .+: Permission denied"
    assert re.search(line + "$", err.strip())  # whichever modality is read first


def test_progress_bar_names_the_init_checkpoints_model(ms_data, tmp_path, capsys):
    start = tmp_path / "start"
    assert main(train_argv(ms_data, start, "unet-seg")) == 0
    capsys.readouterr()
    # --model keeps its default (fanet-seg); the checkpoint's model is the one trained
    argv = train_argv(ms_data, tmp_path / "run", "fanet-seg", "--init", str(start / "last.pt"))
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "train unet-seg" in err and "train fanet-seg" not in err


def test_train_places_scaled_folded_attention_at_the_requested_levels(ms_data, tmp_path):
    run = tmp_path / "run"
    argv = train_argv(ms_data, run, "fanet-seg", "--attention-levels", "3", "4")
    assert main([*argv, "--attention-scale", "sqrt"]) == 0
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["config"]["attention_levels"] == [3, 4]
    assert ckpt["config"]["attention_kwargs"] == {"scale": "sqrt"}


def test_train_grows_the_init_checkpoints_attention(ms_data, tmp_path):
    start = tmp_path / "start"
    assert main(train_argv(ms_data, start, "fanet-seg")) == 0
    run = tmp_path / "run"
    argv = train_argv(ms_data, run, "fanet-seg", "--init", str(start / "last.pt"))
    assert main([*argv, "--attention-levels", "2", "4", "--attention-scale", "sqrt"]) == 0
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["config"]["attention_levels"] == [2, 4]
    assert ckpt["config"]["attention_kwargs"] == {"scale": "sqrt"}


def test_train_switches_the_init_checkpoints_attention_to_cosine(ms_data, tmp_path):
    start = tmp_path / "start"
    argv = train_argv(ms_data, start, "fanet-seg", "--attention-levels", "2", "4")
    assert main([*argv, "--attention-scale", "sqrt"]) == 0
    run = tmp_path / "run"
    argv = train_argv(ms_data, run, "fanet-seg", "--init", str(start / "last.pt"))
    assert main([*argv, "--attention-scale", "cosine"]) == 0
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["config"]["attention_levels"] == [2, 4]
    assert ckpt["config"]["attention_kwargs"] == {"scale": "cosine", "learn_temperature": True}
    for name in ("attention", "level_attention.2"):
        assert ckpt["state_dict"][f"{name}.log_temperature"].shape == (4,)


def test_train_starts_a_cosine_blocks_temperature_where_asked(ms_data, tmp_path):
    start = tmp_path / "start"
    argv = train_argv(ms_data, start, "fanet-seg", "--attention-levels", "2", "4")
    assert main(argv) == 0
    run = tmp_path / "run"
    argv = train_argv(ms_data, run, "fanet-seg", "--init", str(start / "last.pt"))
    assert main([*argv, "--attention-scale", "cosine", "--start-temperature", "4=3"]) == 0
    ckpt = read_checkpoint(run / "last.pt")
    assert ckpt["extra"]["train_config"]["start_temperatures"] == {"4": 3.0}
    # one step of training moves log T by at most about the learning rate
    bottleneck = ckpt["state_dict"]["attention.log_temperature"].exp()
    assert torch.allclose(bottleneck, torch.full((4,), 3.0), rtol=0.05)
    level2 = ckpt["state_dict"]["level_attention.2.log_temperature"].exp()
    assert torch.allclose(level2, torch.ones(4), rtol=0.05)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--start-temperature", "4=3"], "needs --init CKPT"),
        (["--start-temperature", "4"], r"expected LEVEL=T with LEVEL in 0..4 .* got '4'"),
        (["--start-temperature", "4=-1"], r"expected LEVEL=T .* got '4=-1'"),
        (["--start-temperature", "9=2"], r"expected LEVEL=T .* got '9=2'"),
    ],
)
def test_train_rejects_bad_start_temperatures(ms_data, tmp_path, capsys, extra, message):
    status = main(train_argv(ms_data, tmp_path / "run", "fanet-seg", *extra))
    assert re.search(message, error_line(capsys, status, status))


def test_train_refuses_a_start_temperature_without_a_learned_one(ms_data, tmp_path, capsys):
    start = tmp_path / "start"
    assert main(train_argv(ms_data, start, "fanet-seg")) == 0
    capsys.readouterr()
    argv = train_argv(ms_data, tmp_path / "run", "fanet-seg", "--init", str(start / "last.pt"))
    status = main([*argv, "--start-temperature", "4=2"])
    assert "expected blocks that learn a temperature (add --attention-scale cosine)" in (
        error_line(capsys, status, status)
    )
    status = main([*argv, "--attention-scale", "cosine", "--start-temperature", "2=2"])
    assert "expected levels with folded attention [4], got [2]" in error_line(
        capsys, status, status
    )


def test_train_refuses_to_grow_attention_of_a_checkpoint_without_fa(ms_data, tmp_path, capsys):
    start = tmp_path / "start"
    assert main(train_argv(ms_data, start, "unet-seg")) == 0
    capsys.readouterr()
    argv = train_argv(ms_data, tmp_path / "run", "fanet-seg", "--init", str(start / "last.pt"))
    status = main([*argv, "--attention-levels", "2", "4"])
    assert "with --init need a checkpoint with folded attention" in error_line(
        capsys, status, status
    )


def test_train_rejects_attention_levels_out_of_range(ms_data, tmp_path, capsys):
    status = main(train_argv(ms_data, tmp_path / "run", "fanet-seg", "--attention-levels", "7"))
    assert "attention_levels must be distinct levels out of 0..4" in error_line(
        capsys, status, status
    )


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("unet-seg", ["--attention-scale", "sqrt"], "need a model with attention, got unet-seg"),
        ("da-seg", ["--attention-scale", "sqrt"], r"folded attention \(fanet-\*\), got da-seg"),
    ],
)
def test_train_rejects_attention_options_the_model_cannot_use(
    ms_data, tmp_path, capsys, model, extra, message
):
    status = main(train_argv(ms_data, tmp_path / "run", model, *extra))
    assert re.search(message, error_line(capsys, status, status))


def test_train_records_the_blob_weight(ms_data, tmp_path):
    run = tmp_path / "run"
    assert main(train_argv(ms_data, run, "unet-seg", "--blob-weight", "1")) == 0
    assert read_checkpoint(run / "last.pt")["extra"]["train_config"]["blob_weight"] == 1.0


def test_train_refuses_a_blob_weight_for_qsm(qsm_data, tmp_path, capsys):
    status = main(train_argv(qsm_data, tmp_path / "run", "qsmnet", "--blob-weight", "1"))
    err = error_line(capsys, 2, status)
    assert (
        "--blob-weight: a per-lesion loss needs a task with lesions (segmentation), got a qsm"
        in err
    )


def test_train_records_the_lesion_contrast(ms_data, tmp_path):
    run = tmp_path / "run"
    assert main(train_argv(ms_data, run, "unet-seg", "--lesion-contrast", "0.6", "1.1")) == 0
    config = read_checkpoint(run / "last.pt")["extra"]["train_config"]
    assert config["lesion_contrast"] == [0.6, 1.1]


def test_train_refuses_the_lesion_contrast_for_qsm(qsm_data, tmp_path, capsys):
    argv = train_argv(qsm_data, tmp_path / "run", "qsmnet", "--lesion-contrast", "0.6", "1.1")
    err = error_line(capsys, 2, main(argv))
    assert "--lesion-contrast: lesion-contrast augmentation needs a task with lesions" in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_evaluate_refuses_two_models_with_one_name(tmp_path, capsys):
    """a/best.pt and b/best.pt would share a row of the report: refused before any work."""
    command = ["evaluate", "--task", "qsm", "--models", "a/best.pt", "b/best.pt"]
    err = error_line(capsys, 2, main(command))
    assert "--models: a/best.pt and b/best.pt have the same name 'best'" in err
