"""Each shared patient's FLAIR tissue levels, as the network sees them (z-scored in the brain).

Exploratory (2026-12-06). Tissue classes come from a three-class k-means (scipy's ``kmeans2``,
started at the 10th, 50th and 90th percentiles) of the T1 inside the brain, lesions left out,
3 voxels away from the brain's edge: CSF, grey matter, white matter. Printed: the median FLAIR
z-score of each class and of the consensus lesions, and each class's share of the brain; then
(added 2026-12-06, late) the FLAIR of the lesions and of the grey matter over the white matter's
median, the same way for the patients and, with ``--sims``, for simulated subjects (their
``lesion_mask``), so the simulations' lesion contrast can be set beside the real one; and (added
2026-12-06, night) the fine texture of the white matter and of the lesions' cores: the standard
deviation of the FLAIR minus its Gaussian blur (sigma 1 voxel), over the white matter's median.

Usage (from the repository root; about 20 seconds, and about 5 per simulated subject)::

    PYTHONPATH=src python benchmarks/results/ms-patient19/tissue_contrast.py \
        [--sims runs/ms-rand1mm-v4 --n-sims 16]
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
SIM_FILES = ("flair", "t1", "lesion_mask")


def tissue_classes(
    flair: np.ndarray, t1: np.ndarray, lesions: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Brain mask and (white, grey, CSF) masks away from its edge, all ``(X, Y, Z)`` bool."""
    brain = flair != 0
    inside = brain & ~lesions
    values = t1[inside].astype(np.float64)
    start = np.percentile(values, [10, 50, 90])  # CSF, grey matter, white matter by T1
    _, labels = kmeans2(values, start, iter=30, minit="matrix")
    classes = np.full(t1.shape, -1)
    classes[inside] = labels
    core = ndimage.binary_erosion(brain, iterations=3)
    csf, grey, white = ((classes == k) & core for k in range(3))
    return brain, (white, grey, csf)


def ratio_row(name: str, flair: np.ndarray, t1: np.ndarray, lesions: np.ndarray) -> str:
    """One row: lesion and grey-matter FLAIR over white matter, and the fine textures.

    The lesions as median (10th-90th percentile); the fine texture of the white matter and of
    the lesions' cores as in the module docstring.
    """
    _, (white, grey, _) = tissue_classes(flair, t1, lesions)
    reference = float(np.median(flair[white]))
    lesion = np.percentile(flair[lesions], [50, 10, 90]) / reference
    grey_ratio = float(np.median(flair[grey])) / reference
    flair = flair.astype(np.float32)
    fine = flair - ndimage.gaussian_filter(flair, 1.0)
    cores = ndimage.binary_erosion(lesions)
    textures = [fine[m].std() / reference if m.any() else float("nan") for m in (white, cores)]
    return (
        f"| {name} | {lesion[0]:.2f} ({lesion[1]:.2f}-{lesion[2]:.2f}) | {grey_ratio:.2f} "
        f"| {textures[0]:.3f} | {textures[1]:.3f} |"
    )


def patient_volumes(patient: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FLAIR, T1 and consensus lesion mask of a shared patient."""
    flair = load_volume(DATA / patient / "flair.nii.gz").data
    t1 = load_volume(DATA / patient / "t1.nii.gz").data
    lesions = load_volume(DATA / patient / "consensus_lesions.nii.gz").data > 0.5
    return flair, t1, lesions


def tissue_row(patient: str) -> str:
    flair, t1, lesions = patient_volumes(patient)
    z = zscore_in_mask(flair, flair != 0)
    brain, (white, grey, csf) = tissue_classes(flair, t1, lesions)
    share = [f"{m.sum() / brain.sum():.2f}" for m in (white, grey, csf)]
    levels = [f"{np.median(z[m]):.2f}" for m in (white, grey, csf, lesions)]
    return f"| {patient} | {' | '.join(levels)} | {' | '.join(share)} |"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=Path, help="simulated subjects (sub-*/ folders)")
    parser.add_argument("--n-sims", type=int, default=16, help="the first N of --sims")
    args = parser.parse_args()
    sims = []
    if args.sims is not None:
        sims = sorted(args.sims.glob("sub-*/flair.nii.gz"))[: args.n_sims]
        if not sims:
            parser.error(f"--sims: expected sub-*/flair.nii.gz under {args.sims}, found none")
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
    print(
        "\n| subject | FLAIR over white matter: lesions, median (10th-90th percentile) "
        "| grey matter | fine texture: white matter | lesion cores |\n|---|---|---|---|---|"
    )
    for patient in PATIENTS:
        print(ratio_row(patient, *patient_volumes(patient)))
    for flair_path in sims:
        folder = flair_path.parent
        flair, t1, lesions = (load_volume(folder / f"{n}.nii.gz").data for n in SIM_FILES)
        print(ratio_row(f"simulated {folder.name}", flair, t1, lesions > 0.5))
