"""The classical FLAIR-threshold lesion baseline on a small synthetic head."""

import numpy as np
import pytest

from napari_fanet.lesion_threshold import (
    DEFAULT_THRESHOLDS,
    correct_bias,
    flair_threshold_segment,
    flair_zscore,
    tune_flair_threshold,
    white_matter_mask,
)
from napari_fanet.metrics import dice

VOXEL = (3.0, 3.0, 3.0)


def make_case(seed, n=48, bias_strength=0.5, noise=0.05):
    """Ellipsoid brain (GM rim, WM, a CSF ventricle) with one bright ellipsoid WM lesion.

    T1: WM 1.0, GM 0.65, CSF 0.3, lesion 0.6 (dark). FLAIR: WM 1.0, GM 1.2, CSF 0.25, lesion
    1.6. Both multiplied by a smooth exponential bias field (about 0.7 to 1.4 in the brain)
    and corrupted by Gaussian noise.
    """
    rng = np.random.default_rng(seed)
    g = np.mgrid[:n, :n, :n].astype(float) - n / 2 + 0.5
    r = np.sqrt((g[0] / 20) ** 2 + (g[1] / 17) ** 2 + (g[2] / 15) ** 2)
    brain, csf = r <= 1, r <= 0.2
    wm = (r <= 0.7) & ~csf
    gm = brain & (r > 0.7)
    centre = rng.uniform(-5, 5, 3) + np.array([0, 6, 0])
    axes = rng.uniform(2.5, 4, 3)
    lesion = (((g - centre[:, None, None, None]) / axes[:, None, None, None]) ** 2).sum(0) <= 1
    lesion &= wm
    t1 = 1.0 * wm + 0.65 * gm + 0.3 * csf
    flair = 1.0 * wm + 1.2 * gm + 0.25 * csf
    t1[lesion], flair[lesion] = 0.6, 1.6
    bias = np.exp(bias_strength * 2 * (0.6 * g[0] + 0.3 * g[1] - 0.5 * g[2]) / n)
    t1 = (t1 * bias + noise * rng.normal(size=t1.shape)) * brain
    flair = np.abs(flair * bias + noise * rng.normal(size=t1.shape)) * brain
    return {
        "flair": flair,
        "t1": t1,
        "brain_mask": brain,
        "lesion_mask": lesion,
        "voxel_size": VOXEL,
        "wm": wm,
    }


@pytest.fixture(scope="module")
def cases():
    return [make_case(seed) for seed in range(1, 5)]


def test_correct_bias_flattens_a_smooth_multiplicative_field():
    n = 32
    g = np.mgrid[:n, :n, :n] - n / 2 + 0.5
    brain = (g**2).sum(0) <= 14**2
    bias = np.exp(0.8 * g[0] / n)
    image = (2.0 * bias * brain).astype(np.float32)
    out = correct_bias(image, brain, sigma_mm=10.0, voxel_size=(2, 2, 2))
    assert out.dtype == np.float32 and np.all(out[~brain] == 0)
    cv_before = image[brain].std() / image[brain].mean()
    cv_after = out[brain].std() / out[brain].mean()
    assert cv_after < 0.35 * cv_before
    assert out[brain].mean() == pytest.approx(image[brain].mean(), rel=1e-5)
    # sigma is in mm: 10 mm at 2 mm voxels is 5 mm at 1 mm voxels
    same = correct_bias(image, brain, sigma_mm=5.0, voxel_size=(1, 1, 1))
    np.testing.assert_allclose(same, out, rtol=1e-6)
    # a wider Gaussian corrects less (it is a low-pass estimate of the bias)
    wide = correct_bias(image.astype(np.float64), brain, sigma_mm=40.0, voxel_size=(2, 2, 2))
    assert wide.dtype == np.float64 and cv_after < wide[brain].std() / wide[brain].mean()


def test_white_matter_mask_finds_wm_and_keeps_t1_dark_lesions(cases):
    case = cases[0]
    wm = white_matter_mask(case["t1"], case["brain_mask"])
    assert wm.dtype == bool and not np.any(wm & ~case["brain_mask"])
    assert np.all(wm[case["lesion_mask"]])  # hole filled
    assert (wm & case["wm"]).sum() > 0.95 * case["wm"].sum()
    raw = white_matter_mask(case["t1"], case["brain_mask"], dilation=0, fill_holes=False)
    assert not np.any(raw[case["lesion_mask"]])  # T1-dark lesion is not in the raw WM class


def test_baseline_finds_the_lesion_and_bias_correction_helps(cases):
    train, test = cases[:2], cases[2:]
    results = {}
    for corrected in (True, False):
        best, _ = tune_flair_threshold(train, bias_correct=corrected)
        scores = []
        for case in test:
            wm = white_matter_mask(case["t1"], case["brain_mask"])
            seg = flair_threshold_segment(
                case["flair"],
                case["brain_mask"],
                wm,
                best,
                voxel_size=case["voxel_size"],
                bias_correct=corrected,
            )
            assert seg.dtype == bool and not np.any(seg & ~wm)
            scores.append(dice(seg, case["lesion_mask"]))
        results[corrected] = np.mean(scores)
    assert results[True] > 0.7
    assert results[True] > results[False] + 0.2


def test_tuning_picks_the_best_candidate(cases):
    best, scores = tune_flair_threshold(cases[:2])
    assert list(scores) == [float(c) for c in DEFAULT_THRESHOLDS]
    assert DEFAULT_THRESHOLDS[0] <= best <= DEFAULT_THRESHOLDS[-1]
    assert scores[best] == max(scores.values())
    # the score is the mean Dice of flair_threshold_segment at that threshold
    dices = []
    for case in cases[:2]:
        wm = white_matter_mask(case["t1"], case["brain_mask"])
        seg = flair_threshold_segment(
            case["flair"], case["brain_mask"], wm, best, voxel_size=VOXEL
        )
        dices.append(dice(seg, case["lesion_mask"]))
    assert scores[best] == pytest.approx(np.mean(dices))
    best_lf1, lf1 = tune_flair_threshold(cases[:1], [2.0, 3.0, 20.0], metric="lf1")
    assert lf1[20.0] == 0.0 and best_lf1 in (2.0, 3.0) and lf1[best_lf1] == 1.0


def test_min_size_removes_specks(cases):
    case = cases[0]
    wm = white_matter_mask(case["t1"], case["brain_mask"])
    z = flair_zscore(case["flair"], case["brain_mask"], wm, voxel_size=VOXEL)
    loose = flair_threshold_segment(
        case["flair"], case["brain_mask"], wm, 1.5, voxel_size=VOXEL, min_size=1
    )
    strict = flair_threshold_segment(
        case["flair"], case["brain_mask"], wm, 1.5, voxel_size=VOXEL, min_size=10
    )
    np.testing.assert_array_equal(loose, z > 1.5)
    assert strict.sum() < loose.sum() and not np.any(strict & ~loose)


B = np.ones((8, 8, 8), dtype=bool)
IMG = np.ones((8, 8, 8)) + np.random.default_rng(0).random((8, 8, 8))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: correct_bias(IMG, B[:4]), ValueError, r"image \(8, 8, 8\), brain_mask"),
        (lambda: correct_bias(IMG, ~B), ValueError, "brain_mask is empty"),
        (lambda: correct_bias(IMG, B, sigma_mm=0), ValueError, "sigma_mm must be a positive"),
        (lambda: correct_bias(IMG, B, sigma_mm="5"), TypeError, "sigma_mm must be a number"),
        (lambda: correct_bias(IMG, B, voxel_size=(1, 1)), ValueError, "voxel_size must be 3"),
        (lambda: correct_bias(-IMG, B), ValueError, "must be positive inside the brain"),
        (lambda: white_matter_mask(np.ones((8, 8, 8)), B), ValueError, "3 distinct values"),
        (lambda: white_matter_mask(IMG, B, dilation=-1), ValueError, "dilation must be"),
        (lambda: flair_zscore(IMG, B, ~B), ValueError, "wm_mask .* is empty"),
        (lambda: flair_zscore(np.ones((8, 8, 8)), B, B), ValueError, "MAD = 0"),
        (lambda: flair_zscore(IMG, B, B[:, :4]), ValueError, "shapes must match"),
        (
            lambda: flair_threshold_segment(IMG, B, B, float("nan")),
            ValueError,
            "threshold must be finite",
        ),
        (lambda: flair_threshold_segment(IMG, B, B, "3"), TypeError, "threshold must be a"),
        (lambda: flair_threshold_segment(IMG, B, B, 3, min_size=0), ValueError, "min_size"),
        (lambda: tune_flair_threshold([], [3.0]), ValueError, "non-empty sequence"),
        (lambda: tune_flair_threshold([{"flair": IMG}], [3.0]), ValueError, "missing keys"),
        (lambda: tune_flair_threshold([{}], [3.0], metric="auc"), ValueError, "'dice' or 'lf1'"),
        (lambda: tune_flair_threshold([{}], []), ValueError, "at least one threshold"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
