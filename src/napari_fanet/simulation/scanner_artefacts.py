"""Scanner and preprocessing effects of the randomised MS simulator, one function each.

Each takes an image ``(X, Y, Z)`` (float32, brain voxels positive) and a numpy ``Generator`` or
the drawn value, and returns a new float32 image; :func:`acquire` applies them in acquisition
order with per-subject random settings and returns those settings (JSON-ready):

1. multiplicative bias field ``exp(b * n)`` with ``n`` smooth noise (40-100 mm) and ``b`` up
   to ``bias_max`` (strong fields: a factor of about 2 across the brain at the top of the range);
2. blur: a Gaussian point-spread function of random width per axis;
3. thick-slice acquisition (2D FLAIR or T2 with 3-5 mm slices along a random axis): averaged
   over the slice profile, sampled every slice and, after the noise, interpolated back;
4. Gaussian or Rician noise with sigma relative to the image's median in the brain;
5. gamma: ``(x / p99) ** gamma * p99`` (contrast non-linearity of scanners and preprocessing);
6. scaling to a random range and, sometimes, saturation of the brightest voxels (clipping at a
   random percentile), as DICOM windowing and preprocessing pipelines do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_fanet.simulation.fast_fields import smooth_noise


@dataclass(frozen=True)
class ArtefactParams:
    """Ranges of :func:`acquire` (one draw per subject and channel).

    Attributes
    ----------
    bias_max : float
        Largest standard deviation of the log bias field.
    bias_scale_mm : tuple of float
        Correlation length of the bias field.
    blur_mm : tuple of float
        Range of the point-spread standard deviation per axis (mm).
    p_thick : dict
        Probability of a thick-slice acquisition per channel name.
    slice_mm : tuple of float
        Slice thickness range (mm).
    thick_axes : tuple of int
        Voxel axes a thick-slice acquisition may cut along, drawn uniformly (default: any).
    noise_rel : tuple of float
        Noise sigma relative to the median brain intensity, log-uniform.
    p_rician : float
        Probability of Rician rather than Gaussian noise.
    log_gamma_std : float
        ``gamma = exp(N(0, log_gamma_std))``.
    p_saturate : float
        Probability of clipping at a percentile in ``saturate_percentile``.
    saturate_percentile : tuple of float
        Range of that percentile.
    max_value : tuple of float
        Range of the brain's 99th percentile after scaling (stored as int16).
    """

    bias_max: float = 0.35
    bias_scale_mm: tuple[float, float] = (40.0, 100.0)
    blur_mm: tuple[float, float] = (0.0, 0.6)
    p_thick: tuple[tuple[str, float], ...] = (("t1", 0.15), ("t2", 0.4), ("flair", 0.5))
    slice_mm: tuple[float, float] = (3.0, 5.0)
    thick_axes: tuple[int, ...] = (0, 1, 2)
    noise_rel: tuple[float, float] = (0.01, 0.12)
    p_rician: float = 0.5
    log_gamma_std: float = 0.25
    p_saturate: float = 0.3
    saturate_percentile: tuple[float, float] = (97.0, 99.9)
    max_value: tuple[float, float] = (300.0, 4000.0)

    def __post_init__(self) -> None:
        """Refuse thick-slice axes that a 3D volume does not have."""
        axes = tuple(self.thick_axes)
        if not axes or any(a not in (0, 1, 2) for a in axes):
            raise ValueError(
                "thick_axes: expected one or more voxel axes among 0, 1, 2, "
                f"got {self.thick_axes!r}"
            )


def bias_field(
    rng: np.random.Generator, shape: Sequence[int], strength: float, scale_vox: float
) -> np.ndarray:
    """``exp(strength * n)`` with ``n`` a unit smooth field of correlation ``scale_vox``."""
    return np.exp(strength * smooth_noise(rng, shape, scale_vox)).astype(np.float32)


def blur(image: np.ndarray, sigma_vox: Sequence[float]) -> np.ndarray:
    """Gaussian point-spread function (standard deviation per axis, voxels)."""
    if max(sigma_vox) <= 0.05:
        return image
    return ndi.gaussian_filter(image, [max(s, 0.0) for s in sigma_vox]).astype(np.float32)


def thick_slices(image: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """Average over a slice profile and sample every ``factor`` voxels along ``axis``.

    The profile is a Gaussian of FWHM ``factor`` voxels. Returns the low-resolution image
    (shape reduced along ``axis``); :func:`back_to_grid` interpolates it back.
    """
    profile = ndi.gaussian_filter1d(image, factor / 2.355, axis=axis)
    n_out = max(int(np.ceil(image.shape[axis] / factor)), 1)
    zoom = np.ones(3)
    zoom[axis] = factor
    out_shape = list(image.shape)
    out_shape[axis] = n_out
    return ndi.affine_transform(profile, zoom, output_shape=out_shape, order=1, mode="nearest")


def back_to_grid(low: np.ndarray, shape: Sequence[int], axis: int, factor: float) -> np.ndarray:
    """Inverse sampling of :func:`thick_slices`: linear interpolation onto ``shape``."""
    zoom = np.ones(3)
    zoom[axis] = 1.0 / factor
    return ndi.affine_transform(
        low, zoom, output_shape=tuple(shape), order=1, mode="nearest"
    ).astype(np.float32)


def add_noise(
    rng: np.random.Generator, image: np.ndarray, sigma: float, rician: bool
) -> np.ndarray:
    """Gaussian noise, or the magnitude of complex Gaussian noise (Rician), of ``sigma``."""
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    if not rician:
        return real.astype(np.float32)
    imag = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def apply_gamma(image: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """``(x / p99) ** gamma * p99`` with ``p99`` the brain's 99th percentile (x clipped at 0)."""
    ref = float(np.percentile(image[mask], 99)) if mask.any() else 1.0
    ref = ref if ref > 0 else 1.0
    return (np.power(np.maximum(image, 0.0) / ref, gamma) * ref).astype(np.float32)


def acquire(
    rng: np.random.Generator,
    image: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float],
    channel: str,
    params: ArtefactParams,
    *,
    noise: bool = True,
) -> tuple[np.ndarray, dict]:
    """Apply the effects of the module docstring with random settings.

    Parameters
    ----------
    rng : np.random.Generator
        Source of every draw.
    image : np.ndarray
        ``(X, Y, Z)`` float32 noise-free image on the subject grid.
    mask : np.ndarray
        ``(X, Y, Z)`` bool brain mask (0 outside it in the result).
    voxel_size : sequence of 3 float
        mm.
    channel : str
        ``"t1"``, ``"t2"`` or ``"flair"`` (sets the thick-slice probability).
    params : ArtefactParams
        Ranges.
    noise : bool
        Add noise (False for tests).

    Returns
    -------
    image : np.ndarray
        ``(X, Y, Z)`` float32, integers in ``[0, 32767]``, 0 outside ``mask``.
    settings : dict
        The drawn values.
    """
    vox = np.asarray(voxel_size, dtype=np.float64)
    shape = image.shape
    p = params
    strength = float(rng.uniform(0.0, p.bias_max))
    scale_mm = float(rng.uniform(*p.bias_scale_mm))
    img = image * bias_field(rng, shape, strength, scale_mm / float(vox.mean()))
    psf_mm = rng.uniform(*p.blur_mm, size=3)
    img = blur(img, psf_mm / vox)
    thick = rng.random() < dict(p.p_thick).get(channel, 0.0)
    # (for the default axes this is the draw ``rng.integers(3)`` as before)
    axis, factor = p.thick_axes[int(rng.integers(len(p.thick_axes)))], 1.0
    if thick:
        factor = float(rng.uniform(*p.slice_mm)) / float(vox[axis])
        thick = factor > 1.2  # slices barely thicker than the voxels: nothing to simulate
    if thick:
        img = thick_slices(img, axis, factor)
    median = float(np.median(image[mask])) if mask.any() else 1.0
    sigma = median * float(np.exp(rng.uniform(*np.log(p.noise_rel))))
    rician = bool(rng.random() < p.p_rician)
    if noise:
        img = add_noise(rng, img, sigma, rician)
    if thick:
        img = back_to_grid(img, shape, axis, factor)
    gamma = float(np.exp(rng.normal(0.0, p.log_gamma_std)))
    img = apply_gamma(img, mask, gamma) * mask
    values = img[mask]
    top = float(np.percentile(values, 99)) if values.size else 1.0
    img = img * (float(rng.uniform(*p.max_value)) / (top if top > 0 else 1.0))
    saturate = None
    if rng.random() < p.p_saturate and values.size:
        saturate = float(rng.uniform(*p.saturate_percentile))
        img = np.minimum(img, np.percentile(img[mask], saturate))
    img = np.clip(np.round(img), 0, 32767).astype(np.float32)
    settings = {
        "bias_std": round(strength, 4),
        "bias_scale_mm": round(scale_mm, 1),
        "psf_sigma_mm": [round(float(s), 3) for s in psf_mm],
        "thick_slice_mm": round(factor * float(vox[axis]), 2) if thick else None,
        "thick_slice_axis": axis if thick else None,
        "noise_sigma_rel": round(sigma / median, 4) if noise and median else 0.0,
        "rician": rician,
        "gamma": round(gamma, 4),
        "saturate_percentile": None if saturate is None else round(saturate, 2),
    }
    return img, settings
