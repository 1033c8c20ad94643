"""RS-274 G-code for stage-scanning setups, and the move/laser machinery shared with AeroBasic.

Each mark: a jump (``G0``) to its first point with the laser off, the profile's power command
(``M3 S{power}`` turns the laser on at that power, or an analog-output line followed by the
profile's ``laser_on_command``), ``G1`` moves with feed to the following points (a new power
command before a point whose power differs: step dialects write the power of the segment
ending at each point), and the profile's ``laser_off_command``. Coordinates are absolute machine
coordinates in the profile's unit: part coordinates plus ``program.origin_um``.

One file per program, written block by block: each block's fragment (its first mark writes
the power, whatever came before) is staged on its own and :func:`write_main` streams header,
fragments in order and footer into the program (the fragments copied in the kernel).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numba import njit, prange

from ..errors import BioslicerError
from ..fileio import AtomicFile
from . import _format as F
from . import tokenize as T
from ._format import put_line, put_line_hot, qround
from .checks import N_LIMITS, move_bits
from .dialects import (line_ending, moves_from_arrays, new_move_arrays, program_origin_um, provenance_lines,
                       reader_power)
from .general import GcodeInterpreter, NeedsGeneral, canonical_chunks

# ----------------------------------------------------------------------------- writing (shared)
_J, _M, _P, _ON, _OFF = range(5)


class StepFormat:
    """Units, number format and templates of a step dialect (G-code, AeroBasic) for one printer.

    Attributes
    ----------
    scale_um : float
        µm per program length unit.
    feed_s : float
        Seconds per feed time unit (60 for mm/min).
    coord_decimals, power_decimals, feed_decimals : int
    templates : dict[str, str]
        Role -> template text, profile commands included ('power', 'laser_on', 'laser_off').
    """

    def __init__(self, printer, spec, subst: dict | None = None) -> None:
        spec.check_printer(printer)
        prog = printer.program
        units = spec.get("units", {})
        unit = prog.get("unit", "mm")
        if unit not in units:
            raise BioslicerError(f"printer profile {printer.name}: 'program.unit' must be one of "
                                 f"{', '.join(units)} for the {spec.name} dialect, got {unit!r}")
        self.unit = unit
        self.scale_um = float(units[unit])
        feeds = spec.get("feed_per", {"s": 1.0})
        fp = prog.get("feed_per", spec.get("default_feed_per", "s"))
        if fp not in feeds:
            raise BioslicerError(f"printer profile {printer.name}: 'program.feed_per' must be one of "
                                 f"{', '.join(feeds)}, got {fp!r}")
        self.feed_s = float(feeds[fp])
        extra = int(round(math.log10(self.scale_um))) if spec.get("decimals_refer_to") == "um" else 0
        self.coord_decimals = printer.decimals + extra
        self.power_decimals = spec.decimals.get("power", 3)
        self.feed_decimals = spec.decimals.get("feed", 3)
        t = dict(spec.commands)
        for k, v in (subst or {}).items():
            t = {r: s.replace("{" + k + "}", v) for r, s in t.items()}
        for role, key in (("power", "power_command"), ("laser_on", "laser_on_command"),
                          ("laser_off", "laser_off_command")):
            if key in prog:
                t[role] = str(prog[key])
        if "power" not in t or len(F.Template.parse(t["power"]).slots) != 1:
            raise BioslicerError(f"printer profile {printer.name}: 'program.power_command' must be a template "
                                 "with one {...} slot for the power, e.g. \"M3 S{power}\"")
        self.power_slot = F.Template.parse(t["power"]).slots[0]
        for role in ("laser_on", "laser_off"):
            if role in t and F.Template.parse(t[role]).slots:
                raise BioslicerError(f"printer profile {printer.name}: the {role} command must not have a slot")
        self.templates = t
        self.cmd = {k: F.Template.parse(v) for k, v in t.items()}
        dec = {"x": self.coord_decimals, "y": self.coord_decimals, "z": self.coord_decimals,
               "f": self.feed_decimals, self.power_slot: self.power_decimals}
        self.eol = line_ending(printer, spec)
        self.ts = F.TemplateSet(t, dec, self.eol)

    def chunk_bytes(self, mark_start: np.ndarray, cb: np.ndarray) -> np.ndarray:
        """Upper bound of the bytes of each chunk of marks ``cb`` (global mark bounds)."""
        b = self.ts.bound
        T = self.ids()
        on = int(b[T[3]]) if T[3] >= 0 else 0
        pts = mark_start[cb[1:]] - mark_start[cb[:-1]]
        return pts * int(b[T[1]] + b[T[2]]) + np.diff(cb) * int(b[T[0]] + b[T[2]] + on + b[T[4]])

    def ids(self) -> np.ndarray:
        return np.array([self.ts["jump"], self.ts["mark"], self.ts["power"],
                         self.ts["laser_on"] if "laser_on" in self.templates else -1,
                         self.ts["laser_off"]], dtype=np.int64)


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _render_step_chunks(x, y, z, pp, ms, mspeed, offx, offy, offz, scale, feed_s, cs, ps, fs, T, has_on,
                        first, ops, op_start, lit, pow10, digits2, cb, off, out, lens):
    """Quantize, emit and render step-dialect lines for the chunks of marks ``cb`` in parallel.

    x, y, z, pp (N,) points (µm, part) and power (program unit) of the batch; ms (M+1,) local mark
    starts; mspeed (M,) µm/s; offx, offy, offz added to the points (µm) before dividing by ``scale``
    (µm per program unit); feed_s seconds per feed time unit; cs, ps, fs = 10**decimals of
    coordinates, power and feed; T template ids [jump, mark, power, laser_on (-1: none), laser_off];
    first: True when local mark 0 is the program's first mark (no power in effect before it);
    cb (K+1,) local mark bounds; off (K+1,) byte offsets in ``out``; fills ``lens`` (K,).
    Byte-identical to the former per-line table + :meth:`~bioslicer.programs._format.TemplateSet.render`.
    ``nogil``: other threads (a stream check, the next block's planning) run meanwhile.
    """
    for c in prange(cb.shape[0] - 1):
        pos = off[c]
        m0 = cb[c]
        # power in effect before the chunk: the last point's power of the previous mark
        has_p = not (m0 == 0 and first)
        pst = np.int64(0)
        if has_p:
            pst = qround(pp[ms[m0] - 1] * ps)
        for m in range(m0, cb[c + 1]):
            s = ms[m]
            e = ms[m + 1]
            pos = put_line_hot(T[0], qround(((x[s] + offx) / scale) * cs), qround(((y[s] + offy) / scale) * cs),
                           qround(((z[s] + offz) / scale) * cs), 0, ops, op_start, lit, out, pos, pow10, digits2)
            cur = qround(pp[s + 1] * ps)
            if (not has_on) or (not has_p) or pst != cur:
                pos = put_line(T[2], cur, 0, 0, 0, ops, op_start, lit, out, pos, pow10, digits2)
            has_p = True
            if has_on:
                pos = put_line(T[3], 0, 0, 0, 0, ops, op_start, lit, out, pos, pow10, digits2)
            qf = qround(((mspeed[m] / scale) * feed_s) * fs)
            for i in range(s + 1, e):
                qi = qround(pp[i] * ps)
                if qi != cur:
                    cur = qi
                    pos = put_line(T[2], cur, 0, 0, 0, ops, op_start, lit, out, pos, pow10, digits2)
                pos = put_line_hot(T[1], qround(((x[i] + offx) / scale) * cs), qround(((y[i] + offy) / scale) * cs),
                               qround(((z[i] + offz) / scale) * cs), qf, ops, op_start, lit, out, pos, pow10,
                               digits2)
            pst = cur
            pos = put_line_hot(T[4], 0, 0, 0, 0, ops, op_start, lit, out, pos, pow10, digits2)
        lens[c] = pos - off[c]


# points per chunk (one prange task) and chunks per batch (one kernel call, one reused buffer)
CHUNK_POINTS = 1 << 14
BATCH_CHUNKS = 16


def emit_marks(fmt: StepFormat, printer, toolpath, m0, m1, offset_um, fh) -> None:
    """Write the lines of marks [m0, m1) to ``fh``: points + ``offset_um`` (3,) in the program unit.

    Streams in batches of :data:`BATCH_CHUNKS` chunks of about :data:`CHUNK_POINTS` points, the
    chunks rendered in parallel into one buffer (its chunks laid out by their upper bound, which
    is several times the text: not kept between calls), each batch written by one ``writev``.
    """
    T = fmt.ids()
    has_on = bool(T[3] >= 0)
    buf = F.ChunkBuffer()
    ms_all = toolpath.mark_start
    cs, ps, fs = float(10 ** fmt.coord_decimals), float(10 ** fmt.power_decimals), float(10 ** fmt.feed_decimals)
    off3 = np.asarray(offset_um, dtype=np.float64)
    cb_all = F.chunk_bounds(ms_all, m0, m1, CHUNK_POINTS)
    ts = fmt.ts
    for k in range(0, len(cb_all) - 1, BATCH_CHUNKS):
        cb = cb_all[k:k + BATCH_CHUNKS + 1]
        a, c = int(cb[0]), int(cb[-1])
        # one point before the batch: the power in effect when it starts
        p0, p1 = int(ms_all[a]), int(ms_all[c])
        q0 = max(p0 - 1, 0)
        ms = ms_all[a:c + 1] - q0
        pp = np.ascontiguousarray(printer.power_to_program(toolpath.power_mw[q0:p1]), dtype=np.float64)
        off = buf.place(fmt.chunk_bytes(ms_all, cb))
        lens = np.zeros(len(cb) - 1, np.int64)
        _render_step_chunks(toolpath.x_um[q0:p1], toolpath.y_um[q0:p1], toolpath.z_um[q0:p1], pp, ms,
                            toolpath.mark_speed_um_s[a:c], off3[0], off3[1], off3[2], float(fmt.scale_um),
                            float(fmt.feed_s), cs, ps, fs, T, has_on, a == 0, ts.ops, ts.op_start, ts.lit,
                            F._POW10, F._DIGITS2, cb - a, off, buf.out, lens)
        buf.write(fh, off, lens)


# ----------------------------------------------------------------------------- reading (shared)
_ERR = {2: "unknown command (not in the dialect definition or the printer's commands)",
        3: "malformed number",
        4: "a move needs at least one axis value, and no other word",
        5: "the power command needs one number",
        6: "the stage moves with the laser on; switch the laser off first",
        7: "more words after a word that takes no number"}


# how a step program's axis values become machine coordinates (per axis, see _read_step)
AXIS_SCAN_STAGE = 0    # the axis moves the stage itself (G-code): fine = value - origin
AXIS_GALVO = 1         # galvo on top of the stage axis (AeroBasic x, y): machine = stage + value
AXIS_FOCUS_STAGE = 2   # the stage axis moves the focus inside the block (AeroBasic z): fine = value - block stage


@njit(cache=True, error_model="numpy")
def _read_step(codes, lines, nvals, vals, tags, K, has_on, mtag, stag, ftag, st, scale, feed_s, pa, pb,
               amode, origin, check, lim, flags, x, y, z, lx, ly, lz, sx, sy, sz, pw, sp, on, jmp, blk, ln, pln,
               err_line, err_kind, total):
    """State machine over step-dialect records; moves in µm, mW, µm/s.

    K keyword codes [jump, mark, power, laser_on, laser_off, set_origin]; mtag (3,) axis letters of moves,
    stag (3,) stage axis letters (0: none), ftag feed letter; st float64 state (program units)
    [x, y, z, sx, sy, sz, power, laser, feed, power_line, block, block_started]. ``scale`` µm
    per program unit, ``feed_s`` seconds per feed time unit, power mW = value * pa / pb;
    ``amode`` (3,) AXIS_* per axis, ``origin`` (3,) µm. Every move is written when ``check`` is
    False; only the moves failing :func:`~bioslicer.programs.checks.move_bits` when True, ``total[0]``
    counting all. Returns (moves written, errors).
    """
    n = 0
    ne = 0
    for r in range(codes.shape[0]):
        c = codes[r]
        if c == -2 or c == -3:
            if ne < err_line.shape[0]:
                err_line[ne] = lines[r]
                err_kind[ne] = 2 if c == -2 else 3
            ne += 1
            continue
        if c <= 0:
            continue
        if c == K[5]:
            # the writer's set-origin line (G92 X0 Y0 Z0, POSOFFSET SET ... 0): a no-op while the
            # program stands at its origin (as at the start); anywhere else the general reader reads it
            if nvals[r] > 0 or st[0] != 0 or st[1] != 0 or st[2] != 0 or st[3] != 0 or st[4] != 0 or st[5] != 0:
                if ne < err_line.shape[0]:
                    err_line[ne] = lines[r]
                    err_kind[ne] = 7
                ne += 1
            continue
        if c != K[0] and c != K[1] and c != K[2] and nvals[r] > 0:
            # a word without numbers (laser on/off, G90, ...) followed by more words: the general reader
            if ne < err_line.shape[0]:
                err_line[ne] = lines[r]
                err_kind[ne] = 7
            ne += 1
            continue
        if c == K[0] or c == K[1]:
            stage = False
            if c == K[0]:
                for k in range(nvals[r]):
                    if tags[r, k] != 0 and (tags[r, k] == stag[0] or tags[r, k] == stag[1]):
                        stage = True
            if stage:
                for k in range(nvals[r]):
                    known = False
                    for a in range(3):
                        if tags[r, k] == stag[a]:
                            st[3 + a] = vals[r, k]
                            known = True
                    if not known:
                        stage = False
                if not stage:       # a word that is no stage axis: the general reader
                    if ne < err_line.shape[0]:
                        err_line[ne] = lines[r]
                        err_kind[ne] = 4
                    ne += 1
                    continue
                if st[11] > 0:
                    st[10] += 1
                st[11] = 1
                if st[7] > 0:
                    if ne < err_line.shape[0]:
                        err_line[ne] = lines[r]
                        err_kind[ne] = 6
                    ne += 1
                continue
            got = 0
            feed = -1.0
            for k in range(nvals[r]):
                t = tags[r, k]
                known = t != 0 and t == ftag
                for a in range(3):
                    if t != 0 and t == mtag[a]:
                        st[a] = vals[r, k]
                        got += 1
                        known = True
                if t == ftag:
                    feed = vals[r, k]
                if not known:       # another word on a move line (S, M, an axis, ...): the general reader
                    got = 0
                    break
            if got == 0:
                if ne < err_line.shape[0]:
                    err_line[ne] = lines[r]
                    err_kind[ne] = 4
                ne += 1
                continue
            if c == K[1]:
                if feed >= 0:
                    st[8] = feed
                vsp = st[8] * scale / feed_s
                vj = False
            else:
                vsp = (feed if feed >= 0 else 0.0) * scale / feed_s
                vj = True
            m0 = st[0] * scale
            m1 = st[1] * scale
            m2 = st[2] * scale
            vx, vsx, vlx = _axis(amode[0], m0, st[3] * scale, origin[0])
            vy, vsy, vly = _axis(amode[1], m1, st[4] * scale, origin[1])
            vz, vsz, vlz = _axis(amode[2], m2, st[5] * scale, origin[2])
            vpw = st[6] * pa / pb
            von = st[7] > 0
            total[0] += 1
            if check and move_bits(vx, vy, vz, vlx, vly, vlz, vsx, vsy, vsz, vpw, vsp, np.nan, von, vj,
                                   lim, flags) == 0:
                continue
            x[n] = vx
            y[n] = vy
            z[n] = vz
            sx[n] = vsx
            sy[n] = vsy
            sz[n] = vsz
            lx[n] = vlx
            ly[n] = vly
            lz[n] = vlz
            pw[n] = vpw
            sp[n] = vsp
            jmp[n] = vj
            on[n] = von
            blk[n] = np.int32(st[10])
            ln[n] = lines[r]
            pln[n] = np.int64(st[9])
            n += 1
        elif c == K[2]:
            if nvals[r] != 1:
                if ne < err_line.shape[0]:
                    err_line[ne] = lines[r]
                    err_kind[ne] = 5
                ne += 1
                continue
            st[6] = vals[r, 0]
            st[9] = lines[r]
            if not has_on:
                st[7] = 1
        elif c == K[3]:
            st[7] = 1
        elif c == K[4]:
            st[7] = 0
    return n, ne


@njit(cache=True, error_model="numpy", inline="always")
def _axis(mode, m, s, origin):
    """(machine, stage, fine) µm of one axis from its move value ``m`` and stage value ``s`` (µm)."""
    if mode == AXIS_GALVO:
        return s + m, s, m
    if mode == AXIS_FOCUS_STAGE:
        return m, m, m - s
    return m, m, m - origin


def _tag(s: str) -> int:
    return ord(s.upper()) if s else 0


class StepReader:
    """Read a step-dialect file into :class:`Moves` chunks (µm, mW, µm/s).

    ``amode`` (3,) AXIS_* per axis, ``origin_um`` (3,) the program origin; ``check`` None or
    (lim, flags) from :func:`~bioslicer.programs.checks.limits` (then only failing moves are kept).
    """

    def __init__(self, fmt: StepFormat, spec, printer, amode, origin_um, stage_letters=("", "", ""),
                 check=None, fast_words=(), canonical=None) -> None:
        self.fmt = fmt
        cmd = fmt.cmd
        # the fast reader knows the move, power and laser words and the header words that agree with
        # the profile (``fast_words``); any other word sends the program to the general reader
        roles = ("jump", "mark", "power", "laser_on", "laser_off", "stage_move", "end")
        origin_line = cmd["set_origin"].format() if "set_origin" in cmd else None
        self.kw = T.Keywords([cmd[r].keyword for r in roles if r in cmd] + list(fast_words)
                             + ([origin_line] if origin_line else []))
        self.canonical = canonical
        roles = ("jump", "mark", "power", "laser_on", "laser_off")
        self.K = np.array([self.kw.code.get(cmd[r].keyword, -99) if r in cmd else -99 for r in roles]
                          + [self.kw.code.get(origin_line, -99) if origin_line else -99], np.int64)
        if self.K[0] == self.K[1]:
            raise BioslicerError(f"dialect {spec.name}: jump and mark commands must start with different words")
        self.has_on = "laser_on" in cmd
        mt = cmd["mark"]
        tag_of = dict(zip(mt.slots, mt.tags))
        self.mtag = np.array([_tag(tag_of.get(a, "")) for a in ("x", "y", "z")], np.int64)
        self.ftag = _tag(tag_of.get("f", ""))
        self.stag = np.array([_tag(s) for s in stage_letters], np.int64)
        self.comment = spec.comment
        self.pa, self.pb, check, self.to_mw = reader_power(printer, check)
        self.amode = np.asarray(amode, np.int64)
        self.origin = np.asarray(origin_um, np.float64)
        self.check = check is not None
        self.lim, self.flags = check if check is not None else (np.zeros(N_LIMITS), np.zeros(3, np.bool_))

    def iter_moves(self, path):
        """Yield :class:`Moves` chunks of the file at ``path`` (of ``canonical.text`` when given).

        Raises :class:`~bioslicer.programs.general.NeedsGeneral` at a line the fast reader cannot
        read exactly (not when reading the general reader's plain text).
        """
        if self.canonical is not None:
            yield from canonical_chunks(self._chunks(self.canonical.text, path), self.canonical)
        else:
            yield from self._chunks(path, path)

    def _chunks(self, source, path):
        st = np.zeros(12)
        st[9] = -1
        st[8] = np.nan           # no feed yet: a feed move names it
        files = [str(path)]
        out = None
        for rec, _ in T.ChunkReader(source, self.kw, self.comment):
            R = len(rec["codes"])
            if out is None or len(out["x"]) < R or not self.check:
                out = new_move_arrays(max(R, 1))
            el, ek = np.empty(32, np.int64), np.empty(32, np.int64)
            total = np.zeros(1, np.int64)
            n, ne = _read_step(rec["codes"], rec["lines"], rec["nvals"], rec["vals"], rec["tags"], self.K,
                               self.has_on, self.mtag, self.stag, self.ftag, st, float(self.fmt.scale_um),
                               float(self.fmt.feed_s), self.pa, self.pb, self.amode, self.origin, self.check,
                               self.lim, self.flags, out["x"], out["y"], out["z"], out["lx"], out["ly"], out["lz"],
                               out["sx"], out["sy"], out["sz"], out["power_mw"], out["speed_um_s"], out["laser_on"],
                               out["jump"], out["block"], out["line"], out["power_line"], el, ek, total)
            kinds = ek[:min(ne, 32)]
            if self.canonical is None and ne and (ne > 32 or bool((kinds != 6).any())):
                raise NeedsGeneral(path)
            mv = moves_from_arrays(n, 0, files, **out)
            if self.to_mw is not None:
                self.to_mw(mv)
            mv.n_total = int(total[0])
            mv.problems = [(0, int(el[i]), _ERR[int(ek[i])]) for i in range(min(ne, 32))]
            yield mv


# ----------------------------------------------------------------------------- G-code
ONE_FILE = True   # one main file: write_program writes the blocks straight into it


def _format(printer, spec) -> StepFormat:
    fmt = StepFormat(printer, spec)
    limit = spec.get("max_line_chars")
    if limit:
        longest = int(max(fmt.ts.bound)) - 1
        if longest > int(limit):
            raise BioslicerError(f"printer profile {printer.name}: a {spec.name} line could reach {longest} characters "
                                 f"(the controller takes {limit}); shorten program.power_command or lower decimals")
    return fmt


def prepare(printer, spec) -> None:
    """Refuse a profile the G-code writer cannot use (checked once, before any block is written)."""
    _format(printer, spec)


def fragment_path(w, b: int, staging: Path) -> Path:
    """Where block ``b``'s text fragment of a one-file step program is staged."""
    return staging / f"{w.name}_block_{b:04d}{w.spec.get('main_suffix', '')}.part"


def main_path(w, staging: Path) -> Path:
    """The staged main file of a one-file step program."""
    return staging / f"{w.name}{w.spec.get('main_suffix', '')}"


class DirectMain:
    """The main file of a one-file program written by one process, the blocks straight into it.

    Workers write each block to its own fragment and :func:`concat_main` copies them into the
    main file; one process (:func:`~bioslicer.programs.write_program`) has no need for the copy,
    which doubles the bytes written (and, past the kernel's dirty-page limit, the disk time). The
    header needs the counts before the first block: ``counts`` as
    :meth:`~bioslicer.programs.ProgramWriter.finish` computes them from the parts.
    """

    def __init__(self, counts: dict) -> None:
        self.counts = dict(counts)
        self.fh = None

    def file(self, path: Path, head: str):
        """The open main file (created with ``head`` on first use)."""
        if self.fh is None:
            self.fh = AtomicFile(path, hashed=False, fsync=False)
            self.fh.write(head)
        return self.fh

    def close(self, path: Path, head: str, tail: str, counts: dict) -> Path:
        """Write ``tail`` and rename the main file into the staging folder; returns its path."""
        if counts != self.counts:
            raise ValueError(f"program counts changed while writing: {self.counts} then {counts}")
        fh = self.file(path, head)
        fh.write(tail)
        self.fh = None
        fh.__exit__(None, None, None)
        return path

    def abort(self) -> None:
        """Remove the partly written main file."""
        if self.fh is not None:
            fh, self.fh = self.fh, None
            fh.__exit__(RuntimeError, None, None)


def write_fragment(w, b: int, staging: Path, emit, head) -> tuple[list, dict]:
    """Block ``b``'s text, ``emit(fh)``, into its fragment file, or straight into the main file
    when the writer has a :class:`DirectMain` (``head()`` gives the header then)."""
    if w.direct is not None:
        emit(w.direct.file(main_path(w, staging), head()))
        return [], {}
    with AtomicFile(fragment_path(w, b, staging), hashed=w.durable, fsync=w.durable, root=staging) as fh:
        emit(fh)
    return [fh.written], {}


def finish_main(w, parts, counts: dict, staging: Path, head: str, tail: str) -> list[Path]:
    """The main file: ``head``, the blocks' text in order, ``tail``. Returns [main]."""
    main = main_path(w, staging)
    if w.direct is not None:
        return [w.direct.close(main, head, tail, counts)]
    concat_main(main, head, parts, w.out_dir, tail, w.durable)
    return [main]


def concat_main(main: Path, head: str, parts, root: Path, tail: str, fsync: bool = True) -> None:
    """Write ``head``, the parts' fragments (paths relative to ``root``) in order and ``tail``
    into ``main`` (temporary name, fsync, rename); the fragments are copied in the kernel."""
    with AtomicFile(main, hashed=False, fsync=fsync) as fm:
        fm.write(head)
        for part in parts:
            for rel in part.files:
                fm.append_file(root / rel)
        fm.write(tail)


def _head(w, counts: dict) -> str:
    printer, spec = w.printer, w.spec
    fmt = _format(printer, spec)
    origin = program_origin_um(printer)
    cm = spec.comment[0]
    uc = spec.get("unit_commands", {}).get(fmt.unit)
    head = [f"{cm} {t}" for t in provenance_lines(counts, printer, w.provenance, "gcode")]
    has_origin = "origin_um" in printer.program
    head.append(f"{cm} origin_um {origin[0]:g} {origin[1]:g} {origin[2]:g}" if has_origin else
                f"{cm} part origin = where the machine stands at the start (G92)")
    head.append(f"{cm} unit {fmt.unit}; feed per {printer.program.get('feed_per', 'min')}")
    if uc:
        head.append(uc)
    head.append(fmt.cmd["feed_mode"].format())
    head.append(fmt.cmd["absolute"].format())
    if not has_origin:
        head.append(fmt.cmd["set_origin"].format())
    head.append(fmt.cmd["laser_off"].format())
    return fmt.eol.join(head) + fmt.eol


def write_block(w, b: int, toolpath, staging: Path) -> tuple[list, dict]:
    """Write block ``b``'s G-code (its marks; the first sets the power) under ``staging``."""
    fmt = _format(w.printer, w.spec)

    def emit(fh):
        fh.write(f"{w.spec.comment[0]} block {b}, {toolpath.n_marks} marks{fmt.eol}")
        emit_marks(fmt, w.printer, toolpath, 0, toolpath.n_marks, program_origin_um(w.printer), fh)

    return write_fragment(w, b, staging, emit, lambda: _head(w, w.direct.counts))


def write_main(w, parts, counts: dict, staging: Path) -> list[Path]:
    """Write ``<name>.gcode``: header, the blocks' text in order, end. Returns [main]."""
    fmt = _format(w.printer, w.spec)
    return finish_main(w, parts, counts, staging, _head(w, counts), fmt.cmd["end"].format() + fmt.eol)


def fast_words(fmt, printer) -> list[str]:
    """Header words of the plain G-code the fast reader reads (they agree with the profile)."""
    words = ["G90", "G17"]
    if fmt.unit == "mm":
        words.append("G21")
    if printer.program.get("feed_per", "s") == "min":
        words.append("G94")
    return words


def iter_moves(path, printer, spec, check=None):
    """Yield :class:`Moves` chunks of a G-code program (only the failing moves when ``check`` is
    (lim, flags) from :func:`~bioslicer.programs.checks.limits`).

    A program the fast reader cannot read line by line is read by
    :class:`~bioslicer.programs.general.GcodeInterpreter`: then ``None`` is yielded first (drop
    what came before) and the chunks of the general reading follow.
    """
    fmt = _format(printer, spec)
    args = (fmt, spec, printer, [AXIS_SCAN_STAGE] * 3, program_origin_um(printer))
    try:
        yield from StepReader(*args, check=check, fast_words=fast_words(fmt, printer)).iter_moves(path)
    except NeedsGeneral:
        yield None
        can = GcodeInterpreter(fmt, printer).read(Path(path))
        yield from StepReader(*args, check=check, canonical=can).iter_moves(path)
