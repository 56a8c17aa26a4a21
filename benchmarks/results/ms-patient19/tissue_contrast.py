"""Each shared patient's FLAIR tissue levels, as the network sees them (z-scored in the brain).

Exploratory (2026-12-06). Tissue classes come from a three-class k-means (scipy's ``kmeans2``,
started at the 10th, 50th and 90th percentiles) of the T1 inside the brain, lesions left out,
3 voxels away from the brain's edge: CSF, grey matter, white matter. Printed: the median FLAIR
z-score of each class and of the consensus lesions, and each class's share of the brain.

Usage (from the repository root; about 20 seconds)::

    PYTHONPATH=src python benchmarks/results/ms-patient19/tissue_contrast.py
"""

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.cluster.vq import kmeans2

from napari_fanet.io.nifti import load_volume
from napari_fanet.tasks.preprocessing import zscore_in_mask

DATA = Path("../shared/data/open-ms-lesjak2017")
PATIENTS = ("patient07", "patient19", "patient26")


def tissue_row(patient: str) -> str:
    flair = load_volume(DATA / patient / "flair.nii.gz").data
    t1 = load_volume(DATA / patient / "t1.nii.gz").data
    lesions = load_volume(DATA / patient / "consensus_lesions.nii.gz").data > 0.5
    brain = flair != 0
    z = zscore_in_mask(flair, brain)
    inside = brain & ~lesions
    values = t1[inside].astype(np.float64)
    start = np.percentile(values, [10, 50, 90])  # CSF, grey matter, white matter by T1
    _, labels = kmeans2(values, start, iter=30, minit="matrix")
    classes = np.full(t1.shape, -1)
    classes[inside] = labels
    core = ndimage.binary_erosion(brain, iterations=3)
    csf, grey, white = ((classes == k) & core for k in range(3))
    share = [f"{m.sum() / brain.sum():.2f}" for m in (white, grey, csf)]
    levels = [f"{np.median(z[m]):.2f}" for m in (white, grey, csf, lesions)]
    return f"| {patient} | {' | '.join(levels)} | {' | '.join(share)} |"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    missing = [str(DATA / p) for p in PATIENTS if not (DATA / p / "t1.nii.gz").is_file()]
    if missing:
        parser.error(f"expected {', '.join(missing)}; run from the repository root")
    print(
        "| patient | FLAIR z: white matter | grey matter | CSF | lesions "
        "| share of the brain: white matter | grey matter | CSF |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for patient in PATIENTS:
        print(tissue_row(patient))
