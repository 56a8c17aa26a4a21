"""Write a trained FA-Net without some levels' folded-attention blocks, as a starting checkpoint.

Usage: python scripts/drop_attention.py OUT.pt IN.pt --levels 4

The output holds the same network without the blocks at ``--levels``
(:func:`napari_fanet.models.attention_growth.drop_attention`); fine-tune it with
``napari-fanet train --init OUT.pt``. Its ``extra`` records the source and the dropped levels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_fanet.models import load_checkpoint, save_checkpoint
from napari_fanet.models.attention_growth import drop_attention


def main(argv: list[str]) -> int:
    """Write ``SOURCE`` without its blocks at ``--levels`` to ``TARGET``; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="weight file to write")
    parser.add_argument("source", type=Path, help="a trained FA-Net checkpoint")
    parser.add_argument("--levels", type=int, nargs="+", required=True, help="levels to drop")
    args = parser.parse_args(argv)
    if args.target == args.source:
        parser.error(f"{args.target}: the output must not be the input")
    try:
        model = load_checkpoint(args.source)[0]
        smaller = drop_attention(model, args.levels)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    args.target.parent.mkdir(parents=True, exist_ok=True)
    extra = {"dropped_attention_levels": sorted(set(args.levels)), "source": str(args.source)}
    save_checkpoint(args.target, smaller, extra=extra)
    print(f"{args.target}: {args.source} without attention at level(s) {sorted(set(args.levels))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
