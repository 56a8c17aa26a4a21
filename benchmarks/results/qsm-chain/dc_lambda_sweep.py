"""Does a different weight or more iterations of the SMV data consistency close the chain's gap?

Exploratory (2026-12-06). On simulated 2 mm validation subjects, the phase chain (LBV) and the
shipped ``fanet-qsm-phase`` run as ``qsm --phase`` does, except that the network's raw map is
kept; then :func:`napari_fanet.physics.smv_consistency.smv_data_consistency` matches it to the
total field with the automatic weight and with fixed weights, after 10 (the default) and 30
conjugate-gradient iterations. Printed: demeaned chi NRMSE (%) in the chain's local mask.

Usage (from the repository root; about 2 minutes per subject on one core)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python \\
        benchmarks/results/qsm-chain/dc_lambda_sweep.py --snr 200 400 --seeds 10000 10001
"""

import argparse

import numpy as np
import torch
from subject_args import add_subject_arguments, subject_params

from napari_fanet.engine.phase_qsm import phase_to_susceptibility
from napari_fanet.engine.predict import load_model
from napari_fanet.io.b0_direction import array_to_world_direction
from napari_fanet.metrics.qsm import nrmse
from napari_fanet.physics.phase_chain import PhaseChainSettings
from napari_fanet.physics.smv_consistency import smv_automatic_lambda, smv_data_consistency
from napari_fanet.simulation import simulate_qsm_subject
from napari_fanet.simulation.gre_phase import GREParams, simulate_gre_phase
from napari_fanet.simulation.qsm_chain import store_phase_as_integers

WEIGHTS = ("auto", 1.0, 0.3, 0.1, 0.03, 0.01)


def raw_chain_map(seed: int, params: GREParams, model, checkpoint, data_consistency: str = "none"):
    """One simulated 2 mm subject through the chain and the network, by default without data
    consistency (``data_consistency`` as ``phase_to_susceptibility`` takes it).

    Returns ``(gre, chain, raw, scored, voxel)``: the simulated acquisition, the chain's result,
    the network's map (ppm, ``(X, Y, Z)``), the scored voxels (the chain's local mask within
    the brain) and the voxel size in mm.
    """
    gre = simulate_gre_phase(simulate_qsm_subject(seed, 2.0, noise=False), seed, params=params)
    result = phase_to_susceptibility(
        store_phase_as_integers(gre.phase), gre.echo_times_s, gre.affine,
        magnitude=gre.magnitude, b0_dir_world=array_to_world_direction(gre.b0_dir, gre.affine),
        chain_settings=PhaseChainSettings(b0_tesla=gre.b0_tesla), model=model,
        checkpoint=checkpoint, data_consistency=data_consistency,
    )  # fmt: skip
    chain = result.chain
    voxel = tuple(float(v) for v in np.linalg.norm(gre.affine[:3, :3], axis=0))
    return gre, chain, result.chi, chain.local_mask & gre.mask, voxel


def sweep(seed: int, params: GREParams, model, checkpoint) -> list[str]:
    """Table rows of one subject: the raw map, then each weight at 10 and 30 iterations."""
    gre, chain, raw, scored, voxel = raw_chain_map(seed, params, model, checkpoint)
    auto = smv_automatic_lambda(chain.field_ppm, raw, chain.mask, voxel, gre.b0_dir)
    error = nrmse(raw, gre.chi, scored, demean=True)
    rows = [f"| {seed} | raw network (no data consistency) | | {error:.2f} |"]
    for iterations in (10, 30):
        for weight in WEIGHTS:
            chi = smv_data_consistency(
                chain.field_ppm, raw, chain.mask, voxel, gre.b0_dir, lam=weight,
                iterations=iterations,
            ) * chain.local_mask  # fmt: skip
            label = f"auto ({auto:.3g})" if weight == "auto" else f"{weight:g}"
            error = nrmse(chi, gre.chi, scored, demean=True)
            rows.append(f"| {seed} | {label} | {iterations} | {error:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subject_arguments(parser, snr_required=True)
    args = parser.parse_args()
    params = subject_params(parser, args)
    torch.set_num_threads(1)
    model, checkpoint = load_model("fanet-qsm-phase")
    print(f"## SMV data consistency, first-echo SNR {args.snr[0]:g}-{args.snr[1]:g}\n")
    print("| seed | weight | CG iterations | chi NRMSE % |\n|---|---|---|---|")
    for seed in args.seeds:
        print("\n".join(sweep(seed, params, model, checkpoint)), flush=True)


if __name__ == "__main__":
    main()
