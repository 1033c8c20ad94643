"""The API's response models (OpenAPI schema) and the job row as the API shows it."""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any

from pydantic import BaseModel, Field, create_model

from ..printers import Printer
from .store import iso
from .upload import UNITS

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


#: the Printer fields GET /api/printers shows (types taken from :class:`bioslicer.printers.Printer`)
PRINTER_FIELDS = ("name", "description", "dialect", "objective", "field_shape", "field_size_um", "z_range_um",
                  "max_power_mw")
_PRINTER_TYPES = typing.get_type_hints(Printer)
PrinterOut = create_model("PrinterOut", **{f.name: (_PRINTER_TYPES[f.name], ...) for f in fields(Printer)
                                           if f.name in PRINTER_FIELDS})


def printer_out(printer: Printer) -> dict:
    """A bundled profile as GET /api/printers shows it."""
    return {k: getattr(printer, k) for k in PrinterOut.model_fields}


class DefaultsOut(BaseModel):
    printer: str
    params: dict[str, Any] = Field(description="every recipe field with this printer's default value")
    main: list[str] = Field(description="fields the form shows first (the CLI's named options)")
    choices: dict[str, list[str]]


class EstimateOut(BaseModel):
    kind: str = Field(description="'mesh' (estimated now) or 'bundle' (the job's own manifest)")
    source: str = Field(description="'estimate' (planned from sampled layers, no program written) or 'manifest'")
    printer: str | None
    print_time_s: float = Field(description="estimated print time, s")
    marks: int | None
    points: int | None
    program_bytes: int | None = Field(description="size of the program files, bytes (a mesh: estimated)")
    blocks: int | None = Field(description="stitching blocks with marks")
    layers: int | None
    layers_planned: int | None = Field(description="layers actually planned for a mesh's estimate")
    mark_length_um: float | None
    elapsed_s: float = Field(description="time the estimate took, s")


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

