from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.simulation.deform import (
    CENTRE,
    DeformationParams,
    identity_deformation,
    random_anatomy,
    random_deformation,
    warp_template,
)
from napari_fanet.simulation.template import load_template, mni_grid


def _points(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo = np.array([-90.0, -126.0, -72.0])
    hi = np.array([90.0, 90.0, 108.0])
    return (lo + rng.random((n, 3)) * (hi - lo)).T.astype(np.float32)


def test_identity_deformation_maps_points_to_themselves() -> None:
    pts = _points()
    np.testing.assert_allclose(identity_deformation()(pts), pts, atol=1e-4)


def test_affine_part_matches_the_formula() -> None:
    # no displacement, no rotation, no translation: x = c + s (y - c) with s in scale_range
    params = DeformationParams(
        max_rotation_deg=0.0,
        scale_range=(1.1, 1.1),
        axis_scale_jitter=0.0,
        max_translation_mm=0.0,
        displacement_std_mm=0.0,
    )
    d = random_deformation(np.random.default_rng(3), params)
    pts = _points()
    expected = CENTRE[:, None] + 1.1 * (pts - CENTRE[:, None])
    np.testing.assert_allclose(d(pts), expected, atol=1e-3)


def test_rotation_is_orthonormal_times_scale() -> None:
    params = DeformationParams(scale_range=(1.0, 1.0), axis_scale_jitter=0.0)
    m = random_deformation(np.random.default_rng(5), params).matrix
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(m) > 0


def test_same_rng_state_same_deformation_and_different_seeds_differ() -> None:
    pts = _points()
    a = random_deformation(np.random.default_rng(11))(pts)
    b = random_deformation(np.random.default_rng(11))(pts)
    c = random_deformation(np.random.default_rng(12))(pts)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1.0


def test_displacement_is_smooth_and_of_the_requested_size() -> None:
    d = random_deformation(np.random.default_rng(2), DeformationParams(displacement_std_mm=2.0))
    shape, affine = mni_grid(4.0)
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3] @ idx + affine[:3, 3:4]
    u = d.displacement(world.reshape(3, *shape))
    assert 0.5 < u.std() < 3.0
    # neighbouring voxels 4 mm apart move almost together (control spacing 20 mm)
    step = np.abs(np.diff(u, axis=1)).max()
    assert step < 0.6 * np.abs(u).max()


def test_warp_with_identity_reproduces_the_template() -> None:
    t = load_template()
    warped = warp_template(t, identity_deformation(), t.shape, t.affine).tissues
    np.testing.assert_array_equal(warped.mask, t.mask)
    np.testing.assert_allclose(warped.wm, t.wm, atol=1e-5)


def test_same_anatomy_at_two_voxel_sizes() -> None:
    # the deformation lives in world space: the brain volume does not depend on the grid
    a2 = random_anatomy(np.random.default_rng(7), 2.0).tissues
    a4 = random_anatomy(np.random.default_rng(7), 4.0).tissues
    v2, v4 = a2.mask.sum() * 8.0, a4.mask.sum() * 64.0
    assert abs(v2 - v4) / v2 < 0.05
    # and the deformation changes it relative to the template
    t = load_template()
    assert not np.array_equal(a2.mask, t.mask)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_rotation_deg": 90.0}, "max_rotation_deg must be in"),
        ({"scale_range": (1.2, 1.1)}, "scale_range must be"),
        ({"axis_scale_jitter": -0.1}, "axis_scale_jitter must be"),
        ({"max_translation_mm": 100.0}, "max_translation_mm must be"),
        ({"displacement_std_mm": -1.0}, "displacement_std_mm must be"),
        ({"control_spacing_mm": 1.0}, "control_spacing_mm must be"),
    ],
)
def test_deformation_params_refuse_out_of_range(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        DeformationParams(**kwargs)
