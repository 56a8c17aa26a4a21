"""npe2 sample data: the synthetic MS and QSM cases as layers at their world position.

The files come from :func:`napari_fanet.evaluation.sample_files.sample_data_folder` (packaged,
from the checkout, or simulated once into a local cache). Every layer carries ``metadata["nifti"]``
(see :mod:`napari_fanet.io.layers`), so results computed from it can be saved on the source grid.
An empty viewer shows them as axial slices, anterior up, radiological
(:mod:`napari_fanet._widgets.axial_view`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_fanet._widgets.axial_view import request_axial_view
from napari_fanet.evaluation.sample_files import SUBJECT, sample_data_folder
from napari_fanet.io.layers import volume_to_layer_data
from napari_fanet.io.nifti import load_volume

LayerData = tuple[np.ndarray, dict, str]


def _subject(task: str) -> Path:
    return sample_data_folder() / task / SUBJECT


def _limits(data: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """0.5 and 99.5 percentiles of ``data`` inside ``mask`` (whole volume if empty)."""
    values = data[mask] if mask.any() else data
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def _brain_mask(folder: Path) -> tuple[np.ndarray, LayerData]:
    """The brain mask as a boolean array on the canonical grid, and its (hidden) layer."""
    layer = volume_to_layer_data(
        load_volume(folder / "brain_mask.nii.gz", dtype=np.uint8),
        name="brain mask",
        layer_type="labels",
        visible=False,
    )
    return layer[0] > 0, layer


def ms_sample() -> list[LayerData]:
    """T1, T2, FLAIR, the brain mask and the reference lesion mask of ``ms/sub-0000``."""
    folder = _subject("ms")
    brain, mask_layer = _brain_mask(folder)
    layers = []
    for name in ("T1", "T2", "FLAIR"):
        volume = load_volume(folder / f"{name.lower()}.nii.gz")
        data, kwargs, kind = volume_to_layer_data(volume, name=name, colormap="gray")
        kwargs["contrast_limits"] = _limits(data, brain)
        layers.append((data, kwargs, kind))
    lesions = volume_to_layer_data(
        load_volume(folder / "lesion_mask.nii.gz", dtype=np.uint8),
        name="lesion mask (reference)",
        layer_type="labels",
        opacity=0.5,
    )
    request_axial_view()  # an empty viewer shows them axial
    return [*layers, mask_layer, lesions]


def qsm_sample() -> list[LayerData]:
    """Magnitude, local field, brain mask and reference susceptibility of ``qsm/sub-0000``.

    Every layer's metadata also holds ``b0_dir`` (array axes of the files) and ``b0_dir_world``
    (world axes) from ``meta.json``, as lists of 3 floats.
    """
    folder = _subject("qsm")
    meta = json.loads((folder / "meta.json").read_text())
    b0 = {key: [float(v) for v in meta[key]] for key in ("b0_dir", "b0_dir_world")}
    brain, mask_layer = _brain_mask(folder)
    magnitude = volume_to_layer_data(
        load_volume(folder / "magnitude.nii.gz"), name="magnitude", colormap="gray"
    )
    magnitude[1]["contrast_limits"] = _limits(magnitude[0], brain)
    field = volume_to_layer_data(
        load_volume(folder / "local_field.nii.gz"), name="local field (ppm)", colormap="gray"
    )
    values = np.abs(field[0][brain]) if brain.any() else np.abs(field[0])
    limit = max(float(np.percentile(values, 99.5)), 1e-6)
    field[1]["contrast_limits"] = (-limit, limit)
    chi = volume_to_layer_data(
        load_volume(folder / "chi.nii.gz"),
        name="susceptibility (reference, ppm)",
        colormap="gray",
        contrast_limits=(-0.15, 0.15),
    )
    layers = [magnitude, field, mask_layer, chi]
    for _, kwargs, _ in layers:
        kwargs["metadata"].update({key: list(value) for key, value in b0.items()})
    request_axial_view()
    return layers
