"""Phase scaling: stored values -> radians, detected from the value range."""

import math

import numpy as np
import pytest

from napari_fanet.physics.phase_scale import detect_phase_scaling, phase_to_radians
from napari_fanet.simulation.qsm_chain import store_phase_as_integers

RNG = np.random.default_rng(0)
TRUE = RNG.uniform(-math.pi, math.pi, size=(12, 10, 8, 3))  # radians, full cycle


def _signed12(phase):
    return store_phase_as_integers(phase)


def _unsigned12(phase):
    return np.clip(np.round((phase + math.pi) * 2048 / math.pi), 0, 4095).astype(np.uint16)


@pytest.mark.parametrize(
    ("stored", "kind", "atol"),
    [
        (TRUE, "radians", 0.0),
        (TRUE.astype(np.float32), "radians", 1e-6),
        (np.mod(TRUE, 2 * math.pi), "radians_0_2pi", None),  # same phase modulo 2 pi
        (_signed12(TRUE), "scanner_12bit_signed", math.pi / 4096),
        (_unsigned12(TRUE), "scanner_12bit_unsigned", math.pi / 2048),
        (TRUE * 0.00367 / math.pi, "symmetric_range", 2e-3),  # the shared real patch's scaling
        (TRUE * 1000.0, "symmetric_range", 5e-3),  # milliradians
    ],
)
def test_detected_scaling_recovers_radians(stored, kind, atol):
    radians, scaling = phase_to_radians(stored)
    assert scaling.kind == kind
    assert radians.dtype == np.float64 and radians.shape == stored.shape
    assert "span" in scaling.description and "radians" in scaling.description
    if atol is None:  # compare on the unit circle
        err = np.angle(np.exp(1j * (radians - TRUE)))
        assert np.abs(err).max() < 1e-12
    else:
        assert np.abs(radians - TRUE).max() <= atol + 1e-12


def test_observed_range_maps_to_minus_pi_pi():
    stored = 200.0 + 100.0 * TRUE / math.pi  # [100, 300] -> [-pi, pi]
    radians, scaling = phase_to_radians(stored)
    assert scaling.kind == "observed_range"
    assert scaling.offset == pytest.approx(200.0, abs=0.1)  # sampled extremes, not +-pi
    np.testing.assert_allclose(radians, TRUE, atol=5e-3)


def test_scale_override_skips_detection():
    stored = _signed12(TRUE)
    radians, scaling = phase_to_radians(stored, scale=math.pi / 4096, offset=0.0)
    assert scaling.kind == "given" and "given" in scaling.description
    np.testing.assert_allclose(radians, stored * math.pi / 4096)
    shifted, _ = phase_to_radians(stored, scale=2.0, offset=1.0)
    np.testing.assert_allclose(shifted, (stored - 1.0) * 2.0)


def test_nan_voxels_are_ignored_by_detection():
    stored = TRUE.copy()
    stored[0, 0, 0, 0] = np.nan
    assert detect_phase_scaling(stored).kind == "radians"


@pytest.mark.parametrize(
    ("stored", "kwargs", "match"),
    [
        (np.full((4, 4, 4), 2.0), {}, "phase is constant"),
        (np.ones((4, 4, 4), dtype=complex), {}, "real numeric"),
        (np.full((4, 4, 4), np.nan), {}, "no finite value"),
        (TRUE, {"scale": 0.0}, "scale must be a finite non-zero"),
        (TRUE, {"scale": float("inf")}, "scale must be a finite non-zero"),
        (TRUE, {"scale": 1.0, "offset": float("nan")}, "offset must be a finite"),
    ],
)
def test_bad_phase_or_scale_raises(stored, kwargs, match):
    with pytest.raises(ValueError, match=match):
        phase_to_radians(stored, **kwargs)
