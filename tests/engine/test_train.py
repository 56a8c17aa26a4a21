import json

import pytest
import torch

from napari_fanet.engine.config import TrainConfig
from napari_fanet.engine.train import run_training
from napari_fanet.models import load_checkpoint
from napari_fanet.tasks.subjects import list_subjects, load_qsm_subject, load_seg_subject

TINY = dict(features=(8, 8, 8, 8, 16), batch_size=2, patch_size=(16, 16, 16), device="cpu")


def _subjects(root, task):
    load = load_seg_subject if task == "segmentation" else load_qsm_subject
    subs = [load(p) for p in list_subjects(root, task)]
    return subs[:2], subs[2:]


@pytest.mark.parametrize(
    ("model", "dataset"), [("fanet-seg", "ms_dataset"), ("fanet-qsm", "qsm_dataset")]
)
def test_training_events_log_and_checkpoints(tmp_path, request, model, dataset):
    task = "segmentation" if model.endswith("seg") else "qsm"
    train, val = _subjects(request.getfixturevalue(dataset), task)
    config = TrainConfig(model=model, steps=4, val_every=2, **TINY)
    events = list(run_training(config, train, val, tmp_path))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4]
    assert kinds.count("validation") == 2
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in events if e["event"] == "step")
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == events
    assert events[-1]["weights_fingerprint"] != 0
    for name in ("last.pt", "best.pt"):
        net, ckpt = load_checkpoint(tmp_path / name)
        assert net.config.name == model
    assert ckpt["extra"]["train_config"]["steps"] == 4
    if task == "qsm":
        assert ckpt["extra"]["preprocessing"]["chi_scale"] > 0


def test_resume_reproduces_an_uninterrupted_run(tmp_path, ms_dataset):
    train, _ = _subjects(ms_dataset, "segmentation")
    config = TrainConfig(model="unet-seg", steps=4, val_every=0, augment=True, **TINY)
    list(run_training(config, train, [], tmp_path / "full"))
    stop_after = iter([False, True])
    events = list(
        run_training(config, train, [], tmp_path / "split", should_stop=lambda: next(stop_after))
    )
    assert events[-1] == {"event": "stopped", "step": 2}
    assert load_checkpoint(tmp_path / "split" / "last.pt")[1]["epoch"] == 2
    resumed = list(run_training(config, train, [], tmp_path / "split", resume=True))
    assert resumed[0]["resumed"] and [e["step"] for e in resumed if e["event"] == "step"] == [3, 4]
    a = load_checkpoint(tmp_path / "full" / "last.pt")[0].state_dict()
    b = load_checkpoint(tmp_path / "split" / "last.pt")[0].state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_fine_tune_from_checkpoint_and_task_mismatch(tmp_path, ms_dataset, qsm_dataset):
    train, _ = _subjects(ms_dataset, "segmentation")
    config = TrainConfig(model="fanet-seg", steps=1, val_every=0, **TINY)
    list(run_training(config, train, [], tmp_path / "a"))
    tuned = TrainConfig(
        model="ignored-seg",
        steps=1,
        val_every=0,
        init_checkpoint=str(tmp_path / "a" / "last.pt"),
        **TINY,
    )
    events = list(run_training(tuned, train, [], tmp_path / "b"))
    assert events[0]["model"] == "fanet-seg"
    qsm_train, _ = _subjects(qsm_dataset, "qsm")
    with pytest.raises(ValueError, match="is for segmentation but the training data is qsm data"):
        list(run_training(config, qsm_train, [], tmp_path / "c"))
    with pytest.raises(ValueError, match="no training subjects"):
        list(run_training(config, [], [], tmp_path / "d"))
    blob = TrainConfig(model="qsmnet", steps=1, val_every=0, blob_weight=1.0, **TINY)
    with pytest.raises(ValueError, match=r"per-lesion loss needs a task with lesions .*got a qsm"):
        list(run_training(blob, qsm_train, [], tmp_path / "e"))
    assert not (tmp_path / "e" / "last.pt").exists()


@pytest.mark.parametrize("dropout_before", [True, False])
def test_a_fine_tune_keeps_the_starting_models_modality_dropout(
    tmp_path, ms_dataset, dropout_before
):
    """Users of a model trained for missing modalities may have FLAIR only: it stays so."""
    train, _ = _subjects(ms_dataset, "segmentation")
    first = TrainConfig(steps=1, val_every=0, modality_dropout=dropout_before, **TINY)
    list(run_training(first, train, [], tmp_path / "a"))
    tuned = TrainConfig(
        steps=1, val_every=0, init_checkpoint=str(tmp_path / "a" / "last.pt"), **TINY
    )
    list(run_training(tuned, train, [], tmp_path / "b"))
    extra = load_checkpoint(tmp_path / "b" / "last.pt")[1]["extra"]
    assert extra["modality_dropout"] is dropout_before
    assert extra["train_config"]["modality_dropout"] is dropout_before


def test_a_fine_tune_keeps_the_starting_models_roughness_target(tmp_path, ms_dataset):
    """The target describes the real scans the starting model saw; ``segment`` still uses it."""
    from napari_fanet.models.checkpoint import copy_with_extra
    from napari_fanet.tasks.roughness import TARGET_KEY

    train, _ = _subjects(ms_dataset, "segmentation")
    list(run_training(TrainConfig(steps=1, val_every=0, **TINY), train, [], tmp_path / "a"))
    start = copy_with_extra(tmp_path / "a" / "last.pt", tmp_path / "start.pt", {TARGET_KEY: 0.08})
    tuned = TrainConfig(steps=1, val_every=0, init_checkpoint=str(start), **TINY)
    list(run_training(tuned, train, [], tmp_path / "b"))
    assert load_checkpoint(tmp_path / "b" / "last.pt")[1]["extra"][TARGET_KEY] == 0.08


def test_config_errors():
    with pytest.raises(ValueError, match="invalid training setting steps=0"):
        TrainConfig(steps=0)
    for weight in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=f"invalid training setting blob_weight={weight}"):
            TrainConfig(blob_weight=weight)
    with pytest.raises(ValueError, match="invalid training setting milestones"):
        TrainConfig(milestones=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"expected an init_checkpoint, got none .*'4': 2\.0"):
        TrainConfig(start_temperatures={"4": 2.0})
    with pytest.raises(ValueError, match=r"unknown training settings \['epochs'\]"):
        TrainConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="cannot tell the task"):
        _ = TrainConfig(model="resnet").task
