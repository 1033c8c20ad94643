"""The job service: a FastAPI app over the job table, the data folder and the worker pool.

:func:`create_app` builds the app (the CLI's ``bioslicer serve`` and the tests call it through
:func:`run_server`). Requests never slice: an upload is streamed to ``DIR/incoming/`` with the
size limit enforced while it arrives, checked (extension, printer, parameters with the same
rules as the CLI), renamed to ``DIR/uploads/<id>/input.<ext>`` and only then entered in the
table as ``queued``; worker processes (:mod:`bioslicer.service.worker`) do the rest. Before
submitting, ``POST /api/estimate`` takes the same form and answers the job's estimate (a mesh:
planned from sampled layers in a helper process, :mod:`.estimator`; a bundle: its manifest).

The routes live in :mod:`bioslicer.service.routes` (page, printers, jobs), the upload parser in
:mod:`.upload`, the response models in :mod:`.models`, authentication in :mod:`.security`.

Every user error is answered with a 4xx status and ``{"detail": "<one line>"}``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .. import __version__
from ..errors import BioslicerError
from .estimator import Estimator
from .routes import ServiceState
from .routes import jobs as jobs_routes
from .routes import page as page_routes
from .routes import printers as printer_routes
from .security import check_bind, guard, install_log_redaction, is_loopback, remove_log_redaction  # noqa: F401
from .store import TEMP_MARK, JobStore, Layout, is_job_id
from .upload import ServiceError, check_params, safe_label  # noqa: F401  (re-exported)
from .worker import WorkerPool

#: an uploaded bundle may inflate to this many times the upload limit
INFLATE_RATIO = 10


class ServiceConfig:
    """Settings of one service instance (plain attributes).

    Attributes
    ----------
    data_dir : Path
        Where the table and the files live.
    token : str or None
        When set, every request must carry it (``Authorization: Bearer``, or the page's cookie).
    workers : int
        Worker processes.
    max_upload_bytes : int
        Largest accepted upload.
    slice_fn : callable, str or None
        ``slice_to_job``-like function (default ``bioslicer.pipeline:slice_to_job``).
    estimate_fn : callable, str or None
        ``estimate_mesh``-like function of ``POST /api/estimate`` (default
        ``bioslicer.pipeline:estimate_mesh``), run in a spawned helper process.
    client_spec : object or None
        Passed through to ``slice_fn(client=...)``.
    cancel_grace_s : float
        How long a cancelled job may keep slicing before its worker is stopped.
    start_workers : bool
        False runs the API without workers (jobs stay queued).
    read_timeout_s : float
        An upload that sends nothing for this long is answered 408 (a Content-Length larger than
        the body must not hold a connection for long).
    max_inflate_bytes : int
        An uploaded bundle may inflate to :data:`INFLATE_RATIO` times ``max_upload_bytes``.
    csrf_secret : bytes
        Random per start; the web page's CSRF token is derived from it.
    """

    def __init__(self, data_dir, token=None, workers: int = 1, max_upload_bytes: int = 200_000_000,
                 slice_fn=None, client_spec=None, cancel_grace_s: float = 5.0, start_workers: bool = True,
                 read_timeout_s: float = 5.0, estimate_fn=None) -> None:
        self.data_dir = Path(data_dir)
        self.token = token or None
        self.workers = int(workers)
        self.max_upload_bytes = int(max_upload_bytes)
        self.slice_fn = slice_fn
        self.estimate_fn = estimate_fn
        self.client_spec = client_spec
        self.cancel_grace_s = float(cancel_grace_s)
        self.start_workers = bool(start_workers)
        #: a bundle may inflate to 10x the upload limit (and hold at most 10,000 entries)
        self.max_inflate_bytes = INFLATE_RATIO * self.max_upload_bytes
        self.read_timeout_s = float(read_timeout_s)  # an upload sending nothing this long is refused (408)
        self.csrf_secret = secrets.token_bytes(32)  # the page's CSRF token is derived from it (per start)
        if self.workers < 1:
            raise BioslicerError("--workers must be at least 1")
        if self.max_upload_bytes < 1:
            raise BioslicerError("--max-upload-mb must be positive")


def lock_data_dir(layout: Layout):
    """Take the data folder's lock file (one service per folder); returns the open file."""
    layout.root.mkdir(parents=True, exist_ok=True)
    fh = open(layout.root / "service.lock", "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise BioslicerError(f"another bioslicer service is using {layout.root}; stop it or give another --data folder")
    return fh


def recover(store: JobStore, layout: Layout, log=None) -> list[str]:
    """Start-up repair, never losing what is not the service's own temporary work.

    * jobs left 'slicing' by the last run are re-queued;
    * in ``incoming/`` and ``work/`` only folders holding the service's marker
      (:data:`~bioslicer.service.store.TEMP_MARK`) and empty folders are removed; anything else
      there is left alone, with a line in the log;
    * a finished job folder ``jobs/<id>/`` without a row (the table was lost or restored from an
      older copy) is re-adopted from its ``manifest.json`` as 'done', with its bundle and upload;
    * every other entry of ``uploads/`` and ``jobs/`` without a row is moved to
      ``orphans/<UTC time>/`` with a line in the log.

    Returns the re-queued ids.
    """
    log = log or (lambda line: print(f"bioslicer serve: {line}", flush=True))
    requeued = store.requeue_interrupted()
    for d in (layout.incoming, layout.work):
        for p in sorted(d.iterdir()):
            if p.is_dir() and not p.is_symlink() and ((p / TEMP_MARK).is_file() or not any(p.iterdir())):
                shutil.rmtree(p, ignore_errors=True)
            else:
                log(f"left {p.relative_to(layout.root)} alone: not temporary work of this service")
    ids = store.ids()
    for p in sorted(layout.jobs.iterdir()):
        if is_job_id(p.name) and p.name not in ids and p.is_dir() and not p.is_symlink():
            if _adopt(store, layout, p.name):
                ids.add(p.name)
                log(f"re-adopted finished job {p.name} from its manifest (it had no row in the job table)")
    stray = [p for p in sorted(layout.uploads.iterdir()) if p.name not in ids]
    stray += [p for p in sorted(layout.jobs.iterdir()) if (p.name[:-4] if p.name.endswith(".zip") else p.name)
              not in ids]
    if stray:
        dest = layout.orphans / (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}")
        for p in stray:
            rel = p.relative_to(layout.root)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(p, dest / rel)
            log(f"moved {rel} (no row in the job table) to {(dest / rel).relative_to(layout.root)}")
    return requeued


def _adopt(store: JobStore, layout: Layout, jid: str) -> bool:
    """Enter the finished job folder ``jobs/<jid>/`` as 'done' from its manifest; False when it
    has no readable manifest (then it is moved to the orphans)."""
    import json

    from .upload import UNITS
    from .worker import job_summary

    try:
        manifest = json.loads((layout.job_dir(jid) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    mesh = manifest.get("mesh") if isinstance(manifest.get("mesh"), dict) else {}
    printer = manifest.get("printer") if isinstance(manifest.get("printer"), dict) else {}
    up = layout.upload_dir(jid)
    inputs = sorted(up.glob("input.*")) if up.is_dir() else []
    inp = inputs[0] if len(inputs) == 1 and inputs[0].is_file() else None
    kind = "bundle" if inp is not None and inp.suffix == ".zip" else "mesh"
    units = mesh.get("units") if mesh.get("units") in UNITS else "um"
    store.adopt(jid, label=safe_label(str(mesh.get("file") or "job")), kind=kind,
                input_name=inp.name if inp else "", input_bytes=inp.stat().st_size if inp else 0,
                printer=str(printer.get("name") or "")[:100], units=units, summary=job_summary(manifest),
                note="re-adopted at start-up from its manifest (the job table had no row for it)",
                finished_s=(layout.job_dir(jid) / "manifest.json").stat().st_mtime)
    return True


def create_app(data_dir, *, token: str | None = None, workers: int = 1, max_upload_mb: float = 200.0,
               slice_fn=None, client_spec=None, cancel_grace_s: float = 5.0, start_workers: bool = True,
               config: ServiceConfig | None = None) -> FastAPI:
    """Build the service app over the data folder ``data_dir``.

    Parameters
    ----------
    data_dir : path
        ``DIR``: ``jobs.sqlite3``, ``uploads/``, ``jobs/`` (created when missing).
    token : str or None
        Shared secret every request must carry (``Authorization: Bearer <token>``).
    workers : int
        Worker processes started with the app.
    max_upload_mb : float
        Upload size limit, MB (10^6 bytes).
    slice_fn : callable, "module:function" or None
        The slicer (default :func:`bioslicer.pipeline.slice_to_job`); must be importable by the
        worker processes (spawned).
    client_spec : object or None
        Passed on as ``slice_fn(client=...)`` (cluster runs).
    cancel_grace_s : float
        A cancelled job still slicing after this many seconds has its worker stopped.
    start_workers : bool
        Start the worker pool (False: the API only).

    Returns
    -------
    fastapi.FastAPI
    """
    cfg = config or ServiceConfig(data_dir, token=token, workers=workers,
                                  max_upload_bytes=int(max_upload_mb * 1_000_000), slice_fn=slice_fn,
                                  client_spec=client_spec, cancel_grace_s=cancel_grace_s,
                                  start_workers=start_workers)
    layout = Layout(cfg.data_dir)
    svc = ServiceState(cfg, layout)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        redaction = install_log_redaction()  # after uvicorn configured its loggers
        layout.make()
        lock = lock_data_dir(layout)
        store = JobStore(layout.db)
        requeued = recover(store, layout)
        if requeued:
            print(f"bioslicer serve: re-queued {len(requeued)} job(s) interrupted by the last stop: "
                  f"{', '.join(requeued)}", flush=True)
        pool = None
        if cfg.start_workers:
            pool = WorkerPool(layout.root, n=cfg.workers, slice_fn=cfg.slice_fn, client_spec=cfg.client_spec,
                              cancel_grace_s=cfg.cancel_grace_s, max_bundle_bytes=cfg.max_inflate_bytes)
            pool.start()
        svc.store, svc.pool = store, pool
        svc.estimator = Estimator(cfg.estimate_fn)
        try:
            yield
        finally:
            svc.estimator.close()
            if pool is not None:
                pool.stop()
            store.close()
            lock.close()
            remove_log_redaction(redaction)

    app = FastAPI(
        title="bioslicer job service",
        version=__version__,
        description="Upload a mesh or a job bundle, choose a printer and the slicing parameters, follow the "
                    "job, download the checked job bundle. Errors are 4xx with {\"detail\": \"<one line>\"}. "
                    "When the service has a token, send `Authorization: Bearer <token>` with every request.",
        lifespan=lifespan,
    )
    app.state.config = cfg
    app.state.layout = layout
    app.state.service = svc
    app.middleware("http")(guard)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(BioslicerError, _user_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for module in (page_routes, printer_routes, jobs_routes):
        app.include_router(module.router)
    return app


async def _service_error(request: Request, exc: ServiceError):
    return JSONResponse({"detail": exc.detail}, status_code=exc.status)


async def _user_error(request: Request, exc: BioslicerError):
    return JSONResponse({"detail": str(exc).splitlines()[0] if str(exc) else "bad request"}, status_code=400)


async def _validation_error(request: Request, exc: RequestValidationError):
    errs = exc.errors()
    first = errs[0] if errs else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
    return JSONResponse({"detail": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, status_code=422)


def run_server(data_dir, host: str = "127.0.0.1", port: int = 8000, token: str | None = None, workers: int = 1,
               max_upload_mb: float = 200.0, slice_fn=None, client_spec=None, log_level: str = "info",
               cancel_grace_s: float = 5.0) -> None:
    """Check the settings, then serve :func:`create_app` with uvicorn until interrupted.

    Raises BioslicerError for a non-loopback host without a token, a short token, or a data
    folder already served by another process.
    """
    import uvicorn

    check_bind(host, token)
    layout = Layout(data_dir)
    lock = lock_data_dir(layout)  # fail early with a clear line; the app takes the lock for real
    try:
        JobStore(layout.db).close()  # a damaged table stops here, in one line, before any file is touched
    finally:
        lock.close()
    app = create_app(layout.root, token=token, workers=workers, max_upload_mb=max_upload_mb, slice_fn=slice_fn,
                     client_spec=client_spec, cancel_grace_s=cancel_grace_s)
    shown = f"[{host}]" if ":" in host else host
    print(f"bioslicer service on http://{shown}:{port}/  (data: {layout.root}, workers: {workers}"
          f"{', token required' if token else ''})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
