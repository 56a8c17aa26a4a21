"""Random per-subject anatomy: a small affine plus a smooth random displacement field.

A :class:`Deformation` maps a point ``y`` of a subject's world space (mm) to the template point

``x = c + A (y - c) + t + u(y)``

where ``c`` is the centre of the MNI box, ``A`` a rotation times an anisotropic scaling, ``t`` a
translation and ``u`` a smooth displacement: independent Gaussian values on a coarse control
lattice (every ``control_spacing_mm`` mm, in world space) interpolated with cubic B-splines. The
lattice lives in world space, so the same seed gives the same anatomy at any voxel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from napari_fanet.simulation.template import (
    MNI_BOX,
    Template,
    grid_world_coords,
    load_template,
    mni_grid,
    normalise_tissues,
    sample,
)

#: Centre of the MNI box (mm), the pivot of rotations and scalings.
CENTRE = np.array([(lo + hi) / 2.0 for lo, hi in MNI_BOX])


@dataclass(frozen=True)
class DeformationParams:
    """Ranges of the random deformation.

    Attributes
    ----------
    max_rotation_deg : float
        Each Euler angle is uniform in ``[-max, max]`` degrees.
    scale_range : tuple of float
        Global scale factor range.
    axis_scale_jitter : float
        Each axis is further scaled by a factor uniform in ``1 +- axis_scale_jitter``.
    max_translation_mm : float
        Each translation component is uniform in ``[-max, max]`` mm.
    displacement_std_mm : float
        Standard deviation of the control-point displacements (mm).
    control_spacing_mm : float
        Spacing of the control lattice (mm); larger means smoother.
    """

    max_rotation_deg: float = 8.0
    scale_range: tuple[float, float] = (0.92, 1.08)
    axis_scale_jitter: float = 0.03
    max_translation_mm: float = 4.0
    displacement_std_mm: float = 2.5
    control_spacing_mm: float = 20.0

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        checks = {
            "max_rotation_deg": 0 <= self.max_rotation_deg <= 45,
            "scale_range": 0.5 <= lo <= hi <= 2.0,
            "axis_scale_jitter": 0 <= self.axis_scale_jitter <= 0.2,
            "max_translation_mm": 0 <= self.max_translation_mm <= 30,
            "displacement_std_mm": 0 <= self.displacement_std_mm <= 10,
            "control_spacing_mm": 5 <= self.control_spacing_mm <= 100,
        }
        limits = {
            "max_rotation_deg": "in [0, 45]",
            "scale_range": "(lo, hi) with 0.5 <= lo <= hi <= 2",
            "axis_scale_jitter": "in [0, 0.2]",
            "max_translation_mm": "in [0, 30]",
            "displacement_std_mm": "in [0, 10]",
            "control_spacing_mm": "in [5, 100]",
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name} must be {limits[name]}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Deformation:
    """A subject-to-template mapping (see the module docstring).

    Attributes
    ----------
    matrix : np.ndarray
        ``A``, 3x3.
    translation : np.ndarray
        ``t`` in mm, shape ``(3,)``.
    control_coeffs : np.ndarray
        Cubic B-spline coefficients of ``u`` on the control lattice, shape ``(3, nx, ny, nz)``.
    control_affine : np.ndarray
        4x4 voxel-to-world affine of the control lattice.
    """

    matrix: np.ndarray
    translation: np.ndarray
    control_coeffs: np.ndarray
    control_affine: np.ndarray

    def displacement(self, world: np.ndarray) -> np.ndarray:
        """``u(y)`` in mm at world points ``world`` (shape ``(3, ...)``)."""
        inv = np.linalg.inv(self.control_affine)
        pts = world.reshape(3, -1)
        vox = inv[:3, :3] @ pts + inv[:3, 3:4]
        out = np.stack(
            [
                ndi.map_coordinates(c, vox, order=3, mode="nearest", prefilter=False)
                for c in self.control_coeffs
            ]
        )
        return out.reshape(world.shape).astype(np.float32)

    def __call__(self, world: np.ndarray) -> np.ndarray:
        """Template coordinates (mm) of subject world points ``world`` (shape ``(3, ...)``)."""
        pts = world.reshape(3, -1).astype(np.float64)
        centre = CENTRE[:, None]
        mapped = centre + self.matrix @ (pts - centre) + self.translation[:, None]
        mapped = mapped.reshape(world.shape) + self.displacement(world)
        return mapped.astype(np.float32)


def identity_deformation() -> Deformation:
    """The deformation that maps every point to itself."""
    return random_deformation(
        np.random.default_rng(0),
        DeformationParams(
            max_rotation_deg=0.0,
            scale_range=(1.0, 1.0),
            axis_scale_jitter=0.0,
            max_translation_mm=0.0,
            displacement_std_mm=0.0,
        ),
    )


def random_deformation(
    rng: np.random.Generator,
    params: DeformationParams | None = None,
) -> Deformation:
    """Draw a random :class:`Deformation`.

    Parameters
    ----------
    rng : np.random.Generator
        Source of randomness (the draw is deterministic given its state).
    params : DeformationParams, optional
        Ranges; defaults to ``DeformationParams()``.

    Returns
    -------
    Deformation
        The drawn deformation.
    """
    p = params or DeformationParams()
    angles = rng.uniform(-p.max_rotation_deg, p.max_rotation_deg, size=3)
    jitter = p.axis_scale_jitter
    scale = rng.uniform(*p.scale_range) * rng.uniform(1 - jitter, 1 + jitter, size=3)
    rotation = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    matrix = rotation @ np.diag(scale)
    translation = rng.uniform(-p.max_translation_mm, p.max_translation_mm, size=3)

    spacing = p.control_spacing_mm
    lows = [lo - 2 * spacing for lo, _ in MNI_BOX]
    counts = [int(np.ceil((hi - lo + 4 * spacing) / spacing)) + 1 for lo, hi in MNI_BOX]
    values = rng.standard_normal((3, *counts)) * p.displacement_std_mm
    coeffs = np.stack([ndi.spline_filter(v, order=3, mode="nearest") for v in values])
    control_affine = np.diag([spacing, spacing, spacing, 1.0])
    control_affine[:3, 3] = lows
    return Deformation(
        matrix=matrix,
        translation=translation,
        control_coeffs=coeffs,
        control_affine=control_affine,
    )


@dataclass(frozen=True)
class WarpedAnatomy:
    """Template maps pulled back onto a subject grid.

    Attributes
    ----------
    tissues : Template
        The maps (t1, gm, wm, csf, mask, ventricles) on the subject grid.
    template_world : np.ndarray
        For every subject voxel, its template (MNI) coordinates in mm, shape ``(3, *shape)``;
        structures defined in MNI space (deep grey nuclei) are evaluated there.
    """

    tissues: Template
    template_world: np.ndarray


def warp_template(
    template: Template,
    deformation: Deformation,
    shape: tuple[int, int, int],
    affine: np.ndarray,
) -> WarpedAnatomy:
    """Resample ``template`` through ``deformation`` onto the grid ``(shape, affine)``.

    Parameters
    ----------
    template : Template
        Source maps (for example :func:`~napari_fanet.simulation.template.load_template`).
    deformation : Deformation
        Subject-to-template mapping.
    shape, affine : tuple of int, np.ndarray
        Subject grid.

    Returns
    -------
    WarpedAnatomy
        Maps on the subject grid (trilinear; the mask is the warped mask >= 0.5, and the tissue
        probabilities are renormalised inside it).
    """
    world = grid_world_coords(shape, affine)
    coords = deformation(world)
    maps = {
        key: sample(getattr(template, key), template.affine, coords)
        for key in ("t1", "gm", "wm", "csf", "ventricles")
    }
    mask = sample(template.mask.astype(np.float32), template.affine, coords) >= 0.5
    maps.update(normalise_tissues(maps["gm"], maps["wm"], maps["csf"], mask))
    maps["t1"] = np.where(mask, maps["t1"], 0.0).astype(np.float32)
    return WarpedAnatomy(
        tissues=Template(affine=np.array(affine, dtype=float), mask=mask, **maps),
        template_world=coords,
    )


def random_anatomy(
    rng: np.random.Generator,
    voxel_size: float | tuple[float, float, float] = 2.0,
    params: DeformationParams | None = None,
) -> WarpedAnatomy:
    """A random subject: the shipped template, deformed, on the MNI grid at ``voxel_size``.

    Parameters
    ----------
    rng : np.random.Generator
        Source of the deformation.
    voxel_size : float or tuple of 3 floats
        Voxel size of the subject grid in mm (see :func:`~.template.mni_grid`).
    params : DeformationParams, optional
        Deformation ranges; ``DeformationParams()`` by default.

    Returns
    -------
    WarpedAnatomy
        The subject's tissue maps and their template coordinates.
    """
    shape, affine = mni_grid(voxel_size)
    return warp_template(load_template(), random_deformation(rng, params), shape, affine)
