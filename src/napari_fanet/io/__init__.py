"""The bottom layer: files, grids and the checks every array goes through. numpy and nibabel only.

Modules
-------
nifti
    Load, check, reorient (RAS+ closest canonical) and save NIfTI volumes with their affine;
    B0 metadata from JSON sidecars.
b0_direction
    B0 directions between world (scanner) axes and the array axes of a grid.
resample
    Same-grid test and resampling of a volume onto a reference grid.
layers
    A :class:`~napari_fanet.io.nifti.Volume` as napari layer data and back (without napari).
atomic
    Atomic writes: one file, or a set of files that appears all at once.
checks
    Array checks shared by the metrics and the physics (shapes, masks, voxel sizes).
formatting
    Numbers in user messages as plain text.
"""
