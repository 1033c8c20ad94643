"""Sampled galvo waveforms for DAQ-driven rigs: one ``.npz`` per block plus a CSV channel header.

Each block file holds ``x_v``, ``y_v`` (galvo volts = block-local µm / ``um_per_volt_x|y``),
``z_v`` (piezo volts = local z / ``um_per_volt_z``) and ``laser_v`` (Pockels command, volts =
``max_volts * power / reference_power``) sampled at ``sample_rate_hz``, with ``stage_um`` (3,)
and ``block``. The trajectory of a mark: a run-up along its first segment from rest to the
mark speed at no more than the galvo acceleration (laser blanked), the mark itself at constant
speed per segment with every vertex on a sample (laser on, power interpolated), an overrun to
rest (blanked), then a blanked raised-cosine jump to the next run-up whose peak speed and
acceleration stay within ``jump_speed_um_s`` and ``galvo_acceleration_um_s2``.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from pathlib import Path

import numpy as np
from numba import njit

from ..errors import BioslicerError
from ..fileio import AtomicFile, AtomicPath
from .dialects import moves_from_arrays, program_origin_um, provenance_lines


@njit(cache=True)
def _emit_phase_cos(p0, p1, vj, acc, dt, fill, out, laser, n):
    """Blanked raised-cosine move p0 -> p1 (rest to rest); samples for t in (0, T]."""
    d = math.sqrt((p1[0] - p0[0]) ** 2 + (p1[1] - p0[1]) ** 2 + (p1[2] - p0[2]) ** 2)
    if d <= 0.0:
        return n
    T = max(math.pi * d / (2.0 * vj), math.pi * math.sqrt(d / (2.0 * acc)))
    K = max(1, int(math.ceil(T / dt - 1e-9)))
    for k in range(1, K + 1):
        if fill:
            f = 0.5 * (1.0 - math.cos(math.pi * k / K))
            for a in range(3):
                out[n, a] = p0[a] + (p1[a] - p0[a]) * f
            laser[n] = 0.0
        n += 1
    return n


@njit(cache=True)
def _samples(P, pw, ms, speed, dt, acc, vj, start, fill, out, laser):
    """Sample a block's marks (count when ``fill`` is False). Returns the sample count.

    P (N, 3) local µm; pw (N,) laser volts; ms (M+1,); speed (M,) µm/s; start (3,) rest
    position before the first mark. out (S, 3) positions, laser (S,) volts.
    """
    n = 0
    if fill:
        for a in range(3):
            out[0, a] = start[a]
        laser[0] = 0.0
    n += 1
    cur = start.copy()
    u = np.zeros(3)
    for m in range(ms.shape[0] - 1):
        s = ms[m]
        e = ms[m + 1]
        v = speed[m]
        # first and last non-degenerate segment directions and speeds
        i0 = -1
        i1 = -1
        for i in range(s, e - 1):
            L = math.sqrt((P[i + 1, 0] - P[i, 0]) ** 2 + (P[i + 1, 1] - P[i, 1]) ** 2 + (P[i + 1, 2] - P[i, 2]) ** 2)
            if L > 0.0:
                if i0 < 0:
                    i0 = i
                i1 = i
        if i0 < 0:
            i0 = s
            i1 = s
        # run-up
        L0 = math.sqrt((P[i0 + 1, 0] - P[i0, 0]) ** 2 + (P[i0 + 1, 1] - P[i0, 1]) ** 2 + (P[i0 + 1, 2] - P[i0, 2]) ** 2)
        v0 = 0.0
        if L0 > 0.0:
            k0 = max(1, int(math.ceil(L0 / (v * dt) - 1e-9)))
            v0 = L0 / (k0 * dt)
            for a in range(3):
                u[a] = (P[i0 + 1, a] - P[i0, a]) / L0
        Kup = max(1, int(math.ceil(v0 / (acc * dt) - 1e-9))) if v0 > 0 else 1
        Tup = Kup * dt
        runup = np.empty(3)
        for a in range(3):
            runup[a] = P[s, a] - u[a] * v0 * Tup / 2.0
        n = _emit_phase_cos(cur, runup, vj, acc, dt, fill, out, laser, n)
        for k in range(1, Kup):
            if fill:
                t = k * dt
                for a in range(3):
                    out[n, a] = runup[a] + u[a] * v0 * t * t / (2.0 * Tup)
                laser[n] = 0.0
            n += 1
        # mark start (end of the run-up), laser on
        if fill:
            for a in range(3):
                out[n, a] = P[s, a]
            laser[n] = pw[s]
        n += 1
        vl = 0.0
        for i in range(s, e - 1):
            L = math.sqrt((P[i + 1, 0] - P[i, 0]) ** 2 + (P[i + 1, 1] - P[i, 1]) ** 2 + (P[i + 1, 2] - P[i, 2]) ** 2)
            k1 = max(1, int(math.ceil(L / (v * dt) - 1e-9)))
            if L > 0.0:
                vl = L / (k1 * dt)
                for a in range(3):
                    u[a] = (P[i + 1, a] - P[i, a]) / L
            for k in range(1, k1 + 1):
                if fill:
                    f = k / k1
                    for a in range(3):
                        out[n, a] = P[i, a] + (P[i + 1, a] - P[i, a]) * f
                    laser[n] = pw[i] + (pw[i + 1] - pw[i]) * f
                n += 1
        # overrun to rest
        Kdn = max(1, int(math.ceil(vl / (acc * dt) - 1e-9))) if vl > 0 else 0
        Tdn = Kdn * dt
        for k in range(1, Kdn + 1):
            if fill:
                t = k * dt
                for a in range(3):
                    out[n, a] = P[e - 1, a] + u[a] * (vl * t - vl * t * t / (2.0 * Tdn))
                laser[n] = 0.0
            n += 1
        for a in range(3):
            cur[a] = P[e - 1, a] + u[a] * vl * Tdn / 2.0
    return n


def _deterministic_npz(path: Path, arrays: dict) -> None:
    """An .npz (zip of .npy) with fixed timestamps, so the same data gives the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            buf = io.BytesIO()
            a = np.asarray(arrays[key])
            np.lib.format.write_array(buf, a if a.flags.c_contiguous else a.copy(), allow_pickle=False)
            zf.writestr(info, buf.getvalue())


def _params(printer, spec):
    spec.check_printer(printer)
    p = printer.program
    try:
        rate = float(p["sample_rate_hz"])
        upv = np.array([float(p["um_per_volt_x"]), float(p["um_per_volt_y"]), float(p["um_per_volt_z"])])
    except (TypeError, ValueError):
        raise BioslicerError(f"printer profile {printer.name}: sample_rate_hz and um_per_volt_x|y|z must be numbers") from None
    if rate <= 0 or np.any(upv <= 0):
        raise BioslicerError(f"printer profile {printer.name}: sample_rate_hz and um_per_volt_x|y|z must be positive")
    if printer.galvo_acceleration_um_s2 <= 0:
        raise BioslicerError(f"printer profile {printer.name}: 'scan.galvo_acceleration_um_s2' must be positive "
                             "for waveforms (it limits the turnarounds)")
    mw_per_volt = printer.reference_power_mw / printer.max_volts
    return rate, upv, mw_per_volt


def prepare(printer, spec) -> None:
    """Refuse a profile the waveform writer cannot use (checked once, before any block is written)."""
    _params(printer, spec)


def write_block(w, b: int, toolpath, staging: Path) -> tuple[list, dict]:
    """Sample block ``b``'s marks into ``<name>_block_NNNN.npz`` under ``staging`` (from rest at
    local (0, 0, first z), so the samples depend on this block only)."""
    printer, spec = w.printer, w.spec
    rate, upv, mw_per_volt = _params(printer, spec)
    dt = 1.0 / rate
    o = w.blocks.origin_um[b]
    ms = toolpath.mark_start
    P = np.column_stack([toolpath.x_um - o[0], toolpath.y_um - o[1], toolpath.z_um - o[2]])
    pv = toolpath.power_mw / mw_per_volt if printer.calibration == "linear" else printer.power_to_program(
        toolpath.power_mw)
    sp = toolpath.mark_speed_um_s
    if np.any(~(sp > 0)):
        raise BioslicerError("a mark has a speed of zero or less; set positive scan speeds")
    start = np.array([0.0, 0.0, P[0, 2] if len(P) else 0.0])
    args = (P, pv, ms, sp, dt, printer.galvo_acceleration_um_s2, printer.jump_speed_um_s, start)
    n = _samples(*args, False, np.zeros((0, 3)), np.zeros(0))
    out = np.empty((n, 3))
    laser = np.empty(n)
    _samples(*args, True, out, laser)
    path = staging / f"{w.name}{spec.get('block_suffix', '_block_{index:04d}.npz').format(index=b)}"
    ap = AtomicPath(path, hashed=w.durable, fsync=w.durable, root=w.out_dir)
    with ap as tmp:
        _deterministic_npz(tmp, {
            "x_v": out[:, 0] / upv[0], "y_v": out[:, 1] / upv[1], "z_v": out[:, 2] / upv[2], "laser_v": laser,
            "stage_um": o + program_origin_um(printer), "block": np.array(b, np.int64),
            "sample_rate_hz": np.array(rate)})
    return [ap.written], {"n_samples": int(n)}


def write_main(w, parts, counts: dict, staging: Path) -> list[Path]:
    """Write ``<name>_waveform.csv`` (channels, rate, provenance, the block files in order).
    Returns [csv, npz...] (staging paths)."""
    printer, spec = w.printer, w.spec
    rate, upv, mw_per_volt = _params(printer, spec)
    files = [w.out_dir / rel for part in parts for rel in part.files]
    main = staging / f"{w.name}{spec.get('main_suffix', '_waveform.csv')}"
    sio = io.StringIO()
    wr = csv.writer(sio, lineterminator="\n")
    wr.writerow(spec.get("header"))
    per = {"um_per_volt_x": upv[0], "um_per_volt_y": upv[1], "um_per_volt_z": upv[2], "mw_per_volt": mw_per_volt}
    for ch, key, scale, unit in spec.get("channels"):
        wr.writerow([ch, key, "V", repr(float(per[scale])), unit, repr(rate)])
    text = sio.getvalue() + "".join(f"# {t}\n" for t in provenance_lines(counts, printer, w.provenance, "waveform"))
    if printer.calibration != "linear":
        text += (f"# laser_v calibration {printer.calibration} (mw_per_volt above is the full-scale ratio only): "
                 f"min_fraction {printer.calibration_min_fraction:g}, table {list(printer.calibration_table)}\n")
    text += "".join(f"# file {p.name}\n" for p in files)
    with AtomicFile(main, hashed=False, fsync=w.durable) as fm:
        fm.write(text)
    return [main] + files


def _read_header(path: Path, spec):
    rows, names = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# file "):
            names.append(line[7:].strip())
        elif line and not line.startswith("#"):
            rows.append(line)
    table = list(csv.reader(rows))
    if not table or table[0] != list(spec.get("header")):
        raise BioslicerError(f"{path}: not a bioslicer waveform header (first row must be {','.join(spec.get('header'))})")
    ch = {r[1]: r for r in table[1:] if len(r) >= 6}
    try:
        rate = float(table[1][5])
        scale = {k: float(r[3]) for k, r in ch.items()}
    except (IndexError, ValueError):
        raise BioslicerError(f"{path}: malformed channel rows in the waveform header") from None
    return rate, scale, names


def iter_moves(path, printer, spec):
    """Yield one :class:`Moves` per block file listed in the CSV header (one move per sample)."""
    path = Path(path)
    rate, scale, names = _read_header(path, spec)
    files = [str(path)]
    for fi, nm in enumerate(names):
        fpath = path.parent / nm
        files.append(str(fpath))
        fidx = len(files) - 1
        try:
            with np.load(fpath, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise BioslicerError(f"{fpath}: cannot read waveform block: {exc}") from None
        need = ("x_v", "y_v", "z_v", "laser_v", "stage_um")
        if any(k not in d for k in need):
            raise BioslicerError(f"{fpath}: waveform block lacks one of {', '.join(need)}")
        lx = d["x_v"].astype(np.float64) * scale["x_v"]
        ly = d["y_v"].astype(np.float64) * scale["y_v"]
        lz = d["z_v"].astype(np.float64) * scale["z_v"]
        lv = d["laser_v"].astype(np.float64)
        pw = lv * scale["laser_v"] if printer.calibration == "linear" else printer.power_from_program(lv)
        st = np.asarray(d["stage_um"], np.float64).reshape(3)
        n = len(lx)
        P = np.column_stack([lx, ly, lz])
        step = np.zeros(n)
        if n > 1:
            step[1:] = np.linalg.norm(np.diff(P, axis=0), axis=1)
        on = lv > 0
        acc = np.full(n, np.nan)
        if n > 2:
            a = np.linalg.norm(P[2:] - 2 * P[1:-1] + P[:-2], axis=1) * rate * rate
            off3 = ~on[2:] & ~on[1:-1] & ~on[:-2]
            acc[1:-1] = np.where(off3, a, np.nan)
        blk = int(np.asarray(d.get("block", fi)).reshape(-1)[0])
        mv = moves_from_arrays(
            n, fidx, files, x=st[0] + lx, y=st[1] + ly, z=st[2] + lz, sx=np.full(n, st[0]), sy=np.full(n, st[1]),
            sz=np.full(n, st[2]), lx=lx, ly=ly, lz=lz, power_mw=pw, speed_um_s=step * rate, accel_um_s2=acc,
            laser_on=on, jump=~on, block=np.full(n, blk, np.int32), line=np.arange(n, dtype=np.int64),
            power_line=np.arange(n, dtype=np.int64))
        yield mv
