"""Exposure: power per kind, depth compensation, cap warning, power fields, subdivision."""

import math
from dataclasses import replace

import numpy as np
import pytest

from bioslicer.errors import BioslicerError
from bioslicer.exposure import PowerClipError, VolumeField, apply_exposure, depth_factor, subdivide_marks
from bioslicer.printers import load_printer
from bioslicer.recipe import Recipe
from bioslicer.toolpath import Kind, Toolpath

# max 50 mW, speeds 100..125000 µm/s; light from below (depth from the part bottom; the bundled 25x is DiLL)
P = replace(load_printer("nanoscribe-gt2-25x"), light_from="below")
#: modulated power (depth, fields) is rounded to Recipe.power_levels levels (issue 19): half a level, mW
HALF_LEVEL_MW = P.max_power_mw / (Recipe().power_levels - 1) / 2


def _tp(n_layers=5, dz=10.0):
    """One 10 µm hatch line and one contour square per layer, at z = k * dz."""
    lz = np.arange(n_layers) * dz
    parts = []
    for k, z in enumerate(lz):
        h = Toolpath.from_segments([[0, 0, z]], [[10, 0, z]], int(Kind.HATCH), k, 0.0, 0.0, lz)
        sq = np.array([[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], float)
        c = Toolpath(x_um=sq[:, 0], y_um=sq[:, 1], z_um=np.full(5, z), power_mw=np.zeros(5), mark_start=[0, 5],
                     mark_kind=[int(Kind.CONTOUR)], mark_layer=[k], mark_block=[-1], mark_speed_um_s=[0.0],
                     layer_z_um=lz)
        parts += [c, h]
    return Toolpath.concat(parts, layer_z_um=lz)


def test_power_and_speed_per_kind():
    r = Recipe().updated(power_mw={"contour": 10.0, "hatch": 20.0}, speed_um_s={"contour": 1000.0, "hatch": 5000.0})
    tp, rep = apply_exposure(_tp(), r, P, surface_z_um=0.0)
    kind = np.repeat(tp.mark_kind, np.diff(tp.mark_start))
    assert np.all(tp.power_mw[kind == Kind.CONTOUR] == 10.0) and np.all(tp.power_mw[kind == Kind.HATCH] == 20.0)
    assert set(tp.mark_speed_um_s[tp.mark_kind == Kind.HATCH]) == {5000.0}
    assert set(tp.mark_speed_um_s[tp.mark_kind == Kind.CONTOUR]) == {1000.0}
    assert rep["warnings"] == [] and not rep["subdivided"] and tp.n_points == 5 * 7


def test_exponential_depth_compensation_and_power_clip_policy():
    r = Recipe().updated(power_mw={"hatch": 20.0}, depth_mode="exponential", attenuation_length_um=20.0)
    # 20 e^(50/20) = 243.6 mW asked of a 50 mW laser: the slice fails by default, one line naming
    # the largest request, its layer and depth, and how to proceed (issue 16: honest dose)
    with pytest.raises(PowerClipError, match=r"up to 243\.6 mW .*maximum 50 mW \(layer 5, z = 50\.000 µm, "
                                             r"depth 50\.0 µm\).*--allow-power-clip"):
        apply_exposure(_tp(6), r, P, surface_z_um=0.0)
    r = r.updated(allow_power_clip=True)
    tp, rep = apply_exposure(_tp(6), r, P, surface_z_um=0.0)  # layers at z = 0, 10, ..., 50
    hatch_first = tp.mark_start[:-1][tp.mark_kind == Kind.HATCH]
    got = tp.power_mw[hatch_first]
    want = np.minimum(20.0 * np.exp(np.arange(6) * 10.0 / 20.0), 50.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=HALF_LEVEL_MW)
    # 20 e^(20/20) = 54.4 > 50: the clip bites from layer 2 on; reported once, not as a warning
    assert rep["cap_first_layer"] == 2 and rep["power_max_mw"] == 50.0
    assert rep["warnings"] == []
    clip = rep["clip"]
    assert clip["max_request_mw"] == pytest.approx(20.0 * np.exp(2.5)) and clip["layer"] == 5
    assert clip["points"] == int((tp.z_um >= 20.0).sum())


def test_depth_counts_from_the_side_the_light_enters():
    r = Recipe().updated(power_mw={"hatch": 10.0, "contour": 10.0}, depth_mode="linear", depth_slope_per_um=0.01)
    up = replace(P, light_from="above")
    tp, rep = apply_exposure(_tp(6), r, up)      # default surface: the top of the highest layer
    hatch_first = tp.mark_start[:-1][tp.mark_kind == Kind.HATCH]
    top = rep["surface_z_um"]
    np.testing.assert_allclose(tp.power_mw[hatch_first], 10.0 * (1 + 0.01 * (top - np.arange(6) * 10.0)),
                               rtol=0, atol=HALF_LEVEL_MW)
    tp, rep = apply_exposure(_tp(6), r, replace(P, light_from="below"))   # from below: grows with height
    assert tp.power_mw[hatch_first][0] < tp.power_mw[hatch_first][-1]


def test_linear_and_table_depth():
    z = np.array([-5.0, 0.0, 50.0, 100.0, 300.0])
    lin = depth_factor(z, Recipe(depth_mode="linear", depth_slope_per_um=0.002), surface_z_um=0.0)
    np.testing.assert_allclose(lin, [1.0, 1.0, 1.1, 1.2, 1.6])
    tab = Recipe(depth_mode="table", depth_table=[[0, 1.0], [100, 1.5], [200, 2.5]])
    np.testing.assert_allclose(depth_factor(z + 10, tab, surface_z_um=10.0), [1.0, 1.0, 1.25, 1.5, 2.5])


def test_power_field_callable_sampled_along_marks():
    r = Recipe().updated(power_mw={"hatch": 10.0, "contour": 10.0}, point_distance_um=0.5)
    tp, rep = apply_exposure(_tp(1), r, P, power_field=lambda x, y, z: 1.0 + x / 100.0)
    assert rep["subdivided"]
    hatch = tp.select_marks(tp.mark_kind == Kind.HATCH)
    assert hatch.n_points == 21  # 10 µm at 0.5 µm
    np.testing.assert_allclose(hatch.x_um, np.linspace(0, 10, 21))
    np.testing.assert_allclose(hatch.power_mw, 10.0 * (1 + hatch.x_um / 100), rtol=0, atol=HALF_LEVEL_MW)
    contour = tp.select_marks(tp.mark_kind == Kind.CONTOUR)
    assert contour.n_points == 4 * 8 + 1 and contour.mark_lengths()[0] == pytest.approx(16.0)


def test_volume_field_from_npy_and_tiff(tmp_path):
    # factor = 0.5 + 0.01 * x on a grid with 2 µm voxels and origin (-10, 0, 0)
    nz, ny, nx = 3, 4, 21
    xs = -10 + 2.0 * np.arange(nx)
    vol = np.broadcast_to(0.5 + 0.01 * xs, (nz, ny, nx)).astype(np.float32)
    np.save(tmp_path / "f.npy", vol)
    import tifffile

    tifffile.imwrite(tmp_path / "f.tif", vol, photometric="minisblack")
    for name in ("f.npy", "f.tif"):
        f = VolumeField.load(tmp_path / name, voxel_um=(2, 2, 2), origin_um=(-10, 0, 0))
        x = np.array([-10.0, -3.0, 0.0, 7.3, 30.0, 100.0])
        got = f(x, np.full(6, 3.1), np.full(6, 1.7))
        np.testing.assert_allclose(got, 0.5 + 0.01 * np.clip(x, -10, 30), rtol=1e-6)
    with pytest.raises(BioslicerError, match="not found"):
        VolumeField.load(tmp_path / "missing.npy", (1, 1, 1))


def test_subdivide_keeps_end_points():
    tp = _tp(2)
    sub = subdivide_marks(tp, 0.3)
    np.testing.assert_allclose(sub.mark_lengths(), tp.mark_lengths())
    assert np.all(sub.x_um[sub.mark_start[:-1]] == tp.x_um[tp.mark_start[:-1]])
    assert np.all(sub.x_um[sub.mark_start[1:] - 1] == tp.x_um[tp.mark_start[1:] - 1])
    assert sub.segment_lengths()[np.repeat(np.arange(sub.n_marks), np.diff(sub.mark_start) - 1)
                                  + np.arange(sub.n_segments)].max() <= 0.3 + 1e-12
    assert sub.n_points == 2 * (math.ceil(10 / 0.3) + 1 + 4 * math.ceil(4 / 0.3) + 1)


@pytest.mark.parametrize("ov, key", [({"power_mw": {"hatch": 60.0}}, "power_mw.hatch"),
                                     ({"speed_um_s": {"contour": 50.0}}, "speed_um_s.contour")])
def test_exposure_outside_printer_limits(ov, key):
    with pytest.raises(BioslicerError, match=key.replace(".", r"\.")):
        apply_exposure(_tp(1), Recipe().updated(**ov), P)


def test_ramp_field_rises_from_surface():
    import trimesh

    from bioslicer.exposure import ramp_field

    m = trimesh.creation.box(extents=(20, 20, 20))
    m.apply_translation((10, 10, 10))
    f = ramp_field(m, width_um=4.0, min_factor=0.5, voxel_um=0.5)
    got = f(np.array([10.0, 10.0, 10.0, 2.0]), np.array([10.0, 10.0, 10.0, 10.0]), np.array([10.0, 2.0, 0.25, 10.0]))
    np.testing.assert_allclose(got, [1.0, 0.75, 0.5 + 0.5 * 0.25 / 4, 0.75], atol=0.04)


def test_exposure_is_checked_once_per_job(tmp_path, monkeypatch):
    """The job checks the recipe against the printer once, not again in every block."""
    from pathlib import Path

    import bioslicer.exposure as ex
    import bioslicer.planning as planning
    from bioslicer.pipeline import slice_to_job

    calls = []
    real = ex.check_exposure

    def counting(recipe, printer):
        calls.append(printer.name)
        return real(recipe, printer)

    monkeypatch.setattr(ex, "check_exposure", counting)
    monkeypatch.setattr(planning, "check_exposure", counting)
    mesh = Path(__file__).resolve().parents[1] / "meshes" / "calibration.stl"
    res = slice_to_job(mesh, tmp_path / "job", printer="nanoscribe-gt2-63x", preview=False,
                       overrides={"slice_um": 6.0, "hatch_um": 3.0})
    assert res.manifest["counts"]["blocks"] >= 2
    assert calls == ["nanoscribe-gt2-63x"]


def test_voxel_size_and_plausibility_follow_the_recipe(tmp_path):
    """The voxel writer and the mesh size check take the recipe's hatch/slice, not the profile's."""
    import json

    import trimesh

    from bioslicer.mesh import load_mesh
    from bioslicer.programs import write_program
    from bioslicer.stitching import stitch

    pr = load_printer("lab-daq-galvo")
    p0 = np.array([[0.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    tp = Toolpath.from_segments(p0, p0 + [20.0, 0, 0], Kind.HATCH, 0, 5000.0, 10.0, [0.0])
    st = stitch(tp, pr)
    out = write_program(st, pr, tmp_path / "default", name="v", dialect="voxel")
    d = pr.defaults
    assert json.loads(out.main.read_text())["voxel_um"] == [d["hatch_um"], d["hatch_um"], d["slice_um"]]
    st.meta["recipe"] = Recipe.from_printer(pr).updated(hatch_um=0.75, slice_um=1.25).to_dict()
    out = write_program(st, pr, tmp_path / "recipe", name="v", dialect="voxel")
    assert json.loads(out.main.read_text())["voxel_um"] == [0.75, 0.75, 1.25]
    # a part smaller than the profile's default voxel, but not than the recipe's
    box = tmp_path / "tiny.stl"
    trimesh.creation.box(extents=[0.15, 0.15, 0.15]).export(box)
    with pytest.raises(BioslicerError, match="voxel"):
        load_mesh(box, printer=pr)
    fine = Recipe.from_printer(pr).updated(hatch_um=0.05, slice_um=0.05)
    assert load_mesh(box, printer=pr, recipe=fine).bounds_um is not None
