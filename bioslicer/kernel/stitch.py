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
        t0 = 0.0
        t1 = 1.0
        ok = True
        if du == 0.0:
            if not (ua >= ulo and ua < uhi):
                ok = False
        else:
            c0 = (ulo - ua) / du
            c1 = (uhi - ua) / du
            if c0 > c1:
                c0, c1 = c1, c0
            t0 = max(t0, c0)
            t1 = min(t1, c1)
        if ok:
            if dv == 0.0:
                if not (va >= vlo and va < vhi):
                    ok = False
            else:
                c0 = (vlo - va) / dv
                c1 = (vhi - va) / dv
                if c0 > c1:
                    c0, c1 = c1, c0
                t0 = max(t0, c0)
                t1 = min(t1, c1)
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
def mark_uv_bounds(x, y, z, mark_start, mark_z0, tan_s):
    """Per-mark bounds of the sheared coordinates.

    Parameters
    ----------
    x, y, z : (N,) float64
        Points, µm.
    mark_start : (M+1,) int64
    mark_z0 : (M,) float64
        Fine-axis zero of each mark's tier, µm.
    tan_s : float
        Shear tangent.

    Returns
    -------
    (M, 4) float64
        umin, umax, vmin, vmax of each mark, µm.
    """
    m = len(mark_start) - 1
    out = np.empty((m, 4))
    for k in prange(m):
        umin = np.inf
        umax = -np.inf
        vmin = np.inf
        vmax = -np.inf
        z0 = mark_z0[k]
        for i in range(mark_start[k], mark_start[k + 1]):
            t = (z[i] - z0) * tan_s
            u = x[i] - t
            v = y[i] - t
            umin = min(umin, u)
            umax = max(umax, u)
            vmin = min(vmin, v)
            vmax = max(vmax, v)
        out[k, 0] = umin
        out[k, 1] = umax
        out[k, 2] = vmin
        out[k, 3] = vmax
    return out


@njit(cache=True)
def _wall(g0, a, i, n, half_ov, lo_side):
    """Sheared wall of grid cell i (outer walls at ±inf)."""
    if lo_side:
        return -np.inf if i == 0 else g0 + i * a - half_ov
    return np.inf if i == n - 1 else g0 + (i + 1) * a + half_ov


@njit(cache=True)
def _cand_range(lo, hi, g0, a, n, half_ov):
    i0 = int(math.floor((lo - g0 - half_ov) / a))
    i1 = int(math.floor((hi - g0 + half_ov) / a))
    return max(i0, 0), min(i1, n - 1)


@njit(cache=True, parallel=True)
def stitch_count(x, y, z, p, mark_start, mark_closed, mark_z0, mark_tier, uvb,
                 gx0, gy0, a, nx, ny, half_ov, tan_s, min_len_um):
    """Count pass: pieces and points each mark gives after clipping to the block grid.

    Parameters
    ----------
    mark_closed : (M,) bool
    mark_z0 : (M,) float64
        Fine-axis zero of each mark's tier, µm.
    mark_tier : (M,) int64
        z tier of each mark (unused here, kept for the fill signature).
    uvb : (M, 4) float64
        From :func:`mark_uv_bounds`.
    gx0, gy0, a : float
        Grid origin (sheared coordinates) and nominal block side, µm.
    nx, ny : int
        Grid size; outer walls are at infinity.
    half_ov : float
        Half the overlap, µm: each block writes its cell grown by this on every inner wall.

    Returns
    -------
    n_pieces, n_points : (M,) int64
    """
    m = len(mark_start) - 1
    n_pieces = np.zeros(m, np.int64)
    n_points = np.zeros(m, np.int64)
    d = np.zeros(0)
    di = np.zeros(0, np.int64)
    for k in prange(m):
        ix0, ix1 = _cand_range(uvb[k, 0], uvb[k, 1], gx0, a, nx, half_ov)
        iy0, iy1 = _cand_range(uvb[k, 2], uvb[k, 3], gy0, a, ny, half_ov)
        s = mark_start[k]
        e = mark_start[k + 1]
        cp = 0
        cn = 0
        for iy in range(iy0, iy1 + 1):
            vlo = _wall(gy0, a, iy, ny, half_ov, True)
            vhi = _wall(gy0, a, iy, ny, half_ov, False)
            for ix in range(ix0, ix1 + 1):
                ulo = _wall(gx0, a, ix, nx, half_ov, True)
                uhi = _wall(gx0, a, ix, nx, half_ov, False)
                kp, kn = clip_mark(x, y, z, p, s, e, mark_closed[k], tan_s, mark_z0[k], ulo, uhi, vlo, vhi,
                                   min_len_um, False, d, d, d, d, di, 0, 0)
                cp += kp
                cn += kn
        n_pieces[k] = cp
        n_points[k] = cn
    return n_pieces, n_points


@njit(cache=True, parallel=True)
def stitch_fill(x, y, z, p, mark_start, mark_closed, mark_z0, mark_tier, uvb,
                gx0, gy0, a, nx, ny, half_ov, tan_s, min_len_um, piece_off, point_off,
                ox, oy, oz, op, piece_start, piece_cell, piece_src):
    """Fill pass of :func:`stitch_count`.

    Writes the clipped points into ``ox, oy, oz, op`` (µm, mW), the first point of every piece
    into ``piece_start``, the dense grid cell ``(iz * ny + iy) * nx + ix`` of every piece into
    ``piece_cell`` and the source mark into ``piece_src``. Pieces of mark k start at
    ``piece_off[k]`` and their points at ``point_off[k]`` (exclusive prefix sums of the counts).
    """
    m = len(mark_start) - 1
    for k in prange(m):
        ix0, ix1 = _cand_range(uvb[k, 0], uvb[k, 1], gx0, a, nx, half_ov)
        iy0, iy1 = _cand_range(uvb[k, 2], uvb[k, 3], gy0, a, ny, half_ov)
        s = mark_start[k]
        e = mark_start[k + 1]
        kb = piece_off[k]
        pb = point_off[k]
        for iy in range(iy0, iy1 + 1):
            vlo = _wall(gy0, a, iy, ny, half_ov, True)
            vhi = _wall(gy0, a, iy, ny, half_ov, False)
            for ix in range(ix0, ix1 + 1):
                ulo = _wall(gx0, a, ix, nx, half_ov, True)
                uhi = _wall(gx0, a, ix, nx, half_ov, False)
                kp, kn = clip_mark(x, y, z, p, s, e, mark_closed[k], tan_s, mark_z0[k], ulo, uhi, vlo, vhi,
                                   min_len_um, True, ox, oy, oz, op, piece_start, pb, kb)
                cell = (mark_tier[k] * ny + iy) * nx + ix
                for q in range(kb, kb + kp):
                    piece_cell[q] = cell
                    piece_src[q] = k
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


@njit(cache=True, parallel=True)
def gather_marks(src_start, dst_start, order, x, y, z, p, ox, oy, oz, op):
    """Copy the points of mark ``order[j]`` to output mark j (all arrays preallocated)."""
    for j in prange(len(order)):
        k = order[j]
        s = src_start[k]
        d = dst_start[j]
        for i in range(src_start[k + 1] - s):
            ox[d + i] = x[s + i]
            oy[d + i] = y[s + i]
            oz[d + i] = z[s + i]
            op[d + i] = p[s + i]


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
    ow = np.argsort(w, kind="mergesort")
    row = np.empty(n, np.int64)
    r = 0
    for j in range(n):
        if j > 0 and w[ow[j]] - w[ow[j - 1]] > 1e-3:
            r += 1
        row[ow[j]] = r
    nrows = r + 1
    oa = np.argsort(al, kind="mergesort")
    rk = np.empty(n, np.int64)
    for j in range(n):
        rk[j] = row[oa[j]]
    o2 = np.argsort(rk, kind="mergesort")
    seq = np.empty(n, np.int64)  # marks sorted by row, then along
    for j in range(n):
        seq[j] = oa[o2[j]]
    rstart = np.zeros(nrows + 1, np.int64)
    for j in range(n):
        rstart[row[j] + 1] += 1
    for q in range(nrows):
        rstart[q + 1] += rstart[q]
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
def _build_grid(ex, ey, alive_e, ncell_target):
    """CSR grid over the alive entries; returns (x0, y0, cs, nx, ny, cstart, citems, n_alive)."""
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
        return 0.0, 0.0, 1.0, 1, 1, np.zeros(2, np.int64), np.zeros(0, np.int64), 0
    side = max(1, int(math.sqrt(max(1, ncell_target))))
    span = max(xmax - xmin, ymax - ymin)
    cs = span / side if span > 0 else 1.0
    nx = min(side, int((xmax - xmin) / cs) + 1)
    ny = min(side, int((ymax - ymin) / cs) + 1)
    cnt = np.zeros(nx * ny + 1, np.int64)
    cell = np.empty(n, np.int64)
    for i in range(n):
        if alive_e[i]:
            ix = min(nx - 1, int((ex[i] - xmin) / cs))
            iy = min(ny - 1, int((ey[i] - ymin) / cs))
            c = iy * nx + ix
            cell[i] = c
            cnt[c + 1] += 1
    for c in range(nx * ny):
        cnt[c + 1] += cnt[c]
    fill = cnt[:-1].copy()
    items = np.empty(na, np.int64)
    for i in range(n):
        if alive_e[i]:
            c = cell[i]
            items[fill[c]] = i
            fill[c] += 1
    return xmin, ymin, cs, nx, ny, cnt, items, na


@njit(cache=True)
def _nearest(idx, x, y, z, mark_start, mark_closed, cx, cy, cz, out, flip, rot, pos):
    """Greedy nearest-neighbour order of marks ``idx`` from (cx, cy, cz), with a CSR grid over
    candidate start points (both ends of open marks, every vertex of closed contours) that is
    rebuilt coarser as marks are used. Ties go to the lower entry index. Returns the end point."""
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
    used = np.zeros(n, np.bool_)
    alive_e = np.ones(ne, np.bool_)
    x0, y0, cs, gnx, gny, cstart, citems, built = _build_grid(ex, ey, alive_e, ne // 2)
    n_alive = ne
    k = pos
    for _ in range(n):
        if n_alive * 4 < built and n_alive > 16:
            x0, y0, cs, gnx, gny, cstart, citems, built = _build_grid(ex, ey, alive_e, n_alive // 2)
        gx = min(gnx - 1, max(0, int(math.floor((cx - x0) / cs))))
        gy = min(gny - 1, max(0, int(math.floor((cy - y0) / cs))))
        best = np.inf
        be = -1
        rmax = max(gnx, gny)
        for r in range(rmax + 1):
            for iy in range(gy - r, gy + r + 1):
                if iy < 0 or iy >= gny:
                    continue
                edge = iy == gy - r or iy == gy + r
                step = 1 if edge else 2 * r
                ix = gx - r
                while ix <= gx + r:
                    if 0 <= ix < gnx:
                        c = iy * gnx + ix
                        for t in range(cstart[c], cstart[c + 1]):
                            ei = citems[t]
                            if alive_e[ei]:
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
        used[j] = True
        s = mark_start[m]
        e = mark_start[m + 1]
        if mark_closed[m]:
            rot[k] = evert[be]
            cnt = e - s - 1
            for t in range(cnt):
                alive_e[be - evert[be] + t] = False
            n_alive -= cnt
            cx = x[s + evert[be]]
            cy = y[s + evert[be]]
            cz = z[s + evert[be]]
        else:
            f = evert[be] == -1
            flip[k] = f
            base = be if not f else be - 1
            alive_e[base] = False
            alive_e[base + 1] = False
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
    rot : (M,) int64
        Output mark j is its closed source mark started at vertex ``rot[j]`` (0: unchanged).
    """
    m_total = len(mark_start) - 1
    order = np.empty(m_total, np.int64)
    flip = np.zeros(m_total, np.bool_)
    rot = np.zeros(m_total, np.int64)
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


@njit(cache=True, parallel=True)
def reorder_points(src_start, dst_start, order, flip, rot, x, y, z, p, ox, oy, oz, op):
    """Write mark ``order[j]`` as output mark j, reversed where ``flip[j]`` and rotated to start
    at vertex ``rot[j]`` (closed marks), into preallocated ``ox, oy, oz, op``."""
    for j in prange(len(order)):
        k = order[j]
        s = src_start[k]
        n = src_start[k + 1] - s
        d = dst_start[j]
        r = rot[j]
        f = flip[j]
        for i in range(n):
            if r > 0:
                si = s + (r + i) % (n - 1)
            elif f:
                si = s + n - 1 - i
            else:
                si = s + i
            ox[d + i] = x[si]
            oy[d + i] = y[si]
            oz[d + i] = z[si]
            op[d + i] = p[si]


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
