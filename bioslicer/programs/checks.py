"""Move checks: every parsed-back move tested against a printer's limits.

Checks, per move: every number finite; galvo/fine x, y inside the field; fine z inside
``0 .. z_range_um``; stage inside its travel; laser power within ``0 .. max_power_mw`` where the
laser is on; mark speed within ``min_speed_um_s .. max_speed_um_s`` and jump speed within
``jump_speed_um_s``; laser off on every jump; acceleration of blanked waveform samples within
``galvo_acceleration_um_s2``; the focus never below the substrate interface (machine z below
the program's z origin: part z = 0 is the interface, where ``FindInterfaceAt`` or the operator
put it). Lines the reader cannot understand are violations too. The report
(:func:`bioslicer.programs.validate_program`) keeps the first ``max_violations`` in program order
with file and line (for waveforms the line is the sample index, for voxel volumes the flat voxel
index).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from numba import njit


# relative slack for values the writers round (power, speed, acceleration)
REL_TOL = 1e-4


@dataclass(frozen=True)
class Violation:
    """One problem: where (file, 1-based line / sample / voxel index) and what."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line > 0 else f"{self.file}: {self.message}"


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
    notes : list[Violation]
        Lines read but not checked because they cannot move or expose (first ``max_violations``).
    n_notes : int
    """

    path: str
    dialect: str
    printer: str
    ok: bool
    n_moves: int
    n_violations: int
    violations: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    n_notes: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["violations"] = [asdict(v) for v in self.violations]
        d["notes"] = [asdict(v) for v in self.notes]
        return d

    def summary(self, k: int = 3) -> str:
        """One line naming the first ``k`` distinct problems (distinct by message) and the count."""
        seen, parts = set(), []
        for v in self.violations:
            if v.message not in seen:
                seen.add(v.message)
                parts.append(str(v))
            if len(parts) == k:
                break
        more = self.n_violations - len(parts)
        return "; ".join(parts) + (f" (and {more} more violation(s))" if more > 0 else "")

    def first(self) -> Violation | None:
        return self.violations[0] if self.violations else None


def _fmt(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") if np.isfinite(v) else str(v)


# check bits, in the order check_moves reports them
_FINITE, _FIELD, _ZR, _SX, _SY, _SZ, _PHI, _PNEG, _JUMP, _VHI, _VLO, _VJ, _ACC, _BELOW = range(14)
N_CHECKS = 14


# limits array slots (see :func:`limits`)
_L_CIRCLE, _L_HALF, _L_ZLO, _L_ZHI, _L_SLO, _L_SHI, _L_PMAX, _L_VMAX, _L_VMIN, _L_VJUMP, _L_AMAX, _L_IFACE = (
    0, 1, 2, 3, 4, 7, 10, 11, 12, 13, 14, 15)
N_LIMITS = 16


def interface_z_um(printer) -> float:
    """Machine z of the substrate interface: the z of the profile's ``program.origin_um`` (else 0)."""
    o = printer.program.get("origin_um") if isinstance(printer.program, dict) else None
    return float(o[2]) if o is not None and len(o) > 2 else 0.0


def limits(printer, check_min_speed: bool = True, check_speed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The printer's limits as the arrays :func:`move_bits` takes: (lim float64 (15,), flags bool (3,)).

    Tolerances: one printed digit on lengths (``10**-decimals`` µm), :data:`REL_TOL` on power and
    speeds, 1 % on acceleration. flags = [check_speed, check_min_speed, check_accel].
    """
    tol = 10.0 ** (-printer.decimals)
    lim = np.zeros(N_LIMITS)
    lim[_L_CIRCLE] = 1.0 if printer.field_shape == "circle" else 0.0
    lim[_L_HALF] = printer.field_size_um / 2 + tol
    lim[_L_ZLO] = -tol
    lim[_L_ZHI] = printer.z_range_um + tol
    for k, (lo, hi) in enumerate((printer.stage_x_um, printer.stage_y_um, printer.stage_z_um)):
        lim[_L_SLO + k] = lo - tol
        lim[_L_SHI + k] = hi + tol
    lim[_L_PMAX] = printer.max_power_mw * (1 + REL_TOL)
    lim[_L_VMAX] = printer.max_speed_um_s * (1 + REL_TOL)
    lim[_L_VMIN] = printer.min_speed_um_s * (1 - REL_TOL)
    lim[_L_VJUMP] = printer.jump_speed_um_s * (1 + REL_TOL)
    lim[_L_AMAX] = printer.galvo_acceleration_um_s2 * 1.01 + 1e-3
    lim[_L_IFACE] = interface_z_um(printer) - tol
    flags = np.array([check_speed, check_min_speed, printer.galvo_acceleration_um_s2 > 0], np.bool_)
    return lim, flags


@njit(cache=True, error_model="numpy", inline="always")
def move_bits(x, y, z, lx, ly, lz, sx, sy, sz, pw, sp, acc, on, jump, lim, flags):
    """Check bits of one move: bit k set when the move fails check k (``_FINITE`` ... ``_ACC``).

    The one definition of the checks: :func:`check_moves` and the dialect readers that check
    while they parse (GWL, G-code, AeroBasic) both call it. Lengths in µm, power in mW, speed in
    µm/s, acceleration in µm/s² (NaN: not sampled); ``lim``, ``flags`` from :func:`limits`.
    """
    b = 0
    # v * 0 is 0 for a finite v and NaN for NaN or inf: one comparison for all eleven
    fin = (x * 0.0 + y * 0.0 + z * 0.0 + lx * 0.0 + ly * 0.0 + lz * 0.0 + sx * 0.0 + sy * 0.0 + sz * 0.0
           + pw * 0.0 + sp * 0.0) == 0.0
    if not fin:
        b |= 1 << _FINITE
    else:
        half = lim[_L_HALF]
        if lim[_L_CIRCLE] > 0:
            if not (lx * lx + ly * ly <= half * half):
                b |= 1 << _FIELD
        elif not (abs(lx) <= half and abs(ly) <= half):
            b |= 1 << _FIELD
        if lz < lim[_L_ZLO] or lz > lim[_L_ZHI]:
            b |= 1 << _ZR
        if sx < lim[_L_SLO] or sx > lim[_L_SHI]:
            b |= 1 << _SX
        if sy < lim[_L_SLO + 1] or sy > lim[_L_SHI + 1]:
            b |= 1 << _SY
        if sz < lim[_L_SLO + 2] or sz > lim[_L_SHI + 2]:
            b |= 1 << _SZ
        if on and pw > lim[_L_PMAX]:
            b |= 1 << _PHI
        if on and pw < 0:
            b |= 1 << _PNEG
        if z < lim[_L_IFACE]:
            b |= 1 << _BELOW
    if jump and on:
        b |= 1 << _JUMP
    if flags[0] and fin:
        if on and not jump:
            if sp > lim[_L_VMAX]:
                b |= 1 << _VHI
            if flags[1] and sp < lim[_L_VMIN]:
                b |= 1 << _VLO
        if not on and sp > lim[_L_VJUMP]:
            b |= 1 << _VJ
    if flags[2] and acc > lim[_L_AMAX]:
        b |= 1 << _ACC
    return b


@njit(cache=True, nogil=True, error_model="numpy")
def _check_kernel(x, y, z, lx, ly, lz, sx, sy, sz, pw, sp, acc, on, jump, lim, flags, bits, counts):
    """:func:`move_bits` of every move into ``bits``; ``counts`` per check (one serial pass: memory-bound)."""
    for k in range(N_CHECKS):
        counts[k] = 0
    for i in range(x.shape[0]):
        b = move_bits(x[i], y[i], z[i], lx[i], ly[i], lz[i], sx[i], sy[i], sz[i], pw[i], sp[i], acc[i], on[i],
                      jump[i], lim, flags)
        bits[i] = b
        if b:
            for k in range(N_CHECKS):
                if b & (1 << k):
                    counts[k] += 1


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
    n = len(moves)
    bits = np.empty(n, np.int64)
    counts = np.zeros(N_CHECKS, np.int64)
    f = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    lim, flags = limits(printer, check_min_speed, check_speed)
    _check_kernel(f(moves.x), f(moves.y), f(moves.z), f(moves.lx), f(moves.ly), f(moves.lz), f(moves.sx),
                  f(moves.sy), f(moves.sz), f(moves.power_mw), f(moves.speed_um_s), f(moves.accel_um_s2),
                  np.ascontiguousarray(moves.laser_on, np.bool_), np.ascontiguousarray(moves.jump, np.bool_),
                  lim, flags, bits, counts)
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

    def not_finite(i):
        if np.isnan(moves.speed_um_s[i]):
            return "no speed is set before this move (the controller's default is not known here); set ScanSpeed or F"
        if np.isnan(moves.power_mw[i]):
            return "no laser power is set before this move; set LaserPower"
        return "a number is not finite (NaN or inf)"

    add(_FINITE, not_finite)
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
    iface = interface_z_um(printer)
    add(_BELOW, lambda i: f"focus z {_fmt(moves.z[i] - iface)} um is below the substrate interface (z = 0); "
                          "the part must sit on or above it")
    acc = moves.accel_um_s2
    add(_ACC, lambda i: f"acceleration {acc[i]:.4g} um/s^2 is above the galvo limit "
                        f"{printer.galvo_acceleration_um_s2:.4g} um/s^2")
    return found, count
