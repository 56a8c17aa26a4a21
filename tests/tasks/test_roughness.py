"""Fine roughness and roughness matching: known answers on synthetic volumes, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_fanet.tasks.roughness import (
    MATCH_SIGMAS_MM,
    TARGET_KEY,
    fine_roughness,
    match_flair,
    match_roughness,
    median_roughness,
    roughness_target,
)

SHAPE = (40, 40, 40)


def _brain() -> np.ndarray:
    grid = np.indices(SHAPE) - 19.5
    return np.sqrt((grid**2).sum(0)) < 17


def _scan(noise: float, seed: int = 0) -> np.ndarray:
    """A smooth ramp of median about 100 in the brain, times (1 + noise * white noise)."""
    rng = np.random.default_rng(seed)
    ramp = 100.0 + np.linspace(-5, 5, SHAPE[0])[:, None, None] * np.ones(SHAPE)
    image = ramp * (1 + noise * rng.standard_normal(SHAPE))
    return np.where(_brain(), image, 0).astype(np.float32)


def test_a_smooth_scan_has_no_roughness_and_white_noise_scales_it() -> None:
    brain = _brain()
    assert fine_roughness(_scan(0.0), brain) < 1e-3
    low, high = fine_roughness(_scan(0.05), brain), fine_roughness(_scan(0.1), brain)
    assert 0.02 < low < 0.05  # white noise loses part of its spread to the 1-voxel blur
    assert high / low == pytest.approx(2.0, rel=0.1)


def test_match_roughness_leaves_a_smooth_enough_scan_alone() -> None:
    brain, scan = _brain(), _scan(0.05)
    r = fine_roughness(scan, brain)
    out, sigma, after = match_roughness(scan, brain, r * 1.01, (1.0, 1.0, 1.0))
    assert sigma == 0.0 and after == r
    np.testing.assert_array_equal(out, scan)


def test_match_roughness_smooths_gently_down_to_the_target() -> None:
    brain, scan = _brain(), _scan(0.1)
    target = 0.5 * fine_roughness(scan, brain)
    out, sigma, after = match_roughness(scan, brain, target, (1.0, 1.0, 1.0))
    assert 0 < sigma <= MATCH_SIGMAS_MM[-1] and after <= target
    assert out.dtype == np.float32 and not out[~brain].any()
    # the sigma before it was not enough, and the map is the Gaussian of that sigma
    previous = MATCH_SIGMAS_MM[MATCH_SIGMAS_MM.index(sigma) - 1]
    assert (
        fine_roughness(match_roughness(scan, brain, target, (1, 1, 1), [previous])[0], brain)
        > target
    )
    expected = np.where(brain, ndimage.gaussian_filter(scan, sigma), 0)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)
    # sigmas are in mm: 2 mm voxels take half the sigma in voxels
    coarse, _, _ = match_roughness(scan, brain, target, (2.0, 2.0, 2.0), [sigma])
    np.testing.assert_allclose(
        coarse, np.where(brain, ndimage.gaussian_filter(scan, sigma / 2), 0), rtol=1e-6, atol=1e-4
    )


def test_match_roughness_uses_the_last_sigma_when_none_reaches_the_target() -> None:
    brain, scan = _brain(), _scan(0.1)
    _, sigma, after = match_roughness(scan, brain, 1e-9, (1.0, 1.0, 1.0), [0.0, 0.5])
    assert sigma == 0.5 and after > 1e-9


@pytest.mark.parametrize(
    ("image", "brain", "error", "match"),
    [
        (
            np.ones((4, 4)),
            np.ones((4, 4), bool),
            ValueError,
            r"image must be 3D \(X, Y, Z\), got shape \(4, 4\)",
        ),
        (
            np.full(SHAPE, "a"),
            np.ones(SHAPE, bool),
            TypeError,
            "image must be a real numeric array, got dtype <U1",
        ),
        (
            np.full(SHAPE, np.nan),
            np.ones(SHAPE, bool),
            ValueError,
            "image contains NaN or infinite values",
        ),
        (
            np.ones(SHAPE),
            np.full(SHAPE, 2),
            ValueError,
            r"brain must be binary \(bool or only 0 and 1 values\)",
        ),
        (
            np.ones(SHAPE),
            np.ones((4, 4, 4), bool),
            ValueError,
            r"shapes must match, got image \(40, 40, 40\), brain \(4, 4, 4\)",
        ),
        (
            np.ones(SHAPE),
            np.zeros(SHAPE, bool),
            ValueError,
            "brain mask thicker than 6 voxels, got 0 brain voxels",
        ),
        (
            -np.ones(SHAPE),
            np.ones(SHAPE, bool),
            ValueError,
            "positive median intensity in the brain, got -1.0",
        ),
    ],
)
def test_fine_roughness_refuses_bad_input(image, brain, error, match) -> None:
    with pytest.raises(error, match=match):
        fine_roughness(image, brain)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": 0.0}, "target must be a finite positive number, got 0.0"),
        ({"target": float("nan")}, "target must be a finite positive number, got nan"),
        ({"target": float("inf")}, "target must be a finite positive number, got inf"),
        ({"target": True}, "target must be a finite positive number, got True"),
        ({"target": "0.1"}, "target must be a finite positive number, got '0.1'"),
        (
            {"voxel_size": (1.0, 1.0)},
            r"voxel_size must be 3 positive numbers \(mm\), got \(1, 1\)",
        ),
        ({"voxel_size": (1.0, 0.0, 1.0)}, "voxel_size must be 3 positive numbers"),
        ({"sigmas_mm": []}, r"sigmas_mm must be one or more numbers >= 0, got \[\]"),
        ({"sigmas_mm": [0.5, -1.0]}, "sigmas_mm must be one or more numbers >= 0"),
    ],
)
def test_match_roughness_refuses_bad_settings(kwargs, match) -> None:
    args = {"target": 0.05, "voxel_size": (1.0, 1.0, 1.0), **kwargs}
    with pytest.raises(ValueError, match=match):
        match_roughness(_scan(0.05), _brain(), **args)


def test_median_roughness_is_the_median_of_the_scans() -> None:
    brain = _brain()
    scans = [(_scan(noise, seed=i), brain) for i, noise in enumerate((0.02, 0.1, 0.05))]
    expected = fine_roughness(*scans[2])
    assert median_roughness(scans) == pytest.approx(expected)
    pair = scans[:2]
    mean = (fine_roughness(*pair[0]) + fine_roughness(*pair[1])) / 2
    assert median_roughness(pair) == pytest.approx(mean)
    with pytest.raises(ValueError, match=r"expected one or more \(FLAIR, brain\) pairs, got none"):
        median_roughness([])


def test_roughness_target_reads_the_checkpoint() -> None:
    assert roughness_target({"extra": {}}) is None
    assert roughness_target({}) is None
    assert roughness_target({"extra": {TARGET_KEY: 0.08}}) == 0.08


@pytest.mark.parametrize("value", [0.0, -0.1, float("nan"), float("inf"), True, "0.08"])
def test_roughness_target_refuses_a_bad_recorded_value(value) -> None:
    with pytest.raises(
        ValueError, match=r"checkpoint extra\['roughness_target'\] must be a finite positive"
    ):
        roughness_target({"extra": {TARGET_KEY: value}})


def test_match_flair_says_what_it_did() -> None:
    brain, scan = _brain(), _scan(0.1)
    r = fine_roughness(scan, brain)
    kept, message = match_flair(scan, brain, 2 * r, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(kept, scan)
    assert f"{r:.4f} is within the model's training scans' {2 * r:.4f}: not smoothed" in message
    smoothed, message = match_flair(scan, brain, r / 2, (1.0, 1.0, 1.0))
    expected, sigma, after = match_roughness(scan, brain, r / 2, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(smoothed, expected)
    assert f"above the model's training scans' {r / 2:.4f}" in message
    assert f"sigma {sigma:g} mm (now {after:.4f})" in message and "--no-match-roughness" in message


def test_match_flair_leaves_a_scan_it_cannot_measure_and_says_why() -> None:
    scan = _scan(0.1)
    thin = np.zeros(SHAPE, bool)
    thin[10:30, 10:30, 19:22] = True  # 3 voxels thick: nothing left after the erosion
    kept, message = match_flair(scan, thin, 0.01, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(kept, scan)
    assert message.startswith("FLAIR roughness not matched to the model's: expected a brain")


def test_fine_roughness_of_a_band_is_the_spread_of_that_band_pass() -> None:
    brain, scan = _brain(), _scan(0.1)
    core = ndimage.binary_erosion(brain, iterations=3)
    band = (ndimage.gaussian_filter(scan, 1.0) - ndimage.gaussian_filter(scan, 2.0))[core]
    expected = 1.4826 * np.median(np.abs(band - np.median(band))) / np.median(scan[brain])
    assert fine_roughness(scan, brain, (1, 2)) == pytest.approx(expected, rel=1e-5)
    assert fine_roughness(scan, brain, (0, 1)) == fine_roughness(scan, brain)
    # white noise lives in the finest band: the 1-2 band sees far less of it
    assert fine_roughness(scan, brain, (1, 2)) < 0.5 * fine_roughness(scan, brain)
    # match_roughness measures the same band (a numpy scalar target is a number too)
    out, sigma, after = match_roughness(
        scan, brain, np.float32(expected * 1.01), (1, 1, 1), scales=(1, 2)
    )
    assert sigma == 0 and after == pytest.approx(expected)
    out, sigma, after = match_roughness(scan, brain, 1e-9, (1, 1, 1), [0.5], scales=(1, 2))
    assert sigma == 0.5 and after == fine_roughness(out, brain, (1, 2))


@pytest.mark.parametrize("scales", [(1.0,), (2.0, 1.0), (-1.0, 1.0), (0.0, float("inf"))])
def test_fine_roughness_refuses_scales_that_are_not_a_band(scales) -> None:
    match = r"scales must be two Gaussian sigmas in voxels, 0 <= fine < coarse, got"
    with pytest.raises(ValueError, match=match):
        fine_roughness(_scan(0.05), _brain(), scales)
    with pytest.raises(ValueError, match=match):
        match_roughness(_scan(0.05), _brain(), 0.05, (1, 1, 1), scales=scales)
