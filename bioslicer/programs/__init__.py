"""Machine programs: streaming writers and readers for each dialect, and the export entry.

Public entries
--------------
:func:`write_program`
    Toolpath -> program files (written under a temporary folder in ``out_dir``, validated
    against the printer, then renamed into place; nothing is left behind on a violation).
:func:`read_program`
    Program -> :class:`Moves` (struct of arrays, one row per move, µm / mW / µm/s).
:func:`validate_program`
    Program -> :class:`~bioslicer.validate.ValidationReport`.
:data:`DIALECTS`
    Name -> :class:`Dialect` (writer and reader). A new dialect is a module here with
    ``write`` and ``iter_moves`` plus a ``gcode/<name>.toml``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BioslicerError
from ..printers import load_printer
from ..progress import silent
from ..validate import ValidationReport, Violation, validate_program
from . import aerobasic, gcode, gwl, voxel, waveform
from .dialects import DialectSpec, Moves, load_spec

__all__ = ["DIALECTS", "Dialect", "Moves", "ProgramFiles", "ValidationReport", "Violation", "guess_dialect",
           "read_program", "validate_program", "write_program"]


@dataclass(frozen=True)
class Dialect:
    """A program dialect: its writer and reader, and which checks apply to what it can express.

    ``write(toolpath, printer, spec, out_dir, name, provenance, progress) -> list[Path]`` (main
    file first); ``iter_moves(path, printer, spec)`` yields :class:`Moves` chunks.
    """

    name: str
    write: Callable
    iter_moves: Callable
    check_min_speed: bool = True      # waveforms run up from rest; volumes have no speed
    check_speed: bool = True

    @property
    def spec(self) -> DialectSpec:
        return load_spec(self.name)


DIALECTS: dict[str, Dialect] = {
    "gwl": Dialect("gwl", gwl.write, gwl.iter_moves),
    "gcode": Dialect("gcode", gcode.write, gcode.iter_moves),
    "aerobasic": Dialect("aerobasic", aerobasic.write, aerobasic.iter_moves),
    "waveform": Dialect("waveform", waveform.write, waveform.iter_moves, check_min_speed=False),
    "voxel": Dialect("voxel", voxel.write, voxel.iter_moves, check_min_speed=False, check_speed=False),
}


@dataclass
class ProgramFiles:
    """What :func:`write_program` wrote.

    Attributes
    ----------
    dialect : str
    main : Path
        The file to load on the machine (or to validate).
    files : list[Path]
        Every file written, main first.
    n_bytes : int
        Their total size.
    report : ValidationReport
        The validation that passed before the files were moved into place.
    """

    dialect: str
    main: Path
    files: list
    n_bytes: int
    report: ValidationReport | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {"dialect": self.dialect, "main": str(self.main), "files": [str(f) for f in self.files],
                "n_bytes": self.n_bytes, "n_moves": self.report.n_moves if self.report else None}


def guess_dialect(path, printer=None) -> str:
    """The dialect of a program file from its extension, else the printer's dialect."""
    path = Path(path)
    name = path.name.lower()
    hits = [d for d in DIALECTS if any(name.endswith(e) for e in load_spec(d).extensions)]
    if printer is not None and printer.dialect in hits:
        return printer.dialect
    if len(hits) == 1:
        return hits[0]
    if printer is not None:
        return printer.dialect
    raise BioslicerError(f"cannot tell the dialect of {path.name}; pass dialect= (one of {', '.join(DIALECTS)})")


def _dialect(name: str | None, printer) -> Dialect:
    name = printer.dialect if name is None else name
    if name not in DIALECTS:
        raise BioslicerError(f"unknown dialect {name!r}; use one of {', '.join(DIALECTS)}")
    return DIALECTS[name]


def write_program(toolpath, printer, out_dir, name: str = "part", dialect: str | None = None,
                  provenance: dict | None = None, progress=silent) -> ProgramFiles:
    """Write a stitched toolpath as a machine program, validated before it appears.

    Parameters
    ----------
    toolpath : Toolpath
        Stitched (``blocks`` set, every ``mark_block >= 0``, marks grouped by block).
    printer : Printer or str
        Profile or bundled name.
    out_dir : str or Path
        Folder for the files (created).
    name : str
        Base name of the files (``<name>_job.gwl``, ``<name>.gcode``, ...).
    dialect : str, optional
        Defaults to the printer's dialect.
    provenance : dict, optional
        Written into the header (software version, mesh hash, parameters, ...); keep it free
        of clock times so the same inputs give the same bytes.
    progress : callable
        ``progress(done, total, label)`` per block.

    Returns
    -------
    ProgramFiles

    Raises
    ------
    BioslicerError
        Bad name, unknown dialect, a profile lacking a key the dialect needs, an unstitched
        toolpath, non-finite values, or a validation failure (then nothing is left behind).
    """
    printer = load_printer(printer)
    d = _dialect(dialect, printer)
    if not name or any(c in name for c in "/\\:") or name.startswith("."):
        raise BioslicerError(f"program name {name!r} must be a plain file name (no folders, not starting with '.')")
    toolpath.check()
    for arr, what in ((toolpath.x_um, "x"), (toolpath.y_um, "y"), (toolpath.z_um, "z"),
                      (toolpath.power_mw, "power"), (toolpath.mark_speed_um_s, "speed")):
        if arr.size and not bool(np.isfinite(arr).all()):
            raise BioslicerError(f"the toolpath has a NaN or infinite {what}; fix the step that produced it")
    spec = d.spec
    spec.check_printer(printer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir))
    try:
        files = d.write(toolpath, printer, spec, tmp, name, provenance, progress)
        report = validate_program(files[0], printer, d.name, max_violations=20)
        rel = lambda p: os.path.relpath(p, tmp) if str(p).startswith(str(tmp)) else str(p)  # noqa: E731
        report.violations = [Violation(rel(v.file), v.line, v.message) for v in report.violations]
        report.path = str(out_dir / Path(files[0]).relative_to(tmp))
        if not report.ok:
            v = report.violations[0] if report.violations else None
            raise BioslicerError(f"program failed validation, nothing written: {v} ({report.n_violations} "
                                 "violation(s)); fix the toolpath or choose a printer that can make it")
        final = []
        for f in files:
            dst = out_dir / Path(f).relative_to(tmp)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, dst)
            final.append(dst)
        n_bytes = sum(p.stat().st_size for p in final)
        return ProgramFiles(d.name, final[0], final, n_bytes, report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_program(path, printer, dialect: str | None = None) -> Moves:
    """Parse a program back into :class:`Moves` (the whole program in memory).

    Parameters
    ----------
    path : str or Path
        The main file of the program.
    printer : Printer or str
        Needed for units (power unit, program unit, volts per µm).
    dialect : str, optional
        Guessed from the file when None.

    Returns
    -------
    Moves
        One row per move; lines the reader did not understand are listed in ``moves.problems``.
    """
    printer = load_printer(printer)
    path = Path(path)
    if not path.exists():
        raise BioslicerError(f"program {path} not found")
    d = _dialect(guess_dialect(path, printer) if dialect is None else dialect, printer)
    parts = list(d.iter_moves(path, printer, d.spec))
    files = parts[-1].files if parts else [str(path)]
    return Moves.concat(parts, files)
