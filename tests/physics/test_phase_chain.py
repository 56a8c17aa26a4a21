"""The whole chain: scanner phase -> local field, with progress, cancellation and real data."""

import math
from pathlib import Path

import numpy as np
import pytest

from napari_fanet.physics.forward import forward_field
from napari_fanet.physics.gre_io import load_multi_echo
from napari_fanet.physics.phase_chain import (
    STEPS,
    PhaseChainCancelled,
    PhaseChainSettings,
    run_phase_chain,
)
from napari_fanet.simulation.qsm_chain import store_phase_as_integers

N = 32
GRID = np.indices((N, N, N), dtype=float) - (N - 1) / 2
BRAIN = (GRID**2).sum(0) <= 12.0**2
TE = (0.004, 0.008, 0.012)
HZ_PER_PPM = 42.577 * 3.0
_ROOTS = (Path(__file__).resolve().parents[3], Path(__file__).resolve().parents[2])
PATCH = next(
    (r / "shared/data/gre-multiecho-patch" for r in _ROOTS if (r / "shared/data").is_dir()),
    _ROOTS[0] / "shared/data/gre-multiecho-patch",
)  # ../shared/data beside the checkout, or shared/data inside it


def acquisition(seed=0, noise=0.003):
    """Signed 12-bit phase and magnitude of a sphere with local sources and air blocks around.

    Returns the stored phase ``(N, N, N, 3)`` (int16), magnitude, and the true local field (ppm).
    """
    rng = np.random.default_rng(seed)
    chi = np.zeros((N, N, N))
    for centre, value in [((3, -4, 2), 0.2), ((-5, 2, -3), -0.1), ((1, 5, -1), 0.15)]:
        chi[((GRID - np.array(centre)[:, None, None, None]) ** 2).sum(0) <= 2.5**2] = value
    air = np.zeros((N, N, N))
    air[0:3, 14:17, 14:17] = air[29:32, 5:8, 18:21] = 9.4
    local = forward_field(chi, (2.0, 2.0, 2.0), (0, 0, 1)) * BRAIN
    total = forward_field(chi + air, (2.0, 2.0, 2.0), (0, 0, 1))  # ppm
    phi0 = 0.15 * GRID[0] + 0.5
    phase = phi0[..., None] + 2 * math.pi * total[..., None] * HZ_PER_PPM * np.array(TE)
    signal = BRAIN[..., None] * np.exp(-30.0 * np.array(TE)) * np.exp(1j * phase)
    signal = signal + noise * (
        rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape)
    )
    stored = store_phase_as_integers(np.angle(signal))
    return stored, np.abs(signal), local


def nrmse(est, ref, mask):
    return 100 * np.linalg.norm((est - ref)[mask]) / np.linalg.norm(ref[mask])


@pytest.mark.parametrize(
    ("unwrap", "background"),
    [("laplacian", "vsharp"), ("quality", "vsharp"), ("laplacian", "pdf"), ("laplacian", "lbv")],
)
def test_chain_recovers_the_local_field(unwrap, background):
    stored, mag, local = acquisition()
    calls = []
    settings = PhaseChainSettings(unwrap=unwrap, background=background, pdf_max_iter=40)
    result = run_phase_chain(
        stored, TE, (2.0, 2.0, 2.0), magnitude=mag, settings=settings,
        progress=lambda *args: calls.append(args),
    )  # fmt: skip
    assert result.scaling.kind == "scanner_12bit_signed"
    assert calls == [(name, i + 1, len(STEPS)) for i, name in enumerate(STEPS)]
    assert list(result.timings_s) == list(STEPS) and all(t >= 0 for t in result.timings_s.values())
    assert np.sum(result.mask & BRAIN) / np.sum(result.mask | BRAIN) > 0.9
    m = result.local_mask & BRAIN
    assert nrmse(result.local_field_ppm, local, m) < 45
    np.testing.assert_allclose(result.field_ppm * HZ_PER_PPM, result.field_hz, rtol=1e-12)
    assert np.all(np.isfinite(result.sigma_hz[result.mask]))
    assert any("12-bit" in msg for msg in result.messages)
    assert any("refined" in msg for msg in result.messages)


def test_single_echo_with_given_mask():
    stored, _, _ = acquisition()
    result = run_phase_chain(stored[..., 1], TE[1:2], (2, 2, 2), mask=BRAIN)
    assert result.sigma_hz is None and np.array_equal(result.mask, BRAIN)
    assert np.all(np.isfinite(result.local_field_ppm))


def test_should_stop_cancels_between_steps():
    stored, mag, _ = acquisition()
    calls = []
    checks = iter([False, False, True])
    with pytest.raises(PhaseChainCancelled, match="before step 'unwrap'"):
        run_phase_chain(
            stored, TE, (2, 2, 2), magnitude=mag,
            progress=lambda *args: calls.append(args), should_stop=lambda: next(checks),
        )  # fmt: skip
    assert [c[0] for c in calls] == ["scale", "mask"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"phase": np.zeros((4, 4))}, r"phase must be \(X, Y, Z, E\)"),
        ({"magnitude": None}, "give a magnitude or a mask"),
        ({"magnitude": np.ones((N, N, N, 2))}, "magnitude must have the phase's shape"),
        ({"mask": np.ones((4, 4, 4))}, "mask must have the spatial shape"),
        ({"echo_times_s": (4.0, 8.0, 12.0)}, "look like milliseconds"),
    ],
)
def test_bad_input_raises(kwargs, match):
    stored, mag, _ = acquisition()
    args = {"phase": stored, "echo_times_s": TE, "voxel_size": (2, 2, 2), "magnitude": mag}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        run_phase_chain(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"unwrap": "romeo"}, "unwrap must be one of"),
        ({"background": "sharp"}, "background must be one of"),
        ({"b0_tesla": 0}, "b0_tesla must be a number > 0"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PhaseChainSettings(**kwargs)


@pytest.mark.skipif(not PATCH.is_dir(), reason=f"shared real GRE patch not found at {PATCH}")
@pytest.mark.parametrize("unwrap", ["laplacian", "quality"])
def test_real_multi_echo_patch_gives_plausible_fields(unwrap):
    """Real wrapped 3-echo phase (CLEARSWI.jl test data; TEs 4, 8, 12 ms at 3 T assumed)."""
    data = load_multi_echo(PATCH / "phase.nii.gz", PATCH / "magnitude.nii.gz", te_ms=[4, 8, 12])
    result = run_phase_chain(
        data.phase, data.echo_times_s, data.voxel_size, magnitude=data.magnitude,
        settings=PhaseChainSettings(unwrap=unwrap, background="vsharp"),
    )  # fmt: skip
    assert result.scaling.kind == "symmetric_range"  # about +-0.00367 for +-pi
    m, lm = result.mask, result.local_mask
    assert m.sum() > 0.2 * m.size and lm.sum() > 0.1 * m.size
    for name in ("field_hz", "local_field_ppm", "sigma_hz", "residual_rad"):
        assert np.all(np.isfinite(getattr(result, name))), name
    assert np.abs(result.field_hz[m]).max() < 300  # Hz: a few ppm at most at 3 T
    assert np.percentile(np.abs(result.local_field_ppm[lm]), 99) < 0.2  # ppm: tissue scale
    assert np.median(result.sigma_hz[m]) < 5  # Hz
    # no wraps left: neighbouring voxels differ by well under pi at the last echo
    phase_last = 2 * math.pi * result.field_hz * data.echo_times_s[-1]
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        both = m[tuple(lo)] & m[tuple(hi)]
        jumps = np.abs(phase_last[tuple(hi)] - phase_last[tuple(lo)])[both]
        assert jumps.max() < math.pi, (axis, jumps.max())
