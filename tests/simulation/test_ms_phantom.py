from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_fanet.simulation._random import spawn_streams
from napari_fanet.simulation.deform import random_anatomy
from napari_fanet.simulation.ms_phantom import STREAMS, MSParams, simulate_ms_subject
from napari_fanet.simulation.template import mni_grid

STRUCT = np.ones((3, 3, 3), dtype=bool)


def test_same_seed_gives_identical_arrays(ms3) -> None:
    again = simulate_ms_subject(123, 3.0)
    for name in ("t1", "t2", "flair", "lesion_mask", "brain_mask", "wm_prob", "wm_mask"):
        np.testing.assert_array_equal(getattr(again, name), getattr(ms3, name))
    assert again.meta == ms3.meta


def test_different_seeds_differ(ms3) -> None:
    other = simulate_ms_subject(124, 3.0)
    assert not np.array_equal(other.flair, ms3.flair)
    assert not np.array_equal(other.lesion_mask, ms3.lesion_mask)
    assert not np.array_equal(other.brain_mask, ms3.brain_mask)


def test_shapes_dtypes_and_integer_units(ms3) -> None:
    shape, affine = mni_grid(3.0)
    np.testing.assert_array_equal(ms3.affine, affine)
    for name in ("t1", "t2", "flair"):
        img = getattr(ms3, name)
        assert img.shape == shape and img.dtype == np.float32
        assert np.all(img == np.round(img)) and img.min() >= 0 and img.max() <= 32767
        assert np.all(img[~ms3.brain_mask] == 0)
        wm = img[(ms3.wm_prob > 0.95) & ~ms3.lesion_mask]
        assert 600 < np.median(wm) < 1500  # WM near 1000 (bias field and gamma move it)
    for name in ("lesion_mask", "brain_mask", "wm_mask"):
        assert getattr(ms3, name).dtype == bool and getattr(ms3, name).shape == shape
    assert ms3.wm_prob.dtype == np.float32
    assert 0 <= ms3.wm_prob.min() and ms3.wm_prob.max() <= 1
    np.testing.assert_array_equal(ms3.wm_mask, (ms3.wm_prob >= 0.5) | ms3.lesion_mask)


def test_tissue_contrast_of_each_sequence(ms3) -> None:
    wm = (ms3.wm_prob > 0.95) & ~ms3.lesion_mask
    anatomy = random_anatomy(spawn_streams(123, STREAMS)["anatomy"], 3.0).tissues
    csf = anatomy.csf > 0.95
    gm = anatomy.gm > 0.9
    med = {
        n: {k: np.median(getattr(ms3, n)[m]) for k, m in (("wm", wm), ("gm", gm), ("csf", csf))}
        for n in ("t1", "t2", "flair")
    }
    assert med["t1"]["csf"] < med["t1"]["gm"] < med["t1"]["wm"]
    assert med["t2"]["wm"] < med["t2"]["gm"] < med["t2"]["csf"]
    assert med["flair"]["csf"] < med["flair"]["wm"] < med["flair"]["gm"]


def test_lesions_inside_brain_mostly_in_white_matter(ms3) -> None:
    lesions = ms3.lesion_mask
    assert ms3.meta["n_lesions"] >= 5
    assert lesions.sum() == ms3.meta["lesion_voxels"] > 0
    assert not np.any(lesions & ~ms3.brain_mask)
    assert np.mean(ms3.wm_prob[lesions] >= 0.5) > 0.8
    kinds = {lesion["kind"] for lesion in ms3.meta["lesions"]}
    assert kinds <= {"periventricular", "deep", "juxtacortical"}


def test_lesions_are_bright_on_flair_and_t2_and_dark_on_t1(ms3) -> None:
    labels, n = ndi.label(ms3.lesion_mask, STRUCT)
    normal_wm = (ms3.wm_prob > 0.8) & ~ndi.binary_dilation(ms3.lesion_mask, STRUCT)
    ratios = {"flair": [], "t2": [], "t1": []}
    for i in range(1, n + 1):
        lesion = labels == i
        shell = ndi.binary_dilation(lesion, STRUCT, iterations=3) & normal_wm
        if lesion.sum() < 3 or shell.sum() < 10:
            continue
        for name in ratios:
            img = getattr(ms3, name)
            ratios[name].append(img[lesion].mean() / img[shell].mean())
    assert len(ratios["flair"]) >= 3
    flair, t2, t1 = (np.array(ratios[k]) for k in ("flair", "t2", "t1"))
    assert np.mean(flair > 1.0) >= 0.8 and np.median(flair) > 1.15
    assert np.mean(t2 > 1.0) >= 0.8 and np.median(t2) > 1.2
    assert np.mean(t1 < 1.0) >= 0.8 and np.median(t1) < 0.95


def test_noise_free_mode_changes_only_the_noise(ms3) -> None:
    clean = simulate_ms_subject(123, 3.0, noise=False)
    np.testing.assert_array_equal(clean.lesion_mask, ms3.lesion_mask)
    np.testing.assert_array_equal(clean.brain_mask, ms3.brain_mask)
    assert clean.meta["noise_sigma_rel_wm"] == 0.0
    wm = (ms3.wm_prob > 0.95) & ~ms3.lesion_mask
    # Rician noise: the noisy WM spreads more than the clean one
    assert ms3.flair[wm].std() > clean.flair[wm].std()


def test_periventricular_rim_brightens_flair_but_is_not_a_lesion() -> None:
    no_rim = MSParams(cap_contrast=(0.0, 0.0), band_contrast=(0.0, 0.0))
    with_rim = simulate_ms_subject(7, 3.0, noise=False)
    without = simulate_ms_subject(7, 3.0, noise=False, params=no_rim)
    np.testing.assert_array_equal(with_rim.lesion_mask, without.lesion_mask)
    gain = with_rim.flair - without.flair
    anatomy = random_anatomy(spawn_streams(7, STREAMS)["anatomy"], 3.0).tissues
    vent = anatomy.ventricles >= 0.5
    near = ndi.binary_dilation(vent, STRUCT, iterations=1) & ~vent & ~with_rim.lesion_mask
    far = with_rim.brain_mask & ~ndi.binary_dilation(vent, STRUCT, iterations=5)
    assert np.median(gain[near]) > 20  # integer units, WM near 1000
    assert np.abs(gain[far]).max() <= 2
    np.testing.assert_array_equal(with_rim.t1, without.t1)


def test_no_lesions_when_asked() -> None:
    subject = simulate_ms_subject(3, 4.0, params=MSParams(n_lesions=(0, 0)))
    assert not subject.lesion_mask.any()
    assert subject.meta["n_lesions"] == 0


def test_lesion_kind_weights_are_followed() -> None:
    subject = simulate_ms_subject(3, 3.0, params=MSParams(kind_weights=(0.0, 1.0, 0.0)))
    assert {lesion["kind"] for lesion in subject.meta["lesions"]} == {"deep"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_lesions": (5, 2)}, "n_lesions must be"),
        ({"kind_weights": (0.0, 0.0, 0.0)}, "kind_weights must be"),
        ({"kind_weights": (1.0, 1.0)}, "kind_weights must be"),
        ({"lesion_volume_range_mm3": (0.0, 10.0)}, "lesion_volume_range_mm3 must be"),
    ],
)
def test_ms_params_refuse_bad_ranges(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        MSParams(**kwargs)
