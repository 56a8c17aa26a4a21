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
from scipy import ndimage
from torch import nn

from ..io import Volume, check_same_grid, from_canonical, to_canonical
from ..models import load_checkpoint
from ..qsm_kernels import world_to_array_direction
from .inference import InferenceReport, WindowSettings
from .subjects import zscore_in_mask
from .tasks import predict_qsm_map, predict_seg_probability

log = logging.getLogger(__name__)
RESAMPLE_TOLERANCE = 0.1  # relative voxel-size difference below which no resampling is done
SEG_CHANNELS = ("T1", "T2", "FLAIR")  # network input channels of the segmentation models


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
    """Shape of the grid at the model's voxel size, or None when no resampling is needed."""
    if model_voxel is None:
        return None
    rel = np.abs(np.asarray(voxel_size) / np.asarray(model_voxel) - 1)
    if np.all(rel < RESAMPLE_TOLERANCE):
        return None
    sizes = zip(shape, voxel_size, model_voxel, strict=True)
    return tuple(max(round(n * v / m), 1) for n, v, m in sizes)


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
            f"voxel_size must be 3 positive numbers for array input, got {voxel_size!r}"
        )
    return arrays, tuple(float(v) for v in voxel_size), lambda a: a, None


def seg_model_input(
    arrays: dict[str, np.ndarray], voxel_size: Sequence[float], checkpoint: dict
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...] | None]:
    """The network input of :func:`segment`, on the grid the model runs on.

    Parameters
    ----------
    arrays : dict
        Canonical float arrays ``"T1"``, ``"T2"``, ``"FLAIR"`` and optionally ``"brain mask"``
        (without it the non-zero FLAIR voxels are the brain: skull-stripped input).
    voxel_size : sequence of 3 float
        Voxel size of the arrays (mm).
    checkpoint : dict
        The model's checkpoint; ``extra["voxel_size"]`` is the grid the model was trained on.

    Returns
    -------
    image : np.ndarray
        ``(3, D, H, W)`` float32: T1, T2, FLAIR z-scored inside the brain.
    brain : np.ndarray
        ``(D, H, W)`` bool brain mask.
    grid : tuple of int or None
        ``(D, H, W)`` when the inputs were resampled to the model's voxel size, else None.
    """
    if "brain mask" in arrays:
        brain = arrays["brain mask"] > 0.5
    else:
        brain = arrays["FLAIR"] != 0  # skull-stripped inputs: the brain is what is not zero
    channels = {k: arrays[k] for k in SEG_CHANNELS}
    grid = model_grid(brain.shape, voxel_size, checkpoint.get("extra", {}).get("voxel_size"))
    if grid is not None:
        channels = {k: zoom_to_shape(v, grid, 1) for k, v in channels.items()}
        brain = zoom_to_shape(brain.astype(np.float32), grid, 0) > 0.5
    image = np.stack([zscore_in_mask(channels[k], brain) for k in SEG_CHANNELS])
    return image, brain, grid


def b0_in_array_axes(b0_dir: Sequence[float] | None, linear: np.ndarray | None) -> np.ndarray:
    """Unit B0 direction in canonical array axes (default z); ``linear`` maps world to array."""
    b0 = np.asarray(b0_dir if b0_dir is not None else (0.0, 0.0, 1.0), dtype=np.float64)
    if b0.shape != (3,) or not np.linalg.norm(b0) > 0:
        raise ValueError(f"b0_dir must be 3 numbers, not all zero; got {b0_dir!r}")
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
        ``(D, H, W)`` field (ppm, not yet scaled) and bool mask on the model grid.
    grid : tuple of int or None
        The model grid's shape when the inputs were resampled, else None.
    model_voxel : tuple of float
        Voxel size of the model grid (mm).
    scales : dict
        The checkpoint's preprocessing scales (see :func:`~.tasks.qsm_network_input`).
    """
    mask = arrays["brain mask"] > 0.5
    if not mask.any():
        raise ValueError("brain mask is empty: expected a mask with at least one voxel inside")
    scales = checkpoint.get("extra", {}).get("preprocessing")
    if not scales:
        raise ValueError("checkpoint lacks the QSM preprocessing scales (extra['preprocessing'])")
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
    t1: Volume | np.ndarray,
    t2: Volume | np.ndarray,
    flair: Volume | np.ndarray,
    *,
    brain_mask: Volume | np.ndarray | None = None,
    voxel_size: Sequence[float] | None = None,
    threshold: float = 0.5,
    settings: WindowSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PredictionResult:
    """Segment MS lesions; outputs ``probability`` (float32) and ``mask`` (uint8, 0/1)."""
    if model.config.task != "segmentation":
        raise ValueError(
            f"model {model.config.name!r} is a {model.config.task} model, not segmentation"
        )
    inputs = {"T1": t1, "T2": t2, "FLAIR": flair}
    if brain_mask is not None:
        inputs["brain mask"] = brain_mask
    arrays, vox, back, _ = as_canonical(inputs, voxel_size)
    shape = arrays["FLAIR"].shape
    image, brain, grid = seg_model_input(arrays, vox, checkpoint)
    result = PredictionResult({})
    prob = (
        predict_seg_probability(
            model,
            image,
            settings or WindowSettings(),
            progress=progress,
            should_stop=should_stop,
            report=result.report,
        )
        * brain
    )
    if grid is not None:
        prob = zoom_to_shape(prob.astype(np.float32), shape, 1)
    prob = back(prob.astype(np.float32))
    result.outputs = {"probability": prob, "mask": (prob > threshold).astype(np.uint8)}
    return result


def reconstruct_qsm(
    model: nn.Module,
    checkpoint: dict,
    field_ppm: Volume | np.ndarray,
    brain_mask: Volume | np.ndarray,
    *,
    voxel_size: Sequence[float] | None = None,
    b0_dir: Sequence[float] | None = None,
    settings: WindowSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PredictionResult:
    """Reconstruct susceptibility (ppm) from a local field (ppm); output ``chi`` (float32).

    ``b0_dir`` is the main-field direction: in scanner (world) axes for :class:`Volume` input,
    in array axes for array input; default ``(0, 0, 1)``.
    """
    if model.config.task != "qsm":
        raise ValueError(f"model {model.config.name!r} is a {model.config.task} model, not qsm")
    arrays, vox, back, linear = as_canonical(
        {"local field": field_ppm, "brain mask": brain_mask}, voxel_size
    )
    b0 = b0_in_array_axes(b0_dir, linear)
    shape = arrays["local field"].shape
    field, mask, grid, model_vox, scales = qsm_model_input(arrays, vox, checkpoint)
    result = PredictionResult({})
    chi = predict_qsm_map(
        model,
        field,
        mask,
        scales,
        settings or WindowSettings(),
        b0_dir=b0,
        voxel_size=model_vox,
        progress=progress,
        should_stop=should_stop,
        report=result.report,
    )
    if grid is not None:
        chi = zoom_to_shape(chi, shape, 1) * (arrays["brain mask"] > 0.5)
    result.outputs = {"chi": back(chi.astype(np.float32))}
    return result
