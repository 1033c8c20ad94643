import dataclasses
import math

import numpy as np
import pytest

from bioslicer.errors import BioslicerError
from bioslicer.printers import load_printer
from bioslicer.stitching import stitch
from bioslicer.toolpath import Kind, Toolpath

DAQ = load_printer("lab-daq-galvo")          # square field 250 µm, z range 200 µm
NS63 = load_printer("nanoscribe-gt2-63x")    # circle field 200 µm, z range 300 µm
DAQZ = dataclasses.replace(DAQ, stage_z_um=(-5000.0, 5000.0))   # the same with a z stage


def _disk_part(layer_z, radius=280.0, centre=(300.0, 250.0), hatch=7.0, angle_deg=30.0):
    """Rotated hatch lines filling a disc plus its closed contour (100 vertices) on every layer."""
    cx, cy = centre
    a = math.radians(angle_deg)
    d = np.array([math.cos(a), math.sin(a)])
    n = np.array([-d[1], d[0]])
    offs = np.arange(-radius + hatch / 2, radius, hatch)
    half = np.sqrt(radius ** 2 - offs ** 2)
    parts = []
    th = np.linspace(0, 2 * np.pi, 101)
    th[-1] = 0.0
    for li, z in enumerate(layer_z):
        c = np.column_stack([cx + radius * np.cos(th), cy + radius * np.sin(th), np.full(101, z)])
        parts.append(Toolpath(x_um=c[:, 0], y_um=c[:, 1], z_um=c[:, 2], power_mw=np.full(101, 5.0), mark_start=[0, 101],
                              mark_kind=[Kind.CONTOUR], mark_layer=[li], mark_block=[-1], mark_speed_um_s=[2000.0],
                              layer_z_um=layer_z))
        mid = np.array([cx, cy]) + offs[:, None] * n
        p0 = np.column_stack([mid - half[:, None] * d, np.full(len(offs), z)])
        p1 = np.column_stack([mid + half[:, None] * d, np.full(len(offs), z)])
        parts.append(Toolpath.from_segments(p0, p1, Kind.HATCH, li, 5000.0, 6.0, layer_z))
    return Toolpath.concat(parts, layer_z_um=layer_z)


def _segments(tp):
    """(S, 2, 3) segments of all marks and (S,) block of each."""
    p = tp.points()
    pm = tp.point_mark()
    keep = pm[:-1] == pm[1:]
    i = np.flatnonzero(keep)
    return np.stack([p[i], p[i + 1]], axis=1), tp.mark_block[pm[i]]


def _on_segment(q, seg, tol=1e-7):
    """(Q, S) bool: point q lies on segment seg."""
    a, b = seg[:, 0], seg[:, 1]
    ab = b - a
    L2 = np.maximum((ab * ab).sum(1), 1e-30)
    t = np.clip(((q[:, None, :] - a[None]) * ab[None]).sum(2) / L2[None], 0, 1)
    c = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(q[:, None, :] - c, axis=2) < tol


def test_coverage_each_point_in_one_block_or_two_in_overlap():
    layer_z = np.array([0.0, 50.0, 100.0])
    tp = _disk_part(layer_z)
    ov, shear = 4.0, 10.0
    out = stitch(tp, DAQZ, overlap_um=ov, shear_deg=shear, block_height_um=60.0)
    out.check()
    b = out.blocks
    assert out.meta["stitching"]["grid"][2] == 2 and len(np.unique(b.index[:, 2])) == 2
    # sample points along the original marks
    rng = np.random.default_rng(0)
    seg_in, _ = _segments(tp)
    pick = rng.integers(0, len(seg_in), 1500)
    s = rng.random(1500)[:, None]
    q = seg_in[pick, 0] + s * (seg_in[pick, 1] - seg_in[pick, 0])
    seg_out, seg_blk = _segments(out)
    hit = _on_segment(q, seg_out)
    n_blocks = np.array([len(np.unique(seg_blk[h])) for h in hit])
    # expected from the block geometry: inner walls shear with z inside each tier
    tan = math.tan(math.radians(shear))
    lz = np.round(q[:, 2], 6)
    tier_z0 = {0.0: 0.0, 50.0: 0.0, 100.0: 60.0}
    t = np.array([(z - tier_z0[z]) * tan for z in lz])
    wx = np.unique(b.lo_um[b.index[:, 0] > 0, 0])
    wy = np.unique(b.lo_um[b.index[:, 1] > 0, 1])
    dx = np.abs((q[:, 0] - t)[:, None] - wx[None]).min(1)
    dy = np.abs((q[:, 1] - t)[:, None] - wy[None]).min(1)
    clear = (np.abs(dx - ov / 2) > 1e-6) & (np.abs(dy - ov / 2) > 1e-6)
    expect = np.where(dx < ov / 2, 2, 1) * np.where(dy < ov / 2, 2, 1)
    assert clear.sum() > 1400
    np.testing.assert_array_equal(n_blocks[clear], expect[clear])
    assert (expect[clear] == 2).sum() > 5 and (expect[clear] == 1).sum() > 1000


def test_every_point_inside_field_and_z_range():
    layer_z = np.arange(0.0, 400.0, 40.0)
    for pr, shear in ((DAQZ, 0.0), (DAQZ, 8.0), (NS63, 12.0)):
        out = stitch(_disk_part(layer_z), pr, shear_deg=shear)
        loc = out.local_xyz()
        assert len(out.blocks) > 4
        assert pr.in_field(loc[:, 0], loc[:, 1]).all()
        assert loc[:, 2].min() >= -1e-9 and loc[:, 2].max() <= pr.z_range_um + 1e-9
        # the default block fills the field: some point lies within 1 µm of its edge
        r = np.hypot(loc[:, 0], loc[:, 1]) if pr.field_shape == "circle" else np.abs(loc[:, :2]).max(1)
        assert r.max() > pr.field_size_um / 2 - 1.0 - 250 * math.tan(math.radians(shear))


def test_sheared_wall_at_stated_angle_and_lengths():
    # x lines at y = 10 crossing the wall between block columns 0 and 1, one per layer
    layer_z = np.arange(0.0, 150.0, 10.0)
    L = len(layer_z)
    p0 = np.column_stack([np.zeros(L), np.full(L, 10.0), layer_z])
    p1 = np.column_stack([np.full(L, 300.0), np.full(L, 10.0), layer_z])
    tp = Toolpath.from_segments(p0, p1, Kind.HATCH, np.arange(L), 1000.0, 5.0, layer_z)
    shear, ov = 15.0, 2.0
    out = stitch(tp, DAQ, block_size_um=180.0, overlap_um=ov, shear_deg=shear)
    b = out.blocks
    assert out.meta["stitching"]["grid"] == [2, 1, 1]
    wall = b.lo_um[b.index[:, 0] == 1, 0][0]
    first = out.mark_block == np.flatnonzero(b.index[:, 0] == 0)[0]
    ends = np.array([out.mark_points(m)[:, 0].max() for m in np.flatnonzero(first)])
    zs = out.layer_z_um[out.mark_layer[first]]
    np.testing.assert_allclose(ends, wall + ov / 2 + (zs - b.origin_um[0, 2]) * math.tan(math.radians(shear)),
                               atol=1e-9)
    slope = np.polyfit(zs, ends, 1)[0]
    assert math.degrees(math.atan(slope)) == pytest.approx(shear, abs=1e-9)
    # each line is cut once: written length grows by exactly one overlap per line
    assert out.n_marks == 2 * L
    assert out.mark_lengths().sum() == pytest.approx(L * (300.0 + ov), abs=1e-8)


def test_power_is_interpolated_at_the_cut():
    layer_z = np.array([0.0])
    p0 = np.array([[0.0, 0.0, 0.0], [0.0, 100.0, 0.0]])
    p1 = np.array([[600.0, 0.0, 0.0], [600.0, 100.0, 0.0]])
    tp = Toolpath.from_segments(p0, p1, Kind.HATCH, 0, 1000.0, 1.0, layer_z)
    tp.power_mw[1::2] = 31.0   # 1 mW at x=0 rising to 31 mW at x=600
    out = stitch(tp, DAQ, overlap_um=3.0)
    assert out.n_marks == 6
    np.testing.assert_allclose(out.power_mw, 1.0 + 30.0 * out.x_um / 600.0, atol=1e-12)


def test_block_order_serpentine_and_lexical_and_mark_sort():
    layer_z = np.arange(0.0, 450.0, 50.0)
    tp = _disk_part(layer_z, radius=300.0, centre=(0.0, 0.0))
    for order in ("serpentine", "lexical"):
        out = stitch(tp, DAQZ, order=order, overlap_um=0.0)
        idx = out.blocks.index
        nx, ny, nz = out.meta["stitching"]["grid"]
        assert nx == ny == 3 and nz == 3 and len(idx) == 27
        assert np.all(np.diff(idx[:, 2]) >= 0)          # bottom-up
        if order == "serpentine":
            step = np.abs(np.diff(idx, axis=0)).sum(1)
            assert np.all(step == 1)                      # a continuous snake through the grid
            np.testing.assert_array_equal(idx[:4], [[0, 0, 0], [1, 0, 0], [2, 0, 0], [2, 1, 0]])
        else:
            key = (idx[:, 2] * ny + idx[:, 1]) * nx + idx[:, 0]
            np.testing.assert_array_equal(key, np.arange(27))
        # marks sorted by block then layer
        assert np.all(np.diff(out.mark_block) >= 0)
        same = np.diff(out.mark_block) == 0
        assert np.all(np.diff(out.mark_layer)[same] >= 0)
        # a closed contour that is cut becomes open polylines; total length kept with no overlap
        np.testing.assert_allclose(out.mark_lengths().sum(), tp.mark_lengths().sum(), rtol=1e-12)


def test_small_part_is_one_centred_block_and_contour_stays_closed():
    layer_z = np.array([0.0, 1.0, 2.0])
    tp = _disk_part(layer_z, radius=40.0, centre=(1000.0, -500.0), hatch=2.0)
    out = stitch(tp, NS63, shear_deg=20.0)
    assert len(out.blocks) == 1
    np.testing.assert_allclose(out.blocks.origin_um[0], [1000.0, -500.0, 0.0], atol=1e-9)
    assert out.n_marks == tp.n_marks
    np.testing.assert_array_equal(out.x_um, tp.x_um)
    c = out.mark_points(0)
    assert np.array_equal(c[0], c[-1]) and len(c) == 101


def test_stitch_is_deterministic(tmp_path):
    tp = _disk_part(np.array([0.0, 5.0]))
    a = stitch(tp, DAQ, shear_deg=5.0).save(tmp_path / "a.npz").read_bytes()
    b = stitch(tp, DAQ, shear_deg=5.0).save(tmp_path / "b.npz").read_bytes()
    assert a == b


def test_user_errors():
    tp = _disk_part(np.array([0.0]))
    with pytest.raises(BioslicerError, match="block size"):
        stitch(tp, DAQ, block_size_um=249.0, overlap_um=2.0)
    far = _disk_part(np.array([0.0]), centre=(20000.0, 0.0))
    with pytest.raises(BioslicerError, match="stage range"):
        stitch(far, DAQ)
    with pytest.raises(BioslicerError, match="already stitched"):
        stitch(stitch(tp, DAQ), DAQ)
    with pytest.raises(BioslicerError, match="block order"):
        stitch(tp, DAQ, order="spiral")
    # a tall part on a printer without z stage travel
    tall = _disk_part(np.array([0.0, 150.0, 300.0]), radius=50.0)
    with pytest.raises(BioslicerError, match="stage z"):
        stitch(tall, DAQ)


# ----------------------------------------------------------------------------- precomputed grid
import json  # noqa: E402

from bioslicer.estimate import combine_estimates, estimate_block, estimate_print_time  # noqa: E402
from bioslicer.ordering import order_marks  # noqa: E402
from bioslicer.stitching import StitchGrid, plan_grid  # noqa: E402

_ARRAYS = ("x_um", "y_um", "z_um", "power_mw", "mark_start", "mark_kind", "mark_layer", "mark_block",
           "mark_speed_um_s")


def _assert_same(a, b):
    for name in _ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def _grid_job():
    """Rotated hatch + contours of a disc over 5 layers (3 tiers of 60 µm), a grid planned from
    bounds padded by 400 µm in +x (so a column of blocks stays empty), shear and overlap."""
    tp = _disk_part(np.arange(5) * 30.0, radius=260.0, centre=(0.0, 0.0), hatch=9.0, angle_deg=23.0)
    bounds = tp.bounds()
    bounds[1, 0] += 400.0
    g = plan_grid(bounds, tp.layer_z_um, DAQZ, overlap_um=3.0, shear_deg=7.0, block_height_um=60.0)
    return tp, g


def test_plan_grid_blocks_are_the_whole_table_in_execution_order():
    tp, g = _grid_job()
    assert (g.nx, g.ny, g.nz) == (4, 3, 3) and not g.single
    b = g.blocks()
    assert len(b) == g.n_blocks() == 36
    assert np.all(np.abs(np.diff(b.index, axis=0)).sum(1) == 1)            # serpentine snake
    np.testing.assert_array_equal(g.block_layers(0), [0, 1])
    np.testing.assert_array_equal(g.block_layers(35), [4])
    # the fit rule: block + overlap + shear offset over the tier height fits the 250 µm field
    assert g.block_size_um + 3.0 + g.shear_height_um * math.tan(math.radians(7.0)) == pytest.approx(250.0)
    # JSON round trip gives the same grid, exactly
    g2 = StitchGrid.from_dict(json.loads(json.dumps(g.to_dict())))
    for f in ("origin_um", "index", "lo_um", "hi_um"):
        np.testing.assert_array_equal(getattr(g2.blocks(), f), getattr(b, f))
    assert g2.to_dict() == g.to_dict()
    # a part that fits the field is one centred column
    small = plan_grid([[0, 0, 0], [100, 50, 10]], [0.0, 150.0, 300.0], DAQZ)
    assert small.single and small.n_blocks() == 2
    np.testing.assert_allclose(small.blocks().origin_um, [[50, 25, 0], [50, 25, 200]])


def test_block_by_block_is_bit_identical_to_the_whole_run():
    tp, g = _grid_job()
    full = stitch(tp, DAQZ, grid=g)
    full.check()
    nb = g.n_blocks()
    assert len(full.blocks) == nb and np.all(np.diff(full.mark_block) >= 0)
    used = np.bincount(full.mark_block, minlength=nb) > 0
    assert 10 < used.sum() < nb                         # some grid blocks are empty
    ordered_full, _ = order_marks(full)
    rng = np.random.default_rng(5)
    smaller = 0
    for b in range(nb):
        need = g.marks_for_block(tp, b)
        sub = tp.select_marks(need | (rng.random(tp.n_marks) < 0.2))     # any superset, same order
        smaller += sub.n_marks < tp.n_marks / 2
        part = stitch(sub, DAQZ, grid=g, blocks=[b])
        ref = full.select_marks(full.mark_block == b)
        _assert_same(part, ref)
        assert part.n_marks == 0 or (part.mark_block == b).all()
        np.testing.assert_array_equal(part.blocks.origin_um, g.blocks().origin_um)
        # ordering depends only on the marks of each (block, layer) run
        _assert_same(order_marks(part)[0], order_marks(ref)[0])
        _assert_same(order_marks(part)[0], ordered_full.select_marks(ordered_full.mark_block == b))
        if not used[b]:
            assert part.n_marks == 0
    assert smaller > 15
    # the window matters: leaving out a mark that reaches into the block changes the result
    b = int(np.argmax(np.bincount(full.mark_block)))
    need = np.flatnonzero(g.marks_for_block(tp, b))
    hit = [m for m in need if stitch(tp.select_marks([m]), DAQZ, grid=g, blocks=[b]).n_marks]
    part = stitch(tp.select_marks(np.setdiff1d(need, hit[:1])), DAQZ, grid=g, blocks=[b])
    assert part.n_marks < (full.mark_block == b).sum()


def test_grid_user_errors():
    tp, g = _grid_job()
    with pytest.raises(BioslicerError, match="needs a grid"):
        stitch(tp, DAQZ, blocks=[0])
    with pytest.raises(BioslicerError, match="not in the grid"):
        stitch(tp, DAQZ, grid=g, blocks=[36])
    with pytest.raises(BioslicerError, match="outside the stitching grid"):
        stitch(_disk_part(tp.layer_z_um, radius=400.0, centre=(0.0, 0.0)), DAQZ, grid=g)
    with pytest.raises(BioslicerError, match="layer heights"):
        stitch(_disk_part(tp.layer_z_um[:3], radius=100.0, centre=(0.0, 0.0)), DAQZ, grid=g)
    with pytest.raises(BioslicerError, match="planned for"):
        stitch(tp, NS63, grid=g)
    with pytest.raises(BioslicerError, match="stage range"):
        plan_grid([[20000, 0, 0], [20500, 100, 0]], [0.0], DAQ)
    with pytest.raises(BioslicerError, match="not a stitching grid"):
        StitchGrid.from_dict({"nx": 1})


def test_estimate_skips_empty_blocks_and_combines_per_block_parts():
    tp, g = _grid_job()
    full, _ = order_marks(stitch(tp, DAQZ, grid=g))
    nb = g.n_blocks()
    est = estimate_print_time(full, DAQZ)
    used = np.flatnonzero(np.bincount(full.mark_block, minlength=nb))
    assert len(est.per_block_s) == nb
    assert np.all(est.per_block_s[np.setdiff1d(np.arange(nb), used)] == 0) and np.all(est.per_block_s[used] > 0)
    # stage moves: straight from one used block to the next, in table order
    o = full.blocks.origin_um[used]
    c = est.breakdown["counts"]
    assert c["block_changes"] == len(used) - 1
    assert c["stage_move_um"] == pytest.approx(np.linalg.norm(np.diff(o, axis=0), axis=1).sum(), rel=1e-12)
    assert est.breakdown["stage_move_s"] == pytest.approx(
        c["stage_move_um"] / DAQZ.stage_speed_um_s + (len(used) - 1) * DAQZ.stage_settle_s, rel=1e-12)
    # per-block estimates made apart (as separate tasks would), then combined
    parts = []
    for b in range(nb):
        sub, _ = order_marks(stitch(tp.select_marks(g.marks_for_block(tp, b)), DAQZ, grid=g, blocks=[b]))
        parts.append(json.loads(json.dumps(estimate_block(sub, DAQZ))))
    assert sum(p is None for p in parts) == nb - len(used)
    comb = combine_estimates(g.blocks(), parts, DAQZ)
    assert comb.total_s == pytest.approx(est.total_s, rel=1e-9)
    np.testing.assert_allclose(comb.per_block_s, est.per_block_s, rtol=1e-9, atol=0)
    for k, v in est.breakdown.items():
        if k == "counts":
            for kk, vv in v.items():
                assert comb.breakdown["counts"][kk] == pytest.approx(vv, rel=1e-9), kk
        else:
            assert comb.breakdown[k] == pytest.approx(v, rel=1e-9), k
    with pytest.raises(BioslicerError, match="one entry per block"):
        combine_estimates(g.blocks(), parts[:-1], DAQZ)
    with pytest.raises(BioslicerError, match="exactly one block"):
        estimate_block(full, DAQZ)


# ----------------------------------------------------------------------------- one grid path
from bioslicer.blockrun import combined_estimate, run_toolpath  # noqa: E402
from bioslicer.stitching import grid_for_toolpath  # noqa: E402


def test_stitch_without_grid_is_plan_grid_of_the_toolpath_bounds():
    tp = _disk_part(np.arange(5) * 30.0, radius=260.0, centre=(0.0, 0.0), hatch=9.0, angle_deg=23.0)
    geo = dict(overlap_um=3.0, shear_deg=7.0, block_height_um=60.0)
    g = grid_for_toolpath(tp, DAQZ, **geo)
    b = tp.bounds()
    assert g.to_dict() == plan_grid(b, tp.layer_z_um, DAQZ, **geo).to_dict()
    a = stitch(tp, DAQZ, **geo)
    _assert_same(a, stitch(tp, DAQZ, grid=g))
    assert len(a.blocks) == g.n_blocks()                     # the grid's whole table, empty blocks kept
    np.testing.assert_array_equal(a.blocks.origin_um, g.blocks().origin_um)
    # block by block through run_block (as a job) = the whole part stitched, then ordered
    g2, results, joined = run_toolpath(tp, DAQZ, grid=g)
    assert g2 is g and set(np.unique(a.mark_block).tolist()) <= set(results)
    assert all(r.n_marks == np.count_nonzero(a.mark_block == b) for b, r in results.items())
    _assert_same(joined, order_marks(a)[0])
    est = estimate_print_time(joined, DAQZ)
    assert combined_estimate(g.blocks(), results, DAQZ).total_s == pytest.approx(est.total_s, rel=1e-9)


def test_cell_owner_tiles_every_tier():
    tp, g = _grid_job()
    rng = np.random.default_rng(2)
    x = rng.uniform(-600, 900, 4000)
    y = rng.uniform(-600, 600, 4000)
    for iz in range(g.nz):
        blocks = [b for b in range(g.n_blocks()) if g.blocks().index[b, 2] == iz]
        z = np.full(len(x), g.tier_lo_um[iz] + 40.0)
        owners = np.sum([g.cell_owner(b)(x, y, z) for b in blocks], axis=0)
        np.testing.assert_array_equal(owners, 1)
        # a point a block owns is inside its window
        b = blocks[len(blocks) // 2]
        own = g.cell_owner(b)(x, y, z)
        (x0, y0), (x1, y1) = g.block_window_um(b)
        assert own.any() and np.all((x[own] >= x0) & (x[own] <= x1) & (y[own] >= y0) & (y[own] <= y1))
