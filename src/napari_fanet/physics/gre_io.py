"""Load multi-echo GRE phase and magnitude NIfTI files and their echo times.

Two layouts are accepted, for phase and magnitude alike:

- one 4D file ``(X, Y, Z, E)`` with the echoes along the last axis (a 3D file is one echo);
- one 3D file per echo, in echo order (all on the same grid).

Echo times come from ``te_ms`` (milliseconds, as the ``--te`` option takes them) or else from
BIDS JSON sidecars next to the phase files (``name.json`` beside ``name.nii.gz``) whose
``EchoTime`` is in **seconds**: one number per per-echo file, or a list of ``E`` numbers for a
4D file. Values are kept as stored (``load_volume(..., dtype=float64)``, so scanner integers
stay integers); scaling to radians is :mod:`.phase_scale`'s job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_fanet.io.nifti import NIFTI_SUFFIXES, Volume, check_same_grid, load_volume
from napari_fanet.physics.echo_unwrap import check_echo_times

__all__ = ["MultiEchoGRE", "load_echoes", "load_multi_echo", "read_echo_times", "sidecar_path"]

PathLike = str | os.PathLike


@dataclass(eq=False)
class MultiEchoGRE:
    """Multi-echo GRE data on one grid.

    Attributes
    ----------
    phase : np.ndarray
        Stored phase values, float64, ``(X, Y, Z, E)``.
    magnitude : np.ndarray or None
        Magnitude, float64, ``(X, Y, Z, E)``.
    echo_times_s : np.ndarray
        ``(E,)`` echo times in seconds, increasing.
    reference : Volume
        First phase echo as a 3D :class:`~napari_fanet.io.nifti.Volume` (affine and header): save
        derived maps with it so they overlay the input.
    te_source : str
        ``"te_ms"`` or ``"sidecar"``: where the echo times came from.
    """

    phase: np.ndarray
    magnitude: np.ndarray | None
    echo_times_s: np.ndarray
    reference: Volume
    te_source: str

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes."""
        return self.reference.voxel_size

    @property
    def n_echoes(self) -> int:
        """Number of echoes ``E``."""
        return int(self.phase.shape[3])


def sidecar_path(nifti: PathLike) -> Path:
    """The BIDS JSON sidecar of a NIfTI file: ``sub.nii.gz`` -> ``sub.json``."""
    path = Path(nifti)
    for suffix in NIFTI_SUFFIXES:
        if path.name.lower().endswith(suffix):
            return path.with_name(path.name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def read_echo_times(paths: Sequence[PathLike], n_echoes: int) -> np.ndarray:
    """Echo times (s) from the ``EchoTime`` of the sidecars of ``paths``.

    Parameters
    ----------
    paths : sequence of path
        One 4D file (sidecar ``EchoTime``: a list of ``n_echoes`` seconds) or ``n_echoes`` 3D
        files (each sidecar: one number of seconds).
    n_echoes : int
        Number of echoes in the data.

    Returns
    -------
    np.ndarray
        ``(n_echoes,)`` seconds, checked by :func:`.echo_unwrap.check_echo_times`.

    Raises
    ------
    ValueError
        If a sidecar is missing, unreadable, has no ``EchoTime``, or the count is wrong.
    """
    values: list[float] = []
    for path in paths:
        car = sidecar_path(path)
        if not car.is_file():
            raise ValueError(
                f"no echo times: pass te_ms (--te, milliseconds) or put a BIDS sidecar "
                f"{car.name} with EchoTime (seconds) next to {Path(path).name}"
            )
        try:
            echo_time = json.loads(car.read_text(encoding="utf-8"))["EchoTime"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{car.name}: expected a JSON object with EchoTime (seconds), got "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        values.extend(echo_time if isinstance(echo_time, list) else [echo_time])
    if len(values) != n_echoes:
        raise ValueError(
            f"the sidecars give {len(values)} EchoTime value(s) for {n_echoes} echoes: pass "
            "te_ms (--te) instead"
        )
    return check_echo_times(values, n_echoes)


def load_echoes(
    source: PathLike | Sequence[PathLike], role: str, dtype: np.dtype | None = np.float64
) -> tuple[list[Path], Volume]:
    """Load one 4D/3D file or several 3D files (one per echo) as one ``(X, Y, Z, E)`` Volume.

    Parameters
    ----------
    source : path or sequence of paths
        One 4D or 3D NIfTI file, or 3D files in echo order.
    role : str
        What the files hold (``"phase"``...), for messages.
    dtype : numpy dtype or None
        Type of the data (default float64; None keeps each file's stored type).

    Raises
    ------
    ValueError
        If no file is given, a file does not load, a per-echo file is not 3D, or the grids
        differ (:func:`~napari_fanet.io.nifti.check_same_grid`).
    """
    paths = [Path(source)] if isinstance(source, (str, os.PathLike)) else [Path(p) for p in source]
    if not paths:
        raise ValueError(f"{role}: expected a file or a list of per-echo files, got none")
    if len(paths) == 1:
        vol = load_volume(paths[0], allow_4d=True, dtype=dtype, name=f"{role} ({paths[0].name})")
        data = vol.data if vol.ndim == 4 else vol.data[..., None]  # (X, Y, Z, E)
        return paths, Volume(data, vol.affine, vol.header, vol.path)
    vols = {
        f"{role} echo {i + 1}": load_volume(p, dtype=dtype, name=f"{role} echo {i + 1} ({p.name})")
        for i, p in enumerate(paths)
    }
    check_same_grid(vols)
    first = next(iter(vols.values()))
    data = np.stack([v.data for v in vols.values()], axis=-1)  # (X, Y, Z, E)
    return paths, Volume(data, first.affine, first.header, first.path)


def load_multi_echo(
    phase: PathLike | Sequence[PathLike],
    magnitude: PathLike | Sequence[PathLike] | None = None,
    *,
    te_ms: Sequence[float] | None = None,
) -> MultiEchoGRE:
    """Load multi-echo phase (and magnitude) with echo times (module docstring).

    Parameters
    ----------
    phase : path or sequence of paths
        A 4D (or 3D) NIfTI file, or one 3D file per echo in echo order.
    magnitude : path or sequence of paths, optional
        Same layout rules; must end up on the phase's grid with the same number of echoes.
    te_ms : sequence of float, optional
        Echo times in milliseconds; default: from the phase files' JSON sidecars.

    Returns
    -------
    MultiEchoGRE
        Arrays ``(X, Y, Z, E)``, echo times in seconds and the reference Volume.

    Raises
    ------
    ValueError
        If the files do not load (:func:`napari_fanet.io.nifti.load_volume`), grids or echo counts
        differ, or the echo times are missing or invalid.
    """
    phase_paths, phase_vol = load_echoes(phase, "phase")
    n_echoes = phase_vol.data.shape[3]
    mag = None
    if magnitude is not None:
        _, mag_vol = load_echoes(magnitude, "magnitude")
        check_same_grid({"phase": phase_vol, "magnitude": mag_vol})
        if mag_vol.data.shape != phase_vol.data.shape:
            raise ValueError(
                f"magnitude has {mag_vol.data.shape[3]} echo(es), phase has {n_echoes}"
            )
        mag = mag_vol.data
    if te_ms is not None:
        te_s = check_echo_times(np.asarray(te_ms, dtype=np.float64) / 1000.0, n_echoes)
        source = "te_ms"
    else:
        te_s = read_echo_times(phase_paths, n_echoes)
        source = "sidecar"
    reference = Volume(phase_vol.data[..., 0], phase_vol.affine, phase_vol.header, phase_vol.path)
    return MultiEchoGRE(phase_vol.data, mag, te_s, reference, source)
