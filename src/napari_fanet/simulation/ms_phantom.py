"""Synthetic MS subjects: T1, T2 and FLAIR with white-matter lesions, and their masks.

Image model, per contrast (T1-weighted, T2-weighted, FLAIR), in this order:

1. Partial-volume mixing of the subject's GM/WM/CSF probabilities with tissue intensities that
   are jittered per subject (+-``contrast_jitter``), a per-subject gamma (``gamma``) and a faint
   smooth texture (2 % std) in tissue.
2. Normal periventricular FLAIR hyperintensity (NOT lesions, absent from the lesion mask): a thin
   rim outside the lateral ventricles, ``exp(-d / thickness)`` of the distance ``d`` to the
   ventricle, strongest at the frontal and occipital horns ("caps") and weaker along the bodies
   ("bands"), patchy. It is added to FLAIR (and half as much to T2).
3. Lesions: ``n_lesions`` ovoids (random count), log-normal volumes, elongated (up to 2:1),
   randomly oriented except periventricular ones, whose long axis points away from the ventricle
   (Dawson's fingers); irregular borders from a smooth random field; placed periventricularly
   (within 1.5-8 mm of a lateral ventricle), in deep WM or juxtacortically (at the GM/WM border),
   never in CSF. Each lesion has a severity that sets its contrast: hyperintense on FLAIR and T2,
   hypointense on T1 (relative to WM), with fainter edges. Partial volume: a voxel with lesion
   fraction ``w`` is ``(1 - w) * tissue + w * lesion``; the lesion mask is ``w >= 0.5``.
4. A smooth multiplicative bias field (partly shared between contrasts), Rician noise with
   sigma relative to the WM intensity, brain extraction (0 outside the mask), and scaling to
   integer units with WM near 1000 (stored as int16 on disk).

The faint lesions, the caps and the bias field make a FLAIR threshold clearly imperfect, while
the lesions stay visible in all three contrasts for a CNN to learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from napari_fanet.simulation._random import lattice_field, rician, spawn_streams, uniform
from napari_fanet.simulation.deform import random_anatomy
from napari_fanet.simulation.lesions import periventricular_rim, place_lesions
from napari_fanet.simulation.params import MSParams
from napari_fanet.simulation.template import check_voxel_size, grid_world_coords

STREAMS = ("anatomy", "contrast", "lesions", "caps", "bias", "noise", "texture")
CONTRASTS = ("t1", "t2", "flair")
#: Relative tissue intensities before per-subject jitter.
TISSUE_INTENSITY = {
    "t1": {"wm": 1.00, "gm": 0.62, "csf": 0.22},
    "t2": {"wm": 0.40, "gm": 0.58, "csf": 1.00},
    "flair": {"wm": 0.50, "gm": 0.66, "csf": 0.10},
}


@dataclass(frozen=True)
class MSSubject:
    """One simulated MS subject on an MNI-like RAS grid.

    Attributes
    ----------
    t1, t2, flair : np.ndarray
        Images, float32 holding integers (WM near 1000), 0 outside the brain.
    lesion_mask : np.ndarray
        Ground-truth lesions, bool.
    brain_mask : np.ndarray
        Brain mask, bool.
    wm_prob : np.ndarray
        White-matter probability, float32 in [0, 1] (lesion voxels keep their WM probability).
    wm_mask : np.ndarray
        ``(wm_prob >= 0.5) | lesion_mask``, bool.
    affine : np.ndarray
        4x4 voxel-to-world (mm) affine.
    meta : dict
        JSON-ready description: seed, voxel size, intensities, noise, lesions.
    """

    t1: np.ndarray
    t2: np.ndarray
    flair: np.ndarray
    lesion_mask: np.ndarray
    brain_mask: np.ndarray
    wm_prob: np.ndarray
    wm_mask: np.ndarray
    affine: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def simulate_ms_subject(
    seed: int,
    voxel_size: float | Sequence[float] = 2.0,
    *,
    params: MSParams | None = None,
    noise: bool = True,
) -> MSSubject:
    """Simulate one MS subject, deterministically from ``seed``.

    Parameters
    ----------
    seed : int
        Non-negative integer; the same seed and arguments give identical arrays.
    voxel_size : float or sequence of 3 floats
        Voxel size in mm (anisotropic allowed); the grid covers the MNI box.
    params : MSParams, optional
        Ranges of the random draws (``MSParams()`` by default).
    noise : bool
        If False, no Rician noise is added (all other draws unchanged).

    Returns
    -------
    MSSubject
        Images, masks, affine and metadata.
    """
    p = params or MSParams()
    vox = check_voxel_size(voxel_size)
    rng = spawn_streams(seed, STREAMS)
    anatomy = random_anatomy(rng["anatomy"], vox, p.deformation)
    tissues = anatomy.tissues
    mask, affine = tissues.mask, tissues.affine
    world = grid_world_coords(mask.shape, affine)

    vent_dist = ndi.distance_transform_edt(tissues.ventricles < 0.5, sampling=vox).astype(
        np.float32
    )
    depth = ndi.distance_transform_edt(mask, sampling=vox).astype(np.float32)

    crng = rng["contrast"]
    intensity = {
        c: {
            t: v * uniform(crng, (1 - p.contrast_jitter, 1 + p.contrast_jitter))
            for t, v in tv.items()
        }
        for c, tv in TISSUE_INTENSITY.items()
    }
    gamma = {c: uniform(crng, p.gamma) for c in CONTRASTS}
    scale = {c: uniform(crng, (800.0, 1200.0)) for c in CONTRASTS}

    texture = lattice_field(rng["texture"], world, 5.0)
    irregular = lattice_field(rng["texture"], world, 3.0)
    lesion_w, severity, lesions = place_lesions(
        rng["lesions"], p, tissues, world, vent_dist, depth, irregular
    )
    lesion_mask = lesion_w >= 0.5
    template_y = anatomy.template_world[1]
    rim, rim_info = periventricular_rim(rng["caps"], p, vent_dist, template_y, world, vox)
    rim = rim * (1.0 - tissues.csf) * mask

    brng = rng["bias"]
    bias_std = uniform(brng, p.bias_std)
    shared = lattice_field(brng, world, 70.0)
    noise_rel = uniform(rng["noise"], p.noise_sigma)
    contrast_ranges = {"t1": p.t1_contrast, "t2": p.t2_contrast, "flair": p.flair_contrast}
    images = {}
    for c in CONTRASTS:
        iv = intensity[c]
        i_wm = iv["wm"]
        base = iv["wm"] * tissues.wm + iv["gm"] * tissues.gm + iv["csf"] * tissues.csf
        base = i_wm * np.power(np.maximum(base / i_wm, 0.0), gamma[c])
        base = base * (1.0 + 0.02 * texture)
        if c == "flair":
            base = base + i_wm * rim
        elif c == "t2":
            base = base + 0.5 * i_wm * rim
        lo, hi = contrast_ranges[c]
        rel = (lo + (hi - lo) * severity) * (0.75 + 0.25 * lesion_w)
        lesion_value = i_wm * (1.0 - rel) if c == "t1" else i_wm * (1.0 + rel)
        img = (1.0 - lesion_w) * base + lesion_w * lesion_value
        own = lattice_field(brng, world, 70.0)
        img = img * np.exp(bias_std * (0.7 * shared + 0.3 * own))
        if noise:
            img = rician(rng["noise"], img.astype(np.float32), noise_rel * i_wm)
        img = np.round(img * (scale[c] / i_wm)) * mask
        images[c] = np.clip(img, 0, 32767).astype(np.float32)

    wm_prob = tissues.wm.astype(np.float32)
    meta = {
        "seed": int(seed),
        "task": "ms",
        "voxel_size": list(vox),
        "shape": list(mask.shape),
        "noise": bool(noise),
        "noise_sigma_rel_wm": round(noise_rel, 5) if noise else 0.0,
        "bias_std": round(bias_std, 5),
        "tissue_intensity": {
            c: {t: round(v * scale[c] / intensity[c]["wm"], 2) for t, v in tv.items()}
            for c, tv in intensity.items()
        },
        "gamma": {c: round(g, 4) for c, g in gamma.items()},
        "periventricular_rim": rim_info,
        "n_lesions": len(lesions),
        "lesion_voxels": int(lesion_mask.sum()),
        "lesions": lesions,
        "brain_voxels": int(mask.sum()),
    }
    return MSSubject(
        t1=images["t1"],
        t2=images["t2"],
        flair=images["flair"],
        lesion_mask=lesion_mask,
        brain_mask=mask,
        wm_prob=wm_prob,
        wm_mask=(wm_prob >= 0.5) | lesion_mask,
        affine=affine,
        meta=meta,
    )
