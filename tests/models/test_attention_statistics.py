"""Tests for models.attention_statistics."""

from __future__ import annotations

import math

import pytest
import torch

from napari_fanet.models import FoldedAttention3d, capture_affinities
from napari_fanet.models.attention_statistics import attention_statistics, row_entropy


def test_row_entropy_of_one_hot_and_uniform_rows() -> None:
    one_hot = torch.eye(4).unsqueeze(0)
    uniform = torch.full((1, 4, 4), 0.25)
    assert torch.equal(row_entropy(one_hot), torch.zeros(1, 4, dtype=torch.float64))
    torch.testing.assert_close(
        row_entropy(uniform), torch.full((1, 4), math.log(4), dtype=torch.float64)
    )


def test_row_entropy_refuses_non_square_matrices() -> None:
    with pytest.raises(
        ValueError, match=r"expected square affinity matrices \(\.\.\., L, L\), got \(2, 3\)"
    ):
        row_entropy(torch.ones(2, 3))


def test_statistics_of_a_captured_block() -> None:
    torch.manual_seed(0)
    block = FoldedAttention3d(4, scale="sqrt").eval()
    with torch.no_grad():
        block.beta.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    x = torch.randn(1, 4, 3, 5, 2)
    with capture_affinities(block) as cap, torch.no_grad():
        block(x)
    stats = attention_statistics(cap.last())
    assert [s.axis for s in stats] == ["D", "H", "W", "C"]
    assert [s.length for s in stats] == [3, 5, 2, 4]
    assert [s.beta for s in stats] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    for s in stats:
        assert 0.0 <= s.relative_entropy <= 1.0 + 1e-9
        assert 1.0 / s.length - 1e-9 <= s.max_weight <= 1.0 + 1e-9
    d = cap.last().affinities["D"]
    assert stats[0].entropy == pytest.approx(float(row_entropy(d).mean()))
