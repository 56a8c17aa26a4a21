"""Simulated multi-echo GRE phase: head with air cavities, total/background/local fields."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_fanet.physics.forward import forward_field
from napari_fanet.simulation.gre_phase import GREParams, simulate_gre_phase


@pytest.fixture(scope="module")
def gre(qsm4):
    return simulate_gre_phase(qsm4, 7)


def test_shapes_types_and_ranges(gre, qsm4):
    shape = qsm4.mask.shape
    assert gre.phase.shape == gre.magnitude.shape == (*shape, 3)
    assert gre.phase.dtype == gre.magnitude.dtype == np.float32
    assert np.all(np.abs(gre.phase) <= math.pi + 1e-6) and np.all(gre.magnitude >= 0)
    assert gre.echo_times_s == (0.004, 0.008, 0.012) and gre.b0_tesla == 3.0
    assert gre.voxel_size == pytest.approx(qsm4.voxel_size)
    assert gre.hz_per_ppm == pytest.approx(127.731)
    assert gre.cavities.any() and not (gre.cavities & gre.mask).any()
    assert not (gre.cavities & ~gre.head).any() and not (gre.mask & ~gre.head).any()


def test_fields_add_up_and_local_is_the_demeaned_brain_field(gre):
    m = gre.mask
    np.testing.assert_allclose(
        gre.total_field_ppm[m], gre.background_field_ppm[m] + gre.local_field_ppm[m], atol=1e-5
    )
    chi = np.where(m, gre.chi - gre.chi[m].mean(), 0.0)
    expected = forward_field(chi, gre.voxel_size, gre.b0_dir) * m
    np.testing.assert_allclose(gre.local_field_ppm, expected, atol=1e-6)
    assert np.all(gre.local_field_ppm[~m] == 0)
    # air cavities and the head make a background far stronger than the tissue field
    assert np.ptp(gre.background_field_ppm[m]) > 10 * np.ptp(gre.local_field_ppm[m])


def test_background_is_nearly_harmonic_inside_the_brain(gre, qsm4):
    """Discrete Laplacian inside the brain: far below the local field's with blurred edges,
    several times above it with sharp ones (Gibbs ringing of the FFT forward model)."""
    inner = ndi.binary_erosion(gre.mask, iterations=3)

    def rms_laplacian(field):
        return np.sqrt(np.mean(ndi.laplace(field.astype(np.float64))[inner] ** 2))

    local = rms_laplacian(gre.local_field_ppm)
    assert rms_laplacian(gre.background_field_ppm) < 0.5 * local
    sharp = simulate_gre_phase(qsm4, 7, params=GREParams(edge_smoothing_mm=0.0))
    assert rms_laplacian(sharp.background_field_ppm) > 2 * local


def test_phase_differences_follow_the_total_field(gre):
    m = gre.mask & (gre.magnitude[..., 0] > np.median(gre.magnitude[..., 0][gre.mask]))
    for e in (1, 2):
        measured = np.angle(np.exp(1j * (gre.phase[..., e] - gre.phase[..., 0])))
        dte = gre.echo_times_s[e] - gre.echo_times_s[0]
        expected = 2 * math.pi * gre.total_field_ppm * gre.hz_per_ppm * dte
        err = np.angle(np.exp(1j * (measured - expected)))[m]
        assert np.median(np.abs(err)) < 0.05
    # the last echo wraps: the true phase spans several cycles in the brain
    last = 2 * math.pi * gre.total_field_ppm[gre.mask] * gre.hz_per_ppm * 0.012
    assert np.ptp(last) > 4 * math.pi


def test_pdf_needs_sources_beyond_a_volume_the_brain_fills(gre):
    """On the simulated head, PDF with sources on the padded grid beats volume-only sources."""
    from napari_fanet.physics.background import pdf

    m, truth = gre.mask, gre.local_field_ppm

    def nrmse(est):
        return np.linalg.norm((est - truth)[m]) / np.linalg.norm(truth[m])

    args = (gre.total_field_ppm, m, gre.voxel_size, gre.b0_dir)
    extended = nrmse(pdf(*args, max_iter=30))
    inside_only = nrmse(pdf(*args, max_iter=30, extend_fov=False))
    assert extended < 0.8 < inside_only


def test_magnitude_decays_and_noise_matches(gre):
    m = gre.mask
    medians = [np.median(gre.magnitude[..., e][m]) for e in range(3)]
    assert medians[0] > medians[1] > medians[2]
    outside = ~ndi.binary_dilation(gre.head, iterations=1)
    # outside the head the magnitude is Rayleigh noise: mean sigma * sqrt(pi / 2)
    assert gre.magnitude[..., 0][outside].mean() == pytest.approx(
        gre.noise_sigma * math.sqrt(math.pi / 2), rel=0.05
    )


def test_same_seed_same_data_other_seed_differs(gre, qsm4):
    again = simulate_gre_phase(qsm4, 7)
    np.testing.assert_array_equal(again.phase, gre.phase)
    other = simulate_gre_phase(qsm4, 8, params=GREParams(n_cavities=(0, 0)))
    assert not other.cavities.any()
    assert not np.array_equal(other.phase, gre.phase)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"echo_times_s": (0.008, 0.004)}, "echo_times_s must be increasing"),
        ({"echo_times_s": (4.0, 8.0)}, "echo_times_s must be increasing"),
        ({"echo_times_s": ()}, "echo_times_s must be increasing"),
        ({"b0_tesla": 0.0}, "b0_tesla must be > 0"),
        ({"n_cavities": (2, 1)}, "n_cavities must be"),
        ({"snr": (0.0, 10.0)}, "snr must be"),
        ({"edge_smoothing_mm": -1.0}, "edge_smoothing_mm must be >= 0"),
    ],
)
def test_bad_params_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GREParams(**kwargs)
