"""Write simulated subjects to disk in the layout the training engine reads.

See the package docstring (:mod:`napari_fanet.simulation`) for the layout and the seed
convention. All NIfTI files go through :func:`napari_fanet.io.nifti.save_volume` (atomic
writes) with the subject's RAS affine; JSON files are written atomically too. ``dataset.json`` is
written last, so a folder without it is an interrupted run.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_fanet.io.atomic import atomic_write
from napari_fanet.simulation.ms_phantom import MSSubject, simulate_ms_subject
from napari_fanet.simulation.qsm_phantom import QSMSubject, simulate_qsm_subject
from napari_fanet.simulation.template import check_voxel_size, mni_grid

logger = logging.getLogger(__name__)

FORMAT = "napari-fanet-simulation"
FORMAT_VERSION = 1
TASKS = ("qsm", "ms")
#: Generator families per task: ``phantom`` (the original phantoms); for MS, the
#: domain-randomised ``randomised`` family (:mod:`.ms_randomised`), ``randomised-v2``, its
#: generator version 2 (uniform, sharp-edged confluent lesions; ``fanet-seg``'s stages 1-3), and
#: ``randomised-v4``, its version 4 (regional bright grey matter; stage 6, not shipped),
#: ``randomised-v5``, its version 5 (version 4 plus atrophy: enlarged lateral ventricles),
#: ``randomised-v6``, its version 6 (version 4 plus a fine texture over tissue and lesions),
#: ``randomised-v7``, its version 7 (version 4 with smaller discrete lesions, down to 2 mm);
#: for QSM, the ``fullrange``
#: training family (:data:`.qsm_families.FULL_RANGE`: extra sources over the whole physical
#: range of susceptibility, B0 tilts up to 30 degrees) and the ``chain`` family (:mod:`.qsm_chain`:
#: full-range phantoms whose local field is the phase chain's estimate from simulated GRE phase,
#: with the chain's default background removal), plus ``chain-vsharp``, the same with V-SHARP
#: (the default until 2026-12-05, which the first two stages of ``fanet-qsm-phase`` used).
FAMILIES = {
    "qsm": ("phantom", "fullrange", "chain", "chain-vsharp"),
    "ms": ("phantom", "randomised", *(f"randomised-v{v}" for v in (2, 4, 5, 6, 7))),
}
#: First subject seed of each split; subject ``i`` of a dataset made with ``seed`` uses
#: ``seed + i``, so splits stay disjoint for datasets of up to 10 000 subjects.
SPLIT_SEEDS = {"train": 0, "val": 10_000, "test": 20_000, "sample": 90_000}
#: Files of one subject: name -> (stored dtype, description).
FILES: dict[str, dict[str, tuple[str, str]]] = {
    "qsm": {
        "local_field": ("float32", "local field in ppm of B0, 0 outside the brain mask"),
        "chi": ("float32", "reference susceptibility in ppm, 0 outside the brain mask"),
        "magnitude": ("float32", "brain-extracted GRE magnitude, arbitrary units"),
        "brain_mask": ("uint8", "brain mask, 0/1"),
    },
    "ms": {
        "t1": ("int16", "T1-weighted image, integer units (WM near 1000), skull-stripped"),
        "t2": ("int16", "T2-weighted image, integer units (WM near 1000), skull-stripped"),
        "flair": ("int16", "FLAIR image, integer units (WM near 1000), skull-stripped"),
        "lesion_mask": ("uint8", "ground-truth lesions, 0/1"),
        "brain_mask": ("uint8", "brain mask, 0/1"),
        "wm_mask": ("uint8", "white matter, 0/1: (wm_prob >= 0.5) or lesion"),
        "wm_prob": ("float32", "white-matter probability in [0, 1], in steps of 1/256"),
    },
}
_SUBJECT_DIR = re.compile(r"^sub-\d{4,}$")


@dataclass(frozen=True)
class SubjectWritten:
    """Progress event of :func:`iter_simulate_dataset`: subject ``index`` of ``total`` written."""

    index: int
    total: int
    seed: int
    folder: Path


def check_task(task: str) -> str:
    """Return ``task`` if it is ``"qsm"`` or ``"ms"``; ``ValueError`` otherwise."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def split_seed(split: str, index: int = 0) -> int:
    """Seed of subject ``index`` of a split under the convention of :data:`SPLIT_SEEDS`."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_SEEDS)}, got {split!r}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be a non-negative integer, got {index!r}")
    return SPLIT_SEEDS[split] + int(index)


def check_family(task: str, family: str) -> str:
    """Return ``family`` if ``task`` has it (:data:`FAMILIES`); ``ValueError`` otherwise."""
    if family not in FAMILIES[check_task(task)]:
        raise ValueError(
            f"family must be one of {', '.join(FAMILIES[task])} for task {task}, got {family!r}"
        )
    return family


def _ms_phantom(seed: int, voxel_size, noise: bool) -> MSSubject:
    return simulate_ms_subject(seed, voxel_size, noise=noise)


def _ms_randomised_version(params_name: str | None):
    """The generator of one ``randomised`` family (the simulator is imported lazily).

    ``params_name`` names the family's ranges in :mod:`.ms_randomised`; ``None``: the current
    defaults.
    """

    def generate(seed: int, voxel_size, noise: bool) -> MSSubject:
        import napari_fanet.simulation.ms_randomised as ms_randomised

        params = None if params_name is None else getattr(ms_randomised, params_name)
        return ms_randomised.simulate_randomised_ms_subject(
            seed, voxel_size, noise=noise, params=params
        )

    return generate


def _qsm_phantom(seed: int, voxel_size, noise: bool) -> QSMSubject:
    return simulate_qsm_subject(seed, voxel_size, noise=noise, params=None)


def _qsm_fullrange(seed: int, voxel_size, noise: bool) -> QSMSubject:
    from napari_fanet.simulation.qsm_families import FULL_RANGE

    return simulate_qsm_subject(seed, voxel_size, noise=noise, params=FULL_RANGE)


def _qsm_chain(seed: int, voxel_size, noise: bool) -> QSMSubject:
    from napari_fanet.simulation.qsm_chain import simulate_chain_qsm_subject

    return simulate_chain_qsm_subject(seed, voxel_size, noise=noise)


def _qsm_chain_vsharp(seed: int, voxel_size, noise: bool) -> QSMSubject:
    from napari_fanet.simulation.qsm_chain import simulate_chain_qsm_subject

    return simulate_chain_qsm_subject(seed, voxel_size, noise=noise, background="vsharp")


#: The generator of each (task, family) of :data:`FAMILIES`.
_GENERATORS = {
    ("ms", "phantom"): _ms_phantom,
    ("ms", "randomised"): _ms_randomised_version(None),
    ("ms", "randomised-v2"): _ms_randomised_version("VERSION_2"),
    ("ms", "randomised-v4"): _ms_randomised_version("VERSION_4"),
    ("ms", "randomised-v5"): _ms_randomised_version("VERSION_5"),
    ("ms", "randomised-v6"): _ms_randomised_version("VERSION_6"),
    ("ms", "randomised-v7"): _ms_randomised_version("VERSION_7"),
    ("qsm", "phantom"): _qsm_phantom,
    ("qsm", "fullrange"): _qsm_fullrange,
    ("qsm", "chain"): _qsm_chain,
    ("qsm", "chain-vsharp"): _qsm_chain_vsharp,
}


def simulate_subject(
    task: str,
    seed: int,
    voxel_size: float | Sequence[float] = 2.0,
    *,
    noise: bool = True,
    family: str = "phantom",
) -> QSMSubject | MSSubject:
    """Simulate one subject of ``task`` ("qsm" or "ms") and ``family`` from ``seed``."""
    return _GENERATORS[(task, check_family(task, family))](seed, voxel_size, noise)


def _subject_arrays(subject: QSMSubject | MSSubject) -> dict[str, np.ndarray]:
    if isinstance(subject, QSMSubject):
        return {
            "local_field": subject.local_field,
            "chi": subject.chi,
            "magnitude": subject.magnitude,
            "brain_mask": subject.mask,
        }
    return {
        "t1": subject.t1,
        "t2": subject.t2,
        "flair": subject.flair,
        "lesion_mask": subject.lesion_mask,
        "brain_mask": subject.brain_mask,
        "wm_mask": subject.wm_mask,
        # Quantised to 1/256 (exact in float32) so that the file compresses well.
        "wm_prob": np.round(subject.wm_prob * 256.0) / 256.0,
    }


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, atomically."""
    text = json.dumps(payload, indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), suffix=".json")


def write_subject(subject: QSMSubject | MSSubject, folder: str | Path) -> list[Path]:
    """Write one subject's NIfTI files and ``meta.json`` into ``folder`` (created if needed).

    Returns
    -------
    list of Path
        The written files.
    """
    from napari_fanet.io.nifti import save_volume

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    task = "qsm" if isinstance(subject, QSMSubject) else "ms"
    written = []
    for name, array in _subject_arrays(subject).items():
        dtype = FILES[task][name][0]
        written.append(
            save_volume(folder / f"{name}.nii.gz", np.asarray(array), subject.affine, dtype=dtype)
        )
    meta = {"subject": folder.name, **subject.meta, "files": sorted(p.name for p in written)}
    written.append(write_json(folder / "meta.json", meta))
    return written


def prepare_output_dir(out: str | Path, *, overwrite: bool = False) -> Path:
    """Create ``out``, or check that it may be written into.

    An existing non-empty folder is refused unless ``overwrite``; with ``overwrite`` its
    ``dataset.json`` is removed first (so an interrupted rewrite is recognisable) and subject
    folders are replaced one by one. Other files are left alone.

    Raises
    ------
    FileExistsError
        If ``out`` is a file, or a non-empty folder and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output path {out} exists and is not a folder")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries and not overwrite:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise FileExistsError(
                f"output folder {out} is not empty ({len(entries)} entries: {shown}); "
                "choose an empty folder or pass --overwrite (overwrite=True) to replace it"
            )
        (out / "dataset.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _remove_stale_subjects(out: Path, keep: set[str]) -> None:
    """Delete subject folders of an earlier run (``sub-NNNN`` with a meta.json) not in ``keep``."""
    for path in sorted(out.iterdir()):
        if (
            path.is_dir()
            and _SUBJECT_DIR.match(path.name)
            and path.name not in keep
            and (path / "meta.json").is_file()
        ):
            logger.info("removing %s from an earlier run", path)
            shutil.rmtree(path)


def iter_simulate_dataset(
    out: str | Path,
    task: str,
    n_subjects: int,
    seed: int = 0,
    *,
    voxel_size: float | Sequence[float] = 2.0,
    overwrite: bool = False,
    noise: bool = True,
    family: str = "phantom",
) -> Iterator[SubjectWritten]:
    """Simulate and write a dataset, yielding after each subject (close the generator to stop).

    Parameters
    ----------
    out : str or Path
        Output folder (see :func:`prepare_output_dir`).
    task : {"qsm", "ms"}
        Which phantom.
    n_subjects : int
        Number of subjects, at least 1.
    seed : int
        Seed of the first subject; subject ``i`` uses ``seed + i``.
    voxel_size : float or sequence of 3 floats
        Voxel size in mm.
    overwrite : bool
        Allow writing into a non-empty folder.
    noise : bool
        Add noise (False: noise-free data, for tests and debugging).
    family : str
        Generator family (:data:`FAMILIES`): ``"phantom"`` or, for MS, ``"randomised"``.

    Returns
    -------
    Iterator[SubjectWritten]
        One event per subject written; ``dataset.json`` is written after the last one. The
        arguments are checked and the folder prepared when this function is called, before
        the first subject.
    """
    check_family(task, family)
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)):
        raise TypeError(f"n_subjects must be an integer, got {type(n_subjects).__name__}")
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be at least 1, got {n_subjects}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if int(seed) + int(n_subjects) > 2**63:
        raise ValueError(f"seed + n_subjects must be at most 2**63, got seed {seed}")
    vox = check_voxel_size(voxel_size)
    out = prepare_output_dir(out, overwrite=overwrite)
    width = max(4, len(str(n_subjects - 1)))
    names = [f"sub-{i:0{width}d}" for i in range(n_subjects)]
    _remove_stale_subjects(out, set(names))
    return _generate(out, task, names, int(seed), vox, noise, family)


def _generate(
    out: Path,
    task: str,
    names: list[str],
    seed: int,
    vox: tuple[float, float, float],
    noise: bool,
    family: str = "phantom",
) -> Iterator[SubjectWritten]:
    n_subjects = len(names)
    seeds = [seed + i for i in range(n_subjects)]
    for index, (name, subject_seed) in enumerate(zip(names, seeds, strict=True)):
        subject = simulate_subject(task, subject_seed, vox, noise=noise, family=family)
        write_subject(subject, out / name)
        yield SubjectWritten(index, n_subjects, subject_seed, out / name)
    description = dataset_description(task, seed, names, vox, noise=noise, family=family)
    write_json(out / "dataset.json", description)


#: What ``dataset.json`` adds for each task.
_DESCRIPTION_EXTRA = {
    "qsm": {
        "field_units": "ppm of B0",
        "chi_units": "ppm",
        "b0_dir": "per subject in sub-*/meta.json: b0_dir (array axes), b0_dir_world",
    }
}


def dataset_description(
    task: str,
    seed: int,
    subjects: Sequence[str],
    voxel_size: tuple[float, float, float],
    *,
    noise: bool = True,
    family: str = "phantom",
) -> dict[str, Any]:
    """The content of ``dataset.json``."""
    from napari_fanet import __version__

    shape, affine = mni_grid(voxel_size)
    desc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "napari_fanet_version": __version__,
        "task": task,
        "family": family,
        "seed": int(seed),
        "subject_seed_rule": "seed + index (subject i of subjects uses seed + i)",
        "n_subjects": len(subjects),
        "subjects": list(subjects),
        "voxel_size": list(voxel_size),
        "shape": list(shape),
        "affine": np.round(affine, 6).tolist(),
        "orientation": "RAS (array axes = world axes; MNI152 2009 space)",
        "noise": bool(noise),
        "files": {
            name: {"dtype": d, "description": text} for name, (d, text) in FILES[task].items()
        },
        "template": "MNI ICBM152 2009a nonlinear symmetric, 2 mm (see NOTICE-mni152-2009.txt)",
    }
    desc.update(_DESCRIPTION_EXTRA.get(task, {}))
    return desc


def simulate_dataset(
    out: str | Path,
    task: str,
    n_subjects: int,
    seed: int = 0,
    *,
    voxel_size: float | Sequence[float] = 2.0,
    overwrite: bool = False,
    noise: bool = True,
    progress: Callable[[SubjectWritten], None] | None = None,
    family: str = "phantom",
) -> Path:
    """Simulate and write a whole dataset (see :func:`iter_simulate_dataset`).

    Parameters
    ----------
    out, task, n_subjects, seed, voxel_size, overwrite, noise, family
        As in :func:`iter_simulate_dataset`.
    progress : callable, optional
        Called with each :class:`SubjectWritten` event.

    Returns
    -------
    Path
        The ``dataset.json`` file.
    """
    for event in iter_simulate_dataset(
        out,
        task,
        n_subjects,
        seed,
        voxel_size=voxel_size,
        overwrite=overwrite,
        noise=noise,
        family=family,
    ):
        if progress is not None:
            progress(event)
    return Path(out) / "dataset.json"
