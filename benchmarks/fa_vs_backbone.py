"""FA-Net against its plain backbone over several training seeds, at a small training budget.

The shipped models were each trained once, so their difference cannot be credited to folded
attention. This script trains each of two registry models once per seed with one recipe, exports
``best.pt``, evaluates all of them on the same held-out simulated subjects with
``napari-fanet evaluate``, and prints per-seed means, the mean over seeds and the paired
(same seed, same test subject) differences. Runs already finished in ``--out`` are reused, so an
interrupted study resumes.

    PYTHONPATH=src python benchmarks/fa_vs_backbone.py --task qsm --seeds 0 1 2 --steps 600 \\
        --patch 48 --parallel 2 --out benchmarks/out/fa_vs_backbone_qsm

``--loo SEED WITH.json WITHOUT.json`` (repeated, one per seed) instead reports a leave-one-out
ablation on real patients from two ``napari-fanet evaluate --data`` reports per seed: the runs
with the attention under test and the same recipe without it (see
``benchmarks/results/fa_ablation_loo.md``). Nothing is trained or evaluated then.
``--simulated SEED evaluation.json WITH WITHOUT`` (repeated) does the same for simulated test
subjects, from one ``napari-fanet evaluate --task ms`` report that scored both arms of every seed
(``benchmarks/results/fa_ablation_sim.md``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = {"qsm": ("fanet-qsm", "qsmnet"), "ms": ("fanet-seg", "unet-seg")}
METRICS = {"qsm": ("nrmse", "hfen", "ssim"), "ms": ("dice", "lf1")}
LOWER_IS_BETTER = {"nrmse", "hfen"}


def train_command(args: argparse.Namespace, model: str, seed: int, out: Path) -> list[str]:
    """The ``napari-fanet train`` command of one (model, seed) run."""
    return [
        sys.executable, "-m", "napari_fanet", "train", "--model", model,
        "--simulate", str(args.subjects), "--simulate-val", "2", "--steps", str(args.steps),
        "--batch-size", "2", "--patch-size", *[str(args.patch)] * 3,
        "--val-every", str(args.steps // 2), "--seed", str(seed), "--device", args.device,
        "--threads", str(args.threads), "--out", str(out),
    ]  # fmt: skip


def train_all(args: argparse.Namespace) -> dict[tuple[str, int], Path]:
    """Train every (model, seed) not yet done, ``--parallel`` at a time; return best.pt paths."""
    jobs = [(m, s) for s in args.seeds for m in MODELS[args.task]]
    todo = [j for j in jobs if not (args.out / f"{j[0]}-s{j[1]}" / "best.pt").is_file()]
    running: list[tuple[tuple[str, int], subprocess.Popen, float]] = []
    while todo or running:
        while todo and len(running) < args.parallel:
            model, seed = todo.pop(0)
            run_dir = args.out / f"{model}-s{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            log = (run_dir / "train-output.log").open("w")
            cmd = train_command(args, model, seed, run_dir)
            if (run_dir / "last.pt").is_file():
                cmd.append("--resume")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            running.append(((model, seed), proc, time.monotonic()))
            print(f"started {model} seed {seed}", file=sys.stderr)
        time.sleep(5)
        for item in list(running):
            (model, seed), proc, start = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    raise SystemExit(f"{model} seed {seed} failed; see its train-output.log")
                print(f"{model} seed {seed}: {time.monotonic() - start:.0f} s", file=sys.stderr)
    return {j: args.out / f"{j[0]}-s{j[1]}" / "best.pt" for j in jobs}


def evaluate(args: argparse.Namespace, checkpoints: dict[tuple[str, int], Path]) -> dict:
    """Evaluate every checkpoint (file names ``MODEL-sSEED.pt``) in one evaluate run."""
    models = args.out / "models"
    models.mkdir(exist_ok=True)
    paths = []
    for (model, seed), best in checkpoints.items():
        target = models / f"{model}-s{seed}.pt"
        subprocess.run(
            [sys.executable, "scripts/export_weights.py", str(best), str(target)], check=True
        )
        paths.append(str(target))
    subprocess.run(
        [sys.executable, "-m", "napari_fanet", "evaluate", "--task", args.task, "--models",
         *paths, "--n-test", str(args.n_test), "--n-val", "2", "--device", args.device,
         "--out", str(args.out / "evaluation")],
        check=True,
    )  # fmt: skip
    return json.loads((args.out / "evaluation" / "evaluation.json").read_text())


def report(args: argparse.Namespace, result: dict) -> str:
    """Markdown: per-seed means, mean over seeds, paired differences FA - backbone."""
    fa, base = MODELS[args.task]
    rows = result["per_subject"]
    lines = [
        f"## FA vs backbone, {args.task}: {len(args.seeds)} training seeds, {args.steps} steps, "
        f"patch {args.patch}^3, {args.subjects} training subjects, "
        f"{args.n_test} test subjects",
        "",
        "| metric | seed | " + f"{fa} | {base} | {fa} - {base} | better |",
        "|---|---|---|---|---|---|",
    ]
    for metric in METRICS[args.task]:
        diffs = []
        for seed in args.seeds:
            a = [r[metric] for r in rows[f"{fa}-s{seed}"]]
            b = [r[metric] for r in rows[f"{base}-s{seed}"]]
            d = statistics.mean(x - y for x, y in zip(a, b, strict=True))
            diffs.append(d)
            better = fa if (d < 0) == (metric in LOWER_IS_BETTER) else base
            better = "tie" if d == 0 else better
            lines.append(
                f"| {metric} | {seed} | {statistics.mean(a):.3f} | {statistics.mean(b):.3f} | "
                f"{d:+.3f} | {better} |"
            )
        spread = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
        lines.append(
            f"| {metric} | mean over seeds | | | {statistics.mean(diffs):+.3f} "
            f"(sd {spread:.3f}) | |"
        )
    classical = [m for m in rows if not m.startswith((fa, base))]
    for m in classical:
        means = ", ".join(
            f"{k} {statistics.mean(r[k] for r in rows[m]):.3f}" for k in METRICS[args.task]
        )
        lines.append(f"\nClassical {m} on the same subjects: {means}")
    return "\n".join(lines)


def _loo_means(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """``{(mode, subject): {"dice", "lf1"}}`` of the network rows of an evaluate --data report."""
    try:
        rows = json.loads(Path(path).read_text())["per_subject"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(
            f"--loo: expected an 'evaluate --data' evaluation.json with per_subject rows, "
            f"got {path} ({exc})"
        ) from exc
    return {
        (r["mode"], r["subject"]): {"dice": r["dice"], "lf1": r["lf1"]}
        for r in rows
        if "threshold" not in r["method"].lower()
    }


def _simulated_means(path: Path, method: str) -> dict[tuple[str, str], dict[str, float]]:
    """``{("simulated", case): {"dice", "lf1"}}`` of one method of an ``evaluate`` report."""
    try:
        report = json.loads(Path(path).read_text())
        rows, cases = report["per_subject"][method], report["test_cases"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(
            f"--simulated: expected an 'evaluate --task ms' evaluation.json with a method "
            f"{method!r}, got {path} ({type(exc).__name__}: {exc})"
        ) from exc
    return {
        ("simulated", case): {"dice": r["dice"], "lf1": r["lf1"]}
        for case, r in zip(cases, rows, strict=True)
    }


def paired_report(title: str, seeds: list[tuple[int, dict, dict]]) -> str:
    """Markdown: per seed and input mode, mean Dice and L-F1 with and without, and the paired
    (same seed, mode and case) differences, then the mean and sd over seeds.

    ``seeds``: ``(seed, with_means, without_means)``, each means ``{(mode, case): {"dice",
    "lf1"}}``.
    """
    lines = [
        f"## {title}: {len(seeds)} seed(s)",
        "",
        "| mode | seed | Dice with | Dice without | difference | L-F1 with | L-F1 without "
        "| difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    per_seed: dict[str, dict[str, list[float]]] = {}
    for seed, with_, without in seeds:
        if set(with_) != set(without) or not with_:
            raise SystemExit(
                f"seed {seed}: the two reports must score the same modes and cases, "
                f"got {sorted(with_)} and {sorted(without)}"
            )
        for mode in dict.fromkeys(m for m, _ in with_):
            keys = [k for k in with_ if k[0] == mode]
            cells = []
            for metric in ("dice", "lf1"):
                a = statistics.mean(with_[k][metric] for k in keys)
                b = statistics.mean(without[k][metric] for k in keys)
                per_seed.setdefault(mode, {}).setdefault(metric, []).append(a - b)
                cells += [f"{a:.3f}", f"{b:.3f}", f"{a - b:+.3f}"]
            lines.append(f"| {mode} | {seed} | " + " | ".join(cells) + " |")
    for mode, metrics in per_seed.items():
        cells = []
        for metric in ("dice", "lf1"):
            d = metrics[metric]
            spread = f" (sd {statistics.stdev(d):.3f})" if len(d) > 1 else ""
            cells += ["", "", f"{statistics.mean(d):+.3f}{spread}"]
        lines.append(f"| {mode} | mean over seeds | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loo_report(pairs: list[tuple[int, Path, Path]]) -> str:
    """The leave-one-out ablation on the real patients from ``evaluate --data`` reports."""
    seeds = [(seed, _loo_means(a), _loo_means(b)) for seed, a, b in pairs]
    return paired_report("Leave-one-out ablation on the real patients", seeds)


def simulated_report(rows: list[tuple[int, Path, str, str]]) -> str:
    """The ablation on simulated test subjects: ``(seed, evaluation.json, with, without)``."""
    seeds = [
        (seed, _simulated_means(path, a), _simulated_means(path, b)) for seed, path, a, b in rows
    ]
    return paired_report("Ablation on the simulated test subjects", seeds)


def main() -> None:
    """Train, evaluate, report (or, with ``--loo``, report a real-patient ablation)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=tuple(MODELS), default="qsm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--subjects", type=int, default=8, help="simulated training subjects")
    parser.add_argument("--n-test", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/fa_vs_backbone"))
    parser.add_argument(
        "--loo",
        nargs=3,
        action="append",
        metavar=("SEED", "WITH_JSON", "WITHOUT_JSON"),
        help="report a leave-one-out ablation from evaluate --data reports (repeat per seed)",
    )
    parser.add_argument(
        "--simulated",
        nargs=4,
        action="append",
        metavar=("SEED", "JSON", "WITH", "WITHOUT"),
        help="report an ablation on simulated test subjects from one evaluate report: the "
        "methods WITH and WITHOUT of that seed (repeat per seed)",
    )
    args = parser.parse_args()
    if args.simulated:
        try:
            rows = [(int(seed), Path(p), a, b) for seed, p, a, b in args.simulated]
        except ValueError as exc:
            parser.error(f"--simulated: expected SEED (an integer) JSON WITH WITHOUT ({exc})")
        print(simulated_report(rows))
        return
    if args.loo:
        try:
            pairs = [(int(seed), Path(a), Path(b)) for seed, a, b in args.loo]
        except ValueError as exc:
            parser.error(f"--loo: expected SEED (an integer) WITH_JSON WITHOUT_JSON ({exc})")
        print(loo_report(pairs))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    checkpoints = train_all(args)
    text = report(args, evaluate(args, checkpoints))
    text += f"\n\nTotal wall time {time.monotonic() - start:.0f} s (training skipped if reused)."
    print(text)
    (args.out / "report.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
