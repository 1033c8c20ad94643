"""File helpers shared by the writers, the toolpath store and the job bundle: hashes, fsync,
atomic files (temporary name beside the target, then rename) and in-kernel copies."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


def sha256_file(path, chunk_bytes: int = 1 << 22) -> tuple[str, int]:
    """(SHA-256 hex digest, size in bytes) of a file, read in chunks without copies."""
    h = hashlib.sha256()
    n = 0
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            k = fh.readinto(buf)
            if not k:
                break
            h.update(view[:k])
            n += k
    return h.hexdigest(), n


def umask() -> int:
    """The process umask (mkstemp creates files 0600 whatever it is)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def copy_fd(src: int, dst: int, chunk_bytes: int = 1 << 24) -> int:
    """Copy what is left of open file ``src`` to the end of ``dst`` (in the kernel where it can:
    ``copy_file_range``, else in user space from where it stopped). Returns the bytes copied."""
    size = os.fstat(src).st_size - os.lseek(src, 0, os.SEEK_CUR)
    done = 0
    try:
        while done < size:
            k = os.copy_file_range(src, dst, min(chunk_bytes, size - done))
            if k == 0:
                break
            done += k
    except (AttributeError, OSError):
        pass       # no in-kernel copy here: finish in user space
    while True:
        data = os.read(src, min(chunk_bytes, 1 << 22))
        if not data:
            break
        mv = memoryview(data)
        while len(mv):
            mv = mv[os.write(dst, mv):]
        done += len(data)
    return done


def copy_file_fsync(src, dst) -> None:
    """Copy ``src`` to a new file ``dst`` (refused if it exists) and fsync it."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with open(src, "rb", buffering=0) as fh:
            copy_fd(fh.fileno(), fd)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Written:
    """A file written and renamed into place: its path, sha256 (hex) and size in bytes."""

    path: Path
    sha256: str
    n_bytes: int


def _commit(fd_or_fh, tmp: str, path: Path, fsync: bool = True) -> None:
    """fsync an open temporary file, close it, give it the usual permissions and rename it to ``path``."""
    fd_or_fh.flush()
    if fsync:
        os.fsync(fd_or_fh.fileno())
    fd_or_fh.close()
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)


class AtomicFile:
    """A binary file streamed under a temporary name beside ``path`` and hashed as it is written.

    The folder must exist (no folder is created here). On a clean exit of the ``with`` block the data is flushed, fsynced and renamed to ``path``
    (a reader, or a retried task, never sees a torn file); on an error the temporary file is
    removed. After the block, :attr:`written` is the :class:`Written` record (sha256 '' when
    ``hashed`` is False). ``fsync=False`` skips the fsync (a file nothing outlives a crash for).
    """

    def __init__(self, path, buffer_bytes: int = 1 << 22, hashed: bool = True, fsync: bool = True) -> None:
        self.fsync = fsync
        self.path = Path(path)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.fh = os.fdopen(fd, "wb", buffering=buffer_bytes)
        self.hash = hashlib.sha256() if hashed else None
        self.n_bytes = 0
        self.written: Written | None = None

    def write(self, data) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.fh.write(data)
        if self.hash is not None:
            self.hash.update(data)
        self.n_bytes += len(data)

    def append_file(self, path, chunk_bytes: int = 1 << 24) -> None:
        """Append the bytes of file ``path`` (in the kernel where it can: ``copy_file_range``)."""
        if self.hash is not None:
            raise ValueError("append_file copies without hashing; open the AtomicFile with hashed=False")
        self.fh.flush()
        with open(path, "rb", buffering=0) as src:
            done = copy_fd(src.fileno(), self.fh.fileno(), chunk_bytes)
        self.fh.seek(0, os.SEEK_END)
        self.n_bytes += done

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            _commit(self.fh, self.tmp, self.path, self.fsync)
            self.written = Written(self.path, self.hash.hexdigest() if self.hash is not None else "", self.n_bytes)
            return False
        try:
            self.fh.close()
        finally:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
        return False


class AtomicPath:
    """A temporary path beside ``path`` for writers that want a file name (zipfile, memory maps).

    ``with AtomicPath(p) as tmp: <write tmp>``; on a clean exit the file is hashed, fsynced and
    renamed to ``p`` (:attr:`written` set; ``hashed``/``fsync`` False skip those); on an error
    it is removed.
    """

    def __init__(self, path, hashed: bool = True, fsync: bool = True) -> None:
        self.hashed = hashed
        self.fsync = fsync
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.written: Written | None = None

    def __enter__(self) -> Path:
        return Path(self.tmp)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            sha, n = sha256_file(self.tmp) if self.hashed else ("", os.path.getsize(self.tmp))
            _commit(open(self.tmp, "rb+"), self.tmp, self.path, self.fsync)
            self.written = Written(self.path, sha, n)
            return False
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
        return False
