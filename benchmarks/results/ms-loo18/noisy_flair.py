"""Noisier copies of the real FLAIRs, segmented with and without the roughness matching.

Read-out (2026-12-07) for issue 12, its rule written before the run (``session25_rules.md``):
since stage 18, ``segment`` smooths a FLAIR rougher than the real scans its model trained on.
A scan from another scanner or a faster protocol is often rougher because it is noisier. Here
each patient's FLAIR gets white Gaussian noise inside the brain (standard deviation ``k`` times
the brain's median FLAIR, ``k`` in 0, 0.05, 0.10; seed 0) and is segmented FLAIR-only by the
leave-one-out fold that never saw the patient (stage 12's weights with the fold's stage-18
target: the median roughness of the other two FLAIRs), with the matching on (as ``segment``'s
step does it, with the sigmas of each table given explicitly) and off, as ``segment`` runs
otherwise (left-right mirror, lesions with a voxel above 0.95 and of 10 mm^3).

With ``--fine`` (read-out B, its rule also written first) the matching picks its sigma from
0, 0.05, ..., 1.5 mm instead of steps of 0.1 mm (the first table showed the 0.1 mm steps
overshooting the target on white noise), for ``k`` 0.05 and 0.10 and, for patient 19, 0.

With ``--band`` (read-out C, rule written first) the measure matched is the band-pass roughness
of ``roughness_scales.py`` (1-voxel minus 2-voxel blur), the target the median of the fold's two
training FLAIRs', the sigmas steps of 0.05 mm; every ``k``, matched rows only.

Usage (from the repository root; about 15 minutes on 2 CPU cores)::

    PYTHONPATH=src python benchmarks/results/ms-loo18/noisy_flair.py [--fine | --band] OUT.md
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ms-patient19"))
from smoothness import write_patients_table
from why_patient19 import DATA, PATIENTS, command_line, load_case, score_row, segment

from napari_fanet.engine.predict import seg_model_input
from napari_fanet.engine.roughness_target import flair_roughness_target
from napari_fanet.tasks.roughness import fine_roughness, match_roughness

NOISE = (0.0, 0.05, 0.10)
SEED = 0
#: The first table's sigmas, steps of 0.1 mm (``segment``'s until read-out B).
COARSE_SIGMAS_MM = tuple(round(0.1 * i, 1) for i in range(16))
#: ``--fine``: sigmas in steps of 0.05 mm (``segment``'s since read-out B).
FINE_SIGMAS_MM = tuple(round(0.05 * i, 2) for i in range(31))
#: ``--band``: the 1-voxel blur minus the 2-voxel blur (``roughness_scales.py``'s band 1-2).
BAND_SCALES = (1.0, 2.0)


def noisy(flair: np.ndarray, k: float) -> np.ndarray:
    """``flair`` plus white noise of sd ``k`` x its brain median inside the brain (non-zero)."""
    brain = flair != 0
    rng = np.random.default_rng(SEED)
    sd = k * float(np.median(flair[brain]))
    out = flair + sd * rng.standard_normal(flair.shape).astype(np.float32)
    return np.where(brain, out, 0).astype(np.float32)


def band_target(patient: str) -> float:
    """Median band 1-2 roughness of the FLAIRs of the other two patients (read-out C)."""
    values = []
    for other in PATIENTS:
        if other != patient:
            flair = load_case(other)["arrays"]["FLAIR"].astype(np.float32)
            values.append(fine_roughness(flair, flair != 0, BAND_SCALES))
    return float(np.median(values))


def rows_of(patient: str, fine: bool = False, band: bool = False) -> list[str]:
    case = load_case(patient)
    checkpoint = case["checkpoint"]
    others = [DATA / p / "flair.nii.gz" for p in PATIENTS if p != patient]
    target = band_target(patient) if band else flair_roughness_target(others, checkpoint)
    flair = case["arrays"]["FLAIR"].astype(np.float32)
    rows = []
    levels = NOISE if not fine else ((0.0,) if patient == "patient19" else ()) + NOISE[1:]
    for k in levels:
        image_flair = noisy(flair, k)
        r = fine_roughness(image_flair, image_flair != 0)
        for match in (False, True) if not (fine or band) else (True,):
            given, said = image_flair, "off"
            if band:
                brain = image_flair != 0
                given, sigma, after = match_roughness(
                    image_flair, brain, target, case["voxel"], FINE_SIGMAS_MM, BAND_SCALES
                )
                said = f"band target {target:.4f}: sigma {sigma:g} mm (band now {after:.4f})"
            elif match:  # the sigmas of the run: 0.1 mm steps (first table) or 0.05 (--fine)
                brain = image_flair != 0
                sigmas = FINE_SIGMAS_MM if fine else COARSE_SIGMAS_MM
                given, sigma, after = match_roughness(
                    image_flair, brain, target, case["voxel"], sigmas
                )
                if fine:
                    said = f"sigma {sigma:g} mm in steps of 0.05 (now {after:.4f})"
                elif sigma == 0:
                    said = "not smoothed"
                else:
                    said = (
                        f"smoothed in the brain by a Gaussian of sigma {sigma:g} mm "
                        f"(now {after:.4f})"
                    )
            image, brain, _ = seg_model_input(
                {"FLAIR": given}, case["voxel"], checkpoint, match_roughness=False
            )
            label = f"{patient} | noise {k:g} (r {r:.4f}), matching {'on' if match else 'off'}"
            label += f" ({said})" if match else ""
            changed = {**case, "image": image, "brain": brain}
            rows.append(score_row(label, changed, *segment(changed, image)))
    return rows


if __name__ == "__main__":
    args = command_line(
        __doc__.splitlines()[0],
        "the table",
        {"--fine": "sigmas in steps of 0.05 mm", "--band": "match the band 1-2 roughness"},
    )
    write_patients_table(
        args.out, lambda patient: rows_of(patient, args.fine, args.band), "noise, matching"
    )
    sys.exit(0)
