"""Lesion-contrast augmentation: :func:`scale_lesion_contrast` and its use in training."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.engine.config import TrainConfig
from napari_fanet.tasks import QSM, SEGMENTATION
from napari_fanet.tasks.base import UnusableSetting
from napari_fanet.tasks.sampling import augment_seg, scale_lesion_contrast

SHAPE = (24, 24, 24)


def patch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 3-channel patch: a brain block on a zero background with a 6^3 lesion in its middle.

    The tissue is a smooth ramp per channel; the lesion adds +2 (T1: -1) on top of it.
    """
    brain = np.zeros(SHAPE, bool)
    brain[2:22, 2:22, 2:22] = True
    lesion = np.zeros(SHAPE, bool)
    lesion[9:15, 9:15, 9:15] = True
    ramp = np.linspace(-0.5, 0.5, SHAPE[0])[:, None, None] * np.ones(SHAPE)
    image = np.stack([ramp + offset for offset in (0.1, 0.2, 0.3)]).astype(np.float32)
    image += np.stack([-1.0 * lesion, 2.0 * lesion, 2.0 * lesion]).astype(np.float32)
    image *= brain
    label = lesion.astype(np.int64)
    return image, label, brain


def test_a_factor_of_one_changes_nothing_and_outside_the_brain_stays_zero():
    image, label, brain = patch()
    assert np.array_equal(scale_lesion_contrast(image, label, [1, 1, 1]), image)
    out = scale_lesion_contrast(image, label, [0.5, 0.0, 2.0])
    assert np.all(out[:, ~brain] == 0)
    assert out.dtype == np.float32 and not np.shares_memory(out, image)


def test_the_lesion_moves_towards_its_surroundings_by_the_factor():
    image, label, _ = patch()
    out = scale_lesion_contrast(image, label, [0.5, 0.0, 2.0])
    core = np.zeros(SHAPE, bool)
    core[11:13, 11:13, 11:13] = True  # deep inside: the soft mask is 1, the background is
    # the ramp around the lesion, the lesion's excess is the added step
    excess = image - out
    # factor 0: the core loses its whole step (2), up to the background average's smoothing
    assert np.allclose(excess[1][core], 2.0, atol=0.05)
    # factor 0.5: half of the T1 step (-1) goes
    assert np.allclose(excess[0][core], -0.5, atol=0.03)
    # factor 2: FLAIR's step doubles
    assert np.allclose(excess[2][core], -2.0, atol=0.1)
    # far from the lesion nothing moves
    far = np.zeros(SHAPE, bool)
    far[2:5, 2:5, 2:5] = True
    assert np.array_equal(out[:, far], image[:, far])


def test_a_patch_without_lesions_is_returned_unchanged():
    image, label, _ = patch()
    assert np.array_equal(scale_lesion_contrast(image, np.zeros_like(label), [0, 0, 0]), image)


@pytest.mark.parametrize("factors", [[1, 1], [1, -0.5, 1], [1, np.nan, 1], [np.inf, 1, 1]])
def test_scale_lesion_contrast_refuses_bad_factors(factors):
    image, label, _ = patch()
    with pytest.raises(ValueError, match=r"expected 3 finite contrast factors >= 0 \(one per"):
        scale_lesion_contrast(image, label, factors)


def test_without_the_option_augment_seg_draws_what_it_drew_before():
    """Old runs resume to the same batches: no draw is added when the option is off."""
    image, label, _ = patch()
    plain_rng, option_rng = np.random.default_rng(3), np.random.default_rng(3)
    plain = augment_seg(image, label, plain_rng)
    off = augment_seg(image, label, option_rng, lesion_contrast=None)
    assert all(np.array_equal(a, b) for a, b in zip(plain, off, strict=True))
    assert plain_rng.random() == option_rng.random()


def test_augment_seg_changes_the_lesion_contrast_in_about_half_of_the_patches():
    image, label, _ = patch()
    lesion = label == 1
    changed = 0
    for seed in range(40):
        out, _ = augment_seg(
            image,
            label,
            np.random.default_rng(seed),
            p_elastic=0,
            p_shift=0,
            lesion_contrast=(0.5, 0.5),
        )
        changed += not np.array_equal(out[:, lesion], image[:, lesion])
    assert 10 <= changed <= 30


def test_train_config_checks_and_keeps_the_contrast_range():
    config = TrainConfig(lesion_contrast=[0.6, 1.1])
    assert config.lesion_contrast == (0.6, 1.1)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["lesion_contrast"] == [0.6, 1.1]
    assert TrainConfig().lesion_contrast is None


@pytest.mark.parametrize("value", [(1.1, 0.6), (-0.1, 1.0), (0.5, float("inf")), (0.5,), 0.5])
def test_train_config_refuses_a_bad_contrast_range(value):
    with pytest.raises(ValueError, match="invalid training setting lesion_contrast="):
        TrainConfig(lesion_contrast=value)


def test_train_config_refuses_the_contrast_without_augmentation():
    with pytest.raises(ValueError, match="lesion_contrast is an augmentation: expected augment="):
        TrainConfig(lesion_contrast=(0.6, 1.1), augment=False)


def test_only_a_task_with_lesions_takes_the_contrast_augmentation():
    config = TrainConfig(model="qsmnet", lesion_contrast=(0.6, 1.1))
    SEGMENTATION.check_training_config(config)
    with pytest.raises(UnusableSetting, match="lesion-contrast augmentation needs a task") as err:
        QSM.check_training_config(config)
    assert err.value.setting == "lesion_contrast"
    blob = TrainConfig(model="qsmnet", blob_weight=1.0)
    with pytest.raises(UnusableSetting, match="a per-lesion loss needs a task") as err:
        QSM.check_training_config(blob)
    assert err.value.setting == "blob_weight"
