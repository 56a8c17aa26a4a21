"""``resume`` continues the checkpoint's own model, says what differs, refuses unusable state,
and every start removes the temporaries a killed save left behind (issue 14)."""

import logging

import pytest
import torch

from napari_fanet.engine.config import TrainConfig
from napari_fanet.engine.train import run_training
from napari_fanet.models import read_checkpoint
from napari_fanet.tasks.subjects import list_subjects, load_seg_subject

TINY = dict(features=(8, 8, 8, 8, 16), batch_size=1, patch_size=(16, 16, 16), device="cpu")


@pytest.fixture
def seg_train(ms_dataset):
    return [load_seg_subject(p) for p in list_subjects(ms_dataset, "segmentation")[:1]]


@pytest.fixture
def run_dir(tmp_path, seg_train):
    config = TrainConfig(model="unet-seg", steps=1, val_every=0, **TINY)
    list(run_training(config, seg_train, [], tmp_path / "run"))
    return tmp_path / "run"


def test_a_fresh_start_removes_stale_temporaries(tmp_path, seg_train, caplog):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".best.pt.00112233aabb.tmp"
    stale.write_bytes(b"partial")
    other = out / "notes.tmp"
    other.write_text("mine")
    config = TrainConfig(model="unet-seg", steps=1, val_every=0, **TINY)
    with caplog.at_level(logging.WARNING, logger="napari_fanet.engine.train"):
        list(run_training(config, seg_train, [], out))
    assert not stale.exists() and other.exists()
    assert "removed .best.pt.00112233aabb.tmp, left by an interrupted checkpoint write" in (
        caplog.text
    )


def test_resume_builds_the_checkpoints_model(run_dir, seg_train):
    wider = {**TINY, "features": (16,) * 5}
    config = TrainConfig(model="fanet-seg", steps=2, val_every=0, **wider)
    events = list(run_training(config, seg_train, [], run_dir, resume=True))
    assert events[0]["model"] == "unet-seg" and events[0]["resumed"]
    assert len(events[0]["notes"]) == 2
    assert read_checkpoint(run_dir / "last.pt")["config"]["features"] == [8, 8, 8, 8, 16]


def test_resume_refuses_an_unusable_optimiser_state(run_dir, seg_train):
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    ckpt["optimizer"] = {"state": {}, "param_groups": []}
    torch.save(ckpt, run_dir / "last.pt")
    config = TrainConfig(model="unet-seg", steps=2, val_every=0, **TINY)
    with pytest.raises(
        ValueError,
        match=r"last\.pt: cannot resume, expected the optimiser and scheduler state of a "
        r"training run, got an unusable one \(ValueError: ",
    ):
        list(run_training(config, seg_train, [], run_dir, resume=True))


def test_resume_refuses_weights_that_do_not_match_their_config(run_dir, seg_train):
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in list(ckpt["state_dict"].items())[1:]}
    torch.save(ckpt, run_dir / "last.pt")
    config = TrainConfig(model="unet-seg", steps=2, val_every=0, **TINY)
    with pytest.raises(ValueError, match=r"last\.pt: weights do not match their own config: "):
        list(run_training(config, seg_train, [], run_dir, resume=True))
