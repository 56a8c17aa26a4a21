import numpy as np
import pytest
from scipy import ndimage

from napari_fanet.physics.forward import forward_field
from napari_fanet.tasks.b0_alignment import align_to_b0, rotate_back, rotate_volume, rotation_to_z


@pytest.mark.parametrize(
    "b0", [(0.2, -0.1, 1.0), (1.0, 0.0, 0.0), (0, 0, 1), (0, 0, -1), (0.3, 0.4, -0.8)]
)
def test_rotation_to_z(b0):
    r = rotation_to_z(b0)
    np.testing.assert_allclose(r @ (np.array(b0) / np.linalg.norm(b0)), [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_rotate_volume_moves_a_point_to_r_q_in_millimetres():
    voxel = (1.0, 1.0, 2.0)
    vol = np.zeros((41, 41, 21), np.float32)
    centre = (np.array(vol.shape) - 1) / 2
    q_vox = np.array([28, 20, 10])
    vol[tuple(q_vox)] = 1.0
    r = rotation_to_z((0.3, 0.0, 1.0))
    out = rotate_volume(ndimage.gaussian_filter(vol, 1.0), r, voxel, order=1)
    found = np.array(np.unravel_index(out.argmax(), out.shape))
    expected_mm = r @ ((q_vox - centre) * voxel)
    np.testing.assert_allclose((found - centre) * voxel, expected_mm, atol=1.5)


def test_alignment_round_trip_and_physics():
    rng = np.random.default_rng(0)
    shape, voxel = (48, 48, 40), (2.0, 2.0, 2.0)
    grid = np.indices(shape, dtype=float)
    c = (np.array(shape) - 1) / 2
    mask = sum(((g - ci) / r) ** 2 for g, ci, r in zip(grid, c, (18, 18, 15), strict=True)) <= 1
    chi = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) * mask
    b0 = np.array([0.25, -0.15, 1.0])
    b0 /= np.linalg.norm(b0)
    field = forward_field(chi, voxel, tuple(b0), pad_factor=2) * mask
    field_a, mask_a, chi_a, rot = align_to_b0(field, mask, b0, voxel, chi)
    # in the aligned frame the field is (close to) the field of the aligned chi with B0 along z
    field_z = forward_field(chi_a, voxel, (0, 0, 1), pad_factor=2) * mask_a
    inner = ndimage.binary_erosion(mask_a, iterations=3)
    err = np.linalg.norm((field_a - field_z)[inner]) / np.linalg.norm(field_z[inner])
    assert err < 0.15
    back = rotate_back(chi_a, rot, voxel)
    inner0 = ndimage.binary_erosion(mask, iterations=4)
    assert np.linalg.norm((back - chi)[inner0]) / np.linalg.norm(chi[inner0]) < 0.1


def test_bad_b0():
    with pytest.raises(ValueError, match="B0 direction must be 3 numbers, not all zero"):
        rotation_to_z((0, 0, 0))
