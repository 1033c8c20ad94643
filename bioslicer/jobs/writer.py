"""Writing a job: :class:`JobWriter` (temporary folder, hashes, report, manifest, atomic rename)
and the deterministic bundle zip (:func:`write_job_zip`)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import zipfile
from pathlib import Path

from .. import __version__
from ..errors import BioslicerError
from ._files import (_CHUNK, PARTIAL_MARK, _fsync_path, _list_files, _rmtree, _write_bytes_fsync, is_partial,
                     sha256_file)
from .manifest import (JOB_FORMAT, MANIFEST_NAME, REPORT_NAME, check_manifest, content_sha256,
                       manifest_bytes)
from .report import job_summary

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_LEVEL = 1


def _relativize(obj, root: Path):
    """Rewrite every string naming a path inside ``root`` as a POSIX path relative to it.

    The temporary folder's random name must not leak into the manifest (it would be wrong after
    the rename and would break byte-identical jobs): e.g. a validation report's ``path``.
    """
    prefixes = sorted({str(root) + os.sep, str(root.resolve()) + os.sep, root.as_posix() + "/",
                       root.resolve().as_posix() + "/"}, key=len, reverse=True)

    def fix(v):
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, str):
            for pre in prefixes:
                if v.startswith(pre):
                    return v[len(pre):].replace(os.sep, "/")
        return v

    return fix(obj)


class JobWriter:
    """Write a job folder under a temporary name and publish it atomically.

    Use as a context manager::

        with JobWriter("out/part_job") as jw:
            write_program(tp, printer, jw.path, name="part")   # files go into jw.path
            jw.commit(manifest, zip=True)                       # -> Path("out/part_job")

    Attributes
    ----------
    out_dir : Path
        The final job folder.
    overwrite : bool
        Replace an existing ``out_dir`` (and ``<out_dir>.zip``) instead of refusing; only a folder
        (zip) whose ``manifest.json`` says it is a bioslicer job is ever replaced.
    keep : list of path
        Files that must survive (the inputs): a folder holding one of them is never replaced.
    path : Path or None
        The temporary folder ``<parent>/.<name>.partial-<random>`` (set on enter).
    committed : bool
        True once :meth:`commit` has published the job.

    On leaving the ``with`` block with an exception, or without a commit, the temporary folder
    is removed and nothing that looks like a job is left.
    """

    def __init__(self, out_dir, overwrite: bool = False, keep=()) -> None:
        self.out_dir = Path(out_dir)
        self.overwrite = bool(overwrite)
        self.keep = [Path(p).resolve() for p in keep]
        self.path: Path | None = None
        self.committed = False

    # ---------------------------------------------------------------- context
    def __enter__(self) -> "JobWriter":
        out = self.out_dir
        if not out.name or out.name in (".", ".."):
            raise BioslicerError(f"job folder {out} has no name; give -o a folder name such as out/part_job")
        if is_partial(out):
            raise BioslicerError(f"job folder name {out.name} is reserved for unfinished jobs; choose another name")
        self._check_target(out)
        parent = out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = parent / f".{out.name}{PARTIAL_MARK}{secrets.token_hex(6)}"
            tmp.mkdir()
        except OSError as exc:
            raise BioslicerError(f"cannot create the job folder in {parent}: {exc.strerror or exc}; "
                                 "choose a writable place for -o") from None
        self.path = tmp
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.path is not None and not self.committed:
            _rmtree(self.path)
        return False

    def _check_target(self, out: Path) -> None:
        if out.exists() or out.is_symlink():
            if out.is_symlink() or not out.is_dir():
                raise BioslicerError(f"{out} exists and is not a folder; choose another job folder name")
            if not self.overwrite:
                raise BioslicerError(f"job folder {out} already exists; choose another name or pass --overwrite")
            if not _is_job_folder(out):
                raise BioslicerError(f"{out} is not a bioslicer job folder (no bioslicer manifest.json); "
                                     "--overwrite replaces only job folders, choose another -o")
            real = out.resolve()
            for p in self.keep:
                if real == p or real in p.parents:
                    raise BioslicerError(f"job folder {out} holds the input {p.name}; --overwrite would delete it, "
                                         "choose another -o")

    # ---------------------------------------------------------------- commit
    def commit(self, manifest: dict, zip: bool = False, known_sha256: dict | None = None) -> Path:
        """Hash the files, write report.txt and manifest.json, fsync, publish the folder.

        Parameters
        ----------
        manifest : dict
            Every schema key but ``files`` (see the module docstring); ``format`` and
            ``software`` are filled in when absent. Not modified.
        zip : bool
            Also write ``<out_dir>.zip`` (files at the archive root, sorted, fixed timestamps).
        known_sha256 : dict, optional
            POSIX path relative to the folder -> sha256 hex of files this process has just
            hashed and checked (e.g. ``ProgramFiles.sha256``: the program's block files, checked
            against what their writers reported); they are not read again.

        Returns
        -------
        Path
            ``out_dir``.

        Raises
        ------
        BioslicerError
            ``out_dir`` appeared meanwhile (without overwrite) or the disk is full / not writable.
        ValueError
            The manifest breaks the schema or names files that are not in the folder (a bug).
        """
        if self.path is None:
            raise RuntimeError("JobWriter.commit() called outside its `with` block")
        if self.committed:
            raise RuntimeError("JobWriter.commit() called twice")
        tmp = self.path
        out = self.out_dir
        m = _relativize(json.loads(manifest_bytes(manifest)), tmp)  # deep, JSON-normalised copy
        m.setdefault("format", JOB_FORMAT)
        m.setdefault("software", {"name": "bioslicer", "version": __version__})
        m.pop("files", None)
        m["content_sha256"] = content_sha256(m)
        problems = check_manifest(m, complete=False)
        if problems:
            raise ValueError("job manifest breaks the schema: " + "; ".join(problems))
        zip_path = out.with_name(out.name + ".zip")
        zip_tmp: Path | None = None
        try:
            for name in (MANIFEST_NAME, REPORT_NAME):
                (tmp / name).unlink(missing_ok=True)
            rels = _list_files(tmp)
            known = known_sha256 or {}
            hashes = _hash_and_fsync([tmp / rel for rel in rels], [known.get(rel) for rel in rels])
            files = {rel: hashes[i] for i, rel in enumerate(rels)}
            named = list(m["program"]["files"]) + [m.get(k) for k in ("preview", "toolpath")
                                                   if isinstance(m.get(k), str)]
            absent = [rel for rel in named if rel not in files]
            if absent:
                raise ValueError(f"job manifest names files that were not written: {', '.join(absent)}")
            report = job_summary({**m, "files": dict(sorted(files.items()))}).encode("utf-8")
            _write_bytes_fsync(tmp / REPORT_NAME, report)
            files[REPORT_NAME] = hashlib.sha256(report).hexdigest()
            m["files"] = dict(sorted(files.items()))
            _write_bytes_fsync(tmp / MANIFEST_NAME, manifest_bytes(m))
            for d in sorted({(tmp / r).parent for r in files}, key=lambda p: len(p.parts), reverse=True):
                _fsync_path(d)
            if zip:
                if (zip_path.exists() or zip_path.is_symlink()) and not self.overwrite:
                    raise BioslicerError(f"{zip_path} already exists; choose another name or pass --overwrite")
                if (zip_path.exists() or zip_path.is_symlink()) and (
                        not _is_job_zip(zip_path) or zip_path.resolve() in self.keep):
                    raise BioslicerError(f"{zip_path} is not a bioslicer job bundle; --overwrite replaces only "
                                         "job bundles, choose another -o")
                zip_tmp = zip_path.with_name(f".{zip_path.name}{PARTIAL_MARK}{secrets.token_hex(6)}")
                write_job_zip(tmp, zip_tmp, list(m["files"]))
            self._publish(tmp, out)
            if zip_tmp is not None:
                try:
                    os.replace(zip_tmp, zip_path)
                except OSError:
                    # the folder is out and complete; the zip is not: do not leave half a pair
                    _rmtree(out)
                    raise
                zip_tmp = None
            _fsync_path(out.parent)
        except OSError as exc:
            raise BioslicerError(f"cannot write job {out}: {exc.strerror or exc}; free space or choose a "
                                 "writable folder for -o, then slice again") from None
        finally:
            if zip_tmp is not None:
                _rmtree(zip_tmp)
        self.committed = True
        return out

    def _publish(self, tmp: Path, out: Path) -> None:
        self._check_target(out)
        if out.exists():
            aside = out.with_name(f".{out.name}.old-{secrets.token_hex(6)}")
            os.rename(out, aside)
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(aside, out)
                raise
            _rmtree(aside)
        else:
            os.rename(tmp, out)


#: threads that hash and fsync a job's files at commit (fsyncs issued together share the
#: filesystem's journal commits: 200 block files take about a tenth of the time of one by one)
COMMIT_THREADS = 8


def _hash_and_fsync(paths, known=None) -> list:
    """SHA-256 of every file (in the order given), each fsynced, in :data:`COMMIT_THREADS` threads;
    ``known[i]``, where given (not None), is file i's hash already checked (not read again)."""
    from concurrent.futures import ThreadPoolExecutor

    known = list(known) if known is not None else [None] * len(paths)

    def one(i):
        h = known[i] if known[i] is not None else sha256_file(paths[i])
        _fsync_path(paths[i])
        return h

    if len(paths) < 2:
        return [one(i) for i in range(len(paths))]
    with ThreadPoolExecutor(max_workers=min(COMMIT_THREADS, len(paths))) as pool:
        return list(pool.map(one, range(len(paths))))


def _is_job_folder(path: Path) -> bool:
    """True when ``path/manifest.json`` is a JSON object of this job format (the folder is a job)."""
    try:
        m = json.loads((path / MANIFEST_NAME).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("format") == JOB_FORMAT


def _is_job_zip(path: Path) -> bool:
    """True when the zip ``path`` holds a ``manifest.json`` of this job format."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(MANIFEST_NAME)
            if info.file_size > 64 << 20:
                return False
            m = json.loads(zf.read(info))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return False
    return isinstance(m, dict) and m.get("format") == JOB_FORMAT


def write_job_zip(folder, zip_path, rels: list[str] | None = None) -> Path:
    """Write a deterministic zip of a job folder (same files -> same bytes), fsynced.

    Parameters
    ----------
    folder : path
        The job folder.
    zip_path : path
        The archive to create (overwritten).
    rels : list of str, optional
        Relative POSIX paths to store besides ``manifest.json``; default: every file.

    Returns
    -------
    Path
        ``zip_path``. Entries sit at the archive root, sorted, dated 1980-01-01, mode 0644,
        deflate level 1.
    """
    folder = Path(folder)
    zip_path = Path(zip_path)
    names = sorted(set(rels if rels is not None else _list_files(folder)) | {MANIFEST_NAME})
    with open(zip_path, "wb") as raw:
        with zipfile.ZipFile(raw, "w") as zf:
            for rel in names:
                src = folder / rel
                info = zipfile.ZipInfo(rel, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                # level 1: ~50 MB/s on program text (level 6: ~9 MB/s) for ~10 % larger archives
                setattr(info, "compress_level" if hasattr(info, "compress_level") else "_compresslevel",
                        _ZIP_LEVEL)
                info.create_system = 3
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.file_size = src.stat().st_size
                with open(src, "rb") as fh, zf.open(info, "w") as dst:
                    shutil.copyfileobj(fh, dst, _CHUNK)
        raw.flush()
        os.fsync(raw.fileno())
    return zip_path

