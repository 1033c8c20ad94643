"""A third-party reader: LinuxCNC's RS-274/NGC interpreter (``rs274``, Debian ``linuxcnc-uspace``)
reads our G-code and the corpus's G-code; its moves must match ours (mark length and bounds).

Skipped where ``rs274`` is not installed (.ci/run installs it where apt can)."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bioslicer.programs import read_program, write_program

pytestmark = pytest.mark.skipif(shutil.which("rs274") is None,
                                reason="LinuxCNC rs274 not installed (apt-get install linuxcnc-uspace)")

CORPUS = Path(__file__).parent / "data" / "programs"
_CALL = re.compile(r"^\s*\d+ N\S*\s+([A-Z_0-9]+)\((.*)\)\s*$")


def rs274_moves(path):
    """Moves as rs274 executes them: [(feed (bool), spindle on (bool), x, y, z in mm)] in machine
    coordinates (the canonical calls' program coordinates plus the G5x and G92 offsets), and
    whether it printed inches."""
    out = subprocess.run(["rs274", "-g", str(path)], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    g5x = np.zeros(3)
    g92 = np.zeros(3)
    last = np.zeros(3)
    on = False
    inch = False
    moves = []
    for ln in out.stdout.splitlines():
        m = _CALL.match(ln)
        if not m:
            if ln.strip() and not ln.startswith("executing"):
                raise AssertionError(f"rs274 did not read {path.name}: {ln.strip()}")
            continue
        name, args = m.group(1), m.group(2)
        if name == "SET_G5X_OFFSET":
            g5x = np.array([float(v) for v in args.split(",")[1:4]])
        elif name == "SET_G92_OFFSET":
            g92 = np.array([float(v) for v in args.split(",")[0:3]])
        elif name == "USE_LENGTH_UNITS":
            inch = "INCHES" in args
        elif name in ("START_SPINDLE_CLOCKWISE", "START_SPINDLE_COUNTERCLOCKWISE"):
            on = True
        elif name == "STOP_SPINDLE_TURNING":
            on = False
        elif name in ("STRAIGHT_TRAVERSE", "STRAIGHT_FEED"):
            p = np.array([float(v) for v in args.split(",")[0:3]]) + g5x + g92
            moves.append((name == "STRAIGHT_FEED", on, *(p * 25.4 if inch else p)))
            last = p
        elif name == "ARC_FEED":   # XY arcs: dense points (720 per turn) for length and bounds
            x1, y1, cx, cy, rot, z1 = (float(v) for v in args.split(",")[0:6])
            x0, y0, z0 = last - g5x - g92
            a0, a1 = np.arctan2(y0 - cy, x0 - cx), np.arctan2(y1 - cy, x1 - cx)
            sweep = (a1 - a0) % (2 * np.pi) if rot > 0 else -((a0 - a1) % (2 * np.pi))
            if abs(sweep) < 1e-12:
                sweep = 2 * np.pi * np.sign(rot)
            sweep += np.sign(rot) * 2 * np.pi * (abs(rot) - 1)
            r = np.hypot(x0 - cx, y0 - cy)
            for t in np.linspace(0, 1, max(8, int(abs(sweep) / (2 * np.pi) * 720)) + 1)[1:]:
                p = np.array([cx + r * np.cos(a0 + sweep * t), cy + r * np.sin(a0 + sweep * t), z0 + (z1 - z0) * t])
                p = p + g5x + g92
                moves.append((True, on, *(p * 25.4 if inch else p)))
            last = np.array([x1, y1, z1]) + g5x + g92
    return moves, inch


def mark_length_and_bounds(feed, on, pts_um):
    """Total length of feed moves with the laser on (µm) and their (lo, hi) bounds."""
    seg = feed[1:] & on[1:]
    d = np.linalg.norm(np.diff(pts_um, axis=0), axis=1)[seg]
    used = np.concatenate([pts_um[1:][seg], pts_um[:-1][seg]])
    return d.sum(), used.min(axis=0), used.max(axis=0)


def ours(path):
    mv = read_program(path, CORPUS / "corpus-gcode.toml")
    assert not mv.problems, mv.problems
    return mark_length_and_bounds(~mv.jump, mv.laser_on, mv.points())


def theirs(path):
    """rs274's mark length and bounds, and their precision in µm (it prints 4 decimals of mm or inch)."""
    moves, inch = rs274_moves(path)
    mv = np.array(moves, dtype=float)
    return (*mark_length_and_bounds(mv[:, 0] > 0, mv[:, 1] > 0, mv[:, 2:5] * 1000.0), 2.6 if inch else 0.11)


def test_rs274_reads_our_gcode_as_we_do(tmp_path):
    from test_programs_roundtrip import two_block_toolpath

    pf = write_program(two_block_toolpath(), "lab-stage-gcode", tmp_path, name="rt", dialect="gcode")
    a, b = ours(pf.main), theirs(pf.main)
    assert a[0] > 500
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    np.testing.assert_allclose(a[1], b[1], atol=1e-3)      # our G-code has 4 decimals of mm: exact
    np.testing.assert_allclose(a[2], b[2], atol=1e-3)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.ngc")) + sorted(CORPUS.glob("*.gcode")), ids=lambda p: p.name)
def test_rs274_and_our_general_reader_agree_on_the_corpus(path):
    from test_corpus import EXPECTED

    if EXPECTED[path.name][0] != "read":
        pytest.skip("refused by our reader (see tests/data/programs/README.md)")
    a, b = ours(path), theirs(path)
    tol = b[3]
    assert a[0] > 0
    # arcs: our chords are within one printed digit of the circle, so shorter by a fraction of a percent
    np.testing.assert_allclose(a[0], b[0], atol=4 * tol, rtol=5e-3 if "arc" in path.name else 0)
    np.testing.assert_allclose(a[1], b[1], atol=tol)
    np.testing.assert_allclose(a[2], b[2], atol=tol)
