"""Tests of small synthetic lesions inserted into a scan's white matter."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.simulation.lesion_insertion import (
    INSERTED_CONTRAST,
    InsertionParams,
    insert_lesions,
    white_matter_sites,
)

SHAPE = (40, 40, 40)


def _scan(seed: int = 0):
    """A cube brain: a T1-bright white-matter core inside darker grey matter, one lesion."""
    rng = np.random.default_rng(seed)
    brain = np.zeros(SHAPE, bool)
    brain[4:36, 4:36, 4:36] = True
    core = np.zeros(SHAPE, bool)
    core[8:32, 8:32, 8:32] = True  # 42 % of the brain: above the 0.65 quantile
    noise = 1 + 0.02 * rng.standard_normal(SHAPE)
    images = {
        "flair": np.where(brain, 100.0, 0.0) * noise,
        "t1": np.where(core, 120.0, np.where(brain, 70.0, 0.0)) * noise,
        "t2": np.where(brain, 80.0, 0.0) * noise,
    }
    lesions = np.zeros(SHAPE, bool)
    lesions[18:21, 18:21, 18:21] = True
    return images, lesions, brain, core


def test_lesions_go_into_white_matter_away_from_the_reference_lesions():
    images, lesions, brain, core = _scan()
    sites = white_matter_sites(images["t1"], brain, lesions, (1, 1, 1), InsertionParams())
    assert sites.any() and not (sites & ~core).any()
    assert not sites[15:24, 15:24, 15:24][lesions[15:24, 15:24, 15:24]].any()
    near = np.zeros(SHAPE, bool)
    near[16:23, 16:23, 16:23] = True  # within 2 voxels of the lesion: cleared
    assert not (sites & near).any()


def test_inserted_lesions_are_labelled_and_change_each_channel_its_way():
    images, lesions, brain, _ = _scan()
    out, mask, info = insert_lesions(
        np.random.default_rng(1), images, lesions, brain, (1.0, 1.0, 1.0), 5
    )
    assert 1 <= len(info) <= 5 and mask.dtype == np.uint8
    assert mask[lesions].all()  # the reference lesions stay
    added = (mask > 0) & ~lesions
    assert added.sum() == sum(i["voxels"] for i in info)  # apart: no overlap
    assert not (added & ~brain).any()
    for name in out:
        ratio = out[name][added] / images[name][added]
        if INSERTED_CONTRAST[name][1] > 1:  # FLAIR and T2 brighter
            assert ratio.min() >= 1 and ratio.mean() > 1.05
        else:  # T1 darker or unchanged
            assert ratio.max() <= 1 + 1e-6
        changed = np.abs(out[name] - images[name]) > 1e-6 * np.abs(images[name]).max()
        assert not (changed & ~brain).any()  # nothing outside the brain moves
    for item in info:
        assert (
            out["flair"][tuple(item["centre_voxel"])]
            >= images["flair"][tuple(item["centre_voxel"])]
        )
    # the inputs are left alone
    assert np.array_equal(images["flair"], _scan()[0]["flair"])


def test_insertion_is_reproducible_per_seed():
    images, lesions, brain, _ = _scan()
    a = insert_lesions(np.random.default_rng(3), images, lesions, brain, (1, 1, 1), 4)
    b = insert_lesions(np.random.default_rng(3), images, lesions, brain, (1, 1, 1), 4)
    c = insert_lesions(np.random.default_rng(4), images, lesions, brain, (1, 1, 1), 4)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0]["flair"], b[0]["flair"])
    assert not np.array_equal(a[1], c[1])


def test_fewer_lesions_when_the_white_matter_is_full():
    images, lesions, brain, _ = _scan()
    _, _, info = insert_lesions(np.random.default_rng(0), images, lesions, brain, (1, 1, 1), 500)
    assert 1 <= len(info) < 500


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"drop": "t1"}, "needs a T1 to find the white matter, got channels"),
        ({"add": "pd"}, r"expected channels among \['flair', 't1', 't2'\], got \['pd'\]"),
        ({"brain_shape": (10, 10, 10)}, "expected 3D images and masks of one shape"),
        ({"count": 0}, "expected count >= 1, got 0"),
        ({"empty_brain": True}, "the brain mask is empty"),
        ({"flat_t1": True}, "no white matter to put lesions in"),
    ],
)
def test_insert_lesions_refuses_bad_input(change, match):
    images, lesions, brain, _ = _scan()
    count = change.get("count", 3)
    if "drop" in change:
        images.pop(change["drop"])
    if "add" in change:
        images[change["add"]] = images["flair"]
    if "brain_shape" in change:
        brain = np.ones(change["brain_shape"], bool)
    if change.get("empty_brain"):
        brain = np.zeros(SHAPE, bool)
    if change.get("flat_t1"):
        images["t1"] = np.where(brain, 100.0, 0.0)  # no voxel above the quantile
    with pytest.raises(ValueError, match=match):
        insert_lesions(np.random.default_rng(0), images, lesions, brain, (1, 1, 1), count)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"volume_mm3": (0.0, 10.0)}, r"volume_mm3: expected 0 < low <= high, got \(0.0, 10.0\)"),
        ({"volume_mm3": (20.0, 10.0)}, "volume_mm3: expected 0 < low <= high"),
        ({"white_matter_quantile": 1.0}, r"white_matter_quantile: expected a value in \(0, 1\)"),
        ({"erosion_mm": -1.0}, "erosion_mm and clearance_mm: expected >= 0, got -1.0"),
        ({"severity": (0.5, 1.2)}, r"severity: expected 0 <= low <= high <= 1, got \(0.5, 1.2\)"),
    ],
)
def test_insertion_params_refuse_bad_ranges(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InsertionParams(**kwargs)


def test_a_fixed_severity_gives_every_lesion_one_contrast():
    images, lesions, brain, _ = _scan()
    params = InsertionParams(severity=(0.5, 0.5))
    out, _, info = insert_lesions(
        np.random.default_rng(2), images, lesions, brain, (1, 1, 1), 4, params
    )
    assert {item["severity"] for item in info} == {0.5}
    low, high = INSERTED_CONTRAST["flair"]
    ratio = out["flair"] / np.where(images["flair"] > 0, images["flair"], 1)
    assert ratio.max() == pytest.approx(low + 0.5 * (high - low), rel=1e-5)
