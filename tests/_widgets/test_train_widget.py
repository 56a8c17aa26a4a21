"""The Train widget driven as a user would, headless: real (short) CPU training children."""

from __future__ import annotations

import types

import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")

from napari_fanet.engine import model_catalog
from napari_fanet.models import load_checkpoint, read_checkpoint

ANNOTATION = "lesion mask (reference)"
FINE_TUNE_STEPS = 60  # 0.774 -> 0.857 Dice in 88 s on a busy 2-core CPU (2026-11-24)


@pytest.fixture
def widgets(make_napari_viewer, fanet_plugin, catalog, tmp_path, monkeypatch):
    """A viewer with the MS sample, the FA-Net widget and the Train widget (runs in tmp)."""
    from napari_fanet._widgets.fanet_widget import FANetWidget
    from napari_fanet._widgets.train_widget import TrainWidget

    monkeypatch.setenv("NAPARI_FANET_RUNS", str(tmp_path / "runs"))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fanet", "ms")
    fanet, train = FANetWidget(viewer), TrainWidget(viewer)
    viewer.window.add_dock_widget(fanet)
    viewer.window.add_dock_widget(train)
    return viewer, fanet, train


def _snapshot(viewer):
    return {layer.name: np.array(layer.data, copy=True) for layer in viewer.layers}


def _assert_untouched(viewer, before):
    assert [layer.name for layer in viewer.layers] == list(before)
    for name, data in before.items():
        np.testing.assert_array_equal(viewer.layers[name].data, data)


def _short_cpu_run(w, steps=2000):
    w.annotation.value = ANNOTATION
    w.mode.value = "full mask"
    w.model.value = "fanet-seg"
    w.steps.value = steps
    w.batch_size.value = 1
    w.patch.value = 32
    w.val_every.value = 0
    w.device.value = "cpu"
    w.threads.value = 1
    w.validation.value = "none"


def test_start_watch_stop_and_use_the_fine_tuned_model(widgets, qtbot, tmp_path):
    viewer, fanet, w = widgets
    assert (w.t1.value, w.t2.value, w.flair.value) == ("T1", "T2", "FLAIR")
    assert w.mask.value == "brain mask" and w.lr.value == 1e-4
    assert "1 = lesion, 2 = not lesion, 0 = unpainted" in w.mode.tooltip
    _short_cpu_run(w)
    before = _snapshot(viewer)
    assert w.problems.value == "" and w.start_button.enabled

    w.start_button.clicked.emit()
    assert w._worker is not None and not w.start_button.enabled and w.stop_button.enabled
    qtbot.waitUntil(lambda: w.progress.value >= 3, timeout=180_000)  # progress events arrive
    assert len(w.plot.train[0]) >= 3 and w.plot.train[0][:3] == [1, 2, 3]
    assert "step 3/2000" in w.log.value
    w.stop_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=180_000)

    outcome = w.last_outcome
    assert outcome.status == "stopped" and 3 <= outcome.steps_done < 2000
    assert outcome.run_dir.parent == tmp_path / "runs"
    net, ckpt = load_checkpoint(outcome.run_dir / "last.pt")  # loadable
    assert ckpt["epoch"] == outcome.steps_done and net.config.name == "fanet-seg"
    data = outcome.run_dir / "data" / "sub-annotated"
    assert sorted(p.name for p in data.iterdir()) == [
        "brain_mask.nii.gz", "flair.nii.gz", "lesion_mask.nii.gz", "t1.nii.gz", "t2.nii.gz",
    ]  # fmt: skip
    assert (outcome.run_dir / "log.jsonl").is_file()
    assert (outcome.run_dir / "train-output.log").is_file()

    entry = w.last_model
    assert entry.name == f"fanet-seg-finetuned-{outcome.run_dir.name}"
    assert model_catalog.last_trained("segmentation") == entry
    assert entry.name in [e.name for e in model_catalog.available_models("segmentation")]
    assert read_checkpoint(entry.path)["epoch"] == outcome.steps_done
    card = entry.card.read_text()
    assert f"Run stopped: {outcome.steps_done} of 2000 steps on cpu" in card
    assert "annotation: `lesion mask (reference)`" in card and "--init" in card
    # the FA-Net widget lists and selects it at once; the shipped model stays available
    assert entry.name in fanet.model.choices and "fanet-seg" in fanet.model.choices
    assert fanet.model.value == entry.name
    assert f"Model card: `{entry.name}`" in fanet.model.tooltip
    assert w.model.value == entry.name  # the next run continues from it
    assert w.status.value.startswith("stopped: model ")
    assert w.start_button.enabled and not w.stop_button.enabled
    _assert_untouched(viewer, before)


def test_flair_only_annotate_then_train(widgets, qtbot):
    """A FLAIR-only user fine-tunes fanet-seg (trained for missing modalities), no T1 or T2."""
    from napari_fanet._widgets._layers import NONE_CHOICE
    from napari_fanet.engine.prediction_request import model_accepts_missing_modalities

    _, _, w = widgets
    _short_cpu_run(w)
    w.t1.value = w.t2.value = NONE_CHOICE
    assert w.problems.value == "" and w.start_button.enabled
    w.start_button.clicked.emit()
    qtbot.waitUntil(lambda: w.progress.value >= 2, timeout=180_000)
    w.stop_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=180_000)
    outcome = w.last_outcome
    assert outcome.status == "stopped"
    data = outcome.run_dir / "data" / "sub-annotated"
    assert sorted(p.name for p in data.iterdir()) == [
        "brain_mask.nii.gz", "flair.nii.gz", "lesion_mask.nii.gz",
    ]  # fmt: skip
    ckpt = read_checkpoint(outcome.run_dir / "last.pt")
    assert ckpt["extra"]["modality_dropout"] is True  # kept from fanet-seg: FLAIR-only works
    assert model_accepts_missing_modalities(str(w.last_model.path))


def test_a_new_model_needs_every_modality(widgets):
    from napari_fanet._widgets._layers import NONE_CHOICE

    _, _, w = widgets
    _short_cpu_run(w)
    w.t1.value = NONE_CHOICE
    assert w.problems.value == ""  # fanet-seg was trained for missing modalities: T1 optional
    w.model.value = "(new model, random weights)"
    assert "choose a T1 layer" in w.problems.value and not w.start_button.enabled


def test_a_crashing_child_is_reported_and_layers_are_untouched(
    widgets, qtbot, tmp_path, monkeypatch
):
    import torch

    import napari_fanet._widgets.train_widget as module

    viewer, _, w = widgets
    broken = read_checkpoint(model_catalog.shipped_weights()["fanet-seg"])
    broken["state_dict"].pop(next(iter(broken["state_dict"])))  # readable, but cannot load
    torch.save(broken, tmp_path / "broken.pt")
    model_catalog.add_model(tmp_path / "broken.pt")
    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    _short_cpu_run(w, steps=5)
    w.model.value = "broken"
    before = _snapshot(viewer)

    w.start_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=180_000)
    assert w.last_outcome.status == "failed" and w.last_outcome.returncode != 0
    assert w.status.value == "failed (see the log)"
    assert errors and errors[-1].startswith("FA-Net training: the training process failed")
    assert "state_dict" in w.log.value or "Missing key" in w.log.value
    assert "training failed" in w.log.value
    assert w.last_model is None and model_catalog.last_trained() is None
    assert (w.last_outcome.run_dir / "train-output.log").is_file()  # kept in the run folder
    assert w.start_button.enabled
    _assert_untouched(viewer, before)


def test_bad_annotation_is_refused_before_a_run_starts(widgets, tmp_path, monkeypatch):
    import napari_fanet._widgets.train_widget as module

    viewer, _, w = widgets
    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    viewer.add_labels(np.zeros(viewer.layers["T1"].data.shape, np.uint8), name="empty")
    _short_cpu_run(w)
    w.annotation.value = "empty"
    assert w.start() is None
    assert "annotation 'empty' is empty" in errors[-1] and "is empty" in w.problems.value
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # the empty run folder was removed


def test_copy_prediction_and_click_to_remove_or_keep_lesions(widgets):
    from napari_fanet._widgets._lesion_clicks import lesion_click

    viewer, _, w = widgets
    w.prediction.value = ANNOTATION
    layer = w.copy_prediction()
    assert w.annotation.value == layer.name == f"annotation ({ANNOTATION})"
    reference = viewer.layers[ANNOTATION]
    np.testing.assert_array_equal(layer.data, (reference.data > 0).astype(np.uint8))
    assert tuple(layer.scale) == tuple(reference.scale) and layer.metadata["nifti"]
    assert lesion_click in layer.mouse_drag_callbacks

    from scipy import ndimage

    lesions, n = ndimage.label(layer.data > 0, structure=np.ones((3, 3, 3)))
    assert n >= 3
    voxel = tuple(int(i) for i in np.argwhere(lesions == 1)[0])

    def click(*modifiers):
        event = types.SimpleNamespace(
            modifiers=modifiers,
            type="mouse_press",
            position=tuple(layer.data_to_world(voxel)),
            dims_displayed=[1, 2],
            view_direction=None,
            handled=False,
        )
        lesion_click(layer, event)
        return event

    assert not click("Shift").handled  # no Ctrl: painting is left alone
    assert click("Control").handled
    np.testing.assert_array_equal(layer.data > 0, (lesions > 1))
    layer.undo()
    np.testing.assert_array_equal(layer.data > 0, lesions > 0)
    click("Control", "Shift")
    np.testing.assert_array_equal(layer.data > 0, lesions == 1)
    before = layer.data.copy()
    voxel = (0, 0, 0)  # background: nothing changes
    click("Control")
    np.testing.assert_array_equal(layer.data, before)
    assert np.count_nonzero(reference.data) == np.count_nonzero(lesions)  # the source untouched


def test_qsm_fields_and_a_new_model(widgets, tmp_path):
    _, _, w = widgets
    w.task.value = "QSM reconstruction"
    shown = {n: not getattr(w, n).native.isHidden() for n in ("chi", "annotation", "mask", "t1")}
    assert shown == {"chi": True, "annotation": False, "mask": True, "t1": False}
    expected = {"fanet-qsm", "fanet-qsm-phase", "qsmnet", "(new model, random weights)"}
    assert set(w.model.choices) == expected
    assert w.model.value == "fanet-qsm" and w.lr.value == 1e-4  # fine-tuning a shipped model
    w.model.value = "(new model, random weights)"
    assert w.lr.value == 1e-3
    assert "random weights" in w.model.tooltip
    assert "choose a local field layer" in w.problems.value
    w.b0.value = "0, z, 1"
    with pytest.raises(
        ValueError, match="B0 direction must be 3 numbers such as '0, 0, 1'; got '0, z, 1'"
    ):
        w._export_case(tmp_path / "run")


def test_closing_napari_stops_the_child(
    make_napari_viewer, fanet_plugin, catalog, tmp_path, monkeypatch, qtbot
):
    from napari_fanet._widgets.train_widget import TrainWidget

    monkeypatch.setenv("NAPARI_FANET_RUNS", str(tmp_path / "runs"))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fanet", "ms")
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    _short_cpu_run(w)
    w.start()
    qtbot.waitUntil(lambda: w.progress.value >= 1, timeout=180_000)
    run = w._run
    viewer.close()
    qtbot.waitUntil(lambda: not run.running, timeout=60_000)
    assert run.stop_requested
    _, ckpt = load_checkpoint(run.run_dir / "last.pt")  # stopped gracefully: a loadable file
    assert ckpt["epoch"] >= 1


def _segment_dice(fanet, qtbot):
    """Run the FA-Net widget (its selected model) and return its Dice against the reference."""
    fanet.device.value = "cpu"
    fanet.run_button.clicked.emit()
    qtbot.waitUntil(lambda: fanet._worker is None, timeout=600_000)
    return fanet.last_comparison.metrics["dice"]


@pytest.mark.slow
def test_fine_tuning_on_the_corrected_mask_raises_dice_on_that_case(widgets, qtbot):
    """The whole user path: segment, correct (the reference mask), train, segment again."""
    _, fanet, w = widgets
    assert fanet.model.value == "fanet-seg" and fanet.reference.value == ANNOTATION
    before = _segment_dice(fanet, qtbot)
    _short_cpu_run(w, steps=FINE_TUNE_STEPS)
    w.patch.value, w.batch_size.value = 64, 2
    w.start_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=1_200_000)
    assert w.last_outcome.status == "done", w.last_outcome.message
    assert fanet.model.value == w.last_model.name  # selected in the FA-Net widget at once
    after = _segment_dice(fanet, qtbot)
    print(f"Dice on the sample case: {before:.3f} (fanet-seg) -> {after:.3f} (fine-tuned)")
    assert after > before + 0.03
