"""Dual attention head (DA baseline): position and channel attention in parallel, in 3D.

Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019, as the FA authors used it
(FA_SPEC, "Baselines"): no channel reduction. The position branch is
``ConvNormAct(3x3x3) -> position attention -> ConvNormAct(3x3x3)``, the channel branch the same
around channel attention; the sum of the branches goes through ``Dropout3d`` and a 1x1x1
convolution. Both attention modules add their result to their input with a scalar ``gamma`` that
starts at zero. The position module materialises an ``(N, N)`` matrix with ``N = D*H*W``.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_fanet.models.blocks import ConvNormAct, NormSpec
from napari_fanet.models.folding import attention_softmax, check_count, check_volume


class PositionAttention3d(nn.Module):
    """DANet position attention module: self-attention over all ``N = D*H*W`` voxels.

    ``out = gamma * (value(x) @ softmax(query(x)^T key(x))^T) + x`` with unscaled energies.

    Parameters
    ----------
    channels : int
        Number of input (and output) channels ``C``.

    Attributes
    ----------
    query, key : nn.Conv3d
        1x1x1 projections ``C -> max(C // 8, 1)``.
    value : nn.Conv3d
        1x1x1 projection ``C -> C``.
    gamma : nn.Parameter
        Shape ``(1,)``, initialised to zero (the module is the identity at initialisation).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        check_count("channels", channels)
        self.channels = channels
        self.key_channels = max(channels // 8, 1)
        self.query = nn.Conv3d(channels, self.key_channels, kernel_size=1)
        self.key = nn.Conv3d(channels, self.key_channels, kernel_size=1)
        self.value = nn.Conv3d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply position attention.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, D, H, W)``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, C, D, H, W)``.
        """
        check_volume(x, self.channels)
        b, c, d, h, w = x.shape
        ck, n = self.key_channels, d * h * w
        q = self.query(x).reshape(b, ck, n)  # (B, Ck, N)
        k = self.key(x).reshape(b, ck, n)  # (B, Ck, N)
        v = self.value(x).reshape(b, c, n)  # (B, C, N)
        attn = attention_softmax(q.mT, k)  # (B, N, Ck) @ (B, Ck, N) -> (B, N, N), float32+
        out = v @ attn.to(v.dtype).mT  # (B, C, N) @ (B, N, N) -> (B, C, N)
        return self.gamma * out.reshape(b, c, d, h, w) + x  # (B, C, D, H, W)


class ChannelAttention3d(nn.Module):
    """DANet channel attention module: ``out = gamma * (softmax(-E) @ x) + x``, ``E = x x^T``.

    ``E`` is the ``(C, C)`` Gram matrix of the flattened feature maps. DANet computes the softmax
    of ``max(E) - E`` (row-wise maximum); a softmax is unchanged by a per-row shift, so this is
    ``softmax(-E)``, which is computed directly (in at least float32).

    Parameters
    ----------
    channels : int
        Number of input (and output) channels ``C``.

    Attributes
    ----------
    gamma : nn.Parameter
        Shape ``(1,)``, initialised to zero (the module is the identity at initialisation).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        check_count("channels", channels)
        self.channels = channels
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply channel attention.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, D, H, W)``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, C, D, H, W)``.
        """
        check_volume(x, self.channels)
        b, c = x.shape[:2]
        f = x.reshape(b, c, -1)  # (B, C, N)
        attn = attention_softmax(f, f.mT, negate=True)  # (B, C, N) @ (B, N, C) -> (B, C, C)
        out = attn.to(f.dtype) @ f  # (B, C, C) @ (B, C, N) -> (B, C, N)
        return self.gamma * out.reshape(x.shape) + x  # (B, C, D, H, W)


class DualAttention3d(nn.Module):
    """DANet head in 3D: position branch plus channel branch, dropout, 1x1x1 convolution.

    Parameters
    ----------
    channels : int
        Number of input (and output) channels ``C``; every layer keeps ``C`` channels.
    norm : str or (str, dict)
        Norm of the 3x3x3 ``ConvNormAct`` blocks (see
        :func:`~napari_fanet.models.blocks.make_norm`); default ``"batch"``.
    dropout : float
        Probability of ``nn.Dropout3d`` before the output convolution, in ``[0, 1)``;
        default 0.1.

    Attributes
    ----------
    position_in, position_out, channel_in, channel_out : ConvNormAct
        The 3x3x3 conv-norm-ReLU blocks around the two attention modules.
    position_attention : PositionAttention3d
    channel_attention : ChannelAttention3d
    dropout : nn.Dropout3d
    out_conv : nn.Conv3d
        The final 1x1x1 convolution ``C -> C``.
    """

    def __init__(self, channels: int, *, norm: NormSpec = "batch", dropout: float = 0.1) -> None:
        super().__init__()
        check_count("channels", channels)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.channels = channels
        self.position_in = ConvNormAct(channels, channels, norm)
        self.position_attention = PositionAttention3d(channels)
        self.position_out = ConvNormAct(channels, channels, norm)
        self.channel_in = ConvNormAct(channels, channels, norm)
        self.channel_attention = ChannelAttention3d(channels)
        self.channel_out = ConvNormAct(channels, channels, norm)
        self.dropout = nn.Dropout3d(float(dropout))
        self.out_conv = nn.Conv3d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the dual attention head.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, D, H, W)``; any spatial sizes, including 1 and 2.

        Returns
        -------
        torch.Tensor
            Shape ``(B, C, D, H, W)``.
        """
        check_volume(x, self.channels)
        pos = self.position_out(self.position_attention(self.position_in(x)))  # (B, C, D, H, W)
        chan = self.channel_out(self.channel_attention(self.channel_in(x)))  # (B, C, D, H, W)
        return self.out_conv(self.dropout(pos + chan))  # (B, C, D, H, W)
