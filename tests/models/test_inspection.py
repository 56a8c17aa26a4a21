"""capture_affinities: the attention inspector's view of a whole network."""

import pytest
import torch
from torch import nn

from napari_fanet.models import (
    FoldedAttention3d,
    attention_blocks,
    build_model,
    capture_affinities,
)


def test_capture_matches_the_block_and_restores_state():
    torch.manual_seed(0)
    net = build_model("fanet-seg", features=(8, 8, 8, 8, 8)).double().eval()
    with torch.no_grad():
        net.attention.beta.copy_(torch.tensor([0.4, -0.3, 0.8, 0.2]))
    x = torch.randn(1, 3, 48, 32, 16, dtype=torch.float64)
    seen = []
    net.attention.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad(), capture_affinities(net) as cap:
        net(x)
    assert net.attention.captured is None
    record = cap.last()
    assert record.input_shape == (1, 8, 3, 2, 1)
    bottleneck = seen[0]
    direct = net.attention.affinities(bottleneck)
    for a in "DHWC":
        torch.testing.assert_close(record.affinities[a], direct[a])
    pos = (5, 2, 1, 0)
    expected = net.attention.rank_one_factors(bottleneck, pos)
    got = record.factors(pos)
    for a in "CDHW":
        torch.testing.assert_close(got[a], expected[a][0])
    spatial = record.spatial_map(pos[1:])
    assert spatial.shape == (3, 2, 1)
    torch.testing.assert_close(
        spatial, torch.einsum("d,h,w->dhw", expected["D"][0], expected["H"][0], expected["W"][0])
    )
    raw = record.factors(pos, effective=False)
    torch.testing.assert_close(raw["C"].sum(), torch.tensor(1.0, dtype=torch.float64))


def test_capture_errors():
    plain = build_model("unet-seg", features=(8, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="contains no FoldedAttention3d"):
        with capture_affinities(plain):
            pass
    net = build_model("fanet-qsm", features=(8, 8, 8, 8, 8)).eval()
    with capture_affinities(net) as cap:
        pass
    with pytest.raises(ValueError, match="has not run a forward pass"):
        cap.last()
    with pytest.raises(ValueError, match="no FoldedAttention3d named 'x'"):
        cap.last("x")
    with torch.no_grad(), capture_affinities(net) as cap:
        net(torch.randn(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match="outside the bottleneck"):
        cap.last().factors((0, 1, 0, 0))
    with pytest.raises(ValueError, match="batch 1 is outside"):
        cap.last().factors((0, 0, 0, 0), batch=1)


def test_attention_blocks_by_level():
    grown = build_model(
        "fanet-seg", features=(8, 8, 8, 8, 8), attention_levels=(4, 0, 2),
        attention_kwargs={"scale": "sqrt"},
    )  # fmt: skip
    blocks = attention_blocks(grown)
    assert blocks == {0: "level_attention.0", 2: "level_attention.2", 4: "attention"}
    assert list(blocks) == [0, 2, 4]  # finest first
    assert attention_blocks(build_model("fanet-seg", features=(8, 8, 8, 8, 8))) == {4: "attention"}
    assert attention_blocks(build_model("unet-seg", features=(8, 8, 8, 8, 8))) == {}
    # One FA block outside a U-Net is taken as the bottleneck's, as the inspector always did.
    single = nn.Sequential(nn.Conv3d(3, 4, 1), FoldedAttention3d(4))
    assert attention_blocks(single) == {4: "1"}
