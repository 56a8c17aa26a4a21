"""QSM from multi-echo phase in the FA-Net widget and in the request behind it."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_fanet.engine.inference import InferenceCancelled
from napari_fanet.engine.prediction_request import (
    PhaseOptions,
    PredictionRequest,
)
from napari_fanet.io.layers import LayerVolume
from napari_fanet.simulation import simulate_qsm_subject
from napari_fanet.simulation.gre_phase import simulate_gre_phase

CROP = (slice(10, 34), slice(14, 38), slice(12, 32))  # 24 x 24 x 20 voxels of a 4 mm subject
SCALE = (2.0, 2.0, 2.0)  # shown at the model's 2 mm: no resampling, a small network run


@pytest.fixture(scope="module")
def echoes():
    """Phase and magnitude ``(E, X, Y, Z)`` (echoes first, as napari layers) and the mask."""
    gre = simulate_gre_phase(simulate_qsm_subject(5, 4.0, noise=False), 5)
    phase = np.moveaxis(gre.phase[CROP], -1, 0).astype(np.float32)
    mag = np.moveaxis(gre.magnitude[CROP], -1, 0).astype(np.float32)
    return phase, mag, gre.mask[CROP]


def request(echoes, te="4, 8, 12", **kwargs):
    phase, mag, _ = echoes
    inputs = {
        "phase": LayerVolume("phase", phase, (1.0, *SCALE)),
        "magnitude": LayerVolume("magnitude", mag, (1.0, *SCALE)),
        "brain mask": None,
    }
    return PredictionRequest("qsm", inputs, "fanet-qsm", phase=PhaseOptions(te), **kwargs)


def test_phase_request_problems(echoes):
    assert request(echoes).problems() == []
    assert request(echoes, te="4, 8")._phase_problems() == [
        "echo times (ms): expected 3 echo time(s) (one per echo), got 2"
    ]
    bad = request(echoes)
    bad.inputs["magnitude"] = None
    bad.inputs["brain mask"] = LayerVolume("m", np.ones((3, 3, 3)), SCALE)
    assert bad.problems() == ["choose a magnitude layer"]
    bad.inputs["magnitude"] = request(echoes).inputs["magnitude"]
    assert "brain mask (layer 'm') has shape (3, 3, 3)" in bad.problems()[0]
    flat = request(echoes)
    flat.inputs["phase"] = LayerVolume("p", np.zeros((2, 2)), SCALE)
    assert "expected (echoes, X, Y, Z) or one echo (X, Y, Z)" in flat.problems()[0]
    with pytest.raises(ValueError, match="cannot run: echo times"):
        request(echoes, te="4 8").run()


@pytest.mark.parametrize(
    ("te", "message"),
    [
        ("4, x, 12", "echo times must be numbers in ms such as '4, 8, 12'; got '4, x, 12'"),
        ("0.004, 0.008, 0.012", r"echo times are in ms; got .* \(seconds\?\)"),
        ("8, 4, 12", "echo times .ms.: echo times must be strictly increasing"),
    ],
)
def test_echo_times_errors(te, message):
    with pytest.raises(ValueError, match=message):
        PhaseOptions(te).echo_times_s(3)


def test_phase_request_cancel_is_an_inference_cancel(echoes):
    with pytest.raises(InferenceCancelled, match="cancelled before step 'scale'"):
        request(echoes).run(should_stop=lambda: True)


def test_widget_runs_qsm_from_phase_and_adds_the_chain_maps(
    make_napari_viewer, catalog, qtbot, echoes
):
    pytest.importorskip("qtpy", reason="needs the [qt] extra")
    from napari_fanet._widgets.fanet_widget import QSM_INPUTS, FANetWidget

    phase, mag, _ = echoes
    viewer = make_napari_viewer()
    viewer.add_image(phase, name="GRE phase", scale=(1.0, *SCALE))
    viewer.add_image(mag, name="GRE magnitude", scale=(1.0, *SCALE))
    w = FANetWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.task.value = "QSM reconstruction"
    assert w.model.value == "fanet-qsm"
    w.qsm_input.value = QSM_INPUTS[1]
    assert w.model.value == "fanet-qsm-phase"  # the phase path's shipped network
    assert not w.phase.native.isHidden() and w.field.native.isHidden()  # shown / hidden
    assert w.phase.value == "GRE phase" and w.magnitude.value == "GRE magnitude"
    w.te.value = "4, 8"
    assert "expected 3 echo time(s)" in w.problems.value and not w.run_button.enabled
    w.te.value = "4, 8, 12"
    w.mask.value = "(none)"
    w.device.value = "cpu"
    w.tile.value = 32
    assert w.problems.value == "" and w.run_button.enabled
    assert w.build_request().data_consistency == "smv"  # the phase path's default
    from napari_fanet.physics.phase_chain import DEFAULT_BACKGROUND

    assert w.bfr.value == DEFAULT_BACKGROUND == w.build_request().phase.background  # LBV
    w.total_field_dc.value = False
    assert w.build_request().data_consistency == "cg"
    w.total_field_dc.value = True
    w.data_consistency.value = False
    assert w.build_request().data_consistency == "none"
    w.data_consistency.value = True
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=180_000)
    chi = viewer.layers["susceptibility (fanet-qsm-phase, ppm)"]
    maps = ("total field (fanet-qsm-phase, Hz)", "local field (fanet-qsm-phase, ppm)")
    for name in (*maps, "brain mask (fanet-qsm-phase)"):
        layer = viewer.layers[name]
        assert layer.data.shape == phase.shape[1:] and tuple(layer.scale) == SCALE
    assert chi.data.shape == phase.shape[1:] and np.isfinite(chi.data).all()
    inside = viewer.layers["brain mask (fanet-qsm-phase)"].data > 0
    assert inside.any() and np.abs(chi.data[inside]).max() < 1.0
    assert np.abs(viewer.layers["total field (fanet-qsm-phase, Hz)"].data).max() < 125
    w.qsm_input.value = QSM_INPUTS[0]  # a local field has no total field: back to "cg"
    assert w.total_field_dc.native.isHidden() and w.build_request().data_consistency == "cg"
    assert w.model.value == "fanet-qsm"  # and the local-field path's network
    w.model.value = "qsmnet"  # a model the user picked stays picked
    w.qsm_input.value = QSM_INPUTS[1]
    assert w.model.value == "qsmnet"


REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "gre-multiecho-patch"


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real GRE patch not found at {REAL}")
def test_widget_runs_the_real_patch_opened_through_the_plugin_reader(
    make_napari_viewer, fanet_plugin, catalog, qtbot, tmp_path
):
    """The shared 40 x 40 x 20 x 3 patch, as a user opens it: two 4D files, echoes on a slider."""
    pytest.importorskip("qtpy", reason="needs the [qt] extra")
    from napari_fanet._widgets.fanet_widget import QSM_INPUTS, FANetWidget
    from napari_fanet._writer import write_image

    viewer = make_napari_viewer()
    (phase,) = viewer.open(REAL / "phase.nii.gz", plugin="napari-fanet")
    (magnitude,) = viewer.open(REAL / "magnitude.nii.gz", plugin="napari-fanet")
    assert phase.data.shape == magnitude.data.shape == (3, 40, 40, 20)
    w = FANetWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.task.value = "QSM reconstruction"
    w.qsm_input.value = QSM_INPUTS[1]
    assert w.phase.value == "phase" and w.magnitude.value == "magnitude"
    w.te.value = "4, 8, 12"  # not recorded with the patch (its README)
    w.device.value = "cpu"
    assert w.problems.value == "" and w.run_button.enabled
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=180_000)
    chi = viewer.layers["susceptibility (fanet-qsm-phase, ppm)"]
    inside = viewer.layers["brain mask (fanet-qsm-phase)"].data > 0
    assert chi.data.shape == (40, 40, 20) and np.isfinite(chi.data).all()
    assert 0.1 < inside.mean() < 0.9
    assert np.abs(viewer.layers["total field (fanet-qsm-phase, Hz)"].data[inside]).max() < 125
    assert 0.002 < chi.data[inside].std() < 0.2
    # Saved by the plugin's writer, the map overlays the patch's own grid.
    out = tmp_path / "chi.nii.gz"
    state = {"scale": chi.scale, "translate": chi.translate, "metadata": chi.metadata}
    write_image(str(out), chi.data, {"name": chi.name, **state})
    saved = nib.load(out)
    assert saved.shape == (40, 40, 20)
    np.testing.assert_allclose(saved.affine, nib.load(REAL / "phase.nii.gz").affine, atol=1e-5)


def test_widget_takes_the_echo_times_from_the_phase_files_sidecar(
    make_napari_viewer, fanet_plugin, echoes, tmp_path
):
    pytest.importorskip("qtpy", reason="needs the [qt] extra")
    from napari_fanet._widgets.fanet_widget import QSM_INPUTS, FANetWidget

    phase, mag, _ = echoes
    affine = np.diag([*SCALE, 1.0])
    for name, data in (("sub-1_part-phase", phase), ("sub-1_part-mag", mag)):
        nib.save(nib.Nifti1Image(np.moveaxis(data, 0, -1), affine), tmp_path / f"{name}.nii.gz")
    (tmp_path / "sub-1_part-phase.json").write_text(json.dumps({"EchoTime": [0.005, 0.01, 0.015]}))
    viewer = make_napari_viewer()
    w = FANetWidget(viewer)
    w.task.value = "QSM reconstruction"
    w.qsm_input.value = QSM_INPUTS[1]
    viewer.open(tmp_path / "sub-1_part-mag.nii.gz", plugin="napari-fanet")
    viewer.open(tmp_path / "sub-1_part-phase.nii.gz", plugin="napari-fanet")
    w.reset_choices()
    assert w.phase.value == "sub-1_part-phase"
    assert w.te.value == "5, 10, 15"
    assert "echo time" not in w.problems.value
