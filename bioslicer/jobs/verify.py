"""Verifying a job: every hash, missing and extra files, the program against a printer."""

from __future__ import annotations

import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BioslicerError
from ..fileio import check_zip, copy_zip_entry, zip_inflate_limit
from ..printers import Printer, load_printer
from ._files import _list_files, _safe_rel, sha256_file
from .manifest import MANIFEST_NAME, printer_from_manifest, read_manifest

_MAX_LISTED_VIOLATIONS = 20


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
    from ..programs import validate_program

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
    """Unpack a job zip for verifying; its inflated size and entry count are bounded
    (:func:`bioslicer.fileio.check_zip`, counted while inflating): a bomb raises BioslicerError."""
    problems = []
    what = f"job bundle {zip_path.name}"
    with zipfile.ZipFile(zip_path) as zf:
        limit = zip_inflate_limit(zip_path.stat().st_size)
        infos = check_zip(zf, limit, what=what)
        budget = [limit]
        for info in infos:
            if info.is_dir():
                continue
            if not _safe_rel(info.filename):
                problems.append(f"{info.filename}: unsafe path in the zip, not extracted")
                continue
            target = dest / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(target, "wb") as dst:
                    copy_zip_entry(zf, info, dst, budget, what=what)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                problems.append(f"{info.filename}: damaged in the zip ({exc})")
                target.unlink(missing_ok=True)
    return problems


def verify_job(job, printer=None, hashes_only: bool = False, trust_embedded_printer: bool = False) -> VerifyReport:
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
    trust_embedded_printer : bool
        Validate against the embedded profile even when it differs from the installed profile of
        that name (or none is installed); by default that is a problem, so a job whose embedded
        field was widened cannot pass silently.

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
        return _verify_folder(job, job, manifest, named_printer, hashes_only, trust_embedded_printer)
    with tempfile.TemporaryDirectory(prefix="bioslicer-verify-") as td:
        problems = _extract_zip(job, Path(td))
        rep = _verify_folder(Path(td), job, manifest, named_printer, hashes_only, trust_embedded_printer)
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


def _verify_folder(folder: Path, job: Path, manifest: dict, named: Printer | None, hashes_only: bool,
                   trust_embedded: bool = False) -> VerifyReport:
    problems = _check_files(folder, manifest) + _check_content_hash(folder, manifest)
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
        if not trust_embedded:
            problems += _check_embedded_printer(pr)
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
            if res.ok and dialect in DERIVABLE_DIALECTS:
                problems += _compare_facts(manifest, program_facts(main, pr, dialect), main_rel)
    rep.ok = not problems
    return rep



# ============================================================================ what the manifest claims
#: dialects whose moves are the toolpath's points one to one: counts, lengths, extent and powers
#: re-derive exactly from the program (waveforms are sampled, voxel volumes have no path)
DERIVABLE_DIALECTS = ("gwl", "gcode", "aerobasic")


def _check_content_hash(folder: Path, manifest: dict) -> list[str]:
    """The manifest's ``content_sha256`` against its content, and against the one report.txt shows."""
    from .manifest import REPORT_NAME, content_sha256

    h = manifest.get("content_sha256")
    if h is None:
        return [f"{MANIFEST_NAME}: no content_sha256 (written by an older bioslicer); slice the job again"]
    if content_sha256(manifest) != h:
        return [f"{MANIFEST_NAME}: its content does not match its content_sha256; the manifest was edited"]
    report = folder / REPORT_NAME
    if report.is_file() and h not in report.read_text(encoding="utf-8", errors="replace"):
        return [f"{REPORT_NAME}: does not show the manifest's content_sha256; the manifest or the report was edited"]
    return []


def _check_embedded_printer(pr: Printer) -> list[str]:
    """The embedded profile against the installed profile of its name (a widened field, a higher
    power limit, ... must not pass silently)."""
    try:
        installed = load_printer(pr.name)
    except BioslicerError:
        return [f"{MANIFEST_NAME}: no installed printer profile named {pr.name!r} to check the embedded one "
                "against; verify with --printer NAME, or pass --trust-embedded-printer"]
    a, b = pr.to_dict(), installed.to_dict()
    diff = sorted(k for k in a if k not in ("source", "description") and a.get(k) != b.get(k))
    if diff:
        k = diff[0]
        return [f"{MANIFEST_NAME}: the embedded printer profile {pr.name} differs from the installed one "
                f"({k} {a.get(k)!r} here, {b.get(k)!r} installed" + (f", +{len(diff) - 1} more" if len(diff) > 1 else "")
                + "); verify against the installed profile with --printer, or pass --trust-embedded-printer"]
    return []


def program_facts(main: Path, printer: Printer, dialect: str) -> dict:
    """What a program really marks, re-derived from its moves (streamed, chunk by chunk).

    Parameters
    ----------
    main : Path
        The program's main file.
    printer : Printer
        For units.
    dialect : str
        One of :data:`DERIVABLE_DIALECTS`.

    Returns
    -------
    dict
        ``marks`` (laser-on runs), ``segments`` (laser-on moves), ``points`` (marks + segments),
        ``mark_length_um`` (µm), ``extent_um`` ([dx, dy, dz] of the marked points, µm; the
        program's machine offset cancels), ``power_min_mw``, ``power_max_mw`` (of laser-on moves,
        None without any).
    """
    from ..programs import _dialect

    d = _dialect(dialect, printer)
    marks = segments = 0
    length = 0.0
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    pmin, pmax = np.inf, -np.inf
    prev_on, last = False, None
    for mv in d.iter_moves(main, printer, d.spec):
        if not len(mv):
            continue
        xyz = np.stack([mv.x, mv.y, mv.z], axis=1)
        on = np.asarray(mv.laser_on, bool) & ~np.asarray(mv.jump, bool)
        before = np.vstack([xyz[:1] if last is None else last[None], xyz[:-1]])
        was_on = np.concatenate([[prev_on], on[:-1]])
        marks += int(np.count_nonzero(on & ~was_on))
        segments += int(np.count_nonzero(on))
        if on.any():
            length += float(np.linalg.norm(xyz[on] - before[on], axis=1).sum())
            pts = np.vstack([xyz[on], before[on]])
            lo, hi = np.minimum(lo, pts.min(axis=0)), np.maximum(hi, pts.max(axis=0))
            pw = np.asarray(mv.power_mw)[on]
            pmin, pmax = min(pmin, float(pw.min())), max(pmax, float(pw.max()))
        prev_on, last = bool(on[-1]), xyz[-1]
    return {"marks": marks, "segments": segments, "points": marks + segments, "mark_length_um": length,
            "extent_um": (hi - lo).tolist() if segments else [0.0, 0.0, 0.0],
            "power_min_mw": pmin if segments else None, "power_max_mw": pmax if segments else None}


def _modulated(recipe: dict) -> bool:
    """True when the recipe varies the power along the marks (depth compensation, power field)."""
    return (recipe.get("depth_mode") not in (None, "none") or bool(recipe.get("power_field_path"))
            or float(recipe.get("power_ramp_width_um") or 0) > 0)


def _compare_facts(manifest: dict, facts: dict, main_rel: str) -> list[str]:
    """Problems where the manifest's counts, bounds or powers differ from the program's."""
    out = []
    counts = manifest["counts"]
    for k in ("marks", "segments", "points"):
        if counts.get(k) != facts[k]:
            out.append(f"{MANIFEST_NAME}: counts.{k} is {counts.get(k)!r}, the program has {facts[k]}")
    res = 10.0 ** -int(manifest["printer"].get("decimals", 3) or 3)
    claimed = counts.get("mark_length_um")
    if isinstance(claimed, (int, float)) and abs(claimed - facts["mark_length_um"]) > max(
            1e-6 * facts["mark_length_um"], facts["segments"] * res):
        out.append(f"{MANIFEST_NAME}: counts.mark_length_um is {claimed:.6g}, the program marks "
                   f"{facts['mark_length_um']:.6g} µm")
    b = manifest["bounds_um"]
    try:
        ext = [float(b[1][i]) - float(b[0][i]) for i in range(3)]
    except (TypeError, ValueError, IndexError):
        ext = None
    if ext is not None and facts["segments"] and any(abs(e - f) > 2 * res + 1e-6
                                                      for e, f in zip(ext, facts["extent_um"])):
        out.append(f"{MANIFEST_NAME}: bounds_um span {' x '.join(f'{e:.6g}' for e in ext)} µm, the program marks "
                   f"{' x '.join(f'{e:.6g}' for e in facts['extent_um'])} µm")
    if facts["power_max_mw"] is not None:
        lo, hi = facts["power_min_mw"], facts["power_max_mw"]
        tol = 1e-3 * hi + 1e-6
        plan = manifest.get("plan") if isinstance(manifest.get("plan"), dict) else {}
        recipe = manifest.get("recipe") if isinstance(manifest.get("recipe"), dict) else {}
        pmin, pmax = plan.get("power_min_mw"), plan.get("power_max_mw")
        if isinstance(pmin, (int, float)) and isinstance(pmax, (int, float)) and (
                abs(pmin - lo) > tol or abs(pmax - hi) > tol):
            out.append(f"{MANIFEST_NAME}: plan.power_min_mw..power_max_mw is {pmin:g}..{pmax:g} mW, the program "
                       f"marks at {lo:g}..{hi:g} mW")
        powers = recipe.get("power_mw")
        used = plan.get("marks_by_kind") if isinstance(plan.get("marks_by_kind"), dict) else {}
        if isinstance(powers, dict) and powers and not _modulated(recipe):
            vals = [v for k, v in powers.items() if isinstance(v, (int, float)) and (not used or used.get(k))]
            if vals and (abs(min(vals) - lo) > tol or abs(max(vals) - hi) > tol):
                out.append(f"{MANIFEST_NAME}: recipe.power_mw gives {min(vals):g}..{max(vals):g} mW, the program "
                           f"marks at {lo:g}..{hi:g} mW")
    return [f"{p} ({main_rel})" for p in out]
