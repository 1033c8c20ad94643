"""Nanoscribe GWL: a main ``<name>_job.gwl`` that positions the stage and includes one file per block.

Main file: ``%`` provenance header, the machine state (:func:`header_state`: ``InvertZAxis``,
scan mode, ``ContinuousMode``, galvo acceleration, piezo settling, stage velocity, offsets,
``PowerScaling``, ``DefocusFactor 1``, tilt correction), then per block the stage move
(``MoveStageX/Y`` relative to the start position, or ``StageGotoX/Y`` with a profile stage
origin), ``FindInterfaceAt`` (per the recipe's ``find_interface``), ``AddZDrivePosition`` when
the block's z origin changes (parts taller than the piezo range) and
``include <name>_blocks\\<name>_block_NNNN.gwl``.

Main file lines depend only on the Blocks table and which blocks have marks (blocks without
marks get no stage move and no include; file names keep the block's table index).

Block file (written by :func:`write_block` from that block's marks alone; the first mark sets
every modal value it uses, so block files are independent of each other): per layer
``ZOffset`` (the layer's nominal height above the block's fine-axis zero), ``ScanSpeed`` and
``LaserPower`` only where they change, each mark as ``x y z`` lines closed by
``Write`` (split into lists of at most ``points_per_write`` points that share their end points),
or ``x y z p`` lines between ``PowerValuesOn``/``PowerValuesOff`` when power varies along the mark.
Point z is relative to the ZOffset. Power is in the printer's power unit (percent of the
reference power on GT-class systems, mW on newer ones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit, prange

from ..errors import BioslicerError
from ..fileio import AtomicFile
from ..kernel.pool import wait_for_warmup
from . import _format as F
from . import tokenize as T
from ._format import put_line, put_line_hot, put_milli, qround
from .checks import (_L_CIRCLE, _L_HALF, _L_IFACE, _L_PMAX, _L_SHI, _L_SLO, _L_VJUMP, _L_VMAX, _L_VMIN, _L_ZHI,
                     _L_ZLO, N_LIMITS, move_bits)
from .dialects import (line_ending, moves_from_arrays, new_move_arrays, program_origin_um, provenance_lines,
                       reader_power)
from .general import GwlInterpreter, NeedsGeneral, canonical_chunks

_ROLES_OUT = ("point", "point_power", "write", "laser_power", "scan_speed", "power_values_on",
              "power_values_off", "z_offset")
_ROLES_IN = ("write", "laser_power", "scan_speed", "power_scaling", "power_values_on", "power_values_off",
             "z_offset", "add_z_offset", "x_offset", "y_offset", "stage_x", "stage_y", "add_z_drive",
             "find_interface", "include", "galvo_mode", "piezo_mode", "connect_off", "connect_on",
             "continuous_mode", "move_stage_x", "move_stage_y", "invert_z", "defocus_factor")
# words the fast reader knows without a dialect template (the general reader explains the rest)
_EXTRA_IN = {"move_stage_x": "MoveStageX", "move_stage_y": "MoveStageY", "invert_z": "InvertZAxis"}
# words that cannot move or expose: read (and ignored) by the fast reader
_NO_OP_IN = ("StageVelocity", "GalvoAcceleration", "PiezoSettlingTime", "TiltCorrectionOff", "TiltCorrectionOn",
             "MeasureTilt")


def _templates(spec, printer) -> F.TemplateSet:
    d = printer.decimals
    return F.TemplateSet(spec.commands, {"x": d, "y": d, "z": d, "p": spec.decimals.get("power", 3),
                                         "v": spec.decimals.get("speed", 1),
                                         "s": spec.decimals.get("scaling", 3)}, line_ending(printer, spec))


@njit(cache=True, error_model="numpy")
def _const_power(pp, ms, m, ps):
    """(quantized power, True) when every point of mark ``m`` has the same quantized power, else (0, False)."""
    s = ms[m]
    q0 = qround(pp[s] * ps)
    for i in range(s + 1, ms[m + 1]):
        if qround(pp[i] * ps) != q0:
            return q0, False
    return q0, True


@njit(cache=True, nogil=True, error_model="numpy")
def _chunk_states(pp, ms, mlayer, layer_z, mspeed, oz, cs, ps, vs, cb, state, st_out):
    """Modal state [zoff, speed, power, has_zoff, has_speed, has_power] at the start of each chunk.

    ``state`` is the state at the batch start (local mark 0); on return it holds the state after
    the batch's last mark. ZOffset and ScanSpeed come from the mark just before a chunk; the power
    from the last constant-power mark before it, searched back only to the previous chunk start
    (whose state is known), so the whole batch is read at most once.
    """
    K = cb.shape[0] - 1
    for c in range(K + 1):
        m = cb[c]
        prev = st_out[c - 1] if c > 0 else state
        if c == 0 or m == cb[0]:
            cur = state.copy()
        else:
            cur = np.empty(6, np.int64)
            cur[0] = qround((layer_z[mlayer[m - 1]] - oz) * cs)
            cur[1] = qround(mspeed[m - 1] * vs)
            cur[3] = 1
            cur[4] = 1
            cur[2] = prev[2]
            cur[5] = prev[5]
            for mm in range(m - 1, cb[c - 1] - 1, -1):
                q0, const = _const_power(pp, ms, mm, ps)
                if const:
                    cur[2] = q0
                    cur[5] = 1
                    break
        if c < K:
            st_out[c, :] = cur
        else:
            state[:] = cur


@njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _render_chunks(x, y, z, pw, pp, ms, mlayer, layer_z, mspeed, ox, oy, oz, cs, ps, vs, ppw, T,
                   ops, op_start, lit, pow10, digits2, plain, crlf, int3, frac3, wlit, room, cb, st0, off, end, out,
                   lens):
    """Quantize, emit and render GWL block lines for the chunks of marks ``cb`` in parallel.

    x, y, z, pw, pp (N,) point coordinates (µm, part), power (mW) and power (program unit) of the
    batch; ms (M+1,) local mark starts; mlayer, mspeed (M,); layer_z (L,); ox, oy, oz the block
    origin (µm); cs, ps, vs = 10**decimals of coordinates, power and speed; ppw points per Write; T template ids in
    ``_ROLES_OUT`` order; plain: the point template is ``{x} {y} {z}`` with 3 decimals, written
    by :func:`~bioslicer.programs._format.put_milli` (tables ``int3``, ``frac3``) and ended by
    ``\\r\\n`` (crlf) or ``\\n``, else by the template; wlit the bytes of the Write line; cb (K+1,)
    local mark bounds of the chunks; st0 (K, 6) state at each chunk start; off (K,) and end (K,)
    where each chunk may write in ``out``. Fills ``lens`` (K,) with the bytes of each chunk, or -1
    for a chunk that did not fit: no mark or point line starts with fewer than ``room`` bytes left
    (the bound of a point line, a Write line and a mark's other lines), -2 for a chunk with a NaN
    or infinite x, y, z, power or speed (checked here, where the values are read anyway).
    Byte-identical to the former per-line table + :meth:`~bioslicer.programs._format.TemplateSet.render`.

    Kept a ``prange`` kernel (unlike the others, see :mod:`bioslicer.kernel.pool`): numba compiles
    the parallel region with its arrays marked ``noalias``, and this byte-writing loop runs about
    5x faster per core with that than as a serial kernel. ``nogil``: the previous batch is written
    by another thread meanwhile (:class:`~bioslicer.programs._format.WriteBehind`).
    """
    zero = np.int64(0)   # not the literal 0: one compile of put_line, not one per literal pattern
    nw = wlit.shape[0]
    for c in prange(cb.shape[0] - 1):
        zs, vsd, pst = st0[c, 0], st0[c, 1], st0[c, 2]
        hz, hv, hp = st0[c, 3], st0[c, 4], st0[c, 5]
        pos = off[c]
        lim = end[c] - room
        full = False
        finite = True
        for m in range(cb[c], cb[c + 1]):
            if pos > lim:
                full = True
                break
            s = ms[m]
            e = ms[m + 1]
            finite = finite and mspeed[m] - mspeed[m] == 0.0     # False for NaN and +-inf
            qz = qround((layer_z[mlayer[m]] - oz) * cs)
            if hz == 0 or qz != zs:
                pos = put_line(T[7], qz, zero, zero, zero, ops, op_start, lit, out, pos, pow10, digits2)
                zs = qz
                hz = 1
            qv = qround(mspeed[m] * vs)
            if hv == 0 or qv != vsd:
                pos = put_line(T[4], qv, zero, zero, zero, ops, op_start, lit, out, pos, pow10, digits2)
                vsd = qv
                hv = 1
            q0 = qround(pp[s] * ps)
            const = True
            for i in range(s + 1, e):
                if qround(pp[i] * ps) != q0:
                    const = False
                    break
            if const:
                if hp == 0 or q0 != pst:
                    pos = put_line(T[3], q0, zero, zero, zero, ops, op_start, lit, out, pos, pow10, digits2)
                    pst = q0
                    hp = 1
            else:
                pos = put_line(T[5], zero, zero, zero, zero, ops, op_start, lit, out, pos, pow10, digits2)
            fast = const and plain
            i = s
            while True:
                j = min(i + ppw - 1, e - 1)
                for k in range(i, j + 1):
                    if pos > lim:
                        full = True
                        break
                    xk, yk, zk, wk = x[k], y[k], z[k], pw[k]
                    finite = finite and (xk - xk) + (yk - yk) + (zk - zk) + (wk - wk) == 0.0
                    qx = qround((xk - ox) * cs)
                    qy = qround((yk - oy) * cs)
                    qzk = qround((zk - oz) * cs) - qz
                    if fast:
                        pos = put_milli(qx, out, pos, int3, frac3, digits2)
                        out[pos] = 32
                        pos = put_milli(qy, out, pos + 1, int3, frac3, digits2)
                        out[pos] = 32
                        pos = put_milli(qzk, out, pos + 1, int3, frac3, digits2)
                        if crlf:
                            out[pos] = 13
                            pos += 1
                        out[pos] = 10
                        pos += 1
                    elif const:
                        pos = put_line_hot(T[0], qx, qy, qzk, zero, ops, op_start, lit, out, pos, pow10, digits2)
                    else:
                        pos = put_line(T[1], qx, qy, qzk, qround(pp[k] * ps), ops, op_start, lit, out, pos,
                                       pow10, digits2)
                if full:
                    break
                for t in range(nw):
                    out[pos + t] = wlit[t]
                pos += nw
                if j >= e - 1:
                    break
                i = j
            if full:
                break
            if not const:
                pos = put_line(T[6], zero, zero, zero, zero, ops, op_start, lit, out, pos, pow10, digits2)
        lens[c] = -2 if not finite else (-1 if full else pos - off[c])


# points per chunk (one prange task) and chunks per batch (one kernel call, one reused buffer)
CHUNK_POINTS = 1 << 14
BATCH_CHUNKS = 16
CHECKS_FINITE = True     # the renderer refuses NaN and infinite values (ProgramWriter need not look first)


class _Lines:
    """What the renderer needs besides the marks: templates, their ids, whether the point lines
    are plain ``x y z`` and end with CRLF, the Write line's bytes."""

    def __init__(self, printer, spec) -> None:
        self.ts = ts = _templates(spec, printer)
        self.T = np.array([ts[r] for r in _ROLES_OUT], dtype=np.int64)
        eol = line_ending(printer, spec)
        self.plain = (ts.templates[_ROLES_OUT[0]].text == "{x} {y} {z}" and printer.decimals == 3
                      and eol in ("\n", "\r\n"))
        self.crlf = eol == "\r\n"
        self.wlit = np.frombuffer(ts.render(self.T[2:3], np.zeros((1, F.TEMPLATE_SLOTS), np.int64)),
                                  dtype=np.uint8).copy()
        T, b = self.T, ts.bound
        # byte bounds: a point line, a Write line, a mark's other lines (ZOffset, ScanSpeed,
        # LaserPower or PowerValuesOn, PowerValuesOff); typical: numbers of up to 10 characters
        self.point_b = int(max(b[T[0]], b[T[1]]))
        self.write_b = int(b[T[2]])
        self.mark_b = int(b[T[7]] + b[T[4]] + max(b[T[3]], b[T[5]]) + b[T[6]])
        typ = b - np.array([(F.BOUND_PER_SLOT - 10) * len(ts.templates[n].slots) for n in ts.names])
        self.point_typ = int(typ[T[0]])          # power-varying marks: see _write_block
        self.mark_typ = int(max(typ[T[7]], typ[T[4]], typ[T[3]], typ[T[5]]))    # one of them per mark
        self.room = self.point_b + self.write_b + self.mark_b

    def chunk_bytes(self, pts: np.ndarray, marks: np.ndarray, ppw: int, safe: bool) -> np.ndarray:
        """Bytes to reserve for chunks of ``pts`` points and ``marks`` marks, plus :attr:`room`:
        ``safe``, an upper bound (a mark of n points has n + L - 1 point lines in
        L = ceil((n - 1) / (ppw - 1)) Write lists), else an estimate for typical lines."""
        rep = pts // (ppw - 1)            # Sum L <= rep + marks; point lines <= pts + rep
        if safe:
            return (pts + rep) * self.point_b + (marks + rep) * self.write_b + marks * self.mark_b + self.room
        return (pts + rep) * self.point_typ + (marks + rep) * self.write_b + marks * self.mark_typ + self.room


def _write_block(fb, toolpath, printer, lines, m0, m1, o, dec, pdec, vdec, ppw) -> None:
    """Stream the lines of block marks [m0, m1) (block origin ``o``) into ``fb`` in batches of chunks,
    rendered into two buffers in turn, each written while the next one renders
    (:class:`~bioslicer.programs._format.WriteBehind`)."""
    wait_for_warmup("write")
    ts, T = lines.ts, lines.T
    ms_all = toolpath.mark_start
    cs, ps, vs = float(10 ** dec), float(10 ** pdec), float(10 ** vdec)
    state = np.zeros(6, np.int64)
    cb_all = F.chunk_bounds(ms_all, m0, m1, CHUNK_POINTS)
    bufs = [F.ChunkBuffer(), F.ChunkBuffer()]    # per block: kept between blocks they would add to the peak RSS
    safe = False
    with F.WriteBehind(fb) as wb:
        for n, k in enumerate(range(0, len(cb_all) - 1, BATCH_CHUNKS)):
            buf = bufs[n % 2]
            cb = cb_all[k:k + BATCH_CHUNKS + 1]
            a, c = int(cb[0]), int(cb[-1])
            p0, p1 = int(ms_all[a]), int(ms_all[c])
            ms = ms_all[a:c + 1] - p0
            cbl = cb - a
            pw = toolpath.power_mw[p0:p1]
            pp = np.ascontiguousarray(printer.power_to_program(pw), dtype=np.float64)
            x, y, z = toolpath.x_um[p0:p1], toolpath.y_um[p0:p1], toolpath.z_um[p0:p1]
            ml, msp = toolpath.mark_layer[a:c], toolpath.mark_speed_um_s[a:c]
            st0 = np.empty((len(cb) - 1, 6), np.int64)
            _chunk_states(pp, ms, ml, toolpath.layer_z_um, msp, o[2], cs, ps, vs, cbl, state, st0)
            pts, marks = ms_all[cb[1:]] - ms_all[cb[:-1]], np.diff(cb)
            lens = np.zeros(len(cb) - 1, np.int64)
            while True:        # typical sizes first; a chunk that did not fit: the batch again with bounds
                off = buf.place(lines.chunk_bytes(pts, marks, ppw, safe))
                _render_chunks(x, y, z, pw, pp, ms, ml, toolpath.layer_z_um, msp, o[0], o[1], o[2], cs, ps, vs, ppw, T,
                               ts.ops, ts.op_start, ts.lit, F._POW10, F._DIGITS2, lines.plain, lines.crlf, F._INT3,
                               F._FRAC3, lines.wlit, lines.room, cbl, st0, off[:-1], off[1:], buf.out, lens)
                if lens.min() >= 0:
                    break
                if lens.min() == -2:
                    from . import non_finite_error
                    raise non_finite_error(toolpath) or BioslicerError("the toolpath has a NaN or infinite value")
                if safe:
                    raise AssertionError("GWL chunk bound too small")      # cannot happen: the bound holds
                safe = True       # for the rest of the block
            wb.submit(buf, off, lens)


def prepare(printer, spec) -> None:
    """Refuse a profile the GWL writer cannot use (checked once, before any block is written)."""
    spec.check_printer(printer)
    if int(printer.program["points_per_write"]) < 2:
        raise BioslicerError(f"printer profile {printer.name}: 'program.points_per_write' must be at least 2")
    if printer.program["scan_mode"] not in ("galvo", "piezo"):
        raise BioslicerError(f"printer profile {printer.name}: 'program.scan_mode' must be 'galvo' or 'piezo'")
    if not printer.immersion:
        raise BioslicerError(f"printer profile {printer.source or printer.name}: the gwl dialect needs "
                             "[objective] immersion = \"dill\", \"oil\", \"water\" or \"air\" (it sets InvertZAxis)")
    for key in ("galvo_acceleration", "piezo_settling_time_ms"):
        v = printer.program[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise BioslicerError(f"printer profile {printer.name}: 'program.{key}' must be a number >= 0")


def tilt_refusal(printer) -> str | None:
    """Why the printer cannot correct tilt and what to do (None when it can: GWL in piezo scan mode)."""
    if printer.program.get("scan_mode") == "piezo":
        return None
    return ("it scans in GalvoScanMode, which has no tilt correction; use a profile with program.scan_mode = "
            "\"piezo\", or level the substrate and set tilt_correction = \"off\"")


def header_state(printer, spec, tilt_points: int = 0) -> list[str]:
    """The machine-state lines at the top of every GWL job: nothing is left to the previous job.

    Axis direction from the objective's immersion (``InvertZAxis 1`` for dip-in), scan mode,
    ``ContinuousMode``, ``ConnectPoints`` (piezo mode only: it changes how the piezo scans),
    galvo acceleration, piezo settling time, stage velocity, zero x/y/z offsets, power scaling 1,
    ``DefocusFactor 1`` (the recipe's ``focal_shift_factor`` is already in the z written) and
    ``TiltCorrectionOff``, or with ``tilt_points`` n ``MeasureTilt n`` and ``TiltCorrectionOn``
    (before the first ``FindInterfaceAt``, which the caller writes).
    """
    cmd = {k: F.Template.parse(v) for k, v in spec.commands.items()}
    dec = printer.decimals
    prog = printer.program
    piezo = prog["scan_mode"] == "piezo"
    out = [cmd["invert_z"].format(n="1" if printer.immersion == "dill" else "0"),
           cmd["piezo_mode" if piezo else "galvo_mode"].format(),
           cmd["continuous_mode"].format()]
    if piezo:
        out.append(cmd["connect_on" if prog.get("connect_points", False) else "connect_off"].format())
    out += [cmd["galvo_acceleration"].format(a=F.fmt(float(prog["galvo_acceleration"]), 2)),
            cmd["piezo_settling"].format(t=F.fmt(float(prog["piezo_settling_time_ms"]), 1)),
            cmd["stage_velocity"].format(v=F.fmt(printer.stage_speed_um_s, 1)),
            cmd["x_offset"].format(x=F.fmt(0.0, dec)),
            cmd["y_offset"].format(y=F.fmt(0.0, dec)),
            cmd["z_offset"].format(z=F.fmt(0.0, dec)),
            cmd["power_scaling"].format(s=F.fmt(1.0, spec.decimals.get("scaling", 3))),
            cmd["defocus_factor"].format(f="1")]
    if tilt_points:
        out += [cmd["measure_tilt"].format(n=str(int(tilt_points))), cmd["tilt_on"].format()]
    else:
        out.append(cmd["tilt_off"].format())
    return out


def _block_file(spec, name: str, b: int) -> tuple[str, str]:
    """(folder, file name) of block ``b``'s file, relative to the main file."""
    return (f"{name}{spec.get('block_dir_suffix', '_blocks')}",
            f"{name}{spec.get('block_suffix', '_block_{index:04d}.gwl').format(index=b)}")


def write_block(w, b: int, toolpath, staging: Path) -> tuple[list, dict]:
    """Write block ``b``'s file ``<name>_blocks/<name>_block_NNNN.gwl`` under ``staging``.

    ``w`` is the :class:`~bioslicer.programs.ProgramWriter`; ``toolpath`` holds block b's marks
    only. The text depends on nothing else: the first mark sets ZOffset, ScanSpeed and (for a
    constant-power mark) LaserPower. Returns ([Written], info).
    """
    printer, spec = w.printer, w.spec
    lines = _Lines(printer, spec)
    dec = printer.decimals
    pdec = spec.decimals.get("power", 3)
    vdec = spec.decimals.get("speed", 1)
    o = w.blocks.origin_um[b]
    st = o + program_origin_um(printer)
    folder, fname = _block_file(spec, w.name, b)
    later = w.sync_later        # hashed and fsynced by the stream's thread (one process)
    with AtomicFile(staging / folder / fname, hashed=w.durable and not later, fsync=w.durable and not later,
                    root=staging) as fb:
        fb.write(f"{spec.comment} block {b}: origin x {F.fmt(st[0], dec)} y {F.fmt(st[1], dec)} "
                 f"z {F.fmt(st[2], dec)} um, {toolpath.n_marks} marks{line_ending(printer, spec)}")
        _write_block(fb, toolpath, printer, lines, 0, toolpath.n_marks, o, dec, pdec, vdec,
                     int(printer.program["points_per_write"]))
    return [fb.written], {}


def main_path(w, staging: Path) -> Path:
    """Where :func:`write_main` writes the main file under ``staging``."""
    return staging / f"{w.name}{w.spec.get('main_suffix', '_job.gwl')}"


def main_head(w, counts: dict) -> str:
    """The main file's header: provenance comments and the whole machine state (line ends included)."""
    printer, spec = w.printer, w.spec
    cm = spec.comment
    absolute = "origin_um" in printer.program
    eol = line_ending(printer, spec)
    head = [f"{cm} {t}" for t in provenance_lines(counts, printer, w.provenance, "gwl")]
    head.append(f"{cm} stage {'absolute (program.origin_um)' if absolute else 'relative to the start position'}"
                f"; interface finding {w.find_interface}")
    head += header_state(printer, spec, w.tilt_points)
    return eol.join(head) + eol


def main_block(w, part, carry: dict) -> str:
    """The main file's lines for one block with marks (``part``: its BlockPart): the stage move,
    the interface finding, the z drive and the include. ``carry`` (empty for the first block)
    holds what the lines of the blocks before it leave behind and is updated."""
    printer, spec = w.printer, w.spec
    cm = spec.comment
    cmd = {k: F.Template.parse(v) for k, v in spec.commands.items()}
    dec = printer.decimals
    absolute = "origin_um" in printer.program
    sep = spec.get("path_separator", "\\")
    mode = w.find_interface
    eol = line_ending(printer, spec)
    fz = F.fmt(float(printer.program.get("find_interface_at_um", 0.0)), dec)
    stage_q = carry.get("stage_q", np.zeros(2, np.int64))
    zdrive_q = carry.get("zdrive_q", 0)
    first = carry.get("first", True)
    b = part.block
    st = w.blocks.origin_um[b] + program_origin_um(printer)
    folder, fname = _block_file(spec, w.name, b)
    lines = [f"{cm} block {b} index {tuple(int(v) for v in w.blocks.index[b])}, {part.n_marks} marks"]
    q = np.array([int(F.quantize(st[0], dec)), int(F.quantize(st[1], dec))], np.int64)
    if absolute:
        lines += [cmd["stage_x"].format(x=F.fmt(st[0], dec)), cmd["stage_y"].format(y=F.fmt(st[1], dec))]
    else:
        d = q - stage_q
        lines += [cmd["move_stage_x"].format(x=F.fmt(d[0] / 10 ** dec, dec)),
                  cmd["move_stage_y"].format(y=F.fmt(d[1] / 10 ** dec, dec))]
    if (mode == "every-block" and int(w.blocks.index[b][2]) == 0) or (mode == "once" and first):
        lines.append(cmd["find_interface"].format(z=fz))
        zdrive_q = 0
    zq = int(F.quantize(st[2], dec))
    if zq != zdrive_q:
        lines.append(cmd["add_z_drive"].format(z=F.fmt((zq - zdrive_q) / 10 ** dec, dec)))
        zdrive_q = zq
    lines.append(cmd["include"].format(path=f"{folder}{sep}{fname}"))
    carry.update(stage_q=q, zdrive_q=zdrive_q, first=False)
    return eol.join(lines) + eol


def write_main(w, parts, counts: dict, staging: Path) -> list[Path]:
    """Write ``<name>_job.gwl`` under ``staging``: header (provenance and the whole machine state,
    :func:`main_head`), then per block with marks the stage move, the interface finding, the z
    drive and the include of its file (:func:`main_block`). Returns [main, block files...]
    (staging paths).

    The stage moves relative to where the operator placed it (``MoveStageX/Y``, part (0, 0) at
    the start position) unless the profile gives a stage origin (``program.origin_um``: then
    ``StageGotoX/Y`` to absolute positions). ``FindInterfaceAt`` follows ``w.find_interface``:
    'every-block' after the stage reaches each bottom-tier block, 'once' at the first block,
    'off' never; blocks above inherit the last interface found.
    """
    main = main_path(w, staging)
    files = [main]
    carry: dict = {}
    with AtomicFile(main, hashed=False, fsync=w.durable) as fm:
        fm.write(main_head(w, counts))
        for part in parts:
            fm.write(main_block(w, part, carry))
            folder, fname = _block_file(w.spec, w.name, part.block)
            files.append(staging / folder / fname)
    return files


# ----------------------------------------------------------------------------- reading
_ERR = {1: "a point line needs 3 numbers (x y z), or 4 (x y z p) after PowerValuesOn",
        2: "unknown command (not in the GWL dialect definition)",
        3: "malformed number",
        4: "command needs one number",
        5: "DefocusFactor needs a positive factor"}
# state slots (_DF: DefocusFactor, z above the last FindInterfaceAt times it)
_SX, _SY, _SZ, _XO, _YO, _ZO, _LP, _PS, _SP, _PV, _NL, _PL, _BL, _FP, _DF = range(15)


@njit(cache=True, nogil=True, error_model="numpy")
def _read(codes, lines, nvals, vals, r0, K, st, pa, pb, check, lim, flags, x, y, z, lx, ly, lz, sx, sy, sz, pw,
          sp, on, jmp, blk, ln, pln, err_line, err_kind, total, fails):
    """Run the GWL state machine from record r0 until an include or the end.

    K: keyword codes in ``_ROLES_IN`` order; st: the carried state (``_SX`` ... ``_DF``); power in
    mW = program value * pa / pb. With ``DefocusFactor f`` every z above the interface (the z
    drive since the last ``FindInterfaceAt`` and the fine z) is read times f, as the controller
    moves it. Moves go to x ... pln (µm, mW, µm/s): every move when ``check`` is 0; when 1 only
    the moves that fail :func:`~bioslicer.programs.checks.move_bits` (``lim``, ``flags``); when 2
    every move, and the indices of the failing ones in ``fails`` (``total[1]`` of them).
    ``total[0]`` counts every move. Returns (moves written, next record, errors, stop at include).
    """
    n = 0
    ne = 0
    r = r0
    nr = codes.shape[0]
    # check 2: extremes of the moves' checked values; a move can fail a check only if they do
    fin = 0.0
    a_r2 = a_xy = a_lz1 = a_sx1 = a_sy1 = a_sz1 = a_p1 = a_v1 = a_vj = -np.inf
    a_lz0 = a_sx0 = a_sy0 = a_sz0 = a_z0 = a_p0 = a_v0 = np.inf
    nl = st[_NL]        # points since the last Write, and moves read: kept in registers in the loop
    tot = 0
    while r < nr:
        c = codes[r]
        if c == 0:
            need = 4 if st[_PV] > 0 else 3
            if nvals[r] != need:
                if ne < err_line.shape[0]:
                    err_line[ne] = lines[r]
                    err_kind[ne] = 1
                ne += 1
                r += 1
                continue
            vlx = vals[r, 0] + st[_XO]
            vly = vals[r, 1] + st[_YO]
            vlz = vals[r, 2] + st[_ZO]
            vsz = st[_SZ]
            if st[_DF] != 1.0:
                vlz *= st[_DF]
                vsz *= st[_DF]
            if st[_PV] > 0:
                vpw = vals[r, 3] * st[_PS] * pa / pb
                vpl = lines[r]
            else:
                vpw = st[_LP] * st[_PS] * pa / pb
                vpl = np.int64(st[_PL])
            first = nl == 0
            if first:
                st[_FP] = lines[r]
            nl += 1
            tot += 1
            vx = st[_SX] + vlx
            vy = st[_SY] + vly
            vz = vsz + vlz
            if check == 1 and move_bits(vx, vy, vz, vlx, vly, vlz, st[_SX], st[_SY], vsz, vpw, st[_SP], np.nan,
                                        not first, first, lim, flags) == 0:
                r += 1
                continue
            if check == 2:      # extremes of what the checks compare (finite values: their sum of v * 0 is 0)
                fin += (vx * 0.0 + vy * 0.0 + vz * 0.0) + (vlx * 0.0 + vly * 0.0 + vlz * 0.0) \
                    + (st[_SX] * 0.0 + st[_SY] * 0.0 + vsz * 0.0) + (vpw * 0.0 + st[_SP] * 0.0)
                a_r2 = max(a_r2, vlx * vlx + vly * vly)
                a_xy = max(a_xy, max(abs(vlx), abs(vly)))
                a_lz0 = min(a_lz0, vlz)
                a_lz1 = max(a_lz1, vlz)
                a_sx0 = min(a_sx0, st[_SX])
                a_sx1 = max(a_sx1, st[_SX])
                a_sy0 = min(a_sy0, st[_SY])
                a_sy1 = max(a_sy1, st[_SY])
                a_sz0 = min(a_sz0, vsz)
                a_sz1 = max(a_sz1, vsz)
                a_z0 = min(a_z0, vz)
                if first:       # a jump (laser off)
                    a_vj = max(a_vj, st[_SP])
                else:           # laser on, part of a mark
                    a_p0 = min(a_p0, vpw)
                    a_p1 = max(a_p1, vpw)
                    a_v0 = min(a_v0, st[_SP])
                    a_v1 = max(a_v1, st[_SP])
            x[n] = vx
            y[n] = vy
            z[n] = vz
            lx[n] = vlx
            ly[n] = vly
            lz[n] = vlz
            sx[n] = st[_SX]
            sy[n] = st[_SY]
            sz[n] = vsz
            pw[n] = vpw
            pln[n] = vpl
            sp[n] = st[_SP]
            jmp[n] = first
            on[n] = not first
            blk[n] = np.int32(st[_BL])
            ln[n] = lines[r]
            n += 1
        elif c == -2 or c == -3:
            if ne < err_line.shape[0]:
                err_line[ne] = lines[r]
                err_kind[ne] = 2 if c == -2 else 3
            ne += 1
        elif c == K[0]:
            nl = 0
        elif c == K[14]:
            break
        elif c == K[4]:
            st[_PV] = 1
        elif c == K[5]:
            st[_PV] = 0
        elif c > 0 and (c == K[1] or c == K[2] or c == K[3] or c == K[6] or c == K[7] or c == K[8]
                        or c == K[9] or c == K[10] or c == K[11] or c == K[12] or c == K[13] or c == K[20]
                        or c == K[21] or c == K[22] or c == K[23]):
            if nvals[r] != 1:
                if ne < err_line.shape[0]:
                    err_line[ne] = lines[r]
                    err_kind[ne] = 4
                ne += 1
            else:
                v = vals[r, 0]
                if c == K[1]:
                    st[_LP] = v
                    st[_PL] = lines[r]
                elif c == K[2]:
                    st[_SP] = v
                elif c == K[3]:
                    st[_PS] = v
                    st[_PL] = lines[r]
                elif c == K[6]:
                    st[_ZO] = v
                elif c == K[7]:
                    st[_ZO] += v
                elif c == K[8]:
                    st[_XO] = v
                elif c == K[9]:
                    st[_YO] = v
                elif c == K[10]:
                    st[_SX] = v
                elif c == K[11]:
                    st[_SY] = v
                elif c == K[12]:
                    st[_SZ] += v
                elif c == K[13]:
                    st[_SZ] = 0.0
                elif c == K[20]:
                    st[_SX] += v
                elif c == K[21]:
                    st[_SY] += v
                elif c == K[23]:
                    if v > 0:
                        st[_DF] = v
                    else:
                        if ne < err_line.shape[0]:
                            err_line[ne] = lines[r]
                            err_kind[ne] = 5
                        ne += 1
        r += 1
    st[_NL] = nl
    total[0] += tot
    if check == 2:
        # a check any move fails shows in the extremes (NaN or inf in fin): then every move is
        # checked one by one, exactly as move_bits checks it, for the indices of the failing ones
        maybe = not (fin == 0.0)
        maybe |= (a_r2 > lim[_L_HALF] * lim[_L_HALF]) if lim[_L_CIRCLE] > 0 else (a_xy > lim[_L_HALF])
        maybe |= (a_lz0 < lim[_L_ZLO]) | (a_lz1 > lim[_L_ZHI]) | (a_z0 < lim[_L_IFACE])
        maybe |= (a_sx0 < lim[_L_SLO]) | (a_sx1 > lim[_L_SHI]) | (a_sy0 < lim[_L_SLO + 1]) | \
            (a_sy1 > lim[_L_SHI + 1]) | (a_sz0 < lim[_L_SLO + 2]) | (a_sz1 > lim[_L_SHI + 2])
        maybe |= (a_p1 > lim[_L_PMAX]) | (a_p0 < 0.0)
        maybe |= flags[0] & ((a_v1 > lim[_L_VMAX]) | (flags[1] & (a_v0 < lim[_L_VMIN])) | (a_vj > lim[_L_VJUMP]))
        total[1] = _failing(x, y, z, lx, ly, lz, sx, sy, sz, pw, sp, on, jmp, n, lim, flags, fails) if maybe else 0
    return n, r, ne, r < nr


@njit(cache=True, nogil=True, error_model="numpy")
def _failing(x, y, z, lx, ly, lz, sx, sy, sz, pw, sp, on, jmp, n, lim, flags, fails):
    """Indices of the moves [0, n) that fail :func:`~bioslicer.programs.checks.move_bits` into
    ``fails``; returns their count (GWL moves: no acceleration)."""
    nf = 0
    for i in range(n):
        if move_bits(x[i], y[i], z[i], lx[i], ly[i], lz[i], sx[i], sy[i], sz[i], pw[i], sp[i], np.nan, on[i],
                     jmp[i], lim, flags) != 0:
            fails[nf] = i
            nf += 1
    return nf


class _Reader:
    """The GWL state machine over a main file and its includes, yielding :class:`Moves` chunks.

    ``check`` None: every move; else (lim, flags) from :func:`~bioslicer.programs.checks.limits`: only
    the moves failing a check, each chunk's ``n_total`` counting all of them; with ``keep_all``
    every move, and each chunk's ``failing`` the indices of those that fail a check (printers with
    a linear power calibration; else every move unchecked, as with ``check`` None). A checking
    reader reuses a chunk's arrays for the next one: use them at once, copy what you keep. ``canonical``: read
    the plain text of :class:`~bioslicer.programs.general.Canonical` (the general reader's
    output) instead of files; else a line the fast reader cannot read raises
    :class:`~bioslicer.programs.general.NeedsGeneral`.
    """

    def __init__(self, printer, spec, check=None, canonical=None, keep_all: bool = False):
        self.printer = printer
        self.spec = spec
        cmd = {k: F.Template.parse(v) for k, v in spec.commands.items()}
        for role, word in _EXTRA_IN.items():
            cmd.setdefault(role, F.Template.parse(word + " {v}"))
        words = [cmd[r].keyword for r in _ROLES_IN if r in cmd] + list(_NO_OP_IN)
        self.kw = T.Keywords(words, raw=[cmd["include"].keyword])
        self.K = np.array([self.kw.code.get(cmd[r].keyword, -99) if r in cmd else -99 for r in _ROLES_IN],
                          dtype=np.int64)
        self.include_kw = cmd["include"].keyword
        self.files: list[str] = []
        self.st = np.zeros(15)
        self.st[_PS] = 1.0
        self.st[_DF] = 1.0
        self.st[_PL] = -1
        self.st[_LP] = np.nan     # no LaserPower and no ScanSpeed yet: the checks name them
        self.st[_SP] = np.nan
        self.pa, self.pb, check, self.to_mw = reader_power(printer, check)
        self.check = 0 if check is None else 1
        if keep_all:                # every move kept, the failing ones marked: in mW only without to_mw
            self.check = 2 if check is not None and self.to_mw is None else 0
        self.reuse = self.check > 0     # a chunk's arrays are reused for the next one (its reader keeps none)
        self.lim, self.flags = check if check is not None else (np.zeros(N_LIMITS), np.zeros(3, np.bool_))
        self.canonical = canonical
        self.pieces = 16            # tokenizer pieces per chunk (1: tokenized in the reading thread alone)

    def read(self, path: Path):
        """All chunks of the program at ``path``, then the check that every list was written."""
        if self.canonical is not None:
            yield from canonical_chunks(self.run(self.canonical.text, Path(path)), self.canonical)
            files = self.canonical.files
        else:
            yield from self.run(Path(path), Path(path))
            files = self.files
        if self.st[_NL] > 0:
            mv = moves_from_arrays(0, 0, files, **new_move_arrays(0))
            ln = int(self.st[_FP])
            fi = 0
            if self.canonical is not None:
                fi, ln = int(self.canonical.src_file[ln]), int(self.canonical.src_line[ln])
            mv.problems = [(fi, ln, f"{int(self.st[_NL])} point(s) from here on are never written: no Write closes "
                                    "the list; end it with Write")]
            yield mv

    def run(self, source, path: Path, depth: int = 0, fidx: int | None = None):
        """Chunks of ``source`` (a file, or text with ``fidx``: more of the file already listed there)."""
        if depth > 8:
            raise BioslicerError(f"{path}: includes nest deeper than 8 levels; flatten the program")
        if fidx is None:
            fidx = len(self.files)
            self.files.append(str(path))
        out = None
        for rec, part in T.ChunkReader(source, self.kw, self.spec.comment, pieces=self.pieces):
            R = len(rec["codes"])
            r = 0
            while r <= R:
                # checking: the few failing moves of each piece are used at once, the arrays are reused;
                # reading: every piece keeps its own arrays
                if out is None or len(out["x"]) < R or not self.reuse:
                    out = new_move_arrays(max(R, 1))
                    fails = np.empty(len(out["x"]) if self.check == 2 else 0, np.int64)
                el = np.empty(32, np.int64)
                ek = np.empty(32, np.int64)
                total = np.zeros(2, np.int64)
                n, r2, ne, inc = _read(rec["codes"], rec["lines"], rec["nvals"], rec["vals"], r, self.K, self.st,
                                       self.pa, self.pb, self.check, self.lim, self.flags, out["x"], out["y"],
                                       out["z"], out["lx"], out["ly"], out["lz"], out["sx"], out["sy"], out["sz"],
                                       out["power_mw"], out["speed_um_s"], out["laser_on"], out["jump"],
                                       out["block"], out["line"], out["power_line"], el, ek, total, fails)
                if ne and self.canonical is None:
                    raise NeedsGeneral(path)
                mv = moves_from_arrays(n, fidx, self.files, **out)
                if self.to_mw is not None:
                    self.to_mw(mv)
                mv.n_total = int(total[0])
                if self.check == 2:
                    mv.failing = fails[:int(total[1])]
                mv.problems = [(fidx, int(el[i]), _ERR[int(ek[i])]) for i in range(min(ne, 32))]
                yield mv
                if not inc:
                    break
                text = part[rec["starts"][r2]:rec["ends"][r2]].decode("utf-8", "replace")
                rel = text.strip()[len(self.include_kw):].strip().strip('"').replace("\\", "/")
                sub = path.parent / rel
                if not sub.is_file():
                    raise NeedsGeneral(path)   # the general reader looks for it case-insensitively, or says so
                yield from self.include(sub, depth + 1)
                self.st[_BL] += 1
                r = r2 + 1
                if r >= R:
                    break


    def include(self, sub: Path, depth: int):
        """Read an included file (the reader's state goes on through it)."""
        yield from self.run(sub, sub, depth)


class StreamReader(_Reader):
    """Every move of a program whose main file is given piece by piece as it is written
    (``programs.StreamCheck``): :meth:`feed` reads a piece of the main file and the block files
    it includes, with the state the lines before it left, as a whole parse reads them. Each
    include is recorded with the state the reader entered and left it with (``includes``:
    (path, file index, entry state, exit state)), so the finished main file can be read again
    without its includes (:class:`ReplayReader`), and every include checked to meet the same state.
    ``check`` (lim, flags): every move is kept and checked as it is read (``Moves.failing``).
    """

    def __init__(self, printer, spec, main: Path, check=None):
        super().__init__(printer, spec, check, keep_all=True)
        self.main = Path(main)
        self.files.append(str(self.main))       # file 0, as in a whole parse
        self.includes: list = []
        self.inside = 0                         # > 0 while the chunks come from an included file
        self.pieces = 1     # tokenized in the reading thread alone: it runs beside the block loop, which
        #                     keeps the cores busy; parallel launches there cost twice the CPU

    def feed(self, text: str):
        """Chunks of a piece of the main file (whole lines) and of the files it includes."""
        yield from self.run(text.encode("utf-8"), self.main, fidx=0)

    def include(self, sub: Path, depth: int):
        fi, entry = len(self.files), self.st.copy()
        self.inside += 1
        try:
            yield from self.run(sub, sub, depth)
        finally:
            self.inside -= 1
        self.includes.append((str(sub), fi, entry, self.st.copy()))


class Replayed:
    """What :class:`ReplayReader` yields in place of an include read before: its rank in ``includes``."""

    def __init__(self, k: int) -> None:
        self.k = k


class ReplayMismatch(Exception):
    """The finished main file reaches an include in another state than the streamed reading did."""


class ReplayReader(_Reader):
    """Read a main file whose includes a :class:`StreamReader` read already (``includes``): each
    include must be the next one recorded, with the same file index and the very same reader
    state (else :class:`ReplayMismatch`); it is not read again: the reader takes the recorded
    exit state and yields :class:`Replayed` in its place. Everything else is the plain reader
    (``check`` as in :func:`iter_moves`)."""

    def __init__(self, printer, spec, includes: list, check=None):
        super().__init__(printer, spec, check)
        self.known = includes
        self.done = 0

    def include(self, sub: Path, depth: int):
        k = self.done
        if depth != 1 or k >= len(self.known):
            raise ReplayMismatch(str(sub))
        path, fi, entry, exit_ = self.known[k]
        if path != str(sub) or fi != len(self.files) or not np.array_equal(self.st, entry, equal_nan=True):
            raise ReplayMismatch(str(sub))
        self.files.append(path)
        self.st[:] = exit_
        self.done = k + 1
        yield Replayed(k)


def iter_moves(path, printer, spec, check=None):
    """Yield :class:`Moves` chunks of a GWL program (following includes) in program order.

    ``check`` (lim, flags) from :func:`~bioslicer.programs.checks.limits`: yield only the moves that fail
    a check (``n_total`` on each chunk counts every move): validation without building every move.
    A program the fast reader cannot read line by line is read by
    :class:`~bioslicer.programs.general.GwlInterpreter`: then ``None`` is yielded first (drop
    what came before) and the chunks of the general reading follow.
    """
    try:
        yield from _Reader(printer, spec, check).read(Path(path))
    except NeedsGeneral:
        yield None
        can = GwlInterpreter(spec).read(Path(path))
        yield from _Reader(printer, spec, check, canonical=can).read(Path(path))
