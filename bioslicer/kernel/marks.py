"""Numba kernels from spans to marks: segments, serpentine order, subdivision, sampling.

Every kernel takes and returns plain arrays; the Python around them (``bioslicer.strategies``,
``bioslicer.exposure``) validates and allocates. Kernels that produce a variable amount of
output come in two passes: count, then fill into preallocated arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .pool import run_chunks


# ----------------------------------------------------------------------------- spans -> segments
def count_kept_spans(layer_row_start, row_span_start, row_v, span_u0, span_u1, keep_row, min_len_um, window,
                     out_count, out_total):
    """Count, per layer, spans at least ``min_len_um`` long on rows with ``keep_row`` set.

    Parameters
    ----------
    layer_row_start : (L+1,) int64
    row_span_start : (R+1,) int64
    row_v : (R,) float64, µm
    span_u0, span_u1 : (S,) float64, µm
    keep_row : (R,) bool
    min_len_um : float
    window : (4, L) float64 or None
        Per layer ``lo_v, hi_v, lo_u, hi_u``: only rows with ``lo_v <= v <= hi_v`` and their
        spans with ``u1 >= lo_u`` and ``u0 <= hi_u`` count (``window_spans`` with ``cut_spans``).
    out_count : (L,) int64, filled
    out_total : (L,) int64, filled: every span counted, whatever its length
    """
    windowed = window is not None
    win = np.ascontiguousarray(window, dtype=np.float64) if windowed else np.zeros((4, 0))
    run_chunks(_count_kept_spans_range, len(layer_row_start) - 1, layer_row_start, row_span_start, row_v, span_u0,
               span_u1, keep_row, float(min_len_um), windowed, win, out_count, out_total)


@njit(cache=True)
def _row_in(windowed, win, k, v):
    """Row at ``v`` of layer k inside the window (see :func:`count_kept_spans`)."""
    return not windowed or (v >= win[0, k] and v <= win[1, k])


@njit(cache=True)
def _span_in(windowed, win, k, u0, u1):
    """Span [u0, u1) of layer k reaching the window (see :func:`count_kept_spans`)."""
    return not windowed or (u1 >= win[2, k] and u0 <= win[3, k])


@njit(cache=True, nogil=True)
def _count_kept_spans_range(k_lo, k_hi, layer_row_start, row_span_start, row_v, span_u0, span_u1, keep_row,
                            min_len_um, windowed, win, out_count, out_total):
    """:func:`count_kept_spans` of layers ``k_lo .. k_hi - 1``."""
    for k in range(k_lo, k_hi):
        c = 0
        t = 0
        for r in range(layer_row_start[k], layer_row_start[k + 1]):
            if not keep_row[r] or not _row_in(windowed, win, k, row_v[r]):
                continue
            for s in range(row_span_start[r], row_span_start[r + 1]):
                if not _span_in(windowed, win, k, span_u0[s], span_u1[s]):
                    continue
                t += 1
                if span_u1[s] - span_u0[s] >= min_len_um:
                    c += 1
        out_count[k] = c
        out_total[k] = t


def fill_span_segments(layer_row_start, row_span_start, row_v, span_u0, span_u1, keep_row, row_rev, cos_l, sin_l,
                       z_l, min_len_um, window, point_offset, x, y, z):
    """Write the kept spans of each layer as 2-point marks in part coordinates, in scan order.

    Rows are taken in increasing v; rows with ``row_rev`` set run backwards (spans in reverse
    order, end points swapped). Serpentine hatching sets it on every odd row of the global row
    grid, so a row's direction does not depend on which other rows are present (a block cut
    out of a part scans exactly as in the whole part).

    Parameters
    ----------
    row_rev : (R,) bool
        Rows written backwards.
    cos_l, sin_l : (L,) float64
        cos and sin of each layer's row angle; x = u cos - v sin, y = u sin + v cos.
    z_l : (L,) float64
        Height of each layer, µm.
    window : (4, L) float64 or None
        Only the spans :func:`count_kept_spans` counts in it.
    point_offset : (L,) int64
        Output point index of each layer's first segment start (twice the prefix sum of the
        counts when the layers' segments follow each other).
    x, y, z : float64, filled: the start and end point of a layer's i-th segment at
        ``point_offset + 2i`` and ``point_offset + 2i + 1``, µm
    """
    windowed = window is not None
    win = np.ascontiguousarray(window, dtype=np.float64) if windowed else np.zeros((4, 0))
    run_chunks(_fill_span_segments_range, len(layer_row_start) - 1, layer_row_start, row_span_start, row_v, span_u0,
               span_u1, keep_row, row_rev, cos_l, sin_l, z_l, float(min_len_um), windowed, win, point_offset, x, y, z)


@njit(cache=True, nogil=True)
def _fill_span_segments_range(k_lo, k_hi, layer_row_start, row_span_start, row_v, span_u0, span_u1, keep_row, row_rev,
                              cos_l, sin_l, z_l, min_len_um, windowed, win, point_offset, x, y, z):
    """:func:`fill_span_segments` of layers ``k_lo .. k_hi - 1``."""
    for k in range(k_lo, k_hi):
        o = point_offset[k]
        c = cos_l[k]
        sn = sin_l[k]
        zk = z_l[k]
        for r in range(layer_row_start[k], layer_row_start[k + 1]):
            v = row_v[r]
            if not keep_row[r] or not _row_in(windowed, win, k, v):
                continue
            a = row_span_start[r]
            b = row_span_start[r + 1]
            rev = row_rev[r]
            for i in range(b - a):
                s = b - 1 - i if rev else a + i
                ua = span_u0[s]
                ub = span_u1[s]
                if ub - ua < min_len_um or not _span_in(windowed, win, k, ua, ub):
                    continue
                if rev:
                    ua, ub = ub, ua
                x[o] = ua * c - v * sn
                y[o] = ua * sn + v * c
                z[o] = zk
                x[o + 1] = ub * c - v * sn
                y[o + 1] = ub * sn + v * c
                z[o + 1] = zk
                o += 2


# ----------------------------------------------------------------------------- subdivision
@njit(cache=True)
def count_subdivided(x, y, z, mark_start, point_distance_um, out_count):
    """Points per mark after splitting every step into pieces at most ``point_distance_um``.

    out_count : (M,) int64, filled with the new number of points of each mark.
    """
    m = len(mark_start) - 1
    for i in range(m):
        c = 1
        for p in range(mark_start[i], mark_start[i + 1] - 1):
            d = math.sqrt((x[p + 1] - x[p]) ** 2 + (y[p + 1] - y[p]) ** 2 + (z[p + 1] - z[p]) ** 2)
            n = int(math.ceil(d / point_distance_um))
            c += n if n > 1 else 1
        out_count[i] = c


@njit(cache=True, parallel=True)
def fill_subdivided(x, y, z, mark_start, point_distance_um, new_start, nx, ny, nz):
    """Write the subdivided points (see :func:`count_subdivided`); ``new_start`` is (M+1,)."""
    m = len(mark_start) - 1
    for i in prange(m):
        o = new_start[i]
        for p in range(mark_start[i], mark_start[i + 1] - 1):
            dx = x[p + 1] - x[p]
            dy = y[p + 1] - y[p]
            dz = z[p + 1] - z[p]
            d = math.sqrt(dx * dx + dy * dy + dz * dz)
            n = int(math.ceil(d / point_distance_um))
            if n < 1:
                n = 1
            for j in range(n):
                t = j / n
                nx[o] = x[p] + t * dx
                ny[o] = y[p] + t * dy
                nz[o] = z[p] + t * dz
                o += 1
        last = mark_start[i + 1] - 1
        nx[o] = x[last]
        ny[o] = y[last]
        nz[o] = z[last]


# ----------------------------------------------------------------------------- volume sampling
@njit(cache=True, parallel=True)
def sample_volume(vol, origin_um, voxel_um, x, y, z, out):
    """Trilinear interpolation of ``vol[z, y, x]`` at points, clamped to the edge voxels.

    Voxel (i, j, k) centre sits at ``origin_um + (k, j, i) * voxel_um`` (x, y, z order).

    Parameters
    ----------
    vol : (nz, ny, nx) float64
    origin_um, voxel_um : (3,) float64, x y z
    x, y, z : (N,) float64, µm
    out : (N,) float64, filled
    """
    nzv, nyv, nxv = vol.shape
    for p in prange(len(x)):
        fx = (x[p] - origin_um[0]) / voxel_um[0]
        fy = (y[p] - origin_um[1]) / voxel_um[1]
        fz = (z[p] - origin_um[2]) / voxel_um[2]
        fx = min(max(fx, 0.0), nxv - 1.0)
        fy = min(max(fy, 0.0), nyv - 1.0)
        fz = min(max(fz, 0.0), nzv - 1.0)
        ix = min(int(fx), max(nxv - 2, 0))
        iy = min(int(fy), max(nyv - 2, 0))
        iz = min(int(fz), max(nzv - 2, 0))
        tx = fx - ix
        ty = fy - iy
        tz = fz - iz
        ix1 = min(ix + 1, nxv - 1)
        iy1 = min(iy + 1, nyv - 1)
        iz1 = min(iz + 1, nzv - 1)
        c00 = vol[iz, iy, ix] * (1 - tx) + vol[iz, iy, ix1] * tx
        c01 = vol[iz, iy1, ix] * (1 - tx) + vol[iz, iy1, ix1] * tx
        c10 = vol[iz1, iy, ix] * (1 - tx) + vol[iz1, iy, ix1] * tx
        c11 = vol[iz1, iy1, ix] * (1 - tx) + vol[iz1, iy1, ix1] * tx
        c0 = c00 * (1 - ty) + c01 * ty
        c1 = c10 * (1 - ty) + c11 * ty
        out[p] = c0 * (1 - tz) + c1 * tz


# ----------------------------------------------------------------------------- gyroid
@njit(cache=True)
def _gyroid_excess(x, y, z, k, half_t):
    """Approximate distance to the gyroid surface minus the half sheet thickness (µm)."""
    a = k * x
    b = k * y
    c = k * z
    sa, ca = math.sin(a), math.cos(a)
    sb, cb = math.sin(b), math.cos(b)
    sc, cc = math.sin(c), math.cos(c)
    g = sa * cb + sb * cc + sc * ca
    gx = k * (ca * cb - sc * sa)
    gy = k * (-sa * sb + cb * cc)
    gz = k * (-sb * sc + cc * ca)
    gn = math.sqrt(gx * gx + gy * gy + gz * gz)
    if gn < 1e-12 * k:
        gn = 1e-12 * k
    return abs(g) / gn - half_t


@njit(cache=True)
def _gyroid_runs(x0, y0, x1, y1, z, k, half_t, step_um, ox, write, o):
    """Walk one segment; count (write=False) or write sub-intervals inside the sheet."""
    dx = x1 - x0
    dy = y1 - y0
    length = math.sqrt(dx * dx + dy * dy)
    n = int(math.ceil(length / step_um))
    if n < 1:
        n = 1
    count = 0
    prev_t = 0.0
    prev_f = _gyroid_excess(x0, y0, z, k, half_t)
    inside = prev_f <= 0.0
    start_t = 0.0
    for i in range(1, n + 1):
        t = i / n
        f = _gyroid_excess(x0 + t * dx, y0 + t * dy, z, k, half_t)
        now = f <= 0.0
        if now != inside:
            tc = prev_t + (t - prev_t) * prev_f / (prev_f - f) if prev_f != f else t
            if now:
                start_t = tc
            else:
                if write:
                    ox[4 * (o + count)] = x0 + start_t * dx
                    ox[4 * (o + count) + 1] = y0 + start_t * dy
                    ox[4 * (o + count) + 2] = x0 + tc * dx
                    ox[4 * (o + count) + 3] = y0 + tc * dy
                count += 1
            inside = now
        prev_t = t
        prev_f = f
    if inside:
        if write:
            ox[4 * (o + count)] = x0 + start_t * dx
            ox[4 * (o + count) + 1] = y0 + start_t * dy
            ox[4 * (o + count) + 2] = x1
            ox[4 * (o + count) + 3] = y1
        count += 1
    return count


@njit(cache=True, parallel=True)
def count_gyroid(x0, y0, x1, y1, z, cell_um, thickness_um, step_um, out_count):
    """Per segment, how many pieces lie inside the gyroid sheet of ``thickness_um``.

    The sheet is ``|g| / |grad g| <= thickness_um / 2`` with
    ``g = sin X cos Y + sin Y cos Z + sin Z cos X`` and ``X = 2 pi x / cell_um`` (first-order
    distance to the gyroid surface); segments are sampled every ``step_um``.
    """
    k = 2.0 * math.pi / cell_um
    dummy = np.zeros(0)
    for i in prange(len(x0)):
        out_count[i] = _gyroid_runs(x0[i], y0[i], x1[i], y1[i], z[i], k, 0.5 * thickness_um, step_um,
                                    dummy, False, 0)


@njit(cache=True, parallel=True)
def fill_gyroid(x0, y0, x1, y1, z, cell_um, thickness_um, step_um, offset, out_xyxy):
    """Write the pieces counted by :func:`count_gyroid`; ``out_xyxy`` is (4*P,) x0 y0 x1 y1."""
    k = 2.0 * math.pi / cell_um
    for i in prange(len(x0)):
        _gyroid_runs(x0[i], y0[i], x1[i], y1[i], z[i], k, 0.5 * thickness_um, step_um,
                     out_xyxy, True, offset[i])


# ----------------------------------------------------------------------------- span windows
def window_spans(layer_row_start, row_span_start, row_v, span_u0, span_u1, lo_v, hi_v, lo_u, hi_u, cut_spans):
    """The rows with ``lo_v[k] <= v <= hi_v[k]`` of each layer k and, with ``cut_spans``, only
    their spans with ``u1 >= lo_u[k]`` and ``u0 <= hi_u[k]``; rows left without spans are dropped.

    Parameters
    ----------
    layer_row_start, row_span_start : (L+1,), (R+1,) int64
    row_v, span_u0, span_u1 : (R,), (S,), (S,) float64, µm
    lo_v, hi_v, lo_u, hi_u : (L,) float64
        Per-layer limits (already widened by any tolerance), µm.
    cut_spans : bool

    Returns
    -------
    None when every span is kept, else ``(layer_row_start, row_v, row_span_start, span_u0, span_u1)``
    of the kept rows and spans (new arrays, same order).
    """
    args = (layer_row_start, row_span_start, row_v, span_u0, span_u1, lo_v, hi_v, lo_u, hi_u, bool(cut_spans))
    n_l = len(layer_row_start) - 1
    rows = np.zeros(n_l + 1, np.int64)
    spans = np.zeros(n_l + 1, np.int64)
    e = np.zeros(0)
    ei = np.zeros(0, np.int64)
    run_chunks(_window_range, n_l, *args, False, rows[1:], spans[1:], e, ei, e, e)
    np.cumsum(rows, out=rows)
    np.cumsum(spans, out=spans)
    n_rows, n_spans = int(rows[-1]), int(spans[-1])
    if n_spans == len(span_u0):
        return None
    o_rss = np.empty(n_rows + 1, np.int64)
    o_rss[0] = 0
    out = (rows, np.empty(n_rows), o_rss, np.empty(n_spans), np.empty(n_spans))
    run_chunks(_window_range, n_l, *args, True, rows, spans, *out[1:])
    return out


@njit(cache=True, nogil=True)
def _window_range(k_lo, k_hi, layer_row_start, row_span_start, row_v, span_u0, span_u1, lo_v, hi_v, lo_u, hi_u,
                  cut_spans, fill, row_at, span_at, o_rv, o_rss, o_u0, o_u1):
    """:func:`window_spans` of layers ``k_lo .. k_hi - 1``: count their kept rows and spans into
    ``row_at[k]`` and ``span_at[k]`` (``fill`` False), or write them from there (``fill`` True)."""
    for k in range(k_lo, k_hi):
        nr = row_at[k] if fill else 0
        ns = span_at[k] if fill else 0
        for r in range(layer_row_start[k], layer_row_start[k + 1]):
            v = row_v[r]
            if not (v >= lo_v[k] and v <= hi_v[k]):
                continue
            n0 = ns
            for s in range(row_span_start[r], row_span_start[r + 1]):
                if not cut_spans or (span_u1[s] >= lo_u[k] and span_u0[s] <= hi_u[k]):
                    if fill:
                        o_u0[ns] = span_u0[s]
                        o_u1[ns] = span_u1[s]
                    ns += 1
            if ns > n0:
                if fill:
                    o_rv[nr] = v
                    o_rss[nr + 1] = ns
                nr += 1
        if not fill:
            row_at[k] = nr
            span_at[k] = ns


def short_span_midpoints(layer_row_start, row_span_start, row_v, span_u0, span_u1, keep_row, cos_l, sin_l, z_l,
                         min_len_um, window=None):
    """Midpoints of the spans shorter than ``min_len_um`` on rows with ``keep_row`` set (the
    spans :func:`count_kept_spans` leaves out; ``window`` as there), in part coordinates
    (arguments as :func:`fill_span_segments`).

    Returns
    -------
    (x, y, z) : (K,) float64 each, µm
    """
    windowed = window is not None
    win = np.ascontiguousarray(window, dtype=np.float64) if windowed else np.zeros((4, 0))
    args = (layer_row_start, row_span_start, row_v, span_u0, span_u1, keep_row, cos_l, sin_l, z_l, float(min_len_um),
            windowed, win)
    e = np.zeros(0)
    n = _short_span_midpoints(*args, False, e, e, e)
    out = (np.empty(n), np.empty(n), np.empty(n))
    _short_span_midpoints(*args, True, *out)
    return out


@njit(cache=True, nogil=True)
def _short_span_midpoints(layer_row_start, row_span_start, row_v, span_u0, span_u1, keep_row, cos_l, sin_l, z_l,
                          min_len_um, windowed, win, fill, mx, my, mz):
    """:func:`short_span_midpoints`: count (``fill`` False) or write."""
    n = 0
    for k in range(len(layer_row_start) - 1):
        c = cos_l[k]
        sn = sin_l[k]
        for r in range(layer_row_start[k], layer_row_start[k + 1]):
            v = row_v[r]
            if not keep_row[r] or not _row_in(windowed, win, k, v):
                continue
            for s in range(row_span_start[r], row_span_start[r + 1]):
                ua = span_u0[s]
                ub = span_u1[s]
                if ub - ua < min_len_um and _span_in(windowed, win, k, ua, ub):
                    if fill:
                        x0 = ua * c - v * sn
                        y0 = ua * sn + v * c
                        x1 = ub * c - v * sn
                        y1 = ub * sn + v * c
                        mx[n] = (x0 + x1) / 2
                        my[n] = (y0 + y1) / 2
                        mz[n] = z_l[k]
                    n += 1
    return n


# ----------------------------------------------------------------------------- joining by layer
def layer_firsts(mark_layer, n_layers: int):
    """(L+1,) int64 first mark of every layer of marks sorted by layer (``first[l]:first[l+1]``
    are the marks of layer l), or None when ``mark_layer`` is not sorted."""
    out = np.empty(int(n_layers) + 1, np.int64)
    return out if _layer_firsts(mark_layer, out) else None


@njit(cache=True, nogil=True)
def _layer_firsts(mark_layer, out):
    """:func:`layer_firsts`; False when the layers are not sorted (or out of range)."""
    n_l = len(out) - 1
    m = len(mark_layer)
    prev = 0
    out[0] = 0
    for k in range(m):
        lay = mark_layer[k]
        if lay < prev or lay >= n_l:
            return False
        while prev < lay:
            prev += 1
            out[prev] = k
    while prev < n_l:
        prev += 1
        out[prev] = m
    return True


def copy_start_blocks(src_start, src_at, dst_at, length, dst_point_at, dst_start):
    """Mark starts of blocks of marks copied elsewhere (``crossings.gather_ranges``): mark
    ``src_at[b] + i`` becomes mark ``dst_at[b] + i`` whose points start at ``dst_point_at[b]``
    plus its offset in the block."""
    run_chunks(_copy_start_blocks_range, len(src_at), src_start, src_at, dst_at, length, dst_point_at, dst_start)


@njit(cache=True, nogil=True)
def _copy_start_blocks_range(b_lo, b_hi, src_start, src_at, dst_at, length, dst_point_at, dst_start):
    """:func:`copy_start_blocks` of blocks ``b_lo .. b_hi - 1``."""
    for b in range(b_lo, b_hi):
        s = src_at[b]
        d = dst_at[b]
        shift = dst_point_at[b] - src_start[s]
        for i in range(length[b]):
            dst_start[d + i] = src_start[s + i] + shift


def fill_pair_starts(mark_at, point_at, count, mark_start):
    """Mark starts of 2-point marks written in blocks: the i-th mark of block b is mark
    ``mark_at[b] + i`` and starts at point ``point_at[b] + 2 i``."""
    run_chunks(_fill_pair_starts_range, len(mark_at), mark_at, point_at, count, mark_start)


@njit(cache=True, nogil=True)
def _fill_pair_starts_range(b_lo, b_hi, mark_at, point_at, count, mark_start):
    """:func:`fill_pair_starts` of blocks ``b_lo .. b_hi - 1``."""
    for b in range(b_lo, b_hi):
        m = mark_at[b]
        p = point_at[b]
        for i in range(count[b]):
            mark_start[m + i] = p + 2 * i


def kind_power(mark_start, mark_kind, power_of_kind, out):
    """``out[p] = power_of_kind[mark_kind[m]]`` for every point p of every mark m (mW; every
    ``mark_kind`` must index ``power_of_kind``)."""
    run_chunks(_kind_power_range, len(mark_kind), mark_start, mark_kind, power_of_kind, out)


@njit(cache=True, nogil=True)
def _kind_power_range(m_lo, m_hi, mark_start, mark_kind, power_of_kind, out):
    """:func:`kind_power` of marks ``m_lo .. m_hi - 1``."""
    for m in range(m_lo, m_hi):
        p = power_of_kind[mark_kind[m]]
        for i in range(mark_start[m], mark_start[m + 1]):
            out[i] = p
