"""Training and evaluation subjects read from a folder of NIfTI files.

Layout (what ``napari-fanet simulate`` writes; also the layout for your own data)::

    DATA/
      sub-0000/                    one folder per subject (any name)
        t1.nii.gz  t2.nii.gz  flair.nii.gz  lesion_mask.nii.gz  brain_mask.nii.gz   # MS
        local_field.nii.gz  chi.nii.gz  brain_mask.nii.gz  [meta.json]              # QSM
      sub-0001/ ...

For MS, ``flair`` is required and ``t1``/``t2`` are optional (a missing one becomes an all-zero
channel, which only models trained with modality dropout understand). The lesion mask is
``lesion_mask`` (or ``consensus_lesions``, the name of the Lesjak et al. 2018 release); it
holds 0 (background) and 1 (lesion); a value of 255 marks voxels with no
annotation (sparse scribbles), which the loss ignores. ``brain_mask`` is optional (the non-zero
voxels of the FLAIR are used otherwise). For QSM, the local field is in ppm of B0 and ``chi`` (the
reference susceptibility, ppm) is needed for training and evaluation; ``meta.json`` may give
``b0_dir`` (array axes) or ``b0_dir_world`` (scanner axes); without it B0 is along the scanner's
z axis. Volumes are reoriented to the closest canonical (RAS+) orientation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_fanet.io.b0_direction import array_to_world_direction, world_to_array_direction
from napari_fanet.io.nifti import Volume, check_same_grid, load_volume, to_canonical
from napari_fanet.tasks.losses import IGNORE_INDEX
from napari_fanet.tasks.names import canonical_name
from napari_fanet.tasks.preprocessing import seg_brain_mask, seg_network_image
from napari_fanet.tasks.roles import ROLES, SEG_MODALITIES, SUBJECT_KEY

SEG_REQUIRED = tuple(
    r.file for r in ROLES["segmentation"] if r.channel is not None and not r.dropout_optional
)
#: Accepted file names of the MS lesion mask, first found wins.
LESION_MASK_NAMES = ("lesion_mask", "consensus_lesions")
QSM_REQUIRED = tuple(r.file for r in ROLES["qsm"] if r.required)
EXTENSIONS = (".nii.gz", ".nii")


@dataclass
class SegSubject:
    """One MS subject in canonical orientation.

    Attributes
    ----------
    image : np.ndarray
        ``(3, X, Y, Z)`` float32 network input: T1, T2, FLAIR, each z-scored inside the brain
        (:func:`~.preprocessing.seg_network_image`); a modality the subject lacks is an
        all-zero channel.
    label : np.ndarray or None
        ``(X, Y, Z)`` uint8: 0, 1 or :data:`IGNORE_INDEX`.
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask.
    """

    name: str
    image: np.ndarray
    label: np.ndarray | None
    brain: np.ndarray
    voxel_size: tuple[float, float, float]
    modalities: tuple[str, ...] = SEG_MODALITIES


@dataclass
class QSMSubject:
    """One QSM subject in canonical orientation (field and chi in ppm).

    Attributes
    ----------
    field : np.ndarray
        ``(X, Y, Z)`` float32 local field as read (the task's preprocessing masks and scales
        it, :func:`~.preprocessing.qsm_network_input`).
    chi : np.ndarray or None
        ``(X, Y, Z)`` float32 reference susceptibility, 0 outside the mask.
    mask : np.ndarray
        ``(X, Y, Z)`` bool brain mask.
    b0_dir : np.ndarray
        ``(3,)`` unit main-field direction in array axes.
    """

    name: str
    field: np.ndarray
    chi: np.ndarray | None
    mask: np.ndarray
    voxel_size: tuple[float, float, float]
    b0_dir: np.ndarray


def find_file(folder: Path, stem: str, *, required: bool = True) -> Path | None:
    """``folder/stem.nii.gz`` or ``folder/stem.nii``; ``FileNotFoundError`` if required."""
    for ext in EXTENSIONS:
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    if required:
        raise FileNotFoundError(f"{folder}: expected {stem}.nii.gz or {stem}.nii, found neither")
    return None


def list_subjects(root: str | Path, task: str) -> list[Path]:
    """Sub-folders of ``root`` holding a subject of ``task`` ("segmentation" or "qsm")."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    key = SUBJECT_KEY[canonical_name(task)]
    found = sorted(p for p in root.iterdir() if p.is_dir() and find_file(p, key, required=False))
    if not found:
        raise ValueError(
            f"{root} holds no {task} subjects: expected sub-folders with {key}.nii.gz "
            "(see napari_fanet.tasks.subjects for the layout)"
        )
    return found


def _canonical(vol: Volume) -> tuple[np.ndarray, tuple[float, float, float]]:
    canon, _ = to_canonical(vol)
    return canon.data, tuple(float(v) for v in canon.voxel_size)


def find_lesion_mask(folder: Path, *, required: bool = True) -> Path | None:
    """The lesion mask file of ``folder`` under any of :data:`LESION_MASK_NAMES`."""
    for stem in LESION_MASK_NAMES:
        found = find_file(folder, stem, required=False)
        if found is not None:
            return found
    if required:
        names = " or ".join(f"{n}.nii.gz" for n in LESION_MASK_NAMES)
        raise FileNotFoundError(f"{folder}: expected a lesion mask {names}, found none")
    return None


def load_seg_subject(
    folder: str | Path,
    *,
    require_label: bool = True,
    modalities: tuple[str, ...] | None = None,
) -> SegSubject:
    """Read an MS subject (FLAIR, optional T1/T2, lesion and brain masks) from ``folder``.

    Parameters
    ----------
    folder : str or Path
        Subject folder (layout in the module docstring).
    require_label : bool
        Raise ``FileNotFoundError`` when there is no lesion mask.
    modalities : tuple of str, optional
        Modalities to use (each of :data:`SEG_MODALITIES`, FLAIR included); the others are
        all-zero channels even if their files exist. Default: every modality found.

    Returns
    -------
    SegSubject
        ``image`` ``(3, X, Y, Z)`` with absent modalities zero; ``modalities`` names the present
        ones.
    """
    folder = Path(folder)
    wanted = SEG_MODALITIES if modalities is None else tuple(modalities)
    unknown = [m for m in wanted if m not in SEG_MODALITIES]
    if unknown or not all(m in wanted for m in SEG_REQUIRED):
        raise ValueError(
            f"modalities must be a subset of {SEG_MODALITIES} including 'flair', got {wanted!r}"
        )
    vols = {"flair": load_volume(find_file(folder, "flair"))}
    for m in ("t1", "t2"):
        path = find_file(folder, m, required=False) if m in wanted else None
        if path is not None:
            vols[m] = load_volume(path)
    optional = {
        "lesion_mask": find_lesion_mask(folder, required=require_label),
        "brain_mask": find_file(folder, "brain_mask", required=False),
    }
    for k, path in optional.items():
        if path is not None:
            vols[k] = load_volume(path)
    check_same_grid(vols)
    arrays = {k: _canonical(v)[0] for k, v in vols.items()}
    voxel_size = _canonical(vols["flair"])[1]
    brain = seg_brain_mask(arrays["flair"], arrays.get("brain_mask"))
    present = tuple(m for m in SEG_MODALITIES if m in arrays)
    by_role = {r.name: arrays[r.file] for r in ROLES["segmentation"] if r.file in present}
    image = seg_network_image(by_role, brain)
    label = None
    if "lesion_mask" in arrays:
        raw = np.rint(arrays["lesion_mask"]).astype(np.int64)
        bad = np.setdiff1d(np.unique(raw), [0, 1, IGNORE_INDEX])
        if bad.size:
            raise ValueError(
                f"{folder}: lesion_mask must hold 0, 1 or {IGNORE_INDEX} (unlabelled), "
                f"found {bad[:5].tolist()}"
            )
        label = raw.astype(np.uint8)
    return SegSubject(folder.name, image, label, brain, voxel_size, present)


def _b0_direction(folder: Path, affine: np.ndarray) -> np.ndarray:
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if "b0_dir" in meta:
        b0 = np.asarray(meta["b0_dir"], dtype=np.float64)
    else:
        world = np.asarray(meta.get("b0_dir_world", (0.0, 0.0, 1.0)), dtype=np.float64)
        # direction in array axes: solve R @ b = world with R the affine's linear part
        b0 = world_to_array_direction(world, affine)
    norm = np.linalg.norm(b0)
    if b0.shape != (3,) or not np.isfinite(norm) or norm == 0:
        raise ValueError(f"{folder}/meta.json: b0 direction must be 3 finite numbers, got {b0}")
    return b0 / norm


def load_qsm_subject(folder: str | Path, *, require_reference: bool = True) -> QSMSubject:
    """Read a QSM subject (local field, brain mask, optional reference chi) from ``folder``."""
    folder = Path(folder)
    vols = {k: load_volume(find_file(folder, k)) for k in QSM_REQUIRED}
    chi_path = find_file(folder, "chi", required=require_reference)
    if chi_path is not None:
        vols["chi"] = load_volume(chi_path)
    check_same_grid(vols)
    field_vol = vols["local_field"]
    canon, _ = to_canonical(field_vol)
    b0 = _b0_direction(folder, field_vol.affine)
    # B0 in canonical array axes: the same world vector through the canonical affine
    b0 = world_to_array_direction(array_to_world_direction(b0, field_vol.affine), canon.affine)
    arrays = {k: _canonical(v)[0] for k, v in vols.items()}
    mask = arrays["brain_mask"] > 0.5
    if not mask.any():
        raise ValueError(f"{folder}: brain_mask is empty")
    chi = arrays.get("chi")
    return QSMSubject(
        folder.name,
        arrays["local_field"].astype(np.float32),
        None if chi is None else (chi * mask).astype(np.float32),
        mask,
        tuple(float(v) for v in canon.voxel_size),
        b0,
    )
