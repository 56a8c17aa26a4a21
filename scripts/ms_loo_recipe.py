r"""Train the MS segmentation recipe leave-one-out on real patients plus randomised simulations.

The recipe behind the shipped ``fanet-seg`` and ``unet-seg`` (see their model cards):

1. each real patient enters training as its original scan plus ``--copies`` re-acquired copies:
   every channel goes through the randomised simulator's scanner model
   (:func:`napari_fanet.simulation.scanner_artefacts.acquire`: bias field, blur, thick-slice 2D
   acquisition, Rician or Gaussian noise, gamma, scaling and clipping), so the network sees
   the patients as other scanners and protocols would show them; ``--thick-copies`` more
   copies always have a thick-slice 2D FLAIR, cut along ``--thick-axis``; ``--insert-copies``
   more copies first get ``--insert-lesions`` small synthetic lesions in their white matter,
   labelled (:mod:`napari_fanet.simulation.lesion_insertion`), so that small lesions are seen
   on real anatomy, texture and noise;
2. ``--n-sims`` domain-randomised 1 mm simulated subjects (``napari-fanet simulate --task ms
   --family randomised --voxel-size 1 1 1``) add lesion loads, shapes and contrasts the
   patients lack;
3. ``napari-fanet train --modality-dropout`` fine-tunes the model from ``--init-dir/MODEL.pt``
   (default ``benchmarks/results/ms-loo/init/``: the 2 mm weights trained on simulations only,
   as first shipped), one run per held-out patient ("without-<patient>") and, with ``--final``,
   one on all patients ("without-none"): the model that ships. Never start from the shipped
   ``fanet-seg.pt``: it was trained on all the patients, so a leave-one-out run started from it
   would have seen its held-out patient.

Only the leave-one-out runs may be scored on the real patients:
``napari-fanet evaluate --task ms --data DATA --models 'WORK/fanet-seg-without-{subject}/last.pt'``
scores each patient with the run that did not see it.

A second stage continues each fold from its own first-stage run (``--init-dir`` = the first
stage's ``--work``; see :func:`starting_weights`), so it stays leave-one-out.

Real scans and everything derived from them stay under ``--work`` (keep it out of git: the
default is under the ignored ``runs/``). Finished runs are skipped and interrupted ones resume,
so the command can be re-run across sessions.

Example::

    python scripts/ms_loo_recipe.py --data ../shared/data/open-ms-lesjak2017 \
        --sims runs/ms-rand1mm --models fanet-seg unet-seg --steps 1000 --final
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from napari_fanet.cli.base import non_negative_int, positive_int
from napari_fanet.cli.train import ATTENTION_SCALES
from napari_fanet.simulation.lesion_insertion import insert_lesions
from napari_fanet.simulation.scanner_artefacts import ArtefactParams, acquire
from napari_fanet.tasks.subjects import LESION_MASK_NAMES, SEG_MODALITIES, find_file


def reacquire(
    patient: Path,
    out: Path,
    seed: int,
    params: ArtefactParams | None = None,
    insert: int = 0,
) -> None:
    """Write ``out`` = ``patient`` with every modality re-acquired by the scanner model.

    ``params`` are the scanner model's ranges (default: :class:`ArtefactParams`'s). With
    ``insert > 0``, that many small synthetic lesions are first put into the patient's white
    matter and its lesion mask (:func:`napari_fanet.simulation.lesion_insertion.insert_lesions`,
    drawn from ``seed + 1``; the patient needs a T1 and a lesion mask), then re-acquired with
    the rest. Without insertion the copy is the same as before insertion existed.
    """
    if (out / "done.json").exists():
        return
    rng = np.random.default_rng(seed)
    flair_img = nib.load(find_file(patient, "flair"))
    mask = np.asarray(flair_img.dataobj, dtype=np.float32) > 0
    images, headers = {}, {}
    for channel in SEG_MODALITIES:
        path = find_file(patient, channel, required=False)
        if path is not None:
            headers[channel] = nib.load(path)
            data = np.asarray(headers[channel].dataobj, dtype=np.float32)
            images[channel] = np.maximum(data, 0.0) * mask
    lesion_img = None
    for name in LESION_MASK_NAMES:
        path = find_file(patient, name, required=False)
        if path is not None:
            lesion_img = nib.load(path)
            break
    lesions = None if lesion_img is None else np.asarray(lesion_img.dataobj, dtype=np.uint8)
    settings: dict = {}
    if insert:
        if lesions is None:
            raise ValueError(f"{patient}: inserting lesions needs the patient's lesion mask")
        images, lesions, inserted = insert_lesions(
            np.random.default_rng(seed + 1),
            images,
            lesions > 0,
            mask,
            flair_img.header.get_zooms()[:3],
            insert,
        )
        settings["inserted_lesions"] = inserted
    out.mkdir(parents=True, exist_ok=True)
    for channel, data in images.items():
        img = headers[channel]
        new, settings[channel] = acquire(
            rng, data, mask, img.header.get_zooms()[:3], channel, params or ArtefactParams()
        )
        nib.save(nib.Nifti1Image(new, img.affine), out / f"{channel}.nii.gz")
    if lesions is not None:
        nib.save(
            nib.Nifti1Image(lesions, lesion_img.affine),
            out / "lesion_mask.nii.gz",
        )
    (out / "done.json").write_text(json.dumps({"source": str(patient), "seed": seed, **settings}))


def thick_flair_params(axis: int) -> ArtefactParams:
    """The scanner model with the FLAIR always acquired in thick 2D slices along ``axis``.

    Clinical 2D FLAIR is mostly axial (axis 2 of the MNI-space patients); the slice thickness,
    T1 and T2 keep the default ranges.
    """
    p_thick = tuple((name, 1.0 if name == "flair" else p) for name, p in ArtefactParams.p_thick)
    return ArtefactParams(p_thick=p_thick, thick_axes=(axis,))


def link(target: Path, link_path: Path) -> None:
    """Symlink ``link_path`` -> ``target`` (replacing an old link)."""
    if link_path.is_symlink():
        link_path.unlink()
    link_path.symlink_to(target.resolve(), target_is_directory=True)


def training_folder(work: Path, held_out: str, real: dict, sims: list[Path]) -> Path:
    """``work/data/without-<held_out>/``: links to the other patients' entries and the sims."""
    folder = work / "data" / f"without-{held_out}"
    folder.mkdir(parents=True, exist_ok=True)
    for patient, entries in real.items():
        if patient == held_out:
            continue
        for entry in entries:
            link(entry, folder / entry.name)
    for sim in sims:
        link(sim, folder / f"sim-{sim.name}")
    return folder


def starting_weights(init_dir: Path, model: str, held_out: str) -> Path | None:
    """The run's starting checkpoint: its own fold's earlier stage if any, else ``MODEL.pt``.

    A fold's earlier stage (``MODEL-without-HELDOUT/last.pt`` or ``MODEL-without-HELDOUT.pt``)
    was trained without the held-out patient, so continuing from it keeps the run leave-one-out.
    """
    for candidate in (
        init_dir / f"{model}-without-{held_out}" / "last.pt",
        init_dir / f"{model}-without-{held_out}.pt",
        init_dir / f"{model}.pt",
    ):
        if candidate.is_file():
            return candidate
    return None


def finished(run: Path) -> bool:
    """True when ``run/log.jsonl`` records a finished training."""
    log = run / "log.jsonl"
    return log.exists() and any('"event": "done"' in line for line in log.read_text().splitlines())


def prepare_patients(patients: list[Path], args: argparse.Namespace) -> dict[str, list[Path]]:
    """Each patient's training entries: a link to it and its re-acquired copies (made once)."""
    real: dict[str, list[Path]] = {}
    for index, patient in enumerate(patients):
        entries = [args.work / "real" / f"{patient.name}-orig"]
        entries[0].parent.mkdir(parents=True, exist_ok=True)
        link(patient, entries[0])
        for copy in range(args.copies):
            out = args.work / "real" / f"{patient.name}-acq{copy}"
            reacquire(patient, out, seed=1000 * (index + 1) + copy)
            entries.append(out)
        for copy in range(args.thick_copies):
            out = args.work / "real" / f"{patient.name}-thick{copy}"
            params = thick_flair_params(args.thick_axis)
            reacquire(patient, out, seed=1000 * (index + 1) + 500 + copy, params=params)
            entries.append(out)
        for copy in range(args.insert_copies):
            out = args.work / "real" / f"{patient.name}-insert{copy}"
            reacquire(
                patient, out, seed=1000 * (index + 1) + 700 + copy, insert=args.insert_lesions
            )
            entries.append(out)
        real[patient.name] = entries
    return real


def main(argv: list[str] | None = None) -> int:
    """Re-acquire the patients, then train every (model, held-out patient) run not done yet."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="real patients, one folder each")
    parser.add_argument("--sims", type=Path, required=True, help="randomised simulated subjects")
    parser.add_argument("--n-sims", type=int, default=8)
    parser.add_argument(
        "--copies", type=non_negative_int, default=3, help="re-acquired copies per patient"
    )
    parser.add_argument(
        "--thick-copies",
        type=non_negative_int,
        default=0,
        help="more copies per patient whose FLAIR is always a thick-slice 2D acquisition",
    )
    parser.add_argument(
        "--insert-copies",
        type=non_negative_int,
        default=0,
        help="more copies per patient with --insert-lesions small synthetic lesions put into "
        "its white matter (labelled) before the re-acquisition; needs each patient's T1",
    )
    parser.add_argument(
        "--insert-lesions",
        type=positive_int,
        default=30,
        help="lesions per --insert-copies copy (default 30)",
    )
    parser.add_argument(
        "--thick-axis",
        type=int,
        default=2,
        choices=(0, 1, 2),
        help="voxel axis the --thick-copies' FLAIR slices cut (2: axial for MNI-space data)",
    )
    parser.add_argument("--models", nargs="+", default=["fanet-seg"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/ms-loo"))
    parser.add_argument("--final", action="store_true", help="also train on all patients")
    parser.add_argument("--only", nargs="*", default=None, help="held-out names to run")
    parser.add_argument(
        "--init-dir",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "benchmarks/results/ms-loo/init",
        help="starting weights: MODEL-without-HELDOUT/last.pt or MODEL-without-HELDOUT.pt (a "
        "previous stage of the same fold, e.g. another --work) if present, else MODEL.pt, "
        "which must never have seen a real patient",
    )
    parser.add_argument("--p-lesion", type=float, default=0.5, help="train --p-lesion")
    parser.add_argument("--seed", type=int, default=0, help="train --seed")
    parser.add_argument("--blob-weight", type=float, default=0.0, help="train --blob-weight")
    parser.add_argument(
        "--lesion-contrast",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="train --lesion-contrast",
    )
    parser.add_argument(
        "--attention-levels",
        nargs="+",
        default=None,
        help="train --attention-levels: grow the starting FA-Net's attention to these levels",
    )
    parser.add_argument(
        "--attention-scale", choices=tuple(ATTENTION_SCALES), help="train --attention-scale"
    )
    args = parser.parse_args(argv)

    for name in ("data", "sims", "init_dir"):
        if not getattr(args, name).is_dir():
            parser.error(
                f"--{name.replace('_', '-')}: expected a folder, got {getattr(args, name)}"
            )
    patients = sorted(p for p in args.data.iterdir() if p.is_dir())
    held_outs = [p.name for p in patients] + (["none"] if args.final else [])
    if args.only:
        held_outs = [h for h in held_outs if h in args.only]
    inits = {}  # every run's starting weights are checked before any work starts
    for model in args.models:
        for held_out in held_outs:
            inits[model, held_out] = starting_weights(args.init_dir, model, held_out)
            if inits[model, held_out] is None:
                parser.error(
                    f"--init-dir: expected {args.init_dir / f'{model}.pt'} (starting weights of "
                    f"{model}), not found"
                )
    try:
        real = prepare_patients(patients, args)
    except ValueError as exc:
        parser.error(str(exc))
    sims = sorted(p for p in args.sims.iterdir() if p.is_dir())[: args.n_sims]
    for model in args.models:
        for held_out in held_outs:
            init = inits[model, held_out]
            run = args.work / f"{model}-without-{held_out}"
            if finished(run):
                print(f"{run}: done, skipped", flush=True)
                continue
            data = training_folder(args.work, held_out, real, sims)
            cmd = [
                "napari-fanet",
                "train",
                "--data",
                str(data),
                "--init",
                str(init),
                "--steps",
                str(args.steps),
                "--batch-size",
                "2",
                "--patch-size",
                "64",
                "64",
                "64",
                "--lr",
                str(args.lr),
                "--seed",
                str(args.seed),
                "--val-every",
                "0",
                "--modality-dropout",
                "--p-lesion",
                str(args.p_lesion),
                "--device",
                "cpu",
                "--threads",
                str(args.threads),
                "--out",
                str(run),
            ]
            if args.attention_levels:
                cmd += ["--attention-levels", *args.attention_levels]
            if args.attention_scale:
                cmd += ["--attention-scale", args.attention_scale]
            if args.blob_weight:
                cmd += ["--blob-weight", str(args.blob_weight)]
            if args.lesion_contrast:
                cmd += ["--lesion-contrast", *map(str, args.lesion_contrast)]
            if (run / "last.pt").exists():
                cmd.append("--resume")
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
