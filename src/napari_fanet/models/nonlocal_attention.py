"""Non-local block (SA baseline): embedded-Gaussian self-attention over all voxels.

Wang et al., "Non-local Neural Networks", CVPR 2018. For ``X`` of shape ``(B, C, D, H, W)`` and
``N = D*H*W``: ``theta``, ``phi`` and ``g`` are 1x1x1 projections ``C -> Ci``; the affinity
``softmax(theta(X)^T phi(X))`` is an ``(N, N)`` matrix per sample (rows over all positions, no
scaling); the aggregated features go through a 1x1x1 convolution ``Ci -> C`` and a norm whose
scale starts at zero, and are added to ``X``, so the block is the identity at initialisation.

The default ("explicit") path materialises the ``N x N`` matrix, as in the FA paper's comparison.
``fused=True`` calls :func:`torch.nn.functional.scaled_dot_product_attention` with ``scale=1``
instead (same result to rounding). Its inputs are made contiguous: on CPU a non-contiguous last
dimension silently falls back to a path that materialises the full matrix anyway (FA_SPEC,
"Performance notes").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_fanet.models.blocks import NormSpec, make_norm
from napari_fanet.models.folding import attention_softmax, check_count, check_volume


class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block for 3D feature maps.

    Parameters
    ----------
    channels : int
        Number of input (and output) channels ``C``.
    inter_channels : int, optional
        Channels ``Ci`` of the ``theta``/``phi``/``g`` embeddings; default ``max(C // 2, 1)``.
    norm : str or (str, dict)
        Norm after the output convolution (see :func:`~napari_fanet.models.blocks.make_norm`);
        default ``"batch"``. Its scale (gamma) is initialised to zero. With a norm that has no
        scale (``"none"``), the output convolution's weight and bias are zeroed instead, so the
        block is the identity at initialisation either way.
    fused : bool
        ``False`` (default): compute the ``(B, N, N)`` affinity matrix explicitly, in at least
        float32 (autocast is disabled for the energy and the softmax). ``True``: use
        ``scaled_dot_product_attention`` with ``scale=1.0`` on contiguous inputs.

    Attributes
    ----------
    theta, phi, g : nn.Conv3d
        The 1x1x1 embeddings ``C -> Ci`` (with bias).
    out_conv : nn.Conv3d
        The 1x1x1 output projection ``Ci -> C``.
    norm : nn.Module
        The norm after ``out_conv``.
    """

    def __init__(
        self,
        channels: int,
        *,
        inter_channels: int | None = None,
        norm: NormSpec = "batch",
        fused: bool = False,
    ) -> None:
        super().__init__()
        check_count("channels", channels)
        if inter_channels is None:
            inter_channels = max(channels // 2, 1)
        if (
            isinstance(inter_channels, bool)
            or not isinstance(inter_channels, int)
            or inter_channels < 1
        ):
            raise ValueError(
                f"inter_channels must be a positive integer or None, got {inter_channels!r}"
            )
        if not isinstance(fused, bool):
            raise ValueError(f"fused must be True or False, got {fused!r}")
        self.channels = channels
        self.inter_channels = inter_channels
        self.fused = fused
        self.theta = nn.Conv3d(channels, inter_channels, kernel_size=1)
        self.phi = nn.Conv3d(channels, inter_channels, kernel_size=1)
        self.g = nn.Conv3d(channels, inter_channels, kernel_size=1)
        self.out_conv = nn.Conv3d(inter_channels, channels, kernel_size=1)
        self.norm = make_norm(norm, channels)
        scale = getattr(self.norm, "weight", None)
        if isinstance(scale, nn.Parameter):
            nn.init.zeros_(scale)
        else:
            nn.init.zeros_(self.out_conv.weight)
            nn.init.zeros_(self.out_conv.bias)

    def extra_repr(self) -> str:
        """Summarise the options for ``repr``."""
        return (
            f"channels={self.channels}, inter_channels={self.inter_channels}, fused={self.fused}"
        )

    @staticmethod
    def _attend_explicit(t: torch.Tensor, p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Aggregate ``v`` with the explicit affinity; all inputs and the output ``(B, Ci, N)``."""
        attn = attention_softmax(t.mT, p)  # (B, N, Ci) @ (B, Ci, N) -> (B, N, N), float32+
        return v @ attn.to(v.dtype).mT  # (B, Ci, N) @ (B, N, N) -> (B, Ci, N)

    @staticmethod
    def _attend_fused(t: torch.Tensor, p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`_attend_explicit` with ``scaled_dot_product_attention``."""
        q = t.transpose(1, 2).unsqueeze(1).contiguous()  # (B, 1, N, Ci), one head
        k = p.transpose(1, 2).unsqueeze(1).contiguous()  # (B, 1, N, Ci)
        val = v.transpose(1, 2).unsqueeze(1).contiguous()  # (B, 1, N, Ci)
        y = F.scaled_dot_product_attention(q, k, val, scale=1.0)  # (B, 1, N, Ci)
        return y.squeeze(1).transpose(1, 2)  # (B, Ci, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the non-local block.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, D, H, W)``; any spatial sizes, including 1 and 2.

        Returns
        -------
        torch.Tensor
            Shape ``(B, C, D, H, W)``: ``x + norm(out_conv(attention))``.
        """
        check_volume(x, self.channels)
        b, _, d, h, w = x.shape
        ci, n = self.inter_channels, d * h * w
        t = self.theta(x).reshape(b, ci, n)  # (B, Ci, N)
        p = self.phi(x).reshape(b, ci, n)  # (B, Ci, N)
        v = self.g(x).reshape(b, ci, n)  # (B, Ci, N)
        y = self._attend_fused(t, p, v) if self.fused else self._attend_explicit(t, p, v)
        y = y.reshape(b, ci, d, h, w)  # (B, Ci, D, H, W)
        return x + self.norm(self.out_conv(y))
