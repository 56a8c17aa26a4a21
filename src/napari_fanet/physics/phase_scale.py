"""Phase scaling: turn stored phase values (radians, scanner integers, other ranges) into radians.

Scanners and converters store phase in different units. The value range tells most of them
apart; :func:`phase_to_radians` detects it and returns radians with a sentence saying what was
assumed, so a user can check it (and override it with ``scale``/``offset``):

==============================  =====================================  =========================
stored range                    read as                                radians
==============================  =====================================  =========================
within [-pi, pi], span > pi     radians                                value
within [0, 2 pi], span > pi     radians in [0, 2 pi)                   value (wraps are harmless)
integers in [-4096, 4095]       signed 12-bit scanner phase            value * pi / 4096
integers in [0, 4095]           unsigned 12-bit scanner phase          value * pi / 2048 - pi
anything else, symmetric        [-a, a] with a = max |value|           value * pi / a
anything else                   [lo, hi] (observed minimum, maximum)   (value - c) * pi / h
==============================  =====================================  =========================

with ``c = (lo + hi) / 2`` and ``h = (hi - lo) / 2``. "Symmetric" means ``|lo|`` and ``hi``
differ by less than 5 %. Inferring the range from the data assumes the phase covers the full
cycle somewhere in the volume (true of any GRE phase with background voxels or a few wraps);
the error is the fraction of the cycle never reached, e.g. 0.1 % scale error when the most
extreme value is 0.003 rad from +-pi.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PhaseScaling", "detect_phase_scaling", "phase_to_radians"]

_TOL = 1e-3  # relative slack on the radian bounds (float32 storage of +-pi)
_SYMMETRY = 0.05  # |lo| and hi within 5 % of each other: a symmetric range


@dataclass(frozen=True)
class PhaseScaling:
    """How stored phase values map to radians: ``radians = (value - offset) * scale``.

    Attributes
    ----------
    scale : float
        Radians per stored unit.
    offset : float
        Stored value that maps to 0 rad.
    kind : str
        ``"radians"``, ``"radians_0_2pi"``, ``"scanner_12bit_signed"``,
        ``"scanner_12bit_unsigned"``, ``"symmetric_range"``, ``"observed_range"`` or ``"given"``.
    description : str
        One sentence saying what was assumed, for logs and the GUI.
    """

    scale: float
    offset: float
    kind: str
    description: str

    def apply(self, phase: np.ndarray) -> np.ndarray:
        """Radians (float64) from stored values of any shape."""
        return (np.asarray(phase, dtype=np.float64) - self.offset) * self.scale


def detect_phase_scaling(phase: np.ndarray) -> PhaseScaling:
    """Infer the stored phase unit from the value range (see the module table).

    Parameters
    ----------
    phase : np.ndarray
        Stored phase values, any shape (e.g. ``(X, Y, Z)`` or ``(X, Y, Z, E)`` echoes), real.

    Returns
    -------
    PhaseScaling
        The mapping to radians and a sentence describing it.

    Raises
    ------
    ValueError
        If ``phase`` is empty, not real, has no finite value, or is constant.
    """
    values = _finite_values(phase)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        raise ValueError(
            f"phase is constant ({lo!r}): expected a phase image whose values vary (radians or "
            "scanner integers); its scaling cannot be inferred"
        )
    span = hi - lo
    rng = f"[{lo:.6g}, {hi:.6g}]"
    integer = bool(np.all(values == np.round(values)))
    pi_hi = math.pi * (1 + _TOL)
    if lo >= -pi_hi and hi <= pi_hi and span > math.pi:
        return PhaseScaling(
            1.0, 0.0, "radians", f"Phase values span {rng}: read as radians, used as they are."
        )
    if lo >= -_TOL and hi <= 2 * pi_hi and span > math.pi:
        return PhaseScaling(
            1.0,
            0.0,
            "radians_0_2pi",
            f"Phase values span {rng}: read as radians in [0, 2 pi), used as they are.",
        )
    if integer and lo >= -4096 and hi <= 4095 and lo < 0 and span > 4096:
        return PhaseScaling(
            math.pi / 4096,
            0.0,
            "scanner_12bit_signed",
            f"Phase values are integers spanning {rng}: read as signed 12-bit scanner phase "
            "(-4096..4095 for -pi..pi), radians = value * pi / 4096.",
        )
    if integer and lo >= 0 and hi <= 4095 and span > 2048:
        return PhaseScaling(
            math.pi / 2048,
            2048.0,
            "scanner_12bit_unsigned",
            f"Phase values are integers spanning {rng}: read as unsigned 12-bit scanner phase "
            "(0..4095 for -pi..pi), radians = (value - 2048) * pi / 2048.",
        )
    amplitude = max(abs(lo), abs(hi))
    if lo < 0 < hi and abs(abs(lo) - hi) <= _SYMMETRY * amplitude:
        return PhaseScaling(
            math.pi / amplitude,
            0.0,
            "symmetric_range",
            f"Phase values span {rng}, not a known unit: read as +-{amplitude:.6g} for +-pi, "
            f"radians = value * pi / {amplitude:.6g}.",
        )
    centre, half = 0.5 * (lo + hi), 0.5 * span
    return PhaseScaling(
        math.pi / half,
        centre,
        "observed_range",
        f"Phase values span {rng}, not a known unit: read the observed range as -pi..pi, "
        f"radians = (value - {centre:.6g}) * pi / {half:.6g}.",
    )


def phase_to_radians(
    phase: np.ndarray, *, scale: float | None = None, offset: float = 0.0
) -> tuple[np.ndarray, PhaseScaling]:
    """Convert stored phase to radians, detecting the unit unless ``scale`` is given.

    Parameters
    ----------
    phase : np.ndarray
        Stored phase values, any shape, real.
    scale : float, optional
        Radians per stored unit (e.g. ``math.pi / 4096``); skips the detection.
    offset : float
        Stored value that maps to 0 rad (only with ``scale``).

    Returns
    -------
    radians : np.ndarray
        float64, same shape as ``phase``; not rewrapped (unwrapping does not need it).
    scaling : PhaseScaling
        What was assumed, with a one-sentence ``description``.

    Raises
    ------
    ValueError
        If ``scale`` is not a finite non-zero number or ``offset`` not finite, or the
        detection fails (see :func:`detect_phase_scaling`).
    """
    if scale is None:
        scaling = detect_phase_scaling(phase)
    else:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale != 0):
            raise ValueError(f"scale must be a finite non-zero number, got {scale!r}")
        if not (isinstance(offset, (int, float)) and math.isfinite(offset)):
            raise ValueError(f"offset must be a finite number, got {offset!r}")
        _finite_values(phase)
        scaling = PhaseScaling(
            float(scale),
            float(offset),
            "given",
            f"Phase scaling given: radians = (value - {offset:.6g}) * {scale:.6g}.",
        )
    return scaling.apply(phase), scaling


def _finite_values(phase: np.ndarray) -> np.ndarray:
    arr = np.asarray(phase)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"phase must be a real numeric array, got dtype {arr.dtype}")
    values = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr.ravel()
    if values.size == 0:
        raise ValueError(f"phase has no finite value (shape {arr.shape})")
    return values.astype(np.float64)
