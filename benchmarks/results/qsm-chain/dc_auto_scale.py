"""The phase chain with the SMV data consistency's automatic weight scaled by k.

Exploratory (2026-12-06, night), for issue 15. On simulated 2 mm subjects the phase chain (LBV)
and the shipped ``fanet-qsm-phase`` run as ``qsm --phase`` does, except that the network's raw map
is kept; then :func:`napari_fanet.physics.smv_consistency.smv_data_consistency` matches it to the
total field with the weight ``smv_automatic_lambda(..., scale=k)`` for each ``k``. Printed:
demeaned chi NRMSE (%) in the chain's local mask (as ``benchmarks/phase_chain.py`` scores it).

With ``--paired FILE`` (a ``phase_chain.py --fanet --json`` file of the same subjects and noise)
it also writes, per ``k``, ``OUT_k<k>.json``: that file's rows with the chain's NRMSE replaced by
this run's, so ``pooled_gap.py`` gives the gap to the same-noise local-field path per ``k``.

Usage (from the repository root; about a minute per subject on one core)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/results/qsm-chain/dc_auto_scale.py \\
        --snr 200 400 --seeds 10000 10001 --scales 1 0.5 0.25 \\
        [--paired shipped_200.json --out runs/dc-scale/200]
"""

import argparse
import copy
import json
import statistics
from pathlib import Path

import torch
from dc_lambda_sweep import raw_chain_map
from subject_args import add_subject_arguments, subject_params

from napari_fanet.engine.predict import load_model
from napari_fanet.metrics.qsm import nrmse
from napari_fanet.physics.smv_consistency import smv_automatic_lambda, smv_data_consistency
from napari_fanet.simulation.gre_phase import GREParams


def subject_errors(seed: int, params: GREParams, scales, model, checkpoint) -> dict:
    """``{k: (weight, chi NRMSE %)}`` of one subject."""
    gre, chain, raw, scored, voxel = raw_chain_map(seed, params, model, checkpoint)
    out = {}
    for k in scales:
        lam = smv_automatic_lambda(chain.field_ppm, raw, chain.mask, voxel, gre.b0_dir, scale=k)
        chi = smv_data_consistency(
            chain.field_ppm, raw, chain.mask, voxel, gre.b0_dir, lam=lam
        ) * chain.local_mask  # fmt: skip
        out[k] = (lam, nrmse(chi, gre.chi, scored, demean=True))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subject_arguments(parser, seeds_required=True)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--paired", type=Path, help="phase_chain.py --fanet --json file")
    parser.add_argument("--out", type=Path, help="prefix of the per-k JSON files (--paired)")
    args = parser.parse_args()  # fmt: skip
    params = subject_params(parser, args)
    if min(args.scales) <= 0:
        parser.error(f"--scales: expected numbers > 0, got {args.scales}")
    if (args.paired is None) != (args.out is None):
        parser.error("--paired and --out go together")
    paired = {}
    if args.paired is not None:
        if not args.paired.is_file():
            parser.error(f"--paired: expected a phase_chain.py --json file, got {args.paired}")
        paired = {int(r["seed"]): r for r in json.loads(args.paired.read_text())}
        if set(args.seeds) - set(paired):
            parser.error(
                f"--paired: it has no rows for seeds {sorted(set(args.seeds) - set(paired))}"
            )
        if not args.out.parent.is_dir():
            parser.error(f"--out: expected a prefix in an existing folder, got {args.out}")
    torch.set_num_threads(1)
    model, checkpoint = load_model("fanet-qsm-phase")
    snr = "40-80 (default)" if args.snr is None else f"{args.snr[0]:g}-{args.snr[1]:g}"
    print(f"## Automatic SMV weight times k, first-echo SNR {snr}\n")
    print("| seed | k | weight | chi NRMSE % | paired file's chain % |\n|---|---|---|---|---|")
    results = {}
    for seed in args.seeds:
        results[seed] = subject_errors(seed, params, args.scales, model, checkpoint)
        before = f"{paired[seed]['chi']['fanet']['chain']:.2f}" if paired else ""
        for k, (lam, error) in results[seed].items():
            print(f"| {seed} | {k:g} | {lam:.3g} | {error:.2f} | {before} |", flush=True)
    print("\n| k | mean chi NRMSE % |\n|---|---|")
    for k in args.scales:
        print(f"| {k:g} | {statistics.mean(results[s][k][1] for s in args.seeds):.3f} |")
    for k in args.scales if paired else ():
        rows = []
        for seed in args.seeds:
            row = copy.deepcopy(paired[seed])
            row["chi"]["fanet"]["chain"] = results[seed][k][1]
            row["chi"]["fanet"]["smv_weight"] = results[seed][k][0]
            rows.append(row)
        Path(f"{args.out}_k{k:g}.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
