"""The dipole kernel and the forward model against analytic and independent references."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.transform import Rotation

from napari_fanet.physics.dipole import dipole_kernel, gradient_kernel, padded_shape
from napari_fanet.physics.forward import field_to_hz, forward_field, hz_to_field


def centred_coords(shape, voxel_size):
    """Physical coordinates (mm) of voxel centres, origin at voxel index n // 2: (3, X, Y, Z)."""
    axes = [(np.arange(n) - n // 2) * v for n, v in zip(shape, voxel_size, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def sphere_occupancy(shape, voxel_size, radius, supersample=4):
    """Fraction of each voxel inside a sphere of ``radius`` mm (supersampled)."""
    coords = centred_coords(shape, voxel_size)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    occ = np.zeros(shape)
    for a in offsets:
        for b in offsets:
            for c in offsets:
                shift = np.array([a, b, c]) * np.asarray(voxel_size)
                r2 = ((coords + shift[:, None, None, None]) ** 2).sum(0)
                occ += r2 <= radius**2
    return occ / supersample**3


def analytic_sphere_field(coords, b0, radius, dchi):
    """Lorentz-corrected field of a magnetised sphere: (dchi/3)(R/r)^3 (3cos^2 - 1) outside."""
    r = np.sqrt((coords**2).sum(0))
    b = np.asarray(b0, dtype=float) / np.linalg.norm(b0)
    cos = np.tensordot(b, coords, axes=1) / np.maximum(r, 1e-12)
    outside = dchi / 3 * (radius / np.maximum(r, 1e-12)) ** 3 * (3 * cos**2 - 1)
    return np.where(r > radius, outside, 0.0), r


VS, B0 = (1.0, 1.0, 1.5), (0.1, 0.2, 1.0)


def numpy_kernel(shape, voxel_size, b0):
    """The formula with numpy's fftfreq (exact for odd sizes: no Nyquist sample)."""
    k = np.meshgrid(
        *[np.fft.fftfreq(n, d=v) for n, v in zip(shape, voxel_size, strict=True)],
        indexing="ij",
    )
    b = np.asarray(b0, dtype=float) / np.linalg.norm(b0)
    k2 = sum(ki**2 for ki in k)
    kb = sum(ki * bi for ki, bi in zip(k, b, strict=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1 / 3 - kb**2 / k2
    d[0, 0, 0] = 0.0
    return d, k


KERNEL_CASES = [
    ((9, 7, 11), (1, 1, 1), (0, 0, 1)),
    ((9, 7, 11), (1, 1, 3), (0.2, -0.4, 1)),
    ((8, 6, 10), (0.8, 1.2, 2), (1, 1, 1)),
    ((5, 16, 4), (1, 1, 1), (-0.3, 0.1, 0.6)),
]


@pytest.mark.parametrize(
    ("shape", "voxel_size", "b0", "blur_mm"),
    [
        ((64, 64, 64), (1, 1, 1), (0, 0, 1), 0.0),
        ((64, 64, 64), (1, 1, 1), (0.3, 0.5, 1), 1.0),
        ((64, 64, 64), (1, 1, 1), (1, 0, 0), 0.0),
        ((64, 64, 32), (1, 1, 2), (0, 0, 1), 0.0),
        ((64, 64, 32), (1, 1, 2), (0.4, 0.2, 1), 1.25),
    ],
)
def test_forward_field_matches_analytic_sphere(shape, voxel_size, b0, blur_mm):
    # Sphere of radius 8 mm, defined in mm (anisotropic voxels included). With an oblique B0 the
    # sampled kernel jumps across the edge of the k-space grid, which rings at the ~5% level for
    # a sharp sphere; a Gaussian blur (isotropic in mm) keeps the source radially symmetric, so
    # the exterior field is still exactly that of a point dipole of the same total moment.
    radius, dchi = 8.0, 0.5
    chi = dchi * sphere_occupancy(shape, voxel_size, radius)
    if blur_mm:
        sigma = [blur_mm / v for v in voxel_size]
        chi = ndimage.gaussian_filter(chi, sigma, mode="constant")
    # radius with the voxelised volume, so the total moment matches
    r_eff = (3 * chi.sum() / dchi * np.prod(voxel_size) / (4 * np.pi)) ** (1 / 3)
    assert abs(r_eff - radius) < 0.05
    field = forward_field(chi, voxel_size, b0, pad_factor=2)
    coords = centred_coords(shape, voxel_size)
    expected, r = analytic_sphere_field(coords, b0, r_eff, dchi)
    shell = (r >= 1.5 * radius) & (r <= 3 * radius)
    scale = np.abs(expected[shell]).max()
    assert np.abs(field - expected)[shell].max() < 0.03 * scale
    # Lorentz-corrected convention: zero field inside the sphere
    assert np.abs(field[r < 0.5 * radius]).max() < 0.01 * dchi
    # along B0 the field is positive (paramagnetic), across it negative
    assert (field * expected)[shell].min() > -1e-3 * scale


@pytest.mark.parametrize(("shape", "voxel_size", "b0"), KERNEL_CASES)
def test_kernel_dc_range_and_symmetry(shape, voxel_size, b0):
    d = dipole_kernel(shape, voxel_size, b0).numpy()
    assert d.shape == shape and d[0, 0, 0] == 0.0
    assert d.min() >= -2 / 3 - 1e-12 and d.max() <= 1 / 3 + 1e-12
    # D(k) = D(-k) on the grid (index -i mod n)
    mirrored = np.roll(np.flip(d), shift=1, axis=(0, 1, 2))
    np.testing.assert_array_equal(d, mirrored)


@pytest.mark.parametrize(("shape", "voxel_size", "b0"), KERNEL_CASES[:2])
def test_kernel_matches_numpy_formula_on_odd_grids(shape, voxel_size, b0):
    expected, _ = numpy_kernel(shape, voxel_size, b0)
    np.testing.assert_allclose(dipole_kernel(shape, voxel_size, b0).numpy(), expected, atol=1e-12)


def test_kernel_even_grid_differs_only_on_nyquist_planes():
    shape, vs, b0 = (8, 6, 10), (0.8, 1.2, 2), (1, 1, 1)
    expected, _ = numpy_kernel(shape, vs, b0)
    d = dipole_kernel(shape, vs, b0).numpy()
    interior = np.ones(shape, dtype=bool)
    interior[4], interior[:, 3], interior[:, :, 5] = False, False, False
    np.testing.assert_allclose(d[interior], expected[interior], atol=1e-12)
    # along an axis-aligned B0 the formula is already symmetric: no change anywhere
    np.testing.assert_allclose(
        dipole_kernel(shape, vs, (0, 0, 1)).numpy(), numpy_kernel(shape, vs, (0, 0, 1))[0]
    )


def test_kernel_anisotropic_spacing_by_hand():
    # index (1, 0, 1) on an 8^3 grid: k = (1/8, 0, 1/8) cycles/mm for 1 mm voxels,
    # k = (1/8, 0, 1/16) for 1x1x2 mm voxels.
    iso = dipole_kernel((8, 8, 8), (1, 1, 1), (0, 0, 1))
    aniso = dipole_kernel((8, 8, 8), (1, 1, 2), (0, 0, 1))
    assert iso[1, 0, 1].item() == pytest.approx(1 / 3 - 1 / 2)
    assert aniso[1, 0, 1].item() == pytest.approx(1 / 3 - 1 / 5)
    assert aniso[0, 0, 1].item() == pytest.approx(-2 / 3)
    assert aniso[1, 0, 0].item() == pytest.approx(1 / 3)


def test_tilted_b0_equals_rotated_kernel():
    # b0 along axis 0 is the b0-along-axis-2 kernel with axes 0 and 2 swapped
    dz = dipole_kernel((8, 10, 8), (1, 1, 1), (0, 0, 1))
    dx = dipole_kernel((8, 10, 8), (1, 1, 1), (1, 0, 0))
    torch.testing.assert_close(dx, dz.transpose(0, 2), rtol=0, atol=1e-15)
    # generic tilt: D_b(k) = 1/3 - (R k)_z^2 / |k|^2 with R the rotation taking b to z
    shape, vs, b0 = (9, 7, 11), (1, 1.5, 2), (0.3, -0.5, 0.8)
    rot, _ = Rotation.align_vectors([[0, 0, 1]], [np.asarray(b0) / np.linalg.norm(b0)])
    _, k = numpy_kernel(shape, vs, b0)
    kvec = np.stack([ki.ravel() for ki in k], axis=1)
    rk = rot.apply(kvec)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = (1 / 3 - rk[:, 2] ** 2 / (kvec**2).sum(1)).reshape(shape)
    expected[0, 0, 0] = 0
    np.testing.assert_allclose(dipole_kernel(shape, vs, b0).numpy(), expected, atol=1e-12)


def test_kernel_b0_is_normalised_dtype_and_device():
    a = dipole_kernel((6, 6, 6), b0_dir=(0, 0, 5))
    torch.testing.assert_close(a, dipole_kernel((6, 6, 6)))
    f32 = dipole_kernel((6, 6, 6), dtype=torch.float32, device="cpu")
    assert f32.dtype == torch.float32 and f32.device.type == "cpu"


def test_gradient_kernel_by_hand():
    e = gradient_kernel((4, 4, 4))
    assert e[0, 0, 0].item() == 0
    assert e[1, 0, 0].item() == pytest.approx(4 * math.sin(math.pi / 4) ** 2)
    assert e[2, 2, 2].item() == pytest.approx(12.0)
    assert e.max().item() <= 12.0 + 1e-12


@pytest.mark.parametrize(
    ("shape", "pad_factor", "expected"),
    [
        ((10, 9, 1), 1.5, (16, 14, 2)),
        ((8, 7, 5), 1.0, (8, 7, 5)),
        ((64, 64, 32), 2.0, (128, 128, 64)),
        ((10, 10, 10), 1.01, (12, 12, 12)),
    ],
)
def test_padded_shape(shape, pad_factor, expected):
    assert padded_shape(shape, pad_factor) == expected


def test_forward_field_types_dtypes_and_batches():
    chi = ndimage.gaussian_filter(np.random.default_rng(0).normal(0, 0.1, (16, 16, 16)), 1.5)
    out = forward_field(chi.astype(np.float32), VS, B0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == chi.shape
    out64 = forward_field(chi, VS, B0)
    assert out64.dtype == np.float64
    np.testing.assert_allclose(out, out64, atol=1e-6)
    t = torch.from_numpy(chi)
    batch = torch.stack([t, 2 * t]).unsqueeze(1)  # (2, 1, X, Y, Z)
    res = forward_field(batch, VS, B0)
    assert isinstance(res, torch.Tensor) and res.shape == batch.shape
    torch.testing.assert_close(res[1, 0], 2 * torch.from_numpy(out64))
    ints = forward_field(np.ones((4, 4, 4), dtype=np.int16))
    assert ints.dtype == np.float64
    ro = chi.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(forward_field(ro, VS, B0), out64)


def test_field_unit_conversion():
    assert field_to_hz(1.0, 3.0) == pytest.approx(127.731)
    arr = np.array([0.5, -1.0])
    np.testing.assert_allclose(hz_to_field(field_to_hz(arr, 7.0), 7.0), arr)
    t = torch.tensor([2.0])
    assert isinstance(field_to_hz(t, 1.5, 42.577), torch.Tensor)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"chi": [[[1.0]]]}, TypeError, "torch.Tensor or np.ndarray"),
        ({"chi": np.zeros((4, 4, 4), dtype=complex)}, TypeError, "real numeric array"),
        ({"chi": torch.zeros(4, 4, 4, dtype=torch.complex64)}, TypeError, "real tensor"),
        ({"chi": np.zeros((4, 4))}, ValueError, "at least 3 dims"),
        ({"chi": np.full((4, 4, 4), np.nan)}, ValueError, "NaN or infinite"),
        ({"voxel_size": (1, 1)}, ValueError, "voxel_size must be 3 positive"),
        ({"voxel_size": (1, 0, 1)}, ValueError, "voxel_size must be 3 positive"),
        ({"voxel_size": "abc"}, ValueError, "voxel_size must be 3 positive"),
        ({"b0_dir": (0, 0, 0)}, ValueError, "not all zero"),
        ({"b0_dir": (0, 1)}, ValueError, "B0 direction must be 3 numbers"),
        ({"b0_dir": None}, ValueError, "B0 direction must be 3 numbers"),
        ({"pad_factor": 0.9}, ValueError, "pad_factor must be a finite number >= 1"),
        ({"pad_factor": "2"}, TypeError, "pad_factor must be a number"),
    ],
)
def test_forward_field_errors(kwargs, error, match):
    args = {"chi": np.zeros((4, 4, 4)), **kwargs}
    with pytest.raises(error, match=match):
        forward_field(**args)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: dipole_kernel((4, 4)), ValueError, "shape must be 3 positive integers"),
        (lambda: dipole_kernel((4, 0, 4)), ValueError, "shape must be 3 positive integers"),
        (lambda: dipole_kernel((4, 4.5, 4)), ValueError, "shape must be 3 positive integers"),
        (lambda: dipole_kernel(None), ValueError, "shape must be 3 positive integers"),
        (lambda: dipole_kernel((4, 4, 4), dtype=torch.int64), TypeError, "dtype must be"),
        (lambda: gradient_kernel((4, 4)), ValueError, "shape must be 3 positive integers"),
        (lambda: padded_shape((4, 4, 4), 0.5), ValueError, "pad_factor must be"),
        (lambda: field_to_hz(1.0, 0.0), ValueError, "b0_tesla must be a finite number > 0"),
        (lambda: hz_to_field(1.0, 3.0, "x"), TypeError, "gamma_mhz_per_t must be a number"),
    ],
)
def test_kernel_and_unit_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
