"""The FA-Net widget shows no stale state: progress after a cancel, metrics of other inputs,
and B0 text echoed as typed (issue 14). The core prediction is replaced by fast fakes."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")

SHAPE = (24, 28, 20)


@pytest.fixture
def widget(make_napari_viewer, catalog):
    from napari_fanet._widgets.fanet_widget import FANetWidget

    viewer = make_napari_viewer()
    w = FANetWidget(viewer)
    viewer.window.add_dock_widget(w)
    return viewer, w


def _add_ms(viewer):
    rng = np.random.default_rng(0)
    for name in ("T1", "T2", "FLAIR"):
        viewer.add_image(rng.random(SHAPE, dtype=np.float32) + 1, name=name, scale=(2, 2, 2))
    brain = np.zeros(SHAPE, np.uint8)
    brain[4:20, 4:24, 4:16] = 1
    viewer.add_labels(brain, name="brain mask", scale=(2, 2, 2))
    viewer.add_labels(brain.copy(), name="other mask", scale=(2, 2, 2))
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[8:12, 8:12, 8:12] = 1
    viewer.add_labels(lesion, name="lesion mask (reference)", scale=(2, 2, 2))


def _fake_segment(*args, progress=None, should_stop=None, **kwargs):
    from napari_fanet.engine.predict import PredictionResult

    progress(0, 6)
    progress(2, 6)  # about a third: where a cancel used to leave the bar
    prob = np.zeros(SHAPE, np.float32)
    prob[8:12, 8:12, 8:10] = 0.9
    return PredictionResult({"probability": prob, "mask": (prob > 0.5).astype(np.uint8)})


def _slow_segment(*args, progress=None, should_stop=None, **kwargs):
    from napari_fanet.engine.inference import InferenceCancelled

    progress(2, 6)
    deadline = time.monotonic() + 60
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(0.01)
    raise InferenceCancelled("inference cancelled")


def test_progress_bar_is_reset_after_a_cancel(widget, qtbot, monkeypatch) -> None:
    viewer, w = widget
    _add_ms(viewer)
    monkeypatch.setattr("napari_fanet.engine.predict.segment", _slow_segment)
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w.progress.value == 33, timeout=60_000)
    w.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert w.progress.value == 0 and w.progress.label == "Progress"
    assert w.run_button.enabled and not w.cancel_button.enabled


def test_progress_bar_is_reset_after_a_run(widget, qtbot, monkeypatch) -> None:
    viewer, w = widget
    _add_ms(viewer)
    monkeypatch.setattr("napari_fanet.engine.predict.segment", _fake_segment)
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert "lesion mask (fanet-seg)" in viewer.layers
    assert w.progress.value == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mask", "other mask"),
        ("threshold", 0.7),
        ("reference", "(none)"),
        ("t2", "T1"),
    ],
)
def test_metrics_are_cleared_when_the_inputs_change(widget, qtbot, monkeypatch, field, value):
    viewer, w = widget
    _add_ms(viewer)
    assert w.reference.value == "lesion mask (reference)"
    monkeypatch.setattr("napari_fanet.engine.predict.segment", _fake_segment)
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert "Dice" in w.metrics.value and w.last_comparison is not None
    getattr(w, field).value = value
    assert w.metrics.value == "" and w.last_comparison is None


def test_b0_text_is_echoed_as_typed(widget) -> None:
    viewer, w = widget
    viewer.add_image(np.ones(SHAPE, np.float32), name="local field", scale=(2, 2, 2))
    viewer.add_labels(np.ones(SHAPE, np.uint8), name="brain mask", scale=(2, 2, 2))
    w.task.value = "QSM reconstruction"
    w.b0.value = "up"
    assert "B0 direction must be 3 numbers such as '0, 0, 1'; got 'up'" in w.problems.value
    assert "(0.0,)" not in w.problems.value and not w.run_button.enabled
    w.b0.value = "nan 0 1"
    assert "B0 direction must be 3 finite numbers; got (nan, 0, 1)" in w.problems.value
    w.b0.value = "0, 0.2, 1"
    assert "B0" not in w.problems.value
