"""Attention at finer U-Net levels (``attention_levels``), beside or instead of the bottleneck."""

import pytest
import torch

from napari_fanet.models import (
    FoldedAttention3d,
    UNet3d,
    build_model,
    capture_affinities,
    load_checkpoint,
    save_checkpoint,
)

FEATURES = (8, 8, 8, 8, 16)  # GroupNorm(8) for the segmentation model


def test_default_is_the_bottleneck_only_with_unchanged_keys():
    net = UNet3d(1, 1, FEATURES, attention="fa")
    assert net.attention_levels == (4,)
    assert isinstance(net.attention, FoldedAttention3d) and len(net.level_attention) == 0
    assert not any(k.startswith("level_attention") for k in net.state_dict())


@pytest.mark.parametrize(
    ("levels", "grid"), [((2,), (8, 8, 4)), ((3,), (4, 4, 2)), ((2, 4), (8, 8, 4))]
)
def test_fa_at_a_finer_level(levels, grid):
    torch.manual_seed(0)
    net = UNet3d(1, 2, FEATURES, attention="fa", attention_levels=levels).eval()
    finer = [lv for lv in levels if lv < 4]
    assert sorted(int(k) for k in net.level_attention) == finer
    assert (net.attention is not None) == (4 in levels)
    block = net.level_attention[str(finer[0])]
    assert block.channels == FEATURES[finer[0]]
    with torch.no_grad():
        block.beta.fill_(0.5)  # make the block matter
    x = torch.randn(1, 1, 32, 24, 16)  # padded to (32, 32, 16)
    with torch.no_grad(), capture_affinities(net) as cap:
        out, deep = net(x), net.bottleneck(x)
    assert out.shape == (1, 2, 32, 24, 16)
    record = cap.last(f"level_attention.{finer[0]}")
    assert record.input_shape == (1, FEATURES[finer[0]], *grid)
    with torch.no_grad():
        block.beta.zero_()
        # the deeper levels see the finer block's output
        assert (net.bottleneck(x) - deep).abs().max() > 1e-3


def test_levels_reach_the_registry_and_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = build_model("fanet-qsm", features=FEATURES, attention_levels=[3, 4]).eval()
    assert net.config.attention_levels == (3, 4)
    assert set(net.level_attention) == {"3"} and net.attention is not None
    path = save_checkpoint(tmp_path / "m.pt", net)
    assert torch.load(path, weights_only=True)["config"]["attention_levels"] == [3, 4]
    model, _ = load_checkpoint(path)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))


def test_old_configs_without_levels_load_as_bottleneck_only():
    config = build_model("fanet-seg", features=FEATURES).config.to_dict()
    del config["attention_levels"]
    from napari_fanet.models import model_from_config

    assert model_from_config(config).attention_levels == (4,)


@pytest.mark.parametrize("levels", [(), (5,), (4, 4), (True,), (-1,), (2.0,)])
def test_bad_levels(levels):
    match = r"attention_levels must be distinct levels out of 0\.\.4"
    with pytest.raises(ValueError, match=match):
        UNet3d(1, 1, FEATURES, attention="fa", attention_levels=levels)
