"""Each patient's fold with its FLAIR smoothed, or with its attention switched off.

Exploratory (2026-12-06, night), for issues 12 and 13. Every row segments FLAIR only with the
stage-12 leave-one-out fold that never saw the patient (left-right mirror, ``segment``'s
lesion-mask rule), as ``why_patient19.py`` does, after one change:

1. ``attention off``: every folded-attention gate ``beta`` of both levels set to 0, the value
   projection ``g`` kept (what the trained blocks add beyond ``g``, switched off at test time);
2. ``smoothed``: the FLAIR filtered by a Gaussian of sigma 0.5, 0.75 or 1 voxel (1 mm) inside the
   brain before the network input is formed (the z-scoring follows the smoothing);
3. ``texture`` (patients 07 and 26 only): the FLAIR multiplied by ``1 + a n``, ``n`` unit
   Gaussian noise blurred by 0.75 or 1.5 voxels, ``a`` 0.05 or 0.1 (seed 1): a rougher image.

Usage (from the repository root; about 15 minutes on 2 CPU cores)::

    PYTHONPATH=src python benchmarks/results/ms-patient19/smoothness.py OUT.md
"""

import copy
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from why_patient19 import FOLD, PATIENTS, load_case, output_file, score_row, segment

from napari_fanet.engine.predict import load_model, seg_model_input
from napari_fanet.models.inspection import attention_blocks

SIGMAS = (0.5, 0.75, 1.0)
TEXTURES = ((0.75, 0.05), (0.75, 0.1), (1.5, 0.1))  # (blur in voxels, amplitude a)


def with_flair(case: dict, flair: np.ndarray, checkpoint: dict) -> dict:
    """A copy of ``case`` whose network input is formed from ``flair`` (FLAIR only)."""
    image, brain, _ = seg_model_input({"FLAIR": flair}, case["voxel"], checkpoint)
    return {**case, "image": image, "brain": brain}


def attention_off(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with every folded-attention gate set to 0."""
    model = copy.deepcopy(model)
    for name in attention_blocks(model).values():
        with torch.no_grad():
            model.get_submodule(name).beta.zero_()
    return model


def patient_rows(patient: str) -> list[str]:
    """The table rows of one patient: as ``segment`` runs, then each change."""
    case = load_case(patient)
    _, checkpoint = load_model(FOLD.format(patient))
    flair = case["arrays"]["FLAIR"].astype(np.float32)
    brain = flair != 0
    rows = [score_row(f"{patient} | as `segment` runs", case, *segment(case, case["image"]))]
    off = {**case, "model": attention_off(case["model"])}
    rows.append(score_row(f"{patient} | attention off", off, *segment(off, off["image"])))
    for sigma in SIGMAS:
        smooth = np.where(brain, ndimage.gaussian_filter(flair, sigma), 0).astype(np.float32)
        changed = with_flair(case, smooth, checkpoint)
        rows.append(
            score_row(
                f"{patient} | smoothed, sigma {sigma}",
                changed,
                *segment(changed, changed["image"]),
            )
        )
    if patient == "patient19":
        return rows
    for blur, amplitude in TEXTURES:
        noise = np.random.default_rng(1).standard_normal(flair.shape).astype(np.float32)
        noise = ndimage.gaussian_filter(noise, blur)
        rough = np.where(brain, flair * (1 + amplitude * noise / noise.std()), 0)
        changed = with_flair(case, rough.astype(np.float32), checkpoint)
        label = f"{patient} | texture, blur {blur}, a {amplitude}"
        rows.append(score_row(label, changed, *segment(changed, changed["image"])))
    return rows


def write_patients_table(
    out: Path, rows_of: Callable[[str], list[str]], change: str = "change (FLAIR only)"
) -> None:
    """Write ``out``: one table of every patient's ``rows_of(patient)``, printed as it grows.

    ``change`` heads the column that says what each row changed.
    """
    torch.set_num_threads(2)
    lines = [
        f"| patient | {change} | Dice | LTPR | LPPV | L-F1 | predicted mL "
        "| largest lesion found | its median probability |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for patient in PATIENTS:
        lines += rows_of(patient)
        print("\n".join(lines), flush=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    write_patients_table(output_file(__doc__.splitlines()[0], "the table"), patient_rows)
    sys.exit(0)
