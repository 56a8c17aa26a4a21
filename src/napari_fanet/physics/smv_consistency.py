"""Data consistency with the total field through spherical means, not a local field.

The phase chain's local field comes from background removal, which cannot tell the harmonic part
of the local field from the background: V-SHARP loses it, and its truncated deconvolution loses
the lowest frequencies too (``benchmarks/results/phase_chain.md``: 34-38 % of the local field's
norm on noise-free simulated heads). A map ``chi`` supported in the brain does make a field whose
harmonic part is fixed by ``chi`` itself, so matching ``chi`` to the *total* field through the
operator that removes every harmonic function recovers much of what background removal lost.

V-SHARP's first step (:func:`napari_fanet.physics.background.smv_high_pass`) gives, at each
voxel ``v`` where a sphere of radius ``r_v`` fits in the brain mask ``M``,
``g(v) = ((delta - S_r) * f)(v)``, which is free of the background. The susceptibility inside
``M`` predicts it exactly: ``g = P ((1 - S_r) D) M chi`` voxel by voxel, with ``D`` the dipole
convolution and ``P`` the voxels of each radius. This module solves

``min_chi  sum_r || P_r ((1 - S_r) D M chi - g) ||^2  +  lam || C (chi - chi_net) ||^2``

for ``chi`` supported in ``M`` (``C`` removes the mean in ``M``: the field fixes the map's
level), by preconditioned conjugate gradients from the network's map ``chi_net``. Every voxel of
``M`` gets a value, including the rim that V-SHARP erodes; the data constrain it only through
the field it makes further in.

``lam="auto"`` is :func:`smv_automatic_lambda`: the field's noise variance over the variance of
the prior's error seen through the kernel, as
:func:`napari_fanet.physics.data_consistency.automatic_lambda` does for the local field, times
:data:`SMV_AUTO_SCALE` (0.5, measured), clipped to :data:`SMV_LAMBDA_RANGE`. Units: fields and
maps in ppm, arrays ``(X, Y, Z)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_fanet.physics.background import SMVHighPass, smv_high_pass
from napari_fanet.physics.data_consistency import estimate_field_noise
from napari_fanet.physics.dipole import dipole_kernel
from napari_fanet.physics.tensor_checks import check_b0_dir, check_number, check_voxel_size

__all__ = [
    "DEFAULT_SMV_ITERATIONS",
    "SMV_AUTO_SCALE",
    "SMV_LAMBDA_RANGE",
    "smv_automatic_lambda",
    "smv_data_consistency",
]

#: Conjugate-gradient iterations: the residual stops changing the map after about 10
#: (``benchmarks/results/phase_chain.md``).
DEFAULT_SMV_ITERATIONS = 10
#: Range of the automatic prior weight. The top is large: with a noisy field the prior should
#: win, and ``lam = 3`` keeps the network's map within about 1 % (NRMSE) of itself.
SMV_LAMBDA_RANGE = (1e-3, 3.0)
#: Factor on the automatic weight before it is clipped (see :func:`smv_automatic_lambda`).
#: 0.5 since 2026-12-06: chosen among 1, 0.5 and 0.25 on four simulated validation subjects,
#: then confirmed paired on 24 others (``fanet-qsm-phase``, LBV chain, 2 mm): chi NRMSE 0.73
#: point lower at first-echo SNR 200-400 (24 of 24 subjects), 0.05 at SNR 40-80, where the
#: weight mostly stays at the top of :data:`SMV_LAMBDA_RANGE`
#: (``benchmarks/results/qsm-chain/dc-scale/``).
SMV_AUTO_SCALE = 0.5
#: The solver's precision: single, which halves the memory and the time of the FFTs (a 1 mm
#: head holds one real spectrum per sphere radius) and changes the map by under 0.001 % (NRMSE).
SOLVER_DTYPE = torch.float32


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=SOLVER_DTYPE)


class _SMVOperator:
    """``A chi = sum_r P_r F^-1 (1 - S_r) D F (M chi)`` and its adjoint, with torch FFTs."""

    def __init__(
        self, smv: SMVHighPass, mask: np.ndarray, voxel_size, b0_dir, dtype: torch.dtype
    ) -> None:
        pshape = smv.padded_shape
        self.pshape = pshape
        self.shape = smv.filtered.shape
        half = dipole_kernel(pshape, voxel_size, b0_dir, dtype=dtype)[..., : pshape[2] // 2 + 1]
        self.kernels = [half * torch.as_tensor(hp, dtype=dtype) for _, hp, _ in smv.bands]
        self.voxels = [torch.as_tensor(sel) for _, _, sel in smv.bands]
        self.largest = half * torch.as_tensor(smv.largest_high_pass, dtype=dtype)
        self.brain = torch.as_tensor(mask, dtype=dtype)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        return x[: self.shape[0], : self.shape[1], : self.shape[2]]

    def filtered(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """``F^-1 kernel F x`` on the padded grid, cropped: ``(X, Y, Z) -> (X, Y, Z)``."""
        spectrum = kernel * torch.fft.rfftn(x, s=self.pshape)
        return self._crop(torch.fft.irfftn(spectrum, s=self.pshape))

    def forward(self, chi: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfftn(self.brain * chi, s=self.pshape)
        out = torch.zeros_like(chi)
        for kernel, voxels in zip(self.kernels, self.voxels, strict=True):
            band = self._crop(torch.fft.irfftn(kernel * spectrum, s=self.pshape))
            out = torch.where(voxels, band, out)
        return out

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        total = None
        for kernel, voxels in zip(self.kernels, self.voxels, strict=True):
            term = kernel * torch.fft.rfftn(torch.where(voxels, y, 0.0), s=self.pshape)
            total = term if total is None else total + term
        return self.brain * self._crop(torch.fft.irfftn(total, s=self.pshape))


def _prepare(total_field, chi_prior, mask, voxel_size, b0_dir, radii_mm, pad_factor):
    f = np.asarray(total_field, dtype=np.float64)
    prior = np.asarray(chi_prior, dtype=np.float64)
    if prior.shape != f.shape:
        raise ValueError(
            f"chi_prior must have the total field's shape {f.shape}, got {prior.shape}"
        )
    if not np.all(np.isfinite(prior)):
        raise ValueError("chi_prior contains NaN or infinite values")
    vs = check_voxel_size(voxel_size)
    b0 = check_b0_dir(b0_dir)
    smv = smv_high_pass(f, mask, vs, radii_mm=radii_mm, pad_factor=pad_factor)
    m = np.asarray(mask) != 0
    op = _SMVOperator(smv, m, vs, b0, SOLVER_DTYPE)
    return f, prior, m, smv, op


def _weights(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != mask.shape or not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError(
            f"weights must be finite, non-negative and of shape {mask.shape}, got shape {w.shape}"
        )
    return w


def _lambda_from(
    op: _SMVOperator, smv: SMVHighPass, prior, noise: float, scale: float = SMV_AUTO_SCALE
) -> float:
    lo, hi = SMV_LAMBDA_RANGE
    assigned = torch.as_tensor(smv.assigned)
    residual = (op.forward(prior) - _tensor(smv.filtered))[assigned].double()
    excess = float(torch.mean(residual**2)) - noise**2
    if excess <= 0 or noise == 0:
        return hi if excess <= 0 else lo
    gain = float(torch.mean(op.largest**2))  # E[((1 - S_rmax) D)^2] over the grid
    return float(min(max(scale * noise**2 * gain / excess, lo), hi))


def smv_automatic_lambda(
    total_field: np.ndarray,
    chi_prior: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    radii_mm: Sequence[float] | None = None,
    pad_factor: float = 1.5,
    scale: float = SMV_AUTO_SCALE,
) -> float:
    """The prior's weight for this case: noise variance over the prior's error variance.

    ``lam = k s^2 E[((1 - S_rmax) D)^2] / (mean((A chi_net - g)^2) - s^2)``, with ``s`` the
    field's noise (:func:`~napari_fanet.physics.data_consistency.estimate_field_noise` of the
    total field in ``mask``) and ``k = scale``, clipped to :data:`SMV_LAMBDA_RANGE` (a prior that
    explains the data to within the noise gets the top). Arrays ``(X, Y, Z)`` in ppm.

    Raises
    ------
    TypeError, ValueError
        ``scale`` is not a finite number > 0, or as :func:`smv_data_consistency`.
    """
    scale = check_number(scale, "scale", positive=True)
    f, prior, m, smv, op = _prepare(
        total_field, chi_prior, mask, voxel_size, b0_dir, radii_mm, pad_factor
    )
    prior_t = _tensor(np.where(m, prior, 0.0))
    return _lambda_from(op, smv, prior_t, estimate_field_noise(f, m), scale)


def smv_data_consistency(
    total_field: np.ndarray,
    chi_prior: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    lam: float | str = "auto",
    radii_mm: Sequence[float] | None = None,
    iterations: int = DEFAULT_SMV_ITERATIONS,
    pad_factor: float = 1.5,
    should_stop: Callable[[], bool] | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Make a network's map consistent with the total field inside the brain (module docstring).

    Parameters
    ----------
    total_field : np.ndarray
        Total field in ppm of B0 ``(X, Y, Z)``, background included (the phase chain's
        ``field_ppm``); only values inside ``mask`` are used.
    chi_prior : np.ndarray
        The network's map ``(X, Y, Z)`` in ppm.
    mask : np.ndarray
        Brain mask ``(X, Y, Z)``: where the field was measured and the map is supported.
    voxel_size : sequence of float
        Voxel size in mm along the array axes.
    b0_dir : sequence of float
        Main-field direction in array axes (its sign does not matter).
    lam : float or "auto"
        Weight of the prior, ``> 0``, or ``"auto"`` (:func:`smv_automatic_lambda`).
    radii_mm : sequence of float, optional
        Sphere radii in mm; default
        :func:`~napari_fanet.physics.background.default_radii`, as V-SHARP.
    iterations : int
        Largest number of conjugate-gradient iterations, at least 1.
    pad_factor : float
        Zero padding of the FFT grid per axis, at least 1.
    should_stop : callable, optional
        Checked before each iteration; when it returns True the current iterate is returned.
    weights : np.ndarray, optional
        Non-negative reliability ``(X, Y, Z)`` of the field (for example the median of the
        chain's ``sigma_hz`` over ``sigma_hz``), default 1; it weights the data term per voxel.

    Returns
    -------
    np.ndarray
        Susceptibility in ppm, float32 ``(X, Y, Z)``, zero outside ``mask``.

    Raises
    ------
    ValueError
        If shapes differ, an input is not finite, ``lam``, ``iterations`` or ``weights`` is out
        of range, or
        no sphere fits in the mask (see :func:`~napari_fanet.physics.background.smv_high_pass`).
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer):
        raise TypeError(f"iterations must be an integer, got {type(iterations).__name__}")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if isinstance(lam, str) and lam != "auto":
        raise ValueError(f"lam must be a number > 0 or 'auto', got {lam!r}")
    lam_value = None if lam == "auto" else check_number(lam, "lam", positive=True)
    f, prior_np, m, smv, op = _prepare(
        total_field, chi_prior, mask, voxel_size, b0_dir, radii_mm, pad_factor
    )
    prior = _tensor(np.where(m, prior_np, 0.0))
    if lam_value is None:
        lam_value = _lambda_from(op, smv, prior, estimate_field_noise(f, m))
    brain = op.brain
    n_brain = torch.clamp(brain.sum(), min=1.0)

    def centred(x: torch.Tensor) -> torch.Tensor:  # x less its mean inside the brain
        return x - brain * (torch.sum(brain * x) / n_brain)

    w2 = torch.ones_like(prior) if weights is None else _tensor(_weights(weights, m)) ** 2

    def normal(x: torch.Tensor) -> torch.Tensor:  # (A^T W^2 A + lam C) x
        return op.adjoint(w2 * op.forward(x)) + lam_value * centred(x)

    precondition = 1.0 / (op.largest**2 + lam_value)  # exact in the interior band
    rhs = op.adjoint(w2 * _tensor(smv.filtered)) + lam_value * centred(prior)
    chi = prior.clone()
    r = rhs - normal(chi)
    z = brain * op.filtered(r, precondition)
    p = z.clone()
    rz = torch.sum(r * z)
    for _ in range(iterations):
        if should_stop is not None and should_stop():
            break
        if float(rz) <= 0:
            break
        ap = normal(p)
        alpha = rz / torch.sum(p * ap)
        chi = chi + alpha * p
        r = r - alpha * ap
        z = brain * op.filtered(r, precondition)
        rz_new = torch.sum(r * z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return np.asarray(brain * chi, dtype=np.float32)
