"""Data consistency: checked against an independent float64 numpy implementation of the physics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_fanet.physics.data_consistency import (
    AUTO_LAMBDA_RANGE,
    DC_METHODS,
    automatic_lambda,
    data_consistency,
    estimate_field_noise,
    kspace_data_consistency,
    weighted_data_consistency,
)


def numpy_dipole(shape, voxel_size, b0):
    """``D(k) = 1/3 - (k.b0)^2/|k|^2`` on an FFT grid, written independently (float64)."""
    b0 = np.asarray(b0, float) / np.linalg.norm(b0)
    k = np.meshgrid(
        *[np.fft.fftfreq(n, d=v) for n, v in zip(shape, voxel_size, strict=True)], indexing="ij"
    )
    k2 = sum(c * c for c in k)
    kb = sum(c * b for c, b in zip(k, b0, strict=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 / 3.0 - kb * kb / k2
    d[k2 == 0] = 0.0
    # Hermitian symmetrisation of even-size Nyquist planes, as the package's kernel does
    neg = d.copy()
    for axis, n in enumerate(shape):
        idx = (-np.arange(n)) % n
        neg = np.take(neg, idx, axis=axis)
    return 0.5 * (d + neg)


def padded(shape, factor=1.5):
    out = []
    for n in shape:
        m = int(np.ceil(factor * n))
        out.append(m + (m % 2) if m > n else m)
    return tuple(out)


def dense_dipole(shape, voxel_size, b0):
    """The cropped, zero-padded dipole convolution as a dense matrix (tiny volumes only)."""
    pshape = padded(shape)
    d = numpy_dipole(pshape, voxel_size, b0)
    n = int(np.prod(shape))
    cols = []
    for i in range(n):
        e = np.zeros(shape)
        e.flat[i] = 1.0
        y = np.fft.ifftn(d * np.fft.fftn(e, s=pshape, axes=(0, 1, 2))).real[
            : shape[0], : shape[1], : shape[2]
        ]
        cols.append(y.ravel())
    return np.stack(cols, axis=1)


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    shape = (8, 7, 6)
    vox = (1.0, 1.2, 2.0)
    b0 = (0.2, -0.1, 0.97)
    mask = np.zeros(shape, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    chi = rng.normal(0, 0.05, shape) * mask
    prior = chi + rng.normal(0, 0.02, shape) * mask
    a = dense_dipole(shape, vox, b0)
    field = (a @ chi.ravel()).reshape(shape) * mask
    return shape, vox, b0, mask, chi, prior, field, a


def test_kspace_matches_the_closed_form(case):
    shape, vox, b0, mask, _chi, prior, field, _ = case
    pshape = padded(shape)
    d = numpy_dipole(pshape, vox, b0)
    lam = 0.05
    expected = np.fft.ifftn(
        (
            d * np.fft.fftn(field, s=pshape, axes=(0, 1, 2))
            + lam * np.fft.fftn(prior, s=pshape, axes=(0, 1, 2))
        )
        / (d * d + lam)
    ).real[: shape[0], : shape[1], : shape[2]]
    got = kspace_data_consistency(field, prior, vox, b0, lam=lam)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    masked = kspace_data_consistency(field, prior, vox, b0, lam=lam, mask=mask)
    np.testing.assert_allclose(masked, expected * mask, atol=1e-12)


def test_cg_solves_the_weighted_normal_equations(case):
    shape, vox, b0, mask, _chi, prior, field, a = case
    lam = 0.03
    w = np.random.default_rng(1).uniform(0.5, 1.5, shape)
    w2 = (w * mask).ravel() ** 2
    lhs = a.T @ (w2[:, None] * a) + lam * np.eye(a.shape[0])
    rhs = a.T @ (w2 * field.ravel()) + lam * prior.ravel()
    expected = np.linalg.solve(lhs, rhs).reshape(shape) * mask
    got = weighted_data_consistency(
        field,
        prior,
        mask,
        vox,
        b0,
        lam=lam,
        weights=w,
        iterations=400,
        tolerance=1e-12,
        support=False,
    )
    np.testing.assert_allclose(got, expected, atol=1e-8)


def test_cg_with_support_solves_for_a_brain_map_whose_mean_the_field_sets(case):
    shape, vox, b0, mask, chi, prior, field, a = case
    lam = 0.03
    w = np.random.default_rng(1).uniform(0.5, 1.5, shape)
    w2 = (w * mask).ravel() ** 2
    m = mask.ravel().astype(float)
    s = np.diag(m)  # supported in the brain
    c = np.eye(m.size) - np.outer(m, m) / m.sum()  # the prior leaves the brain's mean free
    lhs = s @ a.T @ (w2[:, None] * a) @ s + lam * c
    rhs = s @ a.T @ (w2 * field.ravel()) + lam * c @ prior.ravel()
    expected = np.linalg.solve(lhs, rhs).reshape(shape) * mask
    got = weighted_data_consistency(
        field, prior, mask, vox, b0, lam=lam, weights=w, iterations=400, tolerance=1e-12
    )
    np.testing.assert_allclose(got, expected, atol=1e-8)
    # a prior off by a constant inside the brain: the field puts the level back
    offset = weighted_data_consistency(
        field, chi + 0.05 * mask, mask, vox, b0, lam=lam, iterations=400, tolerance=1e-12
    )
    np.testing.assert_allclose(offset, chi, atol=1e-8)
    kept_offset = weighted_data_consistency(
        field, chi + 0.05 * mask, mask, vox, b0, lam=lam, iterations=400, support=False
    )
    assert abs(np.mean((kept_offset - chi)[mask]) - 0.05) < 0.02


def test_cg_keeps_the_true_map_when_the_field_is_exact(case):
    _shape, vox, b0, mask, chi, _prior, field, _ = case
    got = weighted_data_consistency(field, chi, mask, vox, b0, lam=0.01, iterations=50)
    np.testing.assert_allclose(got, chi, atol=1e-10)


@pytest.mark.parametrize("method", ["cg", "kspace"])
def test_linear_and_b0_sign_invariant(case, method):
    _shape, vox, b0, mask, _chi, prior, field, _ = case
    base = data_consistency(method, field, prior, mask, vox, b0, lam=0.02)
    for k in (0.25, 4.0):
        scaled = data_consistency(method, k * field, k * prior, mask, vox, b0, lam=0.02)
        np.testing.assert_allclose(scaled, k * base, atol=1e-10)
    flipped = data_consistency(method, field, prior, mask, vox, tuple(-v for v in b0), lam=0.02)
    np.testing.assert_allclose(flipped, base, atol=1e-10)


def test_large_lambda_keeps_the_prior_and_none_returns_it(case):
    _shape, vox, b0, mask, _chi, prior, field, _ = case
    for method in ("cg", "kspace"):
        kept = data_consistency(method, field, prior, mask, vox, b0, lam=1e6)
        if method == "cg":  # the prior's shape is kept; its mean in the brain is the field's
            kept = kept - mask * (kept[mask].mean() - prior[mask].mean())
        np.testing.assert_allclose(kept, prior * mask, atol=1e-5)
    np.testing.assert_array_equal(
        data_consistency("none", field, prior, mask, vox, b0), prior * mask
    )
    assert set(DC_METHODS) == {"cg", "kspace", "none"}


def test_torch_in_torch_out_and_float32(case):
    shape, vox, b0, mask, _chi, prior, field, _ = case
    f = torch.from_numpy(field.astype(np.float32))
    p = torch.from_numpy(prior.astype(np.float32))
    out = weighted_data_consistency(f, p, torch.from_numpy(mask), vox, b0, iterations=5)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert tuple(out.shape) == shape


def test_should_stop_returns_the_prior(case):
    _shape, vox, b0, mask, _chi, prior, field, _ = case
    got = weighted_data_consistency(field, prior, mask, vox, b0, should_stop=lambda: True)
    np.testing.assert_array_equal(got, prior * mask)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lam": 0.0}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"iterations": 0}, "iterations must be at least 1, got 0"),
        ({"iterations": 2.5}, "iterations must be an integer, got float"),
        ({"weights": -np.ones((8, 7, 6))}, "weights must be finite, non-negative"),
        ({"weights": np.ones((2, 2, 2))}, r"weights must be .* of shape \(8, 7, 6\)"),
    ],
)
def test_bad_arguments(case, kwargs, match):
    _shape, vox, b0, mask, _chi, prior, field, _ = case
    exc = TypeError if "integer" in match else ValueError
    with pytest.raises(exc, match=match):
        weighted_data_consistency(field, prior, mask, vox, b0, **kwargs)


def test_bad_shapes_and_method(case):
    _shape, vox, b0, mask, _chi, prior, field, _ = case
    with pytest.raises(ValueError, match=r"same shape, got \(8, 7, 6\) and \(8, 7, 3\)"):
        kspace_data_consistency(field, prior[..., :3], vox, b0)
    with pytest.raises(ValueError, match=r"mask must have the field's shape \(8, 7, 6\)"):
        weighted_data_consistency(field, prior, mask[:4], vox, b0)
    with pytest.raises(ValueError, match="data consistency must be one of cg, kspace, none"):
        data_consistency("tikhonov", field, prior, mask, vox, b0)
    with pytest.raises(ValueError, match="B0 direction must be 3 numbers"):
        kspace_data_consistency(field, prior, vox, (0.0, 0.0, 0.0))


def test_noise_estimate_of_white_noise():
    rng = np.random.default_rng(3)
    mask = np.ones((40, 40, 40), bool)
    for sigma in (0.001, 0.003):
        field = rng.normal(0.0, sigma, mask.shape)
        assert estimate_field_noise(field, mask) == pytest.approx(sigma, rel=0.1)
    assert estimate_field_noise(np.zeros((4, 4, 4)), np.ones((4, 4, 4), bool)) == 0.0


def smooth_case(seed=4, shape=(32, 32, 32)):
    from scipy import ndimage

    from napari_fanet.physics.forward import forward_field

    rng = np.random.default_rng(seed)
    grid = np.indices(shape) - (np.array(shape)[:, None, None, None] - 1) / 2
    mask = np.sum((grid / (np.array(shape)[:, None, None, None] * 0.4)) ** 2, axis=0) < 1
    chi = ndimage.gaussian_filter(rng.normal(0, 1, shape), 2.0) * 0.5 * mask
    field = forward_field(chi, (1.0, 1.0, 1.0), (0.0, 0.2, 1.0)) * mask
    return chi, field, mask, rng


def test_automatic_lambda_follows_noise_and_prior_error():
    chi, field, mask, rng = smooth_case()
    b0 = (0.0, 0.2, 1.0)
    bad_prior = 0.5 * chi
    quiet = automatic_lambda(field, bad_prior, mask, (1, 1, 1), b0)
    noisy_field = (
        field + rng.normal(0, 3 * estimate_field_noise(field, mask) + 1e-3, chi.shape) * mask
    )
    noisy = automatic_lambda(noisy_field, bad_prior, mask, (1, 1, 1), b0)
    assert noisy > quiet  # more noise: trust the network more
    worse = automatic_lambda(noisy_field, 0.0 * chi, mask, (1, 1, 1), b0)
    assert worse < noisy  # a worse network: trust the field more
    lo, hi = AUTO_LAMBDA_RANGE
    assert automatic_lambda(field, chi, mask, (1, 1, 1), b0) == hi  # a perfect prior
    assert lo <= worse <= hi


def test_automatic_lambda_is_scale_and_b0_sign_invariant():
    chi, field, mask, rng = smooth_case()
    noisy = field + rng.normal(0, 0.002, chi.shape) * mask
    base = automatic_lambda(noisy, 0.7 * chi, mask, (1, 1, 1), (0.0, 0.2, 1.0))
    assert automatic_lambda(4 * noisy, 2.8 * chi, mask, (1, 1, 1), (0.0, 0.2, 1.0)) == (
        pytest.approx(base, rel=1e-6)
    )
    assert automatic_lambda(noisy, 0.7 * chi, mask, (1, 1, 1), (0.0, -0.2, -1.0)) == (
        pytest.approx(base, rel=1e-9)
    )
    auto = data_consistency("cg", noisy, 0.7 * chi, mask, (1, 1, 1), (0.0, 0.2, 1.0))
    fixed = data_consistency("cg", noisy, 0.7 * chi, mask, (1, 1, 1), (0.0, 0.2, 1.0), lam=base)
    np.testing.assert_allclose(auto, fixed, atol=1e-12)


def test_lambda_text_other_than_auto_is_refused(case):
    _shape, vox, b0, mask, _chi, prior, field, _ = case
    with pytest.raises(ValueError, match="lam must be a number > 0 or 'auto', got 'fast'"):
        data_consistency("cg", field, prior, mask, vox, b0, lam="fast")
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        kspace_data_consistency(field, prior, vox, b0, lam="auto")
