"""Slice a :class:`~bioslicer.mesh.Solid` into spans along scan rows, contours, or voxels.

Everything here drives the Numba kernels of :mod:`bioslicer.kernel` layer batch by layer
batch: Python validates, sizes and allocates; kernels do the per-segment work.

Sampling conventions (see :mod:`bioslicer.kernel.crossings` for the details): a point is
material when the winding number of the mesh around it is > 0 (``fill_rule='positive'``,
the default: overlapping closed shells unite, inward-facing shells subtract) or != 0
(``fill_rule='nonzero'``). Boundaries are half-open: a layer exactly at the bottom face of a
part is inside and one exactly at its top face is outside; the same holds for rows (v) and
along rows (u), so parts whose faces sit exactly on layer or row positions come out exact.
Each layer depends only on the mesh, its height and its angle: slicing any subset of layers
gives exactly the spans of the full run for those layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from .errors import BioslicerError
from .kernel import boolean as kb
from .kernel import contours as kc
from .kernel import crossings as kx
from .kernel import voxels as kv
from .progress import silent

_RULES = {"positive": 0, "nonzero": 1}
_BATCH_WORK = 4_000_000      # triangle-layer pairs per batch (bounds scratch and upper-bound arrays)
_BATCH_LAYERS = 512
_KEEP_BUCKETS = 16_000_000   # keep pass-1 layer buckets for pass 2 below this many triangle-layer pairs


# ============================================================================ layers and frames
def layer_heights(z_min_um, z_max_um, dz_um) -> np.ndarray:
    """Mid-layer sampling heights ``z_k = z_min + (k + 0.5) * dz`` for every k with z_k < z_max.

    Parameters
    ----------
    z_min_um, z_max_um : float
        Bottom and top of the part, µm.
    dz_um : float
        Slice distance, µm (> 0).

    Returns
    -------
    z : (L,) float64
        Layer heights, µm, ascending.
    """
    z0, z1, dz = float(z_min_um), float(z_max_um), float(dz_um)
    if not (math.isfinite(dz) and dz > 0):
        raise BioslicerError(f"slice distance must be a positive number of µm, got {dz_um!r}")
    if not (math.isfinite(z0) and math.isfinite(z1)):
        raise BioslicerError("layer range must be finite; check the mesh bounds")
    if z1 <= z0:
        return np.zeros(0)
    n = max(int(math.ceil((z1 - z0) / dz - 0.5)), 0)
    while n > 0 and z0 + (n - 1 + 0.5) * dz >= z1:
        n -= 1
    while z0 + (n + 0.5) * dz < z1:
        n += 1
    if n > 10_000_000:
        raise BioslicerError(f"{n} layers at dz = {dz:g} µm is too many; check --units and the slice distance")
    return z0 + (np.arange(n, dtype=np.float64) + 0.5) * dz


def frame_cos_sin(angle_deg) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of row-frame angles (degrees), exact for multiples of 90°."""
    a = np.asarray(angle_deg, dtype=np.float64)
    r = np.deg2rad(a)
    c = np.cos(r)
    s = np.sin(r)
    q = a / 90.0
    exact = q == np.round(q)
    qi = np.mod(np.round(q), 4).astype(np.int64)
    c = np.where(exact, np.array([1.0, 0.0, -1.0, 0.0])[qi], c)
    s = np.where(exact, np.array([0.0, 1.0, 0.0, -1.0])[qi], s)
    return c, s


def _as_solid_arrays(solid):
    """(vertices (n,3) float64 µm, faces (m,3) int32) from a Solid or a trimesh."""
    v = getattr(solid, "vertices_um", None)
    if v is None:
        v = solid.vertices
    f = solid.faces
    v = np.ascontiguousarray(v, dtype=np.float64).reshape(-1, 3)
    f = np.ascontiguousarray(f, dtype=np.int32).reshape(-1, 3)
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError("faces index outside the vertices")
    return v, f


def _check_row_params(row_spacing_um, row_offset_um):
    dy = float(row_spacing_um)
    off = float(row_offset_um)
    if not (math.isfinite(dy) and dy > 0):
        raise BioslicerError(f"row spacing (hatch distance) must be a positive number of µm, got {row_spacing_um!r}")
    if not math.isfinite(off):
        raise BioslicerError(f"row offset must be a finite number of µm, got {row_offset_um!r}")
    return dy, off


def _layer_angles(angle_deg, L):
    a = np.asarray(angle_deg, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(L, float(a))
    if a.shape != (L,):
        raise BioslicerError(f"angle_deg must be one angle or one per layer ({L}), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise BioslicerError("hatch angles must be finite numbers of degrees")
    return a


def _region_box(region_um):
    if region_um is None:
        return None
    r = np.asarray(region_um, dtype=np.float64)
    if r.shape not in ((2, 2), (2, 3)) or not np.all(np.isfinite(r)) or np.any(r[1, :2] <= r[0, :2]):
        raise BioslicerError("region must be ((xmin, ymin), (xmax, ymax)) in µm with min < max")
    return float(r[0, 0]), float(r[0, 1]), float(r[1, 0]), float(r[1, 1])


def _row_limits(cos_a, sin_a, off, dy, box):
    """Per layer: rows [jr0, jr1) and the largest u worth reading, for an optional region box."""
    L = len(cos_a)
    if box is None:
        return (np.full(L, -kx.BIG_ROW, np.int64), np.full(L, kx.BIG_ROW, np.int64), np.full(L, np.inf))
    x0, y0, x1, y1 = box
    cx = np.array([x0, x1, x1, x0])
    cy = np.array([y0, y0, y1, y1])
    u = cx[None, :] * cos_a[:, None] + cy[None, :] * sin_a[:, None]
    v = -cx[None, :] * sin_a[:, None] + cy[None, :] * cos_a[:, None]
    jr0 = np.array([kx.first_row_at_or_above(a, off, dy) for a in v.min(axis=1)], np.int64)
    jr1 = np.array([kx.first_row_at_or_above(b, off, dy) for b in v.max(axis=1)], np.int64)
    return jr0, jr1, u.max(axis=1)


def _row_window(cos_a, sin_a, off, dy, window_um):
    """Per layer: rows [jr0, jr1) crossing the xy box ``window_um`` (one row of slack each side)."""
    x0, y0, x1, y1 = _region_box(window_um)
    jr0, jr1, _ = _row_limits(cos_a, sin_a, off, dy, (x0, y0, x1, y1))
    return jr0 - 1, jr1 + 1


def _chunks(work: np.ndarray, n_target: int) -> np.ndarray:
    """Split layers 0..L into about n_target contiguous chunks of similar work."""
    L = len(work)
    if L == 0:
        return np.zeros(1, np.int64)
    n = max(1, min(L, n_target))
    cum = np.cumsum(work.astype(np.float64) + 1.0)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n) / n)
    b = np.unique(np.concatenate([[0], cuts, [L]])).astype(np.int64)
    return b


def _n_chunks() -> int:
    return 4 * numba.get_num_threads()


def _compact(base, counts, *arrays):
    """Gather per-layer runs written at ``base`` into contiguous arrays."""
    dst = np.zeros(len(counts), np.int64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=dst[1:])
    total = int(counts.sum())
    out = []
    for a in arrays:
        o = np.empty(total, a.dtype)
        kx.gather_ranges(a, base, counts, dst, o)
        out.append(o)
    return out


# ============================================================================ spans
@dataclass(eq=False)
class Spans:
    """Material along scan rows, run-length encoded, per layer.

    Row frame of layer k rotated by ``angle_deg[k]`` (θ): ``u = x cosθ + y sinθ``,
    ``v = -x sinθ + y cosθ``. Rows are lines of constant v on the global grid
    ``v = row_offset_um + j * row_spacing_um`` (integer j); spans are ``[u0, u1)`` intervals
    along the row, sorted, disjoint, non-empty. Only rows holding at least one span are stored,
    in ascending v within each layer.

    Attributes
    ----------
    layer_z_um : (L,) float64
    angle_deg : (L,) float64
    row_spacing_um, row_offset_um : float
    layer_row_start : (L+1,) int64, rows of layer k are ``layer_row_start[k]:layer_row_start[k+1]``
    row_v_um : (R,) float64
    row_span_start : (R+1,) int64, spans of row r are ``row_span_start[r]:row_span_start[r+1]``
    span_u0_um, span_u1_um : (S,) float64
    """

    layer_z_um: np.ndarray
    angle_deg: np.ndarray
    row_spacing_um: float
    row_offset_um: float
    layer_row_start: np.ndarray
    row_v_um: np.ndarray
    row_span_start: np.ndarray
    span_u0_um: np.ndarray
    span_u1_um: np.ndarray

    @property
    def n_layers(self) -> int:
        return int(len(self.layer_z_um))

    @property
    def n_rows(self) -> int:
        return int(len(self.row_v_um))

    @property
    def n_spans(self) -> int:
        return int(len(self.span_u0_um))

    def row_layer(self) -> np.ndarray:
        """(R,) int32 layer of each row."""
        return np.repeat(np.arange(self.n_layers, dtype=np.int32), np.diff(self.layer_row_start))

    def row_index(self) -> np.ndarray:
        """(R,) int64 global grid index j of each row (``v = offset + j * spacing``)."""
        return np.rint((self.row_v_um - self.row_offset_um) / self.row_spacing_um).astype(np.int64)

    def span_row(self) -> np.ndarray:
        """(S,) int64 row of each span."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.row_span_start))

    def span_layer(self) -> np.ndarray:
        """(S,) int32 layer of each span."""
        return self.row_layer()[self.span_row()]

    def span_row_v(self) -> np.ndarray:
        """(S,) float64 v of the row of each span, µm."""
        return self.row_v_um[self.span_row()]

    def span_xy(self):
        """Span ends in part coordinates: (x0, y0, x1, y1), each (S,) float64, µm."""
        c, s = frame_cos_sin(self.angle_deg)
        lay = self.span_layer()
        c, s = c[lay], s[lay]
        v = self.span_row_v()
        u0, u1 = self.span_u0_um, self.span_u1_um
        return u0 * c - v * s, u0 * s + v * c, u1 * c - v * s, u1 * s + v * c

    def span_z(self) -> np.ndarray:
        """(S,) float64 layer height of each span, µm."""
        return self.layer_z_um[self.span_layer()]

    def layers(self, k0: int, k1: int) -> "Spans":
        """The spans of layers k0:k1 (a contiguous range)."""
        r0, r1 = int(self.layer_row_start[k0]), int(self.layer_row_start[k1])
        s0, s1 = int(self.row_span_start[r0]), int(self.row_span_start[r1])
        return Spans(self.layer_z_um[k0:k1].copy(), self.angle_deg[k0:k1].copy(), self.row_spacing_um,
                     self.row_offset_um, self.layer_row_start[k0:k1 + 1] - r0, self.row_v_um[r0:r1].copy(),
                     self.row_span_start[r0:r1 + 1] - s0, self.span_u0_um[s0:s1].copy(),
                     self.span_u1_um[s0:s1].copy())

    def layer(self, k: int) -> "Spans":
        """The spans of layer k alone (a one-layer Spans)."""
        return self.layers(k, k + 1)

    def span_lengths_um(self) -> np.ndarray:
        return self.span_u1_um - self.span_u0_um

    def area_um2(self) -> np.ndarray:
        """(L,) material area of each layer: sum of span lengths x row spacing, µm²."""
        if self.n_spans == 0:
            return np.zeros(self.n_layers)
        per_row = np.add.reduceat(self.span_lengths_um(), self.row_span_start[:-1]) if self.n_rows else np.zeros(0)
        per_row = np.where(np.diff(self.row_span_start) > 0, per_row, 0.0)
        out = np.zeros(self.n_layers)
        np.add.at(out, self.row_layer(), per_row)
        return out * self.row_spacing_um

    def volume_um3(self, dz_um: float) -> float:
        """Sum of layer areas x dz, µm³ (the part volume for evenly spaced layers)."""
        return float(self.area_um2().sum() * dz_um)

    def total_length_um(self) -> float:
        """Sum of all span lengths, µm."""
        return float(self.span_lengths_um().sum())

    def same_as(self, other: "Spans") -> bool:
        """True when every array and grid parameter is identical (bit for bit)."""
        return (self.row_spacing_um == other.row_spacing_um and self.row_offset_um == other.row_offset_um
                and all(np.array_equal(getattr(self, n), getattr(other, n)) for n in _SPAN_ARRAYS))

    def digest(self) -> str:
        """SHA-256 over the arrays and grid parameters (for determinism checks)."""
        import hashlib

        h = hashlib.sha256()
        h.update(np.array([self.row_spacing_um, self.row_offset_um]).tobytes())
        for n in _SPAN_ARRAYS:
            h.update(np.ascontiguousarray(getattr(self, n)).tobytes())
        return h.hexdigest()

    @classmethod
    def concat(cls, parts: list["Spans"]) -> "Spans":
        """Join span sets layer after layer (same row grid)."""
        p0 = parts[0]
        if len(parts) == 1:
            return p0
        lrs = [np.zeros(1, np.int64)]
        rss = [np.zeros(1, np.int64)]
        r_off = s_off = 0
        for p in parts:
            lrs.append(p.layer_row_start[1:] + r_off)
            rss.append(p.row_span_start[1:] + s_off)
            r_off += p.n_rows
            s_off += p.n_spans
        cat = lambda n: np.concatenate([getattr(p, n) for p in parts])  # noqa: E731
        return cls(cat("layer_z_um"), cat("angle_deg"), p0.row_spacing_um, p0.row_offset_um, np.concatenate(lrs),
                   cat("row_v_um"), np.concatenate(rss), cat("span_u0_um"), cat("span_u1_um"))


_SPAN_ARRAYS = ("layer_z_um", "angle_deg", "layer_row_start", "row_v_um", "row_span_start", "span_u0_um",
                "span_u1_um")


def _empty_spans(z, ang, dy, off) -> Spans:
    return Spans(z, ang, dy, off, np.zeros(len(z) + 1, np.int64), np.zeros(0), np.zeros(1, np.int64),
                 np.zeros(0), np.zeros(0))


def _caps(ncross, jmin, jmax, has_region):
    """Upper bounds of the rows and spans each layer can write (from pass 1).

    A row with c crossings yields at most ceil(c / 2) spans (each span opens and closes at
    distinct crossings; a region may cut the last one open), so ``(crossings + rows) // 2``;
    without a region every row's count is even and ``crossings // 2`` is exact unless spans
    merge. Rows holding spans are at most the rows crossed and at most the spans.
    """
    rows = np.where(ncross > 0, jmax - jmin + 1, 0)
    scap = np.minimum(ncross, (ncross + rows) // 2) if has_region else ncross // 2
    rcap = np.minimum(rows, scap)
    return rcap, scap


def _bases(cap):
    base = np.zeros(len(cap), np.int64)
    if len(cap) > 1:
        np.cumsum(cap[:-1], out=base[1:])
    return base


def _finish(z, ang, dy, off, nrows, nspans, row_base, span_base, row_v, row_end, u0, u1) -> Spans:
    """Close the gaps between layers in place and wrap the arrays as Spans (trimmed when wasteful)."""
    lrs = np.empty(len(z) + 1, np.int64)
    R, S = kx.compact_layers(nrows, nspans, row_base, span_base, row_v, row_end, u0, u1, lrs)

    def trim(a, n):
        # keep a view when the slack is small; copy to give memory back otherwise
        return a[:n] if n >= 0.8 * len(a) else a[:n].copy()

    return Spans(z.copy(), ang.copy(), dy, off, lrs, trim(row_v, R), trim(row_end, R + 1), trim(u0, S), trim(u1, S))


def _layer_batches(work: np.ndarray):
    """Contiguous layer ranges of bounded work (for memory and progress)."""
    L = len(work)
    k = 0
    while k < L:
        cum = np.cumsum(work[k:k + _BATCH_LAYERS])
        n = int(np.searchsorted(cum, _BATCH_WORK, side="right"))
        n = max(1, min(n, _BATCH_LAYERS))
        yield k, min(L, k + n)
        k += n


def _triangle_layers(V, F, z):
    """Per-triangle z extent and the number of layers (of z, any order) that cut it."""
    if not len(F):
        return np.zeros(0), np.zeros(0)
    vz = np.ascontiguousarray(V[:, 2])
    a, b, c = vz[F[:, 0]], vz[F[:, 1]], vz[F[:, 2]]     # three gathers: no (F, 3) reduction over a short axis
    return np.minimum(np.minimum(a, b), c), np.maximum(np.maximum(a, b), c)


def slice_spans(solid, layer_z_um, row_spacing_um, angle_deg=0.0, row_offset_um=0.0, region_um=None,
                progress=silent, fill_rule: str | None = None, row_window_um=None) -> Spans:
    """Material spans along scan rows of every layer.

    Parameters
    ----------
    solid : Solid (or trimesh.Trimesh in µm)
        Closed, consistently oriented mesh.
    layer_z_um : (L,) float
        Layer heights, µm (any order; see :func:`layer_heights`).
    row_spacing_um : float
        Distance between scan rows (hatch distance), µm.
    angle_deg : float or (L,) float
        Row direction of each layer, degrees from +x (counter-clockwise).
    row_offset_um : float
        v of row 0 in the row frame, µm.
    region_um : ((xmin, ymin), (xmax, ymax)), optional
        Keep only material inside this half-open xy box (rows outside are skipped, spans
        clipped), µm.
    progress : callable(done, total, label)
        Called after each batch of layers.
    fill_rule : 'positive' | 'nonzero' (default: the solid's ``fill_rule``, else 'positive')
        Winding rule; see the module docstring.
    row_window_um : ((xmin, ymin), (xmax, ymax)), optional
        Compute only the rows crossing this xy box (with one row of slack), whole and unclipped:
        each row is exactly the row of the full slice (rows are independent), at a cost that
        follows the band of rows. Ignored when ``region_um`` is given.

    Returns
    -------
    Spans
    """
    if hasattr(solid, "slice_spans"):  # another geometry kind (a centerline Tree) slices itself
        return solid.slice_spans(layer_z_um, row_spacing_um, angle_deg, row_offset_um, region_um, progress,
                                 fill_rule, row_window_um)
    V, F = _as_solid_arrays(solid)
    z = np.ascontiguousarray(np.asarray(layer_z_um, dtype=np.float64).reshape(-1))
    if not np.all(np.isfinite(z)):
        raise BioslicerError("layer heights must be finite numbers of µm")
    dy, off = _check_row_params(row_spacing_um, row_offset_um)
    fill_rule = fill_rule or getattr(solid, "fill_rule", "positive")
    if fill_rule not in _RULES:
        raise BioslicerError(f"unknown fill rule {fill_rule!r}; use 'positive' or 'nonzero'")
    L = len(z)
    ang = _layer_angles(angle_deg, L)
    box = _region_box(region_um)
    if L == 0 or len(F) == 0:
        return _empty_spans(z, ang, dy, off)
    cos_a, sin_a = frame_cos_sin(ang)
    jr0, jr1, umax = _row_limits(cos_a, sin_a, off, dy, box)
    if row_window_um is not None and box is None:
        jr0, jr1 = _row_window(cos_a, sin_a, off, dy, row_window_um)
    has_region = box is not None
    bx = box if has_region else (0.0, 0.0, 0.0, 0.0)
    tz_min, tz_max = _triangle_layers(V, F, z)
    # work per layer (triangles cut) to size batches and balance chunks
    order = np.argsort(z, kind="stable")
    zs = z[order]
    diff = np.zeros(L + 1, np.int64)
    np.add.at(diff, np.searchsorted(zs, tz_min, side="left"), 1)
    np.add.at(diff, np.searchsorted(zs, tz_max, side="left"), -1)
    work = np.empty(L, np.int64)
    work[order] = np.cumsum(diff[:-1])
    rule = _RULES[fill_rule]
    batches = list(_layer_batches(work))
    keep_buckets = int(work.sum()) <= _KEEP_BUCKETS
    buckets = {}

    def bucket(k0, k1):
        if (k0, k1) in buckets:
            return buckets.pop((k0, k1))
        zb = z[k0:k1]
        ob = np.argsort(zb, kind="stable")
        pos = np.empty(len(zb), np.int64)
        pos[ob] = np.arange(len(zb))
        bstart, btri = kx.bucket_triangles(tz_min, tz_max, np.ascontiguousarray(zb[ob]))
        return pos, bstart, btri

    # pass 1: crossings and row range of every layer
    ncross = np.empty(L, np.int64)
    jmin = np.empty(L, np.int64)
    jmax = np.empty(L, np.int64)
    for k0, k1 in batches:
        pos, bstart, btri = b = bucket(k0, k1)
        if keep_buckets:
            buckets[(k0, k1)] = b
        ncross[k0:k1], jmin[k0:k1], jmax[k0:k1] = kx.mesh_count_pass(
            V, F, bstart, btri, pos, z[k0:k1], cos_a[k0:k1], sin_a[k0:k1], off, dy, jr0[k0:k1], jr1[k0:k1],
            umax[k0:k1], _chunks(work[k0:k1], _n_chunks()))
    # pass 2: every layer writes straight into the job's arrays at its upper-bound offsets
    rcap, scap = _caps(ncross, jmin, jmax, has_region)
    row_base, span_base = _bases(rcap), _bases(scap)
    row_v = np.empty(int(rcap.sum()))
    row_end = np.empty(int(rcap.sum()) + 1, np.int64)
    u0 = np.empty(int(scap.sum()))
    u1 = np.empty(int(scap.sum()))
    nrows = np.zeros(L, np.int64)
    nspans = np.zeros(L, np.int64)
    for k0, k1 in batches:
        pos, bstart, btri = bucket(k0, k1)
        ks = slice(k0, k1)
        kx.mesh_fill_pass(V, F, bstart, btri, pos, z[ks], cos_a[ks], sin_a[ks], off, dy, jr0[ks], jr1[ks], umax[ks],
                          _chunks(work[ks] + ncross[ks], _n_chunks()), ncross[ks], jmin[ks], jmax[ks], rule,
                          has_region, bx[0], bx[1], bx[2], bx[3], row_base[ks], span_base[ks], row_v, row_end, u0,
                          u1, nrows[ks], nspans[ks])
        progress(k1, L, "slicing")
    return _finish(z, ang, dy, off, nrows, nspans, row_base, span_base, row_v, row_end, u0, u1)


def _segments_spans(lstart, X0, Y0, X1, Y1, z, ang, dy, off, box, rule) -> Spans:
    L = len(z)
    cos_a, sin_a = frame_cos_sin(ang)
    jr0, jr1, umax = _row_limits(cos_a, sin_a, off, dy, box)
    has_region = box is not None
    bx = box if has_region else (0.0, 0.0, 0.0, 0.0)
    work = np.diff(lstart)
    chunks = _chunks(work, _n_chunks())
    ncross, jmin, jmax = kx.seg_count_pass(lstart, X0, Y0, X1, Y1, cos_a, sin_a, off, dy, jr0, jr1, umax, chunks)
    rcap, scap = _caps(ncross, jmin, jmax, has_region)
    row_base, span_base = _bases(rcap), _bases(scap)
    row_v = np.empty(int(rcap.sum()))
    row_end = np.empty(int(rcap.sum()) + 1, np.int64)
    u0 = np.empty(int(scap.sum()))
    u1 = np.empty(int(scap.sum()))
    nrows, nspans = np.zeros(L, np.int64), np.zeros(L, np.int64)
    kx.seg_fill_pass(lstart, X0, Y0, X1, Y1, cos_a, sin_a, off, dy, jr0, jr1, umax, _chunks(work + ncross, _n_chunks()),
                     ncross, jmin, jmax, rule, has_region, bx[0], bx[1], bx[2], bx[3], row_base, span_base, row_v,
                     row_end, u0, u1, nrows, nspans)
    return _finish(z, ang, dy, off, nrows, nspans, row_base, span_base, row_v, row_end, u0, u1)


def spans_from_contours(contours: "Contours", row_spacing_um, angle_deg=0.0, row_offset_um=0.0,
                        region_um=None, fill_rule: str = "positive") -> Spans:
    """The same row/span output as :func:`slice_spans`, from 2-D rings (e.g. offset contours).

    Parameters
    ----------
    contours : Contours
        Closed rings per layer; CCW rings add material, CW rings subtract (winding rule).
    row_spacing_um, angle_deg, row_offset_um, region_um, fill_rule
        As in :func:`slice_spans`.

    Returns
    -------
    Spans
    """
    dy, off = _check_row_params(row_spacing_um, row_offset_um)
    if fill_rule not in _RULES:
        raise BioslicerError(f"unknown fill rule {fill_rule!r}; use 'positive' or 'nonzero'")
    z = np.ascontiguousarray(contours.layer_z_um, dtype=np.float64)
    L = len(z)
    ang = _layer_angles(angle_deg, L)
    box = _region_box(region_um)
    xy = np.ascontiguousarray(contours.xy_um, dtype=np.float64).reshape(-1, 2)
    rps = contours.ring_point_start
    P = len(xy)
    nxt = np.arange(1, P + 1, dtype=np.int64)
    if len(rps) > 1:
        nxt[rps[1:] - 1] = rps[:-1]
    # segments of layer k: points of its rings, in order
    lstart = rps[contours.layer_ring_start].astype(np.int64)
    X0, Y0 = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    X1, Y1 = np.ascontiguousarray(xy[nxt, 0]) if P else X0, np.ascontiguousarray(xy[nxt, 1]) if P else Y0
    return _segments_spans(lstart, X0, Y0, X1, Y1, z, ang, dy, off, box, _RULES[fill_rule])


def span_boolean(a: Spans, b: Spans, op: str) -> Spans:
    """Union, intersection or difference (a minus b) of two span sets on the same grid.

    Parameters
    ----------
    a, b : Spans
        Same layers (heights and angles), row spacing and row offset.
    op : 'union' | 'intersection' | 'difference'

    Returns
    -------
    Spans
    """
    ops = {"union": kb.OP_UNION, "intersection": kb.OP_INTERSECTION, "difference": kb.OP_DIFFERENCE}
    if op not in ops:
        raise BioslicerError(f"unknown span operation {op!r}; use union, intersection or difference")
    if (a.row_spacing_um != b.row_spacing_um or a.row_offset_um != b.row_offset_um
            or not np.array_equal(a.layer_z_um, b.layer_z_um) or not np.array_equal(a.angle_deg, b.angle_deg)):
        raise BioslicerError("span sets are on different grids (layers, angles, row spacing or offset); "
                             "slice both with the same parameters")
    L = a.n_layers
    ra, rb = np.diff(a.layer_row_start), np.diff(b.layer_row_start)
    # spans per layer (reduceat would index past the end when the last layers have no rows)
    sa = np.diff(np.asarray(a.row_span_start)[a.layer_row_start])
    sb = np.diff(np.asarray(b.row_span_start)[b.layer_row_start])
    rcap = ra + rb
    scap = sa + sb
    row_base = np.zeros(L, np.int64)
    span_base = np.zeros(L, np.int64)
    if L > 1:
        np.cumsum(rcap[:-1], out=row_base[1:])
        np.cumsum(scap[:-1], out=span_base[1:])
    row_j = np.empty(int(rcap.sum()), np.int64)
    row_n = np.empty(int(rcap.sum()), np.int64)
    u0 = np.empty(int(scap.sum()))
    u1 = np.empty(int(scap.sum()))
    nrows, nspans = np.zeros(L, np.int64), np.zeros(L, np.int64)
    kb.span_boolean_kernel(ops[op], a.layer_row_start, a.row_index(), a.row_span_start, a.span_u0_um, a.span_u1_um,
                           b.layer_row_start, b.row_index(), b.row_span_start, b.span_u0_um, b.span_u1_um,
                           row_base, span_base, row_j, row_n, u0, u1, nrows, nspans)
    (rj,) = _compact(row_base, nrows, row_j)
    (rn,) = _compact(row_base, nrows, row_n)
    U0, U1 = _compact(span_base, nspans, u0, u1)
    lrs = np.zeros(L + 1, np.int64)
    np.cumsum(nrows, out=lrs[1:])
    rss = np.zeros(len(rn) + 1, np.int64)
    np.cumsum(rn, out=rss[1:])
    rv = a.row_offset_um + rj.astype(np.float64) * a.row_spacing_um
    return Spans(a.layer_z_um.copy(), a.angle_deg.copy(), a.row_spacing_um, a.row_offset_um, lrs, rv, rss, U0, U1)


# ============================================================================ contours
@dataclass(eq=False)
class Contours:
    """Closed rings per layer; outer rings CCW, holes CW; rings are not repeated-closed (last != first).

    Attributes
    ----------
    layer_z_um : (L,) float64
    layer_ring_start : (L+1,) int64 into rings
    ring_point_start : (Q+1,) int64 into xy_um
    xy_um : (P, 2) float64, µm
    """

    layer_z_um: np.ndarray
    layer_ring_start: np.ndarray
    ring_point_start: np.ndarray
    xy_um: np.ndarray

    @property
    def n_layers(self) -> int:
        return int(len(self.layer_z_um))

    @property
    def n_rings(self) -> int:
        return int(len(self.ring_point_start) - 1)

    def rings(self, k: int) -> list[np.ndarray]:
        """The rings of layer k, each an (n, 2) float64 array of µm."""
        r0, r1 = self.layer_ring_start[k], self.layer_ring_start[k + 1]
        return [self.xy_um[self.ring_point_start[r]:self.ring_point_start[r + 1]] for r in range(r0, r1)]

    def polygons(self, k: int):
        """Layer k as a shapely (Multi)Polygon: each CW ring becomes a hole of the smallest CCW ring around it."""
        import shapely
        from shapely.geometry import MultiPolygon, Polygon

        rings = self.rings(k)
        if not rings:
            return MultiPolygon()
        areas = np.array([_ring_area(r) for r in rings])
        outers = [i for i in range(len(rings)) if areas[i] > 0]
        holes = [i for i in range(len(rings)) if areas[i] < 0]
        outer_polys = [Polygon(rings[i]) for i in outers]
        hole_of: dict[int, list] = {i: [] for i in outers}
        for h in holes:
            best, best_area = None, np.inf
            # a hole lies inside its shell: test the midpoint of its first edge
            q = (rings[h][0] + rings[h][1]) / 2
            for i, poly in zip(outers, outer_polys):
                if areas[i] < best_area and shapely.contains_xy(poly, q[0], q[1]):
                    best, best_area = i, areas[i]
            if best is not None:
                hole_of[best].append(rings[h])
        polys = [Polygon(rings[i], hole_of[i]) for i in outers]
        return polys[0] if len(polys) == 1 else MultiPolygon(polys)

    @classmethod
    def from_polygons(cls, geoms_per_layer, layer_z_um) -> "Contours":
        """Rings of shapely (Multi)Polygons per layer (exteriors made CCW, interiors CW)."""
        z = np.asarray(layer_z_um, dtype=np.float64).reshape(-1)
        geoms = list(geoms_per_layer)
        if len(z) != len(geoms):
            raise BioslicerError(f"{len(geoms)} layers of polygons but {len(z)} layer heights")
        return _contours_from_layer_rings([_geometry_rings(g) for g in geoms], z)

    def area_um2(self) -> np.ndarray:
        """(L,) signed area per layer (CCW positive), µm²."""
        x, y = self.xy_um[:, 0], self.xy_um[:, 1]
        P = len(x)
        nxt = np.arange(1, P + 1)
        if self.n_rings:
            nxt[self.ring_point_start[1:] - 1] = self.ring_point_start[:-1]
        cross = x * y[nxt % max(P, 1)] - x[nxt % max(P, 1)] * y if P else np.zeros(0)
        ring_area = np.add.reduceat(cross, self.ring_point_start[:-1]) / 2 if self.n_rings else np.zeros(0)
        out = np.zeros(self.n_layers)
        if self.n_rings:
            np.add.at(out, np.repeat(np.arange(self.n_layers), np.diff(self.layer_ring_start)), ring_area)
        return out


def _ring_area(r: np.ndarray) -> float:
    x, y = r[:, 0], r[:, 1]
    # np.roll(v, -1) without np.roll's generic machinery (a few µs per call, 2 calls per ring)
    return float(0.5 * (np.dot(x, np.concatenate((y[1:], y[:1]))) - np.dot(np.concatenate((x[1:], x[:1])), y)))


def _geometry_rings(g) -> list[np.ndarray]:
    """Rings of a shapely (Multi)Polygon: per polygon its exterior (CCW) then its interiors (CW)."""
    from shapely.geometry.polygon import orient

    polys = [] if g is None or g.is_empty else list(getattr(g, "geoms", [g]))
    out = []
    for p in polys:
        if p.geom_type != "Polygon" or p.is_empty:
            continue
        p = orient(p, sign=1.0)
        for ring in [p.exterior, *p.interiors]:
            c = np.asarray(ring.coords, dtype=np.float64)[:-1, :2]
            if len(c) >= 3:
                out.append(c)
    return out


def _contours_from_layer_rings(rings_per_layer: list, z: np.ndarray) -> Contours:
    """Contours from a list (per layer) of lists of (n, 2) rings."""
    flat = [r for rings in rings_per_layer for r in rings]
    lrs = np.zeros(len(rings_per_layer) + 1, np.int64)
    np.cumsum(np.array([len(rings) for rings in rings_per_layer], np.int64), out=lrs[1:])
    rps = np.zeros(len(flat) + 1, np.int64)
    np.cumsum(np.array([len(r) for r in flat], np.int64), out=rps[1:])
    xy = np.concatenate(flat) if flat else np.zeros((0, 2))
    return Contours(z, lrs, rps, xy)


def _edge_table(F: np.ndarray):
    """Unique undirected edges: (m, 3) int64 edge id of edge i (vertex i -> i+1) of each face."""
    e = np.stack([F, np.roll(F, -1, axis=1)], axis=2).reshape(-1, 2).astype(np.int64)
    e.sort(axis=1)
    key = e[:, 0] * (int(F.max()) + 1 if len(F) else 1) + e[:, 1]
    uniq, inv = np.unique(key, return_inverse=True)
    return np.ascontiguousarray(inv.reshape(-1, 3).astype(np.int64)), len(uniq)


def _resolve_layer(rings: list[np.ndarray], rule: int):
    """Rings of one layer -> shapely geometry of the material (winding rule), CCW outers, CW holes."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    if not rings:
        return MultiPolygon()
    areas = [_ring_area(r) for r in rings]
    if len(rings) == 1:
        if (areas[0] > 0) or (rule == 1 and areas[0] != 0):
            return shapely.orient_polygons(Polygon(rings[0]))
        return MultiPolygon()
    lines = [shapely.linestrings(np.vstack([r, r[:1]])) for r in rings]
    noded = shapely.unary_union(lines)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    if len(faces) == 0:
        return MultiPolygon()
    pts = shapely.point_on_surface(faces)
    px, py = shapely.get_x(pts), shapely.get_y(pts)
    w = np.zeros(len(faces), np.int64)
    for r, a in zip(rings, areas):
        if a == 0:
            continue
        inside = shapely.contains_xy(Polygon(r), px, py)
        w += np.where(inside, 1 if a > 0 else -1, 0)
    keep = faces[(w > 0) if rule == 0 else (w != 0)]
    if len(keep) == 0:
        return MultiPolygon()
    return shapely.orient_polygons(shapely.unary_union(keep))


def slice_contours(solid, layer_z_um, progress=silent, fill_rule: str | None = None, resolve: bool = True) -> Contours:
    """Closed contour rings of each layer, chained from triangle/plane intersections by mesh edge.

    Parameters
    ----------
    solid : Solid (or trimesh.Trimesh in µm)
    layer_z_um : (L,) float, layer heights, µm.
    progress : callable(done, total, label)
    fill_rule : 'positive' | 'nonzero'; how overlapping rings combine when ``resolve``.
    resolve : bool
        True (default): overlapping rings of overlapping shells are merged into the material
        outline with shapely (outer rings CCW, holes CW, no overlaps). False: the raw rings as
        cut from the mesh (their orientation follows the triangles).

    Returns
    -------
    Contours
    """
    if hasattr(solid, "slice_contours"):  # another geometry kind (a centerline Tree)
        return solid.slice_contours(layer_z_um, progress, fill_rule, resolve)
    V, F = _as_solid_arrays(solid)
    z = np.ascontiguousarray(np.asarray(layer_z_um, dtype=np.float64).reshape(-1))
    if not np.all(np.isfinite(z)):
        raise BioslicerError("layer heights must be finite numbers of µm")
    fill_rule = fill_rule or getattr(solid, "fill_rule", "positive")
    if fill_rule not in _RULES:
        raise BioslicerError(f"unknown fill rule {fill_rule!r}; use 'positive' or 'nonzero'")
    L = len(z)
    if L == 0 or len(F) == 0:
        return Contours(z, np.zeros(L + 1, np.int64), np.zeros(1, np.int64), np.zeros((0, 2)))
    fe, n_edges = _edge_table(F)
    tz_min, tz_max = _triangle_layers(V, F, z)
    order = np.argsort(z, kind="stable")
    zs = z[order]
    diff = np.zeros(L + 1, np.int64)
    np.add.at(diff, np.searchsorted(zs, tz_min, side="left"), 1)
    np.add.at(diff, np.searchsorted(zs, tz_max, side="left"), -1)
    work = np.empty(L, np.int64)
    work[order] = np.cumsum(diff[:-1])
    ring_lens, xys, nr_all = [], [], []
    for k0, k1 in _layer_batches(work):
        zb = np.ascontiguousarray(z[k0:k1])
        ob = np.argsort(zb, kind="stable")
        pos = np.empty(len(zb), np.int64)
        pos[ob] = np.arange(len(zb))
        bstart, btri = kx.bucket_triangles(tz_min, tz_max, np.ascontiguousarray(zb[ob]))
        cap = work[k0:k1]
        base = np.zeros(len(zb), np.int64)
        np.cumsum(cap[:-1], out=base[1:])
        tot = int(cap.sum())
        ring_len = np.empty(tot, np.int64)
        xy = np.empty((tot, 2))
        nrings = np.zeros(len(zb), np.int64)
        npts = np.zeros(len(zb), np.int64)
        kc.chain_rings(V, F, fe, n_edges, bstart, btri, pos, zb, _chunks(cap, _n_chunks()), base, ring_len, xy,
                       nrings, npts)
        (rl,) = _compact(base, nrings, ring_len)
        px, py = _compact(base, npts, np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]))
        ring_lens.append(rl)
        xys.append(np.column_stack([px, py]))
        nr_all.append(nrings)
        progress(k1, L, "contours")
    rl = np.concatenate(ring_lens)
    nr = np.concatenate(nr_all)
    lrs = np.zeros(L + 1, np.int64)
    np.cumsum(nr, out=lrs[1:])
    rps = np.zeros(len(rl) + 1, np.int64)
    np.cumsum(rl, out=rps[1:])
    raw = Contours(z, lrs, rps, np.concatenate(xys))
    if not resolve:
        return raw
    rule = _RULES[fill_rule]
    # common case: rings already simple, disjoint and consistently nested -> no shapely
    clean = kc.clean_layers(raw.layer_ring_start, raw.ring_point_start, raw.xy_um,
                            _chunks(np.diff(raw.layer_ring_start) + 1, _n_chunks()))
    nr = np.diff(raw.layer_ring_start)
    for k in np.flatnonzero(nr == 1):  # the historical single-ring test (exact same area sum)
        clean[k] = _ring_area(raw.xy_um[raw.ring_point_start[raw.layer_ring_start[k]]:
                                        raw.ring_point_start[raw.layer_ring_start[k] + 1]]) > 0
    if clean.all():
        return raw
    per_layer = []
    for k in range(L):
        per_layer.append(raw.rings(k) if clean[k] else _geometry_rings(_resolve_layer(raw.rings(k), rule)))
    return _contours_from_layer_rings(per_layer, z)


# ============================================================================ voxels
@dataclass(eq=False)
class VoxelGrid:
    """Occupancy sampled at voxel centres.

    Attributes
    ----------
    origin_um : (3,) float64
        Corner of voxel [0, 0, 0] (x, y, z), µm; voxel (i, j, k) has its centre at
        ``origin_um + (i + 0.5, j + 0.5, k + 0.5) * voxel_um``.
    voxel_um : (3,) float64
        (dx, dy, dz), µm.
    occupancy : (nz, ny, nx) bool, or (nz, ny, ceil(nx/8)) uint8 when ``packed`` (numpy.packbits
        along x, MSB first).
    shape_zyx : (3,) int, (nz, ny, nx).
    packed : bool
    """

    origin_um: np.ndarray
    voxel_um: np.ndarray
    occupancy: np.ndarray
    shape_zyx: tuple
    packed: bool = False

    def dense(self) -> np.ndarray:
        """(nz, ny, nx) bool occupancy (unpacks a packed grid)."""
        if not self.packed:
            return self.occupancy
        return np.unpackbits(self.occupancy, axis=-1, count=self.shape_zyx[2]).astype(bool)

    def count(self) -> int:
        """Number of occupied voxels."""
        if self.packed:
            return int(np.unpackbits(self.occupancy, axis=-1, count=self.shape_zyx[2]).sum())
        return int(np.count_nonzero(self.occupancy))

    def volume_um3(self) -> float:
        return self.count() * float(np.prod(self.voxel_um))


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def voxel_grid_bytes(shape_zyx, packed: bool) -> int:
    nz, ny, nx = (int(a) for a in shape_zyx)
    return nz * ny * ((nx + 7) // 8 if packed else nx)


def voxelize(solid, voxel_xy_um, voxel_z_um, region_um=None, max_bytes=2**30, packed=False,
             fill_rule: str | None = None, progress=silent) -> VoxelGrid:
    """Occupancy of the solid on a grid of anisotropic voxels (dx = dy = voxel_xy_um, dz).

    Parameters
    ----------
    solid : Solid (or trimesh.Trimesh in µm)
    voxel_xy_um, voxel_z_um : float
        Lateral and axial voxel size, µm.
    region_um : ((xmin, ymin), (xmax, ymax)) or ((xmin, ymin, zmin), (xmax, ymax, zmax)), optional
        Box to voxelize, µm (default: the solid's bounds; z defaults to the solid's z range).
        The grid starts at the box minimum and covers it with whole voxels.
    max_bytes : int
        Refuse (BioslicerError) before allocating a grid larger than this.
    packed : bool
        Store 8 voxels per byte along x.

    Returns
    -------
    VoxelGrid
    """
    if hasattr(solid, "slice_spans"):  # another geometry kind (a centerline Tree) slices itself
        geom, (lo, hi) = solid, np.asarray(solid.bounds_um, dtype=np.float64)
    else:
        V, F = _as_solid_arrays(solid)
        geom = _Arrays(V, F)
        lo, hi = (V.min(axis=0), V.max(axis=0)) if len(V) else (np.zeros(3), np.zeros(3))
    dx = float(voxel_xy_um)
    dz = float(voxel_z_um)
    if not (math.isfinite(dx) and dx > 0 and math.isfinite(dz) and dz > 0):
        raise BioslicerError(f"voxel sizes must be positive numbers of µm, got {voxel_xy_um!r} x {voxel_z_um!r}")
    if region_um is not None:
        r = np.asarray(region_um, dtype=np.float64)
        if r.shape not in ((2, 2), (2, 3)) or not np.all(np.isfinite(r)) or np.any(r[1] <= r[0]):
            raise BioslicerError("region must be ((xmin, ymin[, zmin]), (xmax, ymax[, zmax])) in µm with min < max")
        lo = lo.copy()
        hi = hi.copy()
        lo[: r.shape[1]] = r[0]
        hi[: r.shape[1]] = r[1]
    size = hi - lo
    vox = np.array([dx, dx, dz])
    n = np.maximum(np.ceil(size / vox - 1e-9), 0).astype(np.int64)
    nx, ny, nz = (int(a) for a in n)
    need = voxel_grid_bytes((nz, ny, nx), packed)
    if need > max_bytes:
        raise BioslicerError(
            f"voxel grid {nx} x {ny} x {nz} needs {_gb(need)} ({'bit-packed' if packed else 'bool'}), "
            f"over the limit of {_gb(max_bytes)}; raise max_bytes (CLI --max-gb), use a region or "
            f"{'larger voxels' if packed else 'packed=True'}")
    shape = (nz, ny, nx)
    grid = np.zeros((nz, ny, (nx + 7) // 8) if packed else shape, np.uint8 if packed else np.bool_)
    if nx == 0 or ny == 0 or nz == 0:
        return VoxelGrid(lo.copy(), vox, grid, shape, packed)
    z = lo[2] + (np.arange(nz) + 0.5) * dz
    off = lo[1] + 0.5 * dx
    box = ((lo[0], lo[1]), (lo[0] + nx * dx, lo[1] + ny * dx))
    sp = slice_spans(geom, z, dx, 0.0, off, region_um=box, progress=progress, fill_rule=fill_rule)
    iy = np.rint((sp.row_v_um - off) / dx).astype(np.int64)
    keep_ok = (iy >= 0) & (iy < ny)
    if not np.all(keep_ok):  # rows are clipped to the box, so this is a bug
        raise AssertionError("row outside the voxel grid")
    fill = kv.fill_voxels_packed if packed else kv.fill_voxels_bool
    fill(sp.layer_row_start, iy, sp.row_span_start, sp.span_u0_um, sp.span_u1_um, float(lo[0]), dx, nx, grid)
    return VoxelGrid(lo.copy(), vox, grid, shape, packed)


class _Arrays:
    """Minimal solid-like holder of vertex and face arrays."""

    def __init__(self, vertices_um, faces):
        self.vertices_um = vertices_um
        self.faces = faces
