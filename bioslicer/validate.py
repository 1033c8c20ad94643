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
from numba import njit

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


# check bits, in the order check_moves reports them
_FINITE, _FIELD, _ZR, _SX, _SY, _SZ, _PHI, _PNEG, _JUMP, _VHI, _VLO, _VJ, _ACC = range(13)


@njit(cache=True, error_model="numpy")
def _check_kernel(x, y, z, lx, ly, lz, sx, sy, sz, pw, sp, acc, on, jump, circle, half, zlo, zhi,
                  slo, shi, pmax, vmax, vmin, vjump, amax, flags, bits, counts):
    """One serial pass over the moves (memory-bound: threads do not pay here): bit k of ``bits[i]`` set when move i fails check k; ``counts`` per check.

    The comparisons are those of the numpy expressions in :func:`check_moves` (same IEEE results);
    ``flags`` = [check_speed, check_min_speed, check_accel].
    """
    n = x.shape[0]
    nt = 1
    per = n
    part = np.zeros((nt, 13), np.int64)
    for t in range(nt):
        for i in range(t * per, min(n, (t + 1) * per)):
            b = 0
            fin = (np.isfinite(x[i]) and np.isfinite(y[i]) and np.isfinite(z[i]) and np.isfinite(lx[i])
                   and np.isfinite(ly[i]) and np.isfinite(lz[i]) and np.isfinite(sx[i]) and np.isfinite(sy[i])
                   and np.isfinite(sz[i]) and np.isfinite(pw[i]) and np.isfinite(sp[i]))
            if not fin:
                b |= 1 << _FINITE
            else:
                if circle:
                    if not (lx[i] * lx[i] + ly[i] * ly[i] <= half * half):
                        b |= 1 << _FIELD
                elif not (abs(lx[i]) <= half and abs(ly[i]) <= half):
                    b |= 1 << _FIELD
                if lz[i] < zlo or lz[i] > zhi:
                    b |= 1 << _ZR
                if sx[i] < slo[0] or sx[i] > shi[0]:
                    b |= 1 << _SX
                if sy[i] < slo[1] or sy[i] > shi[1]:
                    b |= 1 << _SY
                if sz[i] < slo[2] or sz[i] > shi[2]:
                    b |= 1 << _SZ
                if on[i] and pw[i] > pmax:
                    b |= 1 << _PHI
                if on[i] and pw[i] < 0:
                    b |= 1 << _PNEG
            if jump[i] and on[i]:
                b |= 1 << _JUMP
            if flags[0] and fin:
                if on[i] and not jump[i]:
                    if sp[i] > vmax:
                        b |= 1 << _VHI
                    if flags[1] and sp[i] < vmin:
                        b |= 1 << _VLO
                if not on[i] and sp[i] > vjump:
                    b |= 1 << _VJ
            if flags[2] and acc[i] > amax:
                b |= 1 << _ACC
            bits[i] = b
            if b:
                for k in range(13):
                    if b & (1 << k):
                        part[t, k] += 1
    for k in range(13):
        counts[k] = 0
        for t in range(nt):
            counts[k] += part[t, k]


def check_moves(moves, printer, max_violations: int = 20, check_min_speed: bool = True,
                check_speed: bool = True) -> tuple[list[tuple[int, int, int, str]], int]:
    """Checks of one :class:`~bioslicer.programs.Moves` chunk (one Numba pass, messages for the failures).

    Returns
    -------
    found : list of (move index, file index, line, message)
        At most ``max_violations`` per check, to be merged in program order by the caller.
    count : int
        Number of violations of every check in the chunk.
    """
    found = []
    tol = 10.0 ** (-printer.decimals)
    n = len(moves)
    bits = np.empty(n, np.int64)
    counts = np.zeros(13, np.int64)
    f = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    stage = (printer.stage_x_um, printer.stage_y_um, printer.stage_z_um)
    slo = np.array([lo - tol for lo, _ in stage])
    shi = np.array([hi + tol for _, hi in stage])
    flags = np.array([check_speed, check_min_speed, printer.galvo_acceleration_um_s2 > 0], np.bool_)
    _check_kernel(f(moves.x), f(moves.y), f(moves.z), f(moves.lx), f(moves.ly), f(moves.lz), f(moves.sx),
                  f(moves.sy), f(moves.sz), f(moves.power_mw), f(moves.speed_um_s), f(moves.accel_um_s2),
                  np.ascontiguousarray(moves.laser_on, np.bool_), np.ascontiguousarray(moves.jump, np.bool_),
                  printer.field_shape == "circle", printer.field_size_um / 2 + tol, -tol,
                  printer.z_range_um + tol, slo, shi, printer.max_power_mw * (1 + REL_TOL),
                  printer.max_speed_um_s * (1 + REL_TOL), printer.min_speed_um_s * (1 - REL_TOL),
                  printer.jump_speed_um_s * (1 + REL_TOL), printer.galvo_acceleration_um_s2 * 1.01 + 1e-3,
                  flags, bits, counts)
    count = int(counts.sum())
    if count == 0:
        return found, 0

    def add(k, msg, line=None):
        if counts[k] == 0:
            return
        idx = np.flatnonzero(bits & (1 << k))
        lines = moves.line if line is None else line
        for i in idx[:max_violations]:
            found.append((int(i), int(moves.file[i]), int(lines[i]), msg(i)))

    add(_FINITE, lambda i: "a number is not finite (NaN or inf)")
    what = "diameter" if printer.field_shape == "circle" else "side"
    add(_FIELD, lambda i: f"galvo x, y = {_fmt(moves.lx[i])}, {_fmt(moves.ly[i])} um is outside the "
                          f"{printer.field_shape} field ({_fmt(printer.field_size_um)} um {what})")
    add(_ZR, lambda i: f"fine z {_fmt(moves.lz[i])} um is outside the fine-axis range 0..{_fmt(printer.z_range_um)} um")
    for k, arr, (lo, hi), ax in ((_SX, moves.sx, printer.stage_x_um, "x"), (_SY, moves.sy, printer.stage_y_um, "y"),
                                 (_SZ, moves.sz, printer.stage_z_um, "z")):
        add(k, lambda i, arr=arr, lo=lo, hi=hi, ax=ax:
            f"stage {ax} {_fmt(arr[i])} um is outside the travel {_fmt(lo)}..{_fmt(hi)} um")
    pl = np.where(moves.power_line >= 0, moves.power_line, moves.line)
    add(_PHI, lambda i: f"laser power {_fmt(moves.power_mw[i])} mW is above the printer's maximum "
                        f"{_fmt(printer.max_power_mw)} mW", line=pl)
    add(_PNEG, lambda i: f"laser power {_fmt(moves.power_mw[i])} mW is negative", line=pl)
    add(_JUMP, lambda i: "jump with the laser on; switch the laser off before jumping")
    add(_VHI, lambda i: f"scan speed {_fmt(moves.speed_um_s[i])} um/s is above the maximum "
                        f"{_fmt(printer.max_speed_um_s)} um/s")
    add(_VLO, lambda i: f"scan speed {_fmt(moves.speed_um_s[i])} um/s is below the minimum "
                        f"{_fmt(printer.min_speed_um_s)} um/s")
    add(_VJ, lambda i: f"jump speed {_fmt(moves.speed_um_s[i])} um/s is above the maximum "
                       f"{_fmt(printer.jump_speed_um_s)} um/s")
    acc = moves.accel_um_s2
    add(_ACC, lambda i: f"acceleration {acc[i]:.4g} um/s^2 is above the galvo limit "
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
