from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from napari_fanet.cli import base as cli_base
from napari_fanet.cli import main
from napari_fanet.cli.base import (
    Command,
    non_negative_int,
    positive_float,
    positive_int,
    register_command,
)

SMALL = ["--voxel-size", "4", "4", "4", "--no-progress"]


def simulate_args(out, *extra: str, task: str = "ms", n: str = "2") -> list[str]:
    return ["simulate", "--task", task, "--subjects", n, "--seed", "7", "--out", str(out), *extra]


def test_help_lists_simulate(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "simulate" in out and "usage: napari-fanet" in out


def test_simulate_help(capsys) -> None:
    assert main(["simulate", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--task", "--subjects", "--seed", "--out", "--voxel-size", "--overwrite"):
        assert option in out


def test_version(capsys) -> None:
    from napari_fanet import __version__

    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_simulate_writes_n_subjects(tmp_path, capsys) -> None:
    out = tmp_path / "ms"
    assert main(simulate_args(out, *SMALL)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "sub-0000", "sub-0001"]
    desc = json.loads((out / "dataset.json").read_text())
    assert (desc["task"], desc["seed"], desc["voxel_size"]) == ("ms", 7, [4.0, 4.0, 4.0])
    assert "wrote 2 ms subjects" in capsys.readouterr().out


def test_progress_bar_goes_to_stderr(tmp_path, capsys) -> None:
    out = tmp_path / "qsm"
    assert main(simulate_args(out, "--voxel-size", "4", "4", "4", task="qsm", n="1")) == 0
    captured = capsys.readouterr()
    assert "simulate qsm" in captured.err and "subject" in captured.err
    assert "simulate qsm" not in captured.out


@pytest.mark.parametrize(
    ("argv_tail", "message"),
    [
        (["--task", "ct"], "invalid choice: 'ct'"),
        (["--subjects", "0"], "expected an integer >= 1, got 0"),
        (["--subjects", "two"], "expected an integer, got 'two'"),
        (["--seed", "-1"], "expected an integer >= 0, got -1"),
        (["--voxel-size", "1", "0", "1"], "expected a positive number, got 0"),
    ],
)
def test_usage_errors_exit_2(tmp_path, capsys, argv_tail, message) -> None:
    argv = simulate_args(tmp_path / "out", *SMALL)
    # later options override the earlier ones
    assert main([*argv, *argv_tail]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_required_option_exits_2(capsys) -> None:
    assert main(["simulate", "--task", "ms"]) == 2
    assert "required" in capsys.readouterr().err


def test_out_of_range_voxel_size_is_a_usage_error(tmp_path, capsys) -> None:
    assert main(simulate_args(tmp_path / "out", "--voxel-size", "20", "2", "2")) == 2
    err = capsys.readouterr().err
    assert "napari-fanet simulate: error: voxel_size must be between" in err
    assert "Traceback" not in err


def test_non_empty_out_needs_overwrite(tmp_path, capsys) -> None:
    (tmp_path / "old.txt").write_text("x")
    assert main(simulate_args(tmp_path, *SMALL, n="1")) == 1
    err = capsys.readouterr().err
    assert "is not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert main(simulate_args(tmp_path, *SMALL, "--overwrite", n="1")) == 0
    assert (tmp_path / "sub-0000" / "t1.nii.gz").is_file()


def test_file_as_out_is_a_runtime_error(tmp_path, capsys) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(simulate_args(target, *SMALL)) == 1
    assert "is not a folder" in capsys.readouterr().err


def test_write_failure_is_a_runtime_error(tmp_path, capsys, monkeypatch) -> None:
    from napari_fanet.simulation import dataset

    def fail(*args, **kwargs):
        raise PermissionError("permission denied: sub-0000")

    monkeypatch.setattr(dataset, "write_subject", fail)
    assert main(simulate_args(tmp_path / "out", *SMALL)) == 1
    err = capsys.readouterr().err
    assert "writing" in err and "permission denied" in err and "Traceback" not in err


def test_interrupt_exits_130(tmp_path, capsys, monkeypatch) -> None:
    from napari_fanet.simulation import dataset

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset, "simulate_subject", interrupt)
    assert main(simulate_args(tmp_path / "out", *SMALL)) == 130
    assert "interrupted" in capsys.readouterr().err


def test_prepare_failure_is_a_runtime_error(tmp_path, capsys, monkeypatch) -> None:
    from napari_fanet.simulation import dataset

    def refuse(*args, **kwargs):
        raise PermissionError("cannot create folder")

    monkeypatch.setattr(dataset, "prepare_output_dir", refuse)
    assert main(simulate_args(tmp_path / "out", *SMALL)) == 1
    assert "cannot create folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("parse", "text", "match"),
    [
        (positive_int, "0", "expected an integer >= 1"),
        (positive_int, "1.5", "expected an integer, got '1.5'"),
        (non_negative_int, "-2", "expected an integer >= 0"),
        (non_negative_int, "x", "expected an integer, got 'x'"),
        (positive_float, "-1", "expected a positive number"),
        (positive_float, "inf", "expected a positive number"),
        (positive_float, "mm", "expected a number, got 'mm'"),
    ],
)
def test_argument_types_refuse(parse, text, match) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=match):
        parse(text)


def test_register_command_refuses_duplicates_and_adds_subparsers(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli_base, "COMMANDS", dict(cli_base.COMMANDS))
    with pytest.raises(ValueError, match="command 'simulate' is already registered"):
        register_command(Command("simulate", "again", lambda p: None, lambda a: 0))

    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", required=True)

    def run(args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 0

    register_command(Command("hello", "say hello", add, run))
    assert main(["hello", "--name", "fa"]) == 0
    assert "hello fa" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "say hello" in capsys.readouterr().out


def test_python_m_help_does_not_import_torch() -> None:
    code = (
        "import sys; from napari_fanet.cli import main; rc = main(['simulate', '--help']); "
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("NO-TORCH 0")


def test_python_m_napari_fanet(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "napari_fanet", "simulate", "--task", "bogus"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_the_command_line_retains_freed_memory(monkeypatch, tmp_path, capsys):
    """Every command runs with freed memory kept (``engine.memory``); --help and usage errors
    run none."""
    from napari_fanet import cli
    from napari_fanet.engine import memory

    calls = []
    monkeypatch.setattr(memory, "retain_freed_memory", lambda default=True: calls.append(default))
    assert cli.main(["simulate", "--help"]) == 0  # --help exits before any command runs
    assert cli.main(["simulate", "--task", "nope"]) == 2  # usage error: nothing runs
    assert calls == []
    missing = tmp_path / "missing.nii.gz"
    assert cli.main(["segment", "--flair", str(missing), "--out", str(tmp_path / "out")]) == 1
    assert calls == [True]  # applied before the command ran (and failed on its input)
    assert "file not found" in capsys.readouterr().err
