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
from numba import njit

from .pool import run_chunks

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
def _row_ranges(su0, sv0, su1, sv1, n, off, dy, jr0, jr1, umax, seg_j0, seg_j1):
    """Rows crossed by each of n segments in the row frame.

    Parameters
    ----------
    su0, sv0, su1, sv1 : (>= n,) float64, segment ends in the row frame, µm.
    off, dy : float, row grid (``v_j = off + j dy``), µm.
    jr0, jr1 : int, only rows jr0 <= j < jr1 count; umax : float, segments with both ends at
        u >= umax are skipped (right of a region), µm.
    seg_j0, seg_j1 : (>= n,) int64 out: segment i crosses rows ``seg_j0[i] <= j < seg_j1[i]``
        (none when ``seg_j1[i] <= seg_j0[i]``).

    Returns
    -------
    (crossings, jmin, jmax) : total crossings and the lowest/highest row crossed
        (``BIG_ROW, -BIG_ROW`` when none).
    """
    cnt = 0
    jmin = BIG_ROW
    jmax = -BIG_ROW
    for i in range(n):
        seg_j0[i] = 0
        seg_j1[i] = 0
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
            seg_j0[i] = j0
            seg_j1[i] = j1
            cnt += j1 - j0
            jmin = min(jmin, j0)
            jmax = max(jmax, j1 - 1)
    return cnt, jmin, jmax


@njit(cache=True)
def _scatter_rows(su0, sv0, su1, sv1, n, off, dy, seg_j0, seg_j1, jbase, nrows, rstart, rptr, cu, cs):
    """Crossings of n segments written grouped by row (a counting sort without a staging copy).

    Row ``r`` (grid row ``jbase + r``) gets its crossings at ``cu/cs[rstart[r]:rstart[r+1]]``:
    u (µm) and the winding sign (+1 for a segment running down in v, -1 up). Per-row counts
    come from a difference array over the segments' row ranges, so only the crossings
    themselves are touched twice (computed, then swept).

    Parameters
    ----------
    seg_j0, seg_j1 : rows of each segment, from :func:`_row_ranges`.
    rstart : (>= nrows+1,) int64 out; rptr : (>= nrows,) int64 scratch.
    cu : (>= crossings,) float64 out; cs : (>= crossings,) int8 out.
    """
    for r in range(nrows + 1):
        rstart[r] = 0
    for i in range(n):
        j0 = seg_j0[i]
        j1 = seg_j1[i]
        if j1 > j0:
            rstart[j0 - jbase] += 1
            rstart[j1 - jbase] -= 1
    run = 0
    pos = 0
    for r in range(nrows):
        run += rstart[r]
        rstart[r] = pos
        rptr[r] = pos
        pos += run
    rstart[nrows] = pos
    for i in range(n):
        j0 = seg_j0[i]
        j1 = seg_j1[i]
        if j1 <= j0:
            continue
        v0 = sv0[i]
        v1 = sv1[i]
        u0 = su0[i]
        u1 = su1[i]
        if v0 < v1:
            ulo, vlo, uhi, vhi, sgn = u0, v0, u1, v1, -1
        else:
            ulo, vlo, uhi, vhi, sgn = u1, v1, u0, v0, 1
        slope = (uhi - ulo) / (vhi - vlo)
        for j in range(j0, j1):
            v = row_v(off, dy, j)
            if v == vlo:
                u = ulo
            else:
                u = ulo + (v - vlo) * slope
            r = j - jbase
            p = rptr[r]
            cu[p] = u
            cs[p] = sgn
            rptr[r] = p + 1
    return pos


@njit(cache=True)
def _sort_row(u, s, a, b):
    """Sort crossings a:b by u in place, carrying the signs (no allocation).

    Insertion sort for short rows, heapsort beyond; the order of equal u does not matter
    (the sweep sums crossings of equal u before testing the winding number).
    """
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
        return
    n = b - a
    for start in range((n - 2) // 2, -1, -1):
        _sift_down(u, s, a, start, n)
    for end in range(n - 1, 0, -1):
        tu = u[a]
        u[a] = u[a + end]
        u[a + end] = tu
        ts = s[a]
        s[a] = s[a + end]
        s[a + end] = ts
        _sift_down(u, s, a, np.int64(0), end)  # np.int64: a literal 0 would compile a second copy


@njit(cache=True)
def _sift_down(u, s, a, root, n):
    """Max-heap sift of element ``a + root`` within ``u[a:a+n]`` (with signs)."""
    while True:
        child = 2 * root + 1
        if child >= n:
            return
        if child + 1 < n and u[a + child + 1] > u[a + child]:
            child += 1
        if u[a + root] >= u[a + child]:
            return
        tu = u[a + root]
        u[a + root] = u[a + child]
        u[a + child] = tu
        ts = s[a + root]
        s[a + root] = s[a + child]
        s[a + child] = ts
        root = child


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
def _sweep_rows(rstart, cu, cs, nrows, jbase, off, dy, rule, c, s, has_region, bx0, by0, bx1, by1,
                row_v_out, row_end_out, u0_out, u1_out, r_base, s_base):
    """Sort each row's crossings by u and sweep the winding number into spans.

    Rows holding at least one span are written from ``r_base`` (``row_v_out``: v, µm;
    ``row_end_out[r_base + i + 1]``: end of row i's spans, counted from the layer's first
    span), spans ``[u0, u1)`` from ``s_base``. Returns (rows written, spans written).
    """
    nr = 0
    ns = 0
    for r in range(nrows):
        a = rstart[r]
        b = rstart[r + 1]
        if b - a < 1:
            continue
        _sort_row(cu, cs, a, b)
        v = row_v(off, dy, jbase + r)
        ua, ub = _row_clip(v, c, s, has_region, bx0, by0, bx1, by1)
        if not ua < ub:
            continue
        w = 0
        inside = False
        start = 0.0
        first = ns
        for i in range(a, b):
            w += cs[i]
            if i + 1 < b and cu[i + 1] == cu[i]:
                continue
            now = (w > 0) if rule == 0 else (w != 0)
            if now and not inside:
                start = cu[i]
                inside = True
            elif inside and not now:
                inside = False
                lo = max(start, ua)
                hi = min(cu[i], ub)
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
            row_end_out[r_base + nr + 1] = ns
            nr += 1
    return nr, ns


@njit(cache=True)
def _layer_spans(x0, y0, x1, y1, n, off, dy, jr0, jr1, umax, jbase, nrows, rule, c, s, has_region,
                 bx0, by0, bx1, by1, sj0, sj1, rstart, rptr, cu, cs, row_v_out, row_end_out, u0_out, u1_out,
                 r_base, s_base):
    """Spans of one layer from its n segments, already in the row frame (see :func:`_sweep_rows`)."""
    _row_ranges(x0, y0, x1, y1, n, off, dy, jr0, jr1, umax, sj0, sj1)
    _scatter_rows(x0, y0, x1, y1, n, off, dy, sj0, sj1, jbase, nrows, rstart, rptr, cu, cs)
    return _sweep_rows(rstart, cu, cs, nrows, jbase, off, dy, rule, c, s, has_region, bx0, by0, bx1, by1,
                       row_v_out, row_end_out, u0_out, u1_out, r_base, s_base)


# ----------------------------------------------------------------------------- mesh driver
@njit(cache=True)
def _layer_pass(fill, k, x0, y0, x1, y1, n, off, dy, jr0, jr1, umax, cos_a, sin_a, ncross, jmin, jmax, rule,
                has_region, bx0, by0, bx1, by1, sj0, sj1, rstart, rptr, cu, cs, row_base, span_base, row_v_out,
                row_end_out, u0_out, u1_out, nrows_out, nspans_out):
    """Layer k from its n segments (part frame): rotated into the row frame, then counted
    (``fill`` False: ``ncross``, ``jmin``, ``jmax``) or swept into spans (``nrows_out``, ``nspans_out``)."""
    _rotate(x0, y0, x1, y1, n, cos_a[k], sin_a[k])
    if fill:
        nr, ns = _layer_spans(x0, y0, x1, y1, n, off, dy, jr0[k], jr1[k], umax[k], jmin[k], jmax[k] - jmin[k] + 1,
                              rule, cos_a[k], sin_a[k], has_region, bx0, by0, bx1, by1, sj0, sj1, rstart, rptr, cu,
                              cs, row_v_out, row_end_out, u0_out, u1_out, row_base[k], span_base[k])
        nrows_out[k] = nr
        nspans_out[k] = ns
    else:
        cnt, a, b = _row_ranges(x0, y0, x1, y1, n, off, dy, jr0[k], jr1[k], umax[k], sj0, sj1)
        ncross[k] = cnt
        jmin[k] = a
        jmax[k] = b


def mesh_count_pass(V, F, bstart, btri, layer_pos, layer_z, cos_a, sin_a, off, dy, jr0, jr1, umax,
                    chunk_start):
    """Pass 1: crossings per layer and their row range (layers in chunks, chunks in parallel threads).

    Parameters
    ----------
    V, F : mesh (µm, int32 faces); bstart, btri : layer buckets (CSR over sorted layers);
    layer_pos : (L,) sorted position of layer k; layer_z, cos_a, sin_a : (L,) per layer.
    off, dy : row grid, µm; jr0, jr1, umax : (L,) row window and u limit per layer.
    chunk_start : (C+1,) int64 layer chunks.

    Returns
    -------
    ncross, jmin, jmax : (L,) int64 crossings and lowest/highest row crossed per layer.
    """
    L = layer_z.shape[0]
    ncross = np.zeros(L, np.int64)
    jmin = np.zeros(L, np.int64)
    jmax = np.zeros(L, np.int64)
    f0, i0 = np.zeros(0), np.zeros(0, np.int64)
    run_chunks(_mesh_pass_range, chunk_start.shape[0] - 1, False, V, F, bstart, btri, layer_pos, layer_z, cos_a, sin_a,
               off, dy, jr0, jr1, umax, chunk_start, ncross, jmin, jmax, 0, False, 0.0, 0.0, 0.0, 0.0, i0, i0, f0, i0,
               f0, f0, i0, i0, parts=chunk_start.shape[0] - 1)
    return ncross, jmin, jmax


def mesh_fill_pass(V, F, bstart, btri, layer_pos, layer_z, cos_a, sin_a, off, dy, jr0, jr1, umax,
                   chunk_start, ncross, jmin, jmax, rule, has_region, bx0, by0, bx1, by1,
                   row_base, span_base, row_v_out, row_end_out, u0_out, u1_out, nrows_out, nspans_out):
    """Pass 2: segments, row-grouped crossings, sort and winding sweep, straight into the outputs.

    Layer k writes its rows from ``row_base[k]`` and its spans from ``span_base[k]`` (upper
    bounds from pass 1, see :func:`compact_layers`); ``nrows_out[k]``, ``nspans_out[k]`` get
    the counts. Scratch is allocated once per chunk and reused for its layers.
    """
    run_chunks(_mesh_pass_range, chunk_start.shape[0] - 1, True, V, F, bstart, btri, layer_pos, layer_z, cos_a, sin_a,
               off, dy, jr0, jr1, umax, chunk_start, ncross, jmin, jmax, int(rule), bool(has_region), float(bx0),
               float(by0), float(bx1), float(by1), row_base, span_base, row_v_out, row_end_out, u0_out, u1_out,
               nrows_out, nspans_out, parts=chunk_start.shape[0] - 1)


@njit(cache=True, nogil=True)
def _mesh_pass_range(ch_lo, ch_hi, fill, V, F, bstart, btri, layer_pos, layer_z, cos_a, sin_a, off, dy, jr0, jr1, umax,
                     chunk_start, ncross, jmin, jmax, rule, has_region, bx0, by0, bx1, by1,
                     row_base, span_base, row_v_out, row_end_out, u0_out, u1_out, nrows_out, nspans_out):
    """Layer chunks ``ch_lo .. ch_hi - 1`` of :func:`mesh_count_pass` (``fill`` False: writes
    ``ncross``, ``jmin``, ``jmax``; the fill arguments are unused) or :func:`mesh_fill_pass`
    (``fill`` True). One kernel for both passes: they share the segment and row code."""
    dummy_e = np.zeros((1, 3), np.int64)
    for ch in range(ch_lo, ch_hi):
        k0 = chunk_start[ch]
        k1 = chunk_start[ch + 1]
        cap = 1
        ccap = 1
        rcap = 1
        for k in range(k0, k1):
            p = layer_pos[k]
            cap = max(cap, bstart[p + 1] - bstart[p])
            if fill:
                ccap = max(ccap, ncross[k])
                if ncross[k] > 0:
                    rcap = max(rcap, jmax[k] - jmin[k] + 1)
        x0 = np.empty(cap)
        y0 = np.empty(cap)
        x1 = np.empty(cap)
        y1 = np.empty(cap)
        sj0 = np.empty(cap, np.int64)
        sj1 = np.empty(cap, np.int64)
        e0 = np.empty(1, np.int64)
        e1 = np.empty(1, np.int64)
        cu = np.empty(ccap)
        cs = np.empty(ccap, np.int8)
        rstart = np.empty(rcap + 1, np.int64)
        rptr = np.empty(rcap, np.int64)
        for k in range(k0, k1):
            if fill and ncross[k] == 0:
                nrows_out[k] = 0
                nspans_out[k] = 0
                continue
            p = layer_pos[k]
            tris = btri[bstart[p]:bstart[p + 1]]
            n = layer_segments(V, F, tris, layer_z[k], x0, y0, x1, y1, dummy_e, e0, e1, np.bool_(False))
            _layer_pass(fill, k, x0, y0, x1, y1, n, off, dy, jr0, jr1, umax, cos_a, sin_a, ncross, jmin, jmax, rule,
                        has_region, bx0, by0, bx1, by1, sj0, sj1, rstart, rptr, cu, cs, row_base, span_base, row_v_out,
                        row_end_out, u0_out, u1_out, nrows_out, nspans_out)


# ----------------------------------------------------------------------------- 2-D segments driver
@njit(cache=True)
def _chunk_max_segments(lstart, k0, k1):
    cap = 1
    for k in range(k0, k1):
        cap = max(cap, lstart[k + 1] - lstart[k])
    return cap


@njit(cache=True)
def _load_segments(X0, Y0, X1, Y1, a, b, x0, y0, x1, y1):
    for i in range(b - a):
        x0[i] = X0[a + i]
        y0[i] = Y0[a + i]
        x1[i] = X1[a + i]
        y1[i] = Y1[a + i]


def seg_count_pass(lstart, X0, Y0, X1, Y1, cos_a, sin_a, off, dy, jr0, jr1, umax, chunk_start):
    """Pass 1 for segments given per layer (CSR ``lstart``) in part coordinates; see :func:`mesh_count_pass`."""
    L = lstart.shape[0] - 1
    ncross = np.zeros(L, np.int64)
    jmin = np.zeros(L, np.int64)
    jmax = np.zeros(L, np.int64)
    f0, i0 = np.zeros(0), np.zeros(0, np.int64)
    run_chunks(_seg_pass_range, chunk_start.shape[0] - 1, False, lstart, X0, Y0, X1, Y1, cos_a, sin_a, off, dy, jr0, jr1,
               umax, chunk_start, ncross, jmin, jmax, 0, False, 0.0, 0.0, 0.0, 0.0, i0, i0, f0, i0, f0, f0, i0, i0,
               parts=chunk_start.shape[0] - 1)
    return ncross, jmin, jmax


def seg_fill_pass(lstart, X0, Y0, X1, Y1, cos_a, sin_a, off, dy, jr0, jr1, umax, chunk_start,
                  ncross, jmin, jmax, rule, has_region, bx0, by0, bx1, by1,
                  row_base, span_base, row_v_out, row_end_out, u0_out, u1_out, nrows_out, nspans_out):
    """Pass 2 for segments given per layer; see :func:`mesh_fill_pass`."""
    run_chunks(_seg_pass_range, chunk_start.shape[0] - 1, True, lstart, X0, Y0, X1, Y1, cos_a, sin_a, off, dy, jr0, jr1,
               umax, chunk_start, ncross, jmin, jmax, int(rule), bool(has_region), float(bx0), float(by0), float(bx1),
               float(by1), row_base, span_base, row_v_out, row_end_out, u0_out, u1_out, nrows_out, nspans_out,
               parts=chunk_start.shape[0] - 1)


@njit(cache=True, nogil=True)
def _seg_pass_range(ch_lo, ch_hi, fill, lstart, X0, Y0, X1, Y1, cos_a, sin_a, off, dy, jr0, jr1, umax, chunk_start,
                    ncross, jmin, jmax, rule, has_region, bx0, by0, bx1, by1,
                    row_base, span_base, row_v_out, row_end_out, u0_out, u1_out, nrows_out, nspans_out):
    """Layer chunks ``ch_lo .. ch_hi - 1`` of :func:`seg_count_pass` or (``fill``) :func:`seg_fill_pass`."""
    for ch in range(ch_lo, ch_hi):
        k0 = chunk_start[ch]
        k1 = chunk_start[ch + 1]
        cap = _chunk_max_segments(lstart, k0, k1)
        ccap = 1
        rcap = 1
        if fill:
            for k in range(k0, k1):
                ccap = max(ccap, ncross[k])
                if ncross[k] > 0:
                    rcap = max(rcap, jmax[k] - jmin[k] + 1)
        x0 = np.empty(cap)
        y0 = np.empty(cap)
        x1 = np.empty(cap)
        y1 = np.empty(cap)
        sj0 = np.empty(cap, np.int64)
        sj1 = np.empty(cap, np.int64)
        cu = np.empty(ccap)
        cs = np.empty(ccap, np.int8)
        rstart = np.empty(rcap + 1, np.int64)
        rptr = np.empty(rcap, np.int64)
        for k in range(k0, k1):
            if fill and ncross[k] == 0:
                nrows_out[k] = 0
                nspans_out[k] = 0
                continue
            a = lstart[k]
            b = lstart[k + 1]
            _load_segments(X0, Y0, X1, Y1, a, b, x0, y0, x1, y1)
            _layer_pass(fill, k, x0, y0, x1, y1, b - a, off, dy, jr0, jr1, umax, cos_a, sin_a, ncross, jmin, jmax, rule,
                        has_region, bx0, by0, bx1, by1, sj0, sj1, rstart, rptr, cu, cs, row_base, span_base, row_v_out,
                        row_end_out, u0_out, u1_out, nrows_out, nspans_out)


# ----------------------------------------------------------------------------- output
@njit(cache=True)
def compact_layers(nrows, nspans, row_base, span_base, row_v, row_end, u0, u1, layer_row_start):
    """In place: close the gaps the fill pass left between layers, and make row ends global.

    Layer k's rows sit at ``row_base[k]:+nrows[k]`` (``row_end[row_base[k] + i + 1]``: end of
    row i's spans counted from the layer's first span) and its spans at
    ``span_base[k]:+nspans[k]``; bases ascend and never overlap, so moving every run down
    in layer order is safe. Runs already in place are not copied.

    Returns
    -------
    (R, S) : rows and spans in all; ``row_v[:R]``, ``row_end[:R+1]`` (now the CSR
    ``row_span_start``), ``u0[:S]``, ``u1[:S]`` hold the result and ``layer_row_start``
    ((L+1,) int64) is filled.
    """
    R = 0
    S = 0
    layer_row_start[0] = 0
    row_end[0] = 0
    for k in range(nrows.shape[0]):
        rb = row_base[k]
        sb = span_base[k]
        nr = nrows[k]
        ns = nspans[k]
        if rb != R:
            for i in range(nr):
                row_v[R + i] = row_v[rb + i]
        for i in range(nr):
            row_end[R + i + 1] = S + row_end[rb + i + 1]
        if sb != S:
            for i in range(ns):
                u0[S + i] = u0[sb + i]
                u1[S + i] = u1[sb + i]
        R += nr
        S += ns
        layer_row_start[k + 1] = R
    return R, S


def gather_ranges(src, src_start, counts, dst_start, dst):
    """dst[dst_start[k]:+counts[k]] = src[src_start[k]:+counts[k]] for every k (compaction)."""
    run_chunks(_gather_ranges_range, counts.shape[0], src, src_start, counts, dst_start, dst)


@njit(cache=True, nogil=True)
def _gather_ranges_range(k_lo, k_hi, src, src_start, counts, dst_start, dst):
    """:func:`gather_ranges` of ranges ``k_lo .. k_hi - 1``."""
    for k in range(k_lo, k_hi):
        a = src_start[k]
        d = dst_start[k]
        for i in range(counts[k]):
            dst[d + i] = src[a + i]
