import pytest
import torch
from torch import nn

from napari_fanet.engine.inference import (
    InferenceCancelled,
    InferenceReport,
    WindowSettings,
    count_windows,
    predict_volume,
    resolve_device,
)
from napari_fanet.models import build_model


class Scale(nn.Module):
    """A per-voxel model: sliding-window blending must reproduce it exactly."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return self.w * x[:, :1] + 1.0


@pytest.mark.parametrize(
    ("shape", "roi", "overlap"),
    [
        ((40, 33, 17), (16, 16, 16), 0.5),
        ((64, 64, 64), (32, 32, 32), 0.25),
        ((10, 70, 5), (16, 32, 8), 0.0),
    ],
)
def test_blending_is_exact_for_a_pointwise_model_and_windows_are_counted(shape, roi, overlap):
    x = torch.randn(1, 2, *shape)
    seen = []
    settings = WindowSettings(roi_size=roi, overlap=overlap, sw_batch_size=3, device="cpu")
    report = InferenceReport()
    out = predict_volume(
        Scale(), x, settings, progress=lambda d, t: seen.append((d, t)), report=report
    )
    torch.testing.assert_close(out, 2 * x[:, :1] + 1, rtol=1e-5, atol=1e-5)
    total = count_windows(shape, roi, overlap)
    assert seen[-1] == (total, total)
    assert all(t == total for _, t in seen)
    assert report.device == "cpu" and report.windows == total


def test_real_network_any_size_on_cpu():
    net = build_model("fanet-qsm", features=(8, 8, 8, 8, 8))
    x = torch.randn(1, 1, 37, 29, 21)
    out = predict_volume(net, x, WindowSettings(roi_size=(32, 32, 16), device="cpu"))
    assert out.shape == (1, 1, 37, 29, 21) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_cancel_between_windows():
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(InferenceCancelled, match="cancelled"):
        predict_volume(Scale(), torch.randn(1, 1, 48, 48, 48),
                       WindowSettings(roi_size=(16, 16, 16), sw_batch_size=1, device="cpu"),
                       should_stop=stop)  # fmt: skip
    assert len(calls) == 3


def test_settings_and_device_errors():
    with pytest.raises(ValueError, match="roi_size must be 3 positive integers"):
        WindowSettings(roi_size=(16, 16))
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\), got 1.0"):
        WindowSettings(overlap=1.0)
    with pytest.raises(ValueError, match="sw_batch_size must be a positive integer"):
        WindowSettings(sw_batch_size=0)
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match=r"volume must have shape \(1, C, X, Y, Z\)"):
        predict_volume(Scale(), torch.randn(1, 8, 8, 8))
