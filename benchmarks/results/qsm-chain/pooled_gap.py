"""The chain's gap to the same-noise local-field path, pooled over `phase_chain.py --json` files.

Exploratory (2026-12-06, late), for issue 15. Each file holds per-subject rows of
``benchmarks/phase_chain.py --fanet --json``; the gap of a subject is the full chain's chi NRMSE
minus that of the local-field path given the same acquisition noise (percentage points, the
``fanet`` row). Printed: the number of subjects, the mean gap with a t-based 95 % interval,
its spread and how many subjects exceed 5 points.

Usage (from the repository root)::

    python benchmarks/results/qsm-chain/pooled_gap.py \\
        benchmarks/results/qsm-chain/cosine-t3-lr5e-5/confirm/shipped_200.json \\
        benchmarks/results/qsm-chain/soup/shipped_200.json \\
        benchmarks/results/qsm-chain/drop4/shipped_200.json
"""

import argparse
import json
import math
import statistics
from pathlib import Path

from scipy import stats

LIMIT = 5.0  # the "within 5 percentage points"


def subject_gaps(path: Path) -> list[float]:
    """Per-subject chain minus same-noise local-field path, points, of one JSON file."""
    rows = json.loads(path.read_text())
    return [r["chi"]["fanet"]["chain"] - r["chi"]["fanet"]["local_field_noise"] for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+", help="phase_chain.py --json outputs")
    args = parser.parse_args(argv)
    gaps: list[float] = []
    seeds: list[int] = []
    for path in args.files:
        if not path.is_file():
            parser.error(f"expected a phase_chain.py --json file, got {path} (not found)")
        try:
            gaps += subject_gaps(path)
            seeds += [int(r["seed"]) for r in json.loads(path.read_text())]
        except (ValueError, KeyError, TypeError) as exc:
            parser.error(f"{path}: expected phase_chain.py --fanet --json rows ({exc!r})")
    if len(set(seeds)) != len(seeds):
        parser.error("the files share subjects (seeds); pool distinct subjects only")
    if len(gaps) < 2:
        parser.error(f"expected at least 2 subjects, got {len(gaps)}")
    mean, sd = statistics.mean(gaps), statistics.stdev(gaps)
    half = stats.t.ppf(0.975, len(gaps) - 1) * sd / math.sqrt(len(gaps))
    over = sum(g > LIMIT for g in gaps)
    print(
        f"{len(gaps)} subjects (seeds {min(seeds)}-{max(seeds)}): chain - same-noise local-field "
        f"path = {mean:.2f} points (95 % CI {mean - half:.2f} to {mean + half:.2f}; sd {sd:.2f}, "
        f"range {min(gaps):.2f} to {max(gaps):.2f}); {over} of {len(gaps)} above {LIMIT:g}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
