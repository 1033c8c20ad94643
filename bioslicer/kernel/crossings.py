"""Numba kernels: triangles -> per-layer directed segments -> row crossings -> spans.

Conventions (shared by every kernel here, and what makes the result watertight):

* A layer plane z cuts a triangle when some vertex has ``z_v > z`` ("above") and some has
  ``z_v <= z`` ("below"). A point of the part is therefore inside along z on ``[z_lo, z_hi)``.
* The point where a mesh edge meets the plane is computed from the edge with its vertex
  indices in ascending order (a vertex exactly on the plane is taken as is), so the two
  triangles sharing an edge produce bit-identical points and the 2-D segments of a layer
  form closed chains wherever the mesh is closed.
* Segment direction follows the triangle orientation: outer contours of outward-facing
  shells run counter-clockwise (material on the left).
* Row ``j`` is the line ``v = off + j * dy`` of the row frame. A segment crosses it when
  ``min(v0, v1) <= v_j < max(v0, v1)`` (half-open, so a chain passing through a vertex on a
  row counts once and a chain touching a row at an extremum counts twice with opposite
  signs). A segment running downwards (v decreasing) adds +1 to the winding number of the
  points to its right along +u, upwards adds -1.
* Along a row, crossings with equal u are summed before the winding number is tested, so
  spans are ``[u0, u1)``, sorted, disjoint, non-touching and non-empty.

Fill rules: 0 = positive (material where winding > 0: overlapping shells unite, inward
facing shells subtract even where they overlap each other), 1 = nonzero (winding != 0).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BIG_ROW = 1 << 60


# ----------------------------------------------------------------------------- helpers
@njit(cache=True)
def row_v(off, dy, j):
    """v of row j (the one formula used everywhere for row positions)."""
    return off + np.float64(j) * dy


@njit(cache=True)
def first_row_at_or_above(v, off, dy):
    """Smallest j with ``off + j * dy >= v`` (exact against :func:`row_v`)."""
    j = np.int64(np.ceil((v - off) / dy))
    while row_v(off, dy, j - 1) >= v:
        j -= 1
    while row_v(off, dy, j) < v:
        j += 1
    return j


@njit(cache=True)
def bucket_triangles(tz_min, tz_max, zs_sorted):
    """Triangles cut by each layer (``z_min <= z < z_max``), as CSR over the sorted layers.

    Parameters
    ----------
    tz_min, tz_max : (m,) float64
        Vertical extent of each triangle, µm.
    zs_sorted : (L,) float64
        Layer heights in ascending order, µm.

    Returns
    -------
    start : (L+1,) int64
        Triangles of sorted layer p are ``tri[start[p]:start[p+1]]``.
    tri : (E,) int32
        Triangle indices, ascending within each layer.
    """
    L = zs_sorted.shape[0]
    m = tz_min.shape[0]
    p0 = np.empty(m, np.int64)
    p1 = np.empty(m, np.int64)
    diff = np.zeros(L + 1, np.int64)
    for t in range(m):
        a = np.searchsorted(zs_sorted, tz_min[t])
        b = np.searchsorted(zs_sorted, tz_max[t])
        p0[t] = a
        p1[t] = b
        if b > a:
            diff[a] += 1
            diff[b] -= 1
    start = np.zeros(L + 1, np.int64)
    run = 0
    for p in range(L):
        run += diff[p]
        start[p + 1] = start[p] + run
    ptr = start[:-1].copy()
    tri = np.empty(start[L], np.int32)
    for t in range(m):
        for p in range(p0[t], p1[t]):
            tri[ptr[p]] = t
            ptr[p] += 1
    return start, tri


@njit(cache=True)
def _edge_point(V, a, b, z):
    """Point where the mesh edge (a, b) meets the plane z, computed canonically."""
    if a > b:
        a, b = b, a
    za = V[a, 2]
    zb = V[b, 2]
    if za == z:
        return V[a, 0], V[a, 1]
    if zb == z:
        return V[b, 0], V[b, 1]
    t = (z - za) / (zb - za)
    return V[a, 0] + t * (V[b, 0] - V[a, 0]), V[a, 1] + t * (V[b, 1] - V[a, 1])


@njit(cache=True)
def layer_segments(V, F, tris, z, sx0, sy0, sx1, sy1, face_edges, se0, se1, want_edges):
    """Directed 2-D segments where the plane z cuts the listed triangles.

    Parameters
    ----------
    V : (n, 3) float64 vertices, µm; F : (m, 3) int32 faces.
    tris : (t,) int32 triangles to cut (a layer bucket).
    z : float, plane height, µm.
    sx0, sy0, sx1, sy1 : (>= t,) float64 out: segment start and end, µm.
    face_edges : (m, 3) int64 unique edge id of edge i (vertex i -> i+1) of each face
        (only read when ``want_edges``); se0, se1 : (>= t,) int64 out: edge ids of start/end.

    Returns
    -------
    n : int, number of segments written.
    """
    n = 0
    for q in range(tris.shape[0]):
        t = tris[q]
        i_up = -1
        i_dn = -1
        for i in range(3):
            va = F[t, i]
            vb = F[t, (i + 1) % 3]
            a_above = V[va, 2] > z
            b_above = V[vb, 2] > z
            if (not a_above) and b_above:
                i_up = i
            elif a_above and (not b_above):
                i_dn = i
        if i_up < 0 or i_dn < 0:
            continue
        x0, y0 = _edge_point(V, F[t, i_dn], F[t, (i_dn + 1) % 3], z)
        x1, y1 = _edge_point(V, F[t, i_up], F[t, (i_up + 1) % 3], z)
        sx0[n] = x0
        sy0[n] = y0
        sx1[n] = x1
        sy1[n] = y1
        if want_edges:
            se0[n] = face_edges[t, i_dn]
            se1[n] = face_edges[t, i_up]
        n += 1
    return n


@njit(cache=True)
def _rotate(sx0, sy0, sx1, sy1, n, c, s):
    """In place: (x, y) -> (u, v) = (x c + y s, -x s + y c) for the first n segments."""
    for i in range(n):
        x = sx0[i]
        y = sy0[i]
        sx0[i] = x * c + y * s
        sy0[i] = -x * s + y * c
        x = sx1[i]
        y = sy1[i]
        sx1[i] = x * c + y * s
        sy1[i] = -x * s + y * c


@njit(cache=True)
def _count_crossings(su0, sv0, su1, sv1, n, off, dy, jr0, jr1, umax):
    """Number of row crossings of n segments in the row frame, and their row range."""
    cnt = 0
    jmin = BIG_ROW
    jmax = -BIG_ROW
    for i in range(n):
        v0 = sv0[i]
        v1 = sv1[i]
        if v0 == v1:
            continue
        if su0[i] >= umax and su1[i] >= umax:
            continue
        vlo = min(v0, v1)
        vhi = max(v0, v1)
        j0 = max(first_row_at_or_above(vlo, off, dy), jr0)
        j1 = min(first_row_at_or_above(vhi, off, dy), jr1)
        if j1 > j0:
            cnt += j1 - j0
            jmin = min(jmin, j0)
            jmax = max(jmax, j1 - 1)
    return cnt, jmin, jmax


@njit(cache=True)
def _fill_crossings(su0, sv0, su1, sv1, n, off, dy, jr0, jr1, umax, jbase, crow, cu, cs):
    """Write the crossings (row - jbase, u, sign) of n segments; returns how many."""
    k = 0
    for i in range(n):
        v0 = sv0[i]
        v1 = sv1[i]
        if v0 == v1:
            continue
        u0 = su0[i]
        u1 = su1[i]
        if u0 >= umax and u1 >= umax:
            continue
        if v0 < v1:
            ulo, vlo, uhi, vhi, sgn = u0, v0, u1, v1, -1
        else:
            ulo, vlo, uhi, vhi, sgn = u1, v1, u0, v0, 1
        j0 = max(first_row_at_or_above(vlo, off, dy), jr0)
        j1 = min(first_row_at_or_above(vhi, off, dy), jr1)
        if j1 <= j0:
            continue
        slope = (uhi - ulo) / (vhi - vlo)
        for j in range(j0, j1):
            v = row_v(off, dy, j)
            if v == vlo:
                u = ulo
            else:
                u = ulo + (v - vlo) * slope
            crow[k] = j - jbase
            cu[k] = u
            cs[k] = sgn
            k += 1
    return k


@njit(cache=True)
def _sort_row(u, s, a, b):
    """Sort crossings a:b by u in place (insertion sort for short rows)."""
    if b - a <= 24:
        for i in range(a + 1, b):
            ku = u[i]
            ks = s[i]
            j = i - 1
            while j >= a and u[j] > ku:
                u[j + 1] = u[j]
                s[j + 1] = s[j]
                j -= 1
            u[j + 1] = ku
            s[j + 1] = ks
    else:
        order = np.argsort(u[a:b], kind="mergesort")
        tu = u[a:b][order]
        ts = s[a:b][order]
        u[a:b] = tu
        s[a:b] = ts


@njit(cache=True)
def _row_clip(v, c, s, has_region, bx0, by0, bx1, by1):
    """u-interval [ua, ub) of row v inside the region box (x, y half-open), or (-inf, inf)."""
    ua = -np.inf
    ub = np.inf
    if not has_region:
        return ua, ub
    # x = u c - v s in [bx0, bx1); y = u s + v c in [by0, by1)
    for axis in range(2):
        if axis == 0:
            k = c
            b = -v * s
            lo = bx0
            hi = bx1
        else:
            k = s
            b = v * c
            lo = by0
            hi = by1
        if k == 0.0:
            if not (lo <= b < hi):
                return 0.0, 0.0
        elif k > 0.0:
            ua = max(ua, (lo - b) / k)
            ub = min(ub, (hi - b) / k)
        else:
            ua = max(ua, (hi - b) / k)
            ub = min(ub, (lo - b) / k)
    return ua, ub


@njit(cache=True)
def _sweep_layer(crow, cu, cs, nc, nrows, jbase, off, dy, rule, c, s, has_region, bx0, by0, bx1, by1,
                 order_buf, su, ss, rcount, row_v_out, row_n_out, u0_out, u1_out, r_base, s_base):
    """Counting-sort crossings by row, sort each row by u, sweep the winding number.

    Writes rows (with >= 1 span) from ``r_base`` and spans from ``s_base``; returns
    (rows written, spans written).
    """
    for r in range(nrows + 1):
        rcount[r] = 0
    for i in range(nc):
        rcount[crow[i] + 1] += 1
    for r in range(nrows):
        rcount[r + 1] += rcount[r]
    for r in range(nrows):
        order_buf[r] = rcount[r]
    for i in range(nc):
        r = crow[i]
        p = order_buf[r]
        su[p] = cu[i]
        ss[p] = cs[i]
        order_buf[r] = p + 1
    nr = 0
    ns = 0
    for r in range(nrows):
        a = rcount[r]
        b = rcount[r + 1]
        if b - a < 1:
            continue
        _sort_row(su, ss, a, b)
        v = row_v(off, dy, jbase + r)
        ua, ub = _row_clip(v, c, s, has_region, bx0, by0, bx1, by1)
        if not ua < ub:
            continue
        w = 0
        inside = False
        start = 0.0
        first = ns
        for i in range(a, b):
            w += ss[i]
            if i + 1 < b and su[i + 1] == su[i]:
                continue
            now = (w > 0) if rule == 0 else (w != 0)
            if now and not inside:
                start = su[i]
                inside = True
            elif inside and not now:
                inside = False
                lo = max(start, ua)
                hi = min(su[i], ub)
                if lo < hi:
                    u0_out[s_base + ns] = lo
                    u1_out[s_base + ns] = hi
                    ns += 1
        if inside and ub < np.inf:
            # crossings right of the region were skipped: the material runs past its end
            lo = max(start, ua)
            if lo < ub:
                u0_out[s_base + ns] = lo
                u1_out[s_base + ns] = ub
                ns += 1
        if ns > first:
            row_v_out[r_base + nr] = v
            row_n_out[r_base + nr] = ns - first
            nr += 1
    return nr, ns


# ----------------------------------------------------------------------------- mesh driver
@njit(cache=True, parallel=True)
def mesh_count_pass(V, F, bstart, btri, layer_pos, layer_z, cos_a, sin_a, off, dy, jr0, jr1, umax,
                    chunk_start):
    """Pass 1: crossings per layer and row range. Layers are processed in chunks (prange)."""
    L = layer_z.shape[0]
    ncross = np.zeros(L, np.int64)
    jmin = np.zeros(L, np.int64)
    jmax = np.zeros(L, np.int64)
    nchunks = chunk_start.shape[0] - 1
    dummy_e = np.zeros((1, 3), np.int64)
    for ch in prange(nchunks):
        k0 = chunk_start[ch]
        k1 = chunk_start[ch + 1]
        cap = 1
        for k in range(k0, k1):
            p = layer_pos[k]
            cap = max(cap, bstart[p + 1] - bstart[p])
        x0 = np.empty(cap)
        y0 = np.empty(cap)
        x1 = np.empty(cap)
        y1 = np.empty(cap)
        e0 = np.empty(1, np.int64)
        e1 = np.empty(1, np.int64)
        for k in range(k0, k1):
            p = layer_pos[k]
            tris = btri[bstart[p]:bstart[p + 1]]
            n = layer_segments(V, F, tris, layer_z[k], x0, y0, x1, y1, dummy_e, e0, e1, False)
            _rotate(x0, y0, x1, y1, n, cos_a[k], sin_a[k])
            cnt, a, b = _count_crossings(x0, y0, x1, y1, n, off, dy, jr0[k], jr1[k], umax[k])
            ncross[k] = cnt
            jmin[k] = a
            jmax[k] = b
    return ncross, jmin, jmax


@njit(cache=True, parallel=True)
def mesh_fill_pass(V, F, bstart, btri, layer_pos, layer_z, cos_a, sin_a, off, dy, jr0, jr1, umax,
                   chunk_start, ncross, jmin, jmax, rule, has_region, bx0, by0, bx1, by1,
                   base, row_v_out, row_n_out, u0_out, u1_out, nrows_out, nspans_out):
    """Pass 2: crossings, sort and winding sweep; rows/spans of layer k written from base[k]."""
    nchunks = chunk_start.shape[0] - 1
    dummy_e = np.zeros((1, 3), np.int64)
    for ch in prange(nchunks):
        k0 = chunk_start[ch]
        k1 = chunk_start[ch + 1]
        cap = 1
        ccap = 1
        rcap = 1
        for k in range(k0, k1):
            p = layer_pos[k]
            cap = max(cap, bstart[p + 1] - bstart[p])
            ccap = max(ccap, ncross[k])
            if ncross[k] > 0:
                rcap = max(rcap, jmax[k] - jmin[k] + 1)
        x0 = np.empty(cap)
        y0 = np.empty(cap)
        x1 = np.empty(cap)
        y1 = np.empty(cap)
        e0 = np.empty(1, np.int64)
        e1 = np.empty(1, np.int64)
        crow = np.empty(ccap, np.int64)
        cu = np.empty(ccap)
        cs = np.empty(ccap, np.int8)
        su = np.empty(ccap)
        ss = np.empty(ccap, np.int8)
        rcount = np.empty(rcap + 1, np.int64)
        obuf = np.empty(rcap + 1, np.int64)
        for k in range(k0, k1):
            if ncross[k] == 0:
                nrows_out[k] = 0
                nspans_out[k] = 0
                continue
            p = layer_pos[k]
            tris = btri[bstart[p]:bstart[p + 1]]
            n = layer_segments(V, F, tris, layer_z[k], x0, y0, x1, y1, dummy_e, e0, e1, False)
            _rotate(x0, y0, x1, y1, n, cos_a[k], sin_a[k])
            nc = _fill_crossings(x0, y0, x1, y1, n, off, dy, jr0[k], jr1[k], umax[k], jmin[k], crow, cu, cs)
            nr, ns = _sweep_layer(crow, cu, cs, nc, jmax[k] - jmin[k] + 1, jmin[k], off, dy, rule,
                                  cos_a[k], sin_a[k], has_region, bx0, by0, bx1, by1,
                                  obuf, su, ss, rcount, row_v_out, row_n_out, u0_out, u1_out,
                                  base[k], base[k])
            nrows_out[k] = nr
            nspans_out[k] = ns


# ----------------------------------------------------------------------------- 2-D segments driver
@njit(cache=True, parallel=True)
def seg_count_pass(lstart, X0, Y0, X1, Y1, cos_a, sin_a, off, dy, jr0, jr1, umax, chunk_start):
    """Pass 1 for segments given per layer (CSR ``lstart``) in part coordinates."""
    L = lstart.shape[0] - 1
    ncross = np.zeros(L, np.int64)
    jmin = np.zeros(L, np.int64)
    jmax = np.zeros(L, np.int64)
    nchunks = chunk_start.shape[0] - 1
    for ch in prange(nchunks):
        for k in range(chunk_start[ch], chunk_start[ch + 1]):
            a = lstart[k]
            b = lstart[k + 1]
            x0 = X0[a:b].copy()
            y0 = Y0[a:b].copy()
            x1 = X1[a:b].copy()
            y1 = Y1[a:b].copy()
            _rotate(x0, y0, x1, y1, b - a, cos_a[k], sin_a[k])
            cnt, j0, j1 = _count_crossings(x0, y0, x1, y1, b - a, off, dy, jr0[k], jr1[k], umax[k])
            ncross[k] = cnt
            jmin[k] = j0
            jmax[k] = j1
    return ncross, jmin, jmax


@njit(cache=True, parallel=True)
def seg_fill_pass(lstart, X0, Y0, X1, Y1, cos_a, sin_a, off, dy, jr0, jr1, umax, chunk_start,
                  ncross, jmin, jmax, rule, has_region, bx0, by0, bx1, by1,
                  base, row_v_out, row_n_out, u0_out, u1_out, nrows_out, nspans_out):
    """Pass 2 for segments given per layer; see :func:`mesh_fill_pass`."""
    nchunks = chunk_start.shape[0] - 1
    for ch in prange(nchunks):
        for k in range(chunk_start[ch], chunk_start[ch + 1]):
            if ncross[k] == 0:
                nrows_out[k] = 0
                nspans_out[k] = 0
                continue
            a = lstart[k]
            b = lstart[k + 1]
            x0 = X0[a:b].copy()
            y0 = Y0[a:b].copy()
            x1 = X1[a:b].copy()
            y1 = Y1[a:b].copy()
            _rotate(x0, y0, x1, y1, b - a, cos_a[k], sin_a[k])
            nc0 = ncross[k]
            nrows = jmax[k] - jmin[k] + 1
            crow = np.empty(nc0, np.int64)
            cu = np.empty(nc0)
            cs = np.empty(nc0, np.int8)
            su = np.empty(nc0)
            ss = np.empty(nc0, np.int8)
            rcount = np.empty(nrows + 1, np.int64)
            obuf = np.empty(nrows + 1, np.int64)
            nc = _fill_crossings(x0, y0, x1, y1, b - a, off, dy, jr0[k], jr1[k], umax[k], jmin[k], crow, cu, cs)
            nr, ns = _sweep_layer(crow, cu, cs, nc, nrows, jmin[k], off, dy, rule,
                                  cos_a[k], sin_a[k], has_region, bx0, by0, bx1, by1,
                                  obuf, su, ss, rcount, row_v_out, row_n_out, u0_out, u1_out,
                                  base[k], base[k])
            nrows_out[k] = nr
            nspans_out[k] = ns


@njit(cache=True, parallel=True)
def gather_ranges(src, src_start, counts, dst_start, dst):
    """dst[dst_start[k]:+counts[k]] = src[src_start[k]:+counts[k]] for every k (compaction)."""
    for k in prange(counts.shape[0]):
        a = src_start[k]
        d = dst_start[k]
        for i in range(counts[k]):
            dst[d + i] = src[a + i]
