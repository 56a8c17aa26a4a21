"""Extra susceptibility sources of the QSM phantom: geometric shapes, haemorrhages, calcifications.

These extend the anatomical phantom (:mod:`napari_fanet.simulation.qsm_phantom`) over the whole
physical range of susceptibility:

==================  ==================  ==========================================================
source              chi (ppm)           shape
==================  ==================  ==========================================================
geometric           +-(lo .. hi)        spheres, ellipsoids (up to 3:1) and finite cylinders at
                                        random orientation and size; the sign is random
haemorrhage         0.5 .. 1.0          an irregular blob (ellipsoid with a smooth random border)
calcification       -0.5 .. -0.1        a small sphere or ellipsoid
==================  ==================  ==========================================================

Haemorrhage values follow from the paramagnetic iron of blood products (deoxy- and
methaemoglobin, haemosiderin: several tenths of a ppm up to about 1 ppm in acute to subacute
bleeds), calcifications are diamagnetic (about -0.1 to -0.5 ppm relative to tissue); both are
rounded ranges of the kind reported in clinical QSM reviews (e.g. Liu et al., JMRI 2015,
"Quantitative susceptibility mapping: current status and future directions"). Every source is a
partial-volume weight ``w`` (1 inside, 0 outside, linear over one voxel across the border) and a
value; the phantom replaces the tissue value by ``(1 - w) chi + w value``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_fanet.simulation._random import (
    ellipsoid_radius,
    lattice_field,
    random_rotation,
    soft_inside,
    uniform,
)

SHAPES = ("sphere", "ellipsoid", "cylinder")


@dataclass(frozen=True)
class SourceParams:
    """How many extra sources a phantom draws, and their ranges (ppm, mm).

    The defaults draw none, so a phantom without them is unchanged.

    Attributes
    ----------
    n_geometric : tuple of int
        Range (inclusive) of the number of geometric sources.
    geometric_chi : tuple of float
        Range of the magnitude of their susceptibility; the sign is drawn per source.
    geometric_radius_mm : tuple of float
        Range of their radius (the largest semi-axis of an ellipsoid, the radius of a cylinder).
    p_haemorrhage : float
        Probability of one haemorrhage.
    haemorrhage_chi, haemorrhage_radius_mm : tuple of float
        Its value and mean radius ranges.
    n_calcifications : tuple of int
        Range (inclusive) of the number of calcifications.
    calcification_chi, calcification_radius_mm : tuple of float
        Their value and radius ranges.
    """

    n_geometric: tuple[int, int] = (0, 0)
    geometric_chi: tuple[float, float] = (0.05, 0.4)
    geometric_radius_mm: tuple[float, float] = (2.0, 12.0)
    p_haemorrhage: float = 0.0
    haemorrhage_chi: tuple[float, float] = (0.5, 1.0)
    haemorrhage_radius_mm: tuple[float, float] = (6.0, 14.0)
    n_calcifications: tuple[int, int] = (0, 0)
    calcification_chi: tuple[float, float] = (-0.5, -0.1)
    calcification_radius_mm: tuple[float, float] = (1.5, 4.0)

    def __post_init__(self) -> None:
        for name in ("n_geometric", "n_calcifications"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 0 <= lo <= hi, got {(lo, hi)}")
        if not 0.0 <= self.p_haemorrhage <= 1.0:
            raise ValueError(f"p_haemorrhage must be in [0, 1], got {self.p_haemorrhage}")
        for name in ("geometric_radius_mm", "haemorrhage_radius_mm", "calcification_radius_mm"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi:
                raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi, got {(lo, hi)}")

    @property
    def any(self) -> bool:
        """Whether any source can be drawn."""
        return self.n_geometric[1] > 0 or self.p_haemorrhage > 0 or self.n_calcifications[1] > 0


def _centre_inside(rng: np.random.Generator, world: np.ndarray, mask: np.ndarray) -> np.ndarray:
    inside = np.argwhere(mask)
    ijk = inside[rng.integers(len(inside))]
    return world[(slice(None), *ijk)]


def _cylinder_weight(
    world: np.ndarray,
    centre: np.ndarray,
    axis: np.ndarray,
    radius: float,
    half: float,
    edge: float,
) -> np.ndarray:
    d = world.reshape(3, -1) - centre[:, None].astype(np.float32)  # (3, N) mm
    along = axis.astype(np.float32) @ d  # (N,)
    across = np.sqrt(np.maximum(np.sum(d * d, axis=0) - along * along, 0.0))  # (N,)
    w_r = np.clip(0.5 + (radius - across) / edge, 0.0, 1.0)
    w_l = np.clip(0.5 + (half - np.abs(along)) / edge, 0.0, 1.0)
    return (w_r * w_l).reshape(world.shape[1:]).astype(np.float32)


def geometric_source(
    rng: np.random.Generator,
    world: np.ndarray,
    mask: np.ndarray,
    params: SourceParams,
    edge: float,
) -> tuple[np.ndarray, float, dict]:
    """One sphere, ellipsoid or cylinder: weight ``(X, Y, Z)``, value (ppm), description."""
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    radius = uniform(rng, params.geometric_radius_mm)
    value = uniform(rng, params.geometric_chi) * (1.0 if rng.random() < 0.5 else -1.0)
    centre = _centre_inside(rng, world, mask)
    rotation = random_rotation(rng)
    if shape == "cylinder":
        half = radius * rng.uniform(1.5, 5.0)
        weight = _cylinder_weight(world, centre, rotation[:, 0], radius, half, edge)
    else:
        axes = np.full(3, radius) if shape == "sphere" else radius * rng.uniform(0.33, 1.0, 3)
        if shape == "ellipsoid":
            axes[0] = radius
        weight = soft_inside(
            ellipsoid_radius(world, centre, axes, rotation), float(axes.min()), edge
        )
    info = {"shape": shape, "radius_mm": round(radius, 3), "chi_ppm": round(value, 5)}
    return weight, value, info


def blob_source(
    rng: np.random.Generator,
    world: np.ndarray,
    mask: np.ndarray,
    chi_range: tuple[float, float],
    radius_range: tuple[float, float],
    edge: float,
    *,
    irregular: bool,
) -> tuple[np.ndarray, float, dict]:
    """A haemorrhage (``irregular``) or a calcification: weight, value (ppm), description."""
    radius = uniform(rng, radius_range)
    value = uniform(rng, chi_range)
    centre = _centre_inside(rng, world, mask)
    axes = radius * rng.uniform(0.7, 1.3, 3)
    r = ellipsoid_radius(world, centre, axes, random_rotation(rng))
    if irregular:  # a smooth random border: the radius is perturbed by up to about 25 %
        r = r * (1.0 + 0.25 * lattice_field(rng, world, max(radius / 2.0, 2.0)))
    weight = soft_inside(r, float(axes.min()), edge)
    return weight, value, {"radius_mm": round(radius, 3), "chi_ppm": round(value, 5)}


def random_sources(
    rng: np.random.Generator,
    world: np.ndarray,
    mask: np.ndarray,
    params: SourceParams,
    edge_mm: float,
) -> tuple[list[tuple[np.ndarray, float]], dict]:
    """Draw the extra sources of one phantom.

    Parameters
    ----------
    rng : np.random.Generator
        The phantom's ``sources`` stream.
    world : np.ndarray
        ``(3, X, Y, Z)`` world coordinates (mm) of the grid.
    mask : np.ndarray
        ``(X, Y, Z)`` brain mask; every source is centred inside it.
    params : SourceParams
        Counts and ranges.
    edge_mm : float
        Partial-volume border width (about one voxel).

    Returns
    -------
    sources : list of (np.ndarray, float)
        ``(weight (X, Y, Z), value ppm)`` in drawing order (later ones lie on top).
    info : dict
        JSON-ready description of what was drawn.
    """
    sources: list[tuple[np.ndarray, float]] = []
    info: dict = {"geometric": [], "haemorrhage": [], "calcification": []}
    if not params.any or not mask.any():
        return sources, info

    def add(kind: str, drawn: tuple[np.ndarray, float, dict]) -> None:
        weight, value, desc = drawn
        sources.append((weight, value))
        info[kind].append(desc)

    n_geo = int(rng.integers(params.n_geometric[0], params.n_geometric[1] + 1))
    for _ in range(n_geo):
        add("geometric", geometric_source(rng, world, mask, params, edge_mm))
    blob = (world, mask)
    if rng.random() < params.p_haemorrhage:
        ranges = (params.haemorrhage_chi, params.haemorrhage_radius_mm)
        add("haemorrhage", blob_source(rng, *blob, *ranges, edge_mm, irregular=True))
    n_calc = int(rng.integers(params.n_calcifications[0], params.n_calcifications[1] + 1))
    for _ in range(n_calc):
        ranges = (params.calcification_chi, params.calcification_radius_mm)
        add("calcification", blob_source(rng, *blob, *ranges, edge_mm, irregular=False))
    return sources, info
