"""The ranges a phantom draws from: :class:`MSParams` and :class:`QSMParams` (frozen dataclasses).

They live below the phantoms (:mod:`~napari_fanet.simulation.ms_phantom`,
:mod:`~napari_fanet.simulation.qsm_phantom`) and the pieces the phantoms draw with
(:mod:`~napari_fanet.simulation.lesions`, :mod:`~napari_fanet.simulation.qsm_structures`), so
those pieces can read them without importing the phantom that calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_fanet.simulation.deform import DeformationParams
from napari_fanet.simulation.qsm_sources import SourceParams

__all__ = ["MSParams", "QSMParams"]


@dataclass(frozen=True)
class MSParams:
    """Ranges of the MS phantom.

    Attributes
    ----------
    n_lesions : tuple of int
        Range of the lesion count (inclusive).
    lesion_volume_median_mm3, lesion_volume_sigma : float
        Log-normal lesion volume: median (mm^3) and sigma of its logarithm.
    lesion_volume_range_mm3 : tuple of float
        Volumes are clipped to this range.
    kind_weights : tuple of float
        Probabilities of periventricular, deep WM and juxtacortical lesions.
    flair_contrast, t2_contrast, t1_contrast : tuple of float
        Lesion contrast relative to WM (FLAIR and T2 brighter by, T1 darker by), from the
        faintest to the most severe lesion.
    cap_contrast, band_contrast : tuple of float
        FLAIR rim brightness relative to WM at the horns and along the ventricle bodies.
    cap_thickness_mm : tuple of float
        Decay length of the rim.
    bias_std : tuple of float
        Standard deviation of the log bias field.
    noise_sigma : tuple of float
        Rician noise sigma relative to the WM intensity.
    contrast_jitter : float
        Relative jitter of each tissue intensity.
    gamma : tuple of float
        Range of the per-subject contrast gamma.
    deformation : DeformationParams
        Anatomy ranges.
    """

    n_lesions: tuple[int, int] = (8, 25)
    lesion_volume_median_mm3: float = 90.0
    lesion_volume_sigma: float = 1.0
    lesion_volume_range_mm3: tuple[float, float] = (20.0, 4000.0)
    kind_weights: tuple[float, float, float] = (0.5, 0.4, 0.1)
    flair_contrast: tuple[float, float] = (0.3, 1.1)
    t2_contrast: tuple[float, float] = (0.4, 1.2)
    t1_contrast: tuple[float, float] = (0.08, 0.4)
    cap_contrast: tuple[float, float] = (0.2, 0.5)
    band_contrast: tuple[float, float] = (0.05, 0.15)
    cap_thickness_mm: tuple[float, float] = (1.5, 3.0)
    bias_std: tuple[float, float] = (0.05, 0.15)
    noise_sigma: tuple[float, float] = (0.02, 0.04)
    contrast_jitter: float = 0.08
    gamma: tuple[float, float] = (0.85, 1.15)
    deformation: DeformationParams = field(default_factory=DeformationParams)

    def __post_init__(self) -> None:
        lo, hi = self.n_lesions
        if not 0 <= lo <= hi:
            raise ValueError(
                f"n_lesions must be (lo, hi) with 0 <= lo <= hi, got {self.n_lesions!r}"
            )
        weights = np.asarray(self.kind_weights, dtype=float)
        if weights.shape != (3,) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(
                "kind_weights must be 3 non-negative numbers with a positive sum, "
                f"got {self.kind_weights!r}"
            )
        if not 0 < self.lesion_volume_range_mm3[0] <= self.lesion_volume_range_mm3[1]:
            raise ValueError(
                "lesion_volume_range_mm3 must be (lo, hi) with 0 < lo <= hi, "
                f"got {self.lesion_volume_range_mm3!r}"
            )


@dataclass(frozen=True)
class QSMParams:
    """Ranges of the QSM phantom (all susceptibilities in ppm).

    Attributes
    ----------
    chi_csf, chi_wm, chi_gm : tuple of float
        Tissue susceptibility ranges.
    vein_chi : tuple of float
        Susceptibility range of veins.
    n_veins : tuple of int
        Range of the number of veins (inclusive).
    vein_radius_mm, vein_length_mm : tuple of float
        Vein radius and length ranges.
    texture_std : tuple of float
        Standard deviation range of the smooth texture.
    max_tilt_deg : float
        Largest angle between B0 and the world z axis.
    min_tilt_deg : float
        Smallest angle between B0 and the world z axis (0 by default).
    field_noise_std : tuple of float
        Range of the field noise standard deviation (ppm) at the median magnitude.
    magnitude_snr : tuple of float
        Range of the magnitude SNR (median brain signal over the noise sigma).
    deformation : DeformationParams
        Anatomy ranges.
    sources : SourceParams
        Extra geometric sources, haemorrhages and calcifications (none by default; see
        :mod:`napari_fanet.simulation.qsm_sources`).
    anatomy_contrast : bool
        If False, the brain has no tissue contrast, nuclei, veins or texture (chi = 0 before the
        extra sources): a purely geometric phantom inside a brain-shaped mask.
    """

    chi_csf: tuple[float, float] = (-0.003, 0.003)
    chi_wm: tuple[float, float] = (-0.04, -0.02)
    chi_gm: tuple[float, float] = (0.01, 0.02)
    vein_chi: tuple[float, float] = (0.30, 0.45)
    n_veins: tuple[int, int] = (15, 30)
    vein_radius_mm: tuple[float, float] = (0.6, 1.5)
    vein_length_mm: tuple[float, float] = (15.0, 60.0)
    texture_std: tuple[float, float] = (0.003, 0.008)
    max_tilt_deg: float = 25.0
    min_tilt_deg: float = 0.0
    field_noise_std: tuple[float, float] = (0.0005, 0.002)
    magnitude_snr: tuple[float, float] = (20.0, 50.0)
    deformation: DeformationParams = field(default_factory=DeformationParams)
    sources: SourceParams = field(default_factory=SourceParams)
    anatomy_contrast: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_tilt_deg <= 90.0:
            raise ValueError(f"max_tilt_deg must be in [0, 90], got {self.max_tilt_deg!r}")
        if not 0.0 <= self.min_tilt_deg <= self.max_tilt_deg:
            raise ValueError(
                f"min_tilt_deg must be in [0, max_tilt_deg={self.max_tilt_deg}], "
                f"got {self.min_tilt_deg!r}"
            )
        lo, hi = self.field_noise_std
        if not 0.0 <= lo <= hi:
            raise ValueError(
                "field_noise_std must be (lo, hi) with 0 <= lo <= hi, "
                f"got {self.field_noise_std!r}"
            )
        if not 0 <= self.n_veins[0] <= self.n_veins[1]:
            raise ValueError(f"n_veins must be (lo, hi) with 0 <= lo <= hi, got {self.n_veins!r}")
