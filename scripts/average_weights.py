"""Average the weights of several checkpoints of one network into one file (a "weight soup").

Usage: python scripts/average_weights.py OUT.pt IN1.pt IN2.pt [IN3.pt ...]

Each input must hold the same model config. The output has no optimizer state; its ``extra``
keeps what every input agrees on and lists the inputs under ``averaged_from``
(:func:`napari_fanet.models.weight_average.average_checkpoints`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_fanet.models import save_checkpoint
from napari_fanet.models.weight_average import average_checkpoints


def main(argv: list[str]) -> int:
    """Write the average of ``SOURCES`` to ``TARGET``; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="weight file to write")
    parser.add_argument("sources", type=Path, nargs="+", help="two or more checkpoints")
    args = parser.parse_args(argv)
    if args.target in args.sources:
        parser.error(f"{args.target}: the output must not be one of the inputs")
    try:
        model, extra = average_checkpoints(args.sources)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    args.target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.target, model, extra=extra)
    print(f"{args.target}: the mean of {len(args.sources)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
