"""Generate ``sample_data/`` (one MS and one QSM case) and measure the classical baselines on it.

Usage (from the repository root; about two minutes on a laptop CPU)::

    python scripts/make_sample_data.py            # writes sample_data/{ms,qsm}/ and the tables

What it does:

1. Simulates the sample cases, exactly as::

       napari-fanet simulate --task ms --subjects 1 --seed 90000 --out sample_data/ms \
           --voxel-size 2 2 2 --overwrite
       napari-fanet simulate --task qsm --subjects 1 --seed 90000 --out sample_data/qsm \
           --voxel-size 2 2 2 --overwrite

   (90000 is the first seed of the "sample" split; training, validation and test subjects use
   seeds from 0, 10000 and 20000, so the sample cases are never trained or tuned on).
2. QSM: tunes the TKD threshold and the CFL2 ``lam`` on ONE validation subject (seed 10000,
   lowest NRMSE, not demeaned) and reports :func:`napari_fanet.metrics.qsm_metrics` of both on
   the sample case (read back from its NIfTI files and meta.json) and on 5 test subjects
   (seeds 20000-20004).
3. MS: tunes the FLAIR threshold of :mod:`napari_fanet.baselines.lesion_threshold` on 5 validation
   subjects (seeds 10000-10004, best mean Dice) and reports Dice, LTPR, LPPV and L-F1 on the
   sample case and on 10 test subjects (seeds 20000-20009). For reference it repeats this with
   the simulator's ground-truth white-matter mask in place of the T1-derived one (labelled: not
   available on real data).
4. Prints the tables, writes them to ``sample_data/baselines.json`` and replaces the block
   between the ``baselines:start``/``baselines:end`` markers of ``sample_data/README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from napari_fanet.baselines.dipole_inversion import cfl2, tkd, tune_parameter  # noqa: E402
from napari_fanet.baselines.lesion_threshold import (  # noqa: E402
    flair_threshold_segment,
    flair_zscore,
    tune_flair_threshold,
    white_matter_mask,
)
from napari_fanet.io.nifti import load_volume  # noqa: E402
from napari_fanet.metrics import label_lesions, qsm_metrics, segmentation_metrics  # noqa: E402
from napari_fanet.simulation import (  # noqa: E402
    simulate_dataset,
    simulate_ms_subject,
    simulate_qsm_subject,
    split_seed,
)

VOXEL_SIZE = (2.0, 2.0, 2.0)
TKD_THRESHOLDS = [round(float(t), 3) for t in np.arange(0.05, 0.401, 0.025)]
CFL2_LAMS = [float(f"{v:.3g}") for v in np.logspace(-4, 0, 17)]
N_MS_VAL, N_MS_TEST, N_QSM_TEST = 5, 10, 5
QSM_KEYS = ("nrmse", "nrmse_demeaned", "hfen", "ssim", "xsim", "psnr")
SEG_KEYS = ("dice", "ltpr", "lppv", "lf1")
MARK_START, MARK_END = "<!-- baselines:start -->", "<!-- baselines:end -->"


def simulate_samples(out: Path) -> dict[str, Path]:
    """Write sample_data/ms and sample_data/qsm; returns their subject folders."""
    folders = {}
    for task in ("ms", "qsm"):
        simulate_dataset(
            out / task, task, 1, split_seed("sample"), voxel_size=VOXEL_SIZE, overwrite=True
        )
        folders[task] = out / task / "sub-0000"
    return folders


def _mean_sd(rows: list[dict], keys: tuple[str, ...]) -> dict[str, list[float]]:
    return {
        k: [float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows], ddof=1))]
        for k in keys
    }


def qsm_baselines(folder: Path) -> dict:
    """Tune TKD and CFL2 on a validation subject; metrics on the sample case and test subjects."""
    val = simulate_qsm_subject(split_seed("val"), VOXEL_SIZE)
    tuned = {}
    for method, candidates in (("tkd", TKD_THRESHOLDS), ("cfl2", CFL2_LAMS)):
        best, scores = tune_parameter(
            method, val.local_field, val.chi, val.mask, val.voxel_size, val.b0_dir, candidates
        )
        tuned[method] = {"value": best, "val_nrmse": scores[best]}

    def run(field, mask, vox, b0) -> dict[str, np.ndarray]:
        return {
            "tkd": tkd(field, vox, b0, threshold=tuned["tkd"]["value"], mask=mask),
            "cfl2": cfl2(field, vox, b0, lam=tuned["cfl2"]["value"], mask=mask),
        }

    field = load_volume(folder / "local_field.nii.gz")
    chi = load_volume(folder / "chi.nii.gz").data
    mask = load_volume(folder / "brain_mask.nii.gz").data > 0.5
    b0 = json.loads((folder / "meta.json").read_text())["b0_dir"]
    sample = {
        m: {k: float(v) for k, v in qsm_metrics(pred, chi, mask).items()}
        for m, pred in run(field.data, mask, field.voxel_size, b0).items()
    }
    rows: dict[str, list[dict]] = {"tkd": [], "cfl2": []}
    for i in range(N_QSM_TEST):
        s = simulate_qsm_subject(split_seed("test", i), VOXEL_SIZE)
        for m, pred in run(s.local_field, s.mask, s.voxel_size, s.b0_dir).items():
            rows[m].append(qsm_metrics(pred, s.chi, s.mask))
    return {
        "validation_seed": split_seed("val"),
        "test_seeds": [split_seed("test", i) for i in range(N_QSM_TEST)],
        "tuned": tuned,
        "sample": sample,
        "test_mean_sd": {m: _mean_sd(r, QSM_KEYS) for m, r in rows.items()},
    }


def _case(s) -> dict:
    return {
        "flair": s.flair,
        "t1": s.t1,
        "brain_mask": s.brain_mask,
        "lesion_mask": s.lesion_mask,
        "voxel_size": s.voxel_size,
    }


def _tune_with_true_wm(subjects, candidates) -> float:
    """Threshold with the best mean Dice when the ground-truth WM mask replaces the T1 one."""
    zs = [
        flair_zscore(s.flair, s.brain_mask, s.wm_mask, voxel_size=s.voxel_size) for s in subjects
    ]
    scores = []
    for t in candidates:
        dice = [
            segmentation_metrics(label_lesions(z > t, min_size=3)[0] > 0, s.lesion_mask)["dice"]
            for z, s in zip(zs, subjects, strict=True)
        ]
        scores.append(np.mean(dice))
    return float(candidates[int(np.argmax(scores))])


def ms_baselines(folder: Path) -> dict:
    """Tune the FLAIR threshold on validation subjects; metrics on the sample and test cases."""
    val = [simulate_ms_subject(split_seed("val", i), VOXEL_SIZE) for i in range(N_MS_VAL)]
    candidates = np.arange(1.5, 8.01, 0.25)
    best, scores = tune_flair_threshold([_case(s) for s in val], candidates)
    best_true_wm = _tune_with_true_wm(val, candidates)

    def segment(t1, flair, brain, vox, wm_true=None) -> dict[str, np.ndarray]:
        wm = white_matter_mask(t1, brain, voxel_size=vox)
        out = {"t1_wm": flair_threshold_segment(flair, brain, wm, best, voxel_size=vox)}
        if wm_true is not None:
            out["true_wm"] = flair_threshold_segment(
                flair, brain, wm_true, best_true_wm, voxel_size=vox
            )
        return out

    vols = {
        k: load_volume(folder / f"{k}.nii.gz")
        for k in ("t1", "flair", "brain_mask", "lesion_mask", "wm_mask")
    }
    brain = vols["brain_mask"].data > 0.5
    gt = vols["lesion_mask"].data > 0.5
    preds = segment(
        vols["t1"].data,
        vols["flair"].data,
        brain,
        vols["flair"].voxel_size,
        vols["wm_mask"].data > 0.5,
    )
    sample = {
        k: {m: float(v) for m, v in segmentation_metrics(p, gt).items() if m in SEG_KEYS}
        | {"n_gt_lesions": int(segmentation_metrics(p, gt)["n_gt"])}
        for k, p in preds.items()
    }
    rows: dict[str, list[dict]] = {"t1_wm": [], "true_wm": []}
    for i in range(N_MS_TEST):
        s = simulate_ms_subject(split_seed("test", i), VOXEL_SIZE)
        for k, p in segment(s.t1, s.flair, s.brain_mask, s.voxel_size, s.wm_mask).items():
            rows[k].append(segmentation_metrics(p, s.lesion_mask))
    return {
        "validation_seeds": [split_seed("val", i) for i in range(N_MS_VAL)],
        "test_seeds": [split_seed("test", i) for i in range(N_MS_TEST)],
        "threshold": {"t1_wm": best, "true_wm": best_true_wm},
        "val_dice": {"t1_wm": scores[best]},
        "sample": sample,
        "test_mean_sd": {k: _mean_sd(r, SEG_KEYS) for k, r in rows.items()},
    }


def markdown(results: dict) -> str:
    """The two tables (and their conventions) as markdown."""
    q, m = results["qsm"], results["ms"]
    lines = [
        f"Measured by `python scripts/make_sample_data.py` (napari-fanet {results['version']}).",
        "",
        "**QSM, sample case `qsm/sub-0000`** (seed 90000). Parameters tuned on one validation "
        f"subject (seed {q['validation_seed']}, lowest NRMSE); test: mean +- sample sd over "
        f"seeds {q['test_seeds'][0]}-{q['test_seeds'][-1]}. NRMSE and HFEN in %, not demeaned "
        "unless labelled; SSIM inside the brain mask; XSIM with L = 1 ppm; PSNR in dB.",
        "",
        "| method | parameter | case | NRMSE | NRMSE (demeaned) | HFEN | SSIM | XSIM | PSNR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, pname in (("tkd", "threshold"), ("cfl2", "lam")):
        value = q["tuned"][method]["value"]
        s = q["sample"][method]
        lines.append(
            f"| {method.upper()} | {pname} = {value:g} | sample | "
            + " | ".join(
                f"{s[k]:.3f}" if k in ("ssim", "xsim") else f"{s[k]:.2f}" for k in QSM_KEYS
            )
            + " |"
        )
        t = q["test_mean_sd"][method]
        lines.append(
            f"| {method.upper()} | {pname} = {value:g} | test (n={len(q['test_seeds'])}) | "
            + " | ".join(
                f"{t[k][0]:.3f} +- {t[k][1]:.3f}"
                if k in ("ssim", "xsim")
                else f"{t[k][0]:.2f} +- {t[k][1]:.2f}"
                for k in QSM_KEYS
            )
            + " |"
        )
    lines += [
        "",
        "**MS, sample case `ms/sub-0000`** (seed 90000, "
        f"{m['sample']['t1_wm']['n_gt_lesions']} GT lesions). FLAIR threshold baseline of "
        "`napari_fanet.baselines.lesion_threshold` (homomorphic bias correction, robust z-score "
        "inside the T1 multi-Otsu WM mask dilated by 2 mm and hole-filled, components >= 3 "
        "voxels), "
        "threshold tuned for mean Dice on "
        f"validation seeds {m['validation_seeds'][0]}-{m['validation_seeds'][-1]}; test: mean "
        f"+- sample sd over seeds {m['test_seeds'][0]}-{m['test_seeds'][-1]}. Lesions are "
        "26-connected components of >= 3 voxels. The 'true WM mask' rows use the simulator's "
        "white-matter mask instead (a reference only: not available on real data).",
        "",
        "| baseline | threshold (z) | case | Dice | LTPR | LPPV | L-F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {"t1_wm": "FLAIR threshold (T1 WM mask)", "true_wm": "FLAIR threshold (true WM mask)"}
    for key, name in names.items():
        thr = m["threshold"][key]
        s = m["sample"][key]
        lines.append(
            f"| {name} | {thr:g} | sample | " + " | ".join(f"{s[k]:.3f}" for k in SEG_KEYS) + " |"
        )
        t = m["test_mean_sd"][key]
        lines.append(
            f"| {name} | {thr:g} | test (n={len(m['test_seeds'])}) | "
            + " | ".join(f"{t[k][0]:.3f} +- {t[k][1]:.3f}" for k in SEG_KEYS)
            + " |"
        )
    return "\n".join(lines)


def update_readme(readme: Path, block: str) -> bool:
    """Replace the text between the markers of ``readme``; False if the markers are missing."""
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(MARK_START) + ".*?" + re.escape(MARK_END), re.DOTALL)
    if not pattern.search(text):
        return False
    new = pattern.sub(lambda _: f"{MARK_START}\n{block}\n{MARK_END}", text)
    readme.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    from napari_fanet import __version__

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "sample_data")
    parser.add_argument(
        "--skip-baselines", action="store_true", help="only (re)generate the sample cases"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    folders = simulate_samples(args.out)
    sizes = {
        str(p.relative_to(args.out)): p.stat().st_size
        for p in sorted(args.out.glob("*/sub-0000/*"))
    }
    total = sum(sizes.values())
    print(f"sample cases written to {args.out} ({total / 1e6:.2f} MB in {len(sizes)} files)")
    if args.skip_baselines:
        return 0
    results = {
        "version": __version__,
        "voxel_size": list(VOXEL_SIZE),
        "qsm": qsm_baselines(folders["qsm"]),
        "ms": ms_baselines(folders["ms"]),
    }
    block = markdown(results)
    print()
    print(block)
    (args.out / "baselines.json").write_text(json.dumps(results, indent=2) + "\n")
    updated = update_readme(args.out / "README.md", block)
    print()
    print(
        f"wrote {args.out / 'baselines.json'}"
        + (" and updated README.md" if updated else " (README.md has no markers: not updated)")
        + f" in {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
