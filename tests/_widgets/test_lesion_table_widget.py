"""The lesion table dock widget, driven as a user would (headless under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")

SCALE = (2.0, 2.0, 3.0)
TRANSLATE = (-20.0, 10.0, 5.0)


def lesion_mask():
    """Three lesions (4, 8 and 27 voxels) and a 2-voxel speck, on a 16 x 18 x 12 grid."""
    mask = np.zeros((16, 18, 12), dtype=np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    mask[8:11, 10:13, 5:8] = 1
    mask[13, 15, 9:11] = 2  # 2 voxels: not a lesion
    mask[1, 14, 4:8] = 1
    return mask


def settle(qtbot, widget):
    """Wait for the debounce timer and the worker computing the table."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)


@pytest.fixture
def setup(make_napari_viewer, qtbot):
    from napari_fanet._widgets.lesion_table_widget import LesionTableWidget

    viewer = make_napari_viewer()
    mask = viewer.add_labels(lesion_mask(), name="lesions", scale=SCALE, translate=TRANSLATE)
    prob = np.where(lesion_mask() > 0, 0.8, 0.1).astype(np.float32)
    viewer.add_image(prob, name="probability", scale=SCALE, translate=TRANSLATE)
    widget = LesionTableWidget(viewer)
    viewer.window.add_dock_widget(widget)
    settle(qtbot, widget)
    return viewer, widget, mask


def cell(widget, row, header):
    columns = [
        widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())
    ]
    return widget.table.item(row, columns.index(header)).text()


def test_the_table_lists_lesions_with_world_centroids(setup, qtbot) -> None:
    _viewer, w, _ = setup
    assert w.mask.value == "lesions"
    assert w.table.rowCount() == 3 and "3 lesions" in w.summary.value
    # lesions are numbered in scan order: the 4-voxel one at x index 1 comes first
    assert [cell(w, r, "voxels") for r in range(3)] == ["4", "8", "27"]
    # third lesion: voxel centre (9, 11, 6) -> world by hand through scale and translate
    assert [float(cell(w, 2, h)) for h in ("x (mm)", "y (mm)", "z (mm)")] == [-2.0, 32.0, 23.0]
    assert float(cell(w, 2, "volume (mL)")) == pytest.approx(27 * 12 / 1000)
    w.probability.value = "probability"
    settle(qtbot, w)
    assert cell(w, 0, "max p") == "0.8"


def test_clicking_a_row_centres_the_view_on_the_lesion(setup) -> None:
    viewer, w, _ = setup
    w.table.selectRow(2)
    from napari_fanet._widgets.lesion_table_widget import _camera

    np.testing.assert_allclose(_camera(viewer).center[-3:], (-2.0, 32.0, 23.0))
    np.testing.assert_allclose(viewer.dims.point[-3:], (-2.0, 32.0, 23.0), atol=1.5)
    assert w.delete_button.enabled


def test_delete_lesion_is_one_undoable_edit(setup, qtbot) -> None:
    _viewer, w, layer = setup
    w.table.selectRow(2)
    w.delete_button.clicked.emit()
    assert layer.data[8:11, 10:13, 5:8].sum() == 0
    assert layer.data[2:4, 2:4, 2:4].all()
    settle(qtbot, w)
    assert w.table.rowCount() == 2
    layer.undo()
    assert layer.data[8:11, 10:13, 5:8].all()
    qtbot.waitUntil(lambda: w.table.rowCount() == 3, timeout=5000)


def test_the_table_follows_edits_of_the_mask(setup, qtbot) -> None:
    _viewer, w, layer = setup
    layer.data_setitem(np.nonzero(lesion_mask() == 2), 1)  # the speck grows to 3 voxels...
    layer.data_setitem((np.array([13]), np.array([15]), np.array([11])), 1)
    qtbot.waitUntil(lambda: w.table.rowCount() == 4, timeout=5000)
    new = np.zeros_like(layer.data)
    new[0:3, 0:3, 0:3] = 1
    layer.data = new  # replaced wholesale
    qtbot.waitUntil(lambda: w.table.rowCount() == 1, timeout=5000)


def test_a_chi_layer_adds_susceptibility_columns_and_a_2d_mask_is_explained(setup, qtbot) -> None:
    viewer, w, _ = setup
    chi = np.full(lesion_mask().shape, 0.02, dtype=np.float32)
    viewer.add_image(chi, name="chi", scale=SCALE, translate=TRANSLATE)
    w.chi.value = "chi"
    settle(qtbot, w)
    assert float(cell(w, 0, "mean χ (ppm)")) == pytest.approx(0.02)
    assert float(cell(w, 0, "rim - core χ (ppm)")) == pytest.approx(0.0, abs=1e-7)
    viewer.add_labels(np.zeros((5, 5), dtype=np.uint8), name="flat")
    w.mask.value = "flat"
    settle(qtbot, w)
    assert "'flat' is 2D: the lesion table needs 3D data" in w.summary.value
    assert w.table.rowCount() == 0
    viewer.add_image(np.zeros((3, 3, 3), np.float32), name="small")
    w.mask.value = "lesions"
    w.chi.value = "small"
    settle(qtbot, w)
    assert "shapes must match" in w.summary.value


def test_delete_waits_for_a_table_of_the_current_mask(setup, qtbot) -> None:
    _viewer, w, layer = setup
    w.table.selectRow(0)
    layer.data[2:4, 2:4, 2:4] = 0  # changed behind the widget's back (no event)
    w.delete_button.clicked.emit()
    assert "The mask changed since the table was made" in w.summary.value
    assert layer.data[1, 14, 4:8].all()  # nothing deleted from a stale table
    settle(qtbot, w)
    assert w.table.rowCount() == 2
