"""The npe2 reader: NIfTI files as layers at their world position, never raising."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")

import nibabel as nib

from napari_fanet._reader import napari_get_reader, read_nifti, read_stack
from napari_fanet.io.layers import ECHO_TIMES_KEY, NIFTI_METADATA_KEY, oblique_warning
from napari_fanet.io.nifti import Orientation, save_volume

SHAPE = (6, 7, 5)
LAS = np.array([[-1.5, 0, 0, 10], [0, 2, 0, -6], [0, 0, 3, -4], [0, 0, 0, 1]], dtype=float)


def write(path, data, affine=LAS):
    if data.ndim > 4:  # save_volume writes 3D and 4D only
        nib.save(nib.Nifti1Image(data, affine), path)
    else:
        save_volume(path, data, affine, dtype=data.dtype)
    return str(path)


@pytest.fixture
def image_file(tmp_path):
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    return write(tmp_path / "sub-01_FLAIR.nii.gz", data)


@pytest.mark.parametrize(
    "path", ["a.nii", "a.nii.gz", "A.NII.GZ", ["a.nii.gz", "b.nii"], ("a.nii",)]
)
def test_get_reader_accepts_nifti_paths(path):
    assert napari_get_reader(path) is read_nifti


@pytest.mark.parametrize(
    "path", ["a.txt", "a.tif", "folder", "a.nii.zip", ["a.nii.gz", "b.tif"], [], None]
)
def test_get_reader_declines_other_paths(path):
    assert napari_get_reader(path) is None


def test_reader_returns_a_float32_image_at_its_world_position(image_file):
    ((data, kwargs, layer_type),) = napari_get_reader(image_file)(image_file)
    assert layer_type == "image"
    assert kwargs["name"] == "sub-01_FLAIR"
    assert data.dtype == np.float32
    # LAS -> RAS flips x: the displayed array is the source reversed along its first axis.
    source = np.asarray(nib.load(image_file).dataobj)
    np.testing.assert_array_equal(data, source[::-1])
    assert kwargs["scale"] == pytest.approx((1.5, 2.0, 3.0))
    assert kwargs["translate"] == pytest.approx((10 - 1.5 * (SHAPE[0] - 1), -6, -4))
    nifti = kwargs["metadata"][NIFTI_METADATA_KEY]
    np.testing.assert_array_equal(nifti["affine"], nib.load(image_file).affine)
    assert nifti["path"] == image_file
    assert isinstance(nifti["orientation"], Orientation)


@pytest.mark.parametrize(
    ("name", "data", "layer_type", "dtype"),
    [
        ("lesion_mask.nii.gz", np.array([0, 1], dtype=np.uint8), "labels", np.uint8),
        ("aseg.nii", np.array([0, 41], dtype=np.int16), "labels", np.int16),
        ("brain_mask.nii.gz", np.array([0.0, 1.0], dtype=np.float32), "labels", np.uint8),
        ("T1_labels.nii.gz", np.array([-1, 2], dtype=np.int16), "image", np.float32),
        ("roi_seg.nii.gz", np.array([0, 70000], dtype=np.int32), "image", np.float32),
        ("prob_mask.nii.gz", np.array([0.0, 0.5], dtype=np.float32), "image", np.float32),
        ("t1.nii.gz", np.array([0, 1], dtype=np.uint8), "image", np.float32),
    ],
)
def test_masks_open_as_labels_by_name_and_values(tmp_path, name, data, layer_type, dtype):
    volume = np.full(SHAPE, data[0], dtype=data.dtype)
    volume[2:4, 3:5, 1:3] = data[1]
    path = write(tmp_path / name, volume)
    ((layer_data, _, kind),) = read_nifti(path)
    assert kind == layer_type
    assert layer_data.dtype == dtype
    np.testing.assert_array_equal(np.unique(layer_data), np.unique(volume))


def test_a_list_with_a_mask_opens_file_by_file(tmp_path, image_file, caplog):
    mask = write(tmp_path / "mask.nii", np.ones(SHAPE, dtype=np.uint8))
    with caplog.at_level(logging.WARNING, logger="napari_fanet"):
        layers = read_nifti([image_file, mask])
    assert [(kw["name"], kind) for _, kw, kind in layers] == [
        ("sub-01_FLAIR", "image"),
        ("mask", "labels"),
    ]
    assert "opening 2 files one by one, not as a stack: mask.nii is a mask or label map" in (
        caplog.text
    )


def test_bids_echo_files_stack_in_echo_order_with_their_echo_times(tmp_path):
    paths = []
    for echo in (3, 1, 2):  # as a file dialog may list them
        name = f"sub-01_echo-{echo}_part-phase_MEGRE"
        data = np.full(SHAPE, 100 * echo, dtype=np.int16)
        paths.append(write(tmp_path / f"{name}.nii.gz", data))
        (tmp_path / f"{name}.json").write_text(json.dumps({"EchoTime": 0.004 * echo}))
    ((layer, kwargs, kind),) = read_nifti(paths)
    assert kind == "image" and layer.shape == (3, *SHAPE) and layer.dtype == np.float32
    assert [float(layer[e].mean()) for e in range(3)] == [100.0, 200.0, 300.0]
    assert kwargs["name"] == "sub-01_part-phase_MEGRE"
    assert kwargs["metadata"][ECHO_TIMES_KEY] == pytest.approx([4.0, 8.0, 12.0])
    assert kwargs["scale"] == pytest.approx((1.0, 1.5, 2.0, 3.0))


def test_a_stack_with_an_unusable_sidecar_opens_without_echo_times(tmp_path, caplog):
    paths = [write(tmp_path / f"e_echo-{e}_mag.nii.gz", np.ones(SHAPE, "f4")) for e in (1, 2)]
    (tmp_path / "e_echo-1_mag.json").write_text(json.dumps({"EchoTime": 0.004}))
    (tmp_path / "e_echo-2_mag.json").write_text(json.dumps({"RepetitionTime": 0.03}))
    with caplog.at_level(logging.WARNING, logger="napari_fanet"):
        ((layer, kwargs, _),) = read_nifti(paths)
    assert layer.shape == (2, *SHAPE) and ECHO_TIMES_KEY not in kwargs["metadata"]
    assert "echo times not read from the sidecars" in caplog.text and "EchoTime" in caplog.text


def test_read_stack_refuses_what_does_not_stack(tmp_path, image_file):
    four_d = write(tmp_path / "bold.nii.gz", np.zeros((*SHAPE, 2), dtype=np.float32))
    with pytest.raises(
        ValueError,
        match=r"stacked echo 2 \(bold.nii.gz\): expected a 3D volume, got 4D data of shape "
        r"\(6, 7, 5, 2\): a 4D file opens on its own, not in a stack$",
    ):
        read_stack([image_file, four_d])
    mask = write(tmp_path / "brain_mask.nii.gz", np.ones(SHAPE, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"brain_mask.nii.gz is a mask or label map"):
        read_stack([image_file, mask])
    other = write(tmp_path / "t1.nii.gz", np.ones((6, 7, 4), dtype=np.float32))
    with pytest.raises(
        ValueError, match=r"stacked echo 2 \(t1.nii.gz\).*expected the same voxel grid"
    ):
        read_stack([image_file, other])


def test_files_on_other_grids_do_not_stack(tmp_path, image_file, caplog):
    other = write(tmp_path / "t1.nii.gz", np.ones((6, 7, 4), dtype=np.float32))
    with caplog.at_level(logging.WARNING, logger="napari_fanet"):
        layers = read_nifti([image_file, other])
    assert [kw["name"] for _, kw, _ in layers] == ["sub-01_FLAIR", "t1"]
    assert "not as a stack" in caplog.text and "same voxel grid" in caplog.text


def test_two_images_stack_under_the_first_name(tmp_path, image_file):
    second = write(tmp_path / "t2.nii.gz", np.ones(SHAPE, dtype=np.float32))
    ((layer, kwargs, _),) = read_nifti([image_file, second])
    assert layer.shape == (2, *SHAPE) and kwargs["name"] == "sub-01_FLAIR (stack of 2)"
    assert ECHO_TIMES_KEY not in kwargs["metadata"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a NIfTI file", "expected a readable NIfTI image"),
        (b"", "expected a readable NIfTI image"),
        (None, "file not found"),
    ],
    ids=["corrupt", "empty", "missing"],
)
def test_unreadable_files_give_none_and_a_message(tmp_path, caplog, content, expected):
    path = tmp_path / "broken.nii"
    if content is not None:
        path.write_bytes(content)
    reader = napari_get_reader(str(path))
    with caplog.at_level(logging.WARNING, logger="napari_fanet"):
        assert reader(str(path)) is None
    assert f"napari-fanet cannot open {path}" in caplog.text
    assert expected in caplog.text


def test_a_4d_file_opens_with_its_volumes_on_the_first_axis(tmp_path):
    data = np.arange(np.prod(SHAPE) * 3, dtype=np.int16).reshape(*SHAPE, 3)
    path = write(tmp_path / "sub-01_part-phase_mask.nii.gz", data)  # "mask" in a 4D name
    ((layer, kwargs, layer_type),) = read_nifti(path)
    assert layer_type == "image" and layer.dtype == np.float32
    assert layer.shape == (3, *SHAPE)
    for echo in range(3):  # LAS -> RAS flips x, as for a 3D file
        np.testing.assert_array_equal(layer[echo], data[::-1, :, :, echo])
    assert kwargs["scale"] == pytest.approx((1.0, 1.5, 2.0, 3.0))
    assert kwargs["translate"] == pytest.approx((0.0, 10 - 1.5 * (SHAPE[0] - 1), -6, -4))
    assert ECHO_TIMES_KEY not in kwargs["metadata"]  # no sidecar


def test_echo_times_come_from_the_bids_sidecar(tmp_path, caplog):
    path = write(tmp_path / "phase.nii.gz", np.zeros((*SHAPE, 3), dtype=np.float32))
    (tmp_path / "phase.json").write_text(json.dumps({"EchoTime": [0.0049, 0.0098, 0.0147]}))
    ((_, kwargs, _),) = read_nifti(path)
    assert kwargs["metadata"][ECHO_TIMES_KEY] == pytest.approx([4.9, 9.8, 14.7])

    (tmp_path / "phase.json").write_text(json.dumps({"EchoTime": [0.004, 0.008]}))
    with caplog.at_level(logging.WARNING, logger="napari_fanet"):
        ((_, kwargs, _),) = read_nifti(path)  # the layer still opens
    assert ECHO_TIMES_KEY not in kwargs["metadata"]
    assert "phase.nii.gz: echo times not read from the sidecars" in caplog.text
    assert "2 EchoTime value(s) for 3 echoes" in caplog.text


def test_a_5d_file_gives_none_and_says_what_is_expected(tmp_path, caplog):
    path = write(tmp_path / "five.nii.gz", np.zeros((*SHAPE, 2, 2), dtype=np.float32))
    with caplog.at_level(logging.WARNING, logger="napari_fanet"):
        assert read_nifti(path) is None
    assert f"napari-fanet cannot open {path}" in caplog.text
    assert "expected a 3D or 4D volume" in caplog.text


def test_a_readable_file_beside_a_5d_one_still_opens(tmp_path, image_file):
    five = write(tmp_path / "five.nii.gz", np.zeros((*SHAPE, 2, 2), dtype=np.float32))
    layers = read_nifti([five, image_file])
    assert [kw["name"] for _, kw, _ in layers] == ["sub-01_FLAIR"]


def test_oblique_files_open_with_a_warning(tmp_path, monkeypatch):
    from napari.utils import notifications

    shown = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    oblique = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]) @ LAS
    path = write(tmp_path / "tilted.nii.gz", np.ones(SHAPE, dtype=np.float32), oblique)
    ((_, kwargs, _),) = read_nifti(path)
    degrees = kwargs["metadata"][NIFTI_METADATA_KEY]["oblique_degrees"]
    assert degrees == pytest.approx(15.0)
    assert shown == [oblique_warning("tilted", degrees)]

    shown.clear()
    read_nifti(write(tmp_path / "straight.nii.gz", np.ones(SHAPE, dtype=np.float32)))
    assert shown == []


def test_viewer_opens_echo_files_as_one_stack(make_napari_viewer, fanet_plugin, tmp_path):
    paths = [
        write(tmp_path / f"sub-01_echo-{e}_part-mag_MEGRE.nii.gz", np.ones(SHAPE, "f4") * e)
        for e in (1, 2)
    ]
    viewer = make_napari_viewer()
    (layer,) = viewer.open(paths, stack=True, plugin="napari-fanet")
    assert layer.name == "sub-01_part-mag_MEGRE" and layer.data.shape == (2, *SHAPE)
    assert len(viewer.open(paths, plugin="napari-fanet")) == 2  # not as a stack: file by file


def test_viewer_opens_nifti_through_the_plugin(make_napari_viewer, fanet_plugin, image_file):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(image_file, plugin="napari-fanet")
    assert layer.name == "sub-01_FLAIR"
    assert layer.source.reader_plugin == "napari-fanet"
    np.testing.assert_allclose(layer.scale, (1.5, 2.0, 3.0))
    np.testing.assert_allclose(layer.translate, (10 - 1.5 * (SHAPE[0] - 1), -6, -4))
    assert NIFTI_METADATA_KEY in layer.metadata
    # The world coordinate of source voxel (0, 0, 0) is where napari shows its value.
    world = (LAS @ [0, 0, 0, 1])[:3]
    assert layer.data[tuple(np.round(layer.world_to_data(world)).astype(int))] == 0
