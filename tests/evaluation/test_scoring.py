"""run_and_score: methods on one case, scored by the task's comparison (checked independently)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_fanet.evaluation.scoring import (
    Method,
    MethodResult,
    predict_and_compare,
    run_and_score,
)

SHAPE = (12, 10, 8)


def _masks() -> tuple[np.ndarray, np.ndarray]:
    reference = np.zeros(SHAPE, bool)
    reference[2:5, 2:5, 2:5] = True  # 27 voxels
    reference[8:10, 6:9, 4:7] = True  # 18 voxels, a second lesion
    prediction = np.zeros(SHAPE, bool)
    prediction[3:6, 2:5, 2:5] = True  # overlaps the first lesion by 18 voxels
    return prediction, reference


def _dice(p: np.ndarray, g: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(p & g) / (np.count_nonzero(p) + np.count_nonzero(g))


def test_segmentation_methods_are_scored_in_order_with_independent_dice() -> None:
    prediction, reference = _masks()
    seen: list[str] = []
    methods = [
        Method("half", lambda case: case["prediction"], "half a lesion"),
        Method("perfect", lambda case: {"mask": case["reference"].astype(np.uint8)}),
    ]
    results = run_and_score(
        "segmentation",
        methods,
        {"prediction": prediction, "reference": reference},
        reference,
        before=lambda m: seen.append(f"before {m.name}"),
        after=lambda r: seen.append(f"after {r.name}"),
    )
    assert seen == ["before half", "after half", "before perfect", "after perfect"]
    assert [r.name for r in results] == ["half", "perfect"]
    assert [r.method.title for r in results] == ["half a lesion", "perfect"]
    half, perfect = results
    assert isinstance(half, MethodResult) and half.seconds >= 0 and half.score_seconds >= 0
    assert half.metrics["dice"] == pytest.approx(_dice(prediction, reference))
    assert half.metrics["n_gt"] == 2 and half.metrics["n_pred"] == 1
    assert half.metrics["ltpr"] == pytest.approx(0.5) and half.metrics["lppv"] == 1.0
    expected = np.zeros(SHAPE, np.uint8)
    expected[prediction & reference] = 1
    expected[prediction & ~reference] = 2
    expected[~prediction & reference] = 3
    np.testing.assert_array_equal(half.comparison.maps["errors"], expected)
    assert perfect.metrics["dice"] == 1.0 and "Dice\t1.000" in perfect.comparison.text


def test_qsm_methods_are_scored_inside_the_mask() -> None:
    rng = np.random.default_rng(0)
    shape = (14, 13, 12)  # SSIM needs 11 voxels along every axis
    reference = rng.normal(0, 0.05, shape)
    mask = np.zeros(shape, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    noisy = reference + rng.normal(0, 0.01, shape)
    result = SimpleNamespace(outputs={"chi": noisy.astype(np.float32)}, report="kept")
    (scored,) = run_and_score("qsm", [Method("net", lambda _: result)], None, reference, mask)
    assert scored.returned is result and scored.outputs["chi"] is result.outputs["chi"]
    chi = result.outputs["chi"].astype(np.float64)
    nrmse = 100 * np.linalg.norm((chi - reference)[mask]) / np.linalg.norm(reference[mask])
    assert scored.metrics["nrmse"] == pytest.approx(nrmse, rel=1e-5)
    signed = scored.comparison.maps["signed error"]
    np.testing.assert_allclose(signed[mask], (chi - reference)[mask], atol=1e-6)
    assert not np.any(signed[~mask])


def test_without_a_reference_the_methods_run_and_nothing_is_scored() -> None:
    prediction, _ = _masks()
    (result,) = run_and_score("ms", [Method("m", lambda _: prediction)], None)
    assert result.comparison is None and result.metrics == {}
    assert result.outputs == {"mask": prediction}


@pytest.mark.parametrize(
    ("returned", "error", "match"),
    [
        ("a mask", TypeError, r"^a method must return an array, .*; got str$"),
        (np.zeros((3, 3, 3), bool), ValueError, r"reference has shape \(12, 10, 8\) but the"),
    ],
)
def test_a_bad_prediction_says_what_arrived(returned, error, match) -> None:
    _, reference = _masks()
    with pytest.raises(error, match=match):
        run_and_score("segmentation", [Method("m", lambda _: returned)], None, reference)


def test_a_method_must_be_callable() -> None:
    with pytest.raises(TypeError, match=r"^method 'x': run must be callable, got 3$"):
        Method("x", 3)


def test_predict_and_compare_runs_the_request_with_its_callbacks() -> None:
    prediction, reference = _masks()
    calls = []

    def run(progress, should_stop):
        progress(1, 2)
        calls.append(should_stop())
        return SimpleNamespace(outputs={"mask": prediction, "probability": prediction * 0.9})

    request = SimpleNamespace(task="segmentation", model="m", run=run)
    ticks = []
    result, comparison = predict_and_compare(
        request, reference, None, lambda d, t: ticks.append((d, t)), lambda: True
    )
    assert ticks == [(1, 2)] and calls == [True]
    assert result.outputs["mask"] is prediction
    assert comparison.metrics["dice"] == pytest.approx(_dice(prediction, reference))
    result, comparison = predict_and_compare(request, None, None, lambda d, t: None, lambda: False)
    assert comparison is None and calls == [True, False]


def test_compare_options_reach_the_segmentation_comparison() -> None:
    """``min_size`` decides which predicted components count as lesions."""
    reference = np.zeros((8, 8, 8), dtype=bool)
    reference[1:4, 1:4, 1:4] = True
    pred = reference.copy()
    pred[6, 6, 6] = True  # a one-voxel false positive
    method = Method("given", lambda _: pred)
    (small,) = run_and_score(
        "segmentation", [method], None, reference, compare_options={"min_size": 1}
    )
    (default,) = run_and_score("segmentation", [method], None, reference)
    assert small.metrics["n_pred"] == 2 and default.metrics["n_pred"] == 1
    assert small.metrics["lppv"] == 0.5 and default.metrics["lppv"] == 1.0
