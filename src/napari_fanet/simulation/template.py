"""The shipped MNI152 2009 template (2 mm) and the grids the phantoms are simulated on.

``data/mni152_2009_2mm.npz`` is a small derived copy of the MNI ICBM152 2009a nonlinear
symmetric template (T1 and grey/white matter probabilities, plus a CSF map and a brain mask
computed from them) made by ``scripts/derive_template.py`` from the files nilearn ships; its
copyright notice is ``data/NOTICE-mni152-2009.txt``. Nothing is downloaded at run time.

Coordinates are in millimetres in MNI (RAS) world space. Simulation grids (:func:`mni_grid`)
cover the standard MNI box x in [-90, 90], y in [-126, 90], z in [-72, 108] mm at any voxel size,
with a diagonal RAS affine, so that array axes and world axes coincide.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy import ndimage as ndi

from napari_fanet.io.formatting import format_numbers

TEMPLATE_FILE = "mni152_2009_2mm.npz"
NOTICE_FILE = "NOTICE-mni152-2009.txt"
#: The MNI bounding box (min, max) in mm per world axis (x: left-right, y: back-front, z: up).
MNI_BOX = ((-90.0, 90.0), (-126.0, 90.0), (-72.0, 108.0))
TISSUES = ("gm", "wm", "csf")
# Box (MNI mm) that the bodies of both lateral ventricles fill; used to pick them out.
_LATERAL_VENTRICLE_BOX = ((8.0, 30.0), (-40.0, 10.0), (5.0, 30.0))


@dataclass(frozen=True)
class Template:
    """Tissue maps on a regular RAS grid.

    Attributes
    ----------
    t1 : np.ndarray
        T1-weighted template, float32 in [0, 1].
    gm, wm, csf : np.ndarray
        Tissue probabilities, float32, summing to 1 inside ``mask`` and 0 outside.
    mask : np.ndarray
        Brain mask, bool.
    ventricles : np.ndarray
        Lateral ventricles, float32 in [0, 1] (1 inside).
    affine : np.ndarray
        4x4 voxel-to-world (MNI mm) affine.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray
    ventricles: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(X, Y, Z)``."""
        return self.t1.shape

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def check_voxel_size(voxel_size: float | Sequence[float]) -> tuple[float, float, float]:
    """Return ``voxel_size`` as three positive floats (a scalar means isotropic).

    Raises
    ------
    ValueError
        If it is not one or three finite numbers between 0.25 and 10 mm.
    """
    try:
        values = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"voxel_size must be a number or three numbers in mm, got {voxel_size!r}"
        ) from exc
    if not (np.all(np.isfinite(values)) and np.all(values >= 0.25) and np.all(values <= 10.0)):
        raise ValueError(
            f"voxel_size must be between 0.25 and 10 mm, got {format_numbers(voxel_size)}"
        )
    return tuple(float(v) for v in values)


def mni_grid(voxel_size: float | Sequence[float] = 2.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and RAS affine of a grid covering :data:`MNI_BOX` at ``voxel_size``.

    The grid is centred on the box; at 2 mm it is the standard 91 x 109 x 91 MNI grid with origin
    (-90, -126, -72) mm.

    Parameters
    ----------
    voxel_size : float or sequence of 3 floats
        Voxel size in mm (x, y, z).

    Returns
    -------
    shape : tuple of int
        Grid shape.
    affine : np.ndarray
        4x4 diagonal voxel-to-world affine.
    """
    vox = check_voxel_size(voxel_size)
    shape = []
    affine = np.eye(4)
    for axis, ((lo, hi), v) in enumerate(zip(MNI_BOX, vox, strict=True)):
        n = int(np.floor((hi - lo) / v + 1e-6)) + 1
        shape.append(n)
        affine[axis, axis] = v
        affine[axis, 3] = (lo + hi) / 2.0 - (n - 1) * v / 2.0
    return (shape[0], shape[1], shape[2]), affine


def grid_world_coords(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, shape ``(3, *shape)``, float32."""
    idx = np.indices(tuple(shape), dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3].astype(np.float32) @ idx + affine[:3, 3:4].astype(np.float32)
    return world.reshape(3, *shape)


def sample(
    volume: np.ndarray,
    affine: np.ndarray,
    world: np.ndarray,
    *,
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Interpolate ``volume`` (with voxel-to-world ``affine``) at world points ``world``.

    Parameters
    ----------
    volume : np.ndarray
        3D array.
    affine : np.ndarray
        4x4 voxel-to-world affine of ``volume``.
    world : np.ndarray
        Points in mm, shape ``(3, ...)``.
    order : int
        Spline order (1: trilinear).
    cval : float
        Value outside ``volume``.

    Returns
    -------
    np.ndarray
        float32 array of shape ``world.shape[1:]``.
    """
    inv = np.linalg.inv(affine)
    pts = world.reshape(3, -1).astype(np.float64)
    vox = inv[:3, :3] @ pts + inv[:3, 3:4]
    # Rounding can put a point on the last voxel a hair outside the grid, where "constant"
    # mode returns cval: snap points within 1e-4 voxel of the grid onto it.
    upper = np.asarray(volume.shape, dtype=np.float64)[:, None] - 1.0
    inside = np.clip(vox, 0.0, upper)
    vox = np.where(np.abs(vox - inside) < 1e-4, inside, vox)
    out = ndi.map_coordinates(
        np.asarray(volume, dtype=np.float32), vox, order=order, mode="constant", cval=cval
    )
    return out.reshape(world.shape[1:]).astype(np.float32, copy=False)


def _lateral_ventricles(csf: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Lateral ventricles: the CSF component, deep in the brain, filling the ventricle box."""
    vox = float(np.mean(np.linalg.norm(affine[:3, :3], axis=0)))
    depth = ndi.distance_transform_edt(mask) * vox
    deep_csf = (csf > 0.5) & (depth > 10.0)
    labels, n = ndi.label(deep_csf)
    if n == 0:
        return np.zeros(csf.shape, dtype=np.float32)
    world = grid_world_coords(csf.shape, affine)
    (x0, x1), (y0, y1), (z0, z1) = _LATERAL_VENTRICLE_BOX
    in_box = (
        (np.abs(world[0]) >= x0)
        & (np.abs(world[0]) <= x1)
        & (world[1] >= y0)
        & (world[1] <= y1)
        & (world[2] >= z0)
        & (world[2] <= z1)
    )
    counts = np.bincount(labels[in_box & deep_csf], minlength=n + 1)
    counts[0] = 0
    return (labels == int(np.argmax(counts))).astype(np.float32)


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """Load the shipped 2 mm template (cached; the arrays are read-only).

    Returns
    -------
    Template
        The 91 x 109 x 91 template at 2 mm.
    """
    path = resources.files(__package__).joinpath("data").joinpath(TEMPLATE_FILE)
    with resources.as_file(path) as file, np.load(file) as npz:
        raw = {key: npz[key] for key in ("t1", "gm", "wm", "csf", "mask")}
        affine = np.array(npz["affine"], dtype=np.float64)
    mask = raw["mask"].astype(bool)
    maps = {key: raw[key].astype(np.float32) / 255.0 for key in ("t1", *TISSUES)}
    # Quantisation leaves sums slightly off 1: renormalise inside the mask.
    maps.update(normalise_tissues(maps["gm"], maps["wm"], maps["csf"], mask))
    ventricles = _lateral_ventricles(maps["csf"], mask, affine)
    arrays = {**maps, "mask": mask, "ventricles": ventricles}
    for arr in arrays.values():
        arr.flags.writeable = False
    affine.flags.writeable = False
    return Template(affine=affine, **arrays)


def template_notice() -> str:
    """The copyright notice of the MNI152 2009 template (shipped next to the data)."""
    return (
        resources.files(__package__)
        .joinpath("data")
        .joinpath(NOTICE_FILE)
        .read_text(encoding="utf-8")
    )


def resample_template(voxel_size: float | Sequence[float] = 2.0) -> Template:
    """The template on :func:`mni_grid` at ``voxel_size`` (trilinear, no deformation).

    Parameters
    ----------
    voxel_size : float or sequence of 3 floats
        Voxel size in mm.

    Returns
    -------
    Template
        Maps on the new grid (the mask is the resampled mask >= 0.5).
    """
    template = load_template()
    shape, affine = mni_grid(voxel_size)
    world = grid_world_coords(shape, affine)
    maps = {
        key: sample(getattr(template, key), template.affine, world)
        for key in ("t1", *TISSUES, "ventricles")
    }
    mask = sample(template.mask.astype(np.float32), template.affine, world) >= 0.5
    maps.update(normalise_tissues(maps["gm"], maps["wm"], maps["csf"], mask))
    return Template(affine=affine, mask=mask, **maps)


def normalise_tissues(
    gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, mask: np.ndarray
) -> dict[str, np.ndarray]:
    """Rescale interpolated tissue maps to sum to 1 inside ``mask`` (0 outside).

    Voxels of ``mask`` where all three are 0 (at the edge of the brain) become CSF.

    Returns
    -------
    dict
        ``{"gm": ..., "wm": ..., "csf": ...}``, float32.
    """
    total = gm + wm + csf
    empty = mask & (total < 1e-3)
    scale = np.where(mask & ~empty, 1.0 / np.maximum(total, 1e-3), 0.0).astype(np.float32)
    out = {"gm": gm * scale, "wm": wm * scale, "csf": csf * scale}
    out["csf"] = np.where(empty, 1.0, out["csf"]).astype(np.float32)
    return out
