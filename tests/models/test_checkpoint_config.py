"""A checkpoint whose config or format is malformed is refused with one clear message."""

import pytest
import torch

from napari_fanet.models import build_model, load_checkpoint, read_checkpoint, save_checkpoint
from napari_fanet.models.checkpoint import model_from_checkpoint_config

TINY = (8, 8, 8, 8, 16)


@pytest.fixture
def good(tmp_path):
    return save_checkpoint(tmp_path / "good.pt", build_model("unet-seg", features=TINY))


def _rewrite(path, out, **changes):
    ckpt = torch.load(path, weights_only=True)
    ckpt.update(changes)
    torch.save(ckpt, out)
    return out


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ("unet-seg", r"a model config must be a dict, got str"),
        ({"name": "x", "task": "segmentation"}, r"missing 2 required positional arguments"),
        ({"name": "x", "task": "ct", "in_channels": 3, "out_channels": 2}, r"task must be one"),
        ({"name": "x", "task": "qsm", "in_channels": 1, "out_channels": 1, "depth": 3}, "depth"),
    ],
)
def test_read_checkpoint_refuses_a_malformed_config(good, tmp_path, config, match):
    bad = _rewrite(good, tmp_path / "bad.pt", config=config)
    with pytest.raises(
        ValueError,
        match=rf"bad\.pt: expected a model config of ModelConfig fields, got a malformed one "
        rf"\(.*{match}.*\); the checkpoint cannot be used$",
    ):
        read_checkpoint(bad)


def test_load_checkpoint_refuses_a_config_that_builds_no_network(good, tmp_path):
    config = {**read_checkpoint(good)["config"], "features": [8, 8]}
    bad = _rewrite(good, tmp_path / "bad.pt", config=config)
    ckpt = read_checkpoint(bad)  # well-formed fields...
    with pytest.raises(
        ValueError,
        match=r"bad\.pt: expected a model config that builds a network, got a malformed one "
        r"\(ValueError: features must have 5 entries",
    ):
        load_checkpoint(bad)  # ...that no network has
    with pytest.raises(ValueError, match=r"^somewhere\.pt: expected a model config that builds"):
        model_from_checkpoint_config(ckpt, "somewhere.pt")


@pytest.mark.parametrize("fmt", ["1", None, True, 1.5])
def test_read_checkpoint_refuses_a_format_that_is_not_an_integer(good, tmp_path, fmt):
    bad = _rewrite(good, tmp_path / "bad.pt", format=fmt)
    with pytest.raises(
        ValueError, match=r"bad\.pt is not a napari-fanet checkpoint: expected an integer format"
    ):
        read_checkpoint(bad)


def test_shipped_checkpoints_are_well_formed():
    from napari_fanet.engine.predict import shipped_weights

    for name, path in shipped_weights().items():
        assert read_checkpoint(path)["config"]["name"] == name


def test_copy_with_extra_merges_the_extra_and_keeps_the_rest(good, tmp_path):
    from napari_fanet.models.checkpoint import copy_with_extra

    torch.save({**torch.load(good, weights_only=True), "extra": {"voxel_size": [1, 1, 1]}}, good)
    out = copy_with_extra(good, tmp_path / "out.pt", {"roughness_target": 0.08})
    before, after = read_checkpoint(good), read_checkpoint(out)
    assert after["extra"] == {"voxel_size": [1, 1, 1], "roughness_target": 0.08}
    assert before["extra"] == {"voxel_size": [1, 1, 1]}  # the source is untouched
    for key in before["state_dict"]:
        assert torch.equal(before["state_dict"][key], after["state_dict"][key])
    assert {k: v for k, v in after.items() if k not in ("extra", "state_dict")} == {
        k: v for k, v in before.items() if k not in ("extra", "state_dict")
    }
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        copy_with_extra(tmp_path / "none.pt", tmp_path / "never.pt", {})
    assert not (tmp_path / "never.pt").exists()
