import os
import stat

import pytest

from napari_fanet.io.atomic import atomic_write


def test_writes_and_replaces_with_readable_mode(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write(target, lambda p: p.write_bytes(b"one"))
    atomic_write(target, lambda p: p.write_bytes(b"two"))
    assert target.read_bytes() == b"two"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_temporary_name_keeps_the_suffix(tmp_path):
    seen = []
    atomic_write(
        tmp_path / "x.nii.gz",
        lambda p: seen.append(p.name) or p.write_bytes(b""),
        suffix=".nii.gz",
    )
    assert seen[0].endswith(".nii.gz") and seen[0].startswith(".x.nii.gz.")


def test_failure_in_writer_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def broken(p):
        p.write_bytes(b"partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failure_in_rename_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, lambda p: p.write_bytes(b"new"))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cannot write a\.bin: folder .* does not exist"):
        atomic_write(tmp_path / "no" / "a.bin", lambda p: None)
