"""How much the shipped folded-attention blocks attend: row entropy and gates, per block and axis.

For each model and each case (the plugin's sample subject of the model's task, and every real
patient folder under ``--data`` for segmentation models) this runs one whole-volume forward pass
with :func:`napari_fanet.models.capture_affinities` and prints, per FA block (U-Net level and its
grid) and axis: the mean entropy of the softmax rows (nats; a one-hot row has 0, a uniform row
``log L``), that entropy over ``log L``, the mean largest weight of a row and the gate ``beta``.

    PYTHONPATH=src python benchmarks/attention_entropy.py \\
        --models src/napari_fanet/weights/fanet-seg.pt src/napari_fanet/weights/fanet-qsm.pt \\
        --data ../shared/data/open-ms-lesjak2017

``--cosine-scales 1 3 10 30 100`` adds a second table: for the same blocks and inputs, the
relative entropy the rows would have with cosine energies (``scale="cosine"``) multiplied by
each of those numbers instead of the block's own energies. It chose
:data:`napari_fanet.models.folded_attention.COSINE_SCALE`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from napari_fanet.engine.network_input import prepare_network_input
from napari_fanet.engine.predict import as_canonical
from napari_fanet.io.nifti import load_volume
from napari_fanet.models import capture_affinities, load_checkpoint
from napari_fanet.models.attention_statistics import attention_statistics, row_entropy
from napari_fanet.models.folded_attention import FoldedAttention3d, cosine_energies
from napari_fanet.models.folding import AXES
from napari_fanet.tasks import get_task
from napari_fanet.tasks.subjects import find_file

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {
    "segmentation": ROOT / "sample_data/ms/sub-0000",
    "qsm": ROOT / "sample_data/qsm/sub-0000",
}


def load_case(folder: Path, task: str) -> tuple[dict, tuple[float, float, float]]:
    """Canonical arrays by role name and their voxel size, for the roles the folder has."""
    volumes = {}
    for role in get_task(task).roles:
        path = find_file(folder, role.file, required=False)
        if path is not None:
            volumes[role.name] = load_volume(path)
    arrays, voxel, _, _ = as_canonical(volumes, None)
    return arrays, voxel


def block_level(name: str) -> str:
    """U-Net level of a block from its module name (``attention`` is the bottleneck, 4)."""
    return "4" if name == "attention" else name.rsplit(".", 1)[-1]


def cosine_entropies(block: FoldedAttention3d, x: torch.Tensor, scales: list[float]) -> dict:
    """``{axis: [relative row entropy of softmax(s * cosine energy) for s in scales]}``."""
    with torch.no_grad():
        energies = cosine_energies(block.theta(x).double(), block.phi(x).double())
    out = {}
    for a in AXES:
        sign = block.channel_sign if a == "C" else 1
        length = energies[a].shape[-1]
        out[a] = [
            float(row_entropy(torch.softmax(sign * s * energies[a], -1)).mean())
            / max(math.log(length), 1e-12)
            for s in scales
        ]
    return out


def measure(
    model_path: Path, folder: Path, threads: int, cosine_scales: list[float] | None = None
) -> list[dict]:
    """One whole-volume forward pass of ``model_path`` on ``folder``; a row per block and axis."""
    model, ckpt = load_checkpoint(model_path)
    task = ckpt["config"]["task"]
    arrays, voxel = load_case(folder, task)
    net = prepare_network_input(task, arrays, voxel, ckpt)
    x = torch.from_numpy(net.image).unsqueeze(0).float()  # (1, channels, X, Y, Z)
    torch.set_num_threads(threads)
    inputs: dict[str, tuple[FoldedAttention3d, torch.Tensor]] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda mod, args, name=name: inputs.__setitem__(name, (mod, args[0]))
        )
        for name, module in model.named_modules()
        if cosine_scales and isinstance(module, FoldedAttention3d)
    ]
    start = time.perf_counter()
    with capture_affinities(model) as capture, torch.no_grad():
        model(x)
    seconds = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    cosine = {name: cosine_entropies(b, inp, cosine_scales) for name, (b, inp) in inputs.items()}
    rows = []
    for name, records in sorted(capture.records.items(), key=lambda kv: block_level(kv[0])):
        record = records[-1]
        grid = "x".join(str(s) for s in record.input_shape[2:])
        for s in attention_statistics(record):
            rows.append(
                {
                    "model": model_path.stem,
                    "case": folder.name if folder.parent.name not in ("ms", "qsm") else "sample",
                    "level": block_level(name),
                    "grid": grid,
                    "axis": s.axis,
                    "L": s.length,
                    "entropy": s.entropy,
                    "relative": s.relative_entropy,
                    "max_weight": s.max_weight,
                    "beta": s.beta,
                    "forward_s": seconds,
                    "cosine": cosine.get(name, {}).get(s.axis),
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    head = (
        "| model | case | level (grid) | axis | L | row entropy (nats) | / log L | "
        "mean largest weight | beta |\n|---|---|---|---|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['model']} | {r['case']} | {r['level']} ({r['grid']}) | {r['axis']} | {r['L']} | "
        f"{r['entropy']:.3f} | {r['relative']:.3f} | {r['max_weight']:.3f} | {r['beta']:+.4f} |\n"
        for r in rows
    )
    return head + body


def cosine_markdown(rows: list[dict], scales: list[float]) -> str:
    """Relative row entropy with cosine energies times each scale, per block and axis."""
    head = (
        "| model | case | level (grid) | axis | L | "
        + " | ".join(f"{s:g} x cosine" for s in scales)
        + " |\n|---|---|---|---|---:|"
        + "---:|" * len(scales)
        + "\n"
    )
    body = "".join(
        f"| {r['model']} | {r['case']} | {r['level']} ({r['grid']}) | {r['axis']} | {r['L']} | "
        + " | ".join(f"{v:.2f}" for v in r["cosine"])
        + " |\n"
        for r in rows
    )
    return head + body


def main(argv: list[str] | None = None) -> int:
    """Print the table for every model and case."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="checkpoints")
    parser.add_argument("--data", type=Path, help="real segmentation subjects, one folder each")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cosine-scales",
        type=float,
        nargs="+",
        metavar="S",
        help="also print the relative row entropy with cosine energies times each S",
    )
    args = parser.parse_args(argv)
    for path in args.models:
        if not path.is_file():
            parser.error(f"--models: expected a checkpoint file, got {path} (not found)")
    if args.cosine_scales and not all(0 < v < float("inf") for v in args.cosine_scales):
        parser.error(
            f"--cosine-scales: expected positive finite numbers, got {args.cosine_scales}"
        )
    if args.data is not None and not args.data.is_dir():
        parser.error(f"--data: expected a folder of subjects, got {args.data}")
    rows = []
    for model_path in args.models:
        task = load_checkpoint(model_path)[1]["config"]["task"]
        folders = [SAMPLES[task]]
        if task == "segmentation" and args.data is not None:
            folders += sorted(p for p in args.data.iterdir() if p.is_dir())
        for folder in folders:
            roles = [role.file for role in get_task(task).roles]
            if not any(find_file(folder, name, required=False) for name in roles):
                parser.error(
                    f"expected a case with {' / '.join(roles)} in {folder}, found none (run from "
                    "a checkout with sample_data/, or give --data subjects)"
                )
            rows += measure(model_path, folder, args.threads, args.cosine_scales)
            print(f"{model_path.name} {folder.name}: done", file=sys.stderr, flush=True)
    print(markdown(rows))
    if args.cosine_scales:
        print("\nRelative row entropy (/ log L) with cosine energies times S:\n")
        print(cosine_markdown(rows, args.cosine_scales))
    return 0


if __name__ == "__main__":
    sys.exit(main())
