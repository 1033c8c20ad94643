"""Numba kernels that measure marks: lengths, closed contours, jumps inside runs, transition times.

Used by stitching, ordering, the estimate, planning reports and previews; ``mark_lengths``
is the one polyline-length kernel (``Toolpath.mark_lengths`` calls it).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _dist(ax, ay, az, bx, by, bz):
    return math.sqrt((ax - bx) ** 2 + (ay - by) ** 2 + (az - bz) ** 2)


@njit(cache=True, parallel=True)
def closed_marks(x, y, z, mark_start):
    """(M,) bool: the mark has at least 4 points and its last point equals its first."""
    m = len(mark_start) - 1
    out = np.zeros(m, np.bool_)
    for k in prange(m):
        s = mark_start[k]
        e = mark_start[k + 1] - 1
        if e - s >= 3 and x[s] == x[e] and y[s] == y[e] and z[s] == z[e]:
            out[k] = True
    return out


@njit(cache=True, parallel=True)
def mark_lengths(x, y, z, mark_start):
    """(M,) float64 polyline length of each mark, µm."""
    m = len(mark_start) - 1
    out = np.empty(m)
    for k in prange(m):
        t = 0.0
        for i in range(mark_start[k], mark_start[k + 1] - 1):
            t += _dist(x[i + 1], y[i + 1], z[i + 1], x[i], y[i], z[i])
        out[k] = t
    return out


@njit(cache=True, parallel=True)
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
    nr = len(run_start) - 1
    m = len(mark_start) - 1
    out = np.empty(max(m - nr, 0))
    for r in prange(nr):
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
    return out


@njit(cache=True)
def transition_times(x, y, z, mark_start, mark_block, mark_layer, origin, n_blocks, jump_speed, jump_delay,
                     layer_settle, stage_speed, stage_settle):
    """Jumps, layer changes and block changes between consecutive marks (see
    :func:`bioslicer.estimate.estimate_print_time` for the model), summed per block entered.

    Parameters
    ----------
    mark_block : (M,) int64
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
