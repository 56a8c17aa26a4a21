"""Leave-one-out rows of two ``evaluate --data`` reports side by side (Dice and L-F1, per patient).

    python benchmarks/results/window-alignment/compare.py \\
        benchmarks/results/ms-edge-rule/evaluation-fanet-seg-loo.md \\
        benchmarks/results/window-alignment/evaluation-pad16.md > OUT.md
"""

import re
import sys
from pathlib import Path


def rows(path: str, method: str = "(LOO)") -> dict:
    """(mode, subject) -> (Dice, L-F1) of the leave-one-out model's rows."""
    out, mode = {}, None
    for line in open(path):
        found = re.match(r"### Input mode: (\S+)", line)
        if found:
            mode = found.group(1)
        cells = [c.strip().strip("*") for c in line.split("|")]
        if len(cells) > 6 and method in cells[2] and "threshold" not in cells[2]:
            out[mode, cells[1]] = (float(cells[3]), float(cells[6]))
    return out


if len(sys.argv) != 3 or not all(Path(a).is_file() for a in sys.argv[1:]):
    sys.exit(f"usage: compare.py FIRST.md SECOND.md (two evaluate reports); got {sys.argv[1:]}")
before, after = rows(sys.argv[1]), rows(sys.argv[2])
missing = sorted(set(before) - set(after))
if missing:
    sys.exit(f"{sys.argv[2]} lacks leave-one-out rows that {sys.argv[1]} has: {missing}")
print("| input mode | subject | Dice: first / second (change) | L-F1: first / second (change) |")
print("|---|---|---|---|")
for key, (dice, lf1) in before.items():
    dice2, lf12 = after[key]
    print(
        f"| {key[0]} | {key[1]} | {dice:.3f} / {dice2:.3f} ({dice2 - dice:+.3f}) | "
        f"{lf1:.3f} / {lf12:.3f} ({lf12 - lf1:+.3f}) |"
    )
