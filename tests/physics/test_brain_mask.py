"""Brain mask from the magnitude: Otsu, opening, largest component, closing, hole filling."""

import numpy as np
import pytest

from napari_fanet.physics.brain_mask import magnitude_mask, reliable_mask

N = 40
GRID = np.indices((N, N, N), dtype=float) - (N - 1) / 2
R2 = (GRID**2).sum(0)
BRAIN = R2 <= 14.0**2


def phantom(seed=0):
    """A bright sphere with a dark ventricle-like hole, a separate bright blob, Rician noise."""
    rng = np.random.default_rng(seed)
    clean = np.where(BRAIN, 1.0, 0.0)
    hole = ((GRID[0] - 2) ** 2 + GRID[1] ** 2 + GRID[2] ** 2) <= 3.0**2
    clean[hole] = 0.05  # dark inside (low T2* signal)
    blob = ((GRID[0] - 17) ** 2 + (GRID[1] - 17) ** 2 + GRID[2] ** 2) <= 2.0**2
    clean[blob] = 1.2  # not connected to the brain
    noise = 0.08 * (rng.standard_normal((2, N, N, N)))
    return np.sqrt((clean + noise[0]) ** 2 + noise[1] ** 2), hole, blob


def dice(a, b):
    return 2 * np.sum(a & b) / (np.sum(a) + np.sum(b))


def test_mask_finds_the_brain_fills_holes_and_drops_islands():
    mag, hole, blob = phantom()
    mask = magnitude_mask(mag)
    assert mask.dtype == bool and mask.shape == (N, N, N)
    assert dice(mask, BRAIN) > 0.97
    assert mask[hole].all()
    assert not mask[blob].any()


def test_echo_axis_is_combined_by_root_sum_of_squares():
    mag, _, _ = phantom()
    echoes = np.stack([mag, 0.7 * mag, 0.5 * mag], axis=-1)  # (N, N, N, 3)
    rss = np.sqrt((echoes**2).sum(-1))
    np.testing.assert_array_equal(magnitude_mask(echoes), magnitude_mask(rss))


def test_options_can_be_switched_off():
    mag, _, _ = phantom()
    plain = magnitude_mask(mag, smooth_voxels=0, open_voxels=0, close_voxels=0)
    assert dice(plain, BRAIN) > 0.9


@pytest.mark.parametrize(
    ("magnitude", "kwargs", "match"),
    [
        (np.ones((4, 4)), {}, r"magnitude must be \(X, Y, Z\)"),
        (np.full((4, 4, 4), np.nan), {}, "NaN or infinite"),
        (np.ones((4, 4, 4)), {}, "magnitude is constant"),
        (np.arange(64.0).reshape(4, 4, 4), {"smooth_voxels": -1}, "smooth_voxels must be"),
        (np.arange(64.0).reshape(4, 4, 4), {"threshold_scale": 0}, "threshold_scale must be"),
        (np.arange(64.0).reshape(4, 4, 4), {"open_voxels": 1.5}, "open_voxels must be"),
        (np.arange(64.0).reshape(4, 4, 4), {"close_voxels": -1}, "close_voxels must be"),
        (np.pad(np.ones((1, 1, 1)), 3), {"smooth_voxels": 0}, "no brain found in the magnitude"),
    ],
)
def test_bad_input_raises(magnitude, kwargs, match):
    with pytest.raises(ValueError, match=match):
        magnitude_mask(magnitude, **kwargs)


def test_reliable_mask_drops_a_noisy_rim_and_keeps_holes():
    sigma = np.where(BRAIN, 1.0, 50.0)  # the rim outside the brain is pure noise
    sigma[18:21, 18:21, 18:21] = 40.0  # a noisy vein inside: a hole, filled back
    loose = R2 <= 15.0**2
    refined = reliable_mask(loose, sigma, factor=3.0)
    np.testing.assert_array_equal(refined, BRAIN)


@pytest.mark.parametrize(
    ("mask", "sigma", "factor", "match"),
    [
        (BRAIN, np.ones((4, 4, 4)), 3.0, "sigma must have the mask's shape"),
        (np.zeros_like(BRAIN), np.ones(BRAIN.shape), 3.0, "mask is empty"),
        (BRAIN, np.ones(BRAIN.shape), 1.0, "factor must be > 1"),
    ],
)
def test_reliable_mask_bad_input_raises(mask, sigma, factor, match):
    with pytest.raises(ValueError, match=match):
        reliable_mask(mask, sigma, factor=factor)
