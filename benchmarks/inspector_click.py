"""Time the attention inspector on a 1 mm brain: the first forward pass, then click after click.

The inspector (``napari_fanet.engine.attention_inspection.AttentionInspector``) runs the U-Net's
encoder once over the whole volume, caches the affinities of every FA block, and answers each
further click from the cache: a few row look-ups and one outer product on the cell grid. This
script times exactly the call the dock widget makes in its worker, ``inspect_request``, on the
same request a user's layers give:

1. a 1 mm brain: ``--data DIR`` with ``flair.nii.gz``, ``t1.nii.gz``, ``t2.nii.gz`` (and
   ``brain_mask.nii.gz`` if present; otherwise the non-zero FLAIR voxels are the brain, as for a
   skull-stripped input), or, without ``--data``, a synthetic 182 x 218 x 182 volume (the MNI
   1 mm grid) with an ellipsoidal brain;
2. a model: ``--model FILE``, or by default the shipped ``fanet-seg`` (FA at levels 2 and 4,
   sqrt energy scaling);
3. the first pass (one click, timed), then ``--clicks`` clicks at random brain voxels.

Usage::

    PYTHONPATH=src python benchmarks/inspector_click.py
    PYTHONPATH=src python benchmarks/inspector_click.py \\
        --data /work/shared/data/open-ms-lesjak2017/patient07

It prints a markdown table; the target is a median and maximum click time of at most 1 s.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from napari_fanet.engine.attention_inspection import AttentionInspector
from napari_fanet.engine.prediction_request import PredictionRequest
from napari_fanet.io.layers import LayerVolume
from napari_fanet.io.nifti import load_volume, to_canonical

SHIPPED = Path(__file__).resolve().parents[1] / "src/napari_fanet/weights/fanet-seg.pt"
MNI_1MM = (182, 218, 182)
TARGET_S = 1.0
FILES = {"FLAIR": "flair.nii.gz", "T1": "t1.nii.gz", "T2": "t2.nii.gz"}


def patient_volumes(folder: Path) -> tuple[dict[str, np.ndarray], tuple[float, ...], str]:
    """Canonical (RAS) FLAIR, T1, T2 (and a brain mask if the folder has one) of a patient."""
    arrays, voxel = {}, (1.0, 1.0, 1.0)
    files = dict(FILES)
    if (folder / "brain_mask.nii.gz").is_file():
        files["brain mask"] = "brain_mask.nii.gz"
    for role, name in files.items():
        volume, _ = to_canonical(load_volume(folder / name, name=role))
        arrays[role] = volume.data.astype(np.float32)
        voxel = volume.voxel_size
    return arrays, tuple(float(v) for v in voxel), str(folder)


def synthetic_volumes(seed: int) -> tuple[dict[str, np.ndarray], tuple[float, ...], str]:
    """A 182 x 218 x 182 1 mm volume: an ellipsoidal brain of noise, T1/T2/FLAIR and its mask."""
    rng = np.random.default_rng(seed)
    grid = np.indices(MNI_1MM, dtype=np.float32)
    centre = (np.asarray(MNI_1MM, dtype=np.float32) - 1) / 2
    radii = np.array([70.0, 85.0, 65.0], dtype=np.float32)
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1
    arrays = {
        role: ((rng.standard_normal(MNI_1MM, dtype=np.float32) + 3 + k) * inside)
        for k, role in enumerate(("T1", "T2", "FLAIR"))
    }
    arrays["brain mask"] = inside.astype(np.float32)
    return arrays, (1.0, 1.0, 1.0), f"synthetic {MNI_1MM}"


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="patient folder (flair/t1/t2.nii.gz)")
    parser.add_argument("--model", type=Path, default=SHIPPED, help="FA checkpoint")
    parser.add_argument("--level", type=int, default=None, help="FA level (default: finest)")
    parser.add_argument("--window", type=int, default=None, help="window (default: whole)")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.data is not None and not all((args.data / f).is_file() for f in FILES.values()):
        wanted = ", ".join(FILES.values())
        parser.error(f"--data: expected a folder with {wanted}, got {args.data}")
    if not args.model.is_file():
        parser.error(f"--model: expected a checkpoint file, got {args.model} (not found)")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    arrays, voxel, source = (
        patient_volumes(args.data) if args.data else synthetic_volumes(args.seed)
    )
    shape = next(iter(arrays.values())).shape
    model = args.model
    inputs = {
        role: LayerVolume(role, arrays.get(role), voxel) if role in arrays else None
        for role in ("T1", "T2", "FLAIR", "brain mask")
    }
    request = PredictionRequest("segmentation", inputs, str(model))
    options = {"level": args.level, "window": args.window}
    brain = arrays.get("brain mask", arrays["FLAIR"]) > 0
    candidates = np.argwhere(brain)
    rng = np.random.default_rng(args.seed)
    voxels = candidates[rng.choice(len(candidates), args.clicks + 1, replace=False)]

    inspector = AttentionInspector()
    inspector.load(str(model))  # loading the file is not part of the first pass
    start = time.perf_counter()
    view = inspector.inspect_request(request, tuple(voxels[0]), **options)
    first = time.perf_counter() - start
    times = []
    for v in voxels[1:]:
        start = time.perf_counter()
        view = inspector.inspect_request(request, tuple(v), **options)
        times.append(time.perf_counter() - start)
    if inspector.forward_passes != 1:
        raise RuntimeError(f"clicks reran the network: {inspector.forward_passes} passes")

    median, worst = statistics.median(times), max(times)
    verdict = "yes" if worst <= TARGET_S else "no"
    grid = view.bottleneck_shape[1:]
    print(
        f"#### {source}, shape {shape}, {voxel} mm; FA level {view.level} "
        f"({view.cell_size}-voxel cells, grid {grid}); "
        f"{'whole volume' if view.whole_volume else f'window {view.window_shape}'}; "
        f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}\n"
    )
    print("| first pass (s) | clicks | median click (s) | max click (s) | target (s) | met |")
    print("|---:|---:|---:|---:|---:|:---:|")
    print(
        f"| {first:.2f} | {len(times)} | {median:.3f} | {worst:.3f} | <= {TARGET_S:g} | "
        f"{verdict} |"
    )


if __name__ == "__main__":
    main()
