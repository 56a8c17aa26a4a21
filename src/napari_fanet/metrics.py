"""Evaluation metrics (``shared/EVALUATION.md``): QSM maps and MS lesion masks.

One namespace for :mod:`napari_fanet.qsm_metrics` (NRMSE, HFEN, PSNR, error maps),
:mod:`napari_fanet.qsm_similarity` (SSIM, XSIM and the labelled paper-style variants) and
:mod:`napari_fanet.segmentation_metrics` (Dice, LTPR, LPPV, L-F1, error labels). Every
function states its convention in its docstring.
"""

from __future__ import annotations

from .qsm_metrics import (
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
from .segmentation_metrics import (
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
