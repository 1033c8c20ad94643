"""Job folders: atomic commit, manifest, verify, submit (bioslicer.jobs and `bioslicer job`)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bioslicer import jobs
from bioslicer.cli import main as cli_main
from bioslicer.errors import BioslicerError
from bioslicer.jobs import (JOB_FORMAT, JobWriter, check_manifest, job_summary, read_manifest, submit_job,
                            verify_job)
from bioslicer.printers import load_printer
from bioslicer.toolpath import Blocks, Toolpath

MESH_BYTES = b"solid part\nendsolid part\n"


# ----------------------------------------------------------------------------- helpers
def _toolpath(radius_um: float = 150.0) -> Toolpath:
    """Four 2-point marks on two layers, reaching ``radius_um`` from the block centre."""
    r = radius_um
    p0 = np.array([[-r, 0, 0], [0, -r, 0], [-10, 0, 1], [0, -10, 1]], float)
    p1 = np.array([[r, 0, 0], [0, r, 0], [10, 0, 1], [0, 10, 1]], float)
    tp = Toolpath.from_segments(p0, p1, kind=1, layer=[0, 0, 1, 1], speed_um_s=1e5, power_mw=20.0,
                                layer_z_um=[0.0, 1.0], block=0)
    b = tp.bounds()
    tp.blocks = Blocks.single(b[0], b[1], "circle", 400.0)
    return tp


def _fake_program(tp: Toolpath) -> bytes:
    """A toy program: one 'x y z' line per point in galvo coordinates (what the fake validator reads)."""
    loc = tp.local_xyz()
    return ("% toy program\n" + "".join(f"{x:.3f} {y:.3f} {z:.3f}\n" for x, y, z in loc)).encode()


def fake_validate(path, printer, dialect=None):
    """Stand-in for bioslicer.programs.validate_program: each 'x y z' line must lie in the field."""
    violations = []
    n = 0
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.startswith("%"):
            continue
        x, y, _ = map(float, line.split())
        n += 1
        if not printer.in_field(x, y):
            violations.append(SimpleNamespace(file=Path(path).name, line=i, message="point outside the field"))
    rep = SimpleNamespace(ok=not violations, n_moves=n, violations=violations)
    rep.to_dict = lambda: {"ok": rep.ok, "n_moves": n,
                           "violations": [vars(v) for v in violations]}
    return rep


def fake_facts(main, printer, dialect):
    """Stand-in for jobs.verify.program_facts on a toy program: the facts of the job's toolpath.npz."""
    tp = Toolpath.load(Path(main).parent / "toolpath.npz")
    b = tp.bounds()
    return {"marks": tp.n_marks, "segments": tp.n_segments, "points": tp.n_points,
            "mark_length_um": float(tp.mark_lengths().sum()), "extent_um": (b[1] - b[0]).tolist(),
            "power_min_mw": float(tp.power_mw.min()), "power_max_mw": float(tp.power_mw.max())}


@pytest.fixture(autouse=True)
def _fake_validator(monkeypatch, request):
    if not request.node.name.startswith("test_real_"):
        monkeypatch.setattr(jobs.verify, "_validate_program", fake_validate)
        monkeypatch.setattr(jobs.verify, "program_facts", fake_facts)


def _manifest(tp: Toolpath, printer, main="part.gwl", extra_program=()):
    val = fake_validate_bytes(_fake_program(tp), printer)
    return {
        "software": {"name": "bioslicer", "version": "0.1.0"},
        "mesh": {"file": "vessel.stl", "sha256": hashlib.sha256(MESH_BYTES).hexdigest(), "units": "mm",
                 "bounds_um": tp.bounds(), "report": {"watertight": True}},
        "printer": printer.to_dict(),
        "recipe": {"slice_um": 1.0, "hatch_um": 0.2, "power_mw": {"hatch": 20.0}, "strategy": "solid",
                   "gyroid_cell_um": 20.0, "block_size_um": None},
        "program": {"dialect": printer.dialect, "main": main, "files": sorted([main, *extra_program])},
        "counts": {"layers": tp.n_layers, "blocks": len(tp.blocks), "marks": tp.n_marks,
                   "segments": tp.n_segments, "points": tp.n_points,
                   "mark_length_um": tp.mark_lengths().sum(), "jump_length_um": tp.jump_lengths().sum(),
                   "dropped_segments": 0},
        "bounds_um": tp.bounds(),
        "estimate": {"total_s": 3723.4, "per_block_s": [3723.4], "breakdown": {"mark_s": 3000.0, "counts": {"jumps": 3}}},
        "validation": val,
        "preview": "preview.png",
        "toolpath": "toolpath.npz",
    }


def fake_validate_bytes(data: bytes, printer) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "part.gwl"
        p.write_bytes(data)
        return fake_validate(p, printer).to_dict()


def make_job(out_dir, printer_name="nanoscribe-gt2-25x", radius_um=150.0, zip=False, overwrite=False,
             tag=b"") -> Path:
    printer = load_printer(printer_name)
    tp = _toolpath(radius_um)
    with JobWriter(out_dir, overwrite=overwrite) as jw:
        (jw.path / "part.gwl").write_bytes(_fake_program(tp))
        (jw.path / "blocks").mkdir()
        (jw.path / "blocks" / "block_0.gwl").write_bytes(b"% block 0\n" + tag)
        (jw.path / "preview.png").write_bytes(b"\x89PNG fake")
        (jw.path / "mesh.stl").write_bytes(MESH_BYTES)
        tp.save(jw.path / "toolpath.npz")
        return jw.commit(_manifest(tp, printer, extra_program=["blocks/block_0.gwl"]), zip=zip)


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# ----------------------------------------------------------------------------- commit
def test_manifest_matches_job_folder(tmp_path):
    out = make_job(tmp_path / "part_job")
    assert out == tmp_path / "part_job" and out.is_dir()
    assert sorted(os.listdir(tmp_path)) == ["part_job"]  # no partial folder left
    m = read_manifest(out)
    assert m["format"] == JOB_FORMAT
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(m["files"]) == files - {"manifest.json"}
    assert {"part.gwl", "blocks/block_0.gwl", "preview.png", "toolpath.npz", "mesh.stl", "report.txt"} == set(m["files"])
    for rel, h in m["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == h
    # canonical JSON: sorted keys, indent 2, numpy converted
    raw = (out / "manifest.json").read_bytes()
    assert raw == (json.dumps(m, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    tp = Toolpath.load(out / "toolpath.npz")
    assert m["counts"]["marks"] == tp.n_marks == 4 and m["counts"]["points"] == 8
    assert m["counts"]["mark_length_um"] == pytest.approx(2 * 300.0 + 2 * 20.0)
    assert m["bounds_um"] == [[-150.0, -150.0, 0.0], [150.0, 150.0, 1.0]]
    assert m["printer"] == load_printer("nanoscribe-gt2-25x").to_dict() | {
        "stage_x_um": [-50000.0, 50000.0], "stage_y_um": [-50000.0, 50000.0], "stage_z_um": [-5000.0, 5000.0]}


def test_report_has_operator_facts(tmp_path):
    out = make_job(tmp_path / "part_job")
    text = (out / "report.txt").read_text(encoding="utf-8")
    m = read_manifest(out)
    files = {k: v for k, v in m["files"].items() if k != "report.txt"}
    assert text == job_summary({**m, "files": files})
    assert f"{m['files']['part.gwl']}  part.gwl" in text
    for needle in ("vessel.stl", "nanoscribe-gt2-25x", "25x NA0.8", "gwl", "main file part.gwl",
                   "1:02:03", "Blocks        1", "Layers        2", "300.0 × 300.0 × 1.0 µm",
                   "Validation    OK", "Time split    mark 0:50:00\n"):
        assert needle in text, needle
    recipe = text.split("Recipe (highlights")[1].split("\n\n")[0].splitlines()[1:]
    assert [r.split()[0] for r in recipe] == ["strategy", "slice_um", "hatch_um", "power_mw"]
    assert recipe[3].split() == ["power_mw", "hatch=20"]


def test_commit_is_deterministic_and_zip_is_byte_identical(tmp_path):
    a = make_job(tmp_path / "a" / "job", zip=True)
    b = make_job(tmp_path / "b" / "job_other_name", zip=True)
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    za = a.with_name(a.name + ".zip")
    zb = b.with_name(b.name + ".zip")
    assert za.read_bytes() == zb.read_bytes()
    with zipfile.ZipFile(za) as zf:
        names = zf.namelist()
        assert names == sorted(names) and "manifest.json" in names and "blocks/block_0.gwl" in names
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert zf.read("part.gwl") == (a / "part.gwl").read_bytes()
    assert read_manifest(za) == read_manifest(a)
    assert verify_job(za).ok
    assert sorted(os.listdir(tmp_path / "a")) == ["job", "job.zip"]


def test_interruption_leaves_nothing(tmp_path):
    out = tmp_path / "jobs" / "part_job"
    for exc in (RuntimeError("crash"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with JobWriter(out) as jw:
                assert jw.path.parent == out.parent and jw.path.name.startswith(".part_job.partial-")
                (jw.path / "part.gwl").write_bytes(b"half a program")
                raise exc
        assert not out.exists()
        assert os.listdir(out.parent) == []
    with JobWriter(out) as jw:  # leaving without commit is an interruption too
        (jw.path / "x").write_text("x")
    assert os.listdir(out.parent) == []


def test_disk_full_while_writing_the_manifest_leaves_nothing(tmp_path, monkeypatch):
    real = jobs.writer._write_bytes_fsync

    def full(path, data):
        if Path(path).name == "manifest.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(jobs.writer, "_write_bytes_fsync", full)
    with pytest.raises(BioslicerError, match="cannot write job .*No space left on device"):
        make_job(tmp_path / "part_job", zip=True)
    assert os.listdir(tmp_path) == []
    assert not list(tmp_path.rglob("manifest.json"))


def test_disk_full_in_pipeline_writer_or_zip_leaves_nothing(tmp_path, monkeypatch):
    with pytest.raises(OSError):
        with JobWriter(tmp_path / "part_job") as jw:
            (jw.path / "part.gwl").write_bytes(b"G1 X0\n")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert os.listdir(tmp_path) == []

    def full_zip(folder, zip_path, rels=None):
        Path(zip_path).write_bytes(b"PK half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jobs.writer, "write_job_zip", full_zip)
    with pytest.raises(BioslicerError, match="No space left"):
        make_job(tmp_path / "part_job", zip=True)
    assert os.listdir(tmp_path) == []


def test_existing_job_refused_unless_overwrite(tmp_path):
    out = make_job(tmp_path / "part_job", tag=b"one")
    with pytest.raises(BioslicerError, match="already exists.*--overwrite"):
        make_job(out, tag=b"two")
    assert (out / "blocks" / "block_0.gwl").read_bytes().endswith(b"one")
    make_job(out, overwrite=True, tag=b"two")
    assert (out / "blocks" / "block_0.gwl").read_bytes().endswith(b"two")
    assert sorted(os.listdir(tmp_path)) == ["part_job"]  # old copy removed, nothing aside
    assert verify_job(out).ok


def test_bad_manifest_is_a_bug_and_leaves_nothing(tmp_path):
    printer = load_printer("nanoscribe-gt2-25x")
    tp = _toolpath()
    with pytest.raises(ValueError, match="not written: part.gwl"):
        with JobWriter(tmp_path / "j") as jw:
            (jw.path / "preview.png").write_bytes(b"x")
            (jw.path / "toolpath.npz").write_bytes(b"x")
            (jw.path / "blocks").mkdir()
            (jw.path / "blocks" / "block_0.gwl").write_bytes(b"x")
            jw.commit(_manifest(tp, printer, extra_program=["blocks/block_0.gwl"]))
    assert os.listdir(tmp_path) == []
    m = _manifest(tp, printer)
    del m["counts"]["segments"]
    m["estimate"]["per_block_s"] = [1.0, 2.0]
    m["format"] = JOB_FORMAT
    problems = check_manifest(json.loads(jobs.manifest_bytes(m)), complete=False)
    assert problems == ["missing key 'counts.segments'"]
    del m["mesh"]
    assert "missing key 'mesh'" in check_manifest(json.loads(jobs.manifest_bytes(m)), complete=False)


# ----------------------------------------------------------------------------- read / verify
def test_read_manifest_refuses_non_jobs(tmp_path):
    with pytest.raises(BioslicerError, match="not found"):
        read_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BioslicerError, match="not a bioslicer job"):
        read_manifest(tmp_path / "empty")
    part = tmp_path / ".x.partial-abc"
    part.mkdir()
    (part / "manifest.json").write_text("{}")
    with pytest.raises(BioslicerError, match="unfinished job"):
        read_manifest(part)


def test_verify_ok_and_flipped_byte_names_the_file(tmp_path):
    out = make_job(tmp_path / "part_job")
    rep = verify_job(out)
    assert rep.ok and rep.problems == [] and rep.n_files == 6
    assert rep.printer == "nanoscribe-gt2-25x (embedded)" and rep.validation["n_moves"] == 8
    prog = out / "part.gwl"
    data = bytearray(prog.read_bytes())
    data[20] ^= 0x01
    prog.write_bytes(bytes(data))
    rep = verify_job(out)
    assert not rep.ok
    assert rep.problems[0] == "part.gwl: SHA-256 mismatch, the file was changed or damaged"


def test_verify_reports_missing_and_extra_files(tmp_path):
    out = make_job(tmp_path / "part_job")
    (out / "blocks" / "block_0.gwl").unlink()
    (out / "notes.txt").write_text("hello")
    rep = verify_job(out)
    assert not rep.ok
    assert "blocks/block_0.gwl: missing (listed in the manifest)" in rep.problems
    assert "notes.txt: unexpected file, not in the manifest" in rep.problems


def test_verify_damaged_manifest_is_a_problem(tmp_path):
    out = make_job(tmp_path / "part_job")
    (out / "manifest.json").write_bytes((out / "manifest.json").read_bytes()[:-40])
    rep = verify_job(out)
    assert not rep.ok and rep.problems[0].startswith("manifest.json:") and "not valid JSON" in rep.problems[0]


def test_job_for_25x_fails_on_63x(tmp_path):
    out = make_job(tmp_path / "part_job", radius_um=150.0)  # inside the 400 µm field, outside 200 µm
    assert verify_job(out, printer="nanoscribe-gt2-25x").ok
    rep = verify_job(out, printer="nanoscribe-gt2-63x")
    assert not rep.ok and rep.printer == "nanoscribe-gt2-63x"
    # the four points at radius 150 are outside the 63x field, the four at radius 10 are inside
    assert len(rep.problems) == 4
    assert all(p.startswith("part.gwl:") and "outside the field" in p for p in rep.problems)
    rep = verify_job(out, printer="lab-stage-gcode")
    assert not rep.ok and "cannot run on lab-stage-gcode" in rep.problems[0]


def test_embedded_printer_round_trips(tmp_path):
    out = make_job(tmp_path / "part_job")
    pr = jobs.printer_from_manifest(read_manifest(out))
    assert pr == load_printer("nanoscribe-gt2-25x")


# ----------------------------------------------------------------------------- submit
def test_submit_copies_and_second_submit_is_noop(tmp_path):
    out = make_job(tmp_path / "part_job")
    spool = tmp_path / "spool"
    spool.mkdir()
    res = submit_job(out, spool)
    assert res.submitted and res.n_files == 7 and res.dest == str(spool / "part_job")
    assert os.listdir(spool) == ["part_job"]
    assert _tree(spool / "part_job") == _tree(out)
    for p in out.rglob("*"):
        if p.is_file():
            assert (spool / "part_job" / p.relative_to(out)).read_bytes() == p.read_bytes()
    mtime = (spool / "part_job" / "manifest.json").stat().st_mtime_ns
    res2 = submit_job(out, spool)
    assert not res2.submitted and res2.n_files == 0
    assert (spool / "part_job" / "manifest.json").stat().st_mtime_ns == mtime
    assert os.listdir(spool) == ["part_job"]


def test_submit_zip_job(tmp_path):
    out = make_job(tmp_path / "part_job", zip=True)
    spool = tmp_path / "spool"
    spool.mkdir()
    z = out.with_name("part_job.zip")
    assert submit_job(z, spool).submitted
    assert (spool / "part_job.zip").read_bytes() == z.read_bytes()
    assert not submit_job(z, spool).submitted


def test_submit_refuses_different_job_of_same_name(tmp_path):
    a = make_job(tmp_path / "a" / "part_job", tag=b"a")
    b = make_job(tmp_path / "b" / "part_job", tag=b"b")
    spool = tmp_path / "spool"
    spool.mkdir()
    submit_job(a, spool)
    with pytest.raises(BioslicerError, match="already has a different job named part_job"):
        submit_job(b, spool)
    assert (spool / "part_job" / "blocks" / "block_0.gwl").read_bytes().endswith(b"a")
    assert os.listdir(spool) == ["part_job"]


def test_submit_missing_or_not_a_folder_spool(tmp_path):
    out = make_job(tmp_path / "part_job")
    with pytest.raises(BioslicerError, match=r"spool folder .*nowhere does not exist; check that the share is mounted"):
        submit_job(out, tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BioslicerError, match="is not a folder"):
        submit_job(out, tmp_path / "file")


def test_submit_read_only_spool(tmp_path, monkeypatch):
    out = make_job(tmp_path / "part_job")
    spool = tmp_path / "spool"
    spool.mkdir()

    def denied(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(jobs.submit.os, "mkdir", denied)
    with pytest.raises(BioslicerError, match=r"cannot write to spool folder .*spool: Permission denied; ask for write access"):
        submit_job(out, spool)
    assert os.listdir(spool) == []


def test_submit_disk_full_in_spool_leaves_no_half_copy(tmp_path, monkeypatch):
    out = make_job(tmp_path / "part_job")
    spool = tmp_path / "spool"
    spool.mkdir()
    real = jobs.submit._copy_file_fsync
    calls = []

    def full(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            Path(dst).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(jobs.submit, "_copy_file_fsync", full)
    with pytest.raises(BioslicerError, match="spool folder .* is full"):
        submit_job(out, spool)
    assert os.listdir(spool) == []


def test_submit_refuses_a_job_that_fails_verification(tmp_path):
    out = make_job(tmp_path / "part_job")
    (out / "preview.png").write_bytes(b"tampered")
    spool = tmp_path / "spool"
    spool.mkdir()
    with pytest.raises(BioslicerError, match="fails verification: preview.png: SHA-256 mismatch"):
        submit_job(out, spool)
    assert os.listdir(spool) == []


# ----------------------------------------------------------------------------- CLI
def test_cli_info_verify_submit(tmp_path, capsys):
    out = make_job(tmp_path / "part_job")
    assert cli_main(["job", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == read_manifest(out)
    assert cli_main(["job", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1:02:03" in text and "nanoscribe-gt2-25x" in text
    assert cli_main(["job", "verify", str(out)]) == 0
    assert capsys.readouterr().out.startswith("ok: 6 files match")
    assert cli_main(["job", "verify", str(out), "--printer", "nanoscribe-gt2-63x", "--json"]) == 1
    cap = capsys.readouterr()
    assert json.loads(cap.out)["ok"] is False
    assert cap.err.startswith("error: job ") and "part.gwl:" in cap.err and len(cap.err.splitlines()) == 1
    spool = tmp_path / "spool"
    spool.mkdir()
    assert cli_main(["job", "submit", str(out), "--to", str(spool), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["submitted"] is True
    assert cli_main(["job", "submit", str(out), "--to", str(spool)]) == 0
    assert "already in the spool" in capsys.readouterr().out
    (out / "part.gwl").write_bytes(b"flipped")
    assert cli_main(["job", "verify", str(out)]) == 1
    cap = capsys.readouterr()
    assert "  problem: part.gwl: SHA-256 mismatch" in cap.out
    assert cap.err.startswith("error: job ") and "fails verification: part.gwl: SHA-256 mismatch" in cap.err


def test_cli_help_has_examples(capsys):
    for cmd in (["job", "--help"], ["job", "verify", "--help"], ["job", "submit", "--help"]):
        assert cli_main(cmd) == 0
        assert "Examples:" in capsys.readouterr().out


# ----------------------------------------------------------------------------- real programs
def _real_job(out_dir, radius_um=150.0) -> Path:
    """A GWL job written by bioslicer.programs.write_program for the 25x printer."""
    from bioslicer.programs import write_program

    printer = load_printer("nanoscribe-gt2-25x")
    tp = _toolpath(radius_um)
    tp.mark_speed_um_s[:] = 1.0e4  # within both objectives' speed range: only the field differs
    with JobWriter(out_dir) as jw:
        pf = write_program(tp, printer, jw.path, name="part")
        (jw.path / "preview.png").write_bytes(b"png")
        tp.save(jw.path / "toolpath.npz")
        m = _manifest(tp, printer)
        rel = lambda p: Path(p).relative_to(jw.path).as_posix()  # noqa: E731
        m["program"] = {"dialect": pf.dialect, "main": rel(pf.main), "files": sorted(rel(f) for f in pf.files)}
        m["validation"] = pf.report.to_dict()  # holds absolute paths into the temporary folder
        return jw.commit(m)


def test_real_gwl_job_verifies_on_25x_and_fails_on_63x(tmp_path):
    out = _real_job(tmp_path / "a" / "part_job")
    m = read_manifest(out)
    assert m["program"]["main"] == "part_job.gwl" and len(m["program"]["files"]) >= 2
    assert m["validation"]["ok"] is True and m["validation"]["path"] == "part_job.gwl"
    rep = verify_job(out)
    assert rep.ok, rep.problems
    assert rep.validation["n_moves"] == m["validation"]["n_moves"] > 0
    rep = verify_job(out, printer="nanoscribe-gt2-63x")
    assert not rep.ok
    field = [p for p in rep.problems if "outside the circle field" in p]
    assert len(field) == 4 == len(rep.problems)  # the 4 points at radius 150 µm; 200 µm field
    assert all(p.startswith(m["program"]["files"][0] + ":") or "/" in p.split(":")[0] for p in field)
    assert all(Path(p.split(":")[0]).as_posix() in m["files"] for p in field)
    # same inputs, another folder: byte-identical manifest (no temporary path leaked)
    out2 = _real_job(tmp_path / "b" / "part_job")
    assert (out2 / "manifest.json").read_bytes() == (out / "manifest.json").read_bytes()
    assert b".partial-" not in (out / "manifest.json").read_bytes()


def test_real_flipped_coordinate_in_block_file_fails_verify(tmp_path):
    out = _real_job(tmp_path / "part_job")
    block = next(rel for rel in read_manifest(out)["program"]["files"] if rel != "part_job.gwl")
    p = out / block
    p.write_bytes(p.read_bytes().replace(b"150.000", b"950.000", 1))
    rep = verify_job(out)
    assert not rep.ok and rep.problems[0] == f"{block}: SHA-256 mismatch, the file was changed or damaged"
    # the damaged block is still parsed (only a damaged main file is not): the moved point is reported
    assert rep.problems[1:] == [f"{block}:5: galvo x, y = -950, 0 um is outside the circle field (400 um diameter)"
                                " (on nanoscribe-gt2-25x)"]
