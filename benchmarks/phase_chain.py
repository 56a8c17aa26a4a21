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
  chain** (stored phase -> laplacian + the default background removal -> inversion, i.e.
  :func:`napari_fanet.engine.phase_qsm.phase_to_susceptibility`, as ``qsm --phase`` runs it)
  against the **local-field path** (the same inversion of the true, noise-free local field in
  the true mask, as ``qsm --field`` runs it) and against the local-field path given the same
  acquisition noise (``+ noise`` below), all scored in the chain's ``local_mask`` and the true
  mask; inversions CFL2 and TKD at their tuned defaults, plus FA-Net with ``--fanet`` (slow on
  CPU: it runs on a 2 mm grid) as the product runs it: the chain with ``--model`` (default the
  shipped ``fanet-qsm-phase``), the local-field path with ``--local-model`` (default the shipped
  ``fanet-qsm``); the chain both with the phase path's default data consistency, on the total
  field (``fanet``: ``--data-consistency smv``), and with the local-field path's, on the chain's
  local field (``fanet-cg``, which shares ``fanet``'s local-field path rows).
- ``steps``: what each step adds to the chi NRMSE (CFL2 and TKD), one ingredient at a time,
  every row scored in the same voxels (the intersection of all rows' masks with the true mask):

  1. ``local field``: the true, noise-free local field in the true mask (the ``qsm --field``
     path);
  2. ``+ noise``: plus the acquisition noise as the echo fit passes it on (the field fitted
     from the noisy phase unwrapped with the *true* field, minus the true total field);
  3. ``+ background removal``: the default background removal of that noisy field in the true
     mask (``background removal, no noise``: the same on the true total field);
  4. ``+ unwrapping``: the chain with the true mask given (its own unwrapping and fit);
  5. ``+ mask = full chain``: the chain as it runs (Otsu mask from the magnitude).

Usage::

    PYTHONPATH=src python benchmarks/phase_chain.py                 # 3 subjects at 4 mm
    PYTHONPATH=src python benchmarks/phase_chain.py --subjects 1 --voxel 3 --json out.json
    PYTHONPATH=src python benchmarks/phase_chain.py --snr 200 400   # less noise
    PYTHONPATH=src python benchmarks/phase_chain.py --subjects 2 --fanet   # chi with FA-Net too
    PYTHONPATH=src python benchmarks/phase_chain.py --fanet --model run/best.pt --chi-only
    PYTHONPATH=src python benchmarks/phase_chain.py --fanet --chi-only --background lbv
    PYTHONPATH=src python benchmarks/phase_chain.py --fanet --chi-only --tile 96 112 96  # one tile
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
from napari_fanet.physics.echo_unwrap import EchoPhases
from napari_fanet.physics.field_fit import fit_field
from napari_fanet.physics.lbv import lbv
from napari_fanet.physics.phase_chain import STEPS, PhaseChainSettings, run_phase_chain
from napari_fanet.physics.unwrap import wrap
from napari_fanet.simulation import simulate_qsm_subject
from napari_fanet.simulation.gre_phase import GREParams, simulate_gre_phase
from napari_fanet.simulation.qsm_chain import store_phase_as_integers
from napari_fanet.tasks import QSM

METHODS = (
    ("laplacian", "vsharp"),
    ("quality", "vsharp"),
    ("laplacian", "pdf"),
    ("quality", "pdf"),
    ("laplacian", "lbv"),
    ("quality", "lbv"),
)
STEP_ROWS = (
    "local field",
    "+ noise",
    "background removal, no noise",
    "+ background removal",
    "+ unwrapping",
    "+ mask = full chain",
)
FIRST_SEED = 20_000
#: The phase chain's default background removal (``qsm --phase`` without ``--bfr``).
DEFAULT_BACKGROUND = PhaseChainSettings().background


def nrmse(est: np.ndarray, ref: np.ndarray, mask: np.ndarray, *, demean: bool = False) -> float:
    """NRMSE in percent inside ``mask`` (optionally each map demeaned inside it first)."""
    x, r = est[mask].astype(np.float64), ref[mask].astype(np.float64)
    if demean:
        x, r = x - x.mean(), r - r.mean()
    return 100.0 * float(np.linalg.norm(x - r) / np.linalg.norm(r))


def local_field_inversion(
    method: str, gre, world: np.ndarray, network=None, field=None, brain=None
) -> np.ndarray:
    """``method`` on a local field (default the true one in the true mask: ``qsm --field``)."""
    field = gre.local_field_ppm if field is None else field
    brain = gre.mask if brain is None else brain
    vox = gre.voxel_size
    if method == "cfl2":
        return qsm.cfl2(field, vox, gre.b0_dir, lam=DEFAULT_CFL2_LAMBDA, mask=brain)
    if method == "tkd":
        return qsm.tkd(field, vox, gre.b0_dir, threshold=DEFAULT_TKD_THRESHOLD, mask=brain)
    from napari_fanet.engine.predict import reconstruct_qsm

    model, ckpt = network
    result = reconstruct_qsm(
        model, ckpt, Volume(field.astype(np.float32), gre.affine),
        Volume(brain.astype(np.float32), gre.affine),
        b0_dir=tuple(world),
    )  # fmt: skip
    return result.outputs["chi"]


def noisy_field_perfect_unwrap(gre, mask: np.ndarray) -> np.ndarray:
    """Total field (ppm) fitted from the noisy phase unwrapped with the true field's help.

    The wrapped echo differences are unwrapped by adding the true phase differences' whole
    multiples of 2 pi, so the fit sees the acquisition noise and nothing else.
    """
    te = np.asarray(gre.echo_times_s)
    dte = te[1:] - te[0]
    truth = 2 * math.pi * gre.total_field_ppm.astype(np.float64)[..., None] * gre.hz_per_ppm * dte
    measured = wrap(gre.phase[..., 1:].astype(np.float64) - gre.phase[..., :1])
    psi = truth + wrap(measured - truth)
    fit = fit_field(EchoPhases(psi, dte, False), gre.magnitude, mask=mask, b0_tesla=gre.b0_tesla)
    return fit.field_ppm


def remove_background(name: str, total: np.ndarray, mask: np.ndarray, gre, pdf_iter: int):
    """One background removal on ``total`` in ``mask``: ``(local, local_mask)``."""
    if name == "vsharp":
        return vsharp(total, mask, gre.voxel_size)
    if name == "lbv":
        return lbv(total, mask, gre.voxel_size)
    return pdf(total, mask, gre.voxel_size, gre.b0_dir, max_iter=pdf_iter), mask


def step_fields(
    gre, stored: np.ndarray, pdf_iter: int, background: str = DEFAULT_BACKGROUND
) -> dict:
    """The local fields of :data:`STEP_ROWS`: ``{row: (local_ppm, mask)}`` (module docstring)."""
    brain = gre.mask
    settings = PhaseChainSettings(
        b0_tesla=gre.b0_tesla, b0_dir=gre.b0_dir, pdf_max_iter=pdf_iter, background=background
    )
    method = settings.background
    noisy = noisy_field_perfect_unwrap(gre, brain)
    noise = np.where(brain, noisy - gre.total_field_ppm, 0.0)
    true_mask = run_phase_chain(
        stored, gre.echo_times_s, gre.voxel_size, magnitude=gre.magnitude, mask=brain,
        settings=settings,
    )  # fmt: skip
    chain = run_phase_chain(
        stored, gre.echo_times_s, gre.voxel_size, magnitude=gre.magnitude, settings=settings
    )
    return {
        "local field": (gre.local_field_ppm, brain),
        "+ noise": (np.where(brain, gre.local_field_ppm + noise, 0.0), brain),
        "background removal, no noise": remove_background(
            method, gre.total_field_ppm, brain, gre, pdf_iter
        ),
        "+ background removal": remove_background(method, noisy, brain, gre, pdf_iter),
        "+ unwrapping": (true_mask.local_field_ppm, true_mask.local_mask),
        "+ mask = full chain": (chain.local_field_ppm, chain.local_mask),
    }


def step_contributions(
    gre, stored: np.ndarray, pdf_iter: int, background: str = DEFAULT_BACKGROUND
) -> dict:
    """Chi and local-field NRMSE of each :data:`STEP_ROWS` row, CFL2 and TKD, same voxels."""
    fields = step_fields(gre, stored, pdf_iter, background)
    score = gre.mask.copy()
    for _, mask in fields.values():
        score &= mask
    world = array_to_world_direction(gre.b0_dir, gre.affine)
    out = {}
    for row, (local, mask) in fields.items():
        out[row] = {"local_field": nrmse(local, gre.local_field_ppm, score, demean=True)}
        for method in ("cfl2", "tkd"):
            chi = local_field_inversion(method, gre, world, field=local, brain=mask)
            out[row][method] = nrmse(chi, gre.chi, score, demean=True)
    out["voxels"] = int(score.sum())
    return out


#: What ``fanet-cg`` shares with ``fanet`` in :func:`chi_comparison`.
LOCAL_PATH_KEYS = ("local_field", "local_field_noise", "local_field_s")


def chi_comparison(
    gre,
    stored: np.ndarray,
    pdf_iter: int,
    network=None,
    local_network=None,
    background: str = DEFAULT_BACKGROUND,
    window=None,
) -> dict:
    """Chi NRMSE of the full chain against the local-field path (noise-free and with the same
    acquisition noise), per inversion; FA-Net's chain runs ``network`` (with the sliding-window
    settings ``window``, default the product's), its local-field path ``local_network``
    (default: ``network``); the chain removes the background with ``background``."""
    local_network = local_network or network
    world = array_to_world_direction(gre.b0_dir, gre.affine)
    settings = PhaseChainSettings(
        b0_tesla=gre.b0_tesla, pdf_max_iter=pdf_iter, background=background
    )
    noisy = noisy_field_perfect_unwrap(gre, gre.mask)
    with_noise = np.where(gre.mask, gre.local_field_ppm + noisy - gre.total_field_ppm, 0.0)
    out = {}
    for method in ("cfl2", "tkd") + (("fanet", "fanet-cg") if network else ()):
        inversion = "fanet" if method.startswith("fanet") else method
        extra = {"model": network[0], "checkpoint": network[1]} if inversion == "fanet" else {}
        if inversion == "fanet" and window is not None:
            extra["window_settings"] = window
        if method == "fanet-cg":
            extra["data_consistency"] = "cg"
        start = time.perf_counter()
        chain = phase_to_susceptibility(
            stored, gre.echo_times_s, gre.affine, magnitude=gre.magnitude, b0_dir_world=world,
            chain_settings=settings, method=inversion, **extra,
        )  # fmt: skip
        chain_s = time.perf_counter() - start
        m = chain.chain.local_mask & gre.mask
        out[method] = {"chain": nrmse(chain.chi, gre.chi, m, demean=True), "chain_s": chain_s}
        out[method]["timings_s"] = chain.timings_s
        if method == "fanet-cg":  # the same local-field path as "fanet", in the same voxels
            out[method].update({k: out["fanet"][k] for k in LOCAL_PATH_KEYS})
            continue
        start = time.perf_counter()
        direct = local_field_inversion(method, gre, world, local_network)
        out[method]["local_field_s"] = time.perf_counter() - start
        noisy_chi = local_field_inversion(method, gre, world, local_network, field=with_noise)
        out[method]["local_field"] = nrmse(direct, gre.chi, m, demean=True)
        out[method]["local_field_noise"] = nrmse(noisy_chi, gre.chi, m, demean=True)
    return out


def run_subject(
    seed: int,
    voxel: float,
    pdf_iter: int,
    params: GREParams,
    network=None,
    *,
    chi_only: bool = False,
    local_network=None,
    background: str = DEFAULT_BACKGROUND,
    window=None,
) -> dict:
    """All methods on one simulated subject (``chi_only``: only the chi comparison).

    FA-Net's chain runs ``network`` with the window settings ``window``, its local-field path
    ``local_network`` (default the same); the chi comparison and the steps use the background
    removal ``background``.
    """
    start = time.perf_counter()
    gre = simulate_gre_phase(simulate_qsm_subject(seed, voxel, noise=False), seed, params=params)
    sim_s = time.perf_counter() - start
    stored = store_phase_as_integers(gre.phase)
    truth, brain = gre.local_field_ppm, gre.mask
    out = {
        "seed": seed,
        "shape": list(brain.shape),
        "simulation_s": sim_s,
        "local_field_std_ppm": float(truth[brain].std()),
        "background_range_ppm": float(np.ptp(gre.background_field_ppm[brain])),
        "background": background,
        "chi": chi_comparison(gre, stored, pdf_iter, network, local_network, background, window),
    }
    if chi_only:
        return out
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
    for name in ("vsharp", "pdf", "lbv"):
        start = time.perf_counter()
        local, local_mask = remove_background(name, gre.total_field_ppm, brain, gre, pdf_iter)
        oracle[name] = {
            "nrmse": nrmse(local, truth, local_mask),
            "seconds": time.perf_counter() - start,
        }
    return {
        **out,
        "methods": rows,
        "oracle": oracle,
        "steps": step_contributions(gre, stored, pdf_iter, background),
    }


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def summarise(subjects: list[dict]) -> str:
    """Markdown tables of accuracy and timings (only the chi table for ``--chi-only`` runs)."""
    if "methods" not in subjects[0]:
        return "\n".join([*chi_table(subjects), "", subjects_line(subjects)])
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
    for name in ("vsharp", "pdf", "lbv"):
        rows = [s["oracle"][name] for s in subjects]
        lines.append(
            f"| {name} | {_mean_sd([r['nrmse'] for r in rows])} | "
            f"{statistics.mean(r['seconds'] for r in rows):.2f} |"
        )
    lines += ["", *chi_table(subjects)]
    lines += [
        "",
        "| step (default chain, one ingredient at a time) | local field NRMSE (%) | "
        "chi NRMSE CFL2 (%) | chi NRMSE TKD (%) |",
        "|---|---|---|---|",
    ]
    for row in STEP_ROWS:
        rows = [s["steps"][row] for s in subjects]
        lines.append(
            f"| {row} | {_mean_sd([r['local_field'] for r in rows])} | "
            f"{_mean_sd([r['cfl2'] for r in rows])} | {_mean_sd([r['tkd'] for r in rows])} |"
        )
    lines += ["", subjects_line(subjects)]
    return "\n".join(lines)


def chi_table(subjects: list[dict]) -> list[str]:
    """Lines of the chi table: full chain against the local-field path, per inversion."""
    lines = [
        "| inversion | chi NRMSE full chain (%) | chi NRMSE local-field path (%) | "
        "local-field path + same noise (%) | chain total (s) | inversion (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name in subjects[0]["chi"]:
        rows = [s["chi"][name] for s in subjects]
        lines.append(
            f"| {name} | {_mean_sd([r['chain'] for r in rows])} | "
            f"{_mean_sd([r['local_field'] for r in rows])} | "
            f"{_mean_sd([r['local_field_noise'] for r in rows])} | "
            f"{statistics.mean(r['chain_s'] for r in rows):.2f} | "
            f"{statistics.mean(r['timings_s']['inversion'] for r in rows):.2f} |"
        )
    return lines


def subjects_line(subjects: list[dict]) -> str:
    """The line describing the subjects: seeds, grid, field strengths."""
    stds = [s["local_field_std_ppm"] for s in subjects]
    ranges = [s["background_range_ppm"] for s in subjects]
    return (
        f"subjects: seeds {[s['seed'] for s in subjects]}, grid {subjects[0]['shape']}; "
        f"true local field std {statistics.mean(stds):.4f} ppm, background range in the brain "
        f"{statistics.mean(ranges):.2f} ppm"
    )


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
        "--first-seed", type=int, default=FIRST_SEED,
        help=f"first subject seed (default {FIRST_SEED}, the test split; 10000: validation)",
    )  # fmt: skip
    parser.add_argument(
        "--fanet",
        action="store_true",
        help="also compare chi with FA-Net (--model and --local-model)",
    )
    parser.add_argument(
        "--model", default=QSM.default_model_for(phase=True), metavar="NAME_OR_PATH",
        help="with --fanet: the network of the full chain (a shipped model's name or a "
        f"checkpoint file; default {QSM.default_model_for(phase=True)}, as qsm --phase runs)",
    )  # fmt: skip
    parser.add_argument(
        "--local-model", default=QSM.default_model, metavar="NAME_OR_PATH",
        help="with --fanet: the network of the local-field path (default "
        f"{QSM.default_model}, as qsm --field runs)",
    )  # fmt: skip
    parser.add_argument(
        "--background", choices=("vsharp", "pdf", "lbv"), default=DEFAULT_BACKGROUND,
        help="background removal of the chain in the chi comparison and the steps (default "
        f"{DEFAULT_BACKGROUND}, as qsm --phase runs)",
    )  # fmt: skip
    parser.add_argument(
        "--tile", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
        help="with --fanet: the chain network's sliding-window tile in voxels (default the "
        "product's)",
    )  # fmt: skip
    parser.add_argument(
        "--chi-only", action="store_true",
        help="only the chi table (skip the per-method field rows, the oracle and the steps)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.first_seed < 0:
        parser.error(f"--first-seed: expected a non-negative integer, got {args.first_seed}")
    params = GREParams() if args.snr is None else GREParams(snr=tuple(args.snr))
    window = None
    if args.tile is not None:
        from napari_fanet.engine.inference import WindowSettings

        try:
            window = WindowSettings(roi_size=tuple(args.tile))
        except ValueError as exc:
            parser.error(f"--tile: {exc}")
    network = local_network = None
    if args.fanet:
        from napari_fanet.engine.predict import load_model

        try:
            network = load_model(args.model)
        except (FileNotFoundError, ValueError) as exc:
            parser.error(f"--model: {exc}")
        try:
            local_network = load_model(args.local_model)
        except (FileNotFoundError, ValueError) as exc:
            parser.error(f"--local-model: {exc}")
    subjects = []
    for i in range(args.subjects):
        seed = args.first_seed + i
        subject = run_subject(
            seed, args.voxel, args.pdf_iter, params, network,
            chi_only=args.chi_only, local_network=local_network, background=args.background,
            window=window,
        )  # fmt: skip
        subjects.append(subject)
    print(summarise(subjects))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(subjects, handle, indent=2)
    return subjects


if __name__ == "__main__":
    main()
