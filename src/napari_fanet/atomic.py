"""Atomic file writes: write to a temporary file in the target folder, then rename over it."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
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
