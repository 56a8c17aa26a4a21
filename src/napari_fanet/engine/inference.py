"""Whole-volume prediction with sliding windows, progress, cancellation and OOM fallback.

The windows are blended with MONAI's Gaussian-weighted ``sliding_window_inference``. Between
batches of windows a progress callback is called and a stop flag is checked, so a GUI worker or
the CLI can show progress and cancel. On CUDA out-of-memory the batch of windows is halved, then
the work moves to the CPU; each fallback is logged and reported, and GPU memory is released.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "mps", "cpu")
ProgressCallback = Callable[[int, int], None]


class InferenceCancelled(RuntimeError):
    """Raised when the stop flag is set during sliding-window inference."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto" | "cuda" | "mps" | "cpu"`` (or ``"cuda:1"``) into an available device.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU. Asking for a device that is not
    available raises ``ValueError`` saying what is.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} (or 'cuda:N'), got {device!r}")
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is available; use 'cpu'")
    if device == "mps" and not has_mps:
        raise ValueError("device 'mps' requested but Apple MPS is not available; use 'cpu'")
    return torch.device(device)


@dataclass
class WindowSettings:
    """How a volume is tiled.

    Parameters
    ----------
    roi_size : tuple of 3 int
        Window (tile) size in voxels; multiples of 16 avoid internal padding.
    overlap : float
        Fraction of overlap between neighbouring windows, in ``[0, 1)``.
    sw_batch_size : int
        Windows per forward pass.
    device : str
        ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``.
    amp : bool
        Mixed precision (bfloat16/float16 autocast) on CUDA; ignored elsewhere.
    """

    roi_size: tuple[int, int, int] = (64, 64, 64)
    overlap: float = 0.5
    sw_batch_size: int = 2
    device: str = "auto"
    amp: bool = True

    def __post_init__(self) -> None:
        roi = tuple(self.roi_size)
        if len(roi) != 3 or any(not isinstance(r, int) or r < 1 for r in roi):
            raise ValueError(f"roi_size must be 3 positive integers, got {self.roi_size!r}")
        self.roi_size = roi
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap!r}")
        if not isinstance(self.sw_batch_size, int) or self.sw_batch_size < 1:
            raise ValueError(
                f"sw_batch_size must be a positive integer, got {self.sw_batch_size!r}"
            )


@dataclass
class InferenceReport:
    """What happened during a prediction (device used, fallbacks taken)."""

    device: str = ""
    sw_batch_size: int = 0
    windows: int = 0
    messages: list[str] = field(default_factory=list)


def window_step(roi: int, overlap: float) -> int:
    """Voxels between neighbouring windows of edge ``roi`` (MONAI's sliding-window step)."""
    return max(int(roi * (1 - overlap)), 1)


def count_windows(shape: Sequence[int], roi_size: Sequence[int], overlap: float) -> int:
    """Number of windows MONAI's sliding window visits for a volume of spatial ``shape``."""
    total = 1
    for size, roi in zip(shape, roi_size, strict=True):
        roi = min(roi, size)
        step = window_step(roi, overlap)
        total *= math.ceil((size - roi) / step) + 1 if size > roi else 1
    return total


def _predict_once(
    model: nn.Module,
    volume: torch.Tensor,
    settings: WindowSettings,
    device: torch.device,
    sw_batch_size: int,
    progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
) -> torch.Tensor:
    from monai.inferers import sliding_window_inference

    roi = tuple(min(r, s) for r, s in zip(settings.roi_size, volume.shape[2:], strict=True))
    total = count_windows(volume.shape[2:], roi, settings.overlap)
    done = 0

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        nonlocal done
        if should_stop is not None and should_stop():
            raise InferenceCancelled("inference cancelled")
        out = model(windows)  # (n, C_out, *roi)
        done = min(done + windows.shape[0], total)
        if progress is not None:
            progress(done, total)
        return out.float()

    use_amp = settings.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    autocast = torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        out = sliding_window_inference(
            volume,
            roi,
            sw_batch_size,
            predictor,
            overlap=settings.overlap,
            mode="gaussian",
            sw_device=device,
            device=torch.device("cpu"),
        )
    return out.as_tensor() if hasattr(out, "as_tensor") else out


def predict_volume(
    model: nn.Module,
    volume: torch.Tensor,
    settings: WindowSettings | None = None,
    *,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    report: InferenceReport | None = None,
) -> torch.Tensor:
    """Predict a whole volume window by window.

    Parameters
    ----------
    model : torch.nn.Module
        Network mapping ``(n, C_in, *roi)`` to ``(n, C_out, *roi)``; put in eval mode here.
    volume : torch.Tensor
        Shape ``(1, C_in, X, Y, Z)`` (already normalised), on any device.
    settings : WindowSettings, optional
        Tiling, device and precision.
    progress : callable, optional
        ``progress(done_windows, total_windows)`` after each batch of windows.
    should_stop : callable, optional
        Checked before each batch; when it returns True, :class:`InferenceCancelled` is raised.
    report : InferenceReport, optional
        Filled with the device used and any fallback taken.

    Returns
    -------
    torch.Tensor
        Shape ``(1, C_out, X, Y, Z)``, float32, on the CPU.
    """
    settings = settings or WindowSettings()
    report = report if report is not None else InferenceReport()
    if volume.ndim != 5 or volume.shape[0] != 1:
        raise ValueError(f"volume must have shape (1, C, X, Y, Z), got {tuple(volume.shape)}")
    device = resolve_device(settings.device)
    batch = settings.sw_batch_size
    model.eval()
    original_device = next(model.parameters()).device
    try:
        while True:
            try:
                model.to(device)
                out = _predict_once(model, volume, settings, device, batch, progress, should_stop)
                report.device, report.sw_batch_size = str(device), batch
                report.windows = count_windows(
                    volume.shape[2:], settings.roi_size, settings.overlap
                )
                return out
            except torch.cuda.OutOfMemoryError:
                if device.type != "cuda":
                    raise
                torch.cuda.empty_cache()
                if batch > 1:
                    batch = max(batch // 2, 1)
                    msg = f"CUDA out of memory: retrying with {batch} window(s) per batch"
                else:
                    device = torch.device("cpu")
                    msg = "CUDA out of memory with one window per batch: continuing on the CPU"
                log.warning(msg)
                report.messages.append(msg)
    finally:
        model.to(original_device)
        if device.type == "cuda" or original_device.type == "cuda":
            torch.cuda.empty_cache()
