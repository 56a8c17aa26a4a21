"""Structures of the QSM phantom: deep grey nuclei, veins, and the B0 direction.

See :mod:`napari_fanet.simulation.qsm_phantom` for the susceptibility values and their sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

from napari_fanet.simulation._random import ellipsoid_radius, soft_inside, uniform

if TYPE_CHECKING:
    from napari_fanet.simulation.params import QSMParams


@dataclass(frozen=True)
class Nucleus:
    """A deep grey nucleus as an ellipsoid in MNI space (right hemisphere; mirrored)."""

    name: str
    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    chi_range: tuple[float, float]


NUCLEI = (
    Nucleus("caudate", (13.0, 12.0, 10.0), (5.0, 9.0, 8.0), (0.04, 0.08)),
    Nucleus("putamen", (25.0, 2.0, 0.0), (5.0, 14.0, 8.0), (0.03, 0.07)),
    Nucleus("globus_pallidus", (19.0, -4.0, -1.0), (4.0, 8.0, 5.0), (0.10, 0.20)),
    Nucleus("thalamus", (11.0, -18.0, 7.0), (7.0, 12.0, 7.0), (0.00, 0.03)),
    Nucleus("red_nucleus", (5.0, -20.0, -10.0), (3.0, 3.5, 3.5), (0.08, 0.15)),
    Nucleus("substantia_nigra", (11.0, -17.0, -12.0), (3.0, 6.0, 3.0), (0.10, 0.18)),
    Nucleus("dentate_nucleus", (14.0, -57.0, -35.0), (6.0, 8.0, 5.0), (0.08, 0.14)),
)


def random_b0_direction(
    rng: np.random.Generator, max_tilt_deg: float, min_tilt_deg: float = 0.0
) -> np.ndarray:
    """Unit vector uniform over the spherical zone ``min_tilt_deg..max_tilt_deg`` from +z."""
    cos_max = np.cos(np.deg2rad(max_tilt_deg))
    cos_t = rng.uniform(cos_max, np.cos(np.deg2rad(min_tilt_deg)))
    sin_t = np.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    phi = rng.uniform(0.0, 2.0 * np.pi)
    return np.array([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t])


def nuclei_map(
    rng: np.random.Generator, template_world: np.ndarray, edge_mm: float
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Weights and susceptibility of the deep grey nuclei; the drawn value of each nucleus."""
    weight = np.zeros(template_world.shape[1:], dtype=np.float32)
    value = np.zeros_like(weight)
    drawn = {}
    for nucleus in NUCLEI:
        chi = uniform(rng, nucleus.chi_range)
        drawn[nucleus.name] = round(chi, 5)
        for side in (1.0, -1.0):
            centre = np.array(nucleus.centre) * np.array([side, 1.0, 1.0])
            centre = centre + rng.uniform(-1.5, 1.5, size=3)
            axes = np.array(nucleus.semi_axes) * rng.uniform(0.9, 1.1, size=3)
            r = ellipsoid_radius(template_world, centre, axes)
            w = soft_inside(r, float(np.min(axes)), edge_mm)
            new = w > weight
            value[new] = chi
            weight = np.maximum(weight, w)
    return weight, value, drawn


def vein_paths(
    rng: np.random.Generator,
    mask: np.ndarray,
    affine: np.ndarray,
    params: QSMParams,
) -> list[tuple[np.ndarray, float, float]]:
    """Random smooth curves inside the brain: ``(points (n, 3) mm, radius mm, chi)``."""
    inv = np.linalg.inv(affine)
    candidates = np.argwhere(mask)
    n_veins = int(rng.integers(params.n_veins[0], params.n_veins[1] + 1))
    step = 0.5
    paths = []
    for _ in range(n_veins):
        start = candidates[rng.integers(len(candidates))]
        point = affine[:3, :3] @ start + affine[:3, 3]
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        n_steps = int(uniform(rng, params.vein_length_mm) / step)
        points = [point]
        for _ in range(n_steps):
            direction = direction + 0.12 * rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            point = point + step * direction
            ijk = np.round(inv[:3, :3] @ point + inv[:3, 3]).astype(int)
            if np.any(ijk < 0) or np.any(ijk >= mask.shape) or not mask[tuple(ijk)]:
                break
            points.append(point)
        paths.append(
            (np.array(points), uniform(rng, params.vein_radius_mm), uniform(rng, params.vein_chi))
        )
    return paths


def vein_map(
    paths: list[tuple[np.ndarray, float, float]],
    mask: np.ndarray,
    affine: np.ndarray,
    edge_mm: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Partial-volume weight and susceptibility of the veins on the grid."""
    weight = np.zeros(mask.shape, dtype=np.float32)
    value = np.zeros(mask.shape, dtype=np.float32)
    if not paths:
        return weight, value
    points = np.concatenate([p for p, _, _ in paths])
    radius = np.concatenate([np.full(len(p), r) for p, r, _ in paths])
    chi = np.concatenate([np.full(len(p), c) for p, _, c in paths])
    idx = np.argwhere(mask)
    world = (affine[:3, :3] @ idx.T + affine[:3, 3:4]).T
    reach = float(radius.max()) + edge_mm
    dist, nearest = cKDTree(points).query(world, distance_upper_bound=reach)
    hit = np.isfinite(dist)
    d, j = dist[hit], nearest[hit]
    w = np.clip(0.5 + (radius[j] - d) / edge_mm, 0.0, 1.0)
    sel = tuple(idx[hit].T)
    weight[sel] = w
    value[sel] = chi[j]
    return weight, value
