"""The sample case's Dice under different window placements, same weights and rules.

Runs the core ``segment`` (shipped ``fanet-seg``, all three inputs, the case's brain mask,
defaults otherwise) on ``sample_data/ms/sub-0000`` with window overlap 0.5 and 0.25, each
(a) with one grid over the whole array (``segment`` before 2026-12-07, night: the crop is
switched off by replacing ``crop_to_brain`` with the whole array), (b) on the brain's bounding
box with one grid, (c) on the box with two grids (``segment``'s default now)::

    PYTHONPATH=src python benchmarks/results/windows-on-the-brain/sample_case_windows.py

Prints a markdown table (Dice and lesion voxels against the reference).
"""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import numpy as np

from napari_fanet.engine import predict
from napari_fanet.engine.inference import WindowSettings
from napari_fanet.io.nifti import load_volume

CASE = Path(__file__).resolve().parents[3] / "sample_data" / "ms" / "sub-0000"


def whole_array(image: np.ndarray, brain: np.ndarray):
    """``crop_to_brain`` as it was not: the whole array, no margin."""
    return image, (slice(None),) * 3


def dice(mask: np.ndarray, reference: np.ndarray) -> float:
    """Voxel Dice of two bool masks."""
    return 2 * float((mask & reference).sum()) / float(mask.sum() + reference.sum())


def main() -> int:
    if len(sys.argv) > 1 or not CASE.is_dir():
        sys.exit(f"usage: sample_case_windows.py (no arguments; needs {CASE})")
    volumes = {
        m: load_volume(CASE / f"{m}.nii.gz")
        for m in ("t1", "t2", "flair", "brain_mask", "lesion_mask")
    }
    reference = volumes["lesion_mask"].data > 0.5
    model, checkpoint = predict.load_model("fanet-seg")
    print("| overlap | windows | Dice | lesion voxels (reference) |")
    print("|---|---|---|---|")
    for overlap in (0.5, 0.25):
        settings = WindowSettings(overlap=overlap, device="cpu")
        for label, shifts, crop in (
            ("one grid, whole array", 1, False),
            ("one grid, brain box", 1, True),
            ("two grids, brain box", 2, True),
        ):
            patches = (
                [mock.patch.object(predict, "crop_to_brain", whole_array),
                 mock.patch.object(predict, "without_margin", lambda t: t)]
                if not crop else []
            )  # fmt: skip
            for patch in patches:
                patch.start()
            try:
                result = predict.segment(
                    model, checkpoint, volumes["t1"], volumes["t2"], volumes["flair"],
                    brain_mask=volumes["brain_mask"], window_shifts=shifts, settings=settings,
                )  # fmt: skip
            finally:
                for patch in patches:
                    patch.stop()
            mask = result.outputs["mask"] > 0
            print(
                f"| {overlap} | {label} | {dice(mask, reference):.3f} | "
                f"{int(mask.sum())} ({int(reference.sum())}) |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
