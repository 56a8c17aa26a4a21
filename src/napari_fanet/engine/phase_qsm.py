"""From multi-echo GRE phase to susceptibility: the phase chain, then a dipole inversion.

:func:`phase_to_susceptibility` is the one core call behind ``napari-fanet qsm --phase`` and the
FA-Net widget's phase input. It runs :func:`napari_fanet.physics.phase_chain.run_phase_chain`
(scale -> mask -> unwrap -> echo fit -> background removal) and inverts the local field with
one of :data:`QSM_METHODS`:

- ``"fanet"``: a QSM network through :func:`.predict.reconstruct_qsm` (data consistent by
  default), which takes the local field as a :class:`~napari_fanet.io.nifti.Volume` and the B0
  direction in **world** axes and reorients both to the canonical axes itself. With
  ``data_consistency="smv"`` the network's raw map is instead made consistent with the chain's
  *total* field through spherical means
  (:func:`napari_fanet.physics.smv_consistency.smv_data_consistency`), which keeps the part of
  the local field that background removal loses;
- ``"cfl2"`` / ``"tkd"``: :func:`~napari_fanet.baselines.dipole_inversion.cfl2` /
  :func:`~napari_fanet.baselines.dipole_inversion.tkd` on the array grid, with the B0 direction in
  **array** axes.

One B0 direction (world, unit) is turned into array axes once, through the affine
(:func:`napari_fanet.io.b0_direction.world_to_array_direction`), and that array direction is what
the chain's PDF and the classical inversions use, while the network gets the world direction and
the same affine: all see the same physical field direction.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from napari_fanet.engine.inference import InferenceCancelled, WindowSettings
from napari_fanet.engine.predict import reconstruct_qsm
from napari_fanet.io.b0_direction import B0Direction, world_to_array_direction
from napari_fanet.io.nifti import Volume
from napari_fanet.physics.data_consistency import DC_METHODS
from napari_fanet.physics.phase_chain import PhaseChainResult, PhaseChainSettings, run_phase_chain
from napari_fanet.physics.smv_consistency import smv_data_consistency

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CFL2_LAMBDA",
    "DEFAULT_PHASE_DC_METHOD",
    "DEFAULT_TKD_THRESHOLD",
    "PHASE_DC_METHODS",
    "QSM_METHODS",
    "PhaseQSMResult",
    "phase_to_susceptibility",
]

QSM_METHODS = ("fanet", "cfl2", "tkd")
#: Data consistency of the phase path: the local-field solvers, plus ``"smv"`` (total field).
PHASE_DC_METHODS = (*DC_METHODS, "smv")
#: The phase path's default, chosen on validation subjects (seeds 10000-10001, 2 mm): FA-Net's
#: mean chi NRMSE 51.6 % against 53.3 % with ``"cg"`` at the default noise, and 43.4 % against
#: 50.0 % at SNR 200-400, with ``fanet-qsm``; with ``fanet-qsm-phase`` (the QSM task's
#: ``default_phase_model``), 46.8 % against 48.3 % and 38.1 % against 49.0 %
#: (``benchmarks/results/phase_chain.md``).
DEFAULT_PHASE_DC_METHOD = "smv"
#: CFL2 gradient weight and TKD threshold used by default: the values tuned on validation
#: subjects in ``sample_data/baselines.json``
#: (:data:`napari_fanet.evaluation.demo.BUILTIN_PARAMETERS`).
DEFAULT_CFL2_LAMBDA = 0.00562
DEFAULT_TKD_THRESHOLD = 0.225
#: ``progress(stage, done, total)``: stage is a phase-chain step name, or ``"inversion"`` with
#: network windows done / total (classical inversions report ``(1, 1)``).
StageProgress = Callable[[str, int, int], None]


@dataclass
class PhaseQSMResult:
    """The chain's maps, the susceptibility map and what was assumed.

    Attributes
    ----------
    chain : PhaseChainResult
        Total field (Hz, ppm), noise ``sigma_hz`` (Hz), local field (ppm), masks, timings.
    chi : np.ndarray
        Susceptibility in ppm, float32 ``(X, Y, Z)`` on the input grid, zero outside
        ``chain.local_mask``.
    method : str
        One of :data:`QSM_METHODS`.
    b0_dir_world, b0_dir_array : tuple of 3 float
        Unit B0 direction in world (scanner) and in array axes.
    timings_s : dict
        Seconds per chain step plus ``"inversion"``.
    messages : list of str
        The chain's messages (phase scaling, mask, methods) and the inversion's.
    device : str
        Where the network ran (``""`` for the classical inversions).
    """

    chain: PhaseChainResult
    chi: np.ndarray
    method: str
    b0_dir_world: tuple[float, float, float]
    b0_dir_array: tuple[float, float, float]
    timings_s: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    device: str = ""


def _unit(direction: Sequence[float], name: str) -> np.ndarray:
    b0 = np.asarray(direction, dtype=np.float64)
    if b0.shape != (3,) or not np.all(np.isfinite(b0)) or not np.linalg.norm(b0) > 0:
        raise ValueError(f"{name} must be 3 finite numbers, not all zero; got {direction!r}")
    return b0 / np.linalg.norm(b0)


def phase_to_susceptibility(
    phase: np.ndarray,
    echo_times_s: Sequence[float],
    affine: np.ndarray,
    *,
    magnitude: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    b0_dir_world: B0Direction | Sequence[float] = (0.0, 0.0, 1.0),
    chain_settings: PhaseChainSettings | None = None,
    method: str = "fanet",
    model: nn.Module | None = None,
    checkpoint: dict | None = None,
    data_consistency: str = DEFAULT_PHASE_DC_METHOD,
    dc_lambda: float | str = "auto",
    cfl2_lambda: float = DEFAULT_CFL2_LAMBDA,
    tkd_threshold: float = DEFAULT_TKD_THRESHOLD,
    window_settings: WindowSettings | None = None,
    progress: StageProgress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PhaseQSMResult:
    """Run the phase chain and invert its local field (module docstring).

    Parameters
    ----------
    phase : np.ndarray
        Stored phase ``(X, Y, Z, E)`` (or ``(X, Y, Z)``), radians or any scaling
        :mod:`napari_fanet.physics.phase_scale` detects.
    echo_times_s : sequence of float
        ``E`` echo times in seconds, increasing.
    affine : np.ndarray
        ``(4, 4)`` voxel-to-world affine (mm) of the phase's array axes.
    magnitude, mask : np.ndarray, optional
        As in :func:`~napari_fanet.physics.phase_chain.run_phase_chain` (one is needed).
    b0_dir_world : B0Direction or sequence of 3 float
        Main-field direction in world (scanner) axes (never text); its sign does not matter.
    chain_settings : PhaseChainSettings, optional
        Field strength, unwrapping, background removal; its ``b0_dir`` is replaced by the
        array-axes direction of ``b0_dir_world``.
    method : {"fanet", "cfl2", "tkd"}
        Dipole inversion.
    model, checkpoint
        The QSM network and its checkpoint (``method="fanet"`` only; see
        :func:`.predict.load_model`).
    data_consistency, dc_lambda
        As in :func:`.predict.reconstruct_qsm` (``method="fanet"`` only), plus
        ``data_consistency="smv"`` (the default, :data:`DEFAULT_PHASE_DC_METHOD`): the raw
        network map matched to the total field in the chain's mask (module docstring).
    cfl2_lambda, tkd_threshold : float
        Regularisation of the classical inversions.
    window_settings : WindowSettings, optional
        Sliding-window settings of the network.
    progress : callable, optional
        ``progress(stage, done, total)``, see :data:`StageProgress`.
    should_stop : callable, optional
        Checked between chain steps and network batches; True raises
        :class:`~napari_fanet.physics.phase_chain.PhaseChainCancelled` or
        :class:`~napari_fanet.engine.inference.InferenceCancelled`.

    Returns
    -------
    PhaseQSMResult
        Chain maps, ``chi`` (ppm) and what was assumed.

    Raises
    ------
    ValueError
        If ``method`` is unknown, the network is missing for ``"fanet"``, the affine or B0
        direction is invalid, or the chain or inversion rejects the inputs.
    """
    if method not in QSM_METHODS:
        raise ValueError(f"method must be one of {', '.join(QSM_METHODS)}; got {method!r}")
    if method == "fanet" and (model is None or checkpoint is None):
        raise ValueError("method 'fanet' needs a QSM model and its checkpoint")
    if data_consistency not in PHASE_DC_METHODS:
        raise ValueError(
            f"data_consistency must be one of {', '.join(PHASE_DC_METHODS)}; "
            f"got {data_consistency!r}"
        )
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) == 0:
        raise ValueError(
            f"affine must be a finite invertible (4, 4) matrix, got shape {aff.shape}"
        )
    world = _unit(b0_dir_world, "b0_dir_world")
    array_dir = world_to_array_direction(world, aff)
    b0_array = tuple(float(v) for v in array_dir)
    voxel_size = tuple(float(v) for v in np.linalg.norm(aff[:3, :3], axis=0))
    settings = dataclasses.replace(chain_settings or PhaseChainSettings(), b0_dir=b0_array)
    chain = run_phase_chain(
        phase,
        echo_times_s,
        voxel_size,
        magnitude=magnitude,
        mask=mask,
        settings=settings,
        progress=progress,
        should_stop=should_stop,
    )
    local, local_mask = chain.local_field_ppm, chain.local_mask
    messages = list(chain.messages)
    start = time.perf_counter()
    device = ""
    if method == "fanet":
        result = reconstruct_qsm(
            model,
            checkpoint,
            Volume(local.astype(np.float32), aff),
            Volume(local_mask.astype(np.float32), aff),
            b0_dir=tuple(world),
            data_consistency="none" if data_consistency == "smv" else data_consistency,
            dc_lambda=dc_lambda,
            settings=window_settings,
            progress=None if progress is None else lambda d, t: progress("inversion", d, t),
            should_stop=should_stop,
        )
        chi = result.outputs["chi"]
        if data_consistency == "smv":
            chi = smv_data_consistency(
                chain.field_ppm, chi, chain.mask, voxel_size, b0_array, lam=dc_lambda,
                should_stop=should_stop,
            )  # fmt: skip
            if should_stop is not None and should_stop():
                raise InferenceCancelled("inference cancelled")
        device = result.report.device
        messages += result.report.messages
        messages.append(
            f"Dipole inversion: {model.config.name}, data consistency {data_consistency}."
        )
    else:
        from napari_fanet.baselines import dipole_inversion as qsm

        if method == "cfl2":
            chi = qsm.cfl2(local, voxel_size, b0_array, lam=cfl2_lambda, mask=local_mask)
            messages.append(f"Dipole inversion: CFL2, lambda {cfl2_lambda:g}.")
        else:
            chi = qsm.tkd(local, voxel_size, b0_array, threshold=tkd_threshold, mask=local_mask)
            messages.append(f"Dipole inversion: TKD, threshold {tkd_threshold:g}.")
        if progress is not None:
            progress("inversion", 1, 1)
    timings = {**chain.timings_s, "inversion": time.perf_counter() - start}
    log.info("phase to susceptibility: inversion (%s) took %.2f s", method, timings["inversion"])
    return PhaseQSMResult(
        chain=chain,
        chi=np.asarray(chi, dtype=np.float32) * local_mask,
        method=method,
        b0_dir_world=tuple(float(v) for v in world),
        b0_dir_array=b0_array,
        timings_s=timings,
        messages=messages,
        device=device,
    )
