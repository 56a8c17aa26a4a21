"""What keeping freed memory in the process buys: the command line with and without it.

``napari_fanet.engine.memory.retain_freed_memory`` raises glibc's trim and mmap thresholds at
the start of every ``napari-fanet`` command, so freed tensors' memory is reused instead of being
handed back to the kernel and faulted in again. This times the same commands in fresh processes
with ``NAPARI_FANET_RETAIN_MEMORY=0`` (glibc's defaults) and ``=1`` (the command line's default),
alternating the two so both see the same machine states, and checks that the results are the
same bit for bit:

- ``segment``: a 1 mm whole brain (182 x 218 x 182, ``benchmarks/cli_speed.py``'s simulated
  subject), the issue-12 speed target's command; the two lesion masks must be identical;
- ``train``: ``--steps`` optimiser steps of ``fanet-seg`` on two simulated 2 mm subjects, with
  the model cards' batch (2 patches of 64^3) and one thread; the two runs' final weight
  fingerprints must be equal;
- with ``--in-process``, the same segmentation as the napari plugin's job runs it: the core
  ``segment`` call in one process, inside ``retained_during`` (with ``=0`` it keeps glibc's
  defaults), also reporting the memory still resident after the job, when the plugin has
  given the kept memory back.

Usage::

    PYTHONPATH=src python benchmarks/memory_retention.py                 # 3 rounds
    PYTHONPATH=src python benchmarks/memory_retention.py --rounds 1 --steps 10 --skip-segment
    PYTHONPATH=src python benchmarks/memory_retention.py --skip-train --in-process

It prints a markdown table (median seconds per setting and their ratio) and writes it with a
JSON dump to ``--out/memory_retention.{md,json}`` (default ``benchmarks/out/``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cli_speed  # benchmarks/ is on sys.path when run as a script
from napari_fanet.engine.memory import ENV_VAR

SETTINGS = {"glibc defaults (0)": "0", "freed memory kept (1)": "1"}


def time_train(folder: Path, steps: int, setting: str) -> tuple[float, float]:
    """Seconds of one ``napari-fanet train`` process and its final weight fingerprint."""
    cmd = [
        sys.executable, "-m", "napari_fanet", "train", "--model", "fanet-seg",
        "--simulate", "2", "--family", "randomised", "--voxel-size", "2", "2", "2",
        "--steps", str(steps), "--batch-size", "2", "--patch-size", "64", "64", "64",
        "--val-every", "0", "--seed", "0", "--device", "cpu", "--threads", "1",
        "--out", str(folder),
    ]  # fmt: skip
    env = {**os.environ, ENV_VAR: setting, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - t0
    events = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    done = [e for e in events if e.get("event") == "done"]
    if not done:
        raise RuntimeError(f"train wrote no 'done' event to {folder / 'log.jsonl'}")
    return seconds, done[-1]["weights_fingerprint"]


#: A napari job's segmentation, in a child process: prints seconds and resident MiB after it.
JOB_SCRIPT = """
import resource, sys, time
import numpy as np
import torch
from napari_fanet.engine import memory
from napari_fanet.engine.predict import load_model, segment
from napari_fanet.io.nifti import load_volume
torch.set_num_threads(int(sys.argv[2]))
model, checkpoint = load_model("fanet-seg")
flair = load_volume(sys.argv[1] + "/flair.nii.gz")
with memory.retained_during(default=True):
    start = time.perf_counter()
    mask = segment(model, checkpoint, None, None, flair).outputs["mask"]
    seconds = time.perf_counter() - start
np.save(sys.argv[3], mask)
with open("/proc/self/statm") as f:
    resident = int(f.read().split()[1]) * resource.getpagesize() / 2**20
print(seconds, resident)
"""


def time_job(subject: Path, threads: int, setting: str, mask_file: Path) -> tuple[float, float]:
    """Seconds of one in-process segmentation as a plugin job, and resident MiB after it."""
    env = {**os.environ, ENV_VAR: setting, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", JOB_SCRIPT, str(subject), str(threads), str(mask_file)],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    seconds, resident = (float(v) for v in out.stdout.split()[-2:])
    return seconds, resident


def lesion_mask(folder: Path) -> np.ndarray:
    """The lesion mask ``segment`` wrote to ``folder``."""
    import nibabel as nib

    path = folder / "lesion_mask.nii.gz"
    if not path.is_file():
        raise RuntimeError(f"segment wrote no lesion mask to {folder}")
    return np.asarray(nib.load(path).dataobj)


def run(
    rounds: int, steps: int, threads: int, segment: bool, train: bool, job: bool = False
) -> dict:
    """Seconds per command and setting, alternating settings within each round."""
    times: dict[str, dict[str, list[float]]] = {}
    resident: dict[str, list[float]] = {}
    checks: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subject = cli_speed.simulate_subject(tmp / "data") if segment or job else None
        for r in range(rounds):
            results: dict[tuple[str, str], object] = {}
            for name, setting in SETTINGS.items():
                if segment:
                    out = tmp / f"segment-{r}-{setting}"
                    seconds = cli_speed.time_segment(
                        subject, "fanet-seg", "flair", threads, out, extra_env={ENV_VAR: setting}
                    )
                    times.setdefault("segment (FLAIR, 1 mm brain)", {}).setdefault(
                        name, []
                    ).append(seconds)
                    results["segment", setting] = lesion_mask(out)
                if train:
                    seconds, fingerprint = time_train(tmp / f"train-{r}-{setting}", steps, setting)
                    times.setdefault(f"train ({steps} steps, 1 thread)", {}).setdefault(
                        name, []
                    ).append(seconds)
                    results["train", setting] = fingerprint
                if job:
                    mask_file = tmp / f"job-{r}-{setting}.npy"
                    seconds, mib = time_job(subject, threads, setting, mask_file)
                    times.setdefault("segment as a napari job (one process)", {}).setdefault(
                        name, []
                    ).append(seconds)
                    resident.setdefault(name, []).append(mib)
                    results["job", setting] = np.load(mask_file)
            # every round must give the same outputs with both settings
            if segment:
                same = np.array_equal(results["segment", "0"], results["segment", "1"])
                name = "segment: identical lesion masks"
                checks[name] = checks.get(name, True) and same
            if train:
                same = results["train", "0"] == results["train", "1"]
                name = "train: identical final weights"
                checks[name] = checks.get(name, True) and same
            if job:
                same = np.array_equal(results["job", "0"], results["job", "1"])
                name = "napari job: identical lesion masks"
                checks[name] = checks.get(name, True) and same
    return {
        "times": times,
        "resident_mib": resident,
        "checks": checks,
        "load": os.getloadavg()[0],
    }


def table(result: dict, threads: int) -> str:
    """Markdown table of :func:`run`'s result."""
    off, on = SETTINGS
    lines = [
        f"## Keeping freed memory in the process (`{ENV_VAR}`), CPU, segment with {threads} "
        "threads",
        "",
        f"| command | {off}: median s | {on}: median s | runs (s), 0 / 1 | time with 1 / "
        "time with 0 |",
        "|---|---|---|---|---|",
    ]
    for command, per_setting in result["times"].items():
        a, b = per_setting[off], per_setting[on]
        runs = ", ".join(f"{x:.1f}" for x in a) + " / " + ", ".join(f"{x:.1f}" for x in b)
        lines.append(
            f"| {command} | {statistics.median(a):.1f} | {statistics.median(b):.1f} | {runs} "
            f"| {statistics.median(b) / statistics.median(a):.3f} |"
        )
    for name, mib in result.get("resident_mib", {}).items():
        lines += [
            "",
            f"Resident after the napari job ({name}): median {statistics.median(mib):.0f} MiB "
            f"({', '.join(f'{m:.0f}' for m in mib)}).",
        ]
    lines += ["", f"Load average at the end: {result['load']:.2f}."]
    lines += [f"- {name}: {'yes' if ok else 'NO'}" for name, ok in result["checks"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, time both settings, print and write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--steps", type=int, default=40, help="training steps per run (default 40)")
    p.add_argument("--threads", type=int, default=2, help="segment's threads (default 2)")
    p.add_argument("--skip-segment", action="store_true", help="time training only")
    p.add_argument("--skip-train", action="store_true", help="time segment only")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="also time the segmentation as the napari plugin's job runs it (one process)",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        p.error(f"--rounds and --steps must be at least 1, got {args.rounds} and {args.steps}")
    if args.skip_segment and args.skip_train and not args.in_process:
        p.error("--skip-segment and --skip-train leave nothing to time without --in-process")
    result = run(
        args.rounds,
        args.steps,
        args.threads,
        not args.skip_segment,
        not args.skip_train,
        args.in_process,
    )
    cli_speed.report(args.out, "memory_retention", table(result, args.threads), result)
    return result


if __name__ == "__main__":
    main()
