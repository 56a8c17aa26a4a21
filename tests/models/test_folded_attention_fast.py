"""The fast FoldedAttention3d against the literal reference; energy scaling; CPU speed guards.

The fast implementation rewrites the block algebraically (see the module docstring), so it is
checked against ``folded_attention_reference`` (the paper's steps, ``Conv3d`` and
permute-and-copy unfoldings) in float64, forward and backward, for every option.
"""

import itertools
from pathlib import Path

import pytest
import torch

from napari_fanet.models import build_model, load_checkpoint, save_checkpoint
from napari_fanet.models import folded_attention as fa
from napari_fanet.models.folded_attention import (
    FoldedAttention3d,
    batched_product,
    folded_attention_reference,
    intra_op_threads,
    row_softmax,
    squared_norms,
)

SHAPES = [(1, 3, 4, 5, 6), (2, 4, 1, 3, 2), (2, 2, 2, 1, 5), (1, 5, 3, 2, 1), (1, 1, 2, 2, 2)]
OPTIONS = [
    {},
    {"scale": "sqrt"},
    {"scale": 0.3},
    {"variant": "pure"},
    {"variant": "pure", "scale": "sqrt"},
    {"channel_sign": 1},
    {"outer_residual": True},
    {"outer_residual": True, "scale": "sqrt", "variant": "pure"},
    {"learn_temperature": True},
    {"learn_temperature": True, "scale": "sqrt", "channel_sign": 1},
    {"scale": "cosine"},
    {"scale": "cosine", "learn_temperature": True, "variant": "pure"},
    {"scale": "cosine", "learn_temperature": True, "outer_residual": True},
]
WEIGHTS = Path(__file__).parents[2] / "src" / "napari_fanet" / "weights"
SHIPPED = Path(__file__).parent / "data" / "shipped_outputs.pt"


def make_block(c, seed=0, **kwargs):
    """A float64 block with random gates (and temperatures), so no term vanishes."""
    torch.manual_seed(seed)
    block = FoldedAttention3d(c, **kwargs).double()
    with torch.no_grad():
        block.beta.copy_(torch.randn(4))
        if block.learn_temperature:
            block.log_temperature.copy_(0.5 * torch.randn(4))
    return block


def subnormal(t):
    return (t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)


# --------------------------------------------------------------------------- fast == reference
@pytest.mark.parametrize(
    "kwargs", OPTIONS, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items())
)
@pytest.mark.parametrize("shape", SHAPES)
def test_fast_matches_reference_float64(shape, kwargs):
    block = make_block(shape[1], **kwargs)
    x = torch.randn(shape, dtype=torch.float64)
    assert block.implementation == "fast"
    out = block(x)
    ref = folded_attention_reference(block, x)
    assert block.implementation == "fast"  # the reference leaves the block as it was
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("slab", [1, 7, 1000])
def test_squared_norms_in_slabs_match_the_whole_sums(monkeypatch, slab, grad):
    monkeypatch.setattr(fa, "NORM_SLAB", slab)
    y = torch.randn(2, 6, 30, dtype=torch.float64, requires_grad=grad)  # 30: not a multiple
    channel, per_voxel = squared_norms(y, 2)
    torch.testing.assert_close(channel, (y * y).sum(2))
    torch.testing.assert_close(per_voxel, (y * y).view(2, 2, 3, 30).sum(2))
    assert channel.shape == (2, 6) and per_voxel.shape == (2, 2, 30)


@pytest.mark.parametrize("groups", [0, 4])
def test_squared_norms_refuses_unequal_groups(groups):
    with pytest.raises(ValueError, match=rf"expected 6 channels to split .* groups={groups}"):
        squared_norms(torch.zeros(1, 6, 5), groups)


def test_fast_cosine_block_matches_reference_across_norm_slabs(monkeypatch):
    monkeypatch.setattr(fa, "NORM_SLAB", 7)  # 4 * 3 * 5 = 60 voxels: 9 slabs, the last short
    block = make_block(3, scale="cosine", learn_temperature=True)
    x = torch.randn(2, 3, 4, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        out, ref = block(x), folded_attention_reference(block, x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs", OPTIONS, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items())
)
def test_fast_affinities_match_literal(kwargs):
    block = make_block(3, **kwargs)
    literal = make_block(3, implementation="literal", **kwargs)
    literal.load_state_dict(block.state_dict())
    x = torch.randn(2, 3, 4, 3, 5, dtype=torch.float64)
    fast_aff, lit_aff = block.affinities(x), literal.affinities(x)
    for a in "DHWC":
        torch.testing.assert_close(fast_aff[a], lit_aff[a], rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"scale": "sqrt"}, {"variant": "pure"}, {"outer_residual": True, "scale": "sqrt"}],
    ids=["unscaled", "sqrt", "pure", "outer_residual-sqrt"],
)
def test_fast_gradients_match_reference(kwargs):
    block = make_block(3, **kwargs)
    x = torch.randn(2, 3, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 3, 4, 2, dtype=torch.float64)  # a generic loss

    def grads(forward):
        block.zero_grad()
        x.grad = None
        (forward(x) * weight).sum().backward()
        # The pure variant does not use the gates: no gradient in either implementation.
        return [x.grad.clone()] + [p.grad for p in block.parameters()]

    fast = grads(block)
    ref = grads(lambda inp: folded_attention_reference(block, inp))
    for g_fast, g_ref in zip(fast, ref, strict=True):
        if g_ref is None:
            assert g_fast is None
        else:
            torch.testing.assert_close(g_fast, g_ref, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": "sqrt"},
        {"learn_temperature": True},
        {"scale": "cosine", "learn_temperature": True},
    ],
)
def test_fast_gradcheck_with_scaling(kwargs):
    block = make_block(2, **kwargs)
    names = [n for n, _ in block.named_parameters()]
    x = torch.randn(1, 2, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in block.parameters()]

    def fn(inp, *ps):
        return torch.func.functional_call(block, dict(zip(names, ps, strict=True)), (inp,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-5)


def test_fast_is_close_to_reference_in_float32_with_saturated_energies():
    torch.manual_seed(3)
    block = FoldedAttention3d(16)
    with torch.no_grad():
        block.beta.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
    x = torch.randn(1, 16, 6, 8, 5)  # unscaled energies in the hundreds: saturated softmaxes
    with torch.no_grad():
        assert max(m.max() for m in block.affinities(x).values()) > 0.99
        torch.testing.assert_close(
            block(x), folded_attention_reference(block, x), rtol=1e-4, atol=1e-4
        )


# --------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_softmax_has_no_subnormals_and_matches_softmax(dtype):
    torch.manual_seed(0)
    energy = (torch.randn(3, 32, 32) * 200).to(dtype)  # spans far more than exp's range
    energy[0, 0] = torch.linspace(0, -120, 32, dtype=dtype)  # values near every cutoff
    a = row_softmax(energy)
    ref = torch.softmax(energy.double(), dim=-1)
    assert not subnormal(a).any()
    assert subnormal(torch.softmax(energy.float(), -1)).any()  # torch's softmax does have them
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 32, dtype=dtype))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(a.double(), ref, rtol=0, atol=32 * eps**3 + 4 * eps)
    kept = a > 0
    assert torch.all(ref[~kept] < eps**3)  # only entries below eps^3 of the row max were cut


def test_row_softmax_gradient_matches_softmax():
    energy = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 5, 7, dtype=torch.float64)
    (g_ours,) = torch.autograd.grad((row_softmax(energy) * weight).sum(), energy)
    (g_ref,) = torch.autograd.grad((torch.softmax(energy, -1) * weight).sum(), energy)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-14)


def test_saturated_block_has_no_subnormal_matrices():
    torch.manual_seed(0)
    block = FoldedAttention3d(8)
    with torch.no_grad():
        block.beta.fill_(1e-3)
    x = 30 * torch.randn(1, 8, 6, 5, 7)
    with torch.no_grad():
        aff = block.affinities(x)
        mats = block.effective_matrices(aff)
    for m in [*aff.values(), *mats.values()]:
        assert torch.isfinite(m).all() and not subnormal(m).any()


# --------------------------------------------------------------------------- products and threads
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("min_macs", [0, 2**62], ids=["onednn", "blas"])
def test_batched_product_matches_einsum(monkeypatch, batch, grad, min_macs):
    monkeypatch.setattr(fa, "ONEDNN_MIN_MACS", min_macs)
    torch.manual_seed(0)
    a = torch.randn(batch, 7, 40).mT.contiguous().mT  # strided operands, as in the block
    b_t = torch.randn(batch, 40, 5).mT
    bias = torch.randn(batch, 7, 1)
    ref = torch.einsum("bmk,bnk->bmn", a.double(), b_t.double()) + bias.double()
    with torch.set_grad_enabled(grad):
        out = batched_product(a.requires_grad_(grad), b_t, bias)
    assert out.shape == (batch, 7, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    assert out.requires_grad == grad


def test_intra_op_threads_caps_and_restores():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with intra_op_threads(1, torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with intra_op_threads(None, torch.device("cpu")):
            assert torch.get_num_threads() == 2
        with intra_op_threads(1, torch.device("meta")):
            assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="boom"), intra_op_threads(1, torch.device("cpu")):
            raise RuntimeError("boom")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize(
    ("pressure", "expected"), [("some avg10=55.00 avg60=1.00", True), ("some avg10=0.10", False)]
)
def test_cpu_contended_reads_cpu_pressure(tmp_path, monkeypatch, pressure, expected):
    path = tmp_path / "cpu"
    path.write_text(f"{pressure} avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00\n")
    monkeypatch.setattr(fa, "PRESSURE_FILE", str(path))
    monkeypatch.setattr(fa, "_contention_cache", (float("-inf"), not expected))
    monkeypatch.setattr(fa, "_stall_counter", None)  # first read: the 10 s average
    assert fa.cpu_contended() is expected
    path.write_text("garbage")  # cached for CONTENTION_CHECK_INTERVAL: not re-read
    assert fa.cpu_contended() is expected


@pytest.mark.parametrize(("stalled_us", "expected"), [(300_000, True), (20_000, False)])
def test_cpu_contended_uses_the_stall_counter_since_the_last_read(
    tmp_path, monkeypatch, stalled_us, expected
):
    """A competitor that started a second ago counts at once, whatever avg10 still says."""
    path = tmp_path / "cpu"
    avg10 = 0.0 if expected else 90.0  # the 10 s average says the opposite
    path.write_text(f"some avg10={avg10} avg60=0 avg300=0 total={stalled_us}\n")
    monkeypatch.setattr(fa, "PRESSURE_FILE", str(path))
    now = fa.time.monotonic()
    monkeypatch.setattr(fa, "_stall_counter", (now - 1.0, 0))  # read one second ago
    monkeypatch.setattr(fa, "_contention_cache", (float("-inf"), not expected))
    assert fa.cpu_contended() is expected  # 30% or 2% of the last second


def test_a_stale_stall_counter_falls_back_to_the_ten_second_average(tmp_path, monkeypatch):
    path = tmp_path / "cpu"
    path.write_text("some avg10=50.00 avg60=0 avg300=0 total=0\n")
    monkeypatch.setattr(fa, "PRESSURE_FILE", str(path))
    monkeypatch.setattr(fa, "_stall_counter", (fa.time.monotonic() - 60.0, 0))
    monkeypatch.setattr(fa, "_contention_cache", (float("-inf"), False))
    assert fa.cpu_contended() is True


@pytest.mark.parametrize(
    ("cpu_threads", "contended", "expected"),
    [("auto", True, 1), ("auto", False, 2), (None, True, 2), (1, False, 1)],
)
def test_cpu_threads_option(monkeypatch, cpu_threads, contended, expected):
    seen = []

    def recording_softmax(energy):
        seen.append(torch.get_num_threads())
        return row_softmax(energy)

    monkeypatch.setattr(fa, "cpu_contended", lambda: contended)
    monkeypatch.setattr(fa, "row_softmax", recording_softmax)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        block = FoldedAttention3d(3, cpu_threads=cpu_threads)
        block(torch.randn(1, 3, 2, 3, 4))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert seen == [expected] * 4


# --------------------------------------------------------------------------- options and errors
def test_scale_none_alias_and_repr():
    block = FoldedAttention3d(4, scale="none")
    assert block.scale is None
    assert "scale=None" in repr(block) and "cpu_threads='auto'" in repr(block)
    assert "log_temperature" not in dict(block.named_parameters())
    learned = FoldedAttention3d(4, learn_temperature=True)
    assert torch.equal(learned.log_temperature, torch.zeros(4))


def test_sqrt_scale_divides_by_the_contracted_length():
    block = make_block(3, scale="sqrt")
    plain = make_block(3)
    x = torch.randn(1, 3, 2, 3, 4, dtype=torch.float64)
    n, c = 2 * 3 * 4, 3
    lengths = {"D": n * c / 2, "H": n * c / 3, "W": n * c / 4, "C": n}
    with torch.no_grad():
        scaled, unscaled = block.affinities(x), plain.affinities(x)
    for a, length in lengths.items():
        # softmax(E / s) = normalise(softmax(E) ** (1 / s))
        expected = unscaled[a] ** (1 / length**0.5)
        expected = expected / expected.sum(-1, keepdim=True)
        torch.testing.assert_close(scaled[a], expected, rtol=1e-9, atol=1e-12)


def test_cosine_energies_are_bounded_and_invariant_to_feature_scale():
    block = make_block(3, scale="cosine")
    x = torch.randn(1, 3, 3, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        t, p = block.theta(x), block.phi(x)
        energies = fa.cosine_energies(t, p)
        scaled = fa.cosine_energies(7.0 * t, 0.1 * p)
        affinities = block.affinities(x)
    for a, energy in energies.items():
        assert energy.abs().max() <= 1.0 + 1e-12
        torch.testing.assert_close(scaled[a], energy)
        # softmax(10 cos): no weight exceeds exp(20) times another one in its row
        ratio = affinities[a].amax(-1) / affinities[a].amin(-1)
        assert ratio.max() <= torch.exp(torch.tensor(2 * fa.COSINE_SCALE)) * (1 + 1e-9)
    # one row by hand: D row 1 against every D slice
    rows_t, rows_p = t[0].transpose(0, 1).reshape(3, -1), p[0].transpose(0, 1).reshape(3, -1)
    cos = torch.nn.functional.cosine_similarity(rows_t[1:2], rows_p, dim=-1)
    torch.testing.assert_close(energies["D"][0, 1], cos)


def test_cosine_rows_do_not_saturate_where_unscaled_rows_do():
    torch.manual_seed(3)
    plain, cosine = FoldedAttention3d(16), FoldedAttention3d(16, scale="cosine")
    cosine.load_state_dict(plain.state_dict())
    x = 10.0 * torch.randn(1, 16, 6, 8, 5)
    with torch.no_grad():
        saturated, spread = plain.affinities(x), cosine.affinities(x)
    assert saturated["D"].amax(-1).mean() > 0.99
    assert spread["D"].amax(-1).mean() < 0.9


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"learn_temperature": 1}, TypeError, "learn_temperature must be a bool, got 1"),
        ({"cpu_threads": 0}, ValueError, "cpu_threads must be a positive integer, got 0"),
        ({"cpu_threads": "many"}, ValueError, "cpu_threads must be a positive integer"),
        ({"scale": "Sqrt"}, ValueError, "scale must be None, 'none', 'sqrt', 'cosine' or a"),
        ({"scale": True}, ValueError, "scale must be None, 'none', 'sqrt', 'cosine' or a"),
    ],
)
def test_bad_new_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        FoldedAttention3d(4, **kwargs)


def test_scale_reaches_the_network_and_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    kwargs = {"scale": "sqrt", "learn_temperature": True}
    net = build_model("fanet-seg", features=(8, 8, 8, 8, 16), attention_kwargs=kwargs)
    assert net.attention.scale == "sqrt" and net.attention.learn_temperature
    with torch.no_grad():
        net.attention.beta.fill_(0.5)
        net.attention.log_temperature.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    net.eval()
    path = save_checkpoint(tmp_path / "m.pt", net)
    raw = torch.load(path, weights_only=True)
    assert raw["config"]["attention_kwargs"] == kwargs
    assert "attention.log_temperature" in raw["state_dict"]
    model, _ = load_checkpoint(path)
    assert model.attention.scale == "sqrt"
    x = torch.randn(1, 3, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))


# --------------------------------------------------------------------------- shipped weights
def shipped_input(model):
    generator = torch.Generator().manual_seed(13)
    return torch.randn(1, model.in_channels, 56, 48, 64, generator=generator)


@pytest.mark.parametrize("name", ["fanet-qsm", "fanet-seg", "qsmnet", "unet-seg"])
def test_shipped_checkpoints_give_their_recorded_outputs(name):
    """Outputs recorded with the literal FA implementation in every block.

    ``data/shipped_outputs.pt`` holds, for a fixed random input, every 4th voxel of the output,
    the bottleneck after attention and the output's sum (``scripts/record_shipped_outputs.py``).
    """
    recorded = torch.load(SHIPPED, weights_only=True)[name]
    model, _ = load_checkpoint(WEIGHTS / f"{name}.pt")
    model.eval()
    x = shipped_input(model)
    with torch.no_grad():
        out, bottleneck = model(x), model.bottleneck(x)
    torch.testing.assert_close(out[..., ::4, ::4, ::4], recorded["output"], rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(bottleneck, recorded["bottleneck"], rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(out.double().sum(), recorded["output_sum"], rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("name", ["fanet-qsm", "fanet-seg"])
def test_shipped_fa_blocks_fast_equals_reference_in_float64(name):
    model, _ = load_checkpoint(WEIGHTS / f"{name}.pt")
    blocks = [m for m in model.modules() if isinstance(m, FoldedAttention3d)]
    assert blocks
    for block in blocks:  # every level's block
        block = block.double().eval()
        torch.manual_seed(0)
        x = torch.randn(1, block.channels, 4, 3, 4, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(
                block(x), folded_attention_reference(block, x), rtol=0, atol=1e-10
            )


def test_option_table_covers_both_scale_modes_and_variants():
    seen = {(k.get("scale"), k.get("variant", "authors")) for k in OPTIONS}
    assert set(itertools.product([None, "sqrt"], ["authors", "pure"])) <= seen
