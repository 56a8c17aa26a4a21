"""FLAIR brightness of lesions by size, real patients against simulated subjects.

Usage::

    python benchmarks/results/ms-loo19/small_lesion_contrast.py \
        --data ../shared/data/open-ms-lesjak2017 --sims runs/ms-rand1mm-v4 runs/ms-rand1mm-v7 \
        [--out TABLE.md]

Per lesion (26-connected component of the lesion mask; the size bins of
``size_detection.py``), its peak and mean FLAIR over the median FLAIR of its brain: for a real
patient the brain is its non-zero FLAIR (skull-stripped scans), for a simulated subject its
``brain_mask.nii.gz``. Rows give the median over a bin's lesions (for the simulations, the
median over subjects of each subject's median).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from size_detection import emit

from napari_fanet.evaluation.lesion_sizes import BINS, bin_labels, reference_lesions


def lesion_brightness(flair: np.ndarray, lesions: np.ndarray, brain: np.ndarray) -> dict:
    """Per size bin: the lesion count and the median peak and mean FLAIR over the brain's median.

    Parameters
    ----------
    flair : np.ndarray
        FLAIR, shape ``(X, Y, Z)``.
    lesions, brain : np.ndarray
        Boolean masks of the same shape; ``brain`` not empty.

    Returns
    -------
    dict
        ``{(low, high): (count, median peak, median mean)}``, NaN where a bin is empty.
    """
    if flair.shape != lesions.shape or flair.shape != brain.shape or not brain.any():
        raise ValueError(
            f"expected a FLAIR, lesion mask and non-empty brain mask of one shape, got "
            f"{flair.shape}, {lesions.shape} and {brain.shape} ({int(brain.sum())} brain voxels)"
        )
    reference = float(np.median(flair[brain]))
    labels, sizes = reference_lesions(lesions)
    index = np.arange(1, sizes.size + 1)
    peaks = np.asarray(ndimage.maximum(flair, labels, index)) / reference
    means = np.asarray(ndimage.mean(flair, labels, index)) / reference
    out = {}
    for low, high in BINS:
        chosen = (sizes >= low) & (sizes < (high or np.inf))
        if chosen.any():
            out[low, high] = (
                int(chosen.sum()),
                np.median(peaks[chosen]),
                np.median(means[chosen]),
            )
        else:
            out[low, high] = (0, np.nan, np.nan)
    return out


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"expected a NIfTI file at {path}")
    return np.asarray(nib.load(path).dataobj, dtype=np.float32)


def _cells(row: dict) -> str:
    return " | ".join(f"{n}: {peak:.2f} / {mean:.2f}" for n, peak, mean in row.values())


def table(data: Path, sims_folders: list[Path], patients: list[str]) -> str:
    """The markdown table: one row per real patient, one per folder of simulations."""
    header = " | ".join(bin_labels())
    lines = [f"| FLAIR / brain median: lesions: peak / mean | {header} |", "|---|" + "---|" * 4]
    for patient in patients:
        flair = _load(data / patient / "flair.nii.gz")
        lesions = _load(data / patient / "consensus_lesions.nii.gz") > 0.5
        lines.append(f"| {patient} | {_cells(lesion_brightness(flair, lesions, flair > 0))} |")
    for sims in sims_folders:
        subjects = sorted(p for p in sims.glob("sub-*") if p.is_dir())
        if not subjects:
            raise FileNotFoundError(f"expected simulated subjects sub-* in {sims}")
        rows = [
            lesion_brightness(
                _load(s / "flair.nii.gz"),
                _load(s / "lesion_mask.nii.gz") > 0.5,
                _load(s / "brain_mask.nii.gz") > 0.5,
            )
            for s in subjects
        ]
        summary = {}
        for key in rows[0]:
            filled = [r[key] for r in rows if r[key][0]]  # subjects with lesions in this bin
            summary[key] = (
                sum(r[0] for r in filled),
                float(np.median([r[1] for r in filled])) if filled else np.nan,
                float(np.median([r[2] for r in filled])) if filled else np.nan,
            )
        lines.append(f"| {sims.name} ({len(subjects)} subjects) | {_cells(summary)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print (and with ``--out`` write) the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="real patients, one folder each")
    parser.add_argument(
        "--sims", type=Path, nargs="+", required=True, help="folders of simulated subjects (sub-*)"
    )
    parser.add_argument("--patients", nargs="+", default=["patient07", "patient19", "patient26"])
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    try:
        text = table(args.data, args.sims, args.patients)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    return emit(text, args.out)


if __name__ == "__main__":
    sys.exit(main())
