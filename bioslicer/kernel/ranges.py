"""Numba kernel of the program index's range builder (:class:`bioslicer.preview.program._RangeBuilder`).

One call takes one chunk of moves (after the moves the previous chunk left over, ``tail``) and
assigns each move to a range (one layer of one block in one file), appending new ranges and
adding to their first move, line span and sums. The sums of a run of moves are formed exactly as
``np.add.reduceat`` forms them (the first value plus numpy's pairwise sum of the rest), so the
index is the same to the last bit as the numpy builder's it replaced.

Move columns (the tail matrix's order): the index's ``FIRST_FIELDS`` (x, y, z, lx, ly, lz, sx,
sy, sz, power_mw, speed_um_s, block, power_line, line), then file, laser_on, jump.
"""

from __future__ import annotations

import numpy as np
from numba import njit

N_COLS = 17
C_Z, C_BLOCK, C_LINE, C_FILE, C_ON, C_JUMP = 2, 11, 13, 14, 15, 16
N_FIRST = 14
# builder state slots (int64): cont, level, has_key, key file, key block, key level, ranges, moves
S_CONT, S_LEVEL, S_HAS_KEY, S_KF, S_KB, S_KL, S_NR, S_NM = range(8)


@njit(cache=True, nogil=True)
def _pairwise_leaf(a, lo, n):
    """numpy's pairwise sum of ``a[lo:lo + n]`` for n <= 128 (eight partial sums, then the rest)."""
    if n < 8:
        res = 0.0
        for k in range(lo, lo + n):
            res += a[k]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    m = n - n % 8
    k = 8
    while k < m:
        r0 += a[lo + k]
        r1 += a[lo + k + 1]
        r2 += a[lo + k + 2]
        r3 += a[lo + k + 3]
        r4 += a[lo + k + 4]
        r5 += a[lo + k + 5]
        r6 += a[lo + k + 6]
        r7 += a[lo + k + 7]
        k += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while k < n:
        res += a[lo + k]
        k += 1
    return res


@njit(cache=True, nogil=True)
def _pairwise(a, lo, n):
    """numpy's pairwise sum of ``a[lo:lo + n]``: the same additions in the same order (numpy halves
    a stretch above 128 values at a multiple of 8 and adds the halves' sums; here with a stack
    instead of recursion)."""
    if n <= 128:
        return _pairwise_leaf(a, lo, n)
    s_lo = np.empty(64, np.int64)
    s_n = np.empty(64, np.int64)
    s_state = np.empty(64, np.int64)     # 0: not split yet, 1: left half pending, 2: right half pending
    s_val = np.empty(64)
    sp = 0
    s_lo[0] = lo
    s_n[0] = n
    s_state[0] = 0
    while True:
        if s_state[sp] == 0 and s_n[sp] > 128:
            n2 = s_n[sp] // 2
            n2 -= n2 % 8
            s_state[sp] = 1
            s_lo[sp + 1] = s_lo[sp]
            s_n[sp + 1] = n2
            s_state[sp + 1] = 0
            sp += 1
            continue
        r = _pairwise_leaf(a, s_lo[sp], s_n[sp]) if s_state[sp] == 0 else s_val[sp]
        if sp == 0:
            return r
        sp -= 1
        if s_state[sp] == 1:        # left half done: now the right half
            s_val[sp] = r
            n2 = s_n[sp] // 2
            n2 -= n2 % 8
            s_state[sp] = 2
            s_lo[sp + 1] = s_lo[sp] + n2
            s_n[sp + 1] = s_n[sp] - n2
            s_state[sp + 1] = 0
            sp += 1
        else:                       # both halves done
            s_val[sp] = s_val[sp] + r
            s_state[sp] = 3


@njit(cache=True, nogil=True)
def _run_sum(T, nt, c, a, sel, p0, m, contiguous, buf):
    """Sum of column ``c`` over the run of moves ``sel[p0:p0 + m]`` as ``np.add.reduceat`` forms
    it: the first value plus the pairwise sum of the rest (read in place when the run is one
    stretch of the chunk, else gathered into ``buf``)."""
    if contiguous:
        i0 = sel[p0] - nt
        return a[i0] + _pairwise(a, i0 + 1, m - 1)
    for q in range(m):
        i = sel[p0 + q]
        buf[q] = T[i, c] if i < nt else a[i - nt]
    return buf[0] + _pairwise(buf, 1, m - 1)


@njit(cache=True, nogil=True)
def feed_ranges(T, nt, x, y, z, lx, ly, lz, sx, sy, sz, pw, sp, blk, pline, line, fil, on, jump, final, quantum,
                st, rng, first, sums, firstset, nxt, rid, sel, buf):
    """Assign one chunk of moves to ranges; returns ``cut`` (moves from ``cut`` on are the new tail).

    T (nt, 17) float64: the tail (the module's column order); x ... jump (n - nt,): the chunk's
    move arrays; final: assign every move (no tail); quantum: z level resolution (µm); st (8,)
    int64 state (``S_*``); rng (cap, 4) int64 [file, level, first line, last line], first (cap,
    14), sums (cap, 8), firstset (cap,) bool: the ranges, with room for one more per laser-on
    move; nxt, rid, sel (n,) int64 and buf (n,) float64 scratch. Semantics of the former numpy builder: a mark's level
    is the z of its first laser-on move; a new range starts at a laser-on move whose (file,
    block, level) differs from the previous laser-on move's; a move joins the range of the next
    laser-on move of its file and block, else the previous laser-on move's range when in the same
    file, else none.
    """
    n = nt + x.shape[0]
    if n == 0:
        return 0
    # levels of the laser-on moves (kept in nxt for the next pass), the last one
    prev_on = st[S_CONT] != 0
    level = st[S_LEVEL]
    last_on = -1
    for i in range(n):
        o = T[i, C_ON] != 0.0 if i < nt else on[i - nt] != 0
        if o:
            if not prev_on:
                level = np.int64(np.rint((T[i, C_Z] if i < nt else z[i - nt]) / quantum))
            nxt[i] = level
            last_on = i
        prev_on = o
    if last_on >= 0:
        st[S_LEVEL] = level
    cut = n if final else last_on + 1
    if cut == 0:
        return 0
    # the range of every laser-on move (new ranges appended)
    has = st[S_HAS_KEY] != 0
    kf, kb, kl = st[S_KF], st[S_KB], st[S_KL]
    nr = st[S_NR]
    base = nr - 1
    for i in range(cut):
        if (T[i, C_ON] != 0.0 if i < nt else on[i - nt] != 0):
            f = np.int64((T[i, C_FILE] if i < nt else fil[i - nt]))
            b = np.int64((T[i, C_BLOCK] if i < nt else blk[i - nt]))
            lv = nxt[i]
            if not has or f != kf or b != kb or lv != kl:
                rng[nr, 0] = f
                rng[nr, 1] = lv
                rng[nr, 2] = -1
                rng[nr, 3] = -1
                firstset[nr] = False
                for k in range(sums.shape[1]):
                    sums[nr, k] = 0.0
                nr += 1
                kf, kb, kl = f, b, lv
                has = True
            rid[i] = nr - 1
    # the next laser-on move at or after each move (backwards)
    nx = -1
    for i in range(cut - 1, -1, -1):
        if (T[i, C_ON] != 0.0 if i < nt else on[i - nt] != 0):
            nx = i
        nxt[i] = nx
    # every other move: the next laser-on move's range (same file and block), else the previous one's (same file)
    pr = base
    pf = st[S_KF] if st[S_HAS_KEY] != 0 else np.int64(-1)
    ns = 0
    for i in range(cut):
        f = np.int64((T[i, C_FILE] if i < nt else fil[i - nt]))
        if (T[i, C_ON] != 0.0 if i < nt else on[i - nt] != 0):
            pr = rid[i]
            pf = f
        else:
            r = np.int64(-1)
            j = nxt[i]
            if j >= 0 and f == np.int64((T[j, C_FILE] if j < nt else fil[j - nt])) and \
                    (T[i, C_BLOCK] if i < nt else blk[i - nt]) == (T[j, C_BLOCK] if j < nt else blk[j - nt]):
                r = rid[j]
            elif pr >= 0 and f == pf:
                r = pr
            rid[i] = r
        if rid[i] >= 0:
            sel[ns] = i
            ns += 1
    # runs of assigned moves in one range: first move, line span, sums (as np.add.reduceat forms them)
    p0 = 0
    while p0 < ns:
        u = rid[sel[p0]]
        p1 = p0
        while p1 + 1 < ns and rid[sel[p1 + 1]] == u:
            p1 += 1
        i0 = sel[p0]
        if not firstset[u]:
            first[u, 0] = (T[i0, 0] if i0 < nt else x[i0 - nt])
            first[u, 1] = (T[i0, 1] if i0 < nt else y[i0 - nt])
            first[u, 2] = (T[i0, 2] if i0 < nt else z[i0 - nt])
            first[u, 3] = (T[i0, 3] if i0 < nt else lx[i0 - nt])
            first[u, 4] = (T[i0, 4] if i0 < nt else ly[i0 - nt])
            first[u, 5] = (T[i0, 5] if i0 < nt else lz[i0 - nt])
            first[u, 6] = (T[i0, 6] if i0 < nt else sx[i0 - nt])
            first[u, 7] = (T[i0, 7] if i0 < nt else sy[i0 - nt])
            first[u, 8] = (T[i0, 8] if i0 < nt else sz[i0 - nt])
            first[u, 9] = (T[i0, 9] if i0 < nt else pw[i0 - nt])
            first[u, 10] = (T[i0, 10] if i0 < nt else sp[i0 - nt])
            first[u, 11] = (T[i0, 11] if i0 < nt else blk[i0 - nt])
            first[u, 12] = (T[i0, 12] if i0 < nt else pline[i0 - nt])
            first[u, 13] = (T[i0, 13] if i0 < nt else line[i0 - nt])
            rng[u, 2] = np.int64((T[i0, C_LINE] if i0 < nt else line[i0 - nt]))
            firstset[u] = True
        rng[u, 3] = np.int64((T[sel[p1], C_LINE] if sel[p1] < nt else line[sel[p1] - nt]))
        m = p1 - p0 + 1
        non = 0
        njump = 0
        for p in range(p0, p1 + 1):
            i = sel[p]
            non += T[i, C_ON] != 0.0 if i < nt else on[i - nt] != 0
            njump += T[i, C_JUMP] != 0.0 if i < nt else jump[i - nt] != 0
        sums[u, 0] += float(m)
        contiguous = i0 >= nt and sel[p1] - i0 == p1 - p0     # one stretch of the chunk: summed in place
        sums[u, 1] += _run_sum(T, nt, 0, x, sel, p0, m, contiguous, buf)
        sums[u, 2] += _run_sum(T, nt, 1, y, sel, p0, m, contiguous, buf)
        sums[u, 3] += _run_sum(T, nt, 2, z, sel, p0, m, contiguous, buf)
        sums[u, 4] += _run_sum(T, nt, 9, pw, sel, p0, m, contiguous, buf)
        sums[u, 5] += _run_sum(T, nt, 10, sp, sel, p0, m, contiguous, buf)
        sums[u, 6] += float(non)
        sums[u, 7] += float(njump)
        p0 = p1 + 1
    if has:
        st[S_HAS_KEY] = 1
        st[S_KF] = kf
        st[S_KB] = kb
        st[S_KL] = kl
    st[S_NR] = nr
    st[S_NM] += ns
    return cut


@njit(cache=True, nogil=True)
def line_starts(buf, want, out):
    """``out[k]``: the byte offset after the ``want[k]``-th line end (LF) of ``buf`` (0 for
    ``want[k] <= 0``, ``len(buf)`` when there are fewer); ``want`` ascending. Blocks of 4 kB
    without a wanted line end are only counted (a loop that vectorises)."""
    n = buf.shape[0]
    nw = want.shape[0]
    k = 0
    while k < nw and want[k] <= 0:
        out[k] = 0
        k += 1
    seen = 0
    b0 = 0
    while b0 < n and k < nw:
        b1 = min(b0 + 4096, n)
        blk = buf[b0:b1]            # a loop from 0 over a slice vectorises (no index that could be negative)
        c = 0
        for i in range(blk.shape[0]):
            c += blk[i] == 10
        if seen + c < want[k]:
            seen += c
        else:
            for i in range(b0, b1):
                if buf[i] == 10:
                    seen += 1
                    while k < nw and want[k] == seen:
                        out[k] = i + 1
                        k += 1
        b0 = b1
    while k < nw:
        out[k] = n
        k += 1
