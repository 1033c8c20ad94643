"""Hand-written programs with one fault each: the validator names the right file and line."""

import io
import json
import math
import zipfile

import numpy as np
import pytest

from bioslicer.cli import main as cli_main
from bioslicer.programs import read_program, validate_program

GWL_OK = """% hand-written
GalvoScanMode
ScanSpeed 20000
LaserPower 40
0 0 0.5
10 0 0.5
Write
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _first(rep):
    assert not rep.ok
    v = rep.violations[0]
    return v.line, v.message


def test_clean_gwl_passes(tmp_path):
    rep = validate_program(_write(tmp_path, "ok.gwl", GWL_OK), "nanoscribe-gt2-25x")
    assert rep.ok and rep.n_moves == 2 and rep.n_violations == 0


def test_gwl_point_outside_field(tmp_path):
    text = GWL_OK + "0 0 0.5\n250 0 0.5\nWrite\n"  # 400 µm circle: x = 250 is outside
    line, msg = _first(validate_program(_write(tmp_path, "f.gwl", text), "nanoscribe-gt2-25x"))
    assert line == 9 and "outside the circle field" in msg


def test_gwl_power_over_max_points_at_the_power_line(tmp_path):
    text = GWL_OK + "LaserPower 120\n0 1 0.5\n10 1 0.5\nWrite\n"  # 120 % of 50 mW = 60 mW > 50 mW
    rep = validate_program(_write(tmp_path, "p.gwl", text), "nanoscribe-gt2-25x")
    line, msg = _first(rep)
    assert line == 8 and "60 mW is above" in msg
    assert rep.n_violations == 1  # the jump to the first point has the laser off


def test_gwl_per_point_power_and_include(tmp_path):
    (tmp_path / "blocks").mkdir()
    _write(tmp_path, "blocks/b0.gwl", "PowerValuesOn\n0 0 0 10\n5 0 0 101\nWrite\nPowerValuesOff\n")
    main = _write(tmp_path, "job.gwl", "ScanSpeed 20000\nStageGotoX 10\ninclude blocks\\b0.gwl\n")
    rep = validate_program(main, "nanoscribe-gt2-25x")
    assert rep.violations[0].file.endswith("b0.gwl") and rep.violations[0].line == 3
    mv = read_program(main, "nanoscribe-gt2-25x")
    np.testing.assert_allclose(mv.x, [10.0, 15.0])
    np.testing.assert_allclose(mv.power_mw, [5.0, 50.5])


def test_gwl_unknown_command_and_bad_point(tmp_path):
    rep = validate_program(_write(tmp_path, "u.gwl", GWL_OK + "Frobnicate 3\n1 2\n"), "nanoscribe-gt2-25x")
    assert [v.line for v in rep.violations] == [8, 9]
    assert rep.violations[0].message.startswith("GWL command 'Frobnicate' is not known")
    assert rep.violations[1].message.startswith("a point needs 3 numbers")


GCODE = """; hand-written, origin 12500 12500 1000
G21
G90
M5
G0 X12.5 Y12.5 Z1.001
M3 S30
G1 X12.6 Y12.5 Z1.001 F300
M5
"""


def test_gcode_jump_with_laser_on(tmp_path):
    text = GCODE + "M3 S30\nG0 X12.5 Y12.6 Z1.001\nG1 X12.6 Y12.6 F300\nM5\n"
    line, msg = _first(validate_program(_write(tmp_path, "j.gcode", text), "lab-stage-gcode"))
    assert line == 10 and "jump with the laser on" in msg


def test_gcode_power_over_max_and_out_of_travel(tmp_path):
    text = GCODE + "G0 X12.5 Y12.6\nM3 S150\nG1 X30 F300\nM5\n"
    rep = validate_program(_write(tmp_path, "p.gcode", text), "lab-stage-gcode")
    assert rep.n_violations == 3  # power, field and stage travel
    assert [v.line for v in rep.violations] == [10, 11, 11]
    assert "150 mW is above the printer's maximum 100 mW" in rep.violations[0].message
    assert any("stage x 30000 um is outside the travel 0..25000 um" in v.message for v in rep.violations)


def test_gcode_round_trip_values(tmp_path):
    mv = read_program(_write(tmp_path, "ok.gcode", GCODE), "lab-stage-gcode")
    np.testing.assert_allclose(mv.x, [12500.0, 12600.0])
    np.testing.assert_allclose(mv.lz, [1.0, 1.0])
    np.testing.assert_allclose(mv.speed_um_s, [0.0, 5000.0])
    assert list(mv.laser_on) == [False, True] and list(mv.jump) == [True, False]


def test_aerobasic_jump_with_laser_on(tmp_path):
    text = ("' hand-written\nMETRIC\nSECONDS\nABSOLUTE\nRAPID X1 Y1 Z0\nRAPID A0 B0 Z0.001\n$AO[0].A = 2\n"
            "GALVO LASEROVERRIDE A ON\nLINEAR A0.1 B0 Z0.001 F10\nRAPID A0 B0.01 Z0.001\n"
            "LINEAR A0.1 B0.01 Z0.001 F10\nGALVO LASEROVERRIDE A OFF\n")
    rep = validate_program(_write(tmp_path, "a.pgm", text), "femtika-aerotech-galvo")
    assert rep.n_violations == 1
    line, msg = _first(rep)
    assert line == 10 and "jump with the laser on" in msg
    mv = read_program(tmp_path / "a.pgm", "femtika-aerotech-galvo")
    np.testing.assert_allclose(mv.x[:2], [1000.0, 1100.0])  # stage 1 mm + galvo 0.1 mm
    # 2 V of 10 V through the profile's sin² attenuator (1 % extinction) at 300 mW
    np.testing.assert_allclose(mv.power_mw[1], 300.0 * (0.01 + 0.99 * math.sin(0.1 * math.pi) ** 2))


def _npz(path, **arrays):
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.save(buf, np.asarray(v))
            zf.writestr(f"{k}.npy", buf.getvalue())


def test_waveform_sample_outside_field_and_power_over(tmp_path):
    (tmp_path / "w_waveform.csv").write_text(
        "channel,npz_key,unit,per_volt,per_volt_unit,sample_rate_hz\n"
        "galvo_x,x_v,V,25.0,um,200000.0\ngalvo_y,y_v,V,25.0,um,200000.0\n"
        "piezo_z,z_v,V,20.0,um,200000.0\nlaser,laser_v,V,40.0,mW,200000.0\n# file w_block_0000.npz\n")
    x = np.array([0.0, 0.001, 0.002, 6.0, 0.003])  # 6 V * 25 µm/V = 150 µm > 125 µm half field
    laser = np.array([0.0, 0.5, 0.5, 0.5, 2.5])   # 2.5 V * 40 mW/V = 100 mW > 80 mW
    _npz(tmp_path / "w_block_0000.npz", x_v=x, y_v=np.zeros(5), z_v=np.full(5, 0.05), laser_v=laser,
         stage_um=np.zeros(3), block=np.array(0))
    rep = validate_program(tmp_path / "w_waveform.csv", "lab-daq-galvo")
    assert rep.violations[0].file.endswith("w_block_0000.npz")
    found = [(v.line, v.message.split(" ")[0]) for v in rep.violations]
    assert found[0] == (3, "galvo") and (4, "laser") in found
    assert (3, "scan") in found  # 150 µm in one sample with the laser on is far over the scan speed


def test_voxel_power_fraction_over_one(tmp_path):
    vol = np.zeros((2, 3, 4), np.float32)
    vol[1, 2, 3] = 1.5
    vol[0, 0, 0] = 0.5
    np.save(tmp_path / "v_power.npy", vol)
    (tmp_path / "v_power.json").write_text(json.dumps({
        "array": "v_power.npy", "axis_order": "zyx", "voxel_um": [0.2, 0.2, 0.5], "origin_um": [0, 0, 0],
        "stage_um": [0, 0, 0], "max_power_mw": 50.0}))
    rep = validate_program(tmp_path / "v_power.json", "nanoscribe-gt2-25x")
    assert rep.n_moves == 2 and rep.n_violations == 1
    assert rep.violations[0].line == 23 and "75 mW is above" in rep.violations[0].message


def test_cli_validate_exit_codes(tmp_path, capsys):
    ok = _write(tmp_path, "ok.gwl", GWL_OK)
    assert cli_main(["validate", str(ok), "--printer", "nanoscribe-gt2-25x"]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    bad = _write(tmp_path, "bad.gwl", GWL_OK + "LaserPower 120\n0 1 0.5\n10 1 0.5\nWrite\n")
    assert cli_main(["validate", str(bad), "-p", "nanoscribe-gt2-25x"]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}:8: laser power 60 mW is above" in err
    assert cli_main(["validate", str(bad), "-p", "nanoscribe-gt2-25x", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["violations"][0]["line"] == 8


@pytest.mark.parametrize("text", ["nan 0 0\nWrite\n", "0 0 1e999\nWrite\n"])
def test_non_finite_numbers_are_caught(tmp_path, text):
    rep = validate_program(_write(tmp_path, "n.gwl", "ScanSpeed 20000\n" + text), "nanoscribe-gt2-25x")
    assert not rep.ok and rep.violations[0].line == 2


def test_check_kernel_counts_every_violation_and_lists_them_in_order(tmp_path):
    # 3 points outside the field, 3 laser-on moves over power: counts are per check, the list in move order
    text = GWL_OK + "LaserPower 120\n250 0 0.5\n0 0 0.5\n260 0 0.5\n270 0 0.5\nWrite\n"
    rep = validate_program(_write(tmp_path, "k.gwl", text), "nanoscribe-gt2-25x", max_violations=3)
    assert rep.n_violations == 3 + 3  # 3 outside the field, power over on the 3 laser-on moves
    # move order; on one move, by line: the power line 8 before the point on line 11
    assert [v.line for v in rep.violations] == [9, 8, 8]
    assert "outside the circle field" in rep.violations[0].message and "60 mW is above" in rep.violations[1].message
