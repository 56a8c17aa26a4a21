"""Tests for growing a trained FA-Net's attention (models.attention_growth)."""

from __future__ import annotations

import math

import pytest
import torch

from napari_fanet.models import build_model
from napari_fanet.models.attention_growth import (
    drop_attention,
    grow_attention,
    make_identity,
    set_start_temperature,
)
from napari_fanet.models.folded_attention import FoldedAttention3d

FEATURES = (8, 8, 8, 8, 8)


def _trained_like(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model("fanet-seg", features=FEATURES).eval()
    with torch.no_grad():
        model.attention.beta.copy_(torch.tensor([0.3, -0.2, 0.1, 0.05]))
    return model


def test_make_identity_returns_the_input() -> None:
    block = FoldedAttention3d(4).eval()
    make_identity(block)
    x = torch.randn(1, 4, 3, 5, 2)
    torch.testing.assert_close(block(x), x)


def test_new_levels_start_as_identity() -> None:
    model = _trained_like()
    grown = grow_attention(model, (1, 2, 4)).eval()
    assert grown.config.attention_levels == (1, 2, 4)
    assert set(grown.level_attention) == {"1", "2"}
    x = torch.randn(1, 3, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), model(x))
    torch.testing.assert_close(grown.attention.beta, model.attention.beta)


def test_scale_change_keeps_weights_and_applies_to_every_block() -> None:
    model = _trained_like()
    grown = grow_attention(model, (2, 4), {"scale": "sqrt"})
    assert grown.config.attention_kwargs == {"scale": "sqrt"}
    assert grown.attention.scale == "sqrt" and grown.level_attention["2"].scale == "sqrt"
    torch.testing.assert_close(grown.attention.theta.weight, model.attention.theta.weight)
    assert grown.training


def test_new_bottleneck_block_starts_as_identity() -> None:
    torch.manual_seed(0)
    model = build_model("fanet-seg", features=FEATURES, attention_levels=(2,)).eval()
    grown = grow_attention(model, (2, 4)).eval()
    x = torch.randn(1, 3, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), model(x))


def test_dropping_a_trained_level_is_refused() -> None:
    with pytest.raises(ValueError, match=r"drop the trained block\(s\) at level\(s\) \[4\]"):
        grow_attention(_trained_like(), (2,))


def test_a_network_without_folded_attention_is_refused() -> None:
    with pytest.raises(ValueError, match=r"needs a network with folded attention.*attention=None"):
        grow_attention(build_model("unet-seg", features=FEATURES), (2, 4))


def test_drop_attention_keeps_every_other_weight() -> None:
    model = grow_attention(_trained_like(), (2, 4)).eval()
    with torch.no_grad():
        model.level_attention["2"].beta.fill_(0.1)
    smaller = drop_attention(model, [4])
    assert smaller.training  # ready to fine-tune
    smaller.eval()
    assert smaller.config.attention_levels == (2,) and smaller.attention is None
    assert set(smaller.level_attention) == {"2"}
    kept = smaller.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("attention."):
            assert key not in kept
        else:
            torch.testing.assert_close(kept[key], value)
    # without the bottleneck block its features pass unchanged: the same as an identity block
    reference = grow_attention(_trained_like(), (2, 4)).eval()
    reference.load_state_dict(model.state_dict())
    make_identity(reference.attention)
    x = torch.randn(1, 3, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(smaller(x), reference(x))


@pytest.mark.parametrize(
    ("model", "levels", "message"),
    [
        (lambda: _trained_like(), [2], r"cannot drop attention at level\(s\) \[2\]: expected"),
        (lambda: _trained_like(), [4], "would leave no attention block"),
        (
            lambda: build_model("unet-seg", features=FEATURES),
            [4],
            r"dropping attention needs a network with folded attention.*attention=None",
        ),
    ],
)
def test_bad_drops_are_refused(model, levels, message) -> None:
    with pytest.raises(ValueError, match=message):
        drop_attention(model(), levels)


def test_start_temperature_softens_only_its_block() -> None:
    grown = grow_attention(_trained_like(), (2, 4), {"scale": "cosine", "learn_temperature": True})
    x = torch.randn(1, 8, 4, 4, 4)
    before = grown.attention.affinities(x)["D"]
    set_start_temperature(grown, 4, 3.0)
    torch.testing.assert_close(grown.attention.log_temperature, torch.full((4,), math.log(3.0)))
    torch.testing.assert_close(grown.level_attention["2"].log_temperature, torch.zeros(4))
    after = grown.attention.affinities(x)["D"]
    # three times softer energies: a flatter row, so a larger entropy
    entropy = [-(a * a.log()).sum(-1).mean() for a in (before, after)]
    assert entropy[1] > entropy[0]


@pytest.mark.parametrize(
    ("level", "temperature", "message"),
    [
        (4, 0.0, "must be a positive number, got 0.0"),
        (4, float("inf"), "must be a positive number, got inf"),
        (
            3,
            2.0,
            r"level 3: expected a level whose folded attention learns a temperature.*\[2, 4\]",
        ),
    ],
)
def test_bad_start_temperatures_are_refused(level, temperature, message) -> None:
    grown = grow_attention(_trained_like(), (2, 4), {"scale": "cosine", "learn_temperature": True})
    with pytest.raises(ValueError, match=message):
        set_start_temperature(grown, level, temperature)


def test_start_temperature_needs_a_learned_temperature() -> None:
    with pytest.raises(ValueError, match=r"learns a temperature.*levels with one: \[\]"):
        set_start_temperature(_trained_like(), 4, 2.0)
