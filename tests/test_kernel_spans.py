"""Span kernel: volumes, containment, winding rule, exact tie-breaking, determinism."""

import numba
import numpy as np
import pytest
import trimesh

from bioslicer.errors import BioslicerError
from bioslicer.mesh import solid_from_trimesh
from bioslicer.slicing import Spans, layer_heights, slice_spans, span_boolean

DZ, DY = 0.5, 0.25


def _box(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    b = trimesh.creation.box(extents=hi - lo)
    b.apply_translation((lo + hi) / 2)
    return b


def _hollow_sphere(r_out=20.0, r_in=12.0):
    outer = trimesh.creation.icosphere(4, radius=r_out)
    inner = trimesh.creation.icosphere(4, radius=r_in)
    inner.invert()
    return trimesh.util.concatenate([outer, inner])


def _sliced_volume(m, dz=DZ, dy=DY, angle=0.0):
    s = solid_from_trimesh(m)
    lo, hi = s.bounds_um
    z = layer_heights(lo[2], hi[2], dz)
    sp = slice_spans(s, z, dy, angle_deg=angle, row_offset_um=0.5 * dy)
    return sp.volume_um3(dz), sp


SHAPES = {
    "cube": lambda: _box((0, 0, 0), (13.3, 7.1, 9.7)),
    "sphere": lambda: trimesh.creation.icosphere(4, radius=15.0),
    "cylinder": lambda: trimesh.creation.cylinder(radius=8.0, height=20.0, sections=64),
    "torus": lambda: trimesh.creation.torus(major_radius=12.0, minor_radius=4.0, major_sections=64,
                                            minor_sections=32),
    "hollow_sphere": _hollow_sphere,
}


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("angle", [0.0, 37.0])
def test_volume_matches_mesh(name, angle):
    m = SHAPES[name]()
    vol, sp = _sliced_volume(m, angle=angle)
    # sampling error is bounded by the surface area times about half a voxel
    tol = m.area * (DY + DZ) / 4
    assert abs(vol - m.volume) <= tol, (vol, m.volume, tol)
    assert sp.n_spans > 0


def test_analytic_sphere_and_hollow_volume_converge():
    m = trimesh.creation.icosphere(5, radius=15.0)
    vol, _ = _sliced_volume(m, dz=0.25, dy=0.1)
    assert abs(vol - 4 / 3 * np.pi * 15**3) / (4 / 3 * np.pi * 15**3) < 0.005
    vol_h, _ = _sliced_volume(_hollow_sphere(), dz=0.25, dy=0.1)
    expect = 4 / 3 * np.pi * (20**3 - 12**3)
    assert abs(vol_h - expect) / expect < 0.01


def _inside_from_spans(sp, k, v, u):
    """Membership of points (layer k, row value v, position u) in the spans."""
    r0, r1 = sp.layer_row_start[k], sp.layer_row_start[k + 1]
    rows = sp.row_v_um[r0:r1]
    out = np.zeros(len(u), bool)
    for i in range(len(u)):
        hit = np.flatnonzero(rows == v[i])
        if len(hit) == 0:
            continue
        r = r0 + hit[0]
        a, b = sp.row_span_start[r], sp.row_span_start[r + 1]
        u0, u1 = sp.span_u0_um[a:b], sp.span_u1_um[a:b]
        out[i] = np.any((u0 <= u[i]) & (u[i] < u1))
    return out


def test_agrees_with_trimesh_containment():
    m = trimesh.creation.torus(major_radius=12.0, minor_radius=4.0, major_sections=48, minor_sections=24)
    s = solid_from_trimesh(m)
    rng = np.random.default_rng(1)
    z = np.round(rng.uniform(-4.5, 4.5, 40), 3)
    sp = slice_spans(s, z, 0.5, row_offset_um=0.0)
    n = 0
    mism = 0
    for k in range(len(z)):
        v = rng.integers(-34, 34, 40) * 0.5
        u = rng.uniform(-17, 17, 40)
        mine = _inside_from_spans(sp, k, v, u)
        pts = np.column_stack([u, v, np.full(len(u), z[k])])
        ref = m.contains(pts)
        mism += int(np.sum(mine != ref))
        n += len(u)
    assert n == 1600
    assert mism <= 2  # ray-cast containment is occasionally wrong exactly at a surface


def test_overlapping_shells_print_as_union():
    a = _box((0, 0, 0), (10, 10, 10))
    b = _box((5, 0, 0), (15, 10, 10))
    s = solid_from_trimesh(trimesh.util.concatenate([a, b]))
    z = layer_heights(0, 10, 1.0)
    sp = slice_spans(s, z, 1.0, row_offset_um=0.5)
    assert sp.volume_um3(1.0) == pytest.approx(1500.0, abs=1e-9)  # even-odd would give 1000
    # one span per row, [0, 15)
    assert sp.n_spans == sp.n_rows == 10 * 10
    assert np.all(sp.span_u0_um == 0.0) and np.all(sp.span_u1_um == 15.0)


def test_vessel_like_overlapping_tubes_union():
    t1 = trimesh.creation.cylinder(radius=5.0, height=40.0, sections=48)
    t2 = t1.copy()
    t2.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    both = trimesh.util.concatenate([t1, t2])
    union = trimesh.boolean.union([t1, t2], engine="manifold")
    z = layer_heights(-20, 20, 0.5)
    a = slice_spans(solid_from_trimesh(both), z, 0.2, angle_deg=30.0)
    b = slice_spans(solid_from_trimesh(union), z, 0.2, angle_deg=30.0)
    assert a.volume_um3(0.5) == pytest.approx(union.volume, rel=0.01)
    assert a.volume_um3(0.5) == pytest.approx(b.volume_um3(0.5), rel=2e-3)


def test_inverted_inner_shell_is_cavity():
    outer = _box((0, 0, 0), (20, 20, 20))
    inner = _box((5, 5, 5), (15, 15, 15))
    inner.invert()
    s = solid_from_trimesh(trimesh.util.concatenate([outer, inner]))
    z = layer_heights(0, 20, 1.0)
    sp = slice_spans(s, z, 1.0, row_offset_um=0.5)
    assert sp.volume_um3(1.0) == pytest.approx(8000.0 - 1000.0, abs=1e-9)
    # overlapping inverted shells subtract their union (positive winding rule)
    i2 = _box((10, 5, 5), (18, 15, 15))
    i2.invert()
    s2 = solid_from_trimesh(trimesh.util.concatenate([outer, inner, i2]))
    assert slice_spans(s2, z, 1.0, row_offset_um=0.5).volume_um3(1.0) == pytest.approx(8000 - 1300, abs=1e-9)


@pytest.mark.parametrize("angle", [0.0, 90.0, 180.0, -90.0])
@pytest.mark.parametrize("subdivide", [False, True])
def test_rows_and_layers_on_vertices_edges_faces_give_exact_cube(angle, subdivide):
    m = _box((0, 0, 0), (8, 8, 8))
    if subdivide:  # vertices inside the faces, on row and layer positions
        v, f = trimesh.remesh.subdivide(m.vertices, m.faces)
        v, f = trimesh.remesh.subdivide(v, f)
        m = trimesh.Trimesh(v, f)
    s = solid_from_trimesh(m)
    z = np.arange(-2.0, 10.5, 0.5)  # includes 0 and 8 exactly, and the 2-, 4-, 6-µm vertex planes
    sp = slice_spans(s, z, 0.5, angle_deg=angle, row_offset_um=0.0)
    inside = (z >= 0) & (z < 8)
    per_layer_rows = np.diff(sp.layer_row_start)
    assert np.all(per_layer_rows[inside] == 16) and np.all(per_layer_rows[~inside] == 0)
    assert sp.n_spans == sp.n_rows  # no stripes, no split spans
    x0, y0, x1, y1 = sp.span_xy()
    lo_x, hi_x = np.minimum(x0, x1), np.maximum(x0, x1)
    lo_y, hi_y = np.minimum(y0, y1), np.maximum(y0, y1)
    across = y0 if angle % 180 == 0 else x0  # the coordinate that is constant along a row
    along_lo, along_hi = (lo_x, hi_x) if angle % 180 == 0 else (lo_y, hi_y)
    assert np.all(along_lo == 0) and np.all(along_hi == 8)
    rows = np.unique(across)
    assert len(rows) == 16 and np.all(np.diff(rows) == 0.5) and rows.min() >= 0 and rows.max() <= 8
    assert sp.volume_um3(0.5) == 512.0


def test_exact_cube_row_positions():
    s = solid_from_trimesh(_box((0, 0, 0), (4, 4, 4)))
    sp = slice_spans(s, [0.0, 2.0, 4.0], 1.0)
    assert list(np.diff(sp.layer_row_start)) == [4, 4, 0]
    assert list(sp.row_v_um[:4]) == [0.0, 1.0, 2.0, 3.0]


def test_deterministic_across_runs_threads_and_layer_subsets():
    m = trimesh.creation.torus(major_radius=10.0, minor_radius=3.0)
    s = solid_from_trimesh(m)
    z = layer_heights(-3, 3, 0.25)
    ang = (np.arange(len(z)) * 30.0) % 180
    a = slice_spans(s, z, 0.1, angle_deg=ang)
    b = slice_spans(s, z, 0.1, angle_deg=ang)
    assert a.digest() == b.digest()
    n0 = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = slice_spans(s, z, 0.1, angle_deg=ang)
    finally:
        numba.set_num_threads(n0)
    assert c.digest() == a.digest()
    sub = slice_spans(s, z[7:15], 0.1, angle_deg=ang[7:15])
    assert sub.same_as(a.layers(7, 15))
    rev = slice_spans(s, z[::-1], 0.1, angle_deg=ang[::-1])
    assert rev.layer(0).same_as(a.layer(len(z) - 1))


def test_region_clip():
    s = solid_from_trimesh(_box((0, 0, 0), (10, 10, 10)))
    z = layer_heights(0, 10, 1.0)
    sp = slice_spans(s, z, 0.5, row_offset_um=0.25, region_um=((2, 3), (6, 20)))
    assert sp.volume_um3(1.0) == pytest.approx(4 * 7 * 10, abs=1e-9)
    assert sp.span_u0_um.min() == 2 and sp.span_u1_um.max() == 6
    assert sp.row_v_um.min() >= 3 and sp.row_v_um.max() < 10
    # rotated rows: the clipped area is still the box intersection
    sp2 = slice_spans(s, z, 0.05, angle_deg=45.0, region_um=((2, 3), (6, 20)))
    assert sp2.volume_um3(1.0) == pytest.approx(280.0, rel=0.02)


def test_span_boolean_ops():
    z = layer_heights(0, 10, 1.0)
    a = slice_spans(solid_from_trimesh(_box((0, 0, 0), (10, 10, 10))), z, 1.0, row_offset_um=0.5)
    b = slice_spans(solid_from_trimesh(_box((5, 5, 0), (15, 15, 10))), z, 1.0, row_offset_um=0.5)
    assert span_boolean(a, b, "union").volume_um3(1.0) == pytest.approx(1750)
    assert span_boolean(a, b, "intersection").volume_um3(1.0) == pytest.approx(250)
    assert span_boolean(a, b, "difference").volume_um3(1.0) == pytest.approx(750)
    with pytest.raises(BioslicerError):
        span_boolean(a, slice_spans(solid_from_trimesh(_box((0, 0, 0), (1, 1, 1))), z, 0.5), "union")


def test_bad_parameters_are_user_errors():
    s = solid_from_trimesh(_box((0, 0, 0), (1, 1, 1)))
    with pytest.raises(BioslicerError, match="row spacing"):
        slice_spans(s, [0.5], 0.0)
    with pytest.raises(BioslicerError, match="slice distance"):
        layer_heights(0, 1, -1)
    with pytest.raises(BioslicerError, match="angle"):
        slice_spans(s, [0.5, 0.6], 0.1, angle_deg=[0, 1, 2])


def test_layer_heights_mid_layer():
    z = layer_heights(0.0, 10.0, 3.0)
    assert list(z) == [1.5, 4.5, 7.5]  # 10.5 is not below 10
    assert len(layer_heights(0.0, 1.0, 0.5)) == 2


def test_many_crossings_per_row_are_sorted():
    # 30 separate bars along x: every row crosses 60 faces (the long-row sort path)
    bars = [_box((3 * i, 0, 0), (3 * i + 2, 5, 1)) for i in range(30)]
    order = np.random.default_rng(3).permutation(30)  # faces in no particular x order
    s = solid_from_trimesh(trimesh.util.concatenate([bars[i] for i in order]))
    sp = slice_spans(s, [0.5], 1.0, row_offset_um=0.5)
    assert sp.n_rows == 5 and sp.n_spans == 150
    assert np.array_equal(np.diff(sp.row_span_start), [30] * 5)
    assert np.array_equal(sp.span_u0_um, np.tile(np.arange(30) * 3.0, 5))
    assert np.array_equal(sp.span_u1_um, np.tile(np.arange(30) * 3.0 + 2, 5))


def test_merged_spans_and_region_slack_pack_like_single_layers():
    # overlapping shells merge spans (fewer than crossings / 2) and a region leaves slack:
    # the packed result must equal the layer-by-layer one
    t1 = trimesh.creation.cylinder(radius=5.0, height=30.0, sections=40)
    t2 = t1.copy()
    t2.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    s = solid_from_trimesh(trimesh.util.concatenate([t1, t2, _box((-2, -2, -2), (12, 3, 1))]))
    z = layer_heights(-6, 6, 0.5)
    for region in (None, ((-3.3, -20.0), (8.1, 2.7))):
        full = slice_spans(s, z, 0.25, angle_deg=37.0, region_um=region)
        one = Spans.concat([slice_spans(s, z[k:k + 1], 0.25, angle_deg=37.0, region_um=region)
                            for k in range(len(z))])
        assert full.same_as(one) and full.n_spans > 0
        assert np.all(full.span_u1_um > full.span_u0_um)
