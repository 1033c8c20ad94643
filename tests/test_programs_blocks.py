"""Block-by-block program writing: ProgramWriter.write_block per block (any order, any process,
retried) + finish gives the bytes of write_program; tampered or missing block files are refused;
program names with digits."""

import multiprocessing as mp
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from bioslicer.errors import BioslicerError
from bioslicer.fileio import sha256_file
from bioslicer.printers import load_printer
from bioslicer.programs import ProgramWriter, read_program, validate_program, write_program
from bioslicer.toolpath import Blocks, Toolpath

PRINTERS = {"gwl": "nanoscribe-gt2-25x", "gcode": "lab-stage-gcode", "aerobasic": "femtika-aerotech-galvo",
            "waveform": "lab-daq-galvo", "voxel": "nanoscribe-gt2-25x"}
USED = (0, 2, 3)          # block rows with marks; row 1 is an empty grid cell


def block_marks(b, x0, speed):
    """Hatch lines with stepped powers, a ramped-power ring and a 250-point polyline around x0."""
    p0 = np.array([[x0 - 20, -10 + 2 * k, 0.5 + (k // 3) * 0.5] for k in range(6)])
    p1 = p0 + [40.0, 0.3, 0.0]
    hatch = Toolpath.from_segments(p0, p1, 1, np.arange(6) // 3, speed, 10.0 + 2.0 * np.arange(6),
                                   [0.5, 1.0, 1.5], block=b)
    t = np.linspace(0, 2 * np.pi, 9)
    ring = np.column_stack([x0 + 15 * np.cos(t), 15 * np.sin(t), np.full(9, 1.5)])
    s = np.linspace(0, 1, 250)
    lng = np.column_stack([x0 - 30 + 60 * s, 25 + 3 * np.sin(20 * s), np.full(250, 1.5)])
    pts = np.concatenate([ring, lng])
    poly = Toolpath(x_um=pts[:, 0], y_um=pts[:, 1], z_um=pts[:, 2],
                    power_mw=np.r_[np.linspace(12.0, 20.0, 9), np.full(250, 15.0)], mark_start=[0, 9, 259],
                    mark_kind=[0, 1], mark_layer=[2, 2], mark_block=[b, b], mark_speed_um_s=[speed / 2, speed],
                    layer_z_um=[0.5, 1.0, 1.5])
    return Toolpath.concat([hatch, poly])


def job_toolpath(speed=1000.0, used=USED, dz3=1.0):
    """Four blocks in a row 100 µm apart (the last one ``dz3`` µm higher); rows not in ``used`` get no marks."""
    org = np.array([[100.0 * b, 0.0, 0.0 if b < 3 else dz3] for b in range(4)])
    blocks = Blocks(org, [[b, 0, 0] for b in range(4)], org - [50, 50, 0], org + [50, 50, 10], "circle", 400.0)
    tp = Toolpath.concat([block_marks(b, 100.0 * b, speed) for b in used])
    tp.z_um[tp.mark_block[tp.point_mark()] == 3] += dz3
    tp.blocks = blocks
    tp.check()
    return tp


def _write_in_child(args):
    writer, b, tpb = args
    return writer.write_block(b, tpb)


@pytest.fixture(scope="module")
def spawn_pool():
    with mp.get_context("spawn").Pool(1) as pool:
        yield pool


def tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _case(dialect):
    pr = load_printer(PRINTERS[dialect])
    tp = job_toolpath(used=(2,) if dialect == "voxel" else USED, dz3=0.0 if dialect == "waveform" else 1.0)
    return pr, tp


@pytest.mark.parametrize("dialect", ["gwl", "gcode", "aerobasic", "waveform", "voxel"])
def test_blockwise_equals_write_program(tmp_path, dialect, spawn_pool):
    pr, tp = _case(dialect)
    prov = {"mesh_sha256": "ab" * 32}
    ref = write_program(tp, pr, tmp_path / "ref", name="part", dialect=dialect, provenance=prov)
    assert ref.report.ok and ref.report.n_moves > 0

    w = ProgramWriter(pr, tp.blocks, tmp_path / "blk", name="part", dialect=dialect, provenance=prov)
    w = pickle.loads(pickle.dumps(w))            # what a Dask worker gets
    order = list(range(len(tp.blocks)))
    random.Random(3).shuffle(order)
    parts = {}
    for k, b in enumerate(order):
        tpb = tp.select_marks(tp.mark_block == b)
        if k == 0:                                # one block in another process (spawned interpreter)
            parts[b] = spawn_pool.apply(_write_in_child, ((w, b, tpb),))
        else:
            parts[b] = w.write_block(b, tpb)
    # the empty grid cells give parts without files; the others stage their files, hashed
    for b, p in parts.items():
        assert p.block == b and (p.n_marks > 0) == (b in tp.mark_block)
        assert all(f.startswith(".part.staging/") for f in p.files) and len(p.files) == (p.n_marks > 0)
        assert p.n_bytes == sum((w.out_dir / f).stat().st_size for f in p.files)
    # a retried block rewrites the same bytes
    b0 = int(tp.mark_block[0])
    again = w.write_block(b0, tp.select_marks(tp.mark_block == b0))
    assert again == parts[b0]
    pf = w.finish([parts[b] for b in sorted(parts)])
    assert pf.report.ok and pf.report.n_moves == ref.report.n_moves
    got, want = tree(tmp_path / "blk"), tree(tmp_path / "ref")
    assert list(got) == list(want)               # same files, no staging left
    for rel in want:
        assert got[rel] == want[rel], rel
    assert [f.relative_to(tmp_path / "blk") for f in pf.files] == [f.relative_to(tmp_path / "ref") for f in ref.files]


def test_gwl_skips_empty_blocks_and_each_block_sets_its_state(tmp_path):
    pr, tp = _case("gwl")
    pf = write_program(tp, pr, tmp_path, name="part")
    main = pf.main.read_text().splitlines()
    inc = [ln for ln in main if ln.startswith("include")]
    assert inc == [f"include part_blocks\\part_block_{b:04d}.gwl" for b in USED]
    # relative stage moves from the start position: blocks at x = 0, 200, 300 (row 1 skipped)
    assert [ln for ln in main if ln.startswith("MoveStageX")] == ["MoveStageX 0.000", "MoveStageX 200.000",
                                                                  "MoveStageX 100.000"]
    # block 3 sits 1 µm higher: one AddZDrivePosition before its include
    assert main.index("AddZDrivePosition 1.000") < main.index(inc[2])
    for b in USED:
        lines = (tmp_path / "part_blocks" / f"part_block_{b:04d}.gwl").read_text().splitlines()
        assert [ln.split()[0] for ln in lines[1:4]] == ["ZOffset", "ScanSpeed", "LaserPower"]
    assert [f.name for f in pf.files] == ["part_job.gwl"] + [f"part_block_{b:04d}.gwl" for b in USED]


@pytest.mark.parametrize("dialect,change", [("gwl", "alter"), ("gcode", "delete"), ("waveform", "alter")])
def test_finish_refuses_a_changed_or_missing_block_file(tmp_path, dialect, change):
    pr, tp = _case(dialect)
    out = tmp_path / "job"
    w = ProgramWriter(pr, tp.blocks, out, name="part", dialect=dialect)
    parts = [w.write_block(b, tp.select_marks(tp.mark_block == b)) for b in USED]
    victim = out / parts[1].files[0]
    if change == "alter":
        data = bytearray(victim.read_bytes())
        data[-2] ^= 1
        victim.write_bytes(bytes(data))
        what = "differs from what the worker reported"
    else:
        victim.unlink()
        what = "was not found"
    with pytest.raises(BioslicerError) as err:
        w.finish(parts)
    msg = str(err.value)
    assert msg.startswith(f"block 2 file {victim} {what}") and "shared filesystem" in msg and "\n" not in msg
    assert list(out.iterdir()) == []             # nothing it or the blocks wrote is left


def test_failed_validation_after_blockwise_write_leaves_nothing(tmp_path):
    pr = load_printer("nanoscribe-gt2-63x")      # 200 µm field
    tp = job_toolpath()
    tp.x_um[tp.mark_start[:-1][tp.mark_block == 3][0]] += 150.0
    out = tmp_path / "job"
    w = ProgramWriter(pr, tp.blocks, out, name="part")
    parts = [w.write_block(b, tp.select_marks(tp.mark_block == b)) for b in USED]
    with pytest.raises(BioslicerError, match=r"part_blocks/part_block_0003.gwl:\d+: galvo x, y"):
        w.finish(parts)
    assert list(out.iterdir()) == []


def test_write_block_refuses_marks_of_another_block(tmp_path):
    pr, tp = _case("gwl")
    w = ProgramWriter(pr, tp.blocks, tmp_path, name="part")
    with pytest.raises(BioslicerError, match="marks of other blocks"):
        w.write_block(0, tp)
    with pytest.raises(BioslicerError, match="not in the block table"):
        w.write_block(9, tp.select_marks(tp.mark_block == 0))
    # nothing written: only the writer's (empty) staging folder exists until it finishes or aborts
    assert [p.name for p in tmp_path.rglob("*")] == [".part.staging"]
    w.abort()
    assert not any(tmp_path.iterdir())


def test_block_written_after_the_program_finished_fails_and_leaves_nothing(tmp_path):
    """A block still running when the program was finished (a Dask task of a worker thought dead)
    must not bring the staging folder back into the finished job."""
    pr, tp = _case("gwl")
    w = ProgramWriter(pr, tp.blocks, tmp_path, name="part")
    parts = [w.write_block(b, tp.select_marks(tp.mark_block == b)) for b in np.unique(tp.mark_block)]
    files = w.finish(parts)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(FileNotFoundError):
        w.write_block(int(tp.mark_block[0]), tp.select_marks(tp.mark_block == tp.mark_block[0]))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert files.main.is_file()


@pytest.mark.parametrize("name", ["box50", "7", "a-1_b2", "part7"])
def test_program_names_with_digits_validate(tmp_path, name):
    pr, tp = _case("gwl")
    pf = write_program(tp, pr, tmp_path, name=name)
    assert pf.main.name == f"{name}_job.gwl"
    assert f"include {name}_blocks\\{name}_block_0002.gwl" in pf.main.read_text().splitlines()
    rep = validate_program(pf.main, pr)
    assert rep.ok, rep.first()
    mv = read_program(pf.main, pr)
    assert mv.problems == [] and len(mv.files) == 4
    assert np.unique(mv.block).tolist() == [0, 1, 2]      # counted in program order
    assert os.path.basename(mv.files[2]) == f"{name}_block_0002.gwl"


def test_tokenizer_reads_no_numbers_after_a_text_keyword():
    from bioslicer.programs import tokenize as T

    text = "include box50_blocks\\box50_block_0007.gwl\nLaserPower 7_1\n"
    kw = T.Keywords(["include", "LaserPower"], raw=["include"])
    buf = np.frombuffer(text.encode(), np.uint8)
    n = 3
    out = dict(codes=np.empty(n, np.int64), lines=np.empty(n, np.int64), nvals=np.empty(n, np.int64),
               vals=np.zeros((n, T.MAX_SLOTS)), tags=np.zeros((n, T.MAX_SLOTS), np.uint8),
               starts=np.empty(n, np.int64), ends=np.empty(n, np.int64))
    r = T.tokenize(buf, np.frombuffer(b"%", np.uint8), kw.blob, kw.off, kw.order, kw.raw, 1, *out.values())
    assert r == 2
    assert out["codes"][0] == kw.code["include"] and out["nvals"][0] == 0
    assert out["codes"][1] == T.CODE_BAD          # a number word elsewhere is still malformed


def _stream_case(tmp_path, pr, tp, order, later=True):
    """Blocks written, given to a StreamCheck in ``order``, the main file written: (stream, main, parts)."""
    from bioslicer.programs import gwl

    w = ProgramWriter(pr, tp.blocks, tmp_path / "job", name="part")
    w.sync_later = later                         # block files hashed and fsynced by the stream's thread
    stream = w.stream_check(range(len(tp.blocks)))
    parts = {b: w.write_block(b, tp.select_marks(tp.mark_block == b)) for b in range(len(tp.blocks))}
    for b in order:
        stream.add(parts[b])
    used = [parts[b] for b in sorted(parts) if parts[b].n_marks]
    counts = {"n_marks": sum(p.n_marks for p in used), "n_points": sum(p.info["n_points"] for p in used),
              "n_blocks": len(used), "n_table": len(tp.blocks)}
    files = gwl.write_main(w, used, counts, w.staging)
    return w, stream, files[0], used


@pytest.mark.parametrize("case", ["clean", "field", "speed"])
def test_streamed_check_gives_the_report_of_a_whole_parse(tmp_path, case):
    # blocks read back as they come (any order), the main file then read alone: the same report
    # as parsing the finished program whole, violations (file, line, message) and counts included
    pr = load_printer("nanoscribe-gt2-63x")      # 200 µm field
    tp = job_toolpath(speed=1e9 if case == "speed" else 1000.0)
    if case == "field":
        tp.x_um[tp.mark_block[tp.point_mark()] >= 2] += 150.0     # blocks 2 and 3 reach out of the field
    w, stream, main, used = _stream_case(tmp_path, pr, tp, [3, 1, 0, 2])
    got = stream.confirm(main)
    want = validate_program(main, pr, "gwl")
    assert got is not None and stream.confirmed and stream.records and stream.busy_s > 0
    assert got.to_dict() == want.to_dict()
    assert stream.synced == {str(w.out_dir / f) for p in used for f in p.files}
    assert want.ok == (case == "clean") and want.n_moves > 0
    if case != "clean":
        assert want.n_violations > len(want.violations) == 20
    w.abort()


def test_streamed_check_stands_only_for_the_program_it_read(tmp_path):
    # a block file replaced after it was read, or a block missing from the stream: a whole parse
    pr = load_printer("nanoscribe-gt2-25x")
    tp = job_toolpath()
    w, stream, main, used = _stream_case(tmp_path / "a", pr, tp, [0, 1, 2, 3])
    stream.close()
    f = w.out_dir / used[1].files[0]
    data = f.read_bytes()
    f.unlink()
    f.write_bytes(data)                          # the same bytes, but not the file that was read
    assert stream.confirm(main) is None and not stream.confirmed
    pf = w.finish(used, stream=stream)           # validated by a whole parse instead
    assert pf.report.ok and pf.report.n_moves == len(read_program(pf.main, pr))
    assert all(p.sha256[f] == "" for p in used for f in p.files)      # hashed by the thread, not the writer
    assert pf.sha256 == {f: sha256_file(f)[0] for f in pf.files[1:]}   # what finish checked and hands on
    w, stream, main, used = _stream_case(tmp_path / "b", pr, tp, [0, 1, 3])    # block 2 never given
    assert stream.confirm(main) is None
    pf = w.finish(used, stream=stream)
    assert pf.report.ok and not stream.confirmed


def test_finish_with_a_stream_still_refuses_a_block_file_changed_after_it_was_read(tmp_path):
    # the stream's thread hashed the block files as it read them; a file changed afterwards is
    # hashed again by finish() and refused, as without a stream
    pr, tp = _case("gwl")
    w, stream, main, used = _stream_case(tmp_path, pr, tp, [0, 1, 2, 3], later=False)
    stream.close()
    victim = w.out_dir / used[1].files[0]
    assert stream.sha256_of(victim) == used[1].sha256[used[1].files[0]]
    victim.write_bytes(victim.read_bytes() + b"\n")    # one more (blank) line: another size
    assert stream.sha256_of(victim) is None
    with pytest.raises(BioslicerError, match="differs from what the worker reported"):
        w.finish(used, stream=stream)
    assert list(w.out_dir.iterdir()) == []


def _records(text: str, words=("Write", "LaserPower"), comment="%"):
    from bioslicer.programs import tokenize as T

    kw = T.Keywords(list(words))
    buf = np.frombuffer(text.encode(), np.uint8)
    n = text.count("\n") + 1
    out = dict(codes=np.full(n, -9, np.int64), lines=np.empty(n, np.int64), nvals=np.empty(n, np.int64),
               vals=np.full((n, T.MAX_SLOTS), 7.5), tags=np.full((n, T.MAX_SLOTS), 9, np.uint8),
               starts=np.empty(n, np.int64), ends=np.empty(n, np.int64))
    r = T.tokenize(buf, np.frombuffer(comment.encode(), np.uint8), kw.blob, kw.off, kw.order, kw.raw, 1, *out.values())
    return {k: v[:r] for k, v in out.items()}


def test_tokenizer_point_lines_read_exactly():
    # lines of plain numbers (the point path): every value is the correctly rounded decimal
    # (float() of the token, the sign of -0.000 kept), blanks, tabs and CRLF line ends alike
    rng = np.random.default_rng(7)
    toks, lines = [], []
    for _ in range(400):
        row = []
        for _ in range(int(rng.integers(1, 7))):
            digits = str(int(rng.integers(0, 10 ** int(rng.integers(1, 15)))))
            k = int(rng.integers(0, min(len(digits), 6) + 1))
            t = ("-" if rng.random() < 0.4 else "") + (digits[:len(digits) - k] or "0") + ("." + digits[len(digits) - k:]
                                                                                          if k else "")
            row.append(t)
        toks.append(row)
        lines.append(["", " ", "\t"][int(rng.integers(0, 3))] + [" ", "  ", "\t", " \t "][int(rng.integers(0, 4))].join(row)
                     + ["", " ", "\r", " \r"][int(rng.integers(0, 4))])
    rec = _records("\n".join(lines) + "\n")
    assert len(rec["codes"]) == len(lines) and (rec["codes"] == 0).all() and (rec["tags"] == 0).all()
    for i, row in enumerate(toks):
        assert rec["nvals"][i] == len(row) and rec["lines"][i] == i + 1
        want = np.array([float(t) for t in row] + [0.0] * (6 - len(row)))
        assert np.array_equal(rec["vals"][i].view(np.int64), want.view(np.int64)), (lines[i], rec["vals"][i])


def test_tokenizer_lines_the_point_path_leaves_to_the_others():
    from bioslicer.programs import tokenize as T

    # what the keyword, fast and general paths make of them (as before the point path existed)
    rec = _records("1.5 % note\n1e2 2\n1.5,2\n+1 2\n1 2 3 4 5 6 7\n1.5X2\n1.5 X2\n123456789012345 1\n-.5 1\n1 -\n")
    assert rec["codes"].tolist() == [0, 0, 0, 0, T.CODE_BAD, 0, 0, 0, 0, T.CODE_BAD]
    assert rec["nvals"].tolist() == [1, 2, 2, 2, 6, 2, 2, 2, 2, 1]
    assert rec["vals"][:, :2].tolist() == [[1.5, 0], [100, 2], [1.5, 2], [1, 2], [1, 2], [1.5, 2], [1.5, 2],
                                           [123456789012345, 1], [-0.5, 1], [1, 0]]
    assert rec["tags"][:, 1].tolist() == [0, 0, 0, 0, 0, 0, ord("X"), 0, 0, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_reader_marks_exactly_the_moves_that_fail_a_check(tmp_path, monkeypatch, seed):
    # the stream reader keeps every move and marks the failing ones (from the extremes of each
    # chunk, then move by move where they fail): the very moves check_moves finds in a plain reading
    from bioslicer.programs import DIALECTS, gwl
    from bioslicer.programs import tokenize as T
    from bioslicer.programs.checks import N_CHECKS, _check_kernel, limits

    monkeypatch.setattr(T.ChunkReader.__init__, "__defaults__", (1024, 16))    # many small chunks
    pr = load_printer("nanoscribe-gt2-25x")
    rng = np.random.default_rng(seed)
    bad = ["ScanSpeed 1e8", "ScanSpeed 0.001", "LaserPower 500", "LaserPower -3", "ZOffset -2", "ZOffset 400",
           "MoveStageX 1e6\n3 3 0.5\n4 4 0.5\nWrite\nMoveStageX -1e6", "PowerValuesOn\n1 1 0.5 20\n2 2 0.5 300\nWrite\nPowerValuesOff", "400 0 0.5\n0 0 0.5\nWrite",
           "0 0 -0.75\n1 1 -0.75\nWrite", "AddZDrivePosition 10\nZOffset -2\n3 3 0.5\n4 4 0.5\nWrite\nAddZDrivePosition -10",
           "ScanSpeed 1e8\n5 5 0.5\nWrite\nScanSpeed 50000", "MoveStageY -1e6\n3 3 0.5\n4 4 0.5\nWrite\nMoveStageY 1e6",
           "AddZDrivePosition -10\n3 3 0.5\n4 4 0.5\nWrite\nAddZDrivePosition 10"]
    lines = ["InvertZAxis 1", "GalvoScanMode"]
    for k in range(4 * len(bad)):    # sections: every other one with one violation (each kind 2x)
        lines += ["ScanSpeed 50000", "LaserPower 40", "ZOffset 0"]
        for _ in range(int(rng.integers(8, 16))):
            lines += [f"{rng.normal() * 50:.3f} {rng.normal() * 50:.3f} 0.500" for _ in range(int(rng.integers(2, 5)))]
            lines.append("Write")
        if k % 2:
            lines += [bad[(k // 2) % len(bad)], "3 3 0.5", "4 4 0.5", "Write"]
    main = tmp_path / "p.gwl"
    main.write_text("\n".join(lines) + "\n")
    lim, flags = limits(pr)
    spec = DIALECTS["gwl"].spec
    plain = [mv for mv in gwl._Reader(pr, spec).run(main, main)]
    got = [(len(mv), mv.failing.copy()) for mv in gwl.StreamReader(pr, spec, main, check=(lim, flags)).run(main, main)]
    assert len(got) == len(plain) > 10
    clean = 0
    for (n, failing), mv in zip(got, plain):
        bits = np.empty(len(mv), np.int64)
        _check_kernel(mv.x, mv.y, mv.z, mv.lx, mv.ly, mv.lz, mv.sx, mv.sy, mv.sz, mv.power_mw, mv.speed_um_s,
                      mv.accel_um_s2, mv.laser_on, mv.jump, lim, flags, bits, np.zeros(N_CHECKS, np.int64))
        assert n == len(mv) and np.array_equal(failing, np.flatnonzero(bits))
        clean += len(failing) == 0
    assert 0 < clean < len(got)      # chunks with and without failing moves


def test_chunk_reader_gives_the_same_records_at_any_chunk_size():
    # LF, CRLF and lone CR line ends, a CRLF cut between two reads: the lines read do not depend
    # on where the reads end
    from bioslicer.programs import tokenize as T

    kw = T.Keywords(["Write", "LaserPower"])
    rng = np.random.default_rng(3)

    def recs(data, cb):
        out = []
        for rec, _ in T.ChunkReader(data, kw, "%", chunk_bytes=cb, pieces=1):
            keep = rec["codes"] != T.CODE_SKIP
            out += list(zip(rec["codes"][keep].tolist(), rec["lines"][keep].tolist(), rec["vals"][keep].tolist()))
        return out

    for _ in range(300):
        data = "".join(str(rng.choice(["1 2 3", "Write", "LaserPower 5", "", "% c", "-1.5 2 0.25"]))
                       + str(rng.choice(["\n", "\r\n", "\r"])) for _ in range(int(rng.integers(0, 12)))).encode()
        if rng.random() < 0.3:
            data = data.rstrip(b"\n")
        want = recs(data, 1 << 20)
        for cb in (1, 2, 3, 5, 8):
            assert recs(data, cb) == want, (data, cb)
