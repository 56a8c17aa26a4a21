"""Phase-to-local-field chain on simulated subjects: accuracy against the true field, timings.

Each subject is ``simulate_qsm_subject(seed, voxel, noise=False)`` put in a head with air cavities
and acquired as 3-echo GRE (4, 8, 12 ms at 3 T, complex noise) by
``napari_fanet.simulation.gre_phase.simulate_gre_phase``; the wrapped phase is stored as signed
12-bit integers (as a scanner does) and the magnitude is given, so every step runs: scale
detection, Otsu mask, unwrapping, echo fit, background removal. Seeds start at 20 000 (the test
split of ``shared/EVALUATION.md``), so no tuning was done on them.

Reported per method (unwrapping x background removal), mean and standard deviation over subjects:

- ``NRMSE``: ``100 ||M (x - ref)|| / ||M ref||`` (%), ``M`` = the chain's ``local_mask`` and the
  true brain mask, ``ref`` the simulator's noise-free local field (ppm); not demeaned and
  demeaned (each map's mean inside ``M`` subtracted, challenge 2.0 style);
- ``oracle``: the same background removal applied to the *true* total field inside the true
  mask (no noise, unwrapping or mask error): the part of the error due to background removal;
- mask Dice against the true brain mask; seconds per step;
- ``chi``: susceptibility NRMSE (%, demeaned, against the simulator's ``chi``) of the **full
  chain** (stored phase -> laplacian+vsharp -> inversion, i.e.
  :func:`napari_fanet.engine.phase_qsm.phase_to_susceptibility`, as ``qsm --phase`` runs it)
  against the **local-field path** (the same inversion of the true local field in the true
  mask, as ``qsm --field`` runs it), both scored in the chain's ``local_mask`` and the true
  mask; inversions CFL2 and TKD at their tuned defaults, plus the shipped ``fanet-qsm`` with
  ``--fanet`` (slow on CPU: it runs on a 2 mm grid).

Usage::

    PYTHONPATH=src python benchmarks/phase_chain.py                 # 3 subjects at 4 mm
    PYTHONPATH=src python benchmarks/phase_chain.py --subjects 1 --voxel 3 --json out.json
    PYTHONPATH=src python benchmarks/phase_chain.py --snr 200 400   # less noise
    PYTHONPATH=src python benchmarks/phase_chain.py --subjects 2 --fanet   # chi with FA-Net too
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np

from napari_fanet.baselines import dipole_inversion as qsm
from napari_fanet.engine.phase_qsm import (
    DEFAULT_CFL2_LAMBDA,
    DEFAULT_TKD_THRESHOLD,
    phase_to_susceptibility,
)
from napari_fanet.io.b0_direction import array_to_world_direction
from napari_fanet.io.nifti import Volume
from napari_fanet.physics.background import pdf, vsharp
from napari_fanet.physics.phase_chain import STEPS, PhaseChainSettings, run_phase_chain
from napari_fanet.simulation import simulate_qsm_subject
from napari_fanet.simulation.gre_phase import GREParams, simulate_gre_phase

METHODS = (
    ("laplacian", "vsharp"),
    ("quality", "vsharp"),
    ("laplacian", "pdf"),
    ("quality", "pdf"),
)
FIRST_SEED = 20_000


def nrmse(est: np.ndarray, ref: np.ndarray, mask: np.ndarray, *, demean: bool = False) -> float:
    """NRMSE in percent inside ``mask`` (optionally each map demeaned inside it first)."""
    x, r = est[mask].astype(np.float64), ref[mask].astype(np.float64)
    if demean:
        x, r = x - x.mean(), r - r.mean()
    return 100.0 * float(np.linalg.norm(x - r) / np.linalg.norm(r))


def local_field_inversion(method: str, gre, world: np.ndarray, network=None) -> np.ndarray:
    """``method`` on the true local field in the true mask (the ``qsm --field`` path)."""
    field, brain, vox = gre.local_field_ppm, gre.mask, gre.voxel_size
    if method == "cfl2":
        return qsm.cfl2(field, vox, gre.b0_dir, lam=DEFAULT_CFL2_LAMBDA, mask=brain)
    if method == "tkd":
        return qsm.tkd(field, vox, gre.b0_dir, threshold=DEFAULT_TKD_THRESHOLD, mask=brain)
    from napari_fanet.engine.predict import reconstruct_qsm

    model, ckpt = network
    result = reconstruct_qsm(
        model, ckpt, Volume(field, gre.affine), Volume(brain.astype(np.float32), gre.affine),
        b0_dir=tuple(world),
    )  # fmt: skip
    return result.outputs["chi"]


def chi_comparison(gre, stored: np.ndarray, pdf_iter: int, network=None) -> dict:
    """Chi NRMSE of the full chain against the local-field path, per inversion."""
    world = array_to_world_direction(gre.b0_dir, gre.affine)
    settings = PhaseChainSettings(b0_tesla=gre.b0_tesla, pdf_max_iter=pdf_iter)
    out = {}
    for method in ("cfl2", "tkd") + (("fanet",) if network else ()):
        extra = {"model": network[0], "checkpoint": network[1]} if method == "fanet" else {}
        start = time.perf_counter()
        chain = phase_to_susceptibility(
            stored, gre.echo_times_s, gre.affine, magnitude=gre.magnitude, b0_dir_world=world,
            chain_settings=settings, method=method, **extra,
        )  # fmt: skip
        chain_s = time.perf_counter() - start
        start = time.perf_counter()
        direct = local_field_inversion(method, gre, world, network)
        direct_s = time.perf_counter() - start
        m = chain.chain.local_mask & gre.mask
        out[method] = {
            "chain": nrmse(chain.chi, gre.chi, m, demean=True),
            "local_field": nrmse(direct, gre.chi, m, demean=True),
            "chain_s": chain_s,
            "local_field_s": direct_s,
            "timings_s": chain.timings_s,
        }
    return out


def run_subject(seed: int, voxel: float, pdf_iter: int, params: GREParams, network=None) -> dict:
    """All methods on one simulated subject."""
    start = time.perf_counter()
    gre = simulate_gre_phase(simulate_qsm_subject(seed, voxel, noise=False), seed, params=params)
    sim_s = time.perf_counter() - start
    stored = np.clip(np.round(gre.phase * 4096 / math.pi), -4096, 4095).astype(np.int16)
    truth, brain = gre.local_field_ppm, gre.mask
    rows = {}
    for unwrap, background in METHODS:
        settings = PhaseChainSettings(
            b0_tesla=gre.b0_tesla, b0_dir=gre.b0_dir, unwrap=unwrap, background=background,
            pdf_max_iter=pdf_iter,
        )  # fmt: skip
        result = run_phase_chain(
            stored, gre.echo_times_s, gre.voxel_size, magnitude=gre.magnitude, settings=settings
        )
        m = result.local_mask & brain
        dice = 2 * np.sum(result.mask & brain) / (result.mask.sum() + brain.sum())
        rows[f"{unwrap}+{background}"] = {
            "nrmse": nrmse(result.local_field_ppm, truth, m),
            "nrmse_demeaned": nrmse(result.local_field_ppm, truth, m, demean=True),
            "mask_dice": float(dice),
            "scaling": result.scaling.kind,
            "timings_s": result.timings_s,
        }
    oracle = {}
    start = time.perf_counter()
    local, eroded = vsharp(gre.total_field_ppm, brain, gre.voxel_size)
    oracle["vsharp"] = {
        "nrmse": nrmse(local, truth, eroded),
        "seconds": time.perf_counter() - start,
    }
    start = time.perf_counter()
    local = pdf(gre.total_field_ppm, brain, gre.voxel_size, gre.b0_dir, max_iter=pdf_iter)
    oracle["pdf"] = {"nrmse": nrmse(local, truth, brain), "seconds": time.perf_counter() - start}
    return {
        "seed": seed,
        "shape": list(brain.shape),
        "simulation_s": sim_s,
        "local_field_std_ppm": float(truth[brain].std()),
        "background_range_ppm": float(np.ptp(gre.background_field_ppm[brain])),
        "methods": rows,
        "oracle": oracle,
        "chi": chi_comparison(gre, stored, pdf_iter, network),
    }


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def summarise(subjects: list[dict]) -> str:
    """Markdown tables of accuracy and timings."""
    lines = [
        "| method | NRMSE (%) | NRMSE demeaned (%) | mask Dice | "
        + " | ".join(f"{s} (s)" for s in STEPS)
        + " |",
        "|---" * (4 + len(STEPS)) + "|",
    ]
    for unwrap, background in METHODS:
        key = f"{unwrap}+{background}"
        rows = [s["methods"][key] for s in subjects]
        times = [f"{statistics.mean(r['timings_s'][step] for r in rows):.2f}" for step in STEPS]
        lines.append(
            f"| {key} | {_mean_sd([r['nrmse'] for r in rows])} | "
            f"{_mean_sd([r['nrmse_demeaned'] for r in rows])} | "
            f"{statistics.mean(r['mask_dice'] for r in rows):.3f} | " + " | ".join(times) + " |"
        )
    lines += [
        "",
        "| oracle (true total field, true mask) | NRMSE (%) | seconds |",
        "|---|---|---|",
    ]
    for name in ("vsharp", "pdf"):
        rows = [s["oracle"][name] for s in subjects]
        lines.append(
            f"| {name} | {_mean_sd([r['nrmse'] for r in rows])} | "
            f"{statistics.mean(r['seconds'] for r in rows):.2f} |"
        )
    lines += [
        "",
        "| inversion | chi NRMSE full chain (%) | chi NRMSE local-field path (%) | "
        "chain total (s) | inversion (s) |",
        "|---|---|---|---|---|",
    ]
    for name in subjects[0]["chi"]:
        rows = [s["chi"][name] for s in subjects]
        lines.append(
            f"| {name} | {_mean_sd([r['chain'] for r in rows])} | "
            f"{_mean_sd([r['local_field'] for r in rows])} | "
            f"{statistics.mean(r['chain_s'] for r in rows):.2f} | "
            f"{statistics.mean(r['timings_s']['inversion'] for r in rows):.2f} |"
        )
    stds = [s["local_field_std_ppm"] for s in subjects]
    ranges = [s["background_range_ppm"] for s in subjects]
    lines += [
        "",
        f"subjects: seeds {[s['seed'] for s in subjects]}, grid {subjects[0]['shape']}; "
        f"true local field std {statistics.mean(stds):.4f} ppm, background range in the brain "
        f"{statistics.mean(ranges):.2f} ppm",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3, help="number of subjects (default 3)")
    parser.add_argument("--voxel", type=float, default=4.0, help="voxel size in mm (default 4)")
    parser.add_argument("--pdf-iter", type=int, default=100, help="PDF CG iterations (100)")
    parser.add_argument(
        "--snr", type=float, nargs=2, default=None, metavar=("LO", "HI"),
        help="range of the first echo's brain SNR (default: GREParams's, 40-80)",
    )  # fmt: skip
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    parser.add_argument(
        "--fanet", action="store_true", help="also compare chi with the shipped fanet-qsm"
    )
    args = parser.parse_args(argv)
    params = GREParams() if args.snr is None else GREParams(snr=tuple(args.snr))
    network = None
    if args.fanet:
        from napari_fanet.engine.predict import load_model

        network = load_model("fanet-qsm")
    subjects = [
        run_subject(FIRST_SEED + i, args.voxel, args.pdf_iter, params, network)
        for i in range(args.subjects)
    ]
    print(summarise(subjects))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(subjects, handle, indent=2)
    return subjects


if __name__ == "__main__":
    main()
