"""sample_files: the sample cases from the wheel, the checkout, or a local simulated cache."""

from __future__ import annotations

from pathlib import Path

import pytest

import napari_fanet
from napari_fanet.evaluation import sample_files

REPO_SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"


def fake_simulation(calls):
    def simulate(folder):
        calls.append(Path(folder))
        for task in ("ms", "qsm"):
            (Path(folder) / task / "sub-0000").mkdir(parents=True)
        return folder

    return simulate


@pytest.mark.skipif(not REPO_SAMPLE_DATA.is_dir(), reason="needs the repository's sample_data/")
def test_a_checkout_uses_its_sample_data_folder():
    assert sample_files.repository_sample_data() == REPO_SAMPLE_DATA
    assert sample_files.sample_data_folder() in {
        REPO_SAMPLE_DATA,
        sample_files.packaged_sample_data(),
    }


def test_the_packaged_copy_comes_first(tmp_path, monkeypatch):
    packaged = tmp_path / "napari_fanet" / "sample_data"
    for task in ("ms", "qsm"):
        (packaged / task / "sub-0000").mkdir(parents=True)
    monkeypatch.setattr(sample_files, "files", lambda name: tmp_path / name)
    assert sample_files.packaged_sample_data() == packaged
    assert sample_files.sample_data_folder() == packaged


def test_an_incomplete_packaged_copy_is_ignored(tmp_path, monkeypatch):
    (tmp_path / "napari_fanet" / "sample_data" / "ms" / "sub-0000").mkdir(parents=True)
    monkeypatch.setattr(sample_files, "files", lambda name: tmp_path / name)
    assert sample_files.packaged_sample_data() is None


def test_cache_folder_honours_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = tmp_path / "napari-fanet" / napari_fanet.__version__ / "sample_data"
    assert sample_files.cache_folder() == expected
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sample_files.cache_folder().is_relative_to(tmp_path / "home" / ".cache")


def test_without_shipped_data_the_cases_are_simulated_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(sample_files, "shipped_sample_data", lambda: None)
    calls = []
    monkeypatch.setattr(sample_files, "simulate_sample_data", fake_simulation(calls))

    folder = sample_files.sample_data_folder()
    assert folder == sample_files.cache_folder()
    assert (folder / "ms" / "sub-0000").is_dir() and (folder / "qsm" / "sub-0000").is_dir()
    assert sample_files.sample_data_folder() == folder
    assert len(calls) == 1
    assert sorted(p.name for p in folder.parent.iterdir()) == ["sample_data"]  # no leftovers


def test_an_interrupted_simulation_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(sample_files, "shipped_sample_data", lambda: None)

    def broken(folder):
        (Path(folder) / "ms").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(sample_files, "simulate_sample_data", broken)
    with pytest.raises(KeyboardInterrupt):
        sample_files.sample_data_folder()
    assert list(sample_files.cache_folder().parent.iterdir()) == []
