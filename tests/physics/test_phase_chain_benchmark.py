"""Smoke test of benchmarks/phase_chain.py: one coarse subject, every method, finite numbers."""

import json
import math
from pathlib import Path

import pytest

#: Packaging, benchmark smoke runs, DDP and the demo: run by default, deselect with
#: ``-m "not integration"``.
pytestmark = pytest.mark.integration

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_phase_chain_benchmark_runs_on_a_coarse_subject(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import phase_chain

    out = tmp_path / "numbers.json"
    argv = ["--subjects", "1", "--voxel", "8", "--pdf-iter", "5", "--json", str(out)]
    subjects = phase_chain.main(argv)
    table = capsys.readouterr().out
    assert "| laplacian+vsharp |" in table and "oracle" in table
    saved = json.loads(out.read_text())
    assert saved[0]["seed"] == phase_chain.FIRST_SEED == subjects[0]["seed"]
    for name, row in saved[0]["methods"].items():
        assert math.isfinite(row["nrmse"]) and row["nrmse"] > 0, name
        assert list(row["timings_s"]) == ["scale", "mask", "unwrap", "fit", "remove"]
        assert row["scaling"] == "scanner_12bit_signed"
    assert "chi NRMSE full chain" in table
    for name, row in saved[0]["chi"].items():  # full chain against the local-field path
        assert math.isfinite(row["chain"]) and math.isfinite(row["local_field"]), name
    assert phase_chain.main([*argv, "--first-seed", "10000"])[0]["seed"] == 10000


def test_phase_chain_benchmark_rejects_a_negative_seed(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import phase_chain

    with pytest.raises(SystemExit):
        phase_chain.main(["--first-seed", "-1"])
    assert "--first-seed: expected a non-negative integer, got -1" in capsys.readouterr().err


def test_phase_chain_benchmark_chi_only_with_a_checkpoint(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import phase_chain
    from napari_fanet.engine.predict import shipped_weights

    weights = str(shipped_weights()["fanet-qsm"])
    argv = ["--subjects", "1", "--voxel", "8", "--fanet", "--model", weights, "--chi-only"]
    argv += ["--local-model", "fanet-qsm"]
    subjects = phase_chain.main(argv)
    table = capsys.readouterr().out
    assert "chi NRMSE full chain" in table and "oracle" not in table
    assert "methods" not in subjects[0] and "steps" not in subjects[0]
    assert set(subjects[0]["chi"]) == {"cfl2", "tkd", "fanet", "fanet-cg"}
    for name, row in subjects[0]["chi"].items():
        assert math.isfinite(row["chain"]) and math.isfinite(row["local_field_noise"]), name


def test_phase_chain_benchmark_rejects_a_missing_model(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import phase_chain

    with pytest.raises(SystemExit):
        phase_chain.main(["--fanet", "--model", str(tmp_path / "none.pt")])
    assert "--model: no checkpoint file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        phase_chain.main(["--fanet", "--local-model", str(tmp_path / "none.pt")])
    assert "--local-model: no checkpoint file" in capsys.readouterr().err


def test_phase_chain_benchmark_background_choice(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import phase_chain

    assert phase_chain.DEFAULT_BACKGROUND == "lbv"
    argv = ["--subjects", "1", "--voxel", "8", "--chi-only"]
    default = phase_chain.main(argv)[0]
    with_vsharp = phase_chain.main([*argv, "--background", "vsharp"])[0]
    assert (default["background"], with_vsharp["background"]) == ("lbv", "vsharp")
    # The local-field path does not depend on the chain's background removal; the chain does.
    assert with_vsharp["chi"]["cfl2"]["chain"] != default["chi"]["cfl2"]["chain"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        phase_chain.main([*argv, "--background", "sharp"])
    assert "invalid choice: 'sharp'" in capsys.readouterr().err


def test_phase_chain_benchmark_tile_reaches_the_chain_network(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import phase_chain

    seen = []
    real = phase_chain.phase_to_susceptibility

    def recording(*args, **kwargs):
        seen.append((kwargs["method"], kwargs.get("window_settings")))
        return real(*args, **kwargs)

    monkeypatch.setattr(phase_chain, "phase_to_susceptibility", recording)
    argv = ["--subjects", "1", "--voxel", "8", "--fanet", "--chi-only", "--tile", "32", "48", "32"]
    phase_chain.main(argv)
    classical = [window for method, window in seen if method != "fanet"]
    network = [window for method, window in seen if method == "fanet"]
    assert len(classical) == 2 and all(window is None for window in classical)  # CFL2, TKD
    assert len(network) == 2  # the smv and the cg rows
    assert all(window.roi_size == (32, 48, 32) for window in network)


def test_phase_chain_benchmark_rejects_a_bad_tile(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import phase_chain

    with pytest.raises(SystemExit):
        phase_chain.main(["--fanet", "--tile", "0", "64", "64"])
    assert "--tile: roi_size must be" in capsys.readouterr().err
