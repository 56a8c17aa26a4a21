import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_fanet.tasks.losses import IGNORE_INDEX, qsm_loss, segmentation_loss


def test_segmentation_loss_matches_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 5, 3)
    target = (torch.rand(2, 4, 5, 3) > 0.7).long()
    target[0, 0] = IGNORE_INDEX
    valid = target != IGNORE_INDEX
    w = torch.tensor([1.0, 3.0])
    # weighted CE by hand: sum(w_y * nll) / sum(w_y) over labelled voxels
    logp = torch.log_softmax(logits, 1)
    t = target.clamp_max(1)
    nll = -logp.gather(1, t.unsqueeze(1)).squeeze(1)
    ce = (w[t] * nll)[valid].sum() / w[t][valid].sum()
    p = torch.softmax(logits, 1)[:, 1]
    fg = (target == 1).float()
    dice = 1 - (2 * (p * fg).sum() + 1e-5) / (p[valid].sum() + fg.sum() + 1e-5)
    torch.testing.assert_close(segmentation_loss(logits, target), ce + dice)


def test_segmentation_loss_ignores_unlabelled_and_handles_empty():
    logits = torch.randn(1, 2, 3, 3, 3, requires_grad=True)
    target = torch.full((1, 3, 3, 3), IGNORE_INDEX)
    loss = segmentation_loss(logits, target)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None
    target[0, 0, 0, 0] = 1
    other = logits.detach().clone()
    other[0, :, 1:] = 100 * torch.randn(2, 2, 3, 3)  # changes only unlabelled voxels' logits
    a = segmentation_loss(logits.detach(), target)
    b = segmentation_loss(other, target)
    assert a.item() != pytest.approx(0)
    # Dice denominator includes predictions on labelled voxels only, CE too: equal losses
    torch.testing.assert_close(a, b)


def test_perfect_prediction_scores_near_zero():
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3, 1:3] = 1
    logits = F.one_hot(target, 2).permute(0, 4, 1, 2, 3).float() * 40 - 20
    assert segmentation_loss(logits, target).item() < 1e-4


def test_qsm_loss_terms():
    torch.manual_seed(0)
    chi = torch.randn(2, 1, 6, 5, 4)
    mask = torch.ones_like(chi)
    dipole = torch.rand(2, 1, 8, 8, 6)
    assert qsm_loss(chi, chi, mask, dipole).item() == pytest.approx(0.0, abs=1e-7)
    other = chi + 0.5
    # constant shift: chi term 0.5, gradient terms ~0 in the interior (edges replicate -> 0)
    only_chi = qsm_loss(other, chi, mask, torch.zeros_like(dipole), weights=(1, 0, 0))
    assert only_chi.item() == pytest.approx(0.5, rel=1e-5)
    # model term against a numpy FFT reference with zero padding at the end of each axis
    got = qsm_loss(other, chi, mask, dipole, weights=(0, 1, 0)).item()
    diff = np.zeros((2, 1, 8, 8, 6))
    diff[..., :6, :5, :4] = (other - chi).numpy()
    conv = np.fft.ifftn(np.fft.fftn(diff, axes=(2, 3, 4)) * dipole.numpy(), axes=(2, 3, 4)).real
    assert got == pytest.approx(np.abs(conv[..., :6, :5, :4]).mean(), rel=1e-4)


def test_loss_errors():
    with pytest.raises(ValueError, match=r"logits must have shape \(B, 2, X, Y, Z\)"):
        segmentation_loss(torch.randn(1, 3, 2, 2, 2), torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"target must have shape \(1, 2, 2, 2\)"):
        segmentation_loss(torch.randn(1, 2, 2, 2, 2), torch.zeros(1, 2, 2, 3))
    x = torch.zeros(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="must share one"):
        qsm_loss(x, x[..., :3], x, torch.ones(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="smaller than the patch"):
        qsm_loss(x, x, x, torch.ones(1, 1, 4, 4, 2))
