"""Several parts per job (issue 19): plate.toml with [[part]] entries, each with its own recipe,
placed without overlapping footprints; one program, one estimate, one manifest recording each part."""

import json

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from bioslicer.cli import cli
from bioslicer.errors import BioslicerError
from bioslicer.programs import read_program

P25 = "nanoscribe-gt2-25x"


@pytest.fixture()
def plate(tmp_path):
    trimesh.creation.box(extents=[20.0, 10.0, 4.0]).export(tmp_path / "bar.stl")
    trimesh.creation.cylinder(radius=8.0, height=6.0, sections=32).export(tmp_path / "disc.stl")
    (tmp_path / "soft.toml").write_text("[power_mw]\nhatch = 12.0\n")
    (tmp_path / "plate.toml").write_text(
        'recipe = "base.toml"\n'
        '[[part]]\nmesh = "bar.stl"\nposition = [0.0, 0.0]\nrotation_deg = 90.0\n[part.set]\npower_mw = {hatch = 18.0}\n'
        '[[part]]\nmesh = "disc.stl"\nposition = "auto"\nrecipe = "soft.toml"\n')
    (tmp_path / "base.toml").write_text("slice_um = 2.0\nhatch_um = 1.0\n")
    return tmp_path


def test_plate_job_places_parts_with_their_recipes(plate):
    out = plate / "job"
    r = CliRunner().invoke(cli, ["slice", str(plate / "plate.toml"), "-p", P25, "-o", str(out), "--no-preview"])
    assert r.exit_code == 0, (r.output, r.exception)
    m = json.loads((out / "manifest.json").read_text())
    bar, disc = m["parts"]
    assert bar["name"] == "bar" and bar["rotation_deg"] == 90.0 and bar["position_um"] == [0.0, 0.0]
    # the rotated bar is 10 µm wide in x; the auto disc follows 20 µm after it
    assert disc["position_um"][0] == pytest.approx(5.0 + 20.0 + 8.0, abs=0.1)
    assert bar["recipe"]["power_mw"]["hatch"] == 18.0 and disc["recipe"]["power_mw"]["hatch"] == 12.0
    assert bar["recipe"]["slice_um"] == 2.0 and bar["estimate_s"] > 0 and disc["estimate_s"] > 0
    assert m["placement"]["mode"] == "plate"
    kinds = {(d["source"]["part"]["name"], d["power_mw"]) for d in m["parameter_sets"] if d["source"]["kind"] == "hatch"}
    assert kinds == {("bar", 18.0), ("disc", 12.0)}
    mv = read_program(out / m["program"]["main"], P25)
    on = mv.laser_on & ~mv.jump
    near_bar = on & (np.abs(mv.x) <= 5.01) & (np.abs(mv.y) <= 10.01)
    near_disc = on & (np.hypot(mv.x - disc["position_um"][0], mv.y) <= 8.01)
    assert 18.0 in set(np.round(mv.power_mw[near_bar], 3)) and 12.0 not in set(np.round(mv.power_mw[near_bar], 3))
    assert 12.0 in set(np.round(mv.power_mw[near_disc], 3)) and near_bar.sum() + near_disc.sum() == on.sum()
    assert (out / m["program"]["main"]).read_text().count("FindInterfaceAt") == 2     # one per part


def _bad(plate, text):
    (plate / "plate.toml").write_text(text)
    r = CliRunner().invoke(cli, ["slice", str(plate / "plate.toml"), "-o", str(plate / "bad")])
    assert isinstance(r.exception, BioslicerError), r.output
    assert not (plate / "bad").exists()
    return str(r.exception)


def test_bad_plates_are_refused_in_one_line(plate):
    assert "overlap" in _bad(plate, '[[part]]\nmesh = "bar.stl"\nposition = [0, 0]\n'
                                    '[[part]]\nmesh = "disc.stl"\nposition = [12, 0]\n')
    assert "not found" in _bad(plate, '[[part]]\nmesh = "missing.stl"\n')
    assert "recipe file" in _bad(plate, '[[part]]\nmesh = "bar.stl"\nrecipe = "nope.toml"\n')
    assert "position" in _bad(plate, '[[part]]\nmesh = "bar.stl"\nposition = [1]\n')
    assert "lists no parts" in _bad(plate, 'gap_um = 5\n')
    assert "order.hatch" in _bad(plate, '[[part]]\nmesh = "bar.stl"\n[part.set]\norder = {hatch = "spiral"}\n')
