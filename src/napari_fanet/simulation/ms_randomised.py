"""Domain-randomised MS subjects at 1 mm (or any voxel size): the ``randomised`` family.

The ``phantom`` family (:mod:`.ms_phantom`) draws one realistic contrast with small jitter,
small ovoid lesions and mild artefacts; networks trained on it fail on real scans. This family
randomises what differs between sites, in the spirit of SynthSeg (Billot et al. 2023), so that
a network can only rely on what all scans share (lesions brighter than white matter on FLAIR):

- anatomy: the shipped 2 mm MNI template warped by a random affine and displacement
  (:func:`~.deform.random_anatomy`), then carried smoothly to the output grid
  (:func:`~.fast_fields.regrid`, 1 mm by default); with ``p_atrophy`` (generator version 5,
  ``--family randomised-v5``; off by default) the lateral ventricles grow first
  (:func:`grow_ventricles`);
- lesions (:mod:`.ms_lesion_load`): a total load of 0.1-80 mL, from a few small lesions to
  confluent periventricular ones, irregular shapes, periventricular, juxtacortical, deep and
  infratentorial sites, down to 3 mm;
- contrast (:func:`draw_contrast`): independent random mean intensities per tissue class (white
  matter, cortical grey matter, deep grey matter, CSF) in every channel, either around typical
  values (x exp(N(0, 0.2))) or, with probability ``p_random_contrast``, uniform in [0.05, 1]
  (any contrast at all); lesions hyperintense relative to white matter on FLAIR and T2 by a
  random factor, hypo- to iso-intense on T1 (ranges matched to the three shared real patients:
  per-lesion FLAIR / WM 1.2-1.5, T2 / WM 1.2-2.8, T1 / WM 0.3-1.0); normal periventricular
  FLAIR caps (not lesions) on some subjects; with ``p_bright_cortex`` (generator version 4,
  ``--family randomised-v4``; off by default) regional grey-matter brightening on FLAIR and T2
  (not lesions), as the insula, cingulate and mesial temporal cortex show on real scans;
- scanner and preprocessing (:mod:`.scanner_artefacts`): strong bias fields, blur, thick-slice
  2D acquisitions resampled to the grid, Gaussian or Rician noise, gamma, scaling and
  saturation.

All three channels are always simulated (modality dropout happens in training). Subjects are
:class:`~.ms_phantom.MSSubject` objects, so :func:`~.dataset.write_subject` writes them in the
standard layout. On one core a 1 mm subject takes about 5-8 s (see ``tests`` and the handoff
notes for measured numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from napari_fanet.simulation._random import check_seed, spawn_streams
from napari_fanet.simulation.deform import DeformationParams, random_anatomy
from napari_fanet.simulation.fast_fields import regrid, smooth_noise
from napari_fanet.simulation.ms_lesion_load import LesionLoadParams, draw_lesions, site_pools
from napari_fanet.simulation.ms_phantom import MSSubject
from napari_fanet.simulation.scanner_artefacts import ArtefactParams, acquire
from napari_fanet.simulation.template import check_voxel_size, mni_grid

FAMILY = "randomised"
#: Bumped whenever a default range changes, so datasets made before can be told apart
#: (``meta.json`` ``generator_version``). 2: FLAIR lesion contrast matched to real scans.
#: 3: confluent lesions from faint to severe, fading outwards, with a soft edge.
#: 4 (``randomised-v4``, not the default: it did not help ``fanet-seg``, see its card): regional
#: grey-matter brightening on FLAIR and T2 (unlabelled).
#: 5 (``randomised-v5``, not the default): version 4 plus atrophy, enlarged lateral ventricles.
#: 6 (``randomised-v6``, not the default): version 4 plus a fine multiplicative texture over
#: tissue and lesions alike.
#: 7 (``randomised-v7``, not the default): version 4 with smaller discrete lesions (from 2 mm
#: across, median 30 mm^3).
GENERATOR_VERSION = 3

STREAMS = (
    "anatomy", "contrast", "lesions", "caps", "texture", "t1", "t2", "flair", "cortex", "atrophy",
    "fine_texture",
)  # fmt: skip
CHANNELS = ("t1", "t2", "flair")
CLASSES = ("wm", "cgm", "dgm", "csf")
#: Typical relative intensities per channel and class (the "realistic" contrast draw).
TYPICAL_INTENSITY = {
    "t1": {"wm": 1.00, "cgm": 0.62, "dgm": 0.75, "csf": 0.22},
    "t2": {"wm": 0.40, "cgm": 0.58, "dgm": 0.50, "csf": 1.00},
    "flair": {"wm": 0.50, "cgm": 0.58, "dgm": 0.55, "csf": 0.12},
}
ANATOMY_VOXEL_MM = 2.0  # the template's own grid: warping there is 8x cheaper than at 1 mm


@dataclass(frozen=True)
class RandomisedMSParams:
    """Ranges of the randomised MS family.

    Attributes
    ----------
    p_random_contrast : float
        Per T1 and T2 channel, probability of fully random class intensities (uniform in
        [0.05, 1]). FLAIR never gets random contrast: a FLAIR is by definition the contrast
        with dark CSF and bright lesions, and a random one hides the lesions among grey matter.
    typical_log_std : float
        Otherwise each typical intensity is multiplied by ``exp(N(0, typical_log_std))``.
    flair_lesion : tuple of float
        FLAIR lesion intensity over the brighter of WM and GM: the subject's faintest lesions
        lie in ``[lo, mid]``, its most severe ones in ``[mid, hi]`` (see
        :func:`draw_contrast`). Real lesions are subtle (per-lesion FLAIR / WM 1.2-1.5 on the
        shared patients, GM / WM 1.10-1.18) but above the grey matter; brighter simulated
        lesions teach a network to miss them, fainter ones than GM teach it nothing.
    t2_lesion : tuple of float
        T2 lesion intensity over WM, as above.
    t1_lesion : tuple of float
        T1 lesion intensity over WM (below 1: hypointense; 1: iso-intense).
    sharpen : tuple of float
        Range of the exponent ``a`` of tissue sharpening ``p_k^a / sum_j p_j^a``: the 2 mm
        template's partial volume is blurrier than a 1 mm scan's (``a = 1``: unchanged).
    sulci_max : float
        Up to this fraction of the cortical grey matter becomes CSF along a fine random field
        (1.2 mm): sulcus-like detail that the average template lacks.
    p_caps : float
        Probability of normal periventricular FLAIR caps.
    p_bright_cortex : float
        Probability of regional grey-matter brightening (default 0: generator version 3; above
        0: version 4). On the shared real patients, most confident false positives of the
        version-3-trained model were bright cortex (insula, cingulate, mesial temporal), which
        version 3's single grey matter value per subject never shows. A training stage on
        version 4 (0.7) cut them on one patient and lost lesions on another (``fanet-seg``'s
        card), so it is not the default.
    bright_cortex_max : float
        Largest relative brightening of the grey matter, drawn per channel (FLAIR, T2) in
        ``[0.1, bright_cortex_max]``; it peaks in patches of a smooth random field.
    bright_cortex_mm : float
        Correlation length of that field (mm).
    texture_std : float
        Largest standard deviation of a multiplicative tissue texture.
    p_atrophy : float
        Probability of atrophy: the lateral ventricles grow into the tissue around them by a
        distance drawn in ``ventricle_growth_mm`` (default 0: versions 3 and 4; above 0: version
        5). Patients with a heavy lesion load are often atrophic (patient 19 of the shared
        scans: 16 % of its brain is CSF, 7-8 % for the others), while the template's ventricles
        are those of a healthy average brain.
    ventricle_growth_mm : tuple of float
        Range of that growth (mm), drawn uniformly.
    fine_texture_std : float
        Largest standard deviation of a fine multiplicative texture (white noise blurred by
        ``FINE_TEXTURE_VOX``, drawn per subject in ``[0, fine_texture_std]``) over tissue and
        lesions alike, applied before the scanner effects (default 0: versions 3-5; above 0:
        version 6). The shared real FLAIRs are rougher at the 1 mm scale than most simulations
        (the white matter's fine texture 0.066-0.088 against a median of 0.039 for version 4;
        ``benchmarks/results/ms-patient19/tissue_contrast.md``), and the simulated lesions have
        no texture of their own. Smoothing a real scan's brain around its lesions makes the
        network call more lesion (``benchmarks/results/ms-patient19/local_smoothing.md``).
    lesions : LesionLoadParams
        Lesion load, sizes and sites.
    artefacts : ArtefactParams
        Scanner and preprocessing effects.
    deformation : DeformationParams
        Anatomy ranges.
    """

    p_random_contrast: float = 0.25
    typical_log_std: float = 0.2
    flair_lesion: tuple[float, float, float] = (1.08, 1.25, 1.8)
    t2_lesion: tuple[float, float, float] = (1.15, 1.6, 2.6)
    t1_lesion: tuple[float, float, float] = (0.4, 0.8, 1.0)
    sharpen: tuple[float, float] = (1.0, 3.0)
    sulci_max: float = 0.8
    p_caps: float = 0.6
    p_bright_cortex: float = 0.0
    bright_cortex_max: float = 0.35
    bright_cortex_mm: float = 15.0
    texture_std: float = 0.05
    p_atrophy: float = 0.0
    ventricle_growth_mm: tuple[float, float] = (1.0, 6.0)
    fine_texture_std: float = 0.0
    lesions: LesionLoadParams = field(default_factory=LesionLoadParams)
    artefacts: ArtefactParams = field(default_factory=ArtefactParams)
    deformation: DeformationParams = field(default_factory=DeformationParams)

    def __post_init__(self) -> None:
        for name in ("p_random_contrast", "p_caps", "p_bright_cortex", "p_atrophy"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("flair_lesion", "t2_lesion", "t1_lesion"):
            lo, mid, hi = getattr(self, name)
            if not 0 < lo <= mid <= hi:
                raise ValueError(
                    f"{name} must be (lo, mid, hi) with 0 < lo <= mid <= hi, "
                    f"got {getattr(self, name)!r}"
                )
        if not self.bright_cortex_max >= 0.1:
            raise ValueError(f"bright_cortex_max must be >= 0.1, got {self.bright_cortex_max!r}")
        if not 0 <= self.fine_texture_std < 1:
            raise ValueError(f"fine_texture_std must be in [0, 1), got {self.fine_texture_std!r}")
        if not self.bright_cortex_mm > 0:
            raise ValueError(f"bright_cortex_mm must be positive, got {self.bright_cortex_mm!r}")
        growth = tuple(self.ventricle_growth_mm)
        if len(growth) != 2 or not 0 <= growth[0] <= growth[1]:
            raise ValueError(
                f"ventricle_growth_mm must be (lo, hi) with 0 <= lo <= hi, "
                f"got {self.ventricle_growth_mm!r}"
            )


def generator_version(params: RandomisedMSParams) -> int:
    """The generator version ``params`` reproduce.

    2 with uniform confluent lesions (and no bright cortex), 7 with discrete lesions smaller
    than the default sizes, 6 with a fine texture, 5 with atrophy, 4 with bright cortex, else 3.
    """
    default_sizes = LesionLoadParams()
    if (
        params.lesions.min_diameter_mm < default_sizes.min_diameter_mm
        or params.lesions.volume_median_mm3 < default_sizes.volume_median_mm3
    ):
        return 7
    if params.fine_texture_std > 0:
        return 6
    if params.p_atrophy > 0:
        return 5
    if params.p_bright_cortex > 0:
        return 4
    return 2 if params.lesions.confluent_style == "uniform" else GENERATOR_VERSION


#: The ranges of generator version 2 (``--family randomised-v2``), which the first three
#: leave-one-out stages of ``fanet-seg`` trained on.
VERSION_2 = RandomisedMSParams(lesions=LesionLoadParams(confluent_style="uniform"))
#: The ranges of generator version 4 (``--family randomised-v4``): version 3 plus bright cortex
#: on 70 % of the subjects (``fanet-seg``'s stage 6, not shipped).
VERSION_4 = RandomisedMSParams(p_bright_cortex=0.7)
#: The ranges of generator version 5 (``--family randomised-v5``): version 4 plus ventricles
#: grown by 1-6 mm on 60 % of the subjects.
VERSION_5 = RandomisedMSParams(p_bright_cortex=0.7, p_atrophy=0.6)
#: The ranges of generator version 6 (``--family randomised-v6``): version 4 plus a fine texture
#: of standard deviation up to 0.12 (its own random stream: otherwise version 4 draw for draw).
VERSION_6 = RandomisedMSParams(p_bright_cortex=0.7, fine_texture_std=0.12)
#: The ranges of generator version 7 (``--family randomised-v7``): version 4 with smaller
#: discrete lesions, from 2 mm across (4.2 mm^3, against 3 mm and 14 mm^3) and a median of
#: 30 mm^3 (against 60). The shared real patients have many lesions below version 4's smallest
#: (``fanet-seg``'s card, stage 19). Only the lesion stream changes: otherwise version 4 draw
#: for draw.
VERSION_7 = RandomisedMSParams(
    p_bright_cortex=0.7, lesions=LesionLoadParams(min_diameter_mm=2.0, volume_median_mm3=30.0)
)
#: Correlation (Gaussian sigma, in 1 mm voxels) of the fine texture of version 6.
FINE_TEXTURE_VOX = 0.6


def grow_ventricles(
    wm: np.ndarray,
    gm: np.ndarray,
    csf: np.ndarray,
    ventricles: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float],
    growth_mm: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Atrophy: the ventricles take the tissue within ``growth_mm`` of them, with a soft edge.

    Parameters
    ----------
    wm, gm, csf, ventricles : np.ndarray
        ``(X, Y, Z)`` tissue and ventricle probabilities.
    mask : np.ndarray
        ``(X, Y, Z)`` bool brain mask (the ventricles never leave it).
    voxel_size : sequence of float
        Voxel size (mm).
    growth_mm : float
        How far the ventricles grow (mm); 0 returns the maps unchanged.

    Returns
    -------
    tuple of np.ndarray
        ``wm, gm, csf, ventricles`` (float32): the fraction ``f`` of white and grey matter that
        the grown ventricles take becomes CSF (``f`` falls from 1 to 0 over one voxel at
        ``growth_mm``), so the three tissues still sum as before.
    """
    if growth_mm <= 0:
        return wm, gm, csf, ventricles
    distance = ndi.distance_transform_edt(ventricles < 0.5, sampling=voxel_size)
    taken = np.clip((growth_mm - distance) / float(np.mean(voxel_size)) + 0.5, 0.0, 1.0) * mask
    tissue = wm + gm
    return (
        (wm * (1.0 - taken)).astype(np.float32),
        (gm * (1.0 - taken)).astype(np.float32),
        (csf + taken * tissue).astype(np.float32),
        np.maximum(ventricles, taken).astype(np.float32),
    )


def bright_cortex_gain(
    rng: np.random.Generator, p: RandomisedMSParams, shape: tuple[int, ...], voxel_mm: float
) -> tuple[dict[str, float], np.ndarray | None]:
    """Per-channel grey-matter brightening of one subject, and where it peaks.

    Parameters
    ----------
    rng : np.random.Generator
        The subject's ``cortex`` stream (nothing else draws from it).
    p : RandomisedMSParams
        ``p_bright_cortex``, ``bright_cortex_max`` and ``bright_cortex_mm``.
    shape : tuple of int
        Shape of the (cropped) output grid.
    voxel_mm : float
        Mean voxel size of that grid (mm).

    Returns
    -------
    amplitudes : dict
        ``{"flair": a, "t2": a}``, each in ``[0.1, bright_cortex_max]``, or empty.
    patches : np.ndarray or None
        float32, ``shape``, in ``[0, 1]``: 0 over most of the brain, rising to 1 in patches of
        a smooth random field (``None`` when the subject has no brightening). Grey matter in
        channel ``c`` is multiplied by ``1 + amplitudes[c] * patches``.
    """
    if p.p_bright_cortex == 0 or not rng.random() < p.p_bright_cortex:
        return {}, None
    amplitudes = {c: float(rng.uniform(0.1, p.bright_cortex_max)) for c in ("flair", "t2")}
    field = smooth_noise(rng, shape, p.bright_cortex_mm / voxel_mm)
    patches = np.clip((field - 0.5) / 0.75, 0.0, 1.0).astype(np.float32)  # field: unit std
    return amplitudes, patches


def draw_contrast(rng: np.random.Generator, p: RandomisedMSParams) -> dict:
    """Per-channel class intensities and lesion intensity ranges of one subject.

    Returns
    -------
    dict
        ``{channel: {"wm", "cgm", "dgm", "csf": float, "lesion": (faint, severe),
        "random": bool}}``; lesion values are absolute intensities: a lesion of severity
        ``s`` in [0, 1] has ``faint + s * (severe - faint)``.
    """
    out = {}
    for c in CHANNELS:
        random = c != "flair" and bool(rng.random() < p.p_random_contrast)
        if random:
            values = {k: float(rng.uniform(0.05, 1.0)) for k in CLASSES}
        else:
            values = {
                k: v * float(np.exp(rng.normal(0.0, p.typical_log_std)))
                for k, v in TYPICAL_INTENSITY[c].items()
            }
        lo, mid, hi = {"t1": p.t1_lesion, "t2": p.t2_lesion, "flair": p.flair_lesion}[c]
        # FLAIR lesions are graded against the brightest parenchyma (GM is above WM on FLAIR)
        ref = max(values["wm"], values["cgm"], values["dgm"]) if c == "flair" else values["wm"]
        if c == "t1":  # severe lesions are the dark ones
            severe, faint = float(rng.uniform(lo, mid)), float(rng.uniform(mid, hi))
        else:
            faint, severe = float(rng.uniform(lo, mid)), float(rng.uniform(mid, hi))
        out[c] = {**values, "lesion": (faint * ref, severe * ref), "random": random}
    return out


@dataclass(frozen=True)
class FineAnatomy:
    """Tissue maps on the output grid (float32 probabilities; ``mask`` bool)."""

    wm: np.ndarray
    gm: np.ndarray
    csf: np.ndarray
    deep: np.ndarray  # fraction of the grey matter that is deep (basal ganglia, thalamus)
    caps: np.ndarray  # normal periventricular FLAIR rim profile in [0, 1]
    vent_dist: np.ndarray
    mask: np.ndarray
    affine: np.ndarray  # of the cropped grid the maps are on
    pools: dict
    box: tuple[slice, slice, slice]  # where the cropped grid lies in the full MNI grid
    full_shape: tuple[int, int, int]
    full_affine: np.ndarray

    def uncrop(self, array: np.ndarray) -> np.ndarray:
        """``array`` (cropped grid) placed into a zero-filled array of the full grid."""
        out = np.zeros(self.full_shape, dtype=array.dtype)
        out[self.box] = array
        return out


def fine_anatomy(
    rng: np.random.Generator,
    caps_rng: np.random.Generator,
    voxel_size: tuple[float, float, float],
    deformation: DeformationParams,
    ventricle_growth_mm: float = 0.0,
) -> FineAnatomy:
    """Warp the template at 2 mm, derive distances and sites there, carry all to the grid.

    ``ventricle_growth_mm`` > 0 grows the ventricles first (:func:`grow_ventricles`), so the
    periventricular sites, caps and distances follow the atrophic ventricles.
    """
    coarse = random_anatomy(rng, ANATOMY_VOXEL_MM, deformation)
    t = coarse.tissues
    cvox = np.array(t.voxel_size)
    t_wm, t_gm, t_csf, ventricles = grow_ventricles(
        t.wm, t.gm, t.csf, t.ventricles, t.mask, cvox, ventricle_growth_mm
    )
    vent_dist = ndi.distance_transform_edt(ventricles < 0.5, sampling=cvox).astype(np.float32)
    depth = ndi.distance_transform_edt(t.mask, sampling=cvox).astype(np.float32)
    pools = site_pools(t_wm, t_gm, t.mask, vent_dist, depth, coarse.template_world, t.affine)
    deep = (1.0 / (1.0 + np.exp(-(depth - 22.0) / 3.0))).astype(np.float32)
    # normal FLAIR caps: strongest at the frontal and occipital horns, thin along the bodies
    y = coarse.template_world[1]
    horns = 1.0 / (1.0 + np.exp(-(y - caps_rng.uniform(2.0, 10.0)) / 4.0)) + 1.0 / (
        1.0 + np.exp(-(caps_rng.uniform(-42.0, -32.0) - y) / 4.0)
    )
    thickness = caps_rng.uniform(1.5, 3.5)
    caps = np.where(vent_dist > 0, np.exp(-np.maximum(vent_dist - 1.0, 0.0) / thickness), 0.0)
    caps = (caps * (0.3 + 0.7 * np.clip(horns, 0.0, 1.0)) * (1.0 - t_csf)).astype(np.float32)

    full_shape, full_affine = mni_grid(voxel_size)
    # work on the brain's bounding box (plus 2 coarse voxels): half the voxels of the MNI box
    idx = np.argwhere(t.mask)
    world_lo = (idx.min(0) - 2) * cvox + t.affine[:3, 3]
    world_hi = (idx.max(0) + 2) * cvox + t.affine[:3, 3]
    fvox, forigin = np.asarray(voxel_size), full_affine[:3, 3]
    lo = np.clip(np.floor((world_lo - forigin) / fvox).astype(int), 0, full_shape)
    hi = np.clip(np.ceil((world_hi - forigin) / fvox).astype(int) + 1, 0, full_shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    affine = full_affine.copy()
    affine[:3, 3] = forigin + lo * fvox
    rough = ("deep", "caps", "vent_dist")  # smooth enough after trilinear interpolation
    up = {
        name: regrid(arr, t.affine, shape, affine, smooth=name not in rough)
        for name, arr in {
            "wm": t_wm,
            "gm": t_gm,
            "csf": t_csf,
            "mask": t.mask.astype(np.float32),
            "deep": deep,
            "caps": caps,
            "vent_dist": vent_dist,
        }.items()
    }
    mask = up["mask"] >= 0.5
    total = up["wm"] + up["gm"] + up["csf"]
    scale = np.where(mask, 1.0 / np.maximum(total, 1e-3), 0.0).astype(np.float32)
    empty = mask & (total < 1e-3)
    wm, gm = up["wm"] * scale, up["gm"] * scale
    csf = np.where(empty, 1.0, up["csf"] * scale).astype(np.float32)
    return FineAnatomy(
        wm=wm,
        gm=gm,
        csf=csf,
        deep=up["deep"],
        caps=up["caps"] * mask,
        vent_dist=up["vent_dist"],
        mask=mask,
        affine=affine,
        pools=pools,
        box=box,
        full_shape=full_shape,
        full_affine=full_affine,
    )


def fine_texture_field(
    rng: np.random.Generator,
    params: RandomisedMSParams,
    shape: tuple[int, ...],
    voxel_size: Sequence[float],
) -> tuple[float, np.ndarray | float]:
    """The drawn standard deviation and the fine multiplicative texture of one subject.

    Parameters
    ----------
    rng : np.random.Generator
        The subject's ``"fine_texture"`` stream (not drawn from when the texture is off).
    params : RandomisedMSParams
        ``fine_texture_std`` is the largest standard deviation.
    shape : tuple of int
        ``(X, Y, Z)``, the subject grid.
    voxel_size : sequence of 3 float
        mm; the correlation is ``FINE_TEXTURE_VOX`` mm whatever the grid.

    Returns
    -------
    std : float
        The drawn standard deviation (0 when off).
    texture : np.ndarray or float
        ``1 + std * n`` with ``n`` blurred unit white noise, float32 of ``shape``, at least
        0.5; the number 1.0 when off.
    """
    if params.fine_texture_std <= 0:
        return 0.0, 1.0
    std = float(rng.uniform(0.0, params.fine_texture_std))
    sigma = FINE_TEXTURE_VOX / float(np.mean(voxel_size))
    noise = smooth_noise(rng, shape, sigma, coarse_factor=1)
    return std, np.maximum(1.0 + std * noise, 0.5).astype(np.float32)


def simulate_randomised_ms_subject(
    seed: int,
    voxel_size: float | Sequence[float] = 1.0,
    *,
    params: RandomisedMSParams | None = None,
    noise: bool = True,
) -> MSSubject:
    """Simulate one domain-randomised MS subject, deterministically from ``seed``.

    Parameters
    ----------
    seed : int
        Non-negative integer; the same seed and arguments give identical arrays.
    voxel_size : float or sequence of 3 floats
        Voxel size of the output grid (mm); the grid covers the MNI box (1 mm: 181 x 217 x 181).
    params : RandomisedMSParams, optional
        Ranges (``RandomisedMSParams()`` by default).
    noise : bool
        If False, no noise is added (every other draw unchanged).

    Returns
    -------
    MSSubject
        T1, T2, FLAIR (float32 holding integers, 0 outside the brain), lesion, brain and
        white-matter masks, the affine, and ``meta`` with every drawn setting
        (``meta["family"] == "randomised"``).
    """
    p = params or RandomisedMSParams()
    vox = check_voxel_size(voxel_size)
    rng = spawn_streams(check_seed(seed), STREAMS)
    growth = 0.0
    if p.p_atrophy > 0 and rng["atrophy"].random() < p.p_atrophy:
        growth = float(rng["atrophy"].uniform(*p.ventricle_growth_mm))
    anat = fine_anatomy(rng["anatomy"], rng["caps"], vox, p.deformation, growth)
    weight, severity, lesion_info = draw_lesions(
        rng["lesions"],
        p.lesions,
        anat.pools,
        anat.wm,
        anat.gm,
        anat.csf,
        anat.mask,
        anat.vent_dist,
        anat.affine,
    )
    lesion_mask = weight >= 0.5
    contrast = draw_contrast(rng["contrast"], p)
    caps_strength = (
        float(rng["contrast"].uniform(0.1, 0.5)) if rng["contrast"].random() < p.p_caps else 0.0
    )
    shape = anat.mask.shape
    cortex_gain, cortex_patches = bright_cortex_gain(rng["cortex"], p, shape, float(np.mean(vox)))
    texture_std = float(rng["texture"].uniform(0.0, p.texture_std))
    texture = 1.0 + texture_std * smooth_noise(rng["texture"], shape, 2.0 / float(np.mean(vox)))
    # sulci: the average template has none; carve CSF into the cortex along a fine random field
    sulci = float(rng["texture"].uniform(0.0, p.sulci_max))
    fine = smooth_noise(rng["texture"], shape, 1.2 / float(np.mean(vox)), coarse_factor=1)
    carve = anat.gm * (1.0 - anat.deep) * sulci * np.clip((fine - 0.7) / 0.5, 0.0, 1.0)
    sharpen = float(rng["texture"].uniform(*p.sharpen))
    tissues = (anat.wm, anat.gm - carve, anat.csf + carve)
    wm, gm, csf = (np.power(np.maximum(t, 0.0), sharpen) for t in tissues)
    total = np.maximum(wm + gm + csf, 1e-6)
    wm, gm, csf = wm / total, gm / total, csf / total
    cgm, dgm = gm * (1.0 - anat.deep), gm * anat.deep
    fine_std, fine_texture = fine_texture_field(rng["fine_texture"], p, shape, vox)
    images, settings = {}, {}
    for c in CHANNELS:
        iv = contrast[c]
        grey = iv["cgm"] * cgm + iv["dgm"] * dgm
        if c in cortex_gain:
            grey = grey * (1.0 + cortex_gain[c] * cortex_patches)
        base = iv["wm"] * wm + grey + iv["csf"] * csf
        if c == "flair" and caps_strength:
            base = base + caps_strength * max(iv["wm"], iv["cgm"]) * anat.caps
        base = base * texture
        faint, severe = iv["lesion"]
        lesion_value = faint + (severe - faint) * severity
        img = ((1.0 - weight) * base + weight * lesion_value) * anat.mask * fine_texture
        images[c], settings[c] = acquire(
            rng[c], img.astype(np.float32), anat.mask, vox, c, p.artefacts, noise=noise
        )
    meta = {
        "seed": int(seed),
        "task": "ms",
        "family": FAMILY,
        "generator_version": generator_version(p),
        "voxel_size": list(vox),
        "shape": list(anat.full_shape),
        "noise": bool(noise),
        "contrast": {
            c: {
                **{k: round(v, 4) for k, v in iv.items() if k in CLASSES},
                "lesion": [round(v, 4) for v in iv["lesion"]],
                "random": iv["random"],
            }
            for c, iv in contrast.items()
        },
        "flair_caps": round(caps_strength, 4),
        "bright_cortex": {c: round(a, 4) for c, a in cortex_gain.items()},
        "texture_std": round(texture_std, 4),
        "fine_texture_std": round(fine_std, 4),
        "tissue_sharpening": round(sharpen, 3),
        "sulci": round(sulci, 3),
        "ventricle_growth_mm": round(growth, 3),
        "acquisition": settings,
        **lesion_info,
        "lesion_voxels": int(lesion_mask.sum()),
        "brain_voxels": int(anat.mask.sum()),
    }
    full = anat.uncrop
    return MSSubject(
        t1=full(images["t1"]),
        t2=full(images["t2"]),
        flair=full(images["flair"]),
        lesion_mask=full(lesion_mask),
        brain_mask=full(anat.mask),
        wm_prob=full(np.clip(anat.wm, 0.0, 1.0).astype(np.float32)),
        wm_mask=full((anat.wm >= 0.5) | lesion_mask),
        affine=anat.full_affine,
        meta=meta,
    )
