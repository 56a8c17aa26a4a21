"""The FA attention inspector dock widget, driven headless: typed voxels and mouse clicks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")

import torch

from napari_fanet.engine import model_catalog
from napari_fanet.engine.attention_inspection import AttentionInspector
from napari_fanet.models import build_model, load_checkpoint, save_checkpoint

SHAPE = (40, 36, 20)
SCALE = (2.0, 2.0, 2.0)
TRANSLATE = (10.0, -4.0, 3.0)


@pytest.fixture
def tiny_fa(tmp_path, monkeypatch):
    """A tiny FA-Net checkpoint (2 mm, gates switched on), added to an empty session list."""
    monkeypatch.setattr(model_catalog, "_added", {})
    torch.manual_seed(0)
    model = build_model("fanet-seg", features=(8, 8, 8, 8, 16))
    with torch.no_grad():
        model.attention.beta.copy_(torch.tensor([0.7, -0.4, 1.3, 0.5]))
        model.attention.theta.weight.mul_(0.6)
    return save_checkpoint(tmp_path / "tiny-fa.pt", model, extra={"voxel_size": list(SCALE)})


def _arrays():
    rng = np.random.default_rng(0)
    brain = np.zeros(SHAPE, dtype=np.uint8)
    brain[3:-3, 2:-2, 2:-2] = 1
    arrays = {k: ((rng.standard_normal(SHAPE) + 3) * brain).astype(np.float32) for k in "ABC"}
    arrays["C"][25, 7, 9] = 100.0  # the brightest FLAIR voxel on one ray, for the 3D click
    return {"T1": arrays["A"], "T2": arrays["B"], "FLAIR": arrays["C"], "brain mask": brain}


@pytest.fixture
def widget(make_napari_viewer, tiny_fa):
    from napari_fanet._widgets.attention_inspector import AttentionInspectorWidget

    viewer = make_napari_viewer()
    for name, data in _arrays().items():
        add = viewer.add_labels if name == "brain mask" else viewer.add_image
        add(data, name=f"sub-01 {name}", scale=SCALE, translate=TRANSLATE)
    w = AttentionInspectorWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.checkpoint.value = tiny_fa
    w.window.value = 32
    return viewer, w


def _expected(path, voxel, **options):
    model, checkpoint = load_checkpoint(path)
    arrays = {k: v.astype(np.float32) for k, v in _arrays().items()}
    return AttentionInspector().inspect(
        "segmentation", arrays, SCALE, model, checkpoint, voxel, window=32, **options
    )


def _wait(qtbot, w, voxel, effective=True):
    qtbot.waitUntil(
        lambda: (
            w._worker is None
            and w.last_view is not None
            and w.last_view.voxel == voxel
            and w.last_view.effective == effective
        ),
        timeout=60_000,
    )


def test_typed_voxel_adds_an_aligned_map_and_plots(widget, tiny_fa, qtbot):
    viewer, w = widget
    assert (w.t1.value, w.flair.value, w.mask.value) == ("sub-01 T1", "sub-01 FLAIR",
                                                         "sub-01 brain mask")  # fmt: skip
    assert w.model.value == "tiny-fa"
    assert "fanet-seg" in w.model.choices  # the shipped FA model; unet-seg is not offered
    assert "unet-seg" not in w.model.choices
    w.x.value, w.y.value, w.z.value = 20, 10, 5
    w.inspect_button.clicked.emit()
    _wait(qtbot, w, (20, 10, 5))

    expected = _expected(tiny_fa, (20, 10, 5))
    layer = viewer.layers["FA attention map (20, 10, 5)"]
    # The map on the bottleneck grid of the 32-voxel window, (2, 2, 2) cells of 16 voxels.
    np.testing.assert_allclose(layer.data, expected.rank_one.spatial_map, rtol=1e-6, atol=1e-9)
    assert layer.data.max() > 0 and layer.data.shape == (2, 2, 2)
    source = viewer.layers["sub-01 FLAIR"]
    np.testing.assert_array_equal(layer.scale, np.asarray(source.scale) * 16)
    np.testing.assert_array_equal(layer.affine.affine_matrix, source.affine.affine_matrix)
    # Each cell's centre lands on the centre of its 16 voxels: the window starts at x = 4
    # (32 around 20 in 40) and y = 0 (32 around 10 in 36); z (20) is whole, padded by 6.
    centre = np.array([4, 0, -6]) + 7.5
    np.testing.assert_allclose(layer.data_to_world((0, 0, 0)), source.data_to_world(centre))
    np.testing.assert_allclose(
        layer.data_to_world((1, 1, 1)), source.data_to_world(centre + 16 * np.array([1, 1, 1]))
    )
    # Not an opaque block over the scan: half transparent, clear at zero, with a colour bar.
    assert layer.colormap.name.startswith("inferno") and layer.blending == "translucent"
    assert 0.5 <= layer.opacity <= 0.6 and layer.colormap.map([0.0])[0][3] == 0
    assert layer.colorbar.visible
    assert "outer product of its D, H, W effective rows" in w.legend.value
    assert "level 4 (32 x 32 x 32 mm cells)" in w.legend.value
    np.testing.assert_array_equal(viewer.layers["FA inspected voxel"].data, [[20, 10, 5]])
    for a in "DHWC":
        np.testing.assert_allclose(
            w.plots.factor_lines[a].get_ydata(), expected.rank_one.factors[a], rtol=1e-6
        )
    assert w.beta_label.value == "+0.7000, -0.4000, +1.3000, +0.5000"
    assert "level-4 cell" in w.status.value and "window (32, 32, 20)" in w.status.value

    # Raw rows and the matrices: the forward pass is reused, only the display changes.
    w.show_matrices.value = True
    w.rows.value = "raw softmax A"
    _wait(qtbot, w, (20, 10, 5), effective=False)
    assert w._inspector.forward_passes == 1
    raw = _expected(tiny_fa, (20, 10, 5), effective=False)
    np.testing.assert_allclose(w.plots.factor_lines["D"].get_ydata(), raw.rank_one.factors["D"])
    np.testing.assert_allclose(
        w.plots.matrix_images["C"].get_array(), raw.rank_one.matrices["C"], rtol=1e-6
    )
    assert not w.plots.matrix_canvas.isHidden()


def _click(viewer, position, *, dims_displayed=(1, 2), view_direction=None, drag=False):
    """Press and release as napari's canvas does (same event object, type updated)."""
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    event = SimpleNamespace(
        type="mouse_press", button=1, pos=np.array([50.0, 60.0]), is_dragging=False,
        position=tuple(position), view_direction=view_direction,
        dims_displayed=list(dims_displayed), modifiers=[],
    )  # fmt: skip
    mouse_press_callbacks(viewer, event)
    if drag:
        event.type, event.is_dragging, event.pos = "mouse_move", True, np.array([80.0, 60.0])
        mouse_move_callbacks(viewer, event)
    event.type = "mouse_release"
    mouse_release_callbacks(viewer, event)


def test_mouse_clicks_in_2d_and_3d_update_the_one_map_layer(widget, tiny_fa, qtbot):
    viewer, w = widget
    world = np.asarray(TRANSLATE) + np.asarray(SCALE) * np.array([12, 7, 9])
    _click(viewer, world + 0.4)  # within the voxel (world units: mm)
    _wait(qtbot, w, (12, 7, 9))
    assert (w.x.value, w.y.value, w.z.value) == (12, 7, 9)
    maps = [layer for layer in viewer.layers if layer.name.startswith("FA attention map")]
    assert [m.name for m in maps] == ["FA attention map (12, 7, 9)"]
    np.testing.assert_allclose(
        maps[0].data, _expected(tiny_fa, (12, 7, 9)).rank_one.spatial_map, rtol=1e-6
    )

    # A drag pans the view: nothing is inspected.
    _click(viewer, world + np.array([20.0, 0, 0]), drag=True)
    qtbot.wait(50)
    assert w._worker is None and w.last_view.voxel == (12, 7, 9)

    # 3D: a ray along x through (y, z) = (7, 9) picks the brightest voxel on it, (25, 7, 9).
    viewer.dims.ndisplay = 3
    _click(viewer, (-50.0, world[1], world[2]), dims_displayed=(0, 1, 2),
           view_direction=(1.0, 0.0, 0.0))  # fmt: skip
    _wait(qtbot, w, (25, 7, 9))
    maps = [layer for layer in viewer.layers if layer.name.startswith("FA attention map")]
    assert maps == [viewer.layers["FA attention map (25, 7, 9)"]]
    np.testing.assert_allclose(
        maps[0].data, _expected(tiny_fa, (25, 7, 9)).rank_one.spatial_map, rtol=1e-6
    )


def test_problems_and_errors_become_notifications(widget, qtbot, monkeypatch):
    import napari_fanet._widgets.attention_inspector as module

    _, w = widget
    shown = []
    monkeypatch.setattr(module, "show_error", shown.append)
    w.flair.value = None
    assert w.inspect() is None
    assert "choose a FLAIR layer" in shown[-1]
    w.flair.value = "sub-01 FLAIR"
    w.x.value = 40  # one past the last voxel along x
    w.inspect()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert "outside the volume" in shown[-1]
    assert w.last_view is None and "Failed" in w.status.value
    assert w.pick(np.array([1000.0, 0.0, 0.0])) is None  # a click beside the volume


def test_qsm_model_follows_the_tilted_b0(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    from napari_fanet._widgets.attention_inspector import AttentionInspectorWidget

    monkeypatch.setattr(model_catalog, "_added", {})
    torch.manual_seed(0)
    scales = {"field_scale": 0.05, "chi_scale": 0.1, "align_b0": True}
    extra = {"voxel_size": list(SCALE), "preprocessing": scales}
    path = save_checkpoint(
        tmp_path / "tiny-fa-qsm.pt", build_model("fanet-qsm", features=(8, 8, 8, 8, 16)),
        extra=extra,
    )  # fmt: skip
    rng = np.random.default_rng(2)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[4:-4, 4:-4, 3:-3] = 1
    field = (0.02 * rng.standard_normal(SHAPE) * mask).astype(np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(field, name="local field", scale=SCALE, translate=TRANSLATE)
    viewer.add_labels(mask, name="brain mask", scale=SCALE, translate=TRANSLATE)
    w = AttentionInspectorWidget(viewer)
    w.checkpoint.value = path  # a QSM model: the task follows
    assert w.task_name == "qsm" and w.model.value == "tiny-fa-qsm"
    assert w.field.value == "local field" and w.mask.value == "brain mask"
    w.b0.value = "0.3, -0.1, 1"
    w.window.value = 32
    w.x.value, w.y.value, w.z.value = 20, 18, 10
    w.inspect_button.clicked.emit()
    _wait(qtbot, w, (20, 18, 10))

    model, checkpoint = load_checkpoint(path)
    arrays = {"local field": field, "brain mask": mask.astype(np.float32)}
    expected = AttentionInspector().inspect(
        "qsm", arrays, SCALE, model, checkpoint, (20, 18, 10), window=32, b0_dir=(0.3, -0.1, 1)
    )
    layer = viewer.layers["FA attention map (20, 18, 10)"]
    np.testing.assert_allclose(layer.data, expected.image_map, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(layer.translate, TRANSLATE)
    assert layer.data[20, 18, 10] > 0


def test_plots_say_what_they_will_show_and_options_are_folded(widget, qtbot):
    _, w = widget
    (text,) = w.plots.factor_canvas.figure.texts
    assert "Click a voxel" in text.get_text()
    assert w.advanced.native.isHidden() and not w.show_advanced.value
    w.show_advanced.value = True
    assert not w.advanced.native.isHidden()
    w.x.value, w.y.value, w.z.value = 20, 10, 5
    w.inspect_button.clicked.emit()
    _wait(qtbot, w, (20, 10, 5))
    assert w.plots.factor_canvas.figure.texts == []  # the plots replaced the placeholder


@pytest.fixture
def level2_fa(tmp_path, monkeypatch):
    """A tiny FA-Net with FA blocks at levels 2 and 4 (sqrt scale), added to an empty list."""
    monkeypatch.setattr(model_catalog, "_added", {})
    torch.manual_seed(0)
    model = build_model(
        "fanet-seg", features=(8, 8, 8, 8, 8), attention_levels=(2, 4),
        attention_kwargs={"scale": "sqrt"},
    )  # fmt: skip
    with torch.no_grad():
        model.level_attention["2"].beta.fill_(0.5)
    return save_checkpoint(tmp_path / "tiny-fa-l2.pt", model, extra={"voxel_size": list(SCALE)})


def test_finest_level_over_the_whole_volume_at_cell_resolution(
    make_napari_viewer, level2_fa, qtbot
):
    from napari_fanet._widgets.attention_inspector import AttentionInspectorWidget

    viewer = make_napari_viewer()
    for name, data in _arrays().items():
        add = viewer.add_labels if name == "brain mask" else viewer.add_image
        add(data, name=f"sub-01 {name}", scale=SCALE, translate=TRANSLATE)
    w = AttentionInspectorWidget(viewer)
    w.checkpoint.value = level2_fa
    assert w.model.value == "tiny-fa-l2"
    assert w.level.choices == (2, 4) and w.level.value == 2  # the finest by default
    assert "2^l voxels" in w.level.tooltip and "whole volume" in w.window.tooltip
    assert w.window.value == 0  # whole volume
    assert "appears here" in w.legend.value
    model = w._inspector.load(str(level2_fa))[0]
    calls = []
    model.encoders[0].register_forward_hook(lambda *_: calls.append(1))

    w.x.value, w.y.value, w.z.value = 20, 10, 5
    w.inspect_button.clicked.emit()
    _wait(qtbot, w, (20, 10, 5))
    view = w.last_view
    assert view.whole_volume and view.level == 2 and view.cell_size == 4
    # (40, 36, 20) pads to (48, 48, 32): a (12, 12, 8) grid of 4-voxel (8 mm) cells.
    layer = viewer.layers["FA attention map (20, 10, 5)"]
    assert layer.data.shape == (12, 12, 8)
    model2, checkpoint = load_checkpoint(level2_fa)
    expected = AttentionInspector().inspect(
        "segmentation", {k: v.astype(np.float32) for k, v in _arrays().items()}, SCALE, model2,
        checkpoint, (20, 10, 5),
    )  # fmt: skip
    np.testing.assert_allclose(layer.data, expected.rank_one.spatial_map, rtol=1e-6, atol=1e-9)
    source = viewer.layers["sub-01 FLAIR"]
    np.testing.assert_allclose(layer.scale, np.asarray(SCALE) * 4)
    # The clicked voxel's cell is centred on the middle of its 4 voxels (padding 4, 6, 6).
    k, i, j = view.cell
    assert view.cell == ((20 + 4) // 4, (10 + 6) // 4, (5 + 6) // 4)
    centre = np.array([4 * k - 4, 4 * i - 6, 4 * j - 6]) + 1.5
    np.testing.assert_allclose(layer.data_to_world(view.cell), source.data_to_world(centre))
    assert "level 2 (8 x 8 x 8 mm cells)" in w.legend.value
    assert layer.colorbar.visible and 0.5 <= layer.opacity <= 0.6

    # A second click and another level: the cached pass answers, the layer follows.
    w.x.value = 30
    w.inspect_button.clicked.emit()
    _wait(qtbot, w, (30, 10, 5))
    w.level.value = 4
    qtbot.waitUntil(lambda: w._worker is None and w.last_view.level == 4, timeout=60_000)
    assert len(calls) == 1 and w._inspector.forward_passes == 1
    layer = viewer.layers["FA attention map (30, 10, 5)"]
    assert layer.data.shape == (3, 3, 2)
    np.testing.assert_allclose(layer.scale, np.asarray(SCALE) * 16)
    assert "forward pass reused" in w.status.value
