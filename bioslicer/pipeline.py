"""The whole job: mesh file -> toolpath -> blocks -> program -> checked job folder.

Each stage is one public function of its own module (``load_mesh``, ``plan_toolpath``, ``stitch``,
``order_marks``, ``estimate_print_time``, ``write_program``, ``validate_program``, ``JobWriter``);
this module only chains them, so the CLI, the job service and the cluster executor all run the
same code.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .errors import BioslicerError
from .printers import Printer, load_printer
from .progress import Progress, silent
from .toolpath import Toolpath


@dataclass
class JobResult:
    """What :func:`slice_to_job` made."""

    path: Path
    zip_path: Path | None
    manifest: dict
    timings_s: dict


@dataclass
class PlannedJob:
    """A toolpath stitched, ordered and estimated, ready to be written."""

    solid: object
    printer: Printer
    recipe: object
    toolpath: Toolpath
    plan_report: dict
    order_report: dict
    estimate: object
    timings_s: dict


def resolve_recipe(printer: Printer, recipe=None, overrides: dict | None = None):
    """The effective recipe: printer defaults, then a recipe file or object, then overrides."""
    from .recipe import Recipe, load_recipe

    if recipe is None:
        rec = Recipe.from_printer(printer)
    elif isinstance(recipe, Recipe):
        rec = recipe
    elif isinstance(recipe, dict):
        rec = Recipe.from_printer(printer).updated(**recipe)
    else:
        rec = load_recipe(recipe, printer=printer)
    if overrides:
        rec = rec.updated(**overrides)
    return rec


def plan_job(mesh, printer="nanoscribe-gt2-25x", recipe=None, overrides=None, units: str = "um",
             repair: bool = False, progress: Progress = silent) -> PlannedJob:
    """Load (or take) a mesh and run every stage up to the ordered, estimated toolpath.

    Parameters
    ----------
    mesh : path or bioslicer.mesh.Solid
        The part; a path is loaded with ``units`` and checked (and repaired when ``repair``).
    printer : str, path or Printer
        Printer profile.
    recipe, overrides
        See :func:`resolve_recipe`.
    """
    from .estimate import estimate_print_time
    from .mesh import Solid, load_mesh
    from .ordering import order_marks
    from .planning import plan_toolpath
    from .stitching import stitch

    timings = {}
    t0 = time.perf_counter()
    printer = load_printer(printer)
    rec = resolve_recipe(printer, recipe, overrides)
    solid = mesh if isinstance(mesh, Solid) else load_mesh(mesh, units=units, repair=repair, printer=printer)
    timings["load_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    tp, plan_report = plan_toolpath(solid, rec, printer, progress=progress)
    timings["plan_s"] = time.perf_counter() - t
    if tp.n_marks == 0:
        raise BioslicerError(
            f"nothing to print: the recipe gives no marks inside {solid.name or 'the mesh'}; "
            "check the units (--units) and that slice_um/hatch_um are smaller than the part")

    t = time.perf_counter()
    tp = stitch(tp, printer, block_size_um=rec.block_size_um, overlap_um=rec.overlap_um,
                shear_deg=rec.shear_deg, progress=progress)
    timings["stitch_s"] = time.perf_counter() - t

    t = time.perf_counter()
    tp, order_report = order_marks(tp, progress=progress)
    timings["order_s"] = time.perf_counter() - t

    est = estimate_print_time(tp, printer)
    return PlannedJob(solid, printer, rec, tp, plan_report, order_report, est, timings)


def _counts(tp: Toolpath, plan_report: dict) -> dict:
    return {
        "layers": tp.n_layers,
        "blocks": 0 if tp.blocks is None else len(tp.blocks),
        "marks": tp.n_marks,
        "segments": tp.n_segments,
        "points": tp.n_points,
        "mark_length_um": float(tp.mark_lengths().sum()),
        "jump_length_um": float(tp.jump_lengths().sum()),
        "dropped_segments": int(plan_report.get("dropped_segments", 0)),
    }


def slice_to_job(mesh_path, out_dir, printer="nanoscribe-gt2-25x", recipe=None, overrides=None,
                 units: str = "um", repair: bool = False, zip: bool = False, overwrite: bool = False,
                 preview: bool = True, progress: Progress = silent, client=None, dialect: str | None = None
                 ) -> JobResult:
    """Slice a mesh file into a finished, validated job folder.

    Parameters
    ----------
    mesh_path : path
        STL/OBJ/PLY/OFF/3MF/GLB mesh.
    out_dir : path
        The job folder to create (written under a temporary name, renamed when complete).
    printer : str, path or Printer
        Printer profile name (``bioslicer printers``) or TOML path.
    recipe : None, path, dict or Recipe
        Slicing parameters; None takes the printer's defaults.
    overrides : dict
        Recipe fields to override (as ``--set key=value`` on the CLI).
    units : str
        Length unit of the mesh file ('um', 'mm', 'nm').
    zip : bool
        Also write ``<out_dir>.zip``.
    client : distributed.Client or None
        Reserved for block-parallel runs on a Dask cluster.

    Returns
    -------
    JobResult
    """
    from .jobs import JobWriter
    from .programs import write_program

    if client is not None:
        raise BioslicerError("cluster runs are not available in this version; run without --scheduler/--workers")
    mesh_path = Path(mesh_path)
    if not mesh_path.is_file():
        raise BioslicerError(f"mesh file {mesh_path} not found; give the path of an STL/OBJ/PLY/3MF file")
    out_dir = Path(out_dir)
    t_all = time.perf_counter()
    job = plan_job(mesh_path, printer, recipe, overrides, units=units, repair=repair, progress=progress)
    tp, pr, solid = job.toolpath, job.printer, job.solid
    timings = dict(job.timings_s)
    name = _safe_stem(mesh_path.stem)

    with JobWriter(out_dir, overwrite=overwrite) as jw:
        t = time.perf_counter()
        provenance = {
            "software": f"bioslicer {__version__}",
            "mesh": mesh_path.name,
            "mesh_sha256": solid.sha256,
            "printer": pr.name,
            "recipe": json.dumps(job.recipe.to_dict(), sort_keys=True),
        }
        files = write_program(tp, pr, jw.path, name=name, dialect=dialect, provenance=provenance,
                              progress=progress)
        timings["write_s"] = time.perf_counter() - t
        validation = getattr(files, "report", None)
        if validation is None:
            from .validate import validate_program

            validation = validate_program(files.main, pr)
        tp.save(jw.path / "toolpath.npz")
        (jw.path / "recipe.toml").write_text(job.recipe.to_toml(), encoding="utf-8")
        _write_mesh_copy(solid, jw.path / "mesh.stl")
        if preview:
            t = time.perf_counter()
            from .preview import render_png

            render_png(jw.path / "preview.png", toolpath=tp, mesh=solid,
                       title=f"{mesh_path.name} on {pr.name}")
            timings["preview_s"] = time.perf_counter() - t
        rel = lambda p: Path(p).resolve().relative_to(jw.path.resolve()).as_posix()  # noqa: E731
        manifest = {
            "format": "bioslicer-job/1",
            "software": {"name": "bioslicer", "version": __version__},
            "mesh": {
                "file": mesh_path.name,
                "sha256": solid.sha256,
                "units": units,
                "bounds_um": np.asarray(solid.bounds_um).tolist(),
                "report": solid.report,
            },
            "printer": pr.to_dict(),
            "recipe": job.recipe.to_dict(),
            "program": {
                "dialect": files.dialect,
                "main": rel(files.main),
                "files": sorted(rel(f) for f in files.files),
            },
            "counts": _counts(tp, job.plan_report),
            "bounds_um": tp.bounds().tolist(),
            "estimate": job.estimate.to_dict(),
            "validation": validation.to_dict(),
            "plan": _jsonable(job.plan_report),
            "ordering": _jsonable(job.order_report),
            "preview": "preview.png" if preview else None,
            "toolpath": "toolpath.npz",
        }
        path = jw.commit(manifest, zip=zip)
    timings["total_s"] = time.perf_counter() - t_all
    zip_path = path.with_name(path.name + ".zip") if zip else None
    return JobResult(path, zip_path, manifest, timings)


def _safe_stem(stem: str) -> str:
    keep = "".join(c if (c.isalnum() or c in "-_") else "_" for c in stem)
    return keep[:64] or "part"


def _write_mesh_copy(solid, path: Path) -> None:
    """The part as sliced (µm, after repair), for previews and re-slicing."""
    from .toolpath import atomic_write_bytes

    atomic_write_bytes(path, solid.to_trimesh().export(file_type="stl"))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj

