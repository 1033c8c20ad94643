"""The planning and block-measuring kernels against the plain numpy they replace: windowed rows,
hatch written straight behind the contours, order_marks by layer blocks, the block summary
(lengths, bounds, jumps, per-set tallies bit for bit) and the preview selection."""

import numpy as np
import trimesh

from bioslicer.blockrun import block_summary, preview_marks
from bioslicer.estimate import estimate_block
from bioslicer.paramsets import block_sets
from bioslicer.printers import load_printer
from bioslicer.recipe import Recipe
from bioslicer.slicing import frame_cos_sin, slice_spans
from bioslicer.strategies.common import (Region, contour_toolpath, order_marks, spans_to_toolpath,
                                         window_rows)
from bioslicer.toolpath import MARK_FIELDS, POINT_FIELDS, Blocks, Kind, Toolpath

P = load_printer("nanoscribe-gt2-25x")


def _sphere():
    m = trimesh.creation.icosphere(subdivisions=3, radius=20.0)
    m.apply_translation((21.0, 22.0, 20.0))
    return m


def _same(a: Toolpath, b: Toolpath):
    for name in (*POINT_FIELDS, *MARK_FIELDS, "mark_start", "layer_z_um"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def _spans(angle=30.0):
    z = 0.5 + np.arange(38.0)
    return z, slice_spans(_sphere(), z, 0.4, angle_deg=angle + 7.0 * np.arange(len(z)), row_offset_um=0.2)


def test_window_rows_keeps_the_rows_and_spans_reaching_the_box():
    _, sp = _spans()
    win = ((10.0, 12.0), (25.0, 20.0))
    c, s = frame_cos_sin(sp.angle_deg)
    cx, cy = np.array([10.0, 25.0, 10.0, 25.0]), np.array([12.0, 12.0, 20.0, 20.0])
    v = -np.outer(s, cx) + np.outer(c, cy)
    u = np.outer(c, cx) + np.outer(s, cy)
    rl = sp.row_layer()
    for cut in (False, True):
        out = window_rows(sp, win, cut_spans=cut)
        keep = np.repeat((sp.row_v_um >= v.min(1)[rl] - 1e-6) & (sp.row_v_um <= v.max(1)[rl] + 1e-6),
                         np.diff(sp.row_span_start))
        if cut:
            sl = rl[sp.span_row()]
            keep &= (sp.span_u1_um >= u.min(1)[sl] - 1e-6) & (sp.span_u0_um <= u.max(1)[sl] + 1e-6)
        assert 0 < keep.sum() < sp.n_spans
        assert np.array_equal(out.span_u0_um, sp.span_u0_um[keep])
        assert np.array_equal(out.span_u1_um, sp.span_u1_um[keep])
        row_of = sp.span_row()[keep]
        assert np.array_equal(out.row_v_um, sp.row_v_um[np.unique(row_of)])
        assert np.array_equal(out.span_row(), np.unique(row_of, return_inverse=True)[1])
        assert np.array_equal(out.row_layer(), rl[np.unique(row_of)])
    assert window_rows(sp, ((-100.0, -100.0), (100.0, 100.0)), cut_spans=True) is sp     # nothing dropped


def test_final_spans_equal_the_spans_windowed_twice():
    z, _ = _spans()
    ang = 30.0 + 7.0 * np.arange(len(z))
    region = Region(_sphere(), window_um=((10.0, 12.0), (25.0, 20.0)))
    a = region.final_spans(z, 0.0, 0.4, ang, 0.2)
    b = region.final(region.inset_spans(z, 0.0, 0.4, ang, 0.2))
    assert a.same_as(b) and a.n_spans > 0


def test_hatch_behind_contours_equals_order_marks_of_both():
    z, sp = _spans()
    lz = np.concatenate([[-0.5], z, [z[-1] + 1.0]])          # layers without marks at both ends
    ids = np.arange(1, len(z) + 1)
    rec = Recipe().updated(contour_count=2, contour_spacing_um=0.3)
    rings = contour_toolpath(Region(_sphere()), lz, rec, ids)
    assert rings.n_marks > 0
    for min_seg in (0.0, 2.0):
        hatch, d0 = spans_to_toolpath(sp, Kind.HATCH, ids, lz, min_seg)
        joined, d1 = spans_to_toolpath(sp, Kind.HATCH, ids, lz, min_seg, before=rings)
        assert d0 == d1 and (d0 > 0) == (min_seg > 0)
        _same(joined, order_marks([rings, hatch], lz))
        joined.check()
    # contours on fewer layers than the hatch, and not sorted by layer: sorted first, as order_marks does
    part = rings.select_marks(np.flatnonzero(rings.mark_layer % 3 == 0)[::-1])
    hatch = spans_to_toolpath(sp, Kind.HATCH, ids, lz)[0]
    _same(spans_to_toolpath(sp, Kind.HATCH, ids, lz, before=part)[0], order_marks([part, hatch], lz))


def test_order_marks_by_layer_blocks():
    lz = np.arange(5.0)
    rng = np.random.default_rng(3)

    def marks(n, kind, npts):
        layer = np.sort(rng.integers(0, 5, n)).astype(np.int32)
        counts = rng.integers(2, npts + 1, n)
        start = np.concatenate([[0], np.cumsum(counts)])
        pts = rng.normal(size=(3, start[-1]))
        return Toolpath(x_um=pts[0], y_um=pts[1], z_um=pts[2], power_mw=np.ones(start[-1]), mark_start=start,
                        mark_kind=np.full(n, int(kind), np.uint8), mark_layer=layer,
                        mark_set=rng.integers(0, 9, n).astype(np.int32), layer_z_um=lz)

    parts = [marks(7, Kind.CONTOUR, 6), marks(30, Kind.HATCH, 2), marks(11, Kind.SKIN, 4)]
    out = order_marks(parts, lz)
    out.check()
    # reference: stable sort by layer of the concatenation (parts in order within a layer)
    cat = Toolpath.concat(parts)
    ref = cat.select_marks(np.argsort(cat.mark_layer, kind="stable"))
    ref.power_mw[:] = 0.0
    _same(out, ref)


def _block_toolpath(sets):
    rng = np.random.default_rng(5)
    n = 200
    counts = rng.integers(2, 5, n)
    start = np.concatenate([[0], np.cumsum(counts)])
    pts = rng.normal(scale=30.0, size=(3, start[-1]))
    blocks = Blocks(np.zeros((1, 3)), np.zeros((1, 3)), np.full((1, 3), -100.0), np.full((1, 3), 100.0))
    return Toolpath(x_um=pts[0], y_um=pts[1], z_um=pts[2], power_mw=np.ones(start[-1]), mark_start=start,
                    mark_kind=rng.integers(0, 3, n).astype(np.uint8),
                    mark_layer=np.sort(rng.integers(0, 4, n)).astype(np.int32),
                    mark_block=np.zeros(n, np.int32), mark_speed_um_s=rng.uniform(1e3, 1e5, n),
                    mark_set=rng.choice(sets, n).astype(np.int32), layer_z_um=np.arange(4.0), blocks=blocks)


def test_block_summary_bit_for_bit():
    tp = _block_toolpath([5, 7, 9, 40])
    s = block_summary(tp)
    assert np.array_equal(s["lengths"], tp.mark_lengths())
    assert np.array_equal(s["bounds"], tp.bounds())
    assert np.array_equal(s["kinds"], np.bincount(tp.mark_kind, minlength=len(Kind)))
    d = np.column_stack([np.diff(a)[tp.mark_start[1:-1] - 1] for a in (tp.x_um, tp.y_um, tp.z_um)])
    assert np.array_equal(s["jumps"], np.linalg.norm(d, axis=1)) and np.array_equal(s["jumps"], tp.jump_lengths())
    assert np.array_equal(s["mark_time"], tp.mark_lengths() / tp.mark_speed_um_s) and s["speed_ok"]
    rec = Recipe()
    assert block_sets(tp, rec, P, None, s["lengths"], s) == block_sets(tp, rec, P, None)
    from bioslicer.estimate import _estimate

    est = estimate_block(tp, P, s["lengths"], summary=s)
    plain = _estimate(tp, P)
    assert est["mark_s"] == plain.breakdown["mark_s"] and est["jump_s"] == plain.breakdown["jump_s"]
    wide = _block_toolpath([0, 2**20 + 1])                      # ids too far apart: tallied by np.unique
    ws = block_summary(wide)
    assert len(ws["set_marks"]) == 0
    assert block_sets(wide, rec, P, None, ws["lengths"], ws) == block_sets(wide, rec, P, None)


def test_preview_marks_every_nth_mark_of_each_run():
    tp = _block_toolpath([1])
    tp.mark_kind[::7] = int(Kind.CONTOUR)
    out = preview_marks(tp, 2, 3)
    run_start = np.ones(tp.n_marks, bool)
    run_start[1:] = (np.diff(tp.mark_layer) != 0) | (np.diff(tp.mark_block) != 0)
    first = np.flatnonzero(run_start)
    rank = np.arange(tp.n_marks) - first[np.cumsum(run_start) - 1]
    keep = (tp.mark_layer % 2 == 0) & ((tp.mark_kind == int(Kind.CONTOUR)) | (rank % 3 == 0))
    _same(out, tp.select_marks(keep))


def test_spans_to_toolpath_in_a_window_equals_the_windowed_spans():
    z, sp = _spans()
    ids = np.arange(len(z))
    win = ((10.0, 12.0), (25.0, 20.0))
    owner = lambda x, y, zz: y < 17.0  # noqa: E731
    cut = window_rows(sp, win, cut_spans=True)
    # the windowed rows are rows of sp: (layer, grid row) picks them out
    key = lambda p: p.row_layer().astype(np.int64) * 10**6 + p.row_index() + 1000  # noqa: E731
    row_of_cut = np.searchsorted(key(sp), key(cut))
    assert np.array_equal(key(sp)[row_of_cut], key(cut))
    keep_row = np.arange(sp.n_rows) % 3 != 1
    for rows in (None, keep_row):
        for min_seg in (0.0, 3.0):
            a, da = spans_to_toolpath(sp, Kind.HATCH, ids, z, min_seg, keep_row=rows, owner=owner, window_um=win)
            b, db = spans_to_toolpath(cut, Kind.HATCH, ids, z, min_seg, owner=owner,
                                      keep_row=None if rows is None else rows[row_of_cut])
            _same(a, b)
            assert da == db and a.n_marks > 0
            n_drop = spans_to_toolpath(sp, Kind.HATCH, ids, z, min_seg, keep_row=rows, window_um=win)[1]
            assert (n_drop > 0) == (min_seg > 0) and da <= n_drop
