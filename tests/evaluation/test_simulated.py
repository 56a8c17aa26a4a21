import numpy as np
import pytest

from napari_fanet.engine.inference import WindowSettings
from napari_fanet.evaluation import simulated as ev
from napari_fanet.models import build_model


def test_paired_difference_matches_hand_computation():
    a, b = [0.8, 0.7, 0.9, 0.6], [0.7, 0.7, 0.8, 0.5]
    mean, lo, hi = ev.paired_difference(a, b)
    assert mean == pytest.approx(0.075)
    assert lo <= mean <= hi and lo >= 0.0 - 1e-12 and hi <= 0.1 + 1e-12
    with pytest.raises(ValueError, match="at least one pair"):
        ev.paired_difference([], [])


def test_summarise_and_table():
    rows = {"A": [{"dice": 0.5}, {"dice": 0.7}], "B": [{"dice": 0.4}, {"dice": 0.4}]}
    s = ev.summarise(rows)
    assert s["A"]["dice"][0] == pytest.approx(0.6) and s["A"]["dice"][1] == pytest.approx(
        np.std([0.5, 0.7], ddof=1)
    )
    assert "| A | 0.600 ± 0.141 |" in ev.markdown_table(s, ["dice"])


@pytest.mark.parametrize("task", ["ms", "qsm"])
def test_end_to_end_on_small_simulated_cases(task):
    cases = ev.simulated_cases(task, [10_000, 20_000], voxel_size=(4.0, 4.0, 4.0))
    params = ev.tune_classical(task, cases[:1])
    methods = ev.classical_methods(task, params)
    name = "unet-seg" if task == "ms" else "qsmnet"
    model = build_model(name, features=(8, 8, 8, 8, 16)).eval()
    ckpt = {
        "extra": {
            "voxel_size": [4.0, 4.0, 4.0],
            "preprocessing": {"field_scale": 0.01, "chi_scale": 0.02, "align_b0": True},
        }
    }
    methods["net"] = ev.model_method(
        task, model, ckpt, WindowSettings(roi_size=(32, 32, 32), device="cpu")
    )
    rows = ev.run_evaluation(task, methods, cases[1:])
    key = "dice" if task == "ms" else "nrmse"
    assert set(rows) == set(methods) and all(np.isfinite(r[0][key]) for r in rows.values())
    if task == "qsm":
        assert rows["CFL2"][0]["nrmse"] < 100 and params["cfl2"] in ev.CFL2_LAMBDAS


def test_network_methods_pass_prediction_options_to_every_network(monkeypatch):
    seen = []

    def fake_predict(task, model, ckpt, inputs, **kwargs):
        seen.append({k: kwargs.get(k) for k in ("seed_threshold", "min_lesion_mm3")})
        return type("Result", (), {"outputs": {"mask": np.zeros((2, 2, 2), np.uint8)}})()

    monkeypatch.setattr(ev, "predict_task", fake_predict)
    model = build_model("unet-seg", features=(8, 8, 8, 8, 16)).eval()
    methods = ev.network_methods(
        "ms",
        {"a": (model, {}), "b": (model, {})},
        WindowSettings(device="cpu"),
        seed_threshold=0.9,
        min_lesion_mm3=5.0,
    )
    case = ev.EvalCase("c", {}, np.zeros((2, 2, 2), bool), np.ones((2, 2, 2), bool), (1, 1, 1))
    for method in methods.values():
        method(case)
    assert seen == [{"seed_threshold": 0.9, "min_lesion_mm3": 5.0}] * 2


def test_cli_evaluate_ms_states_the_mask_rule(tmp_path, capsys):
    import json

    from napari_fanet.cli import main
    from napari_fanet.engine.predict import WINDOW_SHIFTS_DEFAULT
    from napari_fanet.evaluation.real import prediction_sentence
    from napari_fanet.models import save_checkpoint
    from napari_fanet.tasks.roughness import MATCH_ROUGHNESS_DEFAULT

    path = tmp_path / "tiny.pt"
    model = build_model("unet-seg", features=(8, 8, 8, 8, 16))
    save_checkpoint(path, model, extra={"voxel_size": [4.0] * 3})
    argv = ["evaluate", "--task", "ms", "--models", str(path), "--n-test", "1", "--n-val", "1"]
    small = ["--voxel-size", "4", "4", "4", "--tile", "32", "32", "32", "--device", "cpu"]
    rule = ["--seed-threshold", "0.9", "--min-lesion-volume", "64", "--min-edge-distance", "6"]
    assert main([*argv, *small, *rule, "--out", str(tmp_path / "ev")]) == 0
    report = (tmp_path / "ev" / "evaluation.md").read_text()
    assert (
        "Networks' lesion masks: 26-connected lesions of probability > 0.5, holding a voxel "
        in (report)
    )
    assert "above 0.9, of at least 64 mm^3, lying on average at least 6 mm inside" in report
    payload = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert payload["prediction_options"] == {
        "seed_threshold": 0.9,
        "min_lesion_mm3": 64.0,
        "min_edge_distance_mm": 6.0,
        "match_roughness": MATCH_ROUGHNESS_DEFAULT,
        "window_shifts": WINDOW_SHIFTS_DEFAULT,
    }
    assert prediction_sentence(payload["prediction_options"]) in report
    capsys.readouterr()
