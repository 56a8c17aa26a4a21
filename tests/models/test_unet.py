"""UNet3d backbones: shape tables, padding/cropping, attention insertion and bad arguments."""

import pytest
import torch

from napari_fanet.models import FoldedAttention3d, UNet3d, build_model

TINY = (8, 8, 8, 8, 16)  # GroupNorm(8) needs >1 value per group at a 1x1x1 bottleneck

SHAPE_TABLE = [
    # (registry name, input shape, expected output shape)
    ("unet-seg", (1, 3, 16, 16, 16), (1, 2, 16, 16, 16)),
    ("fanet-seg", (2, 3, 20, 17, 9), (2, 2, 20, 17, 9)),
    ("fanet-seg", (1, 3, 32, 48, 16), (1, 2, 32, 48, 16)),  # bottleneck 2 x 3 x 1
    ("da-seg", (2, 3, 16, 24, 12), (2, 2, 16, 24, 12)),
    ("rsa-seg", (1, 3, 33, 16, 5), (1, 2, 33, 16, 5)),
    ("sa-seg", (2, 3, 16, 32, 16), (2, 2, 16, 32, 16)),
    ("ag-seg", (2, 3, 24, 16, 18), (2, 2, 24, 16, 18)),
    ("qsmnet", (2, 1, 16, 16, 16), (2, 1, 16, 16, 16)),
    ("fanet-qsm", (2, 1, 31, 20, 7), (2, 1, 31, 20, 7)),
    ("da-qsm", (2, 1, 16, 32, 32), (2, 1, 16, 32, 32)),
    ("rsa-qsm", (2, 1, 40, 16, 16), (2, 1, 40, 16, 16)),
    ("sa-qsm", (2, 1, 16, 16, 32), (2, 1, 16, 16, 32)),
]


@pytest.mark.parametrize(("name", "in_shape", "out_shape"), SHAPE_TABLE)
def test_shapes_train_and_eval(name, in_shape, out_shape):
    torch.manual_seed(0)
    net = build_model(name, features=TINY)
    x = torch.randn(in_shape)
    net.train()
    out = net(x)
    assert out.shape == out_shape
    out.mean().backward()  # every registered model trains
    net.eval()
    with torch.no_grad():
        assert net(x).shape == out_shape


def test_fa_sits_on_the_bottleneck_and_sees_its_grid():
    net = build_model("fanet-seg", features=TINY).eval()
    assert isinstance(net.attention, FoldedAttention3d)
    seen = []
    net.attention.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    with torch.no_grad():
        net(torch.randn(1, 3, 40, 20, 16))  # padded to 48 x 32 x 16
    assert seen == [torch.Size([1, 16, 3, 2, 1])]


def test_padding_then_cropping_keeps_alignment():
    """Output of an odd-sized input == output of that input placed inside a zero 16-multiple."""
    torch.manual_seed(0)
    net = UNet3d(1, 1, TINY, norm="none").eval()
    x = torch.randn(1, 1, 20, 17, 9)
    canvas = torch.zeros(1, 1, 32, 32, 16)
    # constant padding splits the missing voxels evenly: (12, 15, 7) -> offsets (6, 7, 3)
    canvas[:, :, 6:26, 7:24, 3:12] = x
    with torch.no_grad():
        expected = net(canvas)[:, :, 6:26, 7:24, 3:12]
        torch.testing.assert_close(net(x), expected)


def test_features_from_paper_width_builds():
    net = build_model("fanet-qsm", features=(32, 64, 128, 256, 512))
    assert net.attention.channels == 512


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": (8, 16, 32, 64)}, "features must have 5 entries"),
        ({"features": (8, 16, 0, 64, 128)}, "features must contain positive integers"),
        ({"features": (8, 16, -32, 64, 128)}, "features must contain positive integers"),
        ({"in_channels": 0}, "in_channels must contain positive integers"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
        ({"attention": "transformer"}, "attention must be None or one of"),
        ({"pad_mode": "wrap"}, "pad_mode must be"),
        ({"norm": "layer"}, "norm must be 'batch', 'group', 'instance' or 'none'"),
        ({"norm": ("group", {"num_groups": 8}), "features": (4, 8, 8, 8, 8)}, "divisible by 8"),
        ({"act": "gelu"}, "act must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"in_channels": 3, "out_channels": 2, "features": TINY, **kwargs}
    with pytest.raises(ValueError, match=match):
        UNet3d(**args)


def test_bad_inputs():
    net = build_model("unet-seg", features=TINY)
    with pytest.raises(ValueError, match=r"must be 5D \(B, C, D, H, W\), got 4D"):
        net(torch.randn(3, 16, 16, 16))
    with pytest.raises(ValueError, match="must have 3 channels"):
        net(torch.randn(1, 1, 16, 16, 16))
