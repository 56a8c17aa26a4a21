"""Without a brain mask, a FLAIR whose background reaches the array's faces is refused, saying
why; near-zero resampling residue around a skull-stripped brain is left out of the brain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_fanet.tasks.preprocessing import (
    NEAR_ZERO_FRACTION,
    NEAR_ZERO_RELATIVE,
    near_zero_residue,
    seg_brain_mask,
)
from napari_fanet.tasks.segmentation import check_brain, residue_message, skull_stripping_problem

SHAPE = (40, 48, 36)
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "open-ms-lesjak2017"


def stripped_brain(shape=SHAPE, centre=None, seed=0) -> np.ndarray:
    """An ellipsoid of brain-like values (some negative, as after N4) in exact zeros."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float64)
    centre = np.asarray(shape, float) / 2 if centre is None else np.asarray(centre, float)
    radii = np.asarray(shape, float) * 0.35
    inside = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) < 1
    values = rng.normal(300.0, 80.0, shape)
    values[inside & (rng.random(shape) < 0.01)] *= -0.01  # a few negative and tiny voxels
    return np.where(inside, values, 0.0).astype(np.float32)


@pytest.mark.parametrize(
    "flair",
    [
        stripped_brain(),
        np.round(stripped_brain()).astype(np.int16),
        # cropped to the brain: it touches three faces, over less than half of each
        stripped_brain(centre=(10, 12, 9)),
    ],
    ids=["float", "int16", "cropped"],
)
def test_a_skull_stripped_flair_passes(flair):
    assert skull_stripping_problem(flair) is None
    check_brain({"FLAIR": flair}, flair != 0)


def test_background_up_to_the_edges_is_refused():
    flair = stripped_brain() + np.random.default_rng(1).rayleigh(5.0, SHAPE).astype(np.float32)
    expected = (
        r"^the FLAIR does not look skull-stripped: 6 of the 6 faces of its array are mostly "
        r"non-zero \(background up to the edges\), where a skull-stripped FLAIR is 0 outside "
        r"the brain; skull-strip it \(e\.g\. with SynthStrip or HD-BET\) or give a brain mask$"
    )
    with pytest.raises(ValueError, match=expected):
        check_brain({"FLAIR": flair}, flair != 0)
    # four faces are enough, three are not
    flair = stripped_brain()
    for face in (np.s_[0], np.s_[-1], np.s_[:, 0]):
        flair[face] = 1.0
    assert skull_stripping_problem(flair) is None
    flair[:, -1] = 1.0
    assert skull_stripping_problem(flair).startswith(
        "the FLAIR does not look skull-stripped: 4 of the 6 faces"
    )


def test_near_zero_residue_of_resampling_is_left_out_of_the_brain():
    clean = stripped_brain()
    flair = clean.copy()
    residue = (flair == 0) & (np.indices(SHAPE).sum(0) % 2 == 0)  # half the background
    flair[residue] = 1e-9
    assert skull_stripping_problem(flair) is None
    check_brain({"FLAIR": flair}, seg_brain_mask(flair))  # no error
    np.testing.assert_array_equal(seg_brain_mask(flair), seg_brain_mask(clean))
    floor, fraction = near_zero_residue(flair)
    expected = NEAR_ZERO_RELATIVE * np.percentile(np.abs(flair[flair != 0]), 99)
    assert floor == pytest.approx(expected)
    assert fraction > 0.5
    message = residue_message(flair)
    assert message.startswith(f"{100 * fraction:.0f} % of the FLAIR's non-zero voxels are nearly")
    assert message.endswith(
        "as around a skull-stripped image resampled afterwards: the brain is taken as the "
        "voxels above that (cavities filled); give a brain mask to set it yourself"
    )
    assert residue_message(clean) is None and near_zero_residue(np.zeros(SHAPE)) is None


def test_the_near_zero_fraction_is_a_sharp_limit():
    flair = stripped_brain()
    nonzero = int((flair != 0).sum())
    floor = NEAR_ZERO_RELATIVE * np.percentile(np.abs(flair[flair != 0]), 99)
    # just under the limit: the added near-zero voxels make at most 20 % of the non-zero ones
    count = int(NEAR_ZERO_FRACTION * nonzero * 0.9)
    background = np.flatnonzero(flair == 0)
    flair.flat[background[:count]] = floor / 10
    assert near_zero_residue(flair) is None
    assert seg_brain_mask(flair).sum() >= nonzero + count  # the few stay in (non-zero)
    flair.flat[background[: 3 * count]] = floor / 10
    assert near_zero_residue(flair) is not None


def test_a_brain_mask_lifts_the_check():
    flair = stripped_brain() + 5.0  # no zero anywhere
    mask = stripped_brain() != 0
    check_brain({"FLAIR": flair, "brain mask": mask}, mask)  # no error
    with pytest.raises(ValueError, match=r"^the FLAIR does not look skull-stripped: 6 of the 6"):
        check_brain({"FLAIR": flair}, flair != 0)


def test_real_patients_pass_and_their_resampled_copies_lose_the_residue():
    if not DATA.is_dir():
        pytest.skip(f"real MS patients not available (no {DATA}; see shared/data/README.md)")
    import nibabel as nib
    from scipy import ndimage

    for patient in ("patient07", "patient19", "patient26"):
        flair = np.asarray(nib.load(DATA / patient / "flair.nii.gz").dataobj, np.float32)
        assert skull_stripping_problem(flair) is None, patient
        assert near_zero_residue(flair) is None, patient
        np.testing.assert_array_equal(seg_brain_mask(flair), flair != 0)  # unchanged
    # a block of the last one resampled to 0.8 mm with cubic splines, as a pipeline might after
    # skull stripping: the residue fills the background, and the brain leaves it out
    block = flair[:91, :109, :91]  # one octant: brain, its edge and background
    zoomed = np.clip(ndimage.zoom(block, 1.25, order=3), 0, None)
    brain_zoomed = ndimage.zoom((block != 0).astype(np.float32), 1.25, order=0) > 0.5
    assert near_zero_residue(zoomed) is not None
    assert (zoomed != 0).sum() > 1.5 * brain_zoomed.sum()
    brain = seg_brain_mask(zoomed)
    overlap = 2 * (brain & brain_zoomed).sum() / (brain.sum() + brain_zoomed.sum())
    assert overlap > 0.95  # a shell of the splines' overshoot stays
