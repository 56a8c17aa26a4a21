"""Figures of ``napari-fanet demo``: MS overlays and QSM maps with error maps (PNG).

matplotlib is imported only inside the functions (Agg canvas, no pyplot), so importing this
module stays light and GUI-free.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_fanet.io.atomic import atomic_write
from napari_fanet.io.nifti import Volume, to_canonical

if TYPE_CHECKING:
    from napari_fanet.evaluation.demo_results import TaskResult

CHI_WINDOW = (-0.15, 0.15)  # ppm
ERROR_WINDOW = (0.0, 0.05)  # ppm


def _axial(score: np.ndarray, brain: np.ndarray, affine: np.ndarray) -> tuple[Callable, int]:
    """``view(volume) -> image`` of the axial slice where ``score`` sums highest, and its index.

    Volumes are reoriented to RAS+ and the slice is cropped to the brain and transposed, so with
    ``origin="lower"`` the subject's right is on the right and anterior is up.
    """

    def canon(volume: np.ndarray) -> np.ndarray:
        return to_canonical(Volume(np.asarray(volume), affine))[0].data

    z = int(np.argmax(canon(score).sum(axis=(0, 1))))
    box = []
    for axes in ((1, 2), (0, 2)):
        idx = np.flatnonzero(canon(brain).any(axis=axes))
        box.append(slice(max(idx[0] - 2, 0), idx[-1] + 3))
    return lambda volume: canon(volume)[box[0], box[1], z].T, z


#: Colours of the segmentation_error_labels values.
ERROR_COLOURS = {
    1: ("TP", (0.1, 0.85, 0.1)),
    2: ("FP", (1.0, 0.25, 0.1)),
    3: ("FN", (0.2, 0.6, 1.0)),
}


def _overlay(labels: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*labels.shape, 4))
    for value, (_, colour) in ERROR_COLOURS.items():
        rgba[labels == value] = (*colour, 1.0)
    return rgba


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _show(ax, image: np.ndarray, title: str, **kwargs: Any):
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax.imshow(image, origin="lower", interpolation="nearest", **kwargs)


def _save_png(fig, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), suffix=".png")


def figure_ms(path: Path, ms: TaskResult) -> Path:
    """FLAIR, ground truth and every method's TP/FP/FN on the most lesion-rich axial slice."""
    from matplotlib.patches import Patch

    view, z = _axial(ms.images["gt"], ms.images["brain"], ms.reference.affine)
    flair = view(ms.images["flair"])
    vmax = float(np.percentile(ms.images["flair"][ms.images["brain"]], 99.5))
    panels = {"FLAIR": None, "ground truth": ms.images["gt"].astype(np.uint8), **ms.panels}
    dice = {r["label"]: f"\nDice {r['dice']:.3f}" for r in ms.rows}
    fig = _figure(2.4 * len(panels), 3.4)
    for ax, (label, labels) in zip(fig.subplots(1, len(panels)), panels.items(), strict=True):
        _show(ax, flair, label + dice.get(label, ""), cmap="gray", vmin=0, vmax=vmax)
        if labels is not None:
            _show(ax, _overlay(view(labels)), label + dice.get(label, ""))
    handles = [Patch(color=c, label=n) for n, c in ERROR_COLOURS.values()]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8)
    title = f"MS lesions, axial slice {z} (most lesion voxels); ground truth in green"
    fig.suptitle(title + (f"; {ms.note}" if ms.note else ""), fontsize=10)
    return _save_png(fig, path)


def figure_qsm(path: Path, qsm: TaskResult) -> Path:
    """Reference chi and every method's chi (top), absolute errors (bottom), one axial slice."""
    from napari_fanet.metrics import susceptibility_error_maps

    im = qsm.images
    nuclei = (im["chi"] > 0.03) & im["brain"]  # pick the slice through the iron-rich nuclei
    view, z = _axial(nuclei, im["brain"], qsm.reference.affine)
    nrmse = {r["label"]: f"\nNRMSE {r['nrmse']:.1f} %" for r in qsm.rows}
    columns = {"reference chi": im["chi"], **qsm.panels}
    fig = _figure(2.3 * len(columns) + 0.9, 5.4)
    axes = fig.subplots(2, len(columns), squeeze=False)
    for j, (label, chi) in enumerate(columns.items()):
        low, high = CHI_WINDOW
        title = label + nrmse.get(label, "")
        top = _show(axes[0, j], view(chi), title, cmap="gray", vmin=low, vmax=high)
        if j == 0:
            title = "input: local field\n(-0.05..0.05 ppm)"
            _show(axes[1, j], view(im["field"]), title, cmap="gray", vmin=-0.05, vmax=0.05)
        else:
            err = susceptibility_error_maps(chi, im["chi"], im["brain"])[1]
            low, high = ERROR_WINDOW
            bottom = _show(axes[1, j], view(err), "|error|", cmap="inferno", vmin=low, vmax=high)
    fig.colorbar(top, ax=axes[0, :], shrink=0.8, label="chi (ppm)")
    fig.colorbar(bottom, ax=axes[1, :], shrink=0.8, label="|chi - reference| (ppm)")
    title = f"QSM, axial slice {z} (deep grey nuclei)"
    fig.suptitle(title + (f"; {qsm.note}" if qsm.note else ""), fontsize=10)
    return _save_png(fig, path)
