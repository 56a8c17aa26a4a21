"""From a lesion probability map to a lesion mask: threshold, confident seed, size, brain edge.

A lesion is a 26-connected component of the voxels whose probability is above ``threshold``
(the lesion definition of :mod:`napari_fanet.metrics.segmentation`). Three optional rules then
drop whole components, never single voxels, so the lesions that stay keep their full extent:

- ``seed_threshold``: the component must hold at least one voxel whose probability is above it
  (hysteresis thresholding with ``threshold`` as the low and ``seed_threshold`` as the high
  level). Faint components the network was never sure of go; a lesion with a confident core
  keeps its less certain rim.
- ``min_volume_mm3``: the component must be at least this large, in cubic millimetres (so the
  rule means the same on a 1 mm and on a 1 x 1 x 3 mm grid).
- ``min_edge_distance_mm``: the component's voxels must lie, on average, at least this far
  (Euclidean, in mm, from each voxel's centre to the nearest voxel outside the brain mask)
  inside the brain mask. White-matter lesions are not in the outermost millimetres of a
  skull-stripped brain (cortex, CSF and the stripping rim), where FLAIR is often bright.

All off (``seed_threshold=None``, ``min_volume_mm3=0``, ``min_edge_distance_mm=0``) gives
``probability > threshold``.
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
    "DEFAULT_MIN_EDGE_DISTANCE_MM",
    "DEFAULT_MIN_LESION_MM3",
    "DEFAULT_RULE",
    "DEFAULT_SEED_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "LesionMaskRule",
    "lesion_mask",
    "mean_edge_distance",
]

#: Probability above which a voxel may be lesion.
DEFAULT_THRESHOLD = 0.5

#: Seed threshold of the default rule (None: off). Chosen on the three shared MS patients'
#: leave-one-out predictions and confirmed on the simulated test and two other leave-one-out
#: families (the ``fanet-seg`` card, "The lesion-mask rule").
DEFAULT_SEED_THRESHOLD: float | None = 0.95
#: Smallest lesion of the default rule, in mm^3 (0: off); about a sphere of 2.7 mm diameter.
DEFAULT_MIN_LESION_MM3 = 10.0
#: Smallest mean distance of a lesion's voxels from the outside of the brain mask, in mm, of the
#: default rule (0: off). On a 1 mm grid the mask's outermost voxel layer lies 1 mm deep and the
#: next 2 mm: a lesion mostly in the outermost layer goes. Found on the three shared MS patients'
#: leave-one-out maps, then checked on other leave-one-out families and the 2D 5 mm copies (the
#: ``fanet-seg`` card, "The brain-edge rule").
DEFAULT_MIN_EDGE_DISTANCE_MM = 2.0


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
    min_edge_distance_mm : float
        Smallest mean distance of a kept lesion's voxels from the outside of the brain mask,
        in mm (0: no such rule; otherwise :func:`lesion_mask` needs the brain mask).

    Raises
    ------
    ValueError
        A value outside its range, or a seed threshold below the threshold.
    """

    threshold: float = DEFAULT_THRESHOLD
    seed_threshold: float | None = None
    min_volume_mm3: float = 0.0
    min_edge_distance_mm: float = 0.0

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
        edge = self.min_edge_distance_mm
        if not (_is_number(edge) and math.isfinite(edge) and edge >= 0):
            raise ValueError(
                f"minimum distance from the brain edge must be a finite number of mm >= 0, "
                f"got {edge!r}"
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
        if self.min_edge_distance_mm > 0:
            parts.append(
                f"lying on average at least {self.min_edge_distance_mm:g} mm inside the brain mask"
            )
        return ", ".join(parts)

    @property
    def filters_components(self) -> bool:
        """Whether a rule beyond the plain threshold is on."""
        return (
            self.seed_threshold is not None
            or self.min_volume_mm3 > 0
            or self.min_edge_distance_mm > 0
        )


def lesion_mask(
    probability: np.ndarray,
    voxel_size: Sequence[float],
    rule: LesionMaskRule,
    brain: np.ndarray | None = None,
) -> np.ndarray:
    """The lesion mask of a probability map under ``rule``.

    Parameters
    ----------
    probability : np.ndarray
        Lesion probability, shape ``(X, Y, Z)``.
    voxel_size : sequence of float
        Voxel size in mm along the array axes (3 positive numbers).
    rule : LesionMaskRule
        Threshold, seed threshold, minimum volume and minimum distance from the brain edge.
    brain : np.ndarray, optional
        Brain mask, shape ``(X, Y, Z)`` (non-zero = brain); needed when the rule's
        ``min_edge_distance_mm`` is above 0, unused otherwise.

    Returns
    -------
    np.ndarray
        uint8, shape ``(X, Y, Z)``: 1 in every kept lesion, 0 elsewhere.

    Raises
    ------
    ValueError
        ``probability`` is not 3D, ``voxel_size`` is not 3 positive numbers, or the rule has a
        brain-edge distance and ``brain`` is missing or of another shape.
    """
    prob = np.asarray(probability)
    if prob.ndim != 3:
        raise ValueError(f"probability must be a 3D (X, Y, Z) array, got shape {prob.shape}")
    sizes = check_voxel_size(voxel_size)
    if rule.min_edge_distance_mm > 0:
        if brain is None:
            raise ValueError(
                "a minimum distance from the brain edge needs the brain mask, got none"
            )
        if np.shape(brain) != prob.shape:
            raise ValueError(
                f"brain mask must have the probability's shape {prob.shape}, got {np.shape(brain)}"
            )
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
    if rule.min_edge_distance_mm > 0:
        keep &= mean_edge_distance(labels, n, np.asarray(brain) != 0, sizes) >= (
            rule.min_edge_distance_mm
        )
    return keep[labels].astype(np.uint8)


def mean_edge_distance(
    labels: np.ndarray, count: int, brain: np.ndarray, voxel_size: Sequence[float]
) -> np.ndarray:
    """Mean distance of each component's voxels from the outside of the brain mask, in mm.

    Parameters
    ----------
    labels : np.ndarray
        Component labels ``1..count`` (0: none), shape ``(X, Y, Z)``.
    count : int
        Number of components.
    brain : np.ndarray
        Boolean brain mask, shape ``(X, Y, Z)``.
    voxel_size : sequence of float
        Voxel size in mm along the array axes.

    Returns
    -------
    np.ndarray
        Shape ``(count + 1,)``: entry ``i`` for component ``i`` (entry 0 unused, 0). A voxel
        outside the brain counts 0; a brain that fills the whole array is measured from the
        array's border, as though the scan ended there.
    """
    padded = np.pad(brain, 1)  # so a brain touching the array border has an edge there
    distance = ndimage.distance_transform_edt(padded, sampling=voxel_size)[1:-1, 1:-1, 1:-1]
    flat = labels.ravel()
    voxels = np.bincount(flat, minlength=count + 1)  # (count + 1,)
    total = np.bincount(flat, weights=distance.ravel(), minlength=count + 1)
    mean = np.divide(total, voxels, out=np.zeros(count + 1), where=voxels > 0)
    mean[0] = 0.0  # not a component
    return mean


#: The rule ``segment`` uses unless told otherwise.
DEFAULT_RULE = LesionMaskRule(
    DEFAULT_THRESHOLD,
    DEFAULT_SEED_THRESHOLD,
    DEFAULT_MIN_LESION_MM3,
    DEFAULT_MIN_EDGE_DISTANCE_MM,
)
