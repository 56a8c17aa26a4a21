"""User-facing prediction: MS lesion segmentation and QSM reconstruction of whole volumes.

These take arrays with their voxel size (what a napari layer holds) or :class:`Volume` objects
(what a NIfTI file holds), reorient to the canonical orientation the models were trained in,
resample to the model's voxel size when needed, predict with sliding windows, and map the result
back onto the input's voxel grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from napari_fanet.engine.averaged_prediction import MIRROR_DEFAULT as MIRROR_DEFAULT
from napari_fanet.engine.averaged_prediction import (
    WINDOW_SHIFTS_DEFAULT as WINDOW_SHIFTS_DEFAULT,
)
from napari_fanet.engine.averaged_prediction import (
    averaged_logits,
    check_window_shifts,
    crop_to_brain,
    without_margin,
)
from napari_fanet.engine.inference import (
    InferenceCancelled,
    InferenceReport,
    WindowSettings,
    predict_volume,
)
from napari_fanet.io.b0_direction import B0Direction, world_to_array_direction
from napari_fanet.io.formatting import format_numbers
from napari_fanet.io.nifti import (
    VOXEL_SIZE_RANGE,
    Volume,
    check_same_grid,
    from_canonical,
    to_canonical,
)
from napari_fanet.models import load_checkpoint
from napari_fanet.physics.data_consistency import DC_METHODS, DEFAULT_DC_LAMBDA
from napari_fanet.physics.data_consistency import data_consistency as apply_data_consistency
from napari_fanet.tasks import QSM, SEGMENTATION, Task, get_task
from napari_fanet.tasks.lesion_mask import (
    DEFAULT_MIN_EDGE_DISTANCE_MM,
    DEFAULT_MIN_LESION_MM3,
    DEFAULT_SEED_THRESHOLD,
    DEFAULT_THRESHOLD,
    LesionMaskRule,
    lesion_mask,
)

# Re-exported: the segmentation channels and checks live in napari_fanet.tasks.
from napari_fanet.tasks.roles import OPTIONAL_SEG_CHANNELS as OPTIONAL_SEG_CHANNELS
from napari_fanet.tasks.roles import SEG_CHANNELS as SEG_CHANNELS
from napari_fanet.tasks.roughness import MATCH_ROUGHNESS_DEFAULT as MATCH_ROUGHNESS_DEFAULT
from napari_fanet.tasks.roughness import match_flair, roughness_target
from napari_fanet.tasks.segmentation import check_brain as check_brain
from napari_fanet.tasks.segmentation import residue_message
from napari_fanet.tasks.segmentation import (
    supports_missing_modalities as supports_missing_modalities,
)

log = logging.getLogger(__name__)
RESAMPLE_TOLERANCE = 0.1  # relative voxel-size difference below which no resampling is done
#: Largest memory (bytes) one prediction may need on the model grid, and what one voxel needs:
#: input channels, z-scored copies, resampling temporaries, blended output and its weights.
RESAMPLE_MEMORY_BUDGET = 8 * 2**30
BYTES_PER_GRID_VOXEL = 64
#: Data consistency of every network QSM result unless asked otherwise (chosen on validation).
DEFAULT_DC_METHOD = "cg"


def shipped_weights() -> dict[str, Path]:
    """Checkpoints shipped with the package, by model name (``fanet-seg``, ``qsmnet``...)."""
    folder = resources.files("napari_fanet") / "weights"
    if not folder.is_dir():
        return {}
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".pt")}


def load_model(name_or_path: str | Path) -> tuple[nn.Module, dict]:
    """Load shipped weights by name, or any checkpoint file."""
    shipped = shipped_weights()
    if str(name_or_path) in shipped:
        return load_checkpoint(shipped[str(name_or_path)])
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint file {path} and no shipped model of that name "
            f"(shipped: {sorted(shipped) or 'none'})"
        )
    return load_checkpoint(path)


def zoom_to_shape(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``array`` resampled onto a grid of ``shape`` covering the same field of view."""
    factors = [t / s for t, s in zip(shape, array.shape, strict=True)]
    out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    fixed = np.zeros(shape, dtype=out.dtype)  # zoom may be off by one voxel: crop or pad
    region = tuple(slice(0, min(a, b)) for a, b in zip(shape, out.shape, strict=True))
    fixed[region] = out[region]
    return fixed


def model_grid(shape, voxel_size, model_voxel) -> tuple[int, ...] | None:
    """Shape of the grid at the model's voxel size, or None when no resampling is needed.

    Raises ValueError (through :func:`check_resampling`) for a voxel size outside
    :data:`~napari_fanet.io.nifti.VOXEL_SIZE_RANGE` or a grid over :data:`RESAMPLE_MEMORY_BUDGET`.
    """
    check_resampling(shape, voxel_size, model_voxel)
    if model_voxel is None:
        return None
    rel = np.abs(np.asarray(voxel_size) / np.asarray(model_voxel) - 1)
    if np.all(rel < RESAMPLE_TOLERANCE):
        return None
    sizes = zip(shape, voxel_size, model_voxel, strict=True)
    return tuple(max(round(n * v / m), 1) for n, v, m in sizes)


def check_resampling(
    shape: Sequence[int], voxel_size: Sequence[float], model_voxel: Sequence[float] | None
) -> None:
    """Refuse an input voxel size or a model grid that cannot give a sound prediction.

    Voxel sizes must lie in :data:`~napari_fanet.io.nifti.VOXEL_SIZE_RANGE`, and the grid at the
    model's voxel size must need at most :data:`RESAMPLE_MEMORY_BUDGET` bytes.

    Parameters
    ----------
    shape : sequence of 3 int
        Input grid ``(X, Y, Z)``.
    voxel_size : sequence of 3 float
        Input voxel size (mm).
    model_voxel : sequence of 3 float or None
        Voxel size the model was trained at (None: the input grid is used as it is).
    """
    low, high = VOXEL_SIZE_RANGE
    sizes = np.asarray(voxel_size, dtype=np.float64)
    if not (np.all(np.isfinite(sizes)) and np.all(sizes >= low) and np.all(sizes <= high)):
        raise ValueError(
            f"expected voxel sizes between {low:g} and {high:g} mm, got "
            f"{format_numbers(sizes)} mm (check the image's header or the layer's scale)"
        )
    target = sizes if model_voxel is None else np.asarray(model_voxel, dtype=np.float64)
    grid = [max(round(n * v / m), 1) for n, v, m in zip(shape, sizes, target, strict=True)]
    voxels = int(np.prod(grid, dtype=np.int64))
    need = voxels * BYTES_PER_GRID_VOXEL
    if need > RESAMPLE_MEMORY_BUDGET:
        gib = 2.0**30
        raise ValueError(
            f"the input grid {' x '.join(map(str, shape))} of {format_numbers(sizes)} mm "
            f"voxels becomes {' x '.join(map(str, grid))} voxels at the model's "
            f"{format_numbers(target)} mm, needing about {need / gib:.1f} GiB, over the memory "
            f"budget of {RESAMPLE_MEMORY_BUDGET / gib:.0f} GiB; crop the image or check its "
            "voxel size"
        )


@dataclass
class PredictionResult:
    """Output of :func:`segment` or :func:`reconstruct_qsm`, on the input's voxel grid."""

    outputs: dict[str, np.ndarray]
    report: InferenceReport = field(default_factory=InferenceReport)


def _check_arrays(arrays: dict[str, np.ndarray]) -> None:
    shapes = {k: np.shape(v) for k, v in arrays.items()}
    for k, s in shapes.items():
        if len(s) != 3:
            raise ValueError(f"{k}: expected a 3D volume, got shape {s}")
    first = next(iter(shapes.values()))
    for k, s in shapes.items():
        if s != first:
            raise ValueError(
                f"{k} has shape {s} but {next(iter(shapes))} has {first}: they must match"
            )
    for k, v in arrays.items():
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{k}: contains NaN or Inf values; expected finite intensities")


def as_canonical(inputs: dict[str, Volume | np.ndarray], voxel_size):
    """Arrays in canonical orientation, their voxel size and a function mapping results back."""
    if all(isinstance(v, Volume) for v in inputs.values()):
        check_same_grid(inputs)
        pairs = {k: to_canonical(v) for k, v in inputs.items()}
        orientation = next(iter(pairs.values()))[1]
        canon_voxel = next(iter(pairs.values()))[0].voxel_size
        arrays = {k: p[0].data.astype(np.float32) for k, p in pairs.items()}
        _check_arrays(arrays)
        linear = next(iter(pairs.values()))[0].affine[:3, :3]
        return arrays, canon_voxel, lambda a: from_canonical(a, orientation), linear
    if any(isinstance(v, Volume) for v in inputs.values()):
        raise TypeError("pass either all Volumes or all arrays, not a mix")
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()}
    _check_arrays(arrays)
    if voxel_size is None or len(voxel_size) != 3 or min(voxel_size) <= 0:
        raise ValueError(
            f"voxel_size must be 3 positive numbers for array input, got "
            f"{format_numbers(voxel_size)}"
        )
    return arrays, tuple(float(v) for v in voxel_size), lambda a: a, None


def seg_model_channels(
    arrays: dict[str, np.ndarray], voxel_size: Sequence[float], checkpoint: dict
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[int, ...] | None, np.ndarray]:
    """The channels and brain of :func:`seg_model_input` on the model grid, not yet normalised.

    The brain is checked (:func:`~napari_fanet.tasks.segmentation.check_brain`), not the
    modalities: any FLAIR may be measured on the model's grid.

    Parameters
    ----------
    arrays, voxel_size, checkpoint
        As :func:`seg_model_input`.

    Returns
    -------
    channels : dict of str to np.ndarray
        ``(X, Y, Z)`` float arrays by modality (those given).
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask.
    grid : tuple of int or None
        ``(X, Y, Z)`` when the inputs were resampled to the model's voxel size, else None.
    model_voxel : np.ndarray
        ``(3,)`` voxel size of that grid (mm).
    """
    brain = SEGMENTATION.brain(arrays)
    check_brain(arrays, brain)
    channels = {k: arrays[k] for k in SEG_CHANNELS if k in arrays}
    shape = brain.shape
    grid = model_grid(shape, voxel_size, checkpoint.get("extra", {}).get("voxel_size"))
    if grid is not None:
        channels = {k: zoom_to_shape(v, grid, 1) for k, v in channels.items()}
        brain = zoom_to_shape(brain.astype(np.float32), grid, 0) > 0.5
    model_voxel = np.asarray(voxel_size, dtype=np.float64) * np.asarray(shape) / brain.shape
    return channels, brain, grid, model_voxel


def seg_model_input(
    arrays: dict[str, np.ndarray],
    voxel_size: Sequence[float],
    checkpoint: dict,
    *,
    match_roughness: bool = MATCH_ROUGHNESS_DEFAULT,
    messages: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...] | None]:
    """The network input of :func:`segment`, on the grid the model runs on.

    Parameters
    ----------
    arrays : dict
        Canonical float arrays ``"FLAIR"``, optionally ``"T1"``, ``"T2"`` (see
        :func:`~napari_fanet.tasks.segmentation.check_modalities`) and ``"brain mask"``
        (without it the non-zero FLAIR voxels are the brain: skull-stripped input).
    voxel_size : sequence of 3 float
        Voxel size of the arrays (mm).
    checkpoint : dict
        The model's checkpoint; ``extra["voxel_size"]`` is the grid the model was trained on,
        ``extra["modality_dropout"]`` whether it accepts missing T1/T2,
        ``extra["roughness_target"]`` (optional) the fine roughness of its real training FLAIRs.
    match_roughness : bool
        Smooth the FLAIR on the model grid, before normalisation, until it is no rougher than
        the checkpoint's target (:func:`~napari_fanet.tasks.roughness.match_flair`); nothing
        happens when the checkpoint records no target.
    messages : list of str, optional
        What the roughness matching did, in words, is appended here.

    Returns
    -------
    image : np.ndarray
        ``(3, X, Y, Z)`` float32: T1, T2, FLAIR z-scored inside the brain; a missing modality
        is an all-zero channel (what modality dropout trained the model on).
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask.
    grid : tuple of int or None
        ``(X, Y, Z)`` when the inputs were resampled to the model's voxel size, else None.
    """
    SEGMENTATION.check_modalities(arrays, checkpoint)
    channels, brain, grid, model_voxel = seg_model_channels(arrays, voxel_size, checkpoint)
    residue = None if "brain mask" in arrays else residue_message(arrays["FLAIR"])
    if residue and messages is not None:
        messages.append(residue)
    target = roughness_target(checkpoint)
    if match_roughness and target is not None:
        channels["FLAIR"], message = match_flair(channels["FLAIR"], brain, target, model_voxel)
        if messages is not None:
            messages.append(message)
    return SEGMENTATION.preprocess(channels, brain), brain, grid


def b0_in_array_axes(
    b0_dir: B0Direction | Sequence[float] | None, linear: np.ndarray | None
) -> np.ndarray:
    """Unit B0 direction in canonical array axes (default z); ``linear`` maps world to array."""
    b0 = np.asarray(B0Direction((0.0, 0.0, 1.0) if b0_dir is None else b0_dir), dtype=np.float64)
    if linear is not None:  # world (scanner) direction -> canonical array axes
        b0 = world_to_array_direction(b0, linear)
    return b0 / np.linalg.norm(b0)


def qsm_model_input(
    arrays: dict[str, np.ndarray], voxel_size: Sequence[float], checkpoint: dict
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...] | None, tuple[float, ...], dict]:
    """Local field and mask of :func:`reconstruct_qsm`, on the grid the model runs on.

    Parameters
    ----------
    arrays : dict
        Canonical float arrays ``"local field"`` (ppm) and ``"brain mask"``.
    voxel_size : sequence of 3 float
        Voxel size of the arrays (mm).
    checkpoint : dict
        The model's checkpoint: ``extra["preprocessing"]`` holds the field and chi scales,
        ``extra["voxel_size"]`` the grid the model was trained on.

    Returns
    -------
    field, mask : np.ndarray
        ``(X, Y, Z)`` field (ppm, not yet scaled) and bool mask on the model grid.
    grid : tuple of int or None
        The model grid's shape when the inputs were resampled, else None.
    model_voxel : tuple of float
        Voxel size of the model grid (mm).
    scales : dict
        The checkpoint's preprocessing scales (see
        :func:`~napari_fanet.tasks.preprocessing.qsm_network_input`).
    """
    QSM.check_inputs(arrays, checkpoint)
    mask = arrays["brain mask"] > 0.5
    scales = QSM.scales(checkpoint)
    field = arrays["local field"]
    shape = field.shape
    grid = model_grid(shape, voxel_size, checkpoint.get("extra", {}).get("voxel_size"))
    if grid is not None:
        field = zoom_to_shape(field, grid, 1)
        mask = zoom_to_shape(mask.astype(np.float32), grid, 0) > 0.5
    model_voxel = tuple(
        float(v) for v in np.asarray(voxel_size) * np.asarray(shape) / np.asarray(field.shape)
    )
    return field, mask, grid, model_voxel, scales


def segment(
    model: nn.Module,
    checkpoint: dict,
    t1: Volume | np.ndarray | None,
    t2: Volume | np.ndarray | None,
    flair: Volume | np.ndarray,
    *,
    brain_mask: Volume | np.ndarray | None = None,
    voxel_size: Sequence[float] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    seed_threshold: float | None = DEFAULT_SEED_THRESHOLD,
    min_lesion_mm3: float = DEFAULT_MIN_LESION_MM3,
    min_edge_distance_mm: float = DEFAULT_MIN_EDGE_DISTANCE_MM,
    mirror: bool = MIRROR_DEFAULT,
    window_shifts: int = WINDOW_SHIFTS_DEFAULT,
    match_roughness: bool = MATCH_ROUGHNESS_DEFAULT,
    settings: WindowSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PredictionResult:
    """Segment MS lesions; outputs ``probability`` (float32) and ``mask`` (uint8, 0/1).

    ``t1`` and ``t2`` may be None (FLAIR alone, T1 + FLAIR, T2 + FLAIR) for a model trained
    with modality dropout (:func:`~napari_fanet.tasks.segmentation.check_modalities`); the
    missing channel is all zero. The network sees the brain's bounding box
    (:func:`~napari_fanet.engine.averaged_prediction.crop_to_brain`), so the windows follow the
    brain, not the field of view. With ``mirror`` the probability is the mean of the scan's and
    of its left-right mirror image's, and with ``window_shifts`` N the mean over N window grids
    (:func:`~napari_fanet.engine.averaged_prediction.averaged_logits`; each doubles or
    multiplies the network time). With
    ``match_roughness`` a FLAIR rougher than the model's real training scans is first smoothed
    (:func:`seg_model_input`; the report's messages say by how much). The
    mask holds the 26-connected components of ``probability > threshold`` that contain a voxel
    above ``seed_threshold`` (None: no such rule), measure at least ``min_lesion_mm3`` and lie
    on average at least ``min_edge_distance_mm`` inside the brain mask (0: no such rule;
    :func:`~napari_fanet.tasks.lesion_mask.lesion_mask`).
    """
    rule = LesionMaskRule(
        threshold, seed_threshold, min_lesion_mm3, min_edge_distance_mm
    )  # checked before the run
    window_shifts = check_window_shifts(window_shifts)
    SEGMENTATION.check_model(model)
    inputs = {k: v for k, v in (("T1", t1), ("T2", t2), ("FLAIR", flair)) if v is not None}
    SEGMENTATION.check_modalities(inputs, checkpoint)
    if brain_mask is not None:
        inputs["brain mask"] = brain_mask
    arrays, vox, back, _ = as_canonical(inputs, voxel_size)
    shape = arrays["FLAIR"].shape
    result = PredictionResult({})
    message = SEGMENTATION.absent_channels_message(arrays)
    if message:
        result.report.messages.append(message)
    image, brain, grid = seg_model_input(
        arrays, vox, checkpoint, match_roughness=match_roughness, messages=result.report.messages
    )
    crop, box = crop_to_brain(image, brain)  # the windows follow the brain, not the array
    logits = averaged_logits(
        model,
        torch.from_numpy(crop)[None],
        settings or WindowSettings(),
        mirror=mirror,
        shifts=window_shifts,
        progress=progress,
        should_stop=should_stop,
        report=result.report,
    )
    prob = np.zeros(brain.shape, dtype=np.float32)
    prob[box] = SEGMENTATION.postprocess(without_margin(logits), brain[box])
    if grid is not None:
        prob = zoom_to_shape(prob.astype(np.float32), shape, 1)
    # on the canonical grid (components do not change), with the brain mask the user gave or,
    # for skull-stripped input, the non-zero FLAIR
    mask = lesion_mask(prob, vox, rule, SEGMENTATION.brain(arrays))
    result.outputs = {"probability": back(prob.astype(np.float32)), "mask": back(mask)}
    return result


def reconstruct_qsm(
    model: nn.Module,
    checkpoint: dict,
    field_ppm: Volume | np.ndarray,
    brain_mask: Volume | np.ndarray,
    *,
    voxel_size: Sequence[float] | None = None,
    b0_dir: B0Direction | Sequence[float] | None = None,
    data_consistency: str = DEFAULT_DC_METHOD,
    dc_lambda: float | str = DEFAULT_DC_LAMBDA,
    settings: WindowSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PredictionResult:
    """Reconstruct susceptibility (ppm) from a local field (ppm); output ``chi`` (float32).

    ``b0_dir`` is the main-field direction (a :class:`B0Direction` or 3 numbers, never text): in
    scanner (world) axes for :class:`Volume` input, in array axes for array input; default
    ``(0, 0, 1)``; its sign does not matter.

    The network's map is then made consistent with the measured field on the input's own grid
    (``data_consistency``: ``"cg"``, the mask-weighted solver, by default; ``"kspace"``, the
    closed form; ``"none"``, the raw network output), with the prior weighted by ``dc_lambda``
    (``"auto"``, the default, estimates it per case from the field's noise and the network's
    residual; see :mod:`napari_fanet.physics.data_consistency`).
    """
    if data_consistency not in DC_METHODS:
        raise ValueError(
            f"data_consistency must be one of {', '.join(DC_METHODS)}; got {data_consistency!r}"
        )
    if dc_lambda != "auto" and not (
        isinstance(dc_lambda, int | float) and np.isfinite(dc_lambda) and dc_lambda > 0
    ):
        raise ValueError(f"dc_lambda must be 'auto' or a finite number > 0, got {dc_lambda!r}")
    QSM.check_model(model)
    arrays, vox, back, linear = as_canonical(
        {"local field": field_ppm, "brain mask": brain_mask}, voxel_size
    )
    b0 = b0_in_array_axes(b0_dir, linear)
    shape = arrays["local field"].shape
    field, mask, grid, model_vox, scales = qsm_model_input(arrays, vox, checkpoint)
    result = PredictionResult({})
    net = QSM.preprocess(field, mask, scales, b0, model_vox)
    output = predict_volume(
        model,
        torch.from_numpy(net.image)[None, None],
        settings or WindowSettings(),
        progress=progress,
        should_stop=should_stop,
        report=result.report,
    )
    chi = QSM.postprocess(output, net, mask, scales, model_vox)
    if grid is not None:
        chi = zoom_to_shape(chi, shape, 1) * (arrays["brain mask"] > 0.5)
    if data_consistency != "none":
        chi = apply_data_consistency(
            data_consistency,
            arrays["local field"] * (arrays["brain mask"] > 0.5),
            chi,
            arrays["brain mask"] > 0.5,
            vox,
            tuple(b0),
            lam=dc_lambda if dc_lambda == "auto" else float(dc_lambda),
            should_stop=should_stop,
        )
        if should_stop is not None and should_stop():
            raise InferenceCancelled("inference cancelled")
    result.outputs = {"chi": back(np.asarray(chi, dtype=np.float32))}
    return result


def _segment_roles(
    model: nn.Module, checkpoint: dict, inputs: dict, **options
) -> PredictionResult:
    return segment(
        model,
        checkpoint,
        inputs.get("T1"),
        inputs.get("T2"),
        inputs["FLAIR"],
        brain_mask=inputs.get("brain mask"),
        **options,
    )


def _qsm_roles(model: nn.Module, checkpoint: dict, inputs: dict, **options) -> PredictionResult:
    return reconstruct_qsm(
        model, checkpoint, inputs["local field"], inputs["brain mask"], **options
    )


#: The prediction function of each task, taking the inputs by role name.
_PREDICT_BY_ROLES = {SEGMENTATION.name: _segment_roles, QSM.name: _qsm_roles}


def predict_task(
    task: str | Task,
    model: nn.Module,
    checkpoint: dict,
    inputs: dict[str, Volume | np.ndarray],
    **options: object,
) -> PredictionResult:
    """Predict with ``task``'s function (:func:`segment`, :func:`reconstruct_qsm`).

    Parameters
    ----------
    task : str or Task
        Looked up with :func:`~napari_fanet.tasks.get_task` (``"ms"`` is segmentation).
    model, checkpoint
        From :func:`load_model`.
    inputs : dict
        Volumes or arrays by role name (:attr:`~napari_fanet.tasks.Task.roles`); absent
        optional roles are left out or None.
    **options
        Keyword options of the task's function (``voxel_size``, ``settings``, ``progress``,
        ``should_stop`` and :attr:`~napari_fanet.tasks.Task.prediction_options`).
    """
    chosen = get_task(task)
    present = {k: v for k, v in inputs.items() if v is not None}
    return _PREDICT_BY_ROLES[chosen.name](model, checkpoint, present, **options)
