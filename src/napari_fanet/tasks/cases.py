"""An evaluation case: input volumes and the reference they are scored against."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_fanet.io.nifti import Volume


@dataclass
class EvalCase:
    """One evaluation subject: input Volumes, reference arrays (array axes = Volume axes).

    Attributes
    ----------
    name : str
        Shown in reports (``"seed-20000"``).
    inputs : dict of str to Volume
        By file stem (:attr:`~.roles.InputRole.file`: ``"flair"``, ``"local_field"``...).
    reference : np.ndarray
        ``(X, Y, Z)`` lesion mask (bool) or susceptibility (ppm).
    mask : np.ndarray
        ``(X, Y, Z)`` bool brain mask.
    voxel_size : tuple of float
        Voxel size (mm).
    b0_world : tuple of float
        QSM: main-field direction in scanner axes.
    extra : dict
        Anything a family adds (shown in reports).
    """

    name: str
    inputs: dict[str, Volume]
    reference: np.ndarray
    mask: np.ndarray
    voxel_size: tuple[float, float, float]
    b0_world: tuple[float, float, float] = (0.0, 0.0, 1.0)
    extra: dict = field(default_factory=dict)
