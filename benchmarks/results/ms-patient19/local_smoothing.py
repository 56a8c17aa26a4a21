"""Each patient's fold with its FLAIR smoothed inside its lesions only, or outside them only.

Exploratory (2026-12-07), for issue 12. ``smoothness.py`` found that smoothing the whole FLAIR
lifts patient 19's Dice but over-calls 07 and 26. This script asks where the smoothing acts:
the FLAIR is filtered by a Gaussian of sigma 1 voxel (1 mm) inside the brain, and the filtered
values replace the original ones

1. ``inside``: only within the reference lesions dilated by 2 voxels (the lesions' own texture
   and their rim smoothed, the rest of the brain untouched);
2. ``outside``: only beyond that region (the lesions untouched, the brain around them smoothed).

If the network rejects patient 19's confluent lesion because of the texture inside it, row 1
finds it and row 2 does not. The reference mask is used only to place the change (a diagnosis,
not a method). Every row segments FLAIR only with the stage-12 leave-one-out fold that never saw
the patient, as ``why_patient19.py`` does.

Usage (from the repository root; about 10 minutes on 2 CPU cores)::

    PYTHONPATH=src python benchmarks/results/ms-patient19/local_smoothing.py OUT.md
"""

import sys

import numpy as np
from scipy import ndimage
from smoothness import with_flair, write_patients_table
from why_patient19 import FOLD, load_case, output_file, score_row, segment

from napari_fanet.engine.predict import load_model

SIGMA = 1.0
RIM_VOXELS = 2


def patient_rows(patient: str) -> list[str]:
    """The table rows of one patient: as ``segment`` runs, then each localized smoothing."""
    case = load_case(patient)
    _, checkpoint = load_model(FOLD.format(patient))
    flair = case["arrays"]["FLAIR"].astype(np.float32)
    brain = flair != 0
    smooth = np.where(brain, ndimage.gaussian_filter(flair, SIGMA), 0).astype(np.float32)
    region = ndimage.binary_dilation(case["lesions"], iterations=RIM_VOXELS) & brain
    rows = [score_row(f"{patient} | as `segment` runs", case, *segment(case, case["image"]))]
    for where, inside in (("inside", True), ("outside", False)):
        replace = region if inside else brain & ~region
        changed = with_flair(case, np.where(replace, smooth, flair).astype(np.float32), checkpoint)
        label = f"{patient} | smoothed {where} the lesions (+{RIM_VOXELS} voxels), sigma {SIGMA}"
        rows.append(score_row(label, changed, *segment(changed, changed["image"])))
    return rows


if __name__ == "__main__":
    write_patients_table(output_file(__doc__.splitlines()[0], "the table"), patient_rows)
    sys.exit(0)
