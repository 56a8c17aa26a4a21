"""Noisier copies of the real FLAIRs, segmented with and without the roughness matching.

Read-out (2026-12-07) for issue 12, its rule written before the run (``session25_rules.md``):
since stage 18, ``segment`` smooths a FLAIR rougher than the real scans its model trained on.
A scan from another scanner or a faster protocol is often rougher because it is noisier. Here
each patient's FLAIR gets white Gaussian noise inside the brain (standard deviation ``k`` times
the brain's median FLAIR, ``k`` in 0, 0.05, 0.10; seed 0) and is segmented FLAIR-only by the
leave-one-out fold that never saw the patient (stage 12's weights with the fold's stage-18
target: the median roughness of the other two FLAIRs), with the matching on and off, as
``segment`` runs otherwise (left-right mirror, lesions with a voxel above 0.95 and of 10 mm^3).

Usage (from the repository root; about 15 minutes on 2 CPU cores)::

    PYTHONPATH=src python benchmarks/results/ms-loo18/noisy_flair.py OUT.md
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ms-patient19"))
from smoothness import write_patients_table
from why_patient19 import DATA, PATIENTS, command_line, load_case, score_row, segment

from napari_fanet.engine.predict import seg_model_input
from napari_fanet.engine.roughness_target import flair_roughness_target
from napari_fanet.tasks.roughness import TARGET_KEY, fine_roughness

NOISE = (0.0, 0.05, 0.10)
SEED = 0


def noisy(flair: np.ndarray, k: float) -> np.ndarray:
    """``flair`` plus white noise of sd ``k`` x its brain median inside the brain (non-zero)."""
    brain = flair != 0
    rng = np.random.default_rng(SEED)
    sd = k * float(np.median(flair[brain]))
    out = flair + sd * rng.standard_normal(flair.shape).astype(np.float32)
    return np.where(brain, out, 0).astype(np.float32)


def rows_of(patient: str) -> list[str]:
    case = load_case(patient)
    checkpoint = case["checkpoint"]
    others = [DATA / p / "flair.nii.gz" for p in PATIENTS if p != patient]
    target = flair_roughness_target(others, checkpoint)
    with_target = {**checkpoint, "extra": {**checkpoint["extra"], TARGET_KEY: target}}
    flair = case["arrays"]["FLAIR"].astype(np.float32)
    rows = []
    for k in NOISE:
        image_flair = noisy(flair, k)
        r = fine_roughness(image_flair, image_flair != 0)
        for match in (False, True):
            messages: list[str] = []
            image, brain, _ = seg_model_input(
                {"FLAIR": image_flair},
                case["voxel"],
                with_target,
                match_roughness=match,
                messages=messages,
            )
            said = messages[0].split(": ", 1)[-1].split(" before")[0] if messages else "off"
            label = f"{patient} | noise {k:g} (r {r:.4f}), matching {'on' if match else 'off'}"
            label += f" ({said})" if match else ""
            changed = {**case, "image": image, "brain": brain}
            rows.append(score_row(label, changed, *segment(changed, image)))
    return rows


if __name__ == "__main__":
    args = command_line(__doc__.splitlines()[0], "the table", {})
    write_patients_table(args.out, rows_of, "noise, matching")
    sys.exit(0)
