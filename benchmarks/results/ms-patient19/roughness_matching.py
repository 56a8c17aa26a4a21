"""Each patient's FLAIR smoothed until it is no rougher than the real scans its fold trained on.

Exploratory (2026-12-07), for issue 12, with its rule written before the run
(``session24_rules.md``). ``local_smoothing.py`` found that the folds weigh a bright region
against the roughness of the tissue around it, and patient 19 is the roughest of the three.
This script measures each FLAIR's fine roughness ``r``
(:func:`napari_fanet.tasks.roughness.fine_roughness`: a robust spread of the FLAIR minus its
1-voxel Gaussian blur, over the brain's median; FLAIR only), sets each fold's target to the
median ``r`` of the real patients that fold trained on (the other two: leave-one-out), and
smooths the held-out patient's FLAIR by the smallest Gaussian sigma in 0, 0.1, ..., 1.5 mm that
brings ``r`` to the target or below (0 when it is already there;
:func:`~napari_fanet.tasks.roughness.match_roughness`). Every
row segments FLAIR only with the stage-12 fold that never saw the patient, as
``why_patient19.py`` does.

With ``--modes`` (added 2026-12-07, after the FLAIR-only table; a read-out deciding nothing) it
segments instead, in each input mode (FLAIR; T1 + FLAIR;
T1 + T2 + FLAIR, the FLAIR matched, T1 and T2 as they are), only the patients the rule smooths,
as they are and matched.

Usage (from the repository root; about 10 minutes on 2 CPU cores)::

    PYTHONPATH=src python benchmarks/results/ms-patient19/roughness_matching.py [--modes] OUT.md
"""

import sys
from pathlib import Path

import numpy as np
from smoothness import with_flair, write_patients_table
from why_patient19 import DATA, FOLD, PATIENTS, command_line, load_case, score_row, segment

from napari_fanet.engine.predict import as_canonical, load_model, seg_model_input
from napari_fanet.io.nifti import load_volume
from napari_fanet.tasks.roughness import fine_roughness, match_roughness

#: The sigmas of this read-out (``segment`` now tries steps of 0.05 mm: ``MATCH_SIGMAS_MM``).
SIGMAS_MM = tuple(round(0.1 * i, 1) for i in range(16))
MODES = {
    "FLAIR": ("FLAIR",),
    "T1 + FLAIR": ("T1", "FLAIR"),
    "T1 + T2 + FLAIR": ("T1", "T2", "FLAIR"),
}


def flairs() -> dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]]:
    """Each patient's canonical FLAIR, brain (its non-zero voxels) and voxel size (mm)."""
    out = {}
    for patient in PATIENTS:
        case = load_case(patient)
        flair = case["arrays"]["FLAIR"].astype(np.float32)
        out[patient] = (flair, flair != 0, tuple(case["voxel"]))
    return out


def main(out: Path, modes: bool) -> None:
    scans = flairs()
    r = {p: fine_roughness(*scans[p][:2]) for p in PATIENTS}
    print("roughness:", {p: round(v, 4) for p, v in r.items()}, flush=True)

    def rows_of(patient: str) -> list[str]:
        case = load_case(patient)
        _, checkpoint = load_model(FOLD.format(patient))
        flair, brain, voxel = scans[patient]
        target = float(np.median([r[q] for q in PATIENTS if q != patient]))
        matched, sigma, after = match_roughness(flair, brain, target, voxel, SIGMAS_MM)
        rows = [score_row(f"{patient} | as `segment` runs (r {r[patient]:.4f})", case,
                          *segment(case, case["image"]))]  # fmt: skip
        changed = with_flair(case, matched, checkpoint)
        label = f"{patient} | target r {target:.4f}: sigma {sigma} mm (r {after:.4f})"
        rows.append(score_row(label, changed, *segment(changed, changed["image"])))
        return rows

    def mode_rows(patient: str) -> list[str]:
        flair, brain, voxel = scans[patient]
        target = float(np.median([r[q] for q in PATIENTS if q != patient]))
        matched, sigma, after = match_roughness(flair, brain, target, voxel, SIGMAS_MM)
        if sigma == 0:
            return []
        case = load_case(patient)
        _, checkpoint = load_model(FOLD.format(patient))
        t2 = as_canonical({"T2": load_volume(DATA / patient / "t2.nii.gz")}, None)[0]["T2"]
        arrays = {**case["arrays"], "T2": t2}
        rows = []
        for mode, names in MODES.items():
            for label, image_flair in (("as it is", flair), (f"sigma {sigma} mm", None)):
                inputs = {n: arrays[n] for n in names}
                if image_flair is None:
                    inputs["FLAIR"] = matched
                image, _, _ = seg_model_input(inputs, case["voxel"], checkpoint)
                r_in = after if image_flair is None else r[patient]
                text = f"{patient} | {mode}, FLAIR {label} (r {r_in:.4f})"
                rows.append(score_row(text, case, *segment(case, image)))
        return rows

    if modes:
        write_patients_table(out, mode_rows, "input mode, FLAIR (its roughness)")
    else:
        write_patients_table(out, rows_of)


if __name__ == "__main__":
    args = command_line(
        __doc__.splitlines()[0],
        "the table",
        {"--modes": "every input mode, only the patients the rule smooths"},
    )
    main(args.out, args.modes)
    sys.exit(0)
