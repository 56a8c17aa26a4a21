import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_fanet.metrics import label_lesions
from napari_fanet.tasks.losses import IGNORE_INDEX, blob_dice_loss, qsm_loss, segmentation_loss


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


def _two_lesions():
    """A large (27-voxel) and a small (1-voxel) lesion, with their component labels."""
    target = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    target[0, 1:4, 1:4, 1:4] = 1
    target[0, 6, 6, 6] = 1
    blobs = torch.from_numpy(label_lesions(target[0].numpy() == 1, min_size=1)[0][None])
    return target, blobs.long()


def test_blob_loss_matches_hand_computation_per_lesion():
    torch.manual_seed(1)
    logits = torch.randn(1, 2, 8, 8, 8)
    target, blobs = _two_lesions()
    target[0, 0, 7, 7] = IGNORE_INDEX  # unlabelled: in no term
    p = torch.softmax(logits, 1)[0, 1]
    labelled = target[0] != IGNORE_INDEX
    background = (p * (labelled & (blobs[0] == 0))).sum()
    terms = []
    for i in (1, 2):
        inside = blobs[0] == i
        inter = p[inside].sum()
        terms.append(1 - (2 * inter + 1e-5) / (background + inter + inside.sum() + 1e-5))
    torch.testing.assert_close(blob_dice_loss(logits, target, blobs), torch.stack(terms).mean())


def test_blob_loss_of_one_lesion_is_the_soft_dice():
    torch.manual_seed(2)
    logits = torch.randn(1, 2, 6, 6, 6)
    target = torch.zeros(1, 6, 6, 6, dtype=torch.long)
    target[0, 2:4, 2:5, 1:3] = 1
    p = torch.softmax(logits, 1)[:, 1]
    fg = (target == 1).float()
    dice = 1 - (2 * (p * fg).sum() + 1e-5) / (p.sum() + fg.sum() + 1e-5)
    torch.testing.assert_close(blob_dice_loss(logits, target, target.clone()), dice)


def test_blob_loss_weighs_a_missed_small_lesion_as_much_as_a_missed_large_one():
    target, blobs = _two_lesions()
    found = F.one_hot(target, 2).permute(0, 4, 1, 2, 3).float() * 40 - 20
    assert blob_dice_loss(found, target, blobs).item() < 1e-4
    miss_small, miss_large = found.clone(), found.clone()
    miss_small[0, :, 6, 6, 6] = torch.tensor([20.0, -20.0])
    miss_large[0, :, 1:4, 1:4, 1:4] = torch.tensor([20.0, -20.0]).view(2, 1, 1, 1)
    small = blob_dice_loss(miss_small, target, blobs).item()
    large = blob_dice_loss(miss_large, target, blobs).item()
    assert small == pytest.approx(0.5, abs=1e-3) and large == pytest.approx(0.5, abs=1e-3)

    # the voxel-wise soft Dice over the patch barely notices the small lesion
    def voxel_dice(logits):
        p, fg = torch.softmax(logits, 1)[:, 1], (target == 1).float()
        return (1 - 2 * (p * fg).sum() / (p.sum() + fg.sum())).item()

    assert voxel_dice(miss_small) < 0.05 and voxel_dice(miss_large) > 0.9
    # a false positive enters every lesion's score, and weighs most on the small lesion's
    false_positive = found.clone()
    false_positive[0, :, 6, 0, 0] = torch.tensor([-20.0, 20.0])
    expected = ((1 - 2 / 3) + (1 - 54 / 55)) / 2
    assert blob_dice_loss(false_positive, target, blobs).item() == pytest.approx(expected, 1e-4)
    assert voxel_dice(false_positive) < expected / 5


def test_blob_loss_without_lesions_is_zero_with_a_gradient():
    logits = torch.randn(2, 2, 3, 3, 3, requires_grad=True)
    zeros = torch.zeros(2, 3, 3, 3, dtype=torch.long)
    loss = blob_dice_loss(logits, zeros, zeros)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_blob_loss_errors():
    target, blobs = _two_lesions()
    with pytest.raises(ValueError, match=r"logits must have shape \(B, 2, X, Y, Z\)"):
        blob_dice_loss(torch.randn(1, 1, 8, 8, 8), target, blobs)
    with pytest.raises(
        ValueError, match=r"blobs must have shape \(1, 8, 8, 8\), got \(1, 8, 8, 7\)"
    ):
        blob_dice_loss(torch.randn(1, 2, 8, 8, 8), target, blobs[..., :7])
    with pytest.raises(ValueError, match=r"target must have shape \(1, 8, 8, 8\)"):
        blob_dice_loss(torch.randn(1, 2, 8, 8, 8), target[..., :7], blobs)
    with pytest.raises(ValueError, match="does not call lesion"):
        blob_dice_loss(torch.randn(1, 2, 8, 8, 8), torch.zeros_like(target), blobs)
