"""The uniform average of checkpoints (``models.weight_average``)."""

from __future__ import annotations

import pytest
import torch

from napari_fanet.models import build_model, save_checkpoint
from napari_fanet.models.weight_average import average_checkpoints

SMALL = (8, 8, 8, 8, 16)


def _saved(path, seed, *, extra=None, **overrides):
    torch.manual_seed(seed)
    model = build_model("fanet-seg", features=SMALL, **overrides)
    save_checkpoint(path, model, epoch=seed, extra=extra)
    return model


def test_every_weight_is_the_mean_of_the_inputs(tmp_path):
    models = [_saved(tmp_path / f"{i}.pt", i) for i in range(3)]
    averaged, _ = average_checkpoints([tmp_path / f"{i}.pt" for i in range(3)])
    states = [m.state_dict() for m in models]
    for key, value in averaged.state_dict().items():
        expected = sum(s[key] for s in states) / 3
        assert torch.allclose(value, expected, atol=1e-6), key
    assert not averaged.training


def test_the_average_of_one_network_with_itself_is_that_network(tmp_path):
    model = _saved(tmp_path / "a.pt", 0)
    _saved(tmp_path / "b.pt", 0)
    averaged, _ = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    x = torch.randn(1, 3, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(averaged(x), model.eval()(x), atol=1e-5)


def test_extra_keeps_what_describes_the_inputs_and_lists_the_inputs(tmp_path):
    shared = {"voxel_size": [1.0, 1.0, 1.0], "best": None, "scheduler": {"last_epoch": 5}}
    _saved(tmp_path / "a.pt", 0, extra={**shared, "best": 0.5, "train_config": {"steps": 5}})
    _saved(tmp_path / "b.pt", 1, extra={**shared, "scheduler": {"last_epoch": 9}})
    _, extra = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert extra["voxel_size"] == [1.0, 1.0, 1.0]
    assert not {"train_config", "best", "scheduler"} & set(extra)  # training state
    assert extra["averaged_from"] == [
        {"file": str(tmp_path / "a.pt"), "step": 0, "train_config": {"steps": 5}},
        {"file": str(tmp_path / "b.pt"), "step": 1, "train_config": None},
    ]


@pytest.mark.parametrize(
    ("extra_b", "shown"),
    [
        ({"voxel_size": [2.0, 2.0, 2.0]}, r"b\.pt: \[2\.0, 2\.0, 2\.0\]"),
        ({}, r"b\.pt: \(none\)"),
    ],
)
def test_refuses_networks_whose_inputs_differ(tmp_path, extra_b, shown):
    _saved(tmp_path / "a.pt", 0, extra={"voxel_size": [1.0, 1.0, 1.0]})
    _saved(tmp_path / "b.pt", 1, extra=extra_b)
    with pytest.raises(ValueError, match=r"expected the same extra\['voxel_size'\] .*" + shown):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])


def test_refuses_fewer_than_two_checkpoints(tmp_path):
    _saved(tmp_path / "a.pt", 0)
    with pytest.raises(ValueError, match="at least two checkpoints, got 1"):
        average_checkpoints([tmp_path / "a.pt"])


def test_refuses_checkpoints_of_different_networks(tmp_path):
    _saved(tmp_path / "a.pt", 0)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "b.pt", build_model("unet-seg", features=SMALL))
    with pytest.raises(ValueError, match=r"b\.pt: expected the model config of .*a\.pt"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])


def test_refuses_a_missing_file(tmp_path):
    _saved(tmp_path / "a.pt", 0)
    with pytest.raises(FileNotFoundError, match=r"checkpoint file not found: .*none\.pt"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "none.pt"])
