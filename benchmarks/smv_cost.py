"""Time and memory of the total-field (smv) data consistency on a whole head at a given voxel size.

An ellipsoidal brain (140 x 170 x 130 mm) in a 182 x 218 x 182 mm field of view, a random total
field and prior; one call of
:func:`napari_fanet.physics.smv_consistency.smv_data_consistency` with its defaults (V-SHARP's
radii, 10 iterations, automatic lambda). Prints the seconds and the peak resident memory.

    PYTHONPATH=src python benchmarks/smv_cost.py --voxel 1 --threads 1
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from napari_fanet.physics.smv_consistency import smv_data_consistency

FIELD_OF_VIEW_MM = (182.0, 218.0, 182.0)
BRAIN_SEMI_AXES_MM = (70.0, 85.0, 65.0)


def head(voxel: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(field, prior, brain)`` on the grid of ``voxel`` mm, shapes ``(X, Y, Z)``."""
    shape = tuple(round(f / voxel) for f in FIELD_OF_VIEW_MM)
    axes = [(np.arange(n) - n / 2) * voxel for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    a, b, c = BRAIN_SEMI_AXES_MM
    brain = (x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2 <= 1
    rng = np.random.default_rng(seed)
    field = np.where(brain, 0.01 * rng.standard_normal(shape), 0.0)
    prior = np.where(brain, 0.01 * rng.standard_normal(shape), 0.0)
    return field, prior, brain


def main(argv: list[str] | None = None) -> dict:
    """Time one call; print and return ``{"shape", "seconds", "peak_rss_gb"}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel", type=float, default=1.0, help="voxel size in mm (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if not args.voxel > 0 or args.threads < 1:
        parser.error(f"expected --voxel > 0 and --threads >= 1, got {args.voxel}, {args.threads}")
    torch.set_num_threads(args.threads)
    field, prior, brain = head(args.voxel)
    start = time.perf_counter()
    smv_data_consistency(field, prior, brain, (args.voxel,) * 3, (0.0, 0.0, 1.0))
    row = {
        "shape": list(brain.shape),
        "seconds": time.perf_counter() - start,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    print(
        f"| {args.voxel:g} mm | {tuple(brain.shape)} | {args.threads} | {row['seconds']:.1f} | "
        f"{row['peak_rss_gb']:.2f} |"
    )
    return row


if __name__ == "__main__":
    main()
