"""The job manifest: its schema, canonical bytes, checks, reading it back, the embedded printer."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import BioslicerError
from ..fileio import check_zip, zip_inflate_limit
from ..printers import Printer
from ._files import _safe_rel, is_partial

JOB_FORMAT = "bioslicer-job/1"
MANIFEST_NAME = "manifest.json"
REPORT_NAME = "report.txt"
#: a manifest larger than this is refused unread (a real one is a few hundred kB)
MAX_MANIFEST_BYTES = 64 << 20

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
_INT_COUNTS = ("layers", "blocks", "marks", "segments", "points", "dropped_segments")
_FLOAT_COUNTS = ("mark_length_um", "jump_length_um")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


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
    h = manifest.get("content_sha256")
    if h is not None and not (isinstance(h, str) and _SHA_RE.match(h)):
        problems.append("'content_sha256' must be 64 lowercase hex digits")
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
        if mpath.stat().st_size > MAX_MANIFEST_BYTES:
            raise BioslicerError(f"{MANIFEST_NAME} of {job} is larger than {MAX_MANIFEST_BYTES >> 20} MB; "
                                 "it is not a job manifest")
        raw = mpath.read_bytes()
    elif zipfile.is_zipfile(job):
        try:
            with zipfile.ZipFile(job) as zf:
                check_zip(zf, zip_inflate_limit(job.stat().st_size), what=f"job bundle {job.name}")
                if zf.getinfo(MANIFEST_NAME).file_size > MAX_MANIFEST_BYTES:
                    raise BioslicerError(f"{MANIFEST_NAME} in {job.name} is larger than "
                                         f"{MAX_MANIFEST_BYTES >> 20} MB; it is not a job manifest")
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
    optional = {f.name for f in fields(Printer) if f.default is not MISSING or f.default_factory is not MISSING}
    missing = [n for n in names if n not in d and n not in optional]
    if missing:
        raise BioslicerError(f"the job's embedded printer profile lacks {', '.join(missing)}; "
                             "verify it against a named profile with --printer")
    kw = {n: d[n] for n in names if n in d}
    for n in ("stage_x_um", "stage_y_um", "stage_z_um"):
        kw[n] = tuple(float(v) for v in kw[n])
    if "calibration_table" in kw:
        kw["calibration_table"] = [[float(a) for a in r] for r in kw["calibration_table"]]
    return Printer(**kw)



def content_sha256(manifest: dict) -> str:
    """SHA-256 of a manifest's own content: its canonical bytes without ``files`` and
    ``content_sha256`` (JobWriter.commit stores it as ``content_sha256`` and in report.txt, whose
    hash is in ``files``; verify recomputes it, so an edited manifest is seen)."""
    import hashlib

    return hashlib.sha256(manifest_bytes({k: v for k, v in manifest.items()
                                          if k not in ("files", "content_sha256")})).hexdigest()


def build_manifest(*, mesh_file: str, mesh_sha256: str, units: str, mesh_bounds_um, mesh_report,
                   printer: Printer, recipe: dict, dialect: str, main: str, program_files, counts: dict,
                   bounds_um, estimate: dict, validation: dict, preview: str | None, **extra) -> dict:
    """The manifest of a sliced job (every schema key but ``files``, which JobWriter.commit adds).

    Parameters
    ----------
    mesh_file : str
        Name of the input mesh file (a label, not a path).
    mesh_sha256 : str
        SHA-256 of the mesh file.
    units : str
        Length unit of the mesh file.
    mesh_bounds_um : array-like (2, 3)
        Bounds of the loaded mesh, µm.
    mesh_report : dict or None
        The mesh inspection report.
    printer : Printer
        The profile used (embedded in full).
    recipe : dict
        Every slicing parameter (``Recipe.to_dict()``).
    dialect, main, program_files
        Program dialect, main file and every program file (relative POSIX paths).
    counts : dict
        ``layers, blocks, marks, segments, points, dropped_segments, mark_length_um, jump_length_um``.
    bounds_um : array-like (2, 3)
        Bounds of the toolpath, µm.
    estimate : dict
        ``total_s, per_block_s, breakdown`` (and more).
    validation : dict
        The slice-time program check (``ValidationReport.to_dict()``).
    preview : str or None
        ``preview.png`` or None.
    **extra
        Further keys kept as given (``stitching``, ``plan``, ``preview_toolpath``, ...).

    Returns
    -------
    dict
    """
    return {
        "format": JOB_FORMAT,
        "software": {"name": "bioslicer", "version": __version__},
        "mesh": {"file": mesh_file, "sha256": mesh_sha256, "units": units,
                 "bounds_um": np.asarray(mesh_bounds_um).tolist(), "report": mesh_report},
        "printer": printer.to_dict(),
        "recipe": recipe,
        "program": {"dialect": dialect, "main": main, "files": sorted(program_files)},
        "counts": counts,
        "bounds_um": np.asarray(bounds_um).tolist(),
        "estimate": estimate,
        "validation": validation,
        "preview": preview,
        **extra,
    }
