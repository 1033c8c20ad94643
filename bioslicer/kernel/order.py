"""Numba kernels for scan ordering: the order of the marks inside every (block, layer) run.

:func:`order_runs` returns, for every output position, its source mark (``order``), whether
an open mark is reversed (``flip``) and where a closed contour starts (``rot``);
:func:`apply_order` moves the points accordingly. Per-mark fields are moved by the caller
(:mod:`bioslicer.ordering`) with ``Toolpath.take_marks(order)``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .measure import _dist
from .pool import run_chunks
from .sorting import argsort_stable, insertion_sort_by

@njit(cache=True)
def _argsort_rows(w):
    """``argsort_stable(w)`` in one pass when ``w`` is already monotone, as the row offsets of a
    planner's hatch usually are (rows come in order, up or down); otherwise the merge sort."""
    n = len(w)
    up = True
    down = True
    for j in range(1, n):
        if w[j] < w[j - 1]:
            up = False
        elif w[j] > w[j - 1]:
            down = False
    out = np.empty(n, np.int64)
    if up:
        for j in range(n):
            out[j] = j
        return out
    if not down:
        return argsort_stable(w)
    # non-increasing: runs of equal keys from the last to the first, each in index order
    k = 0
    j = n - 1
    while j >= 0:
        i = j
        while i > 0 and w[i - 1] == w[j]:
            i -= 1
        for t in range(i, j + 1):
            out[k] = t
            k += 1
        j = i - 1
    return out


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
    ow = _argsort_rows(w)
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
            insertion_sort_by(seq, a0, a1, al)
        else:
            sub = seq[a0:a1].copy()
            o = argsort_stable(al[sub])
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


@njit(cache=True, inline="always")
def _ring_clearance(cx, cy, x0, y0, cs, gx, gy, gnx, gny, r):
    """How far (cx, cy) is from every grid cell outside the square of rings 0..r around cell
    (gx, gy) (inf where the square reaches the grid edge), less 1e-6 µm for the rounding of the
    bucketing: any entry outside the square is farther than this."""
    d = np.inf
    if gx - r > 0:
        d = min(d, cx - (x0 + (gx - r) * cs))
    if gx + r < gnx - 1:
        d = min(d, x0 + (gx + r + 1) * cs - cx)
    if gy - r > 0:
        d = min(d, cy - (y0 + (gy - r) * cs))
    if gy + r < gny - 1:
        d = min(d, y0 + (gy + r + 1) * cs - cy)
    return d - 1e-6


@njit(cache=True)
def _nearest(idx, x, y, z, mark_start, mark_closed, cx, cy, cz, out, flip, rot, pos):
    """Greedy nearest-neighbour order of marks ``idx`` from (cx, cy, cz), with a grid over
    candidate start points (both ends of open marks, every vertex of closed contours) from which
    used entries are removed; it is rebuilt when a quarter of the entries are left. Ties go to
    the lower entry index. The rings of cells around the current point are searched until the
    best entry is nearer than any cell outside them (:func:`_ring_clearance`; or within ``r``
    cell sides, the older, looser test: both stop only where no other entry can win, so the
    order is the same). Returns the end point."""
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
            if be >= 0 and (best <= r * cs or best < _ring_clearance(cx, cy, x0, y0, cs, gx, gy, gnx, gny, r)):
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
    o = _argsort_rows(w)
    for j in range(1, n):
        if w[o[j]] - w[o[j - 1]] <= 1e-3:
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


#: order modes per kind (``mode_kind`` of :func:`order_runs`; names in ``bioslicer.ordering.ORDER_MODES``)
AUTO, SERPENTINE, NEAREST, AS_SLICED, INSIDE_OUT, OUTSIDE_IN = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def _radial(idx, x, y, mark_start, out, flip, pos, outward):
    """Marks ``idx`` sorted by the distance of their centre (mean of their points) from the
    centre of the group's bounding box: nearest first when ``outward``, else farthest first;
    ties keep the sliced order. Marks are not reversed. Returns the end point index."""
    n = len(idx)
    mx = np.empty(n)
    my = np.empty(n)
    for j in range(n):
        s = mark_start[idx[j]]
        e = mark_start[idx[j] + 1]
        sx = 0.0
        sy = 0.0
        for q in range(s, e):
            sx += x[q]
            sy += y[q]
        mx[j] = sx / (e - s)
        my[j] = sy / (e - s)
    ccx = 0.5 * (mx.min() + mx.max())
    ccy = 0.5 * (my.min() + my.max())
    d = np.empty(n)
    for j in range(n):
        r = math.sqrt((mx[j] - ccx) ** 2 + (my[j] - ccy) ** 2)
        d[j] = r if outward else -r
    o = argsort_stable(d)
    for j in range(n):
        out[pos + j] = idx[o[j]]
        flip[pos + j] = False
    return mark_start[idx[o[n - 1]] + 1] - 1


def order_runs(run_start, x, y, z, mark_start, mark_kind, mark_closed, serp_kind, mode_kind, rank_kind):
    """Order the marks of every run (block, layer) independently (runs in parallel threads).

    Marks are grouped by (kind, serpentine-able); groups are written by ``rank_kind[kind]``
    (lower first), equal ranks in order of first appearance in the run. Within a group the
    kind's ``mode_kind`` decides: ``AUTO`` (2-point marks of a kind with ``serp_kind[kind]``
    serpentine, or nearest neighbour when that jumps less, as on layers broken into islands; the
    rest nearest neighbour), ``SERPENTINE`` (2-point marks always serpentine, others nearest),
    ``NEAREST``, ``AS_SLICED`` (unchanged), ``INSIDE_OUT`` / ``OUTSIDE_IN`` (:func:`_radial`).
    Each run starts from the first point of its first mark.

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
    run_chunks(_order_run_range, len(run_start) - 1, run_start, x, y, z, mark_start, mark_kind, mark_closed, serp_kind,
               mode_kind, rank_kind, order, flip, rot)
    return order, flip, rot


@njit(cache=True, nogil=True)
def _order_run_range(r_lo, r_hi, run_start, x, y, z, mark_start, mark_kind, mark_closed, serp_kind, mode_kind,
                     rank_kind, order, flip, rot):
    """:func:`order_runs` of runs ``r_lo .. r_hi - 1`` into the preallocated ``order``, ``flip``, ``rot``."""
    for r in range(r_lo, r_hi):
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
        # groups: first mark of each key, written by (rank of its kind, first appearance)
        first = np.empty(b - a, np.int64)
        ng = 0
        seen = np.zeros(b - a, np.bool_)
        for j in range(b - a):
            if seen[j]:
                continue
            first[ng] = j
            ng += 1
            for jj in range(j, b - a):
                if keys[jj] == keys[j]:
                    seen[jj] = True
        gsort = np.empty(ng)   # exact: below 2**53
        for g in range(ng):
            gsort[g] = rank_kind[keys[first[g]] // 2] * (b - a) + first[g]
        gorder = argsort_stable(gsort)
        for g in range(ng):
            j0 = first[gorder[g]]
            key = keys[j0]
            mode = mode_kind[key // 2]
            cnt = 0
            for j in range(j0, b - a):
                if keys[j] == key:
                    cnt += 1
            idx = np.empty(cnt, np.int64)
            c = 0
            for j in range(j0, b - a):
                if keys[j] == key:
                    idx[c] = a + j
                    c += 1
            o1 = np.empty(cnt, np.int64)
            f1 = np.zeros(cnt, np.bool_)
            r1 = np.zeros(cnt, np.int64)
            if mode == AS_SLICED or mode == INSIDE_OUT or mode == OUTSIDE_IN:
                if mode == AS_SLICED:
                    for t in range(cnt):
                        order[pos + t] = idx[t]
                    q = mark_start[idx[cnt - 1] + 1] - 1
                else:
                    q = _radial(idx, x, y, mark_start, order, flip, pos, mode == INSIDE_OUT)
                cx, cy, cz = x[q], y[q], z[q]
                pos += cnt
                continue
            if mode == NEAREST:
                plain = False
            elif mode == SERPENTINE:
                plain = key % 2 == 1
            else:
                plain = key % 2 == 1 and _one_mark_per_row(idx, x, y, mark_start)
            if plain:
                # plain rows (no holes, no islands): serpentine, no need to try anything else
                e1 = _serpentine(idx, x, y, z, mark_start, cx, cy, cz, o1, f1, 0)
            else:
                e1 = _nearest(idx, x, y, z, mark_start, mark_closed, cx, cy, cz, o1, f1, r1, 0)
            if mode == AUTO and key % 2 == 1 and cnt > 1 and not plain:
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


@njit(cache=True, inline="always")
def _put_mark(sx, sy, sz, sp, s, n, r, f, ox, oy, oz, op, d):
    """Write the n points of a mark starting at s in (sx, sy, sz, sp) to d in (ox, oy, oz, op),
    rotated to start at vertex r (closed marks, r > 0) or reversed (f)."""
    if n == 2 and r == 0:     # a 2-point mark (most hatch): no loop
        i0 = s + 1 if f else s
        i1 = s if f else s + 1
        ox[d] = sx[i0]
        oy[d] = sy[i0]
        oz[d] = sz[i0]
        op[d] = sp[i0]
        ox[d + 1] = sx[i1]
        oy[d + 1] = sy[i1]
        oz[d + 1] = sz[i1]
        op[d + 1] = sp[i1]
    elif r > 0:
        for i in range(n):
            si = s + (r + i) % (n - 1)
            ox[d + i] = sx[si]
            oy[d + i] = sy[si]
            oz[d + i] = sz[si]
            op[d + i] = sp[si]
    elif f:
        for i in range(n):
            si = s + n - 1 - i
            ox[d + i] = sx[si]
            oy[d + i] = sy[si]
            oz[d + i] = sz[si]
            op[d + i] = sp[si]
    else:
        for i in range(n):
            ox[d + i] = sx[s + i]
            oy[d + i] = sy[s + i]
            oz[d + i] = sz[s + i]
            op[d + i] = sp[s + i]


def apply_order(run_start, mark_start, order, flip, rot, x, y, z, p, inplace, n_chunks, ox, oy, oz, op, ostart):
    """Write the points of mark ``order[j]`` as output mark j, reversed where ``flip[j]`` and
    rotated to start at vertex ``rot[j]`` (closed marks).

    Marks only move inside their run, so every run keeps its point range. Runs are processed in
    ``n_chunks`` parallel chunks. With ``inplace`` the outputs are the inputs themselves
    (``ox is x``, ``ostart is mark_start``, ...): each run is first copied to a scratch buffer
    allocated once per chunk. Otherwise the outputs are preallocated (``ostart[M]`` set by the
    caller). Per-mark fields are not touched (the caller takes them at ``order``).
    """
    run_chunks(_apply_order_range, n_chunks, run_start, mark_start, order, flip, rot, x, y, z, p, inplace, n_chunks,
               ox, oy, oz, op, ostart)


@njit(cache=True, nogil=True)
def _apply_order_range(c_lo, c_hi, run_start, mark_start, order, flip, rot, x, y, z, p, inplace, n_chunks, ox, oy, oz,
                       op, ostart):
    """:func:`apply_order` of chunks ``c_lo .. c_hi - 1``."""
    nr = len(run_start) - 1
    for c in range(c_lo, c_hi):
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
            d = p0
            for j in range(a, b):
                k = order[j]
                ostart[j] = d
                if inplace:
                    s = ss[k - a]
                    n = ss[k - a + 1] - s
                    _put_mark(sx, sy, sz, sp, s, n, rot[j], flip[j], ox, oy, oz, op, d)
                else:
                    s = mark_start[k]
                    n = mark_start[k + 1] - s
                    _put_mark(x, y, z, p, s, n, rot[j], flip[j], ox, oy, oz, op, d)
                d += n
