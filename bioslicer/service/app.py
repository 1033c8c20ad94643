"""The job service: a FastAPI app over the job table, the data folder and the worker pool.

:func:`create_app` builds the app (the CLI's ``bioslicer serve`` and the tests call it through
:func:`run_server`). Requests never slice: an upload is streamed to ``DIR/incoming/`` with the
size limit enforced while it arrives, checked (extension, printer, parameters with the same
rules as the CLI), renamed to ``DIR/uploads/<id>/input.<ext>`` and only then entered in the
table as ``queued``; worker processes (:mod:`bioslicer.service.worker`) do the rest.

Every user error is answered with a 4xx status and ``{"detail": "<one line>"}``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import ipaddress
import json
import os
import re
import shutil
import unicodedata
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from .. import __version__
from ..errors import BioslicerError
from .store import STATUSES, JobStore, Layout, iso, is_job_id, new_job_id
from .worker import WorkerPool

MESH_EXTENSIONS = (".stl", ".obj", ".ply", ".3mf")
BUNDLE_EXTENSIONS = (".zip",)
ALLOWED_EXTENSIONS = MESH_EXTENSIONS + BUNDLE_EXTENSIONS
UNITS = ("um", "mm", "nm")
#: recipe fields the web form shows first (the CLI's named `slice` options)
MAIN_PARAMS = ("strategy", "slice_um", "hatch_um", "hatch_angle_deg", "contour_count")
TOKEN_COOKIE = "bioslicer_token"
_MAX_FIELDS = 200
_MAX_FIELD_BYTES = 64 * 1024
_STATIC = Path(__file__).resolve().parent / "static"


# ----------------------------------------------------------------------------- helpers
class ServiceError(Exception):
    """A request the service refuses: HTTP ``status`` with a one-line ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost`` (the only hosts that may run without a token)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback address without a token (BioslicerError)."""
    if token is not None and len(token) < 8:
        raise BioslicerError("the --token is too short; use at least 8 characters (e.g. `openssl rand -hex 16`)")
    if not is_loopback(host) and not token:
        raise BioslicerError(f"serving on {host} (not loopback) needs a token; pass --token SECRET or set "
                             "BIOSLICER_TOKEN, or serve on --host 127.0.0.1")


def safe_label(name: str, limit: int = 100) -> str:
    """A user's file name reduced to a display label: last path part, printable, at most ``limit``
    characters. Never used as a path."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(c if (c.isprintable() and c not in "\"'<>`|:*?") else "_" for c in name).strip(" .")
    return name[-limit:] or "upload"


def _owner_label(owner: str) -> str:
    owner = "".join(c for c in unicodedata.normalize("NFC", owner or "") if c.isprintable()).strip()
    if len(owner) > 64:
        raise ServiceError(400, "owner label is longer than 64 characters; use a short name or initials")
    return owner or "anonymous"


def _bundled_printers() -> dict:
    from ..printers import list_printers, printers_dir

    stems = {p.stem for p in printers_dir().glob("*.toml")}
    return {p.name: p for p in list_printers() if p.name in stems}


def _parse_bool(field: str, text: str) -> bool:
    t = (text or "").strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("", "0", "false", "no", "off"):
        return False
    raise ServiceError(400, f"form field {field!r} must be true or false, got {text!r}")


def check_params(printer: str, params: dict) -> dict:
    """Validate recipe overrides for a bundled printer exactly as the CLI does.

    Parameters
    ----------
    printer : str
        A bundled printer profile name (paths are refused: the service never reads user paths).
    params : dict
        Recipe field -> value (typed values, or text read like CLI ``--set key=value``).

    Returns
    -------
    dict
        The overrides, typed, to store with the job. Raises :class:`ServiceError` (400).
    """
    printers = _bundled_printers()
    if printer not in printers:
        raise ServiceError(400, f"unknown printer {printer!r}; use one of {', '.join(sorted(printers))}")
    if "power_field_path" in params and params["power_field_path"] not in (None, ""):
        raise ServiceError(400, "recipe key 'power_field_path' names a file on the server; the service does not "
                                "take file paths as parameters")
    from ..budget import check_recipe
    from ..pipeline import resolve_recipe

    try:
        check_recipe(resolve_recipe(printers[printer], None, params), printers[printer])
    except BioslicerError as exc:
        raise ServiceError(400, str(exc).splitlines()[0]) from None
    return params


def _typed_form_params(fields: dict) -> dict:
    """Form text fields -> overrides, read like the CLI's ``--set key=value``."""
    from ..recipe import recipe_overrides_from_cli

    pairs = [f"{k}={v}" for k, v in sorted(fields.items()) if str(v).strip() != ""]
    try:
        return recipe_overrides_from_cli(pairs)
    except BioslicerError as exc:
        raise ServiceError(400, str(exc).splitlines()[0]) from None


# ----------------------------------------------------------------------------- upload parsing
class _Upload:
    """Streams one multipart/form-data request: the single file part goes to a temporary file in
    ``DIR/incoming/`` (refused past ``max_bytes``), text fields are collected (bounded)."""

    def __init__(self, incoming: Path, max_bytes: int) -> None:
        self.incoming = incoming
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.ext: str | None = None
        self.tmp: Path | None = None
        self.size = 0
        self._fh = None
        self._head_name = b""
        self._head_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._part_name: str | None = None
        self._is_file = False
        self._buf = bytearray()
        self._head = b""

    # callbacks of python_multipart.MultipartParser
    def on_part_begin(self) -> None:
        self._headers = {}
        self._part_name = None
        self._is_file = False
        self._buf = bytearray()

    def on_header_field(self, data, start, end) -> None:
        self._head_name += data[start:end]

    def on_header_value(self, data, start, end) -> None:
        self._head_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._head_name.strip().lower()] = self._head_value.strip()
        self._head_name = b""
        self._head_value = b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        disp, opts = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disp != b"form-data" or b"name" not in opts:
            raise ServiceError(400, "malformed multipart body: a part has no form-data name")
        self._part_name = opts[b"name"].decode("utf-8", "replace")
        if b"filename" in opts:
            if self._part_name != "file":
                raise ServiceError(400, f"unexpected file field {self._part_name!r}; send the part as field 'file'")
            if self.filename is not None:
                raise ServiceError(400, "more than one file in the upload; send one file per job")
            self.filename = opts[b"filename"].decode("utf-8", "replace")
            label = safe_label(self.filename)
            ext = os.path.splitext(label)[1].lower()
            if ext not in ALLOWED_EXTENSIONS:
                raise ServiceError(415, f"file type {ext or '(none)'!r} is not accepted; upload a mesh "
                                        f"({', '.join(MESH_EXTENSIONS)}) or a job bundle (.zip)")
            self.ext = ext
            self._is_file = True
            fd, tmp = _mkstemp(self.incoming)
            self.tmp = Path(tmp)
            self._fh = os.fdopen(fd, "wb")
        else:
            if len(self.fields) >= _MAX_FIELDS:
                raise ServiceError(400, f"too many form fields (limit {_MAX_FIELDS})")

    def on_part_data(self, data, start, end) -> None:
        n = end - start
        if self._is_file:
            self.size += n
            if self.size > self.max_bytes:
                raise ServiceError(413, f"upload is larger than the limit of {_mb(self.max_bytes)}; "
                                        "ask the operator to raise --max-upload-mb or upload a smaller file")
            if len(self._head) < 8:
                self._head += bytes(data[start:min(end, start + 8 - len(self._head))])
            self._fh.write(data[start:end])
        else:
            if len(self._buf) + n > _MAX_FIELD_BYTES:
                raise ServiceError(413, f"form field {self._part_name!r} is longer than {_MAX_FIELD_BYTES} bytes")
            self._buf += data[start:end]

    def on_part_end(self) -> None:
        if self._is_file:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        else:
            try:
                self.fields[self._part_name] = self._buf.decode("utf-8")
            except UnicodeDecodeError:
                raise ServiceError(400, f"form field {self._part_name!r} is not UTF-8 text") from None

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value",
            "on_header_end", "on_headers_finished")}


def _mkstemp(folder: Path):
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix="upload-", suffix=".part", dir=folder)


def _mb(n: int) -> str:
    return f"{n / 1e6:g} MB"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- API models
class ProgressOut(BaseModel):
    done: int = Field(description="units of work done in the current stage (layers while slicing)")
    total: int = Field(description="units of work in the current stage (0: not known yet)")
    stage: str = Field(description="current stage label (slicing, writing, ...) or the final status")
    fraction: float = Field(description="done / total, 0..1 (1 when done)")


class JobOut(BaseModel):
    id: str
    owner: str
    file: str = Field(description="the uploaded file's name (sanitised; a label only)")
    kind: str = Field(description="'mesh' (sliced here) or 'bundle' (a ready job, verified here)")
    printer: str
    units: str
    repair: bool
    params: dict[str, Any] = Field(description="recipe overrides over the printer's defaults")
    status: str = Field(description="queued | slicing | done | failed | cancelled")
    progress: ProgressOut
    error: str | None = Field(description="the one-line reason when failed")
    note: str | None = Field(description="service remarks, e.g. re-queued after a restart")
    summary: dict[str, Any] | None = Field(description="of a done job: layers, blocks, segments, print_time_s, "
                                                       "dialect, program (from its manifest)")
    attempts: int
    cancel_requested: bool
    input_bytes: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    links: dict[str, str]


class PrinterOut(BaseModel):
    name: str
    description: str
    dialect: str
    objective: str
    field_shape: str
    field_size_um: float
    z_range_um: float
    max_power_mw: float


class DefaultsOut(BaseModel):
    printer: str
    params: dict[str, Any] = Field(description="every recipe field with this printer's default value")
    main: list[str] = Field(description="fields the form shows first (the CLI's named options)")
    choices: dict[str, list[str]]


class HealthOut(BaseModel):
    ok: bool
    version: str
    workers: int
    workers_alive: int
    jobs: dict[str, int]
    max_upload_bytes: int
    auth: bool


def job_out(job: dict) -> dict:
    """A job row as the API shows it."""
    jid = job["id"]
    total, done = job["total"], job["done"]
    frac = 1.0 if job["status"] == "done" else (min(1.0, done / total) if total > 0 else 0.0)
    links = {"self": f"/api/jobs/{jid}"}
    if job["status"] in ("queued", "slicing"):
        links["cancel"] = f"/api/jobs/{jid}/cancel"
    if job["status"] == "done":
        for name in ("bundle.zip", "manifest.json", "report.txt", "preview.png"):
            links[name.split(".")[0]] = f"/api/jobs/{jid}/{name}"
    return {
        "id": jid, "owner": job["owner"], "file": job["label"], "kind": job["kind"], "printer": job["printer"],
        "units": job["units"], "repair": job["repair"], "params": job["params"], "status": job["status"],
        "progress": {"done": done, "total": total, "stage": job["stage"], "fraction": round(frac, 4)},
        "error": job["error"], "note": job["note"], "summary": job["summary"], "attempts": job["attempts"],
        "cancel_requested": job["cancel_requested"], "input_bytes": job["input_bytes"],
        "created_at": iso(job["created_s"]), "started_at": iso(job["started_s"]),
        "finished_at": iso(job["finished_s"]), "updated_at": iso(job["updated_s"]), "links": links,
    }


_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "mesh (.stl .obj .ply .3mf) or job bundle (.zip)"},
                "printer": {"type": "string", "description": "bundled printer profile (GET /api/printers)",
                            "default": "nanoscribe-gt2-25x"},
                "owner": {"type": "string", "description": "owner label shown in the job list"},
                "units": {"type": "string", "enum": list(UNITS), "default": "um",
                          "description": "length unit of the mesh file"},
                "repair": {"type": "boolean", "default": False, "description": "repair the mesh first"},
                "params": {"type": "string", "description": "JSON object of recipe fields, e.g. "
                                                            "{\"hatch_um\": 0.3, \"power_mw\": {\"hatch\": 20}}"},
            },
            "additionalProperties": {"type": "string", "description": "any other field is a recipe field, "
                                     "read like the CLI's --set key=value (e.g. hatch_um=0.3, power_mw.hatch=20)"},
        }}},
    }
}


# ----------------------------------------------------------------------------- the app
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
    client_spec : object or None
        Passed through to ``slice_fn(client=...)``.
    cancel_grace_s : float
        How long a cancelled job may keep slicing before its worker is stopped.
    start_workers : bool
        False runs the API without workers (jobs stay queued).
    """

    def __init__(self, data_dir, token=None, workers: int = 1, max_upload_bytes: int = 200_000_000,
                 slice_fn=None, client_spec=None, cancel_grace_s: float = 5.0, start_workers: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.token = token or None
        self.workers = int(workers)
        self.max_upload_bytes = int(max_upload_bytes)
        self.slice_fn = slice_fn
        self.client_spec = client_spec
        self.cancel_grace_s = float(cancel_grace_s)
        self.start_workers = bool(start_workers)
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


def recover(store: JobStore, layout: Layout) -> list[str]:
    """Start-up repair: re-queue interrupted jobs, drop half-received uploads, unfinished work
    and files no job refers to. Returns the re-queued ids."""
    requeued = store.requeue_interrupted()
    for d in (layout.incoming, layout.work):
        for p in d.iterdir():
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    ids = store.ids()
    for p in layout.uploads.iterdir():
        if p.name not in ids:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    for p in layout.jobs.iterdir():
        stem = p.name[:-4] if p.name.endswith(".zip") else p.name
        if stem not in ids:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    return requeued


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
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
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
                              cancel_grace_s=cfg.cancel_grace_s)
            pool.start()
        state.update(store=store, pool=pool)
        try:
            yield
        finally:
            if pool is not None:
                pool.stop()
            store.close()
            lock.close()

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

    def store() -> JobStore:
        return state["store"]

    # ------------------------------------------------------------------ errors and auth
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(BioslicerError)
    async def _user_error(request: Request, exc: BioslicerError):
        return JSONResponse({"detail": str(exc).splitlines()[0] if str(exc) else "bad request"}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return JSONResponse({"detail": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if cfg.token:
            given = None
            auth = request.headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
            if given is None:
                given = request.cookies.get(TOKEN_COOKIE)
            if given is None and request.url.path == "/" and "token" in request.query_params:
                given = request.query_params["token"]
            if not given or not hmac.compare_digest(given.encode(), cfg.token.encode()):
                return JSONResponse({"detail": "missing or wrong token; send 'Authorization: Bearer <token>' "
                                               "(in a browser open /?token=<token> once)"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            # without a token only loopback names are answered (no DNS rebinding from web pages)
            host = request.headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name):
                return JSONResponse({"detail": f"host {host!r} is not served without a token; use "
                                               "http://127.0.0.1 or start the service with --token"},
                                    status_code=400)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    # ------------------------------------------------------------------ page
    @app.get("/", include_in_schema=False)
    async def page(request: Request):
        if cfg.token and "token" in request.query_params:
            # the token arrived in the URL once: keep it in a cookie and drop it from the address bar
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(TOKEN_COOKIE, cfg.token, httponly=True, samesite="strict", path="/")
            return resp
        html = (_STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store",
                                           "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                           "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})

    # ------------------------------------------------------------------ printers
    @app.get("/api/health", response_model=HealthOut, summary="Service status")
    async def health():
        pool = state.get("pool")
        alive = 0 if pool is None else sum(1 for p in pool._procs if p.is_alive())
        return {"ok": True, "version": __version__, "workers": 0 if pool is None else pool.n,
                "workers_alive": alive, "jobs": store().counts(), "max_upload_bytes": cfg.max_upload_bytes,
                "auth": bool(cfg.token)}

    @app.get("/api/printers", response_model=list[PrinterOut], summary="Bundled printer profiles")
    async def printers():
        return [{k: getattr(p, k) for k in PrinterOut.model_fields} for _, p in sorted(_bundled_printers().items())]

    @app.get("/api/printers/{name}/defaults", response_model=DefaultsOut,
             summary="Every slicing parameter with the printer's defaults (the form's starting values)")
    async def printer_defaults(name: str):
        printers = _bundled_printers()
        if name not in printers:
            raise ServiceError(404, f"unknown printer {name!r}; use one of {', '.join(sorted(printers))}")
        from ..recipe import DEPTH_MODES, STRATEGIES, Recipe

        params = Recipe.from_printer(printers[name]).to_dict()
        return {"printer": name, "params": params, "main": [k for k in MAIN_PARAMS if k in params],
                "choices": {"strategy": list(STRATEGIES), "depth_mode": list(DEPTH_MODES), "units": list(UNITS)}}

    # ------------------------------------------------------------------ jobs
    @app.post("/api/jobs", status_code=201, response_model=JobOut, openapi_extra=_UPLOAD_SCHEMA,
              summary="Upload a mesh (sliced by a worker) or a job bundle (verified), as multipart/form-data",
              responses={400: {"description": "bad parameter"}, 413: {"description": "upload too large"},
                         415: {"description": "file type not accepted"}})
    async def submit(request: Request):
        from python_multipart.multipart import MultipartParser, parse_options_header

        ctype, opts = parse_options_header(request.headers.get("content-type", ""))
        if ctype != b"multipart/form-data" or not opts.get(b"boundary"):
            raise ServiceError(415, "send the upload as multipart/form-data with a 'file' field "
                                    "(curl -F file=@part.stl ...)")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cfg.max_upload_bytes + _MAX_FIELDS * 1024 + (1 << 20):
            raise ServiceError(413, f"upload is larger than the limit of {_mb(cfg.max_upload_bytes)}; "
                                    "ask the operator to raise --max-upload-mb or upload a smaller file")
        up = _Upload(layout.incoming, cfg.max_upload_bytes)
        try:
            parser = MultipartParser(opts[b"boundary"], up.callbacks())
            async for chunk in request.stream():
                if chunk:
                    parser.write(chunk)
            parser.finalize()
            if up.tmp is None or up._fh is not None:
                raise ServiceError(400, "the upload has no complete 'file' part; send the file as field 'file'")
            return _enqueue(up)
        except ServiceError:
            up.discard()
            raise
        except Exception as exc:
            up.discard()
            from python_multipart.exceptions import MultipartParseError

            if isinstance(exc, MultipartParseError):
                raise ServiceError(400, f"malformed multipart body: {exc}") from None
            raise
        finally:
            up.discard()

    def _enqueue(up: _Upload) -> dict:
        f = dict(up.fields)
        if up.size == 0:
            raise ServiceError(400, "the uploaded file is empty")
        kind = "bundle" if up.ext in BUNDLE_EXTENSIONS else "mesh"
        if kind == "bundle" and up._head[:4] != b"PK\x03\x04":
            raise ServiceError(415, "the .zip upload is not a zip archive; upload the bundle made by "
                                    "`bioslicer slice --zip`")
        owner = _owner_label(f.pop("owner", ""))
        printer = f.pop("printer", "").strip() or ("" if kind == "bundle" else "nanoscribe-gt2-25x")
        units = f.pop("units", "um").strip() or "um"
        if units not in UNITS:
            raise ServiceError(400, f"units {units!r} is not one of {', '.join(UNITS)}")
        repair = _parse_bool("repair", f.pop("repair", ""))
        params: dict = {}
        raw = f.pop("params", "").strip()
        if raw:
            try:
                params = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ServiceError(400, f"form field 'params' is not valid JSON ({exc.msg}); send an object such "
                                        "as {\"hatch_um\": 0.3}") from None
            if not isinstance(params, dict):
                raise ServiceError(400, "form field 'params' must be a JSON object of recipe fields")
        for k, v in _typed_form_params(f).items():
            if isinstance(v, dict) and isinstance(params.get(k), dict):
                params[k] = {**params[k], **v}
            else:
                params[k] = v
        if kind == "mesh":
            check_params(printer, params)
        elif params:
            raise ServiceError(400, "a job bundle is stored as sliced; send slicing parameters only with a mesh")
        elif printer and printer not in _bundled_printers():
            raise ServiceError(400, f"unknown printer {printer!r}; use one of {', '.join(sorted(_bundled_printers()))}")
        jid = new_job_id()
        while store().get(jid) is not None:  # pragma: no cover - 48 random bits
            jid = new_job_id()
        dest_dir = layout.upload_dir(jid)
        dest_dir.mkdir(parents=True)
        input_name = f"input{up.ext}"
        os.replace(up.tmp, dest_dir / input_name)
        up.tmp = None
        _fsync_dir(dest_dir)
        job = store().add(jid, owner=owner, label=safe_label(up.filename), kind=kind, input_name=input_name,
                          input_bytes=up.size, printer=printer, units=units, repair=repair, params=params)
        pool = state.get("pool")
        if pool is not None:
            pool.wake()
        return job_out(job)

    @app.get("/api/jobs", response_model=list[JobOut], summary="Jobs, newest first")
    async def list_jobs(status: str | None = None, owner: str | None = None, limit: int = 200):
        if status is not None and status not in STATUSES:
            raise ServiceError(400, f"status {status!r} is not one of {', '.join(STATUSES)}")
        if not 1 <= limit <= 10_000:
            raise ServiceError(400, "limit must be between 1 and 10000")
        return [job_out(j) for j in store().list(status=status, owner=owner, limit=limit)]

    def _job(job_id: str) -> dict:
        job = store().get(job_id) if is_job_id(job_id) else None
        if job is None:
            raise ServiceError(404, f"no job {job_id!r}; list the jobs with GET /api/jobs")
        return job

    @app.get("/api/jobs/{job_id}", response_model=JobOut, summary="One job")
    async def get_job(job_id: str):
        return job_out(_job(job_id))

    @app.post("/api/jobs/{job_id}/cancel", response_model=JobOut,
              summary="Cancel a queued or slicing job (a slicing job stops at its next progress step)")
    async def cancel_job(job_id: str):
        job = _job(job_id)
        if job["status"] in ("done", "failed", "cancelled"):
            raise ServiceError(409, f"job {job_id} is already {job['status']}; only queued or slicing jobs can be "
                                    "cancelled")
        store().cancel(job_id)
        return job_out(_job(job_id))

    @app.delete("/api/jobs/{job_id}", status_code=204, summary="Delete a job and its files (not while slicing)")
    async def delete_job(job_id: str):
        _job(job_id)
        blocked = store().delete(job_id)
        if blocked == "slicing":
            raise ServiceError(409, f"job {job_id} is slicing; cancel it first (POST /api/jobs/{job_id}/cancel)")
        for p in (layout.upload_dir(job_id), layout.job_dir(job_id)):
            shutil.rmtree(p, ignore_errors=True)
        layout.remove_work(job_id)
        layout.job_zip(job_id).unlink(missing_ok=True)
        return Response(status_code=204)

    def _artifact(job_id: str, name: str) -> Path:
        job = _job(job_id)
        if job["status"] != "done":
            raise ServiceError(409, f"job {job_id} is {job['status']}; its files are there once it is done")
        path = layout.job_zip(job_id) if name == "bundle.zip" else layout.job_dir(job_id) / name
        if not path.is_file():
            raise ServiceError(404, f"job {job_id} has no {name}" + (" (sliced without a preview)"
                                                                      if name == "preview.png" else ""))
        return path

    def _download_name(job_id: str, suffix: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(_job(job_id)["label"])[0])[:60] or "job"
        return f"{stem}-{job_id}{suffix}"

    @app.get("/api/jobs/{job_id}/bundle.zip", summary="The job bundle (zip of the checked job folder)",
             response_class=FileResponse)
    async def bundle(job_id: str):
        path = _artifact(job_id, "bundle.zip")
        return FileResponse(path, media_type="application/zip", filename=_download_name(job_id, "_job.zip"))

    @app.get("/api/jobs/{job_id}/preview.png", summary="Preview image", response_class=FileResponse)
    async def preview(job_id: str):
        return FileResponse(_artifact(job_id, "preview.png"), media_type="image/png")

    @app.get("/api/jobs/{job_id}/report.txt", summary="Human-readable job report", response_class=FileResponse)
    async def report(job_id: str):
        return FileResponse(_artifact(job_id, "report.txt"), media_type="text/plain; charset=utf-8")

    @app.get("/api/jobs/{job_id}/manifest.json", summary="Job manifest (hashes, parameters, counts, estimate)",
             response_class=FileResponse)
    async def manifest(job_id: str):
        return FileResponse(_artifact(job_id, "manifest.json"), media_type="application/json")

    return app


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
    lock_data_dir(layout).close()  # fail early with a clear line; the app takes the lock for real
    app = create_app(layout.root, token=token, workers=workers, max_upload_mb=max_upload_mb, slice_fn=slice_fn,
                     client_spec=client_spec, cancel_grace_s=cancel_grace_s)
    shown = f"[{host}]" if ":" in host else host
    print(f"bioslicer service on http://{shown}:{port}/  (data: {layout.root}, workers: {workers}"
          f"{', token required' if token else ''})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
