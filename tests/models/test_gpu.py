"""CUDA checks (marker ``gpu``; run with ``pytest -m gpu`` on a machine with a GPU)."""

import pytest
import torch

from napari_fanet.models import FoldedAttention3d, build_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_fast_and_literal_agree_on_cuda_and_with_cpu():
    torch.manual_seed(0)
    fast = FoldedAttention3d(32).double()
    with torch.no_grad():
        fast.beta.copy_(torch.tensor([0.3, -0.4, 0.5, 0.2]))
    literal = FoldedAttention3d(32, implementation="literal").double()
    literal.load_state_dict(fast.state_dict())
    x = torch.randn(2, 32, 8, 12, 6, dtype=torch.float64) * 0.2
    cpu = literal(x)
    torch.testing.assert_close(fast.cuda()(x.cuda()).cpu(), cpu, rtol=0, atol=1e-10)
    torch.testing.assert_close(literal.cuda()(x.cuda()).cpu(), cpu, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_softmax_stays_float32_and_finite(dtype):
    torch.manual_seed(0)
    module = FoldedAttention3d(64).cuda()
    with torch.no_grad():
        module.beta.fill_(0.5)
    x = 100 * torch.randn(2, 64, 8, 8, 8, device="cuda")
    with torch.autocast("cuda", dtype=dtype), torch.no_grad():
        aff = module.affinities(x)
        out = module(x)
    assert all(m.dtype == torch.float32 for m in aff.values())
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize(
    "name", ["fanet-seg", "da-seg", "rsa-seg", "sa-seg", "ag-seg", "fanet-qsm"]
)
def test_models_train_step_on_cuda_with_autocast(name):
    torch.manual_seed(0)
    net = build_model(name, features=(16, 16, 16, 16, 16)).cuda()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(2, net.config.in_channels, 32, 48, 24, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = net(x).float().square().mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
