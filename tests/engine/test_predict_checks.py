"""Prediction refuses inputs that would give a wrong map or exhaust memory, saying why."""

import re

import numpy as np
import pytest

from napari_fanet.engine.predict import (
    RESAMPLE_MEMORY_BUDGET,
    b0_in_array_axes,
    check_brain,
    check_resampling,
    model_grid,
    seg_model_input,
)
from napari_fanet.engine.prediction_request import PredictionRequest
from napari_fanet.io.b0_direction import B0Direction, b0_direction_problem, parse_b0_text
from napari_fanet.io.layers import LayerVolume
from napari_fanet.physics.tensor_checks import check_b0_dir

SHAPE = (24, 28, 20)


@pytest.mark.parametrize(
    ("voxel", "model_voxel", "grid"),
    [
        ((2.0, 2.0, 2.0), (2.0, 2.0, 2.0), None),
        ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (12, 14, 10)),
        ((0.25, 0.25, 0.25), None, None),
        ((10.0, 10.0, 10.0), (2.0, 2.0, 2.0), (120, 140, 100)),
    ],
)
def test_model_grid_within_bounds(voxel, model_voxel, grid):
    assert model_grid(SHAPE, voxel, model_voxel) == grid


@pytest.mark.parametrize(
    "voxel",
    [(50.0, 50.0, 50.0), (0.01, 0.01, 0.01), (2.0, 2.0, 0.2), (2.0, float("nan"), 2.0)],
)
def test_voxel_size_out_of_range_is_refused(voxel):
    shown = "(" + ", ".join(f"{v:.4g}" for v in voxel) + ")"
    with pytest.raises(
        ValueError,
        match=rf"^expected voxel sizes between 0\.25 and 10 mm, got {re.escape(shown)} mm "
        r"\(check the image's header or the layer's scale\)$",
    ):
        model_grid(SHAPE, voxel, (2.0, 2.0, 2.0))


def test_resampling_over_the_memory_budget_is_refused():
    shape = (512, 512, 400)  # 1 mm -> 0.5 mm: 1024 x 1024 x 800 voxels
    with pytest.raises(
        ValueError,
        match=r"^the input grid 512 x 512 x 400 of \(1, 1, 1\) mm voxels becomes 1024 x 1024 x "
        r"800 voxels at the model's \(0\.5, 0\.5, 0\.5\) mm, needing about 50\.0 GiB, over the "
        r"memory budget of 8 GiB; crop the image or check its voxel size$",
    ):
        check_resampling(shape, (1.0, 1.0, 1.0), (0.5, 0.5, 0.5))
    check_resampling((256, 256, 200), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0))  # a usual head: fine
    assert RESAMPLE_MEMORY_BUDGET == 8 * 2**30


def test_all_zero_flair_without_a_mask_says_so():
    arrays = {k: np.ones(SHAPE, np.float32) for k in ("T1", "T2")}
    arrays["FLAIR"] = np.zeros(SHAPE, np.float32)
    with pytest.raises(
        ValueError, match=r"^FLAIR is all zeros: expected a skull-stripped FLAIR whose brain"
    ):
        seg_model_input(arrays, (2.0, 2.0, 2.0), {})
    arrays["brain mask"] = np.zeros(SHAPE, np.float32)
    with pytest.raises(ValueError, match=r"^brain mask is empty: expected a mask with at least"):
        seg_model_input(arrays, (2.0, 2.0, 2.0), {})
    check_brain(arrays, np.ones(SHAPE, bool))  # a brain voxel: nothing to say


@pytest.mark.parametrize(
    ("b0", "match"),
    [
        ((float("nan"), 0.0, 1.0), r"B0 direction must be 3 finite numbers; got \(nan, 0, 1\)"),
        ((0.0, 0.0, 0.0), r"B0 direction must be 3 numbers, not all zero; got \(0, 0, 0\)"),
        ((1.0, 0.0), r"B0 direction must be 3 numbers; got 2: \(1, 0\)"),
    ],
)
def test_b0_in_array_axes_says_what_is_wrong(b0, match):
    with pytest.raises(ValueError, match=match):
        b0_in_array_axes(b0, None)


@pytest.mark.parametrize(
    ("b0", "match"),
    [
        ((np.nan, 0, 1), r"^B0 direction must be 3 finite numbers; got \(nan, 0, 1\)$"),
        ((0, 0, 0), r"^B0 direction must be 3 numbers, not all zero; got \(0, 0, 0\)$"),
        ((0, 1), r"^B0 direction must be 3 numbers; got 2: \(0, 1\)$"),
        (None, r"^B0 direction must be 3 numbers; got None$"),
    ],
)
def test_check_b0_dir_says_what_is_wrong(b0, match):
    with pytest.raises(ValueError, match=match):
        check_b0_dir(b0)


@pytest.mark.parametrize(
    ("b0", "problem"),
    [
        ("up", "B0 direction must be 3 numbers such as '0, 0, 1'; got 'up'"),
        ("0 1", "B0 direction must be 3 numbers; got 2: (0, 1)"),
        ("nan, 0, 1", "B0 direction must be 3 finite numbers; got (nan, 0, 1)"),
        ("0,0,0", "B0 direction must be 3 numbers, not all zero; got (0, 0, 0)"),
        ((np.float64(0.0),) * 3, "B0 direction must be 3 numbers, not all zero; got (0, 0, 0)"),
        ("0, 0, 1", None),
        ((0.1, 0.0, 1.0), None),
    ],
)
def test_b0_direction_problem_echoes_what_arrived(b0, problem):
    assert b0_direction_problem(b0) == problem


def test_request_takes_a_b0_value_never_text_and_lists_field_problems():
    field = LayerVolume("field", np.ones(SHAPE, np.float32), (2.0, 2.0, 2.0))
    mask = LayerVolume("mask", np.ones(SHAPE, np.uint8), (2.0, 2.0, 2.0))
    inputs = {"local field": field, "brain mask": mask}
    typed = parse_b0_text(" 0, 0.5 1")
    request = PredictionRequest("qsm", inputs, "m", b0_dir=typed)
    assert request.b0_dir == (0.0, 0.5, 1.0) and request.problems() == []
    assert isinstance(PredictionRequest("qsm", inputs, "m", b0_dir=[0, 0, 2]).b0_dir, B0Direction)
    with pytest.raises(TypeError, match=r"b0_dir must be a B0Direction or 3 numbers, not text"):
        PredictionRequest("qsm", inputs, "m", b0_dir="0, 0, 1")
    problem = "B0 direction must be 3 numbers such as '0, 0, 1'; got 'up'"
    request = PredictionRequest("qsm", inputs, "m", field_problems=(problem,))
    assert request.problems() == [problem]
    request = PredictionRequest("qsm", inputs, "m", b0_dir=(0, 0, 0))
    assert request.problems() == ["B0 direction must be 3 numbers, not all zero; got (0, 0, 0)"]


def test_voxel_size_mismatch_between_layers_has_no_numpy_repr():
    a = LayerVolume("t1", np.ones(SHAPE), np.array([2.0, 2.0, 2.0]))
    b = LayerVolume("t2", np.ones(SHAPE), np.array([2.0, 2.0, 3.0]))
    request = PredictionRequest("segmentation", {"T1": a, "T2": b, "FLAIR": a}, "m")
    assert (
        "T2 (layer 't2') has voxel size (2, 2, 3) but T1 has (2, 2, 2): inputs must share one "
        "grid" in request.problems()
    )
    bad = LayerVolume("flair", np.ones(SHAPE), (np.float64(2.0), np.float64(0.0), 2.0))
    problems = PredictionRequest("segmentation", {"T1": bad, "T2": bad, "FLAIR": bad}, "m")
    assert (
        "T1 (layer 'flair') has the scale (2, 0, 2): expected positive voxel sizes (mm)"
        in problems.problems()
    )


def test_request_reports_a_layer_scale_out_of_range():
    item = LayerVolume("flair", np.ones(SHAPE), (50.0, 50.0, 50.0))
    request = PredictionRequest("segmentation", {"T1": item, "T2": item, "FLAIR": item}, "m")
    assert (
        "FLAIR (layer 'flair') has the scale (50, 50, 50): expected voxel sizes between 0.25 and "
        "10 mm" in request.problems()
    )


def test_request_reports_a_mask_rule_that_cannot_work():
    item = LayerVolume("flair", np.ones(SHAPE), (2.0, 2.0, 2.0))
    inputs = {"T1": item, "T2": item, "FLAIR": item}
    request = PredictionRequest("segmentation", inputs, "m", threshold=0.6, seed_threshold=0.4)
    assert (
        "seed threshold (0.4) must be at least the threshold (0.6): a lesion's seed is one of "
        "its own voxels" in request.problems()
    )
    request = PredictionRequest("segmentation", inputs, "m", min_lesion_mm3=-2.0)
    assert any("minimum lesion volume must be" in p for p in request.problems())
    with pytest.raises(ValueError, match=r"cannot run: .*seed threshold \(0.4\) must be at least"):
        PredictionRequest("segmentation", inputs, "m", threshold=0.6, seed_threshold=0.4).run()
    assert not any("seed" in p for p in PredictionRequest("segmentation", inputs, "m").problems())


def test_request_reports_window_shifts_out_of_range():
    item = LayerVolume("flair", np.ones(SHAPE), (2.0, 2.0, 2.0))
    inputs = {"T1": item, "T2": item, "FLAIR": item}
    request = PredictionRequest("segmentation", inputs, "m", window_shifts=0)
    assert "window shifts must be from 1 to 8, got 0" in request.problems()
    with pytest.raises(ValueError, match=r"cannot run: .*window shifts must be from 1 to 8"):
        request.run()
    assert PredictionRequest("segmentation", inputs, "m", window_shifts=2).problems() == []


def test_segment_checks_the_mask_rule_before_the_network_runs():
    from napari_fanet.engine.predict import segment

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError("the model was used before the mask rule was checked")

    flair = np.ones(SHAPE, np.float32)
    with pytest.raises(ValueError, match=r"seed threshold \(0.3\) must be at least"):
        segment(Untouchable(), {}, None, None, flair, threshold=0.5, seed_threshold=0.3)
