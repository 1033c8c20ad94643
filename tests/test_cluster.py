"""Block-parallel slicing on a real Dask LocalCluster (worker processes, loopback only)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from bioslicer import programs  # noqa: E402
from bioslicer.errors import BioslicerError  # noqa: E402
from bioslicer.pipeline import slice_to_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MESH = ROOT / "meshes" / "channel_block.stl"
# coarse but real: the 1000 x 800 x 1000 µm channel block on the 25x field -> a 4 x 3 x 4 grid
SETTINGS = dict(printer="nanoscribe-gt2-25x",
                overrides={"slice_um": 12.5, "hatch_um": 5.0, "contour_count": 1, "contour_spacing_um": 1.0})


def tree_digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def local_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "job"
    res = slice_to_job(MESH, out, **SETTINGS)
    assert res.manifest["counts"]["blocks"] >= 4
    return out


@pytest.fixture(scope="module")
def cluster():
    old = os.environ.get("NUMBA_NUM_THREADS")
    os.environ["NUMBA_NUM_THREADS"] = "1"
    try:
        lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    finally:
        if old is None:
            os.environ.pop("NUMBA_NUM_THREADS", None)
        else:
            os.environ["NUMBA_NUM_THREADS"] = old
    client = distributed.Client(lc)
    yield client
    client.close()
    lc.close()


def test_cluster_job_is_byte_identical_to_local(local_job, cluster, tmp_path):
    out = tmp_path / "job"
    res = slice_to_job(MESH, out, client=cluster, **SETTINGS)
    assert res.manifest["counts"]["blocks"] >= 4
    assert tree_digest(out) == tree_digest(local_job)


def test_killed_worker_still_gives_identical_job(local_job, cluster, tmp_path):
    killed = []

    def kill_one():
        busy = []
        for _ in range(1200):                       # wait until blocks are being sliced
            busy = [w for w, keys in cluster.processing().items() if keys]
            if busy:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        pids = cluster.run(os.getpid)               # {worker address: pid}
        victim = busy[0] if busy and busy[0] in pids else next(iter(pids))
        os.kill(pids[victim], signal.SIGKILL)       # mid-block: Dask re-runs its block elsewhere
        killed.append(victim)

    t = threading.Thread(target=kill_one)
    t.start()
    out = tmp_path / "job"
    slice_to_job(MESH, out, client=cluster, **SETTINGS)
    t.join()
    assert killed
    assert tree_digest(out) == tree_digest(local_job)
    cluster.wait_for_workers(2, timeout=60)


class FailingWriter(programs.ProgramWriter):
    """A program writer whose block 3 fails, as a bug or a full disk inside one task would.

    Block 0 waits (on the other worker) until block 3 has failed and only then writes its file:
    the job must not be cleaned up while block 0 still runs, or its file would re-create the
    removed folder."""

    def write_block(self, b, toolpath_b):
        gate = self.out_dir.parent.with_name(self.out_dir.parent.name + ".block3-failed")
        if b == 3:
            gate.touch()
            raise OSError(28, "No space left on device")
        if b == 0:
            deadline = time.monotonic() + 120
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return super().write_block(b, toolpath_b)


def test_failing_block_stops_the_job_with_one_line(cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(programs, "ProgramWriter", FailingWriter)
    out = tmp_path / "job"
    with pytest.raises(BioslicerError) as err:
        slice_to_job(MESH, out, client=cluster, **SETTINGS)
    msg = str(err.value)
    assert msg.startswith("block 3 failed: no space left on the device; free some space")
    assert "\n" not in msg
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []        # no partial job folder left either
    assert tmp_path.with_name(tmp_path.name + ".block3-failed").exists()   # block 0 did wait for it
    running = cluster.run(lambda dask_worker: [k for k, ts in dask_worker.state.tasks.items()
                                               if ts.state in ("executing", "cancelled")])
    assert not any(running.values())             # nothing of the job still runs anywhere


def test_wrong_scheduler_is_one_error_line():
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "bioslicer", "slice", str(MESH), "-o", "never",
                        "--scheduler", "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert time.monotonic() - t0 < 60
    assert not (ROOT / "never").exists()


def test_failing_block_with_workers_is_one_line_on_stderr(tmp_path):
    """A block that fails on a worker (the file size limit, inherited by the workers) ends in one
    `error:` line: no worker log or traceback before it, and no partial job folder."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    r = subprocess.run([sys.executable, "-m", "bioslicer", "slice", str(MESH), "-o", "job", "--workers", "2",
                        "--no-preview", "--set", "hatch_um=2", "--set", "slice_um=5"], capture_output=True, text=True,
                       timeout=600, cwd=tmp_path, preexec_fn=limit, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.replace("\r", "\n").splitlines() if ln.strip() and not ln.strip().startswith("blocks")]
    assert len(lines) == 1 and lines[0].startswith("error: block ") and "file too large" in lines[0], r.stderr
    assert os.listdir(tmp_path) == []
