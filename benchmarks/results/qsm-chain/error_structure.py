"""What shape has the chain's extra chi error at low noise: a smooth trend, a scale, every scale?

Exploratory (2026-12-07), for issue 15; it changes nothing. For each simulated 2 mm subject the
full chain (``fanet-qsm-phase``, LBV, as ``qsm --phase`` runs) and the local-field path given the
same noise (``fanet-qsm``) reconstruct chi, as in ``benchmarks/phase_chain.py``. Printed, per
subject, demeaned NRMSE (%) in the chain's local mask within the brain:

- as reconstructed;
- after removing the best polynomial fit of degree 1, 2, 3 to the *error* (an oracle: it uses
  the true map) and to the *map itself* (what a detrending step without the truth would do);
- after the best global scale (oracle), with the slope of each map on the truth;
- the error's energy in bands of spatial frequency, as a percentage of the true map's energy.

Usage (from the repository root; about a minute per subject on one core)::

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python \\
        benchmarks/results/qsm-chain/error_structure.py --snr 200 400 \\
        --seeds 10000 10001 10002 10003
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from dc_lambda_sweep import raw_chain_map
from subject_args import add_subject_arguments, subject_params

from napari_fanet.engine.phase_qsm import DEFAULT_PHASE_DC_METHOD
from napari_fanet.engine.predict import load_model
from napari_fanet.io.b0_direction import array_to_world_direction
from napari_fanet.simulation.gre_phase import GREParams
from phase_chain import local_field_inversion, noisy_field_perfect_unwrap, nrmse

#: Band edges in cycles per voxel.
BANDS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)


def reconstruct(seed: int, params: GREParams, chain_net, local_net) -> dict[str, np.ndarray]:
    """Chain and same-noise local-field-path chi of one subject, the truth and the scoring mask."""
    gre, _, chain_chi, scored, _ = raw_chain_map(
        seed, params, *chain_net, data_consistency=DEFAULT_PHASE_DC_METHOD
    )
    world = array_to_world_direction(gre.b0_dir, gre.affine)
    noisy = noisy_field_perfect_unwrap(gre, gre.mask)
    with_noise = np.where(gre.mask, gre.local_field_ppm + noisy - gre.total_field_ppm, 0.0)
    local = local_field_inversion("fanet", gre, world, local_net, field=with_noise)
    return {"chain": chain_chi, "local": local, "truth": gre.chi, "mask": scored}


def polynomial_basis(shape: tuple[int, ...], mask: np.ndarray, degree: int) -> np.ndarray:
    """Monomials of the voxel coordinates (scaled to [-1, 1]) up to ``degree``, at ``mask``.

    Returns
    -------
    np.ndarray
        Shape ``(mask.sum(), terms)``.
    """
    grids = np.meshgrid(*[np.linspace(-1.0, 1.0, s) for s in shape], indexing="ij")
    coords = [g[mask] for g in grids]
    columns = [np.ones(int(mask.sum()))]
    for d in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(3), d):
            columns.append(np.prod([coords[i] for i in combo], axis=0))
    return np.stack(columns, axis=1)


def without_fit(values: np.ndarray, target: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``values`` minus the least-squares fit of ``target`` by ``basis`` (all at the mask)."""
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return values - basis @ coef


def band_energies(error: np.ndarray, truth: np.ndarray) -> list[float]:
    """Energy of ``error`` in each band of :data:`BANDS`, percent of ``truth``'s total energy."""
    k = np.sqrt(
        sum(f**2 for f in np.meshgrid(*[np.fft.fftfreq(s) for s in error.shape], indexing="ij"))
    )
    power = np.abs(np.fft.fftn(error)) ** 2
    total = float((np.abs(np.fft.fftn(truth)) ** 2).sum())
    return [
        100.0 * float(power[(k >= lo) & (k < hi)].sum()) / total
        for lo, hi in itertools.pairwise(BANDS)
    ]


def subject_rows(maps: dict[str, np.ndarray]) -> list[str]:
    """Markdown rows of one subject (one per path)."""
    mask, truth = maps["mask"], maps["truth"]
    rows = []
    for path in ("chain", "local"):
        est = maps[path]
        cells = [f"{nrmse(est, truth, mask, demean=True):.2f}"]
        for degree in (1, 2, 3):
            basis = polynomial_basis(est.shape, mask, degree)
            oracle, self_fit = est.copy(), est.copy()
            oracle[mask] = without_fit(est[mask], est[mask] - truth[mask], basis)
            self_fit[mask] = without_fit(est[mask], est[mask], basis)
            cells.append(
                f"{nrmse(oracle, truth, mask, demean=True):.2f} / "
                f"{nrmse(self_fit, truth, mask, demean=True):.2f}"
            )
        e, t = est[mask] - est[mask].mean(), truth[mask] - truth[mask].mean()
        scale = float(e @ t / (e @ e))
        cells.append(
            f"{scale:.3f} ({100 * np.linalg.norm(scale * e - t) / np.linalg.norm(t):.2f})"
        )
        cells.append(f"{float(e @ t / (t @ t)):.3f}")
        error = np.zeros_like(truth, dtype=np.float64)
        error[mask] = e - t
        true_map = np.zeros_like(truth, dtype=np.float64)
        true_map[mask] = t
        cells.append(" / ".join(f"{v:.1f}" for v in band_energies(error, true_map)))
        rows.append(f"| {path} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subject_arguments(parser)
    args = parser.parse_args()
    params = subject_params(parser, args)
    torch.set_num_threads(1)
    chain_net, local_net = load_model("fanet-qsm-phase"), load_model("fanet-qsm")
    bands = " / ".join(f"{lo:g}-{hi:g}" for lo, hi in itertools.pairwise(BANDS))
    noise = "default (40-80)" if args.snr is None else f"{args.snr[0]:g}-{args.snr[1]:g}"
    print(f"## First-echo SNR {noise}: demeaned chi NRMSE (%)\n")
    print(
        "| path | as reconstructed | degree 1: error fit (oracle) / map fit | degree 2 | degree 3 "
        f"| best scale (NRMSE) | slope on truth | error energy, % of truth, bands {bands} "
        "cycles/voxel |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        print(f"| **seed {seed}** | | | | | | | |")
        for line in subject_rows(reconstruct(seed, params, chain_net, local_net)):
            print(line, flush=True)


if __name__ == "__main__":
    main()
