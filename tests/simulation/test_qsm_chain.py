"""The ``chain`` QSM family: full-range phantoms seen through the phase chain."""

import math

import numpy as np
import pytest

from napari_fanet.simulation.dataset import simulate_subject
from napari_fanet.simulation.qsm_chain import (
    STORED_UNITS_PER_PI,
    simulate_chain_qsm_subject,
    store_phase_as_integers,
)
from napari_fanet.simulation.qsm_families import FULL_RANGE
from napari_fanet.simulation.qsm_phantom import simulate_qsm_subject

VOX = (4.0, 4.0, 4.0)


@pytest.fixture(scope="module")
def noisy():
    return simulate_chain_qsm_subject(3, VOX)


@pytest.fixture(scope="module")
def clean():
    return simulate_chain_qsm_subject(3, VOX, noise=False)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_store_phase_as_integers_is_the_scanners_12_bit_code():
    phase = np.array([-math.pi, -1.0, 0.0, 1.0, math.pi - 1e-9])
    stored = store_phase_as_integers(phase)
    assert stored.dtype == np.int16
    assert stored.min() == -STORED_UNITS_PER_PI and stored.max() == STORED_UNITS_PER_PI - 1
    np.testing.assert_allclose(stored * math.pi / STORED_UNITS_PER_PI, phase, atol=math.pi / 4096)


def test_chain_subject_is_the_phantom_in_the_chains_local_mask(noisy):
    phantom = simulate_qsm_subject(3, VOX, noise=False, params=FULL_RANGE)
    m = noisy.mask
    assert m.dtype == bool and m.shape == phantom.mask.shape
    # LBV erodes the brain by a voxel: the local mask is most of it, and inside the head
    assert 0.5 * phantom.mask.sum() < m.sum() <= phantom.mask.sum() * 1.05
    np.testing.assert_array_equal(noisy.chi[m], phantom.chi[m])
    for array in (noisy.chi, noisy.local_field, noisy.magnitude):
        assert array.dtype == np.float32 and np.all(array[~m] == 0)
        assert np.isfinite(array).all()
    assert noisy.affine.tolist() == phantom.affine.tolist()
    assert noisy.b0_dir == phantom.b0_dir
    assert noisy.meta["family"] == "chain" and noisy.meta["background"] == "lbv"
    assert 30.0 <= noisy.meta["acquisition"]["snr"] <= 400.0
    assert set(noisy.meta["chain_s"]) >= {"unwrap", "fit", "remove"}


def test_chain_field_follows_the_true_local_field_and_noise_false_is_cleaner(noisy, clean):
    truth = simulate_qsm_subject(3, VOX, noise=False, params=FULL_RANGE).local_field
    both = noisy.mask & clean.mask
    r_noisy = _correlation(noisy.local_field[both], truth[both])
    r_clean = _correlation(clean.local_field[both], truth[both])
    assert r_clean > 0.7  # the harmonic part background removal loses keeps it below 1
    assert r_clean >= r_noisy - 1e-3
    assert clean.meta["acquisition"]["snr"] == pytest.approx(1.0e4)


def test_simulate_subject_dispatches_the_chain_family():
    subject = simulate_subject("qsm", 3, VOX, noise=False, family="chain")
    assert subject.meta["family"] == "chain"
    vsharp = simulate_subject("qsm", 3, VOX, noise=False, family="chain-vsharp")
    assert (vsharp.meta["family"], vsharp.meta["background"]) == ("chain-vsharp", "vsharp")
    assert not np.allclose(vsharp.local_field, subject.local_field)  # another estimate
    expected = (
        "family must be one of phantom, randomised, randomised-v2, randomised-v4, randomised-v5, "
        "randomised-v6, randomised-v7 for task ms"
    )
    with pytest.raises(ValueError, match=expected):
        simulate_subject("ms", 3, VOX, family="chain")


def test_chain_subject_refuses_a_bad_voxel_size():
    with pytest.raises(
        ValueError, match=r"voxel_size must be between 0.25 and 10 mm, got \(0, 2, 2\)"
    ):
        simulate_chain_qsm_subject(1, (0, 2, 2))


def test_chain_subject_refuses_an_unknown_background_removal():
    with pytest.raises(ValueError, match=r"background must be one of .*got 'sharp'"):
        simulate_chain_qsm_subject(1, VOX, background="sharp")
