"""End-to-end time of ``napari-fanet segment`` on a 1 mm whole brain (182 x 218 x 182).

The issue's target: segmenting a 1 mm MNI-sized brain takes 60 s or less on 2 CPU cores, end to
end through the CLI (process start, reading, resampling, brain mask, sliding-window inference,
post-processing, lesion table and atomic writes). The volumes are a domain-randomised 1 mm
simulated subject (``napari-fanet simulate --task ms --family randomised --voxel-size 1 1 1``):
content does not change the time, the grid does.

Usage (also reached through ``benchmarks/inference.py --cli-segment``)::

    PYTHONPATH=src python benchmarks/cli_speed.py --models fanet-seg unet-seg --repeats 2
    PYTHONPATH=src python benchmarks/cli_speed.py --mirror off on   # both settings of --mirror
    PYTHONPATH=src python benchmarks/cli_speed.py --window-shifts 1 2   # two --window-shifts
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 60.0
MODES = {"flair": ("flair",), "t1-t2-flair": ("t1", "t2", "flair")}
#: ``--mirror`` settings: the CLI's default, or an explicit ``--mirror``/``--no-mirror``.
MIRROR_FLAGS = {"default": (), "on": ("--mirror",), "off": ("--no-mirror",)}


def simulate_subject(folder: Path) -> Path:
    """One randomised 1 mm MS subject (182 x 218 x 182 canonical grid) in ``folder``."""
    cmd = [
        sys.executable, "-m", "napari_fanet", "simulate", "--task", "ms", "--family",
        "randomised", "--voxel-size", "1", "1", "1", "--subjects", "1", "--seed", "20000",
        "--out", str(folder), "--no-progress",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return folder / "sub-0000"


def time_segment(
    subject: Path,
    model: str,
    mode: str,
    threads: int,
    out: Path,
    mirror: str = "default",
    extra_env: dict[str, str] | None = None,
    window_shifts: str = "default",
) -> float:
    """Wall-clock seconds of one ``napari-fanet segment`` process, start to exit.

    ``extra_env`` is added to the child's environment (``benchmarks/memory_retention.py``);
    ``window_shifts`` is given as ``--window-shifts`` unless it is ``"default"``.
    """
    shifts = () if window_shifts == "default" else ("--window-shifts", window_shifts)
    inputs = [a for m in MODES[mode] for a in (f"--{m}", str(subject / f"{m}.nii.gz"))]
    cmd = [
        sys.executable, "-m", "napari_fanet", "segment", *inputs, "--model", model,
        "--device", "cpu", "--out", str(out), "--no-progress", *MIRROR_FLAGS[mirror], *shifts,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.update(extra_env or {})
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def run(
    models: list[str],
    modes: list[str],
    threads: int,
    repeats: int,
    mirrors: tuple[str, ...] = ("default",),
    window_shifts: tuple[str, ...] = ("default",),
) -> list[dict]:
    """Median seconds per (model, mode, mirror, window shifts) and the target check, as rows."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subject = simulate_subject(Path(tmp) / "data")
        for model in models:
            for mode in modes:
                for mirror, shifts in [(m, w) for m in mirrors for w in window_shifts]:
                    times = [
                        time_segment(
                            subject, model, mode, threads, Path(tmp) / f"out-{i}", mirror,
                            window_shifts=shifts,
                        )
                        for i in range(repeats)
                    ]  # fmt: skip
                    median = sorted(times)[len(times) // 2]
                    rows.append(
                        {"model": model, "mode": mode, "mirror": mirror,
                         "window_shifts": shifts, "seconds": times, "median_s": median,
                         "pass": median <= TARGET_S, "load": os.getloadavg()[0]}
                    )  # fmt: skip
    return rows


def table(rows: list[dict], threads: int) -> str:
    """Markdown table of :func:`run`'s rows."""
    lines = [
        f"## `napari-fanet segment`, 1 mm whole brain 182 x 218 x 182, CPU, {threads} threads",
        "",
        f"Target: {TARGET_S:.0f} s or less end to end.",
        "",
        "| model | input mode | --mirror | --window-shifts | median s | runs (s) | load average "
        "| target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{t:.1f}" for t in r["seconds"])
        lines.append(
            f"| {r['model']} | {r['mode']} | {r.get('mirror', 'default')} "
            f"| {r.get('window_shifts', 'default')} | {r['median_s']:.1f} "
            f"| {runs} | {r['load']:.2f} | {'PASS' if r['pass'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse arguments, time, print the table and write ``--out/cli_segment.{md,json}``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["fanet-seg"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--mirror",
        nargs="+",
        default=["default"],
        choices=list(MIRROR_FLAGS),
        help="segment's --mirror setting(s) to time: default (none given), on, off",
    )
    p.add_argument(
        "--window-shifts",
        nargs="+",
        default=["default"],
        choices=["default", *(str(n) for n in range(1, 9))],
        help="segment's --window-shifts setting(s) to time: default (none given), 1 to 8",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = p.parse_args(argv)
    rows = run(
        args.models,
        args.modes,
        args.threads,
        args.repeats,
        tuple(args.mirror),
        tuple(args.window_shifts),
    )
    report(args.out, "cli_segment", table(rows, args.threads), rows)
    return rows


def report(out: Path, stem: str, text: str, data: object) -> None:
    """Print ``text`` and write it to ``out/STEM.md``, and ``data`` to ``out/STEM.json``."""
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
