"""Data consistency for learned QSM: reconcile a network's map with the measured local field.

A network maps a local field to susceptibility in one pass, with no guarantee that its map
explains the field. These functions move the network's map ``chi_net`` (the prior) to the
nearest map that does, by solving

``min_chi  || W (D chi - f) ||^2  +  lam || chi - chi_net ||^2``

where ``D`` is the dipole convolution (``napari_fanet.physics.dipole``: zero padded FFT grid,
any voxel size and B0 direction), ``f`` the local field in ppm and ``W`` a weight. Two solvers:

- :func:`kspace_data_consistency`: ``W = 1`` on the whole padded grid (the field is taken as
  zero outside the mask, as TKD and CFL2 do). Closed form in k-space::

      chi = ifftn( (D F(f) + lam F(chi_net)) / (D^2 + lam) )

  Two FFTs; exact for that problem.
- :func:`weighted_data_consistency`: ``W`` is the brain mask (times optional reliability
  weights, e.g. the normalised magnitude), so only measured voxels are matched and nothing is
  assumed about the field outside the brain. By default the map is also supported in the
  brain (zero outside, as the local field's model assumes) and the prior sets its shape but not
  its mean there: the mean is then set by the field at the brain's edges instead of by the
  network's anatomical prior. Solved by conjugate gradients on the normal equations, starting
  from ``chi_net`` and preconditioned by the k-space solution's filter ``1 / (D^2 + lam)``,
  which is exact where the weights are 1, so a few iterations suffice.

Both are linear in ``(f, chi_net)`` jointly: scaling the field and the prior by ``k`` scales the
result by ``k``, and both depend on B0 only through ``D``, which is the same for ``b0`` and
``-b0``. ``lam`` is in the units of ``D^2`` (dimensionless; ``D`` lies in ``[-2/3, 1/3]``):
small ``lam`` trusts the field, large ``lam`` keeps the network's map. Components that the
field cannot determine (``D`` near 0, the magic cone) stay those of the prior.

The right ``lam`` depends on the case: it is the ratio of the field's noise variance to the
variance of the network's error seen through the dipole kernel. A noisy field wants a large
``lam``; a case the network gets wrong (a haemorrhage, shapes it never saw) wants a small one.
:func:`automatic_lambda` estimates both from the data, with no reference: the noise from the
spread of the field's discrete Laplacian inside the eroded mask (white noise of standard
deviation ``s`` gives a 7-point Laplacian of standard deviation ``s sqrt(42)``; the median
absolute deviation makes it robust to anatomy), and the network's error from how much more its
map's field misses the measured field than noise explains (``E[D^2] = 4/45`` over directions).
It is invariant to scaling the field and to the sign of B0, like the solvers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from napari_fanet.physics.dipole import dipole_kernel, padded_shape
from napari_fanet.physics.tensor_checks import (
    as_tensor,
    check_b0_dir,
    check_number,
    check_voxel_size,
    restore,
)

__all__ = [
    "AUTO_LAMBDA_RANGE",
    "DC_METHODS",
    "DEFAULT_DC_ITERATIONS",
    "DEFAULT_DC_LAMBDA",
    "automatic_lambda",
    "data_consistency",
    "estimate_field_noise",
    "kspace_data_consistency",
    "weighted_data_consistency",
]

Array = Any  # torch.Tensor or np.ndarray

#: Data-consistency solvers by name (``"none"`` keeps the network's map).
DC_METHODS = ("cg", "kspace", "none")
#: Default weight of the prior: estimated per case (:func:`automatic_lambda`).
DEFAULT_DC_LAMBDA = "auto"
#: Range the automatic ``lam`` is clipped to.
AUTO_LAMBDA_RANGE = (1e-3, 0.3)
#: Mean of ``D(k)^2`` over directions: ``E[(1/3 - cos^2)^2] = 1/5 - 2/9 + 1/9 = 4/45``.
MEAN_DIPOLE_SQUARED = 4.0 / 45.0
#: Default number of conjugate-gradient iterations of :func:`weighted_data_consistency`.
DEFAULT_DC_ITERATIONS = 10


def _inputs(
    field: Array, chi_prior: Array, voxel_size: Sequence[float], b0_dir: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    f, was_numpy = as_tensor(field, "field")
    p, _ = as_tensor(chi_prior, "chi_prior")
    if f.ndim != 3 or tuple(p.shape) != tuple(f.shape):
        raise ValueError(
            "field and chi_prior must be 3D volumes (X, Y, Z) of the same shape, got "
            f"{tuple(f.shape)} and {tuple(p.shape)}"
        )
    check_voxel_size(voxel_size)
    check_b0_dir(b0_dir)
    dtype = torch.promote_types(f.dtype, p.dtype)
    return f.to(dtype), p.to(dtype=dtype, device=f.device), was_numpy


def _check_lambda(lam: float) -> float:
    if isinstance(lam, str):
        raise ValueError(f"lam must be a number > 0 here (resolve 'auto' first), got {lam!r}")
    return check_number(lam, "lam", positive=True)


def estimate_field_noise(field: Array, mask: Array) -> float:
    """Standard deviation (ppm) of white noise in ``field`` inside ``mask``, both ``(X, Y, Z)``.

    ``1.4826 * MAD(L f) / sqrt(42)`` over the mask eroded by two voxels, with ``L`` the 7-point
    discrete Laplacian (voxel units). Anatomy adds to the estimate, so it is an upper bound of
    the kind a data-consistency weight needs. 0 when fewer than 27 voxels remain.
    """
    from scipy import ndimage

    f = np.asarray(restore(as_tensor(field, "field")[0], True), dtype=np.float64)
    m = np.asarray(restore(as_tensor(mask, "mask", allow_bool=True)[0], True)) != 0
    inner = ndimage.binary_erosion(m, iterations=2)
    if inner.sum() < 27:
        return 0.0
    values = ndimage.laplace(f * m)[inner]
    return float(1.4826 * np.median(np.abs(values - np.median(values))) / np.sqrt(42.0))


def automatic_lambda(
    field: Array,
    chi_prior: Array,
    mask: Array,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    pad_factor: float = 1.5,
) -> float:
    """The prior's weight for this case: noise variance over the prior's error variance.

    ``lam = s^2 / t^2`` with ``s`` from :func:`estimate_field_noise` and
    ``t^2 = max(mean_M((D chi_net - f)^2) - s^2, 0) / (4/45)``, clipped to
    :data:`AUTO_LAMBDA_RANGE` (a perfect prior gets the largest ``lam``).
    Shapes ``(X, Y, Z)``; field and prior in ppm.
    """
    f, prior, _ = _inputs(field, chi_prior, voxel_size, b0_dir)
    m, _ = as_tensor(mask, "mask", allow_bool=True)
    inside = m.to(f.device) != 0
    lo, hi = AUTO_LAMBDA_RANGE
    if not bool(inside.any()):
        return hi
    spatial = tuple(f.shape)
    pshape = padded_shape(spatial, pad_factor)
    d = dipole_kernel(pshape, voxel_size, b0_dir, dtype=f.dtype, device=f.device)
    model_field = torch.fft.ifftn(d * torch.fft.fftn(prior, s=pshape)).real
    residual = (model_field[: spatial[0], : spatial[1], : spatial[2]] - f)[inside]
    noise = estimate_field_noise(f, inside)
    excess = float(torch.mean(residual.double() ** 2)) - noise**2
    if excess <= 0 or noise == 0:
        return hi if excess <= 0 else lo
    lam = noise**2 * MEAN_DIPOLE_SQUARED / excess
    return float(min(max(lam, lo), hi))


def kspace_data_consistency(
    field: Array,
    chi_prior: Array,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    lam: float = 0.02,
    pad_factor: float = 1.5,
    mask: Array | None = None,
) -> Array:
    """Closed-form k-space data consistency (unweighted data term on the padded grid).

    Parameters
    ----------
    field : torch.Tensor or np.ndarray
        Local field in ppm of B0, shape ``(X, Y, Z)``, zero outside the brain.
    chi_prior : torch.Tensor or np.ndarray
        The network's susceptibility map (ppm), same shape.
    voxel_size : sequence of float
        Voxel size in mm along array axes 0, 1, 2.
    b0_dir : sequence of float
        Main-field direction in array axes (its sign does not matter).
    lam : float
        Weight of the prior, ``lam > 0``.
    pad_factor : float
        Zero padding factor per axis, at least 1.
    mask : torch.Tensor or np.ndarray, optional
        ``(X, Y, Z)``; the result is multiplied by ``mask != 0``.

    Returns
    -------
    torch.Tensor or np.ndarray
        Susceptibility (ppm), shape ``(X, Y, Z)``, the type of ``field``.
    """
    f, prior, was_numpy = _inputs(field, chi_prior, voxel_size, b0_dir)
    lam_value = _check_lambda(lam)
    spatial = tuple(f.shape)
    pshape = padded_shape(spatial, pad_factor)
    d = dipole_kernel(pshape, voxel_size, b0_dir, dtype=f.dtype, device=f.device)  # (D', H', W')
    numerator = d * torch.fft.fftn(f, s=pshape) + lam_value * torch.fft.fftn(prior, s=pshape)
    chi = torch.fft.ifftn(numerator / (d * d + lam_value)).real  # (D', H', W')
    chi = chi[: spatial[0], : spatial[1], : spatial[2]]  # (X, Y, Z)
    if mask is not None:
        m, _ = as_tensor(mask, "mask", allow_bool=True)
        chi = chi * (m.to(chi.device) != 0).to(chi.dtype)
    return restore(chi.contiguous(), was_numpy)


def weighted_data_consistency(
    field: Array,
    chi_prior: Array,
    mask: Array,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    b0_dir: Sequence[float] = (0.0, 0.0, 1.0),
    *,
    lam: float = 0.02,
    weights: Array | None = None,
    iterations: int = DEFAULT_DC_ITERATIONS,
    tolerance: float = 1e-4,
    pad_factor: float = 1.5,
    should_stop: Callable[[], bool] | None = None,
    support: bool = True,
) -> Array:
    """Data consistency with the data term restricted to the brain, by conjugate gradients.

    Solves ``(S D M W^2 M D S + lam C) chi = S D M W^2 f + lam C chi_net`` with ``M`` the mask
    and ``W`` the weights, starting from ``chi_net``; stops after ``iterations`` or when the
    residual norm falls below ``tolerance`` times that of the right-hand side.

    With ``support`` (the default) ``S = M``: the map is supported in the brain, as the local
    field's model assumes (the sources outside were removed with the background field); and
    ``C`` removes the mean inside the brain, so the prior sets the map's shape but not its
    level. A map supported in the brain does determine its own mean through the field it makes
    at the brain's edges, so the level comes from the measurement instead of from the
    network's anatomical prior (a network trained on brains adds about +0.005-0.01 ppm to a
    phantom without anatomy). Without ``support``, ``S = C = I``: the map is free outside the
    brain and its mean is the prior's.

    Parameters
    ----------
    field : torch.Tensor or np.ndarray
        Local field in ppm of B0, shape ``(X, Y, Z)``.
    chi_prior : torch.Tensor or np.ndarray
        The network's susceptibility map (ppm), same shape.
    mask : torch.Tensor or np.ndarray
        Brain mask ``(X, Y, Z)``: where the field was measured. The result is masked too.
    voxel_size, b0_dir : sequence of float
        As in :func:`kspace_data_consistency`.
    lam : float
        Weight of the prior, ``lam > 0``.
    weights : torch.Tensor or np.ndarray, optional
        Non-negative reliability ``(X, Y, Z)`` (e.g. magnitude over its median), default 1.
    iterations : int
        Largest number of CG iterations, at least 1.
    tolerance : float
        Relative residual at which CG stops early, ``>= 0``.
    pad_factor : float
        Zero padding factor per axis, at least 1.
    should_stop : callable, optional
        Checked before each iteration; when it returns True the current iterate is returned.
    support : bool
        Solve for a map supported in the brain whose mean there is set by the field (see
        above); False keeps the older problem (free outside the brain, the prior's mean).

    Returns
    -------
    torch.Tensor or np.ndarray
        Susceptibility (ppm), shape ``(X, Y, Z)``, the type of ``field``.
    """
    f, prior, was_numpy = _inputs(field, chi_prior, voxel_size, b0_dir)
    lam_value = _check_lambda(lam)
    if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer):
        raise TypeError(f"iterations must be an integer, got {type(iterations).__name__}")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    tol = check_number(tolerance, "tolerance", positive=False)
    m, _ = as_tensor(mask, "mask", allow_bool=True)
    if tuple(m.shape) != tuple(f.shape):
        raise ValueError(
            f"mask must have the field's shape {tuple(f.shape)}, got {tuple(m.shape)}"
        )
    w2 = (m.to(f.device) != 0).to(f.dtype)  # (X, Y, Z)
    if weights is not None:
        w, _ = as_tensor(weights, "weights")
        if tuple(w.shape) != tuple(f.shape) or not bool(torch.isfinite(w).all()) or (w < 0).any():
            raise ValueError(
                f"weights must be finite, non-negative and of shape {tuple(f.shape)}, "
                f"got shape {tuple(w.shape)}"
            )
        w2 = w2 * w.to(device=f.device, dtype=f.dtype) ** 2

    spatial = tuple(f.shape)
    pshape = padded_shape(spatial, pad_factor)
    # D is real and Hermitian-symmetric on the grid, so real FFTs with its half spectrum are exact
    half = dipole_kernel(pshape, voxel_size, b0_dir, dtype=f.dtype, device=f.device)[
        ..., : pshape[2] // 2 + 1
    ]  # (D', H', W'//2+1)
    inverse = 1.0 / (half * half + lam_value)  # the k-space solution's filter: the preconditioner

    def filtered(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:  # (X, Y, Z) -> same
        y = torch.fft.irfftn(kernel * torch.fft.rfftn(x, s=pshape), s=pshape)  # (D', H', W')
        return y[: spatial[0], : spatial[1], : spatial[2]]

    brain = (m.to(f.device) != 0).to(f.dtype)
    inside = brain if support else torch.ones_like(f)
    n_brain = torch.clamp(brain.sum(), min=1.0)

    def centred(x: torch.Tensor) -> torch.Tensor:  # C x: x less its mean inside the brain
        if not support:
            return x
        return x - brain * (torch.sum(brain * x) / n_brain)

    def normal(x: torch.Tensor) -> torch.Tensor:  # (S D M W^2 M D S + lam C) x
        return inside * filtered(w2 * filtered(inside * x, half), half) + lam_value * centred(x)

    # preconditioned conjugate gradients, P = C F* (D^2 + lam)^-1 F C^T (symmetric, positive)
    rhs = inside * filtered(w2 * f, half) + lam_value * centred(prior)
    chi = prior.clone()
    r = rhs - normal(chi)
    z = filtered(r, inverse)
    p = z.clone()
    rz = torch.sum(r * z)
    stop_at = tol * torch.linalg.vector_norm(rhs)
    for _ in range(iterations):
        if torch.linalg.vector_norm(r) <= stop_at or (should_stop is not None and should_stop()):
            break
        ap = normal(p)
        alpha = rz / torch.sum(p * ap)
        chi = chi + alpha * p
        r = r - alpha * ap
        z = filtered(r, inverse)
        rz_new = torch.sum(r * z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    chi = chi * (m.to(chi.device) != 0).to(chi.dtype)
    return restore(chi.contiguous(), was_numpy)


def data_consistency(
    method: str,
    field: Array,
    chi_prior: Array,
    mask: Array,
    voxel_size: Sequence[float],
    b0_dir: Sequence[float],
    *,
    lam: float | str = DEFAULT_DC_LAMBDA,
    iterations: int = DEFAULT_DC_ITERATIONS,
    weights: Array | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Array:
    """Apply the data-consistency solver ``method`` (one of :data:`DC_METHODS`).

    ``"none"`` returns ``chi_prior`` masked; ``"kspace"`` calls
    :func:`kspace_data_consistency`; ``"cg"`` calls :func:`weighted_data_consistency`.
    ``lam="auto"`` takes :func:`automatic_lambda` of the case. Shapes and units as there:
    ``(X, Y, Z)`` volumes in ppm.
    """
    if isinstance(lam, str) and lam != "auto":
        raise ValueError(f"lam must be a number > 0 or 'auto', got {lam!r}")
    if method not in DC_METHODS:
        raise ValueError(
            f"data consistency must be one of {', '.join(DC_METHODS)}; got {method!r}"
        )
    if method == "none":
        m = np.asarray(mask) != 0 if isinstance(mask, np.ndarray) else mask != 0
        return chi_prior * m
    if lam == "auto":
        lam = automatic_lambda(field, chi_prior, mask, voxel_size, b0_dir)
    if method == "kspace":
        return kspace_data_consistency(field, chi_prior, voxel_size, b0_dir, lam=lam, mask=mask)
    return weighted_data_consistency(
        field,
        chi_prior,
        mask,
        voxel_size,
        b0_dir,
        lam=lam,
        iterations=iterations,
        weights=weights,
        should_stop=should_stop,
    )
