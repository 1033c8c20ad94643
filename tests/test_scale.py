"""Shrink/swell compensation (issue 19): recipe ``scale`` / ``--scale`` scales the part before
slicing and is recorded in the manifest and the report."""

import json

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from bioslicer.cli import cli
from bioslicer.errors import BioslicerError
from bioslicer.mesh import Solid
from bioslicer.placement import place
from bioslicer.recipe import Recipe


def _box(lo, hi) -> Solid:
    b = trimesh.creation.box(bounds=np.array([lo, hi], dtype=float))
    return Solid(b.vertices, b.faces, name="box.stl")


def test_scale_applies_before_placement_and_moves_mesh_keys():
    s = _box([0.0, 0.0, 0.0], [20.0, 10.0, 8.0])
    placed, rec, info = place(s, Recipe(scale=[1.5, 2.0, 1.25], placement="keep", surface_z_um=4.0))
    np.testing.assert_allclose(placed.bounds_um, [[0, 0, 0], [30.0, 20.0, 10.0]])
    assert placed.volume_um3() == pytest.approx(20 * 10 * 8 * 1.5 * 2.0 * 1.25)
    assert info["scale"] == [1.5, 2.0, 1.25]
    assert rec.scale is None and rec.surface_z_um == pytest.approx(5.0)     # planned once, not twice
    # unscaled: nothing recorded
    assert place(s, Recipe(scale=[1.0, 1.0, 1.0]))[2]["scale"] is None


def test_scale_values_are_checked():
    assert Recipe().updated(scale=1.2).scale == [1.2, 1.2, 1.2]
    for bad in ([0.0, 1.0, 1.0], [1.0, 1.0], [-1.0, 1.0, 1.0], [20.0, 1.0, 1.0]):
        with pytest.raises(BioslicerError, match="scale"):
            Recipe().updated(scale=bad)


def test_cli_scale_is_sliced_and_recorded(tmp_path):
    stl = tmp_path / "cube.stl"
    trimesh.creation.box(extents=[10.0, 10.0, 6.0]).export(stl)
    out = tmp_path / "job"
    r = CliRunner().invoke(cli, ["slice", str(stl), "-p", "nanoscribe-gt2-25x", "-o", str(out), "--no-preview",
                                 "--slice-um", "1", "--hatch-um", "1", "--scale", "1.2,1.2,1.5"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["recipe"]["scale"] == [1.2, 1.2, 1.5] and m["placement"]["scale"] == [1.2, 1.2, 1.5]
    lo, hi = np.asarray(m["bounds_um"])
    np.testing.assert_allclose(hi[2] - lo[2], 9.0, atol=1.0)        # 6 µm × 1.5, to a layer
    np.testing.assert_allclose(hi[:2] - lo[:2], 12.0, atol=1.01)    # 10 µm × 1.2, to a hatch line
    assert "part scaled × 1.2 × 1.2 × 1.5" in (out / "report.txt").read_text()
    r = CliRunner().invoke(cli, ["slice", str(stl), "-o", str(tmp_path / "bad"), "--scale", "1,2"])
    assert isinstance(r.exception, BioslicerError) and "--scale" in str(r.exception)
    assert not (tmp_path / "bad").exists()
