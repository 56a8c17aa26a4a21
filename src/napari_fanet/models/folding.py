"""Tensor unfolding and folding along one axis of a ``(B, C, D, H, W)`` tensor.

These are the literal operations of the FA paper (Fig. 3): *unfold* moves one axis to the front
and flattens the rest, *fold* undoes it. They define the straightforward ("literal") Folded
Attention implementation and the reference the fast implementation is tested against. The
small argument and precision helpers the attention modules share live here too.
"""

from __future__ import annotations

import contextlib

import torch

#: Order of the four folded-attention steps and the tensor dimension each acts on.
AXES: tuple[str, ...] = ("D", "H", "W", "C")
AXIS_DIM: dict[str, int] = {"C": 1, "D": 2, "H": 3, "W": 4}


def check_count(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive ``int`` (``bool`` is rejected).

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    value : int
        Value to check.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_volume(x: torch.Tensor, channels: int | None = None, *, name: str = "input") -> None:
    """Raise a clear error unless ``x`` is a ``(B, C, D, H, W)`` tensor with ``channels`` channels.

    Parameters
    ----------
    x : torch.Tensor
        Tensor to check.
    channels : int, optional
        Expected channel count ``C``; not checked when ``None``.
    name : str
        Name used in the error message.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 5:
        raise ValueError(
            f"{name} must be 5D (B, C, D, H, W), got {x.ndim}D with shape {tuple(x.shape)}"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channels (dim 1), got shape {tuple(x.shape)}"
        )


def unfold(x: torch.Tensor, axis: str) -> torch.Tensor:
    """Unfold ``x`` along ``axis``: move it to the front and flatten the rest.

    Parameters
    ----------
    x : torch.Tensor
        Shape ``(B, C, D, H, W)``.
    axis : {"D", "H", "W", "C"}
        Axis to unfold along.

    Returns
    -------
    torch.Tensor
        Shape ``(B, L, N*C/L)`` with ``L`` the length of ``axis``.
    """
    moved = x.movedim(AXIS_DIM[axis], 1)  # (B, L, *other axes in order)
    return moved.reshape(x.shape[0], x.shape[AXIS_DIM[axis]], -1)  # (B, L, N*C/L)


def fold(m: torch.Tensor, axis: str, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Invert :func:`unfold`: reshape ``(B, L, N*C/L)`` back to ``shape`` = ``(B, C, D, H, W)``."""
    dim = AXIS_DIM[axis]
    moved_shape = (shape[0], shape[dim], *[s for i, s in enumerate(shape) if i not in (0, dim)])
    return m.reshape(moved_shape).movedim(1, dim)  # (B, C, D, H, W)


def autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast on ``device`` (attention energies and softmax stay in float32).

    A no-op on devices without autocast, such as ``meta`` (used for FLOP counting).
    """
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def attention_softmax(
    query: torch.Tensor, key: torch.Tensor, *, negate: bool = False
) -> torch.Tensor:
    """Row softmax of the unscaled energy ``query @ key``, in at least float32, autocast off.

    Parameters
    ----------
    query : torch.Tensor
        Shape ``(B, L, K)``.
    key : torch.Tensor
        Shape ``(B, K, L)``, same dtype as ``query``.
    negate : bool
        Take the softmax of ``-(query @ key)`` instead (DANet's channel attention).

    Returns
    -------
    torch.Tensor
        Shape ``(B, L, L)``, each row summing to one, in ``query``'s dtype promoted to at
        least float32.
    """
    with autocast_off(query.device):
        acc = torch.promote_types(query.dtype, torch.float32)
        energy = query.to(acc) @ key.to(acc)  # (B, L, K) @ (B, K, L) -> (B, L, L)
        return torch.softmax(-energy if negate else energy, dim=-1)  # rows sum to 1
