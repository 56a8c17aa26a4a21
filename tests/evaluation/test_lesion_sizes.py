"""Tests of lesion detection counted by lesion size."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.evaluation.lesion_sizes import (
    BINS,
    bin_labels,
    count_cells,
    detection_by_size,
    reference_lesions,
    tally,
)


def _mask_and_map():
    mask = np.zeros((30, 30, 30), bool)
    mask[2:4, 2:4, 2:4] = True  # 8 voxels
    mask[10:13, 10:13, 10:12] = True  # 18 voxels
    mask[20:25, 20:25, 20:25] = True  # 125 voxels
    mask[28, 28, 28] = True  # 1 voxel: not a lesion for the metrics
    mask[6, 6, 6] = mask[7, 7, 7] = True  # touching at a corner: one 26-connected lesion of 2
    prob = np.zeros(mask.shape, np.float32)
    prob[3, 3, 3] = 0.6  # the 8-voxel lesion reaches 0.5
    prob[22, 22, 22] = 0.99  # the large one reaches 0.95
    return mask, prob


def test_reference_lesions_are_26_connected_components():
    mask, _ = _mask_and_map()
    labels, sizes = reference_lesions(mask)
    assert sorted(sizes.tolist()) == [1, 2, 8, 18, 125]
    assert labels[6, 6, 6] == labels[7, 7, 7] != 0


def test_detection_counts_each_bin_and_level():
    mask, prob = _mask_and_map()
    rows = detection_by_size(*reference_lesions(mask), prob)
    assert [r["bin"] for r in rows] == ["3-9", "10-29", "30-99", ">= 100"] and len(rows) == len(
        BINS
    )
    assert [r["lesions"] for r in rows] == [1, 1, 0, 1]  # lesions below 3 voxels left out
    assert [r["p>=0.5"] for r in rows] == [1, 0, 0, 1]
    assert [r["p>=0.95"] for r in rows] == [0, 0, 0, 1]


def test_detection_refuses_a_map_of_another_shape():
    mask, _ = _mask_and_map()
    with pytest.raises(ValueError, match=r"expected a probability map of shape \(30, 30, 30\)"):
        detection_by_size(*reference_lesions(mask), np.zeros((5, 5, 5)))


def test_tally_sums_over_subjects_and_formats_cells():
    mask, prob = _mask_and_map()
    counts = tally(detection_by_size(*reference_lesions(mask), prob))
    assert counts.tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]]
    assert count_cells(counts) == ["1 / 0 of 1", "0 / 0 of 1", "0 / 0 of 0", "1 / 1 of 1"]
    assert count_cells(counts + counts)[3] == "2 / 2 of 2"
    assert bin_labels() == ["3-9 voxels", "10-29 voxels", "30-99 voxels", ">= 100 voxels"]
