"""Export a training run's best checkpoint as a small shipped weight file (no optimizer state).

Usage: python scripts/export_weights.py RUN/best.pt src/napari_fanet/weights/NAME.pt [--name NAME]

``--name`` renames the model in the exported config (shipped files are named after their model,
for example a ``fanet-qsm`` run exported as ``fanet-qsm-phase``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from napari_fanet.models import load_checkpoint, save_checkpoint


def main(argv: list[str]) -> int:
    """Export ``SOURCE`` to ``TARGET``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="training checkpoint (best.pt or last.pt)")
    parser.add_argument("target", type=Path, help="weight file to write")
    parser.add_argument("--name", help="model name stored in the exported config")
    args = parser.parse_args(argv)
    if args.name is not None and not args.name.strip():
        parser.error(f"--name: expected a non-empty model name, got {args.name!r}")
    try:
        model, ckpt = load_checkpoint(args.source)
    except (OSError, ValueError) as exc:
        parser.error(f"{args.source}: {exc}")
    if args.name:
        model.config = dataclasses.replace(model.config, name=args.name)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        args.target, model, epoch=ckpt["epoch"], metrics=ckpt["metrics"], extra=ckpt["extra"]
    )
    size = args.target.stat().st_size / 1e6
    print(f"{args.target}: {size:.2f} MB, step {ckpt['epoch']}, {ckpt['metrics']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
