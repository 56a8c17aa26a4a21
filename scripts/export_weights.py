"""Export a training run's best checkpoint as a small shipped weight file (no optimizer state).

Usage: python scripts/export_weights.py RUN/best.pt src/napari_fanet/weights/NAME.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_fanet.models import load_checkpoint, save_checkpoint


def main(argv: list[str]) -> int:
    """Export ``argv[0]`` to ``argv[1]``; returns the exit status."""
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    source, target = map(Path, argv)
    model, ckpt = load_checkpoint(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        target, model, epoch=ckpt["epoch"], metrics=ckpt["metrics"], extra=ckpt["extra"]
    )
    print(
        f"{target}: {target.stat().st_size / 1e6:.2f} MB, step {ckpt['epoch']}, {ckpt['metrics']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
