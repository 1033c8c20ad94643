"""Small file helpers shared by the writers and the job bundle."""

from __future__ import annotations

import hashlib


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
