"""Rotate QSM volumes so that B0 lies along the array's third axis, and back.

A network that only sees the local field cannot know the direction of B0, which sets the dipole
kernel it must invert. As in oblique-acquisition corrections for QSM networks, the field is
resampled (about the volume centre, in millimetres, so anisotropic voxels are handled) into a
frame where B0 is the array's z axis; the network predicts susceptibility there, and the map is
rotated back onto the input grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_fanet.io.b0_direction import B0Direction

Z_AXIS = np.array([0.0, 0.0, 1.0])


def fold_b0_sign(b0_dir: Sequence[float]) -> np.ndarray:
    """The unit B0 direction with its sign folded: ``b0`` or ``-b0``, whichever points to +z.

    The dipole kernel depends on ``(k . b0)^2`` only, so ``b0`` and ``-b0`` describe the same
    physics and must give the same map. Folding the sign before choosing the rotation into the
    network's frame makes both take the same (smallest) rotation, instead of turning ``-z`` into
    a 180-degree rotation that shows the network an upside-down brain. A direction in the
    x-y plane is folded so that its first non-zero component is positive.
    """
    b0 = np.asarray(B0Direction(b0_dir).unit())
    for component in b0[::-1]:  # z first, then y, then x
        if abs(component) > 1e-12:
            return b0 if component > 0 else -b0
    return b0


def rotation_to_z(b0_dir: Sequence[float]) -> np.ndarray:
    """The smallest rotation ``R`` (3x3) with ``R @ b0 = z`` (Rodrigues' formula).

    ``b0`` pointing to ``-z`` gives a 180-degree rotation; callers that treat ``b0`` and
    ``-b0`` alike fold the sign first (:func:`fold_b0_sign`), as :func:`align_to_b0` does.
    """
    b0 = np.asarray(B0Direction(b0_dir).unit())
    axis = np.cross(b0, Z_AXIS)
    s, c = np.linalg.norm(axis), float(b0 @ Z_AXIS)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def rotate_volume(
    volume: np.ndarray, rotation: np.ndarray, voxel_size: Sequence[float], *, order: int = 3
) -> np.ndarray:
    """Resample ``volume`` ``(X, Y, Z)`` rotated by ``rotation`` (mm space, about the centre).

    The value at output position ``p`` (mm from the centre) is the input's value at
    ``rotation.T @ p``: a structure at ``q`` in the input appears at ``rotation @ q``.
    """
    scale = np.diag(np.asarray(voxel_size, dtype=np.float64))
    matrix = np.linalg.inv(scale) @ rotation.T @ scale  # output voxel -> input voxel (linear)
    centre = (np.asarray(volume.shape, dtype=np.float64) - 1) / 2
    offset = centre - matrix @ centre
    out = ndimage.affine_transform(
        volume.astype(np.float64), matrix, offset=offset, order=order, mode="constant"
    )
    return out.astype(np.float32)


def align_to_b0(
    field: np.ndarray,
    mask: np.ndarray,
    b0_dir: Sequence[float],
    voxel_size: Sequence[float],
    chi: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Field, mask (and reference chi) in the frame where B0 is along z; and the rotation.

    The sign of B0 is folded first (:func:`fold_b0_sign`): ``b0`` and ``-b0`` give the same
    frame.
    """
    rot = rotation_to_z(fold_b0_sign(b0_dir))
    mask_r = rotate_volume(mask.astype(np.float32), rot, voxel_size, order=1) > 0.5
    field_r = rotate_volume(field, rot, voxel_size) * mask_r
    chi_r = None if chi is None else rotate_volume(chi, rot, voxel_size) * mask_r
    return field_r, mask_r, chi_r, rot


def rotate_back(chi_aligned: np.ndarray, rotation: np.ndarray, voxel_size) -> np.ndarray:
    """Undo :func:`align_to_b0` for a map predicted in the aligned frame."""
    return rotate_volume(chi_aligned, rotation.T, voxel_size)
