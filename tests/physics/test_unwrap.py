"""3D unwrapping against a wrapped analytic field of several cycles inside a sphere."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_fanet.physics.unwrap import (
    laplacian_unwrap,
    quality_unwrap,
    unwrap_phase,
    wrap,
)

N = 36
GRID = np.indices((N, N, N), dtype=float) - (N - 1) / 2  # (3, N, N, N) voxels from the centre
MASK = (GRID**2).sum(0) <= 16.0**2


def analytic_phase():
    """Quadratic + linear + Gaussian bump: over 3 cycles in the sphere, < 1.8 rad per voxel."""
    x, y, z = GRID
    bump = 6.0 * np.exp(-((x - 3) ** 2 + y**2 + (z + 2) ** 2) / (2 * 5.0**2))
    return 0.05 * (x**2 - 0.5 * y**2) + 0.3 * z + bump + 0.7


def harmonic_fit_residual(diff, mask):
    """RMS of ``diff`` in ``mask`` after removing the best harmonic polynomial of degree <= 2."""
    x, y, z = (g[mask] for g in GRID)
    basis = np.stack([np.ones_like(x), x, y, z, x * y, y * z, x * z, x * x - y * y, y * y - z * z])
    coef, *_ = np.linalg.lstsq(basis.T, diff[mask], rcond=None)
    return float(np.sqrt(np.mean((diff[mask] - basis.T @ coef) ** 2)))


def test_wrap_range():
    values = np.array([-3 * math.pi, -math.pi, 0.0, math.pi, 2.5 * math.pi])
    out = wrap(values)
    assert np.all(out >= -math.pi) and np.all(out < math.pi)
    np.testing.assert_allclose(np.exp(1j * out), np.exp(1j * values), atol=1e-12)


def test_quality_unwrap_is_exact_up_to_one_global_cycle():
    true = analytic_phase()
    assert np.ptp(true[MASK]) > 3 * 2 * math.pi  # several wraps to undo
    out = quality_unwrap(wrap(true), mask=MASK)
    cycles = (out - true)[MASK] / (2 * math.pi)
    np.testing.assert_allclose(cycles, np.round(cycles[0]), atol=1e-9)  # one integer everywhere
    assert -math.pi <= np.median(out[MASK]) < math.pi
    assert np.all(out[~MASK] == 0)


def test_laplacian_unwrap_matches_up_to_a_harmonic_function():
    true = analytic_phase()
    out = laplacian_unwrap(wrap(true), mask=MASK)
    diff = np.where(MASK, out - true, 0.0)
    inner = ndi.binary_erosion(MASK, iterations=2)
    # the difference is harmonic inside the mask: its discrete Laplacian vanishes there
    assert np.abs(ndi.laplace(diff)[inner]).max() < 1e-8 * np.abs(ndi.laplace(true)[inner]).max()
    # and almost all of it is a low-order harmonic polynomial
    assert harmonic_fit_residual(diff, MASK) < 0.02 * true[MASK].std()
    assert np.all(out[~MASK] == 0)


def test_laplacian_unwrap_without_mask_and_anisotropic_voxels():
    true = analytic_phase()[:, :, ::2]  # (36, 36, 18): 2 mm along the last axis
    out = laplacian_unwrap(wrap(true), (1.0, 1.0, 2.0))
    diff = out - true
    inner = np.zeros(true.shape, dtype=bool)
    inner[3:-3, 3:-3, 3:-3] = True
    lap = sum(np.diff(diff, 2, axis=a)[tuple(slice(1, -1) if b != a else slice(None)
                                               for b in range(3))] / d**2
              for a, d in enumerate((1.0, 1.0, 2.0)))  # fmt: skip
    assert np.abs(lap[2:-2, 2:-2, 2:-2]).max() < 1e-8


@pytest.mark.parametrize("method", ["laplacian", "quality"])
def test_unwrap_phase_dispatch(method):
    true = analytic_phase()
    direct = laplacian_unwrap if method == "laplacian" else quality_unwrap
    expected = direct(wrap(true), mask=MASK)
    np.testing.assert_array_equal(unwrap_phase(wrap(true), method=method, mask=MASK), expected)


@pytest.mark.parametrize(
    ("phase", "kwargs", "match"),
    [
        (np.zeros((4, 4)), {}, r"phase must be 3D"),
        (np.full((4, 4, 4), np.nan), {}, "NaN or infinite"),
        (np.zeros((4, 4, 4)), {"mask": np.ones((4, 4, 5))}, "mask must have the phase's shape"),
        (np.zeros((4, 4, 4)), {"mask": np.zeros((4, 4, 4))}, "mask is empty"),
        (np.zeros((4, 4, 4)), {"method": "romeo"}, "method must be one of"),
        (np.zeros((4, 4, 4)), {"voxel_size": (1.0, 0.0, 1.0)}, "voxel_size must be 3 positive"),
    ],
)
def test_bad_input_raises(phase, kwargs, match):
    with pytest.raises(ValueError, match=match):
        unwrap_phase(phase, **kwargs)
