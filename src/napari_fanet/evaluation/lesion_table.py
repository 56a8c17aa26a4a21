"""One row per MS lesion: size, position, probability, location class and susceptibility.

Lesions are the 26-connected components of a binary mask with at least ``min_size`` voxels,
labelled by :func:`napari_fanet.metrics.segmentation.label_lesions` (the convention of
``shared/EVALUATION.md``), numbered ``1..n`` in scan order.

Location classes (:data:`LOCATION_CLASSES`) come from the shipped 2 mm MNI152 2009 template
(:func:`napari_fanet.simulation.template.load_template`), not from a segmentation of the scan.
The approximation, in the order the classes are tested:

1. **Alignment.** Scan world coordinates (mm) are mapped to MNI by :func:`template_alignment`.
   Default (no brain mask): the identity, i.e. the scan is assumed to be registered to MNI
   space (as the Lesjak et al. 2018 release is; FSL ``flirt`` to MNI152 gives this). With a
   brain mask: a per-axis scale and shift matching the mask's centroid and spread along the
   world axes to the template brain's ("moments"; no rotation, so the scan must be in RAS
   world axes like MNI). That fallback is coarse: on the three MNI-registered Lesjak patients
   it scales by 1.13-1.27 instead of 1 (their skull-stripped masks are smaller than the
   template's brain mask) and moves some lesions between classes.
2. **infratentorial**: the lesion centroid lies below a piecewise-planar tentorium in MNI:
   brainstem (midbrain to medulla) ``|x| <= 15, -45 <= y <= -12, z <= -8`` or cerebellum
   ``y <= -40, z <= -10 - 0.25 |x|`` (mm).
3. **periventricular**: some lesion voxel lies within ``periventricular_mm`` (default 4 mm) of
   the template's lateral ventricles (``ventricles > 0.5``).
4. **juxtacortical** (includes cortical lesions): some lesion voxel lies within
   ``juxtacortical_mm`` (default 2 mm) of cortical grey matter: template ``gm > 0.5``, except
   deep grey matter (GM in the central box ``|x| <= 30, -38 <= y <= 25, -15 <= z <= 22`` farther
   than 7 mm from the brain surface and the sulcal CSF).
5. **deep white matter**: everything else.

Template geometry is an average brain: enlarged ventricles (common in MS) and atrophy move the
true boundaries by millimetres. No per-lesion location reference exists for the real patients
(``shared/data/open-ms-lesjak2017``, MNI-registered); ``scripts/lesion_locations_real.py``
measured there: patient 19's large confluent lesions are 94% periventricular by volume
(4 lesions, 46.9 of 49.8 mL), patient 26's 99%; a 2 mm shift of the scan leaves 84-100% of the
lesions' classes unchanged (mean 89-96% per patient), the moment alignment 60-84%.

With a susceptibility map on the same grid, each lesion also gets its mean susceptibility and
its rim-minus-core contrast: rim = the voxels within ``rim_voxels`` (default 2) 26-connected
dilation steps outside the lesion that belong to no lesion; core = all the lesion's voxels.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_fanet.io.checks import check_same_shape
from napari_fanet.metrics.segmentation import LESION_STRUCTURE, label_lesions

__all__ = [
    "LOCATION_CLASSES",
    "LesionTable",
    "classify_locations",
    "lesion_table",
    "template_alignment",
]

LOCATION_CLASSES = ("periventricular", "juxtacortical", "deep white matter", "infratentorial")
_DEEP_GM_BOX = ((-30.0, 30.0), (-38.0, 25.0), (-15.0, 22.0))
_DEEP_GM_DEPTH_MM = 7.0


@dataclass(frozen=True)
class LesionTable:
    """Lesions of one mask.

    Attributes
    ----------
    labels : np.ndarray
        int32, shape ``(X, Y, Z)``: lesion ``i`` is ``labels == i`` (0: background and
        components smaller than the minimum size).
    rows : tuple of dict
        One dict per lesion, keys :attr:`columns`, in label order.
    columns : tuple of str
        Column names: ``id``, ``volume_ml``, ``n_voxels``, ``centroid_x_mm``,
        ``centroid_y_mm``, ``centroid_z_mm`` (world, through the affine), ``location``, then
        ``max_probability`` and ``mean_probability`` with a probability map, and
        ``mean_chi_ppm`` and ``rim_minus_core_chi_ppm`` with a susceptibility map.
    """

    labels: np.ndarray
    rows: tuple[dict, ...]
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def total_volume_ml(self) -> float:
        """Sum of the lesion volumes (mL)."""
        return float(sum(r["volume_ml"] for r in self.rows))

    def to_csv(self) -> str:
        """The table as CSV text (header line, one line per lesion; floats to 6 digits)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(_cell(row[c]) for c in self.columns)
        return buffer.getvalue()


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _check_affine(affine: np.ndarray) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)) or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise ValueError(f"affine must be a finite invertible 4x4 matrix, got {a.tolist()}")
    return a


def _world(affine: np.ndarray, voxels: np.ndarray) -> np.ndarray:
    """World (mm) coordinates of voxel indices ``(N, 3)`` -> ``(N, 3)``."""
    return voxels @ affine[:3, :3].T + affine[:3, 3]


def template_alignment(brain_mask: np.ndarray | None, affine: np.ndarray) -> np.ndarray:
    """A 4x4 affine from the scan's world (mm) to MNI template world (mm).

    Parameters
    ----------
    brain_mask : np.ndarray or None
        Binary brain mask of the scan, shape ``(X, Y, Z)``. None: the identity (the scan is
        taken to be in MNI space).
    affine : np.ndarray
        4x4 voxel-to-world affine of the scan.

    Returns
    -------
    np.ndarray
        ``(4, 4)``: per world axis, ``mni = t_mean + t_sd / s_sd * (world - s_mean)`` where
        ``s_*`` and ``t_*`` are the centroid and standard deviation of the scan's and the
        template's brain voxels along that axis (no rotation or shear).
    """
    affine = _check_affine(affine)
    if brain_mask is None:
        return np.eye(4)
    mask = np.asarray(brain_mask) > 0
    if mask.ndim != 3 or not mask.any():
        raise ValueError(
            f"brain_mask must be a non-empty 3D array, got shape {mask.shape} with "
            f"{int(mask.sum())} voxels set"
        )
    from napari_fanet.simulation.template import load_template

    template = load_template()
    scan = _world(affine, np.argwhere(mask).astype(np.float64))
    ref = _world(template.affine, np.argwhere(template.mask).astype(np.float64))
    scale = ref.std(axis=0) / np.maximum(scan.std(axis=0), 1e-6)
    out = np.eye(4)
    out[:3, :3] = np.diag(scale)
    out[:3, 3] = ref.mean(axis=0) - scale * scan.mean(axis=0)
    return out


@functools.lru_cache(maxsize=1)
def _template_distances() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance maps (mm) on the 2 mm template: to the lateral ventricles and to the cortex."""
    from napari_fanet.simulation.template import grid_world_coords, load_template

    t = load_template()
    vox = float(np.mean(np.linalg.norm(t.affine[:3, :3], axis=0)))
    ventricles = t.ventricles > 0.5
    to_ventricles = ndi.distance_transform_edt(~ventricles) * vox
    near_ventricles = to_ventricles <= 10.0
    outer = ~t.mask | ((t.csf > 0.5) & ~near_ventricles)
    depth = ndi.distance_transform_edt(~outer) * vox
    world = grid_world_coords(t.shape, t.affine)
    in_box = np.ones(t.shape, dtype=bool)
    for axis, (lo, hi) in enumerate(_DEEP_GM_BOX):
        in_box &= (world[axis] >= lo) & (world[axis] <= hi)
    cortex = (t.gm > 0.5) & ~(in_box & (depth > _DEEP_GM_DEPTH_MM))
    to_cortex = ndi.distance_transform_edt(~cortex) * vox
    return to_ventricles.astype(np.float32), to_cortex.astype(np.float32), t.affine


def _infratentorial(mni: np.ndarray) -> np.ndarray:
    """Whether MNI points ``(N, 3)`` lie below the approximate tentorium (see module doc)."""
    x, y, z = mni[:, 0], mni[:, 1], mni[:, 2]
    brainstem = (np.abs(x) <= 15) & (y >= -45) & (y <= -12) & (z <= -8)
    cerebellum = (y <= -40) & (z <= -10 - 0.25 * np.abs(x))
    return brainstem | cerebellum


def classify_locations(
    labels: np.ndarray,
    affine: np.ndarray,
    *,
    brain_mask: np.ndarray | None = None,
    periventricular_mm: float = 4.0,
    juxtacortical_mm: float = 2.0,
) -> list[str]:
    """Location class of each lesion of ``labels`` (see the module docstring for the rules).

    Parameters
    ----------
    labels : np.ndarray
        int, shape ``(X, Y, Z)``: lesions numbered ``1..n`` (0 background).
    affine : np.ndarray
        4x4 voxel-to-world affine of the scan.
    brain_mask : np.ndarray, optional
        Scan brain mask ``(X, Y, Z)`` for :func:`template_alignment`; None: the scan is taken
        to be in MNI space.
    periventricular_mm, juxtacortical_mm : float
        Distances (mm, >= 0) to the template's lateral ventricles and cortex.

    Returns
    -------
    list of str
        One of :data:`LOCATION_CLASSES` per lesion, in label order.
    """
    for name, value in (
        ("periventricular_mm", periventricular_mm),
        ("juxtacortical_mm", juxtacortical_mm),
    ):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    affine = _check_affine(affine)
    labels = np.asarray(labels)
    to_mni = template_alignment(brain_mask, affine) @ affine
    to_ventricles, to_cortex, t_affine = _template_distances()
    inv = np.linalg.inv(t_affine)
    out = []
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        idx = np.argwhere(labels[box] == i) + [s.start for s in box]
        mni = _world(to_mni, idx.astype(np.float64))
        if _infratentorial(mni.mean(axis=0, keepdims=True))[0]:
            out.append("infratentorial")
            continue
        tvox = (mni @ inv[:3, :3].T + inv[:3, 3]).T  # (3, N) template voxel coordinates
        far = 1e3  # outside the template: far from everything
        if ndi.map_coordinates(to_ventricles, tvox, order=1, cval=far).min() <= periventricular_mm:
            out.append("periventricular")
        elif ndi.map_coordinates(to_cortex, tvox, order=1, cval=far).min() <= juxtacortical_mm:
            out.append("juxtacortical")
        else:
            out.append("deep white matter")
    return out


def lesion_table(
    mask: np.ndarray,
    affine: np.ndarray,
    *,
    probability: np.ndarray | None = None,
    chi: np.ndarray | None = None,
    brain_mask: np.ndarray | None = None,
    min_size: int = 3,
    rim_voxels: int = 2,
    periventricular_mm: float = 4.0,
    juxtacortical_mm: float = 2.0,
) -> LesionTable:
    """Measure every lesion of a mask.

    Parameters
    ----------
    mask : np.ndarray
        Lesion mask ``(X, Y, Z)``; every non-zero voxel is lesion (labels layers may hold
        several values).
    affine : np.ndarray
        4x4 voxel-to-world (mm) affine of the mask's grid.
    probability : np.ndarray, optional
        Lesion probability ``(X, Y, Z)`` on the same grid.
    chi : np.ndarray, optional
        Susceptibility map (ppm) ``(X, Y, Z)`` on the same grid.
    brain_mask : np.ndarray, optional
        Brain mask ``(X, Y, Z)`` for aligning the location template (see
        :func:`template_alignment`).
    min_size : int
        Smallest lesion kept, in voxels (default 3, as ``shared/EVALUATION.md``).
    rim_voxels : int
        Rim thickness for the susceptibility rim (1 or 2 voxels is usual; >= 1).
    periventricular_mm, juxtacortical_mm : float
        Distances of :func:`classify_locations`.

    Returns
    -------
    LesionTable
        The labels and one row per lesion.
    """
    if (
        isinstance(rim_voxels, bool)
        or not isinstance(rim_voxels, (int, np.integer))
        or rim_voxels < 1
    ):
        raise ValueError(f"rim_voxels must be an integer >= 1, got {rim_voxels!r}")
    affine = _check_affine(affine)
    binary = np.asarray(mask) != 0
    extra = {
        k: np.asarray(v)
        for k, v in (("probability", probability), ("chi", chi), ("brain_mask", brain_mask))
        if v is not None
    }
    check_same_shape(mask=binary, **extra)
    labels, _ = label_lesions(binary, min_size=min_size)
    locations = classify_locations(
        labels,
        affine,
        brain_mask=brain_mask,
        periventricular_mm=periventricular_mm,
        juxtacortical_mm=juxtacortical_mm,
    )
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    columns = [
        "id",
        "volume_ml",
        "n_voxels",
        "centroid_x_mm",
        "centroid_y_mm",
        "centroid_z_mm",
        "location",
    ]
    if probability is not None:
        columns += ["max_probability", "mean_probability"]
    if chi is not None:
        columns += ["mean_chi_ppm", "rim_minus_core_chi_ppm"]
    any_lesion = labels > 0
    rows = []
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:  # pragma: no cover - label_lesions numbers lesions without gaps
            continue
        inside = labels[box] == i
        idx = np.argwhere(inside) + [s.start for s in box]
        centre = _world(affine, idx.mean(axis=0, keepdims=True).astype(np.float64))[0]
        row: dict = {
            "id": i,
            "volume_ml": idx.shape[0] * voxel_ml,
            "n_voxels": int(idx.shape[0]),
            "centroid_x_mm": float(centre[0]),
            "centroid_y_mm": float(centre[1]),
            "centroid_z_mm": float(centre[2]),
            "location": locations[i - 1],
        }
        if probability is not None:
            p = extra["probability"][box][inside].astype(np.float64)
            row["max_probability"], row["mean_probability"] = float(p.max()), float(p.mean())
        if chi is not None:
            row.update(_susceptibility(extra["chi"], labels, any_lesion, box, i, rim_voxels))
        rows.append(row)
    return LesionTable(labels=labels, rows=tuple(rows), columns=tuple(columns))


def _susceptibility(
    chi: np.ndarray,
    labels: np.ndarray,
    any_lesion: np.ndarray,
    box: Sequence[slice],
    i: int,
    rim: int,
) -> dict[str, float]:
    """Mean chi of lesion ``i`` and its rim-minus-core contrast (rim: dilation outside lesions)."""
    grown = tuple(
        slice(max(s.start - rim, 0), min(s.stop + rim, n))
        for s, n in zip(box, labels.shape, strict=True)
    )
    lesion = labels[grown] == i
    shell = ndi.binary_dilation(lesion, LESION_STRUCTURE, iterations=rim) & ~any_lesion[grown]
    values = chi[grown].astype(np.float64)
    core = float(values[lesion].mean())
    rim_mean = float(values[shell].mean()) if shell.any() else math.nan
    return {"mean_chi_ppm": core, "rim_minus_core_chi_ppm": rim_mean - core}
