"""Does the fold that never saw patient 19 find its confluent lesion when the lesion is brighter?

Exploratory (2026-12-06). Inside patient 19's largest reference lesion the FLAIR becomes
``W + f (I - W)``, ``W`` the median FLAIR of the FLAIR-only white-matter mask outside the
lesions, then ``napari-fanet segment`` (FLAIR only, defaults) runs with the stage-12 fold that
never saw the patient. Printed per factor: the lesion's mean FLAIR over ``W``, the fraction of
its voxels in the mask, their median probability and the predicted volume.

Usage (from the repository root, about 30 s per factor on 2 CPU cores)::

    PYTHONPATH=src python benchmarks/results/ms-growth/contrast_dose.py OUT 1 1.5 2 3 4
"""

import argparse
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_fanet.baselines.lesion_threshold import flair_white_matter_mask

PATIENT = Path("../shared/data/open-ms-lesjak2017/patient19")
FOLD = "benchmarks/results/ms-loo12/fanet-seg-without-patient19.pt"


def main(out: Path, factors: list[float]) -> None:
    image = nib.load(PATIENT / "flair.nii.gz")
    flair = np.asarray(image.dataobj, dtype=np.float32)
    lesions = np.asarray(nib.load(PATIENT / "consensus_lesions.nii.gz").dataobj) > 0
    labels, _ = ndimage.label(lesions, structure=np.ones((3, 3, 3)))
    confluent = labels == np.bincount(labels.ravel())[1:].argmax() + 1
    white = flair_white_matter_mask(flair, flair > 0) & ~lesions
    level = float(np.median(flair[white]))
    out.mkdir(parents=True, exist_ok=True)
    print("| factor | lesion FLAIR / WM | fraction in the mask | median probability | mL |")
    print("|---|---|---|---|---|")
    for factor in factors:
        scaled = flair.copy()
        scaled[confluent] = level + factor * (flair[confluent] - level)
        path = out / f"flair_f{factor:g}.nii.gz"
        nib.save(nib.Nifti1Image(scaled, image.affine, image.header), path)
        folder = out / f"segment_f{factor:g}"
        command = ["napari-fanet", "segment", "--flair", str(path), "--model", FOLD]
        subprocess.run(
            [*command, "--device", "cpu", "--out", str(folder)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        mask = np.asarray(nib.load(next(folder.glob("*lesion_mask*.nii.gz"))).dataobj) > 0
        probability = np.asarray(nib.load(next(folder.glob("*probability*.nii.gz"))).dataobj)
        ratio = scaled[confluent].mean() / level
        print(
            f"| {factor:g} | {ratio:.2f} | {mask[confluent].mean():.3f} "
            f"| {np.median(probability[confluent]):.3f} | {mask.sum() / 1000:.1f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the brightened FLAIRs and masks")
    parser.add_argument("factors", type=float, nargs="+", help="contrast factors f (> 0)")
    args = parser.parse_args()
    if not (PATIENT / "flair.nii.gz").is_file() or not Path(FOLD).is_file():
        parser.error(f"expected {PATIENT}/flair.nii.gz and {FOLD}; run from the repository root")
    if min(args.factors) <= 0:
        parser.error(f"factors: expected numbers above 0, got {args.factors}")
    main(args.out, args.factors)
