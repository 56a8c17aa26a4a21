"""What differs between the two tasks: batches, losses, validation and whole-volume prediction.

The training loop (``train.py``) and the user-facing prediction functions (``predict.py``) call
these, so the CLI, the napari widgets and the tests share one implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_fanet.engine.b0_alignment import Z_AXIS, align_to_b0, fold_b0_sign, rotate_back
from napari_fanet.engine.inference import WindowSettings, predict_volume
from napari_fanet.engine.losses import qsm_loss, segmentation_loss
from napari_fanet.engine.sampling import (
    augment_seg,
    drop_modalities,
    rotate_in_plane,
    sample_qsm_patch,
    sample_seg_patch,
)
from napari_fanet.engine.subjects import QSMSubject, SegSubject
from napari_fanet.metrics import nrmse, segmentation_metrics
from napari_fanet.physics.dipole import dipole_kernel, padded_shape

#: Primary validation metric per task and whether larger is better.
PRIMARY_METRIC = {"segmentation": ("dice", True), "qsm": ("nrmse", False)}
LOSS_PAD_FACTOR = 1.5


# ----------------------------------------------------------------------------- segmentation
def seg_batch(
    subjects: Sequence[SegSubject], rng: np.random.Generator, config: Any
) -> dict[str, torch.Tensor]:
    """A batch ``{"image": (B, 3, *P), "label": (B, *P)}`` of random (augmented) patches.

    With ``config.modality_dropout`` each patch keeps a random input mode's channels
    (:func:`~.sampling.drop_modalities`: FLAIR always, T1 and T2 sometimes) and the others
    are zero, as prediction gives a missing modality.
    """
    images, labels = [], []
    for _ in range(config.batch_size):
        subject = subjects[rng.integers(len(subjects))]
        image, label = sample_seg_patch(subject, rng, config.patch_size, p_lesion=config.p_lesion)
        if config.augment:
            image, label = augment_seg(image, label, rng)
        if getattr(config, "modality_dropout", False):  # after augmenting: zero stays zero
            image, _ = drop_modalities(image, rng)
        images.append(image)
        labels.append(label.astype(np.int64))
    return {
        "image": torch.from_numpy(np.stack(images)),
        "label": torch.from_numpy(np.stack(labels)),
    }


def seg_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Weighted CE + soft Dice of the model on a batch."""
    return segmentation_loss(model(batch["image"]), batch["label"])


def predict_seg_probability(
    model: nn.Module, image: np.ndarray, settings: WindowSettings, **callbacks: Callable
) -> np.ndarray:
    """Lesion probability ``(D, H, W)`` of a normalised ``(3, D, H, W)`` image."""
    logits = predict_volume(model, torch.from_numpy(image)[None], settings, **callbacks)
    return torch.softmax(logits, dim=1)[0, 1].numpy()


def seg_validate(
    model: nn.Module,
    subjects: Sequence[SegSubject],
    settings: WindowSettings,
    *,
    flair_only: bool = False,
) -> dict[str, float]:
    """Mean validation loss, Dice and lesion-wise F1 over whole subjects.

    With ``flair_only`` (models trained with modality dropout) the subjects are also segmented
    from FLAIR alone (T1 and T2 channels zeroed), reported as ``dice_flair`` and ``lf1_flair``;
    the loss and the primary ``dice`` stay those of the subjects' own modalities.
    """
    rows = []
    for s in subjects:
        logits = predict_volume(model, torch.from_numpy(s.image)[None], settings)
        loss = segmentation_loss(logits, torch.from_numpy(s.label.astype(np.int64))[None])
        pred = (torch.softmax(logits, 1)[0, 1].numpy() > 0.5) & s.brain
        m = segmentation_metrics(pred, s.label == 1)
        row = {"val_loss": float(loss), "dice": m["dice"], "lf1": m["lf1"]}
        if flair_only:
            image = s.image.copy()
            image[:2] = 0.0  # channels T1, T2, FLAIR: keep FLAIR only
            logits = predict_volume(model, torch.from_numpy(image)[None], settings)
            pred = (torch.softmax(logits, 1)[0, 1].numpy() > 0.5) & s.brain
            m = segmentation_metrics(pred, s.label == 1)
            row.update(dice_flair=m["dice"], lf1_flair=m["lf1"])
        rows.append(row)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# ----------------------------------------------------------------------------- QSM
def aligned_subject(subject: QSMSubject) -> QSMSubject:
    """The subject resampled so that B0 is along the array's z axis (see ``b0_alignment``)."""
    field, mask, chi, _ = align_to_b0(
        subject.field, subject.mask, subject.b0_dir, subject.voxel_size, subject.chi
    )
    return QSMSubject(subject.name, field, chi, mask, subject.voxel_size, Z_AXIS.copy())


def qsm_scales(subjects: Sequence[QSMSubject]) -> dict[str, float]:
    """Input and output scaling: standard deviations of field and chi inside the masks."""
    field = np.concatenate([s.field[s.mask] for s in subjects])
    chi = np.concatenate([s.chi[s.mask] for s in subjects if s.chi is not None])
    return {"field_scale": float(field.std()), "chi_scale": float(chi.std()), "align_b0": True}


def qsm_batch(
    subjects: Sequence[QSMSubject], rng: np.random.Generator, config: Any, scales: dict
) -> dict[str, torch.Tensor]:
    """A batch of ``(B, 1, *P)`` field, chi and mask patches and each patch's dipole kernel.

    Fields and maps are scaled per subject as prediction scales them
    (:func:`volume_field_scale`), so the network is trained on exactly what it sees at run time.
    """
    fields, chis, masks, kernels = [], [], [], []
    pshape = padded_shape(config.patch_size, LOSS_PAD_FACTOR)
    for _ in range(config.batch_size):
        s = subjects[rng.integers(len(subjects))]
        field, chi, mask = sample_qsm_patch(s, rng, config.patch_size)
        b0 = s.b0_dir
        if config.augment and rng.random() < 0.5:
            (field, chi, mask), b0 = rotate_in_plane([field, chi, mask], b0, rng.uniform(-15, 15))
            mask = (mask > 0.5).astype(np.float32)
        # the network's input and target scales of prediction (see volume_field_scale)
        field_div = volume_field_scale(s.field, s.mask, scales)
        fields.append(field / field_div)
        chis.append(chi / (scales["chi_scale"] * field_div / scales["field_scale"]))
        masks.append(mask)
        kernels.append(dipole_kernel(pshape, s.voxel_size, b0, dtype=torch.float32))
    as_batch = lambda xs: torch.from_numpy(np.stack(xs).astype(np.float32))[:, None]  # noqa: E731
    return {
        "field": as_batch(fields),
        "chi": as_batch(chis),
        "mask": as_batch(masks),
        "dipole": torch.stack(kernels)[:, None],
    }


def qsm_batch_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """QSMnet loss of the model on a batch (scaled units)."""
    return qsm_loss(model(batch["field"]), batch["chi"], batch["mask"], batch["dipole"])


def volume_field_scale(field: np.ndarray, mask: np.ndarray, scales: dict) -> float:
    """The divisor that brings this volume's field into the network's training range.

    The standard deviation of the field inside ``mask`` (ppm), so that every volume reaches the
    network at the spread it was trained on, whatever its scale: a field ``k`` times stronger
    gives the same network input, and the map is multiplied back by ``k``. This makes the
    network path exactly linear in the field for ``k > 0`` (the physics: ``chi`` is linear in
    the field), where training-time scaling augmentation only makes it approximately so.
    Falls back to the training scale ``scales["field_scale"]`` for an all-zero field.
    """
    values = field[mask]
    spread = float(values.std()) if values.size else 0.0
    return spread if np.isfinite(spread) and spread > 0 else float(scales["field_scale"])


def qsm_network_input(
    field: np.ndarray,
    mask: np.ndarray,
    scales: dict,
    b0_dir: Sequence[float],
    voxel_size: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What a QSM network sees: the masked field over its scale, B0-aligned if trained so.

    The field is divided by :func:`volume_field_scale`. The sign of ``b0_dir`` is folded
    (``b0`` and ``-b0`` give the same input; see :func:`~.b0_alignment.fold_b0_sign`).

    Returns the ``(D, H, W)`` float32 network input, the mask in the same frame, and the
    rotation of :func:`~.b0_alignment.align_to_b0` (None when no rotation was needed: the model
    was not trained on aligned data, or ``b0_dir`` already is the array's z axis up to sign).
    """
    rotation = None
    scale = volume_field_scale(field, mask, scales)
    if scales.get("align_b0") and not np.allclose(fold_b0_sign(b0_dir), Z_AXIS):
        field, mask_in, _, rotation = align_to_b0(field, mask, b0_dir, voxel_size)
    else:
        mask_in = mask
    return (field * mask_in / scale).astype(np.float32), mask_in, rotation


def predict_qsm_map(
    model: nn.Module,
    field: np.ndarray,
    mask: np.ndarray,
    scales: dict,
    settings: WindowSettings,
    *,
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    **callbacks: Callable,
) -> np.ndarray:
    """The network's susceptibility ``(D, H, W)`` in ppm from a local field in ppm.

    0 outside ``mask``. When the model was trained on B0-aligned data (``scales["align_b0"]``),
    the field is first rotated so that ``b0_dir`` (array axes, sign folded) is along z, and the
    prediction rotated back. The map is scaled back by the volume's field scale (see
    :func:`volume_field_scale`). No data consistency here: see ``engine.predict``.
    """
    scaled, mask_in, rotation = qsm_network_input(field, mask, scales, b0_dir, voxel_size)
    x = torch.from_numpy(scaled)[None, None]
    gain = scales["chi_scale"] * volume_field_scale(field, mask, scales) / scales["field_scale"]
    out = predict_volume(model, x, settings, **callbacks)[0, 0].numpy() * gain
    if rotation is not None:
        out = rotate_back(out * mask_in, rotation, voxel_size)
    return (out * mask).astype(np.float32)


def qsm_validate(
    model: nn.Module, subjects: Sequence[QSMSubject], settings: WindowSettings, scales: dict
) -> dict[str, float]:
    """Mean validation loss (susceptibility L1 inside the mask, ppm) and NRMSE (%)."""
    rows = []
    for s in subjects:
        chi = predict_qsm_map(
            model, s.field, s.mask, scales, settings, b0_dir=s.b0_dir, voxel_size=s.voxel_size
        )
        l1 = float(np.abs(chi - s.chi)[s.mask].mean())
        rows.append({"val_loss": l1 / scales["chi_scale"], "nrmse": nrmse(chi, s.chi, s.mask)})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
