"""Additive attention gate (AG baseline) for U-Net skip connections.

Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018. A skip
tensor ``x`` (``Cs`` channels) is gated by a coarser signal ``g`` (``Cg`` channels):

    theta_x = Conv3d(Cs -> Ci, 1x1x1, no bias)(x)
    phi_g   = resize(Conv3d(Cg -> Ci, 1x1x1)(g), size of x)      trilinear
    psi     = sigmoid(Conv3d(Ci -> 1, 1x1x1)(relu(theta_x + phi_g)))   (B, 1, D, H, W)
    out     = norm(Conv3d(Cs -> Cs, 1x1x1)(x * psi))

The 1x1x1 projection of ``g`` is applied before the resize (at the coarse resolution, cheaper);
both are linear and trilinear weights sum to one, so the order does not change the result.
``theta_x`` has no bias because ``phi_g``'s bias would duplicate it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_fanet.models.blocks import NormSpec, make_norm
from napari_fanet.models.folding import check_count, check_volume


class AttentionGate3d(nn.Module):
    """Additive attention gate on a skip connection.

    Parameters
    ----------
    skip_channels : int
        Channels ``Cs`` of the skip tensor (and of the output).
    gating_channels : int
        Channels ``Cg`` of the gating signal.
    inter_channels : int, optional
        Channels ``Ci`` of the additive attention; default ``max(Cs // 2, 1)``.
    norm : str or (str, dict)
        Norm after the output convolution (see
        :func:`~napari_fanet.models.blocks.make_norm`); default ``"batch"``.

    Attributes
    ----------
    theta_x : nn.Conv3d
        1x1x1 ``Cs -> Ci`` on the skip tensor (no bias).
    phi_g : nn.Conv3d
        1x1x1 ``Cg -> Ci`` on the gating signal.
    psi : nn.Conv3d
        1x1x1 ``Ci -> 1``, followed by a sigmoid.
    out_conv : nn.Conv3d
        1x1x1 ``Cs -> Cs`` on the gated skip tensor.
    norm : nn.Module
        The norm after ``out_conv``.
    """

    def __init__(
        self,
        skip_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        *,
        norm: NormSpec = "batch",
    ) -> None:
        super().__init__()
        check_count("skip_channels", skip_channels)
        check_count("gating_channels", gating_channels)
        if inter_channels is None:
            inter_channels = max(skip_channels // 2, 1)
        check_count("inter_channels", inter_channels)
        self.skip_channels = skip_channels
        self.gating_channels = gating_channels
        self.inter_channels = inter_channels
        self.theta_x = nn.Conv3d(skip_channels, inter_channels, kernel_size=1, bias=False)
        self.phi_g = nn.Conv3d(gating_channels, inter_channels, kernel_size=1)
        self.psi = nn.Conv3d(inter_channels, 1, kernel_size=1)
        self.out_conv = nn.Conv3d(skip_channels, skip_channels, kernel_size=1)
        self.norm = make_norm(norm, skip_channels)

    def extra_repr(self) -> str:
        """Summarise the options for ``repr``."""
        return (
            f"skip_channels={self.skip_channels}, gating_channels={self.gating_channels}, "
            f"inter_channels={self.inter_channels}"
        )

    def attention_map(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """Attention coefficients ``psi`` of the gate.

        Parameters
        ----------
        skip : torch.Tensor
            Shape ``(B, Cs, D, H, W)``.
        gating : torch.Tensor
            Shape ``(B, Cg, D', H', W')``, any spatial size (usually coarser than ``skip``).

        Returns
        -------
        torch.Tensor
            Shape ``(B, 1, D, H, W)``, values in ``(0, 1)``.
        """
        check_volume(skip, self.skip_channels, name="skip")
        check_volume(gating, self.gating_channels, name="gating")
        if skip.shape[0] != gating.shape[0]:
            raise ValueError(
                "skip and gating must have the same batch size, got shapes "
                f"{tuple(skip.shape)} and {tuple(gating.shape)}"
            )
        theta = self.theta_x(skip)  # (B, Ci, D, H, W)
        phi = self.phi_g(gating)  # (B, Ci, D', H', W')
        if phi.shape[2:] != theta.shape[2:]:
            phi = F.interpolate(
                phi, size=theta.shape[2:], mode="trilinear", align_corners=False
            )  # (B, Ci, D, H, W)
        return torch.sigmoid(self.psi(F.relu(theta + phi)))  # (B, 1, D, H, W)

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """Gate the skip tensor.

        Parameters
        ----------
        skip : torch.Tensor
            Shape ``(B, Cs, D, H, W)``.
        gating : torch.Tensor
            Shape ``(B, Cg, D', H', W')``.

        Returns
        -------
        torch.Tensor
            Shape ``(B, Cs, D, H, W)``: ``norm(out_conv(skip * psi))``.
        """
        psi = self.attention_map(skip, gating)  # (B, 1, D, H, W)
        return self.norm(self.out_conv(skip * psi))  # (B, Cs, D, H, W)
