"""Service status and the bundled printer profiles."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ... import __version__
from ..models import DefaultsOut, HealthOut, PrinterOut, printer_out
from ..upload import UNITS, ServiceError, _bundled_printers
from . import service

#: recipe fields the web form shows first (the CLI's named `slice` options)
MAIN_PARAMS = ("strategy", "slice_um", "hatch_um", "hatch_angle_deg", "contour_count")

router = APIRouter()


@router.get("/api/health", response_model=HealthOut, summary="Service status")
async def health(request: Request):
    svc = service(request)
    pool = svc.pool
    alive = 0 if pool is None else sum(1 for p in pool._procs if p.is_alive())
    return {"ok": True, "version": __version__, "workers": 0 if pool is None else pool.n,
            "workers_alive": alive, "jobs": svc.store.counts(), "max_upload_bytes": svc.config.max_upload_bytes,
            "auth": bool(svc.config.token)}


@router.get("/api/printers", response_model=list[PrinterOut], summary="Bundled printer profiles")
async def printers():
    return [printer_out(p) for _, p in sorted(_bundled_printers().items())]


@router.get("/api/printers/{name}/defaults", response_model=DefaultsOut,
            summary="Every slicing parameter with the printer's defaults (the form's starting values)")
async def printer_defaults(name: str):
    printers = _bundled_printers()
    if name not in printers:
        raise ServiceError(404, f"unknown printer {name!r}; use one of {', '.join(sorted(printers))}")
    from ...recipe import DEPTH_MODES, FIND_INTERFACE, PLACEMENTS, STRATEGIES, Recipe

    params = Recipe.from_printer(printers[name]).to_dict()
    return {"printer": name, "params": params, "main": [k for k in MAIN_PARAMS if k in params],
            "choices": {"strategy": list(STRATEGIES), "depth_mode": list(DEPTH_MODES), "units": list(UNITS),
                            "placement": list(PLACEMENTS), "find_interface": list(FIND_INTERFACE)}}
