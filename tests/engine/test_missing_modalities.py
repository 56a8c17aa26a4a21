"""One segmentation model for FLAIR, T1 + FLAIR, T2 + FLAIR and all three (modality dropout)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_fanet.cli import main
from napari_fanet.engine.config import TrainConfig
from napari_fanet.engine.network_input import prepare_network_input
from napari_fanet.engine.predict import segment, supports_missing_modalities
from napari_fanet.engine.prediction_request import PredictionRequest
from napari_fanet.engine.train import run_training
from napari_fanet.io.layers import LayerVolume
from napari_fanet.io.nifti import Volume, load_volume
from napari_fanet.io.resample import resample_to_reference
from napari_fanet.models import build_model, save_checkpoint
from napari_fanet.tasks import SEGMENTATION
from napari_fanet.tasks.sampling import MODALITY_DROPOUT, drop_modalities
from napari_fanet.tasks.subjects import SEG_MODALITIES, load_seg_subject

TINY = (8, 8, 8, 8, 16)  # GroupNorm(8) needs channels divisible by 8
CPU = ["--device", "cpu", "--tile", "16", "16", "16", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny untrained U-Net saved twice: with and without modality dropout."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = build_model("unet-seg", features=TINY)
    extra = {"voxel_size": [4.0, 4.0, 4.0]}
    old = save_checkpoint(root / "old.pt", model, extra=extra)
    new = save_checkpoint(root / "dropout.pt", model, extra={**extra, "modality_dropout": True})
    return {"old": old, "dropout": new}


def _arrays(folder):
    return {m: load_volume(folder / f"{m}.nii.gz") for m in ("t1", "t2", "flair")}


# -- training side --


def test_drop_modalities_keeps_flair_and_follows_the_mode_probabilities() -> None:
    rng = np.random.default_rng(0)
    image = np.ones((3, 2, 2, 2), np.float32)
    counts = dict.fromkeys(MODALITY_DROPOUT, 0)
    for _ in range(2000):
        out, kept = drop_modalities(image, rng)
        counts[kept] += 1
        for channel, name in enumerate(SEG_MODALITIES):
            assert np.all(out[channel] == (1.0 if name in kept else 0.0))
    assert image.min() == 1.0  # the input is not modified
    for mode, p in MODALITY_DROPOUT.items():
        assert counts[mode] / 2000 == pytest.approx(p, abs=0.04)


@pytest.mark.parametrize(
    ("modes", "shape", "match"),
    [
        ({("flair",): 0.5}, (3, 2, 2, 2), "probabilities >= 0 summing to 1"),
        ({("pd", "flair"): 1.0}, (3, 2, 2, 2), r"unknown modalities \['pd'\]"),
        (None, (2, 2, 2, 2), "image must have 3 channels"),
    ],
)
def test_drop_modalities_refuses_bad_arguments(modes, shape, match) -> None:
    with pytest.raises(ValueError, match=match):
        drop_modalities(np.ones(shape, np.float32), np.random.default_rng(0), modes)


def test_seg_batch_drops_t1_and_t2_only_with_modality_dropout(ms_dataset) -> None:
    subjects = [load_seg_subject(ms_dataset / "sub-0000")]
    base = {"batch_size": 12, "patch_size": (8, 8, 8), "augment": False, "p_lesion": 1.0}
    plain = SEGMENTATION.batch(subjects, np.random.default_rng(1), TrainConfig(**base), {})
    plain = plain["image"]
    assert bool((plain.abs().sum(dim=(2, 3, 4)) > 0).all())
    cfg = TrainConfig(**base, modality_dropout=True)
    image = SEGMENTATION.batch(subjects, np.random.default_rng(1), cfg, {})["image"]
    present = image.abs().sum(dim=(2, 3, 4)) > 0  # (B, 3)
    assert bool(present[:, 2].all())  # FLAIR always
    assert not bool(present[:, 0].all()) and not bool(present[:, 1].all())
    assert TrainConfig.from_dict(cfg.to_dict()).modality_dropout


def test_training_records_modality_dropout_in_the_checkpoint(ms_dataset, tmp_path) -> None:
    subjects = [load_seg_subject(ms_dataset / "sub-0000")]
    config = TrainConfig(
        model="unet-seg",
        features=TINY,
        steps=1,
        batch_size=1,
        patch_size=(16, 16, 16),
        val_every=0,
        device="cpu",
        augment=False,
        modality_dropout=True,
    )
    events = list(run_training(config, subjects, subjects, tmp_path / "run"))
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert supports_missing_modalities(ckpt)
    validation = next(e for e in events if e["event"] == "validation")
    assert 0 <= validation["dice_flair"] <= 1 and "lf1_flair" in validation


# -- loading subjects --


def test_subject_without_t1_t2_and_with_a_consensus_mask(write_ms_subject, tmp_path) -> None:
    folder = write_ms_subject(tmp_path / "p01", seed=3)
    full = load_seg_subject(folder)
    (folder / "t1.nii.gz").unlink()
    (folder / "t2.nii.gz").unlink()
    (folder / "lesion_mask.nii.gz").rename(folder / "consensus_lesions.nii.gz")
    flair_only = load_seg_subject(folder)
    assert flair_only.modalities == ("flair",) and full.modalities == SEG_MODALITIES
    assert np.all(flair_only.image[:2] == 0)
    np.testing.assert_array_equal(flair_only.image[2], full.image[2])
    np.testing.assert_array_equal(flair_only.label, full.label)


def test_subject_modalities_argument_and_errors(write_ms_subject, tmp_path) -> None:
    folder = write_ms_subject(tmp_path / "p02", seed=4)
    t2_flair = load_seg_subject(folder, modalities=("t2", "flair"))
    assert t2_flair.modalities == ("t2", "flair") and np.all(t2_flair.image[0] == 0)
    with pytest.raises(ValueError, match=r"subset of .* including 'flair'"):
        load_seg_subject(folder, modalities=("t1", "t2"))
    (folder / "lesion_mask.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lesion_mask\.nii\.gz or consensus_lesions"):
        load_seg_subject(folder)
    assert load_seg_subject(folder, require_label=False).label is None


# -- prediction --


def test_segment_missing_modalities_needs_a_dropout_model(ms_dataset, checkpoints) -> None:
    from napari_fanet.models import load_checkpoint

    vols = _arrays(ms_dataset / "sub-0001")
    model, old = load_checkpoint(checkpoints["old"])
    with pytest.raises(ValueError, match="T2 is missing: it was not trained with modality"):
        segment(model, old, vols["t1"], None, vols["flair"])
    with pytest.raises(ValueError, match="T1 and T2 are missing"):
        segment(model, old, None, None, vols["flair"])
    model, new = load_checkpoint(checkpoints["dropout"])
    result = segment(model, new, None, None, vols["flair"])
    assert result.outputs["mask"].shape == vols["flair"].shape
    assert "no T1 or T2: segmented from FLAIR" in result.report.messages[0]
    with pytest.raises(ValueError, match="segmentation needs a FLAIR"):
        segment(model, new, vols["t1"], vols["t2"], None)


def test_network_input_zeroes_the_missing_channel(ms_dataset, checkpoints) -> None:
    vols = _arrays(ms_dataset / "sub-0002")
    arrays = {"T1": vols["t1"].data, "FLAIR": vols["flair"].data}
    ckpt = torch.load(checkpoints["dropout"], weights_only=True)
    net = prepare_network_input("segmentation", arrays, (4.0, 4.0, 4.0), ckpt)
    assert np.all(net.image[1] == 0) and np.abs(net.image[0]).sum() > 0
    brain = vols["flair"].data != 0
    assert net.image[2][brain].mean() == pytest.approx(0.0, abs=1e-4)  # z-scored in the brain
    old = torch.load(checkpoints["old"], weights_only=True)
    with pytest.raises(ValueError, match=r"segmentation needs the inputs \['T2'\]"):
        prepare_network_input("segmentation", arrays, (4.0, 4.0, 4.0), old)


def test_prediction_request_allows_empty_t1_t2_for_dropout_models(ms_dataset, checkpoints):
    vols = _arrays(ms_dataset / "sub-0000")
    inputs = {
        "T1": None,
        "T2": None,
        "FLAIR": LayerVolume("flair", vols["flair"].data, (4.0, 4.0, 4.0)),
        "brain mask": None,
    }
    old = PredictionRequest("segmentation", inputs, str(checkpoints["old"]))
    assert old.problems()[:2] == ["choose a T1 layer", "choose a T2 layer"]
    new = PredictionRequest("segmentation", inputs, str(checkpoints["dropout"]))
    assert new.problems() == []
    assert new.run().outputs["probability"].shape == vols["flair"].shape


# -- command line --


def test_cli_segment_flair_only_and_resampling_onto_the_flair_grid(
    ms_dataset, checkpoints, tmp_path, capsys
) -> None:
    case = ms_dataset / "sub-0001"
    flair = str(case / "flair.nii.gz")
    out = tmp_path / "out"
    argv = ["segment", "--flair", flair, "--model", str(checkpoints["dropout"]), "--out"]
    assert main([*argv, str(out), *CPU]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "no T1 or T2" in summary["messages"][0]
    assert nib.load(out / "lesion_mask.nii.gz").shape == nib.load(flair).shape

    # a T2 on a coarser grid (8 mm) is resampled onto the FLAIR grid, and says so
    t2 = load_volume(case / "t2.nii.gz")
    coarse = Volume(t2.data[::2, ::2, ::2], t2.affine @ np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(nib.Nifti1Image(coarse.data, coarse.affine), tmp_path / "t2_8mm.nii.gz")
    t2_arg = ["--t2", str(tmp_path / "t2_8mm.nii.gz")]
    assert main([*argv, str(tmp_path / "out2"), *t2_arg, *CPU]) == 0
    err = capsys.readouterr().err
    assert "T2 is on another grid (12 x 14 x 10 voxels of 8 x 8 x 8 mm)" in err
    assert "resampled onto the FLAIR grid through the affines" in err

    # the shipped-style model without modality dropout refuses a missing T1
    old = ["segment", "--flair", flair, "--t2", str(case / "t2.nii.gz"), "--model"]
    assert main([*old, str(checkpoints["old"]), "--out", str(tmp_path / "o3"), *CPU]) == 1
    assert "T1 is missing: it was not trained with modality dropout" in capsys.readouterr().err


def test_cli_segment_help_says_inputs_must_be_skull_stripped(capsys) -> None:
    assert main(["segment", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "must be skull-stripped" in text and "--brain-mask" in text


def test_resample_to_reference_matches_nearest_and_linear_grids() -> None:
    data = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)
    fine = Volume(np.zeros((8, 8, 8), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    # coarse voxel i sits at world 2 i + 0.5: fine voxels 2 i and 2 i + 1 are 0.5 mm from it
    coarse = Volume(data, np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 2, 0.5], [0, 0, 0, 1]]))
    out = resample_to_reference(coarse, fine, order=0)
    assert out.shape == (8, 8, 8) and np.allclose(out.affine, fine.affine)
    assert out.data[3, 3, 3] == data[1, 1, 1]  # world 3 is coarse index 1.25 -> 1
    linear = resample_to_reference(coarse, fine, order=1)
    assert linear.data[3, 3, 3] == pytest.approx(data[1, 1, 1] + 0.25 * (16 + 4 + 1))
    with pytest.raises(ValueError, match="order must be 0, 1 or 3"):
        resample_to_reference(coarse, fine, order=2)
    with pytest.raises(ValueError, match="expected 3D volumes"):
        resample_to_reference(Volume(np.zeros((2, 2, 2, 2)), np.eye(4)), fine)
