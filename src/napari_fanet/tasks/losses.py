"""Training losses: weighted cross-entropy + soft Dice, per-lesion Dice (segmentation), QSMnet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: Label value of voxels that carry no annotation (sparse scribbles); they do not enter losses.
IGNORE_INDEX = 255


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_weights: Sequence[float] = (1.0, 3.0),
    dice_weight: float = 1.0,
    smooth: float = 1e-5,
) -> torch.Tensor:
    """Weighted cross-entropy plus soft Dice of the lesion class, ignoring unlabelled voxels.

    Parameters
    ----------
    logits : torch.Tensor
        Shape ``(B, 2, X, Y, Z)``: background and lesion logits.
    target : torch.Tensor
        Shape ``(B, X, Y, Z)``, integer: 0 background, 1 lesion, :data:`IGNORE_INDEX` unlabelled.
    class_weights : (float, float)
        Cross-entropy weights of background and lesion (lesions are rare).
    dice_weight : float
        Weight of the soft-Dice term (computed over the whole batch, labelled voxels only).
    smooth : float
        Additive smoothing of the Dice ratio.

    Returns
    -------
    torch.Tensor
        Scalar loss. Zero (with a gradient path) when no voxel is labelled.
    """
    if logits.ndim != 5 or logits.shape[1] != 2:
        raise ValueError(f"logits must have shape (B, 2, X, Y, Z), got {tuple(logits.shape)}")
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target must have shape {tuple(logits.shape[:1] + logits.shape[2:])}, "
            f"got {tuple(target.shape)}"
        )
    target = target.long()
    valid = target != IGNORE_INDEX
    if not bool(valid.any()):
        return logits.sum() * 0.0
    weight = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)
    ce = F.cross_entropy(logits.float(), target, weight=weight.float(), ignore_index=IGNORE_INDEX)
    prob = torch.softmax(logits.float(), dim=1)[:, 1]  # (B, X, Y, Z)
    fg = (target == 1) & valid
    inter = (prob * fg).sum()
    denom = (prob * valid).sum() + fg.sum()
    dice = 1.0 - (2.0 * inter + smooth) / (denom + smooth)
    return ce + dice_weight * dice


def blob_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, blobs: torch.Tensor, *, smooth: float = 1e-5
) -> torch.Tensor:
    """Mean over reference lesions of a soft Dice loss that sees one lesion at a time.

    The "blob loss" idea (Kofler et al., 2023): each reference lesion ``i`` is scored alone, on
    the labelled voxels that belong to no other lesion, so a small lesion weighs as much as a
    large one, and the lesion probability on background voxels (false positives) enters every
    lesion's denominator. For lesion ``i`` with soft intersection ``I_i`` (the lesion
    probability summed over its voxels), size ``S_i`` and background mass ``P_0`` (the lesion
    probability summed over labelled voxels of no lesion)::

        loss_i = 1 - (2 I_i + smooth) / (P_0 + I_i + S_i + smooth)

    Parameters
    ----------
    logits : torch.Tensor
        Shape ``(B, 2, X, Y, Z)``: background and lesion logits.
    target : torch.Tensor
        Shape ``(B, X, Y, Z)``, integer: 0 background, 1 lesion, :data:`IGNORE_INDEX` unlabelled
        (unlabelled voxels enter no term).
    blobs : torch.Tensor
        Shape ``(B, X, Y, Z)``, integer: 0 outside lesions, ``1..K_b`` the lesions of patch ``b``
        (for example the 26-connected components of ``target == 1``).
    smooth : float
        Additive smoothing of each Dice ratio.

    Returns
    -------
    torch.Tensor
        Scalar: the mean over every lesion of the batch. Zero (with a gradient path) when the
        batch holds no lesion.

    Raises
    ------
    ValueError
        Mismatched shapes, or a lesion label on a voxel that the target does not call lesion.
    """
    if logits.ndim != 5 or logits.shape[1] != 2:
        raise ValueError(f"logits must have shape (B, 2, X, Y, Z), got {tuple(logits.shape)}")
    expected = tuple(logits.shape[:1] + logits.shape[2:])
    for name, tensor in (("target", target), ("blobs", blobs)):
        if tuple(tensor.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(tensor.shape)}")
    blobs = blobs.long()
    target = target.long()
    if bool(((blobs > 0) & (target != 1)).any()):
        raise ValueError("blobs labels voxels that the target does not call lesion (target != 1)")
    prob = torch.softmax(logits.float(), dim=1)[:, 1]  # (B, X, Y, Z)
    labelled = (target != IGNORE_INDEX).to(prob.dtype)
    terms = []
    for b in range(prob.shape[0]):
        count = int(blobs[b].max())
        if count == 0:
            continue
        index = blobs[b].reshape(-1)
        mass = torch.zeros(count + 1, dtype=prob.dtype, device=prob.device)
        mass = mass.index_add(0, index, (prob[b] * labelled[b]).reshape(-1))  # (K + 1,)
        size = torch.bincount(index, minlength=count + 1).to(prob.dtype)  # (K + 1,)
        inter, sizes = mass[1:], size[1:]  # (K,)
        present = sizes > 0  # labels need not be consecutive
        ratio = (2.0 * inter + smooth) / (mass[0] + inter + sizes + smooth)
        terms.append(1.0 - ratio[present])
    if not terms:
        return logits.sum() * 0.0
    return torch.cat(terms).mean()


def _masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((a - b).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def _forward_diff(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.diff(x, dim=dim, append=x.narrow(dim, x.shape[dim] - 1, 1))


def qsm_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    dipole: torch.Tensor,
    *,
    weights: tuple[float, float, float] = (1.0, 1.0, 0.1),
) -> torch.Tensor:
    """QSMnet loss: L1 on susceptibility, L1 on the dipole-convolved maps, gradient L1.

    All terms are averaged inside ``mask``. The model term compares ``D * pred`` with
    ``D * target`` (both convolved with the same dipole kernel), as in QSMnet (Yoon et al. 2018).

    Parameters
    ----------
    pred, target : torch.Tensor
        Shape ``(B, 1, X, Y, Z)``: predicted and reference susceptibility (scaled units).
    mask : torch.Tensor
        Shape ``(B, 1, X, Y, Z)``, 0/1 brain mask.
    dipole : torch.Tensor
        Shape ``(B, 1, D', H', W')`` with ``D' >= D`` etc.: each sample's dipole kernel in
        k-space (unshifted), for the zero-padded size the convolution uses.
    weights : (float, float, float)
        Weights of the susceptibility, model and gradient terms.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    if pred.shape != target.shape or pred.shape != mask.shape or pred.ndim != 5:
        raise ValueError(
            "pred, target and mask must share one (B, 1, X, Y, Z) shape, got "
            f"{tuple(pred.shape)}, {tuple(target.shape)}, {tuple(mask.shape)}"
        )
    pred, target, mask = pred.float(), target.float(), mask.float()
    l_chi = _masked_l1(pred, target, mask)
    padded = dipole.shape[2:]
    if any(p < s for p, s in zip(padded, pred.shape[2:], strict=True)):
        raise ValueError(
            f"dipole kernel size {tuple(padded)} is smaller than the patch {tuple(pred.shape[2:])}"
        )

    def convolve(x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.fftn(x, s=padded, dim=(2, 3, 4))
        field = torch.fft.ifftn(spectrum * dipole, dim=(2, 3, 4)).real
        return field[..., : x.shape[2], : x.shape[3], : x.shape[4]]

    l_model = _masked_l1(convolve(pred * mask), convolve(target * mask), mask)
    l_grad = sum(
        _masked_l1(_forward_diff(pred, d), _forward_diff(target, d), mask) for d in (2, 3, 4)
    )
    return weights[0] * l_chi + weights[1] * l_model + weights[2] * l_grad
