"""layer_io: NIfTI volumes as napari layer data (RAS+ display, world placement) and back."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from napari_fanet.io.layers import (
    NIFTI_METADATA_KEY,
    OBLIQUE_TOLERANCE_DEGREES,
    layer_to_nifti,
    oblique_degrees,
    oblique_warning,
    volume_to_layer_data,
)
from napari_fanet.io.nifti import Orientation, Volume, load_volume, save_volume

SHAPE = (6, 7, 5)


def rotation(axis: int, degrees: float) -> np.ndarray:
    """A 4x4 rotation about one world axis, written out by hand."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    out = np.eye(4)
    out[i, i], out[i, j], out[j, i], out[j, j] = c, -s, s, c
    return out


def affine_from(columns, offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A 4x4 affine whose 3x3 block has the given columns (voxel axes in world space)."""
    out = np.eye(4)
    out[:3, :3] = np.asarray(columns, dtype=float).T
    out[:3, 3] = offset
    return out


RAS = affine_from([[2, 0, 0], [0, 2, 0], [0, 0, 2]], (-5, -6, -4))
LAS = affine_from([[-1.5, 0, 0], [0, 2, 0], [0, 0, 3]], (10, -6, -4))
LPS = affine_from([[-1, 0, 0], [0, -1.2, 0], [0, 0, 2.5]], (4, 9, -7))
PERMUTED = affine_from([[0, 0, 3], [-1, 0, 0], [0, 2, 0]], (2, -3, 11))  # axes: S, L, A
OBLIQUE = rotation(0, 20) @ rotation(2, 12) @ affine_from(np.diag([1.0, 1.5, 2.5]), (3, 4, 5))
AFFINES = {"RAS": RAS, "LAS": LAS, "LPS": LPS, "permuted": PERMUTED, "oblique": OBLIQUE}


# -- oblique_degrees ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("affine", "expected"),
    [
        (np.eye(4), 0.0),
        (LAS, 0.0),
        (PERMUTED, 0.0),
        (rotation(2, 10), 10.0),
        (rotation(0, 33) @ np.diag([0.5, 2.0, 4.0, 1.0]), 33.0),  # voxel size does not matter
        (rotation(1, -25), 25.0),
        (rotation(2, 60), 30.0),  # the rotated x axis is closest to y
        (rotation(2, 90) @ np.diag([-1.0, 1.0, 1.0, 1.0]), 0.0),
    ],
)
def test_oblique_degrees_of_hand_built_rotations(affine, expected):
    assert oblique_degrees(affine) == pytest.approx(expected, abs=1e-9)


def test_oblique_degrees_of_two_rotations_is_the_largest_axis_angle():
    # Rx(20) Rz(12): voxel x -> (cos12, sin12 cos20, sin12 sin20), 12 degrees off x; voxel y ->
    # (-sin12, cos12 cos20, cos12 sin20), arccos(cos12 cos20) off y; voxel z, 20 degrees off z.
    c = np.cos(np.radians([12.0, 20.0]))
    assert oblique_degrees(OBLIQUE) == pytest.approx(np.degrees(np.arccos(c[0] * c[1])))


def test_oblique_degrees_rejects_a_singular_affine():
    with pytest.raises(ValueError, match="non-zero voxel axes"):
        oblique_degrees(np.diag([1.0, 0.0, 1.0, 1.0]))


def test_oblique_warning_says_what_is_shown_and_what_is_kept():
    text = oblique_warning("flair", 12.34)
    assert text.startswith("flair:")
    assert "12.3 degrees" in text
    assert "axis-aligned" in text and "not displayed" in text
    assert "layer.metadata" in text and "restored when the layer is saved" in text


# -- volume_to_layer_data ----------------------------------------------------------------------


def write(path, data, affine):
    save_volume(path, data, affine)
    return path


@pytest.mark.parametrize("key", AFFINES)
def test_layer_tuple_carries_the_nifti_contract(tmp_path, key):
    affine = AFFINES[key]
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    volume = load_volume(write(tmp_path / "t1.nii.gz", data, affine))
    layer_data, kwargs, layer_type = volume_to_layer_data(volume, name="T1", colormap="gray")

    assert layer_type == "image"
    assert kwargs["name"] == "T1" and kwargs["colormap"] == "gray"
    nifti = kwargs["metadata"][NIFTI_METADATA_KEY]
    assert set(nifti) == {
        "affine",
        "header",
        "path",
        "orientation",
        "canonical_affine",
        "oblique_degrees",
    }
    np.testing.assert_array_equal(nifti["affine"], nib.load(tmp_path / "t1.nii.gz").affine)
    assert nifti["affine"].dtype == np.float64
    assert isinstance(nifti["header"], nib.Nifti1Header)
    assert nifti["header"] is not volume.header
    assert nifti["path"] == str(tmp_path / "t1.nii.gz")
    assert isinstance(nifti["orientation"], Orientation)
    assert nifti["orientation"].shape == SHAPE
    assert layer_data.shape == nifti["orientation"].canonical_shape
    # The displayed grid is RAS+: its affine has positive diagonal axes (up to obliquity).
    canonical = nifti["canonical_affine"]
    assert np.all(np.argmax(np.abs(canonical[:3, :3]), axis=0) == [0, 1, 2])
    assert np.all(np.diag(canonical[:3, :3]) > 0)
    np.testing.assert_allclose(kwargs["scale"], np.linalg.norm(canonical[:3, :3], axis=0))
    np.testing.assert_allclose(kwargs["translate"], canonical[:3, 3])
    assert (nifti["oblique_degrees"] > OBLIQUE_TOLERANCE_DEGREES) == (key == "oblique")


@pytest.mark.parametrize("key", ["LAS", "LPS", "permuted"])
def test_display_puts_every_voxel_at_its_world_coordinate(key):
    affine = AFFINES[key]
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)  # every value unique
    layer_data, kwargs, _ = volume_to_layer_data(Volume(data, affine), name="v")
    scale, translate = np.asarray(kwargs["scale"]), np.asarray(kwargs["translate"])
    for index in [(0, 0, 0), (5, 6, 4), (1, 2, 3), (4, 0, 2)]:
        world = (affine @ [*index, 1.0])[:3]
        (shown,) = np.argwhere(layer_data == data[index])
        np.testing.assert_allclose(scale * shown + translate, world, atol=1e-9)


def test_metadata_and_kwargs_are_merged():
    volume = Volume(np.zeros(SHAPE, dtype=np.float32), RAS)
    _, kwargs, _ = volume_to_layer_data(
        volume, name="x", metadata={"b0_dir": [0, 0, 1]}, opacity=0.5
    )
    assert kwargs["opacity"] == 0.5
    assert kwargs["metadata"]["b0_dir"] == [0, 0, 1]
    assert kwargs["metadata"][NIFTI_METADATA_KEY]["path"] is None
    assert kwargs["metadata"][NIFTI_METADATA_KEY]["header"] is None


@pytest.mark.parametrize(
    ("values", "expected_dtype"),
    [
        (np.array([0, 1], dtype=bool), np.uint8),
        (np.array([0, 3], dtype=np.int64), np.int64),
        (np.array([0.0, 2.0], dtype=np.float32), np.uint8),
        (np.array([0.0, 300.0]), np.uint16),
    ],
)
def test_labels_layers_get_integer_data(values, expected_dtype):
    data = np.zeros(SHAPE, dtype=values.dtype)
    data[:2] = values[1]
    layer_data, _, layer_type = volume_to_layer_data(
        Volume(data, LAS), name="mask", layer_type="labels"
    )
    assert layer_type == "labels"
    assert layer_data.dtype == expected_dtype
    assert set(np.unique(layer_data)) == {0, int(values[1])}


def test_labels_refuse_fractional_values():
    with pytest.raises(ValueError, match="mask: expected integer values for a labels layer"):
        volume_to_layer_data(Volume(np.full(SHAPE, 0.5), RAS), name="mask", layer_type="labels")


def test_layer_type_and_dimensionality_are_checked():
    with pytest.raises(ValueError, match=r"layer_type must be one of .* got 'points'"):
        volume_to_layer_data(Volume(np.zeros(SHAPE), RAS), name="x", layer_type="points")
    with pytest.raises(
        ValueError, match=r"x: expected a 3D volume for a labels layer, got 4D data of shape"
    ):
        volume_to_layer_data(Volume(np.zeros((*SHAPE, 2)), RAS), name="x", layer_type="labels")


@pytest.mark.parametrize("key", AFFINES)
def test_a_4d_volume_shows_its_volumes_first_each_placed_as_a_3d_file(key):
    rng = np.random.default_rng(1)
    data = rng.standard_normal((*SHAPE, 3)).astype(np.float32)  # (X, Y, Z, echoes)
    layer_data, kwargs, kind = volume_to_layer_data(Volume(data, AFFINES[key]), name="phase")
    assert kind == "image"
    for echo in range(3):
        single, single_kwargs, _ = volume_to_layer_data(
            Volume(data[..., echo], AFFINES[key]), name="echo"
        )
        np.testing.assert_array_equal(layer_data[echo], single)
    assert layer_data.shape == (3, *single.shape) and layer_data.flags.c_contiguous
    assert kwargs["scale"] == (1.0, *single_kwargs["scale"])
    assert kwargs["translate"] == (0.0, *single_kwargs["translate"])
    nifti = kwargs["metadata"][NIFTI_METADATA_KEY]
    assert nifti["orientation"] == single_kwargs["metadata"][NIFTI_METADATA_KEY]["orientation"]


# -- layer_to_nifti and the file round trip ----------------------------------------------------


@pytest.mark.parametrize("key", AFFINES)
@pytest.mark.parametrize("kind", ["image", "labels"])
def test_file_to_layer_to_file_round_trip_is_exact(tmp_path, key, kind):
    rng = np.random.default_rng(0)
    if kind == "labels":
        data = rng.integers(0, 4, SHAPE).astype(np.uint8)
    else:
        data = rng.standard_normal(SHAPE).astype(np.float32)
    source = write(tmp_path / "source.nii.gz", data, AFFINES[key])
    volume = load_volume(source, dtype=None)
    layer_data, kwargs, _ = volume_to_layer_data(volume, name="s", layer_type=kind)

    array, reference = layer_to_nifti(
        layer_data, kwargs["metadata"], kwargs["scale"], kwargs["translate"]
    )
    assert isinstance(reference, Volume)
    out = save_volume(tmp_path / "out.nii.gz", array, reference)

    src, new = nib.load(source), nib.load(out)
    np.testing.assert_array_equal(np.asarray(new.dataobj), np.asarray(src.dataobj))
    assert new.get_data_dtype() == src.get_data_dtype()
    np.testing.assert_array_equal(new.affine, src.affine)
    np.testing.assert_array_equal(new.header.get_zooms(), src.header.get_zooms())


@pytest.mark.parametrize("key", AFFINES)
def test_4d_file_to_layer_to_file_round_trip_is_exact(tmp_path, key):
    data = np.random.default_rng(2).integers(-4096, 4096, (*SHAPE, 4)).astype(np.int16)
    source = write(tmp_path / "phase.nii.gz", data, AFFINES[key])
    volume = load_volume(source, allow_4d=True, dtype=None)
    layer_data, kwargs, _ = volume_to_layer_data(volume, name="p")

    array, reference = layer_to_nifti(
        layer_data, kwargs["metadata"], kwargs["scale"], kwargs["translate"]
    )
    assert isinstance(reference, Volume) and array.shape == (*SHAPE, 4)
    out = save_volume(tmp_path / "out.nii.gz", array, reference)

    src, new = nib.load(source), nib.load(out)
    np.testing.assert_array_equal(np.asarray(new.dataobj), np.asarray(src.dataobj))
    assert new.get_data_dtype() == src.get_data_dtype()
    np.testing.assert_array_equal(new.affine, src.affine)


def test_a_4d_layer_without_fitting_metadata_is_written_volumes_last():
    data = np.arange(2 * 6 * 7 * 5, dtype=np.float32).reshape(2, 6, 7, 5)  # (V, x, y, z)
    array, affine = layer_to_nifti(data, {}, (1, 2, 3, 4), (0, 10, -20, 30))
    np.testing.assert_array_equal(array, np.moveaxis(data, 0, -1))
    np.testing.assert_array_equal(np.diag(affine), (2, 3, 4, 1))
    np.testing.assert_array_equal(affine[:3, 3], (10, -20, 30))


def test_a_layer_with_a_leading_size_1_axis_is_squeezed():
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    layer_data, kwargs, _ = volume_to_layer_data(Volume(data, LPS), name="v")
    array, reference = layer_to_nifti(layer_data[None], kwargs["metadata"], (1, *kwargs["scale"]))
    np.testing.assert_array_equal(array, data)
    np.testing.assert_array_equal(reference.affine, LPS)


def test_without_fitting_metadata_the_affine_comes_from_scale_and_translate():
    data = np.ones(SHAPE, dtype=np.float32)
    expected = np.diag([2.0, 3.0, 4.0, 1.0])
    expected[:3, 3] = (10, -20, 30)

    array, affine = layer_to_nifti(data, {}, (2, 3, 4), (10, -20, 30))
    assert array is data or np.shares_memory(array, data)
    np.testing.assert_array_equal(affine, expected)

    # Metadata of a bigger volume (the layer was cropped): scale/translate win.
    _, kwargs, _ = volume_to_layer_data(Volume(np.zeros((8, 8, 8)), LAS), name="big")
    array, affine = layer_to_nifti(data, kwargs["metadata"], (2, 3, 4), (10, -20, 30))
    np.testing.assert_array_equal(affine, expected)

    # Not our metadata at all, and napari's defaults when nothing is given.
    _, affine = layer_to_nifti(data, {NIFTI_METADATA_KEY: "elsewhere"}, None, None)
    np.testing.assert_array_equal(affine, np.eye(4))


@pytest.mark.parametrize(
    "shape", [(6, 7), (1, 1, 6, 7, 5), (2, 3, 6, 7, 5)], ids=["2D", "5D", "5D+"]
)
def test_layer_to_nifti_refuses_data_neither_3d_nor_4d(shape):
    with pytest.raises(
        ValueError,
        match=r"expected 3D layer data \(x, y, z\), or 4D \(volumes, x, y, z\).*got \d+D data",
    ):
        layer_to_nifti(np.zeros(shape), None)


def test_layer_to_nifti_refuses_a_short_scale():
    with pytest.raises(ValueError, match=r"expected a scale of 3 values \(x, y, z\), got"):
        layer_to_nifti(np.zeros(SHAPE), None, (1.0, 2.0))
