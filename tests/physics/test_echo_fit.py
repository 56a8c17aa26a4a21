"""Echo differences, temporal consistency and the weighted least-squares field fit."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_fanet.physics.echo_unwrap import check_echo_times, unwrap_echoes
from napari_fanet.physics.field_fit import estimate_noise_sigma, fit_field

N = 32
GRID = np.indices((N, N, N), dtype=float) - (N - 1) / 2
MASK = (GRID**2).sum(0) <= 14.0**2
TE = np.array([0.004, 0.008, 0.012])  # s
HZ_PER_PPM = 42.577 * 3.0


def field_hz():
    """Smooth field: linear gradient + bump, about -45..75 Hz (several wraps at 12 ms)."""
    x, y, z = GRID
    return 3.0 * x - 1.5 * z + 40.0 * np.exp(-((x + 2) ** 2 + (y - 3) ** 2 + z**2) / 50.0)


def receive_phase():
    """A smooth phi0 with its own wraps (about 9 rad over the volume), common to all echoes."""
    x, y, _ = GRID
    return 0.3 * x + 0.05 * y**2 / 4


def signal(noise_sigma=0.0, seed=0, amplitude=1.0):
    rng = np.random.default_rng(seed)
    phase = receive_phase()[..., None] + 2 * math.pi * field_hz()[..., None] * TE  # (N,N,N,3)
    s = amplitude * np.exp(1j * phase)
    s = s + noise_sigma * (rng.standard_normal(s.shape) + 1j * rng.standard_normal(s.shape))
    return np.angle(s), np.abs(s)


@pytest.mark.parametrize("method", ["quality", "laplacian"])
def test_noise_free_field_is_recovered(method):
    phase, mag = signal()
    echoes = unwrap_echoes(phase, TE, method=method, mask=MASK)
    assert echoes.phase.shape == (N, N, N, 2) and not echoes.single_echo
    np.testing.assert_allclose(echoes.delta_te_s, [0.004, 0.008])
    fit = fit_field(echoes, mag, mask=MASK, noise_sigma=0.01)
    err = np.where(MASK, fit.field_hz - field_hz(), 0.0)
    if method == "quality":  # congruent unwrapping: exact
        assert np.abs(err[MASK]).max() < 1e-9
        assert np.abs(fit.residual_rad[MASK]).max() < 1e-9  # the echoes agree
    else:  # Laplacian: exact up to a harmonic function (removed with the background)
        inner = ndi.binary_erosion(MASK, iterations=2)
        assert np.abs(ndi.laplace(err)[inner]).max() < 1e-6 * np.abs(ndi.laplace(field_hz())).max()
    np.testing.assert_allclose(fit.field_ppm * HZ_PER_PPM, fit.field_hz, rtol=1e-12)
    assert np.all(fit.field_hz[~MASK] == 0)


def test_propagated_sigma_matches_the_noise():
    sigma = 0.05  # per real/imaginary channel, amplitude 1: SNR 20
    phase, mag = signal(sigma, seed=1)
    echoes = unwrap_echoes(phase, TE, method="quality", mask=MASK)
    fit = fit_field(echoes, mag, mask=MASK)  # noise estimated from the first echo
    assert fit.noise_sigma == pytest.approx(sigma, rel=0.1)
    empirical = float(np.std((fit.field_hz - field_hz())[MASK]))
    # analytic: var(psi_k) = 2 sigma^2 / A^2; the shared first echo correlates the two
    # differences, which the propagated value ignores (so it is lower, by about 10 % here)
    predicted = float(np.median(fit.sigma_hz[MASK]))
    assert predicted == pytest.approx(
        sigma / (2 * math.pi * math.sqrt(0.5 * (0.004**2 + 0.008**2))), rel=0.12
    )
    assert 0.8 * empirical < predicted < 1.05 * empirical
    assert fit.residual_rad[MASK].mean() > 0


def test_single_echo_assumes_zero_receive_phase():
    phase = (2 * math.pi * field_hz() * 0.01)[..., None]  # one echo at 10 ms, phi0 = 0
    wrapped = np.angle(np.exp(1j * phase))
    echoes = unwrap_echoes(wrapped, [0.01], method="quality", mask=MASK)
    assert echoes.single_echo and echoes.phase.shape == (N, N, N, 1)
    fit = fit_field(echoes, np.ones((N, N, N, 1)), mask=MASK, noise_sigma=0.1)
    cycles = (fit.field_hz - field_hz())[MASK] * 0.01  # whole cycles of the global ambiguity
    np.testing.assert_allclose(cycles, np.round(cycles[0]), atol=1e-9)
    assert np.all(fit.residual_rad == 0)
    np.testing.assert_allclose(fit.sigma_hz[MASK], 0.1 / (2 * math.pi * 0.01))


def test_two_echoes_without_magnitude():
    phase, _ = signal()
    echoes = unwrap_echoes(phase[..., :2], TE[:2], method="quality", mask=MASK)
    fit = fit_field(echoes, mask=MASK)
    assert fit.sigma_hz is None and fit.noise_sigma is None
    assert np.abs((fit.field_hz - field_hz())[MASK]).max() < 1e-9
    assert np.all(fit.residual_rad == 0)


@pytest.mark.parametrize(
    ("times", "n", "match"),
    [
        ([0.004, 0.008], 3, "expected 3 echo time"),
        ([4.0, 8.0, 12.0], 3, "look like milliseconds"),
        ([0.004, 0.004, 0.012], 3, "strictly increasing"),
        ([-0.004, 0.008, 0.012], 3, "finite and positive"),
        (["a", "b"], 2, "must be numbers"),
    ],
)
def test_bad_echo_times_raise(times, n, match):
    with pytest.raises(ValueError, match=match):
        check_echo_times(times, n)


def test_bad_fit_inputs_raise():
    phase, mag = signal()
    with pytest.raises(ValueError, match=r"phase must be \(X, Y, Z, E\)"):
        unwrap_echoes(phase[None], TE)
    echoes = unwrap_echoes(phase, TE, method="quality", mask=MASK)
    with pytest.raises(ValueError, match="magnitude must have shape"):
        fit_field(echoes, mag[..., :2])
    with pytest.raises(ValueError, match="finite and non-negative"):
        fit_field(echoes, -mag)
    with pytest.raises(ValueError, match="mask must have the spatial shape"):
        fit_field(echoes, mag, mask=MASK[:-1])
    with pytest.raises(ValueError, match="noise_sigma must be a finite number > 0"):
        fit_field(echoes, mag, noise_sigma=0.0)


def test_noise_estimate_errors():
    with pytest.raises(ValueError, match="magnitude must be 3D"):
        estimate_noise_sigma(np.ones((4, 4)))
    with pytest.raises(ValueError, match="mask must have the magnitude's shape"):
        estimate_noise_sigma(np.ones((4, 4, 4)), np.ones((4, 4, 5)))
    with pytest.raises(ValueError, match="too few voxels"):
        estimate_noise_sigma(np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="shows no noise"):
        estimate_noise_sigma(np.ones((8, 8, 8)))
