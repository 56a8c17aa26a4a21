"""LayerVolume: a layer's name, array and grid, as the engine takes it (no Qt, no napari)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from napari_fanet.io.layers import (
    NIFTI_METADATA_KEY,
    LayerVolume,
    layer_to_nifti,
    volume_to_layer_data,
)
from napari_fanet.io.nifti import Volume

AFFINE = np.array([[0, -4.0, 0, 50], [0, 0, 4.0, -20], [4.0, 0, 0, 7], [0, 0, 0, 1]])


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        ((2.0, 2.0, 3.0), (2.0, 2.0, 3.0)),
        ([1, 1, 2], (1.0, 1.0, 2.0)),
        (np.array([0.5, 0.75, 1.0]), (0.5, 0.75, 1.0)),
        ((np.float64(2.0), np.float64(0.0), 2.0), (2.0, 0.0, 2.0)),  # kept: checks come later
        ((1.0, 2.0, 2.0, 3.0), (1.0, 2.0, 2.0, 3.0)),  # (E, X, Y, Z) phase: one per axis
    ],
)
def test_voxel_size_is_the_scale_as_floats(scale, expected):
    size = LayerVolume("t1", np.zeros((4, 4, 4)), scale).voxel_size()
    assert size == expected
    assert all(type(v) is float for v in size)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((4, 5, 6), (1.0, 1.0, 1.0)),
        ((3, 4, 5, 6), (1.0, 1.0, 1.0, 1.0)),  # one per axis of a 4D phase
        ((4, 5), (1.0, 1.0, 1.0)),  # at least 3: the spatial axes the engine reads
        ((), (1.0, 1.0, 1.0)),
    ],
)
def test_voxel_size_is_one_per_axis_when_the_scale_is_unknown(shape, expected):
    assert LayerVolume("x", np.zeros(shape)).voxel_size() == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"scale": None, "translate": None, "metadata": None}),
        (
            {"scale": (2.0, 2.0, 2.0), "translate": (1.0, 2.0, 3.0)},
            {"scale": (2.0, 2.0, 2.0), "translate": (1.0, 2.0, 3.0), "metadata": None},
        ),
        (
            {"metadata": {"nifti": {"affine": "kept as given"}}},
            {"scale": None, "translate": None, "metadata": {"nifti": {"affine": "kept as given"}}},
        ),
    ],
)
def test_it_carries_what_it_is_given(fields, expected):
    data = np.arange(8).reshape(2, 2, 2)
    volume = LayerVolume("FLAIR", data, **fields)
    assert volume.name == "FLAIR"
    assert volume.data is data  # not copied
    assert {k: getattr(volume, k) for k in expected} == expected


@pytest.mark.parametrize("field", ["name", "data", "scale", "translate", "metadata"])
def test_it_is_frozen(field):
    volume = LayerVolume("t1", np.zeros((2, 2, 2)))
    with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{field}'"):
        setattr(volume, field, None)


@pytest.mark.parametrize(
    ("data", "scale", "translate"),
    [
        ([[[1, 2], [3, 4]]], [2.0, 2.0, 3.0], [0.0, 0.0, 0.0]),
        (np.ones((2, 3, 4, 5), np.float32), np.array([1.0, 2.0, 2.0, 2.0]), np.zeros(4)),
    ],
)
def test_of_layer_takes_a_layers_array_and_grid(data, scale, translate):
    metadata = {"source": "test"}
    layer = SimpleNamespace(
        name="phase", data=data, scale=scale, translate=translate, metadata=metadata
    )
    volume = LayerVolume.of_layer(layer)
    assert volume.name == "phase"
    assert isinstance(volume.data, np.ndarray)
    np.testing.assert_array_equal(volume.data, np.asarray(data))
    assert volume.scale == tuple(scale) and isinstance(volume.scale, tuple)
    assert volume.translate == tuple(translate) and isinstance(volume.translate, tuple)
    assert volume.metadata is metadata
    assert volume.voxel_size() == tuple(float(s) for s in scale)


def test_of_a_read_layer_it_keeps_the_source_affine():
    data = np.arange(6 * 7 * 5, dtype=np.float32).reshape(6, 7, 5)
    shown, kwargs, _ = volume_to_layer_data(Volume(data, AFFINE), name="T1")
    layer = SimpleNamespace(
        name="T1", data=shown, **{k: kwargs[k] for k in ("scale", "translate", "metadata")}
    )
    volume = LayerVolume.of_layer(layer)
    assert volume.voxel_size() == (4.0, 4.0, 4.0)
    np.testing.assert_array_equal(volume.metadata[NIFTI_METADATA_KEY]["affine"], AFFINE)
    array, reference = layer_to_nifti(volume.data, volume.metadata, volume.scale, volume.translate)
    np.testing.assert_array_equal(array, data)
    np.testing.assert_array_equal(reference.affine, AFFINE)
