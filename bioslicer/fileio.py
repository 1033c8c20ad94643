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


# ----------------------------------------------------------------------------- zip bombs
#: most entries an archive bioslicer reads may hold (a job bundle has a few hundred at most)
MAX_ZIP_ENTRIES = 10_000
#: an archive read from the command line may inflate to this many times its own size (deflate
#: reaches ~1000x on a bomb; job programs and 3MF XML stay well below 100x) ...
ZIP_RATIO_LIMIT = 100
#: ... and always to at least this many bytes
ZIP_MIN_LIMIT_BYTES = 256 * 1024 * 1024


def zip_inflate_limit(archive_bytes: int) -> int:
    """Largest total inflated size, bytes, accepted for an archive of ``archive_bytes``."""
    return max(ZIP_MIN_LIMIT_BYTES, ZIP_RATIO_LIMIT * int(archive_bytes))


def check_zip(zf, max_bytes: int, max_entries: int = MAX_ZIP_ENTRIES, what: str = "the archive",
              plain_files: bool = False) -> list:
    """Check an archive's directory before inflating anything: entry count and inflated size.

    Parameters
    ----------
    zf : zipfile.ZipFile
    max_bytes : int
        Largest total of the entries' inflated sizes, bytes.
    max_entries : int
        Most entries.
    what : str
        How the one-line error names the archive (a label, never a server path).
    plain_files : bool
        Also refuse entries with absolute or ``..`` paths and symbolic links.

    Returns
    -------
    list of zipfile.ZipInfo
        The entries (read them with :func:`copy_zip_entry`, which counts what really inflates).

    Raises
    ------
    BioslicerError
        One line saying what is wrong.
    """
    from .errors import BioslicerError

    infos = zf.infolist()
    if len(infos) > max_entries:
        raise BioslicerError(f"{what} has {len(infos):,} entries (limit {max_entries:,}); refusing it")
    total = 0
    for info in infos:
        if plain_files:
            name = info.filename.replace("\\", "/")
            parts = [p for p in name.split("/") if p not in ("", ".")]
            if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
                raise BioslicerError(f"{what} has an entry {info.filename[:100]!r} pointing outside it; refusing it")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise BioslicerError(f"{what} has a link entry {info.filename[:100]!r}; it must hold plain files")
        total += info.file_size
        if total > max_bytes:
            mb = max_bytes / 1e6
            raise BioslicerError(f"{what} inflates to more than {f'{mb:,.0f}' if mb >= 10 else f'{mb:.2g}'} MB "
                                 "(a zip bomb?); refusing it")
    return infos


def copy_zip_entry(zf, info, dst, budget: list, what: str = "the archive", chunk_bytes: int = 1 << 20) -> int:
    """Inflate one entry into the open binary file ``dst``, counting: more than ``budget[0]``
    bytes in all (``budget`` is a one-item list, decremented) raises BioslicerError. Returns the
    bytes written."""
    from .errors import BioslicerError

    n = 0
    with zf.open(info) as src:
        while True:
            chunk = src.read(chunk_bytes)
            if not chunk:
                return n
            n += len(chunk)
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise BioslicerError(f"{what} inflates to more than its declared size allows (a zip bomb?); "
                                     "refusing it")
            dst.write(chunk)


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


def fsync_path(path) -> None:
    """fsync a file or a folder by its path (folders: best effort where the OS does not allow it)."""
    path = Path(path)
    # files: read-write, as Windows cannot flush a read-only handle; folders: POSIX only
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDWR | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


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


def make_folders_below(root, folder) -> None:
    """Create the missing folders from ``root`` down to ``folder``, but never ``root`` itself
    nor anything above it: when a job's temporary folder was removed (the job failed or was
    cancelled), a block still running must fail, not re-create the folder and leave it behind.

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist (any more).
    """
    root, folder = Path(root), Path(folder)
    rel = folder.relative_to(root)
    if not root.is_dir():
        raise FileNotFoundError(2, "job folder removed while a block was still running", str(root))
    cur = root
    for part in rel.parts:
        cur = cur / part
        try:
            cur.mkdir()            # one level at a time: a vanished parent makes this fail
        except FileExistsError:
            pass


class AtomicFile:
    """A binary file streamed under a temporary name beside ``path`` and hashed as it is written.

    The folder must exist, unless ``root`` names an existing folder above it: then the missing
    folders below ``root`` are created (:func:`make_folders_below`), never ``root`` itself. On a clean exit of the ``with`` block the data is flushed, fsynced and renamed to ``path``
    (a reader, or a retried task, never sees a torn file); on an error the temporary file is
    removed. After the block, :attr:`written` is the :class:`Written` record (sha256 '' when
    ``hashed`` is False). ``fsync=False`` skips the fsync (a file nothing outlives a crash for).
    """

    def __init__(self, path, buffer_bytes: int = 1 << 22, hashed: bool = True, fsync: bool = True,
                 root=None) -> None:
        self.fsync = fsync
        self.path = Path(path)
        if root is not None:
            make_folders_below(root, self.path.parent)
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

    def write_views(self, views) -> None:
        """Write the byte buffers ``views`` in order by ``writev`` (no copy into the file buffer:
        for large rendered pieces). Not at the same time as another write to this file."""
        self.fh.flush()
        fd = self.fh.fileno()
        todo = [memoryview(v).cast("B") for v in views if len(v)]
        i = 0
        while i < len(todo):
            k = os.writev(fd, todo[i:i + 1024])        # IOV_MAX
            while k > 0:
                v = todo[i]
                n = min(k, len(v))
                if self.hash is not None:
                    self.hash.update(v[:n])
                self.n_bytes += n
                k -= n
                if n == len(v):
                    i += 1
                else:
                    todo[i] = v[n:]            # written in part: the rest goes next
        self.fh.seek(0, os.SEEK_END)

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
    it is removed. Missing parent folders are created; with ``root``, only those below that
    existing folder (as for :class:`AtomicFile`).
    """

    def __init__(self, path, hashed: bool = True, fsync: bool = True, root=None) -> None:
        self.hashed = hashed
        self.fsync = fsync
        self.path = Path(path)
        if root is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            make_folders_below(root, self.path.parent)
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
