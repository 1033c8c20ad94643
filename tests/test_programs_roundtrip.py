"""Toolpath -> program -> parsed moves round trips for every dialect, determinism, refusals."""

import numpy as np
import pytest

from bioslicer.errors import BioslicerError
from bioslicer.printers import load_printer, parse_printer
from bioslicer.programs import DIALECTS, read_program, validate_program, write_program
from bioslicer.programs.dialects import program_origin_um
from bioslicer.toolpath import Blocks, Toolpath

PRINTERS = {"gwl": "nanoscribe-gt2-25x", "gcode": "lab-stage-gcode", "aerobasic": "femtika-aerotech-galvo",
            "waveform": "lab-daq-galvo"}


def two_block_toolpath(speed=2000.0):
    """Two blocks 100 µm apart: hatch lines, a ramped-power polyline and a 450-point polyline."""
    parts = []
    for b, x0 in enumerate((0.0, 100.0)):
        p0 = np.array([[x0 - 20, -10 + 2 * k, 0.5 + (k // 3) * 0.5] for k in range(6)])
        p1 = p0 + [40.0, 0.3, 0.0]
        hatch = Toolpath.from_segments(p0, p1, 1, np.arange(6) // 3, speed, 10.0 + 2.0 * np.arange(6),
                                       [0.5, 1.0, 1.5], block=b)
        parts.append(hatch)
        # ramped power contour (closed polyline) in layer 2
        t = np.linspace(0, 2 * np.pi, 9)
        ring = np.column_stack([x0 + 15 * np.cos(t), 15 * np.sin(t), np.full(9, 1.5)])
        ring[-1] = ring[0]
        pw = np.linspace(12.0, 20.0, 9)
        # long polyline over the Write limit (points_per_write = 200), layer 2
        s = np.linspace(0, 1, 450)
        lng = np.column_stack([x0 - 30 + 60 * s, 25 + 3 * np.sin(20 * s), np.full(450, 1.5)])
        poly = Toolpath(x_um=np.concatenate([ring[:, 0], lng[:, 0]]), y_um=np.concatenate([ring[:, 1], lng[:, 1]]),
                        z_um=np.concatenate([ring[:, 2], lng[:, 2]]), power_mw=np.concatenate([pw, np.full(450, 15.0)]),
                        mark_start=[0, 9, 459], mark_kind=[0, 1], mark_layer=[2, 2], mark_block=[b, b],
                        mark_speed_um_s=[speed / 2, speed], layer_z_um=[0.5, 1.0, 1.5])
        parts.append(poly)
    tp = Toolpath.concat(parts)
    org = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    tp.blocks = Blocks(org, [[0, 0, 0], [1, 0, 0]], org - [50, 50, 0], org + [50, 50, 10], "circle", 400.0)
    tp.check()
    return tp


def marks_from_moves(mv):
    """(starts, ends) of marks: a jump starts a mark, unless it is a zero-length jump that
    continues the previous one (GWL splits long lists into several Writes)."""
    jumps = np.flatnonzero(mv.jump)
    pts = mv.points()
    keep = [j for j in jumps if j == 0 or not (np.allclose(pts[j], pts[j - 1]) and mv.laser_on[j - 1])]
    starts = np.array(keep)
    ends = np.append(starts[1:], len(mv))
    return starts, ends


def _point_moves(mv):
    """Move rows that are toolpath points (drop the zero-length re-jumps of split lists)."""
    s, _ = marks_from_moves(mv)
    dup = np.zeros(len(mv), bool)
    dup[mv.jump] = True
    dup[s] = False
    return np.flatnonzero(~dup)


@pytest.mark.parametrize("dialect", ["gwl", "gcode", "aerobasic"])
def test_text_round_trip(tmp_path, dialect):
    pr = load_printer(PRINTERS[dialect])
    tp = two_block_toolpath(speed=2000.0 if dialect != "gcode" else 1000.0)
    pf = write_program(tp, pr, tmp_path, name="rt", provenance={"mesh_sha256": "0" * 64})
    assert pf.dialect == dialect and pf.main.exists() and all(f.exists() for f in pf.files)
    assert pf.n_bytes == sum(f.stat().st_size for f in pf.files)
    mv = read_program(pf.main, pr)
    assert mv.problems == []
    idx = _point_moves(mv)
    assert len(idx) == tp.n_points
    # points, within the printed precision (program unit digits)
    tol_um = 0.5 * 10.0 ** (-pr.decimals) * (1000.0 if dialect == "gcode" else 1.0) + 1e-9
    want = tp.points() + program_origin_um(pr)
    np.testing.assert_allclose(mv.points()[idx], want, atol=tol_um, rtol=0)
    # mark boundaries: one run per mark, laser off on the jump, on along the mark
    s, e = marks_from_moves(mv)
    assert len(s) == tp.n_marks
    np.testing.assert_array_equal(idx[tp.mark_start[:-1]], s)
    assert not mv.laser_on[mv.jump].any()
    assert mv.laser_on[~mv.jump].all()
    # blocks counted in order (stage-scanning G-code has no blocks: all 0)
    want_block = tp.mark_block[tp.point_mark()] if dialect != "gcode" else 0
    np.testing.assert_array_equal(mv.block[idx], want_block)
    # power (mW) within half a printed unit of the program's power unit
    pdec = DIALECTS[dialect].spec.decimals["power"]
    ptol = pr.power_from_program(0.5 * 10.0 ** (-pdec)) + 1e-9
    pm = tp.point_mark()
    on = ~np.isin(np.arange(tp.n_points), tp.mark_start[:-1])  # points reached with the laser on
    if dialect == "gwl":  # per-point power (PowerValuesOn) or LaserPower, every point
        np.testing.assert_allclose(mv.power_mw[idx], tp.power_mw, atol=ptol, rtol=0)
    else:  # step dialects: the segment ending at a point is written at that point's power
        np.testing.assert_allclose(mv.power_mw[idx][on], tp.power_mw[on], atol=ptol, rtol=0)
    # speeds of the marking moves
    sp = mv.speed_um_s[idx][on]
    np.testing.assert_allclose(sp, tp.mark_speed_um_s[pm][on], rtol=1e-6)
    # and it validates clean
    rep = validate_program(pf.main, pr)
    assert rep.ok and rep.n_moves == len(mv)


def test_gwl_structure(tmp_path):
    pr = load_printer("nanoscribe-gt2-25x")
    pf = write_program(two_block_toolpath(), pr, tmp_path, name="part")
    main = pf.main.read_text().splitlines()
    assert pf.main.name == "part_job.gwl"
    assert "include part_blocks\\part_block_0000.gwl" in main and "include part_blocks\\part_block_0001.gwl" in main
    assert main.index("GalvoScanMode") < main.index("include part_blocks\\part_block_0000.gwl")
    # relative stage moves from the start position; the interface found at both bottom-tier blocks
    assert "MoveStageX 100.000" in main and not any(ln.startswith("StageGoto") for ln in main)
    assert main.count("FindInterfaceAt 0.500") == 2
    assert main.index("MoveStageX 100.000") < main.index("FindInterfaceAt 0.500", main.index("MoveStageX 100.000") - 1) \
        < main.index("include part_blocks\\part_block_0001.gwl")
    blk = (tmp_path / "part_blocks" / "part_block_0000.gwl").read_text().splitlines()
    # LaserPower only where it changes: 6 hatch powers + the long polyline's 15 mW
    assert sum(ln.startswith("LaserPower") for ln in blk) == 7
    assert blk.count("PowerValuesOn") == 1 and blk.count("PowerValuesOff") == 1
    # 4 columns only under PowerValuesOn; no list longer than points_per_write
    i0, i1 = blk.index("PowerValuesOn"), blk.index("PowerValuesOff")
    assert all(len(ln.split()) == 4 for ln in blk[i0 + 1:i1] if ln != "Write")
    run, longest = 0, 0
    for ln in blk:
        run = 0 if ln == "Write" else run + (ln[:1].isdigit() or ln[:1] == "-")
        longest = max(longest, run)
    assert longest == 200
    # percent of the 50 mW reference: 10 mW -> 20 %
    assert "LaserPower 20.000" in blk


def test_waveform_round_trip(tmp_path):
    pr = load_printer("lab-daq-galvo")
    tp = two_block_toolpath()
    pf = write_program(tp, pr, tmp_path, name="wf")
    assert pf.main.name == "wf_waveform.csv" and [f.name for f in pf.files[1:]] == ["wf_block_0000.npz", "wf_block_0001.npz"]
    mv = read_program(pf.main, pr)
    on = mv.laser_on
    # one laser-on run per mark, starting and ending at the mark's end points
    rs = np.flatnonzero(on & ~np.r_[False, on[:-1]])
    re_ = np.flatnonzero(on & ~np.r_[on[1:], False])
    assert len(rs) == tp.n_marks
    np.testing.assert_allclose(mv.points()[rs], tp.points()[tp.mark_start[:-1]], atol=1e-9)
    np.testing.assert_allclose(mv.points()[re_], tp.points()[tp.mark_start[1:] - 1], atol=1e-9)
    # every vertex is a sample, in order, with its power
    P = mv.points()
    for m in range(tp.n_marks):
        seg = P[rs[m]:re_[m] + 1]
        pts = tp.mark_points(m)
        d = np.linalg.norm(seg[:, None, :] - pts[None], axis=2)
        hit, prev = [], -1
        for k in range(len(pts)):  # each vertex is a later sample than the one before
            cand = np.flatnonzero(d[prev + 1:, k] < 1e-9)
            assert len(cand), (m, k)
            prev = prev + 1 + cand[0]
            hit.append(prev)
        hit = np.array(hit)
        np.testing.assert_allclose(mv.power_mw[rs[m] + hit], tp.power_mw[tp.mark_start[m]:tp.mark_start[m + 1]], atol=1e-9)
    # limits: marking speed never above the mark speed, blanked moves within jump speed and acceleration
    speeds = tp.mark_speed_um_s
    assert mv.speed_um_s[on].max() <= speeds.max() * (1 + 1e-9)
    assert mv.speed_um_s.max() <= pr.jump_speed_um_s * 1.0001
    assert np.nanmax(mv.accel_um_s2) <= pr.galvo_acceleration_um_s2 * 1.01
    assert np.isfinite(mv.accel_um_s2).sum() > 100
    assert validate_program(pf.main, pr).ok


def test_voxel_round_trip(tmp_path):
    pr = load_printer("nanoscribe-gt2-25x")  # voxel 0.2 x 0.2 x 0.5 from its defaults
    p0 = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.5]])
    p1 = np.array([[4.0, 0.0, 0.0], [0.0, 3.0, 0.5]])
    tp = Toolpath.from_segments(p0, p1, 1, [0, 1], 1000.0, [25.0, 40.0], [0.0, 0.5], block=0)
    tp.blocks = Blocks.single([0, 0, 0], [4, 3, 0.5])
    pf = write_program(tp, pr, tmp_path, name="v", dialect="voxel")
    vol = np.load(tmp_path / "v_power.npy")
    assert vol.shape == (2, 16, 21)  # z 0..0.5, y 0..3, x 0..4 at 0.2/0.2/0.5
    assert np.count_nonzero(vol[0]) == 21 and np.count_nonzero(vol[1]) == 11
    np.testing.assert_allclose(vol[0, 0, :], 0.5)
    np.testing.assert_allclose(vol[1, 5:16, 0], 0.8)
    mv = read_program(pf.main, pr)
    assert len(mv) == 32
    np.testing.assert_allclose(np.sort(mv.power_mw), np.sort(np.r_[np.full(21, 25.0), np.full(11, 40.0)]), rtol=1e-6)
    assert validate_program(pf.main, pr).ok


@pytest.mark.parametrize("dialect", ["gwl", "gcode", "aerobasic", "waveform", "voxel"])
def test_second_export_is_byte_identical(tmp_path, dialect):
    pr = load_printer(PRINTERS.get(dialect, "nanoscribe-gt2-25x"))
    tp = two_block_toolpath(speed=1000.0)
    if dialect == "voxel":
        tp = tp.select_marks(tp.mark_block == 0)
    a = write_program(tp, pr, tmp_path / "a", dialect=dialect, provenance={"mesh_sha256": "ab"})
    b = write_program(tp, pr, tmp_path / "b", dialect=dialect, provenance={"mesh_sha256": "ab"})
    assert [f.relative_to(tmp_path / "a") for f in a.files] == [f.relative_to(tmp_path / "b") for f in b.files]
    for fa, fb in zip(a.files, b.files):
        assert fa.read_bytes() == fb.read_bytes()


def test_profile_missing_program_key_is_refused(tmp_path):
    import tomllib

    from bioslicer._data import data_dir

    doc = tomllib.loads((data_dir("printers") / "lab-stage-gcode.toml").read_text())
    del doc["program"]["power_command"]
    pr = parse_printer(doc, "no-power.toml")
    with pytest.raises(BioslicerError, match="program.power_command"):
        write_program(two_block_toolpath(1000.0), pr, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_export_leaves_nothing_behind(tmp_path):
    pr = load_printer("nanoscribe-gt2-63x")  # 200 µm field: the 100 µm wide blocks fit,
    tp = two_block_toolpath()
    tp.x_um[3] += 150.0  # ... a point 150 µm further does not
    with pytest.raises(BioslicerError, match=r"rt_blocks/rt_block_0000.gwl:\d+: galvo x, y"):
        write_program(tp, pr, tmp_path / "out", name="rt")
    assert list((tmp_path / "out").iterdir()) == []


def test_unstitched_and_bad_inputs_are_refused(tmp_path):
    pr = load_printer("nanoscribe-gt2-25x")
    tp = Toolpath.from_segments([[0, 0, 0]], [[1, 0, 0]], 1, 0, 1000.0, 10.0, [0.0])
    with pytest.raises(BioslicerError, match="not stitched"):
        write_program(tp, pr, tmp_path)
    tp.blocks = Blocks.single([0, 0, 0], [1, 0, 0])
    tp.mark_block[:] = 0
    with pytest.raises(BioslicerError, match="plain file name"):
        write_program(tp, pr, tmp_path, name="../x")
    with pytest.raises(BioslicerError, match="unknown dialect"):
        write_program(tp, pr, tmp_path, dialect="svg")
    tp.power_mw[0] = np.nan
    with pytest.raises(BioslicerError, match="NaN"):
        write_program(tp, pr, tmp_path)


@pytest.mark.parametrize("dialect", ["gwl", "gcode", "aerobasic"])
def test_chunked_parallel_writer_matches_one_chunk(tmp_path, dialect, monkeypatch):
    """Chunks rendered in parallel carry the state (ZOffset, ScanSpeed, LaserPower, M3) across
    chunk and batch boundaries: tiny chunks give the same bytes as one chunk per block."""
    from bioslicer.programs import gcode, gwl

    pr = load_printer(PRINTERS[dialect])
    tp = two_block_toolpath(speed=1000.0)
    tp.power_mw[:40] = 10.0  # runs of equal power across mark boundaries
    d = DIALECTS[dialect]
    mod = gwl if dialect == "gwl" else gcode
    outs = []
    for pts, batch in ((1 << 20, 16), (3, 2), (1, 1)):
        monkeypatch.setattr(mod, "CHUNK_POINTS", pts)
        monkeypatch.setattr(mod, "BATCH_CHUNKS", batch)
        out = tmp_path / f"c{pts}"
        out.mkdir()
        files = d.write(tp, pr, d.spec, out, "p", None, lambda *a: None)
        outs.append([f.read_bytes() for f in files])
    assert outs[0] == outs[1] == outs[2]
    assert sum(len(b) for b in outs[0]) > 10_000
