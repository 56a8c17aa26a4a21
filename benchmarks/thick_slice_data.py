"""Thick-slice (2D) copies of labelled MS subjects: FLAIR, brain mask and lesion mask.

Clinical FLAIR is often 2D with 3-5 mm slices. This writes, for every subject of ``--data``
(``napari_fanet.evaluation.real``'s layout), its FLAIR averaged over a Gaussian slice profile of
FWHM ``--factor`` voxels and sampled every ``--factor`` voxels along ``--axis``
(:func:`napari_fanet.simulation.scanner_artefacts.thick_slices`), with the affine scaled to
match; the brain and lesion masks go the same way and are cut at 0.5. T1 and T2 are left out:
the copies are for scoring FLAIR-only segmentation. The copies are derived from the input
data and carry its licence: write them outside the repository.

Usage::

    PYTHONPATH=src python benchmarks/thick_slice_data.py \\
        --data ../shared/data/open-ms-lesjak2017 --out /tmp/lesjak-5mm --factor 5
    PYTHONPATH=src python benchmarks/ms_postprocessing.py --data /tmp/lesjak-5mm \\
        --maps runs/maps-loo8-thick5 --modes flair --fixed 0.95 10 \\
        --predict 'benchmarks/results/ms-loo8/fanet-seg-without-{subject}.pt'
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_fanet.io.nifti import load_volume, save_volume
from napari_fanet.simulation.scanner_artefacts import thick_slices
from napari_fanet.tasks.subjects import find_file, find_lesion_mask, list_subjects


def thick_copy(source: Path, target: Path, factor: float, axis: int) -> list[str]:
    """Write the thick-slice FLAIR, brain mask (if any) and lesion mask of one subject."""
    files = {"flair": find_file(source, "flair"), "lesion_mask": find_lesion_mask(source)}
    brain = find_file(source, "brain_mask", required=False)
    if brain is not None:
        files["brain_mask"] = brain
    target.mkdir(parents=True, exist_ok=True)
    for stem, path in files.items():
        volume = load_volume(path)
        low = thick_slices(np.asarray(volume.data, dtype=np.float32), axis, factor)
        if stem != "flair":
            low = (low > 0.5).astype(np.uint8)
        scale = np.ones(4)
        scale[axis] = factor
        save_volume(target / f"{stem}.nii.gz", low, volume.affine @ np.diag(scale))
    return sorted(files)


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="labelled subjects")
    parser.add_argument("--out", required=True, type=Path, help="where the copies go")
    parser.add_argument("--factor", type=float, default=5.0, help="slice thickness (voxels)")
    parser.add_argument("--axis", type=int, default=2, choices=(0, 1, 2), help="slice axis")
    args = parser.parse_args(argv)
    if args.factor < 1:
        parser.error(
            f"--factor: expected a slice thickness of at least 1 voxel, got {args.factor}"
        )
    try:
        subjects = list_subjects(args.data, "segmentation")
    except (FileNotFoundError, ValueError) as exc:
        parser.error(f"--data: {exc}")
    written = []
    for folder in subjects:
        names = thick_copy(folder, args.out / folder.name, args.factor, args.axis)
        print(f"{folder.name}: {', '.join(names)}")
        written.append(args.out / folder.name)
    return written


if __name__ == "__main__":
    main()
