"""Batch runs: subject discovery (BIDS and folder per subject), skipping, failures, summary."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from napari_fanet.engine.batch import (
    CHI_PERCENTILES,
    BatchSubject,
    chi_summary,
    find_batch_subjects,
    run_batch,
    summary_columns,
)


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_bids_subjects_with_sessions_optional_files_and_problems(tmp_path) -> None:
    root = tmp_path / "bids"
    a = root / "sub-01" / "anat"
    touch(a / "sub-01_FLAIR.nii.gz")
    touch(a / "sub-01_T1w.nii.gz")
    touch(a / "sub-01_T2w.nii")
    s = root / "sub-02" / "ses-1" / "anat"
    touch(s / "sub-02_ses-1_FLAIR.nii.gz")
    touch(root / "sub-03" / "anat" / "sub-03_T1w.nii.gz")  # no FLAIR
    two = root / "sub-04" / "anat"
    touch(two / "sub-04_run-1_FLAIR.nii.gz")
    touch(two / "sub-04_run-2_FLAIR.nii.gz")
    (root / "derivatives").mkdir()
    layout, subjects = find_batch_subjects(root, "segment")
    assert layout == "bids"
    by_name = {s.name: s for s in subjects}
    assert list(by_name) == ["sub-01", "sub-02_ses-1", "sub-03", "sub-04"]
    assert by_name["sub-01"].problem is None
    assert by_name["sub-01"].files == {
        "flair": a / "sub-01_FLAIR.nii.gz",
        "t1": a / "sub-01_T1w.nii.gz",
        "t2": a / "sub-01_T2w.nii",
    }
    assert by_name["sub-02_ses-1"].files == {"flair": s / "sub-02_ses-1_FLAIR.nii.gz"}
    assert by_name["sub-03"].problem == f"no *_FLAIR.nii.gz in {root / 'sub-03' / 'anat'}"
    assert "2 *_FLAIR files in" in by_name["sub-04"].problem
    assert "sub-04_run-1_FLAIR.nii.gz, sub-04_run-2_FLAIR.nii.gz): keep one" in (
        by_name["sub-04"].problem
    )


def test_bids_qsm_needs_a_local_field_and_a_mask(tmp_path) -> None:
    anat = tmp_path / "sub-01" / "anat"
    touch(anat / "sub-01_localfield.nii.gz")
    touch(anat / "sub-01_mask.nii.gz")
    touch(tmp_path / "sub-02" / "anat" / "sub-02_localfield.nii.gz")
    _, subjects = find_batch_subjects(tmp_path, "qsm")
    assert subjects[0].files == {
        "field": anat / "sub-01_localfield.nii.gz",
        "mask": anat / "sub-01_mask.nii.gz",
    }
    assert subjects[1].problem == f"no *_mask.nii.gz in {tmp_path / 'sub-02' / 'anat'}"


def test_folder_per_subject_layout(tmp_path) -> None:
    touch(tmp_path / "b" / "local_field.nii.gz")
    touch(tmp_path / "a" / "local_field.nii")
    touch(tmp_path / "a" / "brain_mask.nii.gz")
    touch(tmp_path / "notes" / "readme.txt")  # not a subject
    layout, subjects = find_batch_subjects(tmp_path, "qsm")
    assert layout == "folders" and [s.name for s in subjects] == ["a", "b"]
    assert subjects[0].files["field"] == tmp_path / "a" / "local_field.nii"
    assert subjects[1].problem == f"no brain_mask.nii.gz in {tmp_path / 'b'}"


def test_discovery_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="task must be one of"):
        find_batch_subjects(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        find_batch_subjects(tmp_path / "missing", "segment")
    with pytest.raises(ValueError, match="holds no segment subjects: expected BIDS"):
        find_batch_subjects(tmp_path, "segment")


def read_summary(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_run_batch_processes_skips_and_survives_a_failure(tmp_path) -> None:
    subjects = [
        BatchSubject("s1", {"flair": tmp_path / "1"}),
        BatchSubject("s2", {"flair": tmp_path / "2"}),
        BatchSubject("s3", problem="no *_FLAIR.nii.gz in x"),
        BatchSubject("s4", {"flair": tmp_path / "4"}),
    ]
    calls = []

    def process(subject, folder):
        calls.append(subject.name)
        if subject.name == "s2":
            raise RuntimeError("CUDA out of\nmemory")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "lesions.csv").write_text("id\n")
        return {"n_lesions": 2, "lesion_volume_ml": 1.5}

    def run(**kwargs):
        return list(
            run_batch(
                subjects,
                tmp_path / "out",
                process,
                task="segment",
                outputs=("lesions.csv",),
                summarise=lambda s, f: {"n_lesions": 9},
                **kwargs,
            )
        )

    events = run()
    assert [e.status for e in events] == ["done", "failed", "failed", "done"]
    assert [(e.index, e.total) for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls == ["s1", "s2", "s4"]
    rows = read_summary(tmp_path / "out" / "segment_summary.csv")
    assert tuple(rows[0]) == summary_columns("segment")
    assert rows[0] == {
        "subject": "s1",
        "status": "done",
        "n_lesions": "2",
        "lesion_volume_ml": "1.5",
        "error": "",
    }
    assert rows[1]["error"] == "CUDA out of memory"  # one line
    assert rows[2]["error"] == "no *_FLAIR.nii.gz in x"

    calls.clear()
    events = run()  # finished subjects are skipped and summarised from their files
    assert [e.status for e in events] == ["skipped", "failed", "failed", "skipped"]
    assert calls == ["s2"]
    assert read_summary(tmp_path / "out" / "segment_summary.csv")[0]["n_lesions"] == "9"

    calls.clear()
    run(overwrite=True)
    assert calls == ["s1", "s2", "s4"]


def test_a_skipped_subject_that_cannot_be_summarised_keeps_the_message(tmp_path) -> None:
    (tmp_path / "out" / "s1").mkdir(parents=True)
    (tmp_path / "out" / "s1" / "chi.nii.gz").write_bytes(b"")

    def broken(subject, folder):
        raise ValueError("chi.nii.gz: not a gzip file")

    (event,) = run_batch(
        [BatchSubject("s1", {})],
        tmp_path / "out",
        broken,
        task="qsm",
        outputs=("chi.nii.gz",),
        summarise=broken,
    )
    assert event.status == "skipped"
    assert event.row["error"] == (
        "outputs exist but cannot be summarised: chi.nii.gz: not a gzip file"
    )


def test_chi_summary_against_numpy() -> None:
    rng = np.random.default_rng(0)
    chi = rng.normal(0.0, 0.05, (6, 7, 8))
    mask = np.zeros(chi.shape, dtype=np.uint8)
    mask[1:5, 2:6, 1:7] = 1
    inside = chi[mask > 0]
    stats = chi_summary(chi, mask)
    assert stats["chi_mean_ppm"] == pytest.approx(float(np.mean(inside)))
    assert stats["chi_sd_ppm"] == pytest.approx(float(np.std(inside)))
    for p in CHI_PERCENTILES:
        assert stats[f"chi_p{p:02d}_ppm"] == pytest.approx(float(np.percentile(inside, p)))
    assert set(summary_columns("qsm")[2:-1]) == set(stats)


def test_chi_summary_errors() -> None:
    with pytest.raises(ValueError, match=r"same shape, got \(2, 2, 2\) and \(3, 3, 3\)"):
        chi_summary(np.zeros((2, 2, 2)), np.ones((3, 3, 3)))
    with pytest.raises(ValueError, match="the mask is empty"):
        chi_summary(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
