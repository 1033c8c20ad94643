"""Numba kernels of mesh intake: exact vertex welding, the edge table and repeated faces
(open-addressing hash tables), shells (union-find), per-body statistics, signed volumes.

Vertices are compared by the bit pattern of their coordinates (the caller turns -0.0 into
0.0 first), so two vertices merge exactly when all their coordinates are equal floats; no
tolerance. The merged vertices are numbered in order of first use by the face corners, so
the result does not depend on how the vertex array was ordered, only on the faces.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_S = np.uint64(31)


@njit(cache=True, inline="always")
def _mix(h):
    """Finalise a 64-bit hash (splitmix64 style)."""
    h ^= h >> _S
    h *= _M2
    h ^= h >> _S
    return h


@njit(cache=True)
def _table_size(k):
    size = 16
    while size < 2 * k:
        size *= 2
    return size


@njit(cache=True, inline="always")
def _local_slot(lo, hi, per, mask):
    """Slot near ``lo * per`` (a few slots per vertex, picked by ``hi``): keys of one vertex land
    together, and faces in first-use order touch the table almost in order (few cache misses)."""
    return (lo * per + np.int64(np.uint64(hi) * _M1 >> np.uint64(60))) & mask


@njit(cache=True)
def _slots_per_vertex(size, n):
    """Table slots per vertex for :func:`_local_slot` (0: too few, hash at random instead)."""
    per = size // max(n, 1)
    return per if per >= 4 else 0


@njit(cache=True)
def weld_first_use(words, corners):
    """Number the distinct vertices used by ``corners`` in order of first use.

    Parameters
    ----------
    words : (n, w) uint32, C-contiguous
        The bit pattern of each vertex (its coordinates viewed as 32-bit words: w = 3 for
        float32, 6 for float64 coordinates).
    corners : (k,) int64
        Vertex index of every face corner, in face order; each in ``0 <= c < n``.

    Returns
    -------
    ids : (k,) int64
        Welded vertex id of every corner (0, 1, 2, ... in order of first use).
    first : (k',) int32
        For each welded id, the index into ``words`` of its first corner's vertex.
    """
    n = words.shape[0]
    w = words.shape[1]
    k = corners.shape[0]
    size = _table_size(n)
    mask = np.uint64(size - 1)
    table = np.full(size, -1, np.int32)   # slot -> welded id
    first = np.empty(n, np.int32)          # welded id -> vertex index
    seen = np.full(n, -1, np.int32)        # vertex index -> welded id (skips re-hashing a vertex)
    ids = np.empty(k, np.int64)
    n_ids = 0
    for c in range(k):
        vi = corners[c]
        wid = seen[vi]
        if wid < 0:
            h = np.uint64(w)
            for j in range(w):
                h = _mix((h ^ np.uint64(words[vi, j])) * _M1)
            slot = np.int64(h & mask)
            while True:
                s = table[slot]
                if s < 0:
                    table[slot] = n_ids
                    first[n_ids] = vi
                    wid = n_ids
                    n_ids += 1
                    break
                r = first[s]
                same = True
                for j in range(w):
                    if words[r, j] != words[vi, j]:
                        same = False
                        break
                if same:
                    wid = s
                    break
                slot = (slot + 1) & (size - 1)
            seen[vi] = wid
        ids[c] = wid
    return ids, first[:n_ids]


@njit(cache=True)
def face_signed_volumes(v, f):
    """Signed volume of the tetrahedron (origin, a, b, c) of every face, ``a . (b x c) / 6``.

    Parameters
    ----------
    v : (n, 3) float64, C-contiguous
        Vertices, µm.
    f : (m, 3) int64, C-contiguous
        Faces (indices into ``v``, not checked).

    Returns
    -------
    (m,) float64, µm³; the same floats as the former ``einsum('ij,ij->i', a, cross(b, c)) / 6``
    (numpy 2.4 on x86-64 sums the three products as (x + z) + y), in one pass without temporaries.
    """
    m = f.shape[0]
    out = np.empty(m, np.float64)
    for i in range(m):
        a, b, c = f[i, 0], f[i, 1], f[i, 2]
        cx = v[b, 1] * v[c, 2] - v[b, 2] * v[c, 1]
        cy = v[b, 2] * v[c, 0] - v[b, 0] * v[c, 2]
        cz = v[b, 0] * v[c, 1] - v[b, 1] * v[c, 0]
        out[i] = ((v[a, 0] * cx + v[a, 2] * cz) + v[a, 1] * cy) / 6.0   # einsum's order: same floats
    return out


@njit(cache=True)
def edge_table(f, n):
    """Undirected edges of the faces: an id for every directed edge, uses and balance per edge.

    Parameters
    ----------
    f : (m, 3) int64, C-contiguous
        Faces, every index in ``0 <= i < n``.
    n : int
        Number of vertices.

    Returns
    -------
    eid : (3 m,) int32
        Undirected edge of directed edge ``3 i + j`` (vertex ``f[i, j]`` to ``f[i, (j + 1) % 3]``);
        edges numbered 0, 1, 2, ... in order of first use.
    uses : (E,) int32
        How many directed edges use each undirected edge.
    balance : (E,) int32
        Uses running low -> high vertex index minus uses running high -> low.
    """
    m = f.shape[0]
    k = 3 * m
    size = _table_size(k)
    mask = size - 1
    per = _slots_per_vertex(size, n)
    deg = np.zeros(n, np.int32)             # edge uses per low vertex: a fan's hub hashes at random
    for i in range(m):
        for j in range(3):
            deg[min(f[i, j], f[i, (j + 1) % 3])] += 1
    table = np.full(size, -1, np.int32)     # slot -> edge id
    keys = np.empty(k, np.int64)            # edge id -> lo * n + hi
    eid = np.empty(k, np.int32)
    uses = np.zeros(k, np.int32)
    balance = np.zeros(k, np.int32)
    ne = 0
    for i in range(m):
        for j in range(3):
            a = f[i, j]
            b = f[i, (j + 1) % 3]
            lo, hi = (a, b) if a < b else (b, a)
            key = lo * n + hi
            if per and deg[lo] <= 16:
                slot = _local_slot(lo, hi, per, mask)
            else:
                slot = np.int64(_mix(np.uint64(key) * _M1) & np.uint64(mask))
            while True:
                s = table[slot]
                if s < 0:
                    table[slot] = ne
                    keys[ne] = key
                    e = ne
                    ne += 1
                    break
                if keys[s] == key:
                    e = s
                    break
                slot = (slot + 1) & mask
            eid[3 * i + j] = e
            uses[e] += 1
            balance[e] += 1 if a < b else -1
    return eid, uses[:ne].copy(), balance[:ne].copy()


@njit(cache=True, inline="always")
def _rotated(f, i):
    """Face i's vertices rotated so the smallest comes first (same cyclic order)."""
    a, b, c = f[i, 0], f[i, 1], f[i, 2]
    if b < a and b <= c:
        return b, c, a
    if c < a and c < b:
        return c, a, b
    return a, b, c


@njit(cache=True, inline="always")
def _sorted3(f, i):
    a, b, c = f[i, 0], f[i, 1], f[i, 2]
    if a > b:
        a, b = b, a
    if b > c:
        b, c = c, b
    if a > b:
        a, b = b, a
    return a, b, c


@njit(cache=True, inline="always")
def _hash3(a, b, c):
    h = (np.uint64(a) * _M1) ^ np.uint64(b)
    h = _mix(h) * _M1 ^ np.uint64(c)
    return _mix(h)


@njit(cache=True)
def face_groups(f):
    """Repeated faces: the first face with the same vertices in the same cyclic order, and how
    many faces use the same three vertices as an earlier face (in any order).

    Parameters
    ----------
    f : (m, 3) int64, C-contiguous

    Returns
    -------
    rep : (m,) int64
        Smallest index of a face with the same vertices in the same cyclic order (``i`` itself
        for the first one).
    n_duplicates : int
        Faces whose vertex set (any order) appeared in an earlier face.
    """
    m = f.shape[0]
    size = _table_size(m)
    mask = np.uint64(size - 1)
    n = 0
    for i in range(m):
        n = max(n, f[i, 0] + 1, f[i, 1] + 1, f[i, 2] + 1)
    per = _slots_per_vertex(size, n)
    deg = np.zeros(n, np.int32)             # faces per lowest vertex: a fan's hub hashes at random
    for i in range(m):
        deg[min(f[i, 0], f[i, 1], f[i, 2])] += 1
    t_or = np.full(size, -1, np.int32)      # slot -> face (oriented triple)
    t_set = np.full(size, -1, np.int32)     # slot -> face (vertex set)
    rep = np.empty(m, np.int64)
    n_dup = 0
    for i in range(m):
        a, b, c = _rotated(f, i)
        local = per > 0 and deg[a] <= 16
        slot = _local_slot(a, b + 65599 * c, per, size - 1) if local else np.int64(_hash3(a, b, c) & mask)
        while True:
            s = t_or[slot]
            if s < 0:
                t_or[slot] = i
                rep[i] = i
                break
            a2, b2, c2 = _rotated(f, s)
            if a2 == a and b2 == b and c2 == c:
                rep[i] = s
                break
            slot = (slot + 1) & (size - 1)
        a, b, c = _sorted3(f, i)
        slot = _local_slot(a, b + 65599 * c, per, size - 1) if local else np.int64(_hash3(a, b, c) & mask)
        while True:
            s = t_set[slot]
            if s < 0:
                t_set[slot] = i
                break
            a2, b2, c2 = _sorted3(f, s)
            if a2 == a and b2 == b and c2 == c:
                n_dup += 1
                break
            slot = (slot + 1) & (size - 1)
    return rep, n_dup


@njit(cache=True)
def rep_edge_uses(eid, n_edges, is_rep):
    """Uses of every undirected edge by the representative faces (``is_rep``), and the first two.

    Parameters
    ----------
    eid : (3 m,) int32 edge of every directed edge (:func:`edge_table`); n_edges : int
    is_rep : (m,) bool

    Returns
    -------
    count : (E,) int32 uses by representative faces; first, second : (E,) int64 directed edge
    index (``3 face + corner``) of the first two such uses in face order (-1 where none).
    """
    count = np.zeros(n_edges, np.int32)
    first = np.full(n_edges, -1, np.int64)
    second = np.full(n_edges, -1, np.int64)
    for k in range(eid.shape[0]):
        if not is_rep[k // 3]:
            continue
        e = eid[k]
        c = count[e]
        if c == 0:
            first[e] = k
        elif c == 1:
            second[e] = k
        count[e] = c + 1
    return count, first, second


@njit(cache=True, inline="always")
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def shell_labels(f, count, first, second, extra_pairs, rep):
    """Faces joined into shells: union-find over manifold edge pairs, labels by first face.

    Parameters
    ----------
    f : (m, 3) int64
    count, first, second : from :func:`rep_edge_uses`
    extra_pairs : (p, 2) int64 further face pairs (edges used by more than two faces)
    rep : (m,) int64 representative of every face (:func:`face_groups`)

    Returns
    -------
    n_shells : int; label : (m,) int64 shell of every face, numbered by first face (a repeated
    face has its representative's shell). Two faces are joined at an edge used by exactly those
    two (representative) faces in opposite directions.
    """
    m = f.shape[0]
    parent = np.arange(m)
    for e in range(count.shape[0]):
        if count[e] != 2:
            continue
        k0, k1 = first[e], second[e]
        i0, j0 = k0 // 3, k0 % 3
        i1, j1 = k1 // 3, k1 % 3
        if (f[i0, j0] < f[i0, (j0 + 1) % 3]) == (f[i1, j1] < f[i1, (j1 + 1) % 3]):
            continue        # both uses run the same way: not a manifold pair
        r0, r1 = _find(parent, i0), _find(parent, i1)
        if r0 != r1:
            parent[max(r0, r1)] = min(r0, r1)
    for p in range(extra_pairs.shape[0]):
        r0, r1 = _find(parent, extra_pairs[p, 0]), _find(parent, extra_pairs[p, 1])
        if r0 != r1:
            parent[max(r0, r1)] = min(r0, r1)
    label = np.empty(m, np.int64)
    root_label = np.full(m, -1, np.int64)
    n = 0
    for i in range(m):
        r = _find(parent, rep[i])
        if root_label[r] < 0:
            root_label[r] = n
            n += 1
        label[i] = root_label[r]
    return n, label


@njit(cache=True)
def body_stats(v, f, body, nb, is_rep, fvol, eid, uses, mult):
    """Per body: bounding box, volume, open or closed, fewest copies of a face.

    Parameters
    ----------
    v : (n, 3) float64; f : (m, 3) int64; body : (m,) int64 labels ``0 <= b < nb``
    is_rep : (m,) bool faces counted in the volume; fvol : (m,) float64 signed volumes, µm³
    eid, uses : edges of the faces (:func:`edge_table`); mult : (m,) int64 copies of each face

    Returns
    -------
    lo, hi : (nb, 3) float64 bounding box, µm; vol : (nb,) float64 summed in face order (the
    floats of ``np.bincount``); open_ : (nb,) bool a boundary edge (used once) in the body;
    fewest : (nb,) int64 smallest ``mult`` of the body's faces.
    """
    lo = np.full((nb, 3), np.inf)
    hi = np.full((nb, 3), -np.inf)
    vol = np.zeros(nb)
    open_ = np.zeros(nb, np.bool_)
    fewest = np.full(nb, np.iinfo(np.int64).max)
    for i in range(f.shape[0]):
        b = body[i]
        for j in range(3):
            p = f[i, j]
            for a in range(3):
                x = v[p, a]
                if x < lo[b, a]:
                    lo[b, a] = x
                if x > hi[b, a]:
                    hi[b, a] = x
            if uses[eid[3 * i + j]] == 1:
                open_[b] = True
        if is_rep[i]:
            vol[b] += fvol[i]
        if mult[i] < fewest[b]:
            fewest[b] = mult[i]
    return lo, hi, vol, open_, fewest


@njit(cache=True)
def degenerate_faces(v, f, min_area2):
    """Faces with a repeated vertex or ``|(b - a) x (c - a)| <= min_area2`` (twice the area, µm²)."""
    out = 0
    for i in range(f.shape[0]):
        a, b, c = f[i, 0], f[i, 1], f[i, 2]
        if a == b or b == c or c == a:
            out += 1
            continue
        ux, uy, uz = v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2]
        wx, wy, wz = v[c, 0] - v[a, 0], v[c, 1] - v[a, 1], v[c, 2] - v[a, 2]
        cx = uy * wz - uz * wy
        cy = uz * wx - ux * wz
        cz = ux * wy - uy * wx
        if np.sqrt(cx * cx + cy * cy + cz * cz) <= min_area2:
            out += 1
    return out


@njit(cache=True)
def faces_meeting_box(v, f, faces, lo, hi, ax0, ax1):
    """Those of ``faces`` whose extent along axes ``ax0`` and ``ax1`` meets the closed box
    ``lo <= x <= hi`` (3-vectors, µm) on both axes: every face a line parallel to the third
    axis through the box can cross."""
    out = np.empty(faces.shape[0], np.int64)
    n = 0
    for q in range(faces.shape[0]):
        i = faces[q]
        keep = True
        for ax in (ax0, ax1):
            a, b, c = v[f[i, 0], ax], v[f[i, 1], ax], v[f[i, 2], ax]
            if max(a, max(b, c)) < lo[ax] or min(a, min(b, c)) > hi[ax]:
                keep = False
                break
        if keep:
            out[n] = i
            n += 1
    return out[:n]


@njit(cache=True)
def winding_numbers(points, v, f, faces):
    """Generalised winding number of the triangles ``f[faces]`` at every point (solid angle / 4π).

    Parameters
    ----------
    points : (k, 3) float64, µm; v : (n, 3) float64, µm; f : (m, 3) int64; faces : (q,) int64

    Returns
    -------
    (k,) float64: 1 inside a closed outward shell, 0 outside it, summed over shells.
    """
    out = np.zeros(points.shape[0])
    for q in range(points.shape[0]):
        px, py, pz = points[q, 0], points[q, 1], points[q, 2]
        total = 0.0
        for t in faces:
            i, j, k = f[t, 0], f[t, 1], f[t, 2]
            ax, ay, az = v[i, 0] - px, v[i, 1] - py, v[i, 2] - pz
            bx, by, bz = v[j, 0] - px, v[j, 1] - py, v[j, 2] - pz
            cx, cy, cz = v[k, 0] - px, v[k, 1] - py, v[k, 2] - pz
            la = np.sqrt(ax * ax + ay * ay + az * az)
            lb = np.sqrt(bx * bx + by * by + bz * bz)
            lc = np.sqrt(cx * cx + cy * cy + cz * cz)
            num = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
            den = (la * lb * lc + (ax * bx + ay * by + az * bz) * lc + (bx * cx + by * cy + bz * cz) * la
                   + (cx * ax + cy * ay + cz * az) * lb)
            total += np.arctan2(num, den)
        out[q] = total / (2.0 * np.pi)
    return out
