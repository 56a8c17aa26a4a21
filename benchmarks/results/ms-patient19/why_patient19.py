"""Why the stage-12 fold that never saw patient 19 misses its lesions: four test-time checks.

Exploratory (2026-12-06). Every row segments FLAIR only with the stage-12 leave-one-out fold
that never saw the patient (left-right mirror, ``segment``'s lesion-mask rule), after one change
to what the network sees, and scores it against the consensus mask:

1. ``normalisation``: patient 19's z-scored FLAIR mapped affinely so that its brain median and
   interquartile range are those of patient 07 or 26;
2. ``histogram``: patient 19's z-scored FLAIR quantile-mapped onto patient 07's or 26's brain
   histogram (a monotone, non-linear change of contrast);
3. ``tile``: sliding windows of 32-128 voxels instead of 64 (the network's context);
4. ``distance``: for each patient, the fraction of its lesion voxels found, their median
   probability and FLAIR z-score, by distance to the lateral ventricles (dark on T1 and FLAIR,
   more than 15 mm inside the brain, the two largest components).

Usage (from the repository root; about 10 minutes on 2 CPU cores)::

    PYTHONPATH=src python benchmarks/results/ms-patient19/why_patient19.py OUT.md
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from napari_fanet.engine.averaged_prediction import averaged_logits
from napari_fanet.engine.inference import WindowSettings
from napari_fanet.engine.predict import as_canonical, load_model, seg_model_input
from napari_fanet.io.nifti import load_volume
from napari_fanet.metrics.segmentation import segmentation_metrics
from napari_fanet.tasks import SEGMENTATION
from napari_fanet.tasks.lesion_mask import LesionMaskRule, lesion_mask

DATA = Path("../shared/data/open-ms-lesjak2017")
FOLD = "benchmarks/results/ms-loo12/fanet-seg-without-{}.pt"
PATIENTS = ("patient07", "patient19", "patient26")
RULE = LesionMaskRule(0.5, 0.95, 10.0)
DISTANCES_MM = ((0, 3), (3, 6), (6, 10), (10, 20), (20, 200))


def load_case(patient: str) -> dict:
    """Canonical FLAIR, T1 and lesion arrays of a patient, with the fold that never saw it (its
    model and checkpoint)."""
    volumes = {
        "FLAIR": load_volume(DATA / patient / "flair.nii.gz"),
        "T1": load_volume(DATA / patient / "t1.nii.gz"),
        "lesions": load_volume(DATA / patient / "consensus_lesions.nii.gz"),
    }
    arrays, voxel, _, _ = as_canonical(volumes, None)
    model, checkpoint = load_model(FOLD.format(patient))
    model.eval()
    image, brain, _ = seg_model_input({"FLAIR": arrays["FLAIR"]}, voxel, checkpoint)
    lesions = arrays["lesions"] > 0.5
    labels, _ = ndimage.label(lesions, structure=np.ones((3, 3, 3)))
    largest = labels == np.bincount(labels.ravel())[1:].argmax() + 1
    return {
        "arrays": arrays,
        "voxel": voxel,
        "model": model,
        "checkpoint": checkpoint,
        "image": image,
        "brain": brain,
        "lesions": lesions,
        "largest": largest,
    }


def segment(case: dict, image: np.ndarray, tile: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Probability and lesion mask of ``image`` (the network input) by the case's fold."""
    roi = tuple(min(tile, s) for s in image.shape[1:])
    settings = WindowSettings(roi_size=roi, device="cpu")
    with torch.no_grad():
        batch = torch.from_numpy(image)[None]
        # windows over the whole array (as when these results were made, before the crop)
        logits = averaged_logits(case["model"], batch, settings, mirror=True)
    probability = SEGMENTATION.postprocess(logits, case["brain"])
    return probability, lesion_mask(probability, case["voxel"], RULE)


def score_row(label: str, case: dict, probability: np.ndarray, mask: np.ndarray) -> str:
    s = segmentation_metrics(mask, case["lesions"])
    largest = case["largest"]
    return (
        f"| {label} | {s['dice']:.3f} | {s['ltpr']:.3f} | {s['lppv']:.3f} | {s['lf1']:.3f} "
        f"| {mask.sum() / 1000:.2f} | {mask[largest].mean():.3f} "
        f"| {np.median(probability[largest]):.3f} |"
    )


def flair_in_brain(case: dict) -> np.ndarray:
    return case["image"][2][case["brain"]]


def changed_flair(case: dict, values: np.ndarray) -> np.ndarray:
    image = case["image"].copy()
    image[2][case["brain"]] = values
    return image


def ventricles(case: dict) -> np.ndarray:
    """Lateral ventricles: dark on FLAIR and T1, deep in the brain, the two largest parts."""
    brain, flair, t1 = case["brain"], case["image"][2], case["arrays"]["T1"]
    t1_z = (t1 - t1[brain].mean()) / t1[brain].std()
    core = ndimage.binary_erosion(brain, iterations=15)
    labels, _ = ndimage.label(core & (flair < -1.0) & (t1_z < -1.0))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.isin(labels, np.argsort(sizes)[-2:]) & (sizes[labels] > 2000)


def main(out: Path) -> None:
    torch.set_num_threads(2)
    cases = {p: load_case(p) for p in PATIENTS}
    case = cases["patient19"]
    header = (
        "| patient 19, FLAIR only | Dice | LTPR | LPPV | L-F1 | predicted mL "
        "| largest lesion found | its median probability |\n|---|---|---|---|---|---|---|---|"
    )
    lines = ["## Patient 19 under four test-time changes", "", header]
    probability, mask = segment(case, case["image"])
    lines.append(score_row("as `segment` runs (tile 64)", case, probability, mask))
    ours = flair_in_brain(case)
    q25, q50, q75 = np.percentile(ours, [25, 50, 75])
    ranks = np.argsort(np.argsort(ours)) / (ours.size - 1)
    for ref in ("patient07", "patient26"):
        theirs = flair_in_brain(cases[ref])
        r25, r50, r75 = np.percentile(theirs, [25, 50, 75])
        image = changed_flair(case, (ours - q50) / (q75 - q25) * (r75 - r25) + r50)
        lines.append(score_row(f"median and IQR of {ref}", case, *segment(case, image)))
        quantiles = np.interp(ranks, np.linspace(0, 1, theirs.size), np.sort(theirs))
        image = changed_flair(case, quantiles)
        lines.append(score_row(f"histogram of {ref}", case, *segment(case, image)))
    for tile in (32, 48, 96, 128):
        lines.append(score_row(f"tile {tile}", case, *segment(case, case["image"], tile)))
    lines += [
        "",
        "## Lesion voxels found by distance to the lateral ventricles (FLAIR only)",
        "",
        "| patient | distance mm | lesion mL | found | median probability | median FLAIR z |",
        "|---|---|---|---|---|---|",
    ]
    for patient, case in cases.items():
        probability, mask = segment(case, case["image"])
        distance = ndimage.distance_transform_edt(~ventricles(case))
        for lo, hi in DISTANCES_MM:
            inside = case["lesions"] & (distance >= lo) & (distance < hi)
            if inside.any():
                lines.append(
                    f"| {patient} | {lo}-{hi} | {inside.sum() / 1000:.2f} "
                    f"| {mask[inside].mean():.3f} | {np.median(probability[inside]):.3f} "
                    f"| {np.median(case['image'][2][inside]):.2f} |"
                )
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)


def output_file(description: str, what: str) -> Path:
    """The command line's new markdown file; usage errors for it and for missing data or folds."""
    return command_line(description, what).out


def command_line(
    description: str, what: str, switches: dict[str, str] | None = None
) -> argparse.Namespace:
    """``out`` (a new markdown file) and on/off ``switches`` (flag -> help); usage errors for
    ``out`` and for missing data or folds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", type=Path, help=f"markdown file for {what} (new)")
    for flag, text in (switches or {}).items():
        parser.add_argument(flag, action="store_true", help=text)
    args = parser.parse_args()
    missing = [str(DATA / p) for p in PATIENTS if not (DATA / p / "flair.nii.gz").is_file()]
    missing += [FOLD.format(p) for p in PATIENTS if not Path(FOLD.format(p)).is_file()]
    if missing:
        parser.error(f"expected {', '.join(missing)}; run from the repository root")
    if args.out.exists():
        parser.error(f"out: expected a new file, got the existing {args.out}")
    if not args.out.parent.is_dir():
        parser.error(f"out: expected a file in an existing folder, got {args.out}")
    return args


if __name__ == "__main__":
    main(output_file(__doc__.splitlines()[0], "the two tables"))
    sys.exit(0)
