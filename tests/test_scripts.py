"""Argument errors of the scripts under ``scripts/`` (run in-process through their ``main``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ms_loo_recipe_refuses_a_missing_folder(tmp_path, capsys):
    recipe = _load("ms_loo_recipe")
    with pytest.raises(SystemExit):
        recipe.main(["--data", str(tmp_path / "nowhere"), "--sims", str(tmp_path)])
    assert "--data: expected a folder, got" in capsys.readouterr().err


def test_ms_loo_recipe_refuses_missing_starting_weights(tmp_path, capsys):
    """The recipe never falls back to the shipped weights, which saw every patient."""
    recipe = _load("ms_loo_recipe")
    (tmp_path / "data" / "patient01").mkdir(parents=True)  # empty: fails if it were read
    (tmp_path / "init").mkdir()
    args = ["--data", str(tmp_path / "data"), "--sims", str(tmp_path), "--work", str(tmp_path)]
    with pytest.raises(SystemExit):
        recipe.main([*args, "--init-dir", str(tmp_path / "init"), "--models", "fanet-seg"])
    assert "fanet-seg.pt (starting weights of fanet-seg), not found" in capsys.readouterr().err


def test_ms_loo_recipe_default_starting_weights_are_simulation_only():
    """The default --init-dir holds both models' first (simulation-only) weights, and its
    fanet-seg is not the shipped one, which was fine-tuned on all the real patients."""
    init = SCRIPTS.parent / "benchmarks/results/ms-loo/init"
    assert sorted(p.name for p in init.glob("*.pt")) == ["fanet-seg.pt", "unet-seg.pt"]
    shipped = SCRIPTS.parent / "src/napari_fanet/weights/fanet-seg.pt"
    assert (init / "fanet-seg.pt").read_bytes() != shipped.read_bytes()


def test_ms_loo_recipe_continues_a_fold_from_its_own_earlier_stage(tmp_path):
    recipe = _load("ms_loo_recipe")
    (tmp_path / "fanet-seg.pt").write_bytes(b"")
    assert recipe.starting_weights(tmp_path, "fanet-seg", "p1") == tmp_path / "fanet-seg.pt"
    (tmp_path / "fanet-seg-without-p1.pt").write_bytes(b"")
    assert recipe.starting_weights(tmp_path, "fanet-seg", "p1").name == "fanet-seg-without-p1.pt"
    run = tmp_path / "fanet-seg-without-p1"
    run.mkdir()
    (run / "last.pt").write_bytes(b"")
    assert recipe.starting_weights(tmp_path, "fanet-seg", "p1") == run / "last.pt"
    assert recipe.starting_weights(tmp_path, "fanet-seg", "p2") == tmp_path / "fanet-seg.pt"
    assert recipe.starting_weights(tmp_path, "unet-seg", "p2") is None


def test_ms_loo_recipe_passes_its_training_options_to_train(tmp_path, monkeypatch):
    recipe = _load("ms_loo_recipe")
    for folder in ("data/patient01", "data/patient02", "sims", "init"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "init" / "fanet-seg.pt").write_bytes(b"")
    commands = []
    monkeypatch.setattr(recipe.subprocess, "run", lambda cmd, check: commands.append(cmd))
    args = ["--data", str(tmp_path / "data"), "--sims", str(tmp_path / "sims"), "--copies", "0"]
    args += ["--init-dir", str(tmp_path / "init"), "--work", str(tmp_path / "work")]
    options = ["--blob-weight", "1", "--seed", "6", "--lesion-contrast", "0.6", "1.1"]
    assert recipe.main([*args, "--only", "patient02", *options]) == 0
    (cmd,) = commands
    assert cmd[:2] == ["napari-fanet", "train"]
    assert cmd[cmd.index("--blob-weight") + 1] == "1.0" and cmd[cmd.index("--seed") + 1] == "6"
    start = cmd.index("--lesion-contrast")
    assert cmd[start + 1 : start + 3] == ["0.6", "1.1"]
    assert cmd[cmd.index("--out") + 1] == str(tmp_path / "work" / "fanet-seg-without-patient02")
    assert (tmp_path / "work/data/without-patient02/patient01-orig").is_symlink()
    commands.clear()
    assert recipe.main([*args, "--only", "patient01"]) == 0
    assert "--blob-weight" not in commands[0] and "--lesion-contrast" not in commands[0]


def _recipe_args(recipe, tmp_path, monkeypatch) -> list[str]:
    """Arguments running ``recipe`` on ``tmp_path/data`` with no copies and no training."""
    for folder in ("sims", "init"):
        (tmp_path / folder).mkdir()
    (tmp_path / "init" / "fanet-seg.pt").write_bytes(b"")
    monkeypatch.setattr(recipe.subprocess, "run", lambda cmd, check: None)
    args = ["--data", str(tmp_path / "data"), "--sims", str(tmp_path / "sims"), "--copies", "0"]
    return [*args, "--init-dir", str(tmp_path / "init"), "--work", str(tmp_path / "work")]


def test_ms_loo_recipe_thick_copies_have_a_2d_flair(tmp_path, monkeypatch, capsys):
    import nibabel as nib
    import numpy as np

    recipe = _load("ms_loo_recipe")
    patient = tmp_path / "data" / "patient01"
    patient.mkdir(parents=True)
    rng = np.random.default_rng(0)
    brain = np.zeros((20, 20, 20), np.float32)
    brain[3:17, 3:17, 3:17] = 1
    flair = brain * (100 + 5 * rng.standard_normal(brain.shape)).astype(np.float32)
    nib.save(nib.Nifti1Image(flair, np.eye(4)), patient / "flair.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), np.eye(4)), patient / "lesion_mask.nii.gz")
    args = _recipe_args(recipe, tmp_path, monkeypatch)
    assert recipe.main([*args, "--thick-copies", "2", "--thick-axis", "1", "--final"]) == 0
    for copy in (0, 1):
        done = tmp_path / f"work/real/patient01-thick{copy}/done.json"
        settings = json.loads(done.read_text())
        assert settings["flair"]["thick_slice_axis"] == 1
        assert 3.0 <= settings["flair"]["thick_slice_mm"] <= 5.0
    linked = sorted(p.name for p in (tmp_path / "work/data/without-none").iterdir())
    assert linked == ["patient01-orig", "patient01-thick0", "patient01-thick1"]
    with pytest.raises(SystemExit):
        recipe.main([*args, "--thick-copies", "-1"])
    assert "--thick-copies: expected an integer >= 0, got -1" in capsys.readouterr().err


def test_ms_loo_recipe_insert_copies_carry_labelled_synthetic_lesions(
    tmp_path, monkeypatch, capsys, write_white_matter_patient
):
    import nibabel as nib
    import numpy as np

    recipe = _load("ms_loo_recipe")
    patient = tmp_path / "data" / "patient01"
    lesions = write_white_matter_patient(patient, lesion_name="lesion_mask.nii.gz")
    args = [*_recipe_args(recipe, tmp_path, monkeypatch), "--final"]
    assert recipe.main([*args, "--insert-copies", "2", "--insert-lesions", "3"]) == 0
    masks = []
    for copy in (0, 1):
        out = tmp_path / f"work/real/patient01-insert{copy}"
        inserted = json.loads((out / "done.json").read_text())["inserted_lesions"]
        assert 1 <= len(inserted) <= 3
        mask = np.asarray(nib.load(out / "lesion_mask.nii.gz").dataobj)
        assert mask[lesions > 0].all() and mask.sum() > lesions.sum()
        masks.append(mask)
    assert not np.array_equal(*masks)  # each copy draws its own lesions
    linked = sorted(p.name for p in (tmp_path / "work/data/without-none").iterdir())
    assert linked == ["patient01-insert0", "patient01-insert1", "patient01-orig"]
    (patient / "t1.nii.gz").unlink()
    args[args.index(str(tmp_path / "work"))] = str(tmp_path / "work2")
    with pytest.raises(SystemExit):
        recipe.main([*args, "--insert-copies", "1"])
    assert "needs a T1 to find the white matter" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe.main([*args, "--insert-copies", "1", "--insert-lesions", "0"])
    assert "--insert-lesions: expected an integer >= 1, got 0" in capsys.readouterr().err


def test_ms_loo_recipe_insertion_needs_a_lesion_mask(tmp_path):
    import nibabel as nib
    import numpy as np

    recipe = _load("ms_loo_recipe")
    image = np.ones((8, 8, 8), np.float32)
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "flair.nii.gz")
    with pytest.raises(ValueError, match="inserting lesions needs the patient's lesion mask"):
        recipe.reacquire(tmp_path, tmp_path / "out", seed=0, insert=2)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_drop_attention_script_writes_a_smaller_network(tmp_path, capsys):
    from napari_fanet.models import build_model, load_checkpoint, save_checkpoint

    script = _load("drop_attention")
    model = build_model("fanet-qsm", features=(4, 4, 4, 4, 4), attention_levels=(2, 4))
    save_checkpoint(tmp_path / "in.pt", model)
    assert script.main([str(tmp_path / "out.pt"), str(tmp_path / "in.pt"), "--levels", "4"]) == 0
    smaller, info = load_checkpoint(tmp_path / "out.pt")
    assert smaller.config.attention_levels == (2,)
    assert info["extra"]["dropped_attention_levels"] == [4]
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "x.pt"), str(tmp_path / "in.pt"), "--levels", "3"])
    assert "cannot drop attention at level(s) [3]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "in.pt"), str(tmp_path / "in.pt"), "--levels", "4"])
    assert "the output must not be the input" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "y.pt"), str(tmp_path / "missing.pt"), "--levels", "4"])
    assert "checkpoint file not found: " in capsys.readouterr().err
    assert not (tmp_path / "y.pt").exists()


def test_record_shipped_outputs_refuses_an_unknown_model(capsys):
    record = _load("record_shipped_outputs")
    assert record.main(["fanet-nothing"]) == 2
    err = capsys.readouterr().err
    assert "expected shipped model names [" in err and "got ['fanet-nothing']" in err


def test_export_weights_renames_the_model(tmp_path, capsys):
    from napari_fanet.models import build_model, load_checkpoint, save_checkpoint

    export = _load("export_weights")
    source = tmp_path / "run" / "best.pt"
    source.parent.mkdir()
    save_checkpoint(source, build_model("fanet-qsm", features=(4, 4, 4, 4, 8)), epoch=7)
    target = tmp_path / "weights" / "fanet-qsm-phase.pt"
    assert export.main([str(source), str(target), "--name", "fanet-qsm-phase"]) == 0
    model, ckpt = load_checkpoint(target)
    assert model.config.name == "fanet-qsm-phase" and ckpt["epoch"] == 7
    assert "fanet-qsm-phase.pt" in capsys.readouterr().out


def test_export_weights_refuses_a_missing_source_and_an_empty_name(tmp_path, capsys):
    export = _load("export_weights")
    with pytest.raises(SystemExit):
        export.main([str(tmp_path / "none.pt"), str(tmp_path / "out.pt")])
    assert "none.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export.main([str(tmp_path / "none.pt"), str(tmp_path / "out.pt"), "--name", " "])
    assert "--name: expected a non-empty model name, got ' '" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()


def test_average_weights_writes_the_mean(tmp_path, capsys):
    import torch

    from napari_fanet.models import build_model, load_checkpoint, save_checkpoint

    average = _load("average_weights")
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(build_model("fanet-seg", features=(8, 8, 8, 8, 16)))
        save_checkpoint(tmp_path / f"{seed}.pt", models[-1], extra={"voxel_size": [1, 1, 1]})
    target = tmp_path / "soup" / "fanet-seg.pt"
    assert average.main([str(target), str(tmp_path / "0.pt"), str(tmp_path / "1.pt")]) == 0
    model, ckpt = load_checkpoint(target)
    key = "encoders.0.0.0.weight"
    expected = (models[0].state_dict()[key] + models[1].state_dict()[key]) / 2
    assert torch.allclose(model.state_dict()[key], expected)
    assert ckpt["optimizer"] is None and ckpt["extra"]["voxel_size"] == [1, 1, 1]
    assert [r["file"] for r in ckpt["extra"]["averaged_from"]] == [
        str(tmp_path / "0.pt"),
        str(tmp_path / "1.pt"),
    ]
    assert "the mean of 2 checkpoints" in capsys.readouterr().out


def test_average_weights_refuses_bad_inputs_and_writes_nothing(tmp_path, capsys):
    average = _load("average_weights")
    out = tmp_path / "out.pt"
    with pytest.raises(SystemExit):
        average.main([str(out), str(tmp_path / "none.pt"), str(tmp_path / "other.pt")])
    assert "checkpoint file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        average.main([str(out), str(out), str(tmp_path / "other.pt")])
    assert "the output must not be one of the inputs" in capsys.readouterr().err
    assert not out.exists()


def _noisy_ball(noise: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = np.indices((32, 32, 32)) - 15.5
    brain = np.sqrt((grid**2).sum(0)) < 14
    return np.where(brain, 100 * (1 + noise * rng.standard_normal(brain.shape)), 0).astype(
        np.float32
    )


def test_roughness_target_records_the_median_roughness(tmp_path, capsys):
    import nibabel as nib
    import numpy as np

    from napari_fanet.models import build_model, load_checkpoint, save_checkpoint
    from napari_fanet.tasks.roughness import TARGET_KEY, fine_roughness

    script = _load("roughness_target")
    source = save_checkpoint(
        tmp_path / "in.pt",
        build_model("fanet-seg", features=(8, 8, 8, 8, 16)),
        extra={"voxel_size": [1.0, 1.0, 1.0]},
    )
    flairs, values = [], []
    for seed, noise in enumerate((0.05, 0.1)):
        image = _noisy_ball(noise, seed)
        flairs.append(tmp_path / f"flair{seed}.nii.gz")
        nib.save(nib.Nifti1Image(image, np.eye(4)), flairs[-1])
        values.append(fine_roughness(image, image != 0))
    out = tmp_path / "with" / "out.pt"
    assert script.main([str(out), str(source), *map(str, flairs)]) == 0
    _, ckpt = load_checkpoint(out)
    assert ckpt["extra"][TARGET_KEY] == pytest.approx(np.median(values), rel=1e-5)
    assert ckpt["extra"]["roughness_target_scans"] == [str(p) for p in flairs]
    assert ckpt["extra"]["voxel_size"] == [1.0, 1.0, 1.0]
    assert "roughness target" in capsys.readouterr().out


def test_roughness_target_refuses_a_missing_flair_and_writes_nothing(tmp_path, capsys):
    from napari_fanet.models import build_model, save_checkpoint

    script = _load("roughness_target")
    source = save_checkpoint(
        tmp_path / "in.pt", build_model("fanet-seg", features=(8, 8, 8, 8, 16))
    )
    out = tmp_path / "out.pt"
    with pytest.raises(SystemExit):
        script.main([str(out), str(source), str(tmp_path / "none.nii.gz")])
    assert f"none.nii.gz: file not found: {tmp_path / 'none.nii.gz'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(out), str(tmp_path / "no.pt"), str(tmp_path / "none.nii.gz")])
    assert "checkpoint file not found" in capsys.readouterr().err
    assert not out.exists()
