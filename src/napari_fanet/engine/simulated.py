"""Training subjects simulated in memory (``napari-fanet train --simulate N``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_fanet.engine.subjects import SEG_MODALITIES, QSMSubject, SegSubject, zscore_in_mask


def simulate_subjects(
    task: str,
    n: int,
    first_seed: int,
    voxel_size: Sequence[float] = (2.0, 2.0, 2.0),
    *,
    family: str = "phantom",
) -> list[SegSubject | QSMSubject]:
    """``n`` subjects of ``task`` ("segmentation" or "qsm") with seeds ``first_seed + i``.

    The simulator's grids are already RAS-canonical, so no reorientation is needed; the subjects
    are normalised exactly as :mod:`napari_fanet.engine.subjects` normalises files. ``family``
    picks the generator (:data:`~napari_fanet.simulation.dataset.FAMILIES`; segmentation may use
    ``"randomised"``).
    """
    from napari_fanet.simulation.dataset import simulate_subject

    if task not in ("segmentation", "qsm"):
        raise ValueError(f"task must be 'segmentation' or 'qsm', got {task!r}")
    out: list[SegSubject | QSMSubject] = []
    for i in range(n):
        seed = first_seed + i
        if task == "segmentation":
            s = simulate_subject("ms", seed, tuple(voxel_size), family=family)
            brain = s.brain_mask.astype(bool)
            image = np.stack([zscore_in_mask(getattr(s, m), brain) for m in SEG_MODALITIES])
            label = s.lesion_mask.astype(np.uint8)
            out.append(SegSubject(f"sim-{seed}", image, label, brain, s.voxel_size))
        else:
            s = simulate_subject("qsm", seed, tuple(voxel_size), family=family)
            mask = s.mask.astype(bool)
            out.append(
                QSMSubject(
                    f"sim-{seed}",
                    (s.local_field * mask).astype(np.float32),
                    (s.chi * mask).astype(np.float32),
                    mask,
                    s.voxel_size,
                    np.asarray(s.b0_dir, dtype=np.float64),
                )
            )
    return out
