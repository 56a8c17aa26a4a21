"""What the FLAIR's roughness matching adds to ``segment`` on a 1 mm brain.

``segment`` measures the FLAIR's fine roughness on the model's grid and, when it is above the
model's target, smooths it by the gentlest of 16 Gaussian sigmas that reaches the target
(:func:`napari_fanet.tasks.roughness.match_flair`). This times that step on a synthetic
skull-stripped FLAIR (an ellipsoid brain of median 100 with white noise) at three roughness
levels against the shipped target (0.0849): below it (measured only), about patient 19's (a few
sigmas), and far above (every sigma tried, the worst case). Medians of ``--repeats`` runs, one
process.

Usage::

    PYTHONPATH=src python benchmarks/roughness_cost.py [--shape 182 218 182] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from napari_fanet.tasks.roughness import fine_roughness, match_flair, match_roughness

TARGET = 0.0849  # the shipped fanet-seg's (median of the three Lesjak patients' FLAIRs)
#: White-noise levels: below the target, about patient 19's roughness (0.114), far above.
NOISE = {"smooth (r below target)": 0.07, "like patient 19": 0.12, "very rough": 3.0}


def flair(shape: tuple[int, int, int], noise: float, seed: int = 0) -> np.ndarray:
    """``shape`` float32: an ellipsoid of median 100 times (1 + noise x white noise), 0 outside."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    radii = [0.42 * n for n in shape]
    inside = sum(((g - (n - 1) / 2) / r) ** 2 for g, n, r in zip(grid, shape, radii, strict=True))
    image = 100 * (1 + noise * rng.standard_normal(shape).astype(np.float32))
    return np.where(inside < 1, image, 0).astype(np.float32)


def seconds(call, repeats: int) -> float:
    """Median wall time of ``call()`` (s)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(182, 218, 182), metavar="N")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if min(args.shape) < 16:
        parser.error(f"--shape: expected 3 sizes of at least 16 voxels, got {args.shape}")
    if args.repeats < 1:
        parser.error(f"--repeats: expected at least 1, got {args.repeats}")
    shape = tuple(args.shape)
    rows = []
    for label, noise in NOISE.items():
        image = flair(shape, noise)
        brain = image != 0
        measure = seconds(lambda image=image, brain=brain: fine_roughness(image, brain), 1)
        step = seconds(
            lambda image=image, brain=brain: match_flair(image, brain, TARGET, (1, 1, 1)),
            args.repeats,
        )
        _, sigma, after = match_roughness(image, brain, TARGET, (1.0, 1.0, 1.0))
        rows.append(
            {
                "flair": label,
                "r": fine_roughness(image, brain),
                "sigma_mm": sigma,
                "r_after": after,
                "measure_s": measure,
                "step_s": step,
            }
        )
    print(f"Roughness matching on a {' x '.join(map(str, shape))} FLAIR, target {TARGET}")
    print()
    print(
        "| FLAIR | r | sigma (mm) | r after | measuring (s) | whole step (s) | step / measuring |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['flair']} | {row['r']:.4f} | {row['sigma_mm']:g} | {row['r_after']:.4f} | "
            f"{row['measure_s']:.2f} | {row['step_s']:.2f} | "
            f"{row['step_s'] / row['measure_s']:.1f} |"
        )
    return rows


if __name__ == "__main__":
    main()
    sys.exit(0)
