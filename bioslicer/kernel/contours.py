"""Numba kernel: chain the plane/triangle segments of each layer into closed rings.

Every segment starts on the mesh edge where its triangle goes down through the plane and
ends on the edge where it goes up (see :mod:`bioslicer.kernel.crossings`). On a closed,
consistently oriented mesh each cut edge starts exactly one segment and ends exactly one, so
rings are chained by edge id, never by matching floating-point coordinates.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .crossings import layer_segments


@njit(cache=True, parallel=True)
def chain_rings(V, F, face_edges, n_edges, bstart, btri, layer_pos, layer_z, chunk_start,
                base, ring_len_out, xy_out, nrings_out, npts_out):
    """Chain each layer's segments into rings.

    Parameters
    ----------
    V, F : mesh (µm, int32 faces); face_edges : (m, 3) int64 unique edge ids; n_edges : int.
    bstart, btri : layer buckets (CSR over sorted layers); layer_pos : (L,) sorted position of layer k.
    layer_z : (L,) float64, µm. chunk_start : (C+1,) int64 layer chunks for prange.
    base : (L,) int64 where layer k may write (upper bound: its bucket size) in the outputs.

    Returns (in the out arrays)
    -------
    ring_len_out : point count of each ring, from base[k]; xy_out : (P, 2) points from base[k];
    nrings_out, npts_out : (L,) rings and points written per layer. Open chains (a mesh that is
    not closed) are dropped; consecutive equal points are merged; rings with < 3 points dropped.
    """
    nchunks = chunk_start.shape[0] - 1
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
        e0 = np.empty(cap, np.int64)
        e1 = np.empty(cap, np.int64)
        used = np.zeros(cap, np.bool_)
        edge_seg = np.full(n_edges, -1, np.int64)
        for k in range(k0, k1):
            p = layer_pos[k]
            tris = btri[bstart[p]:bstart[p + 1]]
            n = layer_segments(V, F, tris, layer_z[k], x0, y0, x1, y1, face_edges, e0, e1, True)
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
