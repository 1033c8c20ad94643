"""Verifying a job: every hash, missing and extra files, the program against a printer."""

from __future__ import annotations

import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

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

