"""MS lesion segmentation metrics, exactly as ``shared/EVALUATION.md`` defines them.

Inputs are binary numpy arrays ``(X, Y, Z)`` (bool, or numbers that are all 0 or 1).

- Dice is voxel-wise on the masks as given (no size filter).
- Lesions are 3D connected components with 26-connectivity (a ``3x3x3`` ones structure:
  voxels touching by a face, an edge or a corner belong to one lesion); components smaller than
  ``min_size`` voxels (default 3) are ignored, in both masks.
- A lesion is detected when it overlaps a *kept* lesion of the other mask by at least one voxel
  (so a predicted speck below ``min_size`` detects nothing).
- A ratio with a zero denominator is 1.0 (nothing to find or nothing claimed): no GT lesions
  gives LTPR 1.0, no predicted lesions gives LPPV 1.0; L-F1 is 0 when LTPR or LPPV is 0, so it
  is 1.0 only when both masks have no lesions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_fanet.io.checks import as_mask, check_min_size, check_same_shape

__all__ = [
    "ERROR_LABEL_NAMES",
    "LESION_STRUCTURE",
    "dice",
    "label_lesions",
    "lesion_metrics",
    "segmentation_error_labels",
    "segmentation_metrics",
]

#: 26-connectivity structuring element used to label lesions.
LESION_STRUCTURE = np.ones((3, 3, 3), dtype=bool)

#: Values of :func:`segmentation_error_labels` (0 is background / true negative).
ERROR_LABEL_NAMES = {1: "true positive", 2: "false positive", 3: "false negative"}


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, g = as_mask(pred, "pred"), as_mask(gt, "gt")
    check_same_shape(pred=p, gt=g)
    return p, g


def label_lesions(mask: np.ndarray, *, min_size: int = 3) -> tuple[np.ndarray, int]:
    """Label 26-connected lesions, dropping those smaller than ``min_size`` voxels.

    Parameters
    ----------
    mask : np.ndarray
        Binary mask, shape ``(X, Y, Z)``.
    min_size : int
        Smallest lesion kept, in voxels (>= 1).

    Returns
    -------
    labels : np.ndarray
        int32, shape ``(X, Y, Z)``: 0 background (and dropped components), kept lesions
        numbered ``1..n`` in scan order.
    n : int
        Number of kept lesions.
    """
    m = as_mask(mask, "mask")
    min_size = check_min_size(min_size)
    labels, n = ndimage.label(m, structure=LESION_STRUCTURE)
    if n == 0:
        return labels.astype(np.int32), 0
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    new_ids = np.zeros(n + 1, dtype=np.int32)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_ids[labels], int(keep.sum())


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice similarity coefficient ``2 |P and G| / (|P| + |G|)``; 1.0 when both are empty.

    Parameters
    ----------
    pred, gt : np.ndarray
        Binary masks, shape ``(X, Y, Z)``.

    Returns
    -------
    float
        DSC in ``[0, 1]``.
    """
    p, g = _pair(pred, gt)
    total = int(p.sum()) + int(g.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(p, g).sum()) / total


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den


def lesion_metrics(
    pred: np.ndarray, gt: np.ndarray, *, min_size: int = 3, paper_style: bool = False
) -> dict[str, float | int | bool]:
    """Lesion-wise detection metrics (26-connectivity, lesions < ``min_size`` ignored).

    Parameters
    ----------
    pred, gt : np.ndarray
        Binary masks, shape ``(X, Y, Z)``.
    min_size : int
        Smallest lesion counted, in voxels (>= 1), applied to both masks.
    paper_style : bool
        If true, ``"lppv"`` is the PAPER-STYLE value ``n_gt_detected / n_pred`` (the paper's
        formula reuses the GT count in its numerator; it can exceed 1 when one GT lesion is
        split into several predicted lesions, or fall below the standard value when several GT
        lesions are merged) and ``"lf1"`` is computed from it.

    Returns
    -------
    dict
        ``"ltpr"`` = ``n_gt_detected / n_gt`` (GT lesions overlapping a predicted lesion);
        ``"lppv"`` = ``n_pred_true / n_pred`` (predicted lesions overlapping a GT lesion), or
        the paper-style value; ``"lf1"`` = harmonic mean of the two (0 if either is 0);
        ``"n_gt"``, ``"n_pred"``, ``"n_gt_detected"``, ``"n_pred_true"`` (int counts);
        ``"paper_style"`` (bool, which LPPV convention was used). Zero denominators give 1.0.
    """
    p, g = _pair(pred, gt)
    gt_labels, n_gt = label_lesions(g, min_size=min_size)
    pred_labels, n_pred = label_lesions(p, min_size=min_size)
    both = (gt_labels > 0) & (pred_labels > 0)
    n_gt_detected = int(np.unique(gt_labels[both]).size)
    n_pred_true = int(np.unique(pred_labels[both]).size)
    ltpr = _ratio(n_gt_detected, n_gt)
    lppv = _ratio(n_gt_detected if paper_style else n_pred_true, n_pred)
    lf1 = 0.0 if ltpr == 0 or lppv == 0 else 2.0 * ltpr * lppv / (ltpr + lppv)
    return {
        "ltpr": ltpr,
        "lppv": lppv,
        "lf1": lf1,
        "n_gt": n_gt,
        "n_pred": n_pred,
        "n_gt_detected": n_gt_detected,
        "n_pred_true": n_pred_true,
        "paper_style": bool(paper_style),
    }


def segmentation_metrics(
    pred: np.ndarray, gt: np.ndarray, *, min_size: int = 3, paper_style: bool = False
) -> dict[str, float | int | bool]:
    """Dice plus the lesion-wise metrics of :func:`lesion_metrics` for one subject.

    Parameters
    ----------
    pred, gt : np.ndarray
        Binary masks, shape ``(X, Y, Z)``.
    min_size : int
        Smallest lesion counted (lesion metrics only; Dice uses every voxel).
    paper_style : bool
        Use the paper-style LPPV (see :func:`lesion_metrics`).

    Returns
    -------
    dict
        ``"dice"`` and every key of :func:`lesion_metrics`.
    """
    return {
        "dice": dice(pred, gt),
        **lesion_metrics(pred, gt, min_size=min_size, paper_style=paper_style),
    }


def segmentation_error_labels(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Voxel-wise error labels: 0 background (TN), 1 TP, 2 FP, 3 FN (:data:`ERROR_LABEL_NAMES`).

    Parameters
    ----------
    pred, gt : np.ndarray
        Binary masks, shape ``(X, Y, Z)``.

    Returns
    -------
    np.ndarray
        uint8, shape ``(X, Y, Z)``.
    """
    p, g = _pair(pred, gt)
    out = np.zeros(p.shape, dtype=np.uint8)
    out[p & g] = 1
    out[p & ~g] = 2
    out[~p & g] = 3
    return out
