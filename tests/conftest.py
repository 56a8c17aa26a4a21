"""Fixtures shared by the whole suite: tiny on-disk subjects in the simulator's folder layout.

The subject writers are fixtures that return functions (``tests/`` is not a package, so a helper
module could not be imported reliably). Subjects are 24 x 28 x 20 voxels of 4 mm with an
ellipsoid brain, made without the simulator.
"""

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_fanet.io.nifti import save_volume
from napari_fanet.physics.forward import forward_field

SUBJECT_SHAPE = (24, 28, 20)
SUBJECT_VOXEL = 4.0


def _ellipsoid(radii):
    grid = np.indices(SUBJECT_SHAPE, dtype=float)
    centre = (np.array(SUBJECT_SHAPE) - 1) / 2
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1


def _default_affine(affine):
    return np.diag([SUBJECT_VOXEL] * 3 + [1.0]) if affine is None else affine


def _write_ms_subject(folder, seed, affine=None):
    """T1/T2/FLAIR of a noisy ellipsoid brain with one box lesion (bright on T2/FLAIR)."""
    affine = _default_affine(affine)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    brain = _ellipsoid((10, 12, 8))
    lesion = np.zeros(SUBJECT_SHAPE, dtype=bool)
    c = rng.integers([8, 9, 7], [15, 18, 12])
    lesion[c[0] - 2 : c[0] + 2, c[1] - 2 : c[1] + 2, c[2] - 1 : c[2] + 2] = True
    base = brain * (1.0 + 0.1 * rng.standard_normal(SUBJECT_SHAPE))
    images = {"t1": base - 0.5 * lesion, "t2": base + 0.8 * lesion, "flair": base + lesion}
    for name, data in images.items():
        save_volume(folder / f"{name}.nii.gz", data.astype(np.float32), affine)
    save_volume(folder / "lesion_mask.nii.gz", lesion.astype(np.uint8), affine)
    save_volume(folder / "brain_mask.nii.gz", brain.astype(np.uint8), affine)
    return folder


def _write_qsm_subject(folder, seed, affine=None, b0_dir=(0.0, 0.0, 1.0)):
    """Smooth random susceptibility in an ellipsoid and its local field (dipole forward model).

    ``b0_dir`` (array axes) is normalised, used for the field and stored in ``meta.json``.
    """
    affine = _default_affine(affine)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    mask = _ellipsoid((10, 12, 8))
    chi = ndimage.gaussian_filter(rng.standard_normal(SUBJECT_SHAPE), 1.5) * 0.3 * mask
    b0 = np.asarray(b0_dir, dtype=float) / np.linalg.norm(b0_dir)
    field = forward_field(chi, (SUBJECT_VOXEL,) * 3, tuple(b0)) * mask
    save_volume(folder / "chi.nii.gz", chi.astype(np.float32), affine)
    save_volume(folder / "local_field.nii.gz", field.astype(np.float32), affine)
    save_volume(folder / "brain_mask.nii.gz", mask.astype(np.uint8), affine)
    (folder / "meta.json").write_text(json.dumps({"b0_dir": b0.tolist()}))
    return folder


def _expected_lesion_mask(
    prob, voxel_volume_mm3, threshold=0.5, seed=None, min_mm3=0.0, edge=None, voxel_size=None
):
    """The lesion-mask rule computed independently: one component at a time, in a loop.

    ``edge`` is ``(brain, min_edge_distance_mm)`` (None: no edge rule): a component is kept only
    if its voxels' mean distance to the nearest voxel outside ``brain`` (voxel centres, mm, with
    ``voxel_size``) is at least that, by a brute-force search over the outside voxels.
    """
    labels, n = ndimage.label(prob > threshold, structure=np.ones((3, 3, 3)))
    out = np.zeros(prob.shape, np.uint8)
    if edge is not None:
        brain, min_mm = edge
        padded = np.pad(brain, 1)  # the array's border is outside
        # the nearest outside voxel always touches the brain: only those are searched
        rim = ~padded & ndimage.binary_dilation(padded, np.ones((3, 3, 3), bool))
        outside = np.argwhere(rim) - 1  # (K, 3)
        scale = np.asarray(voxel_size, dtype=np.float64)
    for i in range(1, n + 1):
        component = labels == i
        confident = seed is None or prob[component].max() > seed
        keep = confident and component.sum() * voxel_volume_mm3 >= min_mm3
        if keep and edge is not None and min_mm > 0:
            distances = [
                np.sqrt((((outside - v) * scale) ** 2).sum(1)).min()
                for v in np.argwhere(component & brain)
            ]
            keep = sum(distances) / component.sum() >= min_mm
        if keep:
            out[component] = 1
    return out


@pytest.fixture(scope="session")
def expected_lesion_mask():
    """``expected_lesion_mask(prob, voxel_volume_mm3, threshold, seed, min_mm3, edge, voxel)``."""
    return _expected_lesion_mask


@pytest.fixture(scope="session")
def default_lesion_mask():
    """``default_lesion_mask(prob, voxel_size, brain)``: the default rule, independently."""
    from napari_fanet.tasks.lesion_mask import (
        DEFAULT_MIN_EDGE_DISTANCE_MM,
        DEFAULT_MIN_LESION_MM3,
        DEFAULT_SEED_THRESHOLD,
    )

    return lambda prob, voxel_size, brain: _expected_lesion_mask(
        prob,
        float(np.prod(voxel_size)),
        0.5,
        DEFAULT_SEED_THRESHOLD,
        DEFAULT_MIN_LESION_MM3,
        (brain, DEFAULT_MIN_EDGE_DISTANCE_MM),
        voxel_size,
    )


@pytest.fixture(scope="session")
def write_ms_subject():
    """``write_ms_subject(folder, seed, affine=None) -> folder`` (default affine: 4 mm, axial)."""
    return _write_ms_subject


def _write_white_matter_patient(folder, seed=0, lesion_name="consensus_lesions.nii.gz"):
    """FLAIR, T1 and T2 of a 1 mm cube brain with a T1-bright white-matter core, one lesion.

    The brain is 32^3 voxels of a 40^3 grid, the core (42 % of it, above the 0.65 quantile of
    its T1) 24^3, the lesion 3^3 in the middle: room for lesion insertion. Returns the lesion
    mask (uint8, ``(40, 40, 40)``).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    brain = np.zeros((40, 40, 40), np.float32)
    brain[4:36, 4:36, 4:36] = 1
    core = np.zeros_like(brain)
    core[8:32, 8:32, 8:32] = 1
    noise = (1 + 0.02 * rng.standard_normal(brain.shape)).astype(np.float32)
    lesions = np.zeros(brain.shape, np.uint8)
    lesions[18:21, 18:21, 18:21] = 1
    images = {"flair": brain * 100, "t1": brain * 70 + core * 50, "t2": brain * 80}
    for name, image in images.items():
        save_volume(folder / f"{name}.nii.gz", image * noise, np.eye(4))
    save_volume(folder / lesion_name, lesions, np.eye(4))
    return lesions


@pytest.fixture(scope="session")
def write_white_matter_patient():
    """``write_white_matter_patient(folder, seed=0, lesion_name=...) -> lesion mask``."""
    return _write_white_matter_patient


@pytest.fixture(scope="session")
def write_qsm_subject():
    """``write_qsm_subject(folder, seed, affine=None, b0_dir=(0, 0, 1)) -> folder``."""
    return _write_qsm_subject


@pytest.fixture
def fanet_plugin():
    """napari's global npe2 plugin manager with napari-fanet in it.

    An installed package is found by discovery; a bare checkout run with ``PYTHONPATH=src``
    has no entry point, so the repository's ``napari.yaml`` is registered instead.
    """
    from pathlib import Path

    from npe2 import PluginManager, PluginManifest

    pm = PluginManager.instance()
    pm.discover()
    if "napari-fanet" not in {mf.name for mf in pm.iter_manifests()}:
        manifest = Path(__file__).resolve().parents[1] / "napari.yaml"
        pm.register(PluginManifest.from_file(manifest))
    return pm


@pytest.fixture
def catalog(monkeypatch):
    """The session model catalog, emptied (no added, trained or subscribed entries)."""
    from napari_fanet.engine import model_catalog

    monkeypatch.setattr(model_catalog, "_added", {})
    monkeypatch.setattr(model_catalog, "_trained", [])
    monkeypatch.setattr(model_catalog, "_subscribers", [])
    return model_catalog


@pytest.fixture(scope="session")
def ms_dataset(tmp_path_factory, write_ms_subject):
    """A folder of three MS subjects in the simulator's layout, made without the simulator."""
    root = tmp_path_factory.mktemp("ms")
    for i in range(3):
        write_ms_subject(root / f"sub-{i:04d}", seed=i)
    return root


@pytest.fixture(scope="session")
def qsm_dataset(tmp_path_factory, write_qsm_subject):
    """A folder of three QSM subjects (B0 tilted), made without the simulator."""
    root = tmp_path_factory.mktemp("qsm")
    for i in range(3):
        write_qsm_subject(root / f"sub-{i:04d}", seed=100 + i, b0_dir=(0.1, 0.0, 1.0))
    return root
