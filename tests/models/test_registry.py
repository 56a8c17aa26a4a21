"""build_model, ModelConfig and checkpoints that rebuild a model from the file alone."""

import os
from pathlib import Path

import pytest
import torch

from napari_fanet.models import (
    MODEL_CONFIGS,
    ModelConfig,
    build_model,
    load_checkpoint,
    model_from_config,
    read_checkpoint,
    save_checkpoint,
)

REQUIRED = ["unet-seg", "fanet-seg", "da-seg", "rsa-seg", "ag-seg", "sa-seg", "qsmnet",
            "fanet-qsm", "da-qsm", "rsa-qsm"]  # fmt: skip
TINY = (8, 8, 8, 8, 16)  # GroupNorm(8) needs >1 value per group at a 1x1x1 bottleneck


def test_required_names_registered():
    assert set(REQUIRED) <= set(MODEL_CONFIGS)


@pytest.mark.parametrize("name", REQUIRED)
def test_config_round_trip(name):
    net = build_model(name, features=TINY)
    cfg = net.config
    assert cfg.name == name
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.task == ("qsm" if "qsm" in name else "segmentation")


@pytest.mark.parametrize("name", ["fanet-seg", "ag-seg", "da-qsm"])
def test_checkpoint_rebuilds_identical_model(tmp_path, name):
    torch.manual_seed(0)
    net = build_model(name, features=TINY)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(2, net.config.in_channels, 16, 16, 16)
    net(x).mean().backward()
    opt.step()
    net.eval()
    path = save_checkpoint(tmp_path / "m.pt", net, optimizer=opt, epoch=3, metrics={"dice": 0.5})
    raw = torch.load(path, weights_only=True)  # loadable without unpickling code
    assert raw["epoch"] == 3 and raw["metrics"] == {"dice": 0.5}
    model, ckpt = load_checkpoint(path)
    assert model.config == net.config
    assert ckpt["optimizer"] is not None and ckpt["version"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    net = build_model("unet-seg", features=TINY)
    path = save_checkpoint(tmp_path / "m.pt", net, epoch=1)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, net, epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_overrides_and_errors():
    net = build_model("fanet-seg", features=TINY, attention_kwargs={"variant": "pure"})
    assert net.attention.variant == "pure"
    with pytest.raises(ValueError, match="unknown model 'fanet'; choose one of"):
        build_model("fanet")
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['width'\]"):
        build_model("fanet-seg", width=8)
    with pytest.raises(ValueError, match="task must be one of"):
        ModelConfig("x", "detection", 1, 1)
    with pytest.raises(ValueError, match=r"unknown model config keys \['colour'\]"):
        ModelConfig.from_dict({**MODEL_CONFIGS["qsmnet"].to_dict(), "colour": "red"})
    with pytest.raises(TypeError, match="a model config must be a dict"):
        model_from_config(["qsmnet"])


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable napari-fanet checkpoint") as info:
        read_checkpoint(junk)
    assert "written by napari-fanet train" in str(info.value)
    assert len(str(info.value).splitlines()) == 1  # torch's page of advice is cut to a sentence
    # a pickle that holds more than weights (torch.load's weights_only refusal)
    foreign = tmp_path / "foreign.pt"
    torch.save({"a": Path("x")}, foreign)
    with pytest.raises(ValueError, match=r"got one torch.load refuses \(UnpicklingError") as info:
        read_checkpoint(foreign)
    assert len(str(info.value).splitlines()) == 1 and "file an issue" not in str(info.value)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(1)}, plain)
    with pytest.raises(ValueError, match=r"expected a dict with keys \['format', 'config'"):
        read_checkpoint(plain)
    net = build_model("qsmnet", features=TINY)
    future = tmp_path / "future.pt"
    save_checkpoint(future, net)
    data = torch.load(future, weights_only=True)
    torch.save({**data, "format": 99}, future)
    with pytest.raises(ValueError, match="checkpoint format 99, newer"):
        read_checkpoint(future)
    mismatch = tmp_path / "mismatch.pt"
    torch.save({**data, "config": {**data["config"], "features": [16] * 5}}, mismatch)
    with pytest.raises(ValueError, match="do not match their own config"):
        load_checkpoint(mismatch)
    with pytest.raises(ValueError, match="has no ModelConfig"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Linear(2, 2))
    with pytest.raises(FileNotFoundError, match=r"folder .* does not exist"):
        save_checkpoint(tmp_path / "nofolder" / "x.pt", net)
