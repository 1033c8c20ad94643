"""Contour chaining and voxelization."""

import numpy as np
import pytest
import shapely
import trimesh

from bioslicer.errors import BioslicerError
from bioslicer.mesh import solid_from_trimesh
from bioslicer.slicing import (Contours, layer_heights, slice_contours, slice_spans, spans_from_contours,
                               voxelize)


def _box(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    b = trimesh.creation.box(extents=hi - lo)
    b.apply_translation((lo + hi) / 2)
    return b


def _hollow():
    outer = trimesh.creation.icosphere(3, radius=20.0)
    inner = trimesh.creation.icosphere(3, radius=10.0)
    inner.invert()
    return solid_from_trimesh(trimesh.util.concatenate([outer, inner]))


def test_cube_contours_are_ccw_squares():
    s = solid_from_trimesh(_box((0, 0, 0), (10, 6, 4)))
    c = slice_contours(s, [0.0, 1.0, 3.999, 4.0])
    assert list(np.diff(c.layer_ring_start)) == [1, 1, 1, 0]
    for k in range(3):
        (ring,) = c.rings(k)
        assert len(ring) >= 4 and not np.array_equal(ring[0], ring[-1])
        assert c.polygons(k).area == pytest.approx(60.0)
        assert c.area_um2()[k] == pytest.approx(60.0)  # CCW: positive
        assert set(map(tuple, np.round(ring, 12))) >= {(0, 0), (10, 0), (10, 6), (0, 6)}


def test_hollow_sphere_layer_has_outer_ccw_and_hole_cw():
    s = _hollow()
    c = slice_contours(s, [0.5])
    rings = c.rings(0)
    assert len(rings) == 2
    areas = sorted(shapely.Polygon(r).area * np.sign(_signed(r)) for r in rings)
    assert areas[0] < 0 < areas[1]
    poly = c.polygons(0)
    assert poly.geom_type == "Polygon" and len(poly.interiors) == 1
    sp = slice_spans(s, [0.5], 0.02)
    assert poly.area == pytest.approx(sp.area_um2()[0], rel=2e-3)


def _signed(r):
    x, y = r[:, 0], r[:, 1]
    return 0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def test_overlapping_shells_contours_are_the_union_outline():
    t1 = trimesh.creation.cylinder(radius=5.0, height=40.0, sections=32)
    t2 = t1.copy()
    t2.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    s = solid_from_trimesh(trimesh.util.concatenate([t1, t2]))
    z = [0.3, 2.0]
    raw = slice_contours(s, z, resolve=False)
    assert list(np.diff(raw.layer_ring_start)) == [2, 2]
    c = slice_contours(s, z)
    assert list(np.diff(c.layer_ring_start)) == [1, 1]
    sp = slice_spans(s, z, 0.01)
    for k in range(2):
        assert c.polygons(k).area == pytest.approx(sp.area_um2()[k], rel=1e-3)
        assert c.polygons(k).is_valid


def test_spans_from_contours_equal_mesh_spans():
    s = _hollow()
    z = layer_heights(-20, 20, 1.0)
    raw = slice_contours(s, z, resolve=False)
    a = slice_spans(s, z, 0.1, angle_deg=30.0)
    b = spans_from_contours(raw, 0.1, angle_deg=30.0)
    assert a.same_as(b)
    # rings offset inwards (shapely buffer) give less area, as the winding rule says
    polys = [raw.polygons(k).buffer(-0.5) for k in range(len(z))]
    inner = Contours.from_polygons(polys, z)
    c = spans_from_contours(inner, 0.1)
    assert c.area_um2().sum() < a.area_um2().sum()
    assert c.area_um2()[20] == pytest.approx(polys[20].area, rel=0.01)


def test_voxelize_cube_exact_and_packed():
    s = solid_from_trimesh(_box((0, 0, 0), (4, 3, 2)))
    g = voxelize(s, 0.5, 0.25)
    assert g.shape_zyx == (8, 6, 8) and g.occupancy.all()
    g2 = voxelize(s, 0.5, 0.25, region_um=((-1, -1, -1), (5, 4, 3)))
    assert g2.shape_zyx == (16, 10, 12)
    assert g2.count() == 8 * 6 * 8
    assert np.array_equal(g2.origin_um, [-1, -1, -1])
    p = voxelize(s, 0.5, 0.25, region_um=((-1, -1, -1), (5, 4, 3)), packed=True)
    assert p.occupancy.dtype == np.uint8 and p.occupancy.shape == (16, 10, 2)
    assert np.array_equal(p.dense(), g2.occupancy)
    assert np.array_equal(np.packbits(g2.occupancy, axis=-1), p.occupancy)


def test_voxelize_sphere_volume_and_anisotropy():
    m = trimesh.creation.icosphere(4, radius=10.0)
    g = voxelize(solid_from_trimesh(m), 0.25, 0.75)
    assert g.voxel_um.tolist() == [0.25, 0.25, 0.75]
    assert g.volume_um3() == pytest.approx(m.volume, rel=0.01)


def test_voxelize_memory_guard():
    s = solid_from_trimesh(_box((0, 0, 0), (100, 100, 100)))
    with pytest.raises(BioslicerError, match=r"GB.*max_bytes"):
        voxelize(s, 0.05, 0.1)
    with pytest.raises(BioslicerError, match="max_bytes"):
        voxelize(s, 1.0, 1.0, max_bytes=10_000)
    assert voxelize(s, 1.0, 1.0, max_bytes=100 * 100 * 13, packed=True).count() == 10**6


def _sq(x0, y0, x1, y1, ccw=True):
    r = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
    return r if ccw else r[::-1].copy()


def _clean(rings):
    from bioslicer.kernel.contours import clean_layers

    xy = np.concatenate(rings)
    rps = np.concatenate([[0], np.cumsum([len(r) for r in rings])]).astype(np.int64)
    c = Contours(np.zeros(1), np.array([0, len(rings)], np.int64), rps, xy)
    return bool(clean_layers(c.layer_ring_start, c.ring_point_start, c.xy_um, np.array([0, 1], np.int64))[0])


@pytest.mark.parametrize("rings, expect", [
    ([_sq(0, 0, 1, 1), _sq(2, 0, 3, 1)], True),                          # two islands
    ([_sq(0, 0, 10, 10), _sq(2, 2, 4, 4, ccw=False)], True),              # shell + hole
    ([_sq(0, 0, 10, 10), _sq(2, 2, 8, 8, ccw=False), _sq(3, 3, 5, 5)], True),  # island in a hole
    ([_sq(0, 0, 2, 2), _sq(1, 1, 3, 3)], False),                          # overlapping shells
    ([_sq(0, 0, 10, 10), _sq(2, 2, 4, 4)], False),                        # shell inside shell: winding 2
    ([_sq(0, 0, 1, 1), _sq(2, 0, 3, 1, ccw=False)], False),               # hole outside everything
    ([_sq(0, 0, 1, 1), _sq(1, 1, 2, 2)], False),                          # touching at a corner
    ([_sq(0, 0, 1, 1), _sq(1, 0, 2, 1)], False),                          # sharing an edge
    ([_sq(0, 0, 10, 10), _sq(0, 2, 4, 4, ccw=False)], False),             # hole touching the shell
])
def test_clean_layer_detection(rings, expect):
    assert _clean(rings) is expect


def test_resolve_keeps_clean_nested_rings_and_unites_touching_shells():
    # hollow box: outer CCW + inner CW, disjoint -> the raw rings are the answer (no shapely)
    outer = _box((0, 0, 0), (10, 10, 10))
    inner = _box((3, 3, 3), (7, 7, 7))
    inner.invert()
    s = solid_from_trimesh(trimesh.util.concatenate([outer, inner]))
    z = [1.0, 5.0]
    raw = slice_contours(s, z, resolve=False)
    c = slice_contours(s, z)
    assert np.array_equal(c.xy_um, raw.xy_um) and np.array_equal(c.layer_ring_start, raw.layer_ring_start)
    assert list(np.diff(c.layer_ring_start)) == [1, 2]
    assert c.area_um2() == pytest.approx([100.0, 84.0])
    # two boxes sharing a face: the rings touch, shapely merges them into one outline
    a, b = _box((0, 0, 0), (5, 4, 2)), _box((5, 0, 0), (9, 4, 2))
    s2 = trimesh.util.concatenate([a, b])  # a trimesh in µm (two shells, not merged)
    c2 = slice_contours(s2, [1.0])
    assert c2.n_rings == 1 and c2.area_um2()[0] == pytest.approx(36.0)
    assert c2.polygons(0).is_valid
