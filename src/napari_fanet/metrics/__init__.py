"""Evaluation metrics (``shared/EVALUATION.md``): QSM maps and MS lesion masks.

One namespace for :mod:`napari_fanet.metrics.qsm` (NRMSE, HFEN, PSNR, error maps),
:mod:`napari_fanet.metrics.similarity` (SSIM, XSIM and the labelled paper-style variants) and
:mod:`napari_fanet.metrics.segmentation` (Dice, LTPR, LPPV, L-F1, error labels). Every
function states its convention in its docstring.
"""

from __future__ import annotations

from napari_fanet.metrics.qsm import (
    hfen,
    log_kernel,
    nrmse,
    psnr,
    psnr_paper_style,
    qsm_metrics,
    ssim,
    ssim_paper_style,
    susceptibility_error_maps,
    xsim,
)
from napari_fanet.metrics.segmentation import (
    ERROR_LABEL_NAMES,
    LESION_STRUCTURE,
    dice,
    label_lesions,
    lesion_metrics,
    segmentation_error_labels,
    segmentation_metrics,
)

__all__ = [
    "ERROR_LABEL_NAMES",
    "LESION_STRUCTURE",
    "dice",
    "hfen",
    "label_lesions",
    "lesion_metrics",
    "log_kernel",
    "nrmse",
    "psnr",
    "psnr_paper_style",
    "qsm_metrics",
    "segmentation_error_labels",
    "segmentation_metrics",
    "ssim",
    "ssim_paper_style",
    "susceptibility_error_maps",
    "xsim",
]
