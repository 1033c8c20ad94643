"""Recipes: defaults, files, overrides, validation, TOML round trip, `bioslicer recipe show`."""

import json
import pytest

from bioslicer.errors import BioslicerError
from bioslicer.printers import load_printer
from bioslicer.recipe import Recipe, load_recipe, recipe_overrides_from_cli, tomllib


def test_printer_defaults_override_builtin():
    p = load_printer("lab-daq-galvo")
    r = Recipe.from_printer(p)
    assert r.hatch_um == 0.3 and r.slice_um == 0.5 and r.contour_spacing_um == 0.3
    assert r.power_mw["hatch"] == 30.0 and r.speed_um_s["contour"] == 2000.0
    assert Recipe().hatch_um == 0.2  # built-in default untouched


def test_round_trip_toml_file(tmp_path):
    r = Recipe.from_printer(load_printer("nanoscribe-gt2-63x")).updated(
        strategy="woodpile", hatch_angle_step_deg=30.0, serpentine=False, depth_mode="table",
        depth_table=[[0, 1.0], [100, 1.5]], channel_block_size_um=[100, 200, 50], surface_z_um=-3.5,
        power_mw={"skin": 11.0}, block_size_um=150.0)
    text = r.to_toml()
    assert text == r.to_toml()  # deterministic
    f = tmp_path / "r.toml"
    f.write_text(text)
    back = load_recipe(f)
    assert back == r
    assert back.to_toml() == text
    assert Recipe.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    assert back.power_mw["skin"] == 11.0 and back.power_mw["hatch"] == 15.0


def test_file_over_printer_defaults(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('hatch_um = 0.15\n[power_mw]\nhatch = 10.0\n')
    r = load_recipe(f, printer=load_printer("lab-daq-galvo"))
    assert r.hatch_um == 0.15 and r.power_mw["hatch"] == 10.0
    assert r.power_mw["contour"] == 25.0 and r.slice_um == 0.5  # from the printer


@pytest.mark.parametrize("text, key", [("hatchum = 0.2\n", "hatchum"), ("[power_mw]\nlaser = 3\n", "power_mw.laser"),
                                       ("hatch_um = -0.2\n", "hatch_um"), ("strategy = 'spiral'\n", "strategy"),
                                       ("contour_count = 1.5\n", "contour_count"),
                                       ("depth_mode = 'table'\n", "depth_table")])
def test_bad_recipe_file_names_key(tmp_path, text, key):
    f = tmp_path / "r.toml"
    f.write_text(text)
    with pytest.raises(BioslicerError, match=key.replace(".", r"\.")) as ei:
        load_recipe(f)
    assert "\n" not in str(ei.value)


def test_cli_overrides_parse():
    ov = recipe_overrides_from_cli(["hatch_um=0.3", "serpentine=false", "strategy=scaffold", "power_mw.hatch=25",
                                    "channel_block_size_um=[100, 100, 50]", "contour_count=3"])
    assert ov == {"hatch_um": 0.3, "serpentine": False, "strategy": "scaffold", "power_mw": {"hatch": 25},
                  "channel_block_size_um": [100, 100, 50], "contour_count": 3}
    r = Recipe().updated(**ov)
    assert r.strategy == "shell-scaffold" and r.power_mw["hatch"] == 25.0 and r.contour_count == 3
    with pytest.raises(BioslicerError, match="key=value"):
        recipe_overrides_from_cli(["hatch_um"])


def test_recipe_show_cli_round_trip(capsys):
    from bioslicer.cli import main

    args = ["recipe", "show", "--printer", "lab-stage-gcode", "--set", "hatch_um=0.35", "--set", "speed_um_s.hatch=800"]
    assert main(args) == 0
    r = Recipe.from_dict(tomllib.loads(capsys.readouterr().out))
    assert r.hatch_um == 0.35 and r.speed_um_s["hatch"] == 800.0 and r.slice_um == 1.0
    assert main(args + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == r.to_dict()
    assert main(args[:4] + ["--set", "nope=1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'nope'" in err and len(err.strip().splitlines()) == 1
