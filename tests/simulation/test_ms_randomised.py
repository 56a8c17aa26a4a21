"""The domain-randomised MS family: determinism, lesions, contrast rules, artefacts, writing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from napari_fanet.cli import main
from napari_fanet.io.nifti import load_volume
from napari_fanet.simulation.dataset import check_family, simulate_dataset
from napari_fanet.simulation.fast_fields import regrid, smooth_noise
from napari_fanet.simulation.ms_lesion_load import LesionLoadParams
from napari_fanet.simulation.ms_randomised import (
    RandomisedMSParams,
    grow_ventricles,
    simulate_randomised_ms_subject,
)
from napari_fanet.simulation.scanner_artefacts import (
    ArtefactParams,
    acquire,
    back_to_grid,
    thick_slices,
)
from napari_fanet.simulation.template import mni_grid

VOX = 3.0  # 61 x 73 x 61: lesions of a few voxels are resolved, a subject takes about 1 s


def _quiet(load_ml=(5.0, 5.0), p_bright_cortex=0.0, **lesions):
    """Noise-free params without artefacts that change intensities, for contrast checks."""
    return RandomisedMSParams(
        p_random_contrast=0.0,
        p_bright_cortex=p_bright_cortex,
        lesions=LesionLoadParams(load_ml=load_ml, **lesions),
        artefacts=ArtefactParams(
            bias_max=0.0,
            blur_mm=(0.0, 0.0),
            p_thick=(),
            log_gamma_std=0.0,
            p_saturate=0.0,
        ),
    )


@pytest.fixture(scope="module")
def quiet():
    return simulate_randomised_ms_subject(7, VOX, params=_quiet(), noise=False)


def test_images_are_skull_stripped_integers_and_lesions_lie_in_brain_tissue(quiet) -> None:
    brain = quiet.brain_mask
    for name in ("t1", "t2", "flair"):
        image = getattr(quiet, name)
        assert image.dtype == np.float32 and np.all(image[~brain] == 0)
        assert np.array_equal(image, np.round(image)) and image.min() >= 0
    assert quiet.lesion_mask.any() and not np.any(quiet.lesion_mask & ~brain)
    # lesions are confined to white matter (juxtacortical ones may reach into the cortex)
    assert quiet.wm_prob[quiet.lesion_mask].mean() > 0.6


def test_lesion_load_follows_the_drawn_target(quiet) -> None:
    volume_ml = quiet.lesion_mask.sum() * VOX**3 / 1000
    assert quiet.meta["load_target_ml"] == 5.0
    assert volume_ml == pytest.approx(quiet.meta["lesion_ml"])
    assert 3.0 < volume_ml < 8.0  # overlaps and the last lesion's size make it approximate


def test_contrast_rules_flair_and_t2_bright_t1_dark_or_iso(quiet) -> None:
    lesion = quiet.lesion_mask
    wm = (quiet.wm_prob > 0.95) & ~ndimage.binary_dilation(lesion, iterations=2)
    for name, rule in (("flair", "bright"), ("t2", "bright"), ("t1", "dark")):
        image = getattr(quiet, name)
        ratio = np.median(image[lesion]) / np.median(image[wm])
        assert ratio > 1.05 if rule == "bright" else ratio < 1.02, (name, ratio)


def test_large_loads_make_confluent_periventricular_lesions() -> None:
    params = _quiet(load_ml=(60.0, 60.0), p_confluent=1.0, confluent_fraction=(0.6, 0.6))
    s = simulate_randomised_ms_subject(11, VOX, params=params, noise=False)
    assert s.meta["confluent_ml"] > 20.0
    labels, _ = ndimage.label(s.lesion_mask, np.ones((3, 3, 3)))
    largest = np.bincount(labels.ravel())[1:].max() * VOX**3 / 1000
    assert largest > 15.0  # one big connected lesion


def _confluent_only(seed: int = 11, **confluent):
    """A subject whose whole load is one confluent lesion, at 2 mm, and its meta."""
    params = _quiet(
        load_ml=(40.0, 40.0), p_confluent=1.0, confluent_fraction=(1.0, 1.0), **confluent
    )
    return simulate_randomised_ms_subject(seed, 2.0, params=params, noise=False)


def _flair_over_wm(s, region: np.ndarray) -> float:
    wm = (s.wm_prob > 0.95) & ~ndimage.binary_dilation(s.lesion_mask, iterations=4)
    return float(np.median(s.flair[region]) / np.median(s.flair[wm]))


def test_confluent_lesions_range_from_faint_to_severe() -> None:
    faint = _confluent_only(confluent_severity=(0.0, 0.0), confluent_fade=(0.0, 0.0))
    severe = _confluent_only(confluent_severity=(1.0, 1.0), confluent_fade=(0.0, 0.0))
    assert faint.meta["confluent"]["severity_at_wall"] == 0.0
    core = ndimage.binary_erosion(faint.lesion_mask)
    assert 1.0 < _flair_over_wm(faint, core) < _flair_over_wm(severe, core)


def test_confluent_lesions_fade_from_the_ventricle_outwards() -> None:
    def wall_minus_edge(fade: float) -> float:
        s = _confluent_only(confluent_severity=(1.0, 1.0), confluent_fade=(fade, fade))
        lesion = s.lesion_mask
        csf = s.brain_mask & (s.flair < 0.6 * np.median(s.flair[s.brain_mask]))  # dark
        inner = lesion & ndimage.binary_dilation(csf, iterations=1)  # at the ventricle wall
        outer = lesion & ~ndimage.binary_erosion(lesion, iterations=1) & ~inner  # at the edge
        assert inner.sum() > 20 and outer.sum() > 20
        return _flair_over_wm(s, inner) - _flair_over_wm(s, outer)

    # partial volume alone makes the edge a little darker; the fade adds to that
    assert wall_minus_edge(0.7) > wall_minus_edge(0.0) + 0.04


def test_a_wide_confluent_edge_leaves_a_faint_unlabelled_rim() -> None:
    sharp = _confluent_only(confluent_severity=(1.0, 1.0), confluent_edge_mm=(0.5, 0.5))
    soft = _confluent_only(confluent_severity=(1.0, 1.0), confluent_edge_mm=(6.0, 6.0))
    assert soft.meta["confluent"]["edge_mm"] == 6.0
    for s in (sharp, soft):  # the label keeps the drawn volume either way
        assert s.meta["confluent_ml"] == pytest.approx(sharp.meta["confluent_ml"], rel=0.15)

    def rim(s):
        ring = ndimage.binary_dilation(s.lesion_mask, iterations=1) & ~s.lesion_mask
        return _flair_over_wm(s, ring & (s.wm_prob > 0.5))

    assert rim(soft) > rim(sharp) + 0.03


def test_version_2_keeps_uniform_sharp_confluent_lesions_and_says_so() -> None:
    from napari_fanet.simulation.dataset import simulate_subject

    # seed 0 draws a confluent lesion (17 mL at 3 mm) in both versions
    v2 = simulate_subject("ms", 0, VOX, noise=False, family="randomised-v2")
    v3 = simulate_subject("ms", 0, VOX, noise=False, family="randomised")
    assert (v2.meta["generator_version"], v3.meta["generator_version"]) == (2, 3)
    assert v2.meta["confluent_ml"] > 5.0 and v3.meta["confluent_ml"] > 5.0
    assert "confluent" in v3.meta and "confluent" not in v2.meta  # v2: one severity, 1 mm edge
    assert not np.array_equal(v2.flair, v3.flair)
    # the anatomy and the contrasts are drawn from other streams: the same in both versions
    assert v2.meta["contrast"] == v3.meta["contrast"]
    assert np.array_equal(v2.brain_mask, v3.brain_mask)


def test_version_4_brightens_grey_matter_in_patches_and_labels_none_of_it() -> None:
    # seed 3 draws bright cortex; every other draw comes from other streams
    v3 = simulate_randomised_ms_subject(3, VOX, params=_quiet(p_bright_cortex=0.0), noise=False)
    v4 = simulate_randomised_ms_subject(3, VOX, params=_quiet(p_bright_cortex=1.0), noise=False)
    assert (v3.meta["generator_version"], v4.meta["generator_version"]) == (3, 4)
    assert v3.meta["bright_cortex"] == {} and set(v4.meta["bright_cortex"]) == {"flair", "t2"}
    assert all(0.1 <= a <= 0.35 for a in v4.meta["bright_cortex"].values())
    assert np.array_equal(v3.lesion_mask, v4.lesion_mask)  # nothing new is labelled
    assert np.array_equal(v3.t1, v4.t1)  # T1 is unchanged
    wm = (v3.wm_prob > 0.95) & ~v3.lesion_mask
    # the acquisition rescales each image to its integer range: compare relative to white matter
    scale = np.median(v4.flair[wm] / v3.flair[wm])
    assert np.allclose(v4.flair[wm], v3.flair[wm] * scale, rtol=5e-3, atol=1)  # WM ~unchanged
    grey = v3.brain_mask & (v3.wm_prob < 0.2) & ~v3.lesion_mask & (v3.flair > 100)
    gain = v4.flair[grey] / (v3.flair[grey] * scale)
    assert gain.min() >= 1.0 - 5e-3  # only brighter, never darker (to rounding)
    assert 0.05 < np.mean(gain > 1.05) < 0.6  # in patches, not everywhere
    assert gain.max() > 1.0 + 0.8 * v4.meta["bright_cortex"]["flair"]
    from napari_fanet.simulation.dataset import simulate_subject

    family = simulate_subject("ms", 3, VOX, noise=False, family="randomised-v4")
    assert family.meta["generator_version"] == 4 and family.meta["bright_cortex"]
    default = simulate_subject("ms", 3, VOX, noise=False, family="randomised")
    assert default.meta["generator_version"] == 3 and not default.meta["bright_cortex"]


def test_version_5_grows_the_ventricles_and_moves_the_periventricular_lesions() -> None:
    base = _quiet(load_ml=(20.0, 20.0), p_bright_cortex=1.0)  # version 4
    v4 = simulate_randomised_ms_subject(3, VOX, params=base, noise=False)
    grown = dataclasses.replace(base, p_atrophy=1.0, ventricle_growth_mm=(6.0, 6.0))
    v5 = simulate_randomised_ms_subject(3, VOX, params=grown, noise=False)
    assert (v4.meta["generator_version"], v5.meta["generator_version"]) == (4, 5)
    assert (v4.meta["ventricle_growth_mm"], v5.meta["ventricle_growth_mm"]) == (0.0, 6.0)
    assert np.array_equal(v4.brain_mask, v5.brain_mask)  # the brain keeps its outline

    def deep_dark_ml(s) -> float:  # dark FLAIR well inside the brain: the ventricles
        core = ndimage.binary_erosion(s.brain_mask, iterations=3)
        dark = s.flair < 0.5 * np.median(s.flair[s.brain_mask])
        return float((dark & core & ~s.lesion_mask).sum() * VOX**3 / 1000)

    assert deep_dark_ml(v5) > 2.0 * deep_dark_ml(v4)
    # periventricular lesions still touch the (grown) ventricles' rim: dark CSF beside them
    rim = ndimage.binary_dilation(v5.lesion_mask, iterations=2) & ~v5.lesion_mask
    assert np.mean(v5.flair[rim] < 0.5 * np.median(v5.flair[v5.brain_mask])) > 0.05
    from napari_fanet.simulation.dataset import simulate_subject

    family = simulate_subject("ms", 3, VOX, noise=False, family="randomised-v5")
    assert family.meta["generator_version"] == 5
    default = simulate_subject("ms", 3, VOX, noise=False, family="randomised-v4")
    assert default.meta["ventricle_growth_mm"] == 0.0


def test_version_6_is_version_4_times_a_fine_texture_over_tissue_and_lesions() -> None:
    base = _quiet(load_ml=(20.0, 20.0), p_bright_cortex=1.0)  # version 4, no scanner effects
    v4 = simulate_randomised_ms_subject(3, VOX, params=base, noise=False)
    rough = dataclasses.replace(base, fine_texture_std=0.5)
    v6 = simulate_randomised_ms_subject(3, VOX, params=rough, noise=False)
    assert (v4.meta["generator_version"], v6.meta["generator_version"]) == (4, 6)
    assert v4.meta["fine_texture_std"] == 0.0 and 0.0 < v6.meta["fine_texture_std"] <= 0.5
    for name in ("lesion_mask", "brain_mask", "wm_mask"):  # every other draw unchanged
        assert np.array_equal(getattr(v4, name), getattr(v6, name))
    brain = v4.brain_mask & (v4.flair > 20) & (v4.t2 > 20)

    def texture(channel: str) -> np.ndarray:  # each channel is rescaled to its own maximum
        ratio = getattr(v6, channel)[brain] / getattr(v4, channel)[brain]
        return ratio / np.median(ratio)

    flair = texture("flair")  # one texture for every channel, integer rounding aside
    np.testing.assert_allclose(texture("t2"), flair, rtol=0.1, atol=0.05)
    assert flair.min() > 0.4  # the texture's floor of 0.5, give or take the rescaling
    std = v6.meta["fine_texture_std"]
    assert np.std(flair) > 0.3 * std
    assert np.std(flair[v4.lesion_mask[brain]]) > 0.3 * std  # the lesions are textured too
    from napari_fanet.simulation.dataset import simulate_subject

    family = simulate_subject("ms", 3, VOX, noise=False, family="randomised-v6")
    same4 = simulate_subject("ms", 3, VOX, noise=False, family="randomised-v4")
    assert family.meta["generator_version"] == 6 and family.meta["fine_texture_std"] > 0
    assert np.array_equal(family.lesion_mask, same4.lesion_mask)
    assert not np.array_equal(family.flair, same4.flair)


def test_version_7_draws_smaller_discrete_lesions_and_nothing_else_changes() -> None:
    base = _quiet(load_ml=(2.0, 2.0), p_bright_cortex=1.0)  # version 4 sizes, no confluent
    sizes = {"min_diameter_mm": 2.0, "volume_median_mm3": 30.0}  # version 7's
    small = dataclasses.replace(base, lesions=dataclasses.replace(base.lesions, **sizes))
    v4 = simulate_randomised_ms_subject(3, 2.0, params=base, noise=False)
    v7 = simulate_randomised_ms_subject(3, 2.0, params=small, noise=False)
    assert (v4.meta["generator_version"], v7.meta["generator_version"]) == (4, 7)
    for name in ("brain_mask", "wm_prob"):  # only the lesion stream changes
        assert np.array_equal(getattr(v4, name), getattr(v7, name))
    sizes4 = [lesion["voxels"] for lesion in v4.meta["lesions"]]
    sizes7 = [lesion["voxels"] for lesion in v7.meta["lesions"]]
    assert len(sizes7) > len(sizes4)  # the same load in more, smaller lesions
    assert np.median(sizes7) < np.median(sizes4)
    from napari_fanet.simulation.dataset import simulate_subject

    family = simulate_subject("ms", 3, VOX, noise=False, family="randomised-v7")
    same4 = simulate_subject("ms", 3, VOX, noise=False, family="randomised-v4")
    assert family.meta["generator_version"] == 7
    assert np.array_equal(family.brain_mask, same4.brain_mask)
    assert not np.array_equal(family.lesion_mask, same4.lesion_mask)


def test_grow_ventricles_turns_tissue_into_csf_within_the_distance() -> None:
    shape, vox = (21, 21, 21), (1.0, 1.0, 1.0)
    ventricles = np.zeros(shape, np.float32)
    ventricles[10, 10, 10] = 1.0
    wm, gm = np.full(shape, 0.7, np.float32), np.full(shape, 0.3, np.float32)
    csf, mask = np.zeros(shape, np.float32), np.ones(shape, bool)
    assert grow_ventricles(wm, gm, csf, ventricles, mask, vox, 0.0)[2] is csf  # untouched
    w2, g2, c2, v2 = grow_ventricles(wm, gm, csf, ventricles, mask, vox, 4.0)
    np.testing.assert_allclose(w2 + g2 + c2, 1.0, atol=1e-6)  # tissue fractions still sum
    assert c2[10, 10, 14] == pytest.approx(0.5) and c2[10, 10, 13] == 1.0  # soft edge at 4 mm
    assert c2[10, 10, 16] == 0.0 and v2[10, 10, 12] == 1.0
    outside = mask.copy()
    outside[10, 10, 12] = False
    assert grow_ventricles(wm, gm, csf, ventricles, outside, vox, 4.0)[2][10, 10, 12] == 0.0


def test_every_site_hosts_lesions_down_to_3_mm() -> None:
    params = _quiet(load_ml=(2.0, 2.0), site_weights=(1, 1, 1, 1), volume_median_mm3=30.0)
    s = simulate_randomised_ms_subject(5, 2.0, params=params, noise=False)
    sites = {}
    for lesion in s.meta["lesions"]:
        sites.setdefault(lesion["site"], []).append(lesion)
    assert set(sites) == {"periventricular", "juxtacortical", "deep", "infratentorial"}
    assert all(lesion["centre_mm"][2] < -5 for lesion in sites["infratentorial"])  # MNI z
    assert min(lesion["voxels"] for lesion in s.meta["lesions"]) <= 4  # 3 mm: 14 mm^3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p_random_contrast": 1.5}, "p_random_contrast must be in"),
        ({"flair_lesion": (2.0, 1.0, 3.0)}, "flair_lesion must be"),
        ({"p_bright_cortex": -0.1}, r"p_bright_cortex must be in \[0, 1\], got -0.1"),
        ({"bright_cortex_max": 0.05}, "bright_cortex_max must be >= 0.1, got 0.05"),
        ({"bright_cortex_mm": 0.0}, "bright_cortex_mm must be positive, got 0.0"),
        ({"p_atrophy": 2.0}, r"p_atrophy must be in \[0, 1\], got 2.0"),
        ({"ventricle_growth_mm": (3.0, 1.0)}, r"ventricle_growth_mm must be \(lo, hi\) with 0"),
        ({"ventricle_growth_mm": (3.0,)}, r"ventricle_growth_mm must be \(lo, hi\).*got \(3.0,\)"),
        ({"fine_texture_std": -0.1}, r"fine_texture_std must be in \[0, 1\), got -0.1"),
        ({"fine_texture_std": 1.0}, r"fine_texture_std must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_params_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        RandomisedMSParams(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"load_ml": (0.0, 1.0)}, "load_ml"),
        ({"site_weights": (0.0, 0.0, 0.0, 0.0)}, "site_weights"),
        ({"confluent_fraction": (0.8, 0.2)}, "confluent_fraction"),
        ({"confluent_severity": (0.5, 1.5)}, "confluent_severity"),
        ({"confluent_fade": (0.9, 0.1)}, "confluent_fade"),
        ({"confluent_edge_mm": (0.0, 2.0)}, "confluent_edge_mm"),
        ({"confluent_style": "sharp"}, "confluent_style"),
    ],
)
def test_bad_lesion_params_are_refused(kwargs, match) -> None:
    with pytest.raises(ValueError, match=f"invalid lesion setting {match}"):
        LesionLoadParams(**kwargs)


def test_regrid_is_exact_on_a_linear_ramp_between_mni_grids() -> None:
    coarse_shape, coarse_affine = mni_grid(4.0)
    fine_shape, fine_affine = mni_grid(2.0)
    ramp = lambda shape, aff: np.indices(shape)[0] * aff[0, 0] + aff[0, 3]  # noqa: E731  world x
    out = regrid(ramp(coarse_shape, coarse_affine), coarse_affine, fine_shape, fine_affine,
                 smooth=False)  # fmt: skip
    expected = ramp(fine_shape, fine_affine)
    np.testing.assert_allclose(out[1:-1], expected[1:-1], atol=1e-4)


def test_regrid_and_smooth_noise_refuse_bad_arguments() -> None:
    oblique = np.eye(4)
    oblique[0, 1] = 0.5
    with pytest.raises(ValueError, match="src_affine must be a 4x4 affine with a diagonal"):
        regrid(np.zeros((3, 3, 3)), oblique, (3, 3, 3), np.eye(4))
    with pytest.raises(ValueError, match="correlation_vox must be positive"):
        smooth_noise(np.random.default_rng(0), (4, 4, 4), 0.0)


def test_smooth_noise_is_standardised_and_smooth() -> None:
    field = smooth_noise(np.random.default_rng(1), (40, 30, 20), 6.0)
    assert field.shape == (40, 30, 20)
    assert abs(field.mean()) < 1e-4 and field.std() == pytest.approx(1.0, rel=1e-3)
    neighbour = np.corrcoef(field[:-1].ravel(), field[1:].ravel())[0, 1]
    assert neighbour > 0.9


def test_thick_slices_average_along_one_axis_and_come_back_to_the_grid() -> None:
    image = np.zeros((20, 20, 30), np.float32)
    image[:, :, ::2] = 2.0  # stripes 1 voxel wide along axis 2
    low = thick_slices(image, axis=2, factor=4.0)
    assert low.shape == (20, 20, 8)
    back = back_to_grid(low, image.shape, axis=2, factor=4.0)
    assert back.shape == image.shape
    assert back[:, :, 4:-4].std() < 0.1 * image.std()  # the stripes are averaged out
    np.testing.assert_allclose(back[:, :, 10], image[:, :, 10:20].mean(), rtol=0.1)


def test_acquire_scales_saturates_and_keeps_the_background_zero() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((24, 24, 24), bool)
    mask[4:20, 4:20, 4:20] = True
    image = np.where(mask, 100.0 + 10 * rng.standard_normal(mask.shape), 0).astype(np.float32)
    params = ArtefactParams(p_saturate=1.0, max_value=(1000.0, 1000.0))
    out, settings = acquire(rng, image, mask, (1.0, 1.0, 1.0), "flair", params)
    assert np.all(out[~mask] == 0) and np.array_equal(out, np.round(out))
    assert settings["saturate_percentile"] is not None
    assert out[mask].max() <= 1000.0 * 1.01
    assert json.dumps(settings)  # JSON-ready


def test_acquire_cuts_thick_slices_only_along_the_given_axes() -> None:
    mask = np.zeros((24, 24, 24), bool)
    mask[4:20, 4:20, 4:20] = True
    image = np.where(mask, 100.0, 0).astype(np.float32)
    params = ArtefactParams(p_thick=(("flair", 1.0),), thick_axes=(2,))
    axes = set()
    for seed in range(6):
        _, settings = acquire(
            np.random.default_rng(seed), image, mask, (1.0, 1.0, 1.0), "flair", params
        )
        assert 3.0 <= settings["thick_slice_mm"] <= 5.0
        axes.add(settings["thick_slice_axis"])
    assert axes == {2}
    # the default axes draw as before: any of the three, from the same stream
    drawn = {
        acquire(np.random.default_rng(s), image, mask, (1.0,) * 3, "flair",
                ArtefactParams(p_thick=(("flair", 1.0),)))[1]["thick_slice_axis"]
        for s in range(12)
    }  # fmt: skip
    assert drawn == {0, 1, 2}
    for bad in ((), (3,), (0, -1)):
        with pytest.raises(ValueError, match=r"thick_axes: expected one or more voxel axes"):
            ArtefactParams(thick_axes=bad)


def test_dataset_family_is_written_and_checked(tmp_path) -> None:
    out = simulate_dataset(tmp_path / "d", "ms", 1, seed=2, voxel_size=4.0, family="randomised")
    desc = json.loads(out.read_text())
    meta = json.loads((tmp_path / "d" / "sub-0000" / "meta.json").read_text())
    assert desc["family"] == "randomised" and meta["family"] == "randomised"
    assert meta["seed"] == 2 and meta["lesion_voxels"] == int(meta["lesion_voxels"])
    with pytest.raises(ValueError, match=r"family must be one of .* for task qsm"):
        check_family("qsm", "randomised")
    with pytest.raises(ValueError, match="family must be one of phantom, randomised"):
        check_family("ms", "synthseg")


def test_cli_simulate_family(tmp_path, capsys) -> None:
    args = ["simulate", "--task", "ms", "--subjects", "1", "--seed", "0", "--no-progress"]
    code = main([*args, "--family", "randomised", "--voxel-size", "4", "4", "4",
                 "--out", str(tmp_path / "ms")])  # fmt: skip
    assert code == 0
    assert json.loads((tmp_path / "ms" / "dataset.json").read_text())["family"] == "randomised"
    # the same seed gives the same subject (noise included), on the MNI grid
    again = simulate_randomised_ms_subject(0, 4.0)
    for name in ("flair", "lesion_mask"):
        written = load_volume(tmp_path / "ms" / "sub-0000" / f"{name}.nii.gz")
        np.testing.assert_array_equal(written.data, getattr(again, name))
        np.testing.assert_allclose(written.affine, mni_grid(4.0)[1])
    meta = json.loads((tmp_path / "ms" / "sub-0000" / "meta.json").read_text())
    assert meta["lesions"] == again.meta["lesions"] and meta["family"] == "randomised"
    qsm = ["simulate", "--task", "qsm", "--subjects", "1", "--seed", "0", "--no-progress"]
    code = main([*qsm, "--family", "randomised", "--out", str(tmp_path / "qsm")])
    assert code == 2
    assert "for task qsm, got 'randomised'" in capsys.readouterr().err
