"""Shared pieces of the scan strategies: the region to print, spans -> marks, contour rings.

A :class:`Region` is what a strategy fills: the part itself, or (mold mode) a block minus the
part. It answers two questions per set of layers: the spans along scan rows (Numba kernel via
``bioslicer.slicing``) and the 2-D polygons (shapely, per layer, for contours and insets).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import shapely

from ..errors import BioslicerError
from ..kernel import crossings as _kx
from ..kernel import marks as _k
from ..toolpath import MARK_FIELDS, Kind, Toolpath


class Region:
    """The volume a strategy fills: ``solid``, or with ``block_lo_um``/``block_hi_um`` the
    block minus the solid (channels / mold mode).

    Attributes
    ----------
    solid : Solid
    block_lo_um, block_hi_um : (3,) float64 or None
        Corners of the block in mold mode, µm.
    window_um : (2, 2) float64 or None
        ((xmin, ymin), (xmax, ymax)): only scan rows crossing this box are produced, whole
        (not cut at the box), and :meth:`final` drops spans that miss it. Used to plan one
        stitching block of a part: every mark that reaches the box is exactly the mark of the
        whole part, so the block stitched from it equals the block of the whole part.
    owner : callable or None
        ``owner(x_um, y_um, z_um) -> bool array``: the points this region's block owns (its
        cell, which tiles the plane with its neighbours). Dropped short segments are counted
        only where the owner holds their midpoint, so block counts add up to the part's.
    """

    def __init__(self, solid, block_lo_um=None, block_hi_um=None, window_um=None, owner=None) -> None:
        self.solid = solid
        self.block_lo_um = None if block_lo_um is None else np.asarray(block_lo_um, dtype=np.float64)
        self.block_hi_um = None if block_hi_um is None else np.asarray(block_hi_um, dtype=np.float64)
        self.window_um = None if window_um is None else np.asarray(window_um, dtype=np.float64).reshape(2, 2)
        self.owner = owner
        self._block_solid = None
        self._poly_cache: dict = {}

    @property
    def is_mold(self) -> bool:
        return self.block_lo_um is not None

    @property
    def bounds_um(self) -> np.ndarray:
        """(2, 3) min / max of what is printed, µm."""
        if self.is_mold:
            return np.array([self.block_lo_um, self.block_hi_um])
        return solid_bounds(self.solid)

    def _block(self):
        if self._block_solid is None:
            import trimesh

            ext = self.block_hi_um - self.block_lo_um
            box = trimesh.creation.box(extents=ext)
            box.apply_translation((self.block_lo_um + self.block_hi_um) / 2)
            self._block_solid = box  # slicing takes a trimesh in µm as well as a Solid
        return self._block_solid

    def spans(self, layer_z_um, row_spacing_um, angle_deg, row_offset_um=0.0):
        """Spans of the region on the row grid (see ``slicing.Spans``)."""
        from ..slicing import slice_spans

        w = self.window_um
        sp = window_rows(slice_spans(self.solid, layer_z_um, row_spacing_um, angle_deg=angle_deg,
                                     row_offset_um=row_offset_um, row_window_um=w), w)
        if not self.is_mold:
            return sp
        blk = window_rows(slice_spans(self._block(), layer_z_um, row_spacing_um, angle_deg=angle_deg,
                                      row_offset_um=row_offset_um, row_window_um=w), w)
        return span_boolean(blk, sp, "difference")

    def final(self, spans):
        """Spans ready to become marks: with a window, only those that reach it."""
        return window_rows(spans, self.window_um, cut_spans=True)

    def final_spans(self, layer_z_um, inset_um, row_spacing_um, angle_deg, row_offset_um=0.0, cut: bool = True):
        """``final(inset_spans(...))``: the spans that become marks.

        Without inset on a part (not a mold, plain :meth:`spans`) the sliced rows are windowed
        once: :meth:`final` keeps exactly the rows :meth:`spans` keeps, and of them the spans
        that reach the window, so the first windowing is not needed. With ``cut`` False they are
        not windowed at all: give ``window_um=region.window_um`` to :func:`spans_to_toolpath`,
        which then uses exactly the spans :meth:`final` keeps."""
        if inset_um <= 0 and not self.is_mold and type(self).spans is Region.spans:
            from ..slicing import slice_spans

            sp = slice_spans(self.solid, layer_z_um, row_spacing_um, angle_deg=angle_deg, row_offset_um=row_offset_um,
                             row_window_um=self.window_um)
            return self.final(sp) if cut else sp
        return self.final(self.inset_spans(layer_z_um, inset_um, row_spacing_um, angle_deg, row_offset_um))

    def polygons(self, layer_z_um) -> list:
        """Shapely (Multi)Polygon of the region per layer (cached by the layer heights)."""
        from ..slicing import slice_contours

        key = np.asarray(layer_z_um, dtype=np.float64).tobytes()
        if key in self._poly_cache:
            return self._poly_cache[key]
        con = slice_contours(self.solid, layer_z_um)
        polys = [con.polygons(k) for k in range(con.n_layers)]
        if self.is_mold:
            lo, hi = self.block_lo_um, self.block_hi_um
            box = shapely.box(lo[0], lo[1], hi[0], hi[1])
            z = np.asarray(layer_z_um)
            inside = (z >= lo[2]) & (z < hi[2])
            polys = [shapely.difference(box, p) if ok else shapely.Polygon() for p, ok in zip(polys, inside)]
        self._poly_cache = {key: polys}
        return polys

    def inset_spans(self, layer_z_um, inset_um, row_spacing_um, angle_deg, row_offset_um=0.0):
        """Spans of the region shrunk by ``inset_um`` (0: straight from the mesh, fastest)."""
        if inset_um <= 0:
            return self.spans(layer_z_um, row_spacing_um, angle_deg, row_offset_um)
        from ..slicing import Contours, spans_from_contours

        polys = inset_polygons(self.polygons(layer_z_um), inset_um)
        con = Contours.from_polygons(polys, np.asarray(layer_z_um, dtype=np.float64))
        return window_rows(spans_from_contours(con, row_spacing_um, angle_deg=angle_deg, row_offset_um=row_offset_um),
                           self.window_um)


def window_rows(spans, window_um, cut_spans: bool = False, tol_um: float = 1e-6):
    """Keep the rows of ``spans`` that cross the box ``window_um`` (None: all rows).

    Rows are kept whole: span booleans on them give, inside the box, exactly what they give on
    the whole part. With ``cut_spans`` also drop spans whose [u0, u1) misses the box (do this
    only on final spans, after every boolean). Nothing is clipped: kept spans are unchanged.

    Parameters
    ----------
    spans : slicing.Spans
    window_um : (2, 2) float or None
        ((xmin, ymin), (xmax, ymax)), µm.

    Returns
    -------
    slicing.Spans
    """
    if window_um is None or spans.n_spans == 0:
        return spans
    from ..slicing import Spans

    lim = window_limits(spans.angle_deg, window_um, tol_um)
    f8 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    i8 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
    kept = _k.window_spans(i8(spans.layer_row_start), i8(spans.row_span_start), f8(spans.row_v_um),
                           f8(spans.span_u0_um), f8(spans.span_u1_um), *lim, cut_spans)
    if kept is None:
        return spans
    lrs, rv, rss, u0, u1 = kept
    return Spans(spans.layer_z_um, spans.angle_deg, spans.row_spacing_um, spans.row_offset_um, lrs, rv, rss, u0, u1)


def window_limits(angle_deg, window_um, tol_um: float = 1e-6) -> np.ndarray:
    """(4, L) per layer ``lo_v, hi_v, lo_u, hi_u``: the row-frame extent of the box ``window_um``
    ((xmin, ymin), (xmax, ymax)) in each layer's frame, widened by ``tol_um`` (µm; the limits of
    :func:`window_rows`)."""
    from ..slicing import frame_cos_sin

    (x0, y0), (x1, y1) = np.asarray(window_um, dtype=np.float64)
    cx = np.array([x0, x1, x0, x1])
    cy = np.array([y0, y0, y1, y1])
    c, sn = frame_cos_sin(np.asarray(angle_deg, dtype=np.float64))
    v = -np.outer(sn, cx) + np.outer(c, cy)          # (L, 4) corner v in each layer's frame
    u = np.outer(c, cx) + np.outer(sn, cy)
    return np.array([v.min(axis=1) - tol_um, v.max(axis=1) + tol_um, u.min(axis=1) - tol_um, u.max(axis=1) + tol_um])


def solid_bounds(solid) -> np.ndarray:
    """(2, 3) bounds of a Solid (``bounds_um``) or a trimesh in µm (``bounds``)."""
    b = getattr(solid, "bounds_um", None)
    if b is None:
        b = solid.bounds
    return np.asarray(b, dtype=np.float64).reshape(2, 3)


def make_region(solid, recipe, window_um=None, owner=None) -> Region:
    """The part, or for ``strategy == 'channels'`` the block around it minus the part
    (``window_um``, ``owner``: see :class:`Region`)."""
    if recipe.strategy == "vessel-wall":
        from .vessel_wall import wall_region

        return wall_region(solid, recipe, window_um, owner)
    if recipe.strategy != "channels":
        return Region(solid, window_um=window_um, owner=owner)
    b = solid_bounds(solid)
    if recipe.channel_block_size_um is not None:
        size = np.asarray(recipe.channel_block_size_um, dtype=np.float64)
        mid = b.mean(axis=0)
        lo, hi = mid - size / 2, mid + size / 2
    else:
        m = recipe.channel_margin_um
        lo, hi = b[0] - m, b[1] + m
    openings = None
    if hasattr(solid, "extended_through"):  # a centerline tree: carry terminals near a face through it
        solid, openings = solid.extended_through(lo, hi, recipe.channel_margin_um)
    elif recipe.channel_block_size_um is None and recipe.channel_margin_um > 0:   # a lumen mesh: open its ends
        from .openings import opened_lumen

        solid, openings = opened_lumen(solid, lo, hi, recipe)
    region = Region(solid, lo, hi, window_um=window_um, owner=owner)
    region.openings = openings
    return region


def inset_polygons(polys: list, inset_um: float) -> list:
    """Each layer's geometry shrunk by ``inset_um`` (mitre joins), one shapely call."""
    if inset_um <= 0:
        return list(polys)
    arr = np.empty(len(polys), dtype=object)
    arr[:] = polys
    out = shapely.buffer(arr, -float(inset_um), join_style="mitre", mitre_limit=4.0)
    return list(out)


# ----------------------------------------------------------------------------- spans -> marks
def spans_to_toolpath(spans, kind: Kind, layer_index, layer_z_um, min_segment_um: float = 0.0,
                      serpentine: bool = True, keep_row=None, owner=None, before=None, window_um=None):
    """Turn spans into 2-point marks in scan order.

    Parameters
    ----------
    spans : slicing.Spans
        Rows of material; one mark per span.
    kind : Kind
    layer_index : (Ls,) int
        Global layer index of each layer of ``spans``.
    layer_z_um : (L,) float
        The global layer table of the toolpath, µm.
    min_segment_um : float
        Spans shorter than this are dropped.
    serpentine : bool
        Alternate the direction of rows: odd rows of the global row grid run backwards.
    keep_row : (R,) bool, optional
        Only rows with True are used (e.g. scaffold walls on some rows).
    owner : callable, optional
        Count only dropped spans whose midpoint it owns (see :class:`Region`).
    before : Toolpath, optional
        Marks to put first in each layer (e.g. the contours): the result is ``order_marks([before,
        marks], layer_z_um)``, written straight into the joined arrays (the spans' marks are not
        made apart and then copied).
    window_um : (2, 2) float, optional
        Use only the spans :meth:`Region.final` keeps with this window (the same marks as
        ``spans_to_toolpath(window_rows(spans, window_um, cut_spans=True), ...)`` without making
        those spans).

    Returns
    -------
    (Toolpath, int)
        The marks (power and speed zero until exposure) and the number of dropped spans.
    """
    lrs = np.ascontiguousarray(spans.layer_row_start, dtype=np.int64)
    rss = np.ascontiguousarray(spans.row_span_start, dtype=np.int64)
    u0 = np.ascontiguousarray(spans.span_u0_um, dtype=np.float64)
    u1 = np.ascontiguousarray(spans.span_u1_um, dtype=np.float64)
    rv = np.ascontiguousarray(spans.row_v_um, dtype=np.float64)
    n_layers = len(lrs) - 1
    keep_row = np.ones(len(rv), dtype=np.bool_) if keep_row is None else np.ascontiguousarray(keep_row, dtype=np.bool_)
    angles = np.broadcast_to(np.asarray(spans.angle_deg, dtype=np.float64), (n_layers,))
    win = None if window_um is None else window_limits(angles, window_um)
    counts = np.empty(n_layers, np.int64)
    totals = np.empty(n_layers, np.int64)
    _k.count_kept_spans(lrs, rss, rv, u0, u1, keep_row, float(min_segment_um), win, counts, totals)
    from ..slicing import frame_cos_sin

    c, s = frame_cos_sin(angles)
    c = np.ascontiguousarray(c, dtype=np.float64)
    s = np.ascontiguousarray(s, dtype=np.float64)
    lz = np.asarray(layer_z_um, dtype=np.float64)
    layer_index = np.asarray(layer_index, dtype=np.int64)
    zl = np.ascontiguousarray(lz[layer_index]) if n_layers else np.zeros(0)
    if serpentine:
        row_rev = np.ascontiguousarray((spans.row_index() & 1) == 1)
    else:
        row_rev = np.zeros(len(rv), dtype=np.bool_)
    if before is not None and before.n_marks == 0:
        before = None
    joined = before is not None and bool(np.all(np.diff(layer_index) > 0))
    if joined:
        tp, point_offset = _joined_layout(before, kind, layer_index, counts, lz)
    else:
        off = np.zeros(n_layers + 1, np.int64)
        np.cumsum(counts, out=off[1:])
        m = int(off[-1])
        point_offset = 2 * off[:-1]
        tp = Toolpath(x_um=np.empty(2 * m), y_um=np.empty(2 * m), z_um=np.empty(2 * m), power_mw=np.zeros(2 * m),
                      mark_start=np.arange(0, 2 * m + 1, 2, dtype=np.int64),
                      mark_kind=np.full(m, int(kind), np.uint8),
                      mark_layer=np.repeat(layer_index.astype(np.int32), counts), layer_z_um=lz)
    _k.fill_span_segments(lrs, rss, rv, u0, u1, keep_row, row_rev, c, s, zl, float(min_segment_um), win,
                          point_offset, tp.x_um, tp.y_um, tp.z_um)
    if before is not None and not joined:
        tp = order_marks([before, tp], lz)
    dropped = int(totals.sum()) - int(counts.sum())
    if owner is not None and dropped:
        mx, my, mz = _k.short_span_midpoints(lrs, rss, rv, u0, u1, keep_row, c, s, zl, float(min_segment_um), win)
        dropped = int(np.count_nonzero(owner(mx, my, mz)))
    return tp, dropped


def _joined_layout(before: Toolpath, kind: Kind, layer_index, counts, layer_z_um):
    """The toolpath ``order_marks([before, marks])`` with ``before`` copied in and room for
    ``counts[k]`` 2-point marks of ``kind`` in global layer ``layer_index[k]`` (increasing), whose
    mark starts are set; and the first point of each of those layers' marks (points left to fill).
    """
    n_l = len(layer_z_um)
    before, first = _by_layer(before, n_l)
    hc = np.zeros(n_l, np.int64)
    hc[layer_index] = counts
    pfirst = before.mark_start[first]
    cnt = np.stack([np.diff(first), hc])
    pcnt = np.stack([np.diff(pfirst), 2 * hc])
    dst, pdst, m, n = _layer_block_layout(cnt, pcnt)
    start = np.empty(m + 1, np.int64)
    start[m] = n
    marks = {}
    for name, (dtype, default) in MARK_FIELDS.items():
        if name == "mark_layer":
            marks[name] = np.repeat(np.arange(n_l, dtype=np.int32), cnt.sum(axis=0))
            continue
        value = int(kind) if name == "mark_kind" else default
        marks[name] = np.full(m, value, dtype) if value else np.zeros(m, dtype)   # zeros: pages untouched
        _kx.gather_ranges(getattr(before, name), first[:-1], cnt[0], dst[0], marks[name])
    pts = {name: np.empty(n) for name in ("x_um", "y_um", "z_um")}
    for name, arr in pts.items():
        _kx.gather_ranges(getattr(before, name), pfirst[:-1], pcnt[0], pdst[0], arr)
    _k.copy_start_blocks(before.mark_start, first[:-1], dst[0], cnt[0], pdst[0], start)
    at, point_at = np.ascontiguousarray(dst[1][layer_index]), np.ascontiguousarray(pdst[1][layer_index])
    _k.fill_pair_starts(at, point_at, np.ascontiguousarray(counts, dtype=np.int64), start)
    tp = Toolpath(**pts, power_mw=np.zeros(n), mark_start=start, **marks, layer_z_um=layer_z_um, meta=dict(before.meta))
    return tp, point_at


def _by_layer(tp: Toolpath, n_layers: int):
    """``tp`` sorted by layer (stably; itself when it is) and the first mark of every layer
    (``kernel.marks.layer_firsts``)."""
    first = _k.layer_firsts(tp.mark_layer, n_layers)
    if first is None:
        tp = tp.select_marks(np.argsort(tp.mark_layer, kind="stable"))
        first = _k.layer_firsts(tp.mark_layer, n_layers)
        if first is None:
            raise ValueError("mark_layer out of range of the layer table")
    return tp, first


def _layer_block_layout(cnt, pcnt):
    """Where the (part, layer) blocks of marks go when parts are joined layer by layer, parts in
    order within a layer.

    Parameters
    ----------
    cnt, pcnt : (P, L) int64
        Marks and points of each part in each layer.

    Returns
    -------
    (dst, pdst, M, N)
        (P, L) int64 first mark and first point of each block in the result; its marks and points.
    """
    n_l = cnt.shape[1]
    dst = np.zeros(cnt.size + 1, np.int64)
    np.cumsum(cnt.T.ravel(), out=dst[1:])
    pdst = np.zeros(cnt.size + 1, np.int64)
    np.cumsum(pcnt.T.ravel(), out=pdst[1:])
    m, n = int(dst[-1]), int(pdst[-1])
    dst = np.ascontiguousarray(dst[:-1].reshape(n_l, -1).T)
    pdst = np.ascontiguousarray(pdst[:-1].reshape(n_l, -1).T)
    return dst, pdst, m, n


def segments_to_toolpath(x0, y0, x1, y1, layer, kind: Kind, layer_z_um) -> Toolpath:
    """2-point marks at the height of their layer (power and speed 0 until exposure)."""
    m = len(x0)
    lz = np.asarray(layer_z_um, dtype=np.float64)
    x = np.empty(2 * m)
    y = np.empty(2 * m)
    x[0::2] = x0
    x[1::2] = x1
    y[0::2] = y0
    y[1::2] = y1
    z = np.repeat(lz[layer], 2) if m else np.zeros(0)
    return Toolpath(x_um=x, y_um=y, z_um=z, power_mw=np.zeros(2 * m),
                    mark_start=np.arange(0, 2 * m + 1, 2, dtype=np.int64),
                    mark_kind=np.full(m, int(kind), np.uint8), mark_layer=layer, layer_z_um=lz)


def rings_to_toolpath(polys: list, layer_index, layer_z_um, kind: Kind = Kind.CONTOUR) -> Toolpath:
    """Every ring (exterior and holes) of each layer's geometry as a closed polyline mark.

    Parameters
    ----------
    polys : list of shapely geometries, one per entry of ``layer_index``
    layer_index : (n,) int
        Global layer of each geometry.
    layer_z_um : (L,) float
        Global layer table, µm.
    """
    lz = np.asarray(layer_z_um, dtype=np.float64)
    arr = np.empty(len(polys), dtype=object)
    arr[:] = polys
    parts, part_geom = shapely.get_parts(arr, return_index=True)
    if len(parts):
        keep = shapely.get_type_id(parts) == 3  # polygons only (a buffer may leave lines/points)
        parts, part_geom = parts[keep], part_geom[keep]
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    if len(rings) == 0:
        return Toolpath.empty(lz)
    xy, pt_ring = shapely.get_coordinates(rings, return_index=True)
    counts = np.bincount(pt_ring, minlength=len(rings)).astype(np.int64)
    ok = counts >= 4  # a closed ring has at least 3 distinct points + the repeat
    if not np.all(ok):
        xy = xy[np.repeat(ok, counts)]
        ring_part = ring_part[ok]
        counts = counts[ok]
    m = len(counts)
    starts = np.zeros(m + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    layer = np.asarray(layer_index, dtype=np.int32)[part_geom[ring_part]]
    z = np.repeat(lz[layer], counts)
    return Toolpath(x_um=xy[:, 0].copy(), y_um=xy[:, 1].copy(), z_um=z, power_mw=np.zeros(len(z)), mark_start=starts,
                    mark_kind=np.full(m, int(kind), np.uint8), mark_layer=layer, layer_z_um=lz)


def contour_toolpath(region: Region, layer_z_um, recipe, layer_ids=None) -> Toolpath:
    """``recipe.contour_count`` rings per layer, ring i at ``contour_offset_um + i *
    contour_spacing_um`` inside the surface; outer rings first within each layer.

    ``layer_ids`` (default: all) selects the layers of the global table ``layer_z_um`` to make."""
    n = recipe.contour_count
    lz = np.asarray(layer_z_um, dtype=np.float64)
    idx = layer_ids_of(lz, layer_ids).astype(np.int32)
    if n == 0 or len(idx) == 0:
        return Toolpath.empty(lz)
    key = (lz.tobytes(), idx.tobytes(), n, recipe.contour_offset_um, recipe.contour_spacing_um,
           None if region.block_lo_um is None else (region.block_lo_um.tobytes(), region.block_hi_um.tobytes()))
    hit = _CONTOURS.get(region.solid, key)
    if hit is not None:
        return _copy(hit)
    polys = region.polygons(lz[idx])
    parts = []
    for i in range(n):
        off = recipe.contour_offset_um + i * recipe.contour_spacing_um
        parts.append(rings_to_toolpath(inset_polygons(polys, off), idx, lz))
    # outer ring first within a layer: parts are merged layer by layer in ring order i
    out = order_marks(parts, lz)
    _CONTOURS.put(region.solid, key, _copy(out))
    return out


def _copy(tp: Toolpath) -> Toolpath:
    """An independent copy (later stages write power and speed into their toolpath)."""
    return tp.select_marks(np.arange(tp.n_marks))


class _SolidCache:
    """A few results per solid, kept while the solid lives (blocks of one tier share their
    layers' contours: a run or a worker computes them once, not once per block)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.items: list = []          # (weakref to solid, key, value), most recent last

    def get(self, solid, key):
        for i, (ref, k, v) in enumerate(self.items):
            if ref() is solid and k == key:
                self.items.append(self.items.pop(i))
                return v
        return None

    def put(self, solid, key, value) -> None:
        import weakref

        try:
            ref = weakref.ref(solid)
        except TypeError:
            return
        self.items = [it for it in self.items if it[0]() is not None][-(self.size - 1):]
        self.items.append((ref, key, value))


_CONTOURS = _SolidCache()


def layer_ids_of(layer_z_um, layer_ids=None) -> np.ndarray:
    """The sorted global layer indices to make (all layers when None)."""
    n = len(layer_z_um)
    if layer_ids is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(layer_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= n or np.any(np.diff(ids) <= 0)):
        raise ValueError("layer_ids must be increasing indices into the layer table")
    return ids


def hatch_region_inset(recipe) -> float:
    """Inset of the hatch region from the surface, µm: ``hatch_inset_um`` measured from the
    outer contour (which sits at ``contour_offset_um`` when there are contours)."""
    if recipe.hatch_inset_um <= 0:
        return 0.0
    return recipe.hatch_inset_um + (recipe.contour_offset_um if recipe.contour_count > 0 else 0.0)


def span_boolean(a, b, op: str):
    """``slicing.span_boolean`` made safe for span sets whose last layers are empty.

    (slicing.span_boolean calls ``np.add.reduceat`` with an index equal to the array length
    when trailing layers hold no rows; a one-span sentinel layer appended to both sets and
    dropped afterwards avoids it.)
    """
    from ..slicing import Spans
    from ..slicing import span_boolean as _sb

    if a.n_layers == 0:
        return a

    def pad(sp):
        j = (0 if sp.n_rows == 0 else int(np.rint((sp.row_v_um.max() - sp.row_offset_um) / sp.row_spacing_um))) + 7
        z = np.append(sp.layer_z_um, sp.layer_z_um[-1] + 1.0)
        ang = np.append(sp.angle_deg, sp.angle_deg[-1])
        return Spans(z, ang, sp.row_spacing_um, sp.row_offset_um,
                     np.append(sp.layer_row_start, sp.layer_row_start[-1] + 1),
                     np.append(sp.row_v_um, sp.row_offset_um + j * sp.row_spacing_um),
                     np.append(sp.row_span_start, sp.row_span_start[-1] + 1),
                     np.append(sp.span_u0_um, 0.0), np.append(sp.span_u1_um, 1.0))

    pa, pb = pad(a), pad(b)
    pb.layer_z_um = pa.layer_z_um
    return _sb(pa, pb, op).layers(0, a.n_layers)


def same_layers(spans, layer_z_um):
    """``spans`` relabelled with ``layer_z_um`` (to combine slices at shifted heights)."""
    return dataclasses.replace(spans, layer_z_um=np.asarray(layer_z_um, dtype=np.float64))


def order_marks(parts: list, layer_z_um) -> Toolpath:
    """Join marks of all kinds, ordered by layer (bottom-up), then by ``parts`` order.

    Parts not ordered by layer are sorted first (stably). Each part's marks of one layer are one
    contiguous block of the part and of the result, so the result is copied block by block
    (no concatenation then sort then gather).
    """
    lz = np.asarray(layer_z_um, dtype=np.float64)
    parts = [p for p in parts if p is not None and p.n_marks]
    if not parts:
        return Toolpath.empty(lz)
    n_l = len(lz)
    firsts = []
    for i, p in enumerate(parts):
        parts[i], first = _by_layer(p, n_l)
        firsts.append(first)
    if len(parts) == 1:
        return parts[0]
    first = np.stack(firsts)                                              # (P, L+1)
    pfirst = np.stack([p.mark_start[f] for p, f in zip(parts, firsts)])   # (P, L+1) points
    cnt = np.diff(first, axis=1)
    pcnt = np.diff(pfirst, axis=1)
    dst, pdst, m_total, n = _layer_block_layout(cnt, pcnt)
    start = np.empty(m_total + 1, np.int64)
    start[m_total] = n
    marks = {name: np.empty(m_total, dtype) for name, (dtype, _) in MARK_FIELDS.items()}
    x, y, z = np.empty(n), np.empty(n), np.empty(n)
    for i, p in enumerate(parts):
        src, psrc = np.ascontiguousarray(first[i, :-1]), np.ascontiguousarray(pfirst[i, :-1])
        _k.copy_start_blocks(p.mark_start, src, dst[i], cnt[i], pdst[i], start)
        for name, arr in marks.items():
            _kx.gather_ranges(getattr(p, name), src, cnt[i], dst[i], arr)
        for name, arr in (("x_um", x), ("y_um", y), ("z_um", z)):
            _kx.gather_ranges(getattr(p, name), psrc, pcnt[i], pdst[i], arr)
    return Toolpath(x_um=x, y_um=y, z_um=z, power_mw=np.zeros(n), mark_start=start, **marks, layer_z_um=lz,
                    meta=dict(parts[0].meta))


def check_layers(region: Region, recipe):
    """Layer heights through the region; refuses a region thinner than one layer."""
    from ..slicing import layer_heights

    b = region.bounds_um
    lz = layer_heights(float(b[0, 2]), float(b[1, 2]), recipe.slice_um)
    if len(lz) == 0:
        raise BioslicerError(f"the part is {b[1, 2] - b[0, 2]:.3g} µm tall, thinner than one layer "
                             f"(slice_um = {recipe.slice_um:g}); lower slice_um or check --units")
    return np.asarray(lz, dtype=np.float64)
