"""The npe2 sample data: the synthetic MS and QSM cases as layers with their NIfTI metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")

import nibabel as nib

from napari_fanet._sample_data import ms_sample, qsm_sample
from napari_fanet.evaluation.sample_files import sample_data_folder
from napari_fanet.io.layers import NIFTI_METADATA_KEY

MS_LAYERS = [
    ("T1", "image"),
    ("T2", "image"),
    ("FLAIR", "image"),
    ("brain mask", "labels"),
    ("lesion mask (reference)", "labels"),
]
QSM_LAYERS = [
    ("magnitude", "image"),
    ("local field (ppm)", "image"),
    ("brain mask", "labels"),
    ("susceptibility (reference, ppm)", "image"),
]


def load(task, stem):
    """A sample file with nibabel: data (float64) and affine, independently of the plugin."""
    img = nib.load(sample_data_folder() / task / "sub-0000" / f"{stem}.nii.gz")
    return np.asarray(img.dataobj, dtype=np.float64), img.affine


@pytest.fixture(scope="module")
def ms_layers():
    return {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in ms_sample()}


@pytest.fixture(scope="module")
def qsm_layers():
    return {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in qsm_sample()}


def test_ms_sample_layers(ms_layers):
    assert [(name, kind) for name, (_, _, kind) in ms_layers.items()] == MS_LAYERS
    brain = load("ms", "brain_mask")[0] > 0
    for name, stem in (("T1", "t1"), ("T2", "t2"), ("FLAIR", "flair")):
        data, kwargs, _ = ms_layers[name]
        assert kwargs["colormap"] == "gray"
        expected = np.percentile(load("ms", stem)[0][brain], [0.5, 99.5])
        np.testing.assert_allclose(kwargs["contrast_limits"], expected, rtol=1e-5)
        assert data.dtype == np.float32
    assert ms_layers["brain mask"][1]["visible"] is False
    assert ms_layers["lesion mask (reference)"][1]["opacity"] == 0.5
    lesions = ms_layers["lesion mask (reference)"][0]
    assert lesions.dtype.kind in "iu"
    assert lesions.sum() == load("ms", "lesion_mask")[0].sum() > 0


def test_qsm_sample_layers(qsm_layers):
    assert [(name, kind) for name, (_, _, kind) in qsm_layers.items()] == QSM_LAYERS
    brain = load("qsm", "brain_mask")[0] > 0
    field = load("qsm", "local_field")[0]
    limit = np.percentile(np.abs(field[brain]), 99.5)
    _, kwargs, _ = qsm_layers["local field (ppm)"]
    np.testing.assert_allclose(kwargs["contrast_limits"], (-limit, limit), rtol=1e-5)
    assert kwargs["colormap"] == "gray"
    chi = qsm_layers["susceptibility (reference, ppm)"][1]
    assert chi["contrast_limits"] == (-0.15, 0.15)
    assert chi["colormap"] == "gray"
    assert qsm_layers["magnitude"][1]["colormap"] == "gray"
    assert qsm_layers["brain mask"][1]["visible"] is False

    meta = json.loads((sample_data_folder() / "qsm" / "sub-0000" / "meta.json").read_text())
    for _, kwargs, _ in qsm_layers.values():
        for key in ("b0_dir", "b0_dir_world"):
            assert kwargs["metadata"][key] == pytest.approx(meta[key])
            assert len(kwargs["metadata"][key]) == 3


@pytest.mark.parametrize(
    ("task", "stem", "name"),
    [
        ("ms", "flair", "FLAIR"),
        ("ms", "lesion_mask", "lesion mask (reference)"),
        ("qsm", "local_field", "local field (ppm)"),
        ("qsm", "brain_mask", "brain mask"),
    ],
)
def test_every_layer_sits_on_its_file(task, stem, name, ms_layers, qsm_layers):
    data, kwargs, _ = (ms_layers if task == "ms" else qsm_layers)[name]
    source, affine = load(task, stem)
    nifti = kwargs["metadata"][NIFTI_METADATA_KEY]
    np.testing.assert_array_equal(nifti["affine"], affine)
    assert nifti["path"].endswith(f"{task}/sub-0000/{stem}.nii.gz")
    # The sample files are RAS+ already: shown as stored, at scale * index + translate.
    np.testing.assert_array_equal(data, source)
    np.testing.assert_allclose(kwargs["scale"], np.diag(affine)[:3])
    np.testing.assert_allclose(kwargs["translate"], affine[:3, 3])


def test_viewer_opens_both_samples(make_napari_viewer, fanet_plugin):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fanet", "ms")
    viewer.open_sample("napari-fanet", "qsm")
    expected = MS_LAYERS + [(f"{name} [1]" if name == "brain mask" else name, kind)
                            for name, kind in QSM_LAYERS]  # fmt: skip
    assert [(layer.name, layer._type_string) for layer in viewer.layers] == expected
    for layer in viewer.layers:
        np.testing.assert_allclose(layer.scale, (2.0, 2.0, 2.0))
        assert NIFTI_METADATA_KEY in layer.metadata
    assert not viewer.layers["brain mask"].visible
    assert viewer.layers["lesion mask (reference)"].opacity == 0.5
