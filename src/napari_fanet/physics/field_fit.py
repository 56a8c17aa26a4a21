"""Echo combination: weighted least-squares field (Hz, ppm) from unwrapped echo phases.

Model (per voxel): the unwrapped echo differences of :func:`.echo_unwrap.unwrap_echoes` are
``psi_k = 2 pi f dTE_k + noise`` (radians; ``f`` in Hz, ``dTE_k`` in s), a line through the
origin (the receive offset ``phi0`` cancelled in the differences). The weighted least-squares
frequency is

``f = sum_k w_k psi_k dTE_k / (2 pi sum_k w_k dTE_k^2)``

with ``w_k = 1 / var(psi_k)`` up to the common factor ``sigma^2`` (magnitude noise standard
deviation): a phase difference of echoes with magnitudes ``m_1`` and ``m_e`` has variance
``sigma^2 (1 / m_1^2 + 1 / m_e^2)``, so ``w_k = m_1^2 m_e^2 / (m_1^2 + m_e^2)``; for one echo
``w = m_1^2``. This is the ``magnitude^2 * TE^2`` weighting of per-echo frequency estimates.
Without magnitudes all weights are 1.

Reliability:

- ``sigma_hz``: the propagated standard deviation of ``f``,
  ``sigma / (2 pi sqrt(sum_k w_k dTE_k^2))`` Hz, with ``sigma`` the magnitude noise level
  (given, or estimated by :func:`estimate_noise_sigma`). It ignores the correlation of the
  differences through the shared first echo (a slight underestimate with three or more echoes).
- ``residual_rad``: the weighted root-mean-square fit residual in radians,
  ``sqrt(sum_k w_k r_k^2 / sum_k w_k)``; zero with fewer than three echoes (nothing to check).

``ppm = Hz / (gamma_bar B0)`` with ``gamma_bar = 42.577 MHz/T``
(:func:`napari_fanet.physics.forward.hz_to_field`; 127.7 Hz per ppm at 3 T).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_fanet.physics.echo_unwrap import EchoPhases

__all__ = ["FieldFit", "estimate_noise_sigma", "fit_field"]

GAMMA_BAR_MHZ_PER_T = 42.577


@dataclass(frozen=True)
class FieldFit:
    """Result of :func:`fit_field`; arrays are float64, shape ``(X, Y, Z)``, zero outside mask.

    Attributes
    ----------
    field_hz : np.ndarray
        Field offset in Hz (positive: precession faster than the reference).
    field_ppm : np.ndarray
        The same field in ppm of B0.
    sigma_hz : np.ndarray or None
        Propagated standard deviation of ``field_hz`` (Hz); None without magnitudes.
    residual_rad : np.ndarray
        Weighted rms fit residual (radians); zero with one or two echoes.
    noise_sigma : float or None
        Magnitude noise standard deviation used for ``sigma_hz`` (magnitude units).
    """

    field_hz: np.ndarray
    field_ppm: np.ndarray
    sigma_hz: np.ndarray | None
    residual_rad: np.ndarray
    noise_sigma: float | None


def estimate_noise_sigma(magnitude: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Robust noise standard deviation of a 3D magnitude image (its units).

    The high-pass residual ``h = m - mean of the 6 face neighbours`` of white Gaussian noise of
    standard deviation ``sigma`` has variance ``sigma^2 (1 + 1/6)``; ``sigma`` is estimated from
    the median absolute deviation of ``h`` inside the mask (eroded by one voxel), which is
    insensitive to the few voxels at edges. Smooth image content does not count.

    Parameters
    ----------
    magnitude : np.ndarray
        Shape ``(X, Y, Z)``.
    mask : np.ndarray, optional
        Shape ``(X, Y, Z)``; default the whole volume.

    Returns
    -------
    float
        ``sigma`` (same units as the magnitude), > 0.

    Raises
    ------
    ValueError
        If the image is not 3D, the mask has another shape or leaves fewer than 27 voxels,
        or the estimate is zero (a noise-free or constant image: pass ``noise_sigma``).
    """
    mag = np.asarray(magnitude, dtype=np.float64)
    if mag.ndim != 3:
        raise ValueError(f"magnitude must be 3D (X, Y, Z), got shape {mag.shape}")
    m = np.ones(mag.shape, dtype=bool) if mask is None else np.asarray(mask) != 0
    if m.shape != mag.shape:
        raise ValueError(f"mask must have the magnitude's shape {mag.shape}, got {m.shape}")
    star = ndi.generate_binary_structure(3, 1)
    kernel = star.astype(np.float64)
    kernel[1, 1, 1] = 0.0
    high = mag - ndi.convolve(mag, kernel / 6.0, mode="nearest")
    inner = ndi.binary_erosion(m, star, border_value=0)
    if int(inner.sum()) < 27:
        raise ValueError(
            f"too few voxels ({int(inner.sum())}) inside the eroded mask to estimate the noise"
        )
    values = high[inner]
    mad = float(np.median(np.abs(values - np.median(values))))
    sigma = 1.4826 * mad / math.sqrt(7.0 / 6.0)
    if sigma <= 0:
        raise ValueError(
            "the magnitude shows no noise (MAD of its high-pass is 0): pass noise_sigma"
        )
    return sigma


def fit_field(
    echoes: EchoPhases,
    magnitude: np.ndarray | None = None,
    *,
    mask: np.ndarray | None = None,
    b0_tesla: float = 3.0,
    gamma_mhz_per_t: float = GAMMA_BAR_MHZ_PER_T,
    noise_sigma: float | None = None,
) -> FieldFit:
    """Weighted least-squares field from unwrapped echo differences (module docstring).

    Parameters
    ----------
    echoes : EchoPhases
        From :func:`napari_fanet.physics.echo_unwrap.unwrap_echoes`.
    magnitude : np.ndarray, optional
        Echo magnitudes, shape ``(X, Y, Z, E)`` (``E = K + 1`` echoes; ``(X, Y, Z)`` for one
        echo). Default: equal weights and no ``sigma_hz``.
    mask : np.ndarray, optional
        Shape ``(X, Y, Z)``; results are zero outside it, and the noise is estimated inside it.
    b0_tesla : float
        Main field in tesla, for ppm.
    gamma_mhz_per_t : float
        Reduced gyromagnetic ratio in MHz/T (protons: 42.577).
    noise_sigma : float, optional
        Magnitude noise standard deviation; estimated from the first echo when omitted.

    Returns
    -------
    FieldFit
        Field in Hz and ppm, its propagated standard deviation and the fit residual.

    Raises
    ------
    ValueError
        If the magnitude or mask shape does not match, the magnitude is negative or not finite,
        or ``noise_sigma`` is not positive.
    """
    from napari_fanet.physics.forward import hz_to_field  # imports torch; only needed here

    psi = echoes.phase  # (X, Y, Z, K)
    dte = echoes.delta_te_s  # (K,)
    spatial = psi.shape[:3]
    m = np.ones(spatial, dtype=bool) if mask is None else np.asarray(mask) != 0
    if m.shape != spatial:
        raise ValueError(f"mask must have the spatial shape {spatial}, got {m.shape}")
    weights, mag = _weights(echoes, magnitude)  # (X, Y, Z, K) or None
    if weights is None:
        weights = np.ones(psi.shape, dtype=np.float64)
    sw_tt = (weights * dte**2).sum(axis=-1)  # (X, Y, Z)
    safe = np.where(sw_tt > 0, sw_tt, 1.0)
    omega = np.where(sw_tt > 0, (weights * psi * dte).sum(axis=-1) / safe, 0.0)  # rad/s
    field_hz = np.where(m, omega / (2 * math.pi), 0.0)
    field_ppm = hz_to_field(field_hz, b0_tesla, gamma_mhz_per_t)
    residual = psi - omega[..., None] * dte  # (X, Y, Z, K) radians
    sw = weights.sum(axis=-1)
    if psi.shape[3] >= 2:
        rms = np.sqrt((weights * residual**2).sum(axis=-1) / np.where(sw > 0, sw, 1.0))
        residual_rad = np.where(m & (sw > 0), rms, 0.0)
    else:
        residual_rad = np.zeros(spatial)
    sigma_hz, sigma = None, None
    if mag is not None:
        if noise_sigma is None:
            sigma = estimate_noise_sigma(mag[..., 0], m)
        elif (
            isinstance(noise_sigma, (int, float))
            and math.isfinite(noise_sigma)
            and noise_sigma > 0
        ):
            sigma = float(noise_sigma)
        else:
            raise ValueError(f"noise_sigma must be a finite number > 0, got {noise_sigma!r}")
        with np.errstate(divide="ignore"):
            sd = sigma / (2 * math.pi * np.sqrt(sw_tt))
        sigma_hz = np.where(m, np.where(sw_tt > 0, sd, np.inf), 0.0)
    return FieldFit(field_hz, field_ppm, sigma_hz, residual_rad, sigma)


def _weights(
    echoes: EchoPhases, magnitude: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Inverse-variance weights ``(X, Y, Z, K)`` (up to sigma^2) and the magnitude ``(..., E)``."""
    if magnitude is None:
        return None, None
    mag = np.asarray(magnitude, dtype=np.float64)
    if mag.ndim == 3:
        mag = mag[..., None]  # (X, Y, Z, 1)
    n_echoes = echoes.phase.shape[3] + (0 if echoes.single_echo else 1)
    expected = (*echoes.phase.shape[:3], n_echoes)
    if mag.shape != expected:
        raise ValueError(f"magnitude must have shape {expected} (echoes last), got {mag.shape}")
    if not np.all(np.isfinite(mag)) or np.any(mag < 0):
        raise ValueError("magnitude must be finite and non-negative")
    p = mag**2  # (X, Y, Z, E)
    if echoes.single_echo:
        return p, mag
    first = p[..., :1]  # (X, Y, Z, 1)
    later = p[..., 1:]  # (X, Y, Z, K)
    total = first + later
    return np.where(total > 0, first * later / np.where(total > 0, total, 1.0), 0.0), mag
