"""Spans container helpers: frames, per-layer views, areas, concatenation."""

import numpy as np
import pytest
import trimesh

from bioslicer.mesh import solid_from_trimesh
from bioslicer.slicing import Spans, frame_cos_sin, layer_heights, slice_spans


def _slab():
    b = trimesh.creation.box(extents=(6.0, 4.0, 2.0))
    b.apply_translation((3.0, 2.0, 1.0))  # [0,6] x [0,4] x [0,2]
    return solid_from_trimesh(b)


def test_span_xy_back_in_part_coordinates():
    s = _slab()
    z = layer_heights(0, 2, 1.0)
    sp = slice_spans(s, z, 0.5, angle_deg=[0.0, 90.0])
    x0, y0, x1, y1 = sp.span_xy()
    lay = sp.span_layer()
    # layer 0 rows along x: y constant; layer 1 rows along y: x constant
    assert np.all(y0[lay == 0] == y1[lay == 0]) and np.all(x0[lay == 1] == x1[lay == 1])
    assert np.all((np.minimum(x0, x1) >= 0) & (np.maximum(x0, x1) <= 6))
    assert np.all((np.minimum(y0, y1) >= 0) & (np.maximum(y0, y1) <= 4))
    np.testing.assert_allclose(sp.area_um2(), [24.0, 24.0])
    assert sp.total_length_um() == pytest.approx(2 * 24.0 / 0.5)
    assert list(np.unique(sp.span_z())) == list(z)


def test_layer_views_and_concat_roundtrip():
    s = _slab()
    z = layer_heights(0, 2, 0.25)
    sp = slice_spans(s, z, 0.5, angle_deg=(np.arange(len(z)) * 45.0))
    parts = [sp.layers(0, 3), sp.layer(3), sp.layers(4, len(z))]
    assert Spans.concat(parts).same_as(sp)
    one = sp.layer(5)
    assert one.n_layers == 1 and one.layer_row_start[0] == 0 and one.row_span_start[0] == 0
    assert one.area_um2()[0] == pytest.approx(sp.area_um2()[5])
    j = sp.row_index()
    np.testing.assert_array_equal(sp.row_offset_um + j * sp.row_spacing_um, sp.row_v_um)


def test_frame_is_exact_on_right_angles():
    c, s = frame_cos_sin([0, 90, 180, 270, -90, 30])
    assert list(c[:5]) == [1, 0, -1, 0, 0] and list(s[:5]) == [0, 1, 0, -1, -1]
    assert c[5] == pytest.approx(np.sqrt(3) / 2)


def test_empty_inputs():
    s = _slab()
    sp = slice_spans(s, [], 0.5)
    assert sp.n_layers == 0 and sp.n_spans == 0 and list(sp.layer_row_start) == [0]
    sp = slice_spans(s, [5.0, -1.0], 0.5)  # layers outside the part
    assert sp.n_spans == 0 and list(sp.layer_row_start) == [0, 0, 0] and list(sp.area_um2()) == [0, 0]
