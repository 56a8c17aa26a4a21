"""Small building blocks shared by the backbones and the attention baselines."""

from __future__ import annotations

from typing import Any

from torch import nn

NormSpec = str | tuple[str, dict[str, Any]]


def make_norm(norm: NormSpec, channels: int) -> nn.Module:
    """Build a 3D normalisation layer.

    Parameters
    ----------
    norm : str or (str, dict)
        ``"batch"``, ``"group"`` (8 groups unless ``{"num_groups": n}`` is given),
        ``"instance"`` or ``"none"``; MONAI-style ``(name, kwargs)`` tuples are accepted.
    channels : int
        Number of channels to normalise.
    """
    name, kwargs = (norm, {}) if isinstance(norm, str) else (norm[0], dict(norm[1]))
    name = name.lower()
    if name == "batch":
        return nn.BatchNorm3d(channels, **kwargs)
    if name == "group":
        groups = kwargs.pop("num_groups", 8)
        if channels % groups:
            raise ValueError(
                f"GroupNorm with {groups} groups needs a channel count divisible by {groups}, "
                f"got {channels}"
            )
        return nn.GroupNorm(groups, channels, **kwargs)
    if name == "instance":
        return nn.InstanceNorm3d(channels, affine=True, **kwargs)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group', 'instance' or 'none', got {norm!r}")


def make_act(act: str) -> nn.Module:
    """Build an activation: ``"relu"``, ``"leakyrelu"`` or ``"prelu"``."""
    acts = {"relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "prelu": nn.PReLU}
    if not isinstance(act, str) or act.lower() not in acts:
        raise ValueError(f"act must be one of {sorted(acts)}, got {act!r}")
    return acts[act.lower()]() if act.lower() == "prelu" else acts[act.lower()](inplace=True)


class ConvNormAct(nn.Sequential):
    """``Conv3d(kernel_size) -> norm -> act`` with 'same' padding.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    norm : str or (str, dict)
        See :func:`make_norm`.
    act : str
        See :func:`make_act`.
    kernel_size : int
        Odd kernel size (default 3).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: NormSpec = "batch",
        act: str = "relu",
        *,
        kernel_size: int = 3,
    ) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            make_norm(norm, out_channels),
            make_act(act),
        )


class DoubleConv(nn.Sequential):
    """Two ``ConvNormAct`` 3x3x3 blocks: the U-Net stage ``(B, Cin, ...) -> (B, Cout, ...)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: NormSpec = "batch",
        act: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [
            ConvNormAct(in_channels, out_channels, norm, act),
            ConvNormAct(out_channels, out_channels, norm, act),
        ]
        if dropout:
            layers.append(nn.Dropout3d(dropout))
        super().__init__(*layers)
