"""Take the README's screenshots from the real napari viewer (run under Xvfb on a server).

    xvfb-run -a -s "-screen 0 1366x768x24" python scripts/screenshots.py

Opens the plugin's sample cases, runs the FA-Net widget exactly as a user would (fields set,
button pressed, worker awaited) and saves the whole window to ``docs/images/``:
``segmentation.png`` (FLAIR with the FA-Net TP/FP/FN error labels), ``qsm.png`` (reference,
FA-Net susceptibility map and its signed error), ``inspector.png`` (the attention inspector) and
``training.png`` (a short fine-tuning run in the Train widget).

``--patient DIR`` takes ``inspector.png`` on a real patient folder instead of the sample
(``flair.nii.gz``, ``t1.nii.gz``, ``t2.nii.gz`` and ``consensus_lesions.nii.gz``, as in the
shared open MS data): the click is inside the largest periventricular lesion of the consensus
mask, and ``--model FILE`` chooses the FA checkpoint (for example a fanet-seg grown to FA levels
2 and 4, whose level-2 map has 4 mm cells).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
SIZE = (1366, 768)  # a laptop screen: the docks must fit it (they scroll)
SHOTS = ("segmentation", "qsm", "inspector", "training")


def wait_for(predicate, timeout: float = 600.0) -> None:
    """Process Qt events until ``predicate()`` is true."""
    start = time.monotonic()
    while not predicate():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout:
            raise TimeoutError("the widget did not finish in time")
    for _ in range(20):
        QApplication.processEvents()


def axial_view(viewer: napari.Viewer, z: int) -> None:
    """Axial slice ``z``: the plugin's first view (anterior up, radiological), set again."""
    from napari_fanet._widgets.axial_view import axial_view as plugin_axial_view

    viewer.dims.ndisplay = 2
    plugin_axial_view(viewer)
    layer = viewer.layers[0]
    viewer.dims.set_point(2, z * layer.scale[2] + layer.translate[2])


def quiet_toasts() -> None:
    """Show only errors as pop-ups, so that info toasts do not cover the canvas."""
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "error"


def docked_viewer(sample: str, widget_class: type, title: str) -> tuple[napari.Viewer, object]:
    """A viewer with a plugin sample open and ``widget_class`` docked on the right."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*SIZE)
    viewer.open_sample("napari-fanet", sample)
    widget = widget_class(viewer)
    viewer.window.add_dock_widget(widget, name=title, area="right")
    return viewer, widget


def save_and_close(viewer: napari.Viewer, name: str) -> Path:
    """Screenshot the whole window to ``docs/images/NAME`` and close the viewer."""
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    viewer.close()
    return path


def fanet_viewer(sample: str) -> tuple[napari.Viewer, object]:
    """A viewer with a plugin sample open and the FA-Net widget docked (CPU)."""
    from napari_fanet._widgets.fanet_widget import FANetWidget

    viewer, widget = docked_viewer(sample, FANetWidget, "FA-Net")
    widget.device.value = "cpu"
    return viewer, widget


def segmentation() -> Path:
    """Segment the MS sample; show FLAIR with the TP/FP/FN error labels."""
    viewer, w = fanet_viewer("ms")
    w.run_button.clicked.emit()
    wait_for(lambda: w._worker is None)
    for name in ("T1", "T2", "lesion mask (reference)", "lesion probability (fanet-seg)"):
        viewer.layers[name].visible = False
    viewer.layers["lesion mask (fanet-seg)"].visible = False
    viewer.layers.selection.active = viewer.layers["errors TP/FP/FN (fanet-seg)"]
    axial_view(viewer, 50)
    return save_and_close(viewer, "segmentation.png")


def qsm(model: str) -> Path:
    """Reconstruct the QSM sample; show the map as it arrives, with the metrics in the dock.

    The error maps come in hidden (the user switches them on); napari's grid mode is not used,
    as it renders scaled layers zoomed in.
    """
    viewer, w = fanet_viewer("qsm")
    w.task.value = "QSM reconstruction"
    w.model.value = model
    w.run_button.clicked.emit()
    wait_for(lambda: w._worker is None)
    result = f"susceptibility ({model}, ppm)"
    for layer in viewer.layers:
        layer.visible = layer.name == result
    viewer.layers.selection.active = viewer.layers[result]
    axial_view(viewer, 45)
    return save_and_close(viewer, "qsm.png")


def inspector() -> Path:
    """Inspect one voxel of the MS sample with the attention inspector."""
    from napari_fanet._widgets.attention_inspector import AttentionInspectorWidget

    viewer, widget = docked_viewer("ms", AttentionInspectorWidget, "FA attention inspector")
    axial_view(viewer, 50)
    widget.x.value, widget.y.value, widget.z.value = 45, 60, 50
    widget.inspect_button.clicked.emit()
    wait_for(lambda: widget._worker is None and widget.last_view is not None)
    for name in ("T1", "T2", "brain mask", "lesion mask (reference)"):
        viewer.layers[name].visible = False
    return save_and_close(viewer, "inspector.png")


def periventricular_voxel(folder: Path) -> tuple[int, int, int]:
    """A voxel of the largest periventricular lesion of ``consensus_lesions.nii.gz`` (RAS array).

    The lesion voxel nearest the lesion's centroid, in the canonical array the plugin's reader
    shows; the location class is :func:`~napari_fanet.evaluation.lesion_table.lesion_table`'s.
    """
    import numpy as np

    from napari_fanet.evaluation.lesion_table import lesion_table
    from napari_fanet.io.nifti import load_volume, to_canonical

    lesions, _ = to_canonical(load_volume(folder / "consensus_lesions.nii.gz", name="lesions"))
    flair, _ = to_canonical(load_volume(folder / "flair.nii.gz", name="FLAIR"))
    table = lesion_table(lesions.data, lesions.affine, brain_mask=flair.data > 0)
    rows = [r for r in table.rows if r["location"] == "periventricular"]
    if not rows:
        raise ValueError(f"{folder}: no periventricular lesion in consensus_lesions.nii.gz")
    largest = max(rows, key=lambda r: r["n_voxels"])
    voxels = np.argwhere(table.labels == largest["id"])
    nearest = voxels[np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))]
    return tuple(int(c) for c in nearest)


def patient_inspector(folder: Path, model: Path | None) -> Path:
    """The inspector on a real patient: FLAIR with the map of a click in a periventricular lesion.

    Shows the raw softmax rows at the finest FA level: the shipped gates are small (about 0.01),
    so the effective rows ``M = I + beta A`` are nearly the identity and their map is the clicked
    cell; the raw rows show where the block looks. Prints how long the widget
    took from a click to the updated map layer and to everything drawn (dock plots included),
    for the first click (the forward pass) and a later one (the cached matrices).
    """
    import numpy as np

    from napari_fanet._widgets._layers import add_labels
    from napari_fanet._widgets.attention_inspector import AttentionInspectorWidget

    voxel = periventricular_voxel(folder)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*SIZE)
    files = [str(folder / f"{name}.nii.gz") for name in ("flair", "t1", "t2")]
    viewer.open(files, plugin="napari-fanet")
    flair = viewer.layers["flair"]
    lesions = viewer.open(str(folder / "consensus_lesions.nii.gz"), plugin="napari-fanet")[0]
    viewer.layers.remove(lesions)
    outline = add_labels(viewer, np.asarray(lesions.data).astype(np.uint8), flair,
                         "consensus lesions", opacity=0.9)  # fmt: skip
    outline.contour = 1  # outlines, so the map shows inside
    widget = AttentionInspectorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="FA attention inspector", area="right")
    widget.mask.value = "(none)"  # skull-stripped: the non-zero FLAIR voxels are the brain
    if model is not None:
        widget.checkpoint.value = model
    widget.rows.value = "raw softmax A"
    shown = []
    show = widget._show
    widget._show = lambda view, source: (show(view, source), shown.append(time.monotonic()))

    def click(at: tuple[int, int, int]) -> tuple[float, float]:
        start = time.monotonic()
        widget.pick(flair.data_to_world(at))
        wait_for(lambda: widget._worker is None and widget.last_view.voxel == at)
        return shown[-1] - start, time.monotonic() - start

    first = click(voxel)
    click((voxel[0] + 20, voxel[1], voxel[2]))
    again = click(voxel)
    print(
        f"click to map layer / all drawn: first {first[0]:.2f} / {first[1]:.2f} s (forward "
        f"pass), later {again[0]:.2f} / {again[1]:.2f} s"
    )
    for name in ("t1", "t2"):
        viewer.layers[name].visible = False
    viewer.layers.selection.active = widget._map_layer
    axial_view(viewer, voxel[2])
    world = flair.data_to_world(voxel)  # zoom in on the click: 4 mm cells are small on screen
    viewer.scene.camera.center = tuple(world[d] for d in viewer.dims.displayed)
    viewer.scene.camera.zoom *= 1.8
    return save_and_close(viewer, "inspector.png")


def training() -> Path:
    """Fine-tune fanet-seg on the MS sample's reference mask for a few steps (Train widget)."""
    import tempfile

    from napari_fanet._widgets.train_widget import TrainWidget

    viewer, widget = docked_viewer("ms", TrainWidget, "FA-Net training")
    widget.annotation.value = "lesion mask (reference)"
    widget.model.value = "fanet-seg"
    widget.steps.value, widget.patch.value, widget.val_every.value = 40, 32, 10
    widget.device.value, widget.validation.value = "cpu", "same case"
    widget.runs_root.value = tempfile.mkdtemp(prefix="fanet-screenshot-runs-")
    widget.start_button.clicked.emit()
    wait_for(lambda: widget._worker is None)
    for name in ("T1", "T2", "brain mask"):
        viewer.layers[name].visible = False
    axial_view(viewer, 50)
    widget.native.ensureWidgetVisible(widget.plot.native)  # the dock scrolls: show the curve
    wait_for(lambda: True)
    return save_and_close(viewer, "training.png")


def main() -> None:
    """Take the screenshots named by ``--only`` (default: all)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=SHOTS)
    parser.add_argument("--qsm-model", default="fanet-qsm")
    parser.add_argument(
        "--patient", type=Path, help="inspector.png on this patient folder instead of the sample"
    )
    parser.add_argument("--model", type=Path, help="FA checkpoint for --patient's inspector")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    quiet_toasts()
    todo = args.only or SHOTS
    if "segmentation" in todo:
        print(segmentation())
    if "qsm" in todo:
        print(qsm(args.qsm_model))
    if "inspector" in todo:
        print(patient_inspector(args.patient, args.model) if args.patient else inspector())
    if "training" in todo:
        print(training())


if __name__ == "__main__":
    main()
