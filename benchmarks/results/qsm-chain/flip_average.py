"""Does averaging the QSM networks over mirror images close the chain's low-noise gap?

Exploratory (2026-12-07), for issue 15. The dipole kernel is symmetric under a flip of any
array axis when B0 lies along the third (``1/3 - kz^2/k^2`` is even in each of kx, ky, kz), so
the network's input can be flipped along any of its three axes and its output flipped back.
Each row runs ``benchmarks/phase_chain.py``'s chi comparison on simulated 2 mm validation
subjects with both networks (the chain's ``fanet-qsm-phase`` and the local-field path's
``fanet-qsm``) as they ship, then with each averaged over the 2^k flips of ``--axes``. Printed:
demeaned chi NRMSE (%) of the full chain and of the local-field path given the same noise, in
the chain's local mask within the brain, and their difference (the issue's gap).

Usage (from the repository root; about 3-8 minutes per subject on one core)::

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python \\
        benchmarks/results/qsm-chain/flip_average.py \\
        --snr 200 400 --seeds 10000 10001 10002 10003 --axes 0 1 2
"""

from __future__ import annotations

import argparse
import itertools
import sys

import torch
from subject_args import add_subject_arguments, subject_params
from torch import nn

from napari_fanet.engine.predict import load_model
from napari_fanet.simulation.gre_phase import GREParams
from phase_chain import run_subject  # benchmarks/ on PYTHONPATH (see the usage)


class FlipAveraged(nn.Module):
    """``model`` averaged over the flips of each subset of ``axes`` of its input.

    Parameters
    ----------
    model : nn.Module
        A QSM network; its ``config`` is kept, so the task checks accept the wrapper.
    axes : sequence of int
        Array axes (0, 1, 2 = X, Y, Z) to flip.
    """

    def __init__(self, model: nn.Module, axes: tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        self.config = model.config
        dims = [a + 2 for a in axes]
        self.flips = [s for k in range(len(dims) + 1) for s in itertools.combinations(dims, k)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for dims in self.flips:
            out = self.model(torch.flip(x, dims) if dims else x)
            out = torch.flip(out, dims) if dims else out
            total = out if total is None else total + out
        return total / len(self.flips)


def row(seed: int, params: GREParams, chain_net, local_net) -> tuple[float, float]:
    """Chain and same-noise local-field path chi NRMSE (%) of one subject."""
    subject = run_subject(
        seed, 2.0, 100, params, chain_net, chi_only=True, local_network=local_net
    )
    fanet = subject["chi"]["fanet"]
    return fanet["chain"], fanet["local_field_noise"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subject_arguments(parser)
    parser.add_argument("--axes", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    params = subject_params(parser, args)
    if not set(args.axes) <= {0, 1, 2} or len(set(args.axes)) != len(args.axes):
        parser.error(f"--axes: expected distinct axes among 0 1 2, got {args.axes}")
    torch.set_num_threads(1)
    chain_model, chain_ckpt = load_model("fanet-qsm-phase")
    local_model, local_ckpt = load_model("fanet-qsm")
    variants = {
        "as shipped": (chain_model, local_model),
        f"flips of axes {' '.join(map(str, args.axes))}": (
            FlipAveraged(chain_model, tuple(args.axes)),
            FlipAveraged(local_model, tuple(args.axes)),
        ),
    }
    noise = "default (40-80)" if args.snr is None else f"{args.snr[0]:g}-{args.snr[1]:g}"
    print(f"## First-echo SNR {noise}\n")
    print("| seed | networks | chain % | local-field path + same noise % | gap |")
    print("|---|---|---|---|---|")
    sums = {name: [0.0, 0.0] for name in variants}
    for seed in args.seeds:
        for name, (chain_net, local_net) in variants.items():
            chain, local = row(seed, params, (chain_net, chain_ckpt), (local_net, local_ckpt))
            sums[name][0] += chain
            sums[name][1] += local
            print(f"| {seed} | {name} | {chain:.2f} | {local:.2f} | {chain - local:.2f} |")
            sys.stdout.flush()
    n = len(args.seeds)
    for name, (chain, local) in sums.items():
        print(f"| mean | {name} | {chain / n:.2f} | {local / n:.2f} | {(chain - local) / n:.2f} |")


if __name__ == "__main__":
    main()
