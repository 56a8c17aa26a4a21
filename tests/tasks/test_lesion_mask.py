"""Probability map -> lesion mask: threshold, seed threshold, minimum volume."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.tasks.lesion_mask import LesionMaskRule, lesion_mask


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
