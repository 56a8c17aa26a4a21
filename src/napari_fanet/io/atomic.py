"""Atomic file writes: write to a temporary file in the target folder, then rename over it.

Also: all-or-nothing writes of several outputs into one folder, a check that they can be
written before the work that makes them, and the removal of temporaries a killed process left.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], None], *, suffix: str = ""
) -> Path:
    """Create or replace ``path`` atomically.

    ``write`` receives a temporary path in the same folder (ending with ``suffix``, so writers
    that pick a format from the extension, such as nibabel's ``.nii.gz``, still work) and must
    write the complete file there. The temporary file is flushed to disk and renamed over
    ``path``; on any error it is removed and an existing ``path`` is left untouched.

    Parameters
    ----------
    path : str or PathLike
        Destination file; its folder must exist.
    write : callable
        ``write(tmp_path)`` writes the whole file.
    suffix : str
        Suffix of the temporary file name (for example ``".nii.gz"``).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path.name}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode from the umask
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def temporary_pattern(name: str) -> re.Pattern[str]:
    """The names :func:`atomic_write` gives the temporary files of ``name`` (any suffix)."""
    return re.compile(rf"^\.{re.escape(name)}\.[0-9a-f]{{12}}\.tmp.*$")


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete temporary files that an interrupted :func:`atomic_write` of ``names`` left behind.

    A process killed while writing (SIGKILL, power loss) cannot remove its ``.NAME.HEX.tmp``
    file; call this when the next run starts in ``folder``, before it writes ``names`` again.

    Parameters
    ----------
    folder : str or PathLike
        The folder holding the files (nothing happens when it does not exist).
    names : iterable of str
        Destination file names, for example ``("last.pt", "best.pt")``.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    patterns = [temporary_pattern(n) for n in names]
    removed = []
    for entry in folder.iterdir():
        if any(p.match(entry.name) for p in patterns) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def check_output_folder(folder: str | os.PathLike, names: Iterable[str]) -> Path:
    """Check that files ``names`` can be written into ``folder``, before any work is done.

    ``folder`` may not exist yet (it is created by :func:`write_files_atomically`); then its
    nearest existing parent must be a writable folder. Nothing is left behind by the check.

    Parameters
    ----------
    folder : str or PathLike
        Output folder.
    names : iterable of str
        File names that will be written into it.

    Returns
    -------
    pathlib.Path
        ``folder``.

    Raises
    ------
    NotADirectoryError
        ``folder`` (or one of its parents) is a file.
    IsADirectoryError
        A folder stands where one of the output files should go.
    PermissionError
        The folder (or the parent it would be created in) is not writable.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise NotADirectoryError(
                f"output folder {folder}: expected a folder, got a broken link at {existing}"
            )
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"is inside {existing}, which is a file"
        raise NotADirectoryError(f"output folder {folder}: expected a folder, but it {where}")
    if existing == folder:
        for name in names:
            if (folder / name).is_dir():
                raise IsADirectoryError(
                    f"cannot write {folder / name}: expected a file name there, got a folder; "
                    "move it or choose another output folder"
                )
    try:
        probe = tempfile.mkdtemp(prefix=".write-check-", dir=existing)
    except OSError as exc:
        raise PermissionError(
            f"output folder {folder}: expected a writable folder, but cannot create files in "
            f"{existing} ({exc.strerror or exc})"
        ) from exc
    os.rmdir(probe)
    return folder


def write_files_atomically(
    folder: str | os.PathLike, writers: Mapping[str, Callable[[Path], None]]
) -> dict[str, Path]:
    """Write several files into ``folder``: all of them, or none.

    Every file is first written into a hidden staging folder (in ``folder``, or beside it when
    ``folder`` does not exist yet); only when all are complete do they replace their
    destinations. A new ``folder`` appears with one rename; in an existing one the files are
    renamed in, and restored as they were if a rename fails. On any error the staging folder
    is removed and ``folder`` is left as it was.

    Parameters
    ----------
    folder : str or PathLike
        Output folder (created, with its parents, if missing).
    writers : mapping of str to callable
        File name -> ``write(path)``, which writes the whole file at ``path``.

    Returns
    -------
    dict of str to pathlib.Path
        File name -> its final path.
    """
    folder = Path(folder)
    check_output_folder(folder, writers)
    new_folder = not folder.exists()
    home = folder.parent if new_folder else folder
    home.mkdir(parents=True, exist_ok=True)
    staging = home / f".{folder.name}.staging-{secrets.token_hex(6)}"
    os.mkdir(staging)  # mode from the umask: it may become the output folder itself
    try:
        for name, write in writers.items():
            write(staging / name)
            fd = os.open(staging / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if new_folder and not folder.exists():
            os.rename(staging, folder)
        else:
            _move_in(staging, folder, list(writers))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)  # only the backups of replaced files remain
    return {name: folder / name for name in writers}


def _move_in(staging: Path, folder: Path, names: list[str]) -> None:
    """Rename staged files into ``folder``; on failure put every replaced file back."""
    done: list[tuple[Path, Path | None]] = []  # (destination, backup of what it replaced)
    try:
        for name in names:
            target = folder / name
            backup = None
            if target.exists():
                backup = staging / f".previous-{name}"
                os.replace(target, backup)
            done.append((target, backup))
            os.replace(staging / name, target)
    except BaseException:
        for target, backup in reversed(done):
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink(missing_ok=True)
        raise
