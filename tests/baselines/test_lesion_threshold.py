"""The classical FLAIR-threshold lesion baseline on a small synthetic head."""

import numpy as np
import pytest
from scipy import ndimage

from napari_fanet.baselines.lesion_threshold import (
    DEFAULT_THRESHOLDS,
    correct_bias,
    ellipsoid_structure,
    flair_threshold_segment,
    flair_zscore,
    tune_flair_threshold,
    white_matter_mask,
)
from napari_fanet.metrics import dice

VOXEL = (3.0, 3.0, 3.0)
#: WM margin for the biased phantom below. Its lesions may reach the GM and its strong T1 bias
#: (0.7 to 1.4) leaves about a quarter of the WM out of the raw Otsu class, so the default 2 mm
#: (no dilation at all on 3 mm voxels) would lose them; 6 mm is two voxels here.
WM_DILATION_MM = 6.0


def make_case(seed, n=48, bias_strength=0.5, noise=0.05, lesion_centre=None):
    """Ellipsoid brain (GM rim, WM, a CSF ventricle) with one bright ellipsoid WM lesion.

    T1: WM 1.0, GM 0.65, CSF 0.3, lesion 0.6 (dark). FLAIR: WM 1.0, GM 1.2, CSF 0.25, lesion
    1.6. Both multiplied by a smooth exponential bias field (about 0.7 to 1.4 in the brain at
    the default strength) and corrupted by Gaussian noise. The lesion centre (voxels from the
    middle) is random unless given.
    """
    rng = np.random.default_rng(seed)
    g = np.mgrid[:n, :n, :n].astype(float) - n / 2 + 0.5
    r = np.sqrt((g[0] / 20) ** 2 + (g[1] / 17) ** 2 + (g[2] / 15) ** 2)
    brain, csf = r <= 1, r <= 0.2
    wm = (r <= 0.7) & ~csf
    gm = brain & (r > 0.7)
    centre = rng.uniform(-5, 5, 3) + np.array([0, 6, 0])
    if lesion_centre is not None:
        centre = np.asarray(lesion_centre, dtype=float)
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


def make_folded_brain(seed, voxel=(2.0, 2.0, 2.0), noise=0.04):
    """Brain-like T1 phantom: a 120 x 104 x 92 mm ellipsoid with a folded cortical ribbon.

    The WM surface is modulated by deep "gyri" (``0.14 sin(9 az) sin(8 pol)`` of the radius),
    so the grey matter is a folded ribbon a few voxels thick around the WM, as in a real head
    at 2 mm (the WM is about 40 % of the brain). T1: WM 1.0, GM 0.65, central CSF 0.3, noise.
    Returns ``t1, brain, wm`` on a grid of ``ceil(130 mm / voxel)`` voxels per axis.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(np.ceil(130 / v)) for v in voxel)
    axes = [(np.arange(n) - n / 2 + 0.5) * v for n, v in zip(shape, voxel, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    rho = np.sqrt((x / 60) ** 2 + (y / 52) ** 2 + (z / 46) ** 2)
    azimuth = np.arctan2(y, x)
    polar = np.arccos(np.clip(z / 46 / np.maximum(rho, 1e-9), -1, 1))
    brain, csf = rho <= 1, rho <= 0.2
    wm = (rho <= 0.74 + 0.14 * np.sin(9 * azimuth) * np.sin(8 * polar)) & ~csf
    gm = brain & ~wm & ~csf
    t1 = 1.0 * wm + 0.65 * gm + 0.3 * csf
    return (t1 + noise * rng.normal(size=t1.shape)) * brain, brain, wm


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
    # a lesion well inside the WM, mild bias: the default 2 mm does not dilate 3 mm voxels, so
    # the lesion is kept by hole filling alone
    case = make_case(1, bias_strength=0.1, lesion_centre=(0, 6, 0))
    wm = white_matter_mask(case["t1"], case["brain_mask"], voxel_size=VOXEL)
    assert wm.dtype == bool and not np.any(wm & ~case["brain_mask"])
    assert np.all(wm[case["lesion_mask"]])  # hole filled
    assert (wm & case["wm"]).sum() > 0.95 * case["wm"].sum()
    raw = white_matter_mask(case["t1"], case["brain_mask"], dilation_mm=0, fill_holes=False)
    assert not np.any(raw[case["lesion_mask"]])  # T1-dark lesion is not in the raw WM class
    # the strongly biased phantom needs the wider margin
    case = cases[0]
    wm = white_matter_mask(
        case["t1"], case["brain_mask"], dilation_mm=WM_DILATION_MM, voxel_size=VOXEL
    )
    assert (wm & case["wm"]).sum() > 0.95 * case["wm"].sum()


#: Disc of radius 2 voxels: offsets (i, j) with i^2 + j^2 <= 4.
DISC_R2 = np.add.outer(np.arange(-2, 3) ** 2, np.arange(-2, 3) ** 2) <= 4
CENTRE_5X5 = np.pad([[True]], 2)


@pytest.mark.parametrize(
    ("radius", "voxel", "expected"),
    [
        (0.0, (1, 1, 1), [[[True]]]),
        (1.9, (2, 2, 2), [[[True]]]),  # below one voxel: the centre only
        (2.0, (2, 2, 2), ndimage.generate_binary_structure(3, 1)),  # the 6-neighbourhood
        (1.0, (1, 1, 1), ndimage.generate_binary_structure(3, 1)),
        (np.sqrt(2), (1, 1, 1), ndimage.generate_binary_structure(3, 2)),  # 18-neighbourhood
        (np.sqrt(3), (1, 1, 1), ndimage.generate_binary_structure(3, 3)),  # 26-neighbourhood
        (2.0, (1, 1, 3), DISC_R2[:, :, None]),  # 3 mm > 2 mm: one voxel thick along axis 2
        # 3 mm on 1.5 x 1.5 x 3 mm: the disc in the middle plane, the centre alone at +-3 mm
        (3.0, (1.5, 1.5, 3), np.stack([CENTRE_5X5, DISC_R2, CENTRE_5X5], axis=2)),
    ],
)
def test_ellipsoid_structure_table(radius, voxel, expected):
    out = ellipsoid_structure(radius, voxel)
    np.testing.assert_array_equal(out, np.asarray(expected, dtype=bool))


@pytest.mark.parametrize(
    "voxel", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (1.0, 1.0, 3.0), (0.8, 1.2, 2.5)]
)
def test_white_matter_dilation_is_a_ball_in_mm(cases, voxel):
    # independent reference: every brain voxel within dilation_mm (Euclidean distance in mm,
    # from scipy's exact distance transform with the voxel size as sampling) of the raw class
    case = cases[0]
    t1, brain = case["t1"], case["brain_mask"]
    raw = white_matter_mask(t1, brain, dilation_mm=0, fill_holes=False)
    out = white_matter_mask(t1, brain, dilation_mm=2.5, voxel_size=voxel, fill_holes=False)
    dist = ndimage.distance_transform_edt(~raw, sampling=voxel)
    np.testing.assert_array_equal(out, (dist <= 2.5 + 1e-6) & brain)


def test_white_matter_dilation_is_anisotropic_on_anisotropic_voxels():
    # one bright cube in a GM box with a CSF corner; 2 mm on 1 x 1 x 3 mm voxels grows the
    # cube by 2 voxels along axes 0 and 1 and not at all along axis 2 (3 mm > 2 mm)
    t1 = np.full((24, 24, 24), 0.65)
    t1[:4, :4, :4] = 0.3
    t1[10:14, 10:14, 10:14] = 1.0
    brain = np.ones(t1.shape, dtype=bool)
    out = white_matter_mask(t1, brain, dilation_mm=2.0, voxel_size=(1, 1, 3))
    extent = [
        np.flatnonzero(out.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    assert [(e[0], e[-1]) for e in extent] == [(8, 15), (8, 15), (10, 13)]
    iso = white_matter_mask(t1, brain, dilation_mm=2.0, voxel_size=(1, 1, 1))
    assert iso.sum() > out.sum() and not np.any(out & ~iso)
    # 6 mm reaches 2 voxels along axis 2 and 6 along axes 0 and 1
    far = white_matter_mask(t1, brain, dilation_mm=6.0, voxel_size=(1, 1, 3))
    extent = [
        np.flatnonzero(far.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    assert [(e[0], e[-1]) for e in extent] == [(4, 19), (4, 19), (8, 15)]


def test_white_matter_mask_at_2mm_stays_near_the_wm_of_a_brain_like_phantom():
    # The former default (2 voxels, 26-connected) at 2 mm grew the WM class over most of the
    # grey matter of a folded cortex; 2 mm is one 6-connected step there.
    t1, brain, wm_true = make_folded_brain(0)
    raw = white_matter_mask(t1, brain, dilation_mm=0, fill_holes=False)
    assert 0.35 < raw.sum() / brain.sum() < 0.45  # the WM class itself
    six = ndimage.generate_binary_structure(3, 1)
    old = ndimage.binary_dilation(raw, np.ones((3, 3, 3), dtype=bool), iterations=2)
    old = ndimage.binary_fill_holes(old) & brain
    new = white_matter_mask(t1, brain, voxel_size=(2.0, 2.0, 2.0))
    np.testing.assert_array_equal(
        new, ndimage.binary_fill_holes(ndimage.binary_dilation(raw, six)) & brain
    )
    cover_old, cover_new = old.sum() / brain.sum(), new.sum() / brain.sum()
    assert cover_old > 0.7 and cover_new < 0.55 and cover_new < cover_old - 0.2
    assert (new & wm_true).sum() > 0.98 * wm_true.sum()
    # the same 2 mm on a 1 mm grid is two voxels: the same physical margin, not twice it
    t1_fine, brain_fine, _ = make_folded_brain(0, voxel=(1.0, 1.0, 1.0))
    raw_fine = white_matter_mask(t1_fine, brain_fine, dilation_mm=0)
    fine = white_matter_mask(t1_fine, brain_fine, voxel_size=(1.0, 1.0, 1.0))
    assert abs(fine.sum() / brain_fine.sum() - cover_new) < 0.1
    assert fine.sum() / brain_fine.sum() > raw_fine.sum() / brain_fine.sum()


def test_baseline_finds_the_lesion_and_bias_correction_helps(cases):
    train, test = cases[:2], cases[2:]
    results = {}
    for corrected in (True, False):
        best, _ = tune_flair_threshold(
            train, bias_correct=corrected, wm_dilation_mm=WM_DILATION_MM
        )
        scores = []
        for case in test:
            wm = white_matter_mask(
                case["t1"], case["brain_mask"], dilation_mm=WM_DILATION_MM, voxel_size=VOXEL
            )
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
    best, scores = tune_flair_threshold(cases[:2], wm_dilation_mm=WM_DILATION_MM)
    assert list(scores) == [float(c) for c in DEFAULT_THRESHOLDS]
    assert DEFAULT_THRESHOLDS[0] <= best <= DEFAULT_THRESHOLDS[-1]
    assert scores[best] == max(scores.values())
    # the score is the mean Dice of flair_threshold_segment at that threshold
    dices = []
    for case in cases[:2]:
        wm = white_matter_mask(
            case["t1"], case["brain_mask"], dilation_mm=WM_DILATION_MM, voxel_size=VOXEL
        )
        seg = flair_threshold_segment(
            case["flair"], case["brain_mask"], wm, best, voxel_size=VOXEL
        )
        dices.append(dice(seg, case["lesion_mask"]))
    assert scores[best] == pytest.approx(np.mean(dices))
    best_lf1, lf1 = tune_flair_threshold(
        cases[:1], [2.0, 3.0, 20.0], metric="lf1", wm_dilation_mm=WM_DILATION_MM
    )
    assert lf1[20.0] == 0.0 and best_lf1 in (2.0, 3.0) and lf1[best_lf1] == 1.0


def test_min_size_removes_specks(cases):
    case = cases[0]
    wm = white_matter_mask(
        case["t1"], case["brain_mask"], dilation_mm=WM_DILATION_MM, voxel_size=VOXEL
    )
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
        (lambda: white_matter_mask(IMG, B, dilation_mm=-1), ValueError, "dilation_mm must be a"),
        (lambda: white_matter_mask(IMG, B, dilation_mm=np.inf), ValueError, "finite number"),
        (lambda: white_matter_mask(IMG, B, dilation_mm="2"), TypeError, "dilation_mm must be"),
        (lambda: white_matter_mask(IMG, B, voxel_size=(1, 0, 1)), ValueError, "voxel_size"),
        (lambda: ellipsoid_structure(True, (1, 1, 1)), TypeError, "radius_mm must be a number"),
        (
            lambda: tune_flair_threshold([{}], [3.0], wm_dilation_mm=-2),
            ValueError,
            "wm_dilation_mm must be a finite number >= 0",
        ),
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
