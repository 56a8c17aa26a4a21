"""Time of each product of the cosine FA block's fast path with 1 and 2 threads (CPU).

Exploratory (2026-12-06, late), for issue 13: which of the block's pieces, at
``(1, 64, 32, 32, 32)``, gain from a second thread, and at what rate of multiply-adds. The
pieces are the calls ``FoldedAttention3d._fast_cosine_energies`` and ``_forward_fast`` make,
on random tensors of their shapes. Run it on an idle machine.

Usage (from the repository root; about 30 seconds)::

    PYTHONPATH=src python benchmarks/results/attention_ops/ops_threads.py [--repeats 40]
"""

import argparse
import time
from collections.abc import Callable

import torch

from napari_fanet.models.folded_attention import batched_product, row_softmax, squared_norms

B, C, D, H, W = 1, 64, 32, 32, 32
N = D * H * W


def median_ms(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run`` in ms, after three warm-up calls."""
    for _ in range(3):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def one_and_two_threads(run: Callable[[], object], repeats: int) -> list[float]:
    """Median ms of ``run`` with 1, then 2 intra-op threads (the caller restores the count)."""
    times = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times.append(median_ms(run, repeats))
    return times


def repeats_argument(argv: list[str] | None, description: str, default: int) -> int:
    """``--repeats`` from the command line, at least 1 (a usage error otherwise)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=default, help="timed calls per row")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected 1 or more, got {args.repeats}")
    return args.repeats


def pieces() -> dict[str, tuple[Callable[[], object], float]]:
    """Each piece's call and its multiply-adds (0 for the element-wise ones)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, C, N, generator=gen)
    weight = torch.randn(2 * C, C, generator=gen)
    bias = torch.randn(1, 2 * C, 1, generator=gen)
    tp = torch.randn(B, 2 * C, N, generator=gen)
    t, p = tp[:, :C], tp[:, C:]
    mix = torch.softmax(torch.randn(B, 32, 32, generator=gen), -1)
    channel_mix = torch.randn(B, C, C, generator=gen)
    energy = 10 * torch.randn(B, 32, 32, generator=gen)
    axis_macs = float(N * C * 32)
    return {
        "theta, phi: (2C, C) x (C, N) + bias": (
            lambda: batched_product(weight.expand(B, -1, -1), x.mT, bias.expand(B, -1, -1)),
            2.0 * N * C * C,
        ),
        "energy D: 64 x (32 x 1024) (1024 x 32), summed": (
            lambda: (t.reshape(B, C, D, H * W) @ p.reshape(B, C, D, H * W).mT).sum(1),
            axis_macs,
        ),
        "energy H: 2048 x (32 x 32) (32 x 32), summed": (
            lambda: (t.reshape(B, C * D, H, W) @ p.reshape(B, C * D, H, W).mT).sum(1),
            axis_macs,
        ),
        "energy W: (32 x 65536) (65536 x 32)": (
            lambda: t.reshape(B, -1, W).mT @ p.reshape(B, -1, W),
            axis_macs,
        ),
        "energy C: (C x N) (N x C)": (lambda: batched_product(t, p), float(N * C * C)),
        "row norms (squares, sums)": (lambda: squared_norms(tp, 2), 0.0),
        "four row softmaxes": (lambda: [row_softmax(energy) for _ in range(4)], 0.0),
        "step D: (32 x 32) on 64 x (32 x 1024)": (
            lambda: mix.unsqueeze(1) @ x.view(B, C, D, H * W),
            axis_macs,
        ),
        "step H: (32 x 32) on 2048 x (32 x 32)": (
            lambda: mix.unsqueeze(1) @ x.view(B, C * D, H, W),
            axis_macs,
        ),
        "step W: (65536 x 32) (32 x 32)": (
            lambda: batched_product(x.view(B, -1, W), mix),
            axis_macs,
        ),
        "step C and g: (C x C) (C x N) + bias": (
            lambda: batched_product(channel_mix, x.mT, bias[:, :C].expand(B, -1, -1)),
            float(N * C * C),
        ),
    }


def convolution() -> tuple[Callable[[], object], float]:
    """The ratio's reference: one 3x3x3 ``C -> C`` convolution of the same tensor."""
    conv = torch.nn.Conv3d(C, C, 3, padding=1).eval()
    x = torch.randn(B, C, D, H, W, generator=torch.Generator().manual_seed(1))
    return (lambda: conv(x)), 27.0 * N * C * C


def main(argv: list[str] | None = None) -> int:
    repeats = repeats_argument(argv, __doc__.splitlines()[0], 40)
    previous = torch.get_num_threads()
    rows = []
    with torch.inference_mode():
        for name, (run, macs) in pieces().items():
            rows.append((name, macs, *one_and_two_threads(run, repeats)))
        run, macs = convolution()
        times = one_and_two_threads(run, repeats)
        conv_row = ("one 3x3x3 convolution C -> C (the ratio's reference)", macs, *times)
    torch.set_num_threads(previous)
    print(f"Cosine FA pieces at ({B}, {C}, {D}, {H}, {W}), torch {torch.__version__}\n")
    print("| piece | 1 thread ms | 2 threads ms | speed-up | GMAC/s, 2 threads |")
    print("|---|---:|---:|---:|---:|")
    for name, macs, one, two in rows:
        rate = f"{macs / two / 1e6:.0f}" if macs else ""
        print(f"| {name} | {one:.2f} | {two:.2f} | {one / two:.2f} | {rate} |")
    one_sum, two_sum = sum(r[2] for r in rows), sum(r[3] for r in rows)
    print(f"| sum | {one_sum:.2f} | {two_sum:.2f} | {one_sum / two_sum:.2f} | |")
    name, macs, one, two = conv_row
    print(f"| {name} | {one:.2f} | {two:.2f} | {one / two:.2f} | {macs / two / 1e6:.0f} |")
    print(f"\nsum of the pieces / convolution, 2 threads: {two_sum / two:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
