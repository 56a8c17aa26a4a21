"""Tests of the attention baselines: SA (non-local), DA (dual), RSA (slice-wise), AG (gate).

Numeric checks compare with independent float64 references written here with ``torch.einsum``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from napari_fanet.models.attention_gate import AttentionGate3d
from napari_fanet.models.dual_attention import (
    ChannelAttention3d,
    DualAttention3d,
    PositionAttention3d,
)
from napari_fanet.models.nonlocal_attention import NonLocal3d
from napari_fanet.models.slice_wise_attention import SliceWiseAttention3d

# Non-cubic shapes with size-1 and size-2 axes, (B, D, H, W); the channel count is prepended.
SPATIAL = [(2, 3, 5, 2), (2, 1, 1, 1), (1, 1, 2, 7), (2, 2, 1, 3), (1, 4, 3, 2)]


def _shape(b: int, c: int, spatial: tuple[int, ...]) -> tuple[int, ...]:
    return (b, c, *spatial)


TEST_CASES_NONLOCAL = [
    [kwargs, _shape(b, c, s), _shape(b, c, s)]
    for c, kwargs in [
        (4, {}),
        (4, {"fused": True}),
        (1, {}),
        (8, {"inter_channels": 3, "norm": "group"}),
        (3, {"norm": "none", "fused": True}),
    ]
    for b, *s in SPATIAL
]
TEST_CASES_DUAL = [
    [kwargs, _shape(b, c, s), _shape(b, c, s)]
    for c, kwargs in [(4, {}), (1, {"dropout": 0.0}), (16, {"norm": "group", "dropout": 0.5})]
    for b, *s in SPATIAL
]
TEST_CASES_SLICE = [
    [{"channels": c}, _shape(b, c, s), _shape(b, c, s)] for c in (1, 3) for b, *s in SPATIAL
]
# (kwargs, skip shape, gating shape, expected shape)
TEST_CASES_GATE = [
    [
        {"skip_channels": 4, "gating_channels": 6},
        (2, 4, 6, 5, 2),
        (2, 6, 3, 3, 1),
        (2, 4, 6, 5, 2),
    ],
    [
        {"skip_channels": 4, "gating_channels": 6},
        (2, 4, 1, 1, 1),
        (2, 6, 1, 1, 1),
        (2, 4, 1, 1, 1),
    ],
    [
        {"skip_channels": 1, "gating_channels": 2},
        (1, 1, 2, 7, 3),
        (1, 2, 1, 4, 2),
        (1, 1, 2, 7, 3),
    ],
    [
        {"skip_channels": 8, "gating_channels": 3, "inter_channels": 5, "norm": "group"},
        (2, 8, 4, 3, 2),
        (2, 3, 2, 2, 1),
        (2, 8, 4, 3, 2),
    ],
    [
        {"skip_channels": 3, "gating_channels": 2, "norm": "none"},
        (1, 3, 2, 2, 2),
        (1, 2, 4, 4, 4),
        (1, 3, 2, 2, 2),
    ],
]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _randomise(module: nn.Module, scale: float = 0.5) -> nn.Module:
    """Give every parameter and norm buffer a nonzero random value (gammas included)."""
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(scale * torch.randn_like(param))
        for name, buf in module.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(0.3 * torch.randn_like(buf))
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand_like(buf))
    return module


# ---------------------------------------------------------------- independent float64 references
def _conv1x1(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    out = torch.einsum("oc,bcdhw->bodhw", conv.weight[:, :, 0, 0, 0], x)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1, 1)


def _softmax(e: torch.Tensor) -> torch.Tensor:
    z = torch.exp(e - e.amax(dim=-1, keepdim=True))
    return z / z.sum(dim=-1, keepdim=True)


def _batchnorm_eval(bn: nn.BatchNorm3d, x: torch.Tensor) -> torch.Tensor:
    view = (1, -1, 1, 1, 1)
    xhat = (x - bn.running_mean.view(view)) / torch.sqrt(bn.running_var.view(view) + bn.eps)
    return xhat * bn.weight.view(view) + bn.bias.view(view)


def _nonlocal_reference(m: NonLocal3d, x: torch.Tensor) -> torch.Tensor:
    b, _, d, h, w = x.shape
    t, p, v = (_conv1x1(conv, x).reshape(b, -1, d * h * w) for conv in (m.theta, m.phi, m.g))
    a = _softmax(torch.einsum("bci,bcj->bij", t, p))
    y = torch.einsum("bij,bcj->bci", a, v).reshape(b, -1, d, h, w)
    return x + _batchnorm_eval(m.norm, _conv1x1(m.out_conv, y))


ENERGY_EQ = {"D": "bcxhw,bcyhw->bxy", "H": "bcdxw,bcdyw->bxy", "W": "bcdhx,bcdhy->bxy"}
AGGREGATE_EQ = {"D": "bxy,bcyhw->bcxhw", "H": "bxy,bcdyw->bcdxw", "W": "bxy,bcdhy->bcdhx"}


def _slice_wise_reference(m: SliceWiseAttention3d, x: torch.Tensor) -> torch.Tensor:
    y = x
    for idx, axis in enumerate("DHW"):
        t, p, v = (_conv1x1(convs[idx], y) for convs in (m.theta, m.phi, m.g))
        a = _softmax(torch.einsum(ENERGY_EQ[axis], t, p))
        y = y + m.gamma[idx] * torch.einsum(AGGREGATE_EQ[axis], a, v)
    return y


# ---------------------------------------------------------------- shape tables
@pytest.mark.parametrize(("kwargs", "input_shape", "expected_shape"), TEST_CASES_NONLOCAL)
def test_nonlocal_shape(kwargs: dict, input_shape: tuple, expected_shape: tuple) -> None:
    c = input_shape[1]
    m = NonLocal3d(c, **kwargs)
    x = torch.randn(input_shape)
    out = m(x)
    assert out.shape == expected_shape
    assert torch.equal(out, x)  # identity at initialisation, for every norm
    _randomise(m).eval()
    assert torch.isfinite(m(x)).all()


@pytest.mark.parametrize(("kwargs", "input_shape", "expected_shape"), TEST_CASES_DUAL)
def test_dual_shape(kwargs: dict, input_shape: tuple, expected_shape: tuple) -> None:
    m = DualAttention3d(input_shape[1], **kwargs)
    assert m.position_attention.gamma.item() == 0.0
    assert m.channel_attention.gamma.item() == 0.0
    assert m(torch.randn(input_shape)).shape == expected_shape
    m.eval()
    assert m(torch.randn(input_shape)).shape == expected_shape


@pytest.mark.parametrize(("kwargs", "input_shape", "expected_shape"), TEST_CASES_SLICE)
def test_slice_wise_shape(kwargs: dict, input_shape: tuple, expected_shape: tuple) -> None:
    m = SliceWiseAttention3d(**kwargs)
    x = torch.randn(input_shape)
    out = m(x)
    assert out.shape == expected_shape
    assert torch.equal(out, x)  # identity at initialisation


@pytest.mark.parametrize(
    ("kwargs", "skip_shape", "gating_shape", "expected_shape"), TEST_CASES_GATE
)
def test_attention_gate_shape(
    kwargs: dict, skip_shape: tuple, gating_shape: tuple, expected_shape: tuple
) -> None:
    m = AttentionGate3d(**kwargs)
    skip, gating = torch.randn(skip_shape), torch.randn(gating_shape)
    assert m(skip, gating).shape == expected_shape
    psi = m.attention_map(skip, gating)
    assert psi.shape == (skip_shape[0], 1, *skip_shape[2:])
    assert ((psi > 0) & (psi < 1)).all()


# ---------------------------------------------------------------- numeric checks
@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("shape", [(2, 4, 3, 5, 2), (1, 4, 1, 2, 7), (2, 4, 1, 1, 1)])
def test_nonlocal_matches_einsum_reference(fused: bool, shape: tuple) -> None:
    m = _randomise(NonLocal3d(4, inter_channels=3, fused=fused)).double().eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(m(x), _nonlocal_reference(m, x), rtol=1e-10, atol=1e-10)


def test_nonlocal_fused_equals_explicit_float32() -> None:
    explicit = _randomise(NonLocal3d(6)).eval()
    fused = NonLocal3d(6, fused=True).eval()
    fused.load_state_dict(explicit.state_dict())
    x = torch.randn(2, 6, 3, 4, 5)
    torch.testing.assert_close(fused(x), explicit(x), rtol=1e-5, atol=1e-5)


def test_nonlocal_inter_channels_default() -> None:
    assert NonLocal3d(9).inter_channels == 4
    assert NonLocal3d(1).inter_channels == 1
    assert NonLocal3d(9, inter_channels=2).theta.out_channels == 2


@pytest.mark.parametrize("shape", [(2, 3, 3, 5, 2), (1, 2, 1, 2, 7), (2, 2, 1, 1, 1)])
def test_slice_wise_matches_einsum_reference(shape: tuple) -> None:
    m = _randomise(SliceWiseAttention3d(shape[1])).double()
    assert (m.gamma != 0).all()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(m(x), _slice_wise_reference(m, x), rtol=1e-10, atol=1e-10)


def test_slice_wise_steps_use_running_tensor() -> None:
    # Only the D step active: the H and W projections must not matter.
    m = _randomise(SliceWiseAttention3d(2)).double()
    with torch.no_grad():
        m.gamma[1:] = 0.0
    x = torch.randn(1, 2, 3, 2, 2, dtype=torch.float64)
    expected = _slice_wise_reference(m, x)
    _randomise(m.theta[1])
    _randomise(m.g[2])
    torch.testing.assert_close(m(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 5, 3, 2, 4), (1, 3, 1, 1, 2)])
def test_channel_attention_matches_einsum(shape: tuple) -> None:
    m = ChannelAttention3d(shape[1]).double()
    with torch.no_grad():
        m.gamma.fill_(0.7)
    x = torch.randn(shape, dtype=torch.float64)
    f = x.reshape(shape[0], shape[1], -1)
    energy = torch.einsum("bcn,bkn->bck", f, f)
    attn = _softmax(-energy)
    # DANet's own form, softmax(max(E) - E), is the same matrix.
    torch.testing.assert_close(attn, _softmax(energy.amax(-1, keepdim=True) - energy))
    expected = 0.7 * torch.einsum("bck,bkn->bcn", attn, f).reshape(shape) + x
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(2, 9, 3, 2, 4), (1, 3, 1, 1, 2)])
def test_position_attention_matches_einsum(shape: tuple) -> None:
    m = _randomise(PositionAttention3d(shape[1])).double()
    assert m.query.out_channels == max(shape[1] // 8, 1)
    x = torch.randn(shape, dtype=torch.float64)
    b = shape[0]
    q, k, v = (
        _conv1x1(conv, x).reshape(b, -1, x[0, 0].numel()) for conv in (m.query, m.key, m.value)
    )
    attn = _softmax(torch.einsum("bci,bcj->bij", q, k))
    expected = m.gamma * torch.einsum("bij,bcj->bci", attn, v).reshape(shape) + x
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


def test_dual_attention_identity_modules_at_init() -> None:
    m = DualAttention3d(4)
    x = torch.randn(2, 4, 3, 2, 5)
    assert torch.equal(m.position_attention(x), x)
    assert torch.equal(m.channel_attention(x), x)


def test_dual_attention_matches_composition() -> None:
    m = _randomise(DualAttention3d(4)).double().eval()
    x = torch.randn(2, 4, 3, 2, 5, dtype=torch.float64)
    pos = m.position_out(m.position_attention(m.position_in(x)))
    chan = m.channel_out(m.channel_attention(m.channel_in(x)))
    expected = _conv1x1(m.out_conv, pos + chan)  # dropout is the identity in eval mode
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("gating_spatial", [(3, 2, 1), (6, 5, 2)])
def test_attention_gate_matches_formula(gating_spatial: tuple) -> None:
    m = _randomise(AttentionGate3d(4, 3, 2)).double().eval()
    skip = torch.randn(2, 4, 6, 5, 2, dtype=torch.float64)
    gating = torch.randn(2, 3, *gating_spatial, dtype=torch.float64)
    # Resize the gating signal first, then project (the module projects, then resizes).
    g_up = F.interpolate(gating, size=skip.shape[2:], mode="trilinear", align_corners=False)
    wt, wp = m.theta_x.weight[:, :, 0, 0, 0], m.phi_g.weight[:, :, 0, 0, 0]
    pre = torch.einsum("ic,bcdhw->bidhw", wt, skip)
    pre = pre + torch.einsum("ic,bcdhw->bidhw", wp, g_up) + m.phi_g.bias.view(1, -1, 1, 1, 1)
    psi_w = m.psi.weight[0, :, 0, 0, 0]
    psi = torch.sigmoid(torch.einsum("i,bidhw->bdhw", psi_w, pre.clamp(min=0)) + m.psi.bias)
    psi = psi.unsqueeze(1)
    expected = _batchnorm_eval(m.norm, _conv1x1(m.out_conv, skip * psi))
    torch.testing.assert_close(m.attention_map(skip, gating), psi, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(m(skip, gating), expected, rtol=1e-10, atol=1e-10)


def test_attention_gate_defaults() -> None:
    m = AttentionGate3d(6, 10)
    assert m.inter_channels == 3
    assert m.theta_x.bias is None
    assert AttentionGate3d(1, 1).inter_channels == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: NonLocal3d(3),
        lambda: NonLocal3d(3, fused=True),
        lambda: DualAttention3d(3),
        lambda: SliceWiseAttention3d(3),
    ],
)
def test_large_inputs_stay_finite(make) -> None:
    m = _randomise(make()).eval()
    x = 100 * torch.randn(2, 3, 4, 3, 5)
    assert torch.isfinite(m(x)).all()


def test_batch_independence() -> None:
    x = torch.randn(3, 3, 2, 3, 4, dtype=torch.float64)
    for m in (
        _randomise(NonLocal3d(3)).double().eval(),
        _randomise(DualAttention3d(3)).double().eval(),
        _randomise(SliceWiseAttention3d(3)).double(),
    ):
        full = m(x)
        torch.testing.assert_close(full[1:2], m(x[1:2]), rtol=1e-10, atol=1e-10)


def test_meta_device_shapes() -> None:
    # The baselines run on the meta device (used to count FLOPs at sizes that do not fit).
    x = torch.empty(1, 8, 16, 16, 8, device="meta")
    for m in (
        NonLocal3d(8),
        NonLocal3d(8, fused=True),
        DualAttention3d(8),
        SliceWiseAttention3d(8),
    ):
        assert m.to("meta")(x).shape == x.shape
    gate = AttentionGate3d(8, 4).to("meta")
    assert gate(x, torch.empty(1, 4, 8, 8, 4, device="meta")).shape == x.shape


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("fused", [False, True])
def test_nonlocal_gradcheck(fused: bool) -> None:
    m = _randomise(NonLocal3d(2, inter_channels=2, fused=fused)).double().eval()
    x = torch.randn(1, 2, 2, 3, 1, dtype=torch.float64, requires_grad=True)
    weight = m.theta.weight.detach().clone().requires_grad_(True)

    def fn(inp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return functional_call(m, {"theta.weight": w}, (inp,), strict=False)

    assert torch.autograd.gradcheck(fn, (x, weight))


def test_slice_wise_gradcheck() -> None:
    m = _randomise(SliceWiseAttention3d(2)).double()
    x = torch.randn(1, 2, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    gamma = m.gamma.detach().clone().requires_grad_(True)

    def fn(inp: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return functional_call(m, {"gamma": g}, (inp,), strict=False)

    assert torch.autograd.gradcheck(fn, (x, gamma))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4", None])
@pytest.mark.parametrize(
    "cls",
    [NonLocal3d, DualAttention3d, SliceWiseAttention3d, PositionAttention3d, ChannelAttention3d],
)
def test_bad_channels(cls: type, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"channels must be a positive integer, got {bad!r}"):
        cls(bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, False])
def test_nonlocal_bad_inter_channels(bad: object) -> None:
    with pytest.raises(
        ValueError, match=rf"inter_channels must be a positive integer or None, got {bad!r}"
    ):
        NonLocal3d(4, inter_channels=bad)


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_nonlocal_bad_fused(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"fused must be True or False, got {bad!r}"):
        NonLocal3d(4, fused=bad)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1, "0.1", None, True])
def test_dual_bad_dropout(bad: object) -> None:
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got "):
        DualAttention3d(4, dropout=bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"skip_channels": 0, "gating_channels": 2},
            "skip_channels must be a positive integer, got 0",
        ),
        (
            {"skip_channels": 2, "gating_channels": -1},
            "gating_channels must be a positive integer, got -1",
        ),
        (
            {"skip_channels": 2, "gating_channels": 2.0},
            r"gating_channels must be a positive integer, got 2\.0",
        ),
        (
            {"skip_channels": 2, "gating_channels": 2, "inter_channels": 0},
            "inter_channels must be a positive integer, got 0",
        ),
        (
            {"skip_channels": "2", "gating_channels": 2},
            "skip_channels must be a positive integer, got '2'",
        ),
    ],
)
def test_attention_gate_bad_args(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AttentionGate3d(**kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: NonLocal3d(4),
        lambda: NonLocal3d(4, fused=True),
        lambda: DualAttention3d(4),
        lambda: PositionAttention3d(4),
        lambda: ChannelAttention3d(4),
        lambda: SliceWiseAttention3d(4),
    ],
)
def test_bad_inputs(make) -> None:
    m = make()
    with pytest.raises(ValueError, match=r"input must be 5D \(B, C, D, H, W\), got 4D"):
        m(torch.randn(4, 3, 3, 3))
    with pytest.raises(
        ValueError, match=r"input must have 4 channels \(dim 1\), got shape \(1, 3, 2, 2, 2\)"
    ):
        m(torch.randn(1, 3, 2, 2, 2))


def test_attention_gate_bad_inputs() -> None:
    m = AttentionGate3d(4, 2)
    skip, gating = torch.randn(2, 4, 4, 4, 4), torch.randn(2, 2, 2, 2, 2)
    with pytest.raises(ValueError, match=r"skip must be 5D"):
        m(skip[0], gating)
    with pytest.raises(ValueError, match=r"gating must be 5D"):
        m(skip, gating[0])
    with pytest.raises(ValueError, match=r"skip must have 4 channels"):
        m(skip[:, :3], gating)
    with pytest.raises(ValueError, match=r"gating must have 2 channels"):
        m.attention_map(skip, gating[:, :1])
    with pytest.raises(
        ValueError, match=r"same batch size, got shapes \(2, 4, 4, 4, 4\) and \(1, 2"
    ):
        m(skip, gating[:1])
