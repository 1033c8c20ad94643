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
