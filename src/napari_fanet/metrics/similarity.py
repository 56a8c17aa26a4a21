"""SSIM-type QSM metrics: masked SSIM, XSIM and the paper-style (whole-volume) variants.

Masked metrics set both maps to zero outside the brain mask ``M`` before filtering and average
the local similarity map inside ``M``. The paper-style variants use the whole volume rescaled to
0..255 and are background-inflated (labelled so in their names and docstrings).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from napari_fanet.io.checks import as_volume, check_same_shape
from napari_fanet.io.checks import prepare_maps as _prepare

__all__ = ["psnr_paper_style", "ssim", "ssim_paper_style", "xsim"]

SSIM_SIGMA = 1.5
#: Gaussian truncation (in sigmas) of the SSIM windows: radius 5, an 11-voxel odd window,
#: the same as scikit-image's ``structural_similarity(gaussian_weights=True)``.
SSIM_TRUNCATE = 3.5
_SSIM_WINDOW = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1


def _ssim_map(x: np.ndarray, y: np.ndarray, data_range: float, k1: float, k2: float) -> np.ndarray:
    """Local SSIM map with a Gaussian window (sigma 1.5, 11 voxels) and population moments.

    ``((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with
    ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``, ``L = data_range``; reflective borders.
    """

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, SSIM_SIGMA, mode="reflect", truncate=SSIM_TRUNCATE)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * cxy + c2)
    return num / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _check_ssim_size(shape: tuple[int, ...]) -> None:
    if min(shape) < _SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs at least {_SSIM_WINDOW} voxels along every axis (its Gaussian "
            f"window), got shape {shape}"
        )


def ssim(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, *, data_range: float | None = None
) -> float:
    """Masked 3D SSIM: scikit-image's SSIM map over the volume, averaged inside ``M``.

    Both maps are set to zero outside ``M``; ``structural_similarity`` runs with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` (K = 0.01, 0.03) and
    ``full=True``; the returned map is averaged over the voxels of ``M``.

    Parameters
    ----------
    pred, ref : np.ndarray
        Susceptibility maps (ppm), shape ``(X, Y, Z)``, at least 11 voxels per axis.
    mask : np.ndarray
        Boolean brain mask, same shape, not empty.
    data_range : float, optional
        ``L``; default the range (max - min) of ``ref`` inside ``M``.

    Returns
    -------
    float
        Mean SSIM inside the mask (1 is perfect).
    """
    p, r, m = _prepare(pred, ref, mask)
    _check_ssim_size(p.shape)
    if data_range is None:
        data_range = float(r[m].max() - r[m].min())
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    _, smap = structural_similarity(
        p * m,
        r * m,
        data_range=data_range,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )
    return float(smap[m].mean())


def xsim(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """XSIM, the QSM challenge 2.0 variant of SSIM: ``L = 1`` ppm, ``K = (0.01, 0.001)``.

    Maps are not rescaled; both are set to zero outside ``M``; 3D Gaussian window sigma 1.5
    (11 voxels), population (co)variances; the SSIM map is averaged inside ``M``.

    Parameters
    ----------
    pred, ref : np.ndarray
        Susceptibility maps in ppm, shape ``(X, Y, Z)``.
    mask : np.ndarray
        Boolean brain mask, same shape, not empty.

    Returns
    -------
    float
        Mean XSIM inside the mask (1 is perfect).
    """
    p, r, m = _prepare(pred, ref, mask)
    return float(_ssim_map(p * m, r * m, 1.0, 0.01, 0.001)[m].mean())


def _rescale_255(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    p, r = as_volume(pred, "pred"), as_volume(ref, "ref")
    check_same_shape(pred=p, ref=r)
    lo, hi = float(r.min()), float(r.max())
    if hi == lo:
        raise ValueError("ref is constant: it cannot be rescaled to 0..255")
    return 255.0 * (p - lo) / (hi - lo), 255.0 * (r - lo) / (hi - lo)


def ssim_paper_style(pred: np.ndarray, ref: np.ndarray) -> float:
    """PAPER-STYLE SSIM (background-inflated): whole volume, rescaled to 0..255.

    Both maps are rescaled with the reference's min and max over the whole volume
    (``255 (x - min ref) / (max ref - min ref)``, not clipped), then scikit-image's 3D SSIM
    (Gaussian window sigma 1.5, ``data_range=255``) is averaged over every voxel. The large
    zero background agrees trivially, so this is inflated: an all-zero prediction of a brain
    in a typical field of view scores about 0.8. Report :func:`ssim` as the main number.

    Parameters
    ----------
    pred, ref : np.ndarray
        Susceptibility maps, shape ``(X, Y, Z)``, at least 11 voxels per axis.

    Returns
    -------
    float
        Mean SSIM over the whole volume.
    """
    p, r = _rescale_255(pred, ref)
    _check_ssim_size(p.shape)
    _, smap = structural_similarity(
        p,
        r,
        data_range=255.0,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )
    return float(smap.mean())


def psnr_paper_style(pred: np.ndarray, ref: np.ndarray) -> float:
    """PAPER-STYLE PSNR (background-inflated): ``20 log10(255 / RMSE)`` over the whole volume.

    Both maps are rescaled to 0..255 with the reference's min and max (as in
    :func:`ssim_paper_style`); the RMSE is taken over every voxel, so a zero background
    dilutes the error. Report :func:`psnr` as the main number.

    Parameters
    ----------
    pred, ref : np.ndarray
        Susceptibility maps, shape ``(X, Y, Z)``.

    Returns
    -------
    float
        PSNR in dB; ``inf`` for identical maps.
    """
    p, r = _rescale_255(pred, ref)
    rmse = float(np.sqrt(np.mean((p - r) ** 2)))
    return math.inf if rmse == 0 else 20.0 * math.log10(255.0 / rmse)
