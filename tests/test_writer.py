"""The npe2 writers: layers back to NIfTI on the source grid, with the source affine."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")

import nibabel as nib

from napari_fanet._reader import read_nifti
from napari_fanet._writer import write_image, write_labels
from napari_fanet.io.nifti import save_volume

SHAPE = (6, 7, 5)
# Flipped (x and y), anisotropic and translated: L, P, S axes of 1.5, 2 and 3 mm.
LPS = np.array([[-1.5, 0, 0, 30], [0, -2, 0, 40], [0, 0, 3, -20], [0, 0, 0, 1]], dtype=float)


def source_file(tmp_path, name="flair.nii.gz"):
    data = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    path = tmp_path / name
    save_volume(path, data, LPS)
    return str(path), data


def meta_of(layer_kwargs):
    """The layer state napari passes a writer, for a layer built from ``layer_kwargs``."""
    return {"scale": (1.0, 1.0, 1.0), "translate": (0.0, 0.0, 0.0), **layer_kwargs}


def test_image_round_trip_restores_data_and_affine(tmp_path):
    path, data = source_file(tmp_path)
    ((layer_data, kwargs, _),) = read_nifti(path)
    out = tmp_path / "copy.nii.gz"
    assert write_image(str(out), layer_data, meta_of(kwargs)) == [str(out)]
    img = nib.load(out)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.affine, nib.load(path).affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)


def test_a_4d_layer_round_trip_restores_the_volumes_last_file(tmp_path):
    data = np.random.default_rng(1).standard_normal((*SHAPE, 3)).astype(np.float32)
    path = tmp_path / "phase.nii.gz"
    save_volume(path, data, LPS)
    ((layer_data, kwargs, _),) = read_nifti(str(path))
    assert layer_data.shape[0] == 3  # echoes first in napari
    out = tmp_path / "copy.nii.gz"
    write_image(str(out), layer_data, meta_of(kwargs))
    img = nib.load(out)
    np.testing.assert_array_equal(img.affine, LPS)
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)


@pytest.mark.parametrize(
    ("values", "stored"),
    [
        (np.array([False, True]), np.uint8),
        (np.array([0, 7], dtype=np.int64), np.uint8),
        (np.array([0, 300], dtype=np.int64), np.int16),
        (np.array([0, 70000], dtype=np.uint32), np.int32),
    ],
)
def test_labels_are_saved_as_the_smallest_integer_type(tmp_path, values, stored):
    path, _ = source_file(tmp_path)
    ((layer_data, kwargs, _),) = read_nifti(path)
    labels = np.where(layer_data > 0, values[1], values[0])
    out = tmp_path / "labels.nii.gz"
    write_labels(str(out), labels, meta_of(kwargs))
    img = nib.load(out)
    assert img.get_data_dtype() == stored
    np.testing.assert_array_equal(img.affine, nib.load(path).affine)
    # The source is LPS: x and y of the displayed (RAS) labels are reversed on disk.
    np.testing.assert_array_equal(np.asarray(img.dataobj), labels[::-1, ::-1])


def test_layers_without_nifti_metadata_use_scale_and_translate(tmp_path):
    data = np.ones(SHAPE, dtype=np.float32)
    out = tmp_path / "plain.nii"
    write_image(str(out), data, {"name": "plain", "scale": [2, 3, 4], "translate": [1, 2, 3]})
    expected = np.array([[2, 0, 0, 1], [0, 3, 0, 2], [0, 0, 4, 3], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_array_equal(nib.load(out).affine, expected)
    assert out.read_bytes()[:4] != b"\x1f\x8b\x08\x00"  # .nii is not gzipped


def test_a_path_without_nifti_suffix_gets_nii_gz(tmp_path):
    written = write_labels(str(tmp_path / "mask"), np.zeros(SHAPE, dtype=np.uint8), {})
    assert written == [str(tmp_path / "mask.nii.gz")]
    assert nib.load(written[0]).shape == SHAPE


def test_writers_refuse_what_nifti_cannot_hold(tmp_path):
    out = str(tmp_path / "x.nii.gz")
    with pytest.raises(ValueError, match=r"flat: expected 3D layer data \(x, y, z\).*got 2D"):
        write_image(out, np.zeros((6, 7)), {"name": "flat"})
    with pytest.raises(ValueError, match=r"photo: expected a scalar .* got an RGB layer"):
        write_image(out, np.zeros((*SHAPE, 3)), {"name": "photo", "rgb": True})
    with pytest.raises(ValueError, match="blobs: expected integer labels, got float64 data"):
        write_labels(out, np.zeros(SHAPE), {"name": "blobs"})


def test_multiscale_layers_save_their_full_resolution_level(tmp_path):
    levels = [np.ones(SHAPE, dtype=np.float32), np.ones((3, 3, 2), dtype=np.float32)]
    out = tmp_path / "pyramid.nii.gz"
    write_image(str(out), levels, {"name": "pyramid", "multiscale": True})
    assert nib.load(out).shape == SHAPE


def test_viewer_round_trip_thresholded_labels_line_up_with_the_source(
    make_napari_viewer, fanet_plugin, tmp_path
):
    """Open a flipped, anisotropic, translated NIfTI through the plugin, threshold it into a
    labels layer with the source's metadata, save it through the plugin writer: the file has
    the source affine and lines up with the source voxel for voxel."""
    path, data = source_file(tmp_path)
    viewer = make_napari_viewer()
    (image,) = viewer.open(path, plugin="napari-fanet")
    labels = viewer.add_labels(
        (image.data > 0.5).astype(np.uint8),
        name="bright",
        scale=image.scale,
        translate=image.translate,
        metadata=image.metadata,
    )
    viewer.layers.selection = {labels}
    out = tmp_path / "bright.nii.gz"
    written = viewer.layers.save(str(out), selected=True, plugin="napari-fanet")
    assert written == [str(out)]

    img = nib.load(out)
    np.testing.assert_array_equal(img.affine, nib.load(path).affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj), (data > 0.5).astype(np.uint8))
    assert img.get_data_dtype() == np.uint8
