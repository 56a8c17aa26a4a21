"""Folded Attention (FA, Zhang et al., AAAI 2021) for ``(B, C, D, H, W)`` feature tensors.

Semantics follow ``shared/FA_SPEC.md``: three 1x1x1 projections ``theta``, ``phi``, ``g``
evaluated once on the input; four sub-affinities ``A_a = softmax(E_a)`` for the axes D, H, W
(and ``softmax(-E_C)`` for the channel axis by default); then a cascade
``Y <- Y + beta_a * fold(A_a @ unfold(Y))`` with gates ``beta`` that start at zero.

Two implementations give the same result to rounding:

- ``"literal"`` (:func:`folded_attention_reference`) follows the paper step by step (three
  ``Conv3d`` calls, permute-and-copy unfold/fold, a gated add per step). It is the readable
  reference the tests compare against.
- ``"fast"`` (default) uses the algebra of the block to do less work in fewer, larger products:

  * the energies are bilinear in ``X``: with ``T = W_t X + b_t`` and ``P = W_p X + b_p``,
    ``sum_c T[c, i] P[c, j] = sum_c X~[c, i] Z[c, j]`` where ``X~ = [X; 1]`` and
    ``Z = [W_t b_t]^T [W_p b_p] X~``. One ``(C+1) x C`` product of ``X`` replaces ``theta(X)``
    and ``phi(X)``; the spatial energies contract ``X`` with ``Z``, the channel energy is
    ``[W_t b_t] (X~ X~^T) [W_p b_p]^T``;
  * the channel step commutes with the spatial ones and ``g`` is linear, so the output is
    ``(M_C W_g) (X x_D M_D x_H M_H x_W M_W) + gain * M_C b_g`` with ``M_a = I + beta_a A_a``
    (each row of ``M_a`` sums to ``1 + beta_a``, so ``gain = prod over D, H, W of (1 + beta_a)``;
    ``gain = 1`` for the pure variant). ``g(X)`` itself is never formed.

  That is 25% fewer FLOPs than the literal order (1.62 against 2.15 GFLOP at
  ``(1, 64, 32, 32, 32)``). Its row softmax also never produces subnormal numbers (see
  :func:`row_softmax`), which would slow every later CPU product down, in any thread.

With ``scale="cosine"`` (non-default) the energies are cosine similarities of the unfolded rows
of ``theta(X)`` and ``phi(X)`` (:func:`cosine_energies`), which need each row's norm, so both
implementations form ``theta(X)`` and ``phi(X)`` for the affinities (the fast one by a single
``(2C) x C`` product and the same views as above; the row norms come from squares formed a
slab of voxels at a time, :func:`squared_norms`); the fast cascade is unchanged.

On the CPU, the tall products use oneDNN for float32 inference (:func:`batched_product`), and
the block runs single-threaded while other work competes for the cores (``cpu_threads``,
:func:`cpu_contended`). Timings: ``benchmarks/README.md`` (``attention_cost.py --ratio``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

from napari_fanet.models.folding import AXES, autocast_off, check_count, check_volume, fold, unfold

Variant = Literal["authors", "pure"]
Implementation = Literal["fast", "literal"]
SCALES = ("none", "sqrt", "cosine")
#: Voxels per slab when the cosine energies' row norms are summed (a 2 MB buffer at 64 channels).
NORM_SLAB = 4096
#: Cosine energies are multiplied by this before the softmax (and any learned temperature).
#: On the stage-4 ``fanet-seg``'s blocks (real patient 07), softmax rows of 10 x cosine had
#: 0.53-0.90 of a uniform row's entropy, 3 x cosine 0.78-0.99 (nearly uniform) and 100 x
#: 0.00-0.44 (``benchmarks/results/attention_cosine_scales.md``; ``benchmarks/README.md``,
#: "Choosing the cosine scale").
COSINE_SCALE = 10.0


def _positive_tiny(a: torch.Tensor) -> torch.Tensor:
    """Zero the denormal entries of a softmax output (they make CPU matmuls ~5x slower)."""
    return a.masked_fill(a < torch.finfo(a.dtype).tiny, 0.0)


def row_softmax(energy: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension that never returns subnormal numbers.

    The row maximum is subtracted and every entry more than ``3 * |log(eps)|`` below it (47.7
    in float32, 108 in float64) becomes an exact zero, so each surviving entry is at least
    ``eps**3`` of the row's largest one (``1.7e-21`` in float32). Such a cut changes no row by
    more than ``L * eps**3`` in total, far below rounding, and needs no flush-to-zero flag
    (which ``torch.set_flush_denormal`` only sets for the calling thread). Subnormal softmax
    entries, typical of unscaled saturated energies, made a 32 x 32 softmax and every later
    product using it up to 1000x slower on the project's CPU.

    Parameters
    ----------
    energy : torch.Tensor
        Shape ``(..., L)``, floating point.

    Returns
    -------
    torch.Tensor
        Same shape and dtype; each row sums to one.
    """
    cutoff = 3.0 * math.log(torch.finfo(energy.dtype).eps)
    shifted = energy - energy.detach().amax(dim=-1, keepdim=True)  # row max is 0
    shifted = shifted.masked_fill(shifted < cutoff, -math.inf)  # exp(-inf) is exactly 0
    weights = shifted.exp()
    return weights / weights.sum(dim=-1, keepdim=True)  # the sum is >= 1: no 0/0


@contextlib.contextmanager
def intra_op_threads(count: int | None, device: torch.device) -> Iterator[None]:
    """Run the enclosed CPU operations with at most ``count`` intra-op threads.

    ``torch.set_num_threads`` is process-wide, so operations that other Python threads run at
    the same time see the lower count too (a speed, never a correctness, effect). A no-op for
    ``count=None``, on non-CPU devices, and when no more threads are in use.
    """
    previous = torch.get_num_threads()
    if count is None or device.type != "cpu" or previous <= count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: ``cpu_contended`` re-reads the system state at most this often (seconds).
CONTENTION_CHECK_INTERVAL = 0.5
#: CPU pressure (percent of time some runnable task waited for a CPU) that counts as contended.
CONTENTION_PRESSURE = 10.0
#: Linux pressure stall information for the CPU.
PRESSURE_FILE = "/proc/pressure/cpu"
#: A stall counter older than this (seconds) is not used for a rate; ``avg10`` is.
PRESSURE_MAX_AGE = 10.0
_contention_cache: tuple[float, bool] = (-math.inf, False)
#: The last ``(monotonic time, "some" total stall in microseconds)`` read.
_stall_counter: tuple[float, int] | None = None


def _pressure_percent(now: float) -> float:
    """CPU pressure since the last read (percent), from the stall counter; ``avg10`` at first.

    Linux's ``avg10`` is a 10 s running average, so it notices a competing process seconds
    late; the ``total`` counter (microseconds some task waited) gives the share since the
    previous read, half a second ago while the block runs.
    """
    global _stall_counter
    with open(PRESSURE_FILE) as f:  # "some avg10=12.34 avg60=... avg300=... total=123456"
        fields = dict(item.split("=") for item in f.readline().split()[1:])
    total = int(fields["total"])
    previous, _stall_counter = _stall_counter, (now, total)
    if previous is not None and 0.0 < now - previous[0] <= PRESSURE_MAX_AGE:
        return 100.0 * (total - previous[1]) / (1e6 * (now - previous[0]))
    return float(fields["avg10"])


def _read_contention(now: float) -> bool:
    try:
        return _pressure_percent(now) >= CONTENTION_PRESSURE
    except (OSError, ValueError, KeyError, IndexError):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        return os.getloadavg()[0] >= cores
    except (AttributeError, OSError):
        return False


def cpu_contended() -> bool:
    """Whether other work competes for this machine's CPUs right now.

    True when runnable tasks waited for a CPU at least :data:`CONTENTION_PRESSURE` percent of
    the time since the previous check (Linux pressure stall information; the 10 s average at
    the first check); where that is unavailable, when the 1-minute load average reaches the
    number of usable cores. The answer is cached for :data:`CONTENTION_CHECK_INTERVAL` seconds.
    """
    global _contention_cache
    now = time.monotonic()
    checked, contended = _contention_cache
    if now - checked >= CONTENTION_CHECK_INTERVAL:
        contended = _read_contention(now)
        _contention_cache = (now, contended)
    return contended


_ONEDNN_LINEAR: bool | None = None
#: Smaller products (multiply-adds per batch item) use BLAS: oneDNN's fixed cost per call wins.
ONEDNN_MIN_MACS = 2**24


def _onednn_linear_available() -> bool:
    """Whether oneDNN's float32 linear kernel is present and gives the right answer."""
    global _ONEDNN_LINEAR
    if _ONEDNN_LINEAR is None:
        try:
            out = torch.ops.mkldnn._linear_pointwise(
                torch.ones(2, 3), torch.ones(4, 3), None, "none", [], ""
            )
            _ONEDNN_LINEAR = bool(
                torch.backends.mkldnn.is_available() and torch.equal(out, torch.full((2, 4), 3.0))
            )
        except (AttributeError, RuntimeError, TypeError):
            _ONEDNN_LINEAR = False
    return _ONEDNN_LINEAR


def batched_product(
    a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``a @ b_t^T (+ bias)`` for ``a`` of shape ``(B, M, K)`` and ``b_t`` of shape ``(B, N, K)``.

    For large CPU float32 inference products (no autograd, no autocast, at least
    :data:`ONEDNN_MIN_MACS` multiply-adds per item) this calls oneDNN's linear kernel, which ran
    the block's tall-and-thin products 1.2-1.5x faster than the default BLAS (MKL) on the
    project's AMD CPU (``benchmarks/README.md``); elsewhere it is ``torch.baddbmm``/``bmm``.

    Parameters
    ----------
    a, b_t : torch.Tensor
        Shapes ``(B, M, K)`` and ``(B, N, K)``, any strides.
    bias : torch.Tensor, optional
        Broadcastable to ``(B, M, N)``.

    Returns
    -------
    torch.Tensor
        Shape ``(B, M, N)``, contiguous.
    """
    tensors = (a, b_t) if bias is None else (a, b_t, bias)
    if (
        a.shape[-2] * a.shape[-1] * b_t.shape[-2] >= ONEDNN_MIN_MACS
        and a.device.type == "cpu"
        and all(t.dtype == torch.float32 for t in tensors)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
        and not torch.is_autocast_enabled("cpu")
        and _onednn_linear_available()
    ):
        linear = torch.ops.mkldnn._linear_pointwise
        outs = [linear(a[i], b_t[i], None, "none", [], "") for i in range(a.shape[0])]
        out = outs[0].unsqueeze(0) if len(outs) == 1 else torch.stack(outs)  # (B, M, N)
        return out if bias is None else out.add_(bias)
    if bias is None:
        return a @ b_t.mT
    return torch.baddbmm(bias, a, b_t.mT)


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
    scale : None, "none", "sqrt", "cosine" or float
        Energy scaling. ``None`` or ``"none"`` (default, the paper's and the authors' choice,
        and what the shipped checkpoints were trained with): unscaled energies, whose softmax
        rows are nearly one-hot. ``"sqrt"`` (non-default "scale" variant): divide each energy
        by the square root of the contracted dimension, its row length ``N*C/L`` (``N`` for the
        channel axis). ``"cosine"`` (non-default): each energy is the cosine of the angle
        between the unfolded rows of ``theta(X)`` and ``phi(X)``, times
        :data:`COSINE_SCALE`; energies are then bounded, so rows saturate only if a learned
        temperature drives them there, whatever the width and grid (``sqrt`` was not enough at
        bottlenecks). A positive float multiplies every energy by that number.
    learn_temperature : bool
        Non-default: divide each axis's (scaled) energy by a learned temperature
        ``exp(log_temperature[a])``, one per axis D, H, W, C, starting at 1. Adds the
        parameter ``log_temperature`` of shape ``(4,)`` (absent otherwise, so older
        checkpoints load unchanged).
    outer_residual : bool
        Non-default variant: return ``X + (Y - g(X))`` so the block is the identity at
        initialisation. Default ``False`` returns ``Y`` (which is ``g(X)`` at initialisation).
    implementation : {"fast", "literal"}
        Which of the two numerically equivalent implementations ``forward`` uses.
    cpu_threads : int, "auto" or None
        CPU only: at most this many intra-op threads for the block's operations. ``"auto"``
        (default): the process's thread count while the CPU is free, one thread while other
        work competes for it (:func:`cpu_contended`). A multi-threaded operation waits for its
        slowest thread, and with a shared core that thread is often descheduled; FA is a chain
        of short operations, so it loses far more than one long convolution does (measured in
        ``benchmarks/README.md``). ``None``: always the process's count.

    Attributes
    ----------
    theta, phi, g : nn.Conv3d
        The 1x1x1 projections ``C -> C`` (with bias).
    beta : nn.Parameter
        Shape ``(4,)``: the gates of the steps D, H, W, C (unused by ``variant="pure"``).
    log_temperature : nn.Parameter
        Shape ``(4,)``, only with ``learn_temperature=True``.
    """

    def __init__(
        self,
        channels: int,
        *,
        variant: Variant = "authors",
        channel_sign: int = -1,
        scale: str | float | None = None,
        learn_temperature: bool = False,
        outer_residual: bool = False,
        implementation: Implementation = "fast",
        cpu_threads: int | Literal["auto"] | None = "auto",
    ) -> None:
        super().__init__()
        check_count("channels", channels)
        if variant not in ("authors", "pure"):
            raise ValueError(f"variant must be 'authors' or 'pure', got {variant!r}")
        if channel_sign not in (-1, 1):
            raise ValueError(f"channel_sign must be -1 or 1, got {channel_sign!r}")
        if not (
            scale is None
            or (isinstance(scale, str) and scale in SCALES)
            or (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0)
        ):
            raise ValueError(
                f"scale must be None, 'none', 'sqrt', 'cosine' or a positive number, got {scale!r}"
            )
        if not isinstance(learn_temperature, bool):
            raise TypeError(f"learn_temperature must be a bool, got {learn_temperature!r}")
        if implementation not in ("fast", "literal"):
            raise ValueError(f"implementation must be 'fast' or 'literal', got {implementation!r}")
        if cpu_threads not in (None, "auto"):
            check_count("cpu_threads", cpu_threads)
        self.channels = channels
        self.variant = variant
        self.channel_sign = channel_sign
        self.scale = None if scale == "none" else scale
        self.learn_temperature = learn_temperature
        self.outer_residual = outer_residual
        self.implementation = implementation
        self.cpu_threads = cpu_threads
        self.theta = nn.Conv3d(channels, channels, kernel_size=1)
        self.phi = nn.Conv3d(channels, channels, kernel_size=1)
        self.g = nn.Conv3d(channels, channels, kernel_size=1)
        self.beta = nn.Parameter(torch.zeros(4))
        if learn_temperature:
            self.log_temperature = nn.Parameter(torch.zeros(4))
        # Set to a list by ``capture_affinities``; each forward then appends what it computed.
        self.captured: list[dict[str, object]] | None = None

    def extra_repr(self) -> str:
        """Constructor options, shown in ``repr(module)``."""
        return (
            f"channels={self.channels}, variant={self.variant!r}, "
            f"channel_sign={self.channel_sign}, scale={self.scale!r}, "
            f"learn_temperature={self.learn_temperature}, "
            f"outer_residual={self.outer_residual}, implementation={self.implementation!r}, "
            f"cpu_threads={self.cpu_threads!r}"
        )

    def _threads(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The intra-op thread cap of one call (see ``cpu_threads``)."""
        count = self.cpu_threads
        if count == "auto":
            count = 1 if device.type == "cpu" and cpu_contended() else None
        return intra_op_threads(count, device)

    # ------------------------------------------------------------------ affinities
    def _softmax(self, energy: torch.Tensor, axis: str, row_length: int) -> torch.Tensor:
        """Row softmax of an energy matrix ``(B, L, L)``, in at least float32."""
        energy = energy.to(torch.promote_types(energy.dtype, torch.float32))
        if axis == "C":
            energy = energy * self.channel_sign
        if self.scale == "sqrt":
            energy = energy / math.sqrt(row_length)
        elif self.scale == "cosine":
            energy = energy * COSINE_SCALE
        elif self.scale is not None:
            energy = energy * float(self.scale)
        if self.learn_temperature:
            log_t = self.log_temperature[AXES.index(axis)]
            energy = energy * torch.exp(-log_t).to(energy.dtype)
        if self.implementation == "literal":
            return _positive_tiny(torch.softmax(energy, dim=-1))
        return row_softmax(energy)

    def _softmaxes(self, energies: dict[str, torch.Tensor], shape: torch.Size) -> dict:
        """Affinities ``A_a`` of the four energies of a ``(B, C, D, H, W)`` input."""
        _, c, d, h, w = shape
        n = d * h * w
        row_length = {"D": n * c // d, "H": n * c // h, "W": n * c // w, "C": n}
        return {a: self._softmax(energies[a], a, row_length[a]) for a in AXES}

    def _affinities_from(self, t: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
        """Literal sub-affinities from projections ``t``, ``p`` of shape ``(B, C, D, H, W)``."""
        with autocast_off(t.device):
            t = t.to(torch.promote_types(t.dtype, torch.float32))
            p = p.to(torch.promote_types(p.dtype, torch.float32))
            if self.scale == "cosine":
                return self._softmaxes(cosine_energies(t, p), t.shape)
            # (B, L, N*C/L) @ (B, N*C/L, L) -> (B, L, L)
            energies = {a: unfold(t, a) @ unfold(p, a).transpose(1, 2) for a in AXES}
            return self._softmaxes(energies, t.shape)

    def _fast_energies(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four energies ``E_a`` of ``x`` without forming ``theta(x)`` or ``phi(x)``.

        ``E_a[k, l] = sum over the other axes of X~[., k, .] Z[., l, .]`` (see the module
        docstring); ``Z``'s extra row ``q = b_t^T W_p X`` adds a column term. The spatial
        energies are exact up to a constant per row (``b_p``'s terms), which no softmax sees;
        the channel energy is exact.
        """
        b, c, d, h, w = x.shape
        n = d * h * w
        acc = torch.promote_types(x.dtype, torch.float32)
        with autocast_off(x.device):
            xf = x.to(acc).reshape(b, c, n)  # (B, C, N)
            wt = torch.cat([self.theta.weight.view(c, c), self.theta.bias.view(c, 1)], 1)
            wp = torch.cat([self.phi.weight.view(c, c), self.phi.bias.view(c, 1)], 1)
            wt, wp = wt.to(acc), wp.to(acc)  # each (C, C+1): [W | b]
            gram_w = wt.mT @ wp  # (C+1, C+1)
            # Z~ = gram_w @ [X; 1] without its bias column, which only adds a constant to
            # each row of the spatial energies (the softmax ignores those):
            # (C+1, C) @ (B, C, N) -> (B, C+1, N)
            # (contiguous: oneDNN reorders a strided weight on every call, about 0.5 ms here)
            zq = batched_product(gram_w[:, :c].contiguous().expand(b, -1, -1), xf.mT)
            z = zq[:, :c]  # (B, C, N), a view
            q = zq[:, c].view(b, d, h, w)  # (B, D, H, W): column term of every energy
            # (B, C, D, HW) @ (B, C, HW, D) -> (B, C, D, D) -> sum over C -> (B, D, D)
            e_d = (xf.view(b, c, d, h * w) @ z.reshape(b, c, d, h * w).mT).sum(1)
            # (B, CD, H, W) @ (B, CD, W, H) -> (B, CD, H, H) -> sum over CD -> (B, H, H)
            e_h = (xf.view(b, c * d, h, w) @ z.reshape(b, c * d, h, w).mT).sum(1)
            # (B, W, CDH) @ (B, CDH, W) -> (B, W, W)
            e_w = xf.view(b, -1, w).mT @ z.reshape(b, -1, w)
            energies = {
                "D": e_d + q.sum((2, 3)).unsqueeze(1),  # + column term (B, 1, D)
                "H": e_h + q.sum((1, 3)).unsqueeze(1),
                "W": e_w + q.sum((1, 2)).unsqueeze(1),
            }
            # Channel energy [W_t b_t] [X; 1] [X; 1]^T [W_p b_p]^T, from the Gram matrix of X.
            gram = batched_product(xf, xf)  # (B, C, N) @ (B, N, C) -> (B, C, C)
            sums = xf.sum(-1, keepdim=True)  # (B, C, 1)
            count = torch.full((b, 1, 1), float(n), dtype=acc, device=x.device)
            gram_x = torch.cat(
                [torch.cat([gram, sums], 2), torch.cat([sums.mT, count], 2)], 1
            )  # (B, C+1, C+1)
            energies["C"] = wt @ gram_x @ wp.mT  # (B, C, C)
        return energies

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
        with self._threads(x.device):
            return self._affinities(x)

    def _affinities(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sub-affinities of ``x`` by this block's implementation (no checks)."""
        if self.implementation == "literal":
            return self._affinities_from(self.theta(x), self.phi(x))
        if self.scale == "cosine":
            return self._softmaxes(self._fast_cosine_energies(x), x.shape)
        return self._softmaxes(self._fast_energies(x), x.shape)

    def _fast_cosine_energies(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`cosine_energies` of ``theta(x)``, ``phi(x)`` without permute-and-copy unfolds.

        Cosines need each unfolded row's norm, so ``theta(x)`` and ``phi(x)`` are formed, by one
        ``(2C) x C`` product; the energies then use the same views and products as
        :meth:`_fast_energies`, and the norms are sums of squares over the other axes.
        """
        b, c, d, h, w = x.shape
        n = d * h * w
        acc = torch.promote_types(x.dtype, torch.float32)
        with autocast_off(x.device):
            xf = x.to(acc).reshape(b, c, n)  # (B, C, N)
            weight = torch.cat([self.theta.weight.view(c, c), self.phi.weight.view(c, c)])
            bias = torch.cat([self.theta.bias, self.phi.bias]).to(acc).view(1, 2 * c, 1)
            # (2C, C) @ (B, C, N) + bias -> (B, 2C, N): theta(x) and phi(x) at once
            tp = batched_product(
                weight.to(acc).contiguous().expand(b, -1, -1), xf.mT, bias.expand(b, -1, -1)
            )
            t, p = tp[:, :c], tp[:, c:]  # each (B, C, N), a view
            energies = {
                # (B, C, D, HW) @ (B, C, HW, D) -> sum over C -> (B, D, D)
                "D": (t.reshape(b, c, d, h * w) @ p.reshape(b, c, d, h * w).mT).sum(1),
                # (B, CD, H, W) @ (B, CD, W, H) -> sum over CD -> (B, H, H)
                "H": (t.reshape(b, c * d, h, w) @ p.reshape(b, c * d, h, w).mT).sum(1),
                # (B, W, CDH) @ (B, CDH, W) -> (B, W, W)
                "W": t.reshape(b, -1, w).mT @ p.reshape(b, -1, w),
                "C": batched_product(t, p),  # (B, C, N) @ (B, N, C) -> (B, C, C)
            }
            # Row norms: channel rows over the voxels; spatial rows are small sums of the
            # per-voxel sums of squares over C.
            channel, per_voxel = squared_norms(tp, 2)  # (B, 2C), (B, 2, N)
            channel = channel.sqrt()
            per_voxel = per_voxel.view(b, 2, d, h, w)
            norms = [
                {
                    "D": per_voxel[:, i].sum((2, 3)).sqrt(),  # (B, D)
                    "H": per_voxel[:, i].sum((1, 3)).sqrt(),  # (B, H)
                    "W": per_voxel[:, i].sum((1, 2)).sqrt(),  # (B, W)
                    "C": channel[:, i * c : (i + 1) * c],  # (B, C)
                }
                for i in (0, 1)
            ]
            eps = 1e-12  # as in torch.nn.functional.normalize
            for a, energy in energies.items():
                norm_t = norms[0][a].clamp_min(eps)  # (B, L)
                norm_p = norms[1][a].clamp_min(eps)
                energies[a] = energy / (norm_t.unsqueeze(2) * norm_p.unsqueeze(1))
        return energies

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
    def _forward_literal(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        t, p, y0 = self.theta(x), self.phi(x), self.g(x)  # each (B, C, D, H, W)
        aff = self._affinities_from(t, p)
        y = y0
        for idx, a in enumerate(AXES):
            step = fold(aff[a].to(y.dtype) @ unfold(y, a), a, y.shape)  # (B, C, D, H, W)
            y = step if self.variant == "pure" else y + self.beta[idx] * step
        if self.outer_residual:
            y = x + (y - y0)
        return y, aff

    def _forward_fast(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        b, c, d, h, w = x.shape
        n = d * h * w
        aff = self._affinities(x)
        mats = self.effective_matrices(aff)  # float32 or float64
        # Row sums of M_D, M_H, M_W: what the spatial steps do to g's constant bias field.
        gain = 1.0 if self.variant == "pure" else torch.prod(1 + self.beta[:3])
        w_out = mats["C"] @ self.g.weight.view(c, c).to(mats["C"].dtype)  # (B, C, C)
        b_out = (mats["C"] @ self.g.bias.to(mats["C"].dtype)) * gain  # (B, C)
        mats = {a: m.to(x.dtype) for a, m in mats.items()}
        y = x.reshape(b, c, n)
        # (B, 1, D, D) @ (B, C, D, HW) -> (B, C, D, HW)
        y = mats["D"].unsqueeze(1) @ y.view(b, c, d, h * w)
        # (B, 1, H, H) @ (B, CD, H, W) -> (B, CD, H, W)
        y = mats["H"].unsqueeze(1) @ y.view(b, c * d, h, w)
        y = batched_product(y.view(b, -1, w), mats["W"])  # (B, CDH, W) @ (B, W, W)
        # (B, C, C) @ (B, C, N) + (B, C, 1) -> (B, C, N): the channel step and g at once
        out = batched_product(
            w_out.to(x.dtype), y.view(b, c, n).mT, b_out.unsqueeze(-1).to(x.dtype)
        )
        if self.outer_residual:
            # X + (Y - g(X)): g(X) is needed here, and only here.
            weight = self.g.weight.view(1, c, c).expand(b, -1, -1)
            g_x = torch.baddbmm(self.g.bias.view(1, c, 1), weight, x.reshape(b, c, n))
            out = x.reshape(b, c, n) + (out - g_x)
        return out.view(b, c, d, h, w), aff

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
        with self._threads(x.device):
            if self.implementation == "literal":
                y, aff = self._forward_literal(x)
            else:
                y, aff = self._forward_fast(x)
        if self.captured is not None:
            self.captured.append(
                {
                    **{a: m.detach() for a, m in aff.items()},
                    "beta": self.beta.detach().clone(),
                    "variant": self.variant,
                    "input_shape": tuple(x.shape),
                }
            )
        return y


def squared_norms(y: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of squares of ``y`` over its voxels, and over each channel group per voxel.

    Without autograd the squares are formed a slab of :data:`NORM_SLAB` voxels at a time in one
    small buffer: forming all of them at once (a fresh array the size of ``y``) made the cosine
    block's norms cost several times their arithmetic on the project's CPU.

    Parameters
    ----------
    y : torch.Tensor
        Shape ``(B, K, N)``, ``K`` a multiple of ``groups``.
    groups : int
        Number of equal channel groups (2 for ``theta(X)`` and ``phi(X)`` stacked).

    Returns
    -------
    channel : torch.Tensor
        Shape ``(B, K)``: the sum over ``N`` of each channel's squares.
    per_voxel : torch.Tensor
        Shape ``(B, groups, N)``: the sum over each group's channels, per voxel.

    Raises
    ------
    ValueError
        ``K`` does not split into ``groups`` equal groups.
    """
    b, k, n = y.shape
    if groups < 1 or k % groups:
        raise ValueError(
            f"squared_norms: expected {k} channels to split into equal groups, got groups={groups}"
        )
    if torch.is_grad_enabled() and y.requires_grad:
        sq = y * y
        return sq.sum(2), sq.view(b, groups, k // groups, n).sum(2)
    channel = torch.zeros(b, k, dtype=y.dtype, device=y.device)
    per_voxel = torch.empty(b, groups, n, dtype=y.dtype, device=y.device)
    slab = min(n, NORM_SLAB)
    buffer = torch.empty(b, k, slab, dtype=y.dtype, device=y.device)
    for start in range(0, n, slab):
        part = y[:, :, start : start + slab]
        sq = torch.mul(part, part, out=buffer[:, :, : part.shape[2]])  # (B, K, S)
        channel += sq.sum(2)
        per_voxel[:, :, start : start + slab] = sq.view(b, groups, k // groups, -1).sum(2)
    return channel, per_voxel


def cosine_energies(t: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cosine similarities between the unfolded rows of ``t`` and ``p``, per axis.

    Parameters
    ----------
    t, p : torch.Tensor
        ``theta(X)`` and ``phi(X)``, shape ``(B, C, D, H, W)``, float32 or float64.

    Returns
    -------
    dict
        ``{"D": (B, D, D), "H": (B, H, H), "W": (B, W, W), "C": (B, C, C)}`` with entries in
        ``[-1, 1]``; an all-zero row gives zeros (``eps`` in the norm).
    """
    out = {}
    for a in AXES:
        rows_t = nn.functional.normalize(unfold(t, a), dim=-1)  # (B, L, N*C/L)
        rows_p = nn.functional.normalize(unfold(p, a), dim=-1)
        out[a] = rows_t @ rows_p.transpose(1, 2)  # (B, L, L)
    return out


def folded_attention_reference(block: FoldedAttention3d, x: torch.Tensor) -> torch.Tensor:
    """The literal Folded Attention of ``block`` on ``x``: the reference for the fast one.

    Follows the paper step by step, whatever ``block.implementation`` says: three ``Conv3d``
    projections, energies from permute-and-copy unfoldings of ``theta(x)`` and ``phi(x)``, a
    ``torch.softmax`` per axis (with ``block``'s sign, scale and temperature), then the cascade
    ``Y <- Y + beta_a * fold(A_a @ unfold(Y))`` over D, H, W, C (``Y <- fold(...)`` for the pure
    variant) and, with ``outer_residual``, ``X + (Y - g(X))``.

    Parameters
    ----------
    block : FoldedAttention3d
        Supplies the weights and options.
    x : torch.Tensor
        Shape ``(B, C, D, H, W)``.

    Returns
    -------
    torch.Tensor
        Shape ``(B, C, D, H, W)``.
    """
    check_volume(x, block.channels)
    implementation = block.implementation
    block.implementation = "literal"  # selects the literal softmax too
    try:
        return block._forward_literal(x)[0]
    finally:
        block.implementation = implementation
