"""The attention inspector's plots: four factor rows and four affinity matrices (matplotlib).

Drawing only: the numbers come from an
:class:`~napari_fanet.engine.attention_inspection.AttentionView`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from napari_fanet.engine.attention_inspection import AttentionView

#: The layer's array axes the factor axes run along (RAS canonical arrays).
AXIS_NAMES = {"D": "x", "H": "y", "W": "z", "C": "channel"}


#: What the empty canvases say before the first inspection.
FACTOR_PLACEHOLDER = (
    "Click a voxel (or type x, y, z and press Inspect):\nits rank-one attention rows along "
    "D, H, W\n(the FA grid's x, y, z) and the channels\nappear here."
)
MATRIX_PLACEHOLDER = "The four affinity matrices of the\ninspected voxel appear here."


def _canvas(placeholder: str) -> tuple[FigureCanvasQTAgg, dict[str, Any]]:
    # Fixed margins, not constrained layout: that re-measured every tick label on each draw
    # and cost about 0.8 s of a click on the 2-core CPU.
    figure = Figure(figsize=(4, 3.4))
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.08, top=0.93, wspace=0.4, hspace=0.45)
    axes = dict(zip("DHWC", figure.subplots(2, 2).ravel(), strict=True))
    for ax in axes.values():
        ax.set_axis_off()  # until the first plot: only the placeholder text shows
    figure.text(0.5, 0.5, placeholder, ha="center", va="center", fontsize=9, color="gray")
    canvas = FigureCanvasQTAgg(figure)
    # A fixed height: a canvas that stretched with the dock was resized, and so redrawn, each
    # time the status text above it changed its number of lines (three draws per click).
    canvas.setFixedHeight(300)
    return canvas, axes


def _start_plotting(canvas: FigureCanvasQTAgg, axes: dict[str, Any]) -> None:
    """Remove the placeholder text and show the axes (first plot)."""
    for text in list(canvas.figure.texts):
        text.remove()
    for ax in axes.values():
        ax.set_axis_on()


def _marks(view: AttentionView) -> dict[str, int]:
    """The clicked position on each axis: the cell (k, i, j) and the output channel q."""
    marks = dict(zip("DHW", view.cell, strict=True))
    if view.channel >= 0:
        marks["C"] = view.channel
    return marks


class FactorPlots:
    """Two Qt canvases: the factor rows (always shown) and the matrices (on request).

    Attributes
    ----------
    factor_canvas, matrix_canvas : FigureCanvasQTAgg
        The widgets to put in a dock.
    factor_lines, matrix_images : dict
        The artists last drawn, by axis ``"D"``, ``"H"``, ``"W"``, ``"C"``.
    """

    def __init__(self) -> None:
        self.factor_canvas, self.factor_axes = _canvas(FACTOR_PLACEHOLDER)
        self.matrix_canvas, self.matrix_axes = _canvas(MATRIX_PLACEHOLDER)
        self.matrix_canvas.setVisible(False)
        self.factor_lines: dict[str, Any] = {}
        self.matrix_images: dict[str, Any] = {}
        self._marks: dict[str, Any] = {}

    def show_factors(self, view: AttentionView) -> None:
        """Plot the four rows with the clicked position marked (cyan; input channel green).

        After the first plot the artists are updated in place (new data, marks and titles,
        rescaled axes): clearing the axes rebuilt every tick and doubled the cost of a click.
        """
        marks = _marks(view)
        _start_plotting(self.factor_canvas, self.factor_axes)
        for a, ax in self.factor_axes.items():
            row = view.rank_one.factors[a]
            line = self.factor_lines.get(a)
            if line is None:
                (self.factor_lines[a],) = ax.plot(row, marker=".", color="tab:orange", lw=1)
                self._marks[a] = ax.axvline(0, color="tab:cyan", lw=1.5)
                if a == "C":
                    self._marks["source"] = ax.axvline(0, color="tab:green", lw=1, ls="--")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.tick_params(labelsize=7)
            else:
                line.set_data(np.arange(len(row)), row)
            self._marks[a].set_xdata([marks.get(a, 0)] * 2)
            self._marks[a].set_visible(a in marks)
            if a == "C":
                self._marks["source"].set_xdata([max(view.source_channel, 0)] * 2)
                self._marks["source"].set_visible(view.source_channel >= 0)
            ax.relim(visible_only=True)
            ax.autoscale_view()
            which = f"row {marks[a]}" if a in marks else "mean row"
            ax.set_title(f"{a} ({AXIS_NAMES[a]}): {which}", fontsize=8)
        self.factor_canvas.draw_idle()

    def show_matrices(self, view: AttentionView) -> None:
        """Heat maps of the four matrices (raw ``A_a`` or effective ``M_a``), row marked."""
        marks = _marks(view)
        _start_plotting(self.matrix_canvas, self.matrix_axes)
        for a, ax in self.matrix_axes.items():
            ax.clear()
            self.matrix_images[a] = ax.imshow(view.rank_one.matrices[a], cmap="magma")
            if a in marks:
                ax.axhline(marks[a], color="tab:cyan", lw=1)
            ax.set_title(f"{'M' if view.effective else 'A'}_{a}", fontsize=8)
            ax.tick_params(labelsize=7)
        self.matrix_canvas.draw_idle()
