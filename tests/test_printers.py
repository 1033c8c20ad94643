import json
import subprocess
import sys

import pytest

from bioslicer.errors import BioslicerError
from bioslicer.printers import list_printers, load_printer, parse_printer, tomllib


def test_bundled_profiles_load():
    names = {p.name for p in list_printers()}
    assert {"nanoscribe-gt2-25x", "nanoscribe-gt2-63x", "femtika-aerotech-galvo", "lab-stage-gcode",
            "lab-daq-galvo"} <= names
    dialects = {p.dialect for p in list_printers()}
    assert {"gwl", "aerobasic", "gcode", "waveform"} <= dialects


def test_power_conversions_round_trip():
    p = load_printer("nanoscribe-gt2-25x")
    assert p.power_to_program(25.0) == pytest.approx(50.0)  # percent of 50 mW
    for name in ("femtika-aerotech-galvo", "lab-daq-galvo", "lab-stage-gcode"):
        q = load_printer(name)
        assert q.power_from_program(q.power_to_program(12.34)) == pytest.approx(12.34)


def _doc(name="nanoscribe-gt2-25x"):
    from bioslicer.printers import printers_dir

    return tomllib.loads((printers_dir() / f"{name}.toml").read_text())


def test_missing_key_is_refused_with_key_name():
    doc = _doc()
    del doc["laser"]["max_power_mw"]
    with pytest.raises(BioslicerError, match=r"missing key 'laser.max_power_mw'"):
        parse_printer(doc, "x.toml")


@pytest.mark.parametrize("key,value,match", [
    (("field", "shape"), "hexagon", "field.shape"),
    (("field", "size_um"), -4.0, "field.size_um"),
    (("dialect",), "postscript", "dialect"),
    (("stage", "x_um"), [5.0, -5.0], "stage.x_um"),
    (("scan", "max_speed_um_s"), "fast", "scan.max_speed_um_s"),
])
def test_bad_values_are_refused(key, value, match):
    doc = _doc()
    d = doc
    for k in key[:-1]:
        d = d[k]
    d[key[-1]] = value
    with pytest.raises(BioslicerError, match=match):
        parse_printer(doc, "x.toml")


def test_profile_from_path_and_cli_json(tmp_path):
    from bioslicer.printers import printers_dir

    own = tmp_path / "mine.toml"
    own.write_text((printers_dir() / "lab-daq-galvo.toml").read_text().replace('"lab-daq-galvo"', '"mine"'))
    assert load_printer(own).name == "mine"
    r = subprocess.run([sys.executable, "-m", "bioslicer", "printers", "--json"], capture_output=True, text=True)
    assert r.returncode == 0
    assert len(json.loads(r.stdout)) >= 5
