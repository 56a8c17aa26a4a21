"""Which reference lesions a probability map reaches, by lesion size.

L-F1 counts every lesion alike, so a network that finds the large lesions and misses the small
ones loses most of it; these counts say where. Lesions are 26-connected components of at least
:data:`MIN_VOXELS` voxels, as the lesion metrics count them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Size bins (voxels, lower bound included, upper excluded).
BINS = ((3, 10), (10, 30), (30, 100), (100, None))
#: Probabilities a lesion's maximum is compared with.
LEVELS = (0.5, 0.95)
MIN_VOXELS = 3


def reference_lesions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the 26-connected reference lesions and their sizes (voxels).

    Parameters
    ----------
    mask : np.ndarray
        Boolean lesion mask, shape ``(X, Y, Z)``.

    Returns
    -------
    labels : np.ndarray
        ``(X, Y, Z)`` integer labels, 0 outside the lesions.
    sizes : np.ndarray
        ``(n,)`` voxel count of lesion ``i + 1``.
    """
    labels, count = ndimage.label(mask, ndimage.generate_binary_structure(3, 3))
    return labels, np.bincount(labels.ravel(), minlength=count + 1)[1:]


def detection_by_size(labels: np.ndarray, sizes: np.ndarray, prob: np.ndarray) -> list[dict]:
    """Per size bin: lesions (of at least :data:`MIN_VOXELS`) and how many reach each level.

    Parameters
    ----------
    labels, sizes : np.ndarray
        From :func:`reference_lesions`.
    prob : np.ndarray
        Lesion probability, shape of ``labels``.

    Returns
    -------
    list of dict
        One ``{"bin", "lesions", "p>=0.5", "p>=0.95"}`` per bin of :data:`BINS`.
    """
    if prob.shape != labels.shape:
        raise ValueError(f"expected a probability map of shape {labels.shape}, got {prob.shape}")
    peaks = np.asarray(ndimage.maximum(prob, labels, index=np.arange(1, sizes.size + 1)))
    rows = []
    for low, high in BINS:
        chosen = (sizes >= max(low, MIN_VOXELS)) & (sizes < (high or np.inf))
        row = {"bin": f"{low}-{high - 1}" if high else f">= {low}", "lesions": int(chosen.sum())}
        for level in LEVELS:
            row[f"p>={level}"] = int((peaks[chosen] >= level).sum())
        rows.append(row)
    return rows


def bin_labels() -> list[str]:
    """Column titles of :data:`BINS`: ``["3-9 voxels", "10-29 voxels", ..., ">= 100 voxels"]``."""
    return [f"{low}-{high - 1} voxels" if high else f">= {low} voxels" for low, high in BINS]


def tally(rows: list[dict]) -> np.ndarray:
    """:func:`detection_by_size` rows as counts, to be summed over subjects.

    Returns
    -------
    np.ndarray
        ``(len(BINS), 1 + len(LEVELS))`` int: per bin, the lesions, then those reaching each
        level of :data:`LEVELS`.
    """
    return np.array(
        [[row["lesions"], *(row[f"p>={level}"] for level in LEVELS)] for row in rows], dtype=int
    )


def count_cells(counts: np.ndarray) -> list[str]:
    """One table cell per bin of a :func:`tally`: ``"reached 0.5 / reached 0.95 of lesions"``."""
    return [f"{' / '.join(map(str, row[1:]))} of {row[0]}" for row in counts]
