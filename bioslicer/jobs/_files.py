"""File helpers of job folders: hashing, fsync, atomic copies, listing (no job knowledge)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..fileio import copy_file_fsync as _copy_file_fsync  # noqa: F401 (used by submit)
from ..fileio import fsync_path as _fsync_path  # noqa: F401 (used by writer and submit)
from ..fileio import sha256_file as _sha256_size

PARTIAL_MARK = ".partial-"
_CHUNK = 1 << 20


def sha256_file(path) -> str:
    """SHA-256 hex digest of a file."""
    return _sha256_size(path)[0]


def _write_all(fd: int, data) -> None:
    """Write every byte of ``data`` to the file descriptor ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_bytes_fsync(path: Path, data: bytes) -> None:
    """Create ``path`` (must not exist) with ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _list_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as sorted relative POSIX paths (symlinks are refused)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink() or not p.is_file():
                raise ValueError(f"job file {p} is not a regular file")
            out.append(p.relative_to(root).as_posix())
    return sorted(out)



def _safe_rel(rel) -> bool:
    """True for a relative POSIX path that stays inside the job folder."""
    if not isinstance(rel, str) or not rel or "\\" in rel or rel.startswith("/") or ":" in rel.split("/")[0]:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def is_partial(path) -> bool:
    """True if ``path`` is the temporary folder of an unfinished job (``.<name>.partial-<x>``)."""
    name = Path(path).name
    return name.startswith(".") and PARTIAL_MARK in name

