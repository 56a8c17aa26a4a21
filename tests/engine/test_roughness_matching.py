"""``segment`` smooths a FLAIR rougher than the model's training scans, when asked, and says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_fanet.engine import predict
from napari_fanet.engine.predict import seg_model_channels, seg_model_input, segment
from napari_fanet.models import build_model
from napari_fanet.tasks.roughness import MATCH_ROUGHNESS_DEFAULT, TARGET_KEY, fine_roughness

SHAPE = (32, 32, 32)


def _inputs(seed: int = 0) -> dict[str, np.ndarray]:
    """Skull-stripped T1, T2 and a noisy FLAIR: a ball of median about 100."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE) - 15.5
    brain = np.sqrt((grid**2).sum(0)) < 14
    arrays = {}
    for k, noise in (("T1", 0.02), ("T2", 0.02), ("FLAIR", 0.1)):
        image = 100 * (1 + noise * rng.standard_normal(SHAPE))
        arrays[k] = np.where(brain, image, 0).astype(np.float32)
    return arrays


def _roughness(arrays: dict[str, np.ndarray]) -> float:
    return fine_roughness(arrays["FLAIR"], arrays["FLAIR"] != 0)


def test_matching_smooths_only_the_flair_and_only_with_a_target() -> None:
    arrays = _inputs()
    voxel = (1.0, 1.0, 1.0)
    target = {"extra": {TARGET_KEY: _roughness(arrays) / 2}}
    plain, _, _ = seg_model_input(arrays, voxel, {}, match_roughness=False)
    messages: list[str] = []
    matched, _, _ = seg_model_input(arrays, voxel, target, match_roughness=True, messages=messages)
    np.testing.assert_array_equal(matched[:2], plain[:2])  # T1 and T2 as they were
    assert not np.allclose(matched[2], plain[2])
    assert len(messages) == 1 and "smoothed in the brain by a Gaussian of sigma" in messages[0]
    for checkpoint, match in (({}, True), (target, False)):
        messages = []
        same, _, _ = seg_model_input(
            arrays, voxel, checkpoint, match_roughness=match, messages=messages
        )
        np.testing.assert_array_equal(same, plain)
        assert messages == []
    assert MATCH_ROUGHNESS_DEFAULT is True  # the shipped default (fanet-seg card, stage 18)


def test_matching_runs_on_the_model_grid_with_its_voxel_size(monkeypatch) -> None:
    arrays = _inputs()
    seen = {}

    def spy(flair, brain, target, voxel_size):
        seen.update(shape=flair.shape, voxel=tuple(voxel_size), target=target)
        return flair, "spied"

    monkeypatch.setattr(predict, "match_flair", spy)
    checkpoint = {"extra": {TARGET_KEY: 0.05, "voxel_size": [2.0, 2.0, 2.0]}}
    messages: list[str] = []
    seg_model_input(arrays, (1.0, 1.0, 1.0), checkpoint, match_roughness=True, messages=messages)
    assert seen == {"shape": (16, 16, 16), "voxel": (2.0, 2.0, 2.0), "target": 0.05}
    assert messages == ["spied"]
    channels, brain, grid, voxel = seg_model_channels(arrays, (1.0, 1.0, 1.0), checkpoint)
    assert grid == (16, 16, 16) and brain.shape == grid and tuple(voxel) == (2.0, 2.0, 2.0)
    assert set(channels) == {"T1", "T2", "FLAIR"}


def test_segment_reports_the_smoothing_and_its_map_changes() -> None:
    torch.manual_seed(0)
    model = build_model("fanet-seg", features=(8, 8, 8, 8, 16)).eval()
    arrays = _inputs()
    target = {"extra": {TARGET_KEY: _roughness(arrays) / 2}}
    kwargs = {"voxel_size": (1.0, 1.0, 1.0), "mirror": False}
    flair = arrays["FLAIR"]
    plain = segment(
        model, target, arrays["T1"], arrays["T2"], flair, match_roughness=False, **kwargs
    )
    matched = segment(
        model, target, arrays["T1"], arrays["T2"], flair, match_roughness=True, **kwargs
    )
    assert not any("roughness" in m for m in plain.report.messages)
    assert any("smoothed in the brain" in m for m in matched.report.messages)
    probability = (plain.outputs["probability"], matched.outputs["probability"])
    assert not np.allclose(*probability)


def test_a_bad_recorded_target_is_refused_before_the_network_input_is_made() -> None:
    arrays = _inputs()
    checkpoint = {"extra": {TARGET_KEY: -1.0}}
    with pytest.raises(ValueError, match=r"extra\['roughness_target'\] must be a finite positive"):
        seg_model_input(arrays, (1.0, 1.0, 1.0), checkpoint, match_roughness=True)


def test_a_prediction_request_passes_the_choice_to_segment(tmp_path) -> None:
    from napari_fanet.engine.prediction_request import PredictionRequest
    from napari_fanet.io.layers import LayerVolume
    from napari_fanet.models import save_checkpoint

    torch.manual_seed(0)
    arrays = _inputs()
    path = save_checkpoint(
        tmp_path / "m.pt",
        build_model("fanet-seg", features=(8, 8, 8, 8, 16)),
        extra={TARGET_KEY: _roughness(arrays) / 2, "voxel_size": [1.0, 1.0, 1.0]},
    )
    inputs = {k: LayerVolume(k, v, scale=(1.0, 1.0, 1.0)) for k, v in arrays.items()}
    said = {}
    for match in (True, False):
        request = PredictionRequest(
            "segmentation", inputs, str(path), mirror=False, match_roughness=match
        )
        said[match] = " ".join(request.run().report.messages)
    assert "smoothed in the brain" in said[True] and "roughness" not in said[False]


@pytest.mark.parametrize("name", ["fanet-seg", "unet-seg"])
def test_the_shipped_segmentation_weights_carry_a_target(name) -> None:
    from napari_fanet.engine.predict import load_model
    from napari_fanet.tasks.roughness import roughness_target

    _, checkpoint = load_model(name)
    assert 0.05 < roughness_target(checkpoint) < 0.15  # the real FLAIRs: 0.075-0.114
    assert len(checkpoint["extra"]["roughness_target_scans"]) == 3


def test_flair_roughness_target_measures_files_on_the_model_grid(tmp_path) -> None:
    import nibabel as nib

    from napari_fanet.engine.roughness_target import flair_roughness_target

    flair = _inputs()["FLAIR"]
    path = tmp_path / "flair.nii.gz"
    nib.save(nib.Nifti1Image(flair, np.diag([1.0, 1.0, 1.0, 1.0])), path)
    same = flair_roughness_target([path], {"extra": {"voxel_size": [1.0, 1.0, 1.0]}})
    assert same == pytest.approx(_roughness({"FLAIR": flair}), rel=1e-5)
    coarse = flair_roughness_target([path], {"extra": {"voxel_size": [2.0, 2.0, 2.0]}})
    assert coarse != pytest.approx(same, rel=0.05)  # measured after resampling to 2 mm
    with pytest.raises(ValueError, match=r"expected one or more \(FLAIR, brain\) pairs"):
        flair_roughness_target([], {})
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image((flair > 0).astype(np.float32), np.eye(4)), mask)
    with pytest.raises(
        ValueError, match=r"mask.nii.gz: expected a FLAIR with graded intensities, got an image"
    ):
        flair_roughness_target([mask], {})
    with pytest.raises(FileNotFoundError, match=r"none.nii.gz"):
        flair_roughness_target([tmp_path / "none.nii.gz"], {})
