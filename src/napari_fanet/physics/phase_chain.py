"""From scanner phase to local field: scale, mask, unwrap, fit echoes, remove the background.

:func:`run_phase_chain` runs the steps of :data:`STEPS` in order, calling
``progress(step_name, done, total)`` after each and checking ``should_stop()`` before each (as
:mod:`napari_fanet.engine.inference` does between batches); a stop raises
:class:`PhaseChainCancelled`. Units at every step:

=========  ===========================================================  ====================
step       what                                                         result (units)
=========  ===========================================================  ====================
scale      stored phase -> radians (:mod:`.phase_scale`)                radians
mask       given mask, or Otsu on the magnitude (:mod:`.brain_mask`)    bool
unwrap     echo differences, 3D unwrapped (:mod:`.echo_unwrap`)         radians
fit        weighted least-squares over echoes (:mod:`.field_fit`)       Hz, ppm of B0
remove     LBV (:mod:`.lbv`, default), V-SHARP or PDF (:mod:`.background`) ppm of B0
=========  ===========================================================  ====================

LBV is the default background removal since 2026-12-05: on simulated validation heads it gave
the phase path a lower chi NRMSE than V-SHARP with every network tried (``benchmarks/README.md``,
``phase_chain.py``), erodes the mask by one voxel (V-SHARP: by its smallest radius, at least
one voxel and 1 mm), and is 4-7x faster.

The mask comes before unwrapping (the issue lists it after the fit) because both unwrapping
methods and the noise estimate are better restricted to the brain; it only needs magnitude.
The result's ``local_field_ppm`` is what :func:`napari_fanet.baselines.dipole_inversion.tkd`
and friends (and the ``qsm`` models) take, on ``local_mask``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_fanet.physics.background import BACKGROUND_METHODS, pdf, vsharp
from napari_fanet.physics.brain_mask import magnitude_mask, reliable_mask
from napari_fanet.physics.echo_unwrap import check_echo_times, unwrap_echoes
from napari_fanet.physics.field_fit import GAMMA_BAR_MHZ_PER_T, fit_field
from napari_fanet.physics.lbv import lbv
from napari_fanet.physics.phase_scale import PhaseScaling, phase_to_radians
from napari_fanet.physics.unwrap import UNWRAP_METHODS

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BACKGROUND",
    "STEPS",
    "PhaseChainCancelled",
    "PhaseChainResult",
    "PhaseChainSettings",
    "run_phase_chain",
]

STEPS = ("scale", "mask", "unwrap", "fit", "remove")
#: Background removal of :class:`PhaseChainSettings` (and so of ``qsm --phase``) by default.
DEFAULT_BACKGROUND = "lbv"
ProgressCallback = Callable[[str, int, int], None]


class PhaseChainCancelled(RuntimeError):
    """Raised when ``should_stop()`` returns True between two steps of the phase chain."""


@dataclass
class PhaseChainSettings:
    """How the chain runs.

    Parameters
    ----------
    b0_tesla : float
        Main field strength in tesla (> 0).
    b0_dir : tuple of 3 float
        Main-field direction in array axes (PDF only).
    unwrap : {"laplacian", "quality"}
        Spatial unwrapping method.
    background : {"lbv", "vsharp", "pdf"}
        Background field removal method (default :data:`DEFAULT_BACKGROUND`).
    phase_scale : float, optional
        Radians per stored phase unit; detected from the values when None.
    phase_offset : float
        Stored value meaning 0 rad (with ``phase_scale`` only).
    radii_mm : tuple of float, optional
        V-SHARP radii in mm (default :func:`.background.default_radii`).
    vsharp_threshold : float
        V-SHARP deconvolution truncation, in (0, 1).
    pdf_max_iter : int
        PDF conjugate-gradient iterations at most.
    lbv_tol : float
        LBV conjugate-gradient relative residual, in (0, 1).
    pad_factor : float
        FFT zero padding (>= 1) of the Laplacian unwrapping and background removal.
    reliability_factor : float, optional
        A mask made from the magnitude is refined after the fit: voxels whose ``sigma_hz`` is
        over this many times the median are dropped (:func:`.brain_mask.reliable_mask`).
        None: no refinement. A given mask is never changed.
    gamma_mhz_per_t : float
        Reduced gyromagnetic ratio (MHz/T).
    """

    b0_tesla: float = 3.0
    b0_dir: tuple[float, float, float] = (0.0, 0.0, 1.0)
    unwrap: str = "laplacian"
    background: str = DEFAULT_BACKGROUND
    phase_scale: float | None = None
    phase_offset: float = 0.0
    radii_mm: tuple[float, ...] | None = None
    vsharp_threshold: float = 0.05
    pdf_max_iter: int = 100
    lbv_tol: float = 1e-5
    pad_factor: float = 1.5
    reliability_factor: float | None = 3.0
    gamma_mhz_per_t: float = GAMMA_BAR_MHZ_PER_T

    def __post_init__(self) -> None:
        if self.unwrap not in UNWRAP_METHODS:
            raise ValueError(f"unwrap must be one of {UNWRAP_METHODS}, got {self.unwrap!r}")
        if self.background not in BACKGROUND_METHODS:
            raise ValueError(
                f"background must be one of {BACKGROUND_METHODS}, got {self.background!r}"
            )
        if not (isinstance(self.b0_tesla, (int, float)) and self.b0_tesla > 0):
            raise ValueError(f"b0_tesla must be a number > 0, got {self.b0_tesla!r}")


@dataclass
class PhaseChainResult:
    """Everything the chain computed; spatial arrays are float64 ``(X, Y, Z)`` unless noted.

    Attributes
    ----------
    scaling : PhaseScaling
        How the stored phase was read (``scaling.description`` is a sentence for the user).
    mask : np.ndarray
        Brain mask (bool): given, or from the magnitude (refined by the field noise).
    field_hz, field_ppm : np.ndarray
        Total field in Hz and in ppm of B0, zero outside ``mask``.
    sigma_hz : np.ndarray or None
        Propagated standard deviation of ``field_hz`` (Hz); None without magnitude.
    residual_rad : np.ndarray
        Weighted rms echo-fit residual (radians); zero with fewer than three echoes.
    local_field_ppm : np.ndarray
        Local (tissue) field in ppm of B0, zero outside ``local_mask``.
    local_mask : np.ndarray
        bool: where ``local_field_ppm`` is defined (V-SHARP and LBV erode ``mask``).
    timings_s : dict
        Seconds per step, in :data:`STEPS` order.
    messages : list of str
        What was assumed or chosen, for logs and the GUI.
    """

    scaling: PhaseScaling
    mask: np.ndarray
    field_hz: np.ndarray
    field_ppm: np.ndarray
    sigma_hz: np.ndarray | None
    residual_rad: np.ndarray
    local_field_ppm: np.ndarray
    local_mask: np.ndarray
    timings_s: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def run_phase_chain(
    phase: np.ndarray,
    echo_times_s: Sequence[float],
    voxel_size: Sequence[float],
    *,
    magnitude: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    settings: PhaseChainSettings | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PhaseChainResult:
    """Run scale -> mask -> unwrap -> fit -> remove on multi-echo GRE phase.

    Parameters
    ----------
    phase : np.ndarray
        Stored phase, shape ``(X, Y, Z, E)`` (echoes last) or ``(X, Y, Z)`` for one echo, in
        radians or any stored scaling (see :mod:`.phase_scale`).
    echo_times_s : sequence of float
        ``E`` echo times in seconds, increasing.
    voxel_size : sequence of float
        Voxel size in mm along the array axes.
    magnitude : np.ndarray, optional
        Same shape as ``phase``; weights the echo fit, gives ``sigma_hz`` and, without
        ``mask``, the brain mask.
    mask : np.ndarray, optional
        Brain mask ``(X, Y, Z)``; needed when ``magnitude`` is absent.
    settings : PhaseChainSettings, optional
        Methods and parameters.
    progress : callable, optional
        ``progress(step_name, done_steps, total_steps)`` after each step.
    should_stop : callable, optional
        Checked before each step; True raises :class:`PhaseChainCancelled`.

    Returns
    -------
    PhaseChainResult
        The intermediate and final maps, timings and messages.

    Raises
    ------
    ValueError
        If the shapes disagree, or neither ``magnitude`` nor ``mask`` is given (and from the
        steps themselves).
    PhaseChainCancelled
        If ``should_stop()`` returns True.
    """
    s = settings or PhaseChainSettings()
    raw = np.asarray(phase)
    if raw.ndim not in (3, 4):
        raise ValueError(f"phase must be (X, Y, Z, E) or (X, Y, Z), got shape {raw.shape}")
    n_echoes = raw.shape[3] if raw.ndim == 4 else 1
    te = check_echo_times(echo_times_s, n_echoes)
    mag = None if magnitude is None else np.asarray(magnitude, dtype=np.float64)
    if mag is not None and mag.shape != raw.shape:
        raise ValueError(f"magnitude must have the phase's shape {raw.shape}, got {mag.shape}")
    if mag is None and mask is None:
        raise ValueError("give a magnitude or a mask: the brain mask is made from the magnitude")
    timings: dict[str, float] = {}
    messages: list[str] = []
    state: dict = {}

    def step(name: str, work: Callable[[], None]) -> None:
        if should_stop is not None and should_stop():
            raise PhaseChainCancelled(f"phase chain cancelled before step {name!r}")
        start = time.perf_counter()
        work()
        timings[name] = time.perf_counter() - start
        log.info("phase chain: %s took %.2f s", name, timings[name])
        if progress is not None:
            progress(name, len(timings), len(STEPS))

    def scale() -> None:
        state["radians"], state["scaling"] = phase_to_radians(
            raw, scale=s.phase_scale, offset=s.phase_offset
        )
        messages.append(state["scaling"].description)

    def make_mask() -> None:
        if mask is not None:
            m = np.asarray(mask) != 0
            if m.shape != raw.shape[:3]:
                raise ValueError(
                    f"mask must have the spatial shape {raw.shape[:3]}, got {m.shape}"
                )
            state["mask"] = m
            messages.append("Brain mask: given.")
        else:
            state["mask"] = magnitude_mask(mag)
            messages.append(
                f"Brain mask: Otsu threshold of the echo-combined magnitude, "
                f"{int(state['mask'].sum())} voxels."
            )

    def unwrap() -> None:
        state["echoes"] = unwrap_echoes(
            state["radians"], te, voxel_size, method=s.unwrap, mask=state["mask"],
            pad_factor=s.pad_factor,
        )  # fmt: skip
        what = "the phase of the single echo" if n_echoes == 1 else "the echo differences"
        messages.append(f"Unwrapping: {s.unwrap} method on {what}.")

    def fit() -> None:
        state["fit"] = fit_field(
            state["echoes"], mag, mask=state["mask"], b0_tesla=s.b0_tesla,
            gamma_mhz_per_t=s.gamma_mhz_per_t,
        )  # fmt: skip
        sigma = state["fit"].sigma_hz
        if mask is None and sigma is not None and s.reliability_factor is not None:
            before = int(state["mask"].sum())
            state["mask"] = reliable_mask(state["mask"], sigma, factor=s.reliability_factor)
            messages.append(
                f"Brain mask refined: {before - int(state['mask'].sum())} voxels with a field "
                f"noise over {s.reliability_factor:g}x the median dropped."
            )

    def remove() -> None:
        total, m = state["fit"].field_ppm, state["mask"]
        if s.background == "vsharp":
            local, local_mask = vsharp(
                total, m, voxel_size, radii_mm=s.radii_mm, threshold=s.vsharp_threshold,
                pad_factor=s.pad_factor,
            )  # fmt: skip
        elif s.background == "pdf":
            sigma = state["fit"].sigma_hz
            weights = None
            if sigma is not None:
                ok = m & np.isfinite(sigma) & (sigma > 0)
                weights = np.where(ok, 1.0 / np.where(ok, sigma, 1.0), 0.0)
            local = pdf(
                total, m, voxel_size, s.b0_dir, weights=weights, max_iter=s.pdf_max_iter,
                pad_factor=s.pad_factor,
            )  # fmt: skip
            local_mask = m
        else:
            local, local_mask = lbv(total, m, voxel_size, tol=s.lbv_tol)
        state["local"], state["local_mask"] = local, local_mask
        messages.append(f"Background removal: {s.background}.")

    for name, work in zip(STEPS, (scale, make_mask, unwrap, fit, remove), strict=True):
        step(name, work)
    fitted = state["fit"]
    return PhaseChainResult(
        scaling=state["scaling"],
        mask=state["mask"],
        field_hz=fitted.field_hz,
        field_ppm=fitted.field_ppm,
        sigma_hz=fitted.sigma_hz,
        residual_rad=fitted.residual_rad,
        local_field_ppm=state["local"],
        local_mask=state["local_mask"],
        timings_s=timings,
        messages=messages,
    )
