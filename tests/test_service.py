"""The job service against real servers on loopback (uvicorn in a subprocess, real HTTP).

Most tests drive a stand-in slice function (``fake_slice`` below, loaded by the workers from
this module) so that they can hold a job in 'slicing' at will; the end-to-end tests run the
real pipeline through ``bioslicer serve``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from bioslicer.errors import BioslicerError  # noqa: E402
from bioslicer.service.store import JobStore  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def solid_png(width: int, height: int, rgb=(90, 140, 210)) -> bytes:
    """A valid one-colour PNG (stand-in preview)."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = (b"\0" + bytes(rgb) * width) * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PREVIEW_PNG = solid_png(240, 160)


# ----------------------------------------------------------------------------- stand-in slicer
def fake_slice(mesh_path, out_dir, printer="nanoscribe-gt2-25x", recipe=None, overrides=None, units="um",
               repair=False, zip=False, overwrite=False, preview=True, progress=None, client=None):
    """Writes a small job folder (+ zip) in 6 progress steps. A mesh containing b'broken' fails like
    intake would, b'crash' kills the worker process, b'stuck' hangs without progress calls; with BIOSLICER_TEST_GATE set, step 1 waits until that file exists (reporting
    progress meanwhile, so cancellation is seen)."""
    data = Path(mesh_path).read_bytes()
    if b"broken" in data:
        raise BioslicerError("mesh input.stl is not watertight (12 open edges); pass --repair or fix the mesh")
    if b"crash" in data:
        os._exit(3)  # the worker process dies (out of memory, segfault, ...)
    if b"stuck" in data:
        progress(0, 5, "slicing")
        time.sleep(120)  # no progress calls: cancellation needs the supervisor
    gate = os.environ.get("BIOSLICER_TEST_GATE")
    n = 5
    for i in range(n + 1):
        progress(i, n, "slicing")
        while gate and i == 1 and not Path(gate).exists():
            time.sleep(0.05)
            progress(i, n, "slicing")
    out = Path(out_dir)
    out.mkdir(parents=True)
    manifest = {"format": "fake", "printer": {"name": printer}, "recipe": overrides or {}, "units": units}
    (out / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    (out / "report.txt").write_text(f"fake job of {len(data)} bytes\n")
    (out / "preview.png").write_bytes(PREVIEW_PNG)
    zp = out.with_name(out.name + ".zip")
    with zipfile.ZipFile(zp, "w") as zf:
        for f in sorted(out.iterdir()):
            zf.write(f, f.name)
    from types import SimpleNamespace

    return SimpleNamespace(path=out, zip_path=zp, manifest=manifest)


def write_fake_module(folder: Path) -> None:
    """Write ``fake_slicer.py`` (the two functions above, with only light imports) for the workers:
    importing this test module there would pull in pytest, FastAPI and the whole pipeline."""
    import inspect

    head = ("import json\nimport os\nimport time\nimport zipfile\nfrom pathlib import Path\n"
            "from bioslicer.errors import BioslicerError\n\n")
    body = inspect.getsource(solid_png) + "\n\nPREVIEW_PNG = solid_png(240, 160)\n\n\n" + inspect.getsource(fake_slice)
    (folder / "fake_slicer.py").write_text(head + body)


# ----------------------------------------------------------------------------- server helpers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A service in its own process group on 127.0.0.1."""

    def __init__(self, data_dir: Path, *, fake: bool = True, token: str | None = None, max_upload_mb: float = 200.0,
                 workers: int = 1, gate: Path | None = None, cli: bool = False, log_level: str = "warning") -> None:
        self.data_dir, self.token = Path(data_dir), token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        write_fake_module(self.data_dir.parent)
        env["PYTHONPATH"] = os.pathsep.join([str(self.data_dir.parent), str(ROOT), env.get("PYTHONPATH", "")])
        env.pop("BIOSLICER_TOKEN", None)
        if gate is not None:
            env["BIOSLICER_TEST_GATE"] = str(gate)
        if cli:
            args = [sys.executable, "-m", "bioslicer", "serve", "--port", str(self.port), "--data", str(data_dir),
                    "--workers", str(workers), "--max-upload-mb", str(max_upload_mb), "--log-level", log_level]
            if token:
                args += ["--token", token]
        else:
            code = ("from bioslicer.service.app import run_server; "
                    f"run_server({str(data_dir)!r}, port={self.port}, token={token!r}, workers={workers}, "
                    f"max_upload_mb={max_upload_mb!r}, slice_fn={'fake_slicer:fake_slice' if fake else None!r}, "
                    f"log_level={log_level!r}, cancel_grace_s=1.5)")
            args = [sys.executable, "-c", code]
        self.log = open(self.data_dir.parent / f"server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=30.0)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.http.get("/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("service did not start: " + Path(self.log.name).read_text(errors="replace"))
            time.sleep(0.1)

    def upload(self, name: str, data: bytes, **fields):
        return self.http.post("/api/jobs", files={"file": (name, data, "application/octet-stream")},
                              data={k: str(v) for k, v in fields.items()})

    def wait(self, job_id: str, statuses=("done", "failed", "cancelled"), timeout_s: float = 120.0,
             until=None) -> dict:
        """Poll until the job is in one of ``statuses`` (and ``until(job)`` holds, when given)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.http.get(f"/api/jobs/{job_id}").json()
            if job["status"] in statuses and (until is None or until(job)):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s} s: {job}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the service process only (a crash; its workers must notice and go)."""
        self.proc.kill()
        self.proc.wait(10)
        self.http.close()

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in the group we started
        except ProcessLookupError:
            pass
        self.log.close()


@pytest.fixture
def start(tmp_path):
    servers = []

    def _start(data_dir=None, **kw) -> Server:
        s = Server(data_dir or tmp_path / "data", **kw)
        servers.append(s)
        return s

    yield _start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("svc")
    (base / "gate").touch()  # jobs run through; the cancel test closes it for a while
    s = Server(base / "data", max_upload_mb=0.05, gate=base / "gate")
    yield s
    s.stop()


def box_stl(size_um: float = 50.0) -> bytes:
    import trimesh

    m = trimesh.creation.box((size_um,) * 3)
    m.apply_translation((size_um / 2,) * 3)  # on the substrate, corner at the origin
    return m.export(file_type="stl")


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- store
def test_store_claims_each_job_once_and_ignores_stale_claims(tmp_path):
    a, b = JobStore(tmp_path / "j.sqlite3"), JobStore(tmp_path / "j.sqlite3")
    for i in range(3):
        a.add(f"{i:012x}", owner="o", label="x.stl", kind="mesh", input_name="input.stl", input_bytes=1,
              printer="p")
    got = [a.claim_next(1), b.claim_next(2), a.claim_next(1), b.claim_next(2)]
    assert [g["id"] for g in got[:3]] == ["000000000000", "000000000001", "000000000002"]  # oldest first
    assert got[3] is None
    first = got[0]
    assert a.requeue_interrupted() == ["000000000000", "000000000001", "000000000002"]
    assert not b.progress(first["id"], first["claim"], 1, 2, "slicing")  # the claim died with the restart
    assert not b.finish(first["id"], first["claim"], "done")
    again = b.claim_next(2)
    assert again["id"] == first["id"] and again["attempts"] == 2 and "service restart" in again["note"]
    assert a.finish(again["id"], again["claim"], "done")
    assert a.counts() == {"queued": 2, "slicing": 0, "done": 1, "failed": 0, "cancelled": 0}


def test_disk_names_are_plain():
    from bioslicer.service.app import safe_label
    from bioslicer.service.worker import disk_name

    assert safe_label("../../a/b\\evil.stl") == "evil.stl"
    assert safe_label("") == "upload" and safe_label("x\x00y.stl") == "x_y.stl"
    assert disk_name("open.stl", ".stl") == "open.stl"
    assert disk_name(".hidden part (2).STL", ".stl") == "hidden_part__2_.stl"
    assert disk_name("...", ".obj") == "part.obj"
    assert len(disk_name("a" * 300 + ".ply", ".ply")) == 80


# ----------------------------------------------------------------------------- API, stand-in slicer
def test_upload_queued_then_done_with_downloads(fake_server):
    s = fake_server
    r = s.upload("part.stl", box_stl(), owner="ana", printer="nanoscribe-gt2-63x", hatch_um="0.3",
                 params=json.dumps({"power_mw": {"hatch": 20}}))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["owner"] == "ana" and job["file"] == "part.stl"
    assert job["params"] == {"hatch_um": 0.3, "power_mw": {"hatch": 20}}
    done = s.wait(job["id"])
    assert done["status"] == "done", done
    assert done["progress"] == {"done": 5, "total": 5, "stage": "done", "fraction": 1.0}
    assert done["started_at"] and done["finished_at"] and done["error"] is None
    man = s.http.get(f"/api/jobs/{job['id']}/manifest.json").json()
    assert man["printer"]["name"] == "nanoscribe-gt2-63x" and man["recipe"]["hatch_um"] == 0.3
    assert s.http.get(f"/api/jobs/{job['id']}/preview.png").content == PREVIEW_PNG
    assert "fake job" in s.http.get(f"/api/jobs/{job['id']}/report.txt").text
    z = s.http.get(f"/api/jobs/{job['id']}/bundle.zip")
    assert z.headers["content-type"] == "application/zip"
    assert sorted(zipfile.ZipFile(io.BytesIO(z.content)).namelist()) == ["manifest.json", "preview.png", "report.txt"]
    assert files_under(s.data_dir / "jobs") >= {f"{job['id']}.zip", f"{job['id']}/manifest.json"}
    assert not any((s.data_dir / "work").iterdir()) and not any((s.data_dir / "incoming").iterdir())
    assert job["id"] in [j["id"] for j in s.http.get("/api/jobs", params={"owner": "ana"}).json()]


def test_parameters_are_checked_like_the_cli(fake_server):
    s = fake_server
    cases = [
        ({"hatch_um": "-1"}, 400, "hatch_um"),
        ({"no_such_key": "1"}, 400, "no_such_key"),
        ({"printer": "no-such-printer"}, 400, "unknown printer 'no-such-printer'"),
        ({"printer": "../printers/nanoscribe-gt2-25x.toml"}, 400, "unknown printer"),
        ({"units": "inch"}, 400, "units 'inch'"),
        ({"params": "{not json"}, 400, "not valid JSON"),
        ({"strategy": "zigzag"}, 400, "strategy"),
        ({"hatch_um": "1e-6"}, 400, "below the 0.001 µm position resolution"),       # issue 22: absurd sizes
        ({"hatch_um": "1e308"}, 400, "hatch_um"),
        ({"block_size_um": "0.001"}, 400, "block_size_um=0.001"),
        ({"contour_count": "10000000000000000000000"}, 400, "contour_count"),
    ]
    before = len(s.http.get("/api/jobs").json())
    for fields, status, text in cases:
        r = s.upload("part.stl", box_stl(), **fields)
        assert r.status_code == status, (fields, r.text)
        detail = r.json()["detail"]
        assert text in detail and "\n" not in detail, (fields, detail)
    r = s.upload("part.exe", b"MZ")
    assert r.status_code == 415 and ".exe" in r.json()["detail"]
    r = s.upload("bundle.zip", b"not a zip at all")
    assert r.status_code == 415
    assert s.http.post("/api/jobs", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert len(s.http.get("/api/jobs").json()) == before  # nothing was queued
    assert not any((s.data_dir / "incoming").iterdir())
    d = s.http.get("/api/printers/nanoscribe-gt2-25x/defaults").json()
    assert d["params"]["hatch_um"] == 0.2 and d["params"]["slice_um"] == 0.5 and "solid" in d["choices"]["strategy"]
    assert d["choices"]["find_interface"] == ["every-block", "once", "off"] and "keep" in d["choices"]["placement"]
    assert s.http.get("/api/printers/nope/defaults").status_code == 404
    assert s.http.get("/api/jobs/../../etc/passwd").status_code == 404
    assert s.http.get("/api/jobs/zzzzzzzzzzzz").json()["detail"].startswith("no job 'zzzzzzzzzzzz'")


def test_oversize_upload_is_413_and_leaves_nothing(fake_server):
    s = fake_server
    before = files_under(s.data_dir)
    r = s.upload("big.stl", b"solid x\n" + b"\0" * 60_000)  # limit 0.05 MB
    assert r.status_code == 413 and "limit of 0.05 MB" in r.json()["detail"]
    after = {f for f in files_under(s.data_dir) if not f.startswith("jobs.sqlite3")}
    assert after == {f for f in before if not f.startswith("jobs.sqlite3")}


@pytest.mark.parametrize("name", ["../../../evil.stl", "..\\..\\evil.stl", "/etc/evil.stl", "sub/../../evil.stl"])
def test_path_traversal_file_name_stays_inside_dir(fake_server, name):
    s = fake_server
    outside = s.data_dir.parent
    r = s.upload(name, box_stl())
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["file"] == "evil.stl"
    assert (s.data_dir / "uploads" / job["id"] / "input.stl").read_bytes() == box_stl()
    assert s.wait(job["id"])["status"] == "done"
    assert [p for p in outside.rglob("*evil*") if s.data_dir not in p.parents] == []
    assert not Path("/etc/evil.stl").exists()


def test_failed_job_has_the_error_line(fake_server):
    s = fake_server
    job = s.upload("broken.stl", b"solid broken\nendsolid broken\n").json()
    end = s.wait(job["id"])
    assert end["status"] == "failed"
    assert end["error"] == "mesh input.stl is not watertight (12 open edges); pass --repair or fix the mesh"
    assert s.http.get(f"/api/jobs/{job['id']}/bundle.zip").status_code == 409


def test_cancel_while_slicing_and_while_queued_then_delete(fake_server):
    s = fake_server
    gate = s.data_dir.parent / "gate"
    gate.unlink()
    try:
        _cancel_and_delete(s)
    finally:
        gate.touch()


def _cancel_and_delete(s):
    a = s.upload("a.stl", box_stl()).json()
    # the worker claims the job (total 0) before the slicer reports its first step: wait for that step
    running = s.wait(a["id"], statuses=("slicing",), until=lambda j: j["progress"]["total"] > 0)
    b = s.upload("b.stl", box_stl()).json()
    time.sleep(0.3)
    assert s.http.get(f"/api/jobs/{b['id']}").json()["status"] == "queued"  # one worker, busy with a
    assert running["progress"]["total"] == 5
    assert s.http.delete(f"/api/jobs/{a['id']}").status_code == 409
    r = s.http.post(f"/api/jobs/{b['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = s.http.post(f"/api/jobs/{a['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    assert s.wait(a["id"], timeout_s=10)["status"] == "cancelled"
    assert not (s.data_dir / "jobs" / a["id"]).exists() and not list((s.data_dir / "work").glob(a["id"] + "*"))
    assert s.http.post(f"/api/jobs/{a['id']}/cancel").status_code == 409
    for jid in (a["id"], b["id"]):
        assert s.http.delete(f"/api/jobs/{jid}").status_code == 204
        assert s.http.get(f"/api/jobs/{jid}").status_code == 404
        assert not (s.data_dir / "uploads" / jid).exists()


def test_dead_worker_is_replaced_and_its_job_requeued_once_then_failed(fake_server):
    s = fake_server
    job = s.upload("crash.stl", b"solid crash\n").json()
    end = s.wait(job["id"], timeout_s=60)
    assert end["status"] == "failed" and end["attempts"] == 2
    assert end["error"].startswith("the worker process died (exit code 3) on each of 2 attempts")
    ok = s.upload("fine.stl", box_stl()).json()  # the replacement worker takes the next job
    assert s.wait(ok["id"], timeout_s=60)["status"] == "done"


def test_cancel_stops_a_worker_that_does_not_listen(fake_server):
    s = fake_server
    job = s.upload("stuck.stl", b"solid stuck\n").json()
    s.wait(job["id"], statuses=("slicing",))
    t0 = time.monotonic()
    assert s.http.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    assert s.wait(job["id"], timeout_s=30)["status"] == "cancelled"
    assert 1.4 <= time.monotonic() - t0 < 15  # after the 1.5 s grace, not before
    ok = s.upload("fine.stl", box_stl()).json()
    assert s.wait(ok["id"], timeout_s=60)["status"] == "done"
    assert s.http.get("/api/health").json()["workers_alive"] == 1


def test_openapi_describes_the_api(fake_server):
    spec = fake_server.http.get("/openapi.json").json()
    for path in ("/api/printers", "/api/printers/{name}/defaults", "/api/jobs", "/api/jobs/{job_id}",
                 "/api/jobs/{job_id}/cancel", "/api/jobs/{job_id}/bundle.zip", "/api/jobs/{job_id}/preview.png",
                 "/api/jobs/{job_id}/report.txt", "/api/jobs/{job_id}/manifest.json", "/api/health"):
        assert path in spec["paths"], path
    body = spec["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"] and body["properties"]["file"]["format"] == "binary"
    page = fake_server.http.get("/")
    assert page.status_code == 200 and "<script>" in page.text and "/api/jobs" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained: no CDN, no fonts


# ----------------------------------------------------------------------------- restarts, auth
def test_restart_requeues_the_job_in_flight(start, tmp_path):
    gate = tmp_path / "gate"
    s = start(gate=gate)
    job = s.upload("part.stl", box_stl()).json()
    s.wait(job["id"], statuses=("slicing",))
    s.kill()  # the service dies with the job half sliced; its worker is orphaned
    data = s.data_dir
    from bioslicer.service.store import Layout

    half = Layout(data).make_temp_dir(data / "incoming" / "upload-half")  # an upload cut off mid-stream
    (half / "data.part").write_bytes(b"solid half")
    (data / "uploads" / "0123456789ab").mkdir()  # stored, but the process died before the table row
    (data / "uploads" / "0123456789ab" / "input.stl").write_bytes(b"solid orphan")
    s2 = start(gate=gate)
    assert not any((data / "incoming").iterdir()) and not (data / "uploads" / "0123456789ab").exists()
    kept = list((data / "orphans").glob("*/uploads/0123456789ab/input.stl"))  # moved aside, not deleted
    assert len(kept) == 1 and kept[0].read_bytes() == b"solid orphan"
    assert (data / "uploads" / job["id"] / "input.stl").is_file()
    again = s2.http.get(f"/api/jobs/{job['id']}").json()
    assert again["status"] in ("queued", "slicing")
    assert again["note"].startswith("interrupted by a service restart at ") and again["note"].endswith("re-queued")
    gate.touch()
    end = s2.wait(job["id"])
    assert end["status"] == "done" and end["attempts"] == 2
    assert s2.http.get(f"/api/jobs/{job['id']}/bundle.zip").status_code == 200


def test_token_is_required_when_set(start):
    s = start(token="s3cret-token-1234")
    bare = httpx.Client(base_url=s.url)
    for path in ("/api/health", "/api/jobs", "/openapi.json", "/"):
        r = bare.get(path)
        assert r.status_code == 401 and "token" in r.json()["detail"], path
    assert bare.get("/api/jobs", headers={"Authorization": "Bearer wrong-token-0000"}).status_code == 401
    assert bare.post("/api/jobs", files={"file": ("p.stl", box_stl())}).status_code == 401
    assert s.http.get("/api/jobs").status_code == 200
    r = bare.get("/?token=s3cret-token-1234", follow_redirects=False)  # the page keeps it in a cookie
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert bare.get("/api/jobs").status_code == 200  # the client now carries the cookie
    bare.close()


def test_serve_refuses_public_host_without_token(tmp_path, monkeypatch, capsys):
    from bioslicer.cli import main

    monkeypatch.delenv("BIOSLICER_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--data", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith("error: serving on 0.0.0.0 (not loopback) needs a token")
    assert main(["serve", "--host", "0.0.0.0", "--token", "short"]) == 1
    assert "too short" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before touching anything
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and "--token" in out and "--max-upload-mb" in out


# ----------------------------------------------------------------------------- the real pipeline
def _pipeline_ready() -> bool:
    try:
        from bioslicer.mesh import load_mesh  # noqa: F401
        from bioslicer.programs import write_program  # noqa: F401
        from bioslicer.preview import render_png  # noqa: F401
    except ImportError:
        return False
    return True


needs_pipeline = pytest.mark.skipif(not _pipeline_ready(), reason="the slicing pipeline is not complete yet")


@needs_pipeline
def test_real_slice_bundle_passes_job_verify_and_broken_mesh_fails(start, tmp_path):
    s = start(fake=False, cli=True)
    job = s.upload("cube.stl", box_stl(50.0), owner="lab", slice_um="2", hatch_um="2").json()
    import trimesh

    m = trimesh.creation.box((50.0,) * 3)
    m.apply_translation((25.0, 25.0, 25.0))
    m.update_faces(list(range(len(m.faces) - 2)))  # drop one side: not closed
    open_path = tmp_path / "open.stl"
    open_path.write_bytes(m.export(file_type="stl"))
    bad = s.upload("open.stl", open_path.read_bytes()).json()
    end = s.wait(job["id"], timeout_s=240)
    assert end["status"] == "done", end
    assert end["progress"]["fraction"] == 1.0
    assert end["summary"]["layers"] == 25 and end["summary"]["program"] == "cube_job.gwl"
    zpath = tmp_path / "dl.zip"
    zpath.write_bytes(s.http.get(f"/api/jobs/{job['id']}/bundle.zip").content)
    from bioslicer.cli import main

    assert main(["job", "verify", str(zpath)]) == 0  # the CLI command, in this process
    man = s.http.get(f"/api/jobs/{job['id']}/manifest.json").json()
    assert man["recipe"]["hatch_um"] == 2.0 and man["recipe"]["slice_um"] == 2.0
    assert man["counts"]["layers"] == 25  # 50 µm / 2 µm
    assert man["mesh"]["file"] == "cube.stl"  # the operator's name, not the name on disk
    assert s.http.get(f"/api/jobs/{job['id']}/preview.png").content[:8] == PREVIEW_PNG[:8]
    # a broken mesh fails with the same one-line error the mesh intake gives
    from bioslicer.mesh import load_mesh

    with pytest.raises(BioslicerError) as intake:
        load_mesh(open_path)
    fail = s.wait(bad["id"], timeout_s=120)
    assert fail["status"] == "failed"
    assert fail["error"] == str(intake.value).splitlines()[0]
    # a ready bundle uploaded back is verified and stored as done
    again = s.upload("returned_job.zip", zpath.read_bytes(), owner="lab").json()
    assert again["kind"] == "bundle"
    stored = s.wait(again["id"], timeout_s=240)
    assert stored["status"] == "done" and stored["printer"] == "nanoscribe-gt2-25x"  # read from its manifest
    assert s.http.get(f"/api/jobs/{again['id']}/bundle.zip").content == zpath.read_bytes()
    # a tampered bundle is refused with the first problem verify finds
    bad_zip = io.BytesIO()
    with zipfile.ZipFile(zpath) as src, zipfile.ZipFile(bad_zip, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data + b"% edited\n" if info.filename == man["program"]["main"] else data)
    tampered = s.upload("edited.zip", bad_zip.getvalue()).json()
    end = s.wait(tampered["id"], timeout_s=240)
    assert end["status"] == "failed"
    assert end["error"].startswith(f"the uploaded bundle does not verify: {man['program']['main']}: SHA-256 mismatch")
