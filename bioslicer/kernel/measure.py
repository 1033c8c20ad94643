"""Numba kernels that measure marks: lengths, closed contours, jumps inside runs, transition times.

Used by stitching, ordering, the estimate, planning reports and previews; ``mark_lengths``
is the one polyline-length kernel (``Toolpath.mark_lengths`` calls it).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .pool import run_chunks, wait_for_warmup


@njit(cache=True)
def _dist(ax, ay, az, bx, by, bz):
    return math.sqrt((ax - bx) ** 2 + (ay - by) ** 2 + (az - bz) ** 2)


def closed_marks(x, y, z, mark_start):
    """(M,) bool: the mark has at least 4 points and its last point equals its first."""
    wait_for_warmup("stitch")
    out = np.zeros(len(mark_start) - 1, np.bool_)
    run_chunks(_closed_marks_range, len(out), x, y, z, mark_start, out)
    return out


@njit(cache=True, nogil=True)
def _closed_marks_range(k_lo, k_hi, x, y, z, mark_start, out):
    """:func:`closed_marks` of marks ``k_lo .. k_hi - 1`` into ``out``."""
    for k in range(k_lo, k_hi):
        s = mark_start[k]
        e = mark_start[k + 1] - 1
        if e - s >= 3 and x[s] == x[e] and y[s] == y[e] and z[s] == z[e]:
            out[k] = True


def mark_lengths(x, y, z, mark_start):
    """(M,) float64 polyline length of each mark, µm."""
    out = np.empty(len(mark_start) - 1)
    run_chunks(_mark_lengths_range, len(out), x, y, z, mark_start, out)
    return out


@njit(cache=True, nogil=True)
def _mark_lengths_range(k_lo, k_hi, x, y, z, mark_start, out):
    """:func:`mark_lengths` of marks ``k_lo .. k_hi - 1`` into ``out``."""
    for k in range(k_lo, k_hi):
        t = 0.0
        for i in range(mark_start[k], mark_start[k + 1] - 1):
            t += _dist(x[i + 1], y[i + 1], z[i + 1], x[i], y[i], z[i])
        out[k] = t


def run_jump_lengths(x, y, z, mark_start, run_start):
    """Lengths of the jumps between consecutive marks of the same run, µm.

    Parameters
    ----------
    x, y, z : (N,) float64
    mark_start : (M+1,) int64
    run_start : (R+1,) int64
        First mark of every run, plus M.

    Returns
    -------
    (M - R,) float64
        The jumps of run 0, then of run 1, ... (3D distance from the last point of a mark to
        the first point of the next).
    """
    out = np.empty(max(len(mark_start) - len(run_start), 0))
    run_chunks(_run_jump_lengths_range, len(run_start) - 1, x, y, z, mark_start, run_start, out)
    return out


@njit(cache=True, nogil=True)
def _run_jump_lengths_range(r_lo, r_hi, x, y, z, mark_start, run_start, out):
    """:func:`run_jump_lengths` of runs ``r_lo .. r_hi - 1`` into ``out``."""
    for r in range(r_lo, r_hi):
        a = run_start[r]
        b = run_start[r + 1]
        base = a - r
        for k in range(a, b - 1):
            e = mark_start[k + 1] - 1
            s = mark_start[k + 1]
            dx = x[s] - x[e]
            dy = y[s] - y[e]
            dz = z[s] - z[e]
            out[base + k - a] = math.sqrt(dx * dx + dy * dy + dz * dz)


def transition_times(x, y, z, mark_start, mark_block, mark_layer, origin, n_blocks, jump_speed, jump_delay,
                     layer_settle, stage_speed, stage_settle):
    """Jumps, layer changes and block changes between consecutive marks (see
    :func:`bioslicer.estimate.estimate_print_time` for the model), summed per block entered.

    Parameters
    ----------
    mark_block : (M,) int32
        Block of each mark (all 0 for an unstitched toolpath).
    origin : (B, 3) float64
        Block origins, µm (zeros for an unstitched toolpath).

    Returns
    -------
    per_block : (B, 3) float64
        Jump, layer-change and stage-move time charged to each block, s.
    counts : (3,) int64
        Layer changes, block changes, jumps.
    lengths : (2,) float64
        Jump length and stage travel, µm.
    """
    wait_for_warmup("estimate")
    return _transition_times(x, y, z, mark_start, mark_block, mark_layer, origin, int(n_blocks), float(jump_speed),
                             float(jump_delay), float(layer_settle), float(stage_speed), float(stage_settle))


@njit(cache=True)
def _transition_times(x, y, z, mark_start, mark_block, mark_layer, origin, n_blocks, jump_speed, jump_delay,
                      layer_settle, stage_speed, stage_settle):
    """:func:`transition_times` (the kernel)."""
    m = len(mark_start) - 1
    per_block = np.zeros((n_blocks, 3))
    counts = np.zeros(3, np.int64)
    lengths = np.zeros(2)
    for k in range(m - 1):
        e = mark_start[k + 1] - 1
        s = mark_start[k + 1]
        dx = x[s] - x[e]
        dy = y[s] - y[e]
        dz = z[s] - z[e]
        b0 = mark_block[k]
        b1 = mark_block[k + 1]
        if b0 != b1:
            ox = origin[b1, 0] - origin[b0, 0]
            oy = origin[b1, 1] - origin[b0, 1]
            oz = origin[b1, 2] - origin[b0, 2]
            sd = math.sqrt(ox * ox + oy * oy + oz * oz)
            per_block[b1, 2] += sd / stage_speed + stage_settle
            lengths[1] += sd
            counts[1] += 1
            jl = math.sqrt((dx - ox) ** 2 + (dy - oy) ** 2 + (dz - oz) ** 2)
        elif mark_layer[k] != mark_layer[k + 1]:
            per_block[b1, 1] += abs(dz) / jump_speed + layer_settle
            counts[0] += 1
            jl = math.sqrt(dx * dx + dy * dy)
        else:
            jl = math.sqrt(dx * dx + dy * dy + dz * dz)
        per_block[b1, 0] += jl / jump_speed + jump_delay
        lengths[0] += jl
        counts[2] += 1
    return per_block, counts, lengths


def block_summary(x, y, z, mark_start, mark_kind, mark_speed, mark_set, n_kinds: int, set_lo: int, n_sets: int):
    """What a finished block reports about its marks, in one pass over them (``blockrun.finish_block``).

    Parameters
    ----------
    x, y, z : (N,) float64, µm
    mark_start : (M+1,) int64
    mark_kind : (M,) uint8
    mark_speed : (M,) float64, µm/s
    mark_set : (M,) int32
    n_kinds : int
        Mark kinds counted (every ``mark_kind`` below it).
    set_lo, n_sets : int
        Sets ``set_lo .. set_lo + n_sets - 1`` are tallied (every ``mark_set`` in that range);
        ``n_sets`` 0: none.

    Returns
    -------
    dict
        ``lengths`` (M,) mark lengths (µm, as :func:`mark_lengths`); ``bounds`` (2, 3) min / max
        of the points (µm); ``kinds`` (n_kinds,) int64 marks per kind; ``jumps`` (M-1,) jump from
        each mark's last point to the next mark's first point (µm, as ``Toolpath.jump_lengths``);
        ``mark_time`` (M,) length / speed (s); ``speed_ok`` every speed > 0; ``set_lo`` and, per
        set of the range, ``set_marks``, ``set_length`` (sums in mark order), ``set_zmin``,
        ``set_zmax`` (of the marks' first points).
    """
    wait_for_warmup("estimate")
    m = len(mark_start) - 1
    out = {"lengths": np.empty(m), "bounds": np.zeros((2, 3)), "kinds": np.zeros(int(n_kinds), np.int64),
           "jumps": np.empty(max(m - 1, 0)), "mark_time": np.empty(m),
           "set_marks": np.zeros(int(n_sets), np.int64), "set_length": np.zeros(int(n_sets)),
           "set_zmin": np.full(int(n_sets), np.inf), "set_zmax": np.full(int(n_sets), -np.inf)}
    ok = _block_summary(x, y, z, mark_start, mark_kind, mark_speed, mark_set, int(set_lo), out["lengths"],
                        out["bounds"], out["kinds"], out["jumps"], out["mark_time"], out["set_marks"],
                        out["set_length"], out["set_zmin"], out["set_zmax"])
    out["speed_ok"] = bool(ok)
    out["set_lo"] = int(set_lo)
    return out


@njit(cache=True, nogil=True)
def _block_summary(x, y, z, mark_start, mark_kind, mark_speed, mark_set, set_lo, lengths, bounds, kinds, jumps,
                   mark_time, set_marks, set_length, set_zmin, set_zmax):
    """:func:`block_summary` (the kernel); returns whether every speed is > 0."""
    m = len(mark_start) - 1
    ok = True
    n_sets = len(set_marks)
    if len(x):
        lx = hx = x[0]
        ly = hy = y[0]
        lz = hz = z[0]
    for k in range(m):
        s = mark_start[k]
        e = mark_start[k + 1] - 1
        t = 0.0
        for i in range(s, e + 1):
            xi = x[i]
            yi = y[i]
            zi = z[i]
            if i < e:
                t += _dist(x[i + 1], y[i + 1], z[i + 1], xi, yi, zi)
            if xi < lx:
                lx = xi
            if xi > hx:
                hx = xi
            if yi < ly:
                ly = yi
            if yi > hy:
                hy = yi
            if zi < lz:
                lz = zi
            if zi > hz:
                hz = zi
        lengths[k] = t
        kinds[mark_kind[k]] += 1
        sp = mark_speed[k]
        if not sp > 0:
            ok = False
        mark_time[k] = t / sp
        if k + 1 < m:
            dx = x[e + 1] - x[e]
            dy = y[e + 1] - y[e]
            dz = z[e + 1] - z[e]
            jumps[k] = math.sqrt(dx * dx + dy * dy + dz * dz)
        if n_sets:
            j = mark_set[k] - set_lo
            set_marks[j] += 1
            set_length[j] += t
            if z[s] < set_zmin[j]:
                set_zmin[j] = z[s]
            if z[s] > set_zmax[j]:
                set_zmax[j] = z[s]
    if len(x):
        bounds[0, 0] = lx
        bounds[0, 1] = ly
        bounds[0, 2] = lz
        bounds[1, 0] = hx
        bounds[1, 1] = hy
        bounds[1, 2] = hz
    return ok


def preview_keep(mark_kind, mark_layer, mark_block, layer_step: int, mark_step: int, keep_kind: int):
    """(M,) bool: marks of every ``layer_step``-th layer that are of kind ``keep_kind`` or every
    ``mark_step``-th mark of their (block, layer) run (``blockrun.preview_marks``)."""
    wait_for_warmup("estimate")
    out = np.empty(len(mark_kind), np.bool_)
    _preview_keep(mark_kind, mark_layer, mark_block, int(layer_step), int(mark_step), int(keep_kind), out)
    return out


@njit(cache=True, nogil=True)
def _preview_keep(mark_kind, mark_layer, mark_block, layer_step, mark_step, keep_kind, out):
    """:func:`preview_keep` (the kernel)."""
    rank = 0
    for k in range(len(mark_kind)):
        if k and (mark_layer[k] != mark_layer[k - 1] or mark_block[k] != mark_block[k - 1]):
            rank = 0
        out[k] = (mark_layer[k] % layer_step) == 0 and (mark_kind[k] == keep_kind or rank % mark_step == 0)
        rank += 1


def kind_tally(mark_kind, lengths, n_kinds: int):
    """Marks and summed length per kind (the sums in mark order, as ``np.bincount`` with weights).

    Returns
    -------
    (counts, length_um) : (n_kinds,) int64, (n_kinds,) float64
    """
    counts = np.zeros(int(n_kinds), np.int64)
    length = np.zeros(int(n_kinds))
    _kind_tally(mark_kind, lengths, counts, length)
    return counts, length


@njit(cache=True, nogil=True)
def _kind_tally(mark_kind, lengths, counts, length):
    """:func:`kind_tally` (the kernel)."""
    for k in range(len(mark_kind)):
        counts[mark_kind[k]] += 1
        length[mark_kind[k]] += lengths[k]
