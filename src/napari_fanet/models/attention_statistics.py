"""How much folded attention attends: entropy of the softmax rows and the gates of each block.

A softmax row that is one-hot (entropy 0) attends to one position only; a uniform row of length
``L`` has entropy ``log L``. The shipped blocks were first trained with unscaled energies, whose
rows saturate to one-hot; these numbers say whether a block's rows carry information.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from napari_fanet.models.folding import AXES
from napari_fanet.models.inspection import AffinityRecord


def row_entropy(affinity: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of every row of a softmax matrix.

    Parameters
    ----------
    affinity : torch.Tensor
        Shape ``(..., L, L)``, rows summing to one, entries >= 0.

    Returns
    -------
    torch.Tensor
        Shape ``(..., L)``, float64: ``-sum_j a_j log a_j`` (``0 log 0 = 0``).
    """
    a = affinity.detach().to(torch.float64)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"expected square affinity matrices (..., L, L), got {tuple(a.shape)}")
    return -torch.special.xlogy(a, a).sum(-1)


@dataclass(frozen=True)
class AxisStatistics:
    """Statistics of one axis's softmax rows in one block.

    Attributes
    ----------
    axis : str
        ``"D"``, ``"H"``, ``"W"`` or ``"C"``.
    length : int
        Row length ``L``.
    entropy : float
        Mean row entropy (nats).
    relative_entropy : float
        ``entropy / log L``: 0 for one-hot rows, 1 for uniform ones (0 when ``L == 1``).
    max_weight : float
        Mean over rows of the largest entry (1 for one-hot rows, ``1/L`` for uniform ones).
    beta : float
        The axis's gate.
    """

    axis: str
    length: int
    entropy: float
    relative_entropy: float
    max_weight: float
    beta: float


def attention_statistics(record: AffinityRecord) -> list[AxisStatistics]:
    """Row entropy, largest weight and gate of each axis of one captured forward pass.

    Parameters
    ----------
    record : AffinityRecord
        What :func:`~napari_fanet.models.capture_affinities` recorded for one block.

    Returns
    -------
    list of AxisStatistics
        One per axis, in the order D, H, W, C; means over rows and the batch.
    """
    out = []
    for index, axis in enumerate(AXES):
        a = record.affinities[axis]  # (B, L, L)
        length = int(a.shape[-1])
        entropy = float(row_entropy(a).mean())
        out.append(
            AxisStatistics(
                axis=axis,
                length=length,
                entropy=entropy,
                relative_entropy=entropy / math.log(length) if length > 1 else 0.0,
                max_weight=float(a.detach().amax(-1).to(torch.float64).mean()),
                beta=float(record.beta[index]),
            )
        )
    return out
