"""Each Task's checks, training pieces and evaluation pieces, on tiny volumes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_fanet.engine.config import TrainConfig
from napari_fanet.io.nifti import Volume
from napari_fanet.tasks import QSM, SEGMENTATION
from napari_fanet.tasks.cases import EvalCase
from napari_fanet.tasks.losses import blob_dice_loss
from napari_fanet.tasks.subjects import load_qsm_subject

SHAPE = (16, 16, 16)
TINY = {"batch_size": 2, "patch_size": (8, 8, 8), "augment": False, "p_lesion": 1.0}


def _model(task: str) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(task=task, name="m"))


@pytest.mark.parametrize(
    ("task", "model_task", "message"),
    [
        (SEGMENTATION, "qsm", r"^model 'm' is a qsm model, not segmentation$"),
        (QSM, "segmentation", r"^model 'm' is a segmentation model, not qsm$"),
    ],
)
def test_check_model(task, model_task, message):
    task.check_model(_model(task.name))
    assert task.owns(_model(task.name)) and not task.owns(_model(model_task))
    assert not task.owns(object())
    with pytest.raises(ValueError, match=message):
        task.check_model(_model(model_task))


@pytest.mark.parametrize(
    ("arrays", "checkpoint", "message"),
    [
        ({"T1": 1, "T2": 1}, {}, r"^segmentation needs a FLAIR; got only \['T1', 'T2'\]$"),
        ({"FLAIR": 1}, {}, r"^this model needs T1, T2 and FLAIR but T1 and T2 are missing"),
        ({"T1": 1, "FLAIR": 1}, {}, r"^this model needs T1, T2 and FLAIR but T2 is missing"),
        ({"FLAIR": 0}, {"extra": {"modality_dropout": True}}, r"^FLAIR is all zeros"),
        (
            {"FLAIR": 1, "brain mask": 0},
            {"extra": {"modality_dropout": True}},
            r"^brain mask is empty: expected a mask with at least one voxel inside",
        ),
    ],
)
def test_segmentation_check_inputs(arrays, checkpoint, message):
    arrays = {k: _stripped(v) for k, v in arrays.items()}
    with pytest.raises(ValueError, match=message):
        SEGMENTATION.check_inputs(arrays, checkpoint)


def _stripped(value: float) -> np.ndarray:
    """``value`` inside, 0 on a 2-voxel border: what a skull-stripped volume looks like."""
    return np.pad(np.full([n - 4 for n in SHAPE], value, np.float32), 2)


def test_segmentation_refuses_a_flair_that_is_not_skull_stripped():
    arrays = {"FLAIR": np.ones(SHAPE, np.float32)}
    with pytest.raises(ValueError, match=r"^the FLAIR does not look skull-stripped: 6 of the 6"):
        SEGMENTATION.check_inputs(arrays, {"extra": {"modality_dropout": True}})
    arrays["brain mask"] = np.ones(SHAPE, np.float32)  # a mask says where the brain is
    SEGMENTATION.check_inputs(arrays, {"extra": {"modality_dropout": True}})


def test_segmentation_accepts_flair_alone_after_modality_dropout():
    arrays = {"FLAIR": _stripped(1.0)}
    SEGMENTATION.check_inputs(arrays, {"extra": {"modality_dropout": True}})
    message = SEGMENTATION.absent_channels_message(arrays)
    assert message == "no T1 or T2: segmented from FLAIR (missing channels zero)"
    full = {k: np.ones(SHAPE) for k in ("T1", "T2", "FLAIR")}
    assert SEGMENTATION.absent_channels_message(full) is None


@pytest.mark.parametrize(
    ("mask", "checkpoint", "message"),
    [
        (0, {"extra": {"preprocessing": {"field_scale": 1}}}, r"^brain mask is empty"),
        (1, {"extra": {}}, r"^checkpoint lacks the QSM preprocessing scales"),
        (1, {}, r"^checkpoint lacks the QSM preprocessing scales"),
    ],
)
def test_qsm_check_inputs(mask, checkpoint, message):
    arrays = {"local field": np.zeros(SHAPE), "brain mask": np.full(SHAPE, mask)}
    with pytest.raises(ValueError, match=message):
        QSM.check_inputs(arrays, checkpoint)


def test_segmentation_training_pieces(ms_dataset):
    subjects = [SEGMENTATION.load_subject(p) for p in SEGMENTATION.list_subjects(ms_dataset)]
    assert [s.name for s in subjects] == ["sub-0000", "sub-0001", "sub-0002"]
    extra: dict = {}
    config = TrainConfig(modality_dropout=True, **TINY)
    train, val = SEGMENTATION.prepare_training(subjects[:2], subjects[2:], extra, config)
    assert extra == {"modality_dropout": True} and train == subjects[:2]
    batch = SEGMENTATION.batch(train, np.random.default_rng(0), config, extra)
    assert batch["image"].shape == (2, 3, 8, 8, 8) and batch["label"].shape == (2, 8, 8, 8)

    def perfect(image: np.ndarray) -> torch.Tensor:  # the reference as logits
        label = torch.from_numpy((val[0].label == 1).astype(np.float32))
        return torch.stack([-10 * label + 5, 10 * label - 5])[None]

    metrics = SEGMENTATION.validate(val, perfect, extra, config)
    assert set(metrics) == {"val_loss", "dice", "lf1", "dice_flair", "lf1_flair"}
    assert metrics["dice"] == pytest.approx(1.0) and metrics["lf1"] == pytest.approx(1.0)


def test_segmentation_batch_numbers_lesions_for_the_blob_loss(ms_dataset):
    subjects = [SEGMENTATION.load_subject(p) for p in SEGMENTATION.list_subjects(ms_dataset)]
    config = TrainConfig(blob_weight=2.0, **TINY)
    batch = SEGMENTATION.batch(subjects, np.random.default_rng(0), config, {})
    assert batch["blobs"].shape == batch["label"].shape and float(batch["blob_weight"]) == 2.0
    lesion = batch["label"] == 1
    assert bool(lesion.any())  # p_lesion=1: every patch is centred on a lesion
    assert torch.equal(batch["blobs"] > 0, lesion)
    plain = SEGMENTATION.batch(subjects, np.random.default_rng(0), TrainConfig(**TINY), {})
    assert set(plain) == {"image", "label"}
    torch.testing.assert_close(plain["label"], batch["label"])

    logits = torch.randn(2, 2, 8, 8, 8)

    class Fixed(torch.nn.Module):
        def forward(self, image):
            return logits

    extra_term = SEGMENTATION.loss(Fixed(), batch) - SEGMENTATION.loss(Fixed(), plain)
    expected = 2.0 * blob_dice_loss(logits, batch["label"], batch["blobs"])
    torch.testing.assert_close(extra_term, expected)


def test_qsm_training_pieces(qsm_dataset):
    subjects = [load_qsm_subject(p) for p in QSM.list_subjects(qsm_dataset)]
    extra: dict = {}
    config = TrainConfig(model="fanet-qsm", **TINY)
    train, val = QSM.prepare_training(subjects[:2], subjects[2:], extra, config)
    scales = extra["preprocessing"]
    field = np.concatenate([s.field[s.mask] for s in subjects[:2]])
    assert scales["field_scale"] == pytest.approx(float(field.std()))
    assert scales["align_b0"] is True
    # the fixture's B0 is tilted: network subjects are rotated to z and in network units
    np.testing.assert_array_equal(train[0].b0_dir, [0, 0, 1])
    assert train[0].field[train[0].mask].std() == pytest.approx(1.0, rel=0.05)
    np.testing.assert_array_equal(val[0].b0_dir, [0, 0, 1])
    batch = QSM.batch(train, np.random.default_rng(0), config, extra)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "field": (2, 1, 8, 8, 8),
        "chi": (2, 1, 8, 8, 8),
        "mask": (2, 1, 8, 8, 8),
        "dipole": (2, 1, 12, 12, 12),
    }

    def zero(image: np.ndarray) -> torch.Tensor:
        return torch.zeros((1, 1, *image.shape[1:]))

    metrics = QSM.validate(val, zero, extra, config)
    assert set(metrics) == {"val_loss", "nrmse"}
    assert metrics["nrmse"] == pytest.approx(100.0)  # a zero map: 100 % error


def _seg_case() -> EvalCase:
    rng = np.random.default_rng(0)
    brain = np.zeros(SHAPE, bool)
    brain[2:14, 2:14, 2:14] = True
    lesion = np.zeros(SHAPE, bool)
    lesion[6:9, 6:9, 6:9] = True
    images = {k: (brain * (1 + 0.05 * rng.standard_normal(SHAPE))) for k in ("t1", "t2")}
    images["flair"] = brain * (1 + 0.05 * rng.standard_normal(SHAPE)) + 2 * lesion
    inputs = {k: Volume(v.astype(np.float32), np.eye(4)) for k, v in images.items()}
    inputs["brain_mask"] = Volume(brain.astype(np.float32), np.eye(4))
    return EvalCase("c", inputs, lesion, brain, (1.0, 1.0, 1.0))


def test_segmentation_evaluation_pieces():
    case = _seg_case()
    assert list(SEGMENTATION.case_inputs(case)) == ["T1", "T2", "FLAIR", "brain mask"]
    assert SEGMENTATION.case_options(case) == {}
    score = SEGMENTATION.score(case.reference, case)
    assert score == {"dice": 1.0, "ltpr": 1.0, "lppv": 1.0, "lf1": 1.0}
    assert SEGMENTATION.case_prediction({"mask": case.reference.astype(np.uint8)}).dtype == bool
    assert list(SEGMENTATION.baselines({"flair_z": 2.0})) == ["FLAIR threshold"]
    comparison = SEGMENTATION.compare({"mask": case.reference}, case.reference, None)
    assert comparison.metrics["dice"] == pytest.approx(1.0)


def test_qsm_evaluation_pieces():
    mask = np.zeros(SHAPE, bool)
    mask[3:13, 3:13, 3:13] = True
    chi = (mask * np.random.default_rng(1).normal(0, 0.05, SHAPE)).astype(np.float32)
    inputs = {k: Volume(mask.astype(np.float32), np.eye(4)) for k in ("local_field", "brain_mask")}
    case = EvalCase("c", inputs, chi, mask, (1.0, 1.0, 1.0), (0.0, 0.0, 1.0))
    assert list(QSM.case_inputs(case)) == ["local field", "brain mask"]
    assert QSM.case_options(case) == {"b0_dir": (0.0, 0.0, 1.0)}
    assert list(QSM.baselines({"tkd": 0.2, "cfl2": 0.01})) == ["TKD", "CFL2"]
    assert QSM.score(chi, case)["nrmse"] == pytest.approx(0.0, abs=1e-6)
    assert QSM.case_prediction({"chi": chi}) is chi
    comparison = QSM.compare({"chi": chi}, chi, mask)
    assert comparison.metrics["nrmse"] == pytest.approx(0.0, abs=1e-6)


def test_option_problems_check_the_mask_rule_for_segmentation_only():
    assert SEGMENTATION.option_problems({"threshold": 0.5, "seed_threshold": 0.9}) == []
    (problem,) = SEGMENTATION.option_problems({"threshold": 0.7, "seed_threshold": 0.6})
    assert problem.startswith("seed threshold (0.6) must be at least the threshold (0.7)")
    assert QSM.option_problems({"dc_lambda": "auto"}) == []
