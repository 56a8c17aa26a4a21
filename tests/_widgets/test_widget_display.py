"""What the docks show and how much room they take: results visible, docks fit a laptop."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")

from test_fanet_widget import _add_plain_qsm, _tiny_qsm_checkpoint

LAPTOP = (1366, 768)


@pytest.fixture
def fanet(make_napari_viewer, catalog):
    from napari_fanet._widgets.fanet_widget import FANetWidget

    viewer = make_napari_viewer()
    w = FANetWidget(viewer)
    viewer.window.add_dock_widget(w)
    return viewer, w


def test_qsm_error_maps_come_hidden_and_clear_at_zero(fanet, qtbot, tmp_path) -> None:
    viewer, w = fanet
    _add_plain_qsm(viewer)
    w.checkpoint.value = _tiny_qsm_checkpoint(tmp_path / "my-qsm.pt")
    w.device.value, w.tile.value = "cpu", 32
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=120_000)
    chi = viewer.layers["susceptibility (my-qsm, ppm)"]
    assert chi.visible and viewer.layers.selection.active is chi
    for name in ("signed error (my-qsm, ppm)", "absolute error (my-qsm, ppm)"):
        layer = viewer.layers[name]
        assert not layer.visible and layer.opacity < 1
        lo, hi = layer.contrast_limits
        zero = (0.0 - lo) / (hi - lo)  # where an error of 0 ppm falls on the colormap
        assert layer.colormap.map([zero])[0][3] == pytest.approx(0.0, abs=1e-6)
        assert layer.colormap.map([1.0])[0][3] == pytest.approx(1.0)
    signed = viewer.layers["signed error (my-qsm, ppm)"].colormap
    np.testing.assert_allclose(signed.map([0.0])[0], [0, 0, 1, 1])  # negative: blue
    np.testing.assert_allclose(signed.map([1.0])[0], [1, 0, 0, 1])  # positive: red


def test_advanced_options_start_folded(fanet) -> None:
    _, w = fanet
    assert not w.show_advanced.value and w.advanced.native.isHidden()
    w.show_advanced.value = True
    assert not w.advanced.native.isHidden()
    w.show_advanced.value = False
    assert w.advanced.native.isHidden()


def test_two_docks_fit_a_laptop_screen(make_napari_viewer, catalog, qtbot) -> None:
    from qtpy.QtWidgets import QScrollArea

    from napari_fanet._widgets.attention_inspector import AttentionInspectorWidget
    from napari_fanet._widgets.fanet_widget import FANetWidget

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    viewer.window.resize(*LAPTOP)
    docks = []
    for widget_class in (FANetWidget, AttentionInspectorWidget):
        widget = widget_class(viewer)
        viewer.window.add_dock_widget(widget, area="right")
        docks.append(widget)
    viewer.window.resize(*LAPTOP)
    qtbot.wait(100)
    for widget in docks:
        assert isinstance(widget.native, QScrollArea)  # napari docks the scroll area
        assert widget.native.height() >= 150  # every dock keeps some fields in view
    assert window.width() <= LAPTOP[0] and window.height() <= LAPTOP[1]


def test_loss_plot_says_what_it_will_show(qtbot) -> None:
    from napari_fanet._widgets._loss_plot import LossPlot

    plot = LossPlot()
    assert plot.placeholder.get_visible() and "loss" in plot.placeholder.get_text()
    plot.add_event({"event": "step", "step": 1, "loss": 0.5})
    assert not plot.placeholder.get_visible()
    plot.clear()
    assert plot.placeholder.get_visible()
