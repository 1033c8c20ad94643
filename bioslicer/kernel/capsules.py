"""Numba kernels: vessel segments (hulls of two spheres) -> exact spans along scan rows.

A segment is the convex hull of its two end spheres (centre ``c0``, radius ``r0``; ``c1``,
``r1``): VMTK's PolyBall model, the sweep of spheres with linearly interpolated centre and
radius. With ``L = |c1 - c0|``, axis ``t``, ``sin a = (r0 - r1) / L`` and, for a point p,
``s = (p - c0) . t`` and ``q`` its distance to the axis, the hull is the union of the two
spheres and the frustum ``s sin a + q cos a <= r0`` for ``r0 sin a <= s <= L + r1 sin a``
(between the circles where the tangent cone touches the spheres). When one sphere holds the
other (``L <= |r0 - r1|``) the hull is the larger sphere.

Along a scan row (a line) each piece is a quadratic inequality, solved in closed form; the
hull is convex, so the row's interval is the hull of the pieces' intervals. An end flagged in
``clip`` (bit 0: end 0, bit 1: end 1) is cut flat across the axis through its centre (an open
vessel end). The union per row (many segments) is sorted and merged.

Rows follow :mod:`.crossings`: row ``j`` of layer ``k`` is ``v = off + j * dy`` in the frame
``u = x cos + y sin``, ``v = -x sin + y cos``; spans are ``[u0, u1)``, sorted, disjoint.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .crossings import BIG_ROW, first_row_at_or_above, row_v

EMPTY_LO = np.inf


@njit(cache=True, inline="always")
def _quad_le0(a2, a1, a0):
    """The set {u : a2 u^2 + a1 u + a0 <= 0} as (lo1, hi1, lo2, hi2): up to two intervals
    (empty ones have lo > hi); a2 >= 0 gives one interval, a2 < 0 two rays."""
    inf = np.inf
    if a2 == 0.0:
        if a1 == 0.0:
            if a0 <= 0.0:
                return -inf, inf, inf, -inf
            return inf, -inf, inf, -inf
        r = -a0 / a1
        if a1 > 0.0:
            return -inf, r, inf, -inf
        return r, inf, inf, -inf
    disc = a1 * a1 - 4.0 * a2 * a0
    if disc < 0.0:
        if a2 > 0.0:
            return inf, -inf, inf, -inf
        return -inf, inf, inf, -inf
    sq = math.sqrt(disc)
    # stable roots
    qq = -0.5 * (a1 + sq) if a1 >= 0.0 else -0.5 * (a1 - sq)
    if qq != 0.0:
        x1 = qq / a2
        x2 = a0 / qq
    else:
        x1 = 0.0
        x2 = 0.0
    lo = min(x1, x2)
    hi = max(x1, x2)
    if a2 > 0.0:
        return lo, hi, inf, -inf
    return -inf, lo, hi, inf


@njit(cache=True, inline="always")
def _sphere(bx, by, bz, ex, ey, cx, cy, cz, r):
    """Interval of the line b + u e (e horizontal unit) inside the sphere (c, r)."""
    wx = bx - cx
    wy = by - cy
    wz = bz - cz
    B = wx * ex + wy * ey
    C = wx * wx + wy * wy + wz * wz - r * r
    disc = B * B - C
    if disc < 0.0:
        return np.inf, -np.inf
    sq = math.sqrt(disc)
    return -B - sq, -B + sq


@njit(cache=True)
def segment_interval(bx, by, bz, ex, ey, x0, y0, z0, r0, x1, y1, z1, r1, clip):
    """[lo, hi] of the line ``b + u e`` inside the hull of spheres (c0, r0), (c1, r1).

    ``e = (ex, ey, 0)`` is a unit vector; ``clip`` bit 0 cuts the hull flat through c0 across
    the axis (keeps ``s >= 0``), bit 1 through c1 (keeps ``s <= L``). Returns (inf, -inf)
    when the line misses it.
    """
    dx = x1 - x0
    dy = y1 - y0
    dz = z1 - z0
    L = math.sqrt(dx * dx + dy * dy + dz * dz)
    lo = np.inf
    hi = -np.inf
    if L <= abs(r0 - r1):
        if r0 >= r1:
            a, b = _sphere(bx, by, bz, ex, ey, x0, y0, z0, r0)
        else:
            a, b = _sphere(bx, by, bz, ex, ey, x1, y1, z1, r1)
        return a, b  # a contained end: no axis to cut across
    tx = dx / L
    ty = dy / L
    tz = dz / L
    a, b = _sphere(bx, by, bz, ex, ey, x0, y0, z0, r0)
    if a <= b:
        lo = min(lo, a)
        hi = max(hi, b)
    a, b = _sphere(bx, by, bz, ex, ey, x1, y1, z1, r1)
    if a <= b:
        lo = min(lo, a)
        hi = max(hi, b)
    sa = (r0 - r1) / L
    ca2 = 1.0 - sa * sa
    # line in axis coordinates: w = b - c0 + u e; s = s0 + k u; |w|^2 = u^2 + 2 B u + C
    wx = bx - x0
    wy = by - y0
    wz = bz - z0
    s0 = wx * tx + wy * ty + wz * tz
    k = ex * tx + ey * ty
    B = wx * ex + wy * ey
    C = wx * wx + wy * wy + wz * wz
    # band r0 sa <= s <= L + r1 sa
    s_lo = r0 * sa
    s_hi = L + r1 * sa
    if k == 0.0:
        if s0 < s_lo or s0 > s_hi:
            blo, bhi = np.inf, -np.inf
        else:
            blo, bhi = -np.inf, np.inf
    else:
        p = (s_lo - s0) / k
        q = (s_hi - s0) / k
        blo, bhi = min(p, q), max(p, q)
    if blo <= bhi:
        m = r0 - sa * s0
        a2 = ca2 - k * k
        a1 = 2.0 * (ca2 * (B - s0 * k) + sa * k * m)
        a0 = ca2 * (C - s0 * s0) - m * m
        l1, h1, l2, h2 = _quad_le0(a2, a1, a0)
        l1 = max(l1, blo)
        h1 = min(h1, bhi)
        if l1 <= h1:
            lo = min(lo, l1)
            hi = max(hi, h1)
        l2 = max(l2, blo)
        h2 = min(h2, bhi)
        if l2 <= h2:
            lo = min(lo, l2)
            hi = max(hi, h2)
    if lo > hi or clip == 0:
        return lo, hi
    # flat cuts: s(u) >= 0 (end 0) and s(u) <= L (end 1)
    if clip & 1:
        if k == 0.0:
            if s0 < 0.0:
                return np.inf, -np.inf
        elif k > 0.0:
            lo = max(lo, -s0 / k)
        else:
            hi = min(hi, -s0 / k)
    if clip & 2:
        if k == 0.0:
            if s0 > L:
                return np.inf, -np.inf
        elif k > 0.0:
            hi = min(hi, (L - s0) / k)
        else:
            lo = max(lo, (L - s0) / k)
    return lo, hi


@njit(cache=True)
def segment_contains(px, py, pz, x0, y0, z0, r0, x1, y1, z1, r1, clip):
    """True when point p lies in the (clipped) hull of the two spheres (for tests)."""
    dx = x1 - x0
    dy = y1 - y0
    dz = z1 - z0
    L = math.sqrt(dx * dx + dy * dy + dz * dz)
    d0 = math.sqrt((px - x0) ** 2 + (py - y0) ** 2 + (pz - z0) ** 2)
    d1 = math.sqrt((px - x1) ** 2 + (py - y1) ** 2 + (pz - z1) ** 2)
    if L <= abs(r0 - r1):
        return d0 <= r0 if r0 >= r1 else d1 <= r1
    tx, ty, tz = dx / L, dy / L, dz / L
    s = (px - x0) * tx + (py - y0) * ty + (pz - z0) * tz
    if (clip & 1) and s < 0.0:
        return False
    if (clip & 2) and s > L:
        return False
    if d0 <= r0 or d1 <= r1:
        return True
    sa = (r0 - r1) / L
    ca = math.sqrt(1.0 - sa * sa)
    if s < r0 * sa or s > L + r1 * sa:
        return False
    q = math.sqrt(max(d0 * d0 - s * s, 0.0))
    return s * sa + q * ca <= r0


@njit(cache=True, inline="always")
def _row_range(x0, y0, x1, y1, c, s, off, dy):
    """Rows [j0, j1) whose v lies within the xy box [x0, x1] x [y0, y1] rotated to the frame."""
    v00 = -x0 * s + y0 * c
    v10 = -x1 * s + y0 * c
    v01 = -x0 * s + y1 * c
    v11 = -x1 * s + y1 * c
    vmin = min(min(v00, v10), min(v01, v11))
    vmax = max(max(v00, v10), max(v01, v11))
    j0 = first_row_at_or_above(vmin, off, dy)
    j1 = first_row_at_or_above(vmax, off, dy)
    if row_v(off, dy, j1) <= vmax:
        j1 += 1
    return j0, j1


@njit(cache=True, inline="always")
def _section_box(P0, P1, R0, R1, g, zz):
    """xy box (x0, y0, x1, y1) holding segment g's section with the plane z = zz (x0 > x1: none).

    The hull of two spheres is the union of the spheres with linearly interpolated centre and
    radius, ``c(l) = c0 + l (c1 - c0)``, ``r(l) = r0 + l (r1 - r0)``, l in [0, 1]; those reaching
    the plane have l in an interval (two linear inequalities), and the box of their discs is
    spanned by its ends.
    """
    z0 = P0[g, 2]
    dz = P1[g, 2] - z0
    r0 = R0[g]
    dr = R1[g] - r0
    la = 0.0
    lb = 1.0
    h = zz - z0
    # h - l dz <= r0 + l dr  ->  l (dz + dr) >= h - r0
    a = dz + dr
    c = h - r0
    if a > 0.0:
        la = max(la, c / a)
    elif a < 0.0:
        lb = min(lb, c / a)
    elif c > 0.0:
        return 1.0, 1.0, -1.0, -1.0
    # l dz - h <= r0 + l dr  ->  l (dz - dr) <= h + r0
    a = dz - dr
    c = h + r0
    if a > 0.0:
        lb = min(lb, c / a)
    elif a < 0.0:
        la = max(la, c / a)
    elif c < 0.0:
        return 1.0, 1.0, -1.0, -1.0
    if la > lb:
        return 1.0, 1.0, -1.0, -1.0
    xa = P0[g, 0] + la * (P1[g, 0] - P0[g, 0])
    xb = P0[g, 0] + lb * (P1[g, 0] - P0[g, 0])
    ya = P0[g, 1] + la * (P1[g, 1] - P0[g, 1])
    yb = P0[g, 1] + lb * (P1[g, 1] - P0[g, 1])
    ra = r0 + la * dr
    rb = r0 + lb * dr
    return min(xa - ra, xb - rb), min(ya - ra, yb - rb), max(xa + ra, xb + rb), max(ya + ra, yb + rb)


@njit(cache=True, parallel=True)
def count_pass(P0, P1, R0, R1, bstart, bseg, pos, z, cos_a, sin_a, off, dy, jr0, jr1, chunks):
    """Per layer: (segment, row) pairs to evaluate, and the row range touched.

    Parameters
    ----------
    P0, P1 : (n, 3) float64; R0, R1 : (n,) float64
        End centres and radii of the segments, µm.
    bstart, bseg : CSR of segments per sorted layer (``crossings.bucket_triangles``).
    pos : (L,) int64, position of each layer in the sorted order.
    z, cos_a, sin_a : (L,) layer heights and row-frame angles.
    off, dy : row grid; jr0, jr1 : (L,) rows allowed per layer [jr0, jr1).
    chunks : (C+1,) int64 layer ranges run in parallel.

    Returns
    -------
    (npairs, jmin, jmax) : (L,) int64 each (jmin > jmax when no pair).
    """
    L = z.shape[0]
    npairs = np.zeros(L, np.int64)
    jmin = np.full(L, BIG_ROW, np.int64)
    jmax = np.full(L, -BIG_ROW, np.int64)
    for ci in prange(chunks.shape[0] - 1):
        for k in range(chunks[ci], chunks[ci + 1]):
            p = pos[k]
            c = cos_a[k]
            s = sin_a[k]
            for ii in range(bstart[p], bstart[p + 1]):
                g = bseg[ii]
                x0, y0, x1, y1 = _section_box(P0, P1, R0, R1, g, z[k])
                if x0 > x1:
                    continue
                j0, j1 = _row_range(x0, y0, x1, y1, c, s, off, dy)
                j0 = max(j0, jr0[k])
                j1 = min(j1, jr1[k])
                if j1 > j0:
                    npairs[k] += j1 - j0
                    jmin[k] = min(jmin[k], j0)
                    jmax[k] = max(jmax[k], j1 - 1)
    return npairs, jmin, jmax


@njit(cache=True)
def _layer_intervals(k, P0, P1, R0, R1, clip, bstart, bseg, pos, z, cos_a, sin_a, off, dy, jr0, jr1,
                     n, rows, ulo, uhi):
    """Fill (row, lo, hi) of every non-empty (segment, row) interval of layer k; returns the count."""
    p = pos[k]
    c = cos_a[k]
    s = sin_a[k]
    zz = z[k]
    m = 0
    for ii in range(bstart[p], bstart[p + 1]):
        g = bseg[ii]
        x0, y0, x1, y1 = _section_box(P0, P1, R0, R1, g, zz)
        if x0 > x1:
            continue
        j0, j1 = _row_range(x0, y0, x1, y1, c, s, off, dy)
        j0 = max(j0, jr0[k])
        j1 = min(j1, jr1[k])
        for j in range(j0, j1):
            v = row_v(off, dy, j)
            a, b = segment_interval(-v * s, v * c, zz, c, s, P0[g, 0], P0[g, 1], P0[g, 2], R0[g],
                                    P1[g, 0], P1[g, 1], P1[g, 2], R1[g], clip[g])
            if a < b:
                rows[m] = j
                ulo[m] = a
                uhi[m] = b
                m += 1
    return m


@njit(cache=True)
def _row_order(rows, ulo, m, j0):
    """Order of the first m intervals by (row, lo): counting sort by row, insertion sort by lo
    within a row (rows hold few intervals)."""
    nb = 0
    for i in range(m):
        nb = max(nb, rows[i] - j0 + 1)
    start = np.zeros(nb + 1, np.int64)
    for i in range(m):
        start[rows[i] - j0 + 1] += 1
    for b in range(nb):
        start[b + 1] += start[b]
    fill = start[:-1].copy()
    order = np.empty(m, np.int64)
    for i in range(m):
        b = rows[i] - j0
        order[fill[b]] = i
        fill[b] += 1
    for b in range(nb):
        for t in range(start[b] + 1, start[b + 1]):
            cur = order[t]
            key = ulo[cur]
            q = t - 1
            while q >= start[b] and ulo[order[q]] > key:
                order[q + 1] = order[q]
                q -= 1
            order[q + 1] = cur
    return order


@njit(cache=True, parallel=True)
def fill_pass(P0, P1, R0, R1, clip, bstart, bseg, pos, z, cos_a, sin_a, off, dy, jr0, jr1, chunks, npairs, jmin,
              row_base, span_base, row_v_out, row_end, u0, u1, nrows, nspans):
    """Write the merged spans of every layer at its offsets (see ``crossings.compact_layers``)."""
    for ci in prange(chunks.shape[0] - 1):
        for k in range(chunks[ci], chunks[ci + 1]):
            n = npairs[k]
            if n == 0:
                continue
            rows = np.empty(n, np.int64)
            ulo = np.empty(n)
            uhi = np.empty(n)
            m = _layer_intervals(k, P0, P1, R0, R1, clip, bstart, bseg, pos, z, cos_a, sin_a, off, dy,
                                 jr0, jr1, n, rows, ulo, uhi)
            if m == 0:
                continue
            order = _row_order(rows, ulo, m, jmin[k])
            rb = row_base[k]
            sb = span_base[k]
            nr = 0
            ns = 0
            cur_row = BIG_ROW
            a = 0.0
            b = 0.0
            for t in range(m):
                i = order[t]
                j = rows[i]
                if j != cur_row:
                    if cur_row != BIG_ROW:
                        u0[sb + ns] = a
                        u1[sb + ns] = b
                        ns += 1
                        row_end[rb + nr] = ns
                    row_v_out[rb + nr] = row_v(off, dy, j)
                    nr += 1
                    cur_row = j
                    a = ulo[i]
                    b = uhi[i]
                elif ulo[i] <= b:
                    b = max(b, uhi[i])
                else:
                    u0[sb + ns] = a
                    u1[sb + ns] = b
                    ns += 1
                    a = ulo[i]
                    b = uhi[i]
            u0[sb + ns] = a
            u1[sb + ns] = b
            ns += 1
            row_end[rb + nr] = ns
            nrows[k] = nr
            nspans[k] = ns


@njit(cache=True)
def section_ring(P0, P1, R0, R1, clip, g, zz, n, out):
    """Boundary of segment g's cross-section with the plane z = zz as a convex ring.

    Rows along x at ``n`` Chebyshev-spaced y between the exact extremes of the section (found
    by bisection) give the left ends (ascending y) and right ends (descending y). Writes up to
    ``2 n`` points to ``out`` and returns how many (0 when the plane misses the segment).
    """
    ylo = min(P0[g, 1] - R0[g], P1[g, 1] - R1[g])
    yhi = max(P0[g, 1] + R0[g], P1[g, 1] + R1[g])
    # a y inside: sample, then bisect each extreme
    ns = 64
    yin = np.nan
    for i in range(ns + 1):
        y = ylo + (yhi - ylo) * i / ns
        a, b = segment_interval(0.0, y, zz, 1.0, 0.0, P0[g, 0], P0[g, 1], P0[g, 2], R0[g], P1[g, 0], P1[g, 1],
                                P1[g, 2], R1[g], clip[g])
        if a < b:
            yin = y
            break
    if yin != yin:
        return 0
    ext = np.empty(2)
    for side in range(2):
        inside = yin
        outside = ylo if side == 0 else yhi
        for _ in range(60):
            mid = 0.5 * (inside + outside)
            a, b = segment_interval(0.0, mid, zz, 1.0, 0.0, P0[g, 0], P0[g, 1], P0[g, 2], R0[g], P1[g, 0],
                                    P1[g, 1], P1[g, 2], R1[g], clip[g])
            if a < b:
                inside = mid
            else:
                outside = mid
        ext[side] = inside
    y0 = ext[0]
    y1 = ext[1]
    m = 0
    for i in range(n):
        y = 0.5 * (y0 + y1) - 0.5 * (y1 - y0) * math.cos(math.pi * i / (n - 1))
        a, b = segment_interval(0.0, y, zz, 1.0, 0.0, P0[g, 0], P0[g, 1], P0[g, 2], R0[g], P1[g, 0], P1[g, 1],
                                P1[g, 2], R1[g], clip[g])
        if a < b:
            out[m, 0] = a
            out[m, 1] = y
            out[n + m, 0] = b
            out[n + m, 1] = y
            m += 1
    # left ends ascending, then right ends descending
    right = out[n:n + m].copy()
    for i in range(m):
        out[m + i, 0] = right[m - 1 - i, 0]
        out[m + i, 1] = right[m - 1 - i, 1]
    return 2 * m


@njit(cache=True)
def layer_rings(P0, P1, R0, R1, clip, segs, zz, n_ring, offsets, out, counts):
    """:func:`section_ring` of every segment in ``segs`` at z = zz: segment i's ring in
    ``out[offsets[i]:offsets[i] + counts[i]]`` (room for ``2 * n_ring[segs[i]]`` points each)."""
    for i in range(segs.shape[0]):
        g = segs[i]
        counts[i] = section_ring(P0, P1, R0, R1, clip, g, zz, n_ring[g], out[offsets[i]:offsets[i] + 2 * n_ring[g]])
