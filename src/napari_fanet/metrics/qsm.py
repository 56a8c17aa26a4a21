"""QSM metrics, exactly as ``shared/EVALUATION.md`` defines them.

Inputs are numpy arrays ``(X, Y, Z)`` in ppm and a boolean brain mask ``M`` of the same shape.
Masked metrics are evaluated inside ``M``. Before a filter (HFEN's LoG, the SSIM windows) both
maps are set to zero outside ``M``, so values outside the mask never leak into the score. The
"paper-style" variants use the whole volume instead and are background-inflated.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

from napari_fanet.io.checks import prepare_maps as _prepare
from napari_fanet.metrics.similarity import psnr_paper_style, ssim, ssim_paper_style, xsim

__all__ = [
    "hfen",
    "log_kernel",
    "nrmse",
    "psnr",
    "psnr_paper_style",
    "qsm_metrics",
    "ssim",
    "ssim_paper_style",
    "susceptibility_error_maps",
    "xsim",
]


def _ratio(diff: np.ndarray, ref: np.ndarray) -> float:
    denom = float(np.linalg.norm(ref))
    if denom == 0:
        raise ValueError("the reference is zero inside the mask: the relative error is undefined")
    return 100.0 * float(np.linalg.norm(diff)) / denom


def nrmse(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, *, demean: bool = False) -> float:
    """Normalised RMSE in percent: ``100 * ||M (pred - ref)|| / ||M ref||``.

    Parameters
    ----------
    pred, ref : np.ndarray
        Susceptibility maps (ppm), shape ``(X, Y, Z)``.
    mask : np.ndarray
        Boolean brain mask ``M``, shape ``(X, Y, Z)``, not empty.
    demean : bool
        If true, each map's mean inside ``M`` is subtracted first (QSM challenge 2.0 style);
        default false (plain NRMSE).

    Returns
    -------
    float
        NRMSE in percent (0 is perfect; an all-zero prediction scores 100 when not demeaned).
    """
    p, r, m = _prepare(pred, ref, mask)
    pv, rv = p[m], r[m]
    if demean:
        pv, rv = pv - pv.mean(), rv - rv.mean()
    return _ratio(pv - rv, rv)


def log_kernel(sigma: float = 1.5, size: int = 15) -> np.ndarray:
    """3D Laplacian-of-Gaussian kernel for HFEN, built explicitly.

    ``g = exp(-r^2 / 2 sigma^2)`` normalised to sum 1, ``h = g (r^2 - 3 sigma^2) / sigma^4``,
    then ``h - mean(h)`` so the kernel sums to zero (MATLAB ``fspecial('log')`` in 3D).

    Parameters
    ----------
    sigma : float
        Gaussian width in voxels (positive).
    size : int
        Odd edge length; the kernel is centred on voxel ``size // 2``.

    Returns
    -------
    np.ndarray
        Shape ``(size, size, size)``, float64, summing to zero.
    """
    if not (isinstance(size, (int, np.integer)) and size >= 1 and size % 2 == 1):
        raise ValueError(f"size must be a positive odd integer, got {size!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    ax = np.arange(size, dtype=np.float64) - size // 2
    r2 = ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2
    g = np.exp(-r2 / (2.0 * sigma**2))
    g /= g.sum()
    h = g * (r2 - 3.0 * sigma**2) / sigma**4
    return h - h.mean()


def hfen(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """High-frequency error norm in percent.

    Both maps are set to zero outside ``M``, filtered with :func:`log_kernel` (sigma 1.5
    voxels, 15x15x15, zero-sum) by a zero-padded "same" convolution, and compared like
    :func:`nrmse` inside ``M``: ``100 * ||M (LoG pred - LoG ref)|| / ||M LoG ref||``.

    Parameters
    ----------
    pred, ref : np.ndarray
        Susceptibility maps (ppm), shape ``(X, Y, Z)``.
    mask : np.ndarray
        Boolean brain mask, same shape, not empty.

    Returns
    -------
    float
        HFEN in percent.
    """
    p, r, m = _prepare(pred, ref, mask)
    h = log_kernel(1.5, 15)
    fp = signal.fftconvolve(p * m, h, mode="same")
    fr = signal.fftconvolve(r * m, h, mode="same")
    return _ratio(fp[m] - fr[m], fr[m])


def psnr(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB: ``20 log10(R / RMSE)``, ``R`` = range of ``ref`` in ``M``, RMSE in ``M``.

    Parameters
    ----------
    pred, ref : np.ndarray
        Susceptibility maps (ppm), shape ``(X, Y, Z)``.
    mask : np.ndarray
        Boolean brain mask, same shape, not empty.

    Returns
    -------
    float
        PSNR in dB; ``inf`` when the maps agree exactly inside the mask.
    """
    p, r, m = _prepare(pred, ref, mask)
    value_range = float(r[m].max() - r[m].min())
    if value_range == 0:
        raise ValueError("ref is constant inside the mask: the PSNR peak (its range) is zero")
    rmse = float(np.sqrt(np.mean((p[m] - r[m]) ** 2)))
    return math.inf if rmse == 0 else 20.0 * math.log10(value_range / rmse)


def qsm_metrics(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """All masked QSM metrics of one subject.

    Parameters
    ----------
    pred, ref : np.ndarray
        Susceptibility maps (ppm), shape ``(X, Y, Z)``.
    mask : np.ndarray
        Boolean brain mask, same shape, not empty.

    Returns
    -------
    dict
        ``"nrmse"``: NRMSE in %, not demeaned; ``"nrmse_demeaned"``: NRMSE in % after removing
        each map's mean inside the mask; ``"hfen"``: HFEN in % (LoG sigma 1.5, 15^3);
        ``"ssim"``: masked SSIM (K = 0.01, 0.03, ``L`` = range of ``ref`` in the mask);
        ``"xsim"``: XSIM (``L`` = 1 ppm, K = 0.01, 0.001); ``"psnr"``: PSNR in dB with the
        range of ``ref`` in the mask as peak. All inside the mask, maps zeroed outside it.
    """
    return {
        "nrmse": nrmse(pred, ref, mask),
        "nrmse_demeaned": nrmse(pred, ref, mask, demean=True),
        "hfen": hfen(pred, ref, mask),
        "ssim": ssim(pred, ref, mask),
        "xsim": xsim(pred, ref, mask),
        "psnr": psnr(pred, ref, mask),
    }


def susceptibility_error_maps(
    pred: np.ndarray, ref: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Signed and absolute error maps ``pred - ref`` inside ``M``, zero outside.

    Parameters
    ----------
    pred, ref : np.ndarray
        Susceptibility maps (ppm), shape ``(X, Y, Z)``.
    mask : np.ndarray
        Boolean brain mask, same shape, not empty.

    Returns
    -------
    signed, absolute : np.ndarray
        float32, shape ``(X, Y, Z)``, in ppm.
    """
    p, r, m = _prepare(pred, ref, mask)
    signed = np.where(m, p - r, 0.0).astype(np.float32)
    return signed, np.abs(signed)
