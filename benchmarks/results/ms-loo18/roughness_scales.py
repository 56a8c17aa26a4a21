"""The real FLAIRs' roughness at three scales, as scanned and with white noise added.

Read-out (2026-12-07, deciding nothing) after ``noisy_flair.py`` showed that the fine roughness
``segment`` matches (``r1``: the FLAIR minus its 1-voxel Gaussian blur) rises with white noise,
which the folds tolerate on patients 07 and 26, as much as with patient 19's texture, which they
do not. Here the same robust spread (1.4826 x median absolute deviation over the brain eroded by
3 voxels, over the brain's median) is also taken of two band-passes: the 1-voxel blur minus the
2-voxel blur (``band 1-2``) and the 2-voxel minus the 4-voxel (``band 2-4``). Noise as in
``noisy_flair.py`` (sd ``k`` x the brain median, seed 0).

Usage (from the repository root; about a minute)::

    PYTHONPATH=src python benchmarks/results/ms-loo18/roughness_scales.py OUT.md
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ms-patient19"))
from noisy_flair import NOISE, noisy
from why_patient19 import DATA, PATIENTS, command_line

from napari_fanet.engine.predict import as_canonical
from napari_fanet.io.nifti import load_volume
from napari_fanet.tasks.roughness import fine_roughness


def main(out: Path) -> None:
    lines = [
        "| patient | k | r1 (what `segment` matches) | band 1-2 | band 2-4 |",
        "|---|---|---|---|---|",
    ]
    for patient in PATIENTS:
        volume = load_volume(DATA / patient / "flair.nii.gz")
        arrays, _, _, _ = as_canonical({"FLAIR": volume}, None)
        flair = arrays["FLAIR"].astype(np.float32)
        for k in NOISE:
            image = noisy(flair, k)
            brain = image != 0
            lines.append(
                f"| {patient} | {k:g} | {fine_roughness(image, brain):.4f} "
                f"| {fine_roughness(image, brain, (1, 2)):.4f} "
                f"| {fine_roughness(image, brain, (2, 4)):.4f} |"
            )
    print("\n".join(lines))
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(command_line(__doc__.splitlines()[0], "the table").out)
    sys.exit(0)
