"""A live loss curve (training and validation) for a dock widget: a matplotlib Qt canvas."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container


class LossPlot(Container):
    """Training loss per step and validation loss per validation, redrawn as events arrive."""

    def __init__(self) -> None:
        super().__init__(labels=False)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.0, 2.6), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        self.canvas.setToolTip(
            "Training loss (each step, noisy: one random patch batch) and validation loss "
            "(whole validation volumes, at each validation)."
        )
        self.native.layout().addWidget(self.canvas)
        self.axes = self.figure.add_subplot(111)
        self.figure.subplots_adjust(left=0.16, right=0.97, bottom=0.2, top=0.93)
        (self.train_line,) = self.axes.plot([], [], lw=1, color="tab:blue", label="training")
        (self.val_line,) = self.axes.plot(
            [], [], "o-", ms=4, color="tab:orange", label="validation"
        )
        self.axes.set_xlabel("step")
        self.axes.set_ylabel("loss")
        self.axes.legend(loc="upper right", fontsize="small")
        self.placeholder = self.axes.text(
            0.5,
            0.5,
            "Training loss (each step) and\nvalidation loss appear here\nwhen a run starts.",
            transform=self.axes.transAxes,
            ha="center",
            va="center",
            color="gray",
        )
        self.clear()

    def clear(self) -> None:
        """Empty both curves."""
        self.train: tuple[list[float], list[float]] = ([], [])
        self.val: tuple[list[float], list[float]] = ([], [])
        self._redraw()

    def add_event(self, event: dict[str, Any]) -> None:
        """Add a ``step`` (training loss) or ``validation`` (``val_loss``) event."""
        if event.get("event") == "step":
            self.train[0].append(event["step"])
            self.train[1].append(event["loss"])
        elif event.get("event") == "validation" and "val_loss" in event:
            self.val[0].append(event["step"])
            self.val[1].append(event["val_loss"])
        else:
            return
        self._redraw()

    def _redraw(self) -> None:
        self.train_line.set_data(*self.train)
        self.val_line.set_data(*self.val)
        self.placeholder.set_visible(not (self.train[0] or self.val[0]))
        self.axes.relim()
        self.axes.autoscale_view()
        self.canvas.draw_idle()
