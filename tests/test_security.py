"""Issue 23, data safety and security: what a careless or a hostile user could do.

Data loss first (start-up cleanup, --overwrite), then the token, cross-site writes, zip bombs and
manifests that lie. Service tests run real servers (see test_service.Server).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bioslicer.errors import BioslicerError
from bioslicer.jobs import JobWriter

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _fake_job(out: Path, **kw) -> Path:
    """A minimal committed job folder (JobWriter with a schema-complete manifest)."""
    from test_jobs import make_job

    return make_job(out, **kw)


# ============================================================================ 1. start-up cleanup
httpx = pytest.importorskip("httpx")


@pytest.fixture
def start(tmp_path):
    from test_service import Server

    servers = []

    def _start(data_dir=None, **kw):
        s = Server(data_dir or tmp_path / "data", **kw)
        servers.append(s)
        return s

    yield _start
    for s in servers:
        s.stop()


def _box():
    from test_service import box_stl

    return box_stl()


def test_restored_data_folder_without_table_keeps_every_file(start, tmp_path):
    s = start()
    ids = []
    for name in ("a.stl", "b.stl"):
        job = s.upload(name, _box(), owner="ana").json()
        assert s.wait(job["id"])["status"] == "done"
        ids.append(job["id"])
    s.stop()
    data = s.data_dir
    for f in data.glob("jobs.sqlite3*"):  # restored from a backup that lacks the table
        f.unlink()
    (data / "jobs" / "lab_notes.txt").write_text("operator's notes")  # a file an operator put there
    (data / "uploads" / "fedcba987654").mkdir()
    (data / "uploads" / "fedcba987654" / "input.stl").write_bytes(b"solid queued-but-lost")
    (data / "work" / "mine").mkdir()  # not marked as the service's temporary work
    (data / "work" / "mine" / "keep.txt").write_text("x")
    before = sum(f.stat().st_size for f in data.rglob("*") if f.is_file() and "sqlite" not in f.name)

    s2 = start(data)
    for jid in ids:  # re-adopted from their manifests, downloadable again
        job = s2.http.get(f"/api/jobs/{jid}").json()
        assert job["status"] == "done" and job["note"].startswith("re-adopted"), job
        assert s2.http.get(f"/api/jobs/{jid}/bundle.zip").status_code == 200
        assert (data / "uploads" / jid / "input.stl").is_file()
    assert {j["id"] for j in s2.http.get("/api/jobs").json()} == set(ids)
    notes = list((data / "orphans").glob("*/jobs/lab_notes.txt"))
    assert len(notes) == 1 and notes[0].read_text() == "operator's notes"
    assert list((data / "orphans").glob("*/uploads/fedcba987654/input.stl"))
    assert (data / "work" / "mine" / "keep.txt").is_file()
    after = sum(f.stat().st_size for f in data.rglob("*") if f.is_file() and "sqlite" not in f.name)
    assert after == before  # nothing deleted
    log = Path(s2.log.name).read_text()
    assert "moved jobs/lab_notes.txt (no row in the job table) to orphans/" in log
    assert f"re-adopted finished job {ids[0]}" in log and "left work/mine alone" in log


def test_damaged_table_stops_startup_in_one_line_and_touches_nothing(tmp_path):
    data = tmp_path / "data"
    (data / "jobs" / "0123456789ab").mkdir(parents=True)
    (data / "jobs" / "0123456789ab" / "manifest.json").write_text("{}")
    (data / "uploads").mkdir()
    (data / "jobs.sqlite3").write_bytes(b"this is not a database" * 100)
    before = {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*") if p.is_file()}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("BIOSLICER_TOKEN", None)
    r = subprocess.run([sys.executable, "-m", "bioslicer", "serve", "--data", str(data), "--port", "0"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1
    err = r.stderr.strip()
    assert err.splitlines() == [err] and err.startswith("error: the job table ") and "damaged" in err, err
    after = {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*") if p.is_file()
             if p.name != "service.lock"}
    assert after == before


# ============================================================================ 2. --overwrite
def test_overwrite_refuses_a_folder_that_is_not_a_job(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "lab_notes.txt").write_text("notes")
    with pytest.raises(BioslicerError, match="not a bioslicer job folder.*--overwrite replaces only job folders"):
        with JobWriter(work, overwrite=True) as jw:
            (jw.path / "x").write_text("x")
    assert (work / "lab_notes.txt").read_text() == "notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_overwrite_refuses_the_folder_holding_the_input(tmp_path):
    job = _fake_job(tmp_path / "job")
    mesh = job / "mesh.stl"
    with pytest.raises(BioslicerError, match="holds the input mesh.stl"):
        with JobWriter(job, overwrite=True, keep=[mesh]) as jw:
            (jw.path / "x").write_text("x")
    assert mesh.is_file()
    _fake_job(job, overwrite=True, tag=b"two")  # a job folder is still replaced
    assert (job / "blocks" / "block_0.gwl").read_bytes().endswith(b"two")


def test_overwrite_refuses_a_zip_that_is_not_a_job_bundle(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "job.zip", "w") as zf:
        zf.writestr("thesis.docx", b"years of work")
    with pytest.raises(BioslicerError, match="job.zip is not a bioslicer job bundle"):
        _fake_job(tmp_path / "job", zip=True, overwrite=True)
    assert zipfile.ZipFile(tmp_path / "job.zip").namelist() == ["thesis.docx"]
    assert not (tmp_path / "job").exists()


def test_cli_slice_overwrite_into_the_input_folder_is_refused(tmp_path):
    from bioslicer.cli import main

    work = tmp_path / "work"
    work.mkdir()
    (work / "part.stl").write_bytes(_box())
    (work / "lab_notes.txt").write_text("notes")
    r = subprocess.run([sys.executable, "-m", "bioslicer", "slice", str(work / "part.stl"), "-o", str(work),
                        "--overwrite"], capture_output=True, text=True, timeout=600, env={**os.environ,
                                                                                       "PYTHONPATH": str(ROOT)})
    assert r.returncode == 1, r.stderr
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and "not a bioslicer job folder" in err[-1], r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["lab_notes.txt", "part.stl"]
    del main
