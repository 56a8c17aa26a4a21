"""Probability map -> lesion mask: threshold, seed threshold, minimum volume, brain edge."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.tasks.lesion_mask import (
    DEFAULT_RULE,
    LesionMaskRule,
    lesion_mask,
    mean_edge_distance,
)


def _map() -> np.ndarray:
    """Three components above 0.5 on a 12^3 grid, written voxel by voxel.

    - A: a 2x2x2 cube of 0.6 with one voxel of 0.97 (a confident seed), 8 voxels;
    - B: a 3x3x3 cube of 0.8 (no voxel above 0.9), 27 voxels;
    - C: two voxels of 0.99 touching only by a corner (one 26-connected lesion), 2 voxels.
    """
    p = np.full((12, 12, 12), 0.1, dtype=np.float32)
    p[1:3, 1:3, 1:3] = 0.6
    p[1, 1, 1] = 0.97
    p[6:9, 6:9, 6:9] = 0.8
    p[10, 10, 1] = 0.99
    p[11, 11, 2] = 0.99
    return p


def _expected(components: str) -> np.ndarray:
    out = np.zeros((12, 12, 12), dtype=np.uint8)
    if "A" in components:
        out[1:3, 1:3, 1:3] = 1
    if "B" in components:
        out[6:9, 6:9, 6:9] = 1
    if "C" in components:
        out[10, 10, 1] = out[11, 11, 2] = 1
    return out


@pytest.mark.parametrize(
    ("rule", "voxel_size", "kept"),
    [
        (LesionMaskRule(), (1, 1, 1), "ABC"),
        (LesionMaskRule(seed_threshold=0.9), (1, 1, 1), "AC"),
        (LesionMaskRule(seed_threshold=0.98), (1, 1, 1), "C"),
        (LesionMaskRule(seed_threshold=0.5), (1, 1, 1), "ABC"),
        (LesionMaskRule(min_volume_mm3=3), (1, 1, 1), "AB"),
        (LesionMaskRule(min_volume_mm3=10), (1, 1, 1), "B"),
        # 8 voxels of 1 x 1 x 2 mm are 16 mm^3; 2 voxels are 4 mm^3
        (LesionMaskRule(min_volume_mm3=10), (1, 1, 2), "AB"),
        (LesionMaskRule(min_volume_mm3=4), (1, 1, 2), "ABC"),
        (LesionMaskRule(seed_threshold=0.9, min_volume_mm3=3), (1, 1, 1), "A"),
        (LesionMaskRule(threshold=0.7), (1, 1, 1), "BC"),
    ],
)
def test_lesion_mask_keeps_whole_components(rule, voxel_size, kept):
    p = _map()
    got = lesion_mask(p, voxel_size, rule)
    expected = _expected(kept)
    if rule.threshold > 0.6:  # only A's seed voxel is above 0.7 in A
        expected[1, 1, 1] = 1
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_lesion_mask_seed_keeps_the_uncertain_rim():
    """Hysteresis: a confident core keeps its rim, which a higher plain threshold would lose."""
    p = _map()
    seeded = lesion_mask(p, (1, 1, 1), LesionMaskRule(seed_threshold=0.95))
    assert seeded[1:3, 1:3, 1:3].all()  # A: 8 voxels, only one above 0.95
    plain_high = lesion_mask(p, (1, 1, 1), LesionMaskRule(threshold=0.95))
    assert plain_high[1:3, 1:3, 1:3].sum() == 1


def test_lesion_mask_off_is_the_plain_threshold():
    rng = np.random.default_rng(0)
    p = rng.random((9, 10, 11)).astype(np.float32)
    got = lesion_mask(p, (1, 1, 1), LesionMaskRule(threshold=0.4))
    np.testing.assert_array_equal(got, (p > 0.4).astype(np.uint8))
    assert not LesionMaskRule().filters_components


def test_lesion_mask_rule_takes_numpy_numbers():
    rule = LesionMaskRule(np.float32(0.5), np.float32(0.9), np.int64(8))
    assert rule.filters_components


def test_lesion_mask_empty_map():
    p = np.zeros((4, 4, 4), dtype=np.float32)
    rule = LesionMaskRule(seed_threshold=0.9, min_volume_mm3=5)
    assert lesion_mask(p, (1, 1, 1), rule).sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, "threshold must be a probability strictly between 0 and 1, got 0.0"),
        ({"threshold": 1.0}, "threshold must be a probability strictly between 0 and 1, got 1.0"),
        ({"seed_threshold": 1.0}, "seed threshold must be a probability .* 1, got 1.0"),
        ({"seed_threshold": "0.9"}, "seed threshold must be a probability .* got '0.9'"),
        ({"threshold": 0.6, "seed_threshold": 0.5}, r"seed threshold \(0.5\) must be at least"),
        ({"min_volume_mm3": -1}, "minimum lesion volume must be a finite number .* got -1"),
        ({"min_volume_mm3": float("inf")}, "minimum lesion volume must be .* got inf"),
        ({"min_volume_mm3": True}, "minimum lesion volume must be .* got True"),
        ({"threshold": "0.5"}, "threshold must be a probability .* got '0.5'"),
        ({"min_edge_distance_mm": -0.5}, "distance from the brain edge must be .* got -0.5"),
        ({"min_edge_distance_mm": float("nan")}, "distance from the brain edge must be .* nan"),
    ],
)
def test_lesion_mask_rule_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LesionMaskRule(**kwargs)


def test_lesion_mask_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"must be a 3D \(X, Y, Z\) array, got shape \(4, 4\)"):
        lesion_mask(np.zeros((4, 4)), (1, 1, 1), LesionMaskRule())
    with pytest.raises(ValueError, match=r"3 positive numbers \(mm\), got \(1, 0, 1\)"):
        lesion_mask(np.zeros((4, 4, 4)), (1, 0, 1), LesionMaskRule())
    with pytest.raises(ValueError, match=r"3 positive numbers \(mm\), got \(1, 1\)"):
        lesion_mask(np.zeros((4, 4, 4)), (1, 1), LesionMaskRule())


def _brain_with_rim_lesions() -> tuple[np.ndarray, np.ndarray]:
    """A 20^3 box brain (1 voxel of background around it) and a map with three lesions.

    - R: a 1 x 3 x 3 plate in the brain's outermost layer (every voxel 1 mm from outside);
    - D: a 3^3 cube deep inside (mean distance well above 2 mm);
    - S: a 2 x 3 x 3 slab in the two outermost layers (voxels 1 and 2 mm: mean 1.5 mm).
    """
    brain = np.zeros((22, 22, 22), dtype=bool)
    brain[1:21, 1:21, 1:21] = True
    p = np.full(brain.shape, 0.1, dtype=np.float32)
    p[1, 8:11, 8:11] = 0.99  # R
    p[9:12, 9:12, 9:12] = 0.99  # D
    p[8:11, 8:11, 19:21] = 0.99  # S (layers z = 19 and 20; z = 20 is the outermost)
    return brain, p


def test_mean_edge_distance_is_the_mean_distance_to_outside_in_mm():
    brain, _ = _brain_with_rim_lesions()
    labels = np.zeros(brain.shape, dtype=np.int64)
    labels[1, 8:11, 8:11] = 1
    labels[8:11, 8:11, 19:21] = 2
    labels[0, 0, 0] = 3  # outside the brain: distance 0
    got = mean_edge_distance(labels, 3, brain, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(got, [0.0, 1.0, 1.5, 0.0])
    # 2 mm voxels along x: the plate R (outermost layer along x) lies 2 mm from outside
    got = mean_edge_distance(labels, 3, brain, (2.0, 1.0, 1.0))
    assert got[1] == pytest.approx(2.0)


def test_mean_edge_distance_measures_a_brain_filling_the_array_from_its_border():
    brain = np.ones((5, 5, 5), dtype=bool)
    labels = np.zeros(brain.shape, dtype=np.int64)
    labels[0, 2, 2] = 1
    labels[2, 2, 2] = 2
    np.testing.assert_allclose(mean_edge_distance(labels, 2, brain, (1, 1, 1)), [0, 1, 3])


@pytest.mark.parametrize(
    ("edge", "kept"),
    [(0.0, "RDS"), (1.0, "RDS"), (1.2, "DS"), (1.5, "DS"), (1.6, "D"), (2.0, "D")],
)
def test_lesion_mask_drops_lesions_in_the_brain_rim(edge, kept):
    brain, p = _brain_with_rim_lesions()
    got = lesion_mask(p, (1, 1, 1), LesionMaskRule(min_edge_distance_mm=edge), brain)
    expected = np.zeros(brain.shape, dtype=np.uint8)
    if "R" in kept:
        expected[1, 8:11, 8:11] = 1
    if "D" in kept:
        expected[9:12, 9:12, 9:12] = 1
    if "S" in kept:
        expected[8:11, 8:11, 19:21] = 1
    np.testing.assert_array_equal(got, expected)


def test_default_rule_keeps_deep_lesions_and_drops_the_rim():
    brain, p = _brain_with_rim_lesions()
    assert DEFAULT_RULE.min_edge_distance_mm == 2.0
    assert "lying on average at least 2 mm inside the brain mask" in DEFAULT_RULE.describe()
    got = lesion_mask(p, (1, 1, 1), DEFAULT_RULE, brain)
    assert got[9:12, 9:12, 9:12].all() and got.sum() == 27


def test_lesion_mask_edge_rule_needs_the_brain():
    brain, p = _brain_with_rim_lesions()
    rule = LesionMaskRule(min_edge_distance_mm=2.0)
    with pytest.raises(ValueError, match="needs the brain mask, got none"):
        lesion_mask(p, (1, 1, 1), rule)
    with pytest.raises(ValueError, match=r"brain mask must have the probability's shape"):
        lesion_mask(p, (1, 1, 1), rule, brain[:-1])
    # without the edge rule the brain is not needed, and not looked at
    assert lesion_mask(p, (1, 1, 1), LesionMaskRule(), None).sum() == 9 + 27 + 18
