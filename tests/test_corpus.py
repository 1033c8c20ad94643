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
