"""One prediction as the viewer asks for it: named input arrays with voxel sizes, a model, tiling.

The FA-Net widget fills a :class:`PredictionRequest` from layers, shows :meth:`problems` before
anything runs, and calls :meth:`run` in a worker. The checks and the call live here, where the
tests and the CLI reach them without Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .inference import WindowSettings
from .predict import PredictionResult, load_model, reconstruct_qsm, segment

#: Input roles per task; roles in ``OPTIONAL_ROLES`` may be left empty.
TASK_ROLES = {
    "segmentation": ("T1", "T2", "FLAIR", "brain mask"),
    "qsm": ("local field", "brain mask"),
}
OPTIONAL_ROLES = {"segmentation": ("brain mask",), "qsm": ()}
VOXEL_TOLERANCE = 0.01  # relative voxel-size difference tolerated between inputs


@dataclass
class InputArray:
    """One input: the array as napari holds it and its voxel size.

    Parameters
    ----------
    layer : str
        Name of the layer it came from (used in messages).
    data : array-like
        The volume, shape ``(X, Y, Z)``.
    voxel_size : sequence of float
        The layer's scale (mm per voxel), one entry per axis.
    """

    layer: str
    data: np.ndarray
    voxel_size: Sequence[float]


@dataclass
class PredictionRequest:
    """Everything one Segment / Reconstruct run needs.

    Parameters
    ----------
    task : {"segmentation", "qsm"}
    inputs : dict of str to InputArray or None
        By role (:data:`TASK_ROLES`); None for a role the user left empty.
    model : str
        Shipped model name or checkpoint path.
    settings : WindowSettings
        Tile size, overlap, device.
    b0_dir : sequence of 3 float, optional
        QSM only: the main-field direction in the inputs' array axes (default ``(0, 0, 1)``).
    threshold : float
        Segmentation only: probability above which a voxel is a lesion.
    """

    task: str
    inputs: dict[str, InputArray | None]
    model: str
    settings: WindowSettings = field(default_factory=WindowSettings)
    b0_dir: Sequence[float] | None = None
    threshold: float = 0.5

    def problems(self) -> list[str]:
        """Everything that would make :meth:`run` fail, as sentences for the user (empty: ok)."""
        if self.task not in TASK_ROLES:
            return [f"task must be one of {list(TASK_ROLES)}, got {self.task!r}"]
        found: list[str] = []
        present: dict[str, InputArray] = {}
        for role in TASK_ROLES[self.task]:
            item = self.inputs.get(role)
            if item is None:
                if role not in OPTIONAL_ROLES[self.task]:
                    found.append(f"choose a {role} layer")
                continue
            shape = np.shape(item.data)
            if len(shape) != 3:
                found.append(
                    f"{role} (layer {item.layer!r}) is {len(shape)}D with shape {shape}: "
                    "expected a 3D volume"
                )
                continue
            present[role] = item
        if len(present) > 1:
            (ref_role, ref), *others = present.items()
            for role, item in others:
                if np.shape(item.data) != np.shape(ref.data):
                    found.append(
                        f"{role} (layer {item.layer!r}) has shape {np.shape(item.data)} but "
                        f"{ref_role} (layer {ref.layer!r}) has {np.shape(ref.data)}: "
                        "inputs must share one voxel grid"
                    )
                elif not np.allclose(
                    item.voxel_size[-3:], ref.voxel_size[-3:], rtol=VOXEL_TOLERANCE
                ):
                    found.append(
                        f"{role} (layer {item.layer!r}) has voxel size "
                        f"{tuple(np.round(item.voxel_size[-3:], 3))} but {ref_role} has "
                        f"{tuple(np.round(ref.voxel_size[-3:], 3))}: inputs must share one grid"
                    )
        for role, item in present.items():
            if min(item.voxel_size[-3:]) <= 0:
                found.append(f"{role} (layer {item.layer!r}) has a non-positive scale")
            if not np.all(np.isfinite(item.data)):
                found.append(f"{role} (layer {item.layer!r}) contains NaN or Inf values")
        mask = present.get("brain mask")
        if self.task == "qsm" and mask is not None and not np.any(np.asarray(mask.data) > 0.5):
            found.append(f"brain mask (layer {mask.layer!r}) is empty")
        if self.b0_dir is not None and (
            len(self.b0_dir) != 3 or not np.linalg.norm(np.asarray(self.b0_dir, float)) > 0
        ):
            found.append(f"B0 direction must be 3 numbers, not all zero; got {self.b0_dir!r}")
        return found

    def run(
        self,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> PredictionResult:
        """Load the model and predict; raises ValueError listing :meth:`problems` if any."""
        found = self.problems()
        if found:
            raise ValueError("cannot run: " + "; ".join(found))
        model, checkpoint = load_model(self.model)
        arrays = {r: np.asarray(i.data) for r, i in self.inputs.items() if i is not None}
        first = next(i for i in self.inputs.values() if i is not None)
        voxel = tuple(float(v) for v in first.voxel_size[-3:])
        callbacks = {"progress": progress, "should_stop": should_stop}
        if self.task == "segmentation":
            return segment(
                model,
                checkpoint,
                arrays["T1"],
                arrays["T2"],
                arrays["FLAIR"],
                brain_mask=arrays.get("brain mask"),
                voxel_size=voxel,
                threshold=self.threshold,
                settings=self.settings,
                **callbacks,
            )
        return reconstruct_qsm(
            model,
            checkpoint,
            arrays["local field"],
            arrays["brain mask"],
            voxel_size=voxel,
            b0_dir=self.b0_dir,
            settings=self.settings,
            **callbacks,
        )


#: Words in a layer name that suggest a role (all must appear; lower case), first match wins.
_ROLE_HINTS = {
    "T1": (("t1",),),
    "T2": (("t2",),),
    "FLAIR": (("flair",),),
    "local field": (("field",), ("phase",)),
    "brain mask": (("brain", "mask"), ("mask",)),
    "lesion reference": (("lesion", "reference"), ("lesion", "gt"), ("lesion", "truth")),
    "susceptibility reference": (("susceptibility", "reference"), ("chi", "reference"), ("chi",)),
}
_ROLE_EXCLUDE = {"T2": ("flair",), "brain mask": ("lesion", "error"), "local field": ("error",)}


def guess_layer(role: str, layer_names: Sequence[str]) -> str | None:
    """The layer name that most likely plays ``role`` (e.g. ``"FLAIR"``), or None.

    Matches words in names case-insensitively: ``"sub-01_FLAIR"`` is a FLAIR, ``"brain mask"``
    a brain mask, ``"lesion mask (reference)"`` a lesion reference.
    """
    if role not in _ROLE_HINTS:
        raise ValueError(f"role must be one of {list(_ROLE_HINTS)}, got {role!r}")
    lowered = [(name, name.lower()) for name in layer_names]
    excluded = _ROLE_EXCLUDE.get(role, ())
    for words in _ROLE_HINTS[role]:
        for name, low in lowered:
            if all(w in low for w in words) and not any(x in low for x in excluded):
                return name
    return None


def b0_direction_from_metadata(metadata: dict) -> tuple[float, float, float] | None:
    """B0 direction in a layer's array axes, from ``b0_dir_world`` and the NIfTI metadata.

    Layers opened by this plugin hold the RAS+ canonical array and, in ``metadata["nifti"]``,
    its affine; a world (scanner) direction is mapped through that affine. Without an affine,
    ``metadata["b0_dir"]`` (array axes) is used. Returns None when neither is there.
    """
    from ..qsm_kernels import world_to_array_direction

    world = metadata.get("b0_dir_world")
    nifti = metadata.get("nifti") or {}
    affine = nifti.get("canonical_affine") if isinstance(nifti, dict) else None
    if world is not None and affine is not None:
        direction = world_to_array_direction(np.asarray(world, float), np.asarray(affine)[:3, :3])
        return tuple(float(v) for v in direction)
    if metadata.get("b0_dir") is not None:
        return tuple(float(v) for v in metadata["b0_dir"])
    return None
