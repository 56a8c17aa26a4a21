"""Recurrent slice-wise attention (RSA baseline) for ``(B, C, D, H, W)`` feature tensors.

Zhang et al., "RSANet: Recurrent Slice-wise Attention Network for Multiple Sclerosis Lesion
Segmentation", MICCAI 2019, as FA_SPEC ("Baselines") fixes it: three spatial steps in the order
D, H, W and no channel step. At each step the projections are recomputed from the running
tensor ``Y`` (which starts as ``X``) with that step's own 1x1x1 convolutions ``C -> C``:

    T, P, G = theta_a(Y), phi_a(Y), g_a(Y)
    E_a = unfold(T, a) @ unfold(P, a)^T                      (B, L, L), unscaled
    A_a = softmax(E_a) over the last dimension               in at least float32
    Y <- Y + gamma_a * fold(A_a @ unfold(G, a))

with ``L`` the length of axis ``a`` and the three gates ``gamma`` initialised to zero, so the
block is the identity at initialisation. Unlike Folded Attention the affinities of later steps
depend on the earlier steps' results.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_fanet.models.folding import attention_softmax, check_count, check_volume, fold, unfold

#: The three slice-wise steps, in the order they are applied.
SPATIAL_AXES: tuple[str, ...] = ("D", "H", "W")


class SliceWiseAttention3d(nn.Module):
    """Recurrent slice-wise attention block for 3D feature maps.

    Parameters
    ----------
    channels : int
        Number of input (and output) channels ``C``.

    Attributes
    ----------
    theta, phi, g : nn.ModuleList
        Three 1x1x1 ``Conv3d(C -> C)`` (with bias) each, one per step D, H, W.
    gamma : nn.Parameter
        Shape ``(3,)``: the gates of the steps D, H, W, initialised to zero.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        check_count("channels", channels)
        self.channels = channels
        self.theta = nn.ModuleList(
            nn.Conv3d(channels, channels, kernel_size=1) for _ in SPATIAL_AXES
        )
        self.phi = nn.ModuleList(
            nn.Conv3d(channels, channels, kernel_size=1) for _ in SPATIAL_AXES
        )
        self.g = nn.ModuleList(nn.Conv3d(channels, channels, kernel_size=1) for _ in SPATIAL_AXES)
        self.gamma = nn.Parameter(torch.zeros(len(SPATIAL_AXES)))

    def extra_repr(self) -> str:
        """Summarise the options for ``repr``."""
        return f"channels={self.channels}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the three slice-wise attention steps.

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
        y = x
        for idx, axis in enumerate(SPATIAL_AXES):
            t = self.theta[idx](y)  # (B, C, D, H, W)
            p = self.phi[idx](y)  # (B, C, D, H, W)
            v = self.g[idx](y)  # (B, C, D, H, W)
            # (B, L, N*C/L) @ (B, N*C/L, L) -> (B, L, L), float32 or wider
            attn = attention_softmax(unfold(t, axis), unfold(p, axis).mT)
            # (B, L, L) @ (B, L, N*C/L) -> (B, L, N*C/L) -> fold -> (B, C, D, H, W)
            step = fold(attn.to(v.dtype) @ unfold(v, axis), axis, v.shape)
            y = y + self.gamma[idx] * step  # (B, C, D, H, W)
        return y
