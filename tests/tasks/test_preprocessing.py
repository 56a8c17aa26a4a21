"""The one definition of each task's network input, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.tasks.b0_alignment import rotate_volume
from napari_fanet.tasks.preprocessing import (
    QSMNetworkInput,
    output_gain,
    qsm_network_input,
    qsm_output,
    qsm_target,
    seg_brain_mask,
    seg_network_image,
    volume_field_scale,
    zscore_in_mask,
)

SHAPE = (12, 10, 8)
SCALES = {"field_scale": 0.05, "chi_scale": 0.1, "align_b0": True}


def _ball() -> np.ndarray:
    grid = np.indices(SHAPE, dtype=float)
    centre = (np.array(SHAPE) - 1) / 2
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, (5, 4, 3), strict=True)) <= 1


def test_zscore_in_mask_against_float64():
    rng = np.random.default_rng(0)
    image = (100 + 20 * rng.standard_normal(SHAPE)).astype(np.float32)
    brain = _ball()
    values = image[brain].astype(np.float64)
    expected = np.where(brain, (image - values.mean()) / values.std(), 0.0)
    out = zscore_in_mask(image, brain)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert np.all(out[~brain] == 0)


def test_zscore_of_a_constant_image_is_zero_and_an_empty_mask_is_refused():
    brain = _ball()
    np.testing.assert_array_equal(zscore_in_mask(np.full(SHAPE, 3.0), brain), 0.0)
    with pytest.raises(ValueError, match="cannot normalise: the brain mask is empty"):
        zscore_in_mask(np.ones(SHAPE), np.zeros(SHAPE, bool))


@pytest.mark.parametrize(
    ("brain_mask", "flair_value", "expected_voxels"),
    [(None, 1.0, "flair"), (None, -1.0, "flair"), ("mask", 1.0, "mask")],
)
def test_seg_brain_mask(brain_mask, flair_value, expected_voxels):
    flair = np.zeros(SHAPE, np.float32)
    flair[2:6, 2:6, 2:6] = flair_value  # non-zero, negative included
    mask = _ball().astype(np.uint8)
    brain = seg_brain_mask(flair, mask if brain_mask else None)
    expected = flair != 0 if expected_voxels == "flair" else mask > 0
    np.testing.assert_array_equal(brain, expected)


@pytest.mark.parametrize("given", [False, True])
def test_seg_brain_mask_fills_enclosed_cavities(given):
    flair = np.zeros(SHAPE, np.float32)
    flair[1:7, 1:7, 1:7] = 5.0
    flair[3:5, 3:5, 3:5] = 0.0  # dark CSF stored as 0, enclosed by brain
    flair[1:3, 1, 1:3] = 0.0  # a dent open to the outside stays outside
    source = (flair != 0).astype(np.uint8) if given else None
    brain = seg_brain_mask(flair, source)
    assert brain[3:5, 3:5, 3:5].all()
    assert not brain[1:3, 1, 1:3].any()
    assert brain.sum() == (flair != 0).sum() + 8


@pytest.mark.parametrize(
    ("present", "zero_channels"),
    [(("T1", "T2", "FLAIR"), []), (("FLAIR",), [0, 1]), (("T2", "FLAIR"), [0])],
)
def test_seg_network_image_channels(present, zero_channels):
    rng = np.random.default_rng(1)
    brain = _ball()
    images = {k: rng.random(SHAPE).astype(np.float32) + i for i, k in enumerate(present)}
    out = seg_network_image({**images, "brain mask": brain}, brain)  # other keys are ignored
    assert out.shape == (3, *SHAPE) and out.dtype == np.float32
    for channel, name in enumerate(("T1", "T2", "FLAIR")):
        if channel in zero_channels:
            assert not out[channel].any()
        else:
            np.testing.assert_array_equal(out[channel], zscore_in_mask(images[name], brain))


def test_field_scale_is_the_spread_inside_the_mask_with_a_fallback():
    rng = np.random.default_rng(2)
    field = rng.standard_normal(SHAPE).astype(np.float32)
    mask = _ball()
    assert volume_field_scale(field, mask, SCALES) == pytest.approx(field[mask].std())
    assert volume_field_scale(np.zeros(SHAPE), mask, SCALES) == SCALES["field_scale"]


@pytest.mark.parametrize("k", [0.5, 3.0])
def test_qsm_network_input_is_scale_invariant(k):
    """A field k times stronger reaches the network unchanged (chi is linear in the field)."""
    rng = np.random.default_rng(3)
    field = rng.standard_normal(SHAPE).astype(np.float32)
    mask = _ball()
    one = qsm_network_input(field, mask, SCALES, (0, 0, 1), (1, 1, 1))
    many = qsm_network_input(field * np.float32(k), mask, SCALES, (0, 0, 1), (1, 1, 1))
    np.testing.assert_allclose(many.image, one.image, rtol=1e-5, atol=1e-6)
    assert many.scale == pytest.approx(k * one.scale, rel=1e-5)
    assert one.rotation is None and one.image.dtype == np.float32
    np.testing.assert_array_equal(one.image, (field * mask / one.scale).astype(np.float32))


def test_qsm_network_input_folds_the_b0_sign_and_rotates_a_tilt():
    rng = np.random.default_rng(4)
    field = rng.standard_normal(SHAPE).astype(np.float32)
    mask = _ball()
    up = qsm_network_input(field, mask, SCALES, (0, 0, 1), (1, 1, 2))
    down = qsm_network_input(field, mask, SCALES, (0, 0, -1), (1, 1, 2))
    np.testing.assert_array_equal(up.image, down.image)
    tilted = qsm_network_input(field, mask, SCALES, (0.3, 0.0, 1.0), (1, 1, 2))
    assert tilted.rotation is not None
    np.testing.assert_allclose(
        tilted.rotation @ np.array([0.3, 0, 1]) / np.hypot(0.3, 1), [0, 0, 1], atol=1e-12
    )
    unaligned = qsm_network_input(
        field, mask, {**SCALES, "align_b0": False}, (0.3, 0, 1), (1, 1, 2)
    )
    assert unaligned.rotation is None


def test_target_and_output_are_inverse_without_rotation():
    rng = np.random.default_rng(5)
    chi = rng.standard_normal(SHAPE).astype(np.float32)
    mask = _ball()
    net = QSMNetworkInput(np.zeros(SHAPE, np.float32), mask, 0.02, None)
    gain = SCALES["chi_scale"] * 0.02 / SCALES["field_scale"]
    assert output_gain(0.02, SCALES) == pytest.approx(gain)
    target = qsm_target(chi, net, SCALES, (1, 1, 1))
    np.testing.assert_allclose(target, chi / gain, rtol=1e-6)
    back = qsm_output(target, net, mask, SCALES, (1, 1, 1))
    np.testing.assert_allclose(back, chi * mask, rtol=1e-5, atol=1e-7)


def test_target_and_output_rotate_with_the_input():
    mask = _ball()
    chi = (mask * 0.1).astype(np.float32)
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    net = QSMNetworkInput(np.zeros(SHAPE, np.float32), np.ones(SHAPE, bool), 0.05, rotation)
    target = qsm_target(chi, net, SCALES, (1, 1, 1))
    expected = rotate_volume(chi, rotation, (1, 1, 1)) / output_gain(0.05, SCALES)
    np.testing.assert_allclose(target, expected, rtol=1e-6)
    out = qsm_output(np.ones(SHAPE, np.float32), net, mask, SCALES, (1, 1, 1))
    assert not out[~mask].any() and out.dtype == np.float32
