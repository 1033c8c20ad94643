"""Check a machine program against a printer: parse it back and test every move.

Checks, per move: every number finite; galvo/fine x, y inside the field; fine z inside
``0 .. z_range_um``; stage inside its travel; laser power within ``0 .. max_power_mw`` where the
laser is on; mark speed within ``min_speed_um_s .. max_speed_um_s`` and jump speed within
``jump_speed_um_s``; laser off on every jump; acceleration of blanked waveform samples within
``galvo_acceleration_um_s2``. Lines the reader cannot understand are violations too. The
report keeps the first ``max_violations`` in program order with file and line (for waveforms
the line is the sample index, for voxel volumes the flat voxel index).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .printers import load_printer

# relative slack for values the writers round (power, speed, acceleration)
REL_TOL = 1e-4


@dataclass(frozen=True)
class Violation:
    """One problem: where (file, 1-based line / sample / voxel index) and what."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_program`.

    Attributes
    ----------
    ok : bool
        True when no violation was found.
    n_moves : int
        Moves parsed back.
    n_violations : int
        Every violation found (``violations`` keeps the first ``max_violations``).
    violations : list[Violation]
    """

    path: str
    dialect: str
    printer: str
    ok: bool
    n_moves: int
    n_violations: int
    violations: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["violations"] = [asdict(v) for v in self.violations]
        return d

    def first(self) -> Violation | None:
        return self.violations[0] if self.violations else None


def _fmt(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") if np.isfinite(v) else str(v)


def check_moves(moves, printer, max_violations: int = 20, check_min_speed: bool = True,
                check_speed: bool = True) -> tuple[list[tuple[int, int, int, str]], int]:
    """Vectorised checks of one :class:`~bioslicer.programs.Moves` chunk.

    Returns
    -------
    found : list of (move index, file index, line, message)
        At most ``max_violations`` per check, to be merged in program order by the caller.
    count : int
        Number of violations of every check in the chunk.
    """
    found = []
    count = 0
    tol = 10.0 ** (-printer.decimals)

    def add(mask, msg, line=None):
        nonlocal count
        idx = np.flatnonzero(mask)
        count += len(idx)
        lines = moves.line if line is None else line
        for i in idx[:max_violations]:
            found.append((int(i), int(moves.file[i]), int(lines[i]), msg(i)))

    finite = np.ones(len(moves), bool)
    for a in (moves.x, moves.y, moves.z, moves.lx, moves.ly, moves.lz, moves.sx, moves.sy, moves.sz,
              moves.power_mw, moves.speed_um_s):
        finite &= np.isfinite(a)
    add(~finite, lambda i: "a number is not finite (NaN or inf)")
    m = finite
    fld = m & ~printer.in_field(moves.lx, moves.ly, tol)
    what = "diameter" if printer.field_shape == "circle" else "side"
    add(fld, lambda i: f"galvo x, y = {_fmt(moves.lx[i])}, {_fmt(moves.ly[i])} um is outside the {printer.field_shape} "
                       f"field ({_fmt(printer.field_size_um)} um {what})")
    zr = m & ((moves.lz < -tol) | (moves.lz > printer.z_range_um + tol))
    add(zr, lambda i: f"fine z {_fmt(moves.lz[i])} um is outside the fine-axis range 0..{_fmt(printer.z_range_um)} um")
    for arr, (lo, hi), ax in ((moves.sx, printer.stage_x_um, "x"), (moves.sy, printer.stage_y_um, "y"),
                              (moves.sz, printer.stage_z_um, "z")):
        bad = m & ((arr < lo - tol) | (arr > hi + tol))
        add(bad, lambda i, arr=arr, lo=lo, hi=hi, ax=ax:
            f"stage {ax} {_fmt(arr[i])} um is outside the travel {_fmt(lo)}..{_fmt(hi)} um")
    on = moves.laser_on
    pmax = printer.max_power_mw * (1 + REL_TOL)
    pl = np.where(moves.power_line >= 0, moves.power_line, moves.line)
    add(m & on & (moves.power_mw > pmax),
        lambda i: f"laser power {_fmt(moves.power_mw[i])} mW is above the printer's maximum "
                  f"{_fmt(printer.max_power_mw)} mW", line=pl)
    add(m & on & (moves.power_mw < 0), lambda i: f"laser power {_fmt(moves.power_mw[i])} mW is negative", line=pl)
    add(moves.jump & on, lambda i: "jump with the laser on; switch the laser off before jumping")
    if check_speed:
        mark = m & on & ~moves.jump
        add(mark & (moves.speed_um_s > printer.max_speed_um_s * (1 + REL_TOL)),
            lambda i: f"scan speed {_fmt(moves.speed_um_s[i])} um/s is above the maximum "
                      f"{_fmt(printer.max_speed_um_s)} um/s")
        if check_min_speed:
            add(mark & (moves.speed_um_s < printer.min_speed_um_s * (1 - REL_TOL)),
                lambda i: f"scan speed {_fmt(moves.speed_um_s[i])} um/s is below the minimum "
                          f"{_fmt(printer.min_speed_um_s)} um/s")
        add(m & ~on & (moves.speed_um_s > printer.jump_speed_um_s * (1 + REL_TOL)),
            lambda i: f"jump speed {_fmt(moves.speed_um_s[i])} um/s is above the maximum "
                      f"{_fmt(printer.jump_speed_um_s)} um/s")
    acc = moves.accel_um_s2
    if printer.galvo_acceleration_um_s2 > 0:
        with np.errstate(invalid="ignore"):
            bad = acc > printer.galvo_acceleration_um_s2 * 1.01 + 1e-3
        add(bad, lambda i: f"acceleration {acc[i]:.4g} um/s^2 is above the galvo limit "
                           f"{printer.galvo_acceleration_um_s2:.4g} um/s^2")
    return found, count


def validate_program(path, printer, dialect: str | None = None, max_violations: int = 20) -> ValidationReport:
    """Parse a program back and check every move against the printer.

    Parameters
    ----------
    path : str or Path
        The program's main file (GWL job file, .gcode, .pgm, waveform .csv, voxel .json).
    printer : Printer or str
        Profile or bundled name.
    dialect : str, optional
        Guessed from the file when None.
    max_violations : int
        How many violations to keep in the report (all are counted).

    Returns
    -------
    ValidationReport
    """
    from .programs import DIALECTS, guess_dialect

    printer = load_printer(printer)
    path = Path(path)
    name = guess_dialect(path, printer) if dialect is None else dialect
    d = DIALECTS.get(name)
    if d is None:
        from .errors import BioslicerError

        raise BioslicerError(f"unknown dialect {name!r}; use one of {', '.join(DIALECTS)}")
    if not path.exists():
        from .errors import BioslicerError

        raise BioslicerError(f"program {path} not found")
    found = []
    n_moves = 0
    n_bad = 0
    files: list = []
    for seq, mv in enumerate(d.iter_moves(path, printer, d.spec)):
        files = mv.files
        f, c = check_moves(mv, printer, max_violations, d.check_min_speed, d.check_speed)
        n_bad += c + len(mv.problems)
        found += [(seq, i, fi, ln, msg) for i, fi, ln, msg in f]
        # parse problems sort by line among the chunk's moves
        for fi, ln, msg in mv.problems:
            k = int(np.searchsorted(mv.line, ln)) if len(mv) else 0
            found.append((seq, k, fi, ln, msg))
        n_moves += len(mv)
        if len(found) > 4 * max_violations:
            found.sort(key=lambda t: (t[0], t[1], t[3]))
            found = found[:max_violations]
    found.sort(key=lambda t: (t[0], t[1], t[3]))
    viol = [Violation(files[fi] if fi < len(files) else str(path), ln, msg) for _, _, fi, ln, msg in found[:max_violations]]
    return ValidationReport(str(path), name, printer.name, n_bad == 0, n_moves, n_bad, viol)
