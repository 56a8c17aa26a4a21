"""QSM training subjects seen through the phase chain: the ``chain`` family.

The phase path (``qsm --phase``) gives the network the local field that the chain estimates from
wrapped multi-echo phase, not the true local field the other families give it. That field
differs from the truth in two ways a network can learn about:

- acquisition noise after the echo fit, weighted by the magnitude (stronger and more
  structured than the Gaussian field noise of the other families);
- the background removal's errors: the eroded mask, and the part of the local field that is
  harmonic inside the brain, which every background removal takes away with the background.

Each ``chain`` subject is a :data:`.qsm_families.FULL_RANGE` phantom (noise-free), put in a head
with air cavities and acquired as 3-echo GRE (4, 8, 12 ms at 3 T) by
:func:`.gre_phase.simulate_gre_phase`, with a first-echo SNR drawn from :data:`CHAIN_SNR`. The
phase is stored as signed 12-bit integers as a scanner writes it, and
:func:`napari_fanet.physics.phase_chain.run_phase_chain` runs with its defaults (scale detection,
Otsu mask, Laplacian unwrapping, echo fit, LBV; ``background="vsharp"`` for the
``chain-vsharp`` family). The subject's ``local_field`` and ``mask``
are the chain's local field and local mask; its ``chi`` is the true susceptibility in that mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from napari_fanet.simulation.qsm_phantom import QSMSubject, simulate_qsm_subject

#: Range of the first echo's median brain magnitude over the complex noise sigma. It spans the
#: default of :class:`.gre_phase.GREParams` (40-80) and the low-noise range (200-400) of
#: ``benchmarks/phase_chain.py``.
CHAIN_SNR = (30.0, 400.0)
#: The SNR of a ``noise=False`` chain subject: the chain still runs, on an almost clean phase.
NOISE_FREE_SNR = 1.0e4
#: Stored phase units per pi radians (signed 12-bit, as many scanners write phase).
STORED_UNITS_PER_PI = 4096


def store_phase_as_integers(phase: np.ndarray) -> np.ndarray:
    """Phase in radians ``[-pi, pi)`` as the signed 12-bit integers a scanner stores, int16."""
    scaled = np.round(np.asarray(phase) * STORED_UNITS_PER_PI / math.pi)
    return np.clip(scaled, -STORED_UNITS_PER_PI, STORED_UNITS_PER_PI - 1).astype(np.int16)


def simulate_chain_qsm_subject(
    seed: int, voxel_size: Sequence[float], *, noise: bool = True, background: str | None = None
) -> QSMSubject:
    """One ``chain`` subject (module docstring) from ``seed``.

    Parameters
    ----------
    seed : int
        Seeds the phantom, the head, the receive phase, the SNR and the noise.
    voxel_size : sequence of 3 float
        Voxel size in mm.
    noise : bool
        False: the acquisition SNR is :data:`NOISE_FREE_SNR` instead of a draw from
        :data:`CHAIN_SNR`.
    background : {"lbv", "vsharp", "pdf"}, optional
        The chain's background removal; default the chain's
        (:data:`napari_fanet.physics.phase_chain.DEFAULT_BACKGROUND`).

    Returns
    -------
    QSMSubject
        ``local_field``: the chain's local field (ppm of B0), 0 outside its local mask;
        ``mask``: the chain's local mask; ``chi``: the true susceptibility (ppm) in that mask;
        ``magnitude``: the first echo's magnitude in that mask; ``meta`` adds the acquisition's
        draws under ``"acquisition"`` and the chain's step timings.
    """
    from napari_fanet.physics.phase_chain import PhaseChainSettings, run_phase_chain
    from napari_fanet.simulation.gre_phase import GREParams, simulate_gre_phase
    from napari_fanet.simulation.qsm_families import FULL_RANGE

    # The chain's options, checked before the (slow) simulation; B0 comes from the acquisition.
    chain_options = {} if background is None else {"background": background}
    PhaseChainSettings(**chain_options)
    phantom = simulate_qsm_subject(seed, voxel_size, noise=False, params=FULL_RANGE)
    snr = CHAIN_SNR if noise else (NOISE_FREE_SNR, NOISE_FREE_SNR)
    gre = simulate_gre_phase(phantom, seed, params=GREParams(snr=snr))
    settings = PhaseChainSettings(b0_tesla=gre.b0_tesla, b0_dir=gre.b0_dir, **chain_options)
    chain = run_phase_chain(
        store_phase_as_integers(gre.phase), gre.echo_times_s, gre.voxel_size,
        magnitude=gre.magnitude, settings=settings,
    )  # fmt: skip
    mask = np.asarray(chain.local_mask, dtype=bool)
    meta = dict(
        phantom.meta,
        family="chain" if background is None else f"chain-{background}",
        background=settings.background,
        acquisition=gre.meta,
        chain_s=chain.timings_s,
    )
    return replace(
        phantom,
        chi=np.where(mask, phantom.chi, 0.0).astype(np.float32),
        local_field=np.where(mask, chain.local_field_ppm, 0.0).astype(np.float32),
        magnitude=np.where(mask, gre.magnitude[..., 0], 0.0).astype(np.float32),
        mask=mask,
        meta=meta,
    )
