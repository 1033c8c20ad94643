"""The web page in a real browser: headless Chromium (Debian package ``chromium``) opens the page,
uploads the sample mesh, waits for the job to be done and sees the preview image.

Chromium is driven through its DevTools protocol over a pipe (``--remote-debugging-pipe``: JSON
messages ending in NUL on file descriptors 3 and 4), so no driver package is needed. Set
``BIOSLICER_SCREENSHOT=docs/service.png`` to keep the screenshot for the README.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from test_service import ROOT, Server, _pipeline_ready

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason="headless Chromium is missing: apt-get install -y --no-install-recommends chromium"),
    pytest.mark.skipif(not _pipeline_ready(), reason="the slicing pipeline is not complete yet"),
]
SAMPLE = ROOT / "meshes" / "calibration.stl"


class Chromium:
    """Headless Chromium with the DevTools protocol on a pipe; one page, flat sessions."""

    def __init__(self, profile_dir: Path, width: int = 1360, height: int = 860) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)

        def fds_3_and_4():  # runs in the child before exec
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [CHROMIUM, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                f"--user-data-dir={profile_dir}", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=fds_3_and_4, close_fds=False, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        for fd in (to_child_r, from_child_w, hi_r, hi_w):
            os.close(fd)
        self._buf = b""
        self._next_id = 0
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False})

    def call(self, method: str, params: dict | None = None, timeout_s: float = 30.0) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer {method}")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buf += chunk

    def js(self, expr: str):
        res = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails'].get('text')} in {expr!r}")
        return res["result"].get("value")

    def wait_for(self, expr: str, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while True:
            v = self.js(expr)
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"page never satisfied {expr!r}")
            time.sleep(0.2)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=5)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        os.close(self._to_child)
        os.close(self._from_child)


def test_page_uploads_sample_mesh_and_shows_preview(tmp_path):
    server = Server(tmp_path / "data", fake=False, cli=True)
    browser = None
    try:
        browser = Chromium(tmp_path / "profile")
        browser.call("Page.navigate", {"url": server.url + "/"})
        # the form is built from /api/printers and the printer's defaults
        assert browser.wait_for("document.querySelectorAll('#printer option').length", 30) >= 5
        assert browser.wait_for("document.getElementById('p-hatch_um') && document.getElementById('p-hatch_um').value",
                                30) == "0.2"
        browser.js("""(() => {
            document.getElementById('owner').value = 'browser test';
            document.getElementById('p-slice_um').value = '2';
            document.getElementById('p-hatch_um').value = '2'; })()""")
        root = browser.call("DOM.getDocument")["root"]["nodeId"]
        node = browser.call("DOM.querySelector", {"nodeId": root, "selector": "#file"})["nodeId"]
        browser.call("DOM.setFileInputFiles", {"nodeId": node, "files": [str(SAMPLE)]})
        # the estimate before submitting (issue 19): print time, marks, program size, blocks
        browser.js("document.getElementById('estimate-btn').click()")
        marks = browser.wait_for("(document.getElementById('est-marks') || {}).textContent", 120)
        assert int(marks.replace(",", "")) > 0
        assert browser.js("document.getElementById('est-time').textContent").count(":") == 2
        assert server.http.get("/api/jobs").json() == []          # an estimate submits nothing
        browser.js("document.getElementById('submit').click()")
        job_id = browser.wait_for("(document.getElementById('form-msg').textContent.match(/queued as (\\w+)/) "
                                  "|| [])[1]", 30)
        status = browser.wait_for(f"""(() => {{ const tr = document.querySelector('tr[data-job="{job_id}"]');
            const s = tr && tr.dataset.status; return (s === 'done' || s === 'failed') ? s : null; }})()""", 240)
        assert status == "done", server.http.get(f"/api/jobs/{job_id}").json()
        width = browser.wait_for(f"""(() => {{ const i = document.querySelector('img.preview[data-job="{job_id}"]');
            return i && i.complete ? i.naturalWidth : 0; }})()""", 30)
        assert width > 100  # the rendered preview, not a broken image
        job = server.http.get(f"/api/jobs/{job_id}").json()
        assert job["owner"] == "browser test" and job["file"] == "calibration.stl"
        assert job["params"] == {"slice_um": 2, "hatch_um": 2}  # only the changed fields are sent
        # a hostile file name (HTML and a right-to-left override) is shown as plain, escaped text
        from test_service import box_stl

        evil = server.upload('<img src=x onerror="window.__pwned=1">\u202egpj.stl', box_stl()).json()
        label = browser.wait_for(f"""(() => {{ const tr = document.querySelector('tr[data-job="{evil['id']}"]');
            return tr ? tr.textContent : null; }})()""", 30)
        assert evil["file"] in label and "\u202e" not in label and "<img" not in label
        assert browser.js("typeof window.__pwned") == "undefined"
        assert browser.js("document.querySelectorAll('img[src=\"x\"]').length") == 0
        server.http.post(f"/api/jobs/{evil['id']}/cancel")
        shot = base64.b64decode(browser.call("Page.captureScreenshot", {"format": "png"})["data"])
        assert shot[:8] == b"\x89PNG\r\n\x1a\n"
        (tmp_path / "service.png").write_bytes(shot)
        if os.environ.get("BIOSLICER_SCREENSHOT"):
            Path(os.environ["BIOSLICER_SCREENSHOT"]).write_bytes(shot)
    finally:
        if browser is not None:
            browser.close()
        server.stop()
