import numpy as np

from bioslicer.ordering import order_marks, run_jump_length_um
from bioslicer.printers import load_printer
from bioslicer.stitching import stitch
from bioslicer.toolpath import Kind, Toolpath


def _islands(n=12, pitch=40.0, half=8.0, hatch=1.0, layers=2, seed=3):
    """An n x n array of square islands: a closed contour and hatch rows each, all shuffled."""
    rng = np.random.default_rng(seed)
    layer_z = np.arange(layers) * 1.0
    parts = []
    for li, z in enumerate(layer_z):
        cs = [(i * pitch, j * pitch) for i in range(n) for j in range(n)]
        conts = []
        for k in rng.permutation(len(cs)):
            cx, cy = cs[k]
            sq = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]]) * (half + 1) + [cx, cy]
            conts.append(np.column_stack([sq, np.full(5, z)]))
        pts = np.concatenate(conts)
        m = len(conts)
        parts.append(Toolpath(x_um=pts[:, 0], y_um=pts[:, 1], z_um=pts[:, 2], power_mw=np.full(len(pts), 4.0),
                              mark_start=np.arange(0, 5 * m + 1, 5), mark_kind=np.full(m, Kind.CONTOUR),
                              mark_layer=np.full(m, li), mark_block=np.full(m, -1), mark_speed_um_s=np.full(m, 500.0),
                              layer_z_um=layer_z))
        ys = np.arange(-half + hatch / 2, half, hatch)
        p0 = np.array([[cx - half, cy + y, z] for cx, cy in cs for y in ys])
        p1 = p0 + [2 * half, 0, 0]
        flip = rng.random(len(p0)) < 0.5
        a, b = np.where(flip[:, None], p1, p0), np.where(flip[:, None], p0, p1)
        perm = rng.permutation(len(p0))
        parts.append(Toolpath.from_segments(a[perm], b[perm], Kind.HATCH, li, 1000.0, 5.0, layer_z))
    return Toolpath.concat(parts, layer_z_um=layer_z)


def _mark_set(tp):
    """Each mark as a sorted tuple of rounded points (orientation and rotation free)."""
    out = []
    for m in range(tp.n_marks):
        p = tp.mark_points(m)
        if len(p) > 2 and np.array_equal(p[0], p[-1]):
            p = p[:-1]
        out.append((int(tp.mark_kind[m]), int(tp.mark_layer[m]), tuple(sorted(map(tuple, np.round(p, 9))))))
    return sorted(out)


def test_islands_jump_shorter_and_same_marks():
    tp = _islands()
    out, rep = order_marks(tp)
    out.check()
    assert rep["jump_um_before"] == run_jump_length_um(tp)
    assert rep["jump_um_after"] == run_jump_length_um(out)
    assert rep["jump_um_after"] < 0.1 * rep["jump_um_before"]
    assert rep["n_runs"] == 2 and rep["n_reversed"] > 0 and rep["n_rotated"] > 0
    assert _mark_set(out) == _mark_set(tp)
    # runs kept and contours (first group in each layer) kept before hatches
    np.testing.assert_array_equal(out.mark_layer, tp.mark_layer)
    np.testing.assert_array_equal(out.mark_kind, tp.mark_kind)
    np.testing.assert_allclose(np.sort(out.mark_lengths()), np.sort(tp.mark_lengths()))


def test_serpentine_rectangle_jumps_exactly_one_spacing():
    rng = np.random.default_rng(1)
    ys = np.arange(20) * 0.5
    p0 = np.column_stack([np.zeros(20), ys, np.zeros(20)])
    p1 = p0 + [100.0, 0, 0]
    perm = rng.permutation(20)
    tp = Toolpath.from_segments(p0[perm], p1[perm], Kind.HATCH, 0, 1000.0, 5.0, [0.0])
    out, rep = order_marks(tp)
    np.testing.assert_allclose(out.jump_lengths(), 0.5, atol=1e-12)
    assert rep["jump_um_after"] == 19 * 0.5
    # rows alternate direction
    d = out.x_um[1::2] - out.x_um[0::2]
    np.testing.assert_array_equal(np.sign(d), np.tile([1.0, -1.0], 10) * np.sign(d[0]))


def test_closed_contour_rotated_to_nearest_vertex():
    # an open mark ending next to vertex 2 of a square contour
    line = Toolpath.from_segments([[-50, 0, 0]], [[10.5, 10.5, 0]], Kind.CONTOUR, 0, 100.0, 1.0, [0.0])
    sq = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0], [0, 0, 0]], float)
    c = Toolpath(x_um=sq[:, 0], y_um=sq[:, 1], z_um=sq[:, 2], power_mw=np.arange(5.0), mark_start=[0, 5],
                 mark_kind=[Kind.CONTOUR], mark_layer=[0], mark_block=[-1], mark_speed_um_s=[100.0], layer_z_um=[0.0])
    out, rep = order_marks(Toolpath.concat([line, c]))
    q = out.mark_points(1)
    np.testing.assert_array_equal(q, sq[[2, 3, 0, 1, 2]])
    np.testing.assert_array_equal(out.power_mw[2:], [2, 3, 0, 1, 2])
    assert rep["n_rotated"] == 1


def test_ordering_stitched_keeps_blocks_and_is_deterministic():
    tp = stitch(_islands(n=8, pitch=60.0), load_printer("lab-daq-galvo"))
    assert len(tp.blocks) > 1
    a, ra = order_marks(tp)
    b, rb = order_marks(tp)
    np.testing.assert_array_equal(a.mark_block, tp.mark_block)
    assert ra == rb
    for name in ("x_um", "y_um", "z_um", "power_mw", "mark_start"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert ra["jump_um_after"] < ra["jump_um_before"]


def test_nearest_neighbour_many_marks():
    # 40k short random strokes in one layer: greedy order with the grid, far shorter jumps
    rng = np.random.default_rng(7)
    p0 = np.column_stack([rng.random((40000, 2)) * 1000, np.zeros(40000)])
    p1 = p0 + np.column_stack([rng.normal(size=(40000, 2)), np.zeros(40000)])
    tp = Toolpath.from_segments(p0, p1, Kind.LATTICE, 0, 1000.0, 5.0, [0.0])
    out, rep = order_marks(tp)
    assert rep["jump_um_after"] < 0.05 * rep["jump_um_before"]
    assert sorted(map(tuple, np.round(out.points(), 9))) == sorted(map(tuple, np.round(tp.points(), 9)))


def test_inplace_gives_the_same_toolpath():
    tp = stitch(_islands(n=6, pitch=60.0), load_printer("lab-daq-galvo"))
    a, ra = order_marks(tp)
    b, rb = order_marks(tp, inplace=True)
    assert b is tp and ra == rb
    for name in ("x_um", "y_um", "z_um", "power_mw", "mark_start", "mark_kind", "mark_layer", "mark_block",
                 "mark_speed_um_s"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert rb["jump_um_after"] < 0.2 * rb["jump_um_before"]
