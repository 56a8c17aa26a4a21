"""Small synthetic lesions inserted into a real scan's white matter, labelled.

The randomised simulator draws small lesions on simulated anatomy; a network trained on them
found small simulated lesions and missed real ones of the same size and local contrast, and it
also missed the same synthetic lesions once they were put into a real FLAIR (``fanet-seg``
card, stage 20). This module puts them into real scans, so that training sees small lesions on
real anatomy, texture and noise.

Each lesion has the simulator's irregular shape and partial-volume edge
(:func:`napari_fanet.simulation.ms_lesion_load.blob_lesion`) and lies in white matter, found as
the T1-bright part of the eroded brain away from the reference lesions. Within it every channel
is scaled towards its contrast relative to the local tissue, the scan's own texture and noise
kept: ``image * (1 + w * (factor - 1))`` with the partial-volume weight ``w``. One severity
``s`` in [0, 1] per lesion sets all channels' factors, so a faint FLAIR lesion is faint in T2
too. The lesion mask gains the voxels where ``w >= 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_fanet.simulation.ms_lesion_load import blob_lesion

#: Per channel: the lesion's intensity over its surroundings at severity 0 and at severity 1.
INSERTED_CONTRAST = {"flair": (1.2, 1.6), "t2": (1.1, 1.45), "t1": (1.0, 0.85)}


@dataclass(frozen=True)
class InsertionParams:
    """Ranges of :func:`insert_lesions`.

    Attributes
    ----------
    volume_mm3 : tuple of float
        Nominal lesion volume range, drawn log-uniformly.
    white_matter_quantile : float
        A brain voxel is white matter where the T1 is above this quantile of the brain's T1.
    erosion_mm : float
        Lesion centres lie at least this deep in the brain.
    clearance_mm : float
        ... and at least this far from the reference lesions and from each other.
    severity : tuple of float
        Range of the severity ``s`` in [0, 1], drawn uniformly (a single value, for example
        ``(0.125, 0.125)``, gives every lesion the same contrast).
    """

    volume_mm3: tuple[float, float] = (3.0, 40.0)
    white_matter_quantile: float = 0.65
    erosion_mm: float = 4.0
    clearance_mm: float = 4.0
    severity: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if not 0 <= self.severity[0] <= self.severity[1] <= 1:
            raise ValueError(f"severity: expected 0 <= low <= high <= 1, got {self.severity}")
        lo, hi = self.volume_mm3
        if not 0 < lo <= hi:
            raise ValueError(f"volume_mm3: expected 0 < low <= high, got {self.volume_mm3}")
        if not 0 < self.white_matter_quantile < 1:
            raise ValueError(
                f"white_matter_quantile: expected a value in (0, 1), got "
                f"{self.white_matter_quantile}"
            )
        if self.erosion_mm < 0 or self.clearance_mm < 0:
            raise ValueError(
                f"erosion_mm and clearance_mm: expected >= 0, got {self.erosion_mm} and "
                f"{self.clearance_mm}"
            )


def white_matter_sites(
    t1: np.ndarray,
    brain: np.ndarray,
    lesions: np.ndarray,
    zooms: tuple[float, float, float],
    params: InsertionParams,
) -> np.ndarray:
    """Voxels where an inserted lesion may be centred.

    Parameters
    ----------
    t1 : np.ndarray
        T1, shape ``(X, Y, Z)``.
    brain, lesions : np.ndarray
        Boolean masks of that shape.
    zooms : tuple of float
        Voxel size in mm.
    params : InsertionParams
        Quantile, erosion and clearance.

    Returns
    -------
    np.ndarray
        Boolean ``(X, Y, Z)``: T1-bright voxels more than ``erosion_mm`` inside the brain and
        more than ``clearance_mm`` from ``lesions`` (Euclidean, in mm).
    """
    deep = ndimage.distance_transform_edt(brain, sampling=zooms) > params.erosion_mm
    bright = t1 > np.quantile(t1[brain], params.white_matter_quantile)
    far = (
        ndimage.distance_transform_edt(~lesions, sampling=zooms) > params.clearance_mm
        if lesions.any()
        else np.ones_like(brain)
    )
    return deep & bright & far


def insert_lesions(
    rng: np.random.Generator,
    images: dict[str, np.ndarray],
    lesions: np.ndarray,
    brain: np.ndarray,
    zooms: tuple[float, float, float],
    count: int,
    params: InsertionParams | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, list[dict]]:
    """Insert ``count`` small labelled lesions into the white matter of a real scan.

    Parameters
    ----------
    rng : np.random.Generator
        Source of sites, sizes, shapes and severities.
    images : dict
        Channel name (``"flair"``, ``"t1"``, ``"t2"``) to image, each ``(X, Y, Z)``; a ``"t1"``
        is needed to find the white matter. Other names are refused.
    lesions : np.ndarray
        Reference lesion mask ``(X, Y, Z)``, bool or 0/1.
    brain : np.ndarray
        Brain mask ``(X, Y, Z)``.
    zooms : tuple of float
        Voxel size in mm (the scan's grid, any orientation).
    count : int
        Lesions to insert, at least 1. Fewer are inserted when the white matter runs out of
        sites far enough apart; ``info`` says how many.
    params : InsertionParams, optional
        Ranges (default :class:`InsertionParams`'s).

    Returns
    -------
    images : dict
        New float32 arrays, the same channels.
    lesions : np.ndarray
        uint8 ``(X, Y, Z)``: the reference lesions plus the inserted ones.
    info : list of dict
        One per inserted lesion: centre voxel, nominal volume, labelled voxels, severity.

    Raises
    ------
    ValueError
        No T1, an unknown channel, shapes that differ, ``count < 1``, or no white matter.
    """
    params = params or InsertionParams()
    if "t1" not in images:
        raise ValueError(
            f"insert_lesions needs a T1 to find the white matter, got channels {sorted(images)}"
        )
    unknown = sorted(set(images) - set(INSERTED_CONTRAST))
    if unknown:
        raise ValueError(
            f"insert_lesions: expected channels among {sorted(INSERTED_CONTRAST)}, got {unknown}"
        )
    shape = lesions.shape
    shapes = {name: image.shape for name, image in images.items()}
    if len(shape) != 3 or brain.shape != shape or any(s != shape for s in shapes.values()):
        raise ValueError(
            f"insert_lesions: expected 3D images and masks of one shape, got lesions {shape}, "
            f"brain {brain.shape} and images {shapes}"
        )
    if count < 1:
        raise ValueError(f"insert_lesions: expected count >= 1, got {count}")
    brain = brain.astype(bool)
    labels = lesions > 0.5
    if not brain.any():
        raise ValueError("insert_lesions: the brain mask is empty")
    sites = white_matter_sites(images["t1"], brain, labels, zooms, params)
    if not sites.any():
        raise ValueError(
            "insert_lesions: no white matter to put lesions in (no T1-bright voxel deep in the "
            "brain and away from the lesions)"
        )
    out = {name: np.asarray(image, dtype=np.float32).copy() for name, image in images.items()}
    mask = labels.astype(np.uint8)
    zooms_arr = np.asarray(zooms, dtype=np.float64)
    affine = np.diag([*zooms_arr, 1.0])  # voxel -> mm, axis-aligned: all blob_lesion needs
    candidates = np.argwhere(sites)
    order = rng.permutation(len(candidates))
    gap_vox = params.clearance_mm / zooms_arr
    placed: list[np.ndarray] = []
    info: list[dict] = []
    lo, hi = np.log(params.volume_mm3)
    for index in order:
        if len(info) == count:
            break
        centre = candidates[index]
        if any(np.all(np.abs(centre - q) < gap_vox + 4.0 / zooms_arr) for q in placed):
            continue
        volume = float(np.exp(rng.uniform(lo, hi)))
        box, weight, _ = blob_lesion(rng, centre * zooms_arr, volume, None, affine, shape)
        weight = weight * brain[box]
        if (weight >= 0.5).sum() < 1:
            continue
        severity = float(rng.uniform(*params.severity))
        for name, image in out.items():
            low, high = INSERTED_CONTRAST[name]
            factor = low + severity * (high - low)
            image[box] *= 1.0 + weight * (factor - 1.0)
        mask[box] |= (weight >= 0.5).astype(np.uint8)
        placed.append(centre)
        info.append(
            {
                "centre_voxel": [int(v) for v in centre],
                "volume_mm3": round(volume, 1),
                "voxels": int((weight >= 0.5).sum()),
                "severity": round(severity, 3),
            }
        )
    return out, mask, info
