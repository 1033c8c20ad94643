"""The estimate an operator sees before submitting (``POST /api/estimate``).

A mesh is estimated by :func:`bioslicer.pipeline.estimate_mesh` (time, marks, program size; no
program written) in one spawned helper process (:class:`Estimator`): requests never plan in the
web process, a crash or a runaway estimate costs the helper, not the service, and the process
stays warm between estimates (Numba kernels loaded once). An uploaded job bundle is not
re-planned: its manifest's estimate and counts are read from the zip (:func:`bundle_estimate`).
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import zipfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..errors import BioslicerError
from .upload import ServiceError
from .worker import manifest_value

DEFAULT_ESTIMATE_FN = "bioslicer.pipeline:estimate_mesh"
#: a bundle's manifest.json larger than this is refused (a real one is a few hundred kB)
MAX_MANIFEST_BYTES = 32 * 1024 * 1024


def estimate_file(fn_spec, path: str, printer: str, params: dict, units: str, repair: bool) -> dict:
    """Run in the helper process: the estimate of the mesh ``path`` as the job would be sliced.

    Returns the figures the page shows (see :func:`mesh_estimate_out`), or ``{"error": line,
    "status": 400}`` for a user error (the line the CLI would print), 500 for anything else.
    """
    from .worker import resolve_slice_fn

    fn = resolve_slice_fn(fn_spec or DEFAULT_ESTIMATE_FN)
    try:
        r = fn(path, printer, None, dict(params) or None, units=units, repair=repair)
    except BioslicerError as exc:
        return {"error": str(exc).splitlines()[0] if str(exc) else "the estimate failed", "status": 400}
    except Exception as exc:  # noqa: BLE001 - a bug, not the operator's input: one line, status 500
        first = (str(exc).splitlines() or [""])[0][:200]
        return {"error": f"the estimate failed ({type(exc).__name__}: {first})", "status": 500}
    return mesh_estimate_out(r)


def mesh_estimate_out(r: dict) -> dict:
    """The API's view of an :func:`~bioslicer.pipeline.estimate_mesh` result."""
    est = r["estimate"]
    counts = (est.get("breakdown") or {}).get("counts") or {}
    return {"kind": "mesh", "source": "estimate", "printer": r["printer"], "print_time_s": float(est["total_s"]),
            "marks": int(r["marks"]), "points": int(r["points"]), "program_bytes": int(r["program_bytes"]),
            "blocks": int(r["blocks"]), "layers": int(r["layers"]), "layers_planned": int(r["layers_planned"]),
            "mark_length_um": counts.get("mark_length_um"), "elapsed_s": float(r.get("elapsed_s", 0.0))}


def bundle_estimate(zip_path: Path) -> dict:
    """The estimate a job bundle carries: print time, counts and program size from its
    ``manifest.json`` and the zip's directory (nothing is inflated but the manifest).

    The zip must have passed :func:`~bioslicer.service.upload.check_bundle`. Raises
    :class:`ServiceError` 400 when it holds no readable manifest.
    """
    bad = ServiceError(400, "the bundle has no readable manifest.json; upload the bundle made by "
                            "`bioslicer slice --zip`")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = {i.filename.replace("\\", "/"): i for i in zf.infolist() if not i.is_dir()}
            cands = sorted((n for n in infos if n.split("/")[-1] == "manifest.json" and n.count("/") <= 1),
                           key=lambda n: n.count("/"))
            if not cands:
                raise bad
            name = cands[0]
            if infos[name].file_size > MAX_MANIFEST_BYTES:
                raise ServiceError(400, f"the bundle's manifest.json is larger than {MAX_MANIFEST_BYTES >> 20} MB; "
                                        "upload the bundle made by `bioslicer slice --zip`")
            with zf.open(infos[name]) as fh:
                manifest = json.loads(fh.read(MAX_MANIFEST_BYTES + 1).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError, EOFError):
        raise bad from None
    if not isinstance(manifest, dict):
        raise bad
    root = name[: -len("manifest.json")]

    def get(*keys):
        return manifest_value(manifest, *keys)

    total = get("estimate", "total_s")
    if not isinstance(total, (int, float)):
        raise ServiceError(400, "the bundle's manifest has no print-time estimate ('estimate.total_s'); "
                                "slice the part again with `bioslicer slice --zip`")
    files = get("program", "files")
    nbytes = None
    if isinstance(files, list) and all(isinstance(f, str) for f in files):
        nbytes = sum(infos[root + f].file_size for f in files if root + f in infos)
    return {"kind": "bundle", "source": "manifest", "printer": get("printer", "name"), "print_time_s": float(total),
            "marks": get("counts", "marks"), "points": get("counts", "points"), "program_bytes": nbytes,
            "blocks": get("counts", "blocks"), "layers": get("counts", "layers"), "layers_planned": None,
            "mark_length_um": get("counts", "mark_length_um"), "elapsed_s": 0.0}


class Estimator:
    """One spawned helper process running estimates one after another (started on first use).

    Parameters
    ----------
    fn_spec : callable, "module:function" or None
        ``estimate_mesh``-like function (default :data:`DEFAULT_ESTIMATE_FN`); must be importable
        in a spawned process.
    """

    def __init__(self, fn_spec=None) -> None:
        self.fn_spec = fn_spec
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    async def estimate(self, path: Path, printer: str, params: dict, units: str, repair: bool) -> dict:
        """The estimate of the mesh at ``path`` (see :func:`estimate_file`); ServiceError 400 for a
        user error, 503 when the helper process died (it is started again for the next one)."""
        import asyncio

        pool = self._executor()
        try:
            fut = pool.submit(estimate_file, self.fn_spec, str(path), printer, params, units, repair)
            out = await asyncio.wrap_future(fut)
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise ServiceError(503, "the estimate process stopped (out of memory?); try again, or submit the "
                                    "job without an estimate") from None
        if "error" in out:
            raise ServiceError(out["status"], out["error"])
        return out

    def close(self) -> None:
        """Stop the helper process; a running estimate is abandoned (its process terminated), so
        the service stops at once."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())   # the executor has no public handle
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
