"""Copies of a real-subject folder with every volume padded by N zero voxels on every side.

The affines are shifted so that each copy holds the same image in world space; only the array
(and so where the sliding windows fall) changes::

    PYTHONPATH=src:benchmarks python benchmarks/results/window-alignment/pad_subjects.py \\
        ../shared/data/open-ms-lesjak2017 /work/scratch/lesjak-pad16 16
"""

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from segment_input_variants import padded

USAGE = "usage: pad_subjects.py SOURCE_FOLDER TARGET_FOLDER WIDTH (zero voxels per side)"
if len(sys.argv) != 4 or not sys.argv[3].isdigit() or not Path(sys.argv[1]).is_dir():
    sys.exit(f"{USAGE}; got {sys.argv[1:]} (SOURCE_FOLDER must exist, WIDTH be a whole number)")
source, target, width = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for subject in sorted(p for p in source.iterdir() if p.is_dir()):
    (target / subject.name).mkdir(parents=True, exist_ok=True)
    for name in ("flair", "t1", "t2", "consensus_lesions"):
        path = subject / f"{name}.nii.gz"
        if path.exists():
            image = nib.load(path)
            copy = padded(image, width)
            out = nib.Nifti1Image(np.asarray(copy.dataobj), copy.affine, image.header)
            nib.save(out, target / subject.name / f"{name}.nii.gz")
