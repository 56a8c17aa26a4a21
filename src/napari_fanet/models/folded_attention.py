"""Folded Attention (FA, Zhang et al., AAAI 2021) for ``(B, C, D, H, W)`` feature tensors.

Semantics follow ``shared/FA_SPEC.md``: three 1x1x1 projections ``theta``, ``phi``, ``g``
evaluated once on the input; four sub-affinities ``A_a = softmax(E_a)`` for the axes D, H, W
(and ``softmax(-E_C)`` for the channel axis by default); then a cascade
``Y <- Y + beta_a * fold(A_a @ unfold(Y))`` with gates ``beta`` that start at zero.

Two implementations give the same result to rounding:

- ``"literal"`` follows the paper step by step (three ``Conv3d`` calls, permute-and-copy
  unfold/fold, a gated add per step). It is the readable reference.
- ``"fast"`` (default) evaluates the three projections as one GEMM, computes energies and
  aggregations on views with (batched) matrix products, and folds each gate into its matrix,
  ``M_a = I + beta_a * A_a``, so that each step is a single product.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from .folding import AXES, autocast_off, check_count, check_volume, fold, unfold

Variant = Literal["authors", "pure"]
Implementation = Literal["fast", "literal"]


def _positive_tiny(a: torch.Tensor) -> torch.Tensor:
    """Zero the denormal entries of a softmax output (they make CPU matmuls ~5x slower)."""
    return a.masked_fill(a < torch.finfo(a.dtype).tiny, 0.0)


def effective_matrices(
    affinities: dict[str, torch.Tensor], beta: torch.Tensor, variant: str
) -> dict[str, torch.Tensor]:
    """Per-axis mixing matrices ``M_a``: ``I + beta_a * A_a`` (authors) or ``A_a`` (pure).

    Parameters
    ----------
    affinities : dict
        ``{"D": (B, D, D), "H": (B, H, H), "W": (B, W, W), "C": (B, C, C)}``.
    beta : torch.Tensor
        Shape ``(4,)``, gates in the order D, H, W, C.
    variant : {"authors", "pure"}
        Block variant.
    """
    if variant == "pure":
        return dict(affinities)
    out = {}
    for idx, a in enumerate(AXES):
        aff = affinities[a]
        eye = torch.eye(aff.shape[-1], dtype=aff.dtype, device=aff.device)
        out[a] = eye + beta[idx].to(aff.dtype) * aff  # (B, L, L)
    return out


class FoldedAttention3d(nn.Module):
    """Folded Attention block for 3D feature maps.

    Parameters
    ----------
    channels : int
        Number of input (and output) channels ``C``.
    variant : {"authors", "pure"}
        ``"authors"`` (default): gated cascade ``Y <- Y + beta_a * fold(A_a @ unfold(Y))`` with
        learned scalars ``beta`` initialised to zero. ``"pure"`` (non-default): no gates,
        ``Y <- fold(A_a @ unfold(Y))``, the paper's Eq. 7.
    channel_sign : {-1, 1}
        Sign of the channel energy inside the softmax. ``-1`` (default) is the authors' code
        (inherited from DANet's channel module); ``+1`` is the paper's Eq. 5.
    scale : None, "sqrt" or float
        Energy scaling. ``None`` (default): unscaled energies. ``"sqrt"`` (non-default "scale"
        variant): divide each energy by the square root of its row length. A positive float
        multiplies every energy by that number.
    outer_residual : bool
        Non-default variant: return ``X + (Y - g(X))`` so the block is the identity at
        initialisation. Default ``False`` returns ``Y`` (which is ``g(X)`` at initialisation).
    implementation : {"fast", "literal"}
        Which of the two numerically equivalent implementations ``forward`` uses.

    Attributes
    ----------
    theta, phi, g : nn.Conv3d
        The 1x1x1 projections ``C -> C`` (with bias).
    beta : nn.Parameter
        Shape ``(4,)``: the gates of the steps D, H, W, C (unused by ``variant="pure"``).
    """

    def __init__(
        self,
        channels: int,
        *,
        variant: Variant = "authors",
        channel_sign: int = -1,
        scale: str | float | None = None,
        outer_residual: bool = False,
        implementation: Implementation = "fast",
    ) -> None:
        super().__init__()
        check_count("channels", channels)
        if variant not in ("authors", "pure"):
            raise ValueError(f"variant must be 'authors' or 'pure', got {variant!r}")
        if channel_sign not in (-1, 1):
            raise ValueError(f"channel_sign must be -1 or 1, got {channel_sign!r}")
        if not (
            scale is None
            or scale == "sqrt"
            or (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0)
        ):
            raise ValueError(f"scale must be None, 'sqrt' or a positive number, got {scale!r}")
        if implementation not in ("fast", "literal"):
            raise ValueError(f"implementation must be 'fast' or 'literal', got {implementation!r}")
        self.channels = channels
        self.variant = variant
        self.channel_sign = channel_sign
        self.scale = scale
        self.outer_residual = outer_residual
        self.implementation = implementation
        self.theta = nn.Conv3d(channels, channels, kernel_size=1)
        self.phi = nn.Conv3d(channels, channels, kernel_size=1)
        self.g = nn.Conv3d(channels, channels, kernel_size=1)
        self.beta = nn.Parameter(torch.zeros(4))
        # Set to a list by ``capture_affinities``; each forward then appends what it computed.
        self.captured: list[dict[str, object]] | None = None

    def extra_repr(self) -> str:
        """Constructor options, shown in ``repr(module)``."""
        return (
            f"channels={self.channels}, variant={self.variant!r}, "
            f"channel_sign={self.channel_sign}, scale={self.scale!r}, "
            f"outer_residual={self.outer_residual}, implementation={self.implementation!r}"
        )

    # ------------------------------------------------------------------ affinities
    def _softmax(self, energy: torch.Tensor, axis: str, row_length: int) -> torch.Tensor:
        """Row softmax of an energy matrix ``(B, L, L)``, in at least float32."""
        energy = energy.to(torch.promote_types(energy.dtype, torch.float32))
        if axis == "C":
            energy = energy * self.channel_sign
        if self.scale == "sqrt":
            energy = energy / math.sqrt(row_length)
        elif self.scale is not None:
            energy = energy * float(self.scale)
        return _positive_tiny(torch.softmax(energy, dim=-1))

    def _affinities_from(self, t: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """Softmax sub-affinities from projections ``t``, ``p`` of shape ``(B, C, D, H, W)``."""
        b, c, d, h, w = t.shape
        n = d * h * w
        with autocast_off(t.device):
            t = t.to(torch.promote_types(t.dtype, torch.float32))
            p = p.to(torch.promote_types(p.dtype, torch.float32))
            if self.implementation == "literal":
                energies = {a: unfold(t, a) @ unfold(p, a).transpose(1, 2) for a in AXES}
            else:
                tc, pc = t.reshape(b, c, n), p.reshape(b, c, n)  # (B, C, N)
                energies = {
                    # (B, C, D, HW) @ (B, C, HW, D) -> (B, C, D, D) -> sum over C
                    "D": (t.reshape(b, c, d, h * w) @ p.reshape(b, c, d, h * w).mT).sum(1),
                    # (B, CD, H, W) @ (B, CD, W, H) -> (B, CD, H, H) -> sum over CD
                    "H": (t.reshape(b, c * d, h, w) @ p.reshape(b, c * d, h, w).mT).sum(1),
                    # (B, W, CDH) @ (B, CDH, W) -> (B, W, W)
                    "W": t.reshape(b, -1, w).mT @ p.reshape(b, -1, w),
                    # (B, C, N) @ (B, N, C) -> (B, C, C)
                    "C": tc @ pc.mT,
                }
            row_length = {"D": n * c // d, "H": n * c // h, "W": n * c // w, "C": n}
            return {a: self._softmax(energies[a], a, row_length[a]) for a in AXES}

    def affinities(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Softmax sub-affinity matrices of ``x``.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, D, H, W)``.

        Returns
        -------
        dict
            ``{"D": (B, D, D), "H": (B, H, H), "W": (B, W, W), "C": (B, C, C)}``, every row
            summing to one (float32 or float64).
        """
        check_volume(x, self.channels)
        return self._affinities_from(self.theta(x), self.phi(x))

    def effective_matrices(self, affinities: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-axis mixing matrices ``M_a`` of this block (see :func:`effective_matrices`)."""
        return effective_matrices(affinities, self.beta, self.variant)

    def rank_one_factors(
        self, x: torch.Tensor, position: tuple[int, int, int, int], *, effective: bool = True
    ) -> dict[str, torch.Tensor]:
        """Rank-one attention factors of the output element ``(q, k, i, j)``.

        The output element ``Z[:, q, k, i, j]`` is the contraction of ``g(x)`` with the outer
        product of the four returned rows (see FA_SPEC, "The rank-one view"). With
        ``outer_residual=True`` this describes the output minus ``x - g(x)``.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, D, H, W)``.
        position : tuple of int
            ``(q, k, i, j)``: channel, depth, height and width index of the output element.
        effective : bool
            Return rows of ``M_a`` (default) or of the raw softmax matrices ``A_a``.

        Returns
        -------
        dict
            ``{"C": (B, C), "D": (B, D), "H": (B, H), "W": (B, W)}``.
        """
        check_volume(x, self.channels)
        if len(position) != 4:
            raise ValueError(f"position must be (q, k, i, j), got {position!r}")
        sizes = dict(zip(("C", "D", "H", "W"), x.shape[1:], strict=True))
        for a, index in zip(("C", "D", "H", "W"), position, strict=True):
            if not 0 <= index < sizes[a]:
                raise ValueError(
                    f"position {position!r} is outside the tensor: axis {a} has size {sizes[a]}"
                )
        mats = self.affinities(x)
        if effective:
            mats = self.effective_matrices(mats)
        q, k, i, j = position
        return {
            "C": mats["C"][:, q],
            "D": mats["D"][:, k],
            "H": mats["H"][:, i],
            "W": mats["W"][:, j],
        }

    # ------------------------------------------------------------------ forward
    def _forward_literal(self, x: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
        t, p, y0 = self.theta(x), self.phi(x), self.g(x)  # each (B, C, D, H, W)
        aff = self._affinities_from(t, p)
        y = y0
        for idx, a in enumerate(AXES):
            step = fold(aff[a].to(y.dtype) @ unfold(y, a), a, y.shape)  # (B, C, D, H, W)
            y = step if self.variant == "pure" else y + self.beta[idx] * step
        return y, aff, y0

    def _forward_fast(self, x: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
        b, c, d, h, w = x.shape
        weight = torch.cat([self.theta.weight, self.phi.weight, self.g.weight]).view(3 * c, c)
        bias = torch.cat([self.theta.bias, self.phi.bias, self.g.bias]).view(1, 3 * c, 1)
        tpy = torch.baddbmm(bias, weight.expand(b, -1, -1), x.reshape(b, c, -1))  # (B, 3C, N)
        tpy = tpy.view(b, 3, c, d, h, w)
        t, p, y0 = tpy[:, 0], tpy[:, 1], tpy[:, 2]  # each (B, C, D, H, W), views
        aff = self._affinities_from(t, p)
        mats = {a: m.to(y0.dtype) for a, m in self.effective_matrices(aff).items()}
        y = (mats["D"].unsqueeze(1) @ y0.reshape(b, c, d, h * w)).view(b, c, d, h, w)
        y = (mats["H"].unsqueeze(1) @ y.reshape(b, c * d, h, w)).view(b, c, d, h, w)
        y = (y.reshape(b, -1, w) @ mats["W"].mT).view(b, c, d, h, w)  # (B, CDH, W) @ (B, W, W)
        y = (mats["C"] @ y.reshape(b, c, -1)).view(b, c, d, h, w)  # (B, C, C) @ (B, C, N)
        return y, aff, y0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply folded attention.

        Parameters
        ----------
        x : torch.Tensor
            Shape ``(B, C, D, H, W)``; any sizes, including 1 and 2.

        Returns
        -------
        torch.Tensor
            Shape ``(B, C, D, H, W)``.
        """
        check_volume(x, self.channels)
        if self.implementation == "literal":
            y, aff, y0 = self._forward_literal(x)
        else:
            y, aff, y0 = self._forward_fast(x)
        if self.captured is not None:
            self.captured.append(
                {
                    **{a: m.detach() for a, m in aff.items()},
                    "beta": self.beta.detach().clone(),
                    "variant": self.variant,
                    "input_shape": tuple(x.shape),
                }
            )
        if self.outer_residual:
            return x + (y - y0)
        return y
