"""MS lesion segmentation as a :class:`~.base.Task`.

Inputs T1, T2, FLAIR and an optional brain mask (:data:`~.roles.ROLES`); the network sees the
three images z-scored inside the brain (:func:`~.preprocessing.seg_network_image`) and gives
two-class logits; the lesion probability is the softmax's lesion channel inside the brain.
Trained with weighted cross-entropy + soft Dice (plus, with ``blob_weight``, a per-lesion soft
Dice), validated by Dice, compared with the FLAIR-threshold baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_fanet.baselines import lesion_threshold as lt
from napari_fanet.metrics import label_lesions, segmentation_metrics
from napari_fanet.tasks.base import Infer, Method, Task
from napari_fanet.tasks.cases import EvalCase
from napari_fanet.tasks.lesion_mask import (
    DEFAULT_MIN_EDGE_DISTANCE_MM,
    DEFAULT_MIN_LESION_MM3,
    DEFAULT_SEED_THRESHOLD,
    DEFAULT_THRESHOLD,
    LesionMaskRule,
)
from napari_fanet.tasks.losses import blob_dice_loss, segmentation_loss
from napari_fanet.tasks.preprocessing import (
    NEAR_ZERO_RELATIVE,
    near_zero_residue,
    seg_brain_mask,
    seg_network_image,
)
from napari_fanet.tasks.roles import OPTIONAL_SEG_CHANNELS, ROLES, SEG_CHANNELS
from napari_fanet.tasks.sampling import augment_seg, drop_modalities, sample_seg_patch
from napari_fanet.tasks.subjects import SegSubject, load_seg_subject


def supports_missing_modalities(checkpoint: dict) -> bool:
    """Whether a segmentation checkpoint was trained with modality dropout."""
    return bool((checkpoint.get("extra") or {}).get("modality_dropout", False))


def check_modalities(arrays: Mapping[str, Any], checkpoint: dict) -> None:
    """Refuse a missing FLAIR, or a missing T1/T2 for a model not trained without them.

    Parameters
    ----------
    arrays : mapping
        Inputs by role (``"T1"``, ``"T2"``, ``"FLAIR"``...).
    checkpoint : dict
        The model's checkpoint (``extra["modality_dropout"]``).
    """
    if "FLAIR" not in arrays:
        raise ValueError(f"segmentation needs a FLAIR; got only {sorted(arrays)}")
    missing = [k for k in OPTIONAL_SEG_CHANNELS if k not in arrays]
    if missing and not supports_missing_modalities(checkpoint):
        raise ValueError(
            f"this model needs T1, T2 and FLAIR but {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing: it was not trained with modality "
            "dropout (checkpoint extra['modality_dropout']); give every modality or use a model "
            "trained with --modality-dropout"
        )


#: Without a brain mask, a FLAIR is refused as not skull-stripped when at least this many of
#: its array's six faces are mostly (more than half) non-zero: background reaching the edges.
#: A skull-stripped brain touches a face only where it was cropped (the shared patients: 0 %
#: of every face; 1 mm simulations: at most 1.1 % of one face).
UNSTRIPPED_FACES = 4


def skull_stripping_problem(flair: np.ndarray) -> str | None:
    """Why a FLAIR given without a brain mask does not look skull-stripped, or None.

    Without a brain mask the non-zero FLAIR voxels are the brain, so background noise would be
    normalised and segmented as brain: a FLAIR most voxels of most of whose array faces are
    non-zero (:data:`UNSTRIPPED_FACES`) is refused. (Near-zero resampling residue around a
    skull-stripped brain is left out of the brain instead: :func:`~.preprocessing.seg_brain_mask`,
    :func:`residue_message`.)

    Parameters
    ----------
    flair : np.ndarray
        ``(X, Y, Z)``: the FLAIR given without a brain mask, any intensity scale.

    Returns
    -------
    str or None
        A message saying what was found and what was expected, or None.
    """
    nonzero = np.asarray(flair) != 0
    faces = [nonzero[0], nonzero[-1], nonzero[:, 0], nonzero[:, -1], nonzero[..., 0]]
    faces.append(nonzero[..., -1])
    full = sum(float(face.mean()) > 0.5 for face in faces)
    if full >= UNSTRIPPED_FACES:
        return (
            f"the FLAIR does not look skull-stripped: {full} of the 6 faces of its array are "
            "mostly non-zero (background up to the edges), where a skull-stripped FLAIR is 0 "
            "outside the brain; skull-strip it (e.g. with SynthStrip or HD-BET) or give a "
            "brain mask"
        )
    return None


def residue_message(flair: np.ndarray) -> str | None:
    """What a prediction tells the user when the FLAIR's background holds resampling residue.

    Parameters
    ----------
    flair : np.ndarray
        ``(X, Y, Z)`` FLAIR intensities, given without a brain mask.

    Returns
    -------
    str or None
        None when the background is clean (:func:`~.preprocessing.near_zero_residue`).
    """
    residue = near_zero_residue(flair)
    if residue is None:
        return None
    floor, fraction = residue
    return (
        f"{100 * fraction:.0f} % of the FLAIR's non-zero voxels are nearly zero (|value| below "
        f"{floor:.3g}, {NEAR_ZERO_RELATIVE:g} of its 99th percentile), as around a "
        "skull-stripped image resampled afterwards: the brain is taken as the voxels above "
        "that (cavities filled); give a brain mask to set it yourself"
    )


def check_brain(arrays: Mapping[str, np.ndarray], brain: np.ndarray) -> None:
    """Say what is wrong when the segmentation inputs give no sound brain to normalise.

    Without a brain mask the FLAIR must also look skull-stripped
    (:func:`skull_stripping_problem`: no background up to the array's faces).

    Parameters
    ----------
    arrays : mapping
        The inputs by role (``"FLAIR"`` and maybe ``"brain mask"``).
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask derived from them (:func:`~.preprocessing.seg_brain_mask`).

    Raises
    ------
    ValueError
        An empty brain mask, an all-zero FLAIR, or (without a brain mask) a FLAIR whose
        background reaches the array's faces.
    """
    if brain.any():
        if "brain mask" not in arrays:
            problem = skull_stripping_problem(arrays["FLAIR"])
            if problem:
                raise ValueError(problem)
        return
    if "brain mask" in arrays:
        raise ValueError(
            "brain mask is empty: expected a mask with at least one voxel inside (values > 0.5)"
        )
    raise ValueError(
        "FLAIR is all zeros: expected a skull-stripped FLAIR whose brain voxels are not zero "
        "(without a brain mask the non-zero FLAIR voxels are the brain); check the FLAIR "
        "file or give a brain mask"
    )


class SegmentationTask(Task):
    """MS lesion segmentation: T1, T2, FLAIR (+ brain mask) -> lesion probability and mask."""

    name = "segmentation"
    simulation_name = "ms"
    title = "MS lesion segmentation"
    roles = ROLES["segmentation"]
    grid_role = "FLAIR"
    default_model = "fanet-seg"
    primary_metric = ("dice", True)
    evaluation_metrics = ("dice", "ltpr", "lppv", "lf1", "seconds")
    paired_metrics = ("dice", "lf1")
    prediction_options = (
        "threshold",
        "seed_threshold",
        "min_lesion_mm3",
        "min_edge_distance_mm",
        "mirror",
        "window_shifts",
        "match_roughness",
    )
    ablations: dict[str, dict[str, Any]] = {}  # noqa: RUF012 (read-only class attribute)
    output = "mask"
    channels = SEG_CHANNELS
    lesion_losses = True

    # ------------------------------------------------------------------ inputs
    def brain(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """The ``(X, Y, Z)`` bool brain of inputs by role (brain mask, else non-zero FLAIR)."""
        return seg_brain_mask(arrays["FLAIR"], arrays.get("brain mask"))

    def check_modalities(self, arrays: Mapping[str, Any], checkpoint: dict) -> None:
        """See :func:`check_modalities`."""
        check_modalities(arrays, checkpoint)

    def check_inputs(self, arrays: Mapping[str, Any], checkpoint: dict) -> None:
        """A brain to normalise (:func:`check_brain`), then the modalities the model needs."""
        if "FLAIR" in arrays:
            check_brain(arrays, self.brain(arrays))
        check_modalities(arrays, checkpoint)

    def accepts_missing_modalities(self, checkpoint: dict) -> bool:
        """Whether the model of ``checkpoint`` takes FLAIR without T1 and/or T2."""
        return supports_missing_modalities(checkpoint)

    def absent_channels_message(self, arrays: Mapping[str, Any]) -> str | None:
        """What a prediction without T1 or T2 tells the user; None when every one is there."""
        absent = [k for k in OPTIONAL_SEG_CHANNELS if k not in arrays]
        if not absent:
            return None
        return (
            f"no {' or '.join(absent)}: segmented from "
            f"{' + '.join(k for k in SEG_CHANNELS if k in arrays)} (missing channels zero)"
        )

    def option_problems(self, options: Mapping[str, Any]) -> list[str]:
        """The mask rule's problem (:class:`~.lesion_mask.LesionMaskRule`), if any."""
        try:
            LesionMaskRule(
                options.get("threshold", DEFAULT_THRESHOLD),
                options.get("seed_threshold", DEFAULT_SEED_THRESHOLD),
                options.get("min_lesion_mm3", DEFAULT_MIN_LESION_MM3),
                options.get("min_edge_distance_mm", DEFAULT_MIN_EDGE_DISTANCE_MM),
            )
        except ValueError as exc:
            return [str(exc)]
        return []

    # ------------------------------------------------------------------ pre/postprocessing
    def preprocess(self, images: Mapping[str, np.ndarray], brain: np.ndarray) -> np.ndarray:
        """The ``(3, X, Y, Z)`` network input (:func:`~.preprocessing.seg_network_image`)."""
        return seg_network_image(images, brain)

    def postprocess(self, logits: torch.Tensor, brain: np.ndarray) -> np.ndarray:
        """Lesion probability ``(X, Y, Z)`` of ``(1, 2, X, Y, Z)`` logits, 0 outside the brain."""
        return torch.softmax(logits, dim=1)[0, 1].numpy() * brain

    # ------------------------------------------------------------------ subjects
    def load_subject(self, folder: str | Path) -> SegSubject:
        """See :func:`~.subjects.load_seg_subject`."""
        return load_seg_subject(folder)

    def owns_subject(self, subject: Any) -> bool:
        """Segmentation subjects carry a network ``image``."""
        return hasattr(subject, "image")

    def simulated_subject(
        self, seed: int, voxel_size: Sequence[float], family: str = "phantom"
    ) -> SegSubject:
        """See :func:`~.simulated.simulated_seg_subject`."""
        from napari_fanet.tasks.simulated import simulated_seg_subject

        return simulated_seg_subject(seed, voxel_size, family=family)

    # ------------------------------------------------------------------ training
    def prepare_training(
        self, train: Sequence[Any], val: Sequence[Any], extra: dict, config: Any
    ) -> tuple[list[Any], list[Any]]:
        """Subjects are used as loaded; records modality dropout (prediction checks it)."""
        extra["modality_dropout"] = bool(config.modality_dropout)
        return list(train), list(val)

    def batch(
        self, subjects: Sequence[Any], rng: np.random.Generator, config: Any, extra: dict
    ) -> dict[str, torch.Tensor]:
        """A batch ``{"image": (B, 3, *P), "label": (B, *P)}`` of random (augmented) patches.

        With ``config.modality_dropout`` each patch keeps a random input mode's channels
        (:func:`~.sampling.drop_modalities`: FLAIR always, T1 and T2 sometimes) and the others
        are zero, as prediction gives a missing modality. With ``config.blob_weight > 0`` the
        batch adds ``"blobs"`` (B, *P), each patch's lesions numbered as 26-connected
        components, and ``"blob_weight"``, a scalar tensor, for :meth:`loss`.
        """
        images, labels = [], []
        for _ in range(config.batch_size):
            subject = subjects[rng.integers(len(subjects))]
            image, label = sample_seg_patch(
                subject, rng, config.patch_size, p_lesion=config.p_lesion
            )
            if config.augment:
                image, label = augment_seg(
                    image, label, rng, lesion_contrast=getattr(config, "lesion_contrast", None)
                )
            if getattr(config, "modality_dropout", False):  # after augmenting: zero stays zero
                image, _ = drop_modalities(image, rng)
            images.append(image)
            labels.append(label.astype(np.int64))
        batch = {
            "image": torch.from_numpy(np.stack(images)),
            "label": torch.from_numpy(np.stack(labels)),
        }
        weight = float(getattr(config, "blob_weight", 0.0))
        if weight > 0:
            blobs = [label_lesions(label == 1, min_size=1)[0] for label in labels]
            batch["blobs"] = torch.from_numpy(np.stack(blobs).astype(np.int64))
            batch["blob_weight"] = torch.tensor(weight)
        return batch

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted CE + soft Dice of the model on a batch (+ the weighted per-lesion Dice).

        The per-lesion term (:func:`~.losses.blob_dice_loss`) enters when the batch carries
        ``"blobs"`` (training with ``blob_weight > 0``).
        """
        logits = model(batch["image"])
        loss = segmentation_loss(logits, batch["label"])
        if "blobs" in batch:
            weight = batch["blob_weight"].to(loss.dtype)
            loss = loss + weight * blob_dice_loss(logits, batch["label"], batch["blobs"])
        return loss

    def validate(
        self, subjects: Sequence[Any], infer: Infer, extra: dict, config: Any
    ) -> dict[str, float]:
        """Mean validation loss, Dice and lesion-wise F1 over whole subjects.

        With ``config.modality_dropout`` the subjects are also segmented from FLAIR alone (T1
        and T2 channels zeroed), reported as ``dice_flair`` and ``lf1_flair``; the loss and the
        primary ``dice`` stay those of the subjects' own modalities.
        """
        rows = []
        for s in subjects:
            logits = infer(s.image)
            loss = segmentation_loss(logits, torch.from_numpy(s.label.astype(np.int64))[None])
            pred = (torch.softmax(logits, 1)[0, 1].numpy() > 0.5) & s.brain
            m = segmentation_metrics(pred, s.label == 1)
            row = {"val_loss": float(loss), "dice": m["dice"], "lf1": m["lf1"]}
            if config.modality_dropout:
                image = s.image.copy()
                image[:2] = 0.0  # channels T1, T2, FLAIR: keep FLAIR only
                pred = (torch.softmax(infer(image), 1)[0, 1].numpy() > 0.5) & s.brain
                m = segmentation_metrics(pred, s.label == 1)
                row.update(dice_flair=m["dice"], lf1_flair=m["lf1"])
            rows.append(row)
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    # ------------------------------------------------------------------ evaluation
    def simulated_case(self, seed: int, voxel_size: Sequence[float]) -> EvalCase:
        """A simulated MS subject: T1, T2, FLAIR and brain mask; the lesion mask as reference."""
        from napari_fanet.io.nifti import Volume
        from napari_fanet.simulation.dataset import simulate_subject

        s = simulate_subject(self.simulation_name, int(seed), tuple(voxel_size))
        inputs = {
            k: Volume(np.asarray(getattr(s, k), dtype=np.float32), s.affine)
            for k in ("t1", "t2", "flair", "brain_mask")
        }
        return EvalCase(
            f"seed-{seed}",
            inputs,
            s.lesion_mask.astype(bool),
            s.brain_mask.astype(bool),
            s.voxel_size,
        )

    def tune_baselines(self, cases: Sequence[EvalCase]) -> dict[str, float]:
        """The FLAIR threshold (z-score) that scores best on ``cases``."""
        tuning = [
            {
                "flair": c.inputs["flair"].data,
                "t1": c.inputs["t1"].data,
                "brain_mask": c.mask,
                "lesion_mask": c.reference,
                "voxel_size": c.voxel_size,
            }
            for c in cases
        ]
        best, _ = lt.tune_flair_threshold(tuning)
        return {"flair_z": float(best)}

    def baselines(self, params: dict[str, float]) -> dict[str, Method]:
        """The FLAIR-threshold baseline at ``params["flair_z"]``."""

        def flair_threshold(c: EvalCase) -> np.ndarray:
            wm = lt.white_matter_mask(c.inputs["t1"].data, c.mask, voxel_size=c.voxel_size)
            return lt.flair_threshold_segment(
                c.inputs["flair"].data, c.mask, wm, params["flair_z"], voxel_size=c.voxel_size
            )

        return {"FLAIR threshold": flair_threshold}

    def score(self, prediction: np.ndarray, case: EvalCase) -> dict[str, float]:
        """Dice, lesion-wise TPR, PPV and F1 of a lesion mask."""
        return self.case_scores(segmentation_metrics(prediction, case.reference))

    def case_scores(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Dice, LTPR, LPPV and L-F1 of the comparison's metrics, as floats."""
        return {k: float(metrics[k]) for k in ("dice", "ltpr", "lppv", "lf1")}

    def case_prediction(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The predicted lesion mask as bool."""
        return outputs[self.output].astype(bool)

    def compare(
        self,
        outputs: Mapping[str, np.ndarray],
        reference: np.ndarray,
        mask: np.ndarray | None,
        *,
        min_size: int = 3,
    ) -> Any:
        """The predicted lesion mask against a reference mask (lesions of ``min_size``+ voxels)."""
        from napari_fanet.tasks.comparison import compare_masks

        return compare_masks(outputs[self.output], reference, min_size=min_size)
