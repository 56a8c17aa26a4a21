"""The training child never imports files from the folder napari was started in (issue 14)."""

from __future__ import annotations

import sys

import pytest

from napari_fanet.engine.training_run import TrainingRun, TrainRequest

TINY = dict(
    model="unet-seg",
    features=(8, 8, 8, 8, 16),
    batch_size=1,
    patch_size=(16, 16, 16),
    device="cpu",
    threads=1,
    steps=1,
)


def _drain(run):
    gen = run.events()
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def test_a_module_in_the_working_directory_is_not_imported(tmp_path, monkeypatch):
    napari_cwd = tmp_path / "napari_started_here"
    napari_cwd.mkdir()
    marker = tmp_path / "argparse_was_imported"
    (napari_cwd / "argparse.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise SystemExit(99)\n"
    )
    monkeypatch.chdir(napari_cwd)
    # relative paths, as a user may type them: resolved against napari's folder
    request = TrainRequest(data="missing_data", out="run", **TINY)
    run = TrainingRun(request)
    assert run.command[:4] == [sys.executable, "-m", "napari_fanet", "train"]
    outcome = _drain(run)
    assert not marker.exists()
    assert outcome.returncode == 1  # the CLI's own error, not the planted module's 99
    assert f"data folder not found: {napari_cwd / 'missing_data'}" in outcome.message
    assert (napari_cwd / "run" / "train-output.log").is_file()


def test_the_child_environment_is_safe(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "relative_entry")
    monkeypatch.chdir(tmp_path)
    run = TrainingRun(TrainRequest(data=tmp_path / "d", out=tmp_path / "run", **TINY))
    env = run._env()
    assert env["PYTHONSAFEPATH"] == "1"
    assert str(tmp_path / "relative_entry") in env["PYTHONPATH"].split(":")
    assert "--data" in run.command and str(tmp_path / "d") in run.command


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"patch_size": (8, 8, 8)}, "patch_size"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": 2.0}, "lr"),
    ],
)
def test_request_refuses_what_the_child_would_refuse(tmp_path, changes, name):
    settings = {**TINY, **changes}
    with pytest.raises(ValueError, match=rf"^invalid training setting {name}="):
        TrainRequest(data=tmp_path, out=tmp_path / "run", **settings)
