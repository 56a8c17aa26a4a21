"""Location classes of the consensus lesions of the real MS patients, and their robustness.

Run from the repository root (the data never enters the repository)::

    python scripts/lesion_locations_real.py [../shared/data/open-ms-lesjak2017]

For each patient (Lesjak et al. 2018: FLAIR and consensus lesions registered to MNI at 1 mm)
it prints the lesion count and volume per class of :mod:`napari_fanet.evaluation.lesion_table`
with the default alignment (identity: the scans are in MNI space), then two robustness measures,
since no per-lesion location reference exists for these scans:

- **shift**: the share of lesions whose class is unchanged when the scan is moved by 2 mm
  along each world axis in turn (6 moves: a registration error of 2 mm);
- **moments**: the share unchanged with the brain-mask moment alignment (FLAIR > 0) instead
  of the identity.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

from napari_fanet.evaluation.lesion_table import LOCATION_CLASSES, classify_locations, lesion_table
from napari_fanet.io.nifti import load_volume


def main(root: Path) -> None:
    """Print one line per patient folder of ``root``."""
    for folder in sorted(root.glob("patient*")):
        lesions = load_volume(folder / "consensus_lesions.nii.gz", name="lesions")
        brain = load_volume(folder / "flair.nii.gz", name="FLAIR").data > 0
        table = lesion_table(lesions.data, lesions.affine)
        classes = [r["location"] for r in table.rows]
        count, volume = Counter(classes), Counter()
        for row in table.rows:
            volume[row["location"]] += row["volume_ml"]
        share = {c: 100 * volume[c] / table.total_volume_ml for c in LOCATION_CLASSES}
        same = []
        for axis in range(3):
            for step in (-2.0, 2.0):
                moved = lesions.affine.copy()
                moved[axis, 3] += step
                shifted = classify_locations(table.labels, moved)
                same.append(np.mean([a == b for a, b in zip(classes, shifted, strict=True)]))
        moments = classify_locations(table.labels, lesions.affine, brain_mask=brain)
        agree = np.mean([a == b for a, b in zip(classes, moments, strict=True)])
        print(
            f"{folder.name}: {len(table)} lesions, {table.total_volume_ml:.2f} mL; "
            + "; ".join(
                f"{c} {count[c]} ({volume[c]:.2f} mL, {share[c]:.0f}%)" for c in LOCATION_CLASSES
            )
            + f"; unchanged under 2 mm shifts {100 * min(same):.0f}-{100 * max(same):.0f}%"
            + f" (mean {100 * np.mean(same):.0f}%), with moment alignment {100 * agree:.0f}%"
        )


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "open-ms-lesjak2017"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
