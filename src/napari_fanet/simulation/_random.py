"""Random building blocks shared by the phantoms: seeded streams, smooth fields, shapes, noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi


def check_seed(seed: int) -> int:
    """Return ``seed`` if it is an integer in ``[0, 2**63)``.

    Raises
    ------
    TypeError
        If it is not an integer.
    ValueError
        If it is negative or too large.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed!r}")
    return int(seed)


def spawn_streams(seed: int, names: Sequence[str]) -> dict[str, np.random.Generator]:
    """One independent generator per name, all determined by ``seed``.

    Each part of a phantom (anatomy, tissue values, lesions, noise, ...) draws from its own
    stream, so changing how one part uses its stream leaves the others unchanged. Append new
    names at the end to keep the earlier streams as they are.
    """
    children = np.random.SeedSequence(check_seed(seed)).spawn(len(names))
    return {
        name: np.random.default_rng(child) for name, child in zip(names, children, strict=True)
    }


def lattice_field(
    rng: np.random.Generator, world: np.ndarray, spacing_mm: float, *, margin: int = 2
) -> np.ndarray:
    """Smooth random field with unit standard deviation at the world points ``world``.

    Independent standard normal values on a lattice of spacing ``spacing_mm`` (covering the
    points plus ``margin`` cells) are interpolated with cubic B-splines, then the field is
    rescaled to zero mean and unit standard deviation over the points.

    Parameters
    ----------
    rng : np.random.Generator
        Source of the lattice values.
    world : np.ndarray
        Points in mm, shape ``(3, ...)``.
    spacing_mm : float
        Lattice spacing (correlation length) in mm.
    margin : int
        Lattice cells added on each side.

    Returns
    -------
    np.ndarray
        float32 array of shape ``world.shape[1:]``.
    """
    pts = world.reshape(3, -1)
    lo = pts.min(axis=1) - margin * spacing_mm
    hi = pts.max(axis=1) + margin * spacing_mm
    counts = np.ceil((hi - lo) / spacing_mm).astype(int) + 1
    coeffs = rng.standard_normal(tuple(counts))
    vox = (pts - lo[:, None]) / spacing_mm
    out = ndi.map_coordinates(coeffs, vox, order=3, mode="nearest", prefilter=False)
    out = (out - out.mean()) / max(float(out.std()), 1e-12)
    return out.reshape(world.shape[1:]).astype(np.float32)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed random 3x3 rotation matrix."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def ellipsoid_radius(
    world: np.ndarray,
    centre: Sequence[float],
    semi_axes: Sequence[float],
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised ellipsoid radius ``r`` (1 on the surface) at the points ``world``.

    Parameters
    ----------
    world : np.ndarray
        Points in mm, shape ``(3, ...)``.
    centre : sequence of 3 floats
        Centre in mm.
    semi_axes : sequence of 3 floats
        Semi-axes in mm, along the columns of ``rotation``.
    rotation : np.ndarray, optional
        3x3 matrix whose columns are the ellipsoid axes (default: the world axes).

    Returns
    -------
    np.ndarray
        float32 array of shape ``world.shape[1:]``.
    """
    d = world.reshape(3, -1) - np.asarray(centre, dtype=np.float32)[:, None]
    if rotation is not None:
        d = np.asarray(rotation, dtype=np.float32).T @ d
    d = d / np.asarray(semi_axes, dtype=np.float32)[:, None]
    return np.sqrt(np.sum(d * d, axis=0)).reshape(world.shape[1:]).astype(np.float32)


def soft_inside(radius: np.ndarray, scale_mm: float, edge_mm: float) -> np.ndarray:
    """Partial-volume weight of an ellipsoid: 1 inside, 0 outside, 0.5 on the surface.

    ``clip(0.5 + (1 - radius) * scale_mm / edge_mm, 0, 1)``: the weight falls linearly over about
    ``edge_mm`` mm across the surface (``scale_mm`` converts radius units to mm, e.g. the mean
    semi-axis).
    """
    return np.clip(0.5 + (1.0 - radius) * (scale_mm / edge_mm), 0.0, 1.0).astype(np.float32)


def rician(rng: np.random.Generator, signal: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    """Magnitude of ``signal`` plus complex Gaussian noise of standard deviation ``sigma``."""
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """One draw from ``U(bounds[0], bounds[1])`` as a Python float."""
    return float(rng.uniform(bounds[0], bounds[1]))
