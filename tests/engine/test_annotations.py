"""Annotations: label values of the two modes, one-click lesion edits, editable copies."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.engine.annotations import (
    FULL_MASK,
    MODE_HELP,
    SCRIBBLES,
    annotation_to_label,
    first_labelled_voxel,
    keep_component,
    mask_to_annotation,
    remove_component,
    voxel_index,
)
from napari_fanet.tasks.losses import IGNORE_INDEX


def _volume(values):
    """A (1, 1, N) volume holding ``values`` (easy to write expected results by hand)."""
    return np.asarray(values).reshape(1, 1, -1)


@pytest.mark.parametrize(
    ("mode", "values", "expected", "counts"),
    [
        (FULL_MASK, [0, 1, 0, 3], [0, 1, 0, 1], (2, 2, 0)),
        (FULL_MASK, [0.0, 2.0, 0.0], [0, 1, 0], (1, 2, 0)),
        (SCRIBBLES, [0, 1, 2, 0], [255, 1, 0, 255], (1, 1, 2)),
        (SCRIBBLES, [2, 2, 0], [0, 0, 255], (0, 2, 1)),  # "not lesion" only is allowed
        (SCRIBBLES, [1, 0, 0], [1, 255, 255], (1, 0, 2)),
    ],
)
def test_annotation_values_become_the_trainers_labels(mode, values, expected, counts):
    out = annotation_to_label(_volume(values), mode)
    np.testing.assert_array_equal(out["label"], _volume(expected))
    assert out["label"].dtype == np.uint8
    assert (out["lesion"], out["background"], out["ignored"]) == counts
    assert IGNORE_INDEX == 255


def test_mode_help_documents_every_label_value():
    assert "1 = lesion" in MODE_HELP[SCRIBBLES] and "2 = not lesion" in MODE_HELP[SCRIBBLES]
    assert "0 = unpainted" in MODE_HELP[SCRIBBLES] and "ignored" in MODE_HELP[SCRIBBLES]
    assert "0 = background" in MODE_HELP[FULL_MASK]


@pytest.mark.parametrize(
    ("mode", "data", "match"),
    [
        (FULL_MASK, _volume([0, 0, 0]), "is empty: a full mask needs at least one lesion"),
        (SCRIBBLES, _volume([0, 0, 0]), "is empty: paint lesion"),
        (SCRIBBLES, _volume([0, 1, 3, 7]), r"holds label values \[3, 7\]"),
        (FULL_MASK, np.zeros((4, 4)), "must be a 3D volume, got 2D"),
        (FULL_MASK, _volume([0.0, np.nan]), "NaN"),
        (FULL_MASK, _volume([0.0, 0.5]), "whole numbers"),
        (FULL_MASK, _volume(["a", "b"]), "integer label values"),
        ("sparse", _volume([1]), "annotation mode must be one of"),
    ],
)
def test_bad_annotations_are_refused(mode, data, match):
    with pytest.raises(ValueError, match=match):
        annotation_to_label(data, mode, name="my labels")


def test_error_messages_name_the_layer():
    with pytest.raises(ValueError, match="annotation 'my labels' is empty"):
        annotation_to_label(_volume([0, 0]), FULL_MASK, name="my labels")


# -- connected components ------------------------------------------------------------------


def _two_lesions_and_a_scribble():
    """Lesion A: a diagonal pair (26-connected only); lesion B apart; a 'not lesion' stroke."""
    mask = np.zeros((6, 6, 6), dtype=np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = 1  # A: touches only at a corner
    mask[4, 4, 4] = mask[4, 4, 5] = 1  # B
    mask[0, 5, 0] = mask[0, 5, 1] = 2  # a "not lesion" scribble
    return mask


def test_remove_component_removes_the_26_connected_lesion_only():
    mask = _two_lesions_and_a_scribble()
    out = remove_component(mask, (2, 2, 2))
    expected = mask.copy()
    expected[1, 1, 1] = expected[2, 2, 2] = 0
    np.testing.assert_array_equal(out, expected)
    assert mask[1, 1, 1] == 1  # the input is untouched


def test_keep_component_keeps_the_clicked_lesion_and_other_label_values():
    mask = _two_lesions_and_a_scribble()
    out = keep_component(mask, (4, 4, 5))
    expected = mask.copy()
    expected[1, 1, 1] = expected[2, 2, 2] = 0
    np.testing.assert_array_equal(out, expected)


def test_components_have_one_label_value():
    mask = _two_lesions_and_a_scribble()
    mask[3, 3, 3] = 2  # touches lesion A but is a different label
    out = remove_component(mask, (1, 1, 1), fill=0)
    assert out[3, 3, 3] == 2 and out[2, 2, 2] == 0


@pytest.mark.parametrize(
    ("voxel", "match"),
    [((0, 0, 0), r"voxel \(0, 0, 0\) is background"), ((9, 0, 0), "outside the volume")],
)
@pytest.mark.parametrize("edit", [remove_component, keep_component])
def test_clicking_background_or_outside_is_an_error(edit, voxel, match):
    with pytest.raises(ValueError, match=match):
        edit(_two_lesions_and_a_scribble(), voxel)


def test_voxel_index_rounds_data_coordinates():
    assert voxel_index((4, 5, 6), [0.0, 1.4, 2.6, 4.4]) == (1, 3, 4)  # last 3 of an nD point
    with pytest.raises(ValueError, match="finite 3D position"):
        voxel_index((4, 5, 6), [0.0, np.nan, 1.0])


def test_first_labelled_voxel_along_a_ray():
    mask = _two_lesions_and_a_scribble()
    assert first_labelled_voxel(mask, (4, 4, -3.0), (4, 4, 9.0)) == (4, 4, 4)
    assert first_labelled_voxel(mask, (4, 4, 9.0), (4, 4, -3.0)) == (4, 4, 5)
    assert first_labelled_voxel(mask, (3, 0, 0), (3, 0, 5)) is None


# -- editable copies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_volume([0, 1, 0, 1]), [0, 1, 0, 1]),
        (_volume([0, 3, 255, 0]), [0, 1, 1, 0]),
        (_volume([0.1, 0.51, 0.9, 0.5]), [0, 1, 1, 0]),  # a probability map at 0.5
        (_volume([False, True]), [0, 1]),
    ],
)
@pytest.mark.parametrize("mode", [FULL_MASK, SCRIBBLES])
def test_mask_to_annotation_marks_lesions_with_label_1(data, expected, mode):
    out = mask_to_annotation(data, mode)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, _volume(expected))
    annotation_to_label(out, mode)  # a valid annotation of that mode


@pytest.mark.parametrize(
    ("data", "mode", "match"),
    [
        (np.zeros((3, 3)), FULL_MASK, "3D volume"),
        (_volume([np.nan, 1.0]), FULL_MASK, "NaN"),
        (_volume([1]), "paint", "annotation mode must be one of"),
    ],
)
def test_mask_to_annotation_errors(data, mode, match):
    with pytest.raises(ValueError, match=match):
        mask_to_annotation(data, mode)
