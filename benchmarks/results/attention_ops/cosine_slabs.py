"""The cosine FA block's energies computed one depth slice at a time, against the block's own.

Exploratory (2026-12-06, issue 13). The block's fast cosine path forms ``theta(X)`` and
``phi(X)`` (16 MB at ``(1, 64, 32, 32, 32)``) and then reads them once per energy and once
more for the row norms. This script tries the other order: per depth slice, the ``(2C, HW)``
projection (512 kB, cache-sized) is formed into a buffer laid out ``(D, 2C, HW)`` and the H, W
and C energies and the squared norms are accumulated from it while it is in cache; the D energy
is then one product over that buffer. It checks that the raw (un-normalised) energies agree with
the block's products, and prints the median times of both, with 1 and 2 threads, beside one
3x3x3 convolution of the same tensor. Run it on an idle machine.

Usage (from the repository root; about 30 seconds)::

    PYTHONPATH=src python benchmarks/results/attention_ops/cosine_slabs.py [--repeats 30]
"""

import torch
from ops_threads import one_and_two_threads, repeats_argument

from napari_fanet.models.folded_attention import FoldedAttention3d

B, C, D, H, W = 1, 64, 32, 32, 32


def projections(block: FoldedAttention3d) -> tuple[torch.Tensor, torch.Tensor]:
    """``theta`` and ``phi`` stacked: weight ``(2C, C)`` and bias ``(2C, 1)``."""
    weight = torch.cat([block.theta.weight.view(C, C), block.phi.weight.view(C, C)])
    bias = torch.cat([block.theta.bias, block.phi.bias]).view(2 * C, 1)
    return weight, bias


def slab_energies(block: FoldedAttention3d, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw D, H, W, C energies and squared norms of ``x`` ``(1, C, D, H, W)``, slice by slice."""
    hw = H * W
    xf = x.reshape(C, D * hw)
    weight, bias = projections(block)
    buffer = torch.empty(D, 2 * C, hw)  # (D, 2C, HW): each slice's theta and phi rows
    e_h, e_w, e_c = torch.zeros(C, H, H), torch.zeros(W, W), torch.zeros(C, C)
    squares = torch.empty(2 * C, hw)
    per_voxel, channel = torch.empty(2, D, hw), torch.zeros(2 * C)
    for k in range(D):
        tp = torch.addmm(bias, weight, xf[:, k * hw : (k + 1) * hw], out=buffer[k])
        t, p = tp[:C], tp[C:]  # (C, HW) each
        e_h.baddbmm_(t.view(C, H, W), p.view(C, H, W).mT)  # (C, H, H), summed over C below
        e_w.addmm_(t.reshape(C * H, W).mT, p.reshape(C * H, W))  # (W, W)
        e_c.addmm_(t, p.mT)  # (C, C)
        torch.mul(tp, tp, out=squares)
        torch.sum(squares.view(2, C, hw), 1, out=per_voxel[:, k])
        channel += squares.sum(1)
    # (D, C*HW) rows with stride 2C*HW: one product for the D energy
    e_d = buffer[:, :C].reshape(D, C * hw) @ buffer[:, C:].reshape(D, C * hw).mT
    return {"D": e_d, "H": e_h.sum(0), "W": e_w, "C": e_c, "norms": (per_voxel, channel)}


def block_raw_energies(block: FoldedAttention3d, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same raw energies by the block's own products (the reference here)."""
    weight, bias = projections(block)
    tp = weight @ x.reshape(C, -1) + bias
    t, p = tp[:C], tp[C:]
    return {
        "D": (t.reshape(C, D, H * W) @ p.reshape(C, D, H * W).mT).sum(0),
        "H": (t.reshape(C * D, H, W) @ p.reshape(C * D, H, W).mT).sum(0),
        "W": t.reshape(-1, W).mT @ p.reshape(-1, W),
        "C": t @ p.mT,
    }


def main(argv: list[str] | None = None) -> int:
    repeats = repeats_argument(argv, __doc__.splitlines()[0], 30)
    torch.manual_seed(0)
    block = FoldedAttention3d(C, scale="cosine", learn_temperature=True).eval()
    conv = torch.nn.Conv3d(C, C, 3, padding=1).eval()
    x = torch.randn(B, C, D, H, W)
    previous = torch.get_num_threads()
    with torch.inference_mode():
        slabs, reference = slab_energies(block, x), block_raw_energies(block, x)
        errors = {
            a: float((slabs[a] - reference[a]).abs().max() / reference[a].abs().max())
            for a in reference
        }
        runs = {
            "block's cosine energies (normalised, as it runs)": (
                lambda: block._fast_cosine_energies(x)
            ),
            "slice by slice (raw energies and squared norms only)": (
                lambda: slab_energies(block, x)
            ),
            "whole block": lambda: block(x),
            "one 3x3x3 convolution C -> C": lambda: conv(x),
        }
        rows = {name: one_and_two_threads(run, repeats) for name, run in runs.items()}
    torch.set_num_threads(previous)
    print(f"Cosine FA energies at ({B}, {C}, {D}, {H}, {W}), torch {torch.__version__}\n")
    print("| computation | 1 thread ms | 2 threads ms |")
    print("|---|---:|---:|")
    for name, (one, two) in rows.items():
        print(f"| {name} | {one:.2f} | {two:.2f} |")
    worst = max(errors.values())
    print(f"\nlargest relative difference of the raw energies (slices vs block): {worst:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
