"""Tasks are looked up by name; ``"ms"`` is segmentation; anything else says what is valid."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fanet.tasks import QSM, SEGMENTATION, TASKS, Task, get_task, task_of_subject
from napari_fanet.tasks.names import canonical_name
from napari_fanet.tasks.subjects import QSMSubject, SegSubject


@pytest.mark.parametrize(
    ("name", "expected"),
    [("segmentation", SEGMENTATION), ("ms", SEGMENTATION), ("qsm", QSM)],
)
def test_get_task_by_name_and_alias(name, expected):
    assert get_task(name) is expected
    assert get_task(expected) is expected  # a Task passes through


@pytest.mark.parametrize("name", ["MS", "segment", "denoise", "", None])
def test_unknown_task_lists_the_valid_names(name):
    with pytest.raises(
        ValueError,
        match=r"^task must be one of \['segmentation', 'qsm'\] \(or 'ms' for segmentation\), "
        rf"got {name!r}$",
    ):
        get_task(name)


def test_the_package_root_exports_get_task_lazily():
    import napari_fanet

    assert "get_task" in napari_fanet.__all__
    assert napari_fanet.get_task("ms") is SEGMENTATION


def test_the_registry_holds_one_task_per_stored_name():
    assert list(TASKS) == ["segmentation", "qsm"]
    assert all(isinstance(t, Task) and TASKS[t.name] is t for t in TASKS.values())
    assert [canonical_name(n) for n in ("ms", "segmentation", "qsm")] == [
        "segmentation",
        "segmentation",
        "qsm",
    ]


@pytest.mark.parametrize(
    ("task", "attributes"),
    [
        (
            SEGMENTATION,
            {
                "simulation_name": "ms",
                "default_model": "fanet-seg",
                "primary_metric": ("dice", True),
                "role_names": ("T1", "T2", "FLAIR", "brain mask"),
                "grid_role": "FLAIR",
                "families": (
                    "phantom",
                    "randomised",
                    "randomised-v2",
                    "randomised-v4",
                    "randomised-v5",
                    "randomised-v6",
                    "randomised-v7",
                ),
                "prediction_options": (
                    "threshold",
                    "seed_threshold",
                    "min_lesion_mm3",
                    "min_edge_distance_mm",
                    "mirror",
                    "window_shifts",
                    "match_roughness",
                ),
                "output": "mask",
                "phase_input": False,
            },
        ),
        (
            QSM,
            {
                "simulation_name": "qsm",
                "default_model": "fanet-qsm",
                "primary_metric": ("nrmse", False),
                "role_names": ("local field", "brain mask"),
                "grid_role": "local field",
                "families": ("phantom", "fullrange", "chain", "chain-vsharp"),
                "prediction_options": ("b0_dir", "data_consistency", "dc_lambda"),
                "output": "chi",
                "phase_input": True,
            },
        ),
    ],
)
def test_what_each_task_declares(task, attributes):
    assert {k: getattr(task, k) for k in attributes} == attributes
    assert repr(task) == f"<Task {task.name}>"


def test_the_default_models_are_shipped():
    from napari_fanet.engine.predict import shipped_weights

    defaults = {t.default_model_for(phase=p) for t in TASKS.values() for p in (False, True)}
    assert defaults <= set(shipped_weights())


@pytest.mark.parametrize(
    ("task", "dropout", "optional"),
    [
        (SEGMENTATION, False, ("brain mask",)),
        (SEGMENTATION, True, ("T1", "T2", "brain mask")),
        (QSM, False, ()),
        (QSM, True, ()),
    ],
)
def test_optional_roles(task, dropout, optional):
    assert task.optional_roles(missing_modalities=dropout) == optional
    assert task.optional_roles_for({"extra": {"modality_dropout": dropout}}) == optional


def test_task_of_subject():
    empty = np.zeros((2, 2, 2))
    seg = SegSubject("s", np.zeros((3, 2, 2, 2), np.float32), None, empty > 0, (1.0,) * 3)
    qsm = QSMSubject("q", empty, None, empty > 0, (1.0,) * 3, np.array([0.0, 0.0, 1.0]))
    assert task_of_subject(seg) is SEGMENTATION and task_of_subject(qsm) is QSM


def test_check_family_names_the_simulator_task():
    assert SEGMENTATION.check_family("randomised") == "randomised"
    expected = r"family must be one of phantom, fullrange, chain, chain-vsharp for task qsm"
    with pytest.raises(ValueError, match=expected):
        QSM.check_family("randomised")


def test_default_model_for_each_input():
    assert QSM.default_model_for(phase=True) == "fanet-qsm-phase"
    assert QSM.default_model_for(phase=False) == "fanet-qsm"
    assert SEGMENTATION.default_model_for(phase=True) == "fanet-seg"  # no phase input
    assert QSM.is_default_model("fanet-qsm-phase") and QSM.is_default_model("fanet-qsm")
    assert not QSM.is_default_model("qsmnet") and not SEGMENTATION.is_default_model(None)
