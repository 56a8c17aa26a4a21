from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_fanet.simulation.template import (
    MNI_BOX,
    check_voxel_size,
    grid_world_coords,
    load_template,
    mni_grid,
    normalise_tissues,
    resample_template,
    sample,
    template_notice,
)


def test_shipped_template_is_the_2mm_mni_grid() -> None:
    t = load_template()
    assert t.shape == (91, 109, 91)
    assert t.voxel_size == (2.0, 2.0, 2.0)
    np.testing.assert_array_equal(t.affine[:3, 3], [-90.0, -126.0, -72.0])
    assert t.mask.dtype == bool
    for arr in (t.t1, t.gm, t.wm, t.csf, t.mask, t.ventricles):
        assert arr.shape == t.shape
        assert not arr.flags.writeable
    # about 1.9 litres of brain (including CSF) at 8 mm^3 per voxel
    assert 1.6e6 < t.mask.sum() * 8 < 2.1e6


def test_tissues_sum_to_one_inside_the_mask_and_zero_outside() -> None:
    t = load_template()
    total = t.gm + t.wm + t.csf
    np.testing.assert_allclose(total[t.mask], 1.0, atol=1e-5)
    assert np.all(total[~t.mask] == 0)
    for arr in (t.gm, t.wm, t.csf, t.t1):
        assert arr.min() >= 0 and arr.max() <= 1


def test_t1_template_orders_tissues_csf_gm_wm() -> None:
    t = load_template()
    med = {k: np.median(t.t1[getattr(t, k) > 0.9]) for k in ("csf", "gm", "wm")}
    assert med["csf"] < med["gm"] < med["wm"]


def test_lateral_ventricles_are_paired_deep_csf() -> None:
    t = load_template()
    vent = t.ventricles > 0.5
    world = grid_world_coords(t.shape, t.affine)
    x, y, z = (w[vent] for w in world)
    assert 1000 < vent.sum() < 4000
    assert np.all(t.csf[vent] > 0.5)
    # both hemispheres, above the thalamus level, symmetric about the midline
    assert (x > 5).sum() > 300 and (x < -5).sum() > 300
    assert abs(x.mean()) < 3 and -40 < y.mean() < 0 and 0 < z.mean() < 30


def test_notice_names_the_copyright_holder() -> None:
    text = template_notice()
    assert "Copyright (C) 1993-2009 Louis Collins" in text
    assert "McGill University" in text


@pytest.mark.parametrize(
    ("voxel_size", "shape"),
    [
        (2.0, (91, 109, 91)),
        (4.0, (46, 55, 46)),
        ((1.0, 1.0, 3.0), (181, 217, 61)),
        ((1.5, 1.5, 1.5), (121, 145, 121)),
    ],
)
def test_mni_grid_shape_and_centred_affine(voxel_size, shape) -> None:
    got_shape, affine = mni_grid(voxel_size)
    assert got_shape == shape
    vox = np.broadcast_to(voxel_size, (3,))
    np.testing.assert_allclose(np.diag(affine)[:3], vox)
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    np.testing.assert_allclose(centre, [(lo + hi) / 2 for lo, hi in MNI_BOX])
    # the grid stays inside the box
    last = affine[:3, :3] @ (np.array(shape) - 1) + affine[:3, 3]
    assert np.all(affine[:3, 3] >= [lo for lo, _ in MNI_BOX])
    assert np.all(last <= [hi for _, hi in MNI_BOX])


@pytest.mark.parametrize(
    ("voxel_size", "match"),
    [
        (0.0, "between 0.25 and 10 mm"),
        (-2.0, "between 0.25 and 10 mm"),
        (20.0, "between 0.25 and 10 mm"),
        ((1.0, float("nan"), 1.0), "between 0.25 and 10 mm"),
        ((1.0, 2.0), "a number or three numbers"),
        ("abc", "a number or three numbers"),
    ],
)
def test_check_voxel_size_refuses(voxel_size, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_voxel_size(voxel_size)


def test_check_voxel_size_accepts_scalar_and_triplet() -> None:
    assert check_voxel_size(2) == (2.0, 2.0, 2.0)
    assert check_voxel_size([1, 1, 3]) == (1.0, 1.0, 3.0)


def test_sample_at_voxel_centres_returns_the_voxels() -> None:
    rng = np.random.default_rng(0)
    vol = rng.random((5, 6, 7)).astype(np.float32)
    affine = np.diag([2.0, 3.0, 1.5, 1.0])
    affine[:3, 3] = [-4.0, 10.0, 2.0]
    world = grid_world_coords(vol.shape, affine)
    np.testing.assert_allclose(sample(vol, affine, world), vol, atol=1e-6)
    # halfway between two voxels along x: their mean (trilinear)
    mid = world[:, :4] + np.array([1.0, 0, 0])[:, None, None, None]
    np.testing.assert_allclose(sample(vol, affine, mid), (vol[:4] + vol[1:5]) / 2, atol=1e-6)


def test_resample_template_keeps_brain_volume() -> None:
    t2, t4 = load_template(), resample_template(4.0)
    assert t4.shape == (46, 55, 46)
    v2, v4 = t2.mask.sum() * 8.0, t4.mask.sum() * 64.0
    assert abs(v4 - v2) / v2 < 0.05
    np.testing.assert_allclose((t4.gm + t4.wm + t4.csf)[t4.mask], 1.0, atol=1e-5)


def test_normalise_tissues_fills_empty_mask_voxels_with_csf() -> None:
    gm = np.array([0.2, 0.0, 0.3], dtype=np.float32)
    wm = np.array([0.2, 0.0, 0.3], dtype=np.float32)
    csf = np.array([0.1, 0.0, 0.0], dtype=np.float32)
    mask = np.array([True, True, False])
    out = normalise_tissues(gm, wm, csf, mask)
    np.testing.assert_allclose(out["gm"], [0.4, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out["csf"], [0.2, 1.0, 0.0], atol=1e-6)


def test_simulation_never_imports_nilearn() -> None:
    # nilearn is only needed by scripts/derive_template.py, never at run time
    code = (
        "import sys; sys.modules['nilearn'] = None\n"
        "from napari_fanet.simulation import simulate_ms_subject\n"
        "simulate_ms_subject(1, 6.0)\n"
        "print('ok')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
