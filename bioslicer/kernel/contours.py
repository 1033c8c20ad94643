"""Numba kernel: chain the plane/triangle segments of each layer into closed rings.

Every segment starts on the mesh edge where its triangle goes down through the plane and
ends on the edge where it goes up (see :mod:`bioslicer.kernel.crossings`). On a closed,
consistently oriented mesh each cut edge starts exactly one segment and ends exactly one, so
rings are chained by edge id, never by matching floating-point coordinates.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .crossings import layer_segments
from .pool import run_chunks
from .sorting import argsort_stable


def chain_rings(V, F, face_edges, n_edges, bstart, btri, layer_pos, layer_z, chunk_start,
                base, ring_len_out, xy_out, nrings_out, npts_out):
    """Chain each layer's segments into rings.

    Parameters
    ----------
    V, F : mesh (µm, int32 faces); face_edges : (m, 3) int64 unique edge ids; n_edges : int.
    bstart, btri : layer buckets (CSR over sorted layers); layer_pos : (L,) sorted position of layer k.
    layer_z : (L,) float64, µm. chunk_start : (C+1,) int64 layer chunks (run in parallel threads).
    base : (L,) int64 where layer k may write (upper bound: its bucket size) in the outputs.

    Returns (in the out arrays)
    -------
    ring_len_out : point count of each ring, from base[k]; xy_out : (P, 2) points from base[k];
    nrings_out, npts_out : (L,) rings and points written per layer. Open chains (a mesh that is
    not closed) are dropped; consecutive equal points are merged; rings with < 3 points dropped.
    """
    run_chunks(_chain_rings_range, chunk_start.shape[0] - 1, V, F, face_edges, n_edges, bstart, btri, layer_pos,
               layer_z, chunk_start, base, ring_len_out, xy_out, nrings_out, npts_out, parts=chunk_start.shape[0] - 1)


@njit(cache=True, nogil=True)
def _chain_rings_range(ch_lo, ch_hi, V, F, face_edges, n_edges, bstart, btri, layer_pos, layer_z, chunk_start,
                       base, ring_len_out, xy_out, nrings_out, npts_out):
    """:func:`chain_rings` of layer chunks ``ch_lo .. ch_hi - 1``."""
    for ch in range(ch_lo, ch_hi):
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
        e0 = np.empty(cap, np.int64)
        e1 = np.empty(cap, np.int64)
        used = np.zeros(cap, np.bool_)
        edge_seg = np.full(n_edges, -1, np.int64)
        for k in range(k0, k1):
            p = layer_pos[k]
            tris = btri[bstart[p]:bstart[p + 1]]
            n = layer_segments(V, F, tris, layer_z[k], x0, y0, x1, y1, face_edges, e0, e1, np.bool_(True))
            for i in range(n):
                edge_seg[e0[i]] = i
                used[i] = False
            nr = 0
            npt = 0
            b0 = base[k]
            for i in range(n):
                if used[i]:
                    continue
                # follow the chain from segment i
                ring_first = npt
                cur = i
                closed = False
                while True:
                    used[cur] = True
                    px = x0[cur]
                    py = y0[cur]
                    if npt == ring_first or xy_out[b0 + npt - 1, 0] != px or xy_out[b0 + npt - 1, 1] != py:
                        xy_out[b0 + npt, 0] = px
                        xy_out[b0 + npt, 1] = py
                        npt += 1
                    nxt = edge_seg[e1[cur]]
                    if nxt < 0:
                        break
                    if nxt == i:
                        closed = True
                        break
                    if used[nxt]:
                        break
                    cur = nxt
                if closed:
                    m = npt - ring_first
                    if m > 1 and xy_out[b0 + npt - 1, 0] == xy_out[b0 + ring_first, 0] and \
                            xy_out[b0 + npt - 1, 1] == xy_out[b0 + ring_first, 1]:
                        npt -= 1
                        m -= 1
                    if m >= 3:
                        ring_len_out[b0 + nr] = m
                        nr += 1
                    else:
                        npt = ring_first
                else:
                    npt = ring_first
            for i in range(n):
                edge_seg[e0[i]] = -1
            nrings_out[k] = nr
            npts_out[k] = npt


# ----------------------------------------------------------------------------- ring sanity (resolve fast path)
_ORIENT_EPS = 1e-13   # relative error bound on orient2d beyond which its sign is trusted (Shewchuk's A is ~7e-16)


@njit(cache=True)
def _orient(ax, ay, bx, by, cx, cy):
    """Sign of the turn a -> b -> c: +1 left, -1 right, 0 when floating point cannot tell."""
    dl = (ax - cx) * (by - cy)
    dr = (ay - cy) * (bx - cx)
    d = dl - dr
    if abs(d) <= _ORIENT_EPS * (abs(dl) + abs(dr)):
        return 0
    return 1 if d > 0 else -1


@njit(cache=True)
def _segments_apart(ax, ay, bx, by, cx, cy, dx, dy):
    """True when segments ab and cd certainly neither cross nor touch."""
    if max(ax, bx) < min(cx, dx) or max(cx, dx) < min(ax, bx) or max(ay, by) < min(cy, dy) or \
            max(cy, dy) < min(ay, by):
        return True
    o1 = _orient(ax, ay, bx, by, cx, cy)
    o2 = _orient(ax, ay, bx, by, dx, dy)
    if o1 != 0 and o1 == o2:
        return True
    o3 = _orient(cx, cy, dx, dy, ax, ay)
    o4 = _orient(cx, cy, dx, dy, bx, by)
    return o3 != 0 and o3 == o4


@njit(cache=True)
def _layer_rings_clean(rps, r0, r1, xy, nxt, order, xmin):
    """True when the rings r0:r1 of one layer are simple, pairwise disjoint, and nest as
    material/hole/material... with CCW outers and CW holes (winding only 0 or 1).

    Such rings are already the resolved outline under either fill rule. Any doubt (touching,
    near-collinear overlap, zero area, a CW ring outside everything) returns False.
    """
    a = rps[r0]
    b = rps[r1]
    n = b - a
    # ring areas and the point -> next point map
    for r in range(r0, r1):
        p0 = rps[r]
        p1 = rps[r + 1]
        if p1 - p0 < 3:
            return False
        area2 = 0.0
        for p in range(p0, p1):
            q = p + 1 if p + 1 < p1 else p0
            nxt[p - a] = q - a
            area2 += xy[p, 0] * xy[q, 1] - xy[q, 0] * xy[p, 1]
            if xy[p, 0] == xy[q, 0] and xy[p, 1] == xy[q, 1]:
                return False
        if area2 == 0.0:
            return False
    # every pair of segments (sweep along x): only neighbours in a ring may meet, at their shared point
    for i in range(n):
        q = nxt[i]
        xmin[i] = min(xy[a + i, 0], xy[a + q, 0])
    o = argsort_stable(xmin[:n])
    for i in range(n):
        order[i] = o[i]
    for ii in range(n):
        i = order[ii]
        ip = nxt[i]
        ax, ay, bx, by = xy[a + i, 0], xy[a + i, 1], xy[a + ip, 0], xy[a + ip, 1]
        xmax_i = max(ax, bx)
        for jj in range(ii + 1, n):
            j = order[jj]
            if xmin[j] > xmax_i:
                break
            jp = nxt[j]
            cx, cy, dx, dy = xy[a + j, 0], xy[a + j, 1], xy[a + jp, 0], xy[a + jp, 1]
            if ip == j or jp == i:
                # neighbours: the far ends must not fold back onto the shared point's segment
                if ip == j:
                    t = _orient(ax, ay, bx, by, dx, dy)
                    back = (bx - ax) * (dx - cx) + (by - ay) * (dy - cy) < 0
                else:
                    t = _orient(cx, cy, dx, dy, bx, by)
                    back = (dx - cx) * (bx - ax) + (dy - cy) * (by - ay) < 0
                if t == 0 and back:
                    return False
                if ip == j and jp == i:  # a two-segment ring
                    return False
                continue
            if not _segments_apart(ax, ay, bx, by, cx, cy, dx, dy):
                return False
    # nesting: winding of each ring's first point from the other rings
    for r in range(r0, r1):
        px = xy[rps[r], 0]
        py = xy[rps[r], 1]
        w_out = 0
        sgn = 0
        for g in range(r0, r1):
            p0 = rps[g]
            p1 = rps[g + 1]
            w = 0
            area2 = 0.0
            for p in range(p0, p1):
                q = p + 1 if p + 1 < p1 else p0
                area2 += xy[p, 0] * xy[q, 1] - xy[q, 0] * xy[p, 1]
                if g == r:
                    continue
                y0 = xy[p, 1]
                y1 = xy[q, 1]
                if y0 <= py < y1:
                    t = _orient(xy[p, 0], y0, xy[q, 0], y1, px, py)
                    if t == 0:
                        return False
                    if t > 0:
                        w += 1
                elif y1 <= py < y0:
                    t = _orient(xy[p, 0], y0, xy[q, 0], y1, px, py)
                    if t == 0:
                        return False
                    if t < 0:
                        w -= 1
            if g == r:
                sgn = 1 if area2 > 0 else -1
            else:
                w_out += w
        if not ((w_out == 0 and sgn == 1) or (w_out == 1 and sgn == -1)):
            return False
    return True


def clean_layers(layer_ring_start, ring_point_start, xy, chunk_start):
    """Per layer: True when its raw rings need no resolving (see :func:`_layer_rings_clean`).

    Parameters
    ----------
    layer_ring_start : (L+1,) int64; ring_point_start : (Q+1,) int64; xy : (P, 2) float64, µm.
    chunk_start : (C+1,) int64 layer chunks (run in parallel threads).

    Returns
    -------
    clean : (L,) bool. Layers without rings are clean; one-ring layers are clean when the
    ring is CCW with at least 3 points (a single closed chain of a mesh is simple).
    """
    out = np.zeros(layer_ring_start.shape[0] - 1, np.bool_)
    run_chunks(_clean_layers_range, chunk_start.shape[0] - 1, layer_ring_start, ring_point_start, xy, chunk_start, out,
               parts=chunk_start.shape[0] - 1)
    return out


@njit(cache=True, nogil=True)
def _clean_layers_range(ch_lo, ch_hi, layer_ring_start, ring_point_start, xy, chunk_start, out):
    """:func:`clean_layers` of layer chunks ``ch_lo .. ch_hi - 1`` into ``out``."""
    for ch in range(ch_lo, ch_hi):
        k0 = chunk_start[ch]
        k1 = chunk_start[ch + 1]
        cap = 1
        for k in range(k0, k1):
            cap = max(cap, ring_point_start[layer_ring_start[k + 1]] - ring_point_start[layer_ring_start[k]])
        nxt = np.empty(cap, np.int64)
        order = np.empty(cap, np.int64)
        xmin = np.empty(cap)
        for k in range(k0, k1):
            r0 = layer_ring_start[k]
            r1 = layer_ring_start[k + 1]
            if r1 == r0:
                out[k] = True
            elif r1 - r0 == 1:
                p0 = ring_point_start[r0]
                p1 = ring_point_start[r1]
                area2 = 0.0
                for p in range(p0, p1):
                    q = p + 1 if p + 1 < p1 else p0
                    area2 += xy[p, 0] * xy[q, 1] - xy[q, 0] * xy[p, 1]
                out[k] = area2 > 0
            else:
                out[k] = _layer_rings_clean(ring_point_start, r0, r1, xy, nxt, order, xmin)
