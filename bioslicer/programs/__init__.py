"""Machine programs: streaming writers and readers for each dialect, and the export entry.

Public entries
--------------
:class:`ProgramWriter`
    Block-by-block writing: :meth:`~ProgramWriter.write_block` writes one stitching block's
    file(s) from that block's marks alone (in any process, any order, retried at will) into a
    hidden staging folder of ``out_dir``; :meth:`~ProgramWriter.finish` checks what the blocks
    reported, writes the main file(s), validates the program and only then moves it into place.
:class:`StreamCheck`
    :meth:`ProgramWriter.stream_check`: the blocks' files read back and checked by a thread as
    they are written (GWL), which ``finish`` then confirms instead of parsing the whole program.
:func:`write_program`
    Toolpath -> program files, on top of :class:`ProgramWriter` (so a whole-toolpath export and
    a block-parallel run give the same bytes); nothing is left behind on a violation.
:func:`read_program`
    Program -> :class:`Moves` (struct of arrays, one row per move, µm / mW / µm/s).
:func:`validate_program`
    Program -> :class:`~bioslicer.programs.checks.ValidationReport`.
:data:`DIALECTS`
    Name -> :class:`Dialect` (writer and reader). A new dialect is a module here with
    ``prepare``, ``write_block``, ``write_main`` and ``iter_moves`` plus a ``gcode/<name>.toml``.
"""

from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .._data import dialect_names
from ..errors import BioslicerError
from ..printers import load_printer
from ..progress import silent
from ..recipe import FIND_INTERFACE
from . import aerobasic, gcode, gwl, voxel, waveform
from ..fileio import fsync_path, sha256_file
from .checks import ValidationReport, Violation, check_moves, limits
from .dialects import DialectSpec, Moves, block_runs, load_spec

__all__ = ["DIALECTS", "FIND_INTERFACE", "BlockPart", "Dialect", "Moves", "ProgramFiles", "ProgramWriter", "StreamCheck",
           "ValidationReport", "Violation", "guess_dialect", "read_program", "validate_program", "write_program"]


@dataclass(frozen=True)
class Dialect:
    """A program dialect: its writer and reader, and which checks apply to what it can express.

    ``prepare(printer, spec)`` refuses a profile the writer cannot use;
    ``write_block(writer, b, toolpath_b, staging) -> ([Written], info)`` writes one block's
    file(s); ``write_main(writer, parts, counts, staging) -> [Path]`` writes the main file(s) and
    returns every file of the program (main first, staging paths); ``iter_moves(path, printer,
    spec)`` yields :class:`Moves` chunks (with ``check=(lim, flags)`` only the failing moves, when
    ``checks_while_reading``). A module with ``ONE_FILE = True`` writes one main file and takes a
    :class:`~bioslicer.programs.gcode.DirectMain` from :func:`write_program` (no fragments).
    """

    name: str
    module: object = field(repr=False)
    label: str = ""
    check_min_speed: bool = True      # waveforms run up from rest; volumes have no speed
    check_speed: bool = True
    one_block: bool = False           # the voxel volume: one block per program
    checks_while_reading: bool = False  # iter_moves(..., check=(lim, flags)) yields only failing moves

    @property
    def spec(self) -> DialectSpec:
        return load_spec(self.name)

    @property
    def iter_moves(self) -> Callable:
        return self.module.iter_moves

    @property
    def write(self) -> Callable:
        """``write(toolpath, printer, spec, out_dir, name, provenance, progress) -> [Path]``: the
        program files without validation (benchmarks, tests); main first."""
        return functools.partial(_write_unvalidated, self.name)


DIALECTS: dict[str, Dialect] = {
    "gwl": Dialect("gwl", gwl, "writing GWL", checks_while_reading=True),
    "gcode": Dialect("gcode", gcode, "writing G-code", checks_while_reading=True),
    "aerobasic": Dialect("aerobasic", aerobasic, "writing AeroBasic", checks_while_reading=True),
    "waveform": Dialect("waveform", waveform, "writing waveforms", check_min_speed=False),
    "voxel": Dialect("voxel", voxel, "rasterising voxels", check_min_speed=False, check_speed=False,
                     one_block=True),
}
if set(DIALECTS) != set(dialect_names()):  # the one registry of names: gcode/*.toml
    raise ImportError(f"dialect modules {sorted(DIALECTS)} and definitions gcode/*.toml {dialect_names()} differ")


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
    sha256 : dict
        Path (as in ``files``) -> sha256 hex of the block files :meth:`ProgramWriter.finish`
        checked against what their writers reported (durable writers only).
    """

    dialect: str
    main: Path
    files: list
    n_bytes: int
    report: ValidationReport | None = field(default=None, repr=False)
    sha256: dict = field(default_factory=dict, repr=False)   # file (as in ``files``) -> sha256 checked by finish

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


def _check_name(name) -> None:
    if not isinstance(name, str) or not name or any(c in name for c in "/\\:") or name.startswith("."):
        raise BioslicerError(f"program name {name!r} must be a plain file name (no folders, not starting with '.')")


def non_finite_error(toolpath) -> BioslicerError | None:
    """The error for the first NaN or infinite x, y, z, power or speed of ``toolpath`` (None: all finite)."""
    for arr, what in ((toolpath.x_um, "x"), (toolpath.y_um, "y"), (toolpath.z_um, "z"),
                      (toolpath.power_mw, "power"), (toolpath.mark_speed_um_s, "speed")):
        if arr.size and not bool(np.isfinite(arr).all()):
            return BioslicerError(f"the toolpath has a NaN or infinite {what}; fix the step that produced it")
    return None


def _check_finite(toolpath) -> None:
    err = non_finite_error(toolpath)
    if err is not None:
        raise err


def _same_blocks(a, b) -> bool:
    return a is b or (len(a) == len(b) and np.array_equal(a.origin_um, b.origin_um)
                      and np.array_equal(a.index, b.index))


@dataclass
class BlockPart:
    """What :meth:`ProgramWriter.write_block` wrote for one block (small and picklable).

    Attributes
    ----------
    block : int
        Row of the Blocks table.
    files : list[str]
        Paths (POSIX, relative to the writer's ``out_dir``) of the block's staged files; empty
        when the block has no marks.
    sha256 : dict[str, str]
        Relative path -> sha256 hex of each file.
    n_bytes : int
        Their total size.
    n_marks : int
        Marks of the block.
    info : dict
        Small, JSON-able facts :meth:`ProgramWriter.finish` needs (``n_points``, and per
        dialect e.g. the voxel volume's shape and position).
    """

    block: int
    files: list
    sha256: dict
    n_bytes: int
    n_marks: int
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"block": self.block, "files": list(self.files), "sha256": dict(self.sha256),
                "n_bytes": self.n_bytes, "n_marks": self.n_marks, "info": dict(self.info)}


class ProgramWriter:
    """Write a machine program one stitching block at a time, then assemble and validate it.

    The writer is plain data (printer, Blocks table, paths, strings): pickle it to Dask workers
    or other processes; every :meth:`write_block` depends only on the writer's attributes, the
    block index and that block's marks, so the program is byte-identical whatever process
    writes which block, in whatever order, and however often a block is retried.

    Parameters
    ----------
    printer : Printer or str
        Profile or bundled name.
    blocks : Blocks
        The job's whole Blocks table (rows without marks are allowed: they are skipped).
    out_dir : str or Path
        Folder of the program (made absolute here, so workers with another working folder
        write to the same place). Blocks are staged in ``out_dir/.<name>.staging/``.
    name : str
        Base name of the files (``<name>_job.gwl``, ``<name>.gcode``, ...).
    dialect : str, optional
        Defaults to the printer's dialect.
    provenance : dict, optional
        Written into the header (keep it free of clock times; a value longer than a header line
        may be is written as its SHA-256).
    find_interface : str
        Where the program finds the substrate interface, in dialects that can
        (:data:`FIND_INTERFACE`): 'every-block' (default; each bottom-tier block, after the stage
        has moved there), 'once' (before the first block) or 'off'.
    tilt_points : int
        0 (default): tilt correction off (GWL writes ``TiltCorrectionOff``); n: measure the
        substrate tilt on n x n points and correct it (GWL ``MeasureTilt n``,
        ``TiltCorrectionOn`` before the first ``FindInterfaceAt``). Refused, before anything
        is made, by a dialect or scan mode without tilt correction.

    Attributes
    ----------
    durable : bool
        True (default): every file is hashed (``BlockPart.sha256``) and fsynced before its
        rename, and :meth:`finish` re-hashes the blocks' files against what their workers
        reported. :func:`write_program` (one process: the parts never leave it, a failure
        removes them) sets it False: no fsync, no hashes (empty strings), no re-check. The
        bytes written are the same either way.
    sync_later : bool
        False (default): a durable block file is hashed and fsynced as it is written. True (one
        process with a :class:`StreamCheck`): both are left to the stream's reading thread, off
        the block loop (``BlockPart.sha256`` values are then ''), and :meth:`finish` hashes and
        fsyncs whatever that thread did not before anything is moved into place.

    Raises
    ------
    BioslicerError
        Bad name, unknown dialect, a profile the dialect cannot use, no Blocks table.
    """

    def __init__(self, printer, blocks, out_dir, name: str = "part", dialect: str | None = None,
                 provenance: dict | None = None, find_interface: str = "every-block", tilt_points: int = 0) -> None:
        self.printer = load_printer(printer)
        self.dialect = _dialect(dialect, self.printer).name
        _check_name(name)
        if blocks is None:
            raise BioslicerError("the toolpath is not stitched into blocks; stitch it before writing a program")
        self.blocks = blocks
        self.out_dir = Path(out_dir).absolute()
        self.name = name
        self.provenance = dict(provenance or {})
        if find_interface not in FIND_INTERFACE:
            raise BioslicerError(f"find_interface must be one of {', '.join(FIND_INTERFACE)}, got {find_interface!r}")
        self.find_interface = find_interface
        self.tilt_points = int(tilt_points)
        self.durable = True
        self.sync_later = False
        self.direct = None      # one-file dialects in one process: a gcode.DirectMain (blocks straight in)
        self.timings_s: dict = {}   # finish(): wall seconds of "main_s" (check, main file(s)) and "validate_s"
        d = DIALECTS[self.dialect]
        d.module.prepare(self.printer, d.spec)     # a profile the dialect cannot use: refused, nothing made
        if self.tilt_points:
            refusal = getattr(d.module, "tilt_refusal", None)
            why = refusal(self.printer) if refusal is not None else (
                f"the {self.dialect} dialect has no tilt correction; level the substrate and set "
                "tilt_correction = \"off\"")
            if why:
                raise BioslicerError(f"tilt_correction = 'measure' cannot be written for {self.printer.name}: {why}")
            if find_interface == "off":
                raise BioslicerError("tilt_correction = 'measure' needs find_interface 'every-block' or 'once' "
                                     "(TiltCorrectionOn must be followed by FindInterfaceAt)")
        # made here, by whoever plans the job, once the writer is accepted: the program folder and
        # its staging folder. Block writers (maybe on other machines) write only into the staging
        # folder and never make it, so a block still running after the program was finished (or the
        # job removed) fails instead of bringing folders back
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(exist_ok=True)

    @property
    def spec(self) -> DialectSpec:
        return load_spec(self.dialect)

    @property
    def staging(self) -> Path:
        """The hidden folder where blocks are written until :meth:`finish` moves them."""
        return self.out_dir / f".{self.name}.staging"

    def _rel(self, path) -> str:
        return Path(path).relative_to(self.out_dir).as_posix()

    # ------------------------------------------------------------------ per block
    def write_block(self, b: int, toolpath_b) -> BlockPart:
        """Write block ``b``'s file(s) into the staging folder.

        Parameters
        ----------
        b : int
            Row of the Blocks table.
        toolpath_b : Toolpath
            The stitched, ordered marks of block ``b`` only (``mark_block == b``; may be empty).

        Returns
        -------
        BlockPart
            No files when the block has no marks. Each file is written under a temporary name,
            fsynced and renamed: a retried task rewrites the same bytes, never a torn file.
        """
        b = int(b)
        if not 0 <= b < len(self.blocks):
            raise BioslicerError(f"block {b} is not in the block table ({len(self.blocks)} blocks)")
        tp = toolpath_b
        tp.check()
        if tp.n_marks == 0:
            return BlockPart(b, [], {}, 0, 0, {"n_points": 0})
        if tp.blocks is None or not bool((tp.mark_block == b).all()):
            raise BioslicerError(f"the toolpath given for block {b} has marks of other blocks or is not stitched; "
                                 f"stitch it with blocks=[{b}]")
        if not _same_blocks(tp.blocks, self.blocks):
            raise BioslicerError(f"the toolpath of block {b} was stitched with another block table than the "
                                 "program writer's; plan the blocks once and pass the same table")
        d = DIALECTS[self.dialect]
        if not getattr(d.module, "CHECKS_FINITE", False):    # else its renderer checks as it reads the values
            _check_finite(tp)
        if not self.staging.is_dir():
            raise FileNotFoundError(2, "program finished or job folder removed while a block was still running",
                                    str(self.staging))
        written, info = d.module.write_block(self, b, tp, self.staging)
        info = dict(info)
        info["n_points"] = int(tp.n_points)
        rels = [self._rel(w.path) for w in written]
        return BlockPart(b, rels, {r: w.sha256 for r, w in zip(rels, written)},
                         int(sum(w.n_bytes for w in written)), int(tp.n_marks), info)

    # ------------------------------------------------------------------ assembly
    def _check_parts(self, parts) -> list:
        parts = [p for p in parts if p.n_marks > 0]
        seen = set()
        for p in parts:
            if p.block in seen:
                raise ValueError(f"block {p.block} given twice to finish()")
            if not 0 <= p.block < len(self.blocks):
                raise BioslicerError(f"block {p.block} is not in the block table ({len(self.blocks)} blocks)")
            seen.add(p.block)
        return parts

    def _verify(self, parts, progress, stream=None) -> dict:
        """Every part's files exist with the sha256 its worker reported (hashed in threads, or
        by ``stream``'s thread when the file is still the one it hashed); a file whose writer
        left its hash to the stream (``sync_later``: reported '') only has to exist. Returns
        {path: sha256} of every file checked."""
        from concurrent.futures import ThreadPoolExecutor

        todo = [(p, rel) for p in parts for rel in p.files]

        def sha(item):
            path = self.out_dir / item[1]
            known = stream.sha256_of(path) if stream is not None else None
            if known is not None:
                return known
            return sha256_file(path)[0] if path.is_file() else None

        if not todo:
            return {}
        with ThreadPoolExecutor(max_workers=max(1, min(len(todo), os.cpu_count() or 1))) as pool:
            got = list(pool.map(sha, todo))
        for (p, rel), h in zip(todo, got):
            want = p.sha256.get(rel)
            if h is None or (h != want and not (want == "" and self.sync_later)):
                what = "was not found" if h is None else "differs from what the worker reported"
                raise BioslicerError(f"block {p.block} file {self.out_dir / rel} {what}; the workers must write to "
                                     "storage this machine sees (a shared filesystem)")
        progress(len(parts), len(parts), "checking blocks")
        return {self.out_dir / rel: h for (_, rel), h in zip(todo, got)}

    def stream_check(self, blocks, on_moves=None, on_file=None) -> "StreamCheck":
        """A :class:`StreamCheck` of this program: give it each block's part as soon as it is
        written (:meth:`StreamCheck.add`), and to :meth:`finish` (``stream=``), which then takes
        its reading instead of parsing the whole program again when it stands for one.

        Parameters
        ----------
        blocks : sequence of int
            Every block that will be written (rows of the Blocks table; with or without marks).
        on_moves : callable, optional
            ``on_moves(moves)`` with every chunk of moves read, in program order (from the
            reading thread). The chunk's arrays are reused for the next chunk: copy what you keep.
        on_file : callable, optional
            ``on_file(file index, path)`` after each included file was read whole (same thread).
        """
        return StreamCheck(self, blocks, on_moves, on_file)

    def finish(self, parts, progress=silent, validate: bool = True, stream=None) -> ProgramFiles:
        """Check the blocks' files, write the main file(s), validate, then move everything into place.

        Parameters
        ----------
        parts : list[BlockPart]
            Parts of the blocks with marks, in block (execution) order; parts without marks
            are skipped.
        progress : callable
            ``progress(done, total, label)``.
        validate : bool
            Parse the program back and check it against the printer before it appears
            (default; False only for benchmarks of the writer alone).
        stream : StreamCheck, optional
            The blocks' files already read back while they were written
            (:meth:`stream_check`): when its reading is confirmed against the finished main
            file, only the main file is read here; otherwise the whole program is.

        Returns
        -------
        ProgramFiles
            Files in ``out_dir``, main first, with ``report`` (the ValidationReport).

        Raises
        ------
        BioslicerError
            A block file missing or changed since its worker wrote it, or a validation
            failure. Then everything the writer and the blocks staged is removed.
        """
        import time

        d = DIALECTS[self.dialect]
        staging = self.staging
        moved: list[Path] = []
        made: list[Path] = []
        t0 = time.perf_counter()
        try:
            parts = self._check_parts(parts)
            if stream is not None:
                stream.close()          # the stream's thread has read (and hashed) every block it was given
            checked = self._verify(parts, progress, stream) if self.durable else {}
            counts = {"n_marks": sum(p.n_marks for p in parts),
                      "n_points": sum(int(p.info.get("n_points", 0)) for p in parts),
                      "n_blocks": len(parts), "n_table": len(self.blocks)}
            staging.mkdir(parents=True, exist_ok=True)
            files = d.module.write_main(self, parts, counts, staging)
            if self.durable and self.sync_later:    # the block files the stream's thread did not fsync
                done = stream.synced if stream is not None else set()
                for p in parts:
                    for rel in p.files:
                        if str(self.out_dir / rel) not in done:
                            fsync_path(self.out_dir / rel)
            t1 = time.perf_counter()
            self.timings_s = {"main_s": t1 - t0}
            report = None
            if validate:
                report = stream.confirm(files[0]) if stream is not None else None
                if report is None:
                    report = validate_program(files[0], self.printer, d.name, max_violations=20)
                rel = lambda p: os.path.relpath(p, staging) if str(p).startswith(str(staging)) else str(p)  # noqa: E731
                report.violations = [Violation(rel(v.file), v.line, v.message) for v in report.violations]
                report.path = str(self.out_dir / Path(files[0]).relative_to(staging))
                if not report.ok:
                    raise BioslicerError(f"program failed validation, nothing written: {report.summary()}; fix the "
                                         "toolpath or choose a printer that can make it")
            self.timings_s["validate_s"] = time.perf_counter() - t1
            final = []
            sha = {}
            for f in files:
                dst = self.out_dir / Path(f).relative_to(staging)
                if Path(f) in checked:
                    sha[dst] = checked[Path(f)]
                if not dst.parent.is_dir():
                    dst.parent.mkdir(parents=True)
                    made.append(dst.parent)
                os.replace(f, dst)
                moved.append(dst)
                final.append(dst)
            n_bytes = sum(p.stat().st_size for p in final)
            shutil.rmtree(staging, ignore_errors=True)
            return ProgramFiles(d.name, final[0], final, n_bytes, report, sha)
        except BaseException:
            if stream is not None:
                stream.close(stop=True)
            for f in moved:
                try:
                    f.unlink()
                except OSError:
                    pass
            for folder in reversed(made):
                try:
                    folder.rmdir()
                except OSError:
                    pass
            self.abort()
            raise

    def abort(self) -> None:
        """Remove everything staged (blocks written so far included); the program folder stays."""
        if self.direct is not None:
            self.direct.abort()
        shutil.rmtree(self.staging, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _libc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):    # not glibc: nothing to trim
        return None


def _malloc_trim() -> None:
    """Return the C heap's free memory to the system (glibc ``malloc_trim``; elsewhere nothing)."""
    trim = _libc_trim()
    if trim is not None:
        trim(0)


def _write_all(toolpath, printer, out_dir, name, dialect, provenance, progress, validate,
               find_interface: str = "every-block", tilt_points: int = 0) -> ProgramFiles:
    printer = load_printer(printer)
    d = _dialect(dialect, printer)
    _check_name(name)
    toolpath.check()
    runs = block_runs(toolpath)
    if d.one_block and len(runs) > 1:
        raise BioslicerError(voxel.ONE_BLOCK)
    w = ProgramWriter(printer, toolpath.blocks, out_dir, name=name, dialect=d.name, provenance=provenance,
                      find_interface=find_interface, tilt_points=tilt_points)
    w.durable = False      # one process: the parts are the ones just written, a failure removes them
    if getattr(d.module, "ONE_FILE", False):  # no fragments: the blocks go straight into the main file
        w.direct = gcode.DirectMain({"n_marks": int(toolpath.n_marks), "n_points": int(toolpath.n_points),
                                     "n_blocks": len(runs), "n_table": len(toolpath.blocks)})
    w.out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    try:
        for done, (b, m0, m1) in enumerate(runs):
            parts.append(w.write_block(b, toolpath.mark_range(m0, m1)))
            progress(done + 1, len(runs), d.label)
    except BaseException:
        w.abort()
        raise
    return w.finish(parts, validate=validate)


def _write_unvalidated(dialect, toolpath, printer, spec, out_dir, name, provenance, progress) -> list[Path]:
    return _write_all(toolpath, printer, out_dir, name, dialect, provenance, progress, False).files


def write_program(toolpath, printer, out_dir, name: str = "part", dialect: str | None = None,
                  provenance: dict | None = None, progress=silent, find_interface: str = "every-block",
                  tilt_points: int = 0) -> ProgramFiles:
    """Write a stitched toolpath as a machine program, validated before it appears.

    The toolpath is cut into its blocks and written through :class:`ProgramWriter`
    (``write_block`` per block, then ``finish``): the same bytes as a block-parallel run.

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
    find_interface : str
        'every-block', 'once' or 'off' (see :class:`ProgramWriter`).
    tilt_points : int
        0: tilt correction off; n: ``MeasureTilt n`` (see :class:`ProgramWriter`).

    Returns
    -------
    ProgramFiles

    Raises
    ------
    BioslicerError
        Bad name, unknown dialect, a profile lacking a key the dialect needs, an unstitched
        toolpath, non-finite values, or a validation failure (then nothing is left behind).
    """
    return _write_all(toolpath, printer, out_dir, name, dialect, provenance, progress, True, find_interface,
                      tilt_points)


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
    printer, path, d = _open_program(path, printer, dialect)
    parts = []
    for mv in d.iter_moves(path, printer, d.spec):
        if mv is None:      # the fast reader handed the program to the general reader: start again
            parts = []
            continue
        parts.append(mv)
    files = parts[-1].files if parts else [str(path)]
    return Moves.concat(parts, files)


# the first bytes of files that are not machine programs (meshes, archives, images)
_NOT_PROGRAM = ((b"solid ", "an STL mesh"), (b"PK\x03\x04", "a zip archive (3MF?)"), (b"glTF", "a GLB mesh"),
                (b"ply\n", "a PLY mesh"), (b"ply\r", "a PLY mesh"), (b"OFF", "an OFF mesh"), (b"\x89PNG", "a PNG image"))
_MESH_EXT = (".stl", ".obj", ".ply", ".off", ".3mf", ".glb", ".gltf", ".npz", ".png")


def _open_program(path, printer, dialect):
    """(Printer, Path, Dialect) of a program to read; refuses a missing file or one that is no program."""
    printer = load_printer(printer)
    path = Path(path)
    if not path.exists():
        raise BioslicerError(f"program {path} not found")
    d = _dialect(guess_dialect(path, printer) if dialect is None else dialect, printer)
    _refuse_non_program(path, d)
    return printer, path, d


def _refuse_non_program(path: Path, d: Dialect) -> None:
    """One clear line for a file that is no text program at all (a mesh, an archive, binary data)."""
    if d.name not in ("gwl", "gcode", "aerobasic"):
        return
    with open(path, "rb") as fh:
        head = fh.read(4096)
    what = next((w for magic, w in _NOT_PROGRAM if head.startswith(magic)), None)
    if what is None and path.suffix.lower() in _MESH_EXT:
        what = f"a {path.suffix.lower()} file"
    if what is None and b"\0" in head:
        what = "binary data"
    if what is not None:
        raise BioslicerError(f"{path.name} is not a machine program (it is {what}); validate the program file "
                             f"a slice or export wrote (e.g. <name>_job.gwl, .gcode, .pgm)")


def validate_program(path, printer, dialect: str | None = None, max_violations: int = 20) -> ValidationReport:
    """Parse a program back and check every move against the printer.

    A program with no moves fails ("nothing to print"); every line is read or reported by name:
    lines that cannot move or expose are skipped with a note (``report.notes``), anything else
    not understood is a violation.

    Parameters
    ----------
    path : str or Path
        The program's main file (GWL job file, .gcode, .pgm, waveform .csv, voxel .json).
    printer : Printer or str
        Profile or bundled name.
    dialect : str, optional
        Guessed from the file when None.
    max_violations : int
        How many violations (and notes) to keep in the report (all are counted).

    Returns
    -------
    ValidationReport

    Raises
    ------
    BioslicerError
        Unknown dialect, missing file, or a file that is not a machine program at all.
    """
    printer, path, d = _open_program(path, printer, dialect)
    if d.checks_while_reading:  # the reader checks every move and keeps only the failing ones
        chunks = d.iter_moves(path, printer, d.spec, check=limits(printer, d.check_min_speed, d.check_speed))
    else:
        chunks = d.iter_moves(path, printer, d.spec)
    tally = _Tally(printer, d, max_violations)
    files: list = []
    for mv in chunks:
        if mv is None:      # the fast reader handed the program to the general reader: start again
            tally = _Tally(printer, d, max_violations)
            continue
        files = mv.files
        tally.add(tally.summary(mv))
    return tally.report(path, files)


class _Tally:
    """A validation as it goes: moves counted, the first violations and notes in program order.

    :meth:`summary` condenses one :class:`Moves` chunk (every move, or only the failing ones
    with ``n_total``), :meth:`add` takes the summaries in program order, :meth:`report` makes
    the :class:`ValidationReport`. A summary is small, so chunks read early (``StreamCheck``)
    can be added later, in their place.
    """

    def __init__(self, printer, d: Dialect, max_violations: int) -> None:
        self.printer, self.d, self.max_violations = printer, d, max_violations
        self.found: list = []      # (chunk, move index, file, line, message)
        self.notes: list = []
        self.n_moves = self.n_bad = self.n_notes = self.seq = 0

    def summary(self, mv) -> tuple:
        """(found [(move index, file, line, message)], violations, notes, n_notes, n_moves) of a chunk."""
        if mv.failing is not None:    # the reader checked every move: messages for the failing ones
            idx = mv.failing
            f, c = (check_moves(mv.take(idx), self.printer, self.max_violations, self.d.check_min_speed,
                                self.d.check_speed) if len(idx) else ([], 0))
            f = [(int(idx[i]), fi, ln, msg) for i, fi, ln, msg in f]
        else:
            f, c = (check_moves(mv, self.printer, self.max_violations, self.d.check_min_speed, self.d.check_speed)
                    if len(mv) else ([], 0))
        found = list(f)
        for fi, ln, msg in mv.problems:   # parse problems sort by line among the chunk's moves
            found.append((int(np.searchsorted(mv.line, ln)) if len(mv) else 0, fi, ln, msg))
        return (found, c + len(mv.problems), list(mv.notes[:self.max_violations]), len(mv.notes),
                len(mv) if mv.n_total is None else int(mv.n_total))

    def add(self, summary: tuple) -> None:
        found, n_bad, notes, n_notes, n_moves = summary
        seq = self.seq
        self.seq += 1
        self.n_bad += n_bad
        self.found += [(seq, i, fi, ln, msg) for i, fi, ln, msg in found]
        self.n_notes += n_notes
        self.notes += notes[:max(0, self.max_violations - len(self.notes))]
        self.n_moves += n_moves
        if len(self.found) > 4 * self.max_violations:
            self.found.sort(key=lambda t: (t[0], t[1], t[3]))
            self.found = self.found[:self.max_violations]

    def report(self, path, files) -> ValidationReport:
        found = sorted(self.found, key=lambda t: (t[0], t[1], t[3]))
        n_bad = self.n_bad
        if self.n_moves == 0 and n_bad == 0:
            found.append((0, 0, 0, 0, "nothing to print: the program has no moves"))
            n_bad = 1
        name = lambda fi: files[fi] if fi < len(files) else str(path)  # noqa: E731
        viol = [Violation(name(fi), ln, msg) for _, _, fi, ln, msg in found[:self.max_violations]]
        return ValidationReport(str(path), self.d.name, self.printer.name, n_bad == 0, self.n_moves, n_bad, viol,
                                [Violation(name(fi), ln, msg) for fi, ln, msg in self.notes], self.n_notes)


class StreamCheck:
    """Parse a program back and check it block by block while the blocks are still being made.

    Made by :meth:`ProgramWriter.stream_check` with the blocks that will be run. :meth:`add`
    takes each block's :class:`BlockPart` as it is written (any order; a block waits until
    every block before it has come); in execution order a background thread then reads the
    main file's lines for the block (the dialect's ``main_block``, as ``write_main`` writes
    them) and the block's file with the reader state those lines leave, exactly as a whole
    parse of the finished program reads them: while the next block is planned, the block just
    written is still in the page cache, and the reader kernels release the GIL. Every move is
    checked (``check_moves``) and handed to ``on_moves`` (e.g. the program index builder).

    :meth:`confirm` (called by :meth:`ProgramWriter.finish` after the main file is written)
    reads the finished main file again without its includes and accepts the streamed reading
    only when every include comes in the same order, with the very same reader state and the
    block file unchanged since it was read; the report is then the one a whole parse gives.
    Otherwise (or for dialects without a streaming reader) it returns None and the program is
    validated by a whole parse as before. Either way no program appears unvalidated.
    """

    def __init__(self, writer, blocks, on_moves=None, on_file=None, max_violations: int = 20) -> None:
        import queue
        import threading

        self.writer = writer
        self.d = DIALECTS[writer.dialect]
        self.on_moves = on_moves
        self.on_file = on_file
        self.max_violations = max_violations
        self.supported = hasattr(self.d.module, "StreamReader") and writer.direct is None
        self.todo = sorted(int(b) for b in blocks)
        self.next = 0
        self.pending: dict = {}
        self.records: list = []     # per include: the chunk summaries of the included file
        self.stats: list = []       # per include: (size, mtime_ns, inode) of the file when read
        self.synced: set = set()    # files fsynced here (ProgramWriter.sync_later)
        self.hashed: dict = {}      # file -> (sha256, (size, mtime_ns, inode)) hashed here (durable writers)
        self.main_moves = 0         # moves of the main file's own lines (none in programs we write)
        self.error: BaseException | None = None
        self.confirmed = False      # the streamed reading stood in for a whole parse (after confirm)
        self.busy_s = 0.0           # seconds the thread spent reading
        self.wait_s = 0.0           # seconds close() waited for it
        self._queue: "queue.Queue" = queue.Queue()
        self._thread = None
        self._stopped = False
        if self.supported:
            self.reader = self.d.module.StreamReader(writer.printer, self.d.spec,
                                                     self.d.module.main_path(writer, writer.staging),
                                                     check=limits(writer.printer, self.d.check_min_speed,
                                                                  self.d.check_speed))
            self.tally = _Tally(writer.printer, self.d, max_violations)
            self._carry: dict = {}
            self._thread = threading.Thread(target=self._run, name="bioslicer-stream-check", daemon=True)
            self._queue.put("head")
            self._thread.start()

    def __enter__(self) -> "StreamCheck":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(stop=exc_type is not None)

    def add(self, part: BlockPart) -> None:
        """A block's part, as soon as it is written (call from one thread)."""
        if not self.supported or self._stopped:
            return
        self.pending[int(part.block)] = part
        while self.next < len(self.todo) and self.todo[self.next] in self.pending:
            p = self.pending.pop(self.todo[self.next])
            self.next += 1
            if p.n_marks > 0:
                self._queue.put(p)

    def close(self, stop: bool = False) -> None:
        """Wait for the thread to read what it was given (``stop``: skip what it has not started)."""
        import time

        if self._thread is None:
            return
        if stop:
            self._stopped = True
        t = time.perf_counter()
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        self.wait_s += time.perf_counter() - t

    def _run(self) -> None:
        import time

        w, mod = self.writer, self.d.module
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None or self._stopped:
                continue
            t = time.perf_counter()
            try:
                if isinstance(item, str):   # the header (its counts are not known yet: comments only)
                    counts = {"n_marks": 0, "n_points": 0, "n_blocks": 0, "n_table": len(w.blocks)}
                    for mv in self.reader.feed(mod.main_head(w, counts)):
                        self.main_moves += len(mv)
                else:
                    self._block(mod.main_block(w, item, self._carry))
            except BaseException as exc:  # noqa: BLE001 - confirm() falls back to a whole parse
                self.error = exc
            _malloc_trim()      # give the freed chunk buffers back: this thread runs beside the block peak
            self.busy_s += time.perf_counter() - t

    def _block(self, text: str) -> None:
        n0 = len(self.reader.includes)
        summaries: list = []
        for mv in self.reader.feed(text):
            if not self.reader.inside:       # a chunk of the main file's own lines
                self.main_moves += len(mv)
                continue
            s = self.tally.summary(mv)
            if s[0] or s[2] or not summaries or summaries[-1][0] or summaries[-1][2]:
                summaries.append(s)
            else:                            # a clean chunk after a clean chunk: one summary
                p = summaries[-1]
                summaries[-1] = (p[0], p[1] + s[1], p[2], p[3] + s[3], p[4] + s[4])
            if self.on_moves is not None and len(mv):
                self.on_moves(mv)
        if len(self.reader.includes) != n0 + 1:
            raise RuntimeError("a block's main file lines did not include exactly one file")
        self.records.append(summaries)
        path, fi = self.reader.includes[-1][:2]
        if self.on_file is not None:
            self.on_file(fi, path)
        st = os.stat(path)
        self.stats.append((st.st_size, st.st_mtime_ns, st.st_ino))
        if self.writer.durable:        # hashed here, beside the block loop, for finish()'s check
            h = sha256_file(path)[0]
            st1 = os.stat(path)
            if (st1.st_size, st1.st_mtime_ns, st1.st_ino) == self.stats[-1]:
                self.hashed[path] = (h, self.stats[-1])
        if self.writer.durable and self.writer.sync_later:
            fsync_path(path)
            self.synced.add(path)

    def sha256_of(self, path) -> str | None:
        """The sha256 this stream's thread computed of ``path``, if the file is still the one it
        hashed (same size, mtime and inode); else None."""
        rec = self.hashed.get(str(path))
        if rec is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        return rec[0] if (st.st_size, st.st_mtime_ns, st.st_ino) == rec[1] else None

    def confirm(self, main) -> ValidationReport | None:
        """The validation report of the finished program (main file ``main``) from the streamed
        reading, or None when the program must be parsed whole (see the class)."""
        self.close()
        if not self.supported or self.error is not None or self.main_moves:
            return None
        for (path, *_), st0 in zip(self.reader.includes, self.stats):
            st = os.stat(path)
            if (st.st_size, st.st_mtime_ns, st.st_ino) != st0:
                return None
        mod = self.d.module
        pr = self.writer.printer
        tally = _Tally(pr, self.d, self.max_violations)
        rr = mod.ReplayReader(pr, self.d.spec, self.reader.includes,
                              check=limits(pr, self.d.check_min_speed, self.d.check_speed))
        try:
            for item in rr.read(Path(main)):
                if isinstance(item, mod.Replayed):
                    for s in self.records[item.k]:
                        tally.add(s)
                else:
                    tally.add(tally.summary(item))
                    if item.n_total:       # moves in the main file: not read in the stream
                        return None
        except (mod.ReplayMismatch, mod.NeedsGeneral):
            return None
        if rr.done != len(self.reader.includes):
            return None
        self.confirmed = True
        return tally.report(Path(main), rr.files)
