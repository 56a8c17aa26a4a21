"""The training child process: its command, events, graceful stop, failures, model cards.

The runs are real ``python -m napari_fanet train`` children on tiny subjects (one thread).
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from napari_fanet.engine.model_card import (
    default_model_name,
    publish_model,
    summarize_log,
    write_model_card,
)
from napari_fanet.engine.training_run import (
    CHILD_LOG,
    RunOutcome,
    TrainingRun,
    TrainRequest,
    _failure_line,
    _shutdown_live_runs,
    format_event,
    parse_event_line,
)
from napari_fanet.models import load_checkpoint

TINY = dict(
    model="fanet-seg",
    features=(8, 8, 8, 8, 16),
    batch_size=1,
    patch_size=(16, 16, 16),
    device="cpu",
    threads=1,
)


def _drain(run, on_event=None):
    """All events of a run and its outcome (the generator's return value)."""
    events, gen = [], run.events()
    try:
        while True:
            events.append(next(gen))
            if on_event is not None:
                on_event(events[-1])
    except StopIteration as stop:
        return events, stop.value


# -- command and events ---------------------------------------------------------------------


def test_command_for_fine_tuning_is_the_cli_train_command(tmp_path):
    request = TrainRequest(
        data=tmp_path / "data",
        out=tmp_path / "run",
        init=tmp_path / "start.pt",
        val=tmp_path / "data",
        steps=30,
        lr=1e-4,
        batch_size=1,
        patch_size=(32, 32, 32),
        val_every=10,
        device="cpu",
        threads=2,
    )
    assert request.command("python3") == [
        "python3", "-m", "napari_fanet", "train",
        "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
        "--init", str(tmp_path / "start.pt"), "--val", str(tmp_path / "data"),
        "--steps", "30", "--lr", "0.0001", "--batch-size", "1",
        "--patch-size", "32", "32", "32", "--val-every", "10", "--device", "cpu",
        "--seed", "0", "--threads", "2", "--events",
    ]  # fmt: skip
    assert request.command()[0] == sys.executable


def test_command_for_a_new_model_names_it_and_its_width(tmp_path):
    request = TrainRequest(data=tmp_path, out=tmp_path / "run", augment=False, **TINY)
    cmd = request.command()
    assert cmd[cmd.index("--model") + 1] == "fanet-seg" and "--init" not in cmd
    i = cmd.index("--features")
    assert cmd[i + 1 : i + 6] == ["8", "8", "8", "8", "16"]
    assert "--no-augment" in cmd and cmd[-1] == "--events"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "give exactly one of init"),
        ({"model": "fanet-seg", "init": "x.pt"}, "give exactly one of init"),
        ({"model": "fanet-seg", "lr": 0.0}, "lr=0.0"),
        ({"model": "fanet-seg", "steps": 0}, "steps=0"),
        ({"model": "fanet-seg", "patch_size": (16, 16)}, "patch_size"),
        ({"model": "fanet-seg", "device": "tpu"}, "device='tpu'"),
        ({"model": "fanet-seg", "threads": 0}, "threads=0"),
    ],
)
def test_bad_requests_are_refused(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainRequest(data=tmp_path, out=tmp_path, **kwargs)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"event": "step", "step": 3, "loss": 0.5}\n', {"event": "step", "step": 3, "loss": 0.5}),
        ("stopping after this step\n", {"event": "log", "line": "stopping after this step"}),
        ('{"not": "an event"}', {"event": "log", "line": '{"not": "an event"}'}),
        ("{broken json", {"event": "log", "line": "{broken json"}),
        ("", {"event": "log", "line": ""}),
    ],
)  # fmt: skip
def test_parse_event_line(line, expected):
    assert parse_event_line(line) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["x", "napari-fanet train: error: bad", "more"], "napari-fanet train: error: bad"),
        (["Traceback (most recent call last):", "  File", "OSError: disk"], "OSError: disk"),
        (["  File", "torch.OutOfMemoryError: CUDA", ""], "torch.OutOfMemoryError: CUDA"),
        (["KeyboardInterrupt", "last words"], "KeyboardInterrupt"),
        (["just", "text"], "text"),
        ([], "no output"),
    ],
)  # fmt: skip
def test_the_failure_message_is_the_most_telling_line(lines, expected):
    assert _failure_line(lines) == expected


def test_format_event_is_one_readable_line():
    assert format_event({"event": "step", "step": 3, "steps": 10, "loss": 0.51234}) == (
        "step 3/10  loss 0.5123"
    )
    val = {"event": "validation", "step": 5, "val_loss": 0.25, "dice": 0.8}
    assert format_event(val) == "validation at step 5: val_loss 0.2500, dice 0.8000"
    assert format_event({"event": "log", "line": "hello"}) == "hello"
    assert format_event({"event": "done", "step": 4}) == "done at step 4"


# -- real child runs ------------------------------------------------------------------------


def test_a_run_streams_events_and_publishes_a_model_with_its_card(tmp_path, ms_dataset, catalog):
    seen = []
    catalog.subscribe(seen.append)
    request = TrainRequest(
        data=ms_dataset, out=tmp_path / "run", val=ms_dataset, steps=4, val_every=2, **TINY
    )
    run = TrainingRun(request)
    events, outcome = _drain(run)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "exit" and "done" in kinds
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4]
    assert kinds.count("validation") == 2
    assert outcome.status == "done" and outcome.returncode == 0 and outcome.steps_done == 4
    assert outcome.checkpoint == tmp_path / "run" / "last.pt"
    assert outcome.last_validation["step"] == 4 and "dice" in outcome.last_validation
    assert not run.running
    log_text = (tmp_path / "run" / CHILD_LOG).read_text()
    assert log_text.startswith("$ ") and '"event": "done"' in log_text

    name = default_model_name("fanet-seg", request.out, fine_tuned=False)
    assert name == "fanet-seg-trained-run"
    entry = publish_model(outcome, name, command=run.command, start_model="a new model")
    assert entry.path == tmp_path / "run" / f"{name}.pt" and entry.card.name == f"{name}.md"
    net, ckpt = load_checkpoint(entry.path)
    assert net.config.name == "fanet-seg" and ckpt["epoch"] == 4
    assert seen == [entry] and catalog.last_trained("segmentation") == entry
    assert catalog.last_trained("qsm") is None
    assert [e.name for e in catalog.available_models("segmentation")][-1] == name
    card = entry.card.read_text()
    summary = summarize_log(tmp_path / "run" / "log.jsonl")
    assert summary["steps_done"] == 4 and summary["ending"] == "done"
    assert "Run done: 4 of 4 steps on cpu (model `fanet-seg`)" in card
    assert f"Training loss: {summary['last_loss']:.4f} at the last step" in card
    assert "| step | val_loss | dice | lf1 |" in card and "| 4 |" in card
    assert f"{sys.executable} -m napari_fanet train --data {ms_dataset}" in card
    assert "starting from a new model" in card
    assert "Model card" in catalog.card_summary(entry)


def test_stop_ends_after_the_current_step_with_a_loadable_checkpoint(tmp_path, ms_dataset):
    request = TrainRequest(data=ms_dataset, out=tmp_path / "run", steps=5000, val_every=0, **TINY)
    run = TrainingRun(request)

    def stop_at_step_2(event):
        if event["event"] == "step" and event["step"] == 2:
            run.stop()

    events, outcome = _drain(run, stop_at_step_2)
    assert outcome.status == "stopped" and outcome.returncode == 0
    assert 2 <= outcome.steps_done < 5000  # the step under way when SIGINT came is finished
    assert events[-2] == {"event": "stopped", "step": outcome.steps_done}
    assert any(e.get("line", "").startswith("stopping after the current step") for e in events)
    _, ckpt = load_checkpoint(outcome.checkpoint)
    assert ckpt["epoch"] == outcome.steps_done


def test_a_failing_child_is_reported_with_its_log(tmp_path, ms_dataset):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"this is not a checkpoint")
    request = TrainRequest(
        data=ms_dataset, out=tmp_path / "run", init=bad, steps=2, device="cpu", threads=1
    )
    events, outcome = _drain(TrainingRun(request))
    assert outcome.status == "failed" and outcome.returncode != 0
    assert outcome.message.startswith("the training process failed (exit status 2): ")
    assert "corrupt.pt is not a readable napari-fanet checkpoint" in outcome.message
    assert outcome.checkpoint is None and outcome.log_tail
    assert any("corrupt.pt" in line or "Error" in line for line in outcome.log_tail)
    assert events[-1] == outcome.as_event()
    assert "# failed: the training process failed" in (tmp_path / "run" / CHILD_LOG).read_text()
    with pytest.raises(ValueError, match="no model to publish: the run failed"):
        publish_model(outcome, "x", command=[], start_model="x")


def test_a_bad_argument_fails_with_the_usage_message(tmp_path, ms_dataset):
    request = TrainRequest(data=tmp_path / "missing", out=tmp_path / "run", steps=2, **TINY)
    _, outcome = _drain(TrainingRun(request))
    assert outcome.status == "failed" and outcome.returncode == 1
    assert "data folder not found" in outcome.message


def test_shutdown_and_the_atexit_hook_end_a_running_child(tmp_path, ms_dataset):
    request = TrainRequest(data=ms_dataset, out=tmp_path / "run", steps=5000, val_every=0, **TINY)
    run = TrainingRun(request)
    run.start()
    with pytest.raises(RuntimeError, match="started already"):
        run.start()
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "log.jsonl").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)  # the child has installed its signal handlers
    assert run.running
    _shutdown_live_runs()  # what atexit runs: SIGINT, wait, then SIGKILL
    assert not run.running and run.stop_requested
    _, outcome = _drain(run)
    assert outcome.status == "stopped"


def test_a_model_card_without_validation_or_export(tmp_path):
    (tmp_path / "log.jsonl").write_text(
        "\n".join(
            json.dumps(e)
            for e in [
                {"event": "start", "step": 0, "steps": 3, "device": "cpu", "model": "m"},
                {"event": "step", "step": 1, "loss": 1.0, "elapsed_s": 1.0},
                {"event": "step", "step": 2, "loss": 0.5, "elapsed_s": 2.0},
                {"event": "stopped", "step": 2},
            ]
        )
        + "\nnot json\n"
    )
    card = write_model_card(
        tmp_path, "m-ft", tmp_path / "m-ft.pt", command=["a", "b c"], start_model="`m`",
        status="stopped",
    )  # fmt: skip
    text = card.read_text()
    assert "Run stopped: 2 of 3 steps on cpu" in text
    assert "Training loss: 1.0000" not in text and "0.5000 at the last step" in text
    assert "0.7500 averaged over the last 2 steps" in text
    assert "No validation during this run." in text and "a 'b c'" in text


def test_publishing_needs_a_checkpoint(tmp_path):
    outcome = RunOutcome("stopped", 130, tmp_path, message="stopped before any checkpoint")
    with pytest.raises(ValueError, match="no model to publish: the run stopped without"):
        publish_model(outcome, "x", command=[], start_model="x")
