"""Worker processes of the job service: claim queued jobs from SQLite and slice them.

Slicing never runs in the web process. :class:`WorkerPool` starts ``n`` processes (spawn
context); each loops over :meth:`JobStore.claim_next`, runs :func:`run_job` and writes the end
state. The progress callback stores layers done / total and raises :class:`JobStopped` when
the job was cancelled (or taken away), which aborts the slice. A supervisor thread in the
service restarts workers that died, re-queues (once) the job a dead worker held, and stops a
worker that has not honoured a cancellation within ``cancel_grace_s``.

The one call into the slicer is :func:`slice_job` (so a cluster ``client`` can be passed through).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from ..errors import BioslicerError
from ..fileio import MAX_ZIP_ENTRIES, check_zip, copy_zip_entry, zip_inflate_limit
from .store import JobStore, Layout

DEFAULT_SLICE_FN = "bioslicer.pipeline:slice_to_job"


class JobStopped(BaseException):
    """Raised by the progress callback to abort a slice (a BaseException so that nothing in the
    pipeline swallows it). ``reason`` is 'cancelled', 'lost' (the job was taken away) or
    'orphaned' (the service process is gone)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve_slice_fn(spec) -> Callable:
    """A slice function from a callable or a ``"module:attribute"`` string.

    The function is called like :func:`bioslicer.pipeline.slice_to_job`.
    """
    if spec is None:
        spec = DEFAULT_SLICE_FN
    if callable(spec):
        return spec
    mod, _, attr = str(spec).partition(":")
    if not mod or not attr:
        raise BioslicerError(f"slice function {spec!r} must be given as 'module:function'")
    return getattr(importlib.import_module(mod), attr)


# ----------------------------------------------------------------------------- one job
def slice_job(slice_fn: Callable, job: dict, input_path: Path, out_dir: Path, progress, client=None):
    """The single call into the slicer for a mesh job (writes ``out_dir`` and ``out_dir.zip``)."""
    kwargs = dict(printer=job["printer"], recipe=None, overrides=dict(job["params"]) or None,
                  units=job["units"], repair=job["repair"], zip=True, overwrite=True, preview=True,
                  progress=progress)
    if client is not None:
        kwargs["client"] = client
    return slice_fn(input_path, out_dir, **kwargs)


def disk_name(label: str, ext: str, limit: int = 80) -> str:
    """A file name made from a label: only ``[A-Za-z0-9._-]``, no leading dot, at most ``limit``
    characters, ending in ``ext``. Safe as the last part of a path in a folder we made."""
    stem = label[: -len(ext)] if ext and label.lower().endswith(ext.lower()) else label
    stem = "".join(c if (c.isascii() and (c.isalnum() or c in "._-")) else "_" for c in stem)
    stem = stem.lstrip("._-")[: max(1, limit - len(ext))].rstrip(".")
    return (stem or "part") + ext.lower()


def extract_bundle(zip_path: Path, dest: Path, max_total_bytes: int, max_members: int = MAX_ZIP_ENTRIES) -> Path:
    """Unpack a job bundle safely into ``dest`` and return the job folder inside it.

    Refuses absolute names, ``..`` parts, links, more than ``max_members`` entries and more than
    ``max_total_bytes`` inflated (declared, and counted while inflating). Error lines name no
    server path. When every member sits in one top-level folder, that folder is the job;
    otherwise ``dest`` itself is.
    """
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        raise BioslicerError("the uploaded .zip is not a readable zip archive; upload the job bundle "
                             "made by `bioslicer slice --zip`") from None
    what = "the uploaded bundle"
    with zf:
        infos = check_zip(zf, max_total_bytes, max_members, what=what, plain_files=True)
        names = [(info, [p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")])
                 for info in infos]
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        budget = [max_total_bytes]
        for info, parts in names:
            if not parts:
                continue
            target = root.joinpath(*parts)
            if root not in target.resolve().parents and target.resolve() != root:
                raise BioslicerError(f"{what} has an entry {info.filename[:100]!r} pointing outside it; refusing it")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(target, "wb") as out:
                    copy_zip_entry(zf, info, out, budget, what=what)
            except (zipfile.BadZipFile, zlib.error, EOFError):
                raise BioslicerError(f"{what} is damaged (entry {info.filename[:100]!r} does not inflate); "
                                     "upload it again") from None
    tops = {parts[0] for _, parts in names if parts}
    if len(tops) == 1 and (root / next(iter(tops))).is_dir() and not (root / "manifest.json").exists():
        return root / next(iter(tops))
    return root


def _verify_bundle(folder: Path) -> None:
    from ..jobs import verify_job

    res = verify_job(folder)
    ok = getattr(res, "ok", None)
    if ok is None and isinstance(res, dict):
        ok = res.get("ok")
    if ok is False:
        problems = getattr(res, "problems", None) or (res.get("problems") if isinstance(res, dict) else None)
        first = str(problems[0]) if problems else "verification failed"
        raise BioslicerError(f"the uploaded bundle does not verify: {first}")


def manifest_value(manifest: dict, *keys):
    """``manifest[k0][k1]...``, or None where a level is missing or not a dict."""
    cur = manifest
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return cur


def job_summary(manifest: dict) -> dict:
    """The few figures the job list shows, from a job manifest (missing ones are None)."""
    from ..jobs.report import power_clip_line

    def get(*keys):
        return manifest_value(manifest, *keys)

    return {"layers": get("counts", "layers"), "blocks": get("counts", "blocks"),
            "segments": get("counts", "segments"), "print_time_s": get("estimate", "total_s"),
            "dialect": get("program", "dialect"), "program": get("program", "main"),
            "power_clip": power_clip_line(manifest.get("power_clip"))}


def run_job(store: JobStore, layout: Layout, job: dict, slice_fn: Callable, progress, client=None,
            max_bundle_bytes: int = 2_000_000_000) -> dict:
    """Make the finished job folder ``DIR/jobs/<id>/`` and ``DIR/jobs/<id>.zip`` for a claimed job.

    Work happens under ``DIR/work/<id>.<claim>/``; the results are renamed into place only when
    complete. Returns the job's summary (:func:`job_summary`). Raises BioslicerError for user
    errors and :class:`JobStopped` when aborted.
    """
    jid = job["id"]
    work = layout.work_dir(jid, job["claim"])
    shutil.rmtree(work, ignore_errors=True)
    layout.make_temp_dir(work)
    input_path = layout.upload_dir(jid) / job["input_name"]
    if not input_path.is_file():
        raise BioslicerError("the uploaded file of this job is missing from the service's data folder; upload it again")
    out = work / jid
    zip_out = work / f"{jid}.zip"
    if job["kind"] == "bundle":
        progress(0, 1, "verifying")
        limit = min(max_bundle_bytes, zip_inflate_limit(input_path.stat().st_size))
        folder = extract_bundle(input_path, work / "unpacked", limit)
        _verify_bundle(folder)
        from ..jobs import read_manifest

        manifest = read_manifest(folder)
        printer = (manifest.get("printer") or {}).get("name")
        if printer:
            store.set_printer(jid, job["claim"], printer)
        os.replace(folder, out)
        shutil.copyfile(input_path, zip_out)
        progress(1, 1, "verifying")
    else:
        # the slicer sees the part under its (strictly sanitised) name, so the manifest, the
        # program name and error lines name the operator's file, not input.stl
        named = work / "src" / disk_name(job["label"], input_path.suffix)
        named.parent.mkdir()
        try:
            os.link(input_path, named)
        except OSError:
            shutil.copyfile(input_path, named)
        res = slice_job(slice_fn, job, named, out, progress, client=client)
        manifest = getattr(res, "manifest", None) or {}
        got = Path(getattr(res, "path", out))
        if got.resolve() != out.resolve():
            os.replace(got, out)
        zp = getattr(res, "zip_path", None)
        if zp and Path(zp).resolve() != zip_out.resolve():
            os.replace(zp, zip_out)
        if not zip_out.is_file():
            raise RuntimeError(f"the slice function wrote no bundle zip for job {jid}")
    if store.should_stop(jid, job["claim"]):
        raise JobStopped("cancelled")
    final_dir, final_zip = layout.job_dir(jid), layout.job_zip(jid)
    shutil.rmtree(final_dir, ignore_errors=True)
    os.replace(out, final_dir)
    os.replace(zip_out, final_zip)
    shutil.rmtree(work, ignore_errors=True)
    return job_summary(manifest)


class _Progress:
    """The progress callback of one job: throttled writes to the table, cancellation checks."""

    def __init__(self, store: JobStore, job: dict, parent=None, min_interval_s: float = 0.2) -> None:
        self.store = store
        self.job_id = job["id"]
        self.claim = job["claim"]
        self.parent = parent
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._label = None

    def __call__(self, done: int, total: int, label: str = "") -> None:
        now = time.monotonic()
        end = total > 0 and done >= total
        if label == self._label and not end and now - self._last < self.min_interval_s:
            return
        self._last, self._label = now, label
        if self.parent is not None and not self.parent.is_alive():
            raise JobStopped("orphaned")
        if not self.store.progress(self.job_id, self.claim, done, total, label or "slicing"):
            raise JobStopped("lost")
        if self.store.should_stop(self.job_id, self.claim):
            raise JobStopped("cancelled")


def _error_line(exc: BaseException, layout: Layout | None = None) -> str:
    """The first line of an error, for the job's user: paths inside the data folder are shown by
    their last part only (the server's folders are none of the user's business)."""
    msg = str(exc).strip().splitlines()
    line = msg[0] if msg else type(exc).__name__
    if layout is not None:
        for root in sorted({str(layout.root), os.path.realpath(layout.root)}, key=len, reverse=True):
            line = re.sub(re.escape(root) + r"(/[^\s'\":;,()]*)?", lambda m: Path(m.group(0)).name
                          if m.group(1) else "the data folder", line)
    return line


def process_one(store: JobStore, layout: Layout, job: dict, slice_fn: Callable, parent=None, client=None,
                max_bundle_bytes: int = 2_000_000_000) -> str:
    """Run one claimed job to its end state and return that state ('done', 'failed', 'cancelled',
    or 'lost'/'orphaned' when the job is no longer ours to finish)."""
    jid, claim = job["id"], job["claim"]
    progress = _Progress(store, job, parent)
    try:
        summary = run_job(store, layout, job, slice_fn, progress, client=client, max_bundle_bytes=max_bundle_bytes)
    except JobStopped as stop:
        shutil.rmtree(layout.work_dir(jid, claim), ignore_errors=True)
        if stop.reason == "cancelled":
            store.finish(jid, claim, "cancelled")
        return stop.reason
    except BioslicerError as exc:
        shutil.rmtree(layout.work_dir(jid, claim), ignore_errors=True)
        store.finish(jid, claim, "failed", _error_line(exc, layout))
        return "failed"
    except Exception as exc:  # a bug: keep the traceback in the service log, a line for the user
        traceback.print_exc(file=sys.stderr)
        shutil.rmtree(layout.work_dir(jid, claim), ignore_errors=True)
        store.finish(jid, claim, "failed",
                     f"internal error ({type(exc).__name__}: {_error_line(exc, layout)}); this is a bug, "
                     "please report it with the input file")
        return "failed"
    if not store.finish(jid, claim, "done", summary=summary):
        return "lost"
    return "done"


def worker_main(data_dir: str, slice_spec, wake, stop, client_spec=None, poll_s: float = 0.5,
                max_bundle_bytes: int = 2_000_000_000) -> None:
    """Entry point of a worker process: claim and run jobs until ``stop`` is set or the
    service process disappears."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the service's to handle
    layout = Layout(data_dir)
    store = JobStore(layout.db)
    slice_fn = resolve_slice_fn(slice_spec)
    client = None
    if client_spec is not None:
        client = client_spec() if callable(client_spec) else client_spec
    parent = multiprocessing.parent_process()
    while not stop.is_set():
        if parent is not None and not parent.is_alive():
            break
        job = store.claim_next(os.getpid())
        if job is None:
            if wake.wait(poll_s):
                wake.clear()
            continue
        if process_one(store, layout, job, slice_fn, parent, client, max_bundle_bytes) == "orphaned":
            break
    store.close()


# ----------------------------------------------------------------------------- the pool
class WorkerPool:
    """``n`` worker processes (spawn) plus a supervisor thread in the service process.

    Attributes
    ----------
    data_dir : Path
        The service's data folder.
    n : int
        Number of worker processes.
    slice_fn : callable or "module:function"
        Called like :func:`bioslicer.pipeline.slice_to_job`; must be importable by the workers.
    client_spec : object or None
        Passed to workers and on to ``slice_fn(client=...)`` (picklable, or a picklable factory).
    cancel_grace_s : float
        A cancelled job still slicing after this long has its worker stopped and restarted.
    max_attempts : int
        A job whose worker died is re-queued until it has been tried this many times.
    """

    def __init__(self, data_dir, n: int = 1, slice_fn=None, client_spec=None, cancel_grace_s: float = 5.0,
                 max_attempts: int = 2, poll_s: float = 0.5, max_bundle_bytes: int = 2_000_000_000) -> None:
        self.data_dir = Path(data_dir)
        self.layout = Layout(data_dir)
        self.n = int(n)
        self.slice_fn = slice_fn if slice_fn is not None else DEFAULT_SLICE_FN
        self.client_spec = client_spec
        self.cancel_grace_s = cancel_grace_s
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.max_bundle_bytes = max_bundle_bytes
        self._ctx = multiprocessing.get_context("spawn")
        self._wake = self._ctx.Event()
        self._stop = self._ctx.Event()
        self._procs: list = []
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _spawn(self):
        p = self._ctx.Process(target=worker_main, name="bioslicer-worker", daemon=True,
                              args=(str(self.layout.root), self.slice_fn, self._wake, self._stop, self.client_spec,
                                    self.poll_s, self.max_bundle_bytes))
        p.start()
        return p

    def start(self) -> None:
        """Start the workers and the supervisor thread."""
        with self._lock:
            self._procs = [self._spawn() for _ in range(self.n)]
        self._thread = threading.Thread(target=self._supervise, name="bioslicer-supervisor", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tell idle workers that a job was queued."""
        self._wake.set()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the supervisor and the workers (a job being sliced is re-queued at next start)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            for p in self._procs:
                p.join(max(0.0, deadline - time.monotonic()))
            for p in self._procs:
                if p.is_alive():
                    p.terminate()
                    p.join(2.0)
                if p.is_alive():
                    p.kill()
                    p.join(2.0)
            self._procs = []

    def _supervise(self) -> None:
        store = JobStore(self.layout.db)
        try:
            while not self._halt.wait(self.poll_s):
                try:
                    self.supervise_once(store)
                except Exception:  # keep supervising; the log shows what went wrong
                    traceback.print_exc(file=sys.stderr)
        finally:
            store.close()

    def supervise_once(self, store: JobStore) -> None:
        """Restart dead workers (re-queueing or failing their job) and stop workers that ignore a
        cancellation."""
        now = time.time()
        with self._lock:
            if self._halt.is_set():
                return
            by_pid = {p.pid: i for i, p in enumerate(self._procs)}
            for job in store.slicing():
                i = by_pid.get(job["worker_pid"])
                if i is None or not job["cancel_requested"] or now - (job["cancel_s"] or now) < self.cancel_grace_s:
                    continue
                p = self._procs[i]
                p.terminate()
                p.join(5.0)
                if p.is_alive():
                    p.kill()
                    p.join(2.0)
                store.force_end(job["id"], "cancelled", worker_pid=p.pid)
                self.layout.remove_work(job["id"])
                self._procs[i] = self._spawn()
            for i, p in enumerate(self._procs):
                if p.is_alive():
                    continue
                code = p.exitcode
                for job in store.slicing():
                    if job["worker_pid"] != p.pid:
                        continue
                    self.layout.remove_work(job["id"])
                    if job["attempts"] < self.max_attempts:
                        store.requeue(job["id"], f"worker process died (exit code {code}); re-queued",
                                      worker_pid=p.pid)
                    else:
                        store.force_end(job["id"], "failed",
                                        f"the worker process died (exit code {code}) on each of {job['attempts']} "
                                        "attempts; the part may need more memory than this machine has (try a "
                                        "coarser slice_um/hatch_um)", worker_pid=p.pid)
                self._procs[i] = self._spawn()
