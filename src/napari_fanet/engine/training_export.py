"""Write the viewer's layers into a run folder in the layout the trainer reads.

A run folder (:func:`new_run_folder`) holds everything a fine-tuning run needs and leaves::

    RUN/
      data/sub-annotated/   [t1, t2,] flair, lesion_mask[, brain_mask].nii.gz    (MS)
                            local_field, chi, brain_mask.nii.gz, meta.json       (QSM)
      export.json           which layers were exported, the annotation mode and voxel counts
      log.jsonl  last.pt  best.pt  train-output.log   written by the training child process

Every file is written with the source affine of the grid layer (FLAIR or the local field) through
:func:`napari_fanet.io.layers.layer_to_nifti`, so it overlays the files the layers came from.
Arrays arrive as :class:`napari_fanet.io.layers.LayerVolume` (a layer's name, data, scale,
translate and metadata), which keeps this module GUI-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from napari_fanet.engine.annotations import annotation_to_label
from napari_fanet.engine.prediction_request import PredictionRequest
from napari_fanet.io.atomic import atomic_write
from napari_fanet.io.b0_direction import B0Direction, array_to_world_direction
from napari_fanet.io.layers import NIFTI_METADATA_KEY, LayerVolume, layer_to_nifti
from napari_fanet.io.nifti import save_volume
from napari_fanet.tasks.segmentation import skull_stripping_problem
from napari_fanet.tasks.subjects import list_subjects

SUBJECT_NAME = "sub-annotated"
RUNS_ENV = "NAPARI_FANET_RUNS"
VALIDATION_NONE, VALIDATION_SAME, VALIDATION_FOLDER = "none", "same case", "folder"
VALIDATION_CHOICES = (VALIDATION_NONE, VALIDATION_SAME, VALIDATION_FOLDER)


def default_runs_root() -> Path:
    """``$NAPARI_FANET_RUNS``, else ``~/napari-fanet-runs``."""
    return Path(os.environ.get(RUNS_ENV) or Path.home() / "napari-fanet-runs")


def new_run_folder(root: str | Path | None = None, now: datetime | None = None) -> Path:
    """Create and return ``ROOT/<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``... if it exists)."""
    root = Path(root) if root is not None else default_runs_root()
    root.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        folder = root / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"{root}: cannot find a free run folder name for {stamp}")


def _check_inputs(task: str, roles: dict[str, LayerVolume | None], model: str = "") -> None:
    """``ValueError`` unless the layers by role make a case ``model`` can train on."""
    found = PredictionRequest(task, roles, model=model).problems()
    if found:
        raise ValueError("cannot export: " + "; ".join(found))


def _check_on_grid(layer: LayerVolume, grid: LayerVolume, what: str) -> np.ndarray:
    data = np.asarray(layer.data)
    if data.ndim != 3:
        raise ValueError(
            f"{what} (layer {layer.name!r}) must be a 3D volume, got {data.ndim}D data of shape "
            f"{data.shape}"
        )
    if data.shape != np.shape(grid.data):
        raise ValueError(
            f"{what} (layer {layer.name!r}) has shape {data.shape} but {grid.name!r} has "
            f"{np.shape(grid.data)}: it must be drawn on the same voxel grid"
        )
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise ValueError(f"{what} (layer {layer.name!r}) contains NaN or Inf values")
    return data


def _save(folder: Path, stem: str, data: np.ndarray, grid: LayerVolume, dtype: Any) -> None:
    array, reference = layer_to_nifti(data, grid.metadata, grid.scale, grid.translate)
    save_volume(folder / f"{stem}.nii.gz", np.asarray(array).astype(dtype), reference)


def _fresh_subject_folder(run_dir: str | Path) -> Path:
    folder = Path(run_dir) / "data" / SUBJECT_NAME
    if folder.exists():
        raise FileExistsError(f"{folder} exists already: export into a new run folder")
    folder.mkdir(parents=True)
    return folder


def _write_summary(run_dir: Path, summary: dict) -> None:
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write(run_dir / "export.json", lambda tmp: tmp.write_text(text))


def export_seg_case(
    run_dir: str | Path,
    t1: LayerVolume | None,
    t2: LayerVolume | None,
    flair: LayerVolume,
    annotation: LayerVolume,
    mode: str,
    brain_mask: LayerVolume | None = None,
    *,
    model: str = "",
) -> dict:
    """Write an MS case and its annotation into ``RUN/data/sub-annotated``.

    The grid (and affine) of every file is the FLAIR layer's. T1 and T2 may be None when
    ``model`` (the starting model: shipped name or checkpoint file) was trained for missing
    modalities (modality dropout); their files are then not written, and the trainer gives the
    network zero channels as prediction does. ``mode`` is ``"full mask"`` or ``"scribbles"``
    (:mod:`napari_fanet.engine.annotations` gives the label values).

    Returns
    -------
    dict
        The summary also written to ``RUN/export.json``: ``task``, ``data`` (folder), ``layers``
        (role -> layer name), ``annotation_mode`` and the voxel counts ``lesion``,
        ``background``, ``ignored``.

    Raises
    ------
    ValueError
        Inputs that are not 3D, differ in shape or voxel size, contain NaNs; a missing T1 or T2
        for a model that needs every modality; without a brain mask, a FLAIR that does not
        look skull-stripped (the trainer, like prediction, would take its background for
        brain); an annotation that is empty or holds values the mode does not use.
    """
    roles = {"T1": t1, "T2": t2, "FLAIR": flair, "brain mask": brain_mask}
    _check_inputs("segmentation", roles, model)
    if brain_mask is None:
        problem = skull_stripping_problem(np.asarray(flair.data))
        if problem:
            raise ValueError(f"cannot export: {problem}")
    converted = annotation_to_label(
        _check_on_grid(annotation, flair, "annotation"), mode, name=annotation.name
    )
    run_dir = Path(run_dir)
    folder = _fresh_subject_folder(run_dir)
    for stem, layer in (("t1", t1), ("t2", t2), ("flair", flair)):
        if layer is not None:
            _save(folder, stem, np.asarray(layer.data, dtype=np.float32), flair, np.float32)
    _save(folder, "lesion_mask", converted.pop("label"), flair, np.uint8)
    if brain_mask is not None:
        _save(folder, "brain_mask", np.asarray(brain_mask.data) > 0.5, flair, np.uint8)
    layers = {role: layer.name for role, layer in roles.items() if layer is not None}
    summary = {
        "task": "segmentation",
        "data": str(folder.parent),
        "layers": {**layers, "annotation": annotation.name},
        "annotation_mode": mode,
        **converted,
    }
    _write_summary(run_dir, summary)
    return summary


def _displayed_affine(layer: LayerVolume) -> np.ndarray:
    nifti = (layer.metadata or {}).get(NIFTI_METADATA_KEY) or {}
    affine = nifti.get("canonical_affine") if isinstance(nifti, Mapping) else None
    if affine is not None:
        return np.asarray(affine, dtype=np.float64)
    return np.diag([*np.asarray(layer.voxel_size(), dtype=np.float64)[-3:], 1.0])


def export_qsm_case(
    run_dir: str | Path,
    field: LayerVolume,
    chi: LayerVolume,
    brain_mask: LayerVolume,
    b0_dir: B0Direction | Sequence[float] | None = None,
) -> dict:
    """Write a QSM case (local field, reference susceptibility, mask) into ``RUN/data``.

    ``b0_dir`` is the main-field direction in the displayed array axes (default ``(0, 0, 1)``),
    a :class:`~napari_fanet.io.b0_direction.B0Direction` or 3 numbers (never text; ValueError
    from :class:`B0Direction` when they are not a direction). It is stored as a world direction
    (``meta.json`` ``b0_dir_world``), so it stays right on the source grid. Returns the summary
    written to ``RUN/export.json``.
    """
    _check_inputs("qsm", {"local field": field, "brain mask": brain_mask})
    chi_data = _check_on_grid(chi, field, "reference susceptibility")
    b0 = B0Direction((0.0, 0.0, 1.0) if b0_dir is None else b0_dir)
    world = array_to_world_direction(b0.unit(), _displayed_affine(field))
    run_dir = Path(run_dir)
    folder = _fresh_subject_folder(run_dir)
    _save(folder, "local_field", np.asarray(field.data, dtype=np.float32), field, np.float32)
    _save(folder, "chi", np.asarray(chi_data, dtype=np.float32), field, np.float32)
    _save(folder, "brain_mask", np.asarray(brain_mask.data) > 0.5, field, np.uint8)
    meta = json.dumps({"b0_dir_world": [float(v) for v in world]}) + "\n"
    atomic_write(folder / "meta.json", lambda tmp: tmp.write_text(meta))
    summary = {
        "task": "qsm",
        "data": str(folder.parent),
        "layers": {
            "local field": field.name,
            "reference susceptibility": chi.name,
            "brain mask": brain_mask.name,
        },
        "b0_dir_world": [float(v) for v in world],
        "brain_voxels": int(np.count_nonzero(np.asarray(brain_mask.data) > 0.5)),
    }
    _write_summary(run_dir, summary)
    return summary


def validation_folder(
    choice: str, data_dir: str | Path, task: str, folder: str | Path | None = None
) -> Path | None:
    """The ``--val`` folder of a validation choice (:data:`VALIDATION_CHOICES`).

    ``"none"``: no validation (None). ``"same case"``: the exported case itself (monitors the fit
    to the annotation; with scribbles the Dice counts unpainted voxels as background).
    ``"folder"``: ``folder``, which must hold subjects of ``task`` in the trainer's layout.
    """
    if choice not in VALIDATION_CHOICES:
        raise ValueError(f"validation must be one of {VALIDATION_CHOICES}, got {choice!r}")
    if choice == VALIDATION_NONE:
        return None
    if choice == VALIDATION_SAME:
        return Path(data_dir)
    if folder is None or not str(folder).strip() or not Path(folder).is_dir():
        raise ValueError(f"validation folder not found: {folder!r}; choose an existing folder")
    try:
        list_subjects(folder, task)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"validation folder: {exc}") from exc
    return Path(folder)
