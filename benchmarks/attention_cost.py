"""Cost of Folded Attention against SA, DA, AG and RSA (the paper's Fig. 1 and Fig. 4).

For each attention module at one input size this measures, in a fresh process per measurement:

- parameters;
- forward FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device, both
  *conv-only* (what hook-based counters such as thop see: comparable to the paper) and *all*
  (convolutions plus every matrix product, including attention matmuls and SDPA; element-wise
  ops such as softmax are not counted by either column);
- peak memory of one forward pass under ``torch.no_grad``: on CPU the peak of live tensor
  allocations recorded by the PyTorch profiler during the pass; on CUDA ``max_memory_allocated``
  minus the memory allocated before the pass (the input and weights are excluded in both);
- median wall time of the forward pass (threads pinned, warm-up first).

Each input size is measured in one fresh process (modules one after another), so ratios at one
size come from the same process and the same machine state.

Usage::

    python benchmarks/attention_cost.py                       # CPU, (1, 64, 32, 32, 32) + sweep
    python benchmarks/attention_cost.py --device cuda         # on a GPU
    python benchmarks/attention_cost.py --sizes 8 16 --main-size 16 --channels 16   # quick
    python benchmarks/attention_cost.py --ratio --busy        # FA / one 3x3x3 conv, CPU
    python benchmarks/attention_cost.py --ratio --busy --retain-memory   # and as the CLI runs

It prints markdown tables (and writes them with a JSON dump and a Fig. 4-style plot to
``--out``, default ``benchmarks/out/``).

``--ratio`` measures only the time of FA against one ``3x3x3`` convolution ``C -> C`` on the same
tensor (issue 13: at most 0.5), in a fresh process with ``--threads`` threads (default 2), the
two timed alternately so both see the same machine state; the ratio is the median over rounds of
FA's time over the convolution's. Each round times the convolution, then FA on the
convolution's output (as FA runs in the U-Net, its input just written and warm in the caches),
then each FA variant on the original input (last touched a round earlier). ``--busy`` repeats
that while a competing process, started by this script and stopped after at most
``--busy-seconds``, keeps one core busy. No ``torch.set_flush_denormal`` in this mode: FA must
be fast without it. ``--retain-memory`` repeats every condition in a child that keeps freed
memory in the process, as every ``napari-fanet`` command does (``engine/memory.py``): with
glibc's defaults both modules fault freed blocks in again, the convolution far more often.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cpu_info import cpu_description  # benchmarks/ is on sys.path when run as a script
from napari_fanet.engine.memory import ENV_VAR, retain_freed_memory
from napari_fanet.models import (
    AttentionGate3d,
    DualAttention3d,
    FoldedAttention3d,
    NonLocal3d,
    SliceWiseAttention3d,
)
from napari_fanet.models.folded_attention import cpu_contended

#: Module name -> constructor for C channels.  AG takes a gating signal (see ``make_inputs``).
MODULES = {
    "FA": lambda c: FoldedAttention3d(c),
    "FA (literal)": lambda c: FoldedAttention3d(c, implementation="literal"),
    "SA": lambda c: NonLocal3d(c),
    "SA (fused SDPA)": lambda c: NonLocal3d(c, fused=True),
    "DA": lambda c: DualAttention3d(c),
    "AG": lambda c: AttentionGate3d(c, c),
    "RSA": lambda c: SliceWiseAttention3d(c),
}
#: The paper's claimed reductions of FA relative to each module (Fig. 1): (memory, FLOPs).
PAPER_REDUCTION = {"DA": (0.979, 0.889), "AG": (0.925, 0.630), "SA": (0.958, 0.256)}
#: Modules whose cost grows with N^2 (skip memory/time when the N x N matrix would not fit).
QUADRATIC = {"SA", "DA"}


def make_inputs(name: str, c: int, size: tuple[int, int, int], device: str) -> tuple:
    """Module inputs: ``(1, C, D, H, W)``; AG also gets a half-resolution gating signal."""
    x = torch.randn(1, c, *size, device=device)
    if name == "AG":
        return x, torch.randn(1, c, *[max(s // 2, 1) for s in size], device=device)
    return (x,)


def build(name: str, c: int, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    module = MODULES[name](c).to(device).eval()
    if isinstance(module, FoldedAttention3d):
        with torch.no_grad():
            module.beta.fill_(0.5)  # non-trivial gates (cost does not depend on them)
    return module


def _flops(name: str, c: int, size: tuple[int, int, int]) -> tuple[FlopCounterMode, int]:
    with torch.device("meta"):
        module = MODULES[name](c).eval()
        inputs = make_inputs(name, c, size, "meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(*inputs)
    return counter, sum(p.numel() for p in module.parameters())


def count_flops(name: str, c: int, size: tuple[int, int, int]) -> dict[str, float]:
    """Forward FLOPs on the meta device: conv-only and all (conv + matmul-like).

    The fast FA evaluates its three 1x1x1 convolutions as one matrix product, which a
    conv-only counter would not see; its conv-only column is therefore taken from the literal
    implementation (same arithmetic, ``Conv3d`` calls), so the column stays paper-comparable.
    """
    counter, params = _flops(name, c, size)
    conv_counter = _flops("FA (literal)", c, size)[0] if name == "FA" else counter
    per_op = conv_counter.get_flop_counts().get("Global", {})
    conv = sum(v for op, v in per_op.items() if "convolution" in str(op))
    total = float(counter.get_total_flops())
    return {"flops_conv": float(conv), "flops_all": total, "params": params}


def cpu_peak_bytes(fn) -> int:
    """Peak of live tensor memory allocated while ``fn()`` runs on the CPU.

    Uses the PyTorch profiler's memory events: each op's own allocations and each free, in
    time order; the running sum's maximum is the peak above what was allocated before.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


def measure(name: str, c: int, size: tuple[int, int, int], device: str, budget_s: float) -> dict:
    """Peak forward memory and median time, in this (fresh) process."""
    if device == "cpu":
        torch.set_flush_denormal(True)
    module = build(name, c, device)
    inputs = make_inputs(name, c, size, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        module(*inputs)  # warm-up: one-off workspaces (cuBLAS, oneDNN) are not the module's cost
        if device == "cuda":
            sync()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            module(*inputs)
            sync()
            peak = torch.cuda.max_memory_allocated() - before
        else:
            peak = cpu_peak_bytes(lambda: module(*inputs))
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < 30):
            sync()
            t0 = time.perf_counter()
            module(*inputs)
            sync()
            times.append(time.perf_counter() - t0)
    return {
        "peak_bytes": max(peak, 0),
        "median_ms": 1e3 * statistics.median(times),
        "n": len(times),
    }


def measure_in_child(names, c: int, size: tuple, device: str, threads: int, budget_s: float):
    """Measure ``names`` one after another in one fresh process; ``{name: result}``."""
    cmd = [
        sys.executable, __file__, "--child", *names, "--channels", str(c),
        "--child-size", *map(str, size), "--device", device, "--threads", str(threads),
        "--budget", str(budget_s),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["no output"]
        return {n: {"error": f"exit {out.returncode}: {tail[0][:120]}"} for n in names}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fast_vs_literal(c: int, size: tuple, device: str) -> dict[str, float]:
    """Largest difference between the two FA implementations on the same input (float32).

    TF32 is switched off for this comparison: with it, cuDNN's convolutions (literal path) and
    cuBLAS's products (fast path) round differently, and unscaled energies amplify that.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    fast, literal = build("FA", c, device), build("FA (literal)", c, device)
    literal.load_state_dict(fast.state_dict())
    (x,) = make_inputs("FA", c, size, device)
    with torch.no_grad():
        a, b = fast(x), literal(x)
    return {"max_abs_diff": float((a - b).abs().max()), "max_abs": float(b.abs().max())}


#: FA variants timed against one 3x3x3 convolution by ``--ratio``.
#: The row timed on the convolution's output, right after it (as FA runs inside the U-Net).
AFTER_CONV = "FA (input: the conv's output)"
RATIO_MODULES = {
    AFTER_CONV: lambda c: FoldedAttention3d(c),  # cpu_threads="auto"
    "FA": lambda c: FoldedAttention3d(c),  # cpu_threads="auto"
    "FA (cpu_threads=None)": lambda c: FoldedAttention3d(c, cpu_threads=None),
    "FA (cpu_threads=1)": lambda c: FoldedAttention3d(c, cpu_threads=1),
    # the shipped fanet-seg's blocks: cosine energies need theta(X) and phi(X) formed
    "FA (cosine, learned temperature)": lambda c: FoldedAttention3d(
        c, scale="cosine", learn_temperature=True
    ),
    "FA (literal)": lambda c: FoldedAttention3d(c, implementation="literal", cpu_threads=None),
}
#: Issue 13's target: FA takes at most this fraction of one 3x3x3 convolution's time.
RATIO_TARGET = 0.5


def busy_process(seconds: float) -> subprocess.Popen:
    """Start a process that keeps one core busy (pure Python loop) for at most ``seconds``."""
    code = (
        "import time\n"
        f"end = time.monotonic() + {float(seconds)}\n"
        "while time.monotonic() < end:\n"
        "    pass\n"
    )
    return subprocess.Popen([sys.executable, "-c", code])


def measure_ratio(c: int, size: tuple[int, int, int], repeats: int) -> dict:
    """Alternate a 3x3x3 conv and each FA variant ``repeats`` times, in this process.

    Returns ``{"rows": {name: {"median_ms", "min_ms", "cpu_ms", "ratio"}}, "contended": bool}``
    (``cpu_ms``: median process CPU time of a call, all threads, spinning included),
    ``ratio`` being the median over rounds of the module's time over the convolution's time in
    the same round, ``contended`` what :func:`cpu_contended` said at the end.
    """
    torch.manual_seed(0)
    x = torch.randn(1, c, *size)
    conv = torch.nn.Conv3d(c, c, kernel_size=3, padding=1).eval()
    calls = {"conv 3x3x3": conv}
    for name, make in RATIO_MODULES.items():
        torch.manual_seed(0)
        module = make(c).eval()
        with torch.no_grad():
            module.beta.fill_(0.5)  # non-trivial gates
        calls[name] = module
    times: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    with torch.no_grad():
        for module in calls.values():  # warm-up
            module(x)
            module(x)
        for _ in range(repeats):
            after_conv = x
            for name, module in calls.items():
                given = after_conv if name == AFTER_CONV else x
                c0, t0 = time.process_time(), time.perf_counter()
                out = module(given)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                if name == "conv 3x3x3":
                    after_conv = out  # (1, C, D, H, W), just written: warm in the caches
    conv_times = times["conv 3x3x3"]
    rows = {
        name: {
            "median_ms": 1e3 * statistics.median(t),
            "min_ms": 1e3 * min(t),
            "cpu_ms": 1e3 * statistics.median(cpu[name]),
            "ratio": statistics.median(a / b for a, b in zip(t, conv_times, strict=True)),
        }
        for name, t in times.items()
    }
    # What FA's cpu_threads="auto" saw at the end (1 thread when contended).
    return {"rows": rows, "contended": cpu_contended()}


def run_ratio(
    c: int, size: tuple, threads: int, repeats: int, busy_s: float | None, retain: bool = False
) -> dict:
    """One fresh process measuring :func:`measure_ratio`; with ``busy_s``, beside a busy one.

    With ``retain`` the child first keeps freed memory in the process, as every ``napari-fanet``
    command does (:func:`napari_fanet.engine.memory.retain_freed_memory`); without it, glibc's
    defaults hand freed blocks back and fault them in again.
    """
    cmd = [
        sys.executable, __file__, "--ratio-child", "--channels", str(c),
        "--child-size", *map(str, size), "--threads", str(threads), "--repeats", str(repeats),
    ]  # fmt: skip
    env = dict(os.environ)
    if retain:  # the variable set to 0 outside would otherwise turn the child's retention off
        cmd.append("--retain-memory")
        env[ENV_VAR] = "1"
    load_before = os.getloadavg()
    competitor = busy_process(busy_s) if busy_s else None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"ratio child failed with exit {out.returncode}: {tail[0]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {**result, "load_before": load_before, "load_after": os.getloadavg()}


def ratio_table(results: dict[str, dict], threads: int) -> str:
    """Markdown: one row per condition (idle, busy) and module."""
    lines = [
        "| condition | module | median ms | min ms | CPU ms (all threads) "
        "| time / conv 3x3x3 (median of rounds) | target <= 0.5 | load average before "
        "| CPU contended (auto: 1 thread) |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for condition, res in results.items():
        load = ", ".join(f"{v:.2f}" for v in res["load_before"])
        contended = "yes" if res["contended"] else "no"
        for name, r in res["rows"].items():
            verdict = (
                ""
                if name.startswith("conv")
                else ("PASS" if r["ratio"] <= RATIO_TARGET else "FAIL")
            )
            lines.append(
                f"| {condition}, {threads} threads | {name} | {r['median_ms']:.2f} "
                f"| {r['min_ms']:.2f} | {r['cpu_ms']:.1f} | {r['ratio']:.3f} | {verdict} "
                f"| {load} | {contended} |"
            )
    return "\n".join(lines)


def main_ratio(args: argparse.Namespace) -> None:
    """``--ratio``: FA against one 3x3x3 convolution, idle and (``--busy``) beside a busy core."""
    size = (args.main_size,) * 3
    allocators = {"": False, ", freed memory kept": True} if args.retain_memory else {"": False}
    results = {}
    for label, retain in allocators.items():
        results[f"idle{label}"] = run_ratio(
            args.channels, size, args.threads, args.repeats, None, retain
        )
        if args.busy:
            results[f"busy (1 competing process){label}"] = run_ratio(
                args.channels, size, args.threads, args.repeats, args.busy_seconds, retain
            )
    text = "\n".join(
        [
            f"## FA / one 3x3x3 conv, input (1, {args.channels}, {size[0]}, {size[1]}, "
            f"{size[2]}), CPU ({cpu_description()}), {args.threads} threads, "
            f"torch {torch.__version__}",
            "",
            ratio_table(results, args.threads),
        ]
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention_ratio_cpu.md").write_text(text + "\n")
    (args.out / "attention_ratio_cpu.json").write_text(json.dumps(results, indent=1))


def fmt_bytes(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:,.1f}"


def run_point(c, size, device, threads, budget_s, names, max_quadratic_bytes) -> dict:
    """FLOPs of every module, then memory and time of those that fit, in one fresh process."""
    rows = {name: count_flops(name, c, size) for name in names}
    n = size[0] * size[1] * size[2]
    runnable = []
    for name in names:
        if name in QUADRATIC and n * n * 4 > max_quadratic_bytes:
            rows[name]["error"] = f"skipped: N x N matrix needs {n * n * 4 / 2**30:.0f} GiB"
        else:
            runnable.append(name)
    measured = measure_in_child(runnable, c, size, device, threads, budget_s)
    for name in runnable:
        rows[name].update(measured[name])
    return rows


def main_table(rows: dict[str, dict]) -> str:
    fa = rows["FA"]
    lines = [
        "| module | params | GFLOPs conv-only | GFLOPs all | peak MiB | median ms "
        "| FA/x FLOPs conv-only | FA/x FLOPs all | FA/x memory "
        "| paper: FA reduction (mem, FLOPs) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        mem = r.get("peak_bytes")
        ratio = lambda key, r=r: (  # noqa: E731
            f"{fa[key] / r[key]:.3f}" if r.get(key) and fa.get(key) is not None else "n/a"
        )
        paper = PAPER_REDUCTION.get(name)
        claim = f"-{paper[0]:.1%}, -{paper[1]:.1%}" if paper else ""
        ms = f"{r['median_ms']:.2f}" if "median_ms" in r else r.get("error", "n/a")
        lines.append(
            f"| {name} | {r['params']:,} | {r['flops_conv'] / 1e9:.3f} "
            f"| {r['flops_all'] / 1e9:.3f} "
            f"| {fmt_bytes(mem)} | {ms} | {ratio('flops_conv')} | {ratio('flops_all')} "
            f"| {ratio('peak_bytes')} | {claim} |"
        )
    return "\n".join(lines)


def sweep_table(sweep: dict[int, dict[str, dict]]) -> str:
    names = list(next(iter(sweep.values())))
    head = "| size (C=D=H=W) | " + " | ".join(f"{n} GFLOPs all / MiB" for n in names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for s, rows in sweep.items():
        cells = [
            f"{r['flops_all'] / 1e9:.3g} / {fmt_bytes(r.get('peak_bytes'))}" for r in rows.values()
        ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(sweep: dict[int, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    sizes = list(sweep)
    for name in next(iter(sweep.values())):
        flops = [sweep[s][name]["flops_all"] for s in sizes]
        axes[0].semilogy(sizes, flops, "o-", label=name)
        mem = [(s, sweep[s][name].get("peak_bytes")) for s in sizes]
        mem = [(s, m / 2**20) for s, m in mem if m]
        if mem:
            axes[1].semilogy(*zip(*mem, strict=True), "o-", label=name)
    axes[0].set(xlabel="C = D = H = W", ylabel="forward FLOPs (conv + matmul)", title="(a) FLOPs")
    axes[1].set(xlabel="C = D = H = W", ylabel="peak forward memory (MiB)", title="(b) memory")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--main-size", type=int, default=32)
    p.add_argument("--sizes", type=int, nargs="*", default=[8, 16, 24, 32, 40, 48])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timing per module")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    p.add_argument(
        "--max-quadratic-gib",
        type=float,
        help="skip SA/DA memory and time when N*N*4 bytes exceed this (default 6 CPU, 24 CUDA)",
    )
    p.add_argument(
        "--ratio", action="store_true", help="only FA / one 3x3x3 conv (CPU), see above"
    )
    p.add_argument("--busy", action="store_true", help="--ratio also beside a busy process")
    p.add_argument(
        "--busy-seconds", type=float, default=300.0, help="upper bound on the busy process"
    )
    p.add_argument("--repeats", type=int, default=15, help="--ratio rounds per condition")
    p.add_argument(
        "--retain-memory",
        action="store_true",
        help="--ratio also with freed memory kept in the process, as napari-fanet commands run",
    )
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--child-size", type=int, nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--ratio-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.ratio_child:
        if args.retain_memory and not retain_freed_memory():
            sys.exit("--retain-memory: this C library cannot keep freed memory (not glibc)")
        print(json.dumps(measure_ratio(args.channels, tuple(args.child_size), args.repeats)))
        return
    if args.ratio:
        main_ratio(args)
        return
    if args.child:
        size = tuple(args.child_size)
        res = {n: measure(n, args.channels, size, args.device, args.budget) for n in args.child}
        print(json.dumps(res))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda requested but torch.cuda.is_available() is False")
    names = list(MODULES)
    gib = args.max_quadratic_gib or (24.0 if args.device == "cuda" else 6.0)
    limit = int(gib * 2**30)
    size = (args.main_size,) * 3
    rows = run_point(args.channels, size, args.device, args.threads, args.budget, names, limit)
    check = fast_vs_literal(args.channels, size, args.device)
    sweep = {
        s: run_point(s, (s, s, s), args.device, args.threads, args.budget, names, limit)
        for s in args.sizes
    }
    device_name = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"
    )
    speed = rows["FA (literal)"]["median_ms"] / rows["FA"]["median_ms"]
    report = [
        f"## Input (1, {args.channels}, {args.main_size}, {args.main_size}, {args.main_size}), "
        f"{device_name}, torch {torch.__version__}",
        "",
        main_table(rows),
        "",
        f"FA fast vs literal: speed-up x{speed:.2f}; max |fast - literal| = "
        f"{check['max_abs_diff']:.2e} (max |output| {check['max_abs']:.2e}).",
        "",
        "## Sweep, C = D = H = W (FLOPs all / peak MiB)",
        "",
        sweep_table(sweep),
    ]
    text = "\n".join(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"attention_cost_{args.device}.md").write_text(text + "\n")
    (args.out / f"attention_cost_{args.device}.json").write_text(
        json.dumps({"main": rows, "fast_vs_literal": check, "sweep": sweep}, indent=1)
    )
    plot(sweep, args.out / f"attention_cost_{args.device}.png")


if __name__ == "__main__":
    main()
