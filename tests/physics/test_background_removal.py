"""V-SHARP, PDF and LBV on a total field whose local part is known (dipole forward model)."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.sparse.linalg import LinearOperator, lsqr

from napari_fanet.physics.background import default_radii, pdf, vsharp
from napari_fanet.physics.forward import forward_field
from napari_fanet.physics.lbv import lbv

N = 32
GRID = np.indices((N, N, N), dtype=float) - (N - 1) / 2
MASK = (GRID**2).sum(0) <= 12.0**2
B0 = (0.0, 0.0, 1.0)


def fields():
    """Local field of four small spheres inside the mask; background of three air-like blocks
    outside it (+9.4 ppm relative to tissue). Both in ppm; the background is 2.5x stronger."""
    chi = np.zeros((N, N, N))
    for centre, value in [((3, -4, 2), 0.2), ((-5, 2, -3), -0.1), ((1, 5, -1), 0.15)]:
        chi[((GRID - np.array(centre)[:, None, None, None]) ** 2).sum(0) <= 2.5**2] = value
    local = forward_field(chi, (1.0, 1.0, 1.0), B0) * MASK
    air = np.zeros((N, N, N))
    air[0:3, 14:17, 14:17] = air[29:32, 5:8, 18:21] = air[15:17, 15:17, 0:2] = 9.4
    return local, forward_field(air, (1.0, 1.0, 1.0), B0)


def nrmse(est, ref, mask):
    return 100 * np.linalg.norm((est - ref)[mask]) / np.linalg.norm(ref[mask])


def test_vsharp_removes_an_exact_harmonic_field():
    x, y, z = GRID
    harmonic = 0.01 * (x**2 - y**2) + 0.05 * z - 0.02 * x * y + 1.0
    local, eroded = vsharp(harmonic, MASK, radii_mm=(6, 4, 2))
    assert eroded.sum() > 0.6 * MASK.sum() and not (eroded & ~MASK).any()
    assert np.abs(local[eroded]).max() < 1e-10
    assert np.all(local[~eroded] == 0)


def test_vsharp_recovers_the_local_field():
    local, background = fields()
    out, eroded = vsharp(local + background, MASK)
    assert nrmse(local + background, local, eroded) > 200  # the input is dominated by background
    assert nrmse(out, local, eroded) < 35
    bg_only, eroded = vsharp(background, MASK)
    assert np.linalg.norm(bg_only[eroded]) < 0.05 * np.linalg.norm(background[eroded])


def test_pdf_recovers_the_local_field():
    local, background = fields()
    out = pdf(local + background, MASK, (1.0, 1.0, 1.0), B0, max_iter=60)
    assert nrmse(out, local, MASK) < 35
    assert np.all(out[~MASK] == 0)
    bg_only = pdf(background, MASK, (1.0, 1.0, 1.0), B0, max_iter=60)
    assert np.linalg.norm(bg_only[MASK]) < 0.02 * np.linalg.norm(background[MASK])


def numpy_dipole_filter(shape, voxel_size):
    """Independent numpy dipole convolution, B0 along axis 2, zero padded to 1.5x (even)."""
    pshape = tuple(int(np.ceil(1.5 * n)) + int(np.ceil(1.5 * n)) % 2 for n in shape)
    k = np.meshgrid(
        *(np.fft.fftfreq(p, d) for p, d in zip(pshape, voxel_size, strict=True)), indexing="ij"
    )
    k2 = sum(ki**2 for ki in k)
    kernel = 1 / 3 - k[2] ** 2 / np.where(k2 > 0, k2, 1.0)
    kernel[0, 0, 0] = 0.0
    crop = tuple(slice(0, n) for n in shape)
    return lambda x: np.real(np.fft.ifftn(np.fft.fftn(x, pshape, axes=(0, 1, 2)) * kernel))[crop]


def test_pdf_matches_scipy_lsqr_on_the_same_problem():
    """An independent solver (scipy LSQR, numpy dipole operator) gives the same local field.

    Sources on the volume's grid only (``extend_fov=False``), as the reference has them."""
    n, vox = 14, (1.0, 1.0, 2.0)
    grid = np.indices((n, n, n), dtype=float) - (n - 1) / 2
    mask = (grid**2).sum(0) <= 5.0**2
    dipole = numpy_dipole_filter(mask.shape, vox)
    rng = np.random.default_rng(3)
    total = dipole(rng.standard_normal((n, n, n)) * ~mask) + 0.01 * rng.standard_normal(mask.shape)
    weights = rng.uniform(0.5, 1.5, (n, n, n))
    w = weights / weights[mask].mean() * mask

    def forward(x):  # W M D (1 - M) x
        return (w * dipole(x.reshape(mask.shape) * ~mask)).ravel()

    def adjoint(y):  # (1 - M) D M W y
        return (~mask * dipole(w * y.reshape(mask.shape))).ravel()

    op = LinearOperator((mask.size, mask.size), matvec=forward, rmatvec=adjoint, dtype=float)
    chi = lsqr(op, (w * total).ravel(), atol=1e-10, btol=1e-10, iter_lim=300)[0]
    reference = (total - dipole(chi.reshape(mask.shape) * ~mask)) * mask
    out = pdf(total, mask, vox, B0, weights=weights, max_iter=300, tol=1e-8, extend_fov=False)
    # same weighted misfit (the quantity both minimise), nearly the same field
    assert np.linalg.norm(w * out) < 1.01 * np.linalg.norm(w * reference)
    assert nrmse(out, reference, mask) < 5
    assert nrmse(total * mask, reference, mask) > 20  # the background was removed


@pytest.mark.parametrize(
    ("voxel_size", "expected"),
    [
        ((1.0, 1.0, 1.0), (12.0, 10.0, 8.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0)),
        ((4.0, 4.0, 4.0), (12.0, 10.0, 8.0, 6.0, 5.0, 4.0)),
        ((0.5, 0.5, 2.0), (12.0, 10.0, 8.0, 6.0, 5.0, 4.0, 3.0, 2.0)),
        ((20.0, 20.0, 20.0), (20.0,)),
    ],
)
def test_default_radii(voxel_size, expected):
    assert default_radii(voxel_size) == expected


FIELD = np.zeros((8, 8, 8))
SMALL = np.zeros((8, 8, 8), dtype=bool)
SMALL[2:6, 2:6, 2:6] = True


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: vsharp(np.zeros((8, 8)), SMALL), "field must be 3D"),
        (lambda: vsharp(FIELD, SMALL[:-1]), "mask must have the field's shape"),
        (lambda: vsharp(FIELD, np.zeros((8, 8, 8))), "mask is empty"),
        (lambda: vsharp(np.full((8, 8, 8), np.nan), SMALL), "NaN or infinite"),
        (lambda: vsharp(FIELD, SMALL, radii_mm=(-1,)), "radii_mm must be positive"),
        (lambda: vsharp(FIELD, SMALL, radii_mm=()), "radii_mm must be positive"),
        (lambda: vsharp(FIELD, SMALL, threshold=1.0), r"threshold must be in \(0, 1\)"),
        (lambda: vsharp(FIELD, SMALL, radii_mm=(5,)), "no voxel of the mask holds a sphere"),
        (lambda: vsharp(FIELD, SMALL, (1, 0, 1)), "voxel_size must be 3 positive"),
        (lambda: pdf(FIELD, SMALL, max_iter=0), "max_iter must be an integer >= 1"),
        (lambda: pdf(FIELD, SMALL, tol=1.5), r"tol must be in \(0, 1\)"),
        (lambda: pdf(FIELD, SMALL, weights=np.ones((8, 8, 7))), "weights must have the field's"),
        (lambda: pdf(FIELD, SMALL, weights=-np.ones((8, 8, 8))), "weights must be finite"),
        (lambda: pdf(FIELD, SMALL, b0_dir=(0, 0, 0)), "B0 direction must be 3 numbers"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- LBV -------------------------------------------------------------------------------------


def test_lbv_removes_an_exact_harmonic_field():
    """A harmonic polynomial (cubic at most: exact for the 7-point stencil) is removed."""
    x, y, z = GRID
    harmonic = 0.01 * (x**2 - y**2) + 0.05 * z - 0.02 * x * y + 1e-3 * x * y * z + 1.0
    local, interior = lbv(harmonic, MASK)
    star = ndi.generate_binary_structure(3, 1)
    assert np.array_equal(interior, ndi.binary_erosion(MASK, star, border_value=0))
    assert np.abs(local[interior]).max() < 1e-6 * np.abs(harmonic[MASK]).max()
    assert np.all(local[~interior] == 0)


def test_lbv_returns_a_local_field_that_vanishes_on_the_boundary_exactly():
    """Known answer: local part zero on the mask's boundary layer, any shape inside."""
    x, y, z = GRID
    background = 0.02 * (x**2 - z**2) + 0.3 * y + 5.0
    inside = ndi.binary_erosion(MASK, iterations=3)
    bump = np.where(inside, np.cos(x / 3.0) * np.sin(y / 2.0) + 0.1 * z, 0.0)
    local, interior = lbv(background + bump, MASK, tol=1e-10)
    assert np.abs(local - np.where(interior, bump, 0.0)).max() < 1e-6


def test_lbv_with_anisotropic_voxels_and_a_far_dipole():
    """The field of a dipole outside the mask (harmonic inside it) on a 1 x 1 x 2 mm grid."""
    vs = (1.0, 1.0, 2.0)
    x, y, z = GRID * np.array(vs)[:, None, None, None]
    mask = (x**2 + y**2 + (z / 1.0) ** 2) <= 12.0**2
    r = np.sqrt((x - 40.0) ** 2 + y**2 + z**2)  # point source 40 mm away: 1/r is harmonic
    background = 100.0 / r
    local, interior = lbv(background, mask, vs, tol=1e-10)
    # discretisation error only: O(h^2) of a field varying on ~30 mm
    assert np.linalg.norm(local[interior]) < 2e-3 * np.linalg.norm(background[interior])


def test_lbv_recovers_the_local_field():
    local, background = fields()
    out, interior = lbv(local + background, MASK)
    assert nrmse(local + background, local, interior) > 200
    assert nrmse(out, local, interior) < 35
    bg_only, interior = lbv(background, MASK)
    assert np.linalg.norm(bg_only[interior]) < 0.05 * np.linalg.norm(background[interior])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: lbv(np.zeros((8, 8)), SMALL), "field must be 3D"),
        (lambda: lbv(FIELD, SMALL[:-1]), "mask must have the field's shape"),
        (lambda: lbv(FIELD, np.zeros((8, 8, 8))), "mask is empty"),
        (lambda: lbv(np.full((8, 8, 8), np.inf), SMALL), "NaN or infinite"),
        (lambda: lbv(FIELD, SMALL, (1, 0, 1)), "voxel_size must be 3 positive"),
        (lambda: lbv(FIELD, SMALL, tol=0.0), r"tol must be in \(0, 1\)"),
        (lambda: lbv(FIELD, SMALL, max_iter=0), "max_iter must be an integer >= 1"),
        (lambda: lbv(FIELD, SMALL, max_iter=True), "max_iter must be an integer >= 1"),
        (lambda: lbv(FIELD, np.eye(8, dtype=bool)[:, :, None] * np.ones(8, bool)), "no interior"),
    ],
)
def test_lbv_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
