"""Stage 14's simulations: a base set plus the pool's subjects with the largest lesions.

Usage (as run for stage 14; the selection is written beside OUT as ms-sims14-selection.json)::

    PYTHONPATH=src python benchmarks/results/ms-loo14/select_heavy.py \\
        runs/ms-heavy-pool runs/ms-rand1mm-v4 runs/ms-sims14

OUT holds links to every subject of BASE and, named ``sub-heavy-NNNN``, to the 8 subjects of
POOL whose largest 26-connected lesion component is largest (in voxels, 1 mm^3 each here).
"""

import argparse
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

CHOSEN = 8


def largest_component(subject: Path) -> tuple[int, int]:
    """Voxels of the largest 26-connected lesion component and of all lesions of ``subject``."""
    lesions = np.asarray(nib.load(subject / "lesion_mask.nii.gz").dataobj) > 0
    labels, count = ndimage.label(lesions, structure=np.ones((3, 3, 3)))
    largest = int(np.bincount(labels.ravel())[1:].max()) if count else 0
    return largest, int(lesions.sum())


def main(pool: Path, base: Path, out: Path) -> None:
    rows = sorted(
        ((*largest_component(s), s.name) for s in pool.iterdir() if s.is_dir()), reverse=True
    )
    out.mkdir(parents=True, exist_ok=False)
    for subject in sorted(s for s in base.iterdir() if s.is_dir()):
        os.symlink(subject.resolve(), out / subject.name)
    for _, _, name in rows[:CHOSEN]:
        os.symlink((pool / name).resolve(), out / f"sub-heavy-{name[4:]}")
    selection = {"chosen": rows[:CHOSEN], "all": rows}
    (out.parent / "ms-sims14-selection.json").write_text(json.dumps(selection, indent=1))
    print(rows[:CHOSEN])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pool", type=Path, help="simulated subjects to choose from")
    parser.add_argument("base", type=Path, help="simulated subjects always linked")
    parser.add_argument("out", type=Path, help="new folder of links")
    args = parser.parse_args()
    for name in ("pool", "base"):
        if not getattr(args, name).is_dir():
            parser.error(
                f"{name}: expected a folder of simulated subjects, got {getattr(args, name)}"
            )
    if args.out.exists():
        parser.error(f"out: expected a path that does not exist yet, got {args.out}")
    main(args.pool, args.base, args.out)
