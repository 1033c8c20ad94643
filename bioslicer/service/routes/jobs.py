"""The job routes: estimate, upload, list, follow, cancel, delete, download."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.requests import ClientDisconnect

from ..estimator import bundle_estimate
from ..models import _UPLOAD_SCHEMA, EstimateOut, JobOut, job_out
from ..store import STATUSES, is_job_id, new_job_id
from ..worker import disk_name
from ..upload import (_MAX_FIELDS, BUNDLE_EXTENSIONS, UNITS, ServiceError, _bundled_printers,
                      _fsync_dir, _mb, _owner_label, _parse_bool, _typed_form_params, _Upload, check_params,
                      check_bundle, parse_params_json, safe_label)
from . import ServiceState, service

router = APIRouter()


@router.post("/api/jobs", status_code=201, response_model=JobOut, openapi_extra=_UPLOAD_SCHEMA,
             summary="Upload a mesh (sliced by a worker) or a job bundle (verified), as multipart/form-data",
             responses={400: {"description": "bad parameter"}, 413: {"description": "upload too large"},
                        415: {"description": "file type not accepted"}})
async def submit(request: Request):
    return await _with_upload(request, _enqueue)


@router.post("/api/estimate", response_model=EstimateOut, openapi_extra=_UPLOAD_SCHEMA,
             summary="What a job would be, before submitting it: the same form as POST /api/jobs; a mesh is "
                     "estimated (print time, marks, program size, blocks; no program written), a job bundle "
                     "shows its manifest's estimate. Nothing is kept.",
             responses={400: {"description": "bad parameter or mesh"}, 413: {"description": "upload too large"},
                        415: {"description": "file type not accepted"},
                        503: {"description": "the estimate process stopped"}})
async def estimate(request: Request):
    return await _with_upload(request, _estimate)


async def _with_upload(request: Request, then):
    """Stream the multipart upload of ``request`` to a temporary file (size limit, stall timeout),
    then ``await then(svc, upload)``; the temporary file is removed whatever happens (``then`` may
    move it away first)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    svc = service(request)
    cfg = svc.config
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not opts.get(b"boundary"):
        raise ServiceError(415, "send the upload as multipart/form-data with a 'file' field "
                                "(curl -F file=@part.stl ...)")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > cfg.max_upload_bytes + _MAX_FIELDS * 1024 + (1 << 20):
        raise ServiceError(413, f"upload is larger than the limit of {_mb(cfg.max_upload_bytes)}; "
                                "ask the operator to raise --max-upload-mb or upload a smaller file")
    up = _Upload(svc.layout, cfg.max_upload_bytes)
    try:
        parser = MultipartParser(opts[b"boundary"], up.callbacks())
        stream = request.stream().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), cfg.read_timeout_s)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise ServiceError(408, f"the upload stalled: no data for {cfg.read_timeout_s:g} s (is the "
                                        "Content-Length larger than the body?); send it again") from None
            if chunk:
                parser.write(chunk)
        parser.finalize()
        if up.tmp is None or up._fh is not None:
            raise ServiceError(400, "the upload has no complete 'file' part; send the file as field 'file'")
        return await then(svc, up)
    except ServiceError:
        up.discard()
        raise
    except ClientDisconnect:
        up.discard()
        print(f"bioslicer serve: an upload from {request.client.host if request.client else '?'} was cut off by "
              f"the client after {up.size} bytes; nothing kept", file=sys.stderr, flush=True)
        return Response(status_code=400)
    except Exception as exc:
        up.discard()
        from python_multipart.exceptions import MultipartParseError

        if isinstance(exc, MultipartParseError):
            raise ServiceError(400, f"malformed multipart body: {exc}") from None
        raise
    finally:
        up.discard()


def _form(svc: ServiceState, up: _Upload) -> dict:
    """The checked form of an upload: kind ('mesh' or 'bundle'), owner, printer, units, repair and
    the typed recipe params (checked like the CLI for a mesh); ServiceError 4xx otherwise."""
    f = dict(up.fields)
    if up.size == 0:
        raise ServiceError(400, "the uploaded file is empty")
    kind = "bundle" if up.ext in BUNDLE_EXTENSIONS else "mesh"
    if kind == "bundle" and up._head[:4] != b"PK\x03\x04":
        raise ServiceError(415, "the .zip upload is not a zip archive; upload the bundle made by "
                                "`bioslicer slice --zip`")
    if kind == "bundle":
        check_bundle(up.tmp, svc.config.max_inflate_bytes)
    owner = _owner_label(f.pop("owner", ""))
    printer = f.pop("printer", "").strip() or ("" if kind == "bundle" else "nanoscribe-gt2-25x")
    units = f.pop("units", "um").strip() or "um"
    if units not in UNITS:
        raise ServiceError(400, f"units {units!r} is not one of {', '.join(UNITS)}")
    repair = _parse_bool("repair", f.pop("repair", ""))
    params: dict = {}
    raw = f.pop("params", "").strip()
    if raw:
        params = parse_params_json(raw)
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
    return {"kind": kind, "owner": owner, "printer": printer, "units": units, "repair": repair, "params": params}


async def _estimate(svc: ServiceState, up: _Upload) -> dict:
    form = _form(svc, up)
    if form["kind"] == "bundle":
        return bundle_estimate(up.tmp)
    # the estimate sees the part under its (sanitised) name: error lines name the operator's file
    path = up.dir / disk_name(safe_label(up.filename), up.ext)
    os.replace(up.tmp, path)
    up.tmp = path
    return await svc.estimator.estimate(path, form["printer"], form["params"], form["units"], form["repair"])


async def _enqueue(svc: ServiceState, up: _Upload) -> dict:
    form = _form(svc, up)
    kind, owner, printer, units, repair, params = (form[k] for k in ("kind", "owner", "printer", "units", "repair",
                                                                      "params"))
    store, layout = svc.store, svc.layout
    jid = new_job_id()
    while store.get(jid) is not None:  # pragma: no cover - 48 random bits
        jid = new_job_id()
    dest_dir = layout.upload_dir(jid)
    dest_dir.mkdir(parents=True)
    input_name = f"input{up.ext}"
    os.replace(up.tmp, dest_dir / input_name)
    up.tmp = None
    _fsync_dir(dest_dir)
    job = store.add(jid, owner=owner, label=safe_label(up.filename), kind=kind, input_name=input_name,
                    input_bytes=up.size, printer=printer, units=units, repair=repair, params=params)
    if svc.pool is not None:
        svc.pool.wake()
    return job_out(job)


@router.get("/api/jobs", response_model=list[JobOut], summary="Jobs, newest first")
async def list_jobs(request: Request, status: str | None = None, owner: str | None = None, limit: int = 200):
    if status is not None and status not in STATUSES:
        raise ServiceError(400, f"status {status!r} is not one of {', '.join(STATUSES)}")
    if not 1 <= limit <= 10_000:
        raise ServiceError(400, "limit must be between 1 and 10000")
    return [job_out(j) for j in service(request).store.list(status=status, owner=owner, limit=limit)]


def _job(svc: ServiceState, job_id: str) -> dict:
    job = svc.store.get(job_id) if is_job_id(job_id) else None
    if job is None:
        raise ServiceError(404, f"no job {job_id!r}; list the jobs with GET /api/jobs")
    return job


@router.get("/api/jobs/{job_id}", response_model=JobOut, summary="One job")
async def get_job(request: Request, job_id: str):
    return job_out(_job(service(request), job_id))


@router.post("/api/jobs/{job_id}/cancel", response_model=JobOut,
             summary="Cancel a queued or slicing job (a slicing job stops at its next progress step)")
async def cancel_job(request: Request, job_id: str):
    svc = service(request)
    job = _job(svc, job_id)
    if job["status"] in ("done", "failed", "cancelled"):
        raise ServiceError(409, f"job {job_id} is already {job['status']}; only queued or slicing jobs can be "
                                "cancelled")
    svc.store.cancel(job_id)
    return job_out(_job(svc, job_id))


@router.delete("/api/jobs/{job_id}", status_code=204, summary="Delete a job and its files (not while slicing)")
async def delete_job(request: Request, job_id: str):
    svc = service(request)
    _job(svc, job_id)
    blocked = svc.store.delete(job_id)
    if blocked == "slicing":
        raise ServiceError(409, f"job {job_id} is slicing; cancel it first (POST /api/jobs/{job_id}/cancel)")
    layout = svc.layout
    for p in (layout.upload_dir(job_id), layout.job_dir(job_id)):
        shutil.rmtree(p, ignore_errors=True)
    layout.remove_work(job_id)
    layout.job_zip(job_id).unlink(missing_ok=True)
    return Response(status_code=204)


def _artifact(svc: ServiceState, job_id: str, name: str) -> Path:
    job = _job(svc, job_id)
    if job["status"] != "done":
        raise ServiceError(409, f"job {job_id} is {job['status']}; its files are there once it is done")
    path = svc.layout.job_zip(job_id) if name == "bundle.zip" else svc.layout.job_dir(job_id) / name
    if not path.is_file():
        raise ServiceError(404, f"job {job_id} has no {name}" + (" (sliced without a preview)"
                                                                  if name == "preview.png" else ""))
    return path


def _download_name(job: dict, suffix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(job["label"])[0])[:60] or "job"
    return f"{stem}-{job['id']}{suffix}"


@router.get("/api/jobs/{job_id}/bundle.zip", summary="The job bundle (zip of the checked job folder)",
            response_class=FileResponse)
async def bundle(request: Request, job_id: str):
    svc = service(request)
    path = _artifact(svc, job_id, "bundle.zip")
    return FileResponse(path, media_type="application/zip", filename=_download_name(_job(svc, job_id), "_job.zip"))


@router.get("/api/jobs/{job_id}/preview.png", summary="Preview image", response_class=FileResponse)
async def preview(request: Request, job_id: str):
    return FileResponse(_artifact(service(request), job_id, "preview.png"), media_type="image/png")


@router.get("/api/jobs/{job_id}/report.txt", summary="Human-readable job report", response_class=FileResponse)
async def report(request: Request, job_id: str):
    return FileResponse(_artifact(service(request), job_id, "report.txt"), media_type="text/plain; charset=utf-8")


@router.get("/api/jobs/{job_id}/manifest.json", summary="Job manifest (hashes, parameters, counts, estimate)",
            response_class=FileResponse)
async def manifest(request: Request, job_id: str):
    return FileResponse(_artifact(service(request), job_id, "manifest.json"), media_type="application/json")
