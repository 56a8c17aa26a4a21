"""The attention inspector's core: the rank-one folded-attention factors of one clicked voxel.

Every output element ``(q, k, i, j)`` of folded attention is the contraction of ``g(X)`` with the
rank-one tensor ``m_C[q] x m_D[k] x m_H[i] x m_W[j]`` (FA_SPEC, "The rank-one view").
:class:`AttentionInspector` shows that tensor for a voxel of the input layers:

1. **Input and window.** The network input is prepared as the prediction functions prepare it
   and a window of ``window`` voxels per axis (model grid) is centred on the voxel inside the
   volume (:mod:`.network_input`). The U-Net's encoder runs once on the window inside
   :func:`~napari_fanet.models.capture_affinities`; the pass is reused while model, inputs and
   window are unchanged.
2. **Bottleneck cell.** The voxel lies in cell ``(k, i, j)`` = padded window offset // 16
   (:func:`~.network_input.bottleneck_cell`). The factor axes D, H, W run along the arrays'
   axes 0, 1, 2 (x, y, z of the RAS-canonical arrays the plugin's reader gives).
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
5. **Image space.** The map on the bottleneck grid is repeated over the 16^3 voxels of each cell
   (nearest neighbour: every voxel shows the weight of its cell, not a share of it), cropped to
   the window, placed in a zero volume and mapped back onto the input grid (through the inverse
   B0 rotation for QSM, then the inverse resampling; both nearest neighbour).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
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
from napari_fanet.models import AffinityRecord, capture_affinities, read_checkpoint
from napari_fanet.models.unet import MULTIPLE, padding
from napari_fanet.tasks import get_task


@dataclass
class RankOneFactors:
    """Rank-one factors of one bottleneck cell (see the module docstring for the definitions).

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
        ``w * m_D[k] x m_H[i] x m_W[j]`` on the bottleneck grid ``(D, H, W)``.
    """

    factors: dict[str, np.ndarray]
    matrices: dict[str, np.ndarray]
    channel_weight: float
    spatial_map: np.ndarray


def rank_one_factors(
    record: AffinityRecord,
    cell: Sequence[int],
    *,
    effective: bool = True,
    channel: int = -1,
    source_channel: int = -1,
) -> RankOneFactors:
    """Factors and spatial map of bottleneck cell ``(k, i, j)`` from captured affinities.

    Parameters
    ----------
    record : AffinityRecord
        Affinities of one forward pass (batch element 0 is used).
    cell : sequence of 3 int
        ``(k, i, j)`` on the bottleneck grid.
    effective : bool
        Rows of ``M_a = I + beta_a A_a`` (default) or of the raw softmax ``A_a``.
    channel : int
        Output channel ``q`` of the element; -1 averages the rows of all channels.
    source_channel : int
        Input channel ``q'`` of ``g(X)`` whose weights the map shows; -1 sums over channels.
    """
    n_channels = record.input_shape[1]
    for name, value in (("channel", channel), ("source_channel", source_channel)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if not -1 <= value < n_channels:
            raise ValueError(
                f"{name} must be -1 (all) or in [0, {n_channels - 1}] for a bottleneck with "
                f"{n_channels} channels, got {value}"
            )
    mats = record.effective() if effective else record.affinities
    matrices = {a: m[0].detach().cpu().double().numpy() for a, m in mats.items()}
    rows = record.factors((max(channel, 0), *cell), effective=effective)
    factors = {a: rows[a].detach().cpu().double().numpy() for a in ("D", "H", "W")}
    factors["C"] = matrices["C"][channel] if channel >= 0 else matrices["C"].mean(axis=0)
    weight = float(factors["C"].sum() if source_channel < 0 else factors["C"][source_channel])
    spatial = record.spatial_map(tuple(cell), effective=effective).detach().cpu().double()
    return RankOneFactors(factors, matrices, weight, weight * spatial.numpy())


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
        The window in the network input (start may be where the volume starts: see
        :func:`window_bounds`).
    cell : tuple of int
        ``(k, i, j)``: the bottleneck cell holding the voxel.
    bottleneck_shape : tuple of int
        ``(C, D, H, W)`` of the FA block's input.
    beta : tuple of float
        The learned gates ``(beta_D, beta_H, beta_W, beta_C)``.
    variant : str
        ``"authors"`` (gated) or ``"pure"``.
    effective, channel, source_channel
        The options the view was computed with.
    rank_one : RankOneFactors
        Factor rows, matrices, channel weight and the map on the bottleneck grid.
    image_map : np.ndarray
        float32 map on the input grid (zero outside the window).
    reused_forward : bool
        Whether the forward pass of an earlier call was reused.
    """

    voxel: tuple[int, ...]
    network_voxel: tuple[int, ...]
    window_start: tuple[int, ...]
    window_shape: tuple[int, ...]
    cell: tuple[int, ...]
    bottleneck_shape: tuple[int, ...]
    beta: tuple[float, ...]
    variant: str
    effective: bool
    channel: int
    source_channel: int
    rank_one: RankOneFactors
    image_map: np.ndarray
    reused_forward: bool


def _fingerprint(array: np.ndarray) -> str:
    data = np.ascontiguousarray(array)
    digest = hashlib.blake2b(f"{data.shape}{data.dtype}".encode(), digest_size=16)
    digest.update(memoryview(data).cast("B"))
    return digest.hexdigest()


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"window must be an integer number of voxels, got {window!r}")
    if window < MULTIPLE or window % MULTIPLE:
        raise ValueError(f"window must be a positive multiple of {MULTIPLE} voxels, got {window}")


class AttentionInspector:
    """Inspect voxel after voxel, reusing the network input and the forward pass when possible.

    Attributes
    ----------
    forward_passes : int
        How many forward passes the inspector has run (cache misses).
    """

    def __init__(self) -> None:
        self.forward_passes = 0
        self._prepared: tuple[tuple, NetworkInput] | None = None
        self._forward: tuple[tuple, nn.Module, AffinityRecord] | None = None
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
        window: int = 64,
        b0_dir: Sequence[float] | None = None,
        effective: bool = True,
        channel: int = -1,
        source_channel: int = -1,
    ) -> AttentionView:
        """Rank-one attention factors of the bottleneck cell holding ``voxel``.

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
            A network with one FoldedAttention3d block (typically a U-Net from a checkpoint).
        checkpoint : dict
            Its checkpoint (voxel size and QSM scales in ``extra``).
        voxel : sequence of 3 int
            The voxel to inspect, in the arrays' axes.
        window : int
            Window size in voxels of the model grid, a multiple of 16.
        b0_dir : sequence of 3 float, optional
            QSM only: main-field direction in array axes (default z).
        effective, channel, source_channel
            See :func:`rank_one_factors`.
        """
        _check_window(window)
        model_task = getattr(getattr(model, "config", None), "task", None)
        if model_task is not None and not get_task(task).owns(model):
            raise ValueError(f"the model is a {model_task} model, not {task}")
        net = self._network_input(task, arrays, voxel_size, checkpoint, b0_dir)
        voxel = tuple(int(v) for v in voxel)
        inside = len(voxel) == 3 and all(0 <= v < n for v, n in zip(voxel, net.input_shape))  # noqa: B905
        if not inside:
            raise ValueError(f"voxel {voxel} is outside the volume of shape {net.input_shape}")
        centre = net.to_network(voxel)
        bounds = [window_bounds(c, window, n) for c, n in zip(centre, net.shape, strict=True)]
        start = tuple(b[0] for b in bounds)
        size = tuple(b[1] for b in bounds)
        record, reused = self._run(model, net, start, size)
        offset = tuple(c - s for c, s in zip(centre, start, strict=True))
        cell = bottleneck_cell(offset, size)
        pads = zip(size, padding(size), strict=True)
        expected = tuple((s + b + a) // MULTIPLE for s, (b, a) in pads)
        if record.input_shape[2:] != expected:
            raise ValueError(
                f"the FoldedAttention3d block sees a {record.input_shape[2:]} grid for a "
                f"{size} window; the inspector expects a U-Net bottleneck of {expected}"
            )
        factors = rank_one_factors(
            record, cell, effective=effective, channel=channel, source_channel=source_channel
        )
        full = np.zeros(net.shape, dtype=np.float32)
        region = tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))
        full[region] = cells_to_window(factors.spatial_map, size)
        return AttentionView(
            voxel=voxel,
            network_voxel=centre,
            window_start=start,
            window_shape=size,
            cell=cell,
            bottleneck_shape=tuple(record.input_shape[1:]),
            beta=tuple(float(b) for b in record.beta),
            variant=record.variant,
            effective=effective,
            channel=channel,
            source_channel=source_channel,
            rank_one=factors,
            image_map=net.to_input(full),
            reused_forward=reused,
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

    def _run(self, model, net, start, size) -> tuple[AffinityRecord, bool]:
        key = (self._prepared[0], start, size)
        if self._forward is not None and self._forward[0] == key and self._forward[1] is model:
            return self._forward[2], True
        crop = np.zeros((net.image.shape[0], *size), dtype=np.float32)
        region = tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))
        crop[:] = net.image[(slice(None), *region)]
        param = next(model.parameters())
        x = torch.from_numpy(crop)[None].to(param.device, param.dtype)  # (1, C_in, *size)
        model.eval()
        run = getattr(model, "bottleneck", model)  # the encoder is enough to reach the FA block
        with torch.no_grad(), capture_affinities(model) as capture:
            run(x)
        record = capture.last()
        record = AffinityRecord(
            affinities={a: m.detach().cpu() for a, m in record.affinities.items()},
            beta=record.beta.detach().cpu(),
            variant=record.variant,
            input_shape=record.input_shape,
        )
        self.forward_passes += 1
        self._forward = (key, model, record)
        return record, False


@functools.lru_cache(maxsize=64)
def _attention_of(path: str, mtime_ns: int) -> str | None:
    return read_checkpoint(path)["config"].get("attention")


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
    "RankOneFactors",
    "fa_models",
    "rank_one_factors",
    "voxel_on_ray",
]
