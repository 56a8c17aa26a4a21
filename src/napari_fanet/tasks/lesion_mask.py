"""From a lesion probability map to a lesion mask: threshold, confident seed, minimum volume.

A lesion is a 26-connected component of the voxels whose probability is above ``threshold``
(the lesion definition of :mod:`napari_fanet.metrics.segmentation`). Two optional rules then
drop whole components, never single voxels, so the lesions that stay keep their full extent:

- ``seed_threshold``: the component must hold at least one voxel whose probability is above it
  (hysteresis thresholding with ``threshold`` as the low and ``seed_threshold`` as the high
  level). Faint components the network was never sure of go; a lesion with a confident core
  keeps its less certain rim.
- ``min_volume_mm3``: the component must be at least this large, in cubic millimetres (so the
  rule means the same on a 1 mm and on a 1 x 1 x 3 mm grid).

Both off (``seed_threshold=None``, ``min_volume_mm3=0``) gives ``probability > threshold``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_fanet.io.checks import check_voxel_size
from napari_fanet.metrics.segmentation import LESION_STRUCTURE

__all__ = [
    "DEFAULT_MIN_LESION_MM3",
    "DEFAULT_RULE",
    "DEFAULT_SEED_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "LesionMaskRule",
    "lesion_mask",
]

#: Probability above which a voxel may be lesion.
DEFAULT_THRESHOLD = 0.5

#: Seed threshold of the default rule (None: off). Chosen on the three shared MS patients'
#: leave-one-out predictions and confirmed on the simulated test and two other leave-one-out
#: families (the ``fanet-seg`` card, "The lesion-mask rule").
DEFAULT_SEED_THRESHOLD: float | None = 0.95
#: Smallest lesion of the default rule, in mm^3 (0: off); about a sphere of 2.7 mm diameter.
DEFAULT_MIN_LESION_MM3 = 10.0


def _is_number(value: object) -> bool:
    """A real number (numpy scalars included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class LesionMaskRule:
    """How a probability map becomes a lesion mask (see the module docstring).

    Parameters
    ----------
    threshold : float
        Voxels above it may be lesion; strictly between 0 and 1.
    seed_threshold : float or None
        A lesion must hold a voxel above it; at least ``threshold`` and below 1. None: no seed
        rule.
    min_volume_mm3 : float
        Smallest lesion kept, in mm^3 (0: every component).

    Raises
    ------
    ValueError
        A value outside its range, or a seed threshold below the threshold.
    """

    threshold: float = DEFAULT_THRESHOLD
    seed_threshold: float | None = None
    min_volume_mm3: float = 0.0

    def __post_init__(self) -> None:
        if not (_is_number(self.threshold) and 0.0 < self.threshold < 1.0):
            raise ValueError(
                f"threshold must be a probability strictly between 0 and 1, got {self.threshold!r}"
            )
        seed = self.seed_threshold
        if seed is not None and not (_is_number(seed) and 0.0 < seed < 1.0):
            raise ValueError(
                f"seed threshold must be a probability strictly between 0 and 1, got {seed!r}"
            )
        if seed is not None and seed < self.threshold:
            raise ValueError(
                f"seed threshold ({seed:g}) must be at least the threshold "
                f"({self.threshold:g}): a lesion's seed is one of its own voxels"
            )
        volume = self.min_volume_mm3
        if not (_is_number(volume) and math.isfinite(volume) and volume >= 0):
            raise ValueError(
                f"minimum lesion volume must be a finite number of mm^3 >= 0, got {volume!r}"
            )

    def describe(self) -> str:
        """The rule in words, for reports (``"probability > 0.5 ..."``)."""
        text = f"probability > {self.threshold:g}"
        if not self.filters_components:
            return text
        parts = [f"26-connected lesions of {text}"]
        if self.seed_threshold is not None:
            parts.append(f"holding a voxel above {self.seed_threshold:g}")
        if self.min_volume_mm3 > 0:
            parts.append(f"of at least {self.min_volume_mm3:g} mm^3")
        return ", ".join(parts)

    @property
    def filters_components(self) -> bool:
        """Whether a rule beyond the plain threshold is on."""
        return self.seed_threshold is not None or self.min_volume_mm3 > 0


def lesion_mask(
    probability: np.ndarray, voxel_size: Sequence[float], rule: LesionMaskRule
) -> np.ndarray:
    """The lesion mask of a probability map under ``rule``.

    Parameters
    ----------
    probability : np.ndarray
        Lesion probability, shape ``(X, Y, Z)``.
    voxel_size : sequence of float
        Voxel size in mm along the array axes (3 positive numbers).
    rule : LesionMaskRule
        Threshold, seed threshold and minimum volume.

    Returns
    -------
    np.ndarray
        uint8, shape ``(X, Y, Z)``: 1 in every kept lesion, 0 elsewhere.

    Raises
    ------
    ValueError
        ``probability`` is not 3D, or ``voxel_size`` is not 3 positive numbers.
    """
    prob = np.asarray(probability)
    if prob.ndim != 3:
        raise ValueError(f"probability must be a 3D (X, Y, Z) array, got shape {prob.shape}")
    sizes = check_voxel_size(voxel_size)
    above = prob > rule.threshold
    if not rule.filters_components:
        return above.astype(np.uint8)
    labels, n = ndimage.label(above, structure=LESION_STRUCTURE)  # (X, Y, Z) int
    if n == 0:
        return above.astype(np.uint8)
    keep = np.ones(n + 1, dtype=bool)  # by component label; 0 is the background
    keep[0] = False
    if rule.seed_threshold is not None:
        # components holding a voxel above the seed threshold (ndimage.maximum per label took
        # seconds on a 1 mm brain; this takes milliseconds)
        seeded = np.zeros(n + 1, dtype=bool)
        seeded[np.unique(labels[prob > rule.seed_threshold])] = True
        keep &= seeded
    if rule.min_volume_mm3 > 0:
        voxels = np.bincount(labels.ravel(), minlength=n + 1)  # (n + 1,)
        keep &= voxels * float(np.prod(sizes)) >= rule.min_volume_mm3
    return keep[labels].astype(np.uint8)


#: The rule ``segment`` uses unless told otherwise.
DEFAULT_RULE = LesionMaskRule(DEFAULT_THRESHOLD, DEFAULT_SEED_THRESHOLD, DEFAULT_MIN_LESION_MM3)
