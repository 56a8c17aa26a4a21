"""Which reference lesions a set of leave-one-out probability maps reaches, by lesion size.

Usage::

    python benchmarks/results/ms-loo19/size_detection.py --data ../shared/data/open-ms-lesjak2017 \
        --maps runs/maps-loo18 runs/maps-loo19 --modes flair t1-t2-flair [--out TABLE.md]

Each ``--maps`` folder holds ``PATIENT-MODE/lesion_probability.nii.gz`` as
``benchmarks/ms_postprocessing.py --maps`` writes them (each patient's map from the fold that
never saw it). The reference lesions (``consensus_lesions.nii.gz``, or ``--reference-name``:
``lesion_mask.nii.gz`` for simulated subjects; 26-connected, at least 3 voxels, as the lesion
metrics count them) are binned by size, and each bin reports how many of
its lesions reach a probability of 0.5 and of 0.95 (the lesion-mask rule's seed) anywhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_fanet.evaluation.lesion_sizes import (
    BINS,
    LEVELS,
    bin_labels,
    count_cells,
    detection_by_size,
    reference_lesions,
    tally,
)


def table(
    data: Path,
    maps: list[Path],
    modes: list[str],
    patients: list[str],
    reference_name: str = "consensus_lesions.nii.gz",
) -> str:
    """The markdown table: one row per maps folder, mode and patient."""
    header = "| maps | mode | patient | " + " | ".join(bin_labels())
    lines = [
        header + " |",
        "|---|---|---|" + "---|" * len(BINS),
    ]
    for folder in maps:
        for mode in modes:
            totals = np.zeros((len(BINS), 1 + len(LEVELS)), dtype=int)
            for patient in patients:
                ref_file = data / patient / reference_name
                if not ref_file.is_file():
                    raise FileNotFoundError(f"expected a reference lesion mask at {ref_file}")
                ref = nib.load(ref_file).get_fdata() > 0.5
                prob_file = folder / f"{patient}-{mode}" / "lesion_probability.nii.gz"
                if not prob_file.is_file():
                    raise FileNotFoundError(f"expected a probability map at {prob_file}")
                prob = np.asarray(nib.load(prob_file).dataobj, dtype=np.float32)
                labels, sizes = reference_lesions(ref)
                counts = tally(detection_by_size(labels, sizes, prob))
                totals += counts
                cells = count_cells(counts)
                lines.append(f"| {folder.name} | {mode} | {patient} | " + " | ".join(cells) + " |")
            cells = count_cells(totals)
            lines.append(f"| {folder.name} | {mode} | **all** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def emit(text: str, out: Path | None) -> int:
    """Print ``text``, write it to ``out`` too when given; returns the exit status 0."""
    print(text)
    if out:
        out.write_text(text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Print (and with ``--out`` write) the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="real patients, one folder each")
    parser.add_argument("--maps", type=Path, nargs="+", required=True, help="probability maps")
    parser.add_argument("--modes", nargs="+", default=["flair"])
    parser.add_argument("--patients", nargs="+", default=["patient07", "patient19", "patient26"])
    parser.add_argument(
        "--reference-name",
        default="consensus_lesions.nii.gz",
        help="each subject's reference mask (lesion_mask.nii.gz for simulated subjects)",
    )
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    try:
        text = table(args.data, args.maps, args.modes, args.patients, args.reference_name)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    text = (
        "Reference lesions reaching probability 0.5 / 0.95 anywhere, of all in the bin "
        "(26-connected, >= 3 voxels)\n\n" + text
    )
    return emit(text, args.out)


if __name__ == "__main__":
    sys.exit(main())
