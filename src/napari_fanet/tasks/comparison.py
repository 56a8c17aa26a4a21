"""Compare a prediction with a reference: error maps and the metrics of ``EVALUATION.md``.

Used by the FA-Net widget's "Compare with a reference" and by anything else that wants the maps
and a copyable text table together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_fanet.metrics import (
    ERROR_LABEL_NAMES,
    qsm_metrics,
    segmentation_error_labels,
    segmentation_metrics,
    susceptibility_error_maps,
)

#: Metric names and how they are shown: (label, unit, digits).
_FORMATS = {
    "dice": ("Dice", "", 3),
    "ltpr": ("LTPR", "", 3),
    "lppv": ("LPPV", "", 3),
    "lf1": ("L-F1", "", 3),
    "n_gt": ("reference lesions", "", 0),
    "n_pred": ("predicted lesions", "", 0),
    "n_gt_detected": ("reference lesions detected", "", 0),
    "n_pred_true": ("predicted lesions that are true", "", 0),
    "nrmse": ("NRMSE", " %", 1),
    "nrmse_demeaned": ("NRMSE (demeaned)", " %", 1),
    "hfen": ("HFEN", " %", 1),
    "ssim": ("SSIM", "", 3),
    "xsim": ("XSIM (L = 1 ppm)", "", 3),
    "psnr": ("PSNR", " dB", 2),
}


@dataclass
class Comparison:
    """Error maps (by layer name suffix) and metrics of one prediction against its reference."""

    maps: dict[str, np.ndarray]
    metrics: dict[str, float]
    text: str


def format_metrics(metrics: dict[str, float], title: str) -> str:
    """A plain-text table (tab-separated, one metric per line) that pastes into a spreadsheet."""
    lines = [title]
    for key, value in metrics.items():
        if key == "paper_style":
            continue
        label, unit, digits = _FORMATS.get(key, (key, "", 4))
        if isinstance(value, (int, float, np.number)) and np.isfinite(value):
            shown = f"{value:.{digits}f}{unit}"
        else:
            shown = str(value)
        lines.append(f"{label}\t{shown}")
    return "\n".join(lines)


def _check_pair(pred: np.ndarray, ref: np.ndarray, what: str) -> None:
    if np.shape(pred) != np.shape(ref):
        raise ValueError(
            f"{what}: reference has shape {np.shape(ref)} but the prediction has "
            f"{np.shape(pred)}; choose a reference on the same voxel grid"
        )


def compare_masks(pred: np.ndarray, reference: np.ndarray, *, min_size: int = 3) -> Comparison:
    """Lesion masks: TP/FP/FN labels (:data:`ERROR_LABEL_NAMES`), Dice and lesion-wise metrics.

    Parameters
    ----------
    pred, reference : np.ndarray
        Masks, shape ``(X, Y, Z)``; any non-zero voxel of ``reference`` is a lesion.
    min_size : int
        Smallest lesion (voxels) the lesion-wise metrics count; Dice uses every voxel.
    """
    _check_pair(pred, reference, "lesion mask comparison")
    p, r = np.asarray(pred) > 0, np.asarray(reference) > 0
    metrics = segmentation_metrics(p, r, min_size=min_size)
    legend = ", ".join(f"{k} {v}" for k, v in ERROR_LABEL_NAMES.items())
    text = format_metrics(metrics, f"Lesion segmentation vs reference (labels: {legend})")
    return Comparison({"errors": segmentation_error_labels(p, r)}, metrics, text)


def compare_susceptibility(chi: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> Comparison:
    """Susceptibility maps (ppm): signed and absolute error inside ``mask`` and all QSM metrics.

    Parameters
    ----------
    chi, reference : np.ndarray
        Susceptibility maps in ppm, shape ``(X, Y, Z)``.
    mask : np.ndarray
        Brain mask, same shape, not empty.
    """
    _check_pair(chi, reference, "susceptibility comparison")
    _check_pair(chi, mask, "brain mask for the comparison")
    m = np.asarray(mask) > 0.5
    if not m.any():
        raise ValueError("brain mask is empty: expected a mask with at least one voxel inside")
    signed, absolute = susceptibility_error_maps(chi, reference, m)
    metrics = qsm_metrics(chi, reference, m)
    text = format_metrics(metrics, "Susceptibility vs reference (inside the brain mask)")
    return Comparison({"signed error": signed, "absolute error": absolute}, metrics, text)
