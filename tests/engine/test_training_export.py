"""Exporting viewer layers to a run folder in the trainer's layout, with the source affine."""

from __future__ import annotations

import json
from datetime import datetime

import nibabel as nib
import numpy as np
import pytest

from napari_fanet.engine.training_export import (
    SUBJECT_NAME,
    default_runs_root,
    export_qsm_case,
    export_seg_case,
    new_run_folder,
    validation_folder,
)
from napari_fanet.io.layers import LayerVolume, volume_to_layer_data
from napari_fanet.io.nifti import load_volume
from napari_fanet.tasks.subjects import load_qsm_subject, load_seg_subject

# voxel axes point to S, L, A (a permuted, flipped grid: the canonical display differs from it)
PERMUTED = np.array([[0, -4.0, 0, 50], [0, 0, 4.0, -20], [4.0, 0, 0, 7], [0, 0, 0, 1]])
SEG_FILES = {"T1": "t1", "T2": "t2", "FLAIR": "flair", "brain mask": "brain_mask"}


def _layer(path, name, kind="image"):
    """A layer as napari-fanet's reader makes it (canonical data, metadata, scale, translate)."""
    data, kwargs, _ = volume_to_layer_data(load_volume(path), name=name, layer_type=kind)
    return LayerVolume(name, data, kwargs["scale"], kwargs["translate"], kwargs["metadata"])


@pytest.fixture
def seg_case(tmp_path, write_ms_subject):
    folder = write_ms_subject(tmp_path / "source" / "sub-0", seed=3, affine=PERMUTED)
    layers = {
        name: _layer(folder / f"{stem}.nii.gz", name, "labels" if "mask" in name else "image")
        for name, stem in SEG_FILES.items()
    }
    layers["lesions"] = _layer(folder / "lesion_mask.nii.gz", "lesions", "labels")
    return folder, layers


def _export(run, layers, annotation=None, mode="full mask", **changes):
    roles = {k: layers[k] for k in ("T1", "T2", "FLAIR")} | changes
    return export_seg_case(
        run,
        roles["T1"],
        roles["T2"],
        roles["FLAIR"],
        annotation or layers["lesions"],
        mode,
        roles.get("brain mask", layers["brain mask"]),
    )


def test_seg_export_writes_the_source_grid_and_affine(tmp_path, seg_case):
    source, layers = seg_case
    summary = _export(tmp_path / "run", layers)
    out = tmp_path / "run" / "data" / SUBJECT_NAME
    for stem in ("t1", "t2", "flair", "lesion_mask", "brain_mask"):
        written, original = nib.load(out / f"{stem}.nii.gz"), nib.load(source / f"{stem}.nii.gz")
        np.testing.assert_allclose(written.affine, PERMUTED)
        np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj))
    a, b = load_seg_subject(out), load_seg_subject(source)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    lesion = int(np.count_nonzero(np.asarray(nib.load(source / "lesion_mask.nii.gz").dataobj)))
    assert summary["lesion"] == lesion and summary["ignored"] == 0
    assert summary["background"] == a.label.size - lesion
    assert summary["layers"]["annotation"] == "lesions"
    assert json.loads((tmp_path / "run" / "export.json").read_text()) == summary


def test_scribbles_are_exported_with_unpainted_voxels_ignored(tmp_path, seg_case):
    _, layers = seg_case
    canonical = np.zeros(np.shape(layers["T1"].data), dtype=np.uint8)
    canonical[5, 6, 7] = 1  # lesion
    canonical[1, 2, 3] = canonical[1, 2, 4] = 2  # not lesion
    scribbles = LayerVolume("scribbles", canonical, metadata=layers["lesions"].metadata)
    summary = _export(tmp_path / "run", layers, scribbles, "scribbles")
    label = load_seg_subject(tmp_path / "run" / "data" / SUBJECT_NAME).label  # canonical again
    expected = np.full(canonical.shape, 255, dtype=np.uint8)
    expected[5, 6, 7], expected[1, 2, 3], expected[1, 2, 4] = 1, 0, 0
    np.testing.assert_array_equal(label, expected)
    assert (summary["lesion"], summary["background"]) == (1, 2)
    assert summary["annotation_mode"] == "scribbles"


def test_plain_arrays_are_written_with_scale_and_translate(tmp_path):
    rng = np.random.default_rng(0)
    # skull-stripped: 0 on the array's faces
    images = [np.pad(rng.random((4, 5, 3)), 1).astype(np.float32) for _ in range(3)]
    grid = dict(scale=(2.0, 2.0, 3.0), translate=(10.0, -4.0, 1.0))
    t1, t2, flair = (LayerVolume(n, d, **grid) for n, d in zip("abc", images, strict=True))
    mask = np.zeros((6, 7, 5), dtype=np.uint8)
    mask[2:4, 3, 2] = 1
    export_seg_case(tmp_path / "run", t1, t2, flair, LayerVolume("m", mask), "full mask")
    written = nib.load(tmp_path / "run" / "data" / SUBJECT_NAME / "t2.nii.gz")
    np.testing.assert_allclose(
        written.affine, [[2, 0, 0, 10], [0, 2, 0, -4], [0, 0, 3, 1], [0] * 3 + [1]]
    )
    np.testing.assert_array_equal(np.asarray(written.dataobj), images[1])
    assert not (tmp_path / "run" / "data" / SUBJECT_NAME / "brain_mask.nii.gz").exists()


def test_flair_only_export_for_a_model_trained_for_missing_modalities(tmp_path, seg_case):
    _, layers = seg_case
    export_seg_case(
        tmp_path / "run", None, None, layers["FLAIR"], layers["lesions"], "full mask",
        model="fanet-seg",
    )  # fmt: skip
    out = tmp_path / "run" / "data" / SUBJECT_NAME
    assert sorted(p.name for p in out.iterdir()) == ["flair.nii.gz", "lesion_mask.nii.gz"]
    np.testing.assert_allclose(nib.load(out / "flair.nii.gz").affine, PERMUTED)  # FLAIR's grid
    subject = load_seg_subject(out)
    assert subject.modalities == ("flair",)
    assert not subject.image[:2].any()  # T1 and T2 channels are zero, as in prediction


def test_a_missing_t1_is_refused_for_a_model_that_needs_every_modality(tmp_path, seg_case):
    _, layers = seg_case
    with pytest.raises(ValueError, match="cannot export: choose a T1 layer"):
        export_seg_case(
            tmp_path / "run", None, layers["T2"], layers["FLAIR"], layers["lesions"],
            "full mask",
        )  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_flair_that_is_not_skull_stripped_needs_a_brain_mask(tmp_path, seg_case):
    _, layers = seg_case
    flair = layers["FLAIR"]
    noisy = LayerVolume(
        "FLAIR", np.asarray(flair.data) + 5.0, flair.scale, flair.translate, flair.metadata
    )
    with pytest.raises(
        ValueError, match=r"^cannot export: the FLAIR does not look skull-stripped: 6 of the 6"
    ):
        export_seg_case(
            tmp_path / "run", None, None, noisy, layers["lesions"], "full mask",
            model="fanet-seg",
        )  # fmt: skip
    assert not (tmp_path / "run").exists()
    export_seg_case(
        tmp_path / "run", None, None, noisy, layers["lesions"], "full mask",
        layers["brain mask"], model="fanet-seg",
    )  # fmt: skip
    assert (tmp_path / "run" / "data" / SUBJECT_NAME / "brain_mask.nii.gz").exists()


def _bad(layers, name, data):
    return LayerVolume(name, data, layers["T1"].scale, metadata=layers["T1"].metadata)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"annotation": "empty"}, "annotation 'bad' is empty"),
        ({"annotation": "small"}, r"annotation \(layer 'bad'\) has shape \(3, 3, 3\)"),
        ({"annotation": "2d"}, "annotation .* must be a 3D volume, got 2D"),
        ({"T2": "nan"}, r"T2 \(layer 'bad'\) contains NaN"),
        ({"FLAIR": "small"}, "inputs must share one voxel grid"),
        ({"T1": "2d"}, r"T1 \(layer 'bad'\) is 2D"),
    ],
)
def test_bad_inputs_are_refused_before_anything_is_written(tmp_path, seg_case, change, match):
    _, layers = seg_case
    shape = np.shape(layers["T1"].data)
    arrays = {
        "empty": np.zeros(shape, np.uint8),
        "small": np.zeros((3, 3, 3), np.uint8),
        "2d": np.zeros(shape[:2], np.uint8),
        "nan": np.full(shape, np.nan, np.float32),
    }
    ((role, kind),) = change.items()
    bad = _bad(layers, "bad", arrays[kind])
    with pytest.raises(ValueError, match=match):
        if role == "annotation":
            _export(tmp_path / "run", layers, bad)
        else:
            _export(tmp_path / "run", layers, **{role: bad})
    assert not (tmp_path / "run" / "data").exists()


def test_a_run_folder_is_exported_once(tmp_path, seg_case):
    _, layers = seg_case
    _export(tmp_path / "run", layers)
    with pytest.raises(FileExistsError, match="export into a new run folder"):
        _export(tmp_path / "run", layers)


def test_qsm_export_keeps_the_affine_and_the_b0_direction(tmp_path, write_qsm_subject):
    source = write_qsm_subject(tmp_path / "qsm" / "sub-0", 5, PERMUTED, b0_dir=(0.2, 0.1, 1.0))
    original = load_qsm_subject(source)  # b0_dir in canonical array axes = the displayed axes
    field = _layer(source / "local_field.nii.gz", "field")
    chi = _layer(source / "chi.nii.gz", "chi")
    mask = _layer(source / "brain_mask.nii.gz", "mask", "labels")
    summary = export_qsm_case(tmp_path / "run", field, chi, mask, tuple(original.b0_dir))
    out = tmp_path / "run" / "data" / SUBJECT_NAME
    for stem in ("local_field", "chi", "brain_mask"):
        np.testing.assert_allclose(nib.load(out / f"{stem}.nii.gz").affine, PERMUTED)
    exported = load_qsm_subject(out)
    np.testing.assert_allclose(exported.b0_dir, original.b0_dir, atol=1e-9)
    np.testing.assert_array_equal(exported.field, original.field)
    np.testing.assert_array_equal(exported.chi, original.chi)
    assert summary["brain_voxels"] == int(original.mask.sum())
    assert summary["layers"] == {
        "local field": "field",
        "reference susceptibility": "chi",
        "brain mask": "mask",
    }


@pytest.mark.parametrize(
    ("b0", "match"), [((0, 0, 0), "not all zero"), ((1, 0), "3 numbers; got 2")]
)
def test_qsm_export_refuses_a_bad_b0(tmp_path, b0, match):
    field = LayerVolume("f", np.ones((4, 4, 4), np.float32))
    mask = LayerVolume("m", np.ones((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=match):
        export_qsm_case(tmp_path / "run", field, field, mask, b0)


def test_qsm_export_needs_a_brain_mask_and_a_matching_reference(tmp_path):
    field = LayerVolume("f", np.ones((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="choose a brain mask layer"):
        export_qsm_case(tmp_path / "run", field, field, None)
    mask = LayerVolume("m", np.ones((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"reference susceptibility \(layer 'c'\) has shape"):
        export_qsm_case(tmp_path / "run", field, LayerVolume("c", np.ones((4, 4, 5))), mask)
    with pytest.raises(ValueError, match=r"reference susceptibility \(layer 'c'\) contains NaN"):
        export_qsm_case(
            tmp_path / "run", field, LayerVolume("c", np.full((4, 4, 4), np.nan)), mask
        )
    assert not (tmp_path / "run").exists()


def test_validation_choices(tmp_path, write_ms_subject):
    data = tmp_path / "run" / "data"
    assert validation_folder("none", data, "segmentation") is None
    assert validation_folder("same case", data, "segmentation") == data
    write_ms_subject(tmp_path / "val" / "sub-0", seed=1)
    assert validation_folder("folder", data, "segmentation", tmp_path / "val") == tmp_path / "val"
    with pytest.raises(ValueError, match=r"validation folder: .* holds no qsm subjects"):
        validation_folder("folder", data, "qsm", tmp_path / "val")
    with pytest.raises(ValueError, match="validation folder not found"):
        validation_folder("folder", data, "segmentation", tmp_path / "missing")
    with pytest.raises(ValueError, match="validation must be one of"):
        validation_folder("test set", data, "segmentation")


def test_new_run_folders_are_unique_and_dated(tmp_path, monkeypatch):
    now = datetime(2026, 11, 24, 9, 5, 7)
    first, second = new_run_folder(tmp_path, now), new_run_folder(tmp_path, now)
    assert (first.name, second.name) == ("20261124-090507", "20261124-090507-2")
    assert first.is_dir() and second.is_dir()
    monkeypatch.setenv("NAPARI_FANET_RUNS", str(tmp_path / "runs"))
    assert default_runs_root() == tmp_path / "runs"
    assert new_run_folder(now=now).parent == tmp_path / "runs"
    for i in range(3, 1000):
        (tmp_path / f"20261124-090507-{i}").mkdir()
    with pytest.raises(FileExistsError, match="cannot find a free run folder name"):
        new_run_folder(tmp_path, now)
