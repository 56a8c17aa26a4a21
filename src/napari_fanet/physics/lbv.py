"""Laplacian boundary value (LBV) background removal, total field (ppm) to local field (ppm).

The background field ``b`` (from sources outside the brain mask ``M``) is harmonic inside
``M``: ``lap(b) = 0``. LBV (Zhou et al. 2014) takes the total field on the boundary of ``M`` as
the boundary value of ``b`` and solves the Laplace equation inside:

``lap(h) = 0`` on the interior ``I`` (voxels of ``M`` whose six face neighbours are all in
``M``), ``h = f`` on the boundary layer ``M - I``; the local field is ``f - h`` on ``I``.

The discrete Laplacian is the 7-point stencil with the voxel size,
``lap(h)_v = sum_axes (h_(v+e_i) + h_(v-e_i) - 2 h_v) / d_i^2``. The linear system (one unknown
per interior voxel, symmetric positive definite) is solved by conjugate gradients started at
``h = f``: the total field is the background plus a local field hundreds of times smaller, so
the start is already close and few iterations are needed. Only the local field's boundary
values are assumed zero (they end up in ``h``, and their harmonic extension is lost from the
local field, as with every method that only assumes a harmonic background); the mask is eroded
by one voxel. Works in any linear unit (ppm, Hz); arrays have shape ``(X, Y, Z)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from napari_fanet.io.checks import check_voxel_size

__all__ = ["lbv"]


def lbv(
    field: np.ndarray,
    mask: np.ndarray,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    tol: float = 1e-6,
    max_iter: int = 2000,
) -> tuple[np.ndarray, np.ndarray]:
    """Laplacian boundary value background removal (module docstring).

    Parameters
    ----------
    field : np.ndarray
        Total field (ppm or Hz), shape ``(X, Y, Z)``; only values inside ``mask`` are used.
    mask : np.ndarray
        Brain mask, shape ``(X, Y, Z)``.
    voxel_size : sequence of float
        Voxel size in mm (weights of the Laplacian).
    tol : float
        Stop when the residual norm of the Laplace system falls below ``tol`` times the norm of
        its right-hand side (the boundary values' pull), in ``(0, 1)``.
    max_iter : int
        Conjugate-gradient iterations at most, >= 1.

    Returns
    -------
    local : np.ndarray
        Local field in the units of ``field``, float64, zero outside ``interior``.
    interior : np.ndarray
        bool, the mask eroded by one voxel (6-connectivity): where ``local`` is defined.

    Raises
    ------
    ValueError
        If the field is not 3D, shapes differ, the mask is empty, the field is not finite in
        the mask, ``tol``/``max_iter`` are out of range, or the mask has no interior voxel.
    """
    f = np.asarray(field, dtype=np.float64)
    if f.ndim != 3:
        raise ValueError(f"field must be 3D (X, Y, Z), got shape {f.shape}")
    m = np.asarray(mask) != 0
    if m.shape != f.shape:
        raise ValueError(f"mask must have the field's shape {f.shape}, got {m.shape}")
    if not m.any():
        raise ValueError("mask is empty: no brain to remove the background from")
    if not np.all(np.isfinite(f[m])):
        raise ValueError("field contains NaN or infinite values inside the mask")
    vs = check_voxel_size(voxel_size)
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    star = ndi.generate_binary_structure(3, 1)
    interior = ndi.binary_erosion(m, star, border_value=0)
    if not interior.any():
        raise ValueError(
            "the mask has no interior voxel (all six neighbours inside): it is too thin for "
            "LBV (use V-SHARP or PDF)"
        )
    system = _LaplaceSystem(f, m, interior, vs)
    h = system.solve(tol, max_iter)  # (N,) harmonic field on the interior voxels
    local = np.zeros(f.shape)
    local[interior] = f[interior] - h
    return local, interior


class _LaplaceSystem:
    """The 7-point Dirichlet Laplace system on the interior voxels, as flat index arrays.

    ``A h = rhs`` with ``A = diag * I - sum_j w_j P_j`` (``P_j`` picks the interior neighbour
    in direction ``j``; boundary neighbours are known and moved to ``rhs``).
    """

    def __init__(
        self, f: np.ndarray, m: np.ndarray, interior: np.ndarray, vs: tuple[float, ...]
    ) -> None:
        padded_interior = np.pad(interior, 1)  # keeps every neighbour index inside the array
        padded_field = np.pad(np.where(m, f, 0.0), 1)
        flat = np.flatnonzero(padded_interior)  # (N,) interior voxels, padded flat indices
        number = np.full(padded_interior.size, flat.size)  # flat.size: "not an unknown"
        number[flat] = np.arange(flat.size)
        strides = np.array(padded_interior.strides) // padded_interior.itemsize
        self.start = padded_field.reshape(-1)[flat]  # h = f to begin with
        self.neighbours: list[np.ndarray] = []
        self.weights: list[float] = []
        rhs = np.zeros(flat.size)
        for axis in range(3):
            w = 1.0 / vs[axis] ** 2
            for step in (-strides[axis], strides[axis]):
                nb = flat + step
                self.neighbours.append(number[nb])  # N where the neighbour is on the boundary
                self.weights.append(w)
                known = ~padded_interior.reshape(-1)[nb]
                rhs[known] += w * padded_field.reshape(-1)[nb[known]]
        self.diag = 2.0 * sum(1.0 / v**2 for v in vs)
        self.rhs = rhs

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``A x`` for ``x`` of shape ``(N,)``."""
        ext = np.append(x, 0.0)  # index N: a known boundary value, already in rhs
        out = self.diag * x
        for nb, w in zip(self.neighbours, self.weights, strict=True):
            out -= w * ext[nb]
        return out

    def solve(self, tol: float, max_iter: int) -> np.ndarray:
        """Conjugate gradients from ``h = f``; returns ``h`` on the interior, shape ``(N,)``."""
        x = self.start.copy()
        r = self.rhs - self.apply(x)
        p = r.copy()
        rr = float(r @ r)
        stop = (tol * float(np.linalg.norm(self.rhs))) ** 2
        for _ in range(max_iter):
            if rr <= stop or rr == 0.0:
                break
            q = self.apply(p)
            alpha = rr / float(p @ q)
            x += alpha * p
            r -= alpha * q
            rr_new = float(r @ r)
            p = r + (rr_new / rr) * p
            rr = rr_new
        return x
