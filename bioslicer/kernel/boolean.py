"""Numba kernel: boolean operations between two span sets on the same row grid."""

from __future__ import annotations

import numpy as np
from numba import njit

from .pool import run_chunks

OP_UNION = 0
OP_INTERSECTION = 1
OP_DIFFERENCE = 2


@njit(cache=True)
def _keep(op, ina, inb):
    if op == 0:
        return ina or inb
    if op == 1:
        return ina and inb
    return ina and not inb


@njit(cache=True)
def _row_boolean(op, au0, au1, a0, a1, bu0, bu1, b0, b1, u0_out, u1_out, o):
    """Boolean of two sorted disjoint span lists of one row; writes from o, returns new o."""
    ia = a0
    ib = b0
    ina = False
    inb = False
    inside = False
    start = 0.0
    # boundary events: for A the next boundary is au0[ia] when outside, au1[ia] when inside
    while True:
        na = np.inf
        if ia < a1:
            na = au1[ia] if ina else au0[ia]
        nb = np.inf
        if ib < b1:
            nb = bu1[ib] if inb else bu0[ib]
        x = min(na, nb)
        if x == np.inf:
            break
        if na == x:
            if ina:
                ia += 1
            ina = not ina
        if nb == x:
            if inb:
                ib += 1
            inb = not inb
        now = _keep(op, ina, inb)
        if now and not inside:
            start = x
            inside = True
        elif inside and not now:
            inside = False
            if x > start:
                u0_out[o] = start
                u1_out[o] = x
                o += 1
    return o


def span_boolean_kernel(op, a_lrs, a_j, a_rss, a_u0, a_u1, b_lrs, b_j, b_rss, b_u0, b_u1,
                        row_base, span_base, row_j_out, row_n_out, u0_out, u1_out, nrows_out, nspans_out):
    """Per layer, merge rows of A and B by row index and combine their spans.

    Parameters
    ----------
    op : 0 union, 1 intersection, 2 difference (A minus B).
    a_lrs, b_lrs : (L+1,) layer -> row CSR; a_j, b_j : (R,) int64 row index (ascending per layer);
    a_rss, b_rss : (R+1,) row -> span CSR; a_u0, a_u1, b_u0, b_u1 : span ends.
    row_base, span_base : (L,) int64 where layer k writes (upper bounds).

    Returns (in the out arrays) rows with >= 1 span and their spans, counts per layer.
    """
    run_chunks(_span_boolean_range, a_lrs.shape[0] - 1, int(op), a_lrs, a_j, a_rss, a_u0, a_u1, b_lrs, b_j, b_rss, b_u0,
               b_u1, row_base, span_base, row_j_out, row_n_out, u0_out, u1_out, nrows_out, nspans_out)


@njit(cache=True, nogil=True)
def _span_boolean_range(k_lo, k_hi, op, a_lrs, a_j, a_rss, a_u0, a_u1, b_lrs, b_j, b_rss, b_u0, b_u1,
                        row_base, span_base, row_j_out, row_n_out, u0_out, u1_out, nrows_out, nspans_out):
    """:func:`span_boolean_kernel` of layers ``k_lo .. k_hi - 1``."""
    for k in range(k_lo, k_hi):
        ra = a_lrs[k]
        rb = b_lrs[k]
        ra1 = a_lrs[k + 1]
        rb1 = b_lrs[k + 1]
        nr = 0
        o0 = span_base[k]
        o = o0
        while ra < ra1 or rb < rb1:
            ja = a_j[ra] if ra < ra1 else (1 << 62)
            jb = b_j[rb] if rb < rb1 else (1 << 62)
            j = min(ja, jb)
            if ja == j:
                s0, s1 = a_rss[ra], a_rss[ra + 1]
                ra += 1
            else:
                s0, s1 = 0, 0
            if jb == j:
                t0, t1 = b_rss[rb], b_rss[rb + 1]
                rb += 1
            else:
                t0, t1 = 0, 0
            before = o
            o = _row_boolean(op, a_u0, a_u1, s0, s1, b_u0, b_u1, t0, t1, u0_out, u1_out, o)
            if o > before:
                row_j_out[row_base[k] + nr] = j
                row_n_out[row_base[k] + nr] = o - before
                nr += 1
        nrows_out[k] = nr
        nspans_out[k] = o - o0
