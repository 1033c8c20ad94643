"""Estimate before slicing (issue 19): `bioslicer estimate MESH` gives the job's time, marks and
program size without writing a program."""

import json
import os

import numpy as np
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


def test_estimate_of_a_lying_vessel_is_close_to_the_job(tmp_path):
    """A capsule lying along x: its section changes with z (a circle's chord) and its marks are
    long in 0° layers, short in 90° ones (hatch angle steps 90° per layer), the two cases that
    make a plain layer sample wrong. Stated tolerance: 2 % on time, marks, mark length and
    program bytes; the blocks exactly."""
    m = trimesh.creation.capsule(height=50.0, radius=6.0, count=[24, 24])
    m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    m.export(tmp_path / "vessel.stl")
    ov = {"slice_um": 0.25, "hatch_um": 0.25, "block_size_um": 40.0}      # 48 layers, 2 blocks
    e = estimate_mesh(tmp_path / "vessel.stl", overrides=ov)
    assert e["layers_planned"] <= 14 < e["layers"]
    r = slice_to_job(tmp_path / "vessel.stl", tmp_path / "job", overrides=ov, preview=False)
    man = r.manifest
    size = sum(os.path.getsize(r.path / f) for f in man["program"]["files"])
    assert e["estimate"]["total_s"] == pytest.approx(man["estimate"]["total_s"], rel=0.02)
    assert e["marks"] == pytest.approx(man["counts"]["marks"], rel=0.02)
    assert e["estimate"]["breakdown"]["counts"]["mark_length_um"] == pytest.approx(man["counts"]["mark_length_um"],
                                                                                rel=0.02)
    assert e["program_bytes"] == pytest.approx(size, rel=0.02)
    assert e["blocks"] == man["counts"]["blocks"]


def test_sample_is_stratified_and_balanced_over_the_hatch_angles():
    from bioslicer.pipeline import _angle_period, _stratified_layers

    assert _angle_period(np.mod(np.arange(100) * 90.0, 180.0)) == 2
    assert _angle_period(np.mod(np.arange(100) * 60.0, 180.0)) == 3
    assert _angle_period(np.mod(np.arange(100) * 67.0, 180.0)) == 1      # no short cycle
    layers = np.arange(10, 110)
    pick = _stratified_layers(layers, 12, 2)
    assert len(pick) == 12 and sum(k % 2 for k in pick) == 6             # 0° and 90° layers alike
    assert all(10 + i * 100 // 12 <= k < 10 + (i + 1) * 100 // 12 for i, k in enumerate(pick))   # one per stratum
    assert _stratified_layers(layers[:5], 12, 2) == list(range(10, 15))
