"""Submitting a job: a verified, fsynced, atomically renamed copy in a printer's spool folder."""

from __future__ import annotations

import errno
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import BioslicerError
from ._files import PARTIAL_MARK, _copy_file_fsync, _fsync_path, _rmtree, sha256_file
from .manifest import MANIFEST_NAME, read_manifest
from .verify import _check_files, verify_job

@dataclass
class SubmitResult:
    """What :func:`submit_job` did.

    Attributes
    ----------
    job : str
        The job submitted.
    dest : str
        Where it is in the spool folder.
    submitted : bool
        True if it was copied now; False if the identical job was already there (no-op).
    n_files : int
        Files copied (manifest included), 0 for a no-op.
    bytes : int
        Bytes copied, 0 for a no-op.
    """

    job: str
    dest: str
    submitted: bool
    n_files: int = 0
    bytes: int = 0

    def to_dict(self) -> dict:
        return {"job": self.job, "dest": self.dest, "submitted": self.submitted, "already_there": not self.submitted,
                "n_files": self.n_files, "bytes": self.bytes}


def _spool_error(spool: Path, exc: OSError) -> BioslicerError:
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BioslicerError(f"cannot write to spool folder {spool}: {exc.strerror or 'permission denied'}; "
                              "ask for write access to it or choose another --to folder")
    if exc.errno == errno.ENOSPC:
        return BioslicerError(f"spool folder {spool} is full ({exc.strerror}); free space there and submit again")
    return BioslicerError(f"cannot copy the job into spool folder {spool}: {exc.strerror or exc}; "
                          "check the share and submit again")


def _same_job(job: Path, dest: Path) -> bool:
    """True when ``dest`` holds exactly the job ``job`` (same manifest bytes, all hashes good)."""
    if job.is_dir():
        if not dest.is_dir() or not (dest / MANIFEST_NAME).is_file():
            return False
        if (dest / MANIFEST_NAME).read_bytes() != (job / MANIFEST_NAME).read_bytes():
            return False
        try:
            manifest = read_manifest(dest)
        except BioslicerError:
            return False
        return not _check_files(dest, manifest)
    return dest.is_file() and sha256_file(dest) == sha256_file(job)


def submit_job(job, spool_dir, trust_embedded_printer: bool = False) -> SubmitResult:
    """Put a verified job into a printer's spool folder, atomically.

    The job is verified (hashes and program against its embedded profile), copied under a
    hidden temporary name inside ``spool_dir`` with every file fsynced, the copy is re-hashed,
    and only then renamed to the job's name. A folder job arrives as a folder, a zip as a zip.

    Parameters
    ----------
    job : path
        Job folder or ``.zip``.
    spool_dir : path
        An existing folder the printer (or its PC) watches.
    trust_embedded_printer : bool
        Accept an embedded printer profile that differs from the installed one of its name.

    Returns
    -------
    SubmitResult
        ``submitted`` False when the identical job was already there (nothing is done).

    Raises
    ------
    BioslicerError
        The job fails verification; the spool folder is missing, not a folder or not writable;
        a different job of the same name is already there.
    """
    job = Path(job)
    spool = Path(spool_dir)
    if not spool.exists():
        raise BioslicerError(f"spool folder {spool} does not exist; check that the share is mounted or "
                             "create the folder, then submit again")
    if not spool.is_dir():
        raise BioslicerError(f"spool {spool} is not a folder; give the printer's queue folder with --to")
    rep = verify_job(job, trust_embedded_printer=trust_embedded_printer)
    if not rep.ok:
        raise BioslicerError(f"job {job} fails verification: {rep.problems[0]}"
                             + (f" (+{len(rep.problems) - 1} more)" if len(rep.problems) > 1 else "")
                             + "; run `bioslicer job verify` and slice it again")
    name = job.resolve().name
    dest = spool / name
    if dest.exists() or dest.is_symlink():
        if _same_job(job, dest):
            return SubmitResult(str(job), str(dest), False)
        raise BioslicerError(f"spool folder {spool} already has a different job named {name}; rename the job "
                             "or remove the old one from the spool")
    tmp = spool / f".{name}{PARTIAL_MARK}{secrets.token_hex(6)}"
    n_files = 0
    n_bytes = 0
    try:
        if job.is_dir():
            manifest = read_manifest(job)
            os.mkdir(tmp)
            rels = sorted(manifest["files"]) + [MANIFEST_NAME]  # manifest last
            for rel in rels:
                dst = tmp / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                _copy_file_fsync(job / rel, dst)
                n_files += 1
                n_bytes += dst.stat().st_size
            for d in sorted({(tmp / r).parent for r in rels}, key=lambda p: len(p.parts), reverse=True):
                _fsync_path(d)
            problems = _check_files(tmp, manifest)
            if (tmp / MANIFEST_NAME).read_bytes() != (job / MANIFEST_NAME).read_bytes():
                problems.append(f"{MANIFEST_NAME}: the copy differs from the original")
        else:
            _copy_file_fsync(job, tmp)
            n_files, n_bytes = 1, tmp.stat().st_size
            problems = [] if sha256_file(tmp) == sha256_file(job) else [f"{name}: the copy differs from the original"]
        if problems:
            raise BioslicerError(f"the copy of {job} in {spool} is damaged: {problems[0]}; check the share "
                                 "and submit again")
        if dest.exists() or dest.is_symlink():  # someone else submitted meanwhile
            same = _same_job(job, dest)
            _rmtree(tmp)
            if same:
                return SubmitResult(str(job), str(dest), False)
            raise BioslicerError(f"spool folder {spool} already has a different job named {name}; rename the "
                                 "job or remove the old one from the spool")
        os.rename(tmp, dest)
        _fsync_path(spool)
    except OSError as exc:
        _rmtree(tmp)
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and dest.exists():  # lost a race to another submit
            if _same_job(job, dest):
                return SubmitResult(str(job), str(dest), False)
            raise BioslicerError(f"spool folder {spool} already has a different job named {name}; rename the "
                                 "job or remove the old one from the spool") from None
        raise _spool_error(spool, exc) from None
    except BaseException:
        _rmtree(tmp)
        raise
    return SubmitResult(str(job), str(dest), True, n_files, n_bytes)
