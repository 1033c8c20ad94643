"""Estimate before slicing (issue 19): `bioslicer estimate MESH` gives the job's time, marks and
program size without writing a program."""

import json
import os

import pytest
import trimesh
from click.testing import CliRunner

from bioslicer.cli import cli
from bioslicer.pipeline import estimate_mesh, slice_to_job


def test_mesh_estimate_matches_the_job(tmp_path):
    m = trimesh.creation.cylinder(radius=30.0, height=24.0, sections=64)
    m.export(tmp_path / "disc.stl")
    ov = {"slice_um": 0.5, "hatch_um": 0.5, "block_size_um": 40.0}     # 2 x 2 blocks, 48 layers
    e = estimate_mesh(tmp_path / "disc.stl", overrides=ov)
    assert e["layers"] == 48 and e["layers_planned"] < e["layers"]
    assert list(tmp_path.iterdir()) == [tmp_path / "disc.stl"]          # nothing written
    r = slice_to_job(tmp_path / "disc.stl", tmp_path / "job", overrides=ov, preview=False)
    man = r.manifest
    size = sum(os.path.getsize(r.path / f) for f in man["program"]["files"])
    assert e["estimate"]["total_s"] == pytest.approx(man["estimate"]["total_s"], rel=0.05)
    assert e["marks"] == pytest.approx(man["counts"]["marks"], rel=0.05)
    assert e["program_bytes"] == pytest.approx(size, rel=0.1)
    assert e["blocks"] == man["counts"]["blocks"]


def test_cli_estimate_mesh(tmp_path):
    trimesh.creation.box(extents=[20.0, 20.0, 6.0]).export(tmp_path / "cube.stl")
    r = CliRunner().invoke(cli, ["estimate", str(tmp_path / "cube.stl"), "--set", "slice_um=1", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["marks"] > 0 and d["program_bytes"] > 0 and d["estimate"]["total_s"] > 0
    r = CliRunner().invoke(cli, ["estimate", str(tmp_path / "cube.stl")])
    assert r.exit_code == 0 and "program    about" in r.output
