"""Multi-echo GRE phase of a simulated QSM subject: total field, background field, wrapped phase.

A :class:`~napari_fanet.simulation.qsm_phantom.QSMSubject` has a brain susceptibility map and
its local field only. This module puts the brain in a head and simulates what a scanner
records:

1. **Head and air** (susceptibility relative to air, so the zero padding of the FFT is air):
   head tissue ``tissue_chi_ppm`` (default -9.4 ppm: water-like tissue -9.05 ppm against air
   +0.36 ppm, SI) fills the brain dilated by ``head_margin_mm``; one or more air cavities
   (sinus- or ear-canal-like spheres, 0 ppm, i.e. +9.4 ppm relative to tissue) are cut from the
   head outside the brain, at least ``cavity_gap_mm`` from it. Outside the brain these
   boundaries are blurred by a Gaussian of ``edge_smoothing_mm`` (partial volume; it also keeps
   the FFT forward model of a 9.4 ppm step from ringing into the brain, where the ringing of a
   sharp step is larger than the tissue field); inside the brain the head value stays exactly
   constant. The brain adds the subject's ``chi`` (ppm relative to CSF) on top.
2. **Fields** (ppm of B0, :func:`~napari_fanet.physics.forward.forward_field`, ``b0_dir``):
   ``local = mask * forward_field(chi - mean)`` with ``mean`` the brain's mean ``chi`` (the
   reference for background removal, noise-free: the field of a uniform susceptibility is
   harmonic inside it, so no method can tell it from the background), ``background =
   forward_field(head_chi + mean * mask)`` (harmonic inside the brain, since its source is
   constant there) and ``total = background + forward_field(chi - mean)`` everywhere.
3. **Signal** per echo ``e``: ``s_e = m_e exp(i (phi0 + 2 pi f TE_e)) + n_e`` with
   ``f = total * gamma_bar * B0`` Hz (``gamma_bar = 42.577 MHz/T``), ``phi0`` a smooth receive
   phase (standard deviation ``phase_offset_rad``, 40 mm correlation length), magnitudes
   ``m_e = m_ref exp(-R2* (TE_e - TE_ref))`` from the subject's brain-extracted magnitude
   ``m_ref`` at its echo time ``TE_ref`` and an approximate ``R2* = 18 + 150 max(chi, 0)`` 1/s
   (the phantom's tissue trend), and complex Gaussian noise ``n_e`` with standard deviation
   ``median(m_1 in brain) / snr``. Phase ``angle(s_e)`` in ``[-pi, pi)`` (wrapped), magnitude
   ``|s_e|``. Outside the brain the magnitude is 0 plus noise (as a brain-extracted image), so
   the phase there is noise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from napari_fanet.simulation._random import lattice_field, spawn_streams, uniform
from napari_fanet.simulation.qsm_phantom import QSMSubject
from napari_fanet.simulation.template import grid_world_coords

__all__ = ["GREParams", "GREPhaseSubject", "head_susceptibility", "simulate_gre_phase"]

STREAMS = ("cavities", "offset", "snr", "noise")
GAMMA_BAR_MHZ_PER_T = 42.577


@dataclass(frozen=True)
class GREParams:
    """Acquisition and head model of :func:`simulate_gre_phase`.

    Attributes
    ----------
    echo_times_s : tuple of float
        Echo times in seconds, increasing.
    b0_tesla : float
        Main field in tesla.
    tissue_chi_ppm : float
        Head tissue susceptibility relative to air (ppm).
    head_margin_mm : float
        The head is the brain dilated by this distance (mm).
    n_cavities : tuple of int
        Range (inclusive) of the number of air cavities.
    cavity_radius_mm : tuple of float
        Range of the cavity radius (mm).
    cavity_gap_mm : float
        Smallest distance between a cavity and the brain (mm).
    edge_smoothing_mm : float
        Gaussian sigma (mm) blurring the air-tissue boundaries outside the brain (0: sharp).
    phase_offset_rad : float
        Standard deviation of the smooth receive phase ``phi0`` (radians).
    snr : tuple of float
        Range of the first echo's median brain magnitude over the complex noise sigma.
    """

    echo_times_s: tuple[float, ...] = (0.004, 0.008, 0.012)
    b0_tesla: float = 3.0
    tissue_chi_ppm: float = -9.4
    head_margin_mm: float = 16.0
    n_cavities: tuple[int, int] = (1, 2)
    cavity_radius_mm: tuple[float, float] = (8.0, 12.0)
    cavity_gap_mm: float = 10.0
    edge_smoothing_mm: float = 4.0
    phase_offset_rad: float = 1.0
    snr: tuple[float, float] = (40.0, 80.0)

    def __post_init__(self) -> None:
        te = tuple(float(t) for t in self.echo_times_s)
        increasing = all(b > a for a, b in itertools.pairwise(te))
        if not te or any(not 0 < t < 1 for t in te) or not increasing:
            raise ValueError(
                f"echo_times_s must be increasing values in (0, 1) s, got {self.echo_times_s!r}"
            )
        if not self.b0_tesla > 0:
            raise ValueError(f"b0_tesla must be > 0, got {self.b0_tesla!r}")
        if not 0 <= self.n_cavities[0] <= self.n_cavities[1]:
            raise ValueError(
                f"n_cavities must be (lo, hi) with 0 <= lo <= hi, got {self.n_cavities!r}"
            )
        if not self.edge_smoothing_mm >= 0:
            raise ValueError(f"edge_smoothing_mm must be >= 0, got {self.edge_smoothing_mm!r}")
        if not 0 < self.snr[0] <= self.snr[1]:
            raise ValueError(f"snr must be (lo, hi) with 0 < lo <= hi, got {self.snr!r}")


@dataclass(frozen=True)
class GREPhaseSubject:
    """A simulated multi-echo GRE acquisition with its ground-truth fields.

    Arrays have the subject's grid ``(X, Y, Z)``; echo arrays add a last axis ``E``.

    Attributes
    ----------
    phase : np.ndarray
        Wrapped phase in radians, ``[-pi, pi)``, float32, ``(X, Y, Z, E)``.
    magnitude : np.ndarray
        Magnitude (arbitrary units), float32, ``(X, Y, Z, E)``.
    echo_times_s : tuple of float
        Echo times (s).
    b0_tesla : float
        Main field (T).
    total_field_ppm, background_field_ppm : np.ndarray
        Total and background fields (ppm of B0), float32, everywhere.
    local_field_ppm : np.ndarray
        True local field (ppm of B0) of the brain's susceptibility minus its mean, float32,
        zero outside the brain mask, noise-free.
    chi : np.ndarray
        Brain susceptibility (ppm, relative to CSF), float32.
    mask, head, cavities : np.ndarray
        Brain mask, head and air cavities (bool).
    affine : np.ndarray
        4x4 voxel-to-world affine (mm).
    b0_dir : tuple of float
        B0 direction in array axes.
    noise_sigma : float
        Standard deviation of the complex noise (magnitude units).
    meta : dict
        JSON-ready description of the draws.
    """

    phase: np.ndarray
    magnitude: np.ndarray
    echo_times_s: tuple[float, ...]
    b0_tesla: float
    total_field_ppm: np.ndarray
    background_field_ppm: np.ndarray
    local_field_ppm: np.ndarray
    chi: np.ndarray
    mask: np.ndarray
    head: np.ndarray
    cavities: np.ndarray
    affine: np.ndarray
    b0_dir: tuple[float, float, float]
    noise_sigma: float
    meta: dict = field(default_factory=dict)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def hz_per_ppm(self) -> float:
        """Hz per ppm of B0 at this field strength (127.7 at 3 T)."""
        return GAMMA_BAR_MHZ_PER_T * self.b0_tesla


def head_susceptibility(
    brain: np.ndarray,
    voxel_size: Sequence[float],
    rng: np.random.Generator,
    params: GREParams | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head tissue and air cavities around a brain mask, susceptibility relative to air.

    Parameters
    ----------
    brain : np.ndarray
        Brain mask, bool, shape ``(X, Y, Z)``.
    voxel_size : sequence of float
        Voxel size in mm.
    rng : np.random.Generator
        Source of the cavity draws.
    params : GREParams, optional
        Head model.

    Returns
    -------
    head_chi : np.ndarray
        ``tissue_chi_ppm`` in the head outside the cavities, 0 elsewhere (ppm), float64; the
        boundaries blurred by ``edge_smoothing_mm`` outside the brain, exact inside it.
    head : np.ndarray
        The head (brain dilated by ``head_margin_mm``), bool.
    cavities : np.ndarray
        Air cavities inside the head, bool.
    """
    p = params or GREParams()
    vox = tuple(float(v) for v in voxel_size)
    dist = ndi.distance_transform_edt(~brain, sampling=vox)  # mm to the brain, 0 inside
    head = dist <= p.head_margin_mm
    cavities = np.zeros(brain.shape, dtype=bool)
    candidates = np.argwhere(head & (dist >= p.cavity_gap_mm + 0.5 * p.cavity_radius_mm[0]))
    n = int(rng.integers(p.n_cavities[0], p.n_cavities[1] + 1))
    grid = np.indices(brain.shape, dtype=np.float64)
    for _ in range(n if len(candidates) else 0):
        centre = candidates[rng.integers(len(candidates))]
        radius = uniform(rng, p.cavity_radius_mm)
        d2 = sum(((g - c) * v) ** 2 for g, c, v in zip(grid, centre, vox, strict=True))
        cavities |= d2 <= radius**2
    cavities &= head & (dist >= p.cavity_gap_mm)
    head_chi = np.where(head & ~cavities, p.tissue_chi_ppm, 0.0)
    if p.edge_smoothing_mm > 0:
        blurred = ndi.gaussian_filter(head_chi, [p.edge_smoothing_mm / v for v in vox])
        head_chi = np.where(brain, p.tissue_chi_ppm, blurred)
    return head_chi, head, cavities


def simulate_gre_phase(
    subject: QSMSubject, seed: int, *, params: GREParams | None = None
) -> GREPhaseSubject:
    """Simulate wrapped multi-echo GRE phase and magnitude of a QSM subject (module docstring).

    Parameters
    ----------
    subject : QSMSubject
        From :func:`napari_fanet.simulation.simulate_qsm_subject` (best with ``noise=False``:
        its ``chi`` and ``magnitude`` are used, its noisy ``local_field`` is not).
    seed : int
        Seeds the cavities, the receive phase, the SNR and the noise.
    params : GREParams, optional
        Acquisition and head model.

    Returns
    -------
    GREPhaseSubject
        Wrapped phase, magnitude, echo times and the true total, background and local fields.
    """
    from napari_fanet.physics.forward import (
        forward_field,  # imports torch: keep it out of module import
    )

    p = params or GREParams()
    rng = spawn_streams(seed, STREAMS)
    brain = np.asarray(subject.mask, dtype=bool)
    vox = subject.voxel_size
    b0 = tuple(subject.b0_dir)
    head_chi, head, cavities = head_susceptibility(brain, vox, rng["cavities"], p)
    chi = np.asarray(subject.chi, dtype=np.float64)
    # The mean brain susceptibility acts like head tissue: its field is harmonic in the brain.
    demeaned = np.where(brain, chi - (chi[brain].mean() if brain.any() else 0.0), 0.0)
    brain_field = forward_field(demeaned, vox, b0)  # ppm, from sources inside the brain
    background = forward_field(head_chi + (chi - demeaned), vox, b0)  # harmonic in the brain
    total = background + brain_field
    local = np.where(brain, brain_field, 0.0)

    world = grid_world_coords(brain.shape, subject.affine)
    phi0 = p.phase_offset_rad * lattice_field(rng["offset"], world, 40.0).astype(np.float64)
    te = np.asarray(p.echo_times_s, dtype=np.float64)  # (E,)
    te_ref = float(subject.meta.get("echo_time_s", 0.02))
    r2s = 18.0 + 150.0 * np.clip(chi, 0.0, None)  # 1/s
    m_ref = np.asarray(subject.magnitude, dtype=np.float64) * brain
    mag = m_ref[..., None] * np.exp(-r2s[..., None] * (te - te_ref))  # (X, Y, Z, E)
    hz = total * GAMMA_BAR_MHZ_PER_T * p.b0_tesla
    clean = mag * np.exp(1j * (phi0[..., None] + 2 * math.pi * hz[..., None] * te))
    snr = uniform(rng["snr"], p.snr)
    sigma = float(np.median(mag[..., 0][brain])) / snr if brain.any() else 1.0 / snr
    noise_rng = rng["noise"]
    noise = noise_rng.standard_normal(clean.shape) + 1j * noise_rng.standard_normal(clean.shape)
    signal = clean + sigma * noise  # (X, Y, Z, E) complex
    meta = {
        "seed": int(seed),
        "subject_seed": subject.meta.get("seed"),
        "echo_times_s": [float(t) for t in te],
        "b0_tesla": float(p.b0_tesla),
        "tissue_chi_ppm": float(p.tissue_chi_ppm),
        "n_cavities_voxels": int(cavities.sum()),
        "snr": round(snr, 3),
        "noise_sigma": sigma,
        "phase_offset_rad": float(p.phase_offset_rad),
        "field_units": "ppm of B0",
    }
    return GREPhaseSubject(
        phase=np.angle(signal).astype(np.float32),
        magnitude=np.abs(signal).astype(np.float32),
        echo_times_s=tuple(float(t) for t in te),
        b0_tesla=float(p.b0_tesla),
        total_field_ppm=total.astype(np.float32),
        background_field_ppm=background.astype(np.float32),
        local_field_ppm=local.astype(np.float32),
        chi=chi.astype(np.float32),
        mask=brain,
        head=head,
        cavities=cavities,
        affine=np.asarray(subject.affine, dtype=np.float64),
        b0_dir=b0,
        noise_sigma=sigma,
        meta=meta,
    )
