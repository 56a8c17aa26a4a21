"""Training subjects simulated in memory (``napari-fanet train --simulate N``).

The simulator's grids are already RAS-canonical, so no reorientation is needed; a simulated
subject holds exactly what :mod:`napari_fanet.tasks.subjects` reads from the files
``napari-fanet simulate`` writes, preprocessed by the same functions
(:mod:`napari_fanet.tasks.preprocessing`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_fanet.tasks.preprocessing import seg_brain_mask, seg_network_image
from napari_fanet.tasks.roles import ROLES
from napari_fanet.tasks.subjects import QSMSubject, SegSubject


def simulated_seg_subject(
    seed: int, voxel_size: Sequence[float], *, family: str = "phantom"
) -> SegSubject:
    """One simulated MS subject (``family``: ``"phantom"`` or ``"randomised"``) from ``seed``."""
    from napari_fanet.simulation.dataset import simulate_subject

    s = simulate_subject("ms", seed, tuple(voxel_size), family=family)
    images = {r.name: getattr(s, r.file) for r in ROLES["segmentation"] if r.channel is not None}
    brain = seg_brain_mask(s.flair, s.brain_mask)
    label = s.lesion_mask.astype(np.uint8)
    return SegSubject(f"sim-{seed}", seg_network_image(images, brain), label, brain, s.voxel_size)


def simulated_qsm_subject(
    seed: int, voxel_size: Sequence[float], *, family: str = "phantom"
) -> QSMSubject:
    """One simulated QSM subject from ``seed``.

    ``family``: ``"phantom"``, ``"fullrange"``, ``"chain"`` or ``"chain-vsharp"``
    (``simulation.dataset.FAMILIES``).
    """
    from napari_fanet.simulation.dataset import simulate_subject

    s = simulate_subject("qsm", seed, tuple(voxel_size), family=family)
    mask = np.asarray(s.mask) > 0.5
    return QSMSubject(
        f"sim-{seed}",
        np.asarray(s.local_field, dtype=np.float32),
        (s.chi * mask).astype(np.float32),
        mask,
        s.voxel_size,
        np.asarray(s.b0_dir, dtype=np.float64),
    )
