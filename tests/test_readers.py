"""Readers that never pass what they misread (issue 17): real-world spellings, variables, loops,
units and relative modes are read exactly; what cannot be read is named."""

import numpy as np
import pytest

from bioslicer.errors import BioslicerError
from bioslicer.programs import read_program, validate_program

GT2 = "nanoscribe-gt2-25x"          # GWL, percent of 50 mW, 400 µm circle
LAB = "lab-stage-gcode"             # G-code, mm, F per min, origin 12500 12500 1000
FEM = "femtika-aerotech-galvo"      # AeroBasic, mm, F per s, power in volts of 300 mW / 10 V


def _write(tmp_path, name, text, newline="\n"):
    p = tmp_path / name
    p.write_bytes(text.replace("\n", newline).encode())
    return p


def _messages(rep):
    return [v.message for v in rep.violations]


# ----------------------------------------------------------------------------- GWL
TIPSLICER = """% written like TipSlicer: CR line ends, variables
var $Power1 = 20
var $Speed2 = 1000
LaserPower $Power1
ScanSpeed $Speed2
repeat 2
0 0 0
10 0 0
write
end
CapturePhoto
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_gwl_any_line_end_with_variables_and_repeat(tmp_path, newline):
    p = _write(tmp_path, "t.gwl", TIPSLICER, newline)
    mv = read_program(p, GT2)
    assert len(mv) == 4 and mv.laser_on.tolist() == [False, True, False, True]
    np.testing.assert_allclose(mv.power_mw, 10.0)            # 20 % of 50 mW, not 1 %
    np.testing.assert_allclose(mv.speed_um_s, 1000.0)        # not 2 µm/s
    assert mv.line.tolist() == [7, 8, 7, 8]
    rep = validate_program(p, GT2)
    assert rep.ok and rep.n_moves == 4
    assert [(n.line, n.message.split(" is ")[0]) for n in rep.notes] == [(11, "GWL command 'CapturePhoto'")]


def test_gwl_comment_only_program_fails(tmp_path):
    rep = validate_program(_write(tmp_path, "c.gwl", "% nothing here\n"), GT2)
    assert not rep.ok and _messages(rep) == ["nothing to print: the program has no moves"]


def test_gwl_undefined_variable_is_named_not_read_as_a_number(tmp_path):
    rep = validate_program(_write(tmp_path, "v.gwl", "LaserPower $Power1\nScanSpeed 100\n0 0 0\n1 0 0\nWrite\n"), GT2)
    assert not rep.ok
    assert rep.violations[0].line == 1 and "$Power1 is used before it is given a value" in rep.violations[0].message


def test_gwl_points_without_write_are_not_counted_as_marks(tmp_path):
    text = "LaserPower 20\nScanSpeed 100\n0 0 0\n1 0 0\nWrite\n0 1 0\n1 1 0\n"
    rep = validate_program(_write(tmp_path, "w.gwl", text), GT2)
    assert not rep.ok
    assert rep.violations[-1].line == 6 and "never written" in rep.violations[-1].message


def test_gwl_no_scan_speed_is_named(tmp_path):
    rep = validate_program(_write(tmp_path, "s.gwl", "LaserPower 20\n0 0 0\n1 0 0\nWrite\n"), GT2)
    assert not rep.ok and "no speed is set before this move" in rep.violations[0].message


REAL_GWL = """% commands real GWL files use
InvertZAxis 0
StageVelocity 200
GalvoAcceleration 10
PiezoSettlingTime 10
TiltCorrectionOff
ExposureTime 0.2
TextFontSize 10
MessageOut "hello"
local $n = 2
set $n = $n + 1
LaserPower 20
ScanSpeed 1000
MoveStageX 100
MoveStageY -50
MoveStageX 20
if $n == 3
  0 0 0 7
  5 0 0 7
  Write
elif $n == 4
  0 0 0
  Write
else
  0 0 0
end
for $i = 0 to 2 step 1
  0 $i 0
  -999 -999 -999
end
Include sub.gwl
"""


def test_gwl_real_world_commands_read(tmp_path):
    _write(tmp_path, "SUB.GWL", "0 0 1\n2 0 1\nwrite\n")       # found whatever its case
    p = _write(tmp_path, "real.gwl", REAL_GWL)
    rep = validate_program(p, GT2)
    assert rep.ok, rep.violations
    # 2 points (4th column ignored) + 3 one-point lists + 2 points of the include
    assert rep.n_moves == 7
    mv = read_program(p, GT2)
    np.testing.assert_allclose(mv.sx, 120.0)
    np.testing.assert_allclose(mv.sy, -50.0)
    assert mv.files[-1].endswith("SUB.GWL") and mv.file[-1] == 1 and mv.line[-1] == 2
    noted = " ".join(n.message for n in rep.notes)
    for word in ("ExposureTime", "TextFontSize", "MessageOut", "StageVelocity", "4th column"):
        assert word in noted


def test_gwl_errors_name_the_command_and_the_summary_lists_distinct_problems(tmp_path):
    text = "LaserPower 20\nScanSpeed 100\nWriteText \"abc\"\nPulsedMode\nFrobnicate 3\nFrobnicate 4\n0 0 0\n1 0 0\nWrite\n"
    rep = validate_program(_write(tmp_path, "e.gwl", text), GT2)
    assert not rep.ok and rep.n_violations == 4
    assert [v.line for v in rep.violations] == [3, 4, 5, 6]
    s = rep.summary()
    assert "'WriteText'" in s and "'PulsedMode'" in s and "'Frobnicate'" in s and "(and 1 more" in s


def test_gwl_loop_limit_and_unclosed_block(tmp_path):
    rep = validate_program(_write(tmp_path, "l.gwl", "repeat 2\n0 0 0\nWrite\n"), GT2)
    assert not rep.ok and any("never closed" in m for m in _messages(rep))


# ----------------------------------------------------------------------------- RS-274
FOREIGN_NGC = """%
(a program written by hand in LinuxCNC style)
g21 g90 g94 g17 g54
N10 G00 X12.5 Y12.5 Z1
N20 M03 S20
#1 = 7
#<_step> = 0.25
o100 sub
  G01 X[12.5 + #1] F120
  Y [12.5 + #<_step>]
o100 endsub
o100 call [0.5]
o101 repeat [2]
G1X13Y13
o101 endrepeat
G91 G1 X0.1 (inline comment) Y0.1
G90 G4 P0.5
M5
M30
%
"""


def test_rs274_words_params_subroutines_relative(tmp_path):
    p = _write(tmp_path, "a.ngc", FOREIGN_NGC)
    mv = read_program(p, LAB)
    np.testing.assert_allclose(mv.x, [12500, 13000, 13000, 13000, 13000, 13100])
    np.testing.assert_allclose(mv.y, [12500, 12500, 12750, 13000, 13000, 13100])
    np.testing.assert_allclose(mv.speed_um_s[1:], 2000.0)          # F120 mm/min
    np.testing.assert_allclose(mv.power_mw[1:], 20.0)
    assert mv.line.tolist() == [4, 9, 10, 14, 14, 16]
    assert mv.jump.tolist() == [True] + [False] * 5
    assert validate_program(p, LAB).ok


def test_rs274_inch_units_are_converted(tmp_path):
    p = _write(tmp_path, "i.ngc", "G20\nG0 X0.5 Y0.5 Z0.04\nM3 S10\nG1 X0.51 F6\nM5\nM2\n")
    mv = read_program(p, LAB)
    np.testing.assert_allclose(mv.x, [12700, 12954])
    np.testing.assert_allclose(mv.speed_um_s[1], 6 * 25400 / 60)


def test_rs274_work_offsets(tmp_path):
    text = "G21 G90\nG10 L2 P2 X1 Y2 Z0\nG55\nG0 X12.5 Y12.5 Z1\nG92 X0 Y0\nG0 X1 Y1\nM2\n"
    mv = read_program(_write(tmp_path, "o.ngc", text), LAB)
    np.testing.assert_allclose(mv.x, [13500, 14500])
    np.testing.assert_allclose(mv.y, [14500, 15500])


def test_rs274_arcs_are_chords_on_the_circle(tmp_path):
    # a half circle of radius 0.5 mm clockwise around (13, 12.5) mm, then R-form quarter back
    text = "G21 G90\nG0 X12.5 Y12.5 Z1\nM3 S10\nG2 X13.5 Y12.5 I0.5 J0 F100\nG3 X13 Y13 R0.5\nM5\n"
    mv = read_program(_write(tmp_path, "arc.ngc", text), LAB)
    p = mv.points()
    half = np.flatnonzero(mv.line == 4)
    r = np.hypot(p[half, 0] - 13000, p[half, 1] - 12500)
    np.testing.assert_allclose(r, 500.0, atol=1e-6)
    assert p[half, 1].min() == pytest.approx(12500.0) and p[half, 1].max() == pytest.approx(13000.0, abs=0.1)
    quarter = np.flatnonzero(mv.line == 5)
    np.testing.assert_allclose(np.hypot(p[quarter, 0] - 13000, p[quarter, 1] - 12500), 500.0, atol=1e-6)
    assert p[quarter[-1]].tolist() == pytest.approx([13000, 13000, 1000])
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    assert seg.sum() == pytest.approx(np.pi * 500 * 1.5, rel=1e-4)


def test_rs274_refuses_unknown_words_by_name(tmp_path):
    text = "G21\nG0 X12.5 Y12.5 Z1\nM3 S10\nG18 G2 X13 Z1.5 I0.5 K0 F100\nM62 P1\nM5\n"
    rep = validate_program(_write(tmp_path, "arc.ngc", text), LAB)
    assert not rep.ok
    assert [v.line for v in rep.violations] == [4, 5]
    assert "arc move G2 in plane G18 is not read" in rep.violations[0].message
    assert "M62 is not read" in rep.violations[1].message


def test_rs274_feed_move_without_feed_is_named(tmp_path):
    rep = validate_program(_write(tmp_path, "f.ngc", "G21\nG0 X12.5 Y12.5 Z1\nM3 S10\nG1 X13\nM5\n"), LAB)
    assert not rep.ok and "no speed is set before this move" in rep.violations[0].message
    rep = validate_program(_write(tmp_path, "g.ngc", "g21\nG0 X12.5 Y12.5 Z1\nM3 S10\nG1 X13\nM5\n"), LAB)
    assert not rep.ok and "before any feed (F) is set" in rep.violations[0].message


# ----------------------------------------------------------------------------- AeroBasic
AEROBASIC = """' hand-written in the style of a Femtika driver
DVAR $i $x $pw
METRIC
SECONDS
ABSOLUTE
$pw = 2.5
RAPID X1 Y1 Z0.5
$AO[0].A = $pw
CRITICAL START
FOR $i = 0 TO 2
  $x = $i * 0.01
  RAPID A$x B0 Z0.5
  GALVO LASEROVERRIDE A ON
  LINEAR A[$x + 0.05] B0 Z0.5 F5
  GALVO LASEROVERRIDE A OFF
NEXT $i
CRITICAL END
INCREMENTAL
RAPID A0.01
ABSOLUTE
END PROGRAM
"""


def test_aerobasic_variables_loops_incremental(tmp_path):
    p = _write(tmp_path, "f.pgm", AEROBASIC)
    mv = read_program(p, FEM)
    np.testing.assert_allclose(mv.lx, [0, 50, 10, 60, 20, 70, 80])
    np.testing.assert_allclose(mv.sx, 1000.0)
    # 2.5 V of 10 V through the profile's sin² attenuator (extinction 1 %) of 300 mW
    f = 0.01 + 0.99 * np.sin(np.pi / 2 * 2.5 / 10.0) ** 2
    np.testing.assert_allclose(mv.power_mw, 300.0 * f)
    np.testing.assert_allclose(mv.speed_um_s[mv.laser_on], 5000.0)  # F5 mm/s
    rep = validate_program(p, FEM)
    assert rep.ok and rep.n_moves == 7


def test_aerobasic_other_analog_output_is_refused_by_name(tmp_path):
    text = "METRIC\nRAPID X0 Y0 Z0\n$AO[1].X = 3\nRAPID A0 B0 Z0\n"
    rep = validate_program(_write(tmp_path, "o.pgm", text), FEM)
    assert not rep.ok and rep.violations[0].line == 3 and "$AO[1].X is not read" in rep.violations[0].message


# ----------------------------------------------------------------------------- not a program
def test_a_mesh_is_not_a_machine_program(tmp_path):
    p = tmp_path / "part.stl"
    p.write_bytes(b"solid part\nfacet normal 0 0 1\n")
    with pytest.raises(BioslicerError, match="part.stl is not a machine program") as e:
        validate_program(p, GT2, dialect="gwl")
    assert "\n" not in str(e.value)


def test_gwl_only_unknown_commands_reports_them_not_just_nothing_to_print(tmp_path):
    rep = validate_program(_write(tmp_path, "u.gwl", "Frobnicate 1\n"), GT2)
    assert not rep.ok and rep.violations[0].line == 1 and "'Frobnicate' is not known" in rep.violations[0].message


def test_rs274_program_end_stops_reading(tmp_path):
    text = "G21\nG0 X12.5 Y12.5 Z1\nG0 X12.6 M2\nG0 X99999\n"
    mv = read_program(_write(tmp_path, "e.ngc", text), LAB)
    np.testing.assert_allclose(mv.x, [12500, 12600])


def test_rs274_extra_words_on_a_plain_move_line_are_read_not_dropped(tmp_path):
    # every line is in our own spelling except the S word on the G1 line: it changes the power
    text = "G21\nG90\nG0 X12.5 Y12.5 Z1\nM3 S10\nG1 X12.6 Y12.5 Z1 F60 S20\nM5\n"
    mv = read_program(_write(tmp_path, "s.ngc", text), LAB)
    np.testing.assert_allclose(mv.power_mw, [0.0, 20.0])       # the jump comes before M3
    rep = validate_program(_write(tmp_path, "a.ngc", text.replace("S20", "A5")), LAB)
    assert not rep.ok and "axis A moves" in rep.violations[0].message


def test_cli_validate_notes_summary_and_not_a_program(tmp_path, capsys):
    from bioslicer.cli import main as cli_main

    ok = _write(tmp_path, "t.gwl", TIPSLICER, "\r")
    assert cli_main(["validate", str(ok), "-p", GT2]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"ok: {ok}: 4 moves") and f"note: {ok}:11: GWL command 'CapturePhoto'" in err
    bad = _write(tmp_path, "b.gwl", "Frob 1\nFrob 2\nWriteText \"x\"\nLaserPower 1\nScanSpeed 100\n0 0 0\n1 0 0\nWrite\n")
    assert cli_main(["validate", str(bad), "-p", GT2]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: {bad}:1: GWL command 'Frob' is not known") and "'WriteText'" in last
    assert "(and 1 more violation(s))" in last
    stl = tmp_path / "part.stl"
    stl.write_bytes(b"\0" * 80 + b"\1\0\0\0" + b"\0" * 50)          # a binary STL
    assert cli_main(["validate", str(stl), "-p", GT2]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: part.stl is not a machine program")


def test_rs274_words_after_a_mode_word_are_read(tmp_path):
    text = "G21\nG90 G0 X12.5 Y12.5 Z1\nM3 S10\nG1 X12.6 F60\nM5 G0 X12.7\n"
    mv = read_program(_write(tmp_path, "m.ngc", text), LAB)
    np.testing.assert_allclose(mv.x, [12500, 12600, 12700])
    assert mv.laser_on.tolist() == [False, True, False]
