"""``napari-fanet segment`` on copies of one real FLAIR as other pipelines would hand it over.

The shared patients are skull-stripped 1 mm MNI volumes with exact zeros outside the brain.
Users' files differ in grid, orientation, storage and preprocessing. This script writes copies
of one subject's FLAIR that hold the same image in world space (or what a common pipeline step
makes of it), runs the real CLI on each (FLAIR alone, defaults, a separate process each), and
compares each lesion mask with the reference lesions (Dice, on the copy's grid) and with the
mask of the unchanged FLAIR (Dice, on the original grid).

Copies (:func:`variants`):

- ``as given``: the file itself.
- ``reoriented``: axes permuted and one flipped, the affine changed to match (same world image).
- ``int16 x 1000``: scaled to a 99th percentile of 1000 and stored as int16.
- ``padded 24``: 24 zero voxels added on every side, the affine shifted to match.
- ``1 x 1 x 3 mm``: resampled to 3 mm slices (linear), as a thick-slice acquisition.
- ``0.8 mm, cubic``: resampled to 0.8 mm with cubic splines after skull stripping, negative
  values cut: tiny non-zero values fill the background (no brain mask).
- ``0.8 mm, cubic, with a brain mask``: the same FLAIR with the original brain (non-zero voxels)
  resampled to it by nearest neighbour and given as ``--brain-mask``.
- ``background noise``: Rayleigh noise at 3 % of the brain's median added everywhere, as in an
  image that was never skull-stripped (no brain mask).

A copy ``segment`` refuses is listed with the first words of its message.

Usage::

    PYTHONPATH=src python benchmarks/segment_input_variants.py \\
        --subject ../shared/data/open-ms-lesjak2017/patient26 --work /tmp/variants \\
        --model 'runs/ms-loo18/fanet-seg-without-{subject}.pt' \\
        --out benchmarks/results/segment-input-variants/patient26
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to, resample_to_output

#: Seed of the background noise copy.
NOISE_SEED = 0


def reoriented(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """The same world image with array axes ``(x, y, z)`` stored as ``(flipped z, x, y)``."""
    data = np.asarray(image.dataobj)
    depth = data.shape[2]
    # new index (i, j, k) holds old (j, k, depth - 1 - i)
    index_map = np.array(
        [[0, 1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, depth - 1], [0, 0, 0, 1]], dtype=np.float64
    )
    moved = np.flip(np.transpose(data, (2, 0, 1)), 0).copy()
    return nib.Nifti1Image(moved, image.affine @ index_map)


def padded(image: nib.Nifti1Image, width: int) -> nib.Nifti1Image:
    """``width`` zero voxels on every side, the affine shifted so that the world image stays."""
    affine = image.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, float(width))
    return nib.Nifti1Image(np.pad(np.asarray(image.dataobj), width), affine)


def as_int16(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """Scaled so that the 99th percentile of the non-zero voxels is 1000, stored as int16."""
    data = np.asarray(image.dataobj, dtype=np.float64)
    scale = 1000.0 / np.percentile(np.abs(data[data != 0]), 99)
    return nib.Nifti1Image(np.round(data * scale).astype(np.int16), image.affine)


def resampled(image: nib.Nifti1Image, voxel: tuple[float, float, float], order: int):
    """Resampled to ``voxel`` mm (spline ``order``), negative values cut, float32."""
    out = resample_to_output(image, voxel, order=order)
    data = np.clip(np.asarray(out.dataobj, dtype=np.float32), 0, None)
    return nib.Nifti1Image(data, out.affine)


def with_background_noise(image: nib.Nifti1Image, fraction: float) -> nib.Nifti1Image:
    """Rayleigh noise of scale ``fraction`` x the brain's median added to every voxel."""
    data = np.asarray(image.dataobj, dtype=np.float32)
    scale = fraction * float(np.median(data[data != 0]))
    noise = np.random.default_rng(NOISE_SEED).rayleigh(scale, data.shape).astype(np.float32)
    return nib.Nifti1Image(data + noise, image.affine)


#: The copies' names, in the order :func:`variants` makes them.
COPIES = [
    "as given",
    "reoriented",
    "int16 x 1000",
    "padded 24",
    "1 x 1 x 3 mm",
    "0.8 mm, cubic",
    "0.8 mm, cubic, with a brain mask",
    "background noise",
]


def variants(flair: nib.Nifti1Image) -> dict[str, tuple[nib.Nifti1Image, nib.Nifti1Image | None]]:
    """The copies of the module docstring: name -> (FLAIR, brain mask or None)."""
    fine = resampled(flair, (0.8, 0.8, 0.8), 3)
    brain = nib.Nifti1Image((np.asarray(flair.dataobj) != 0).astype(np.uint8), flair.affine)
    made = [
        (flair, None),
        (reoriented(flair), None),
        (as_int16(flair), None),
        (padded(flair, 24), None),
        (resampled(flair, (1.0, 1.0, 3.0), 1), None),
        (fine, None),
        (fine, resample_from_to(brain, fine, order=0)),
        (with_background_noise(flair, 0.03), None),
    ]
    return dict(zip(COPIES, made, strict=True))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two bool arrays (1 when both are empty)."""
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def segment(
    folder: Path, flair: nib.Nifti1Image, mask: nib.Nifti1Image | None, model: str | None = None
) -> str | None:
    """Run the CLI on ``flair`` (and ``mask``) into ``folder/out``; its error line, or None."""
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(flair, folder / "flair.nii.gz")
    cmd = [sys.executable, "-m", "napari_fanet", "segment"]
    cmd += ["--flair", str(folder / "flair.nii.gz")]
    if mask is not None:
        nib.save(mask, folder / "brain_mask.nii.gz")
        cmd += ["--brain-mask", str(folder / "brain_mask.nii.gz")]
    if model:
        cmd += ["--model", model]
    cmd += ["--out", str(folder / "out"), "--device", "cpu", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if "error:" in line]
    return lines[-1] if lines else done.stderr.strip()[-300:]


def run(
    subject: Path, work: Path, model: str | None = None, only: list[str] | None = None
) -> list[dict]:
    """Segment the copies of ``subject``'s FLAIR with ``model`` (default: shipped); a row each.

    ``only`` names the copies to run besides the file as given (default: all).
    """
    flair = nib.load(subject / "flair.nii.gz")
    reference = nib.load(subject / "consensus_lesions.nii.gz")
    rows, first = [], None
    for index, (name, (image, mask)) in enumerate(variants(flair).items()):
        if only is not None and index > 0 and name not in only:
            continue
        folder = work / f"{index:02d}"
        error = segment(folder, image, mask, model)
        row: dict = {"copy": name, "shape": list(image.shape)}
        if error:
            rows.append({**row, "refused": error.split("error: ", 1)[-1]})
            continue
        scores, on_original = score(folder / "out" / "lesion_mask.nii.gz", flair, reference, first)
        first = on_original if first is None else first
        rows.append({**row, **scores})
    return rows


def score(
    path: Path,
    flair: nib.Nifti1Image,
    reference: nib.Nifti1Image,
    first: np.ndarray | None,
) -> tuple[dict, np.ndarray]:
    """Scores of the lesion mask at ``path`` and the mask on ``flair``'s grid.

    ``first`` is the mask of the unchanged file on that grid (None: this is it).
    """
    result = nib.load(path)
    called = np.asarray(result.dataobj) > 0
    truth = np.asarray(resample_from_to(reference, result, order=0).dataobj) > 0
    on_original = np.asarray(resample_from_to(result, flair, order=0).dataobj) > 0
    voxel_ml = abs(np.linalg.det(result.affine[:3, :3])) / 1000.0
    scores = {
        "dice_reference": dice(called, truth),
        "dice_as_given": dice(on_original, on_original if first is None else first),
        "lesion_ml": float(called.sum() * voxel_ml),
        "reference_ml": float(truth.sum() * voxel_ml),
    }
    return scores, on_original


def table(rows: list[dict], subject: str) -> str:
    """Markdown table of :func:`run`'s rows."""
    lines = [
        f"## `napari-fanet segment --flair` on copies of {subject}'s FLAIR "
        "(defaults, FLAIR alone)",
        "",
        "| copy | array | Dice with the reference lesions | Dice with the mask of the file as "
        "given | lesion mL (reference) | refused |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        shape = " x ".join(map(str, r["shape"]))
        if "refused" in r:
            lines.append(f"| {r['copy']} | {shape} | | | | {r['refused']} |")
            continue
        lines.append(
            f"| {r['copy']} | {shape} | {r['dice_reference']:.3f} | {r['dice_as_given']:.3f} | "
            f"{r['lesion_ml']:.2f} ({r['reference_ml']:.2f}) | |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subject", type=Path, required=True, help="flair + consensus_lesions")
    parser.add_argument("--work", type=Path, required=True, help="folder for the copies")
    parser.add_argument("--out", type=Path, help="write table.md and rows.json here")
    parser.add_argument(
        "--model",
        help="checkpoint for segment --model (default: the shipped fanet-seg); {subject} is "
        "replaced by the subject folder's name, for leave-one-out folds",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="COPY", help="run only these copies (and the file as given)"
    )
    args = parser.parse_args(argv)
    for name in ("flair.nii.gz", "consensus_lesions.nii.gz"):
        if not (args.subject / name).is_file():
            parser.error(f"--subject must hold {name}; {args.subject / name} does not exist")
    model = args.model.format(subject=args.subject.name) if args.model else None
    if model and not Path(model).is_file():
        parser.error(f"--model {model} does not exist")
    names = COPIES
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"--only takes copies among {names}; got {unknown}")
    rows = run(args.subject, args.work, model, args.only)
    text = table(rows, args.subject.name) + (f"\nModel: `{model}`.\n" if model else "")
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "table.md").write_text(text)
        (args.out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
