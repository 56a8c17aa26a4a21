"""TKD and CFL2 (and the tuning of their parameter) against exact inverses and phantoms."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_fanet.baselines.dipole_inversion import cfl2, tkd, tune_parameter
from napari_fanet.physics.dipole import dipole_kernel
from napari_fanet.physics.forward import forward_field


def smooth_phantom(n=48, seed=0):
    """Smooth susceptibility blobs (ppm) inside an ellipsoidal brain mask."""
    rng = np.random.default_rng(seed)
    g = np.mgrid[:n, :n, :n].astype(float) - n / 2 + 0.5
    mask = (g[0] / 18) ** 2 + (g[1] / 15) ** 2 + (g[2] / 13) ** 2 <= 1
    chi = np.zeros((n, n, n))
    for _ in range(8):
        c, s, a = rng.uniform(-8, 8, 3), rng.uniform(2, 4), rng.uniform(-0.1, 0.15)
        chi += a * np.exp(-((g - c[:, None, None, None]) ** 2).sum(0) / (2 * s * s))
    chi = ndimage.gaussian_filter(chi * mask, 1.0) * mask
    return chi, mask


def nrmse_ref(pred, ref, mask):
    return 100 * np.linalg.norm((pred - ref)[mask]) / np.linalg.norm(ref[mask])


VS, B0 = (1.0, 1.0, 1.5), (0.1, 0.2, 1.0)


def test_exact_inverse_at_pad_factor_one():
    # circular model: TKD with a threshold below the smallest non-zero |D|, and CFL2 with
    # lam = 0, are the exact inverse; only the k = 0 component (the mean) is lost.
    chi, _ = smooth_phantom(24)
    field = forward_field(chi, VS, B0, pad_factor=1)
    d = dipole_kernel(chi.shape, VS, B0).numpy()
    assert (d == 0).sum() == 1
    t = 0.5 * np.abs(d[d != 0]).min()
    exact = chi - chi.mean()
    np.testing.assert_allclose(tkd(field, VS, B0, threshold=t, pad_factor=1), exact, atol=1e-10)
    np.testing.assert_allclose(cfl2(field, VS, B0, lam=0.0, pad_factor=1), exact, atol=1e-10)
    errors = [
        np.linalg.norm(cfl2(field, VS, B0, lam=lam, pad_factor=1) - exact)
        for lam in (1e-2, 1e-4, 1e-6, 1e-8, 1e-10)
    ]
    assert np.all(np.diff(errors) < 0)
    assert errors[-1] < 1e-3 * np.linalg.norm(exact)


def test_tkd_truncation_convention():
    rng = np.random.default_rng(3)
    field = rng.normal(size=(10, 9, 8))
    t = 0.19
    d = dipole_kernel(field.shape, VS, B0).numpy()
    inv = np.where(np.abs(d) > t, 1 / np.where(d == 0, 1, d), np.sign(d) / t)
    expected = np.fft.ifftn(np.fft.fftn(field) * inv).real
    np.testing.assert_allclose(tkd(field, VS, B0, threshold=t, pad_factor=1), expected, atol=1e-12)
    # a threshold above 2/3 truncates everything: sign(D) / t
    big = np.fft.ifftn(np.fft.fftn(field) * np.sign(d) / 0.9).real
    np.testing.assert_allclose(tkd(field, VS, B0, threshold=0.9, pad_factor=1), big, atol=1e-12)


def test_cfl2_formula():
    rng = np.random.default_rng(4)
    field = rng.normal(size=(6, 8, 7))
    d = dipole_kernel(field.shape, VS, B0).numpy()
    k = np.meshgrid(*[np.fft.fftfreq(n) for n in field.shape], indexing="ij")
    e2 = sum(np.abs(1 - np.exp(-2j * np.pi * ki)) ** 2 for ki in k)
    denom = d**2 + 0.05 * e2
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(denom > 0, d / denom, 0.0)
    expected = np.fft.ifftn(np.fft.fftn(field) * inv).real
    np.testing.assert_allclose(cfl2(field, VS, B0, lam=0.05, pad_factor=1), expected, atol=1e-12)


@pytest.mark.parametrize("method", ["tkd", "cfl2"])
def test_recovers_smooth_phantom(method):
    chi, mask = smooth_phantom()
    field = forward_field(chi, VS, B0, pad_factor=2)
    recon = tkd(field, VS, B0, mask=mask) if method == "tkd" else cfl2(field, VS, B0, mask=mask)
    assert np.all(recon[~mask] == 0)
    assert nrmse_ref(np.zeros_like(chi), chi, mask) == pytest.approx(100)
    assert nrmse_ref(recon, chi, mask) < 30


def test_float32_numpy_and_tensor_round_trip():
    chi, mask = smooth_phantom(24)
    field32 = forward_field(chi.astype(np.float32), VS, B0)
    for fn in (tkd, cfl2):
        out = fn(field32, VS, B0, mask=mask)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        out_t = fn(torch.from_numpy(field32), VS, B0, mask=torch.from_numpy(mask))
        assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
        np.testing.assert_allclose(out_t.numpy(), out, atol=1e-6)
        ref = fn(field32.astype(np.float64), VS, B0, mask=mask)
        np.testing.assert_allclose(out, ref, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize(
    ("method", "candidates"),
    [
        ("tkd", [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6]),
        ("cfl2", [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]),
    ],
)
def test_tune_parameter_picks_interior_value(method, candidates):
    chi, mask = smooth_phantom()
    field = forward_field(chi, VS, B0, pad_factor=2)
    rng = np.random.default_rng(1)
    noisy = field + rng.normal(0, 0.01 * np.abs(field).max(), field.shape)
    best, scores = tune_parameter(method, noisy, chi, mask, VS, B0, candidates)
    assert list(scores) == candidates
    assert best not in (candidates[0], candidates[-1])
    assert scores[best] == min(scores.values())
    fn = tkd if method == "tkd" else cfl2
    key = "threshold" if method == "tkd" else "lam"
    recon = fn(noisy, VS, B0, mask=mask, **{key: best})
    assert scores[best] == pytest.approx(nrmse_ref(recon, chi, mask))
    _, demeaned = tune_parameter(
        method, noisy, chi, mask, VS, B0, candidates[:2], metric="nrmse_demeaned"
    )
    assert set(demeaned) == set(candidates[:2])


@pytest.mark.parametrize(
    ("fn", "kwargs", "error", "match"),
    [
        (tkd, {"threshold": 0.0}, ValueError, "threshold must be a finite number > 0"),
        (tkd, {"threshold": float("nan")}, ValueError, "threshold must be a finite number"),
        (tkd, {"threshold": "0.2"}, TypeError, "threshold must be a number"),
        (cfl2, {"lam": -1e-3}, ValueError, "lam must be a finite number >= 0"),
        (cfl2, {"lam": True}, TypeError, "lam must be a number"),
        (tkd, {"mask": np.ones((3, 4, 4))}, ValueError, "mask must have the spatial shape"),
        (cfl2, {"mask": [1]}, TypeError, "mask must be a torch.Tensor or np.ndarray"),
        (cfl2, {"pad_factor": 0.5}, ValueError, "pad_factor must be"),
        (tkd, {"b0_dir": (0, 0, 0)}, ValueError, "not all zero"),
    ],
)
def test_inversion_errors(fn, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(np.zeros((4, 4, 4)), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "mede"}, "method must be 'tkd' or 'cfl2'"),
        ({"metric": "ssim"}, "metric must be 'nrmse' or 'nrmse_demeaned'"),
        ({"candidates": []}, "at least one value"),
        ({"field": np.zeros((1, 12, 12, 12))}, "field must be 3D"),
        ({"mask": np.zeros((12, 12, 12), dtype=bool)}, "mask is empty"),
    ],
)
def test_tune_parameter_errors(kwargs, match):
    chi, mask = smooth_phantom(12)
    args = {
        "method": "tkd",
        "field": forward_field(chi),
        "reference": chi,
        "mask": mask,
        "voxel_size": (1, 1, 1),
        "b0_dir": (0, 0, 1),
        "candidates": [0.1, 0.2],
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        tune_parameter(**args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    chi, mask = smooth_phantom(32)
    x = torch.from_numpy(chi).to(dtype)
    m = torch.from_numpy(mask)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for fn, kw in ((forward_field, {}), (tkd, {"mask": m}), (cfl2, {"mask": m})):
        cpu = fn(x, VS, B0, **kw)
        gpu = fn(x.cuda(), VS, B0, **{k: v.cuda() for k, v in kw.items()})
        assert gpu.device.type == "cuda" and gpu.dtype == dtype
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=tol * cpu.abs().max().item())
