"""Helpers shared by the dock widgets: layer pickers, layers in and out of the core."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, Widget
from napari.layers import Image, Labels, Layer
from napari.utils.colormaps import Colormap, DirectLabelColormap, ensure_colormap
from napari.utils.transforms import Affine

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


def coarse_placement(
    source: Layer, scale: Sequence[float], offset: Sequence[float]
) -> dict[str, Any]:
    """:func:`placement` for a coarser grid on ``source``: its point ``c`` at ``offset + scale*c``.

    For maps computed on a grid of cells (the attention inspector's FA grid): the layer is
    drawn at cell resolution, lined up with the anatomy, without up-sampling the data. The
    source's rotation, shear and affine carry over; its scale is multiplied by ``scale`` and
    ``offset`` (source data coordinates) moves the translate through the source's linear map.
    """
    place = placement(source)
    linear = Affine(scale=source.scale, rotate=source.rotate, shear=source.shear).linear_matrix
    place["scale"] = tuple(float(s) * float(c) for s, c in zip(source.scale, scale, strict=True))
    shift = linear @ np.asarray(offset, dtype=float)
    place["translate"] = tuple(
        float(t) + float(d) for t, d in zip(source.translate, shift, strict=True)
    )
    return place


def add_image(viewer: Any, data: np.ndarray, source: Layer, name: str, **kwargs: Any) -> Image:
    """Add an Image layer on ``source``'s grid."""
    return viewer.add_image(data, name=name, **placement(source), **kwargs)


def add_labels(viewer: Any, data: np.ndarray, source: Layer, name: str, **kwargs: Any) -> Labels:
    """Add a Labels layer on ``source``'s grid."""
    return viewer.add_labels(data, name=name, **placement(source), **kwargs)


def error_colormap() -> DirectLabelColormap:
    """Green true positives, red false positives, blue false negatives, clear background."""
    return DirectLabelColormap(color_dict=ERROR_COLORS)


def signed_error_colormap() -> Colormap:
    """Blue (negative) through clear (zero) to red (positive): small errors let the map show."""
    colors = [[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]]
    return Colormap(colors, controls=[0.0, 0.5, 1.0], name="bwr, clear zero")


def fading_colormap(base: str) -> Colormap:
    """The napari colormap ``base``, transparent at its low end, opaque from a quarter up.

    For maps that are zero or small almost everywhere (absolute error, attention weights), so
    that they overlay the image instead of hiding it behind a dark block.
    """
    colors = np.array(ensure_colormap(base).colors, dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, len(colors))
    colors[:, 3] = np.clip(4.0 * ramp, 0.0, 1.0)
    return Colormap(colors, controls=ramp, name=f"{base}, clear low")


def message_label(value: str = "", label: str = "") -> Label:
    """A read-only text line that wraps, so long messages do not widen the dock."""
    widget = Label(label=label, value=value)
    widget.native.setWordWrap(True)
    return widget


def folded_section(title: str, widgets: Sequence[Widget]) -> tuple[CheckBox, Container]:
    """A check box ``title`` that shows or hides ``widgets`` (a labelled group, folded at first).

    For options most runs leave alone, so that a dock stays short on a laptop screen.
    """
    toggle = CheckBox(text=title, value=False, tooltip="Show or hide these options.")
    section = Container(widgets=list(widgets), labels=True, label="")
    section.margins = (0, 0, 0, 0)
    section.visible = False
    toggle.changed.connect(lambda shown: setattr(section, "visible", bool(shown)))
    return toggle, section


def device_picker(tooltip: str = "auto: CUDA, then Apple MPS, then CPU.") -> ComboBox:
    """The device choice (``auto``, ``cuda``, ``mps``, ``cpu``) of the widgets."""
    from napari_fanet.engine.training_run import DEVICES  # torch-free constant

    return ComboBox(label="Device", choices=list(DEVICES), tooltip=tooltip)
