"""Helpers shared by the dock widgets: layer pickers, layers in and out of the core."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Label
from napari.layers import Image, Labels, Layer
from napari.utils.colormaps import DirectLabelColormap

NONE_CHOICE = "(none)"

#: Colours of the TP/FP/FN error labels (values of ``segmentation_error_labels``).
ERROR_COLORS = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: "lime", 2: "red", 3: "dodgerblue"}


def layer_picker(
    viewer: Any,
    label: str,
    kinds: tuple[type[Layer], ...] = (Image,),
    *,
    optional: bool = False,
    tooltip: str = "",
) -> ComboBox:
    """A combo box listing the viewer's 3D-capable layers of ``kinds`` by name.

    Its choices refresh on ``reset_choices()`` (called when layers are added or removed).
    """

    def choices(_: Any) -> list[str]:
        names = [layer.name for layer in viewer.layers if isinstance(layer, kinds)]
        return [NONE_CHOICE, *names] if optional else names

    return ComboBox(label=label, choices=choices, nullable=not optional, tooltip=tooltip)


def selected_layer(viewer: Any, picker: ComboBox) -> Layer | None:
    """The layer a picker names, or None (nothing chosen, or the layer is gone)."""
    name = picker.value
    if name in (None, NONE_CHOICE) or name not in viewer.layers:
        return None
    return viewer.layers[name]


def select_by_guess(
    picker: ComboBox, role: str, guess: Callable[[str, Sequence[str]], str | None]
) -> None:
    """Select the layer whose name suggests ``role`` if the picker has no real choice yet."""
    names = [c for c in picker.choices if c not in (None, NONE_CHOICE)]
    current = picker.value
    guessed = guess(role, names)
    if guessed is not None and (current in (None, NONE_CHOICE) or guess(role, [current]) is None):
        picker.value = guessed


def placement(source: Layer) -> dict[str, Any]:
    """Keyword arguments that put a derived layer exactly on ``source`` (grid and metadata)."""
    metadata = {
        k: v for k, v in source.metadata.items() if k in ("nifti", "b0_dir", "b0_dir_world")
    }
    return {
        "scale": tuple(source.scale),
        "translate": tuple(source.translate),
        "rotate": source.rotate,
        "shear": source.shear,
        "affine": source.affine.affine_matrix,
        "metadata": metadata,
    }


def add_image(viewer: Any, data: np.ndarray, source: Layer, name: str, **kwargs: Any) -> Image:
    """Add an Image layer on ``source``'s grid."""
    return viewer.add_image(data, name=name, **placement(source), **kwargs)


def add_labels(viewer: Any, data: np.ndarray, source: Layer, name: str, **kwargs: Any) -> Labels:
    """Add a Labels layer on ``source``'s grid."""
    return viewer.add_labels(data, name=name, **placement(source), **kwargs)


def error_colormap() -> DirectLabelColormap:
    """Green true positives, red false positives, blue false negatives, clear background."""
    return DirectLabelColormap(color_dict=ERROR_COLORS)


def message_label(value: str = "", label: str = "") -> Label:
    """A read-only text line that wraps, so long messages do not widen the dock."""
    widget = Label(label=label, value=value)
    widget.native.setWordWrap(True)
    return widget


def device_picker(tooltip: str = "auto: CUDA, then Apple MPS, then CPU.") -> ComboBox:
    """The device choice (``auto``, ``cuda``, ``mps``, ``cpu``) of the widgets."""
    from ..engine.training_run import DEVICES  # torch-free constant

    return ComboBox(label="Device", choices=list(DEVICES), tooltip=tooltip)
