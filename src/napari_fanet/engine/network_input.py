"""Where a voxel of the input layers goes on its way to the FA block, and back.

The attention inspector (:mod:`.attention_inspection`) needs three maps, kept here:

- input arrays -> network input: :func:`prepare_network_input` prepares the whole volume with the
  helpers of :func:`~.predict.segment` and :func:`~.predict.reconstruct_qsm` (canonical arrays,
  resampling to the model's voxel size, z-scoring or QSM scaling and B0 alignment);
  :meth:`NetworkInput.to_network` maps a voxel, :meth:`NetworkInput.to_input` a volume back
  (nearest neighbour; through the B0 rotation for QSM).
- network input -> window: :func:`window_bounds` centres a window on the voxel inside the volume
  (optional: the inspector takes the whole volume by default).
- window -> FA grid: the U-Net pads the window (by default the whole volume) to a multiple of 16
  (:func:`~napari_fanet.models.unet.padding`) and max-pools it ``level`` times before the FA
  block of that level, so padded voxel ``p`` lies in cell ``p // 2**level``
  (:func:`bottleneck_cell`; level 4 is the bottleneck); :func:`cells_to_window` is the inverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_fanet.engine.predict import (
    as_canonical,
    b0_in_array_axes,
    qsm_model_input,
    seg_model_input,
    zoom_to_shape,
)
from napari_fanet.models.unet import DEPTH, padding
from napari_fanet.tasks import QSM, SEGMENTATION, TASKS, get_task
from napari_fanet.tasks.b0_alignment import rotate_volume


@dataclass
class NetworkInput:
    """The whole network input of one task, and how its grid relates to the input arrays.

    Attributes
    ----------
    image : np.ndarray
        ``(C_in, X, Y, Z)`` float32, what the network sees (model grid; B0-aligned for QSM).
    input_shape : tuple of int
        Shape of the input arrays.
    grid : tuple of int or None
        Shape of the model grid when the inputs were resampled to the model's voxel size.
    voxel_size : tuple of float
        Voxel size of the model grid (mm).
    rotation : np.ndarray or None
        QSM only: the rotation into the B0-aligned frame, None when none was needed.
    """

    image: np.ndarray
    input_shape: tuple[int, ...]
    grid: tuple[int, ...] | None
    voxel_size: tuple[float, ...]
    rotation: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape of :attr:`image`."""
        return tuple(self.image.shape[1:])

    def to_network(self, voxel: Sequence[int]) -> tuple[int, int, int]:
        """The voxel of :attr:`image` that input voxel ``voxel`` lands on (nearest)."""
        v = np.asarray(voxel, dtype=np.float64)
        shape = np.asarray(self.shape, dtype=np.float64)
        if self.grid is not None:  # scipy's zoom with grid_mode=True maps voxel centres so
            v = (v + 0.5) * shape / np.asarray(self.input_shape) - 0.5
        if self.rotation is not None:  # a structure at q (mm from the centre) moves to R @ q
            centre = (shape - 1) / 2
            mm = np.asarray(self.voxel_size)
            v = self.rotation @ ((v - centre) * mm) / mm + centre
        return tuple(int(c) for c in np.clip(np.rint(v), 0, shape - 1))

    def to_input(self, volume: np.ndarray) -> np.ndarray:
        """A volume on :attr:`image`'s grid mapped onto the input grid (nearest neighbour)."""
        out = np.asarray(volume, dtype=np.float32)
        if self.rotation is not None:
            out = rotate_volume(out, self.rotation.T, self.voxel_size, order=0)
        if self.grid is not None:
            out = zoom_to_shape(out, self.input_shape, 0)
        return out.astype(np.float32)


def prepare_network_input(
    task: str,
    arrays: dict[str, np.ndarray],
    voxel_size: Sequence[float],
    checkpoint: dict,
    *,
    b0_dir: Sequence[float] | None = None,
) -> NetworkInput:
    """The network input of the whole volume, prepared as the prediction functions do.

    With their defaults: a segmentation FLAIR rougher than the model's real training scans is
    smoothed first (:data:`~napari_fanet.tasks.roughness.MATCH_ROUGHNESS_DEFAULT`).

    Parameters
    ----------
    task : {"segmentation", "qsm"}
        What the model predicts.
    arrays : dict
        Canonical (RAS) arrays by role (:data:`~.prediction_request.TASK_ROLES`).
    voxel_size : sequence of 3 float
        Voxel size of the arrays (mm).
    checkpoint : dict
        The model's checkpoint (voxel size and QSM scales in ``extra``).
    b0_dir : sequence of 3 float, optional
        QSM only: main-field direction in array axes (default z).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    chosen = get_task(task)
    optional = chosen.optional_roles_for(checkpoint)  # zero channels, as in training
    missing = [r for r in chosen.role_names if r not in arrays and r not in optional]
    if missing:
        raise ValueError(f"{task} needs the inputs {missing}; got {sorted(arrays)}")
    canon, vox, _, _ = as_canonical({k: np.asarray(v) for k, v in arrays.items()}, voxel_size)
    shape = next(iter(canon.values())).shape
    return _NETWORK_INPUTS[chosen.name](canon, vox, shape, checkpoint, b0_dir)


def _seg_network_input(canon, vox, shape, checkpoint, b0_dir) -> NetworkInput:
    image, _, grid = seg_model_input(canon, vox, checkpoint)
    sizes = zip(vox, shape, image.shape[1:], strict=True)
    model_vox = tuple(float(v * n / g) for v, n, g in sizes)
    return NetworkInput(image, shape, grid, model_vox)


def _qsm_network_input(canon, vox, shape, checkpoint, b0_dir) -> NetworkInput:
    field, mask, grid, model_vox, scales = qsm_model_input(canon, vox, checkpoint)
    net = QSM.preprocess(field, mask, scales, b0_in_array_axes(b0_dir, None), model_vox)
    return NetworkInput(net.image[None], shape, grid, model_vox, net.rotation)


#: The whole-volume network input of each task, as its prediction function prepares it.
_NETWORK_INPUTS = {SEGMENTATION.name: _seg_network_input, QSM.name: _qsm_network_input}


def window_bounds(centre: int, window: int, length: int) -> tuple[int, int]:
    """``(start, size)`` of a window of ``window`` voxels centred on ``centre`` along one axis.

    The window is clamped inside ``[0, length)``; an axis shorter than the window is taken whole
    (the U-Net pads it, as in the sliding-window prediction).
    """
    size = min(window, length)
    return min(max(centre - size // 2, 0), length - size), size


def _check_level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise TypeError(f"level must be an integer U-Net level, got {level!r}")
    if not 0 <= level <= DEPTH:
        raise ValueError(f"level must be a U-Net level in 0..{DEPTH}, got {level}")
    return 2 ** int(level)


def bottleneck_cell(
    offset: Sequence[int], window_shape: Sequence[int], level: int = DEPTH
) -> tuple[int, ...]:
    """Cell, at U-Net level ``level``, of the voxel at ``offset`` in a window fed to the U-Net.

    The U-Net pads the window to a multiple of 16 per axis and halves it ``level`` times (four
    times down to the bottleneck, the default), so padded voxel ``p`` lies in cell
    ``p // 2**level``.
    """
    size = _check_level(level)
    if len(offset) != len(window_shape) or not all(
        0 <= o < s for o, s in zip(offset, window_shape, strict=True)
    ):
        raise ValueError(f"offset {tuple(offset)} is outside the window {tuple(window_shape)}")
    pads = padding(window_shape)
    return tuple((o + b) // size for o, (b, _) in zip(offset, pads, strict=True))


def cells_to_window(
    cells: np.ndarray, window_shape: Sequence[int], level: int = DEPTH
) -> np.ndarray:
    """Repeat each level-``level`` cell over its ``(2**level)^3`` voxels; crop the padding off.

    ``cells`` has the shape of the padded window // ``2**level``; the result ``window_shape``.
    """
    size = _check_level(level)
    pads = padding(window_shape)
    padded = tuple(s + b + a for s, (b, a) in zip(window_shape, pads, strict=True))
    expected = tuple(p // size for p in padded)
    if tuple(cells.shape) != expected:
        raise ValueError(
            f"a level-{level} grid of shape {cells.shape} does not belong to a window of shape "
            f"{tuple(window_shape)} (expected {expected})"
        )
    crop = tuple(slice(b, b + s) for s, (b, _) in zip(window_shape, pads, strict=True))
    up = cells
    for axis in range(3):
        up = np.repeat(up, size, axis=axis)
    return up[crop]


def voxel_on_ray(volume: np.ndarray, start: Sequence[float], end: Sequence[float]) -> tuple:
    """The voxel of largest value on the segment ``start``-``end`` (data coordinates).

    A 3D click gives a ray through the volume; with maximum-intensity rendering the brightest
    voxel on the ray is the one the user sees.
    """
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    shape = np.asarray(volume.shape)
    steps = max(int(np.ceil(np.abs(end - start).max())) * 2, 1) + 1
    points = start + np.linspace(0.0, 1.0, steps)[:, None] * (end - start)
    idx = np.clip(np.rint(points).astype(int), 0, shape - 1)
    values = np.asarray(volume)[tuple(idx.T)]
    return tuple(int(c) for c in idx[int(np.argmax(values))])
