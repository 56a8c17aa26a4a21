"""Training configuration: one frozen dataclass, stored in every checkpoint."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

TASK_OF_MODEL_SUFFIX = {"seg": "segmentation", "qsm": "qsm", "qsmnet": "qsm"}


def _is_factor_range(value: Any) -> bool:
    """Whether ``value`` is ``(lo, hi)`` with finite ``0 <= lo <= hi``."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(hi) and 0 <= lo <= hi


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data.

    Parameters
    ----------
    model : str
        Registry name (``fanet-seg``, ``unet-seg``, ``fanet-qsm``, ``qsmnet``...), ignored when
        ``init_checkpoint`` is given (the checkpoint's own model is fine-tuned).
    features : tuple of 5 int
        Backbone width.
    steps : int
        Optimiser steps (iterations) in total.
    batch_size : int
        Patches per step (per process under ``torchrun``).
    patch_size : tuple of 3 int
        Training patch size in voxels.
    lr : float
        Adam learning rate (the paper: 1e-3).
    milestones : tuple of float
        Fractions of ``steps`` where the learning rate is multiplied by ``gamma``.
    gamma : float
        Learning-rate decay factor at each milestone.
    seed : int
        Seed of weights, patch sampling and augmentation.
    val_every : int
        Validate (and save ``best.pt``) every this many steps; 0 validates only at the end.
    device : str
        ``auto | cuda | mps | cpu``.
    amp : bool
        Mixed precision on CUDA.
    augment : bool
        Use augmentation (elastic + intensity for MS, in-plane rotation for QSM).
    p_lesion : float
        Probability that a segmentation patch is centred on a lesion.
    modality_dropout : bool
        Segmentation: train for missing modalities (each patch keeps FLAIR and a random subset
        of T1/T2, the others zeroed; :func:`~.sampling.drop_modalities`). The checkpoint then
        records ``extra["modality_dropout"] = True`` and predicts from FLAIR alone, T1 + FLAIR,
        T2 + FLAIR or all three.
    blob_weight : float
        Segmentation: weight of the per-lesion soft-Dice term
        (:func:`~napari_fanet.tasks.losses.blob_dice_loss`) added to the loss; 0 (default)
        leaves it out.
    lesion_contrast : tuple of 2 float or None
        Segmentation: ``(lo, hi)``, the range of the per-channel factor by which half of the
        patches with lesions have their lesion contrast scaled
        (:func:`~napari_fanet.tasks.sampling.scale_lesion_contrast`); None (default) leaves
        the contrast as it is. Needs ``augment``.
    init_checkpoint : str or None
        Fine-tune from this checkpoint's weights (new optimiser).
    attention_kwargs : dict
        Options of the bottleneck attention (for example ``{"variant": "pure"}``).
    attention_levels : tuple of int or None
        U-Net levels (0-4) that get the attention block; None keeps the model's own (the
        bottleneck, level 4).
    start_temperatures : dict of str to float
        ``{"level": T}``: with ``init_checkpoint``, the learned temperature of the block at that
        level starts at ``T``
        (:func:`~napari_fanet.models.attention_growth.set_start_temperature`); string keys, so
        that the setting survives JSON unchanged.
    """

    model: str = "fanet-seg"
    features: tuple[int, ...] = (8, 16, 32, 64, 128)
    steps: int = 1000
    batch_size: int = 2
    patch_size: tuple[int, int, int] = (64, 64, 64)
    lr: float = 1e-3
    milestones: tuple[float, ...] = (0.5, 0.7, 0.9)
    gamma: float = 0.1
    seed: int = 0
    val_every: int = 100
    device: str = "auto"
    amp: bool = True
    augment: bool = True
    p_lesion: float = 0.5
    modality_dropout: bool = False
    blob_weight: float = 0.0
    lesion_contrast: tuple[float, float] | None = None
    init_checkpoint: str | None = None
    attention_kwargs: dict[str, Any] = field(default_factory=dict)
    attention_levels: tuple[int, ...] | None = None
    start_temperatures: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        if self.attention_levels is not None:
            object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        object.__setattr__(self, "patch_size", tuple(self.patch_size))
        object.__setattr__(self, "milestones", tuple(self.milestones))
        if self.lesion_contrast is not None and _is_factor_range(self.lesion_contrast):
            object.__setattr__(
                self, "lesion_contrast", tuple(float(v) for v in self.lesion_contrast)
            )
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "val_every": self.val_every >= 0,
            "patch_size": len(self.patch_size) == 3 and all(p >= 1 for p in self.patch_size),
            "milestones": all(0 < m < 1 for m in self.milestones),
            "p_lesion": 0 <= self.p_lesion <= 1,
            "blob_weight": math.isfinite(self.blob_weight) and self.blob_weight >= 0,
            "lesion_contrast": self.lesion_contrast is None
            or _is_factor_range(self.lesion_contrast),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid training setting {name}={getattr(self, name)!r}")
        if self.lesion_contrast is not None and not self.augment:
            raise ValueError(
                "lesion_contrast is an augmentation: expected augment=True, got augment=False "
                f"(lesion_contrast={self.lesion_contrast!r})"
            )
        if self.start_temperatures and not self.init_checkpoint:
            raise ValueError(
                "start_temperatures set the temperature of a trained block: expected an "
                f"init_checkpoint, got none (start_temperatures={self.start_temperatures!r})"
            )

    @property
    def task(self) -> str:
        """``"segmentation"`` or ``"qsm"``, from the model name."""
        suffix = self.model.rsplit("-", 1)[-1]
        if suffix not in TASK_OF_MODEL_SUFFIX:
            raise ValueError(f"cannot tell the task of model {self.model!r}")
        return TASK_OF_MODEL_SUFFIX[suffix]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for checkpoints and logs."""
        out = dataclasses.asdict(self)
        for key in ("features", "patch_size", "milestones", "attention_levels", "lesion_contrast"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; expected {sorted(known)}")
        return cls(**data)
