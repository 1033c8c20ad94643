"""The job service shows the estimate before the operator submits (issue 19): POST /api/estimate
takes the upload form of POST /api/jobs; a mesh is estimated in the helper process (the figures
of `estimate_mesh`), a bundle shows its manifest's. Nothing is kept, nothing is queued."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import trimesh  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from bioslicer.pipeline import estimate_mesh, slice_to_job  # noqa: E402
from bioslicer.service.app import create_app  # noqa: E402

PARAMS = {"slice_um": 1.0, "hatch_um": 1.0}


@pytest.fixture(scope="module")
def part(tmp_path_factory):
    d = tmp_path_factory.mktemp("estimate")
    p = d / "disc.stl"
    trimesh.creation.cylinder(radius=20.0, height=8.0, sections=48).export(p)
    return p


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app(tmp_path_factory.mktemp("data"), start_workers=False)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _post(client, name, data: bytes, **fields):
    return client.post("/api/estimate", files={"file": (name, data)}, data={k: str(v) for k, v in fields.items()})


def _leftovers(client) -> list:
    root = client.app.state.layout
    return [p for d in (root.incoming, root.uploads, root.jobs) for p in d.iterdir()]


def test_mesh_estimate_is_the_cli_estimate_and_nothing_is_kept(client, part):
    r = _post(client, "disc.stl", part.read_bytes(), printer="nanoscribe-gt2-25x", params=json.dumps(PARAMS))
    assert r.status_code == 200, r.text
    e = r.json()
    ref = estimate_mesh(part, "nanoscribe-gt2-25x", overrides=PARAMS)
    assert e["kind"] == "mesh" and e["source"] == "estimate"
    assert e["marks"] == ref["marks"] > 0
    assert e["program_bytes"] == ref["program_bytes"] > 0
    assert e["blocks"] == ref["blocks"] and e["layers"] == ref["layers"] == 8
    assert e["print_time_s"] == pytest.approx(ref["estimate"]["total_s"], rel=1e-12)
    assert client.get("/api/jobs").json() == []          # an estimate is not a job
    assert _leftovers(client) == []                        # and leaves no file behind


def test_bundle_shows_its_manifest_estimate(client, part, tmp_path):
    job = slice_to_job(part, tmp_path / "disc_job", overrides=PARAMS, zip=True, preview=False)
    man = job.manifest
    r = _post(client, "disc_job.zip", job.zip_path.read_bytes())
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["kind"] == "bundle" and e["source"] == "manifest" and e["printer"] == "nanoscribe-gt2-25x"
    assert e["print_time_s"] == man["estimate"]["total_s"]
    assert e["marks"] == man["counts"]["marks"] and e["blocks"] == man["counts"]["blocks"]
    assert e["program_bytes"] == sum((job.path / f).stat().st_size for f in man["program"]["files"])
    assert _leftovers(client) == []


@pytest.mark.parametrize("name, data, fields, status, words", [
    ("disc.stl", None, {"hatch_um": "-1"}, 400, "hatch_um"),
    ("disc.stl", None, {"units": "inch"}, 400, "units"),
    ("disc.stl", None, {"printer": "no-such-printer"}, 400, "unknown printer"),
    ("disc.stl", b"", {}, 400, "empty"),
    ("disc.stl", b"solid nothing\nendsolid nothing\n", {}, 400, "disc"),
    ("disc.txt", b"hello", {}, 415, "not accepted"),
    ("job.zip", b"PK\x03\x04 not really", {}, 400, "zip"),
    ("job.zip", None, {"hatch_um": "1"}, 400, "bundle"),
])
def test_bad_input_is_one_line(client, part, name, data, fields, status, words):
    if data is None:
        if name.endswith(".zip"):
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                zf.writestr("job/manifest.json", "{}")
            data = buf.getvalue()
        else:
            data = part.read_bytes()
    r = _post(client, name, data, **fields)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert "\n" not in detail and words in detail, detail
    assert _leftovers(client) == []


def test_bundle_without_manifest_is_refused(client):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("job/report.txt", "no manifest here")
    r = _post(client, "job.zip", buf.getvalue())
    assert r.status_code == 400 and "manifest.json" in r.json()["detail"]


def test_page_has_the_estimate_before_the_submit_button(client):
    html = client.get("/").text
    assert 'id="estimate-btn"' in html and 'fetch' in html and '"/api/estimate"' in html
    assert html.index('id="estimate"') < html.index('id="estimate-btn"') < html.index('id="submit"')
    assert "/api/estimate" in client.get("/openapi.json").json()["paths"]
