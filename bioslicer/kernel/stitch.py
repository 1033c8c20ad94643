"""Numba kernels for stitching: clipping marks to the sheared cells of a block grid.

Kernels take flat arrays and return arrays; validation, allocation and units stay in the
Python caller (:mod:`bioslicer.stitching`). Two passes where the output size is not known: a
count pass, a prefix sum in Python, then a fill pass. The fill pass writes points and, for
every piece, the index of its *source mark*: the caller moves every per-mark field with
``Toolpath.take_marks`` (no per-field arguments here).

Stitching works in *sheared* coordinates ``u = x - t``, ``v = y - t`` with
``t = (z - z0) * tan(shear)`` and ``z0`` the fine-axis zero of the point's z tier: block walls
are then the fixed lines ``u = const`` and ``v = const``, and ``u`` stays linear along every
straight segment, so a wall crossing is an exact linear interpolation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .pool import run_chunks, wait_for_warmup

# ----------------------------------------------------------------------------- stitching


@njit(cache=True)
def _emit(x, y, z, p, a, b, t):
    """Point at parameter t on the segment from point a to point b (exact at t = 0 and 1)."""
    if t <= 0.0:
        return x[a], y[a], z[a], p[a]
    if t >= 1.0:
        return x[b], y[b], z[b], p[b]
    return (x[a] + t * (x[b] - x[a]), y[a] + t * (y[b] - y[a]),
            z[a] + t * (z[b] - z[a]), p[a] + t * (p[b] - p[a]))


@njit(cache=True)
def _inside(u, v, ulo, uhi, vlo, vhi):
    return u >= ulo and u < uhi and v >= vlo and v < vhi


@njit(cache=True, inline="always")
def _slab(a, d, lo, hi, t0, t1):
    """Clip the parameter range [t0, t1] of ``a + t d`` to the half-open slab [lo, hi).

    Returns (inside, t0, t1); a step along the slab (d == 0) is inside when ``a`` is."""
    if d == 0.0:
        return (a >= lo and a < hi), t0, t1
    c0 = (lo - a) / d
    c1 = (hi - a) / d
    if c0 > c1:
        c0, c1 = c1, c0
    return True, max(t0, c0), min(t1, c1)


@njit(cache=True)
def clip_mark(x, y, z, p, s, e, closed, tan_s, z0, ulo, uhi, vlo, vhi, min_len_um,
              write, ox, oy, oz, op, piece_start, pbase, kbase):
    """Clip the polyline of points s..e-1 to the half-open sheared box of one block.

    Parameters
    ----------
    x, y, z, p : (N,) float64
        Point coordinates (µm) and power (mW) of the whole toolpath.
    s, e : int
        Point range of the mark.
    closed : bool
        The mark is a closed contour (last point equals the first); its walk starts at a vertex
        outside the box so a cut contour gives open pieces that never wrap around.
    tan_s, z0 : float
        Shear tangent and the fine-axis zero (µm) of the mark's z tier.
    ulo, uhi, vlo, vhi : float
        Box in sheared coordinates (µm); ±inf for outer walls.
    min_len_um : float
        Pieces shorter than this are dropped.
    write : bool
        False: count only. True: write points at ``pbase`` and piece starts at ``kbase``.
    ox, oy, oz, op, piece_start : arrays
        Output arrays (ignored when ``write`` is False).

    Returns
    -------
    (n_pieces, n_points) : (int, int)
    """
    n = e - s
    cyc = n - 1
    # fast path and the walk start for closed marks
    k0 = -1
    for j in range(n):
        i = s + j
        t = (z[i] - z0) * tan_s
        if not _inside(x[i] - t, y[i] - t, ulo, uhi, vlo, vhi):
            k0 = j
            break
    if k0 < 0:  # every vertex inside a convex box: the whole mark is inside
        if write:
            piece_start[kbase] = pbase
            for j in range(n):
                ox[pbase + j] = x[s + j]
                oy[pbase + j] = y[s + j]
                oz[pbase + j] = z[s + j]
                op[pbase + j] = p[s + j]
        return 1, n
    if not closed or k0 >= cyc:
        k0 = 0
    n_pieces = 0
    n_pts = 0
    open_ = False
    piece_pts = 0
    piece_len = 0.0
    lx = 0.0
    ly = 0.0
    lz = 0.0
    for j in range(n - 1):
        if closed:
            a = s + (k0 + j) % cyc
            b = s + (k0 + j + 1) % cyc
        else:
            a = s + j
            b = a + 1
        ta = (z[a] - z0) * tan_s
        tb = (z[b] - z0) * tan_s
        ua = x[a] - ta
        va = y[a] - ta
        du = (x[b] - tb) - ua
        dv = (y[b] - tb) - va
        ok, t0, t1 = _slab(ua, du, ulo, uhi, 0.0, 1.0)
        if ok:
            ok, t0, t1 = _slab(va, dv, vlo, vhi, t0, t1)
        if ok and not (t1 > t0 or (du == 0.0 and dv == 0.0)):
            ok = False
        if ok and open_ and t0 > 0.0:
            # cannot happen for a convex box except by rounding: close and restart
            if piece_len >= min_len_um:
                if write:
                    piece_start[kbase + n_pieces] = pbase + n_pts
                n_pieces += 1
                n_pts += piece_pts
            open_ = False
        if ok:
            if not open_:
                open_ = True
                piece_pts = 0
                piece_len = 0.0
                px, py, pz, pp = _emit(x, y, z, p, a, b, t0)
                if write:
                    q = pbase + n_pts
                    ox[q] = px
                    oy[q] = py
                    oz[q] = pz
                    op[q] = pp
                piece_pts = 1
                lx, ly, lz = px, py, pz
            px, py, pz, pp = _emit(x, y, z, p, a, b, t1)
            if write:
                q = pbase + n_pts + piece_pts
                ox[q] = px
                oy[q] = py
                oz[q] = pz
                op[q] = pp
            piece_pts += 1
            piece_len += math.sqrt((px - lx) ** 2 + (py - ly) ** 2 + (pz - lz) ** 2)
            lx, ly, lz = px, py, pz
            if t1 < 1.0:
                if piece_len >= min_len_um:
                    if write:
                        piece_start[kbase + n_pieces] = pbase + n_pts
                    n_pieces += 1
                    n_pts += piece_pts
                open_ = False
        elif open_:
            if piece_len >= min_len_um:
                if write:
                    piece_start[kbase + n_pieces] = pbase + n_pts
                n_pieces += 1
                n_pts += piece_pts
            open_ = False
    if open_ and piece_len >= min_len_um:
        if write:
            piece_start[kbase + n_pieces] = pbase + n_pts
        n_pieces += 1
        n_pts += piece_pts
    return n_pieces, n_pts


def mark_extents(x, y, z, mark_start, mark_layer, layer_z, chunk):
    """Extents of the marks, reduced per chunk of ``chunk`` marks.

    Parameters
    ----------
    x, y, z : (N,) float64
        Points, µm.
    mark_start : (M+1,) int64
    mark_layer : (M,) int32
        Layer of each mark.
    layer_z : (L,) float64
        Nominal layer heights, µm.
    chunk : int
        Marks per chunk.

    Returns
    -------
    (C, 6) float64
        Per chunk: the highest ``z - layer_z`` (how far points rise above their layer), the
        highest ``layer_z - z`` (how far they dip below), then xmin, xmax, ymin, ymax, µm.
    """
    wait_for_warmup("stitch")
    m = len(mark_start) - 1
    nc = (m + chunk - 1) // chunk
    out = np.empty((nc, 6))
    run_chunks(_mark_extents_range, nc, x, y, z, mark_start, mark_layer, layer_z, int(chunk), out)
    return out


@njit(cache=True, nogil=True)
def _mark_extents_range(c_lo, c_hi, x, y, z, mark_start, mark_layer, layer_z, chunk, out):
    """:func:`mark_extents` of chunks ``c_lo .. c_hi - 1`` into ``out``."""
    m = len(mark_start) - 1
    for c in range(c_lo, c_hi):
        up = -np.inf
        down = -np.inf
        xmin = np.inf
        xmax = -np.inf
        ymin = np.inf
        ymax = -np.inf
        for k in range(c * chunk, min(m, (c + 1) * chunk)):
            lz = layer_z[mark_layer[k]]
            for i in range(mark_start[k], mark_start[k + 1]):
                up = max(up, z[i] - lz)
                down = max(down, lz - z[i])
                xmin = min(xmin, x[i])
                xmax = max(xmax, x[i])
                ymin = min(ymin, y[i])
                ymax = max(ymax, y[i])
        out[c, 0] = up
        out[c, 1] = down
        out[c, 2] = xmin
        out[c, 3] = xmax
        out[c, 4] = ymin
        out[c, 5] = ymax


@njit(cache=True, inline="always")
def _mark_uv(x, y, z, mark_start, mark_layer, layer_tier, tier_z0, tan_s, k):
    """(umin, umax, vmin, vmax) of mark ``k`` in sheared coordinates ``u = x - t``, ``v = y - t``,
    ``t = (z - z0) * tan_s`` with ``z0`` the z origin of the mark's tier, µm."""
    umin = np.inf
    umax = -np.inf
    vmin = np.inf
    vmax = -np.inf
    z0 = tier_z0[layer_tier[mark_layer[k]]]
    for i in range(mark_start[k], mark_start[k + 1]):
        t = (z[i] - z0) * tan_s
        u = x[i] - t
        v = y[i] - t
        umin = min(umin, u)
        umax = max(umax, u)
        vmin = min(vmin, v)
        vmax = max(vmax, v)
    return umin, umax, vmin, vmax


def uv_extents(x, y, z, mark_start, mark_layer, layer_tier, tier_z0, tan_s, chunk):
    """Extents of the sheared coordinates ``u = x - t``, ``v = y - t`` with
    ``t = (z - z0) * tan_s`` and ``z0 = tier_z0[layer_tier[mark_layer]]``, per chunk of marks.

    Returns
    -------
    (C, 4) float64
        umin, umax, vmin, vmax of each chunk of ``chunk`` marks, µm.
    """
    wait_for_warmup("stitch")
    m = len(mark_start) - 1
    nc = (m + chunk - 1) // chunk
    out = np.empty((nc, 4))
    run_chunks(_uv_extents_range, nc, x, y, z, mark_start, mark_layer, layer_tier, tier_z0, float(tan_s), int(chunk),
               out)
    return out


@njit(cache=True, nogil=True)
def _uv_extents_range(c_lo, c_hi, x, y, z, mark_start, mark_layer, layer_tier, tier_z0, tan_s, chunk, out):
    """:func:`uv_extents` of chunks ``c_lo .. c_hi - 1`` into ``out``."""
    m = len(mark_start) - 1
    for c in range(c_lo, c_hi):
        umin = np.inf
        umax = -np.inf
        vmin = np.inf
        vmax = -np.inf
        for k in range(c * chunk, min(m, (c + 1) * chunk)):
            u0, u1, v0, v1 = _mark_uv(x, y, z, mark_start, mark_layer, layer_tier, tier_z0, tan_s, k)
            umin = min(umin, u0)
            umax = max(umax, u1)
            vmin = min(vmin, v0)
            vmax = max(vmax, v1)
        out[c, 0] = umin
        out[c, 1] = umax
        out[c, 2] = vmin
        out[c, 3] = vmax


@njit(cache=True)
def _wall(g0, a, i, n, half_ov, lo_side):
    """Sheared wall of grid cell i (outer walls at ±inf)."""
    if lo_side:
        return -np.inf if i == 0 else g0 + i * a - half_ov
    return np.inf if i == n - 1 else g0 + (i + 1) * a + half_ov


@njit(cache=True)
def _task_walls(task_cell, t, tier_z0, gx0, gy0, a, nx, ny, half_ov):
    """(z0, ulo, uhi, vlo, vhi): the z origin and sheared walls of task ``t``'s cell (µm)."""
    ix = task_cell[t, 0]
    iy = task_cell[t, 1]
    lo = np.bool_(True)   # not literals: one compile of _wall, not one per literal
    hi = np.bool_(False)
    return (tier_z0[task_cell[t, 2]], _wall(gx0, a, ix, nx, half_ov, lo), _wall(gx0, a, ix, nx, half_ov, hi),
            _wall(gy0, a, iy, ny, half_ov, lo), _wall(gy0, a, iy, ny, half_ov, hi))


@njit(cache=True)
def _cand_range(lo, hi, g0, a, n, half_ov):
    """Grid cells ``i0..i1`` (clamped to ``0..n-1``) whose grown cell may meet ``[lo, hi]``."""
    i0 = int(math.floor((lo - g0 - half_ov) / a))
    i1 = int(math.floor((hi - g0 + half_ov) / a))
    return min(max(i0, 0), n - 1), max(min(i1, n - 1), 0)


def mark_cells(x, y, z, mark_start, mark_layer, layer_tier, tier_z0, tan_s, gx0, gy0, a, nx, ny, half_ov):
    """Candidate grid cells of every mark, from the bounds of its sheared coordinates.

    Parameters
    ----------
    x, y, z : (N,) float64
        Points, µm.
    mark_start : (M+1,) int64
    mark_layer : (M,) int32
    layer_tier : (L,) int64
        z tier of every layer.
    tier_z0 : (nz,) float64
        Fine-axis zero of every tier, µm.
    tan_s : float
        Shear tangent (0 for a single column).
    gx0, gy0, a : float
        Grid origin (sheared coordinates) and nominal block side, µm.
    nx, ny : int
        Grid size.
    half_ov : float
        Half the overlap, µm.

    Returns
    -------
    (M, 4) int32
        ix0, ix1, iy0, iy1: the mark can only give pieces in cells ix0..ix1 x iy0..iy1.
    """
    wait_for_warmup("stitch")
    m = len(mark_start) - 1
    out = np.empty((m, 4), np.int32)
    run_chunks(_mark_cells_range, m, x, y, z, mark_start, mark_layer, layer_tier, tier_z0, float(tan_s), float(gx0),
               float(gy0), float(a), int(nx), int(ny), float(half_ov), out)
    return out


@njit(cache=True, nogil=True)
def _mark_cells_range(k_lo, k_hi, x, y, z, mark_start, mark_layer, layer_tier, tier_z0, tan_s, gx0, gy0, a, nx, ny,
                      half_ov, out):
    """:func:`mark_cells` of marks ``k_lo .. k_hi - 1`` into ``out``."""
    for k in range(k_lo, k_hi):
        umin, umax, vmin, vmax = _mark_uv(x, y, z, mark_start, mark_layer, layer_tier, tier_z0, tan_s, k)
        ix0, ix1 = _cand_range(umin, umax, gx0, a, nx, half_ov)
        iy0, iy1 = _cand_range(vmin, vmax, gy0, a, ny, half_ov)
        out[k, 0] = ix0
        out[k, 1] = ix1
        out[k, 2] = iy0
        out[k, 3] = iy1


def cell_entries(mark_order, mark_layer, layer_tier, cells, cell_sel, nx, ny, n_cells):
    """Lists of the marks that may give pieces in each grid cell (CSR), in ``mark_order``.

    Parameters
    ----------
    mark_order : (M,) or (0,) int64
        Marks sorted by tier, then layer, then their original order (empty: already so).
    mark_layer : (M,) int32
    layer_tier : (L,) int64
        z tier of every layer.
    cells : (M, 4) int32
        From :func:`mark_cells`.
    cell_sel : (n_cells,) bool
        Cells to list (dense id ``(iz * ny + iy) * nx + ix``); the others stay empty.
    nx, ny, n_cells : int

    Returns
    -------
    cell_start : (n_cells+1,) int64
        Entries of cell c are ``entries[cell_start[c]:cell_start[c+1]]``.
    entries : (E,) int32
        Mark indices (int32: half the memory of a unit's lists, held while its blocks are cut).
    """
    if len(mark_layer) >= 2 ** 31:
        raise ValueError("more than 2**31 - 1 marks in one toolpath; stitch it in parts")
    wait_for_warmup("stitch")
    return _cell_entries(mark_order, mark_layer, layer_tier, cells, cell_sel, int(nx), int(ny), int(n_cells))


@njit(cache=True)
def _cell_entries(mark_order, mark_layer, layer_tier, cells, cell_sel, nx, ny, n_cells):
    """:func:`cell_entries` (the kernel)."""
    m = len(mark_layer)
    ident = len(mark_order) == 0
    cnt = np.zeros(n_cells + 1, np.int64)
    for j in range(m):
        k = j if ident else mark_order[j]
        base = layer_tier[mark_layer[k]] * ny
        for iy in range(cells[k, 2], cells[k, 3] + 1):
            for ix in range(cells[k, 0], cells[k, 1] + 1):
                c = (base + iy) * nx + ix
                if cell_sel[c]:
                    cnt[c + 1] += 1
    for c in range(n_cells):
        cnt[c + 1] += cnt[c]
    fill = cnt[:-1].copy()
    entries = np.empty(cnt[n_cells], np.int32)
    for j in range(m):
        k = j if ident else mark_order[j]
        base = layer_tier[mark_layer[k]] * ny
        for iy in range(cells[k, 2], cells[k, 3] + 1):
            for ix in range(cells[k, 0], cells[k, 1] + 1):
                c = (base + iy) * nx + ix
                if cell_sel[c]:
                    entries[fill[c]] = k
                    fill[c] += 1
    return cnt, entries


def stitch_count(x, y, z, p, mark_start, mark_closed, entries, task_cell, task_e0, task_e1,
                 tier_z0, gx0, gy0, a, nx, ny, half_ov, tan_s, min_len_um):
    """Count pass: pieces and points each task gives after clipping to its grid cell.

    A task is one grid cell and a run of its entries: the marks ``entries[task_e0[t]:task_e1[t]]``,
    in that order (see :func:`cell_entries`).

    Parameters
    ----------
    x, y, z, p : (N,) float64
        Points (µm) and power (mW).
    mark_start : (M+1,) int64
    mark_closed : (M,) bool
    entries : (E,) int32
        Mark indices listed per cell.
    task_cell : (T, 3) int64
        Grid cell (ix, iy, iz) of every task.
    task_e0, task_e1 : (T,) int64
        Range of every task in ``entries``.
    tier_z0 : (nz,) float64
        Fine-axis zero of every tier, µm.
    gx0, gy0, a : float
        Grid origin (sheared coordinates) and nominal block side, µm.
    nx, ny : int
        Grid size; outer walls are at infinity.
    half_ov : float
        Half the overlap, µm: each block writes its cell grown by this on every inner wall.
    tan_s, min_len_um : float
        Shear tangent; pieces shorter than ``min_len_um`` are dropped.

    Returns
    -------
    n_pieces, n_points : (T,) int64
    """
    wait_for_warmup("stitch")
    nt = len(task_e0)
    n_pieces = np.zeros(nt, np.int64)
    n_points = np.zeros(nt, np.int64)
    d = np.zeros(0)
    di = np.zeros(0, np.int64)
    _stitch_tasks(False, x, y, z, p, mark_start, mark_closed, entries, task_cell, task_e0, task_e1, tier_z0, float(gx0),
                  float(gy0), float(a), int(nx), int(ny), float(half_ov), float(tan_s), float(min_len_um), n_pieces,
                  n_points, d, d, d, d, di, di)
    return n_pieces, n_points


def stitch_fill(x, y, z, p, mark_start, mark_closed, entries, task_cell, task_e0, task_e1,
                tier_z0, gx0, gy0, a, nx, ny, half_ov, tan_s, min_len_um, task_kbase, task_pbase,
                ox, oy, oz, op, piece_start, piece_source):
    """Fill pass of :func:`stitch_count`, written straight in output order.

    Task t writes its pieces from ``task_kbase[t]`` and their points from ``task_pbase[t]``
    (prefix sums of the counts, tasks listed in output order): points into ``ox, oy, oz, op``
    (µm, mW), the first point of every piece into ``piece_start`` and the index of its source
    mark into ``piece_source``.
    """
    wait_for_warmup("stitch")
    _stitch_tasks(True, x, y, z, p, mark_start, mark_closed, entries, task_cell, task_e0, task_e1, tier_z0, float(gx0),
                  float(gy0), float(a), int(nx), int(ny), float(half_ov), float(tan_s), float(min_len_um), task_kbase,
                  task_pbase, ox, oy, oz, op, piece_start, piece_source)


@njit(cache=True, parallel=True)
def _stitch_tasks(write, x, y, z, p, mark_start, mark_closed, entries, task_cell, task_e0, task_e1,
                  tier_z0, gx0, gy0, a, nx, ny, half_ov, tan_s, min_len_um, task_k, task_p, ox, oy, oz, op,
                  piece_start, piece_source):
    """Every task of :func:`stitch_count` (``write`` False: counts into ``task_k``, ``task_p``; the
    outputs are empty) or :func:`stitch_fill` (``write``: bases in ``task_k``, ``task_p``). One
    kernel for both passes (they share :func:`clip_mark`). Kept a ``prange`` kernel, unlike the
    others (see :mod:`bioslicer.kernel.pool`): its parallel region gets its arrays marked
    ``noalias``, and the clipping loop runs about twice as fast per core with that."""
    for t in prange(len(task_e0)):
        z0, ulo, uhi, vlo, vhi = _task_walls(task_cell, t, tier_z0, gx0, gy0, a, nx, ny, half_ov)
        kb = task_k[t] if write else 0
        pb = task_p[t] if write else 0
        for j in range(task_e0[t], task_e1[t]):
            k = entries[j]
            kp, kn = clip_mark(x, y, z, p, mark_start[k], mark_start[k + 1], mark_closed[k], tan_s, z0,
                               ulo, uhi, vlo, vhi, min_len_um, write, ox, oy, oz, op, piece_start, pb, kb)
            if write:
                for q in range(kb, kb + kp):
                    piece_source[q] = k
            kb += kp
            pb += kn
        if not write:
            task_k[t] = kb
            task_p[t] = pb
