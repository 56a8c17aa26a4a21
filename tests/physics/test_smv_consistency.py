"""Data consistency with the total field through spherical means (physics.smv_consistency)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.physics.background import smv_high_pass, vsharp
from napari_fanet.physics.forward import forward_field
from napari_fanet.physics.smv_consistency import (
    SMV_AUTO_SCALE,
    SMV_LAMBDA_RANGE,
    smv_automatic_lambda,
    smv_data_consistency,
)

VOX = (2.0, 2.0, 2.0)
B0 = (0.0, 0.3, 1.0)
RADII = (8.0, 6.0, 4.0, 2.0)


def nrmse(x: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    a, r = x[mask] - x[mask].mean(), ref[mask] - ref[mask].mean()
    return 100.0 * float(np.linalg.norm(a - r) / np.linalg.norm(r))


@pytest.fixture(scope="module")
def head():
    """An ellipsoidal brain with smooth random susceptibility, and a harmonic background."""
    shape = (36, 40, 34)
    grid = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    x, y, z = grid
    brain = (x / 15) ** 2 + (y / 17) ** 2 + (z / 14) ** 2 <= 1
    rng = np.random.default_rng(3)
    from scipy import ndimage

    chi = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) * 0.2
    chi = np.where(brain, chi - chi[brain].mean(), 0.0)
    local = forward_field(chi, VOX, B0)
    # a harmonic polynomial: every sphere's mean is its centre's value, so SMV removes it
    background = 0.5 + 0.02 * x - 0.01 * z + 0.003 * (x**2 - y**2)
    return {"chi": chi, "brain": brain, "local": local, "total": local + background}


def test_the_spherical_means_of_a_harmonic_background_vanish(head):
    with_bg = smv_high_pass(head["total"], head["brain"], VOX, radii_mm=RADII)
    without = smv_high_pass(head["local"], head["brain"], VOX, radii_mm=RADII)
    np.testing.assert_allclose(with_bg.filtered, without.filtered, atol=1e-9)
    assert [r for r, _, _ in with_bg.bands] == sorted(
        {r for r, _, _ in with_bg.bands}, reverse=True
    )
    assert not (with_bg.assigned & ~head["brain"]).any()


def test_vsharp_is_the_spherical_means_then_a_deconvolution(head):
    local, eroded = vsharp(head["total"], head["brain"], VOX, radii_mm=RADII)
    smv = smv_high_pass(head["total"], head["brain"], VOX, radii_mm=RADII)
    np.testing.assert_array_equal(eroded, smv.assigned)
    assert nrmse(local, head["local"], eroded) < 60


def test_the_result_ignores_the_background(head):
    """Adding a harmonic background to the total field does not change the map."""
    prior = np.zeros_like(head["chi"])
    a = smv_data_consistency(head["total"], prior, head["brain"], VOX, B0, lam=0.01,
                             radii_mm=RADII)  # fmt: skip
    b = smv_data_consistency(head["local"], prior, head["brain"], VOX, B0, lam=0.01,
                             radii_mm=RADII)  # fmt: skip
    np.testing.assert_allclose(a, b, atol=1e-6 * np.abs(b).max())


def test_a_perfect_prior_is_kept(head):
    chi = smv_data_consistency(head["total"], head["chi"], head["brain"], VOX, B0, lam=0.01,
                               radii_mm=RADII)  # fmt: skip
    assert chi.dtype == np.float32 and chi.shape == head["chi"].shape
    assert nrmse(chi, head["chi"], head["brain"]) < 0.1
    assert (chi[~head["brain"]] == 0).all()


def test_a_wrong_prior_moves_towards_the_truth(head):
    """A prior 42 % wrong (a 4-voxel-period wave) comes out about 20 % wrong."""
    brain, truth = head["brain"], head["chi"]
    error = np.where(brain, 0.01 * np.cos(np.indices(truth.shape)[0] / 2.0), 0.0)
    prior = truth + error
    before = nrmse(prior, truth, brain)
    after = smv_data_consistency(head["total"], prior, brain, VOX, B0, lam=1e-3, radii_mm=RADII)
    assert before > 40 and nrmse(after, truth, brain) < 0.6 * before


def test_automatic_lambda(head):
    lo, hi = SMV_LAMBDA_RANGE
    perfect = smv_automatic_lambda(head["total"], head["chi"], head["brain"], VOX, B0,
                                   radii_mm=RADII)  # fmt: skip
    assert perfect == hi  # explains the data to within the noise
    rng = np.random.default_rng(0)
    noisy = head["total"] + 1e-4 * rng.standard_normal(head["total"].shape)
    wrong = smv_automatic_lambda(noisy, np.zeros_like(head["chi"]), head["brain"], VOX, B0,
                                 radii_mm=RADII)  # fmt: skip
    assert lo <= wrong < hi
    same = smv_data_consistency(noisy, np.zeros_like(head["chi"]), head["brain"], VOX, B0,
                                radii_mm=RADII, lam=wrong)  # fmt: skip
    auto = smv_data_consistency(noisy, np.zeros_like(head["chi"]), head["brain"], VOX, B0,
                                radii_mm=RADII)  # fmt: skip
    np.testing.assert_allclose(auto, same)


def test_the_automatic_weight_scales_before_it_is_clipped(head):
    lo, hi = SMV_LAMBDA_RANGE
    rng = np.random.default_rng(0)
    noisy = head["total"] + 1e-4 * rng.standard_normal(head["total"].shape)
    args = (noisy, np.zeros_like(head["chi"]), head["brain"], VOX, B0)
    plain = smv_automatic_lambda(*args, radii_mm=RADII, scale=1.0)
    assert lo < plain / 2 < hi
    half = smv_automatic_lambda(*args, radii_mm=RADII, scale=0.5)
    assert half == pytest.approx(plain / 2, rel=1e-6)
    default = smv_automatic_lambda(*args, radii_mm=RADII)
    assert default == pytest.approx(plain * SMV_AUTO_SCALE, rel=1e-6)
    assert smv_automatic_lambda(*args, radii_mm=RADII, scale=1e9) == hi
    perfect = smv_automatic_lambda(head["total"], head["chi"], head["brain"], VOX, B0,
                                   radii_mm=RADII, scale=0.5)  # fmt: skip
    assert perfect == hi  # a prior within the noise keeps the top, whatever the scale


@pytest.mark.parametrize(
    ("scale", "error", "match"),
    [
        (0.0, ValueError, "scale must be a finite number > 0, got 0.0"),
        (float("nan"), ValueError, "scale must be a finite number > 0, got nan"),
        ("half", TypeError, "scale must be a number, got str"),
    ],
)
def test_a_bad_scale_of_the_automatic_weight_raises(head, scale, error, match):
    with pytest.raises(error, match=match):
        smv_automatic_lambda(head["total"], head["chi"], head["brain"], VOX, B0,
                             radii_mm=RADII, scale=scale)  # fmt: skip


def test_weights_of_one_change_nothing_and_zero_weights_drop_the_data(head):
    prior = np.zeros_like(head["chi"])
    args = (head["total"], prior, head["brain"], VOX, B0)
    plain = smv_data_consistency(*args, lam=0.1, radii_mm=RADII)
    ones = smv_data_consistency(*args, lam=0.1, radii_mm=RADII, weights=np.ones(prior.shape))
    np.testing.assert_allclose(ones, plain, rtol=1e-6, atol=1e-9)
    none = smv_data_consistency(*args, lam=0.1, radii_mm=RADII, weights=np.zeros(prior.shape))
    np.testing.assert_allclose(none, 0.0, atol=1e-12)


def test_should_stop_returns_the_masked_prior(head):
    prior = head["chi"] + 1.0
    out = smv_data_consistency(head["total"], prior, head["brain"], VOX, B0, lam=0.1,
                               radii_mm=RADII, should_stop=lambda: True)  # fmt: skip
    np.testing.assert_allclose(out, np.where(head["brain"], prior, 0.0), rtol=1e-6)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"chi_prior": np.zeros((3, 3, 3))}, ValueError, "chi_prior must have the total field's"),
        ({"chi_prior": "nan"}, ValueError, "chi_prior contains NaN or infinite values"),
        ({"lam": "best"}, ValueError, "lam must be a number > 0 or 'auto', got 'best'"),
        ({"lam": -1.0}, ValueError, "lam must be a finite number > 0"),
        ({"iterations": 0}, ValueError, "iterations must be at least 1, got 0"),
        ({"iterations": 2.5}, TypeError, "iterations must be an integer, got float"),
        ({"mask": "empty"}, ValueError, "mask is empty"),
        ({"radii_mm": (40.0,)}, ValueError, "no voxel of the mask holds a sphere of radius 40"),
        ({"weights": -np.ones((36, 40, 34))}, ValueError, "weights must be finite, non-neg"),
        ({"weights": np.ones((2, 2, 2))}, ValueError, r"of shape \(36, 40, 34\), got shape \(2,"),
        ({"b0_dir": (0, 0, 0)}, ValueError, "B0 direction must be 3 numbers, not all zero"),
    ],
)
def test_bad_input_raises(head, change, error, match):
    kwargs = {
        "total_field": head["total"], "chi_prior": np.zeros_like(head["chi"]),
        "mask": head["brain"], "voxel_size": VOX, "b0_dir": B0, "lam": 0.1, "radii_mm": RADII,
    }  # fmt: skip
    kwargs.update(change)
    if isinstance(kwargs["chi_prior"], str):
        kwargs["chi_prior"] = np.full(head["chi"].shape, np.nan)
    if isinstance(kwargs["mask"], str):
        kwargs["mask"] = np.zeros(head["brain"].shape, dtype=bool)
    with pytest.raises(error, match=match):
        smv_data_consistency(**kwargs)
