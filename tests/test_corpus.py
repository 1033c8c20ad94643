"""The program corpus (tests/data/programs/, see its README): every program is read with the
expected moves counted, or refused with the expected one-line reason."""

from pathlib import Path

import pytest

from bioslicer.programs import read_program, validate_program

CORPUS = Path(__file__).parent / "data" / "programs"
PROFILE = {".gwl": "corpus-gwl", ".ngc": "corpus-gcode", ".gcode": "corpus-gcode", ".nc": "corpus-gcode",
           ".pgm": "corpus-aerobasic"}

# file -> ("read", moves, marks) or ("refused", line, reason)
EXPECTED = {
    "tipslicer_style_cr.gwl": ("read", 15, 7),
    "tipslicer_style_main.gwl": ("read", 18, 8),
    "describe_style_job.gwl": ("read", 28, 8),
    "describe_text.gwl": ("refused", 7, "GWL command 'WriteText' writes text whose moves are not read"),
    "linuxcnc_laser_style.ngc": ("read", 13, 6),
    "inch_relative.ngc": ("read", 5, 1),
    "grbl_laser_style.gcode": ("refused", 4, "jump with the laser on"),
    "fanuc_style.nc": ("refused", 4, "RS-274 G28 is not read"),
    "arcs.ngc": ("read", 24, 1),
    "a3200_scan_style.pgm": ("read", 12, 6),
    "a3200_zline_style.pgm": ("refused", 6, "array variable $GLOBAL[0] is set outside the program"),
}


def profile(path):
    return CORPUS / f"{PROFILE[path.suffix]}.toml"


def corpus_files():
    return sorted(p for p in CORPUS.glob("*") if p.suffix in PROFILE)


def test_every_corpus_file_has_an_expectation():
    assert sorted(p.name for p in corpus_files()) == sorted(EXPECTED)


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_program(path):
    what, a, b = EXPECTED[path.name]
    rep = validate_program(path, profile(path))
    if what == "read":
        assert rep.ok, rep.summary()
        assert rep.n_moves == a
        mv = read_program(path, profile(path))
        assert len(mv) == a and not mv.problems
        # marks: laser-on moves that follow a jump or a laser-off move
        starts = mv.laser_on & ~mv.jump
        starts[1:] &= ~(mv.laser_on[:-1] & ~mv.jump[:-1])
        assert int(starts.sum()) == b
    else:
        assert not rep.ok
        v = rep.violations[0]
        assert (v.line, v.message[:len(b)]) == (a, b)
        assert "\n" not in rep.summary()


def test_aerobasic_posoffset_shifts_later_absolute_targets(tmp_path):
    """POSOFFSET SET at the start (as our writer sends it) is read on the fast path; one after a
    stage move shifts every later absolute target (the general reader), CLEAR ends it."""
    head = "METRIC\nSECONDS\nABSOLUTE\nPOSOFFSET SET X 0 Y 0 Z 0\n$AO[0].A = 2.0\n"
    mark = "RAPID A0 B0 Z0.001\nGALVO LASEROVERRIDE A ON\nLINEAR A0.010 B0 Z0.001 F5.0\nGALVO LASEROVERRIDE A OFF\n"
    prof = CORPUS / "corpus-aerobasic.toml"
    plain = tmp_path / "plain.pgm"
    plain.write_text(head + "RAPID X0.100 Y0.100 Z0\nRAPID X0 Y0 Z0\n" + mark + "END PROGRAM\n")
    shifted = tmp_path / "shifted.pgm"
    shifted.write_text(head + "RAPID X0.100 Y0.100 Z0\nPOSOFFSET SET X 0 Y 0\nRAPID X0 Y0 Z0\n" + mark
                       + "POSOFFSET CLEAR\nRAPID X0 Y0 Z0\n" + mark + "END PROGRAM\n")
    a = read_program(plain, prof)
    b = read_program(shifted, prof)
    on_a, on_b = a.laser_on & ~a.jump, b.laser_on & ~b.jump
    assert a.x[on_a].tolist() == pytest.approx([10.0])
    # first mark: stage at program 0 = machine 100 µm; second mark after CLEAR: back at machine 0
    assert b.x[on_b].tolist() == pytest.approx([110.0, 10.0])
    assert b.y[on_b].tolist() == pytest.approx([100.0, 0.0])
