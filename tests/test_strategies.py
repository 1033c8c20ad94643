"""Scan strategies through plan_toolpath: exact line counts and lengths on boxes, angles,
contour offsets, min-length drops, scaffold fraction, lattice pitch, channels left empty."""

import math
from dataclasses import replace

import numpy as np
import pytest
import trimesh

from bioslicer.errors import BioslicerError
from bioslicer.planning import plan_toolpath
from bioslicer.printers import load_printer
from bioslicer.recipe import Recipe
from bioslicer.toolpath import Kind

# oil-immersion-like light side (depth counted from the part bottom); the bundled 25x is DiLL (from above)
P = replace(load_printer("nanoscribe-gt2-25x"), light_from="below")


def _solid(mesh):
    try:
        from bioslicer.mesh import solid_from_trimesh
    except ImportError:  # mesh intake not there yet: slicing takes a trimesh in µm too
        return mesh
    return solid_from_trimesh(mesh, name="test")


def box(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    m = trimesh.creation.box(extents=hi - lo)
    m.apply_translation((lo + hi) / 2)
    return m


def plan(mesh, **kw):
    base = dict(hatch_um=0.5, slice_um=1.0, hatch_angle_deg=0.0, hatch_angle_step_deg=0.0, contour_count=0,
                min_segment_um=0.0)
    base.update(kw)
    tp, rep = plan_toolpath(_solid(mesh), Recipe().updated(**base), P)
    tp.check()
    return tp, rep


def kind(tp, k):
    return tp.select_marks(tp.mark_kind == int(k))


def test_slab_hatch_exact_lines_and_lengths():
    tp, rep = plan(box((0, 0, 0), (20, 20, 2)))
    assert tp.n_layers == 2 and np.allclose(tp.layer_z_um, [0.5, 1.5])
    assert tp.n_marks == 2 * 40 and rep["marks_by_kind"]["hatch"] == 80 and rep["dropped_segments"] == 0
    np.testing.assert_allclose(tp.mark_lengths(), 20.0)
    assert rep["mark_length_um"] == pytest.approx(2 * 40 * 20.0)
    for k, layer in tp.iter_layers():
        y = layer.y_um[0::2]
        np.testing.assert_allclose(y, 0.25 + 0.5 * np.arange(40))  # rows bottom-up at h/2 + j h
        dx = layer.x_um[1::2] - layer.x_um[0::2]
        assert np.all(dx[0::2] > 0) and np.all(dx[1::2] < 0)  # serpentine
        assert np.all(layer.z_um == tp.layer_z_um[k])
    assert np.all(tp.mark_block == -1) and np.all(np.diff(tp.mark_layer) >= 0)
    uni, _ = plan(box((0, 0, 0), (20, 20, 2)), serpentine=False)
    assert np.all(uni.x_um[1::2] > uni.x_um[0::2])


def test_hatch_angle_steps_per_layer():
    tp, _ = plan(box((0, 0, 0), (20, 20, 4)), hatch_angle_deg=15.0, hatch_angle_step_deg=30.0, serpentine=False)
    for k, layer in tp.iter_layers():
        ang = np.degrees(np.arctan2(layer.y_um[1::2] - layer.y_um[0::2], layer.x_um[1::2] - layer.x_um[0::2]))
        np.testing.assert_allclose(np.mod(ang, 180.0), (15.0 + 30.0 * k) % 180.0, atol=1e-9)
        # rows h apart cover the square: sum(length) * h = area up to the row quantisation at the edges
        assert layer.mark_lengths().sum() * 0.5 == pytest.approx(400.0, rel=0.03)


def test_contours_at_stated_offsets_and_hatch_inset():
    tp, rep = plan(box((0, 0, 0), (20, 20, 1)), contour_count=3, contour_spacing_um=0.3, contour_offset_um=0.1,
                   hatch_inset_um=1.0)
    c = kind(tp, Kind.CONTOUR)
    assert c.n_marks == 3 and tp.mark_kind[0] == Kind.CONTOUR  # contours first in the layer
    for i in range(3):
        pts = c.mark_points(i)
        d = 0.1 + 0.3 * i
        np.testing.assert_allclose(pts[0], pts[-1])  # closed
        np.testing.assert_allclose(pts[:, :2].min(axis=0), [d, d], atol=1e-9)
        np.testing.assert_allclose(pts[:, :2].max(axis=0), [20 - d, 20 - d], atol=1e-9)
        assert c.mark_lengths()[i] == pytest.approx(4 * (20 - 2 * d))
    h = kind(tp, Kind.HATCH)
    inset = 0.1 + 1.0  # hatch inset measured from the outer contour
    np.testing.assert_allclose(h.mark_lengths(), 20 - 2 * inset, atol=1e-9)
    assert h.y_um.min() >= inset and h.y_um.max() <= 20 - inset
    assert h.n_marks == sum(1 for j in range(40) if inset < 0.25 + 0.5 * j < 20 - inset)


def test_short_segments_dropped_and_counted():
    mesh = trimesh.util.concatenate([box((0, 0, 0), (20, 20, 2)), box((30, 0, 0), (30.3, 20, 2))])
    tp, rep = plan(mesh, min_segment_um=0.5)
    assert rep["dropped_segments"] == 2 * 40  # every row of the 0.3 µm wide strip, both layers
    assert tp.n_marks == 2 * 40 and tp.x_um.max() == pytest.approx(20.0)
    assert any("dropped 80 segments" in w for w in rep["warnings"])


def test_shell_and_scaffold_fraction_of_solid():
    mesh = box((0, 0, 0), (40, 40, 8))
    solid, _ = plan(mesh)
    assert solid.mark_lengths().sum() == pytest.approx(8 * 80 * 40.0)
    sc, rep = plan(mesh, strategy="shell-scaffold", skin_layers=2, scaffold_pitch_um=10.0)
    skin, walls = kind(sc, Kind.SKIN), kind(sc, Kind.SCAFFOLD)
    assert sorted(set(skin.mark_layer.tolist())) == [0, 1, 6, 7]
    assert skin.mark_lengths().sum() == pytest.approx(4 * 80 * 40.0)
    assert sorted(set(walls.mark_layer.tolist())) == [2, 3, 4, 5]
    assert walls.mark_lengths().sum() == pytest.approx(4 * 2 * 4 * 40.0)  # 4 layers, x and y, 4 walls, 40 µm
    frac = sc.mark_lengths().sum() / solid.mark_lengths().sum()
    assert frac == pytest.approx((12800 + 1280) / 25600)
    ev, _ = plan(mesh, strategy="shell-scaffold", skin_layers=2, scaffold_pitch_um=10.0, scaffold_every_n_layers=2)
    assert sorted(set(kind(ev, Kind.SCAFFOLD).mark_layer.tolist())) == [2, 4]


def test_woodpile_struts_at_pitch_alternating():
    tp, rep = plan(box((0.5, 0.5, 0), (37.5, 37.5, 4)), strategy="woodpile", slice_um=0.5, lattice_pitch_um=10.0,
                   lattice_strut_height_um=1.0, contour_count=1)
    s = kind(tp, Kind.LATTICE)
    assert rep["marks_by_kind"]["contour"] == 8
    want = {0: ("x", [5, 15, 25, 35]), 2: ("y", [5, 15, 25, 35]), 4: ("x", [10, 20, 30]), 6: ("y", [10, 20, 30])}
    for k, (axis, pos) in want.items():
        for kk in (k, k + 1):  # both layers of a pile write the same struts
            m = s.select_marks(s.mark_layer == kk)
            if axis == "x":  # struts along x at fixed y
                assert np.allclose(m.y_um[0::2], m.y_um[1::2])
                got = np.unique(m.y_um)
            else:
                assert np.allclose(m.x_um[0::2], m.x_um[1::2])
                got = np.unique(m.x_um)
            np.testing.assert_allclose(got, pos)
            np.testing.assert_allclose(np.diff(got), 10.0)
            np.testing.assert_allclose(m.mark_lengths(), 37.0)


def test_gyroid_sheet_points_inside_sheet():
    cell, t = 10.0, 1.0
    tp, rep = plan(box((0, 0, 0), (20, 20, 3)), strategy="gyroid", gyroid_cell_um=cell, gyroid_thickness_um=t,
                   hatch_um=0.25)
    s = kind(tp, Kind.LATTICE)
    assert s.n_marks > 100
    k = 2 * math.pi / cell
    for a in (0.25, 0.5, 0.75):  # points along the marks
        x = s.x_um[0::2] * (1 - a) + s.x_um[1::2] * a
        y = s.y_um[0::2] * (1 - a) + s.y_um[1::2] * a
        X, Y, Z = k * x, k * y, k * s.z_um[0::2]
        g = np.sin(X) * np.cos(Y) + np.sin(Y) * np.cos(Z) + np.sin(Z) * np.cos(X)
        gx = k * (np.cos(X) * np.cos(Y) - np.sin(Z) * np.sin(X))
        gy = k * (-np.sin(X) * np.sin(Y) + np.cos(Y) * np.cos(Z))
        gz = k * (-np.sin(Y) * np.sin(Z) + np.cos(Z) * np.cos(X))
        assert np.all(np.abs(g) / np.sqrt(gx**2 + gy**2 + gz**2) <= t / 2 + 1e-3)
    # gyroid area density ~3.1 / cell: sheet volume fraction ~ 3.1 t / cell
    frac = s.mark_lengths().sum() * 0.25 / (400.0 * 3)
    assert 0.22 < frac < 0.40


def test_channels_leave_lumen_empty():
    from bioslicer.slicing import slice_spans

    lumen = trimesh.creation.cylinder(radius=3.0, height=40.0, sections=48)
    lumen.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))  # along x
    tp, rep = plan(lumen, strategy="channels", channel_block_size_um=[20.0, 16.0, 12.0], contour_count=1)
    assert rep["channel_block_um"] == [[-10.0, -8.0, -6.0], [10.0, 8.0, 6.0]]
    h = kind(tp, Kind.HATCH)
    assert h.x_um.min() >= -10 - 1e-9 and h.x_um.max() <= 10 + 1e-9
    # the kernel's spans of the lumen, clipped to the block, and the block rows: hatch = block - lumen
    lz = tp.layer_z_um
    lum = slice_spans(lumen, lz, 0.5, angle_deg=0.0, row_offset_um=0.25)
    v = lum.span_row_v()
    inside = (v > -8) & (v < 8)
    lum_len = np.clip(lum.span_u1_um, -10, 10) - np.clip(lum.span_u0_um, -10, 10)
    per_layer = np.bincount(lum.span_layer()[inside], weights=lum_len[inside], minlength=len(lz))
    got = np.bincount(h.mark_layer, weights=h.mark_lengths(), minlength=len(lz))
    np.testing.assert_allclose(got, 32 * 20.0 - per_layer, atol=1e-6)
    # no hatch point inside the lumen (radius 3 minus the polygon's sagitta)
    for a in np.linspace(0, 1, 9):
        y = h.y_um[0::2] * (1 - a) + h.y_um[1::2] * a
        assert np.all(np.hypot(y, h.z_um[0::2]) >= 3.0 * math.cos(math.pi / 48) - 1e-6)
    assert per_layer.sum() > 0 and np.any(np.bincount(kind(tp, Kind.CONTOUR).mark_layer) == 2)  # block + lumen


def test_depth_compensation_and_field_through_plan():
    mesh = box((0, 0, 10), (10, 10, 14))
    tp, rep = plan(mesh, depth_mode="exponential", attenuation_length_um=10.0, power_mw={"hatch": 20.0})
    first = tp.mark_start[:-1]
    want = 20.0 * np.exp((tp.z_um[first] - 10.0) / 10.0)  # depth from the part bottom
    half_level = P.max_power_mw / (Recipe().power_levels - 1) / 2   # modulated power is on power_levels levels
    np.testing.assert_allclose(tp.power_mw[first], want, rtol=0, atol=half_level)
    assert rep["cap_first_layer"] is None
    tp2, rep2 = plan_toolpath(_solid(mesh), Recipe().updated(hatch_um=0.5, slice_um=1.0, contour_count=0,
                              power_mw={"hatch": 20.0}, point_distance_um=1.0), P,
                              power_field=lambda x, y, z: 0.5 + x / 20.0)
    np.testing.assert_allclose(tp2.power_mw, 20.0 * (0.5 + tp2.x_um / 20.0), rtol=0, atol=half_level)
    assert np.all(np.diff(tp2.mark_start) == 11) and rep2["subdivided"]


def test_deterministic_and_recipe_in_meta():
    mesh = box((0, 0, 0), (12, 9, 3))
    a, _ = plan(mesh, strategy="shell-scaffold", skin_layers=1, scaffold_pitch_um=3.0, contour_count=2,
                hatch_angle_step_deg=37.0)
    b, _ = plan(mesh, strategy="shell-scaffold", skin_layers=1, scaffold_pitch_um=3.0, contour_count=2,
                hatch_angle_step_deg=37.0)
    for name in ("x_um", "y_um", "z_um", "power_mw", "mark_start", "mark_kind", "mark_layer", "mark_speed_um_s"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert Recipe.from_dict(a.meta["recipe"]).hatch_angle_step_deg == 37.0


def test_power_above_printer_max_is_user_error():
    with pytest.raises(BioslicerError, match="power_mw.hatch"):
        plan(box((0, 0, 0), (5, 5, 2)), power_mw={"hatch": 80.0})
