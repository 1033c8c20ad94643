"""Print jobs: the complete, checked, traceable folder that reaches the printer.

A *job* is a folder (optionally also a ``.zip`` of the same files) holding everything an
operator needs: the program file(s) in the printer's dialect, ``manifest.json``,
``report.txt`` (the same facts for people), ``preview.png`` and whatever else the pipeline
puts in (``toolpath.npz``, ``recipe.toml``, a mesh copy).

Life of a job
-------------
* :class:`JobWriter` creates a hidden sibling folder ``.<name>.partial-<random>``; the
  pipeline writes the job's files into ``JobWriter.path``; :meth:`JobWriter.commit` hashes
  every file, writes ``report.txt`` and then ``manifest.json`` (last, so a folder with a
  manifest is always complete), fsyncs, and renames the folder to its final name. An
  exception (crash, Ctrl-C, disk full) before that removes the temporary folder; a hard kill
  leaves only a hidden ``.partial-`` folder, which :func:`read_manifest` refuses.
* :func:`verify_job` re-checks every hash, missing and unexpected files, and re-validates the
  main program against the embedded printer profile or a named one.
* :func:`submit_job` copies a verified job into a spool folder under a hidden temporary name,
  fsyncs, verifies the copy and renames it into place.

Manifest schema, ``format = "bioslicer-job/1"`` (JSON, sorted keys, indent 2, no timestamps,
so the same inputs give byte-identical jobs; units as the key names say)::

    format      "bioslicer-job/1"
    software    {name: "bioslicer", version: str}
    mesh        {file: str (name of the input mesh file), sha256: str (64 hex),
                 units: str (length unit of the file), bounds_um: [[x,y,z],[x,y,z]],
                 report: dict | null (the mesh inspection report)}
    printer     dict: the full Printer.to_dict() of the profile used (embedded copy)
    recipe      dict: every slicing parameter
    program     {dialect: str, main: str (relative POSIX path), files: [str, ...] (all program
                 files, main included, relative POSIX paths)}
    counts      {layers, blocks, marks, segments, points, dropped_segments: int,
                 mark_length_um, jump_length_um: float}
    bounds_um   [[xmin, ymin, zmin], [xmax, ymax, zmax]] of the toolpath, µm
    estimate    {total_s: float, per_block_s: [float] (one per block), breakdown: dict}
    validation  {ok: bool, n_moves: int, violations: [...]} (the check made at slice time)
    preview     "preview.png" or null
    files       {relative POSIX path: sha256 hex} of every file in the job except
                manifest.json itself (report.txt included), added by JobWriter.commit

Other keys (``plan``, ``ordering``, ``toolpath``, ...) are allowed and kept; a string value
of ``toolpath`` or ``preview`` must name a file of the job. Any string naming a path inside the
temporary folder (e.g. a validation report's ``path``) is stored relative to the job folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import stat
import tempfile
import zipfile
import zlib

from .fileio import sha256_file as _sha256_size
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from . import __version__
from .errors import BioslicerError
from .printers import Printer, load_printer

JOB_FORMAT = "bioslicer-job/1"
MANIFEST_NAME = "manifest.json"
REPORT_NAME = "report.txt"
PARTIAL_MARK = ".partial-"

#: top-level manifest keys and the sub-keys each must hold (None: any dict / value)
MANIFEST_SCHEMA: dict[str, tuple[str, ...] | None] = {
    "format": None,
    "software": ("name", "version"),
    "mesh": ("file", "sha256", "units", "bounds_um", "report"),
    "printer": ("name", "dialect", "field_shape", "field_size_um"),
    "recipe": None,
    "program": ("dialect", "main", "files"),
    "counts": ("layers", "blocks", "marks", "segments", "points", "mark_length_um", "jump_length_um",
               "dropped_segments"),
    "bounds_um": None,
    "estimate": ("total_s", "per_block_s", "breakdown"),
    "validation": ("ok", "n_moves", "violations"),
    "preview": None,
}
#: recipe keys the operator's report shows, in this order, when present and set
RECIPE_HIGHLIGHTS = ("strategy", "slice_um", "hatch_um", "hatch_angle_deg", "hatch_angle_step_deg", "contour_count",
                     "contour_spacing_um", "power_mw", "speed_um_s", "block_size_um", "overlap_um", "shear_deg",
                     "depth_mode", "power_field_path", "z_offset_um")
_INT_COUNTS = ("layers", "blocks", "marks", "segments", "points", "dropped_segments")
_FLOAT_COUNTS = ("mark_length_um", "jump_length_um")
_CHUNK = 1 << 20
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_LEVEL = 1
_MAX_LISTED_VIOLATIONS = 20
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


# ============================================================================ small helpers
def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return o.as_posix()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"manifest value of type {type(o).__name__} is not JSON serialisable")


def manifest_bytes(manifest: dict) -> bytes:
    """The canonical bytes of a manifest: UTF-8 JSON, sorted keys, indent 2, newline at the end.

    Parameters
    ----------
    manifest : dict
        JSON-able values (numpy scalars and arrays are converted); NaN and infinity are refused.

    Returns
    -------
    bytes
    """
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False,
                       default=_json_default) + "\n").encode("utf-8")


def sha256_file(path) -> str:
    """SHA-256 hex digest of a file."""
    return _sha256_size(path)[0]


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder (folders: best effort where the OS does not allow it)."""
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


def _write_bytes_fsync(path: Path, data: bytes) -> None:
    """Create ``path`` (must not exist) with ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_file_fsync(src: Path, dst: Path) -> None:
    """Copy ``src`` to a new file ``dst`` (refused if it exists) and fsync it."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with open(src, "rb", buffering=0) as fh:
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            while True:
                n = fh.readinto(buf)
                if not n:
                    break
                chunk = view[:n]
                while chunk:
                    w = os.write(fd, chunk)
                    chunk = chunk[w:]
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


def format_hms(seconds: float) -> str:
    """Seconds as ``h:mm:ss`` (rounded to the second)."""
    if seconds is None or not math.isfinite(float(seconds)):
        return "?"
    s = int(round(float(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# ============================================================================ manifest checks
def check_manifest(manifest: dict, complete: bool = True) -> list[str]:
    """Check a manifest against the ``bioslicer-job/1`` schema (see the module docstring).

    Parameters
    ----------
    manifest : dict
        The manifest (as read back, or as the pipeline gives it to :meth:`JobWriter.commit`).
    complete : bool
        Also require ``files`` (the hashes :meth:`JobWriter.commit` adds).

    Returns
    -------
    list of str
        One line per problem; empty when the manifest is well formed.
    """
    if not isinstance(manifest, dict):
        return ["manifest is not a JSON object"]
    problems = []
    if manifest.get("format") != JOB_FORMAT:
        problems.append(f"format is {manifest.get('format')!r}, expected {JOB_FORMAT!r}")
    for key, sub in MANIFEST_SCHEMA.items():
        if key not in manifest:
            problems.append(f"missing key '{key}'")
            continue
        if sub is None:
            continue
        val = manifest[key]
        if not isinstance(val, dict):
            problems.append(f"'{key}' must be an object")
            continue
        for s in sub:
            if s not in val:
                problems.append(f"missing key '{key}.{s}'")
    if problems:
        return problems
    mesh = manifest["mesh"]
    if not (isinstance(mesh["sha256"], str) and _SHA_RE.match(mesh["sha256"])):
        problems.append("'mesh.sha256' must be 64 lowercase hex digits")
    if not isinstance(manifest["recipe"], dict):
        problems.append("'recipe' must be an object")
    prog = manifest["program"]
    pfiles = prog["files"]
    if not (isinstance(pfiles, list) and pfiles and all(_safe_rel(f) for f in pfiles)):
        problems.append("'program.files' must be a non-empty list of relative paths inside the job")
    elif prog["main"] not in pfiles:
        problems.append(f"'program.main' {prog['main']!r} is not in 'program.files'")
    if prog["dialect"] != manifest["printer"].get("dialect"):
        problems.append(f"'program.dialect' {prog['dialect']!r} differs from the printer's "
                        f"{manifest['printer'].get('dialect')!r}")
    counts = manifest["counts"]
    for k in _INT_COUNTS:
        v = counts[k]
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            problems.append(f"'counts.{k}' must be a whole number >= 0")
    for k in _FLOAT_COUNTS:
        v = counts[k]
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0):
            problems.append(f"'counts.{k}' must be a number >= 0")
    b = manifest["bounds_um"]
    if not (isinstance(b, list) and len(b) == 2 and all(isinstance(r, list) and len(r) == 3 for r in b)):
        problems.append("'bounds_um' must be [[xmin, ymin, zmin], [xmax, ymax, zmax]]")
    est = manifest["estimate"]
    if not isinstance(est["total_s"], (int, float)) or isinstance(est["total_s"], bool) or est["total_s"] < 0:
        problems.append("'estimate.total_s' must be a number >= 0")
    per = est["per_block_s"]
    if not isinstance(per, list):
        problems.append("'estimate.per_block_s' must be a list")
    elif isinstance(counts["blocks"], int) and len(per) != counts["blocks"]:
        problems.append(f"'estimate.per_block_s' has {len(per)} entries for {counts['blocks']} blocks")
    val = manifest["validation"]
    if not isinstance(val["ok"], bool):
        problems.append("'validation.ok' must be true or false")
    for key in ("preview", "toolpath"):
        v = manifest.get(key)
        if v is not None and not _safe_rel(v):
            problems.append(f"'{key}' must be a relative path inside the job or null")
    if complete:
        files = manifest.get("files")
        if not isinstance(files, dict) or not files:
            problems.append("missing key 'files' (the SHA-256 of every job file)")
        else:
            for rel, h in files.items():
                if not _safe_rel(rel) or rel == MANIFEST_NAME:
                    problems.append(f"'files' names {rel!r}, which is not a job file path")
                elif not (isinstance(h, str) and _SHA_RE.match(h)):
                    problems.append(f"'files' has a malformed SHA-256 for {rel}")
            named = list(pfiles) if isinstance(pfiles, list) else []
            named += [manifest.get(k) for k in ("preview", "toolpath") if isinstance(manifest.get(k), str)]
            for rel in named:
                if isinstance(rel, str) and rel not in files:
                    problems.append(f"{rel} is named in the manifest but has no entry in 'files'")
    return problems


def read_manifest(job) -> dict:
    """Read and check the manifest of a job folder or a job ``.zip``.

    Parameters
    ----------
    job : path
        A job folder (holding ``manifest.json``) or a ``.zip`` made by :meth:`JobWriter.commit`.

    Returns
    -------
    dict
        The manifest, as stored.

    Raises
    ------
    BioslicerError
        The path is missing, not a job, an unfinished job, or the manifest is malformed.
    """
    job = Path(job)
    if not job.exists():
        raise BioslicerError(f"job {job} not found; give a job folder or .zip written by `bioslicer slice`")
    if is_partial(job):
        raise BioslicerError(f"{job} is an unfinished job left by an interrupted slice; delete it and slice again")
    if job.is_dir():
        mpath = job / MANIFEST_NAME
        if not mpath.is_file():
            raise BioslicerError(f"{job} is not a bioslicer job (no {MANIFEST_NAME}); "
                                 "give a folder written by `bioslicer slice`")
        raw = mpath.read_bytes()
    elif zipfile.is_zipfile(job):
        try:
            with zipfile.ZipFile(job) as zf:
                raw = zf.read(MANIFEST_NAME)
        except KeyError:
            raise BioslicerError(f"{job} is not a bioslicer job (no {MANIFEST_NAME} in the zip); "
                                 "give a .zip written by `bioslicer slice --zip`") from None
        except (zipfile.BadZipFile, OSError) as exc:
            raise BioslicerError(f"cannot read {job}: {exc}; the zip is damaged, copy it again") from None
    else:
        raise BioslicerError(f"{job} is neither a job folder nor a .zip; give what `bioslicer slice` wrote")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BioslicerError(f"{MANIFEST_NAME} of {job} is not valid JSON ({exc}); the job is damaged, "
                             "copy or slice it again") from None
    if not isinstance(manifest, dict):
        raise BioslicerError(f"{MANIFEST_NAME} of {job} is not a JSON object; the job is damaged")
    fmt = manifest.get("format")
    if fmt != JOB_FORMAT:
        raise BioslicerError(f"{job} has job format {fmt!r}; this bioslicer ({__version__}) reads {JOB_FORMAT!r}, "
                             "use a matching bioslicer version")
    problems = check_manifest(manifest, complete=True)
    if problems:
        raise BioslicerError(f"{MANIFEST_NAME} of {job} is malformed: {problems[0]}"
                             + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
                             + "; slice the job again")
    return manifest


def printer_from_manifest(manifest: dict) -> Printer:
    """Rebuild the embedded :class:`Printer` (``Printer.to_dict()``) of a manifest.

    Raises
    ------
    BioslicerError
        The embedded profile lacks fields this bioslicer needs.
    """
    d = dict(manifest.get("printer") or {})
    names = [f.name for f in fields(Printer)]
    missing = [n for n in names if n not in d and n not in ("description", "program", "defaults", "source")]
    if missing:
        raise BioslicerError(f"the job's embedded printer profile lacks {', '.join(missing)}; "
                             "verify it against a named profile with --printer")
    kw = {n: d[n] for n in names if n in d}
    for n in ("stage_x_um", "stage_y_um", "stage_z_um"):
        kw[n] = tuple(float(v) for v in kw[n])
    return Printer(**kw)


# ============================================================================ report
def _fmt_num(v, unit: str = "") -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}{unit}"
    if isinstance(v, float):
        return f"{v:.6g}{unit}"
    return f"{v}{unit}"


def _fmt_value(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt_value(x)}" for k, x in sorted(v.items()))
    if isinstance(v, list):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _fmt_len_um(v) -> str:
    if not isinstance(v, (int, float)):
        return "?"
    return f"{v / 1000:.3f} mm" if abs(v) >= 1000 else f"{v:.3f} µm"


def job_summary(manifest: dict) -> str:
    """The operator's report of a job: part, printer, program, size, time, checks, recipe.

    Parameters
    ----------
    manifest : dict
        A job manifest (``files`` may be absent: the report is written before the manifest).

    Returns
    -------
    str
        Plain UTF-8 text, one fact per line, ending with a newline. Deterministic.
    """
    g = lambda d, k, default=None: d.get(k, default) if isinstance(d, dict) else default  # noqa: E731
    mesh = manifest.get("mesh") or {}
    pr = manifest.get("printer") or {}
    prog = manifest.get("program") or {}
    counts = manifest.get("counts") or {}
    est = manifest.get("estimate") or {}
    val = manifest.get("validation") or {}
    sw = manifest.get("software") or {}
    lines = ["bioslicer print job", "===================", ""]

    def row(label, text):
        lines.append(f"{label:<14}{text}")

    sha = g(mesh, "sha256") or ""
    row("Part", f"{g(mesh, 'file', '?')} (file units {g(mesh, 'units', '?')}, sha256 {sha[:16]}…)"
        if sha else f"{g(mesh, 'file', '?')}")
    row("Printer", f"{g(pr, 'name', '?')} — objective {g(pr, 'objective') or '?'}")
    if g(pr, "description"):
        row("", str(pr["description"]))
    if "field_size_um" in pr:
        row("Field", f"{g(pr, 'field_shape', '?')} {_fmt_num(pr['field_size_um'])} µm, "
            f"z range {_fmt_num(g(pr, 'z_range_um'))} µm")
    files = prog.get("files") or []
    row("Program", f"{g(prog, 'dialect', '?')}, main file {g(prog, 'main', '?')} ({len(files)} program file"
        f"{'s' if len(files) != 1 else ''})")
    b = manifest.get("bounds_um")
    if isinstance(b, list) and len(b) == 2:
        lo, hi = b
        size = [h - l for l, h in zip(lo, hi)]
        row("Size", " × ".join(f"{s:.1f}" for s in size) + " µm (x × y × z)")
        row("Bounding box", "(" + ", ".join(f"{v:.1f}" for v in lo) + ") to ("
            + ", ".join(f"{v:.1f}" for v in hi) + ") µm")
    row("Blocks", _fmt_num(g(counts, "blocks")))
    row("Layers", _fmt_num(g(counts, "layers")))
    row("Marks", f"{_fmt_num(g(counts, 'marks'))} ({_fmt_num(g(counts, 'segments'))} segments, "
        f"{_fmt_num(g(counts, 'points'))} points)")
    row("Mark length", _fmt_len_um(g(counts, "mark_length_um")))
    row("Jump length", _fmt_len_um(g(counts, "jump_length_um")))
    dropped = g(counts, "dropped_segments", 0)
    if dropped:
        row("Dropped", f"{_fmt_num(dropped)} segments (outside the printable range; see the manifest)")
    per = est.get("per_block_s") or []
    row("Print time", f"{format_hms(g(est, 'total_s'))} (h:mm:ss, estimated)")
    if per:
        if len(per) <= 12:
            row("Per block", ", ".join(format_hms(s) for s in per))
        else:
            row("Per block", f"{len(per)} blocks, shortest {format_hms(min(per))}, "
                f"longest {format_hms(max(per))}")
    bd = est.get("breakdown")
    if isinstance(bd, dict):
        split = [(k[:-2] if k.endswith("_s") else k, v) for k, v in sorted(bd.items())
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if split:
            row("Time split", ", ".join(f"{k} {format_hms(v)}" for k, v in split))
    viol = val.get("violations") or []
    if val.get("ok") is True:
        row("Validation", f"OK against {g(pr, 'name', '?')} ({_fmt_num(g(val, 'n_moves', 0))} moves checked)")
    else:
        row("Validation", f"FAILED: {len(viol)} violation(s) against {g(pr, 'name', '?')} — do not print")
        for v in viol[:5]:
            if isinstance(v, dict):
                row("", f"{v.get('file', '?')}:{v.get('line', '?')}: {v.get('message', '')}")
            else:
                row("", str(v))
    cmp = manifest.get("compare")
    if isinstance(cmp, dict) and "design_um3" in cmp:
        v = cmp.get("voxel_um") or [0, 0, 0]
        row("Design/print", f"printed {cmp['printed_um3']:,.0f} of {cmp['design_um3']:,.0f} µm³ designed "
            f"({cmp['difference_pct']:+.2f} %): missing {cmp['missing_um3']:,.0f}, extra {cmp['extra_um3']:,.0f} µm³ "
            f"(voxels {v[0]:g} x {v[1]:g} x {v[2]:g} µm, from the program)")
    elif isinstance(cmp, dict) and cmp.get("skipped"):
        row("Design/print", f"not compared at slice time: {cmp['skipped']}")
    rec = manifest.get("recipe") or {}
    if isinstance(rec, dict) and rec:
        keys = [k for k in RECIPE_HIGHLIGHTS if rec.get(k) is not None]
        if not keys:  # an unfamiliar recipe: show every set value
            keys = sorted(k for k in rec if rec[k] is not None)
        lines.append("")
        lines.append("Recipe (highlights; every parameter is in manifest.json)")
        for k in keys:
            lines.append(f"  {k:<24}{_fmt_value(rec[k])}")
    lines.append("")
    lines.append(f"Software      {g(sw, 'name', 'bioslicer')} {g(sw, 'version', '?')}")
    lines.append(f"Preview       {manifest.get('preview') or 'none'}")
    fl = manifest.get("files")
    if isinstance(fl, dict) and fl:
        lines.append("")
        lines.append("Files (SHA-256)")
        for rel in sorted(fl):
            lines.append(f"  {fl[rel]}  {rel}")
    return "\n".join(lines) + "\n"


# ============================================================================ writing
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
        Replace an existing ``out_dir`` (and ``<out_dir>.zip``) instead of refusing.
    path : Path or None
        The temporary folder ``<parent>/.<name>.partial-<random>`` (set on enter).
    committed : bool
        True once :meth:`commit` has published the job.

    On leaving the ``with`` block with an exception, or without a commit, the temporary folder
    is removed and nothing that looks like a job is left.
    """

    def __init__(self, out_dir, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.overwrite = bool(overwrite)
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
            if not out.is_dir():
                raise BioslicerError(f"{out} exists and is not a folder; choose another job folder name")
            if not self.overwrite:
                raise BioslicerError(f"job folder {out} already exists; choose another name or pass --overwrite")

    # ---------------------------------------------------------------- commit
    def commit(self, manifest: dict, zip: bool = False) -> Path:
        """Hash the files, write report.txt and manifest.json, fsync, publish the folder.

        Parameters
        ----------
        manifest : dict
            Every schema key but ``files`` (see the module docstring); ``format`` and
            ``software`` are filled in when absent. Not modified.
        zip : bool
            Also write ``<out_dir>.zip`` (files at the archive root, sorted, fixed timestamps).

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
        problems = check_manifest(m, complete=False)
        if problems:
            raise ValueError("job manifest breaks the schema: " + "; ".join(problems))
        zip_path = out.with_name(out.name + ".zip")
        zip_tmp: Path | None = None
        try:
            for name in (MANIFEST_NAME, REPORT_NAME):
                (tmp / name).unlink(missing_ok=True)
            rels = _list_files(tmp)
            files = {}
            for rel in rels:
                p = tmp / rel
                files[rel] = sha256_file(p)
                _fsync_path(p)
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


# ============================================================================ verify
@dataclass
class VerifyReport:
    """What :func:`verify_job` found.

    Attributes
    ----------
    ok : bool
        True when every hash matches, no file is missing or extra, and the program passes.
    problems : list of str
        One line per problem, each naming the file it concerns.
    job : str
        The job checked.
    printer : str
        The profile the program was validated against (name, and whether it was embedded).
    n_files : int
        Files listed in the manifest.
    validation : dict or None
        ``validate_program(...).to_dict()``, or None when the program could not be validated.
    """

    ok: bool
    problems: list[str] = field(default_factory=list)
    job: str = ""
    printer: str = ""
    n_files: int = 0
    validation: dict | None = None

    def to_dict(self) -> dict:
        return {"ok": self.ok, "problems": list(self.problems), "job": self.job, "printer": self.printer,
                "n_files": self.n_files, "validation": self.validation}


def _validate_program(path: Path, printer: Printer, dialect: str | None = None):
    """Call the program validator, ``bioslicer.programs.validate_program(path, printer, dialect)``."""
    from .programs import validate_program

    return validate_program(path, printer, dialect)


def _check_files(folder: Path, manifest: dict) -> list[str]:
    """Hash, missing and extra-file problems of a job folder."""
    problems = []
    listed = manifest["files"]
    for rel in sorted(listed):
        p = folder / rel
        if not p.is_file():
            problems.append(f"{rel}: missing (listed in the manifest)")
        elif sha256_file(p) != listed[rel]:
            problems.append(f"{rel}: SHA-256 mismatch, the file was changed or damaged")
    try:
        present = _list_files(folder)
    except ValueError as exc:
        return problems + [str(exc)]
    for rel in present:
        if rel != MANIFEST_NAME and rel not in listed:
            problems.append(f"{rel}: unexpected file, not in the manifest")
    return problems


def _extract_zip(zip_path: Path, dest: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            if not _safe_rel(info.filename):
                problems.append(f"{info.filename}: unsafe path in the zip, not extracted")
                continue
            target = dest / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                problems.append(f"{info.filename}: damaged in the zip ({exc})")
                target.unlink(missing_ok=True)
    return problems


def verify_job(job, printer=None, hashes_only: bool = False) -> VerifyReport:
    """Re-check a job: every hash, missing and extra files, and the program against a printer.

    Parameters
    ----------
    job : path
        Job folder or ``.zip``.
    printer : None, str, path or Printer
        None validates against the profile embedded in the manifest; otherwise a bundled name,
        a TOML path or a Printer (a job sliced for a 25x field fails on a 63x printer).
    hashes_only : bool
        Skip re-validating the program (used to check a copy of an already verified job).

    Returns
    -------
    VerifyReport
        ``ok`` is False with the problems listed when anything is wrong; a damaged manifest is a
        problem too.

    Raises
    ------
    BioslicerError
        The job path does not exist, or a named printer cannot be loaded.
    """
    job = Path(job)
    if not job.exists():
        raise BioslicerError(f"job {job} not found; give a job folder or .zip written by `bioslicer slice`")
    named_printer = load_printer(printer) if printer is not None else None
    try:
        manifest = read_manifest(job)
    except BioslicerError as exc:
        return VerifyReport(False, [f"{MANIFEST_NAME}: {exc}"], str(job))
    if job.is_dir():
        return _verify_folder(job, job, manifest, named_printer, hashes_only)
    with tempfile.TemporaryDirectory(prefix="bioslicer-verify-") as td:
        problems = _extract_zip(job, Path(td))
        rep = _verify_folder(Path(td), job, manifest, named_printer, hashes_only)
        rep.problems = problems + rep.problems
        rep.ok = not rep.problems
        return rep


def _job_rel(folder: Path, f) -> str:
    """A validator's file name as a path relative to the job folder (POSIX)."""
    p = Path(str(f))
    if p.is_absolute():
        try:
            return p.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            return p.name
    return p.as_posix()


def _verify_folder(folder: Path, job: Path, manifest: dict, named: Printer | None, hashes_only: bool) -> VerifyReport:
    problems = _check_files(folder, manifest)
    rep = VerifyReport(False, problems, str(job), n_files=len(manifest["files"]))
    if hashes_only:
        rep.ok = not problems
        return rep
    if named is None:
        try:
            pr = printer_from_manifest(manifest)
        except BioslicerError as exc:
            problems.append(f"{MANIFEST_NAME}: {exc}")
            return rep
        rep.printer = f"{pr.name} (embedded)"
    else:
        pr = named
        rep.printer = pr.name
    dialect = manifest["program"]["dialect"]
    if pr.dialect != dialect:
        problems.append(f"{manifest['program']['main']}: a {dialect} program cannot run on {pr.name}, "
                        f"which reads {pr.dialect}")
    main_rel = manifest["program"]["main"]
    main = folder / main_rel
    damaged = any(p.startswith(f"{main_rel}: ") for p in problems)  # hash already failed: do not parse it
    if main.is_file() and pr.dialect == dialect and not damaged:
        try:
            res = _validate_program(main, pr, dialect)
        except BioslicerError as exc:
            problems.append(f"{main_rel}: {exc}")
        else:
            rep.validation = res.to_dict()
            viol = list(res.violations)
            for v in viol[:_MAX_LISTED_VIOLATIONS]:
                f = _job_rel(folder, getattr(v, "file", None) or main_rel)
                problems.append(f"{f}:{getattr(v, 'line', '?')}: {getattr(v, 'message', v)} (on {pr.name})")
            if rep.validation is not None:
                rep.validation["violations"] = [
                    {**d, "file": _job_rel(folder, d.get("file") or main_rel)} if isinstance(d, dict) else d
                    for d in rep.validation.get("violations", [])]
                rep.validation.pop("path", None)  # a temporary path for zips; the job is in VerifyReport.job
            total = int(getattr(res, "n_violations", len(viol)))
            shown = min(len(viol), _MAX_LISTED_VIOLATIONS)
            if total > shown:
                problems.append(f"{main_rel}: {total - shown} more violations on {pr.name}")
            if not res.ok and not viol:
                problems.append(f"{manifest['program']['main']}: fails validation on {pr.name}")
            rec = manifest["validation"].get("n_moves")
            if named is None and res.ok and isinstance(rec, int) and rec != res.n_moves:
                problems.append(f"{manifest['program']['main']}: {res.n_moves} moves now, {rec} when sliced")
    rep.ok = not problems
    return rep


# ============================================================================ submit
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


def submit_job(job, spool_dir) -> SubmitResult:
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
    rep = verify_job(job)
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
