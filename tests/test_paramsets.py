"""Parameter sets with provenance (issue 19): every mark carries a set id, modulated power is
quantized to ``power_levels`` levels, writers change power only where the set changes, the
manifest lists the sets and ``job info --sets`` prints them."""

import json
import re

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from bioslicer import paramsets
from bioslicer.cli import cli
from bioslicer.errors import BioslicerError
from bioslicer.exposure import apply_exposure
from bioslicer.printers import load_printer
from bioslicer.recipe import Recipe
from bioslicer.toolpath import Kind, Toolpath

P25 = "nanoscribe-gt2-25x"


def _stack(n_layers=5, z_step=2.0):
    """Two hatch lines and one contour per layer, layers z_step apart."""
    p0, p1, kind, layer = [], [], [], []
    for k in range(n_layers):
        z = 0.5 + k * z_step
        for y, kd in ((0.0, Kind.CONTOUR), (1.0, Kind.HATCH), (2.0, Kind.HATCH)):
            p0.append([0.0, y, z])
            p1.append([10.0, y, z])
            kind.append(int(kd))
            layer.append(k)
    lz = 0.5 + np.arange(n_layers) * z_step
    return Toolpath.from_segments(p0, p1, kind, layer, 1e4, 0.0, lz)


def test_unmodulated_sets_are_the_kinds_and_power_is_unchanged():
    pr = load_printer(P25)
    rec = Recipe.from_printer(pr)
    tp, rep = apply_exposure(_stack(), rec, pr)
    assert rep["modulation"] is None
    np.testing.assert_array_equal(tp.mark_set, tp.mark_kind.astype(np.int32))
    # exact recipe values, no rounding when nothing modulates the power
    assert set(np.unique(tp.power_mw)) == {rec.power_mw["contour"], rec.power_mw["hatch"]}
    sets = paramsets.merge_sets([paramsets.block_sets(tp, rec, pr, None)])
    assert [d["id"] for d in sets] == [0, 1]
    assert sets[1]["source"]["recipe_key"] == "power_mw.hatch" and sets[1]["marks"] == 10
    assert sets[0]["speed_um_s"] == rec.speed_um_s["contour"]
    assert sets[0]["laser_on_delay_s"] == pr.laser_on_delay_s


@pytest.mark.parametrize("levels", [4, 256])
def test_depth_compensation_is_quantized_to_power_levels(levels):
    pr = load_printer(P25)
    rec = Recipe.from_printer(pr).updated(depth_mode="linear", depth_slope_per_um=0.05, power_levels=levels)
    tp, rep = apply_exposure(_stack(n_layers=8), rec, pr, surface_z_um=0.0)
    assert rep["modulation"] == "depth"
    step = pr.max_power_mw / (levels - 1)
    lv = tp.power_mw / step
    np.testing.assert_allclose(lv, np.rint(lv), atol=1e-9)           # every point on a level
    # set ids decode back to (kind, level of the mark's first point)
    first = tp.power_mw[tp.mark_start[:-1]]
    want = len(Kind) + tp.mark_kind.astype(int) * levels + np.rint(first / step).astype(int)
    np.testing.assert_array_equal(tp.mark_set, want)
    sets = paramsets.merge_sets([paramsets.block_sets(tp, rec, pr, "depth")])
    assert len(sets) <= 2 * levels
    for d in sets:
        assert d["source"]["modulation"] == "depth" and d["source"]["power_levels"] == levels
        sel = tp.mark_set == d["id"]
        np.testing.assert_allclose(tp.power_mw[tp.mark_start[:-1][sel]], d["power_mw"])
    # 4 levels: at most 4 powers in the whole toolpath, whatever the depth ramp
    if levels == 4:
        assert len(np.unique(tp.power_mw)) <= 4


def test_power_levels_must_be_at_least_two():
    with pytest.raises(BioslicerError, match="power_levels"):
        Recipe(power_levels=1)


def _cube_stl(path, size=12.0):
    trimesh.creation.box(extents=[size, size, size]).export(path)
    return path


def _laser_power_lines(text):
    return [float(m) for m in re.findall(r"^LaserPower\s+([-0-9.]+)", text, flags=re.M)]


def test_job_lists_sets_and_program_changes_power_only_where_the_set_changes(tmp_path):
    from bioslicer.pipeline import slice_to_job

    stl = _cube_stl(tmp_path / "cube.stl")
    ov = {"slice_um": 1.0, "hatch_um": 1.0, "depth_mode": "linear", "depth_slope_per_um": 0.03,
          "power_levels": 16, "power_mw": {"hatch": 10.0, "contour": 8.0}}
    res = slice_to_job(stl, tmp_path / "job", printer=P25, overrides=ov, preview=False)
    sets = res.manifest["parameter_sets"]
    assert sets and all(d["source"]["modulation"] == "depth" for d in sets)
    assert sum(d["marks"] for d in sets) == res.manifest["counts"]["marks"]
    # the program read back: each LaserPower line is a set's power, and there are no more power
    # changes than set changes in the planned marks
    from bioslicer.pipeline import plan_job

    pj = plan_job(stl, printer=P25, overrides=ov)
    changes = int(np.count_nonzero(np.diff(pj.toolpath.mark_set))) + 1
    text = "".join(p.read_text() for p in sorted((tmp_path / "job").rglob("*.gwl")))
    powers = _laser_power_lines(text)
    pr = load_printer(P25)
    set_powers = {round(float(pr.power_to_program(np.array([d["power_mw"]]))[0]), 3) for d in sets}
    assert powers and {round(p, 3) for p in powers} <= set_powers
    assert len(powers) <= changes + len(res.manifest["program"]["files"])
    # job info --sets
    r = CliRunner().invoke(cli, ["job", "info", str(tmp_path / "job"), "--sets"])
    assert r.exit_code == 0, r.output
    assert "power_mw.hatch × depth" in r.output and len(r.output.splitlines()) == len(sets) + 1
    r = CliRunner().invoke(cli, ["job", "info", str(tmp_path / "job"), "--sets", "--json"])
    assert [d["id"] for d in json.loads(r.output)] == [d["id"] for d in sets]
    assert "parameter sets (power modulated by depth, 16 levels)" in (tmp_path / "job" / "report.txt").read_text()
