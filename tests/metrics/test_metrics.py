"""Metrics against hand-computed values and scikit-image / scipy references (EVALUATION.md)."""

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

import napari_fanet.metrics as metrics_module
from napari_fanet.metrics import (
    ERROR_LABEL_NAMES,
    dice,
    hfen,
    label_lesions,
    lesion_metrics,
    log_kernel,
    nrmse,
    psnr,
    psnr_paper_style,
    qsm_metrics,
    segmentation_error_labels,
    segmentation_metrics,
    ssim,
    ssim_paper_style,
    susceptibility_error_maps,
    xsim,
)
from napari_fanet.metrics.similarity import _ssim_map


def vol(*voxels, shape=(8, 8, 8)):
    out = np.zeros(shape, dtype=bool)
    for v in voxels:
        out[v] = True
    return out


def brain_phantom(n=64, seed=0):
    """Smooth susceptibility (ppm) inside an ellipsoid brain, zero background."""
    rng = np.random.default_rng(seed)
    g = np.mgrid[:n, :n, :n] - n / 2 + 0.5
    mask = (g[0] / 24) ** 2 + (g[1] / 20) ** 2 + (g[2] / 18) ** 2 <= 1
    chi = (ndimage.gaussian_filter(rng.normal(size=(n, n, n)), 2) * 0.5 + 0.02) * mask
    return chi, mask


# --------------------------------------------------------------------------- namespace
def test_metrics_namespace_exposes_everything():
    for name in metrics_module.__all__:
        assert hasattr(metrics_module, name)
    assert {"nrmse", "hfen", "ssim", "xsim", "psnr", "dice", "lesion_metrics"} <= set(
        metrics_module.__all__
    )
    assert ERROR_LABEL_NAMES == {1: "true positive", 2: "false positive", 3: "false negative"}


# --------------------------------------------------------------------------- Dice
def test_dice_by_hand():
    pred = vol((0, 0, 0), (0, 0, 1), (5, 5, 5))
    gt = vol((0, 0, 0), (0, 0, 1), (0, 0, 2), (3, 3, 3))
    assert dice(pred, gt) == pytest.approx(2 * 2 / 7)
    assert dice(vol(), vol()) == 1.0
    assert dice(pred, vol()) == 0.0
    assert dice(pred.astype(np.uint8), gt.astype(float)) == pytest.approx(4 / 7)


# --------------------------------------------------------------------------- lesions
DIAGONAL = vol((0, 0, 0), (1, 1, 1), (2, 2, 2))  # corner-touching voxels


def test_26_connectivity_makes_one_lesion():
    labels, n = label_lesions(DIAGONAL, min_size=3)
    assert n == 1 and set(np.unique(labels)) == {0, 1}
    # the same voxels with scipy's default 6-connectivity are three lesions of one voxel
    assert ndimage.label(DIAGONAL)[1] == 3
    # a 3-voxel prediction touching only one end still detects the whole GT lesion
    pred = vol((0, 0, 0), (0, 1, 0), (0, 2, 0))
    m = lesion_metrics(pred, DIAGONAL)
    assert (m["n_gt"], m["n_pred"], m["n_gt_detected"], m["n_pred_true"]) == (1, 1, 1, 1)
    assert m["ltpr"] == m["lppv"] == m["lf1"] == 1.0


def test_min_size_filter_applies_to_both_masks():
    tiny_gt = [(0, 0, 0), (0, 0, 1)]  # 2 voxels: ignored
    big_gt = [(5, 5, 5), (5, 5, 6), (5, 6, 5), (6, 5, 5), (6, 6, 6)]
    gt = vol(*tiny_gt, *big_gt)
    labels, n = label_lesions(gt, min_size=3)
    assert n == 1 and labels[0, 0, 0] == 0 and labels[5, 5, 5] == 1
    assert label_lesions(gt, min_size=1)[1] == 2
    # prediction: a 3-voxel lesion overlapping only the ignored GT speck, and a 1-voxel speck
    # on the kept GT lesion (too small to count)
    pred = vol((0, 0, 0), (1, 0, 0), (2, 0, 0), (5, 5, 5))
    m = lesion_metrics(pred, gt, min_size=3)
    assert (m["n_gt"], m["n_pred"], m["n_gt_detected"], m["n_pred_true"]) == (1, 1, 0, 0)
    assert m["ltpr"] == 0 and m["lppv"] == 0 and m["lf1"] == 0
    m1 = lesion_metrics(pred, gt, min_size=1)
    assert (m1["n_gt"], m1["n_pred"], m1["n_gt_detected"], m1["n_pred_true"]) == (2, 2, 2, 2)


def split_case():
    """GT lesion A covered by two predicted lesions, GT lesion B missed, one FP lesion."""
    shape = (12, 12, 12)
    gt = np.zeros(shape, dtype=bool)
    gt[1:4, 1:8, 1:4] = True  # A
    gt[8:11, 8:11, 8:11] = True  # B (missed)
    pred = np.zeros(shape, dtype=bool)
    pred[1:4, 1:3, 1:4] = True  # P1 on A
    pred[1:4, 5:8, 1:4] = True  # P2 on A (a gap of 2 rows from P1)
    pred[8:11, 1:4, 8:11] = True  # P3: false positive
    return pred, gt


def test_standard_and_paper_style_lppv_differ_by_hand():
    pred, gt = split_case()
    std = lesion_metrics(pred, gt)
    assert (std["n_gt"], std["n_pred"], std["n_gt_detected"], std["n_pred_true"]) == (2, 3, 1, 2)
    assert std["ltpr"] == pytest.approx(1 / 2)
    assert std["lppv"] == pytest.approx(2 / 3)
    assert std["lf1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert std["paper_style"] is False
    paper = lesion_metrics(pred, gt, paper_style=True)
    assert paper["paper_style"] is True
    assert paper["ltpr"] == pytest.approx(1 / 2)
    assert paper["lppv"] == pytest.approx(1 / 3)  # GT lesions detected / predicted lesions
    assert paper["lf1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_empty_cases_conventions():
    lesion = vol((2, 2, 2), (2, 2, 3), (2, 3, 3))
    both = lesion_metrics(vol(), vol())
    assert (both["ltpr"], both["lppv"], both["lf1"]) == (1.0, 1.0, 1.0)
    pred_only = lesion_metrics(lesion, vol())
    assert (pred_only["ltpr"], pred_only["lppv"], pred_only["lf1"]) == (1.0, 0.0, 0.0)
    gt_only = lesion_metrics(vol(), lesion)
    assert (gt_only["ltpr"], gt_only["lppv"], gt_only["lf1"]) == (0.0, 1.0, 0.0)


def test_segmentation_metrics_combines_dice_and_lesions():
    pred, gt = split_case()
    m = segmentation_metrics(pred, gt)
    inter = np.logical_and(pred, gt).sum()
    assert m["dice"] == pytest.approx(2 * inter / (pred.sum() + gt.sum()))
    assert m["ltpr"] == pytest.approx(0.5) and m["lppv"] == pytest.approx(2 / 3)
    assert m["n_gt"] == 2 and m["n_pred"] == 3
    assert set(m) >= {"dice", "ltpr", "lppv", "lf1", "n_gt", "n_pred"}


def test_segmentation_error_labels_by_hand():
    pred = vol((0, 0, 0), (0, 0, 1), shape=(1, 2, 3))
    gt = vol((0, 0, 1), (0, 1, 2), shape=(1, 2, 3))
    labels = segmentation_error_labels(pred, gt)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, [[[2, 1, 0], [0, 0, 3]]])


# --------------------------------------------------------------------------- NRMSE / PSNR
def test_nrmse_by_hand():
    ref = np.zeros((3, 3, 3))
    ref[1, 1, :] = [1.0, 2.0, 2.0]  # ||ref|| = 3
    mask = np.zeros_like(ref, dtype=bool)
    mask[1, 1, :] = True
    pred = ref.copy()
    pred[1, 1, 0] += 0.3
    pred[0, 0, 0] = 100.0  # outside the mask: ignored
    assert nrmse(pred, ref, mask) == pytest.approx(100 * 0.3 / 3)
    # demeaned: ref -> [-2/3, 1/3, 1/3], pred -> ref' + 0.3 * [2/3, -1/3, -1/3]
    expected = 100 * 0.3 * math.sqrt(6 / 9) / math.sqrt(6 / 9)
    assert nrmse(pred, ref, mask, demean=True) == pytest.approx(expected)
    assert nrmse(np.zeros_like(ref), ref, mask) == pytest.approx(100)


def test_psnr_by_hand():
    ref = np.zeros((4, 4, 4))
    ref[1:3, 1:3, 1:3] = np.arange(8).reshape(2, 2, 2) * 0.01  # range 0.07
    mask = ref != 0
    mask[1, 1, 1] = True
    pred = ref + 0.002 * mask + 5 * ~mask
    assert psnr(pred, ref, mask) == pytest.approx(20 * math.log10(0.07 / 0.002))
    assert psnr(ref, ref, mask) == math.inf


# --------------------------------------------------------------------------- HFEN
def test_log_kernel_shape_sum_and_shape_of_values():
    h = log_kernel()
    assert h.shape == (15, 15, 15)
    assert abs(h.sum()) < 1e-12
    assert h[7, 7, 7] == h.min() < 0  # negative centre
    np.testing.assert_allclose(h, np.flip(h))
    np.testing.assert_allclose(h, h.transpose(2, 0, 1))


def test_hfen_identical_zero_and_matches_direct_convolution():
    chi, mask = brain_phantom(24)
    assert hfen(chi, chi, mask) == 0.0
    rng = np.random.default_rng(1)
    pred = chi + 0.01 * rng.normal(size=chi.shape)
    h = log_kernel(1.5, 15)
    fp = ndimage.convolve(pred * mask, h, mode="constant")
    fr = ndimage.convolve(chi * mask, h, mode="constant")
    expected = 100 * np.linalg.norm((fp - fr)[mask]) / np.linalg.norm(fr[mask])
    assert hfen(pred, chi, mask) == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------- SSIM family
def test_ssim_with_full_mask_equals_skimage():
    chi, _ = brain_phantom(24)
    rng = np.random.default_rng(2)
    pred = chi + 0.02 * rng.normal(size=chi.shape)
    ones = np.ones(chi.shape, dtype=bool)
    _, smap = structural_similarity(
        pred,
        chi,
        data_range=float(chi.max() - chi.min()),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    assert ssim(pred, chi, ones) == pytest.approx(smap.mean(), rel=1e-12)
    # the internal formula (used by XSIM) with the standard K reproduces scikit-image's map
    own = _ssim_map(pred, chi, float(chi.max() - chi.min()), 0.01, 0.03)
    np.testing.assert_allclose(own, smap, rtol=1e-9, atol=1e-12)


def test_xsim_is_the_formula_with_challenge_constants():
    chi, mask = brain_phantom(24)
    rng = np.random.default_rng(3)
    pred = chi + 0.02 * rng.normal(size=chi.shape)
    x, y = pred * mask, chi * mask

    def blur(a):
        return ndimage.gaussian_filter(a, 1.5, truncate=3.5)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * 1.0) ** 2, (0.001 * 1.0) ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    assert xsim(pred, chi, mask) == pytest.approx(s[mask].mean(), rel=1e-12)
    assert xsim(chi, chi, mask) == pytest.approx(1.0)
    # values outside the mask do not matter
    assert xsim(pred + 10 * ~mask, chi, mask) == pytest.approx(xsim(pred, chi, mask))


def test_paper_style_ssim_is_background_inflated():
    chi, mask = brain_phantom(64)
    zero = np.zeros_like(chi)
    inflated = ssim_paper_style(zero, chi)
    assert 0.7 < inflated < 0.9
    assert ssim(zero, chi, mask) < 0.1
    assert xsim(zero, chi, mask) < 0.1
    assert psnr_paper_style(zero, chi) > psnr(zero, chi, mask)
    assert ssim_paper_style(chi, chi) == pytest.approx(1.0)
    assert psnr_paper_style(chi, chi) == math.inf


def test_qsm_metrics_and_error_maps():
    chi, mask = brain_phantom(24)
    pred = chi + 0.01 * np.random.default_rng(4).normal(size=chi.shape)
    m = qsm_metrics(pred, chi, mask)
    assert list(m) == ["nrmse", "nrmse_demeaned", "hfen", "ssim", "xsim", "psnr"]
    assert m["nrmse"] == nrmse(pred, chi, mask)
    assert m["nrmse_demeaned"] == nrmse(pred, chi, mask, demean=True)
    assert m["psnr"] == psnr(pred, chi, mask)
    signed, absolute = susceptibility_error_maps(pred, chi, mask)
    assert signed.dtype == absolute.dtype == np.float32
    np.testing.assert_allclose(signed[mask], (pred - chi)[mask], rtol=1e-6)
    assert np.all(signed[~mask] == 0) and np.all(absolute == np.abs(signed))


# --------------------------------------------------------------------------- errors
A = np.zeros((12, 12, 12))
M = np.ones((12, 12, 12), dtype=bool)
REF = np.random.default_rng(0).normal(size=(12, 12, 12))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nrmse(A, np.zeros((12, 12, 11)), M), ValueError, r"pred \(12, 12, 12\).*ref"),
        (lambda: nrmse(A, REF, M[:, :, :5]), ValueError, r"mask \(12, 12, 5\)"),
        (lambda: nrmse(A[0], REF[0], M[0]), ValueError, "pred must be 3D"),
        (lambda: nrmse(A, REF, ~M), ValueError, "mask is empty"),
        (lambda: nrmse(A, REF + np.nan, M), ValueError, "ref contains NaN"),
        (lambda: nrmse(A.astype(complex), REF, M), TypeError, "pred must be a real numeric"),
        (lambda: nrmse(A, A, M), ValueError, "reference is zero inside the mask"),
        (lambda: hfen(A, REF, M * 2), ValueError, "mask must be binary"),
        (lambda: psnr(A, np.ones_like(A), M), ValueError, "constant inside the mask"),
        (lambda: ssim(A[:10], REF[:10], M[:10]), ValueError, "at least 11 voxels"),
        (lambda: ssim(A, REF, M, data_range=0.0), ValueError, "data_range must be positive"),
        (lambda: ssim_paper_style(A, np.ones_like(A)), ValueError, "cannot be rescaled"),
        (lambda: ssim_paper_style(A[:5], REF[:5]), ValueError, "at least 11 voxels"),
        (lambda: psnr_paper_style(A, REF[:5]), ValueError, "shapes must match"),
        (lambda: log_kernel(1.5, 14), ValueError, "positive odd integer"),
        (lambda: log_kernel(0.0, 15), ValueError, "sigma must be a positive"),
        (lambda: dice(M, M[:5]), ValueError, r"pred \(12, 12, 12\), gt \(5, 12, 12\)"),
        (lambda: dice(M.astype(float) * 0.5, M), ValueError, "pred must be binary"),
        (lambda: dice(M.astype(object), M), TypeError, "pred must be a boolean"),
        (lambda: dice(M[0], M[0]), ValueError, "pred must be 3D"),
        (lambda: lesion_metrics(M, M, min_size=0), ValueError, "min_size must be >= 1"),
        (lambda: lesion_metrics(M, M, min_size=2.5), TypeError, "min_size must be an integer"),
        (lambda: label_lesions(M, min_size=-1), ValueError, "min_size must be >= 1"),
        (lambda: segmentation_error_labels(M, M[:3]), ValueError, "shapes must match"),
        (lambda: susceptibility_error_maps(A, REF, ~M), ValueError, "mask is empty"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
