"""Numba kernels for stitching and scan ordering.

Kernels take flat arrays and return arrays; validation, allocation and units stay in the
Python callers (:mod:`bioslicer.stitching`, :mod:`bioslicer.ordering`). Two passes where the
output size is not known: a count pass, a prefix sum in Python, then a fill pass.

Stitching works in *sheared* coordinates ``u = x - t``, ``v = y - t`` with
``t = (z - z0) * tan(shear)`` and ``z0`` the fine-axis zero of the point's z tier: block walls
are then the fixed lines ``u = const`` and ``v = const``, and ``u`` stays linear along every
straight segment, so a wall crossing is an exact linear interpolation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

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


@njit(cache=True, parallel=True)
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
    m = len(mark_start) - 1
    nc = (m + chunk - 1) // chunk
    out = np.empty((nc, 6))
    for c in prange(nc):
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
    return out


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


@njit(cache=True, parallel=True)
def uv_extents(x, y, z, mark_start, mark_layer, layer_tier, tier_z0, tan_s, chunk):
    """Extents of the sheared coordinates ``u = x - t``, ``v = y - t`` with
    ``t = (z - z0) * tan_s`` and ``z0 = tier_z0[layer_tier[mark_layer]]``, per chunk of marks.

    Returns
    -------
    (C, 4) float64
        umin, umax, vmin, vmax of each chunk of ``chunk`` marks, µm.
    """
    m = len(mark_start) - 1
    nc = (m + chunk - 1) // chunk
    out = np.empty((nc, 4))
    for c in prange(nc):
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
    return out


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
    return (tier_z0[task_cell[t, 2]], _wall(gx0, a, ix, nx, half_ov, True), _wall(gx0, a, ix, nx, half_ov, False),
            _wall(gy0, a, iy, ny, half_ov, True), _wall(gy0, a, iy, ny, half_ov, False))


@njit(cache=True)
def _cand_range(lo, hi, g0, a, n, half_ov):
    """Grid cells ``i0..i1`` (clamped to ``0..n-1``) whose grown cell may meet ``[lo, hi]``."""
    i0 = int(math.floor((lo - g0 - half_ov) / a))
    i1 = int(math.floor((hi - g0 + half_ov) / a))
    return min(max(i0, 0), n - 1), max(min(i1, n - 1), 0)


@njit(cache=True, parallel=True)
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
    m = len(mark_start) - 1
    out = np.empty((m, 4), np.int32)
    for k in prange(m):
        umin, umax, vmin, vmax = _mark_uv(x, y, z, mark_start, mark_layer, layer_tier, tier_z0, tan_s, k)
        ix0, ix1 = _cand_range(umin, umax, gx0, a, nx, half_ov)
        iy0, iy1 = _cand_range(vmin, vmax, gy0, a, ny, half_ov)
        out[k, 0] = ix0
        out[k, 1] = ix1
        out[k, 2] = iy0
        out[k, 3] = iy1
    return out


@njit(cache=True)
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
    entries : (E,) int64
        Mark indices.
    """
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
    entries = np.empty(cnt[n_cells], np.int64)
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


@njit(cache=True, parallel=True)
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
    entries : (E,) int64
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
    nt = len(task_e0)
    n_pieces = np.zeros(nt, np.int64)
    n_points = np.zeros(nt, np.int64)
    d = np.zeros(0)
    di = np.zeros(0, np.int64)
    for t in prange(nt):
        z0, ulo, uhi, vlo, vhi = _task_walls(task_cell, t, tier_z0, gx0, gy0, a, nx, ny, half_ov)
        cp = 0
        cn = 0
        for j in range(task_e0[t], task_e1[t]):
            k = entries[j]
            kp, kn = clip_mark(x, y, z, p, mark_start[k], mark_start[k + 1], mark_closed[k], tan_s, z0,
                               ulo, uhi, vlo, vhi, min_len_um, False, d, d, d, d, di, 0, 0)
            cp += kp
            cn += kn
        n_pieces[t] = cp
        n_points[t] = cn
    return n_pieces, n_points


@njit(cache=True, parallel=True)
def stitch_fill(x, y, z, p, mark_start, mark_closed, entries, task_cell, task_e0, task_e1,
                tier_z0, gx0, gy0, a, nx, ny, half_ov, tan_s, min_len_um, task_block, task_kbase, task_pbase,
                mark_kind, mark_layer, mark_speed, ox, oy, oz, op, piece_start, out_kind, out_layer, out_block,
                out_speed):
    """Fill pass of :func:`stitch_count`, written straight in output order.

    Task t writes its pieces from ``task_kbase[t]`` and their points from ``task_pbase[t]``
    (prefix sums of the counts, tasks listed in output order): points into ``ox, oy, oz, op``
    (µm, mW), the first point of every piece into ``piece_start``, and the kind, layer, speed
    of the source mark and the block ``task_block[t]`` into ``out_kind, out_layer, out_speed,
    out_block``.
    """
    nt = len(task_e0)
    for t in prange(nt):
        z0, ulo, uhi, vlo, vhi = _task_walls(task_cell, t, tier_z0, gx0, gy0, a, nx, ny, half_ov)
        kb = task_kbase[t]
        pb = task_pbase[t]
        blk = task_block[t]
        for j in range(task_e0[t], task_e1[t]):
            k = entries[j]
            kp, kn = clip_mark(x, y, z, p, mark_start[k], mark_start[k + 1], mark_closed[k], tan_s, z0,
                               ulo, uhi, vlo, vhi, min_len_um, True, ox, oy, oz, op, piece_start, pb, kb)
            for q in range(kb, kb + kp):
                out_kind[q] = mark_kind[k]
                out_layer[q] = mark_layer[k]
                out_speed[q] = mark_speed[k]
                out_block[q] = blk
            kb += kp
            pb += kn


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


# ----------------------------------------------------------------------------- ordering


@njit(cache=True)
def _dist(ax, ay, az, bx, by, bz):
    return math.sqrt((ax - bx) ** 2 + (ay - by) ** 2 + (az - bz) ** 2)


@njit(cache=True)
def _serpentine(idx, x, y, z, mark_start, cx, cy, cz, out, flip, pos):
    """Serpentine order of 2-point marks ``idx``: rows by the perpendicular offset of their
    midpoints along the longest mark's direction, alternating direction row by row. Of the four
    variants (rows ascending or descending, first row forward or back) the one starting nearest
    to (cx, cy, cz) is taken. Writes ``out[pos:pos+len(idx)]`` and ``flip``; returns the end point.
    """
    n = len(idx)
    best_l = -1.0
    dx = 1.0
    dy = 0.0
    for j in range(n):
        s = mark_start[idx[j]]
        ex = x[s + 1] - x[s]
        ey = y[s + 1] - y[s]
        ll = ex * ex + ey * ey
        if ll > best_l:
            best_l = ll
            dx = ex
            dy = ey
    nl = math.sqrt(best_l)
    if nl > 0.0:
        dx /= nl
        dy /= nl
    else:
        dx = 1.0
        dy = 0.0
    w = np.empty(n)
    al = np.empty(n)
    fwd = np.empty(n, np.bool_)
    for j in range(n):
        s = mark_start[idx[j]]
        mx = 0.5 * (x[s] + x[s + 1])
        my = 0.5 * (y[s] + y[s + 1])
        w[j] = -dy * mx + dx * my
        al[j] = dx * mx + dy * my
        fwd[j] = (x[s + 1] - x[s]) * dx + (y[s + 1] - y[s]) * dy >= 0.0
    # rows: sorted offsets split where consecutive ones differ by more than 1e-3 µm (tied
    # offsets share a row, so the sort need not be stable)
    ow = np.argsort(w)
    row = np.empty(n, np.int64)
    r = 0
    for j in range(n):
        if j > 0 and w[ow[j]] - w[ow[j - 1]] > 1e-3:
            r += 1
        row[ow[j]] = r
    nrows = r + 1
    rstart = np.zeros(nrows + 1, np.int64)
    for j in range(n):
        rstart[row[j] + 1] += 1
    for q in range(nrows):
        rstart[q + 1] += rstart[q]
    # marks sorted by row, then along, then index: counting sort by row, stable sort in each row
    seq = np.empty(n, np.int64)
    fill = ow  # reused as the fill pointers
    for q in range(nrows):
        fill[q] = rstart[q]
    for j in range(n):
        seq[fill[row[j]]] = j
        fill[row[j]] += 1
    for q in range(nrows):
        a0 = rstart[q]
        a1 = rstart[q + 1]
        if a1 - a0 <= 32:
            for i in range(a0 + 1, a1):
                v = seq[i]
                key = al[v]
                t = i
                while t > a0 and al[seq[t - 1]] > key:
                    seq[t] = seq[t - 1]
                    t -= 1
                seq[t] = v
        else:
            sub = seq[a0:a1].copy()
            o = np.argsort(al[sub], kind="mergesort")
            for i in range(a1 - a0):
                seq[a0 + i] = sub[o[i]]
    # choose the variant whose first point is nearest to the current position
    best = np.inf
    bv = 0
    for v in range(4):
        desc_rows = v >= 2
        first_fwd = (v % 2) == 0
        r0 = nrows - 1 if desc_rows else 0
        jj = seq[rstart[r0]] if first_fwd else seq[rstart[r0 + 1] - 1]
        s = mark_start[idx[jj]]
        # start at the lower-along end when going forward
        lo_first = fwd[jj] == first_fwd
        q = s if lo_first else s + 1
        d = _dist(x[q], y[q], z[q], cx, cy, cz)
        if d < best:
            best = d
            bv = v
    desc_rows = bv >= 2
    first_fwd = (bv % 2) == 0
    k = pos
    for rr in range(nrows):
        r = nrows - 1 - rr if desc_rows else rr
        go_fwd = first_fwd if rr % 2 == 0 else not first_fwd
        a0 = rstart[r]
        a1 = rstart[r + 1]
        for t in range(a1 - a0):
            jj = seq[a0 + t] if go_fwd else seq[a1 - 1 - t]
            m = idx[jj]
            out[k] = m
            flip[k] = fwd[jj] != go_fwd
            k += 1
    m = out[k - 1]
    s = mark_start[m]
    q = s if flip[k - 1] else s + 1
    return x[q], y[q], z[q]


@njit(cache=True)
def _build_grid(ex, ey, alive_e, ecell, epos):
    """Bucket the alive entries into a grid of square cells (CSR with per-cell alive counts).

    The cell side starts at ``span / sqrt(n_alive / 2)`` (about two entries per cell for spread
    points) and is halved while the non-empty cells hold more than 6 entries on average (entries
    along lines, as hatch ends), up to 16 cells per entry. Writes the cell of every alive entry
    into ``ecell`` and its slot in ``citems`` into ``epos``.

    Returns
    -------
    (x0, y0, cs, nx, ny, cstart, ccount, citems, n_alive)
    """
    n = len(ex)
    xmin = np.inf
    ymin = np.inf
    xmax = -np.inf
    ymax = -np.inf
    na = 0
    for i in range(n):
        if alive_e[i]:
            na += 1
            xmin = min(xmin, ex[i])
            xmax = max(xmax, ex[i])
            ymin = min(ymin, ey[i])
            ymax = max(ymax, ey[i])
    if na == 0:
        return 0.0, 0.0, 1.0, 1, 1, np.zeros(2, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64), 0
    side = max(1, int(math.sqrt(max(1, na // 2))))
    span = max(xmax - xmin, ymax - ymin)
    cs = span / side if span > 0 else 1.0
    for it in range(6):
        nx = int((xmax - xmin) / cs) + 1
        ny = int((ymax - ymin) / cs) + 1
        cnt = np.zeros(nx * ny + 1, np.int64)
        nonempty = 0
        for i in range(n):
            if alive_e[i]:
                ix = min(nx - 1, int((ex[i] - xmin) / cs))
                iy = min(ny - 1, int((ey[i] - ymin) / cs))
                c = iy * nx + ix
                ecell[i] = c
                if cnt[c + 1] == 0:
                    nonempty += 1
                cnt[c + 1] += 1
        if na <= 6 * nonempty or span <= 0 or 4 * nx * ny > 16 * na or it == 5:
            break
        cs = cs / 2
    for c in range(nx * ny):
        cnt[c + 1] += cnt[c]
    ccount = np.zeros(nx * ny, np.int64)
    items = np.empty(na, np.int64)
    for i in range(n):
        if alive_e[i]:
            c = ecell[i]
            q = cnt[c] + ccount[c]
            items[q] = i
            epos[i] = q
            ccount[c] += 1
    return xmin, ymin, cs, nx, ny, cnt, ccount, items, na


@njit(cache=True)
def _kill(e, alive_e, ecell, epos, cstart, ccount, citems):
    """Remove entry e from its cell (swap with the cell's last alive entry)."""
    alive_e[e] = False
    c = ecell[e]
    last = cstart[c] + ccount[c] - 1
    q = epos[e]
    moved = citems[last]
    citems[q] = moved
    epos[moved] = q
    ccount[c] -= 1


@njit(cache=True)
def _nearest(idx, x, y, z, mark_start, mark_closed, cx, cy, cz, out, flip, rot, pos):
    """Greedy nearest-neighbour order of marks ``idx`` from (cx, cy, cz), with a grid over
    candidate start points (both ends of open marks, every vertex of closed contours) from which
    used entries are removed; it is rebuilt when a quarter of the entries are left. Ties go to
    the lower entry index. Returns the end point."""
    n = len(idx)
    ne = 0
    for j in range(n):
        m = idx[j]
        ne += (mark_start[m + 1] - mark_start[m] - 1) if mark_closed[m] else 2
    ex = np.empty(ne)
    ey = np.empty(ne)
    ez = np.empty(ne)
    emark = np.empty(ne, np.int64)   # local mark index j
    evert = np.empty(ne, np.int64)   # vertex offset (closed) or 0 / -1 (open start / end)
    q = 0
    for j in range(n):
        m = idx[j]
        s = mark_start[m]
        e = mark_start[m + 1]
        if mark_closed[m]:
            for i in range(s, e - 1):
                ex[q] = x[i]
                ey[q] = y[i]
                ez[q] = z[i]
                emark[q] = j
                evert[q] = i - s
                q += 1
        else:
            ex[q] = x[s]
            ey[q] = y[s]
            ez[q] = z[s]
            emark[q] = j
            evert[q] = 0
            q += 1
            ex[q] = x[e - 1]
            ey[q] = y[e - 1]
            ez[q] = z[e - 1]
            emark[q] = j
            evert[q] = -1
            q += 1
    alive_e = np.ones(ne, np.bool_)
    ecell = np.empty(ne, np.int64)
    epos = np.empty(ne, np.int64)
    x0, y0, cs, gnx, gny, cstart, ccount, citems, built = _build_grid(ex, ey, alive_e, ecell, epos)
    n_alive = ne
    k = pos
    for _ in range(n):
        if n_alive * 4 < built and n_alive > 16:
            x0, y0, cs, gnx, gny, cstart, ccount, citems, built = _build_grid(ex, ey, alive_e, ecell, epos)
        gx = min(gnx - 1, max(0, int(math.floor((cx - x0) / cs))))
        gy = min(gny - 1, max(0, int(math.floor((cy - y0) / cs))))
        best = np.inf
        be = -1
        rmax = max(gnx, gny)
        for r in range(rmax + 1):
            for iy in range(max(gy - r, 0), min(gy + r, gny - 1) + 1):
                edge = iy == gy - r or iy == gy + r
                step = 1 if edge else 2 * r
                ix = gx - r
                while ix <= gx + r:
                    if 0 <= ix < gnx:
                        c = iy * gnx + ix
                        c0 = cstart[c]
                        for t in range(c0, c0 + ccount[c]):
                            ei = citems[t]
                            d = _dist(ex[ei], ey[ei], ez[ei], cx, cy, cz)
                            if d < best or (d == best and ei < be):
                                best = d
                                be = ei
                    if step == 0:
                        break
                    ix += step
            if be >= 0 and best <= r * cs:
                break
        j = emark[be]
        m = idx[j]
        out[k] = m
        s = mark_start[m]
        e = mark_start[m + 1]
        if mark_closed[m]:
            rot[k] = evert[be]
            cnt = e - s - 1
            first = be - evert[be]
            for t in range(cnt):
                _kill(first + t, alive_e, ecell, epos, cstart, ccount, citems)
            n_alive -= cnt
            cx = x[s + evert[be]]
            cy = y[s + evert[be]]
            cz = z[s + evert[be]]
        else:
            f = evert[be] == -1
            flip[k] = f
            base = be if not f else be - 1
            _kill(base, alive_e, ecell, epos, cstart, ccount, citems)
            _kill(base + 1, alive_e, ecell, epos, cstart, ccount, citems)
            n_alive -= 2
            qq = s if f else e - 1
            cx = x[qq]
            cy = y[qq]
            cz = z[qq]
        k += 1
    return cx, cy, cz


@njit(cache=True)
def _one_mark_per_row(idx, x, y, mark_start):
    """True when no two of the 2-point marks ``idx`` share a row (their midpoints' offsets across
    the first mark's direction differ by more than 1e-3 µm)."""
    n = len(idx)
    s = mark_start[idx[0]]
    dx = x[s + 1] - x[s]
    dy = y[s + 1] - y[s]
    nl = math.sqrt(dx * dx + dy * dy)
    if nl == 0.0:
        return False
    w = np.empty(n)
    for j in range(n):
        s = mark_start[idx[j]]
        w[j] = (-dy * (x[s] + x[s + 1]) + dx * (y[s] + y[s + 1])) / (2 * nl)
    w.sort()
    for j in range(1, n):
        if w[j] - w[j - 1] <= 1e-3:
            return False
    return True


@njit(cache=True)
def _seq_jump(order, flip, rot, x, y, z, mark_start, cx, cy, cz):
    """Total jump length (µm) of writing marks ``order`` (with ``flip``/``rot`` per position)
    starting from (cx, cy, cz)."""
    tot = 0.0
    for k in range(len(order)):
        m = order[k]
        s = mark_start[m]
        e = mark_start[m + 1]
        if rot[k] > 0:
            a = s + rot[k]
            b = a
        elif flip[k]:
            a = e - 1
            b = s
        else:
            a = s
            b = e - 1
        tot += _dist(x[a], y[a], z[a], cx, cy, cz)
        cx = x[b]
        cy = y[b]
        cz = z[b]
    return tot


@njit(cache=True, parallel=True)
def order_runs(run_start, x, y, z, mark_start, mark_kind, mark_closed, serp_kind):
    """Order the marks of every run (block, layer) independently (runs in parallel).

    Marks are grouped by (kind, serpentine-able) in order of first appearance in the run;
    2-point marks of a kind with ``serp_kind[kind]`` go serpentine (or nearest neighbour when
    that jumps less, as on layers broken into islands), the rest nearest neighbour. Each run
    starts from the first point of its first mark.

    Returns
    -------
    order : (M,) int64
        Source mark of each output mark.
    flip : (M,) bool
        Output mark j is its (open) source mark reversed.
    rot : (M,) int32
        Output mark j is its closed source mark started at vertex ``rot[j]`` (0: unchanged).
    """
    m_total = len(mark_start) - 1
    order = np.empty(m_total, np.int64)
    flip = np.zeros(m_total, np.bool_)
    rot = np.zeros(m_total, np.int32)
    nr = len(run_start) - 1
    for r in prange(nr):
        a = run_start[r]
        b = run_start[r + 1]
        keys = np.empty(b - a, np.int64)
        for m in range(a, b):
            npt = mark_start[m + 1] - mark_start[m]
            kd = np.int64(mark_kind[m])
            sp = 1 if (npt == 2 and kd < len(serp_kind) and serp_kind[kd]) else 0
            keys[m - a] = kd * 2 + sp
        s0 = mark_start[a]
        cx = x[s0]
        cy = y[s0]
        cz = z[s0]
        pos = a
        done = np.zeros(b - a, np.bool_)
        for j0 in range(b - a):
            if done[j0]:
                continue
            key = keys[j0]
            cnt = 0
            for j in range(j0, b - a):
                if keys[j] == key:
                    cnt += 1
            idx = np.empty(cnt, np.int64)
            c = 0
            for j in range(j0, b - a):
                if keys[j] == key:
                    idx[c] = a + j
                    done[j] = True
                    c += 1
            o1 = np.empty(cnt, np.int64)
            f1 = np.zeros(cnt, np.bool_)
            r1 = np.zeros(cnt, np.int64)
            plain = key % 2 == 1 and _one_mark_per_row(idx, x, y, mark_start)
            if plain:
                # plain rows (no holes, no islands): serpentine, no need to try anything else
                e1 = _serpentine(idx, x, y, z, mark_start, cx, cy, cz, o1, f1, 0)
            else:
                e1 = _nearest(idx, x, y, z, mark_start, mark_closed, cx, cy, cz, o1, f1, r1, 0)
            if key % 2 == 1 and cnt > 1 and not plain:
                # rows broken by holes or islands: serpentine rows, unless the nearest-neighbour
                # order jumps less
                o2 = np.empty(cnt, np.int64)
                f2 = np.zeros(cnt, np.bool_)
                r2 = np.zeros(cnt, np.int64)
                e2 = _serpentine(idx, x, y, z, mark_start, cx, cy, cz, o2, f2, 0)
                if _seq_jump(o2, f2, r2, x, y, z, mark_start, cx, cy, cz) <= \
                        _seq_jump(o1, f1, r1, x, y, z, mark_start, cx, cy, cz):
                    o1, f1, r1, e1 = o2, f2, r2, e2
            for t in range(cnt):
                order[pos + t] = o1[t]
                flip[pos + t] = f1[t]
                rot[pos + t] = r1[t]
            cx, cy, cz = e1
            pos += cnt
    return order, flip, rot


@njit(cache=True)
def _put_mark(sx, sy, sz, sp, s, n, r, f, ox, oy, oz, op, d):
    """Write the n points of a mark starting at s in (sx, sy, sz, sp) to d in (ox, oy, oz, op),
    rotated to start at vertex r (closed marks, r > 0) or reversed (f)."""
    for i in range(n):
        if r > 0:
            si = s + (r + i) % (n - 1)
        elif f:
            si = s + n - 1 - i
        else:
            si = s + i
        ox[d + i] = sx[si]
        oy[d + i] = sy[si]
        oz[d + i] = sz[si]
        op[d + i] = sp[si]


@njit(cache=True, parallel=True)
def apply_order(run_start, mark_start, order, flip, rot, x, y, z, p, kind, speed, inplace, n_chunks,
                ox, oy, oz, op, ostart, okind, ospeed):
    """Write mark ``order[j]`` as output mark j, reversed where ``flip[j]`` and rotated to start
    at vertex ``rot[j]`` (closed marks), with its kind and speed.

    Marks only move inside their run, so every run keeps its point range. Runs are processed in
    ``n_chunks`` parallel chunks. With ``inplace`` the outputs are the inputs themselves
    (``ox is x``, ``ostart is mark_start``, ...): each run is first copied to a scratch buffer
    allocated once per chunk. Otherwise the outputs are preallocated (``ostart[M]`` set by the
    caller).
    """
    nr = len(run_start) - 1
    for c in prange(n_chunks):
        r0 = c * nr // n_chunks
        r1 = (c + 1) * nr // n_chunks
        mp = 0
        mm = 0
        if inplace:
            for r in range(r0, r1):
                mp = max(mp, mark_start[run_start[r + 1]] - mark_start[run_start[r]])
                mm = max(mm, run_start[r + 1] - run_start[r])
        sx = np.empty(mp)
        sy = np.empty(mp)
        sz = np.empty(mp)
        sp = np.empty(mp)
        ss = np.empty(mm + 1, np.int64)
        sk = np.empty(mm, kind.dtype)
        sv = np.empty(mm)
        for r in range(r0, r1):
            a = run_start[r]
            b = run_start[r + 1]
            p0 = mark_start[a]
            if inplace:
                for i in range(mark_start[b] - p0):
                    sx[i] = x[p0 + i]
                    sy[i] = y[p0 + i]
                    sz[i] = z[p0 + i]
                    sp[i] = p[p0 + i]
                for j in range(a, b + 1):
                    ss[j - a] = mark_start[j] - p0
                for j in range(a, b):
                    sk[j - a] = kind[j]
                    sv[j - a] = speed[j]
            d = p0
            for j in range(a, b):
                k = order[j]
                ostart[j] = d
                if inplace:
                    s = ss[k - a]
                    n = ss[k - a + 1] - s
                    okind[j] = sk[k - a]
                    ospeed[j] = sv[k - a]
                    _put_mark(sx, sy, sz, sp, s, n, rot[j], flip[j], ox, oy, oz, op, d)
                else:
                    s = mark_start[k]
                    n = mark_start[k + 1] - s
                    okind[j] = kind[k]
                    ospeed[j] = speed[k]
                    _put_mark(x, y, z, p, s, n, rot[j], flip[j], ox, oy, oz, op, d)
                d += n


# ----------------------------------------------------------------------------- measures


@njit(cache=True, parallel=True)
def mark_z_bounds(z, mark_start):
    """(M, 2) float64: lowest and highest z of each mark's points, µm."""
    m = len(mark_start) - 1
    out = np.empty((m, 2))
    for k in prange(m):
        lo = np.inf
        hi = -np.inf
        for i in range(mark_start[k], mark_start[k + 1]):
            lo = min(lo, z[i])
            hi = max(hi, z[i])
        out[k, 0] = lo
        out[k, 1] = hi
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
def jump_vectors(x, y, z, mark_start):
    """(M-1, 3) float64: from the last point of mark k to the first point of mark k+1, µm."""
    m = len(mark_start) - 1
    out = np.empty((max(m - 1, 0), 3))
    for k in prange(m - 1):
        e = mark_start[k + 1] - 1
        s = mark_start[k + 1]
        out[k, 0] = x[s] - x[e]
        out[k, 1] = y[s] - y[e]
        out[k, 2] = z[s] - z[e]
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
