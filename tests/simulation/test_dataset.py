from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_fanet.io.nifti import load_volume
from napari_fanet.simulation import (
    SPLIT_SEEDS,
    iter_simulate_dataset,
    simulate_dataset,
    simulate_ms_subject,
    simulate_qsm_subject,
    split_seed,
)
from napari_fanet.simulation.dataset import FILES, check_task, prepare_output_dir
from napari_fanet.simulation.template import mni_grid

VOX = (4.0, 4.0, 4.0)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Two subjects of each task at 4 mm."""
    root = tmp_path_factory.mktemp("sim")
    for task in ("ms", "qsm"):
        simulate_dataset(root / task, task, 2, seed=40, voxel_size=VOX)
    return root


@pytest.mark.parametrize("task", ["ms", "qsm"])
def test_layout_and_dataset_json(written, task) -> None:
    out = written / task
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "sub-0000", "sub-0001"]
    desc = json.loads((out / "dataset.json").read_text())
    assert desc["task"] == task
    assert desc["seed"] == 40 and desc["n_subjects"] == 2
    assert desc["subjects"] == ["sub-0000", "sub-0001"]
    assert desc["voxel_size"] == list(VOX)
    assert desc["format_version"] == 1 and "napari_fanet_version" in desc
    assert set(desc["files"]) == set(FILES[task])
    if task == "qsm":
        assert desc["field_units"] == "ppm of B0" and desc["chi_units"] == "ppm"
    for i, sub in enumerate(desc["subjects"]):
        names = sorted(p.name for p in (out / sub).iterdir())
        assert names == sorted([*(f"{n}.nii.gz" for n in FILES[task]), "meta.json"])
        meta = json.loads((out / sub / "meta.json").read_text())
        assert meta["seed"] == 40 + i and meta["subject"] == sub


@pytest.mark.parametrize("task", ["ms", "qsm"])
def test_volumes_load_back_on_one_grid_with_documented_dtypes(written, task) -> None:
    shape, affine = mni_grid(VOX)
    folder = written / task / "sub-0001"
    for name, (dtype, _) in FILES[task].items():
        path = folder / f"{name}.nii.gz"
        vol = load_volume(path)
        assert vol.shape == shape
        np.testing.assert_allclose(vol.affine, affine)
        assert nib.load(path).get_data_dtype() == np.dtype(dtype)


def test_ms_files_hold_the_simulated_arrays(written) -> None:
    subject = simulate_ms_subject(41, VOX)
    folder = written / "ms" / "sub-0001"
    for name in ("t1", "flair", "lesion_mask", "brain_mask", "wm_mask"):
        data = load_volume(folder / f"{name}.nii.gz").data
        np.testing.assert_array_equal(data, getattr(subject, name).astype(np.float32))
    wm_prob = load_volume(folder / "wm_prob.nii.gz").data
    np.testing.assert_allclose(wm_prob, subject.wm_prob, atol=1 / 512 + 1e-7)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["n_lesions"] == subject.meta["n_lesions"]
    assert meta["lesion_voxels"] == int(subject.lesion_mask.sum())


def test_qsm_files_hold_the_simulated_arrays(written) -> None:
    subject = simulate_qsm_subject(40, VOX)
    folder = written / "qsm" / "sub-0000"
    for name, attr in (("local_field", "local_field"), ("chi", "chi"), ("brain_mask", "mask")):
        data = load_volume(folder / f"{name}.nii.gz").data
        np.testing.assert_array_equal(data, getattr(subject, attr).astype(np.float32))
    meta = json.loads((folder / "meta.json").read_text())
    np.testing.assert_allclose(meta["b0_dir"], subject.b0_dir, atol=1e-7)
    np.testing.assert_allclose(meta["b0_dir_world"], subject.b0_dir_world, atol=1e-7)
    assert meta["field_units"] == "ppm of B0"


def test_the_training_engine_reads_the_layout(written) -> None:
    subjects = pytest.importorskip("napari_fanet.tasks.subjects")
    seg = subjects.load_seg_subject(written / "ms" / "sub-0000")
    assert seg.image.shape == (3, *mni_grid(VOX)[0]) and seg.label is not None
    qsm = subjects.load_qsm_subject(written / "qsm" / "sub-0000")
    expected = simulate_qsm_subject(40, VOX).b0_dir
    np.testing.assert_allclose(qsm.b0_dir, expected, atol=1e-6)


def test_refuses_a_non_empty_folder(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"is not empty .*overwrite"):
        simulate_dataset(tmp_path, "ms", 1, voxel_size=VOX)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_refuses_a_file_as_output(tmp_path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(FileExistsError, match="is not a folder"):
        prepare_output_dir(target)


def test_overwrite_replaces_subjects_and_keeps_other_files(tmp_path) -> None:
    simulate_dataset(tmp_path, "qsm", 2, seed=1, voxel_size=VOX)
    (tmp_path / "notes.txt").write_text("keep me")
    simulate_dataset(tmp_path, "qsm", 1, seed=5, voxel_size=VOX, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.json", "notes.txt", "sub-0000"]
    assert json.loads((tmp_path / "sub-0000" / "meta.json").read_text())["seed"] == 5
    assert json.loads((tmp_path / "dataset.json").read_text())["n_subjects"] == 1


def test_generator_yields_progress_and_writes_dataset_json_last(tmp_path) -> None:
    events = iter_simulate_dataset(tmp_path / "out", "qsm", 2, seed=3, voxel_size=VOX)
    first = next(events)
    assert (first.index, first.total, first.seed) == (0, 2, 3)
    assert (first.folder / "chi.nii.gz").is_file()
    assert not (tmp_path / "out" / "dataset.json").exists()
    events.close()  # stopping leaves no dataset.json: the run is recognisably incomplete
    assert not (tmp_path / "out" / "dataset.json").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task": "ct"}, ValueError, "task must be one of qsm, ms"),
        ({"n_subjects": 0}, ValueError, "n_subjects must be at least 1"),
        ({"n_subjects": True}, TypeError, "n_subjects must be an integer"),
        ({"seed": -3}, ValueError, "seed must be a non-negative integer"),
        ({"seed": 2**63}, ValueError, r"seed \+ n_subjects must be at most 2\*\*63"),
        ({"voxel_size": 0.1}, ValueError, "voxel_size must be between"),
    ],
)
def test_bad_arguments_fail_before_touching_the_folder(tmp_path, kwargs, error, match) -> None:
    args = {"task": "ms", "n_subjects": 1, "seed": 0, "voxel_size": VOX, **kwargs}
    out = tmp_path / "never"
    with pytest.raises(error, match=match):
        iter_simulate_dataset(
            out, args["task"], args["n_subjects"], args["seed"], voxel_size=args["voxel_size"]
        )
    assert not out.exists()


def test_check_task() -> None:
    assert check_task("qsm") == "qsm"
    with pytest.raises(ValueError, match="task must be one of"):
        check_task("QSM")


def test_split_seeds_are_disjoint() -> None:
    assert SPLIT_SEEDS == {"train": 0, "val": 10_000, "test": 20_000, "sample": 90_000}
    assert split_seed("val", 3) == 10_003
    assert split_seed("sample") == 90_000
    with pytest.raises(ValueError, match="split must be one of"):
        split_seed("holdout")
    with pytest.raises(ValueError, match="index must be a non-negative integer"):
        split_seed("train", -1)
