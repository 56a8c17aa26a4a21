"""3D U-Net backbone with a pluggable bottleneck attention and optional skip attention gates.

One class serves both backbones of FA_SPEC (the registry fixes the two configurations):

- MS segmentation: 3 inputs (T1, T2, FLAIR), 2 classes, GroupNorm(8).
- QSM (QSMnet-style): 1 input (local field), 1 output (susceptibility), BatchNorm.

Both use stages of two ``3x3x3 conv -> norm -> ReLU``, max-pool down-sampling (4 times),
transposed-convolution up-sampling and concatenated skips. Inputs of any spatial size are padded
up to a multiple of 16 and the output is cropped back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_fanet.models.attention_gate import AttentionGate3d
from napari_fanet.models.blocks import DoubleConv, NormSpec
from napari_fanet.models.dual_attention import DualAttention3d
from napari_fanet.models.folded_attention import FoldedAttention3d
from napari_fanet.models.folding import check_volume
from napari_fanet.models.nonlocal_attention import NonLocal3d
from napari_fanet.models.slice_wise_attention import SliceWiseAttention3d

#: Bottleneck attention modules by short name; each is called as ``builder(channels, **kwargs)``.
BOTTLENECK_ATTENTION: dict[str, Callable[..., nn.Module]] = {
    "fa": FoldedAttention3d,
    "sa": NonLocal3d,
    "da": DualAttention3d,
    "rsa": SliceWiseAttention3d,
}

DEPTH = 4  # number of down-samplings
MULTIPLE = 2**DEPTH


def _check_positive_ints(name: str, values: Sequence[int], length: int | None = None) -> None:
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must have {length} entries, got {tuple(values)!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must contain positive integers, got {tuple(values)!r}")


def padding(size: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """``(before, after)`` padding per spatial axis that :class:`UNet3d` adds (and crops off).

    Each axis grows to the next multiple of 16: half of the extra voxels before, the rest after.
    """
    extra = [(-s) % MULTIPLE for s in size]
    return tuple((e // 2, e - e // 2) for e in extra)


class UNet3d(nn.Module):
    """3D U-Net with four down-samplings and an optional attention block at the bottleneck.

    Parameters
    ----------
    in_channels : int
        Input channels (3 for T1/T2/FLAIR, 1 for a QSM local field).
    out_channels : int
        Output channels (2 class logits, or 1 susceptibility map).
    features : sequence of 5 int
        Channels of the five resolution levels, finest first (for example ``(8, 16, 32, 64,
        128)`` for a small CPU model, ``(32, 64, 128, 256, 512)`` as in the paper).
    norm : str or (str, dict)
        Normalisation of the conv blocks (see :func:`~napari_fanet.models.blocks.make_norm`).
    act : str
        Activation of the conv blocks.
    dropout : float
        Dropout after the bottleneck stage (0 disables it).
    attention : {None, "fa", "sa", "da", "rsa"}
        Attention block inserted on the bottleneck output.
    attention_kwargs : mapping, optional
        Keyword arguments for the attention block.
    attention_levels : sequence of int
        Resolution levels that get an attention block (``0`` finest, ``4`` the bottleneck;
        default ``(4,)``, as in the paper). A block at level ``l`` acts on that encoder stage's
        output, at ``1/2**l`` of the input resolution with ``features[l]`` channels, so both the
        skip connection and the deeper levels see attended features. The bottleneck block is
        ``self.attention``; the others are ``self.level_attention[str(l)]``.
    skip_gates : bool
        Put additive attention gates (AG) on the skips of the three deepest levels, gated by the
        bottleneck signal.
    pad_mode : {"constant", "replicate", "reflect"}
        How inputs are padded up to a multiple of 16 per spatial axis.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (8, 16, 32, 64, 128),
        norm: NormSpec = "batch",
        act: str = "relu",
        dropout: float = 0.0,
        *,
        attention: str | None = None,
        attention_kwargs: Mapping[str, Any] | None = None,
        attention_levels: Sequence[int] = (DEPTH,),
        skip_gates: bool = False,
        pad_mode: str = "constant",
    ) -> None:
        super().__init__()
        _check_positive_ints("in_channels", [in_channels])
        _check_positive_ints("out_channels", [out_channels])
        features = tuple(features)
        _check_positive_ints("features", features, DEPTH + 1)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if attention is not None and attention not in BOTTLENECK_ATTENTION:
            raise ValueError(
                f"attention must be None or one of {sorted(BOTTLENECK_ATTENTION)}, "
                f"got {attention!r}"
            )
        levels = tuple(attention_levels)
        if (
            not levels
            or len(set(levels)) != len(levels)
            or any(type(v) is not int or v not in range(DEPTH + 1) for v in levels)
        ):
            raise ValueError(
                f"attention_levels must be distinct levels out of 0..{DEPTH}, got {levels!r}"
            )
        if pad_mode not in ("constant", "replicate", "reflect"):
            raise ValueError(
                f"pad_mode must be 'constant', 'replicate' or 'reflect', got {pad_mode!r}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.pad_mode = pad_mode

        self.encoders = nn.ModuleList([DoubleConv(in_channels, features[0], norm, act)])
        for level in range(1, DEPTH + 1):
            drop = dropout if level == DEPTH else 0.0
            self.encoders.append(DoubleConv(features[level - 1], features[level], norm, act, drop))
        self.pool = nn.MaxPool3d(2)
        self.attention_levels = levels

        def make_attention(level: int) -> nn.Module:
            return BOTTLENECK_ATTENTION[attention](features[level], **dict(attention_kwargs or {}))

        self.attention = (
            make_attention(DEPTH) if attention is not None and DEPTH in levels else None
        )
        # Finer-level blocks; an empty dict (no state_dict keys) in the paper's configuration.
        self.level_attention = nn.ModuleDict(
            {str(lv): make_attention(lv) for lv in sorted(levels) if lv < DEPTH}
            if attention is not None
            else {}
        )
        # Gates on skip levels 1..3 (the three deepest skips), gated by the bottleneck.
        self.gates = nn.ModuleDict(
            {
                str(level): AttentionGate3d(features[level], features[DEPTH], norm=norm)
                for level in range(1, DEPTH)
            }
            if skip_gates
            else {}
        )
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose3d(features[level], features[level - 1], 2, stride=2)
            for level in range(DEPTH, 0, -1)
        )
        self.decoders = nn.ModuleList(
            DoubleConv(2 * features[level - 1], features[level - 1], norm, act)
            for level in range(DEPTH, 0, -1)
        )
        self.head = nn.Conv3d(features[0], out_channels, kernel_size=1)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        size = tuple(x.shape[2:])
        widths = padding(size)
        if not any(b + a for b, a in widths):
            return x, size
        # F.pad takes (W_left, W_right, H_left, H_right, D_left, D_right).
        pads = [p for pair in reversed(widths) for p in pair]
        mode = self.pad_mode
        if mode == "reflect" and any(b + a >= s for (b, a), s in zip(widths, size, strict=True)):
            mode = "replicate"  # reflect padding cannot exceed the input size
        return F.pad(x, pads, mode=mode), size

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features (after attention) of an input, padded as :meth:`forward` pads it.

        Runs the encoder only: ``(B, in_channels, D, H, W)`` -> ``(B, f4, D'/16, H'/16, W'/16)``
        where ``D'`` is ``D`` padded to a multiple of 16 (see :func:`padding`).
        """
        check_volume(x, self.in_channels)
        x, _ = self._pad(x)  # (B, Cin, D', H', W'), multiples of 16
        return self._encode(x)[-1]

    def _attend(self, level: int, y: torch.Tensor) -> torch.Tensor:
        if level == DEPTH:
            return y if self.attention is None else self.attention(y)
        if str(level) in self.level_attention:
            return self.level_attention[str(level)](y)
        return y

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = [self._attend(0, self.encoders[0](x))]  # (B, f0, D, H, W)
        for level in range(1, DEPTH + 1):
            y = self.encoders[level](self.pool(skips[-1]))  # (B, f_l, D/2^l, ...)
            skips.append(self._attend(level, y))  # same shape; (B, f4, D/16, ...) at the end
        return skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, in_channels, D, H, W)``, any spatial size.

        Returns
        -------
        torch.Tensor
            Shape ``(B, out_channels, D, H, W)``: class logits or the regressed map.
        """
        check_volume(x, self.in_channels)
        x, size = self._pad(x)  # (B, Cin, D', H', W'), multiples of 16
        skips = self._encode(x)
        y = skips[DEPTH]
        for step, level in enumerate(range(DEPTH - 1, -1, -1)):
            skip = skips[level]
            if str(level) in self.gates:
                skip = self.gates[str(level)](skip, skips[DEPTH])
            y = self.upsamplers[step](y)  # (B, f_level, ...) at the skip's resolution
            y = self.decoders[step](torch.cat([skip, y], dim=1))  # (B, f_level, ...)
        y = self.head(y)  # (B, out_channels, D', H', W')
        starts = [(p - s) // 2 for p, s in zip(x.shape[2:], size, strict=True)]
        return y[
            :,
            :,
            starts[0] : starts[0] + size[0],
            starts[1] : starts[1] + size[1],
            starts[2] : starts[2] + size[2],
        ]  # (B, out_channels, D, H, W)
