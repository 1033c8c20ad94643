"""Nanoscribe GWL: a main ``<name>_job.gwl`` that positions the stage and includes one file per block.

Main file: ``%`` provenance header, scan mode, ``ConnectPointsOff``/``On``, ``PowerScaling``,
``FindInterfaceAt``, then per block ``StageGotoX``/``StageGotoY`` (absolute stage, µm),
``AddZDrivePosition`` when the block's z origin changes (parts taller than the piezo range) and
``include <name>_blocks\\<name>_block_NNNN.gwl``.

Block file: per layer ``ZOffset`` (the layer's nominal height above the block's fine-axis zero),
``ScanSpeed`` and ``LaserPower`` only where they change, each mark as ``x y z`` lines closed by
``Write`` (split into lists of at most ``points_per_write`` points that share their end points),
or ``x y z p`` lines between ``PowerValuesOn``/``PowerValuesOff`` when power varies along the mark.
Point z is relative to the ZOffset. Power is in the printer's power unit (percent of the
reference power on GT-class systems, mW on newer ones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

from ..errors import BioslicerError
from . import _format as F
from .dialects import block_runs, mark_chunks, moves_from_arrays, program_origin_um, provenance_lines

_ROLES_OUT = ("point", "point_power", "write", "laser_power", "scan_speed", "power_values_on",
              "power_values_off", "z_offset")
_ROLES_IN = ("write", "laser_power", "scan_speed", "power_scaling", "power_values_on", "power_values_off",
             "z_offset", "add_z_offset", "x_offset", "y_offset", "stage_x", "stage_y", "add_z_drive",
             "find_interface", "include", "galvo_mode", "piezo_mode", "connect_off", "connect_on",
             "continuous_mode")


def _templates(spec, printer) -> F.TemplateSet:
    d = printer.decimals
    return F.TemplateSet(spec.commands, {"x": d, "y": d, "z": d, "p": spec.decimals.get("power", 3),
                                         "v": spec.decimals.get("speed", 1),
                                         "s": spec.decimals.get("scaling", 3)})


@njit(cache=True)
def _emit(q, qp, ms, qspeed, qzoff, chunk, T, state, fill, out_tpl, out_vals):
    """Lines of one run of marks (count when ``fill`` is False); returns the line count.

    q (N, 3) int64 quantized local x, y, z (z relative to the mark's ZOffset); qp (N,) power;
    ms (M+1,) mark starts; qspeed, qzoff (M,); T template ids in ``_ROLES_OUT`` order;
    state int64 [zoff, speed, power, has_zoff, has_speed, has_power] carried between runs.
    """
    n = 0
    for m in range(ms.shape[0] - 1):
        s = ms[m]
        e = ms[m + 1]
        if state[3] == 0 or qzoff[m] != state[0]:
            if fill:
                out_tpl[n] = T[7]
                out_vals[n, 0] = qzoff[m]
            n += 1
            state[0] = qzoff[m]
            state[3] = 1
        if state[4] == 0 or qspeed[m] != state[1]:
            if fill:
                out_tpl[n] = T[4]
                out_vals[n, 0] = qspeed[m]
            n += 1
            state[1] = qspeed[m]
            state[4] = 1
        const = True
        for i in range(s + 1, e):
            if qp[i] != qp[s]:
                const = False
                break
        if const:
            if state[5] == 0 or qp[s] != state[2]:
                if fill:
                    out_tpl[n] = T[3]
                    out_vals[n, 0] = qp[s]
                n += 1
                state[2] = qp[s]
                state[5] = 1
        else:
            if fill:
                out_tpl[n] = T[5]
            n += 1
        i = s
        while True:
            j = min(i + chunk - 1, e - 1)
            for k in range(i, j + 1):
                if fill:
                    out_vals[n, 0] = q[k, 0]
                    out_vals[n, 1] = q[k, 1]
                    out_vals[n, 2] = q[k, 2]
                    if const:
                        out_tpl[n] = T[0]
                    else:
                        out_tpl[n] = T[1]
                        out_vals[n, 3] = qp[k]
                n += 1
            if fill:
                out_tpl[n] = T[2]
            n += 1
            if j >= e - 1:
                break
            i = j
        if not const:
            if fill:
                out_tpl[n] = T[6]
            n += 1
    return n


def write(toolpath, printer, spec, out_dir: Path, name: str, provenance, progress) -> list[Path]:
    """Write ``<name>_job.gwl`` and one block file per block into ``out_dir``; returns [main, blocks...]."""
    spec.check_printer(printer)
    chunk = int(printer.program["points_per_write"])
    if chunk < 2:
        raise BioslicerError(f"printer profile {printer.name}: 'program.points_per_write' must be at least 2")
    mode = printer.program["scan_mode"]
    if mode not in ("galvo", "piezo"):
        raise BioslicerError(f"printer profile {printer.name}: 'program.scan_mode' must be 'galvo' or 'piezo'")
    ts = _templates(spec, printer)
    cm = spec.comment
    cmd = {k: F.Template.parse(v) for k, v in spec.commands.items()}
    dec = printer.decimals
    T = np.array([ts[r] for r in _ROLES_OUT], dtype=np.int64)
    runs = block_runs(toolpath)
    origin = program_origin_um(printer)
    pdec = spec.decimals.get("power", 3)
    vdec = spec.decimals.get("speed", 1)
    sep = spec.get("path_separator", "\\")
    main = out_dir / f"{name}{spec.get('main_suffix', '_job.gwl')}"
    bdir_name = f"{name}{spec.get('block_dir_suffix', '_blocks')}"
    files = [main]
    with F.StreamWriter(main) as fm:
        head = [f"{cm} {t}" for t in provenance_lines(toolpath, printer, provenance, "gwl")]
        head.append(cmd["galvo_mode" if mode == "galvo" else "piezo_mode"].format())
        head.append(cmd["connect_on" if printer.program.get("connect_points", False) else "connect_off"].format())
        head.append(cmd["power_scaling"].format(s=F.fmt(1.0, spec.decimals.get("scaling", 3))))
        if "find_interface_at_um" in printer.program:
            head.append(cmd["find_interface"].format(z=F.fmt(float(printer.program["find_interface_at_um"]), dec)))
        fm.write("\n".join(head) + "\n")
        zdrive_q = 0
        for done, (b, m0, m1) in enumerate(runs):
            o = toolpath.blocks.origin_um[b]
            st = o + origin
            bfile = f"{name}{spec.get('block_suffix', '_block_{index:04d}.gwl').format(index=b)}"
            lines = [f"{cm} block {b} index {tuple(int(v) for v in toolpath.blocks.index[b])}, "
                     f"{m1 - m0} marks",
                     cmd["stage_x"].format(x=F.fmt(st[0], dec)),
                     cmd["stage_y"].format(y=F.fmt(st[1], dec))]
            zq = int(F.quantize(st[2], dec))
            if zq != zdrive_q:
                lines.append(cmd["add_z_drive"].format(z=F.fmt((zq - zdrive_q) / 10 ** dec, dec)))
                zdrive_q = zq
            lines.append(cmd["include"].format(path=f"{bdir_name}{sep}{bfile}"))
            fm.write("\n".join(lines) + "\n")
            bpath = out_dir / bdir_name / bfile
            bpath.parent.mkdir(parents=True, exist_ok=True)
            files.append(bpath)
            with F.StreamWriter(bpath) as fb:
                fb.write(f"{cm} block {b}: stage x {F.fmt(st[0], dec)} y {F.fmt(st[1], dec)} "
                         f"z {F.fmt(st[2], dec)} um, marks {m0}..{m1 - 1}\n")
                state = np.zeros(6, np.int64)
                for a, c in mark_chunks(toolpath.mark_start, m0, m1):
                    p0, p1 = int(toolpath.mark_start[a]), int(toolpath.mark_start[c])
                    ms = toolpath.mark_start[a:c + 1] - p0
                    q = np.empty((p1 - p0, 3), np.int64)
                    q[:, 0] = F.quantize(toolpath.x_um[p0:p1] - o[0], dec)
                    q[:, 1] = F.quantize(toolpath.y_um[p0:p1] - o[1], dec)
                    qzoff = F.quantize(toolpath.layer_z_um[toolpath.mark_layer[a:c]] - o[2], dec)
                    q[:, 2] = F.quantize(toolpath.z_um[p0:p1] - o[2], dec) - np.repeat(qzoff, np.diff(ms))
                    qp = F.quantize(printer.power_to_program(toolpath.power_mw[p0:p1]), pdec)
                    qv = F.quantize(toolpath.mark_speed_um_s[a:c], vdec)
                    st0 = state.copy()
                    n = _emit(q, qp, ms, qv, qzoff, chunk, T, state, False,
                              np.zeros(0, np.int64), np.zeros((0, F.MAX_SLOTS), np.int64))
                    tpl = np.empty(n, np.int64)
                    vals = np.empty((n, F.MAX_SLOTS), np.int64)
                    state[:] = st0
                    _emit(q, qp, ms, qv, qzoff, chunk, T, state, True, tpl, vals)
                    fb.write(ts.render(tpl, vals))
            progress(done + 1, len(runs), "writing GWL")
    return files


# ----------------------------------------------------------------------------- reading
_ERR = {1: "a point line needs 3 numbers (x y z), or 4 (x y z p) after PowerValuesOn",
        2: "unknown command (not in the GWL dialect definition)",
        3: "malformed number",
        4: "command needs a number"}
# state slots
_SX, _SY, _SZ, _XO, _YO, _ZO, _LP, _PS, _SP, _PV, _NL, _PL, _BL = range(13)


@njit(cache=True)
def _read(codes, lines, nvals, vals, r0, K, st, lx, ly, lz, sx, sy, sz, pw, sp, on, jmp, blk, ln, pln,
          err_line, err_kind):
    """Run the GWL state machine from record r0 until an include or the end.

    K: keyword codes in ``_ROLES_IN`` order. Returns (moves, next record, errors, stop at include).
    """
    n = 0
    ne = 0
    r = r0
    nr = codes.shape[0]
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
            lx[n] = vals[r, 0] + st[_XO]
            ly[n] = vals[r, 1] + st[_YO]
            lz[n] = vals[r, 2] + st[_ZO]
            sx[n] = st[_SX]
            sy[n] = st[_SY]
            sz[n] = st[_SZ]
            if st[_PV] > 0:
                pw[n] = vals[r, 3] * st[_PS]
                pln[n] = lines[r]
            else:
                pw[n] = st[_LP] * st[_PS]
                pln[n] = np.int64(st[_PL])
            sp[n] = st[_SP]
            first = st[_NL] == 0
            jmp[n] = first
            on[n] = not first
            blk[n] = np.int32(st[_BL])
            ln[n] = lines[r]
            st[_NL] += 1
            n += 1
        elif c == -2 or c == -3:
            if ne < err_line.shape[0]:
                err_line[ne] = lines[r]
                err_kind[ne] = 2 if c == -2 else 3
            ne += 1
        elif c == K[0]:
            st[_NL] = 0
        elif c == K[14]:
            return n, r, ne, True
        elif c == K[4]:
            st[_PV] = 1
        elif c == K[5]:
            st[_PV] = 0
        elif c > 0 and (c == K[1] or c == K[2] or c == K[3] or c == K[6] or c == K[7] or c == K[8]
                        or c == K[9] or c == K[10] or c == K[11] or c == K[12] or c == K[13]):
            if nvals[r] < 1:
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
        r += 1
    return n, r, ne, False


class _Reader:
    def __init__(self, printer, spec):
        self.printer = printer
        self.spec = spec
        cmd = {k: F.Template.parse(v) for k, v in spec.commands.items()}
        self.kw = F.Keywords([cmd[r].keyword for r in _ROLES_IN if r in cmd])
        self.K = np.array([self.kw.code.get(cmd[r].keyword, -99) if r in cmd else -99 for r in _ROLES_IN],
                          dtype=np.int64)
        self.include_kw = cmd["include"].keyword
        self.files: list[str] = []
        self.st = np.zeros(13)
        self.st[_PS] = 1.0
        self.st[_PL] = -1
        self.n_includes = 0

    def run(self, path: Path, depth: int = 0):
        if depth > 8:
            raise BioslicerError(f"{path}: includes nest deeper than 8 levels; flatten the program")
        fidx = len(self.files)
        self.files.append(str(path))
        for rec, part in F.ChunkReader(path, self.kw, self.spec.comment):
            R = len(rec["codes"])
            r = 0
            while r <= R:
                out = {k: np.empty(R, np.float64) for k in ("lx", "ly", "lz", "sx", "sy", "sz", "power_mw", "speed_um_s")}
                on = np.empty(R, np.bool_)
                jmp = np.empty(R, np.bool_)
                blk = np.empty(R, np.int32)
                ln = np.empty(R, np.int64)
                pln = np.empty(R, np.int64)
                el = np.empty(32, np.int64)
                ek = np.empty(32, np.int64)
                n, r2, ne, inc = _read(rec["codes"], rec["lines"], rec["nvals"], rec["vals"], r, self.K, self.st,
                                       out["lx"], out["ly"], out["lz"], out["sx"], out["sy"], out["sz"],
                                       out["power_mw"], out["speed_um_s"], on, jmp, blk, ln, pln, el, ek)
                mv = self._moves(n, fidx, out, on, jmp, blk, ln, pln)
                mv.problems = [(fidx, int(el[i]), _ERR[int(ek[i])]) for i in range(min(ne, 32))]
                yield mv
                if not inc:
                    break
                text = part[rec["starts"][r2]:rec["ends"][r2]].decode("utf-8", "replace")
                rel = text.strip()[len(self.include_kw):].strip().strip('"').replace("\\", "/")
                sub = path.parent / rel
                if not sub.is_file():
                    mv = self._moves(0, fidx, out, on, jmp, blk, ln, pln)
                    mv.problems = [(fidx, int(rec["lines"][r2]), f"included file {rel} not found")]
                    yield mv
                else:
                    yield from self.run(sub, depth + 1)
                    self.st[_BL] += 1
                r = r2 + 1
                if r >= R:
                    break

    def _moves(self, n, fidx, out, on, jmp, blk, ln, pln):
        pr = self.printer
        lx, ly, lz = out["lx"][:n], out["ly"][:n], out["lz"][:n]
        sx, sy, sz = out["sx"][:n], out["sy"][:n], out["sz"][:n]
        return moves_from_arrays(
            n, fidx, self.files, x=sx + lx, y=sy + ly, z=sz + lz, sx=sx, sy=sy, sz=sz, lx=lx, ly=ly, lz=lz,
            power_mw=pr.power_from_program(out["power_mw"][:n]), speed_um_s=out["speed_um_s"][:n],
            laser_on=on, jump=jmp, block=blk, line=ln, power_line=pln)


def iter_moves(path, printer, spec):
    """Yield :class:`Moves` chunks of a GWL program (following includes) in program order."""
    rd = _Reader(printer, spec)
    yield from rd.run(Path(path))
