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


from test_service import start  # noqa: E402,F401  (the fixture: servers stopped after the test)


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


# ============================================================================ 3. the token in logs and cookies
def _wait_for_log(path: Path, text: str, timeout_s: float = 30.0) -> str:
    """The log once it contains ``text`` (polled; the server writes it when the request is done)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        log = path.read_text(errors="replace")
        if text in log or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def test_query_token_never_logged_and_cookie_is_not_the_token(start):
    token = "s3cret-token-1234-abcd"
    s = start(token=token, log_level="info")
    bare = httpx.Client(base_url=s.url)
    r = bare.get(f"/?token={token}", follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and token not in cookie
    assert bare.get("/api/jobs").status_code == 200  # the session cookie works ...
    bare.cookies.clear()
    bare.cookies.set("bioslicer_token", token)  # ... and the raw token is no cookie
    assert bare.get("/api/jobs").status_code == 401
    assert bare.get(f"/api/jobs?token={token}").status_code == 401  # the query works on / only
    bare.close()
    log = _wait_for_log(Path(s.log.name), "/api/jobs?token=[redacted]")
    assert "GET /?token=[redacted]" in log and "/api/jobs?token=[redacted]" in log
    assert token not in log


# ============================================================================ 4. cross-site writes
def test_cross_site_writes_are_refused(start):
    s = start()
    evil = {"Origin": "http://evil.example"}
    before = len(s.http.get("/api/jobs").json())
    r = s.http.post("/api/jobs", files={"file": ("p.stl", _box())}, headers=evil)
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    r = s.http.post("/api/jobs", files={"file": ("p.stl", _box())}, headers={"Referer": "http://evil.example/x"})
    assert r.status_code == 403
    r = s.http.post("/api/jobs", files={"file": ("p.stl", _box())}, headers={"Origin": "null"})
    assert r.status_code == 403
    assert len(s.http.get("/api/jobs").json()) == before and not any((s.data_dir / "incoming").iterdir())
    # same origin, but without the page's CSRF token (a form on another port of this host, ...)
    own = {"Origin": s.url}
    r = s.http.post("/api/jobs", files={"file": ("p.stl", _box())}, headers=own)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    # the page carries its CSRF token: the page's own requests pass
    import re

    csrf = re.search(r'name="csrf-token" content="([0-9a-f]{64})"', s.http.get("/").text).group(1)
    job = s.http.post("/api/jobs", files={"file": ("p.stl", _box())}, headers={**own, "X-CSRF-Token": csrf})
    assert job.status_code == 201, job.text
    jid = job.json()["id"]
    s.wait(jid)
    assert s.http.post(f"/api/jobs/{jid}/cancel", headers=evil).status_code == 403
    assert s.http.delete(f"/api/jobs/{jid}", headers=evil).status_code == 403
    assert s.http.get(f"/api/jobs/{jid}").status_code == 200  # still there
    assert s.http.delete(f"/api/jobs/{jid}", headers={**own, "X-CSRF-Token": csrf}).status_code == 204


def test_cross_site_write_with_token_cookie_is_refused(start):
    token = "s3cret-token-1234-abcd"
    s = start(token=token)
    browser = httpx.Client(base_url=s.url)
    browser.get(f"/?token={token}", follow_redirects=False)
    r = browser.post("/api/jobs", files={"file": ("p.stl", _box())}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = browser.post("/api/jobs", files={"file": ("p.stl", _box())})  # a cookie but no CSRF token
    assert r.status_code == 403
    browser.close()
    assert s.http.post("/api/jobs", files={"file": ("p.stl", _box())}).status_code == 201  # bearer: a script


# ============================================================================ 5. bombs
def _zeros_zip(path: Path, entries: dict) -> Path:
    """A zip whose entries are ``name -> bytes`` or ``name -> int`` (that many zero bytes, streamed)."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            if isinstance(data, int):
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as dst:
                    block = bytes(1 << 22)
                    left = data
                    while left:
                        dst.write(block[:min(left, len(block))])
                        left -= min(left, len(block))
            else:
                zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def test_3mf_bomb_is_refused_before_inflating(tmp_path):
    from bioslicer.mesh import load_mesh

    bomb = _zeros_zip(tmp_path / "part.3mf", {"3D/3dmodel.model": 300 << 20})
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(BioslicerError, match=r"3MF file part.3mf inflates to more than 268 MB \(a zip bomb\?\)"):
        load_mesh(bomb)


def test_bundle_bomb_fails_job_verify_in_one_line(tmp_path, monkeypatch):
    import shutil
    import zipfile

    from test_jobs import fake_facts, fake_validate

    from bioslicer import jobs
    from bioslicer.cli import main
    from bioslicer.jobs import read_manifest, verify_job

    monkeypatch.setattr(jobs.verify, "_validate_program", fake_validate)
    monkeypatch.setattr(jobs.verify, "program_facts", fake_facts)
    job = _fake_job(tmp_path / "part_job", zip=True)
    assert verify_job(job.with_name("part_job.zip")).ok  # the bundle as written passes
    bomb = tmp_path / "bomb.zip"
    shutil.copy(job.with_name("part_job.zip"), bomb)
    pad = zipfile.ZipInfo("pad.bin")
    pad.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(bomb, "a") as zf:
        with zf.open(pad, "w", force_zip64=True) as dst:
            for _ in range(75):
                dst.write(bytes(4 << 20))
    rep = verify_job(bomb)
    assert not rep.ok and rep.problems == ["manifest.json: job bundle bomb.zip inflates to more than 268 MB (a zip "
                                           "bomb?); refusing it"]
    many = _zeros_zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(10_001)})
    with pytest.raises(BioslicerError, match="has 10,001 entries"):
        read_manifest(many)
    fat = _zeros_zip(tmp_path / "fat.zip", {"manifest.json": 300 << 20})
    with pytest.raises(BioslicerError, match="inflates to more than"):
        read_manifest(fat)
    assert main(["job", "verify", str(bomb)]) == 1


def _bundle_upload(s, name: str, data: bytes):
    return s.http.post("/api/jobs", files={"file": (name, data, "application/zip")})


def test_service_refuses_bombs_and_unsafe_bundle_entries(start, tmp_path):
    import io
    import zipfile

    s = start(max_upload_mb=0.05)  # bundles may inflate to 0.5 MB
    bomb = _zeros_zip(tmp_path / "b.zip", {"manifest.json": b"{}", "part.gwl": 2 << 20}).read_bytes()
    assert len(bomb) < 50_000
    r = _bundle_upload(s, "b.zip", bomb)
    assert r.status_code == 400 and "inflates to more than 0.5 MB" in r.json()["detail"], r.text
    assert str(s.data_dir) not in r.text and "/tmp" not in r.text

    def zip_with(info, data=b"x"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("manifest.json", b"{}")
            zf.writestr(info, data)
        return buf.getvalue()

    link = zipfile.ZipInfo("program.gwl")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    for data, text in ((zip_with("../evil.gwl"), "pointing outside"), (zip_with("/etc/evil"), "pointing outside"),
                       (zip_with(link, b"/etc/passwd"), "link entry")):
        r = _bundle_upload(s, "job.zip", data)
        assert r.status_code == 400 and text in r.json()["detail"], r.text
    assert s.http.get("/api/jobs").json() == [] and not any((s.data_dir / "incoming").iterdir())
    assert not (s.data_dir.parent / "evil.gwl").exists()
    # a bundle that fails in the worker: its error line names no server folder
    job = _bundle_upload(s, "job.zip", _plain_zip({"manifest.json": b"{oops"}))
    assert job.status_code == 201, job.text
    end = s.wait(job.json()["id"])
    assert end["status"] == "failed" and "not valid JSON" in end["error"], end
    assert str(s.data_dir) not in end["error"] and "/work/" not in end["error"], end["error"]


def _plain_zip(entries: dict) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ============================================================================ issue 22 (service) and the rest
def test_deep_params_bad_recipe_and_hostile_names(start):
    s = start()
    deep = "[" * 1000 + "]" * 1000
    for params in (deep, '{"a": ' * 1000 + "1" + "}" * 1000, json.dumps({"power_mw": {"hatch": {"x": {"y": 1}}}})):
        r = s.upload("part.stl", _box(), params=params)
        assert r.status_code == 400 and "\n" not in r.json()["detail"], r.text
    r = s.upload("part.stl", _box(), params=json.dumps({"power_mw": {"hatch": 1e6}}))
    assert r.status_code == 400 and "power_mw.hatch" in r.json()["detail"], r.text
    r = s.upload("part.stl", _box(), params=json.dumps({"hatch_um": [1, 2]}))
    assert r.status_code == 400, r.text
    name = '<img src=x onerror="alert(1)">\u202egpj.stl'
    job = s.upload(name, _box()).json()
    assert "<" not in job["file"] and ">" not in job["file"] and "\u202e" not in job["file"]
    assert job["file"].endswith("gpj.stl")


def _raw_request(url: str, head: bytes, body: bytes, close_early: bool = False, timeout_s: float = 60.0) -> bytes:
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout_s) as sock:
        sock.sendall(head + body)
        if close_early:
            return b""
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def _multipart_head(url: str, length: int) -> tuple[bytes, bytes]:
    from urllib.parse import urlsplit

    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.stl\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\nsolid p\n")
    head = (f"POST /api/jobs HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
            f"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {length}\r\n\r\n").encode()
    return head, body


def test_stalled_upload_times_out_and_disconnect_is_one_log_line(start):
    import time

    s = start()
    head, body = _multipart_head(s.url, 5000)  # promises 5000 bytes, sends ~120
    t0 = time.monotonic()
    reply = _raw_request(s.url, head, body, timeout_s=25)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert time.monotonic() - t0 < 25  # the service's 5 s, not 30
    _raw_request(s.url, head, body, close_early=True)  # the client goes away mid-upload
    log = _wait_for_log(Path(s.log.name), "was cut off by the client")
    assert "was cut off by the client" in log and "Traceback" not in log
    deadline = time.monotonic() + 30
    while any((s.data_dir / "incoming").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any((s.data_dir / "incoming").iterdir())


# ============================================================================ 6. manifests that lie
def _forge(job: Path, edit) -> dict:
    """Edit a job's manifest the way a careful forger would: apply ``edit(manifest)``, then fix the
    content hash, rewrite report.txt and fix its SHA-256 in 'files'."""
    import hashlib

    from bioslicer.jobs import job_summary, manifest_bytes
    from bioslicer.jobs.manifest import content_sha256

    m = json.loads((job / "manifest.json").read_text())
    edit(m)
    m["content_sha256"] = content_sha256(m)
    report = job_summary(m).encode()
    (job / "report.txt").write_bytes(report)
    m["files"]["report.txt"] = hashlib.sha256(report).hexdigest()
    (job / "manifest.json").write_bytes(manifest_bytes(m))
    return m


def _real(tmp_path, name="part_job"):
    from test_jobs import _real_job

    return _real_job(tmp_path / name)


def test_real_edited_manifest_fails_verify(tmp_path):
    from bioslicer.jobs import verify_job

    job = _real(tmp_path)
    assert verify_job(job).ok
    m = json.loads((job / "manifest.json").read_text())
    report = (job / "report.txt").read_text()
    assert m["content_sha256"] in report and len(m["content_sha256"]) == 64
    # careless: the numbers edited by hand
    for key, value in (("counts", {**m["counts"], "marks": 5}), ("estimate", {**m["estimate"], "total_s": 1.0}),
                       ("recipe", {**m["recipe"], "power_mw": {"hatch": 10.0}})):
        edited = dict(m, **{key: value})
        (job / "manifest.json").write_text(json.dumps(edited))
        rep = verify_job(job)
        assert not rep.ok and rep.problems[0] == ("manifest.json: its content does not match its content_sha256; "
                                                  "the manifest was edited"), (key, rep.problems)
    (job / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    assert verify_job(job).ok
    # careful: hashes fixed too; what the program shows still contradicts the manifest
    _forge(job, lambda d: d["counts"].update(marks=5, points=9))
    rep = verify_job(job)
    assert not rep.ok
    assert "manifest.json: counts.marks is 5, the program has 4 (part_job.gwl)" in rep.problems
    assert "manifest.json: counts.points is 9, the program has 8 (part_job.gwl)" in rep.problems
    _forge(job, lambda d: d["counts"].update(marks=4, points=8))
    assert verify_job(job).ok
    _forge(job, lambda d: d["recipe"].update(power_mw={"hatch": 10.0}))
    rep = verify_job(job)
    assert rep.problems == ["manifest.json: recipe.power_mw gives 10..10 mW, the program marks at 20..20 mW "
                            "(part_job.gwl)"]
    _forge(job, lambda d: d["recipe"].update(power_mw={"hatch": 20.0}))
    _forge(job, lambda d: d.update(bounds_um=[[-150, -150, 0], [150, 150, 10]]))
    rep = verify_job(job)
    assert len(rep.problems) == 1 and rep.problems[0].startswith("manifest.json: bounds_um span 300 x 300 x 10 µm")
    (job / "report.txt").write_text("edited\n")
    assert "report.txt: SHA-256 mismatch, the file was changed or damaged" in verify_job(job).problems


def test_real_widened_embedded_printer_cannot_pass(tmp_path):
    import hashlib

    from bioslicer.cli import main
    from bioslicer.jobs import read_manifest, submit_job, verify_job

    job = _real(tmp_path)
    block = next(rel for rel in read_manifest(job)["program"]["files"] if rel != "part_job.gwl")
    p = job / block
    p.write_bytes(p.read_bytes().replace(b"150.000", b"950.000", 1))  # out of the real 400 µm field

    def widen(d):
        d["printer"]["field_size_um"] = 2000.0
        d["files"][block] = hashlib.sha256(p.read_bytes()).hexdigest()

    _forge(job, widen)
    rep = verify_job(job)
    assert not rep.ok
    assert rep.problems[0] == ("manifest.json: the embedded printer profile nanoscribe-gt2-25x differs from the "
                               "installed one (field_size_um 2000.0 here, 400.0 installed); verify against the "
                               "installed profile with --printer, or pass --trust-embedded-printer")
    spool = tmp_path / "spool"
    spool.mkdir()
    with pytest.raises(BioslicerError, match="fails verification: manifest.json: the embedded printer profile"):
        submit_job(job, spool)
    assert list(spool.iterdir()) == []
    assert main(["job", "submit", str(job), "--to", str(spool)]) == 1
    # trusting the embedded profile, the moved point is still seen: the program marks a wider part
    rep = verify_job(job, trust_embedded_printer=True)
    assert not rep.ok and all("embedded printer" not in q for q in rep.problems)
    assert any(q.startswith("manifest.json: bounds_um span") for q in rep.problems), rep.problems
    assert not verify_job(job, printer="nanoscribe-gt2-25x").ok  # the installed profile sees the field
