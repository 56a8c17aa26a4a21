"""One prediction as the viewer asks for it: layer volumes by role, a model, tiling.

The FA-Net widget fills a :class:`PredictionRequest` from layers, shows :meth:`problems` before
anything runs, and calls :meth:`run` in a worker. The checks and the call live here, where the
tests and the CLI reach them without Qt.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_fanet.engine.averaged_prediction import check_window_shifts
from napari_fanet.engine.inference import WindowSettings
from napari_fanet.engine.predict import (
    DEFAULT_DC_METHOD,
    MATCH_ROUGHNESS_DEFAULT,
    MIRROR_DEFAULT,
    WINDOW_SHIFTS_DEFAULT,
    PredictionResult,
    load_model,
    predict_task,
    shipped_weights,
    supports_missing_modalities,
)
from napari_fanet.io.b0_direction import B0Direction, b0_direction_problem, parse_numbers
from napari_fanet.io.formatting import format_numbers
from napari_fanet.io.layers import LayerVolume
from napari_fanet.io.nifti import VOXEL_SIZE_RANGE
from napari_fanet.physics.data_consistency import DEFAULT_DC_LAMBDA
from napari_fanet.physics.phase_chain import DEFAULT_BACKGROUND
from napari_fanet.tasks import TASKS, get_task
from napari_fanet.tasks.lesion_mask import (
    DEFAULT_MIN_EDGE_DISTANCE_MM,
    DEFAULT_MIN_LESION_MM3,
    DEFAULT_SEED_THRESHOLD,
    DEFAULT_THRESHOLD,
)
from napari_fanet.tasks.roles import PHASE_ROLES as PHASE_ROLES  # re-exported

#: Input roles per task (:attr:`napari_fanet.tasks.Task.roles`); roles in ``OPTIONAL_ROLES``
#: may be left empty.
TASK_ROLES = {name: task.role_names for name, task in TASKS.items()}
OPTIONAL_ROLES = {name: task.optional_roles() for name, task in TASKS.items()}
VOXEL_TOLERANCE = 0.01  # relative voxel-size difference tolerated between inputs


@dataclass
class PhaseOptions:
    """QSM from multi-echo GRE phase: the ``phase``/``magnitude`` inputs go through the chain.

    The ``phase`` and ``magnitude`` inputs are ``(E, X, Y, Z)`` (echoes first, as napari shows
    an echo slider) or ``(X, Y, Z)`` for one echo; ``brain mask`` is optional (default: Otsu on
    the magnitude). See :func:`napari_fanet.engine.phase_qsm.phase_to_susceptibility`.

    Parameters
    ----------
    te_ms : sequence of float or str
        Echo times in milliseconds, or text as typed (``"4, 8, 12"``).
    b0_tesla : float
        Main field strength in tesla.
    unwrap : {"laplacian", "quality"}
        Spatial unwrapping method.
    background : {"lbv", "vsharp", "pdf"}
        Background field removal method (default the phase chain's, LBV).
    """

    te_ms: Sequence[float] | str
    b0_tesla: float = 3.0
    unwrap: str = "laplacian"
    background: str = DEFAULT_BACKGROUND

    def echo_times_s(self, n_echoes: int) -> np.ndarray:
        """Echo times in seconds for ``n_echoes`` echoes; ValueError says what is wrong."""
        from napari_fanet.physics.echo_unwrap import check_echo_times

        try:
            te = parse_numbers(self.te_ms) if isinstance(self.te_ms, str) else self.te_ms
        except ValueError:
            raise ValueError(
                f"echo times must be numbers in ms such as '4, 8, 12'; got {self.te_ms!r}"
            ) from None
        te = np.asarray(te, dtype=np.float64)
        if te.size and np.nanmin(te) < 0.1:
            raise ValueError(f"echo times are in ms; got {format_numbers(te)} (seconds?)")
        try:
            return check_echo_times(te / 1000.0, n_echoes)
        except ValueError as exc:
            raise ValueError(f"echo times (ms): {exc}") from None


@dataclass
class PredictionRequest:
    """Everything one Segment / Reconstruct run needs.

    Parameters
    ----------
    task : {"segmentation", "qsm"}
    inputs : dict of str to LayerVolume or None
        By role (:data:`TASK_ROLES`); None for a role the user left empty.
    model : str
        Shipped model name or checkpoint path.
    settings : WindowSettings
        Tile size, overlap, device.
    b0_dir : B0Direction or sequence of 3 float, optional
        QSM only: the main-field direction in the inputs' array axes (default ``(0, 0, 1)``).
        Never text: a widget parses what is typed with
        :func:`napari_fanet.io.b0_direction.parse_b0_text` and passes the problem it raises in
        ``field_problems``. Numbers that are not a direction are reported by :meth:`problems`.
    threshold : float
        Segmentation only: probability above which a voxel may be lesion.
    seed_threshold : float or None
        Segmentation only: a lesion (26-connected component above ``threshold``) is kept only
        if one of its voxels is above this (None: every component); see
        :mod:`napari_fanet.tasks.lesion_mask`.
    min_lesion_mm3 : float
        Segmentation only: smallest lesion kept, in mm^3 (0: every component).
    min_edge_distance_mm : float
        Segmentation only: smallest mean distance of a kept lesion's voxels from the outside of
        the brain mask, in mm (0: no such rule).
    mirror : bool
        Segmentation only: average with the left-right mirror image (test-time augmentation,
        twice the network time; see
        :func:`~napari_fanet.engine.averaged_prediction.averaged_logits`).
    window_shifts : int
        Segmentation only: average over this many window grids, each shifted by a fraction of
        a window step (1 to 8; each adds one pass, two with the mirror).
    match_roughness : bool
        Segmentation only: smooth a FLAIR rougher than the model's real training scans first
        (:func:`~napari_fanet.tasks.roughness.match_flair`; no effect when the model records no
        target).
    data_consistency : {"cg", "kspace", "none", "smv"}
        QSM only: how the network's map is made consistent with the field (``"none"``: the
        raw network output); see :mod:`napari_fanet.physics.data_consistency`. ``"smv"``
        (phase input only) matches the total field instead
        (:mod:`napari_fanet.physics.smv_consistency`).
    dc_lambda : float or "auto"
        QSM only: weight of the network's map against the field in data consistency
        (``"auto"``: estimated per case).
    phase : PhaseOptions, optional
        QSM only: start from multi-echo phase (inputs :data:`PHASE_ROLES`); the result's
        outputs add ``field_hz`` (Hz), ``local_field`` (ppm) and ``mask`` (uint8) to ``chi``.
    field_problems : sequence of str
        Problems found while reading the caller's fields (typed text that is not a B0
        direction); :meth:`problems` lists them last.
    """

    task: str
    inputs: dict[str, LayerVolume | None]
    model: str
    settings: WindowSettings = field(default_factory=WindowSettings)
    b0_dir: B0Direction | Sequence[float] | None = None
    threshold: float = DEFAULT_THRESHOLD
    seed_threshold: float | None = DEFAULT_SEED_THRESHOLD
    min_lesion_mm3: float = DEFAULT_MIN_LESION_MM3
    min_edge_distance_mm: float = DEFAULT_MIN_EDGE_DISTANCE_MM
    mirror: bool = MIRROR_DEFAULT
    window_shifts: int = WINDOW_SHIFTS_DEFAULT
    match_roughness: bool = MATCH_ROUGHNESS_DEFAULT
    data_consistency: str = DEFAULT_DC_METHOD
    dc_lambda: float | str = DEFAULT_DC_LAMBDA
    phase: PhaseOptions | None = None
    field_problems: Sequence[str] = ()

    def __post_init__(self) -> None:
        if isinstance(self.b0_dir, str):
            raise TypeError(
                f"b0_dir must be a B0Direction or 3 numbers, not text ({self.b0_dir!r}); "
                "parse typed text with napari_fanet.io.b0_direction.parse_b0_text"
            )
        if self.b0_dir is not None and b0_direction_problem(self.b0_dir) is None:
            self.b0_dir = B0Direction(self.b0_dir)

    def problems(self) -> list[str]:
        """Everything that would make :meth:`run` fail, as sentences for the user (empty: ok)."""
        if self.task not in TASK_ROLES:
            return [f"task must be one of {list(TASK_ROLES)}, got {self.task!r}"]
        task = get_task(self.task)
        if self.phase is not None and task.phase_input:
            return self._phase_problems()
        found: list[str] = []
        present: dict[str, LayerVolume] = {}
        optional = task.optional_roles(
            missing_modalities=task.has_optional_modalities
            and model_accepts_missing_modalities(self.model)
        )
        for role in task.role_names:
            item = self.inputs.get(role)
            if item is None:
                if role not in optional:
                    found.append(f"choose a {role} layer")
                continue
            shape = np.shape(item.data)
            if len(shape) != 3:
                found.append(
                    f"{role} (layer {item.name!r}) is {len(shape)}D with shape {shape}: "
                    "expected a 3D volume"
                )
                continue
            present[role] = item
        if len(present) > 1:
            (ref_role, ref), *others = present.items()
            for role, item in others:
                if np.shape(item.data) != np.shape(ref.data):
                    found.append(
                        f"{role} (layer {item.name!r}) has shape {np.shape(item.data)} but "
                        f"{ref_role} (layer {ref.name!r}) has {np.shape(ref.data)}: "
                        "inputs must share one voxel grid"
                    )
                elif not np.allclose(
                    item.voxel_size()[-3:], ref.voxel_size()[-3:], rtol=VOXEL_TOLERANCE
                ):
                    found.append(
                        f"{role} (layer {item.name!r}) has voxel size "
                        f"{format_numbers(item.voxel_size()[-3:])} but {ref_role} has "
                        f"{format_numbers(ref.voxel_size()[-3:])}: inputs must share one grid"
                    )
        for role, item in present.items():
            low, high = VOXEL_SIZE_RANGE
            if min(item.voxel_size()[-3:]) <= 0:
                found.append(
                    f"{role} (layer {item.name!r}) has the scale "
                    f"{format_numbers(item.voxel_size()[-3:])}: expected positive voxel sizes (mm)"
                )
            elif not all(low <= v <= high for v in item.voxel_size()[-3:]):
                found.append(
                    f"{role} (layer {item.name!r}) has the scale "
                    f"{format_numbers(item.voxel_size()[-3:])}: expected voxel sizes between "
                    f"{low:g} and {high:g} mm"
                )
            if not np.all(np.isfinite(item.data)):
                found.append(f"{role} (layer {item.name!r}) contains NaN or Inf values")
        mask = present.get("brain mask")
        mask_required = "brain mask" not in optional
        if mask_required and mask is not None and not np.any(np.asarray(mask.data) > 0.5):
            found.append(f"brain mask (layer {mask.name!r}) is empty")
        options = {name: getattr(self, name) for name in task.prediction_options}
        if "window_shifts" in options:
            try:
                check_window_shifts(options["window_shifts"])
            except ValueError as exc:
                found.append(str(exc))
        return found + self._b0_problems() + task.option_problems(options)

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
        task = get_task(self.task)
        if self.phase is not None and task.phase_input:
            return self._run_phase(model, checkpoint, progress, should_stop)
        arrays = {r: np.asarray(i.data) for r, i in self.inputs.items() if i is not None}
        first = next(i for i in self.inputs.values() if i is not None)
        voxel = tuple(float(v) for v in first.voxel_size()[-3:])
        return predict_task(
            task,
            model,
            checkpoint,
            arrays,
            voxel_size=voxel,
            settings=self.settings,
            progress=progress,
            should_stop=should_stop,
            **{name: getattr(self, name) for name in task.prediction_options},
        )

    def _phase_problems(self) -> list[str]:
        """:meth:`problems` for :class:`PhaseOptions` requests."""
        from napari_fanet.physics.background import BACKGROUND_METHODS
        from napari_fanet.physics.unwrap import UNWRAP_METHODS

        opts, found = self.phase, []
        phase, mag, mask = (self.inputs.get(r) for r in PHASE_ROLES)
        for role, item in (("phase", phase), ("magnitude", mag)):
            if item is None:
                found.append(f"choose a {role} layer")
            elif np.ndim(item.data) not in (3, 4):
                found.append(
                    f"{role} (layer {item.name!r}) has shape {np.shape(item.data)}: expected "
                    "(echoes, X, Y, Z) or one echo (X, Y, Z)"
                )
            elif not np.all(np.isfinite(item.data)):
                found.append(f"{role} (layer {item.name!r}) contains NaN or Inf values")
        if found:
            return found
        if np.shape(mag.data) != np.shape(phase.data):
            found.append(
                f"magnitude (layer {mag.name!r}) has shape {np.shape(mag.data)} but phase "
                f"(layer {phase.name!r}) has {np.shape(phase.data)}: they must match"
            )
        spatial = np.shape(phase.data)[-3:]
        if mask is not None and np.shape(mask.data) != spatial:
            found.append(
                f"brain mask (layer {mask.name!r}) has shape {np.shape(mask.data)}: expected "
                f"the phase's spatial shape {spatial}"
            )
        low, high = VOXEL_SIZE_RANGE
        if not all(low <= v <= high for v in phase.voxel_size()[-3:]):
            found.append(
                f"phase (layer {phase.name!r}) has the scale "
                f"{format_numbers(phase.voxel_size()[-3:])}: expected voxel sizes between "
                f"{low:g} and {high:g} mm"
            )
        n_echoes = np.shape(phase.data)[0] if np.ndim(phase.data) == 4 else 1
        try:
            opts.echo_times_s(n_echoes)
        except ValueError as exc:
            found.append(str(exc))
        if not (isinstance(opts.b0_tesla, int | float) and opts.b0_tesla > 0):
            found.append(f"B0 must be a field strength > 0 T, got {opts.b0_tesla!r}")
        if opts.unwrap not in UNWRAP_METHODS:
            found.append(f"unwrap must be one of {UNWRAP_METHODS}, got {opts.unwrap!r}")
        if opts.background not in BACKGROUND_METHODS:
            found.append(
                f"background removal must be one of {BACKGROUND_METHODS}, got {opts.background!r}"
            )
        return found + self._b0_problems()

    def _b0_problems(self) -> list[str]:
        """The B0 direction's problem (numbers that are no direction), then ``field_problems``."""
        problem = None if self.b0_dir is None else b0_direction_problem(self.b0_dir)
        return ([problem] if problem else []) + list(self.field_problems)

    def _run_phase(self, model, checkpoint, progress, should_stop) -> PredictionResult:
        """The phase chain and the network (:func:`.phase_qsm.phase_to_susceptibility`).

        Layer arrays are their own world axes here (affine: the voxel size), so the B0
        direction in array axes is passed as the world direction.
        """
        from napari_fanet.engine.inference import InferenceCancelled
        from napari_fanet.engine.phase_qsm import phase_to_susceptibility
        from napari_fanet.physics.phase_chain import PhaseChainCancelled, PhaseChainSettings

        def echoes_last(item: LayerVolume | None) -> np.ndarray | None:
            if item is None:
                return None
            data = np.asarray(item.data, dtype=np.float64)
            return np.moveaxis(data, 0, -1) if data.ndim == 4 else data  # (X, Y, Z, E)

        phase, mag, mask = (self.inputs.get(r) for r in PHASE_ROLES)
        phase_xyze = echoes_last(phase)
        n_echoes = phase_xyze.shape[3] if phase_xyze.ndim == 4 else 1
        settings = PhaseChainSettings(
            b0_tesla=float(self.phase.b0_tesla),
            unwrap=self.phase.unwrap,
            background=self.phase.background,
        )
        try:
            res = phase_to_susceptibility(
                phase_xyze,
                self.phase.echo_times_s(n_echoes),
                np.diag([*(float(v) for v in phase.voxel_size()[-3:]), 1.0]),
                magnitude=echoes_last(mag),
                mask=None if mask is None else np.asarray(mask.data) > 0,
                b0_dir_world=self.b0_dir if self.b0_dir is not None else (0.0, 0.0, 1.0),
                chain_settings=settings,
                model=model,
                checkpoint=checkpoint,
                data_consistency=self.data_consistency,
                dc_lambda=self.dc_lambda,
                window_settings=self.settings,
                progress=None if progress is None else lambda _stage, d, t: progress(d, t),
                should_stop=should_stop,
            )
        except PhaseChainCancelled as exc:  # one cancellation type for the widgets' workers
            raise InferenceCancelled(str(exc)) from exc
        chain = res.chain
        result = PredictionResult(
            {
                "chi": res.chi,
                "field_hz": chain.field_hz.astype(np.float32),
                "local_field": chain.local_field_ppm.astype(np.float32),
                "mask": chain.local_mask.astype(np.uint8),
            }
        )
        result.report.device = res.device
        result.report.messages.extend(res.messages)
        return result


def model_accepts_missing_modalities(model: str) -> bool:
    """Whether segmentation model ``model`` (shipped name or file) accepts missing T1/T2.

    True when its checkpoint says it was trained with modality dropout; False when it was not
    or cannot be read (then T1 and T2 stay required).
    """
    path = shipped_weights().get(str(model), Path(str(model)))
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return False
    return _accepts_missing(str(path), stamp)


@functools.lru_cache(maxsize=16)
def _accepts_missing(path: str, stamp: int) -> bool:
    from napari_fanet.models import read_checkpoint

    try:
        return supports_missing_modalities(read_checkpoint(path))
    except (OSError, ValueError):
        return False


#: Words in a layer name that suggest a role (all must appear; lower case), first match wins.
_ROLE_HINTS = {
    "T1": (("t1",),),
    "T2": (("t2",),),
    "FLAIR": (("flair",),),
    "local field": (("field",), ("phase",)),
    "phase": (("phase",),),
    "magnitude": (("magnitude",), ("mag",)),
    "brain mask": (("brain", "mask"), ("mask",)),
    "lesion reference": (("lesion", "reference"), ("lesion", "gt"), ("lesion", "truth")),
    "susceptibility reference": (("susceptibility", "reference"), ("chi", "reference"), ("chi",)),
}
_ROLE_EXCLUDE = {
    "T2": ("flair",),
    "brain mask": ("lesion", "error"),
    "local field": ("error",),
    "phase": ("error", "field"),
}


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
    from napari_fanet.io.b0_direction import world_to_array_direction

    world = metadata.get("b0_dir_world")
    nifti = metadata.get("nifti") or {}
    affine = nifti.get("canonical_affine") if isinstance(nifti, dict) else None
    if world is not None and affine is not None:
        direction = world_to_array_direction(np.asarray(world, float), np.asarray(affine)[:3, :3])
        return tuple(float(v) for v in direction)
    if metadata.get("b0_dir") is not None:
        return tuple(float(v) for v in metadata["b0_dir"])
    return None
