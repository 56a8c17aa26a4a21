"""MS lesions and the normal periventricular FLAIR rim (caps and bands) of the MS phantom."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_fanet.simulation._random import (
    ellipsoid_radius,
    lattice_field,
    random_rotation,
    soft_inside,
    uniform,
)
from napari_fanet.simulation.template import Template

if TYPE_CHECKING:
    from napari_fanet.simulation.params import MSParams

LESION_KINDS = ("periventricular", "deep", "juxtacortical")


def _lesion_axes(rng: np.random.Generator, volume_mm3: float) -> np.ndarray:
    """Semi-axes (long axis first) of an ovoid of the given volume, elongated up to 2:1."""
    r0 = (3.0 * volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    elong = rng.uniform(1.0, 2.0)
    squash = rng.uniform(0.8, 1.25)
    axes = r0 * np.array(
        [elong ** (2 / 3), elong ** (-1 / 3) * squash, elong ** (-1 / 3) / squash]
    )
    return axes


def _rotation_with_axis(rng: np.random.Generator, axis: np.ndarray) -> np.ndarray:
    """A rotation whose first column is ``axis`` (normalised), random about it."""
    a = axis / max(float(np.linalg.norm(axis)), 1e-9)
    helper = rng.standard_normal(3)
    b = helper - a * float(helper @ a)
    b /= max(float(np.linalg.norm(b)), 1e-9)
    return np.stack([a, b, np.cross(a, b)], axis=1)


def place_lesions(
    rng: np.random.Generator,
    p: MSParams,
    tissues: Template,
    world: np.ndarray,
    vent_dist: np.ndarray,
    depth: np.ndarray,
    irregular: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Draw lesions; returns the partial-volume weight, the severity map and a description."""
    shape = tissues.mask.shape
    affine = tissues.affine
    vox = np.linalg.norm(affine[:3, :3], axis=0)
    edge_mm = float(np.mean(vox))
    wm, gm, csf, mask = tissues.wm, tissues.gm, tissues.csf, tissues.mask
    pools = {
        "periventricular": np.flatnonzero((wm > 0.6) & (vent_dist > 1.5) & (vent_dist <= 8.0)),
        "deep": np.flatnonzero((wm > 0.85) & (vent_dist > 8.0) & (depth > 10.0)),
        "juxtacortical": np.flatnonzero(
            (wm > 0.5) & (wm < 0.85) & (gm > 0.15) & (vent_dist > 8.0) & (depth > 4.0)
        ),
    }
    grad = np.stack(np.gradient(vent_dist, *vox)) if pools["periventricular"].size else None
    weights = np.asarray(p.kind_weights, dtype=float)
    weights = weights * np.array([pools[k].size > 0 for k in LESION_KINDS])
    weight = np.zeros(shape, dtype=np.float32)
    severity = np.zeros(shape, dtype=np.float32)
    lesions: list[dict] = []
    n_target = int(rng.integers(p.n_lesions[0], p.n_lesions[1] + 1))
    if weights.sum() == 0:
        return weight, severity, lesions
    weights /= weights.sum()
    min_vox = 3
    for _ in range(n_target):
        for _attempt in range(20):
            kind = LESION_KINDS[int(rng.choice(3, p=weights))]
            volume = float(
                np.clip(
                    p.lesion_volume_median_mm3
                    * np.exp(p.lesion_volume_sigma * rng.standard_normal()),
                    *p.lesion_volume_range_mm3,
                )
            )
            axes = _lesion_axes(rng, volume)
            flat = int(pools[kind][rng.integers(pools[kind].size)])
            ijk = np.array(np.unravel_index(flat, shape))
            if kind == "periventricular":
                rot = _rotation_with_axis(rng, grad[(slice(None), *ijk)])
            else:
                rot = random_rotation(rng)
            centre = affine[:3, :3] @ (ijk + rng.uniform(-0.5, 0.5, 3)) + affine[:3, 3]
            reach = np.ceil((axes.max() * 1.5 + 2 * edge_mm) / vox).astype(int)
            lo = np.maximum(ijk - reach, 0)
            hi = np.minimum(ijk + reach + 1, shape)
            box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            r = ellipsoid_radius(world[(slice(None), *box)], centre, axes, rot)
            r = r * (1.0 + 0.2 * irregular[box])
            w = soft_inside(r, float(np.mean(axes)), edge_mm) * (1.0 - csf[box]) * mask[box]
            n_vox = int(np.count_nonzero(w >= 0.5))
            if n_vox >= min_vox:
                break
        else:
            continue
        s = float(rng.uniform(0.0, 1.0))
        new = w > weight[box]
        severity[box][new] = s
        weight[box] = np.maximum(weight[box], w)
        lesions.append(
            {
                "kind": kind,
                "centre_mm": [round(float(c), 2) for c in centre],
                "semi_axes_mm": [round(float(a), 2) for a in axes],
                "volume_mm3": round(volume, 1),
                "voxels": n_vox,
                "severity": round(s, 4),
            }
        )
    return weight, severity, lesions


def periventricular_rim(
    rng: np.random.Generator,
    p: MSParams,
    vent_dist: np.ndarray,
    template_y: np.ndarray,
    world: np.ndarray,
    voxel_size: tuple[float, float, float],
) -> tuple[np.ndarray, dict]:
    """Normal periventricular FLAIR rim: caps at the horns, thinner bands along the bodies.

    Parameters
    ----------
    rng : np.random.Generator
        Source of the rim parameters and of its patchiness.
    p : MSParams
        Ranges (``cap_contrast``, ``band_contrast``, ``cap_thickness_mm``).
    vent_dist : np.ndarray
        Distance (mm) from each voxel centre to the nearest ventricle voxel (0 inside).
    template_y : np.ndarray
        Template (MNI) y coordinate of each voxel, which locates the horns.
    world : np.ndarray
        World coordinates of the voxels, shape ``(3, *shape)``.
    voxel_size : tuple of float
        Voxel size in mm.

    Returns
    -------
    strength : np.ndarray
        Rim brightness relative to the WM intensity, float32.
    info : dict
        The drawn parameters.
    """
    cap = uniform(rng, p.cap_contrast)
    band = uniform(rng, p.band_contrast)
    thickness = uniform(rng, p.cap_thickness_mm)
    front = uniform(rng, (2.0, 10.0))
    back = uniform(rng, (-42.0, -32.0))
    horns = 1.0 / (1.0 + np.exp(-(template_y - front) / 4.0)) + 1.0 / (
        1.0 + np.exp(-(back - template_y) / 4.0)
    )
    patchy = np.clip(1.0 + 0.35 * lattice_field(rng, world, 8.0), 0.2, 2.0)
    # vent_dist is measured between voxel centres: the first voxel outside the ventricle is
    # about half a voxel from its wall and gets the full strength.
    half_voxel = 0.5 * float(np.mean(voxel_size))
    wall = np.maximum(vent_dist - half_voxel, 0.0)
    profile = np.where(vent_dist > 0, np.exp(-wall / thickness), 0.0)
    strength = (band + cap * np.clip(horns, 0.0, 1.0)) * patchy * profile
    info = {
        "cap_contrast": round(cap, 4),
        "band_contrast": round(band, 4),
        "thickness_mm": round(thickness, 3),
    }
    return strength.astype(np.float32), info
