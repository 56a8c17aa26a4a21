"""The first view of the plugin's volumes: axial, anterior up, radiological."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("qtpy", reason="needs the [qt] extra")

from napari_fanet._widgets.axial_view import (
    VOLUME_LABEL,
    axial_view,
    camera_of,
    convention_note,
)
from napari_fanet.io.layers import NIFTI_METADATA_KEY

#: LAS+ source grid (as many scanners write): array axis 0 runs towards the subject's left.
LAS = np.diag([-2.0, 2.0, 2.0, 1.0])


def test_sample_opens_axial_anterior_up_radiological(make_napari_viewer, fanet_plugin):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-fanet", "ms")
    assert viewer.dims.ndim == 3
    assert viewer.dims.displayed == (1, 0)  # rows: y (posterior-anterior), columns: x
    assert viewer.dims.not_displayed == (2,)  # the slider moves through z: axial slices
    assert tuple(camera_of(viewer).orientation2d) == ("up", "left")  # anterior up, right on left
    assert viewer.dims.axis_labels[2].startswith("z")
    # The layers are still the canonical arrays the widgets and the engine expect.
    flair = viewer.layers["FLAIR"]
    assert flair.data.shape == flair.metadata[NIFTI_METADATA_KEY]["orientation"].canonical_shape


def test_opened_file_shows_anterior_up_and_subject_left_on_screen_right(
    make_napari_viewer, fanet_plugin, tmp_path, monkeypatch
):
    from napari.utils import notifications

    shown = []
    monkeypatch.setattr(notifications, "show_info", shown.append)
    data = np.zeros((24, 24, 6), dtype=np.float32)
    data[16:, 16:, :] = 1.0  # source axes: +i is the subject's left, +j anterior (LAS)
    path = tmp_path / "block.nii.gz"
    nib.save(nib.Nifti1Image(data, LAS), path)

    viewer = make_napari_viewer(show=True)
    viewer.open(path, plugin="napari-fanet")
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., 0]
    rows, cols = np.nonzero(shot > 128)
    assert rows.size > 0
    assert rows.mean() < shot.shape[0] / 2  # anterior block: upper half
    assert cols.mean() > shot.shape[1] / 2  # subject's left: screen's right (radiological)
    assert shown == [f"napari-fanet: {convention_note()}"]
    assert "radiological" in shown[0]


def test_a_4d_file_opens_axial_with_its_volumes_on_a_slider(
    make_napari_viewer, fanet_plugin, tmp_path
):
    path = tmp_path / "phase.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 7, 5, 3), dtype=np.float32), LAS), path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin="napari-fanet")
    assert layer.data.shape == (3, 6, 7, 5)
    assert viewer.dims.displayed == (2, 1)  # rows: y (posterior-anterior), columns: x
    assert set(viewer.dims.not_displayed) == {0, 3}  # sliders: the echo and z (axial)
    assert viewer.dims.axis_labels[0] == VOLUME_LABEL
    assert viewer.dims.axis_labels[3].startswith("z")
    assert tuple(camera_of(viewer).orientation2d) == ("up", "left")


def test_viewer_with_layers_keeps_its_view(make_napari_viewer, fanet_plugin, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 5, 6), dtype=np.float32), name="user's volume")
    order = tuple(viewer.dims.order)
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), dtype=np.float32), LAS), path)
    viewer.open(path, plugin="napari-fanet")
    assert tuple(viewer.dims.order) == order
    assert tuple(camera_of(viewer).orientation2d) == ("down", "right")  # napari's default


def test_neurological_view_puts_the_subject_right_on_the_right(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 5, 6), dtype=np.float32))
    axial_view(viewer, "neurological")
    assert viewer.dims.displayed == (1, 0)
    assert tuple(camera_of(viewer).orientation2d) == ("up", "right")


def test_axial_view_rejects_unknown_convention(make_napari_viewer):
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match="convention must be one of"):
        axial_view(viewer, "sagittal")
