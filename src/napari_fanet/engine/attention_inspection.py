"""The attention inspector's core: the rank-one folded-attention factors of one clicked voxel.

Every output element ``(q, k, i, j)`` of folded attention is the contraction of ``g(X)`` with the
rank-one tensor ``m_C[q] x m_D[k] x m_H[i] x m_W[j]`` (FA_SPEC, "The rank-one view").
:class:`AttentionInspector` shows that tensor for a voxel of the input layers:

1. **Input and extent.** The network input is prepared as the prediction functions prepare it
   (:mod:`.network_input`). By default the network sees the whole volume (padded to a multiple of
   16 per axis); ``window`` instead takes a window of that many voxels per axis (model grid)
   centred on the voxel inside the volume, for volumes too large for memory. The U-Net's encoder
   runs once inside :func:`~napari_fanet.models.capture_affinities`, which records the
   affinities of every FA block; the pass is reused while model, inputs and extent are unchanged
   (other voxels, levels and display options only re-read the cached matrices).
2. **Level and cell.** An FA block at U-Net level ``l`` (:func:`~napari_fanet.models.
   attention_blocks`; default: the finest the model has, the most detailed map) acts on a grid
   of ``2**l``-voxel cells: the voxel lies in cell ``(k, i, j)`` = padded offset // ``2**l``
   (:func:`~.network_input.bottleneck_cell`; level 4 is the bottleneck, 16-voxel cells). The
   factor axes D, H, W run along the arrays' axes 0, 1, 2 (x, y, z of the RAS-canonical arrays
   the plugin's reader gives).
3. **Rows.** ``effective=True`` gives the rows of ``M_a = I + beta_a A_a`` that the trained block
   applies to ``g(X)`` (``M_a = A_a`` in the pure variant); ``effective=False`` the raw softmax
   rows ``A_a``. (With ``outer_residual`` the block adds ``X - g(X)`` on top; not shown.)
4. **Channels.** The clicked voxel is ``C`` output elements, one per channel ``q``. ``channel``
   picks one (``-1``: the mean of the ``C`` rows of ``M_C``, the voxel's feature vector as a
   whole). ``source_channel`` picks the input feature map ``q'`` of ``g(X)`` whose weights are
   shown (``-1``: summed over all of them). The map is the weight tensor summed or sliced over
   input channels, ``w * m_D[k] x m_H[i] x m_W[j]`` with ``w = sum_q' m_C[q, q']`` or
   ``m_C[q, q']``: the tensor being rank one, the channel choice only scales the spatial map (by
   exactly 1 for raw rows summed over channels, which are probability distributions, and by
   ``1 + beta_C`` for effective ones).
5. **Image space.** The map stays on the cell grid (an outer product of three short rows, cheap
   per click). :attr:`AttentionView.grid` says where that grid lies on the input arrays (cell
   spacing and the centre of cell 0 in input voxels), so a viewer can draw it as a layer of its
   own, scaled, with no up-sampling. Only when the network's frame is rotated against the
   arrays (QSM with a tilted B0) is there no such grid; :attr:`AttentionView.image_map` (computed
   on first use) repeats each cell over its voxels (nearest neighbour: every voxel shows the
   weight of its cell, not a share of it), crops the padding, places the window in a zero volume
   and maps it back onto the input grid (through the inverse B0 rotation for QSM, then the
   inverse resampling; both nearest neighbour).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_fanet.engine.model_catalog import ModelEntry, available_models
from napari_fanet.engine.network_input import (
    NetworkInput,
    bottleneck_cell,
    cells_to_window,
    prepare_network_input,
    voxel_on_ray,
    window_bounds,
)
from napari_fanet.engine.predict import load_model
from napari_fanet.engine.prediction_request import PredictionRequest
from napari_fanet.models import (
    AffinityRecord,
    attention_blocks,
    capture_affinities,
    read_checkpoint,
)
from napari_fanet.models.unet import DEPTH, MULTIPLE, padding
from napari_fanet.tasks import get_task


@dataclass
class RankOneFactors:
    """Rank-one factors of one FA-grid cell (see the module docstring for the definitions).

    Attributes
    ----------
    factors : dict
        ``"D"``, ``"H"``, ``"W"``: the rows ``m_D[k]``, ``m_H[i]``, ``m_W[j]``; ``"C"``: row
        ``m_C[q]`` (the mean row when ``channel`` is -1). float64.
    matrices : dict
        The four ``(L, L)`` matrices the rows come from (raw ``A_a`` or effective ``M_a``).
    channel_weight : float
        ``w``: the scale the channel factor puts on the spatial map.
    spatial_map : np.ndarray
        ``w * m_D[k] x m_H[i] x m_W[j]`` on the FA block's grid ``(X, Y, Z)`` (float64).
    """

    factors: dict[str, np.ndarray]
    matrices: dict[str, np.ndarray]
    channel_weight: float
    spatial_map: np.ndarray


def matrices_of(record: AffinityRecord, *, effective: bool = True) -> dict[str, np.ndarray]:
    """The four matrices of batch element 0 as float64 arrays: raw ``A_a`` or effective ``M_a``.

    Returns
    -------
    dict
        ``{"D": (D, D), "H": (H, H), "W": (W, W), "C": (C, C)}``.
    """
    mats = record.effective() if effective else record.affinities
    return {a: m[0].detach().cpu().double().numpy() for a, m in mats.items()}


def rank_one_factors(
    record: AffinityRecord,
    cell: Sequence[int],
    *,
    effective: bool = True,
    channel: int = -1,
    source_channel: int = -1,
    matrices: dict[str, np.ndarray] | None = None,
) -> RankOneFactors:
    """Factors and spatial map of cell ``(k, i, j)`` of an FA block's grid.

    Parameters
    ----------
    record : AffinityRecord
        Affinities of one forward pass (batch element 0 is used).
    cell : sequence of 3 int
        ``(k, i, j)`` on the block's grid ``(X, Y, Z)``.
    effective : bool
        Rows of ``M_a = I + beta_a A_a`` (default) or of the raw softmax ``A_a``.
    channel : int
        Output channel ``q`` of the element; -1 averages the rows of all channels.
    source_channel : int
        Input channel ``q'`` of ``g(X)`` whose weights the map shows; -1 sums over channels.
    matrices : dict, optional
        :func:`matrices_of` ``record`` with the same ``effective``, when already computed (the
        inspector caches them, so that a click only slices rows and takes an outer product).
    """
    n_channels = record.input_shape[1]
    for name, value in (("channel", channel), ("source_channel", source_channel)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if not -1 <= value < n_channels:
            raise ValueError(
                f"{name} must be -1 (all) or in [0, {n_channels - 1}] for an FA block with "
                f"{n_channels} channels, got {value}"
            )
    grid = tuple(record.input_shape[2:])
    cell = tuple(int(c) for c in cell)
    if len(cell) != 3 or not all(0 <= c < n for c, n in zip(cell, grid, strict=False)):
        raise ValueError(f"cell {cell} is outside the FA block's grid {grid}")
    if matrices is None:
        matrices = matrices_of(record, effective=effective)
    factors = {a: matrices[a][c] for a, c in zip("DHW", cell, strict=True)}
    factors["C"] = matrices["C"][channel] if channel >= 0 else matrices["C"].mean(axis=0)
    weight = float(factors["C"].sum() if source_channel < 0 else factors["C"][source_channel])
    # (D,) x (H,) x (W,) -> (X, Y, Z): the rank-one spatial map, scaled by the channel factor.
    d, h, w = (factors[a] for a in "DHW")
    spatial = np.multiply.outer(np.multiply.outer(weight * d, h), w)
    return RankOneFactors(factors, matrices, weight, spatial)


@dataclass(frozen=True)
class CellGrid:
    """Where an FA block's cell grid lies on the input arrays (axis-aligned frames only).

    Cell ``c`` (per axis) is centred on input-array coordinate ``offset + scale * c``: a viewer
    shows the ``(X, Y, Z)`` map as an image with these (times the input voxel size) as its own
    scale and translate, and it lines up with the anatomy without any up-sampling.

    Attributes
    ----------
    scale : tuple of float
        Cell spacing in input voxels per axis (``2**level`` times the model-to-input voxel ratio).
    offset : tuple of float
        Input-voxel coordinate of the centre of cell ``(0, 0, 0)`` (negative where the U-Net's
        padding puts it before the first voxel).
    """

    scale: tuple[float, ...]
    offset: tuple[float, ...]


@dataclass
class AttentionView:
    """What the inspector shows for one voxel.

    Attributes
    ----------
    voxel : tuple of int
        The inspected voxel, in the input arrays' axes.
    network_voxel : tuple of int
        The same voxel in the network input (model grid; B0-aligned frame for QSM).
    window_start, window_shape : tuple of int
        The part of the network input the network saw: ``(0, 0, 0)`` and the whole volume by
        default, else the window (start may be where the volume starts: see
        :func:`window_bounds`).
    whole_volume : bool
        Whether the network saw the whole volume (no window).
    level : int
        U-Net level of the inspected FA block (0 finest, 4 the bottleneck).
    levels : tuple of int
        The levels at which the model has FA blocks.
    cell_size : int
        ``2**level``: cell edge in voxels of the model grid.
    cell_mm : tuple of float
        Cell edge in mm per axis.
    cell : tuple of int
        ``(k, i, j)``: the cell holding the voxel on the block's grid.
    bottleneck_shape : tuple of int
        ``(C, X, Y, Z)`` of the FA block's input (its grid; the name dates from when only the
        bottleneck block was inspected).
    grid : CellGrid or None
        Where the cell grid lies on the input arrays; None when the network's frame is rotated
        against them (QSM with a tilted B0): use :attr:`image_map` then.
    beta : tuple of float
        The learned gates ``(beta_D, beta_H, beta_W, beta_C)``.
    variant : str
        ``"authors"`` (gated) or ``"pure"``.
    effective, channel, source_channel
        The options the view was computed with.
    rank_one : RankOneFactors
        Factor rows, matrices, channel weight and the map on the cell grid.
    reused_forward : bool
        Whether the forward pass of an earlier call was reused.
    image_map : np.ndarray
        (property, computed on first use) float32 map on the input grid, zero outside the
        window: each cell repeated over its voxels and mapped back onto the input arrays.
    """

    voxel: tuple[int, ...]
    network_voxel: tuple[int, ...]
    window_start: tuple[int, ...]
    window_shape: tuple[int, ...]
    whole_volume: bool
    level: int
    levels: tuple[int, ...]
    cell_size: int
    cell_mm: tuple[float, ...]
    cell: tuple[int, ...]
    bottleneck_shape: tuple[int, ...]
    grid: CellGrid | None
    beta: tuple[float, ...]
    variant: str
    effective: bool
    channel: int
    source_channel: int
    rank_one: RankOneFactors
    reused_forward: bool
    network: NetworkInput = field(repr=False, compare=False)

    @functools.cached_property
    def image_map(self) -> np.ndarray:
        """The map on the input arrays' grid, float32 (see the module docstring, item 5)."""
        full = np.zeros(self.network.shape, dtype=np.float32)
        region = tuple(
            slice(s, s + n) for s, n in zip(self.window_start, self.window_shape, strict=True)
        )
        full[region] = cells_to_window(self.rank_one.spatial_map, self.window_shape, self.level)
        return self.network.to_input(full)

    def legend(self) -> str:
        """One sentence saying what the map shows, for a dock's legend."""
        rows = "effective rows M = I + β·A" if self.effective else "raw softmax rows A"
        mm = " x ".join(f"{m:g}" for m in self.cell_mm)
        where = "the whole volume" if self.whole_volume else f"a {self.window_shape} window"
        if not self.effective and self.source_channel < 0:
            total = "it sums to 1 over the volume (raw rows are probability distributions)"
        elif self.source_channel < 0:
            total = "raw rows would sum to 1; effective ones add the identity, scaled by β"
        else:
            total = f"one input channel (q' = {self.source_channel}) of the weight tensor"
        return (
            f"Attention weight of the clicked voxel over {where}: outer product of its D, H, "
            f"W {rows} at U-Net level {self.level} ({mm} mm cells); {total}."
        )


def _fingerprint(array: np.ndarray) -> tuple:
    """Shape, dtype and CRC-32 of an array: whether a layer's data changed since the last click.

    Checked on every click (a user may paint a mask in place), so it must be cheap: CRC-32 reads
    a 1 mm brain (29 MB) in about 20 ms, four times faster than a cryptographic hash, and detects
    every change of up to 32 consecutive bits (no adversary here).
    """
    data = np.ascontiguousarray(array)
    return data.shape, data.dtype.str, zlib.crc32(memoryview(data).cast("B"))


def _check_window(window: int | None) -> None:
    if window is None:
        return
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(
            f"window must be None (the whole volume) or an integer number of voxels, "
            f"got {window!r}"
        )
    if window < MULTIPLE or window % MULTIPLE:
        raise ValueError(f"window must be a positive multiple of {MULTIPLE} voxels, got {window}")


def _check_level(level: int | None, levels: dict[int, str]) -> int:
    found = sorted(levels)
    if level is None:
        return found[0]  # the finest block: the most detailed map
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise TypeError(f"level must be None (the finest) or an integer, got {level!r}")
    if int(level) not in levels:
        raise ValueError(
            f"the model has no FA block at level {level}; it has FA blocks at level(s) {found} "
            f"(0 finest, {DEPTH} the bottleneck)"
        )
    return int(level)


def cell_grid(
    net: NetworkInput, start: Sequence[int], level: int, size: Sequence[int]
) -> CellGrid | None:
    """:class:`CellGrid` of the level-``level`` cells of a window (``start``, ``size``) of ``net``.

    Network voxel ``p`` is centred on input coordinate ``(p + 0.5) * r - 0.5`` with ``r`` the
    input-to-model shape ratio (1 without resampling; the inverse of
    :meth:`~.network_input.NetworkInput.to_network`). Cell ``c`` covers padded voxels
    ``c * 2**level`` onwards, so its centre is network voxel
    ``start - pad_before + (c + 1/2) * 2**level - 1/2``. None when the frame is rotated.
    """
    if net.rotation is not None:
        return None
    ratio = np.ones(3) if net.grid is None else np.divide(net.input_shape, net.shape)
    before = np.array([b for b, _ in padding(size)], dtype=float)
    cell = float(2**level)
    offset = (np.asarray(start, dtype=float) - before + cell / 2) * ratio - 0.5
    return CellGrid(tuple(float(v) for v in cell * ratio), tuple(float(v) for v in offset))


class AttentionInspector:
    """Inspect voxel after voxel, reusing the network input and the forward pass when possible.

    One forward pass captures the affinities of every FA block; the matrices of each block (raw
    and effective) are converted once and kept, so a click costs a few row look-ups and one
    outer product on the cell grid.

    Attributes
    ----------
    forward_passes : int
        How many forward passes the inspector has run (cache misses).
    """

    def __init__(self) -> None:
        self.forward_passes = 0
        self._prepared: tuple[tuple, NetworkInput] | None = None
        self._forward: tuple[tuple, nn.Module, dict[str, AffinityRecord]] | None = None
        self._matrices: dict[tuple[str, bool], dict[str, np.ndarray]] = {}
        self._models: dict[tuple, tuple[nn.Module, dict]] = {}

    def load(self, model: str | Path) -> tuple[nn.Module, dict]:
        """Load a shipped model by name or a checkpoint file once (kept while the file is)."""
        path = Path(model)
        key = (str(model), path.stat().st_mtime_ns if path.is_file() else None)
        if key not in self._models:
            self._models = {key: load_model(model)}  # keep one: models can be large
        return self._models[key]

    def inspect_request(
        self, request: PredictionRequest, voxel: Sequence[int], **options: Any
    ) -> AttentionView:
        """:meth:`inspect` for the inputs, model and B0 direction of a prediction request.

        Raises ``ValueError`` listing :meth:`PredictionRequest.problems` when there are any.
        """
        found = request.problems()
        if found:
            raise ValueError("cannot inspect: " + "; ".join(found))
        model, checkpoint = self.load(request.model)
        arrays = {r: np.asarray(i.data) for r, i in request.inputs.items() if i is not None}
        first = next(i for i in request.inputs.values() if i is not None)
        voxel_size = tuple(float(v) for v in first.voxel_size()[-3:])
        return self.inspect(
            request.task,
            arrays,
            voxel_size,
            model,
            checkpoint,
            voxel,
            b0_dir=request.b0_dir,
            **options,
        )

    def inspect(
        self,
        task: str,
        arrays: dict[str, np.ndarray],
        voxel_size: Sequence[float],
        model: nn.Module,
        checkpoint: dict,
        voxel: Sequence[int],
        *,
        level: int | None = None,
        window: int | None = None,
        b0_dir: Sequence[float] | None = None,
        effective: bool = True,
        channel: int = -1,
        source_channel: int = -1,
    ) -> AttentionView:
        """Rank-one attention factors of the cell holding ``voxel`` at one FA level.

        Parameters
        ----------
        task : {"segmentation", "qsm"}
            What the model predicts.
        arrays : dict
            Input arrays by role (``"T1"``, ``"T2"``, ``"FLAIR"``, ``"brain mask"`` or
            ``"local field"``, ``"brain mask"``), canonical (RAS) as the plugin's reader gives.
        voxel_size : sequence of 3 float
            The arrays' voxel size (mm).
        model : torch.nn.Module
            A network with FoldedAttention3d blocks (typically a U-Net from a checkpoint).
        checkpoint : dict
            Its checkpoint (voxel size and QSM scales in ``extra``).
        voxel : sequence of 3 int
            The voxel to inspect, in the arrays' axes.
        level : int, optional
            U-Net level of the FA block to inspect (cells of ``2**level`` voxels); default the
            finest level with an FA block.
        window : int, optional
            None (default): the network sees the whole volume. Otherwise a window of this many
            voxels per axis of the model grid (a multiple of 16) around the voxel, for volumes
            that do not fit in memory.
        b0_dir : sequence of 3 float, optional
            QSM only: main-field direction in array axes (default z).
        effective, channel, source_channel
            See :func:`rank_one_factors`.

        Raises
        ------
        ValueError
            No FA block at ``level`` (the message lists the levels there are), a bad window, a
            voxel outside the volume, a model for another task, or an FA grid that is not the
            U-Net's.
        MemoryError
            The whole volume does not fit for the forward pass (the message suggests a window).
        """
        _check_window(window)
        blocks = attention_blocks(model)
        if not blocks:
            raise ValueError(f"{type(model).__name__} has no FoldedAttention3d block to inspect")
        level = _check_level(level, blocks)
        model_task = getattr(getattr(model, "config", None), "task", None)
        if model_task is not None and not get_task(task).owns(model):
            raise ValueError(f"the model is a {model_task} model, not {task}")
        net = self._network_input(task, arrays, voxel_size, checkpoint, b0_dir)
        voxel = tuple(int(v) for v in voxel)
        inside = len(voxel) == 3 and all(0 <= v < n for v, n in zip(voxel, net.input_shape))  # noqa: B905
        if not inside:
            raise ValueError(f"voxel {voxel} is outside the volume of shape {net.input_shape}")
        centre = net.to_network(voxel)
        if window is None:
            start, size = (0, 0, 0), tuple(net.shape)
        else:
            bounds = [window_bounds(c, window, n) for c, n in zip(centre, net.shape, strict=True)]
            start = tuple(b[0] for b in bounds)
            size = tuple(b[1] for b in bounds)
        records, reused = self._run(model, net, start, size)
        name = blocks[level]
        record = records[name]
        offset = tuple(c - s for c, s in zip(centre, start, strict=True))
        cell = bottleneck_cell(offset, size, level)
        pads = zip(size, padding(size), strict=True)
        expected = tuple((s + b + a) // 2**level for s, (b, a) in pads)
        if record.input_shape[2:] != expected:
            raise ValueError(
                f"the FoldedAttention3d block {name!r}, taken as level {level}, sees a "
                f"{record.input_shape[2:]} grid for a {size} input; the inspector expects a "
                f"U-Net level-{level} grid of {expected} ({2**level}-voxel cells)"
            )
        key = (name, bool(effective))
        if key not in self._matrices:
            self._matrices[key] = matrices_of(record, effective=effective)
        factors = rank_one_factors(
            record, cell, effective=effective, channel=channel, source_channel=source_channel,
            matrices=self._matrices[key],
        )  # fmt: skip
        return AttentionView(
            voxel=voxel,
            network_voxel=centre,
            window_start=start,
            window_shape=size,
            whole_volume=window is None,
            level=level,
            levels=tuple(blocks),
            cell_size=2**level,
            cell_mm=tuple(float(v) * 2**level for v in net.voxel_size),
            cell=cell,
            bottleneck_shape=tuple(record.input_shape[1:]),
            grid=cell_grid(net, start, level, size),
            beta=tuple(float(b) for b in record.beta),
            variant=record.variant,
            effective=effective,
            channel=channel,
            source_channel=source_channel,
            rank_one=factors,
            reused_forward=reused,
            network=net,
        )

    def _network_input(self, task, arrays, voxel_size, checkpoint, b0_dir) -> NetworkInput:
        extra = checkpoint.get("extra", {})
        key = (
            task,
            tuple(sorted((role, _fingerprint(np.asarray(a))) for role, a in arrays.items())),
            tuple(np.round(np.asarray(voxel_size, dtype=float), 6)),
            repr(extra.get("voxel_size")),
            repr(extra.get("preprocessing")),
            None if b0_dir is None else tuple(float(b) for b in b0_dir),
        )
        if self._prepared is None or self._prepared[0] != key:
            net = prepare_network_input(task, arrays, voxel_size, checkpoint, b0_dir=b0_dir)
            self._prepared = (key, net)
        return self._prepared[1]

    def _run(self, model, net, start, size) -> tuple[dict[str, AffinityRecord], bool]:
        key = (self._prepared[0], start, size)
        if self._forward is not None and self._forward[0] == key and self._forward[1] is model:
            return self._forward[2], True
        self._forward = None  # free the old records before the new pass
        self._matrices = {}
        region = tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))
        crop = np.ascontiguousarray(net.image[(slice(None), *region)], dtype=np.float32)
        param = next(model.parameters())
        model.eval()
        run = getattr(model, "bottleneck", model)  # the encoder is enough to reach the FA blocks
        try:
            x = torch.from_numpy(crop)[None].to(param.device, param.dtype)  # (1, C_in, *size)
            with torch.no_grad(), capture_affinities(model) as capture:
                run(x)
        except (MemoryError, torch.OutOfMemoryError) as exc:
            raise MemoryError(
                f"the forward pass over a {size} input (model grid) does not fit in memory "
                f"({type(exc).__name__}); inspect with a window (a multiple of {MULTIPLE} "
                "voxels, e.g. 128) instead of the whole volume"
            ) from exc
        records = {}
        for name, found in capture.records.items():
            if not found:
                continue
            record = found[-1]
            records[name] = AffinityRecord(
                affinities={a: m.detach().cpu() for a, m in record.affinities.items()},
                beta=record.beta.detach().cpu(),
                variant=record.variant,
                input_shape=record.input_shape,
            )
        self.forward_passes += 1
        self._forward = (key, model, records)
        return records, False


@functools.lru_cache(maxsize=64)
def _attention_of(path: str, mtime_ns: int) -> str | None:
    return read_checkpoint(path)["config"].get("attention")


@functools.lru_cache(maxsize=64)
def _levels_of(path: str, mtime_ns: int) -> tuple[int, ...]:
    config = read_checkpoint(path)["config"]
    if config.get("attention") != "fa":
        return ()
    return tuple(sorted(config.get("attention_levels") or (DEPTH,)))


def fa_levels(model: str | Path) -> tuple[int, ...]:
    """The U-Net levels with an FA block of a checkpoint file, finest first (read once).

    Empty for a model without folded attention. Checkpoints written before attention levels
    existed have the bottleneck block only, level 4.
    """
    path = Path(model)
    return _levels_of(str(path), path.stat().st_mtime_ns)


def fa_models(task: str | None = None) -> list[ModelEntry]:
    """The available models (:func:`~.model_catalog.available_models`) with an FA block."""
    return [
        e
        for e in available_models(task)
        if _attention_of(str(e.path), e.path.stat().st_mtime_ns) == "fa"
    ]


__all__ = [
    "AttentionInspector",
    "AttentionView",
    "CellGrid",
    "RankOneFactors",
    "cell_grid",
    "fa_levels",
    "fa_models",
    "matrices_of",
    "rank_one_factors",
    "voxel_on_ray",
]
