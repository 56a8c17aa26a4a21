"""Bring co-registered volumes stored on different voxel grids onto one reference grid.

Scans of one session often come on different grids (a 3D T1 at 1 mm, a 2D FLAIR with 3 mm
slices, a T2 with another field of view). When they are registered in world space (their
affines map voxels to the same scanner or template coordinates), each can be resampled onto the
reference grid through its affine; nibabel's :func:`nibabel.processing.resample_from_to` does
exactly that (voxels outside the source's field of view become 0).
"""

from __future__ import annotations

import numpy as np

from napari_fanet.io.nifti import Volume

GRID_ATOL = 1e-3  # affine entries (mm) within which two grids are the same


def same_grid(a: Volume, b: Volume, *, atol: float = GRID_ATOL) -> bool:
    """Whether ``a`` and ``b`` have the same spatial shape and (nearly) the same affine."""
    return a.shape == b.shape and bool(np.allclose(a.affine, b.affine, rtol=0, atol=atol))


def resample_to_reference(volume: Volume, reference: Volume, *, order: int = 1) -> Volume:
    """``volume`` resampled onto ``reference``'s grid through both affines.

    Parameters
    ----------
    volume : Volume
        3D source (any grid registered to the reference in world space).
    reference : Volume
        3D volume whose shape and affine define the target grid.
    order : int
        Spline order: 1 (trilinear) for images, 0 (nearest) for masks.

    Returns
    -------
    Volume
        float32 data of ``reference.shape`` with ``reference.affine`` (0 outside the source's
        field of view).
    """
    import nibabel as nib
    from nibabel.processing import resample_from_to

    if volume.ndim != 3 or reference.ndim != 3:
        raise ValueError(
            f"expected 3D volumes, got shapes {volume.data.shape} and {reference.data.shape}"
        )
    if order not in (0, 1, 3):
        raise ValueError(f"order must be 0, 1 or 3, got {order!r}")
    source = nib.Nifti1Image(np.asarray(volume.data, dtype=np.float32), volume.affine)
    out = resample_from_to(source, (reference.shape, reference.affine), order=order, cval=0.0)
    data = np.asarray(out.dataobj, dtype=np.float32)
    return Volume(data, reference.affine.copy(), path=volume.path)


def describe_grid(volume: Volume) -> str:
    """``"182 x 218 x 182 of 1 x 1 x 1 mm"`` for messages."""
    size = " x ".join(f"{v:g}" for v in np.round(volume.voxel_size, 3))
    return f"{' x '.join(map(str, volume.shape))} voxels of {size} mm"
