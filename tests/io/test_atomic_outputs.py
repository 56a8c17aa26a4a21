"""Several outputs are written all or none, their folder is checked before the work, and
temporaries of an interrupted write are cleaned up."""

import os

import pytest

from napari_fanet.io import atomic
from napari_fanet.io.atomic import (
    check_output_folder,
    remove_stale_temporaries,
    write_files_atomically,
)

NAMES = ("a.txt", "b.txt")


def _writers(texts):
    return {name: (lambda p, t=text: p.write_text(t)) for name, text in texts.items()}


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_new_folder_appears_with_every_file(tmp_path):
    out = tmp_path / "deep" / "out"
    paths = write_files_atomically(out, _writers({"a.txt": "A", "b.txt": "B"}))
    assert paths == {"a.txt": out / "a.txt", "b.txt": out / "b.txt"}
    assert _listing(out) == ["a.txt", "b.txt"] and (out / "b.txt").read_text() == "B"
    assert _listing(out.parent) == ["out"]  # no staging folder left beside it


def test_existing_folder_gets_every_file_and_keeps_others(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    (tmp_path / "notes.md").write_text("mine")
    write_files_atomically(tmp_path, _writers({"a.txt": "A", "b.txt": "B"}))
    assert _listing(tmp_path) == ["a.txt", "b.txt", "notes.md"]
    assert (tmp_path / "a.txt").read_text() == "A" and (
        tmp_path / "notes.md"
    ).read_text() == "mine"


@pytest.mark.parametrize("exists", [True, False])
def test_a_failing_writer_leaves_nothing(tmp_path, exists):
    out = tmp_path / "out"
    if exists:
        out.mkdir()
        (out / "a.txt").write_text("old")

    def boom(path):
        path.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_files_atomically(out, {"a.txt": lambda p: p.write_text("A"), "b.txt": boom})
    if exists:
        assert _listing(out) == ["a.txt"] and (out / "a.txt").read_text() == "old"
    else:
        assert not out.exists() and _listing(tmp_path) == []


def test_a_failing_rename_puts_the_replaced_files_back(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "b.txt").write_text("old b")
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if str(dst) == str(tmp_path / "b.txt") and "previous" not in str(src):
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", flaky)
    with pytest.raises(OSError, match="rename failed"):
        write_files_atomically(tmp_path, _writers({"a.txt": "A", "b.txt": "B"}))
    monkeypatch.undo()
    assert _listing(tmp_path) == ["a.txt", "b.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert (tmp_path / "b.txt").read_text() == "old b"


def test_check_refuses_a_file_as_folder(tmp_path):
    file = tmp_path / "out"
    file.write_text("x")
    with pytest.raises(NotADirectoryError, match=r"out: expected a folder, but it is a file$"):
        check_output_folder(file, NAMES)
    with pytest.raises(NotADirectoryError, match=r"expected a folder, but it is inside .*out"):
        check_output_folder(file / "sub", NAMES)


def test_check_refuses_a_folder_where_a_file_goes(tmp_path):
    (tmp_path / "b.txt").mkdir()
    with pytest.raises(
        IsADirectoryError, match=r"cannot write .*b\.txt: expected a file name there, got a folder"
    ):
        check_output_folder(tmp_path, NAMES)
    with pytest.raises(IsADirectoryError):
        write_files_atomically(tmp_path, _writers({"a.txt": "A", "b.txt": "B"}))
    assert _listing(tmp_path) == ["b.txt"]


def test_check_refuses_an_unwritable_folder(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", denied)
    with pytest.raises(
        PermissionError,
        match=r"output folder .*new: expected a writable folder, but cannot create files in "
        r".* \(Permission denied\)",
    ):
        check_output_folder(tmp_path / "new", NAMES)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_check_refuses_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(PermissionError, match="expected a writable folder"):
            check_output_folder(locked, NAMES)
    finally:
        locked.chmod(0o755)


def test_check_passes_and_leaves_nothing(tmp_path):
    assert check_output_folder(tmp_path / "new" / "out", NAMES) == tmp_path / "new" / "out"
    assert check_output_folder(tmp_path, NAMES) == tmp_path
    assert _listing(tmp_path) == []


def test_remove_stale_temporaries_only_removes_our_names(tmp_path):
    stale = [tmp_path / ".last.pt.0123456789ab.tmp", tmp_path / ".best.pt.a1b2c3d4e5f6.tmp"]
    keep = [
        tmp_path / "last.pt",
        tmp_path / ".last.pt.notahexstring.tmp",
        tmp_path / ".log.jsonl.0123456789ab.tmp",
        tmp_path / "last.pt.0123456789ab.tmp",
    ]
    for path in stale + keep:
        path.write_text("x")
    removed = remove_stale_temporaries(tmp_path, ("last.pt", "best.pt"))
    assert sorted(removed) == sorted(stale)
    assert _listing(tmp_path) == sorted(p.name for p in keep)
    assert remove_stale_temporaries(tmp_path / "missing", ("last.pt",)) == []


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_check_refuses_a_broken_link_as_folder(tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(NotADirectoryError, match=r"out: expected a folder, got a broken link at"):
        check_output_folder(link, NAMES)
