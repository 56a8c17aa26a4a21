"""Unwrap multi-echo phase consistently across echoes: spatially unwrap the echo differences.

Strategy (the echo *differences* are unwrapped, not each echo): with echo phases
``phi_e = phi0 + 2 pi f TE_e`` (radians, ``f`` in Hz), the differences to the first echo

``psi_k = angle(exp(i phi_(k+1)) exp(-i phi_1)) = 2 pi f (TE_(k+1) - TE_1)``   (wrapped)

no longer contain the receive phase offset ``phi0`` (which has its own wraps and coil-combination
singularities on real data) and, for ``k = 1``, wrap far less than the later echoes. Each
``psi_k`` is unwrapped in 3D (:mod:`.unwrap`). Temporal consistency: each unwrapped ``psi_k``
(``k >= 2``) is shifted by the single whole multiple of 2 pi that brings its median inside the
mask closest to the prediction ``psi_1 * dTE_k / dTE_1`` from the first difference, so all
differences describe the same field. (No voxel-wise 2 pi correction: with the Laplacian method
the differences carry smooth harmonic offsets, and rounding them voxel by voxel would create
2 pi jumps; the global shift fixes the per-echo 2 pi ambiguity of the quality-guided method.)

With a single echo the phase itself is unwrapped and ``dTE = TE_1``: the field fit then assumes
``phi0 = 0`` (a smooth ``phi0`` ends up in the field and is largely removed with the
background field).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_fanet.physics.unwrap import unwrap_phase, wrap

__all__ = ["EchoPhases", "check_echo_times", "unwrap_echoes"]


@dataclass(frozen=True)
class EchoPhases:
    """Unwrapped echo-difference phases ready for the field fit.

    Attributes
    ----------
    phase : np.ndarray
        Unwrapped phase differences in radians, float64, shape ``(X, Y, Z, K)`` with
        ``K = E - 1`` for ``E >= 2`` echoes (``psi_k``, echo ``k + 1`` minus echo 1) or
        ``K = 1`` for one echo (the unwrapped phase itself); zero outside the mask.
    delta_te_s : np.ndarray
        Time (s) each entry of ``phase`` has accumulated field over, shape ``(K,)``:
        ``TE_(k+1) - TE_1``, or ``TE_1`` for one echo.
    single_echo : bool
        True when the phase of one echo was unwrapped (``phi0`` assumed zero).
    """

    phase: np.ndarray
    delta_te_s: np.ndarray
    single_echo: bool


def check_echo_times(echo_times_s: Sequence[float], n_echoes: int) -> np.ndarray:
    """Echo times in seconds as a float64 array of ``n_echoes`` increasing positive values.

    Raises
    ------
    ValueError
        If the count differs from ``n_echoes``, a value is not finite and positive, the times
        are not strictly increasing, or one exceeds 1 s (milliseconds passed as seconds).
    """
    try:
        te = np.asarray(echo_times_s, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"echo times must be numbers (s), got {echo_times_s!r}") from None
    if te.size != n_echoes:
        raise ValueError(f"expected {n_echoes} echo time(s) (one per echo), got {te.size}")
    if not np.all(np.isfinite(te)) or np.any(te <= 0):
        raise ValueError(f"echo times must be finite and positive (s), got {te.tolist()}")
    if np.any(te > 1.0):
        raise ValueError(
            f"echo times must be in seconds, got {te.tolist()}: values above 1 s look like "
            "milliseconds (divide by 1000)"
        )
    if np.any(np.diff(te) <= 0):
        raise ValueError(f"echo times must be strictly increasing, got {te.tolist()}")
    return te


def unwrap_echoes(
    phase: np.ndarray,
    echo_times_s: Sequence[float],
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    method: str = "laplacian",
    mask: np.ndarray | None = None,
    pad_factor: float = 1.5,
) -> EchoPhases:
    """Unwrap the echo differences of wrapped multi-echo phase (see the module docstring).

    Parameters
    ----------
    phase : np.ndarray
        Wrapped (or scaled-to-radians) phase in radians, shape ``(X, Y, Z, E)``, echoes last;
        a 3D array is one echo.
    echo_times_s : sequence of float
        ``E`` echo times in seconds, strictly increasing.
    voxel_size : sequence of float
        Voxel size in mm (used by the Laplacian method).
    method : {"laplacian", "quality"}
        Spatial unwrapping method (:func:`napari_fanet.physics.unwrap.unwrap_phase`).
    mask : np.ndarray, optional
        Shape ``(X, Y, Z)``; unwrapping uses voxels inside it only.
    pad_factor : float
        FFT padding of the Laplacian method.

    Returns
    -------
    EchoPhases
        Unwrapped differences ``(X, Y, Z, K)`` and their time spans ``(K,)`` in seconds.

    Raises
    ------
    ValueError
        If ``phase`` is not 3D or 4D, or the echo times do not fit (:func:`check_echo_times`).
    """
    phi = np.asarray(phase, dtype=np.float64)
    if phi.ndim == 3:
        phi = phi[..., None]  # (X, Y, Z, 1)
    if phi.ndim != 4:
        raise ValueError(f"phase must be (X, Y, Z, E) or (X, Y, Z), got shape {phi.shape}")
    te = check_echo_times(echo_times_s, phi.shape[3])
    m = None if mask is None else np.asarray(mask) != 0
    kwargs = {"method": method, "mask": m, "pad_factor": pad_factor}
    if phi.shape[3] == 1:
        out = unwrap_phase(phi[..., 0], voxel_size, **kwargs)[..., None]  # (X, Y, Z, 1)
        return EchoPhases(out, te[:1].copy(), True)
    diffs = wrap(phi[..., 1:] - phi[..., :1])  # (X, Y, Z, E-1): phi0 cancels
    dte = te[1:] - te[0]  # (E-1,)
    out = np.stack(
        [unwrap_phase(diffs[..., k], voxel_size, **kwargs) for k in range(dte.size)], axis=-1
    )  # (X, Y, Z, E-1)
    inside = np.ones(phi.shape[:3], dtype=bool) if m is None else m
    for k in range(1, dte.size):
        gap = np.median(out[..., k][inside] - out[..., 0][inside] * (dte[k] / dte[0]))
        out[..., k] -= 2 * math.pi * round(float(gap) / (2 * math.pi))
        out[..., k][~inside] = 0.0
    return EchoPhases(out, dte, False)
