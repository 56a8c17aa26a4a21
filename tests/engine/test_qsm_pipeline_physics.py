"""Physics a QSM user relies on, for the shipped fanet-qsm with its default pipeline.

On a crop of the shipped sample (simulated; not data the model was tuned on in these tests):
B0 and -B0 give the same map, scaling the field by k scales the map by k, and data consistency
moves the map towards the reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.engine.inference import WindowSettings
from napari_fanet.engine.predict import load_model, reconstruct_qsm
from napari_fanet.evaluation.sample_files import sample_data_folder
from napari_fanet.io.nifti import load_volume

SETTINGS = WindowSettings(roi_size=(48, 48, 48), overlap=0.25, device="cpu")
CROP = (slice(14, 78), slice(22, 86), slice(26, 74))  # 64 x 64 x 48 voxels around the centre


@pytest.fixture(scope="module")
def sample():
    folder = sample_data_folder() / "qsm" / "sub-0000"
    field = load_volume(folder / "local_field.nii.gz").data[CROP]
    mask = load_volume(folder / "brain_mask.nii.gz").data[CROP] > 0
    chi = load_volume(folder / "chi.nii.gz").data[CROP]
    b0 = (0.01966667, 0.22300809, 0.97461819)  # the sample's meta.json (array = world axes)
    model, ckpt = load_model("fanet-qsm")
    return model, ckpt, field.astype(np.float32), mask, chi, b0


def run(sample, field=None, b0=None, **options):
    model, ckpt, f, mask, _, b = sample
    return reconstruct_qsm(
        model,
        ckpt,
        f if field is None else field,
        mask.astype(np.float32),
        voxel_size=(2.0, 2.0, 2.0),
        b0_dir=b if b0 is None else b0,
        settings=SETTINGS,
        **options,
    ).outputs["chi"]


def relative_difference(a, b, mask):
    return float(np.linalg.norm((a - b)[mask]) / np.linalg.norm(b[mask]))


@pytest.fixture(scope="module")
def default_map(sample):
    return run(sample)


@pytest.mark.parametrize("dc", ["cg", "none"])
def test_b0_and_minus_b0_give_the_same_map(sample, default_map, dc):
    _, _, _, mask, _, b0 = sample
    plus = default_map if dc == "cg" else run(sample, data_consistency=dc)
    minus = run(sample, b0=tuple(-v for v in b0), data_consistency=dc)
    assert relative_difference(minus, plus, mask) < 0.01


@pytest.mark.parametrize("k", [0.25, 0.5, 2.0, 4.0])
def test_scaling_the_field_scales_the_map(sample, default_map, k):
    _, _, field, mask, _, _ = sample
    scaled = run(sample, field=k * field)
    x, y = default_map[mask].astype(np.float64), scaled[mask].astype(np.float64)
    slope = float(x @ y / (x @ x))  # regression through the origin, inside the mask
    assert abs(slope / k - 1.0) < 0.05


def test_data_consistency_is_on_by_default_and_helps(sample, default_map):
    _, _, _, mask, chi, _ = sample
    raw = run(sample, data_consistency="none")
    assert not np.allclose(raw, default_map)
    err = lambda m: np.linalg.norm((m - chi)[mask])  # noqa: E731
    assert err(default_map) < err(raw)


def test_bad_data_consistency_options(sample):
    with pytest.raises(ValueError, match="data_consistency must be one of cg, kspace, none"):
        run(sample, data_consistency="medi")
    with pytest.raises(
        ValueError, match=r"dc_lambda must be .auto. or a finite number > 0, got 0$"
    ):
        run(sample, dc_lambda=0)
