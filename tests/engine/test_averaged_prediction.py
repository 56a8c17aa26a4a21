"""Averaging over the mirror image and window grids; windows that follow the brain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_fanet.engine.averaged_prediction import (
    MAX_WINDOW_SHIFTS,
    averaged_logits,
    brain_box,
    check_window_shifts,
    crop_to_brain,
    shift_offsets,
    without_margin,
)
from napari_fanet.engine.inference import (
    InferenceCancelled,
    WindowSettings,
    count_windows,
    predict_volume,
)
from napari_fanet.models import build_model


class LeftHeavy(nn.Module):
    """Two-class logits that depend on position along X: not mirror-symmetric."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))  # predict_volume reads the device from it

    def forward(self, x):
        ramp = torch.linspace(-2.0, 2.0, x.shape[2]).view(1, 1, -1, 1, 1)
        lesion = x[:, :1] + ramp
        return torch.cat([-lesion, lesion], dim=1)


def _shifted(model, x, settings, pad):
    """Independent reference: predict ``x`` zero-padded before each axis, cut the pad off."""
    padded = torch.zeros(1, x.shape[1], *(s + p for s, p in zip(x.shape[2:], pad, strict=True)))
    padded[:, :, pad[0] :, pad[1] :, pad[2] :] = x
    out = predict_volume(model, padded, settings)
    return out[:, :, pad[0] :, pad[1] :, pad[2] :]


def test_mirror_averages_the_two_probabilities_and_counts_both_passes():
    x = torch.randn(1, 1, 12, 9, 7)
    settings = WindowSettings(roi_size=(8, 8, 8), overlap=0.25, device="cpu")
    plain = averaged_logits(LeftHeavy(), x, settings, mirror=False, shifts=1)
    torch.testing.assert_close(plain, predict_volume(LeftHeavy(), x, settings))
    seen = []
    both = averaged_logits(
        LeftHeavy(), x, settings, mirror=True, shifts=1, progress=lambda d, t: seen.append((d, t))
    )
    flipped = torch.flip(predict_volume(LeftHeavy(), torch.flip(x, [2]), settings), [2])
    expected = (torch.softmax(plain, 1) + torch.softmax(flipped, 1)) / 2
    torch.testing.assert_close(torch.softmax(both, 1), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(torch.softmax(both, 1), torch.softmax(plain, 1), atol=1e-3)
    total = count_windows(x.shape[2:], (8, 8, 8), 0.25)
    assert seen[-1] == (2 * total, 2 * total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never goes back


def test_window_shifts_average_grids_shifted_by_a_fraction_of_a_step():
    torch.manual_seed(0)
    model = build_model("unet-seg", features=(8, 8, 8, 8, 16)).eval()  # windows matter to it
    x = torch.randn(1, 3, 20, 18, 17)
    settings = WindowSettings(roi_size=(16, 16, 16), overlap=0.5, device="cpu")
    assert shift_offsets(settings, 2) == [(0, 0, 0), (4, 4, 4)]
    assert shift_offsets(settings, 3) == [(0, 0, 0), (3, 3, 3), (5, 5, 5)]
    seen = []
    two = averaged_logits(
        model, x, settings, mirror=False, shifts=2, progress=lambda d, t: seen.append((d, t))
    )
    first = _shifted(model, x, settings, (0, 0, 0))
    second = _shifted(model, x, settings, (4, 4, 4))
    assert not torch.allclose(first, second, atol=1e-3)  # the grid really moved
    expected = (torch.softmax(first, 1) + torch.softmax(second, 1)) / 2
    torch.testing.assert_close(torch.softmax(two, 1), expected, rtol=1e-5, atol=1e-6)
    assert two.shape == (1, 2, 20, 18, 17)
    totals = count_windows((20, 18, 17), (16,) * 3, 0.5) + count_windows(
        (24, 22, 21), (16,) * 3, 0.5
    )
    assert seen[-1] == (totals, totals)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    four = averaged_logits(model, x, settings, mirror=True, shifts=2)
    mirrored = [
        torch.flip(_shifted(model, torch.flip(x, [2]), settings, pad), [2])
        for pad in ((0, 0, 0), (4, 4, 4))
    ]
    expected = sum(torch.softmax(p, 1) for p in (first, second, *mirrored)) / 4
    torch.testing.assert_close(torch.softmax(four, 1), expected, rtol=1e-5, atol=1e-6)


def test_cancel_in_a_later_pass():
    calls = {"n": 0}

    def stop_after_first_pass():
        calls["n"] += 1
        return calls["n"] > 1

    settings = WindowSettings(roi_size=(8, 8, 8), device="cpu")  # one window per pass
    with pytest.raises(InferenceCancelled, match="inference cancelled"):
        averaged_logits(
            LeftHeavy(),
            torch.randn(1, 1, 8, 8, 8),
            settings,
            mirror=True,
            should_stop=stop_after_first_pass,
        )
    assert calls["n"] == 2


@pytest.mark.parametrize(
    ("shifts", "match"),
    [
        (0, rf"window shifts must be from 1 to {MAX_WINDOW_SHIFTS}, got 0"),
        (
            MAX_WINDOW_SHIFTS + 1,
            rf"must be from 1 to {MAX_WINDOW_SHIFTS}, got {MAX_WINDOW_SHIFTS + 1}",
        ),
        (1.5, r"window shifts must be a whole number from 1 to \d+, got 1.5"),
        (True, r"must be a whole number from 1 to \d+, got True"),
    ],
)
def test_window_shifts_out_of_range_are_refused(shifts, match):
    with pytest.raises(ValueError, match=match):
        check_window_shifts(shifts)
    with pytest.raises(ValueError, match=match):
        averaged_logits(
            LeftHeavy(), torch.randn(1, 1, 8, 8, 8), WindowSettings(), mirror=False, shifts=shifts
        )


def test_crop_to_brain_pads_the_brain_box_with_zeros_and_the_margin_comes_off_again():
    brain = np.zeros((20, 30, 10), bool)
    brain[5:9, 2:20, 7:10] = True
    assert brain_box(brain) == (slice(5, 9), slice(2, 20), slice(7, 10))
    image = np.random.default_rng(0).standard_normal((3, 20, 30, 10)).astype(np.float32)
    crop, box = crop_to_brain(image, brain, margin=3)
    assert box == brain_box(brain) and crop.shape == (3, 10, 24, 9)
    np.testing.assert_array_equal(crop[:, 3:-3, 3:-3, 3:-3], image[:, 5:9, 2:20, 7:10])
    assert crop[:, :3].sum() == 0 and crop[..., -3:].sum() == 0  # zeros, not the array's voxels
    inner = without_margin(torch.from_numpy(crop)[None], 3)
    np.testing.assert_array_equal(inner[0].numpy(), image[:, 5:9, 2:20, 7:10])
    same, _ = crop_to_brain(
        np.pad(image, ((0, 0), (4, 0), (0, 9), (2, 2))),
        np.pad(brain, ((4, 0), (0, 9), (2, 2))),
        margin=3,
    )
    np.testing.assert_array_equal(same, crop)


@pytest.mark.parametrize(
    ("brain", "margin", "match"),
    [
        (np.zeros((4, 4, 4), bool), 1, "cannot crop to the brain: the brain mask is empty"),
        (np.ones((4, 4), bool), 1, r"the brain mask must be 3D \(X, Y, Z\), got shape \(4, 4\)"),
        (np.ones((4, 4, 4), bool), -1, "margin must be 0 or more voxels, got -1"),
    ],
)
def test_crop_to_brain_refuses_what_it_cannot_crop(brain, margin, match):
    with pytest.raises(ValueError, match=match):
        crop_to_brain(np.ones((1, *brain.shape), np.float32), brain, margin)


def _ellipsoid_flair(shape, rng):
    """A skull-stripped-looking FLAIR: an ellipsoid of noisy tissue with bright spots."""
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij"))
    brain = (grid**2).sum(0) < 0.8
    flair = np.where(brain, 1.0 + 0.1 * rng.standard_normal(shape), 0.0).astype(np.float32)
    flair[tuple(s // 2 for s in shape)] = 3.0
    return flair


@pytest.mark.parametrize("shifts", [1, 2])
def test_segment_gives_the_same_map_whatever_the_field_of_view(shifts):
    """Zero padding around a skull-stripped scan moves the array, not the brain's windows."""
    from napari_fanet.engine.predict import segment

    torch.manual_seed(0)
    model = build_model("unet-seg", features=(8, 8, 8, 8, 16))
    checkpoint = {"extra": {"voxel_size": [2.0, 2.0, 2.0], "modality_dropout": True}}
    flair = _ellipsoid_flair((30, 26, 22), np.random.default_rng(0))
    padded = np.pad(flair, ((7, 2), (0, 11), (5, 5)))
    settings = WindowSettings(roi_size=(16, 16, 16), device="cpu")
    options = {"voxel_size": (2.0,) * 3, "settings": settings, "window_shifts": shifts}
    options |= {"mirror": False, "match_roughness": False}
    plain = segment(model, checkpoint, None, None, flair, **options).outputs["probability"]
    moved = segment(model, checkpoint, None, None, padded, **options).outputs["probability"]
    np.testing.assert_array_equal(moved[7:-2, :-11, 5:-5], plain)
    assert not moved[:7].any() and plain.std() > 0
