"""What the printer gets: layers read from the program files, through an index of byte ranges.

A job keeps a thinned toolpath for the fast overview, but the picture someone checks before a
day-long print should be of the program itself. This module reads the layers of a program with
the dialect's own reader (:data:`bioslicer.programs.DIALECTS`, ``iter_moves``), and only the
layers asked for:

* :func:`build_program_index` parses the whole program once (streaming, bounded memory) and
  records, per program file, where each *range* starts: a range is one layer of one block in
  one file, from the line after the last laser-on move of the previous range (so the modal lines
  that set power, speed and z offset for the layer are inside it). A program layer is a z level
  of the marks (the z where each mark starts); for a job, levels are numbered like the job's
  layers. For every range the index keeps its first move (every field) and the sums of its
  moves (a checksum).
* :func:`read_program_layers` parses only the ranges of the layers asked for: the bytes of each
  range, after the file's header, are handed to the dialect reader as a small program; what a
  range cannot know by itself (the stage position and block set by the main file, the power and
  speed in effect when it starts) is taken from the recorded first move, and the checksum must
  then match; a range that does not (a program whose layers are not self-contained this way) is
  taken from a full parse instead, and the result says so.
* :func:`moves_to_toolpath` turns the moves into a :class:`~bioslicer.toolpath.Toolpath` (a mark
  is a run of laser-on moves with the move before it as its start point) in part coordinates
  (machine minus the profile's ``program.origin_um``), with a Blocks table from the stage
  positions, so the 2-D and 3-D scenes draw the program as the printer will run it.

The index of a job is written with the job (``program_index.npz``, listed in the manifest);
any other program gets one on first use in the user's cache folder.

Units: µm, mW, µm/s, s.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BioslicerError
from ..toolpath import Blocks, Kind, Toolpath, atomic_write_bytes

INDEX_NAME = "program_index.npz"
INDEX_FORMAT = "bioslicer-program-index/1"
#: z levels are compared at this resolution, µm
LEVEL_QUANTUM_UM = 1e-3
#: fields of a range's first move kept in the index (their order in ``first``)
FIRST_FIELDS = ("x", "y", "z", "lx", "ly", "lz", "sx", "sy", "sz", "power_mw", "speed_um_s", "block",
                "power_line", "line")
#: sums kept per range (their order in ``sums``): checked after a range is parsed alone
SUM_FIELDS = ("n", "x", "y", "z", "power_mw", "speed_um_s", "laser_on", "jump")
_TRANSLATED = ("x", "y", "z", "lx", "ly", "lz", "sx", "sy", "sz", "block")
_MAX_HEADER_BYTES = 1 << 16


@dataclass
class ProgramIndex:
    """Where each layer of a program lies in its files.

    Attributes
    ----------
    main : Path
        The main program file.
    dialect : str
    files : list[str]
        Program files as the reader visits them, POSIX paths relative to ``main``'s folder.
    file_bytes : (F,) int64
        Their sizes when indexed (a changed program is re-indexed).
    header_bytes : (F,) int64
        Bytes before the first move of each file (prepended when a later range is parsed).
    level_z_um : (L,) float64
        Machine z of each program layer (the z where its marks start), ascending.
    layer : (L,) int64
        The layer number of each level (the job's layer index, else its rank).
    n_layers : int
        Layer numbers run 0 .. n_layers-1 (the job's layer count, else L).
    r_file, r_start, r_end, r_line0, r_level : (R,) int64
        Per range: file, byte span [start, end), first line (1-based) and level.
    first : (R, len(FIRST_FIELDS)) float64
        The range's first move.
    sums : (R, len(SUM_FIELDS)) float64
        Move count and sums of its moves.
    n_moves : int
        Moves in the program.
    """

    main: Path
    dialect: str
    files: list
    file_bytes: np.ndarray
    header_bytes: np.ndarray
    level_z_um: np.ndarray
    layer: np.ndarray
    n_layers: int
    r_file: np.ndarray
    r_start: np.ndarray
    r_end: np.ndarray
    r_line0: np.ndarray
    r_level: np.ndarray
    first: np.ndarray
    sums: np.ndarray
    n_moves: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def n_ranges(self) -> int:
        return int(len(self.r_file))

    @property
    def r_layer(self) -> np.ndarray:
        return self.layer[self.r_level]

    def layers_present(self) -> np.ndarray:
        """Layer numbers that have marks in the program, ascending."""
        return np.unique(self.layer)

    def ranges_of(self, layers) -> np.ndarray:
        """Indices of the ranges of the given layer numbers, in program (print) order."""
        return np.flatnonzero(np.isin(self.r_layer, np.asarray(layers, np.int64)))

    def save(self, path) -> Path:
        """Write the index as an ``.npz`` (deterministic, atomic)."""
        arrays = {k: getattr(self, k) for k in ("file_bytes", "header_bytes", "level_z_um", "layer", "r_file",
                                                 "r_start", "r_end", "r_line0", "r_level", "first", "sums")}
        meta = {"format": INDEX_FORMAT, "dialect": self.dialect, "files": list(self.files),
                "n_layers": int(self.n_layers), "n_moves": int(self.n_moves), "main": self.main.name,
                "first_fields": list(FIRST_FIELDS), "sum_fields": list(SUM_FIELDS), **self.meta}
        arrays["meta_json"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path, main) -> "ProgramIndex":
        """Read an index written by :meth:`save` for the program whose main file is ``main``."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            meta = json.loads(bytes(data.pop("meta_json")).decode())
        except (OSError, ValueError, KeyError) as exc:
            raise BioslicerError(f"cannot read the program index {path}: {exc}; delete it to rebuild it") from None
        if meta.get("format") != INDEX_FORMAT or meta.get("first_fields") != list(FIRST_FIELDS):
            raise BioslicerError(f"{path} is not a {INDEX_FORMAT} index; delete it to rebuild it")
        extra = {k: v for k, v in meta.items() if k not in ("format", "dialect", "files", "n_layers", "n_moves",
                                                             "main", "first_fields", "sum_fields")}
        return cls(Path(main), meta["dialect"], list(meta["files"]), n_layers=int(meta["n_layers"]),
                   n_moves=int(meta["n_moves"]), meta=extra, **data)

    def is_current(self) -> bool:
        """True when every program file still has the size it had when indexed."""
        root = self.main.parent
        for rel, n in zip(self.files, self.file_bytes):
            p = root / rel
            if not p.is_file() or p.stat().st_size != int(n):
                return False
        return True


# ----------------------------------------------------------------------------- building
def _dialect_of(main: Path, printer, dialect):
    from ..programs import DIALECTS, guess_dialect

    name = guess_dialect(main, printer) if dialect is None else dialect
    if name not in DIALECTS:
        raise BioslicerError(f"unknown dialect {name!r}; use one of {', '.join(DIALECTS)}")
    return DIALECTS[name]


class _RangeBuilder:
    """Streaming assignment of moves to ranges (one layer of one block in one file).

    ``feed`` runs :func:`bioslicer.kernel.ranges.feed_ranges` over each chunk: the ranges live in
    growing arrays (``rng`` [file, level, first line, last line], ``first_arr``, ``sums_arr``,
    the first ``n_ranges`` rows used); the moves after a chunk's last laser-on move wait in
    ``tail`` for the next chunk (they join the next mark's range).
    """

    def __init__(self) -> None:
        from ..kernel.ranges import N_COLS

        self.state = np.zeros(8, np.int64)   # see kernel.ranges S_*
        self.tail = None                 # (nt, 17) float64: trailing moves (after the last laser-on move) not yet assigned
        self.seen = False
        self.rng = np.zeros((0, 4), np.int64)
        self.first_arr = np.zeros((0, len(FIRST_FIELDS)))
        self.sums_arr = np.zeros((0, len(SUM_FIELDS)))
        self.firstset = np.zeros(0, np.bool_)
        self._scratch = np.zeros((3, 0), np.int64)   # the kernel's per-move scratch, reused
        self._buf = np.zeros(0)
        self._empty_tail = np.zeros((0, N_COLS))
        self.offsets = {}                # file -> (lines wanted, their byte offsets), see file_read

    @property
    def n_ranges(self) -> int:
        return int(self.state[6])

    @property
    def n_moves(self) -> int:
        return int(self.state[7])

    @property
    def ranges(self) -> np.ndarray:
        """(R, 4) int64 [file, level, first line, last line] of the ranges so far."""
        return self.rng[:self.n_ranges]

    @property
    def first(self) -> np.ndarray:
        return self.first_arr[:self.n_ranges]

    @property
    def sums(self) -> np.ndarray:
        return self.sums_arr[:self.n_ranges]

    def file_read(self, fi: int, path) -> None:
        """File ``fi`` (at ``path``) has been fed whole: find the byte offsets of the lines its
        ranges start on now, while it is in the page cache (:func:`index_from_builder` uses them
        when they are the lines it wants, else reads the file again)."""
        rows = np.flatnonzero(self.ranges[:, 0] == fi)
        if len(rows):
            want = _wanted_lines(self.ranges[rows], int(self.first[rows[0], FIRST_FIELDS.index("line")]))
            self.offsets[fi] = (want, _line_offsets(Path(path), want))

    def _room(self, extra: int) -> None:
        need = self.n_ranges + extra
        cap = len(self.rng)
        if need > cap:
            cap = max(need, 2 * cap, 64)
            grow = lambda a, shape: np.concatenate([a, np.zeros((cap - len(a), *shape), a.dtype)])  # noqa: E731
            self.rng = grow(self.rng, (4,))
            self.first_arr = grow(self.first_arr, (len(FIRST_FIELDS),))
            self.sums_arr = grow(self.sums_arr, (len(SUM_FIELDS),))
            self.firstset = grow(self.firstset, ())

    def feed(self, mv, final: bool = False) -> None:
        from ..kernel.ranges import N_COLS, S_CONT, feed_ranges

        cols = [np.asarray(getattr(mv, k)) for k in (*FIRST_FIELDS, "file", "laser_on", "jump")]
        cols[15:] = [np.ascontiguousarray(c, np.bool_).view(np.uint8) for c in cols[15:]]    # numba: no float(bool)
        T = self.tail if self.tail is not None else self._empty_tail
        nt = len(T)
        n = nt + len(cols[0])
        if n == 0:
            return
        self.state[S_CONT] = self.tail is None and self.seen   # the previous move was laser-on: a run may go on
        self.seen = True
        self._room(int(np.count_nonzero(cols[15])))
        if self._scratch.shape[1] < n:
            self._scratch = np.empty((3, max(n, int(self._scratch.shape[1] * 1.25))), np.int64)
            self._buf = np.empty(self._scratch.shape[1])
        nxt, rid, sel = self._scratch
        cut = feed_ranges(T, nt, *cols, final, LEVEL_QUANTUM_UM, self.state, self.rng, self.first_arr,
                          self.sums_arr, self.firstset, nxt, rid, sel, self._buf)
        self.tail = None
        if cut < n:     # the moves after the last laser-on move wait for the next chunk
            keep = [T[cut:]] if cut < nt else []
            c0 = max(cut - nt, 0)
            keep.append(np.column_stack([c[c0:].astype(np.float64) for c in cols]).reshape(-1, N_COLS))
            self.tail = np.concatenate(keep)


def _wanted_lines(rows: np.ndarray, first_line: int) -> np.ndarray:
    """The lines whose byte offsets a file's index needs: where each of its ranges starts (line 1
    for the first, else the line after the previous range's last move; ``rows`` (n, 4) are its
    ranges [file, level, first line, last line] in order), then its first move's line (the header)."""
    line0 = rows[:, 2].copy()
    line0[0] = 1
    line0[1:] = rows[:-1, 3] + 1
    return np.concatenate([line0, [first_line]]).astype(np.int64)


def _line_offsets(path: Path, want: np.ndarray) -> np.ndarray:
    """Byte offset where each line of ``want`` (1-based, any order) starts in ``path``."""
    order = np.argsort(want, kind="stable")
    offs = np.empty(len(want), np.int64)
    offs[order] = _line_starts(path, want[order])
    return offs


def _line_starts(path: Path, lines: np.ndarray) -> np.ndarray:
    """Byte offset where each (1-based, ascending) line of ``path`` starts (the file size for a
    line past its end). The file is mapped, not copied, and scanned by a Numba kernel."""
    import mmap

    from ..kernel.ranges import line_starts

    out = np.zeros(len(lines), np.int64)
    want = np.asarray(lines, np.int64) - 1          # line L starts after the (L-1)-th newline
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return out
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            buf = np.frombuffer(mm, np.uint8)
            try:
                line_starts(buf, want, out)
            finally:
                del buf                               # the map closes only without views on it
    return out


def build_program_index(main, printer, dialect: str | None = None, layer_z_um=None, progress=None) -> ProgramIndex:
    """Parse a program once and index where each of its layers lies.

    Parameters
    ----------
    main : path
        The main program file.
    printer : Printer or str
        The profile the program was written for (units, power unit).
    dialect : str, optional
        Guessed from the file when None.
    layer_z_um : (n,) float, optional
        The job's layer heights (part coordinates, µm): levels are numbered like the job's
        layers (machine z = part z + the profile's ``program.origin_um`` z). Without it, the
        levels are numbered 0, 1, ... from the bottom.
    progress : callable, optional
        ``progress(done_bytes, total_bytes, label)``.

    Returns
    -------
    ProgramIndex

    Raises
    ------
    BioslicerError
        The program is missing, or its reader refuses it (the reader's message).
    """
    from ..printers import load_printer

    printer = load_printer(printer)
    main = Path(main)
    if not main.is_file():
        raise BioslicerError(f"program {main} not found; give the main program file")
    d = _dialect_of(main, printer, dialect)
    if d.name in ("waveform", "voxel"):
        raise BioslicerError(f"{d.name} programs have no text layers to index; preview the job's toolpath instead")
    rb = _RangeBuilder()
    files: list = []
    for mv in d.iter_moves(main, printer, d.spec):
        if mv is None:          # the fast reader handed the program to the general reader: start again
            rb, files = _RangeBuilder(), []
            continue
        files = list(mv.files)
        if mv.problems:
            fi, line, msg = mv.problems[0]
            raise BioslicerError(f"{files[fi] if fi < len(files) else main}:{line}: {msg}; the {d.name} reader "
                                 "refuses this program")
        rb.feed(mv)
    return index_from_builder(rb, main, files, printer, d.name, layer_z_um)


def index_builder() -> "_RangeBuilder":
    """An empty range builder: ``feed(moves)`` every chunk of a program in order (as
    :func:`build_program_index` does), then :func:`index_from_builder`."""
    return _RangeBuilder()


def index_from_builder(rb: "_RangeBuilder", main, files, printer, dialect: str, layer_z_um=None) -> ProgramIndex:
    """The :class:`ProgramIndex` of a program whose every move chunk went through ``rb.feed`` in
    program order (here by :func:`build_program_index`, or while the program was read back
    block by block, ``programs.StreamCheck``): the same index either way.

    Parameters
    ----------
    rb : the builder (:func:`index_builder`)
    main : path
        The main program file.
    files : list of path
        The program's files in the reader's order (file index of the moves), main first.
    printer : Printer or str
    dialect : str
    layer_z_um : (n,) float, optional
        See :func:`build_program_index`.
    """
    from ..printers import load_printer
    from ..programs.dialects import Moves, program_origin_um

    printer = load_printer(printer)
    main = Path(main)
    files = [str(f) for f in files]
    if rb.tail is not None:
        rb.feed(Moves.empty(), final=True)      # the moves after the program's last mark
    if not rb.n_ranges:
        raise BioslicerError(f"{main} has no laser-on moves; there is nothing to show")
    R = rb.n_ranges
    rng = rb.ranges.copy()
    first = rb.first.copy()
    sums = rb.sums.copy()
    # a range starts on the line after the last move of the previous range of its file (line 1 for the first)
    r_file = rng[:, 0]
    line0 = rng[:, 2].copy()
    wanted = {}
    for fi in np.unique(r_file):
        rs = np.flatnonzero(r_file == fi)
        wanted[int(fi)] = _wanted_lines(rng[rs], int(first[rs[0], FIRST_FIELDS.index("line")]))
        line0[rs] = wanted[int(fi)][:-1]
    root = main.parent
    rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in files]
    F = len(files)
    file_bytes = np.array([Path(p).stat().st_size for p in files], np.int64)
    header = np.zeros(F, np.int64)
    r_start = np.zeros(R, np.int64)
    r_end = np.zeros(R, np.int64)
    for fi in range(F):
        rs = np.flatnonzero(r_file == fi)
        if len(rs) == 0:
            continue
        want = wanted[fi]
        known = rb.offsets.get(fi)
        if known is not None and np.array_equal(known[0], want):
            offs = known[1]                # found while the file was read back (StreamCheck)
        else:
            offs = _line_offsets(Path(files[fi]), want)
        r_start[rs] = offs[:-1]
        header[fi] = offs[-1] if offs[-1] <= _MAX_HEADER_BYTES else 0
        r_end[rs[:-1]] = r_start[rs[1:]]
        r_end[rs[-1]] = file_bytes[fi]
    levels, r_level = np.unique(rng[:, 1], return_inverse=True)
    level_z = levels * LEVEL_QUANTUM_UM
    if layer_z_um is not None and len(layer_z_um):
        lz = np.asarray(layer_z_um, np.float64) + float(program_origin_um(printer)[2])
        k = np.clip(np.searchsorted(lz, level_z), 1, max(len(lz) - 1, 1))
        k = np.where(np.abs(lz[k - 1] - level_z) <= np.abs(lz[np.minimum(k, len(lz) - 1)] - level_z), k - 1, k)
        k = np.clip(k, 0, len(lz) - 1)
        tol = 0.25 * (float(np.min(np.diff(lz))) if len(lz) > 1 else 1.0)
        if np.all(np.abs(lz[k] - level_z) <= tol) and len(np.unique(k)) == len(k):
            layer, n_layers = k.astype(np.int64), len(lz)
        else:
            layer, n_layers = np.arange(len(levels), dtype=np.int64), len(levels)
    else:
        layer, n_layers = np.arange(len(levels), dtype=np.int64), len(levels)
    return ProgramIndex(main, dialect, rel, file_bytes, header, level_z, layer, int(n_layers), r_file, r_start,
                        r_end, line0, r_level.astype(np.int64), first, sums, rb.n_moves,
                        {"printer": printer.name})


def write_job_program_index(job_folder, main, printer, dialect: str | None = None, layer_z_um=None,
                            builder=None, files=None) -> ProgramIndex | None:
    """Index a job's program into ``job_folder/program_index.npz`` (:data:`INDEX_NAME`, for the
    manifest); returns the index (None for waveform and voxel programs: no text layers).

    The pipeline calls this once, after the program is written and validated. ``builder``: a
    range builder fed with every move of the program in order while it was read back
    (``programs.StreamCheck``), with ``files`` the program's files (main first): the index is
    then made from it (:func:`index_from_builder`) instead of parsing the program again.
    """
    if dialect in ("waveform", "voxel"):
        return None
    if builder is not None:
        idx = index_from_builder(builder, main, files, printer, dialect, layer_z_um)
    else:
        idx = build_program_index(main, printer, dialect, layer_z_um)
    idx.save(Path(job_folder) / INDEX_NAME)
    return idx


def _cache_path(main: Path) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bioslicer" / "program-index"
    st = main.stat()
    key = hashlib.sha256(f"{main.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
    return root / f"{main.name}.{key}.npz"


def program_index(main, printer, dialect: str | None = None, layer_z_um=None, job_folder=None,
                  manifest: dict | None = None) -> ProgramIndex:
    """The index of a program: the job's own (``program_index.npz``), else a cached one, else built now.

    A freshly built index is kept in the user's cache folder (``$XDG_CACHE_HOME/bioslicer``), never
    in a job folder (its files are hashed in the manifest).
    """
    main = Path(main)
    if job_folder is not None and manifest and isinstance(manifest.get("program_index"), str):
        p = Path(job_folder) / manifest["program_index"]
        if p.is_file():
            idx = ProgramIndex.load(p, main)
            if idx.is_current():
                return idx
    cache = _cache_path(main)
    if cache.is_file():
        try:
            idx = ProgramIndex.load(cache, main)
            if idx.is_current():
                return idx
        except BioslicerError:
            pass
    idx = build_program_index(main, printer, dialect, layer_z_um)
    try:
        idx.save(cache)
    except OSError:
        pass                # a read-only home: the index is simply rebuilt next time
    return idx


# ----------------------------------------------------------------------------- reading
@dataclass
class ProgramLayers:
    """Moves of some layers of a program, as read through the index.

    Attributes
    ----------
    moves : Moves
        The moves of the selected ranges, in program order (lines as in the program files).
    range_of_move : (n,) int64
        Index (into ``ranges``) of each move's range.
    ranges : (R,) int64
        The index ranges read, in program order.
    layer : (R,) int64
        Layer number of each range.
    exact_ranges : int
        Ranges read alone; the others came from a full parse (``full_parse`` True).
    full_parse : bool
    """

    moves: object
    range_of_move: np.ndarray
    ranges: np.ndarray
    layer: np.ndarray
    exact_ranges: int = 0
    full_parse: bool = False


def _parse_bytes(d, printer, data: bytes, suffix: str, tmpdir: str):
    p = Path(tmpdir) / f"range{suffix}"
    p.write_bytes(data)
    from ..programs.dialects import Moves

    parts = []
    for mv in d.iter_moves(p, printer, d.spec):
        parts = [] if mv is None else parts + [mv]      # None: read again by the general reader
    return Moves.concat(parts, [str(p)])


def _fix_range(mv, first: np.ndarray, line0: int, header_lines: int):
    """Give a range parsed alone what it could not know: stage, block, power and speed at its start."""
    if len(mv) == 0:
        return mv
    t = dict(zip(FIRST_FIELDS, first))
    for k in _TRANSLATED:
        arr = getattr(mv, k)
        delta = t[k] - float(arr[0])
        if delta != 0:
            setattr(mv, k, (arr + delta).astype(arr.dtype))
    shift = line0 - 1 - header_lines
    mv.line = mv.line + shift
    lead = mv.power_line < 1 + header_lines
    if lead.any():
        mv.power_mw = np.where(lead, t["power_mw"], mv.power_mw)
        mv.power_line = np.where(lead, int(t["power_line"]), mv.power_line + shift)
    else:
        mv.power_line = mv.power_line + shift
    sp = mv.speed_um_s
    if sp[0] != t["speed_um_s"]:
        ch = np.flatnonzero(sp != sp[0])
        n = int(ch[0]) if len(ch) else len(sp)
        sp = sp.copy()
        sp[:n] = t["speed_um_s"]
        mv.speed_um_s = sp
    return mv


def _sums(mv) -> np.ndarray:
    return np.array([len(mv), mv.x.sum(), mv.y.sum(), mv.z.sum(), mv.power_mw.sum(), mv.speed_um_s.sum(),
                     np.count_nonzero(mv.laser_on), np.count_nonzero(mv.jump)], np.float64)


def _sums_match(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] == b[0] and np.allclose(a, b, rtol=1e-9, atol=1e-6 * max(a[0], 1.0)))


def read_program_layers(index: ProgramIndex, printer, layers) -> ProgramLayers:
    """Parse only the ranges of ``layers`` (layer numbers) from the program files.

    Parameters
    ----------
    index : ProgramIndex
    printer : Printer or str
    layers : int or sequence of int
        Layer numbers (as in ``index.layer``).

    Returns
    -------
    ProgramLayers

    Raises
    ------
    BioslicerError
        A layer outside ``0 .. n_layers-1``; the reader refusing the program.
    """
    want = np.atleast_1d(np.asarray(layers, np.int64))
    bad = want[(want < 0) | (want >= index.n_layers)]
    if len(bad):
        raise BioslicerError(f"layer {int(bad[0])} is outside the job: it has layers 0..{index.n_layers - 1}")
    return read_program_ranges(index, printer, index.ranges_of(want))


def read_program_ranges(index: ProgramIndex, printer, ranges) -> ProgramLayers:
    """Parse the given index ranges (ascending: program order); see :func:`read_program_layers`."""
    from ..printers import load_printer
    from ..programs import DIALECTS, read_program
    from ..programs.dialects import Moves

    printer = load_printer(printer)
    d = DIALECTS[index.dialect]
    rs = np.asarray(ranges, np.int64)
    root = index.main.parent
    parts, rom, exact, failed = [], [], 0, []
    with tempfile.TemporaryDirectory(prefix="bioslicer-layer-") as tmp:
        for j, r in enumerate(rs):
            fi = int(index.r_file[r])
            path = root / index.files[fi]
            with open(path, "rb") as fh:
                s, e = int(index.r_start[r]), int(index.r_end[r])
                head = b""
                hb = int(index.header_bytes[fi])
                if s > 0 and 0 < hb <= s:
                    head = fh.read(hb)
                fh.seek(s)
                body = fh.read(e - s)
            mv = _parse_bytes(d, printer, head + body, path.suffix, tmp)
            # a range cut out of its file may draw notes (a list closed by the next range's first
            # line); the checksum decides whether its moves are the program's
            mv.problems = []
            mv = _fix_range(mv, index.first[r], int(index.r_line0[r]), head.count(b"\n"))
            if not _sums_match(_sums(mv), index.sums[r]):
                failed.append(j)
                continue
            mv.file = np.full(len(mv), fi, np.int32)
            exact += 1
            parts.append((j, mv))
    full = False
    if failed:
        # ranges that are not self-contained: take them from one parse of the whole program
        full = True
        allm = read_program(index.main, printer, index.dialect)
        rel = [os.path.relpath(p, root).replace(os.sep, "/") for p in allm.files]
        fmap = np.array([index.files.index(x) if x in index.files else -1 for x in rel], np.int64)
        mfile = fmap[allm.file]
        for j in failed:
            r = rs[j]
            fi = int(index.r_file[r])
            last = (int(index.r_line0[r + 1]) - 1 if r + 1 < index.n_ranges and int(index.r_file[r + 1]) == fi
                    else np.iinfo(np.int64).max)
            sel = np.flatnonzero((mfile == fi) & (allm.line >= index.r_line0[r]) & (allm.line <= last))
            mv = _select(allm, sel)
            mv.file = np.full(len(mv), fi, np.int32)
            parts.append((j, mv))
        parts.sort(key=lambda t: t[0])
    files = [str(root / f) for f in index.files]
    moves = Moves.concat([p for _, p in parts], files)
    for j, p in parts:
        rom.append(np.full(len(p), j, np.int64))
    rom = np.concatenate(rom) if rom else np.zeros(0, np.int64)
    return ProgramLayers(moves, rom, rs, index.r_layer[rs], exact, full)


def move_arrays(mv) -> list[str]:
    """Names of the per-move arrays of a :class:`~bioslicer.programs.Moves`."""
    import dataclasses

    return [f.name for f in dataclasses.fields(mv) if isinstance(getattr(mv, f.name), np.ndarray)]


def _select(mv, sel):
    from ..programs.dialects import Moves

    return Moves(**{k: getattr(mv, k)[sel] for k in move_arrays(mv)}, files=list(mv.files))


# ----------------------------------------------------------------------------- toolpath
def moves_to_toolpath(pl: ProgramLayers, index: ProgramIndex, printer) -> Toolpath:
    """The marks of program layers as a Toolpath in part coordinates (µm), for the scenes.

    A mark is a run of laser-on moves, starting at the move before the run (its jump target).
    Point power is each move's power (the start point takes the run's first power); the mark
    speed is the run's first programmed speed. ``mark_layer`` is the layer number, ``mark_block``
    a block of a Blocks table made of the distinct stage positions (field from the printer), and
    ``mark_kind`` is HATCH for all (a program does not say what a mark was for).
    """
    from ..printers import load_printer
    from ..programs.dialects import program_origin_um

    printer = load_printer(printer)
    mv = pl.moves
    n = len(mv)
    origin = program_origin_um(printer)
    lz = np.full(index.n_layers, np.nan)
    lz[index.layer] = index.level_z_um - origin[2]
    lz = _fill_nan(lz)
    if n == 0:
        return Toolpath.empty(lz)
    on = mv.laser_on.astype(bool)
    rom = pl.range_of_move
    same = np.concatenate([[False], rom[1:] == rom[:-1]])
    run_start = on & ~(np.concatenate([[False], on[:-1]]) & same)
    starts = np.flatnonzero(run_start)
    run_id = np.cumsum(run_start) - 1
    keep_on = on & (run_id >= 0)
    # points: the move before each run (or the run's first move at the very start), then the run
    pre = np.maximum(starts - 1, 0)
    pre_ok = (starts > 0) & same[starts]
    pre = np.where(pre_ok, pre, starts)
    n_on = np.bincount(run_id[keep_on], minlength=len(starts))
    counts = n_on + 1
    ms = np.zeros(len(starts) + 1, np.int64)
    np.cumsum(counts, out=ms[1:])
    pidx = np.empty(int(ms[-1]), np.int64)
    pidx[ms[:-1]] = pre
    body = np.ones(len(pidx), bool)
    body[ms[:-1]] = False
    pidx[body] = np.flatnonzero(keep_on)
    pw = mv.power_mw[pidx].copy()
    pw[ms[:-1]] = mv.power_mw[starts]
    # one block per program block (stage position): its origin is the stage where its first mark starts
    ub, first_of, blk = np.unique(mv.block[starts], return_index=True, return_inverse=True)
    st_u = np.column_stack([mv.sx, mv.sy, mv.sz])[starts[first_of]] - origin
    half = float(printer.field_size_um) / 2
    blocks = Blocks(st_u, np.zeros((len(st_u), 3), np.int32), st_u - [half, half, 0], st_u + [half, half, 0],
                    printer.field_shape, float(printer.field_size_um))
    tp = Toolpath(x_um=mv.x[pidx] - origin[0], y_um=mv.y[pidx] - origin[1], z_um=mv.z[pidx] - origin[2],
                  power_mw=pw, mark_start=ms, mark_kind=np.full(len(starts), int(Kind.HATCH), np.uint8),
                  mark_layer=pl.layer[rom[starts]].astype(np.int32), mark_block=blk.astype(np.int32).ravel(),
                  mark_speed_um_s=np.maximum(mv.speed_um_s[starts], 1e-9), layer_z_um=lz, blocks=blocks,
                  meta={"from_program": True})
    tp.check()
    return tp


def _fill_nan(a: np.ndarray) -> np.ndarray:
    """Interpolate missing layer heights (layers without marks) linearly."""
    ok = np.isfinite(a)
    if ok.all() or not ok.any():
        return np.where(ok, a, 0.0)
    i = np.arange(len(a))
    return np.interp(i, i[ok], a[ok])


def layer_figures(tp: Toolpath, printer) -> dict:
    """Marks, written length (µm), jump length (µm) and estimated time (s) of a toolpath."""
    from ..estimate import estimate_print_time
    from .decimate import mark_lengths_um

    est = estimate_print_time(tp, printer) if tp.n_marks else None
    return {"n_marks": int(tp.n_marks), "mark_length_um": float(mark_lengths_um(tp).sum()),
            "jump_length_um": float(tp.jump_lengths().sum()) if tp.n_marks else 0.0,
            "time_s": float(est.total_s) if est is not None else 0.0}
