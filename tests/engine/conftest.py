"""Tiny on-disk datasets in the simulator's folder layout, made without the simulator."""

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_fanet.io import save_volume
from napari_fanet.qsm import forward_field

SHAPE = (24, 28, 20)
AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])


def _ellipsoid(shape, radii):
    grid = np.indices(shape, dtype=float)
    centre = (np.array(shape) - 1) / 2
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1


def write_ms_subject(folder, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    brain = _ellipsoid(SHAPE, (10, 12, 8))
    lesion = np.zeros(SHAPE, bool)
    c = rng.integers([8, 9, 7], [15, 18, 12])
    lesion[c[0] - 2 : c[0] + 2, c[1] - 2 : c[1] + 2, c[2] - 1 : c[2] + 2] = True
    base = brain * (1.0 + 0.1 * rng.standard_normal(SHAPE))
    vols = {
        "t1": base - 0.5 * lesion,
        "t2": base + 0.8 * lesion,
        "flair": base + 1.0 * lesion,
        "lesion_mask": lesion.astype(np.uint8),
        "brain_mask": brain.astype(np.uint8),
    }
    for name, data in vols.items():
        save_volume(
            folder / f"{name}.nii.gz",
            data.astype(np.float32) if data.dtype != np.uint8 else data,
            AFFINE,
        )


def write_qsm_subject(folder, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    mask = _ellipsoid(SHAPE, (10, 12, 8))
    chi = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.5) * 0.3 * mask
    b0 = np.array([0.1, 0.0, 1.0]) / np.linalg.norm([0.1, 0.0, 1.0])
    field = forward_field(chi, (4.0, 4.0, 4.0), tuple(b0)) * mask
    save_volume(folder / "chi.nii.gz", chi.astype(np.float32), AFFINE)
    save_volume(folder / "local_field.nii.gz", field.astype(np.float32), AFFINE)
    save_volume(folder / "brain_mask.nii.gz", mask.astype(np.uint8), AFFINE)
    (folder / "meta.json").write_text(json.dumps({"b0_dir": b0.tolist()}))


@pytest.fixture(scope="session")
def ms_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ms")
    for i in range(3):
        write_ms_subject(root / f"sub-{i:04d}", seed=i)
    return root


@pytest.fixture(scope="session")
def qsm_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("qsm")
    for i in range(3):
        write_qsm_subject(root / f"sub-{i:04d}", seed=100 + i)
    return root
