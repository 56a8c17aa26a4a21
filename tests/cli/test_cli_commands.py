"""End to end: ``napari-fanet train``, ``segment`` and ``qsm`` through ``cli.main`` on tiny data.

Subjects are 24 x 28 x 20 voxels of 4 mm, written with an oblique, flipped affine (a rotation
about z and a flipped first axis), so the commands must reorient to canonical and back: every
output has to come back on the input's own grid and with its affine.
"""

from __future__ import annotations

import contextlib
import io
import json

import nibabel as nib
import numpy as np
import pytest

from napari_fanet.cli import main
from napari_fanet.models import read_checkpoint

SHAPE = (24, 28, 20)  # the subjects of tests/conftest.py
VOXEL = 4.0
ANGLE = np.deg2rad(20.0)
ROTATION = np.array(
    [
        [np.cos(ANGLE), -np.sin(ANGLE), 0.0],
        [np.sin(ANGLE), np.cos(ANGLE), 0.0],
        [0.0, 0.0, 1.0],
    ]
)
OBLIQUE = np.eye(4)
OBLIQUE[:3, :3] = ROTATION @ np.diag([-VOXEL, VOXEL, VOXEL])  # flipped x, rotated 20 deg
OBLIQUE[:3, 3] = (40.0, -60.0, -35.0)

TINY_MODEL = ["--features", "8", "8", "8", "8", "16", "--patch-size", "16", "16", "16"]
CPU = ["--device", "cpu"]
TILE = ["--tile", "16", "16", "16", "--no-progress"]


def train_argv(data, out, model, *extra):
    return [
        "train",
        "--data",
        str(data),
        "--val",
        str(data),
        "--model",
        model,
        *TINY_MODEL,
        "--steps",
        "2",
        "--val-every",
        "1",
        *CPU,
        "--out",
        str(out),
        *extra,
    ]


def run_quietly(argv):
    """``main(argv)`` with stdout and stderr swallowed (for module-scoped fixtures)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


@pytest.fixture(scope="module")
def ms_data(tmp_path_factory, write_ms_subject):
    root = tmp_path_factory.mktemp("ms")
    for i in range(2):
        write_ms_subject(root / f"sub-{i:04d}", seed=i, affine=OBLIQUE)
    return root


@pytest.fixture(scope="module")
def qsm_data(tmp_path_factory, write_qsm_subject):
    root = tmp_path_factory.mktemp("qsm")
    for i in range(2):
        write_qsm_subject(root / f"sub-{i:04d}", seed=100 + i, affine=OBLIQUE)
    return root


@pytest.fixture(scope="module")
def seg_run(ms_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg_run")
    assert run_quietly(train_argv(ms_data, out, "unet-seg")) == 0
    return out


@pytest.fixture(scope="module")
def qsm_run(qsm_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("qsm_run")
    assert run_quietly(train_argv(qsm_data, out, "qsmnet")) == 0
    return out


def parse_events(stdout):
    lines = [line for line in stdout.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every stdout line is one JSON event


# -- train ---------------------------------------------------------------------------------------


def test_train_prints_json_events_writes_checkpoints_and_resumes(ms_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_argv(ms_data, run, "unet-seg", "--events")) == 0
    events = parse_events(capsys.readouterr().out)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2]
    assert kinds.count("validation") == 2  # --val-every 1
    assert events[0]["resumed"] is False and events[0]["model"] == "unet-seg"
    for name in ("last.pt", "best.pt", "log.jsonl"):
        assert (run / name).is_file()
    assert read_checkpoint(run / "last.pt")["epoch"] == 2

    # --resume continues from last.pt up to the new --steps
    argv = train_argv(ms_data, run, "unet-seg", "--events", "--resume")
    argv[argv.index("--steps") + 1] = "4"
    assert main(argv) == 0
    events = parse_events(capsys.readouterr().out)
    assert events[0]["event"] == "start" and events[0]["resumed"] is True
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4]
    assert events[-1]["event"] == "done"
    assert read_checkpoint(run / "last.pt")["epoch"] == 4


def test_train_resume_without_last_checkpoint_exits_2(ms_data, tmp_path, capsys):
    run = tmp_path / "empty_run"
    assert main(train_argv(ms_data, run, "unet-seg", "--resume")) == 2
    err = capsys.readouterr().err
    assert "napari-fanet train: error: --resume: no" in err and "last.pt" in err
    assert not (run / "last.pt").exists()


def test_train_without_data_or_simulate_exits_2(tmp_path, capsys):
    argv = ["train", "--model", "unet-seg", *CPU, "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "give --data DIR (a folder of subjects) or --simulate N" in capsys.readouterr().err


def test_train_on_a_folder_without_subjects_exits_1(tmp_path, capsys):
    empty = tmp_path / "nothing"
    (empty / "sub-0000").mkdir(parents=True)  # a subject folder without a FLAIR is not a subject
    argv = ["train", "--data", str(empty), "--model", "unet-seg", *CPU, "--out", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{empty} holds no segmentation subjects" in err and "flair.nii.gz" in err
    assert "Traceback" not in err


# -- segment -------------------------------------------------------------------------------------


def segment_argv(folder, model, out):
    return [
        "segment",
        *[a for m in ("t1", "t2", "flair") for a in (f"--{m}", str(folder / f"{m}.nii.gz"))],
        "--model",
        str(model),
        "--out",
        str(out),
        *CPU,
        *TILE,
    ]


def test_segment_writes_maps_on_the_input_grid(
    seg_run, write_ms_subject, default_lesion_mask, tmp_path, capsys
):
    case = write_ms_subject(tmp_path / "case", seed=7, affine=OBLIQUE)
    out = tmp_path / "out"
    assert main(segment_argv(case, seg_run / "last.pt", out)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "unet-seg" and summary["device"] == "cpu"
    flair = nib.load(case / "flair.nii.gz")
    prob = nib.load(out / "lesion_probability.nii.gz")
    mask = nib.load(out / "lesion_mask.nii.gz")
    assert summary["files"] == {
        "lesion_probability": str(out / "lesion_probability.nii.gz"),
        "lesion_mask": str(out / "lesion_mask.nii.gz"),
        "lesions": str(out / "lesions.csv"),
    }
    for img in (prob, mask):
        assert img.shape == flair.shape == SHAPE
        np.testing.assert_array_equal(img.affine, flair.affine)
        np.testing.assert_allclose(img.affine, OBLIQUE, atol=1e-5)
    p, m = prob.get_fdata(), np.asarray(mask.dataobj)
    assert mask.get_data_dtype() == np.uint8 and set(np.unique(m)) <= {0, 1}
    assert p.min() >= 0 and p.max() <= 1
    brain = flair.get_fdata() != 0  # no --brain-mask: the non-zero FLAIR
    np.testing.assert_array_equal(m, default_lesion_mask(p, (4.0, 4.0, 4.0), brain))
    assert summary["lesion_voxels"] == int(m.sum())
    assert summary["mask_rule"].startswith("26-connected lesions of probability > 0.5, holding")

    # The same image stored in (nibabel's) closest canonical orientation gives the same maps
    # once nibabel reorients ours: the output really lies on the input grid, not the canonical
    canon = tmp_path / "canonical"
    canon.mkdir()
    for name in ("t1", "t2", "flair"):
        nib.save(
            nib.as_closest_canonical(nib.load(case / f"{name}.nii.gz")), canon / f"{name}.nii.gz"
        )
    assert main(segment_argv(canon, seg_run / "last.pt", tmp_path / "out_canon")) == 0
    reference = nib.load(tmp_path / "out_canon" / "lesion_probability.nii.gz").get_fdata()
    assert not np.allclose(reference, np.flip(reference, 0))  # the check can see a flip
    np.testing.assert_allclose(nib.as_closest_canonical(prob).get_fdata(), reference, atol=1e-6)


def test_segment_mirror_option_changes_the_map_and_defaults_to_the_core(
    seg_run, ms_data, tmp_path, capsys
):
    from napari_fanet.engine.predict import MIRROR_DEFAULT

    case = ms_data / "sub-0000"
    maps = {}
    for flag in ("--mirror", "--no-mirror", None):
        out = tmp_path / str(flag)
        argv = segment_argv(case, seg_run / "last.pt", out)
        assert main(argv if flag is None else [*argv, flag]) == 0
        maps[flag] = nib.load(out / "lesion_probability.nii.gz").get_fdata()
    capsys.readouterr()
    assert not np.allclose(maps["--mirror"], maps["--no-mirror"], atol=1e-4)
    default = "--mirror" if MIRROR_DEFAULT else "--no-mirror"
    np.testing.assert_array_equal(maps[None], maps[default])
    assert main(["segment", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"default: {'on' if MIRROR_DEFAULT else 'off'}" in help_text


def test_segment_window_shifts_average_grids_and_default_to_the_core(
    seg_run, ms_data, tmp_path, capsys
):
    from napari_fanet.cli.base import WINDOW_SHIFTS_RANGE
    from napari_fanet.cli.predict import WINDOW_SHIFTS_HELP
    from napari_fanet.engine.averaged_prediction import MAX_WINDOW_SHIFTS
    from napari_fanet.engine.predict import WINDOW_SHIFTS_DEFAULT

    case = ms_data / "sub-0000"
    maps = {}
    for flag in (["--window-shifts", "1"], ["--window-shifts", "2"], []):
        out = tmp_path / ("-".join(flag) or "default")
        assert main([*segment_argv(case, seg_run / "last.pt", out), *flag]) == 0
        maps[" ".join(flag)] = nib.load(out / "lesion_probability.nii.gz").get_fdata()
    assert not np.allclose(maps["--window-shifts 1"], maps["--window-shifts 2"], atol=1e-5)
    np.testing.assert_array_equal(maps[""], maps[f"--window-shifts {WINDOW_SHIFTS_DEFAULT}"])
    assert WINDOW_SHIFTS_HELP == WINDOW_SHIFTS_DEFAULT
    assert WINDOW_SHIFTS_RANGE == (1, MAX_WINDOW_SHIFTS)
    capsys.readouterr()
    assert main(["segment", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"1 to 8; default: {WINDOW_SHIFTS_HELP})" in help_text
    for bad in ("0", "9", "two"):
        argv = [*segment_argv(case, seg_run / "last.pt", tmp_path / bad), "--window-shifts", bad]
        assert main(argv) == 2
        assert "expected an integer >= 1 and <= 8" in capsys.readouterr().err
        assert not (tmp_path / bad).exists()


def test_segment_mask_rule_options_keep_whole_confident_lesions(
    seg_run, ms_data, expected_lesion_mask, tmp_path, capsys
):
    """--seed-threshold and --min-lesion-volume, checked with an independent labelling."""
    from scipy import ndimage

    from napari_fanet.cli.predict import (
        MIN_EDGE_DISTANCE_HELP,
        MIN_LESION_HELP,
        SEED_THRESHOLD_HELP,
    )
    from napari_fanet.tasks.lesion_mask import (
        DEFAULT_MIN_EDGE_DISTANCE_MM,
        DEFAULT_MIN_LESION_MM3,
        DEFAULT_SEED_THRESHOLD,
    )

    case = ms_data / "sub-0000"
    argv = segment_argv(case, seg_run / "last.pt", tmp_path / "plain")
    assert main([*argv, "--seed-threshold", "none", "--min-lesion-volume", "0"]) == 0
    p = nib.load(tmp_path / "plain" / "lesion_probability.nii.gz").get_fdata()
    for q in (0.6, 0.8, 0.9, 0.95, 0.98, 0.99):  # a threshold with several components
        low = round(float(np.quantile(p[p > 0], q)), 6)
        labels, n = ndimage.label(p > low, structure=np.ones((3, 3, 3)))
        if n >= 2:
            break
    assert n >= 2
    peaks = np.sort(ndimage.maximum(p, labels, np.arange(1, n + 1)))
    sizes = np.bincount(labels.ravel())[1:]
    seed = round(float(peaks[-2] + peaks[-1]) / 2, 6)  # only the top component has a seed
    volume = (float(sizes.max()) - 0.5) * 64.0  # 4 mm voxels: only the largest is as large
    brain = nib.load(case / "flair.nii.gz").get_fdata() != 0
    for edge in (4.5, 5, 6, 7, 8, 10, 12, 16):  # 4 mm voxels: the outermost layer is at 4 mm
        by_edge = expected_lesion_mask(p, 64.0, low, None, 0.0, (brain, edge), (4, 4, 4))
        if 0 < by_edge.sum() < (p > low).sum():
            break
    off = ["--min-edge-distance", "0"]
    runs = {
        "seed": (
            ["--seed-threshold", f"{seed}", "--min-lesion-volume", "0", *off],
            (seed, 0.0, None),
        ),
        "volume": (
            ["--seed-threshold", "none", "--min-lesion-volume", f"{volume}", *off],
            (None, volume, None),
        ),
        "edge": (
            ["--seed-threshold", "none", "--min-lesion-volume", "0", "--min-edge-distance",
             f"{edge}"],
            (None, 0.0, (brain, edge)),
        ),
    }  # fmt: skip
    for name, (extra, rule) in runs.items():
        out = tmp_path / name
        argv = [*segment_argv(case, seg_run / "last.pt", out), "--threshold", f"{low}", *extra]
        assert main(argv) == 0
        mask = np.asarray(nib.load(out / "lesion_mask.nii.gz").dataobj)
        expected = expected_lesion_mask(p, 64.0, low, *rule, (4, 4, 4))
        assert 0 < expected.sum() < (p > low).sum(), name  # the rule did something
        np.testing.assert_array_equal(mask, expected, err_msg=name)
    capsys.readouterr()
    shown = "none" if DEFAULT_SEED_THRESHOLD is None else f"{DEFAULT_SEED_THRESHOLD:g}"
    assert (SEED_THRESHOLD_HELP, MIN_LESION_HELP) == (shown, f"{DEFAULT_MIN_LESION_MM3:g}")
    assert f"{DEFAULT_MIN_EDGE_DISTANCE_MM:g}" == MIN_EDGE_DISTANCE_HELP


def test_segment_missing_input_exits_1_naming_the_file(seg_run, ms_data, tmp_path, capsys):
    argv = segment_argv(ms_data / "sub-0000", seg_run / "last.pt", tmp_path / "out")
    missing = tmp_path / "no_such_t2.nii.gz"
    argv[argv.index("--t2") + 1] = str(missing)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "napari-fanet segment: error: T2 (no_such_t2.nii.gz): file not found" in err
    assert str(missing) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_segment_2d_input_exits_1_with_the_io_message(seg_run, ms_data, tmp_path, capsys):
    flat = tmp_path / "flair_2d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((24, 28), dtype=np.float32), np.eye(4)), flat)
    argv = segment_argv(ms_data / "sub-0000", seg_run / "last.pt", tmp_path / "out")
    argv[argv.index("--flair") + 1] = str(flat)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "FLAIR (flair_2d.nii.gz): expected a 3D volume, got 2D data of shape (24, 28)" in err


def test_segment_unknown_model_name_exits_1_listing_shipped_models(ms_data, tmp_path, capsys):
    from napari_fanet.engine.predict import shipped_weights

    argv = segment_argv(ms_data / "sub-0000", "no-such-model", tmp_path / "out")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "no checkpoint file no-such-model and no shipped model of that name" in err
    assert f"(shipped: {sorted(shipped_weights()) or 'none'})" in err


# -- qsm -----------------------------------------------------------------------------------------


def qsm_argv(folder, model, out):
    return [
        "qsm",
        "--field",
        str(folder / "local_field.nii.gz"),
        "--mask",
        str(folder / "brain_mask.nii.gz"),
        "--model",
        str(model),
        "--out",
        str(out),
        *CPU,
        *TILE,
    ]


def test_qsm_writes_chi_on_the_field_grid(qsm_run, write_qsm_subject, tmp_path, capsys):
    case = write_qsm_subject(tmp_path / "case", seed=7, affine=OBLIQUE)
    out = tmp_path / "out"
    assert main(qsm_argv(case, qsm_run / "last.pt", out)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "qsmnet" and summary["files"] == {"chi": str(out / "chi.nii.gz")}
    field = nib.load(case / "local_field.nii.gz")
    chi = nib.load(out / "chi.nii.gz")
    assert chi.shape == field.shape == SHAPE
    np.testing.assert_array_equal(chi.affine, field.affine)
    data = chi.get_fdata()
    assert np.isfinite(data).all() and np.any(data != 0)


def test_qsm_with_a_segmentation_checkpoint_exits_1(seg_run, qsm_data, tmp_path, capsys):
    argv = qsm_argv(qsm_data / "sub-0000", seg_run / "last.pt", tmp_path / "out")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "napari-fanet qsm: error: model 'unet-seg' is a segmentation model, not qsm" in err
    assert not (tmp_path / "out").exists()


def test_qsm_missing_mask_exits_1_naming_the_file(qsm_run, qsm_data, tmp_path, capsys):
    argv = qsm_argv(qsm_data / "sub-0000", qsm_run / "last.pt", tmp_path / "out")
    argv[argv.index("--mask") + 1] = str(tmp_path / "mask.nii.gz")
    assert main(argv) == 1
    assert f"brain mask (mask.nii.gz): file not found: {tmp_path / 'mask.nii.gz'}" in (
        capsys.readouterr().err
    )


def test_qsm_unknown_model_name_exits_1_listing_shipped_models(qsm_data, tmp_path, capsys):
    argv = qsm_argv(qsm_data / "sub-0000", "fanet-qsm-v9", tmp_path / "out")
    assert main(argv) == 1
    assert "no shipped model of that name (shipped: " in capsys.readouterr().err


def test_family_choices_are_the_simulators_families():
    from napari_fanet.cli.base import FAMILY_CHOICES
    from napari_fanet.simulation.dataset import FAMILIES

    families = {f for task_families in FAMILIES.values() for f in task_families}
    assert set(FAMILY_CHOICES) == families and len(FAMILY_CHOICES) == len(families)


def test_segment_match_roughness_smooths_a_rough_flair_and_says_so(
    seg_run, ms_data, tmp_path, capsys
):
    from napari_fanet.cli.predict import MATCH_ROUGHNESS_HELP
    from napari_fanet.models.checkpoint import copy_with_extra
    from napari_fanet.tasks.roughness import MATCH_ROUGHNESS_DEFAULT, TARGET_KEY

    model = copy_with_extra(seg_run / "last.pt", tmp_path / "target.pt", {TARGET_KEY: 1e-4})
    case = ms_data / "sub-0000"
    maps, summaries = {}, {}
    for flag in ("--match-roughness", "--no-match-roughness", None):
        out = tmp_path / str(flag)
        argv = segment_argv(case, model, out)
        capsys.readouterr()
        assert main(argv if flag is None else [*argv, flag]) == 0
        summaries[flag] = json.loads(capsys.readouterr().out)
        maps[flag] = nib.load(out / "lesion_probability.nii.gz").get_fdata()
    assert not np.allclose(maps["--match-roughness"], maps["--no-match-roughness"], atol=1e-4)
    said = " ".join(summaries["--match-roughness"]["messages"])
    assert "above the model's training scans' 0.0001: smoothed in the brain" in said
    assert "roughness" not in " ".join(summaries["--no-match-roughness"]["messages"])
    default = "--match-roughness" if MATCH_ROUGHNESS_DEFAULT else "--no-match-roughness"
    np.testing.assert_array_equal(maps[None], maps[default])
    assert MATCH_ROUGHNESS_HELP == ("on" if MATCH_ROUGHNESS_DEFAULT else "off")
    assert main(["segment", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"affected; default: {MATCH_ROUGHNESS_HELP})" in help_text
