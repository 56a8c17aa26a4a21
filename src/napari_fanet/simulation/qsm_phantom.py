"""Synthetic QSM subjects: susceptibility (ppm), local field (ppm of B0), magnitude, brain mask.

Susceptibility model (ppm, relative to CSF), each value drawn per subject from its range:

==========================  ===============  ==============================================
structure                   chi (ppm)        where
==========================  ===============  ==============================================
CSF                         -0.003 .. 0.003  template CSF probability
white matter                -0.04 .. -0.02   template WM probability
cortical grey matter        0.01 .. 0.02     template GM probability
caudate nucleus             0.04 .. 0.08     ellipsoid, MNI (+-13, 12, 10), semi-axes 5/9/8
putamen                     0.03 .. 0.07     ellipsoid, MNI (+-25, 2, 0), semi-axes 5/14/8
globus pallidus             0.10 .. 0.20     ellipsoid, MNI (+-19, -4, -1), semi-axes 4/8/5
thalamus                    0.00 .. 0.03     ellipsoid, MNI (+-11, -18, 7), semi-axes 7/12/7
red nucleus                 0.08 .. 0.15     ellipsoid, MNI (+-5, -20, -10), semi-axes 3/3.5/3.5
substantia nigra            0.10 .. 0.18     ellipsoid, MNI (+-11, -17, -12), semi-axes 3/6/3
dentate nucleus             0.08 .. 0.14     ellipsoid, MNI (+-14, -57, -35), semi-axes 6/8/5
veins                       0.30 .. 0.45     random tubes, radius 0.6-1.5 mm
texture                     std 0.003-0.008  smooth random field (6 mm), brain tissue only
==========================  ===============  ==============================================

The tissue and nucleus ranges are rounded, representative adult values of the kind reported by
Li et al. 2011 (NeuroImage 55:1645, age dependence of deep grey nuclei), Deistung et al. 2013
(NeuroImage 65:299, 7 T QSM of the basal ganglia and midbrain) and the QSM consensus
recommendations (QSM Consensus Organization Committee, Magn Reson Med 2024): the iron-rich
pallidum, nigra, red and dentate nuclei highest, putamen and caudate lower, thalamus near zero,
white matter negative. Venous blood values follow from deoxygenated haemoglobin (about 0.3-0.45
ppm above tissue for a venous oxygenation of 55-70 %). The nucleus centres are approximate MNI
centroids (Harvard-Oxford subcortical atlas for caudate, putamen, pallidum and thalamus; midbrain
and cerebellar nuclei from MNI atlases of them), given for the right hemisphere and mirrored;
each is jittered by up to 1.5 mm and its semi-axes by +-10 % per subject, and it moves with the
subject's deformation (it is evaluated at the template coordinates of each voxel). They are
coarse stand-ins for anatomy, not an atlas.

Local field: ``mask * (forward_field(chi, voxel_size, b0_dir) + noise)`` (ppm of B0) with
``b0_dir`` tilted from the world z axis by up to ``max_tilt_deg`` (uniform over the spherical
cap), and Gaussian noise whose standard deviation is ``field_noise_std`` ppm where the magnitude
has its median brain value, scaled by ``median / magnitude`` (clipped to 0.5-3x) as phase noise
is. The magnitude is a single-echo GRE signal ``PD * exp(-TE * R2*)`` with ``R2*`` rising with
positive susceptibility, a smooth bias field and Rician noise, brain-extracted (0 outside the
mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_fanet.io.b0_direction import world_to_array_direction
from napari_fanet.simulation._random import lattice_field, rician, spawn_streams, uniform
from napari_fanet.simulation.deform import random_anatomy
from napari_fanet.simulation.params import QSMParams
from napari_fanet.simulation.qsm_sources import random_sources
from napari_fanet.simulation.qsm_structures import (
    nuclei_map,
    random_b0_direction,
    vein_map,
    vein_paths,
)
from napari_fanet.simulation.template import check_voxel_size, grid_world_coords

STREAMS = (
    "anatomy",
    "values",
    "nuclei",
    "veins",
    "texture",
    "b0",
    "magnitude",
    "noise",
    "sources",
)


@dataclass(frozen=True)
class QSMSubject:
    """One simulated QSM subject on an MNI-like RAS grid.

    Attributes
    ----------
    chi : np.ndarray
        Susceptibility (ppm), float32, 0 outside the mask: the reference.
    local_field : np.ndarray
        Local field (ppm of B0), float32, 0 outside the mask.
    magnitude : np.ndarray
        Brain-extracted GRE magnitude (arbitrary units), float32.
    mask : np.ndarray
        Brain mask, bool.
    affine : np.ndarray
        4x4 voxel-to-world (mm) affine.
    b0_dir : tuple of float
        Unit B0 direction in array axes (the convention of :mod:`napari_fanet.physics.forward`).
    b0_dir_world : tuple of float
        The same direction in world (RAS mm) axes.
    meta : dict
        JSON-ready description: seed, voxel size, drawn values, noise level, tilt, counts.
    """

    chi: np.ndarray
    local_field: np.ndarray
    magnitude: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    b0_dir: tuple[float, float, float]
    b0_dir_world: tuple[float, float, float]
    meta: dict = field(default_factory=dict)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def simulate_qsm_subject(
    seed: int,
    voxel_size: float | Sequence[float] = 2.0,
    *,
    params: QSMParams | None = None,
    noise: bool = True,
) -> QSMSubject:
    """Simulate one QSM subject, deterministically from ``seed``.

    Parameters
    ----------
    seed : int
        Non-negative integer; the same seed and arguments give identical arrays.
    voxel_size : float or sequence of 3 floats
        Voxel size in mm (anisotropic allowed, e.g. ``(1, 1, 3)``); the grid covers the MNI box.
    params : QSMParams, optional
        Ranges of the random draws (``QSMParams()`` by default).
    noise : bool
        If False, the local field is exactly ``mask * forward_field(chi)`` and the magnitude has
        no Rician noise (all other draws unchanged).

    Returns
    -------
    QSMSubject
        Arrays, affine, B0 direction and metadata.
    """
    from napari_fanet.physics.forward import (
        forward_field,  # imports torch: keep it out of module import
    )

    p = params or QSMParams()
    vox = check_voxel_size(voxel_size)
    rng = spawn_streams(seed, STREAMS)
    anatomy = random_anatomy(rng["anatomy"], vox, p.deformation)
    tissues = anatomy.tissues
    mask, affine = tissues.mask, tissues.affine
    edge_mm = float(np.mean(vox))

    values = {
        "csf": uniform(rng["values"], p.chi_csf),
        "wm": uniform(rng["values"], p.chi_wm),
        "gm": uniform(rng["values"], p.chi_gm),
    }
    chi = values["csf"] * tissues.csf + values["wm"] * tissues.wm + values["gm"] * tissues.gm

    nuc_w, nuc_chi, nuclei = nuclei_map(rng["nuclei"], anatomy.template_world, edge_mm)
    nuc_w *= 1.0 - tissues.csf  # nuclei are tissue, never CSF
    chi = (1.0 - nuc_w) * chi + nuc_w * nuc_chi

    world = grid_world_coords(mask.shape, affine)
    texture_std = uniform(rng["texture"], p.texture_std)
    texture = lattice_field(rng["texture"], world, 6.0) * texture_std
    chi = chi + texture * (1.0 - tissues.csf)

    paths = vein_paths(rng["veins"], mask, affine, p)
    vein_w, vein_chi = vein_map(paths, mask, affine, edge_mm)
    chi = ((1.0 - vein_w) * chi + vein_w * vein_chi) * mask
    if not p.anatomy_contrast:
        chi = np.zeros_like(chi)
        vein_w = np.zeros_like(vein_w)
    sources, source_info = random_sources(rng["sources"], world, mask, p.sources, edge_mm)
    for weight, value in sources:
        chi = (1.0 - weight) * chi + weight * value
    chi = (chi * mask).astype(np.float32)

    b0_world = random_b0_direction(rng["b0"], p.max_tilt_deg, p.min_tilt_deg)
    b0_array = world_to_array_direction(b0_world, affine)
    tilt = float(np.degrees(np.arccos(np.clip(b0_world[2], -1.0, 1.0))))

    # GRE magnitude: PD * exp(-TE R2*), R2* (1/s) rising with paramagnetic susceptibility.
    mrng = rng["magnitude"]
    pd = 0.70 * tissues.wm + 0.82 * tissues.gm + 1.0 * tissues.csf
    r2s = 20.0 * tissues.wm + 16.0 * tissues.gm + 4.0 * tissues.csf
    r2s = r2s + 150.0 * np.clip(chi, 0.0, None) + 30.0 * vein_w
    te = uniform(mrng, (0.015, 0.025))
    bias = np.exp(0.12 * lattice_field(mrng, world, 60.0))
    clean_mag = (pd * np.exp(-te * r2s) * bias * mask).astype(np.float32)
    median = float(np.median(clean_mag[mask])) if mask.any() else 1.0
    snr = uniform(mrng, p.magnitude_snr)
    noise_std = uniform(rng["noise"], p.field_noise_std)
    nrng = rng["noise"]
    if noise:
        magnitude = rician(nrng, clean_mag, median / snr) * mask
        relative = np.clip(median / np.maximum(clean_mag, 1e-6), 0.5, 3.0)
        field_noise = noise_std * relative * nrng.standard_normal(mask.shape, dtype=np.float32)
    else:
        magnitude = clean_mag
        field_noise = 0.0
    field_clean = forward_field(chi, vox, tuple(b0_array))
    local_field = ((field_clean + field_noise) * mask).astype(np.float32)

    meta = {
        "seed": int(seed),
        "task": "qsm",
        "voxel_size": list(vox),
        "shape": list(mask.shape),
        "b0_dir": [round(float(v), 8) for v in b0_array],
        "b0_dir_world": [round(float(v), 8) for v in b0_world],
        "b0_tilt_deg": round(tilt, 4),
        "field_units": "ppm of B0",
        "chi_units": "ppm",
        "noise": bool(noise),
        "field_noise_std_ppm": round(noise_std, 6) if noise else 0.0,
        "magnitude_snr": round(snr, 3) if noise else None,
        "echo_time_s": round(te, 5),
        "tissue_chi_ppm": {k: round(v, 5) for k, v in values.items()},
        "nucleus_chi_ppm": nuclei,
        "texture_std_ppm": round(texture_std, 5),
        "n_veins": len(paths) if p.anatomy_contrast else 0,
        "anatomy_contrast": bool(p.anatomy_contrast),
        "sources": source_info,
        "brain_voxels": int(mask.sum()),
    }
    return QSMSubject(
        chi=chi,
        local_field=local_field,
        magnitude=magnitude.astype(np.float32),
        mask=mask,
        affine=affine,
        b0_dir=tuple(float(v) for v in b0_array),
        b0_dir_world=tuple(float(v) for v in b0_world),
        meta=meta,
    )
