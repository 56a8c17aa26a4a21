"""FoldedAttention3d against an independent float64 einsum reference (FA_SPEC checks 1-7)."""

import itertools

import pytest
import torch

from napari_fanet.models.folded_attention import FoldedAttention3d

IMPLEMENTATIONS = ["fast", "literal"]
SHAPES = [(1, 3, 4, 5, 6), (2, 4, 1, 3, 2), (2, 2, 2, 1, 5), (1, 5, 3, 2, 1), (1, 1, 2, 2, 2)]


# --------------------------------------------------------------------------- reference
def projections(module, x):
    """theta(x), phi(x), g(x) written as einsums over the conv weights."""

    def proj(conv):
        w = conv.weight[:, :, 0, 0, 0]
        return torch.einsum("oc,bcdhw->bodhw", w, x) + conv.bias.view(1, -1, 1, 1, 1)

    return proj(module.theta), proj(module.phi), proj(module.g)


def reference_affinities(module, x, sign=-1, scale=None):
    t, p, _ = projections(module, x)
    n = x.shape[2] * x.shape[3] * x.shape[4]
    c = x.shape[1]
    energies = {
        "D": torch.einsum("bcdhw,bcehw->bde", t, p),
        "H": torch.einsum("bcdhw,bcdgw->bhg", t, p),
        "W": torch.einsum("bcdhw,bcdhv->bwv", t, p),
        "C": sign * torch.einsum("bcdhw,bedhw->bce", t, p),
    }
    if scale == "cosine":  # divide by the norms of the slices each energy contracts
        keep = {"D": "bcdhw->bd", "H": "bcdhw->bh", "W": "bcdhw->bw", "C": "bcdhw->bc"}
        for a, spec in keep.items():
            norm_t = torch.einsum(spec, t * t).sqrt()
            norm_p = torch.einsum(spec, p * p).sqrt()
            energies[a] = 10.0 * energies[a] / (norm_t[:, :, None] * norm_p[:, None, :])
    if scale == "sqrt":
        rows = {"D": n * c / x.shape[2], "H": n * c / x.shape[3], "W": n * c / x.shape[4]}
        rows["C"] = n
        energies = {a: e / rows[a] ** 0.5 for a, e in energies.items()}
    return {a: torch.softmax(e, dim=-1) for a, e in energies.items()}


def reference_matrices(module, affinities):
    if module.variant == "pure":
        return affinities
    out = {}
    for idx, a in enumerate("DHWC"):
        eye = torch.eye(affinities[a].shape[-1], dtype=torch.float64)
        out[a] = eye + module.beta[idx] * affinities[a]
    return out


def reference_output(module, x, **kw):
    """The explicit 4-way contraction Z = g(X) x_D M_D x_H M_H x_W M_W x_C M_C."""
    _, _, g = projections(module, x)
    m = reference_matrices(module, reference_affinities(module, x, **kw))
    return torch.einsum("bqQ,bkK,biI,bjJ,bQKIJ->bqkij", m["C"], m["D"], m["H"], m["W"], g)


APPLY = {
    "C": lambda m, y: torch.einsum("bqQ,bQkij->bqkij", m, y),
    "D": lambda m, y: torch.einsum("bkK,bqKij->bqkij", m, y),
    "H": lambda m, y: torch.einsum("biI,bqkIj->bqkij", m, y),
    "W": lambda m, y: torch.einsum("bjJ,bqkiJ->bqkij", m, y),
}


def make_module(c, impl="fast", seed=0, **kwargs):
    torch.manual_seed(seed)
    module = FoldedAttention3d(c, implementation=impl, **kwargs).double()
    with torch.no_grad():
        module.beta.copy_(torch.randn(4))
    return module


# --------------------------------------------------------------------------- check 1
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_and_row_sums(impl, shape):
    module = make_module(shape[1], impl)
    x = torch.randn(shape, dtype=torch.float64)
    assert module(x).shape == shape
    aff = module.affinities(x)
    b, c, d, h, w = shape
    assert {a: tuple(m.shape) for a, m in aff.items()} == {
        "D": (b, d, d),
        "H": (b, h, h),
        "W": (b, w, w),
        "C": (b, c, c),
    }
    for m in aff.values():
        torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:2], dtype=m.dtype))


# --------------------------------------------------------------------------- check 2
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_zero_gates_return_g_of_x(impl):
    module = FoldedAttention3d(4, implementation=impl).double()
    x = torch.randn(2, 4, 3, 5, 2, dtype=torch.float64)
    _, _, g = projections(module, x)
    assert torch.equal(module.beta, torch.zeros(4))
    if impl == "literal":
        assert torch.equal(module(x), module.g(x))
    torch.testing.assert_close(module(x), g, rtol=0, atol=1e-13)


# --------------------------------------------------------------------------- check 3
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("variant", ["authors", "pure"])
@pytest.mark.parametrize("shape", SHAPES)
def test_cascade_equals_four_way_contraction(impl, variant, shape):
    module = make_module(shape[1], impl, variant=variant)
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(module(x), reference_output(module, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"channel_sign": 1},
        {"scale": "sqrt"},
        {"channel_sign": 1, "scale": "sqrt"},
        {"scale": "cosine"},
        {"channel_sign": 1, "scale": "cosine"},
    ],
)
def test_options_match_reference(impl, kwargs):
    module = make_module(3, impl, **kwargs)
    x = torch.randn(2, 3, 4, 3, 5, dtype=torch.float64)
    ref = reference_output(
        module, x, sign=kwargs.get("channel_sign", -1), scale=kwargs.get("scale")
    )
    torch.testing.assert_close(module(x), ref, rtol=0, atol=1e-12)


def test_numeric_scale_multiplies_energies():
    module = make_module(3, scale=0.25)
    plain = make_module(3)
    x = torch.randn(1, 3, 2, 3, 4, dtype=torch.float64)
    aff = module.affinities(x)
    t, p, _ = projections(plain, x)
    e_w = torch.einsum("bcdhw,bcdhv->bwv", t, p)
    torch.testing.assert_close(aff["W"], torch.softmax(0.25 * e_w, -1))


def test_outer_residual_is_identity_at_init_and_adds_increments():
    module = FoldedAttention3d(3, outer_residual=True).double()
    x = torch.randn(1, 3, 4, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(module(x), x, rtol=0, atol=1e-13)
    with torch.no_grad():
        module.beta.copy_(torch.tensor([0.5, -1.0, 2.0, 0.3]))
    _, _, g = projections(module, x)
    torch.testing.assert_close(module(x), x + reference_output(module, x) - g, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- check 4
@pytest.mark.parametrize("variant", ["authors", "pure"])
def test_order_of_steps_does_not_matter(variant):
    module = make_module(3, variant=variant)
    x = torch.randn(2, 3, 4, 2, 5, dtype=torch.float64)
    _, _, g = projections(module, x)
    mats = reference_matrices(module, reference_affinities(module, x))
    expected = module(x)
    for order in itertools.permutations("DHWC"):
        y = g
        for a in order:
            y = APPLY[a](mats[a], y)
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- check 5
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_pure_variant_rank_one_weights_and_kronecker(impl):
    module = make_module(2, impl, variant="pure")
    x = torch.randn(1, 2, 3, 2, 2, dtype=torch.float64)
    z = module(x)
    _, _, g = projections(module, x)
    a = reference_affinities(module, x)
    _, c, d, h, w = x.shape
    for q, k, i, j in itertools.product(range(c), range(d), range(h), range(w)):
        weights = torch.einsum(
            "q,k,i,j->qkij", a["C"][0, q], a["D"][0, k], a["H"][0, i], a["W"][0, j]
        )
        torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
        torch.testing.assert_close(z[0, q, k, i, j], (weights * g[0]).sum(), rtol=0, atol=1e-12)
        factors = module.rank_one_factors(x, (q, k, i, j), effective=False)
        torch.testing.assert_close(factors["C"][0], a["C"][0, q])
        torch.testing.assert_close(factors["W"][0], a["W"][0, j])
    kron = torch.kron(torch.kron(torch.kron(a["C"][0], a["D"][0]), a["H"][0]), a["W"][0])
    torch.testing.assert_close(z[0].reshape(-1), kron @ g[0].reshape(-1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_effective_rank_one_factors_reproduce_output(impl):
    module = make_module(3, impl)
    x = torch.randn(2, 3, 2, 4, 3, dtype=torch.float64)
    z = module(x)
    _, _, g = projections(module, x)
    for pos in [(0, 0, 0, 0), (2, 1, 3, 2), (1, 0, 2, 1)]:
        f = module.rank_one_factors(x, pos)
        weights = torch.einsum("bq,bk,bi,bj->bqkij", f["C"], f["D"], f["H"], f["W"])
        torch.testing.assert_close(
            z[(slice(None), *pos)], (weights * g).sum((1, 2, 3, 4)), rtol=0, atol=1e-12
        )


# --------------------------------------------------------------------------- check 6
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_batch_independence(impl):
    module = make_module(3, impl)
    x = torch.randn(3, 3, 2, 4, 3, dtype=torch.float64)
    full = module(x)
    for b in range(3):
        torch.testing.assert_close(full[b : b + 1], module(x[b : b + 1]), rtol=0, atol=1e-13)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("variant", ["authors", "pure"])
def test_gradcheck_including_betas(impl, variant):
    module = make_module(2, impl, variant=variant)
    x = torch.randn(2, 2, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    params = tuple(module.parameters())

    def fn(inp, *ps):
        with torch.no_grad():
            for p, new in zip(module.parameters(), ps, strict=True):
                p.copy_(new)
        return torch.func.functional_call(
            module, {n: q for (n, _), q in zip(module.named_parameters(), ps, strict=True)}, (inp,)
        )

    inputs = (x, *[p.detach().clone().requires_grad_(True) for p in params])
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_betas_receive_gradient():
    module = make_module(2)
    x = torch.randn(1, 2, 3, 2, 2, dtype=torch.float64)
    module(x).square().sum().backward()
    assert module.beta.grad is not None and torch.all(module.beta.grad != 0)


# --------------------------------------------------------------------------- check 7
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("scale", [None, "sqrt", "cosine"])
def test_finite_in_float32_for_large_inputs(impl, scale):
    torch.manual_seed(1)
    module = FoldedAttention3d(8, implementation=impl, scale=scale)
    with torch.no_grad():
        module.beta.fill_(0.7)
    x = 100 * torch.randn(2, 8, 5, 6, 7)
    out = module(x)
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(m).all() for m in module.affinities(x).values())


# --------------------------------------------------------------------------- implementations
def test_fast_equals_literal_in_float32():
    torch.manual_seed(2)
    fast = FoldedAttention3d(16, implementation="fast")
    literal = FoldedAttention3d(16, implementation="literal")
    literal.load_state_dict(fast.state_dict())
    with torch.no_grad():
        fast.beta.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
        literal.beta.copy_(fast.beta)
    x = torch.randn(2, 16, 6, 8, 5) * 0.1
    torch.testing.assert_close(fast(x), literal(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [None, "cosine"])
def test_autocast_keeps_softmax_in_float32(scale):
    module = FoldedAttention3d(8, scale=scale)
    x = torch.randn(1, 8, 4, 4, 4) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        aff = module.affinities(x)
        out = module(x)
    assert all(m.dtype == torch.float32 for m in aff.values())
    assert torch.isfinite(out.float()).all()


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": 0}, "channels must be a positive integer, got 0"),
        ({"channels": 2.5}, "channels must be a positive integer"),
        ({"channels": 4, "variant": "folded"}, "variant must be 'authors' or 'pure'"),
        ({"channels": 4, "channel_sign": 0}, "channel_sign must be -1 or 1, got 0"),
        (
            {"channels": 4, "scale": -1.0},
            "scale must be None, 'none', 'sqrt', 'cosine' or a positive number",
        ),
        ({"channels": 4, "scale": "log"}, "scale must be None"),
        ({"channels": 4, "implementation": "cuda"}, "implementation must be 'fast' or 'literal'"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FoldedAttention3d(**kwargs)


def test_bad_inputs():
    module = FoldedAttention3d(4)
    with pytest.raises(ValueError, match=r"must be 5D \(B, C, D, H, W\), got 4D"):
        module(torch.randn(4, 3, 3, 3))
    with pytest.raises(ValueError, match="must have 4 channels"):
        module(torch.randn(1, 3, 3, 3, 3))
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor, got NoneType"):
        module(None)
    x = torch.randn(1, 4, 2, 3, 2)
    with pytest.raises(ValueError, match="outside the tensor: axis H has size 3"):
        module.rank_one_factors(x, (0, 0, 3, 0))
    with pytest.raises(ValueError, match=r"position must be \(q, k, i, j\)"):
        module.rank_one_factors(x, (0, 0, 0))
