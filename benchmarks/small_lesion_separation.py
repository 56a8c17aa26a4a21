"""Does a model tell small lesions from other small bright spots of the white matter? (issue 12)

Real white matter holds many small FLAIR-bright spots that are not lesions. For every subject of
``--data`` and input mode, this compares the largest lesion probability of a map (``--maps``,
leave-one-out as for ``benchmarks/ms_postprocessing.py``) inside

- its **small reference lesions**: 26-connected components of ``--sizes LO HI`` voxels, and
- its **bright spots**: components of the same sizes of the white matter whose FLAIR is more
  than ``--contrast Z`` above its surroundings and that touch no reference lesion (within 2
  voxels). White matter: the brightest of three T1 classes
  (:func:`napari_fanet.baselines.lesion_threshold.white_matter_mask`, no dilation, FLAIR's if
  there is no T1), more than 4 mm inside the brain. Contrast: the FLAIR's robust white-matter
  z-score (:func:`~napari_fanet.baselines.lesion_threshold.flair_zscore`) minus its Gaussian
  mean (sigma 3 voxels) over the white matter outside the reference lesions.

Printed per subject: how many of each, the median and 75th percentile of their largest
probability, how many reach 0.5, and the AUC of that probability between the two (the chance
that a small lesion scores above a bright spot; 0.5: the model does not tell them apart).

Usage::

    PYTHONPATH=src:benchmarks python benchmarks/small_lesion_separation.py \\
        --data ../shared/data/open-ms-lesjak2017 --maps runs/maps-loo18 --modes flair
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ms_postprocessing import map_parser, score_every_map
from napari_fanet.baselines.lesion_threshold import (
    flair_white_matter_mask,
    flair_zscore,
    white_matter_mask,
)
from napari_fanet.metrics.segmentation import LESION_STRUCTURE

#: Depth (mm) inside the brain below which no bright spot is counted.
MIN_DEPTH_MM = 4.0
#: Width (voxels) of the Gaussian that gives a spot's surroundings.
SURROUND_SIGMA = 3.0


def auc(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """Chance that a positive scores above a negative (ties count one half); None if empty."""
    if positives.size == 0 or negatives.size == 0:
        return None
    above = (positives[:, None] > negatives[None, :]).mean()
    ties = (positives[:, None] == negatives[None, :]).mean()
    return float(above + 0.5 * ties)


def component_peaks(mask: np.ndarray, probability: np.ndarray, sizes: tuple[int, int]):
    """Largest probability in each 26-connected component of ``mask`` within ``sizes`` voxels.

    Returns
    -------
    labels : np.ndarray
        ``(X, Y, Z)`` component labels.
    peaks : np.ndarray
        ``(n,)`` largest probability per component (all components).
    keep : np.ndarray
        ``(n,)`` bool: the component's size lies in ``sizes`` (inclusive).
    """
    labels, n = ndimage.label(mask, structure=LESION_STRUCTURE)
    index = np.arange(1, n + 1)
    voxels = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peaks = np.asarray(ndimage.maximum(probability, labels, index)) if n else np.zeros(0)
    return labels, peaks, (voxels >= sizes[0]) & (voxels <= sizes[1])


def bright_spots(case, contrast: float) -> np.ndarray:
    """``(X, Y, Z)`` bool: deep white matter more than ``contrast`` above its surroundings."""
    flair = case.images["flair"].data.astype(np.float64)
    vox = case.voxel_size
    if "t1" in case.images:
        wm = white_matter_mask(
            case.images["t1"].data, case.brain, dilation_mm=0.0, voxel_size=vox, fill_holes=False
        )
    else:
        wm = flair_white_matter_mask(flair, case.brain, dilation_mm=0.0, voxel_size=vox)
    depth = ndimage.distance_transform_edt(np.pad(case.brain, 1), sampling=vox)[1:-1, 1:-1, 1:-1]
    wm &= depth > MIN_DEPTH_MM
    z = flair_zscore(flair, case.brain, wm, voxel_size=vox)
    tissue = (wm & ~ndimage.binary_dilation(case.lesions, LESION_STRUCTURE)).astype(np.float64)
    weight = ndimage.gaussian_filter(tissue, SURROUND_SIGMA)
    surround = ndimage.gaussian_filter(z * tissue, SURROUND_SIGMA) / np.maximum(weight, 1e-3)
    return wm & (z - surround > contrast)


def separation(case, probability: np.ndarray, contrast: float, sizes: tuple[int, int]) -> dict:
    """Small reference lesions against bright spots for one map (module docstring)."""
    _, lesion_peaks, small = component_peaks(case.lesions, probability, sizes)
    labels, spot_peaks, sized = component_peaks(bright_spots(case, contrast), probability, sizes)
    near = ndimage.binary_dilation(case.lesions, LESION_STRUCTURE, iterations=2)
    touching = np.zeros(spot_peaks.size + 1, dtype=bool)
    touching[np.unique(labels[near])] = True
    lesions = lesion_peaks[small]
    spots = spot_peaks[sized & ~touching[1:]]

    def summary(values: np.ndarray) -> dict:
        quartiles = np.quantile(values, [0.5, 0.75]).tolist() if values.size else [None, None]
        return {
            "count": int(values.size),
            "median": quartiles[0],
            "p75": quartiles[1],
            "reach_0.5": int((values > 0.5).sum()),
        }

    return {
        "lesions": summary(lesions),
        "spots": summary(spots),
        "auc": auc(lesions, spots),
        "lesion_peaks": lesions.tolist(),
        "spot_peaks": spots.tolist(),
    }


def report(mode: str, rows: dict[str, dict], sizes: tuple[int, int]) -> str:
    """A markdown table of one input mode, with a pooled row."""

    def cell(s: dict) -> str:
        if not s["count"]:
            return "0"
        return f"{s['count']}: {s['median']:.3f} / {s['p75']:.3f}, {s['reach_0.5']} reach 0.5"

    lines = [
        f"### Input mode: {mode}; components of {sizes[0]}-{sizes[1]} voxels",
        "",
        "| subject | small reference lesions: n: median / 75th pct of the largest probability | "
        "bright white-matter spots, no lesion: the same | AUC |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        value = "n/a" if row["auc"] is None else f"{row['auc']:.3f}"
        lines.append(f"| {name} | {cell(row['lesions'])} | {cell(row['spots'])} | {value} |")
    lesions = np.concatenate([np.asarray(r["lesion_peaks"]) for r in rows.values()])
    spots = np.concatenate([np.asarray(r["spot_peaks"]) for r in rows.values()])
    pooled = auc(lesions, spots)
    lines.append(
        f"| **pooled** | {int((lesions > 0.5).sum())} of {lesions.size} reach 0.5 | "
        f"{int((spots > 0.5).sum())} of {spots.size} reach 0.5 | "
        f"{'n/a' if pooled is None else f'{pooled:.3f}'} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = map_parser(__doc__)
    parser.add_argument(
        "--contrast", type=float, default=0.7, metavar="Z",
        help="a spot's FLAIR z-score above its surroundings (default 0.7)",
    )  # fmt: skip
    parser.add_argument(
        "--sizes", type=int, nargs=2, default=(3, 29), metavar=("LO", "HI"),
        help="component sizes in voxels, inclusive (default 3 29)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    sizes = tuple(args.sizes)
    if not (1 <= sizes[0] <= sizes[1]):
        parser.error(f"--sizes: expected 1 <= LO <= HI, got {sizes[0]} {sizes[1]}")
    if not (np.isfinite(args.contrast) and args.contrast > 0):
        parser.error(f"--contrast: expected a number > 0, got {args.contrast}")
    return score_every_map(
        parser,
        args,
        lambda case, probability, _mode: separation(case, probability, args.contrast, sizes),
        lambda mode, rows: report(mode, rows, sizes),
    )


if __name__ == "__main__":
    main()
