"""Training and prediction give the network bit-identical inputs for the same volume.

The training side reads a subject folder with the trainer's loader (and, for QSM, prepares it
as ``run_training`` does); the prediction side runs :func:`~napari_fanet.engine.predict.segment`
or :func:`~napari_fanet.engine.predict.reconstruct_qsm` on the same files, with the window
inference replaced by a recorder of what it is given.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_fanet.engine import averaged_prediction, predict
from napari_fanet.io.b0_direction import array_to_world_direction
from napari_fanet.io.nifti import load_volume, save_volume
from napari_fanet.tasks import QSM, SEGMENTATION
from napari_fanet.tasks.subjects import load_qsm_subject, load_seg_subject

#: An oblique-free but permuted and flipped grid: both paths must reorient it the same way.
PERMUTED = np.array(
    [[0.0, 0.0, -4.0, 40.0], [4.0, 0.0, 0.0, -50.0], [0.0, 4.0, 0.0, -30.0], [0, 0, 0, 1]]
)


@pytest.fixture
def recorder(monkeypatch):
    """Replace the window inference of ``engine.predict`` (QSM) and of the averaged
    segmentation passes; keep every input it is given."""
    seen: list[torch.Tensor] = []

    def record(model, x, settings, **callbacks):
        seen.append(x.clone())
        return torch.zeros((1, model.out_channels, *x.shape[2:]))

    monkeypatch.setattr(predict, "predict_volume", record)
    monkeypatch.setattr(averaged_prediction, "predict_volume", record)
    return seen


def _model(task: str, out_channels: int) -> SimpleNamespace:
    return SimpleNamespace(
        config=SimpleNamespace(task=task, name="spy"), out_channels=out_channels
    )


@pytest.mark.parametrize(
    ("removed", "dropout"),
    [((), False), (("t2",), True), (("t1", "t2"), True), (("brain_mask",), False)],
)
def test_segmentation_inputs_are_bit_identical(
    tmp_path, write_ms_subject, recorder, removed, dropout
):
    folder = write_ms_subject(tmp_path / "sub-0", seed=3, affine=PERMUTED)
    for stem in removed:
        (folder / f"{stem}.nii.gz").unlink()
    subject = load_seg_subject(folder)  # the trainer's loader
    checkpoint = {"extra": {"voxel_size": list(subject.voxel_size), "modality_dropout": dropout}}
    files = {m: folder / f"{m}.nii.gz" for m in ("t1", "t2", "flair", "brain_mask")}
    vols = {m: load_volume(p) if p.is_file() else None for m, p in files.items()}
    predict.segment(
        _model("segmentation", 2),
        checkpoint,
        vols["t1"],
        vols["t2"],
        vols["flair"],
        brain_mask=vols["brain_mask"],
        mirror=True,
        window_shifts=1,
    )
    network_input, mirrored = recorder  # the scan, then its left-right mirror image
    assert network_input.dtype == torch.float32 and subject.image.dtype == np.float32
    # the network sees the brain's bounding box with a margin of zeros
    expected, _ = averaged_prediction.crop_to_brain(subject.image, subject.brain)
    np.testing.assert_array_equal(network_input[0].numpy(), expected)
    np.testing.assert_array_equal(mirrored[0].numpy(), expected[:, ::-1])


@pytest.mark.parametrize("b0_dir", [(0.0, 0.0, 1.0), (0.0, 0.0, -1.0), (0.3, -0.2, 1.0)])
def test_qsm_inputs_are_bit_identical(tmp_path, write_qsm_subject, recorder, b0_dir):
    folder = write_qsm_subject(tmp_path / "sub-0", seed=5, affine=PERMUTED, b0_dir=b0_dir)
    field = load_volume(folder / "local_field.nii.gz")
    outside = load_volume(folder / "brain_mask.nii.gz").data < 0.5
    noisy = field.data + 0.02 * outside * np.random.default_rng(0).standard_normal(outside.shape)
    save_volume(folder / "local_field.nii.gz", noisy.astype(np.float32), field.affine)

    extra: dict = {}
    (subject,) = [load_qsm_subject(folder)]
    (trained,), _ = QSM.prepare_training([subject], [], extra, None)  # as run_training does
    checkpoint = {"extra": {**extra, "voxel_size": list(subject.voxel_size)}}
    b0_world = array_to_world_direction(np.asarray(b0_dir, float), PERMUTED)
    predict.reconstruct_qsm(
        _model("qsm", 1),
        checkpoint,
        load_volume(folder / "local_field.nii.gz"),
        load_volume(folder / "brain_mask.nii.gz"),
        b0_dir=tuple(b0_world),
        data_consistency="none",
    )
    (network_input,) = recorder
    assert network_input.dtype == torch.float32 and trained.field.dtype == np.float32
    np.testing.assert_array_equal(network_input[0, 0].numpy(), trained.field)


def test_simulated_segmentation_subjects_equal_their_written_files(tmp_path):
    from napari_fanet.simulation.dataset import simulate_subject, write_subject
    from napari_fanet.tasks.simulated import simulated_seg_subject

    voxel = (4.0, 4.0, 4.0)
    write_subject(simulate_subject("ms", 7, voxel), tmp_path / "sub-0007")
    from_files = load_seg_subject(tmp_path / "sub-0007")
    simulated = SEGMENTATION.simulated_subject(7, voxel)
    assert simulated.name == "sim-7"
    np.testing.assert_array_equal(simulated.image, from_files.image)
    np.testing.assert_array_equal(simulated.brain, from_files.brain)
    np.testing.assert_array_equal(simulated.label, from_files.label)
    np.testing.assert_array_equal(simulated_seg_subject(7, voxel).image, simulated.image)
