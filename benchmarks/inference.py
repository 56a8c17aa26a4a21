"""Whole-volume inference cost of FA-Net against its plain backbone and the other attentions.

Every registered network of both tasks (segmentation: ``unet-seg`` backbone, ``fanet-seg``,
``da-seg``, ``rsa-seg``, ``sa-seg``, ``ag-seg``; QSM: ``qsmnet`` backbone, ``fanet-qsm``,
``da-qsm``, ``rsa-qsm``, ``sa-qsm``) predicts the same random volume (default 91 x 109 x 91, the
2 mm MNI grid; values do not change time or memory) in two modes:

- ``sliding``: the real engine, ``napari_fanet.engine.inference.predict_volume`` with its
  default windows (64^3, overlap 0.5, 2 windows per batch, Gaussian blending; AMP on CUDA);
- ``whole``: one forward pass on the whole volume (padded to multiples of 16 by the network)
  under ``torch.inference_mode``, where the bottleneck, and so the attention, is largest.

Each (model, mode) is measured in a fresh process: one warm-up, then peak memory of one pass
(CPU: the profiler's tensor allocations, ``attention_cost.cpu_peak_bytes``; CUDA:
``max_memory_allocated`` minus what was allocated before; input and weights excluded), then the
median time of at least 3 passes within ``--budget`` seconds (threads pinned). The attention
modules' own calls (bottleneck block, or AG's skip gates) are recorded during the warm-up and
replayed alone, which gives their share of the time without the network's run-to-run noise.
Ratios are against the plain backbone of the same task from the same invocation; the issue's
target, FA-Net within 10% of the backbone's time and memory, is checked for both tasks and modes.

Usage::

    PYTHONPATH=src python benchmarks/inference.py                  # CPU, 2 threads
    PYTHONPATH=src python benchmarks/inference.py --device cuda
    PYTHONPATH=src python benchmarks/inference.py --shape 32 32 32 --features 4 4 4 4 8 --budget 0
    PYTHONPATH=src python benchmarks/inference.py --cli-segment   # 1 mm brain via the CLI, 60 s

It prints markdown tables and writes them with a JSON dump to ``--out/inference_{device}.*``
(default ``benchmarks/out/``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from attention_cost import cpu_peak_bytes  # benchmarks/ is on sys.path when run as a script
from cpu_info import cpu_description
from napari_fanet.engine.inference import WindowSettings, count_windows, predict_volume
from napari_fanet.models import build_model

#: Task -> (plain backbone, FA-Net, other attention variants).
TASKS = {
    "segmentation": ("unet-seg", "fanet-seg", ("da-seg", "rsa-seg", "sa-seg", "ag-seg")),
    "qsm": ("qsmnet", "fanet-qsm", ("da-qsm", "rsa-qsm", "sa-qsm")),
}
ALL_MODELS = [n for backbone, fa, others in TASKS.values() for n in (backbone, fa, *others)]
MODES = ("sliding", "whole")
TARGET = 1.10  # FA-Net / backbone, time and memory
BUSY = 0.10  # others' share of the cores above which a timing is flagged
IDLE = 0.05  # others' share of the cores under which a child is started (--wait-idle)


def _attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    mods = [model.attention] if model.attention is not None else []
    return mods + list(model.gates.values())


def _contexts(device: str, amp: bool) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if device == "cuda" and amp:  # the same autocast as the engine
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        stack.enter_context(torch.autocast("cuda", dtype=dtype))
    return stack


class OtherLoad:
    """CPU time used by *other* processes while timing, as a fraction of all cores (Linux).

    Busy jiffies of the whole machine (``/proc/stat``) minus this process's own CPU time, over
    wall time x cores; ``None`` where ``/proc/stat`` is missing. Near 0 means the timing had
    the machine to itself.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        ticks = [int(v) for v in fields]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        return time.perf_counter(), busy, time.process_time()

    def stop(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        wall, busy, own = (e - s for e, s in zip(end, self.start, strict=True))
        return max(busy - own, 0.0) / (wall * (os.cpu_count() or 1))


def wait_for_idle(max_wait_s: float, probe_s: float = 2.0) -> float | None:
    """Wait (at most ``max_wait_s``) until other processes use under ``IDLE`` of the cores.

    Called by the parent between children, when nothing of ours runs. Returns the share last
    seen (``None`` where it cannot be read).
    """
    deadline = time.perf_counter() + max_wait_s
    while True:
        probe = OtherLoad()
        time.sleep(probe_s)
        share = probe.stop()
        if share is None or share < IDLE or time.perf_counter() > deadline:
            return share


def _median_time(fn, sync, budget_s: float, min_runs: int = 3, max_runs: int = 50) -> list:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (
        time.perf_counter() - start < budget_s and len(times) < max_runs
    ):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def measure(name: str, mode: str, args: argparse.Namespace) -> dict:
    """Time and peak memory of one whole-volume prediction, in this (fresh) process."""
    device = args.device
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = build_model(name, features=tuple(args.features)).to(device).eval()
    volume = torch.randn(1, model.in_channels, *args.shape)  # on the CPU, like a loaded image
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if mode == "sliding":
        settings = WindowSettings(
            roi_size=tuple(args.roi), overlap=args.overlap, sw_batch_size=args.sw_batch_size,
            device=device, amp=args.amp,
        )  # fmt: skip

        def run() -> None:
            predict_volume(model, volume, settings)
    else:
        x = volume.to(device)

        def run() -> None:
            with _contexts(device, args.amp):
                model(x)

    calls: list[tuple[torch.nn.Module, tuple]] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: calls.append((mod, inp)))
        for m in _attention_modules(model)
    ]
    run()  # warm-up (one-off workspaces are not the model's cost); records attention calls
    for h in hooks:
        h.remove()
    if device == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        sync()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = cpu_peak_bytes(run)
    others = OtherLoad()
    times = _median_time(run, sync, args.budget)
    row = {
        "others_cpu": others.stop(),
        "params": sum(p.numel() for p in model.parameters()),
        "median_ms": 1e3 * statistics.median(times),
        "times_ms": [1e3 * t for t in times],
        "peak_bytes": max(peak, 0),
        "attention_calls": len(calls),
        "attention_input_shapes": sorted({str(tuple(inp[0].shape)) for _, inp in calls}),
    }
    if calls:

        def replay() -> None:
            with _contexts(device, args.amp):
                for mod, inp in calls:
                    mod(*inp)

        replay()
        row["attention_ms"] = 1e3 * statistics.median(
            _median_time(replay, sync, min(1.0, args.budget), min_runs=5)
        )
    return row


def _child_args(args: argparse.Namespace) -> list[str]:
    out = [
        "--device", args.device, "--threads", str(args.threads), "--budget", str(args.budget),
        "--shape", *map(str, args.shape), "--features", *map(str, args.features),
        "--roi", *map(str, args.roi), "--overlap", str(args.overlap),
        "--sw-batch-size", str(args.sw_batch_size),
    ]  # fmt: skip
    return (
        out
        + (["--no-amp"] if not args.amp else [])
        + (["--flush-denormal"] if args.flush_denormal else [])
    )


def measure_in_child(name: str, mode: str, args: argparse.Namespace) -> dict:
    """Measure one (model, mode) in a fresh process."""
    cmd = [sys.executable, __file__, "--child", name, mode, *_child_args(args)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {out.returncode}: {tail[0][:160]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def pool(rows: list[dict]) -> dict:
    """Merge the measurements of one (model, mode) from ``--repeats`` fresh processes.

    Times are pooled (median of all runs); memory and others' CPU take the largest value; the
    attention replay takes the median of the processes' medians.
    """
    errors = [r["error"] for r in rows if "error" in r]
    if errors:
        return {"error": errors[0]}
    out = dict(rows[0])
    out["times_ms"] = [t for r in rows for t in r["times_ms"]]
    out["median_ms"] = statistics.median(out["times_ms"])
    out["process_medians_ms"] = [r["median_ms"] for r in rows]
    out["peak_bytes"] = max(r["peak_bytes"] for r in rows)
    if all(r["others_cpu"] is not None for r in rows):
        out["others_cpu"] = max(r["others_cpu"] for r in rows)
    if "attention_ms" in out:
        out["attention_ms"] = statistics.median(r["attention_ms"] for r in rows)
    return out


def selected(models: list[str] | None) -> list[str]:
    """``models`` plus the backbone of each task they belong to, in table order."""
    if not models:
        return list(ALL_MODELS)
    out = []
    for backbone, fa, others in TASKS.values():
        group = (backbone, fa, *others)
        if any(m in group for m in models):
            out += [backbone, *(n for n in group[1:] if n in models)]
    return out


def _ratio(row: dict, base: dict, key: str) -> float | None:
    if key in row and base.get(key):
        return row[key] / base[key]
    return None


def add_ratios(results: dict) -> None:
    """Time and memory ratios against the task's plain backbone, in place."""
    for mode_rows in results.values():
        for backbone, fa, others in TASKS.values():
            base = mode_rows.get(backbone, {})
            for name in (backbone, fa, *others):
                row = mode_rows.get(name)
                if row is not None:
                    row["time_ratio"] = _ratio(row, base, "median_ms")
                    row["memory_ratio"] = _ratio(row, base, "peak_bytes")
                    if "attention_ms" in row and base.get("median_ms"):
                        row["attention_share"] = row["attention_ms"] / base["median_ms"]


def _f(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(rows: dict[str, dict], names: tuple[str, ...]) -> str:
    lines = [
        "| model | params | median ms | runs | spread % | others' CPU % | peak MiB "
        "| time / backbone "
        "| memory / backbone | attention alone ms (calls) | attention / backbone time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in (n for n in names if n in rows):
        r = rows[name]
        if "error" in r:
            lines.append(f"| {name} | {r['error']} |" + " |" * 9)
            continue
        t = r["times_ms"]
        spread = 100 * (max(t) - min(t)) / r["median_ms"]
        others = r.get("others_cpu")
        attn = f"{r['attention_ms']:.2f} ({r['attention_calls']})" if "attention_ms" in r else "-"
        lines.append(
            f"| {name} | {r['params']:,} | {r['median_ms']:.1f} | {len(t)} | {spread:.0f} "
            f"| {_f(others and 100 * others, '.0f')} | {r['peak_bytes'] / 2**20:,.1f} "
            f"| {_f(r.get('time_ratio'), '.3f')} "
            f"| {_f(r.get('memory_ratio'), '.3f')} | {attn} "
            f"| {_f(r.get('attention_share'), '.2%')} |"
        )
    return "\n".join(lines)


def target_check(results: dict) -> tuple[list[dict], str]:
    """FA-Net / backbone against the 10% target, for each task and mode."""
    checks, lines = [], []
    for mode, rows in results.items():
        for task, (backbone, fa, _) in TASKS.items():
            if fa not in rows:
                continue
            r = rows[fa]
            time_r, mem_r = r.get("time_ratio"), r.get("memory_ratio")
            ok = time_r is not None and mem_r is not None and max(time_r, mem_r) <= TARGET
            est = r.get("attention_share")
            disturbed = any(
                (rows.get(n, {}).get("others_cpu") or 0) > BUSY for n in (backbone, fa)
            )
            checks.append(
                {"task": task, "mode": mode, "time_ratio": time_r, "memory_ratio": mem_r,
                 "attention_share": est, "pass": ok, "disturbed": disturbed}
            )  # fmt: skip
            lines.append(
                f"- {task}, {mode}: {fa}/{backbone} time {_f(time_r, '.3f')}, memory "
                f"{_f(mem_r, '.3f')} -> **{'PASS' if ok else 'FAIL'}** (FA module alone: "
                f"{_f(est, '.2%')} of the backbone's time)"
                + (" [timing disturbed by other processes]" if disturbed else "")
            )
    verdict = "PASS" if all(c["pass"] for c in checks) else "FAIL"
    if not checks:
        verdict = "n/a (no FA-Net measured)"
    head = f"Target: FA-Net adds at most {TARGET - 1:.0%} to the backbone's time and memory."
    return checks, "\n".join([head, "", *lines, "", f"Overall: **{verdict}**"])


def _load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--shape", type=int, nargs=3, default=[91, 109, 91])
    p.add_argument("--features", type=int, nargs=5, default=[8, 16, 32, 64, 128])
    p.add_argument("--roi", type=int, nargs=3, default=[64, 64, 64])
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--sw-batch-size", type=int, default=2)
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no autocast on CUDA")
    p.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget", type=float, default=10.0, help="seconds of timing per model")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=60.0,
        metavar="S",
        help=f"before each child, wait up to S s until other processes use < {100 * IDLE:.0f}%% "
        "of the cores (0: do not wait)",
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="fresh processes per model, run round robin"
    )
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument(
        "--models",
        nargs="+",
        choices=ALL_MODELS,
        help="measure only these (and their task's backbone); default: all",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    p.add_argument(
        "--cli-segment",
        action="store_true",
        help="instead: time `napari-fanet segment` end to end on a 1 mm whole brain "
        "(182 x 218 x 182) against the 60 s target (benchmarks/cli_speed.py; --models picks "
        "the segmentation models, default fanet-seg)",
    )
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cli_segment:
        import cli_speed  # benchmarks/ is on sys.path when run as a script

        models = [m for m in args.models or ["fanet-seg"] if m.endswith("-seg")]
        rows = cli_speed.run(models, list(cli_speed.MODES), args.threads, args.repeats)
        print(cli_speed.table(rows, args.threads))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cli_segment.json").write_text(json.dumps(rows, indent=1))
        return {"cli_segment": rows}
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(*args.child, args)))
        return {}
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but torch.cuda.is_available() is False")
    load_before = _load()
    names = selected(args.models)
    raw: dict[tuple[str, str], list[dict]] = {(m, n): [] for m in args.modes for n in names}
    for _ in range(args.repeats):  # round robin: every model sees the same machine states
        for mode, name in raw:
            if args.wait_idle > 0:
                wait_for_idle(args.wait_idle)
            raw[mode, name].append(measure_in_child(name, mode, args))
    results = {m: {n: pool(raw[m, n]) for n in names} for m in args.modes}
    add_ratios(results)
    checks, check_text = target_check(results)
    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else
        f"CPU ({cpu_description()}), "
        f"{args.threads} threads"
    )  # fmt: skip
    padded = [-(-s // 16) * 16 for s in args.shape]
    windows = count_windows(args.shape, args.roi, args.overlap)
    meta = {
        "date": datetime.date.today().isoformat(), "device": device_name,
        "torch": torch.__version__, "load_before": load_before, "load_after": _load(),
        "shape": args.shape, "padded_shape": padded,
        "bottleneck_whole": [s // 16 for s in padded], "features": args.features,
        "roi": args.roi, "overlap": args.overlap, "sw_batch_size": args.sw_batch_size,
        "windows": windows, "amp": args.amp and args.device == "cuda",
        "flush_denormal": args.flush_denormal, "threads": args.threads, "budget_s": args.budget,
        "repeats": args.repeats, "wait_idle_s": args.wait_idle,
    }  # fmt: skip
    report = [
        f"## Volume {tuple(args.shape)}, features {tuple(args.features)}, {device_name}, "
        f"torch {torch.__version__}, {meta['date']}",
        "",
        f"Machine: {load_before} before, {meta['load_after']} after. Sliding: {windows} windows "
        f"of {tuple(args.roi)}, overlap {args.overlap}, {args.sw_batch_size} per batch; whole: "
        f"padded to {tuple(padded)}, bottleneck {tuple(meta['bottleneck_whole'])}. AMP: "
        f"{'on' if meta['amp'] else 'off'}. Time: median of all runs, >= 3 runs within "
        f"{args.budget:g} s in each of {args.repeats} fresh process(es) per model; "
        "spread = (max - min) / median; others' CPU = CPU time of other processes while "
        "timing, as a share of all cores.",
    ]
    disturbed = [
        f"{name} ({mode}, {100 * r['others_cpu']:.0f}%)"
        for mode, rows in results.items()
        for name, r in rows.items()
        if (r.get("others_cpu") or 0) > BUSY
    ]
    if disturbed:
        report += [
            "",
            f"**Warning: other processes used more than {BUSY:.0%} of the cores while timing "
            f"{', '.join(disturbed)}; those timings are unreliable.**",
        ]
    for mode in args.modes:
        for task, (backbone, fa, others) in TASKS.items():
            if backbone not in results[mode]:
                continue
            report += [
                "",
                f"### {task}, {mode}",
                "",
                table(results[mode], (backbone, fa, *others)),
            ]
    report += ["", "### FA-Net against the 10% target", "", check_text]
    text = "\n".join(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"inference_{args.device}.md").write_text(text + "\n")
    data = {"meta": meta, "results": results, "check": checks}
    (args.out / f"inference_{args.device}.json").write_text(json.dumps(data, indent=1))
    return data


if __name__ == "__main__":
    main()
