"""Dialect definitions (``gcode/*.toml``), the parsed-back :class:`Moves`, and shared helpers.

A dialect is a TOML file in ``gcode/`` (command words, comment mark, units, number format,
chunk sizes, file names) plus a module in :mod:`bioslicer.programs` with ``write`` and
``iter_moves``; :data:`bioslicer.programs.DIALECTS` maps the name to both.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from .._data import data_dir
from ..errors import BioslicerError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class DialectSpec:
    """One ``gcode/<name>.toml`` file: plain attributes read from the TOML.

    Attributes
    ----------
    name, description : str
    extensions : list[str]
        File extensions that identify the dialect's main file.
    comment : str
        Characters that start a comment ('' when the dialect is binary).
    commands : dict[str, str]
        Line templates by role (see each dialect module for the roles it uses).
    decimals : dict[str, int]
        Digits after the point for non-coordinate numbers (power, speed, feed, ...).
    raw : dict
        The whole TOML document for dialect-specific keys.
    """

    def __init__(self, doc: dict, source: str) -> None:
        self.raw = doc
        self.source = source
        self.name = doc["name"]
        self.description = doc.get("description", "")
        self.extensions = list(doc.get("extensions", []))
        self.comment = doc.get("comment", "")
        self.commands = dict(doc.get("commands", {}))
        self.decimals = {k: int(v) for k, v in doc.get("decimals", {}).items()}
        self.required_program_keys = list(doc.get("required_program_keys", []))

    def get(self, key, default=None):
        return self.raw.get(key, default)

    def check_printer(self, printer) -> None:
        """Refuse a printer profile that lacks a [program] key this dialect needs."""
        for key in self.required_program_keys:
            if key not in printer.program:
                raise BioslicerError(
                    f"printer profile {printer.source or printer.name}: missing key 'program.{key}' "
                    f"needed by the {self.name} dialect; add it to the [program] table")


_SPECS: dict[str, DialectSpec] = {}


def load_spec(name: str) -> DialectSpec:
    """The dialect definition ``gcode/<name>.toml`` (cached)."""
    if name not in _SPECS:
        path = data_dir("gcode") / f"{name}.toml"
        if not path.is_file():
            raise BioslicerError(f"no dialect definition gcode/{name}.toml; add one or pick a known dialect")
        _SPECS[name] = DialectSpec(tomllib.loads(path.read_text(encoding="utf-8")), path.name)
    return _SPECS[name]


# ----------------------------------------------------------------------------- moves
_MOVE_FIELDS = {
    "x": np.float64, "y": np.float64, "z": np.float64,
    "sx": np.float64, "sy": np.float64, "sz": np.float64,
    "lx": np.float64, "ly": np.float64, "lz": np.float64,
    "power_mw": np.float64, "speed_um_s": np.float64, "accel_um_s2": np.float64,
    "laser_on": np.bool_, "jump": np.bool_,
    "block": np.int32, "file": np.int32, "line": np.int64, "power_line": np.int64,
}


@dataclass
class Moves:
    """A program parsed back: one row per move, struct of arrays.

    Each row is a move *to* a point. Attributes (all (n,) arrays, lengths in µm):

    x, y, z
        Where the focus is in machine coordinates (stage + galvo/fine axes).
    sx, sy, sz
        Stage position during the move (for stage-scanning G-code: the axes themselves).
    lx, ly, lz
        Galvo / fine-axis coordinates relative to the block's stage position (G-code: relative
        to the profile's ``origin_um``), what the field and fine z range limit.
    power_mw
        Laser power in effect during the move, mW.
    speed_um_s
        Programmed speed of the move, µm/s (0 when the program gives none, e.g. jumps).
    accel_um_s2
        Acceleration at the move where the dialect samples time (waveforms), else NaN.
    laser_on
        Laser state during the move.
    jump
        True for a positioning move (the program's jump command, or the first point of a list).
    block
        Block (stage position) index, counted in program order.
    file, line
        Index into ``files`` and 1-based line (sample index for waveforms, flat voxel index for
        volumes) of the move.
    power_line
        Line that set the power in effect (same as ``line`` where power is per point).
    files : list[str]
        Paths of the files the moves come from.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    sz: np.ndarray
    lx: np.ndarray
    ly: np.ndarray
    lz: np.ndarray
    power_mw: np.ndarray
    speed_um_s: np.ndarray
    accel_um_s2: np.ndarray
    laser_on: np.ndarray
    jump: np.ndarray
    block: np.ndarray
    file: np.ndarray
    line: np.ndarray
    power_line: np.ndarray
    files: list = field(default_factory=list)
    # parse problems found while reading: (file index, line, message)
    problems: list = field(default_factory=list)
    # moves parsed for this chunk when a checking reader kept only the failing ones (None: all kept)
    n_total: int | None = None
    # lines read but not checked, which cannot move or expose: (file index, line, message)
    notes: list = field(default_factory=list)
    # indices of the moves that failed a check, when a checking reader kept every move (None: not checked)
    failing: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name, dt in _MOVE_FIELDS.items():
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=dt))

    def __len__(self) -> int:
        return int(len(self.x))

    def take(self, idx) -> "Moves":
        """The moves at ``idx`` (per-move arrays only)."""
        return Moves(**{k: getattr(self, k)[idx] for k in _MOVE_FIELDS}, files=list(self.files))

    @classmethod
    def empty(cls, files=None) -> "Moves":
        return cls(**{k: np.zeros(0, dt) for k, dt in _MOVE_FIELDS.items()}, files=list(files or []))

    @classmethod
    def concat(cls, parts: list["Moves"], files: list) -> "Moves":
        if not parts:
            return cls.empty(files)
        out = cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in _MOVE_FIELDS},
                  files=list(files))
        out.problems = [pr for p in parts for pr in p.problems]
        out.notes = [nt for p in parts for nt in p.notes]
        return out

    def points(self) -> np.ndarray:
        """(n, 3) machine coordinates, µm."""
        return np.column_stack([self.x, self.y, self.z])


def new_move_arrays(n: int) -> dict:
    """Empty output arrays of ``n`` moves for the reader kernels (every field but file and accel)."""
    return {k: np.empty(n, dt) for k, dt in _MOVE_FIELDS.items() if k not in ("file", "accel_um_s2")}


def moves_from_arrays(n, fidx, files, **arrs) -> Moves:
    """Build :class:`Moves` from kernel outputs trimmed to ``n`` rows."""
    out = {}
    for k, dt in _MOVE_FIELDS.items():
        if k in arrs:
            out[k] = arrs[k][:n]
        elif k == "file":
            out[k] = np.full(n, fidx, np.int32)
        elif k == "accel_um_s2":
            out[k] = np.full(n, np.nan)
        else:
            raise KeyError(k)
    return Moves(**out, files=files)


# ----------------------------------------------------------------------------- helpers
def block_runs(toolpath) -> list[tuple[int, int, int]]:
    """(block, first mark, end mark) for each block of a stitched toolpath, in order."""
    if toolpath.blocks is None or (toolpath.n_marks and toolpath.mark_block.min() < 0):
        raise BioslicerError("the toolpath is not stitched into blocks; stitch it before writing a program")
    if toolpath.n_marks == 0:
        return []
    mb = toolpath.mark_block
    if mb.max() >= len(toolpath.blocks):
        raise BioslicerError("the toolpath refers to a block that its block table does not have; stitch it again")
    cut = np.flatnonzero(np.diff(mb)) + 1
    bounds = np.concatenate([[0], cut, [len(mb)]]).astype(np.int64)
    runs = [(int(mb[a]), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    seen = [r[0] for r in runs]
    if len(set(seen)) != len(seen):
        raise BioslicerError("the toolpath's marks are not grouped by block; order them by block before writing")
    return runs


def mark_chunks(mark_start: np.ndarray, m0: int, m1: int, max_points: int = 1 << 18):
    """Split marks [m0, m1) into runs of at most ``max_points`` points (at least one mark each)."""
    a = m0
    while a < m1:
        limit = mark_start[a] + max_points
        b = int(np.searchsorted(mark_start, limit, side="right")) - 1
        b = min(max(b, a + 1), m1)
        yield a, b
        a = b


def program_origin_um(printer) -> np.ndarray:
    """The profile's ``program.origin_um`` (where part (0, 0, 0) sits in machine coordinates)."""
    o = printer.program.get("origin_um", [0.0, 0.0, 0.0])
    try:
        o = np.asarray(o, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise BioslicerError(
            f"printer profile {printer.source or printer.name}: key 'program.origin_um' must be [x, y, z] in µm") from None
    return o


def provenance_lines(counts: dict, printer, provenance: dict | None, dialect: str) -> list[str]:
    """Deterministic provenance text (no clock): software, printer, program size, caller's keys.

    ``counts``: ``n_marks``, ``n_points``, ``n_blocks`` (blocks with marks) and ``n_table``
    (rows of the Blocks table), summed over the blocks written.
    """
    lines = [
        f"written by bioslicer {__version__}, dialect {dialect}",
        f"printer {printer.name} (profile sha256 {printer.sha256()[:16]})",
        f"toolpath {counts['n_marks']} marks, {counts['n_points']} points, "
        f"{counts['n_blocks']} of {counts['n_table']} blocks",
        "units: um, um/s; power in the printer's power unit",
    ]
    for k in sorted(provenance or {}):
        v = str(provenance[k]).replace("\n", " ").replace("\r", " ")
        line = f"{k}: {v}"
        if len(line) > MAX_HEADER_CHARS - 4:   # room for the comment mark; the full text is in the job
            line = f"{k} sha256: {hashlib.sha256(v.encode()).hexdigest()}"
        lines.append(line)
    return lines


#: longest header comment line a writer emits (LinuxCNC takes 255 characters per line)
MAX_HEADER_CHARS = 200


LINE_ENDINGS = {"lf": "\n", "crlf": "\r\n"}


def line_ending(printer, spec) -> str:
    """The line ending of a program: the profile's ``program.line_ending`` ('lf' | 'crlf'), else
    the dialect's ``line_ending`` (what the vendor's own example programs use), else LF."""
    name = printer.program.get("line_ending", spec.get("line_ending", "lf"))
    if name not in LINE_ENDINGS:
        raise BioslicerError(f"printer profile {printer.source or printer.name}: 'program.line_ending' must be "
                             f"'lf' or 'crlf', got {name!r}")
    return LINE_ENDINGS[name]


def reader_power(printer, check):
    """How a reader kernel converts power: ``(pa, pb, check, to_mw)``.

    A linear calibration converts in the kernel (mW = value * pa / pb) and ``to_mw`` is None.
    A calibrated profile (sin², table) reads program values (pa = pb = 1), checks them against
    the power limit converted to the program unit (the calibration is monotone), and
    ``to_mw(moves)`` converts the kept moves to mW afterwards.
    """
    if printer.calibration == "linear":
        return (*printer.power_from_program_ratio(), check, None)
    if check is not None:
        from .checks import _L_PMAX

        lim, flags = check
        lim = lim.copy()
        lim[_L_PMAX] = printer.power_to_program(printer.max_power_mw) * (lim[_L_PMAX] / printer.max_power_mw)
        check = (lim, flags)

    def to_mw(mv):
        mv.power_mw = np.ascontiguousarray(printer.power_from_program(mv.power_mw), dtype=np.float64)
        return mv

    return 1.0, 1.0, check, to_mw


def power_limit_program(printer) -> float:
    return float(printer.power_to_program(printer.max_power_mw))
