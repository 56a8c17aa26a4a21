"""Smoke tests of the benchmark scripts: tiny sizes, no timing checks (timings live in README)."""

import importlib
import json
import math
import os
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SRC = BENCHMARKS.parent / "src"


@pytest.fixture
def bench(monkeypatch):
    """Import benchmark scripts as modules; their child processes must find the package too."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    return importlib.import_module


def _finite(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_inference_selection_always_includes_the_backbone(bench):
    inference = bench("inference")
    assert inference.selected(["ag-seg"]) == ["unet-seg", "ag-seg"]
    assert inference.selected(["sa-qsm", "fanet-seg"]) == [
        "unet-seg",
        "fanet-seg",
        "qsmnet",
        "sa-qsm",
    ]
    assert inference.selected(None) == inference.ALL_MODELS


def test_inference_main_tiny_both_modes(bench, tmp_path):
    inference = bench("inference")
    # FA-Net and its backbone only: every (model, mode) is a fresh process of a few seconds.
    argv = [
        "--shape", "20", "24", "20", "--features", "8", "8", "8", "8", "8",
        "--roi", "16", "16", "16", "--budget", "0", "--threads", "1", "--wait-idle", "0",
        "--models", "fanet-seg", "--out", str(tmp_path),
    ]  # fmt: skip
    inference.main(argv)
    data = json.loads((tmp_path / "inference_cpu.json").read_text())
    models = {"unet-seg", "fanet-seg"}
    assert set(data["results"]) == {"sliding", "whole"}
    for mode, rows in data["results"].items():
        assert set(rows) == models, mode
        for name, row in rows.items():
            assert "error" not in row, (mode, name, row)
            assert _finite(row["time_ratio"]) and _finite(row["memory_ratio"]), (mode, name)
            assert len(row["times_ms"]) >= 3
        assert rows["fanet-seg"]["attention_calls"] == (4 if mode == "sliding" else 1)
        assert _finite(rows["fanet-seg"]["attention_share"]), mode
        assert rows["unet-seg"]["attention_calls"] == 0
        assert rows["unet-seg"]["time_ratio"] == 1.0
    checks = {(c["task"], c["mode"]) for c in data["check"]}
    assert checks == {("segmentation", "sliding"), ("segmentation", "whole")}
    assert all(isinstance(c["pass"], bool) for c in data["check"])
    text = (tmp_path / "inference_cpu.md").read_text()
    assert "### segmentation, whole" in text and "Overall: **" in text


def test_attention_cost_main_tiny(bench, tmp_path):
    pytest.importorskip("matplotlib")
    attention_cost = bench("attention_cost")
    argv = ["--channels", "8", "--main-size", "8", "--sizes", "8", "--budget", "0.1"]
    attention_cost.main([*argv, "--out", str(tmp_path)])
    data = json.loads((tmp_path / "attention_cost_cpu.json").read_text())
    assert set(data["main"]) == set(attention_cost.MODULES)
    for name, row in data["main"].items():
        assert "error" not in row, (name, row)
        assert _finite(row["median_ms"]) and row["flops_all"] > 0, name
    assert set(data["sweep"]) == {"8"}
    assert (tmp_path / "attention_cost_cpu.png").stat().st_size > 0
