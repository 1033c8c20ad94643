"""The whole job: mesh file -> toolpath -> blocks -> program -> checked job folder.

Each stage is one public function of its own module (``load_mesh``, ``plan_grid``, then per block
``run_block``: ``plan_toolpath``, ``stitch``, ``order_marks``, ``estimate_block``,
``ProgramWriter.write_block``; then ``combine_estimates``, ``ProgramWriter.finish`` (which
validates), ``JobWriter``); this module only chains them, so the CLI, the job service and the
cluster executor all run the same code.
"""

from __future__ import annotations

import hashlib
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
    """A part planned, stitched, ordered and estimated block by block, as a job would write it."""

    solid: object
    printer: Printer
    recipe: object
    grid: object               # StitchGrid
    toolpath: Toolpath         # every block's marks in execution order, the grid's Blocks table
    blocks: dict               # block index -> blockrun.BlockResult (blocks that may have marks)
    estimate: object
    timings_s: dict
    placement: dict | None = None   # bioslicer.placement record (the solid and toolpath are placed)


def job_provenance(mesh_name: str, solid, printer, recipe, placement: dict) -> dict:
    """What a job's program header records (no clock time; the recipe as its SHA-256)."""
    out = {
        "software": f"bioslicer {__version__}",
        "mesh": mesh_name,
        "mesh_sha256": solid.sha256,
        "printer": printer.name,
        "recipe_sha256": hashlib.sha256(recipe.to_toml().encode()).hexdigest() + " (recipe.toml)",
        "placement": f"{placement['mode']}, offset_um " + " ".join(f"{v:.4f}" for v in placement["offset_um"]),
    }
    if recipe.focal_shift_factor != 1.0:
        out["focal_shift"] = focal_shift_note(recipe.focal_shift_factor)
    return out


def focal_shift_note(factor: float) -> str:
    """One line saying the program's z is commanded z (``factor`` x physical above the interface)."""
    return f"z written = {factor:g} x physical z above the interface (focal_shift_factor, applied here)"


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
    """Load (or take) a mesh and run every block of its job up to the ordered, estimated toolpath.

    The same placement, grid and :func:`~bioslicer.blockrun.run_block` as :func:`slice_to_job`
    (without writing a program), the blocks' marks then joined: the toolpath is exactly the one
    a job writes (in placed coordinates: z = 0 is the substrate interface).

    Parameters
    ----------
    mesh : path or bioslicer.mesh.Solid
        The part; a path is loaded with ``units`` and checked (and repaired when ``repair``).
    printer : str, path or Printer
        Printer profile.
    recipe, overrides
        See :func:`resolve_recipe`.
    progress : callable
        ``progress(done, total, label)``; blocks done / total.
    """
    from .blockrun import BlockPlan, combined_estimate, joined_toolpath, plan_blocks
    from .centerline import Tree, load_geometry
    from .cluster import run_blocks_local
    from .exposure import check_exposure
    from .mesh import Solid

    timings = {}
    t0 = time.perf_counter()
    printer = load_printer(printer)
    rec = resolve_recipe(printer, recipe, overrides)
    check_exposure(rec, printer)
    solid = mesh if isinstance(mesh, (Solid, Tree)) else load_geometry(mesh, units=units, repair=repair,
                                                                         printer=printer, recipe=rec)
    from .placement import place

    solid, prec, placement = place(solid, rec)
    timings["load_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    grid, _ = plan_blocks(solid, prec, printer)
    plan = BlockPlan(prec.to_dict(), printer, grid.to_dict(), keep_toolpath=True)
    results = run_blocks_local(solid, plan, cells_to_run(solid, prec, grid), progress)
    timings["blocks_s"] = time.perf_counter() - t
    tp = joined_toolpath(grid, results)
    if tp.n_marks == 0:
        raise BioslicerError(
            f"nothing to print: the recipe gives no marks inside {solid.name or 'the mesh'}; "
            "check the units (--units) and that slice_um/hatch_um are smaller than the part")
    est = combined_estimate(tp.blocks, results, printer)
    return PlannedJob(solid, printer, rec, grid, tp, results, est, timings, placement)


def slice_to_job(mesh_path, out_dir, printer="nanoscribe-gt2-25x", recipe=None, overrides=None,
                 units: str = "um", repair: bool = False, zip: bool = False, overwrite: bool = False,
                 preview: bool = True, progress: Progress = silent, client=None, dialect: str | None = None,
                 radius_array: str | None = None, allow_sealed: bool = False, allow_narrow: bool = False,
                 force: bool = False) -> JobResult:
    """Slice a mesh file into a finished, validated job folder, block by block.

    The stitching grid is planned first; then every block is planned, stitched, ordered and
    written on its own (``bioslicer.blockrun``), here or on a Dask cluster when ``client`` is
    given, and the main program, estimate, preview, manifest and report are assembled in block
    order. Memory follows the largest block, and the job is byte-identical whoever runs the
    blocks.

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
    preview : bool
        Render ``preview.png``.
    progress : callable
        ``progress(done, total, label)``; blocks done / total while slicing.
    client : distributed.Client, optional
        Run the blocks as tasks on this Dask cluster (the job folder must be on storage the
        workers see).
    dialect : str, optional
        Program dialect (default: the printer's).
    radius_array : str, optional
        Radius point array of a VTK centerline file (see :func:`bioslicer.centerline.load_tree`).
    allow_sealed, allow_narrow : bool
        Slice ``vessel-wall`` / ``channels`` jobs with enclosed voids or too narrow lumens anyway
        (see :func:`bioslicer.perfusion.check_perfusion`).
    force : bool
        Let parameters through that :mod:`bioslicer.budget` finds implausible for the printer
        (never those that would not fit this machine's memory or disk).

    Returns
    -------
    JobResult
    """
    from .blockrun import BlockPlan, combined_estimate, plan_blocks, preview_steps, stage_times
    from .centerline import load_geometry
    from .jobs import JobWriter
    from .jobs.manifest import build_manifest
    from .paramsets import merge_sets
    from .perfusion import check_perfusion
    from .programs import ProgramWriter

    mesh_path = Path(mesh_path)
    if not mesh_path.is_file():
        raise BioslicerError(f"mesh file {mesh_path} not found; give the path of a mesh (STL/OBJ/PLY/3MF) "
                             "or a centerline file (SWC/VTP/VTK/JSON/CSV)")
    out_dir = Path(out_dir)
    t_all = time.perf_counter()
    timings = {}
    pr = load_printer(printer)
    rec = resolve_recipe(pr, recipe, overrides)
    from .exposure import check_exposure

    check_exposure(rec, pr)           # once per job: the blocks skip it
    t = time.perf_counter()
    solid = load_geometry(mesh_path, units=units, repair=repair, printer=pr, radius_array=radius_array, recipe=rec)
    from .placement import place

    solid, prec, placement = place(solid, rec)   # prec: the recipe in placed coordinates
    timings["load_s"] = time.perf_counter() - t
    from .budget import check_job

    check_job(solid, prec, pr, force=force, out_dir=out_dir)     # before anything sized by the job
    t = time.perf_counter()
    perfusion = check_perfusion(solid, prec, allow_sealed=allow_sealed, allow_narrow=allow_narrow)
    timings["perfusion_s"] = time.perf_counter() - t
    grid, lz = plan_blocks(solid, prec, pr)
    blocks = grid.blocks()
    name = _safe_stem(mesh_path.stem)
    region_bounds = np.array([[*grid.xy_lo_um, lz[0]], [*grid.xy_hi_um, lz[-1]]])
    layer_step, mark_step = preview_steps(region_bounds, len(lz), rec.hatch_um)

    with JobWriter(out_dir, overwrite=overwrite, keep=[mesh_path]) as jw:
        provenance = job_provenance(mesh_path.name, solid, pr, rec, placement)
        writer = ProgramWriter(pr, blocks, jw.path, name=name, dialect=dialect, provenance=provenance,
                               find_interface=rec.find_interface, tilt_points=rec.tilt_measure_points())
        plan = BlockPlan(prec.to_dict(), pr, grid.to_dict(), writer, layer_step, mark_step)
        todo = cells_to_run(solid, prec, grid)
        from .preview.program import INDEX_NAME, index_builder, write_job_program_index

        # every block file is read back and checked (and its moves indexed) by a thread as soon as
        # it is written, while the next blocks are planned; finish() confirms that reading
        rb = index_builder() if writer.dialect not in ("waveform", "voxel") else None
        with writer.stream_check(todo, on_moves=rb.feed if rb is not None else None,
                                 on_file=rb.file_read if rb is not None else None) as stream:
            writer.sync_later = stream.supported and client is None   # hash, fsync in the reading thread
            t = time.perf_counter()
            on_result = lambda r: stream.add(r.part)  # noqa: E731
            if client is None:
                from .cluster import run_blocks_local

                results = run_blocks_local(solid, plan, todo, progress, on_result=on_result)
            else:
                from .cluster import run_blocks_dask

                results = run_blocks_dask(client, solid, plan, todo, progress, on_result=on_result)
            timings["blocks_s"] = time.perf_counter() - t
            ordered = [results[b] for b in sorted(results)]
            timings["block_stages_s"] = stage_times(ordered)
            used = [r for r in ordered if r.n_marks]
            if not used:
                raise BioslicerError(
                    f"nothing to print: the recipe gives no marks inside {solid.name or 'the mesh'}; "
                    "check the units (--units) and that slice_um/hatch_um are smaller than the part")
            t = time.perf_counter()
            files = writer.finish([r.part for r in used], progress=progress, stream=stream)
        timings["write_s"] = time.perf_counter() - t
        timings["main_s"] = writer.timings_s.get("main_s", 0.0)
        timings["validate_s"] = writer.timings_s.get("validate_s", 0.0)
        timings["check_thread_s"] = stream.busy_s       # reading back while the blocks ran (overlapped)
        timings["check_wait_s"] = stream.wait_s         # of write_s: waiting for that reading to end
        timings["check_streamed"] = stream.confirmed
        t_manifest = time.perf_counter()
        validation = files.report
        est = combined_estimate(blocks, results, pr)
        prev = Toolpath.concat([r.preview for r in used], layer_z_um=lz)
        prev.blocks = blocks
        prev.meta = {"preview": {"layer_step": layer_step, "mark_step": mark_step}}
        prev.save(jw.path / "preview_toolpath.npz")
        from .preview.compare import job_comparison

        t = time.perf_counter()
        pindex = write_job_program_index(jw.path, files.main, pr, files.dialect, lz,   # layer offsets
                                         builder=rb if stream.confirmed else None, files=files.files)
        timings["program_index_s"] = time.perf_counter() - t
        t = time.perf_counter()
        design_vs_print = job_comparison(solid, pindex, pr, rec.hatch_um, rec.slice_um, lz,
                                         focal_shift_factor=rec.focal_shift_factor)
        timings["compare_s"] = time.perf_counter() - t
        t_manifest += timings["program_index_s"] + timings["compare_s"]   # timed on their own
        (jw.path / "recipe.toml").write_text(rec.to_toml(), encoding="utf-8")
        _write_mesh_copy(solid, jw.path)
        if preview:
            t = time.perf_counter()
            from .placement import commanded_mesh
            from .preview import render_png
            from .preview.views import thinning_note

            render_png(jw.path / "preview.png", toolpath=prev,
                       mesh=commanded_mesh(solid.tube_polydata() if hasattr(solid, "tube_polydata") else solid,
                                          rec.focal_shift_factor),
                       title=f"{mesh_path.name} on {pr.name}", source=thinning_note(layer_step, mark_step))
            timings["preview_s"] = time.perf_counter() - t
            t_manifest += timings["preview_s"]
        rel = lambda p: Path(p).resolve().relative_to(jw.path.resolve()).as_posix()  # noqa: E731
        manifest = build_manifest(
            mesh_file=mesh_path.name, mesh_sha256=solid.sha256, units=units, mesh_bounds_um=solid.bounds_um,
            mesh_report=solid.report, printer=pr, recipe=rec.to_dict(), dialect=files.dialect,
            main=rel(files.main), program_files=[rel(f) for f in files.files],
            counts=_block_counts(ordered, used, len(lz), len(blocks)),
            bounds_um=[np.min([r.lo_um for r in used], axis=0), np.max([r.hi_um for r in used], axis=0)],
            estimate=estimate_record(est, used), validation=validation.to_dict(),
            preview="preview.png" if preview else None,
            placement=dict(placement, find_interface=rec.find_interface,
                           light_from=pr.light_from or None, immersion=pr.immersion or None,
                           focal_shift_factor=rec.focal_shift_factor, tilt_correction=rec.tilt_correction,
                           tilt_points=rec.tilt_measure_points() or None),
            stitching=grid.to_dict(), plan=_plan_summary(rec, used), power_clip=_power_clip(used, pr),
            parameter_sets=merge_sets(r.extra.get("sets") for r in used),
            preview_toolpath="preview_toolpath.npz", perfusion=perfusion,
            program_index=INDEX_NAME if pindex is not None else None, compare=design_vs_print)
        path = jw.commit(manifest, zip=zip, known_sha256={rel(f): h for f, h in files.sha256.items()})
        timings["manifest_s"] = time.perf_counter() - t_manifest
    timings["total_s"] = time.perf_counter() - t_all
    zip_path = path.with_name(path.name + ".zip") if zip else None
    return JobResult(path, zip_path, manifest, timings)


def estimate_record(est, used) -> dict:
    """The manifest's ``estimate``: the job's Estimate with ``per_block_s`` and ``blocks`` of the
    blocks with marks (``used``: their BlockResults, in execution order)."""
    ids = [r.block for r in used]
    d = est.to_dict()
    d["per_block_s"] = [float(est.per_block_s[b]) for b in ids]
    d["blocks"] = ids
    return d


def cells_to_run(solid, recipe, grid) -> list[int]:
    """The blocks of ``grid`` that may receive marks, in execution order.

    A block is skipped only when it certainly receives none: no triangle's bounding box reaches
    its window within its tier, and the window's centre is not inside the part either (mold mode
    fills the whole block, so every block runs). Vectorised per tier: triangle boxes become cell
    ranges by binary search on the window edges, and one slice per tier answers "inside".
    """
    n = grid.n_blocks()
    if recipe.strategy == "channels":
        return list(range(n))
    idx = grid.blocks().index
    win = np.array([np.ravel(grid.block_window_um(b)) for b in range(n)]).reshape(n, 4)   # x0, y0, x1, y1
    if hasattr(solid, "segment_boxes"):   # a centerline tree: the boxes of its segments
        lo, hi = solid.segment_boxes()
        if recipe.strategy == "vessel-wall":
            lo, hi = lo - recipe.wall_um, hi + recipe.wall_um
    else:
        tri = solid.vertices_um[solid.faces]
        lo = tri.min(axis=1)
        hi = tri.max(axis=1)
    if recipe.focal_shift_factor != 1.0:    # the grid's layers are commanded z: compare like with like
        lo, hi = lo.copy(), hi.copy()
        lo[:, 2], hi[:, 2] = recipe.commanded_z_um(lo[:, 2]), recipe.commanded_z_um(hi[:, 2])
    lz = grid.layer_z_um
    keep = np.zeros(n, dtype=bool)
    for iz in np.unique(idx[:, 2]):
        sel = np.flatnonzero(idx[:, 2] == iz)
        layers = grid.block_layers(int(sel[0]))
        if len(layers) == 0:
            continue
        z0, z1 = float(lz[layers[0]]), float(lz[layers[-1]])
        near = (hi[:, 2] >= z0) & (lo[:, 2] <= z1)
        tlo, thi = lo[near], hi[near]
        ix, iy = idx[sel, 0], idx[sel, 1]
        nx, ny = int(ix.max()) + 1, int(iy.max()) + 1
        wx0, wx1, wy0, wy1 = (np.zeros(m) for m in (nx, nx, ny, ny))
        wx0[ix], wx1[ix], wy0[iy], wy1[iy] = win[sel, 0], win[sel, 2], win[sel, 1], win[sel, 3]
        # cells whose window a triangle box reaches: [a0, a1) x [b0, b1), a 2-D difference array
        a0 = np.searchsorted(wx1, tlo[:, 0], side="left")
        a1 = np.searchsorted(wx0, thi[:, 0], side="right")
        b0 = np.searchsorted(wy1, tlo[:, 1], side="left")
        b1 = np.searchsorted(wy0, thi[:, 1], side="right")
        ok = (a1 > a0) & (b1 > b0)
        diff = np.zeros((nx + 1, ny + 1), np.int64)
        for da, db, w in ((a0, b0, 1), (a1, b0, -1), (a0, b1, -1), (a1, b1, 1)):
            np.add.at(diff, (da[ok], db[ok]), w)
        hit = (diff.cumsum(axis=0).cumsum(axis=1)[:nx, :ny] > 0)[ix, iy]
        miss = np.flatnonzero(~hit)
        if len(miss):
            cx = (win[sel[miss], 0] + win[sel[miss], 2]) / 2
            cy = (win[sel[miss], 1] + win[sel[miss], 3]) / 2
            hit[miss] = _inside(solid, cx, cy, (z0 + z1) / 2 / recipe.focal_shift_factor)
        keep[sel] = hit
    return [int(b) for b in np.flatnonzero(keep)]


def _inside(solid, x, y, z: float) -> np.ndarray:
    """Which points (x[i], y[i]) of the plane at height z are inside the solid (one slice)."""
    from .slicing import slice_spans

    out = np.zeros(len(x), dtype=bool)
    for yv in np.unique(y):
        b = np.asarray(solid.bounds_um)
        band = ((b[0, 0] - 1.0, yv - 0.5), (b[1, 0] + 1.0, yv + 0.5))
        sp = slice_spans(solid, np.array([z]), 1.0, row_offset_um=float(yv), row_window_um=band)
        row = np.abs(sp.span_row_v() - yv) < 1e-9
        u0, u1 = sp.span_u0_um[row], sp.span_u1_um[row]
        on = y == yv
        out[on] = np.any((u0[None, :] <= x[on, None]) & (u1[None, :] > x[on, None]), axis=1)
    return out


def _block_counts(ordered, used, n_layers: int, n_grid: int) -> dict:
    jumps = sum(r.jump_length_um for r in used)
    for a, b in zip(used[:-1], used[1:]):
        jumps += float(np.linalg.norm(np.subtract(b.first_point_um, a.last_point_um)))
    return {
        "layers": n_layers,
        "blocks": len(used),
        "grid_blocks": n_grid,
        "marks": sum(r.n_marks for r in used),
        "segments": sum(r.n_segments for r in used),
        "points": sum(r.n_points for r in used),
        "mark_length_um": float(sum(r.mark_length_um for r in used)),
        "jump_length_um": float(jumps),
        "dropped_segments": int(sum(r.dropped_segments for r in ordered)),
    }


def _plan_summary(rec, used) -> dict:
    kinds = {}
    for r in used:
        for k, v in r.marks_by_kind.items():
            kinds[k] = kinds.get(k, 0) + v
    warnings = []
    for r in used:
        for w in r.warnings:
            if w not in warnings and not w.startswith("dropped "):
                warnings.append(w)
    caps = [r.extra.get("cap_first_layer") for r in used if r.extra.get("cap_first_layer") is not None]
    pmin = [r.extra["power_min_mw"] for r in used if r.extra.get("power_min_mw") is not None]
    pmax = [r.extra["power_max_mw"] for r in used if r.extra.get("power_max_mw") is not None]
    return {
        "strategy": rec.strategy,
        "marks_by_kind": kinds,
        "warnings": warnings,
        "cap_first_layer": min(caps) if caps else None,
        "power_min_mw": min(pmin) if pmin else None,
        "power_max_mw": max(pmax) if pmax else None,
    }


def _power_clip(used, printer) -> dict | None:
    """Power clipping over the job (``allow_power_clip``), once: clipped points, their mark length
    and share of all mark length, the largest request and where it was; None when nothing was clipped."""
    clips = [(r.block, r.extra["power_clip"]) for r in used if r.extra.get("power_clip")]
    if not clips:
        return None
    total = float(sum(r.mark_length_um for r in used))
    b, top = max(clips, key=lambda c: c[1]["max_request_mw"])
    length = float(sum(c["length_um"] for _, c in clips))
    return {"points": int(sum(c["points"] for _, c in clips)), "length_um": length,
            "share_of_mark_length": length / total if total > 0 else 0.0,
            "max_request_mw": top["max_request_mw"], "max_power_mw": printer.max_power_mw,
            "where": {"block": int(b), "layer": top["layer"], "z_um": top["z_um"], "depth_um": top["depth_um"]}}


def _safe_stem(stem: str) -> str:
    keep = "".join(c if (c.isalnum() or c in "-_") else "_" for c in stem)
    return keep[:64] or "part"


def _write_mesh_copy(solid, folder: Path) -> None:
    """The part as sliced (µm, after repair), for previews and re-slicing: ``mesh.stl``, or for a
    centerline tree ``centerline.json`` (its nodes and segments, a graph ``load_tree`` reads)."""
    from .toolpath import atomic_write_bytes

    if hasattr(solid, "to_graph_json"):
        atomic_write_bytes(folder / "centerline.json", solid.to_graph_json().encode("utf-8"))
        return
    atomic_write_bytes(folder / "mesh.stl", solid.to_trimesh().export(file_type="stl"))


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



#: layers planned per block tier by :func:`estimate_mesh` (stratified over the tier's layers with
#: material; the rest is scaled by the spans of every layer)
ESTIMATE_LAYERS_PER_TIER = 12
#: longest cycle of hatch angles the sample is balanced over (90° steps: 2, 60°: 3, 45°: 4)
_MAX_ANGLE_PERIOD = 8


def estimate_mesh(mesh, printer="nanoscribe-gt2-25x", recipe=None, overrides=None, units: str = "um",
                  layers_per_tier: int = ESTIMATE_LAYERS_PER_TIER, progress: Progress = silent,
                  repair: bool = False, force: bool = False) -> dict:
    """Print time, mark count and program size of a mesh's (or centerline tree's) job without
    writing the program. ``mesh``: a path (mesh or centerline file), a Solid or a Tree.

    The job's placement and stitching grid are planned and checked (:mod:`bioslicer.budget`) as
    :func:`slice_to_job` does. Then:

    1. the spans of the printed region on every layer, at the layer's hatch angle (the span
       kernel only, no marks), give per block (the cell holding a span's middle) and layer the
       span count, the span length and whether it has material;
    2. ``layers_per_tier`` layers of each block tier are sampled, stratified over the tier's
       layers with material and balanced over the cycle of hatch angles (90° steps alternate
       the direction, and mark counts of elongated sections depend on it); a block with
       material on none of them gets its fullest layer added;
    3. only those layers are planned, stitched, ordered and written (to a temporary folder,
       removed), block by block through :func:`~bioslicer.blockrun.run_block`;
    4. each block's figures are scaled by ratios of its spans, all layers over sampled ones:
       mark time and length by span length, marks, points, program bytes, jumps and laser
       delays by span count; a block changes layer (its layers with material - 1) times.
       Stage moves between blocks come from the grid as in the job.

    Returns
    -------
    dict
        ``estimate`` (``Estimate.to_dict()``), ``marks``, ``points``, ``program_bytes``,
        ``layers``, ``layers_planned``, ``blocks``, ``printer``, ``elapsed_s``.
    """
    import tempfile

    from .blockrun import BlockPlan, plan_blocks
    from .budget import check_job
    from .cluster import run_blocks_local
    from .estimate import combine_estimates
    from .exposure import check_exposure
    from .placement import place
    from .planning import plan_toolpath
    from .programs import ProgramWriter
    from .stitching import mark_boxes

    t0 = time.perf_counter()
    pr = load_printer(printer)
    rec = resolve_recipe(pr, recipe, overrides)
    check_exposure(rec, pr)
    if isinstance(mesh, (str, Path)):
        from .centerline import load_geometry

        mesh = load_geometry(mesh, units=units, repair=repair, printer=pr, recipe=rec)
    solid, prec, _ = place(mesh, rec)
    check_job(solid, prec, pr, force=force)
    grid, lz = plan_blocks(solid, prec, pr)
    blocks = grid.blocks()
    todo = cells_to_run(solid, prec, grid)
    weights = _block_span_weights(solid, prec, grid, lz, todo)
    period = _angle_period(prec.layer_angle_deg(len(lz)))
    sample = set()
    for iz in sorted({int(blocks.index[b][2]) for b in todo}):
        tier = [b for b in todo if int(blocks.index[b][2]) == iz]
        layers = weights[tier[0]][0]
        full = np.zeros(len(layers), bool)
        for b in tier:
            full |= weights[b][1] > 0
        sample.update(_stratified_layers(layers[full], layers_per_tier, period))
    for b in todo:                     # every block with material is sampled somewhere
        layers, cnt, _ = weights[b]
        if cnt.sum() > 0 and cnt[np.isin(layers, list(sample))].sum() == 0:
            sample.add(int(layers[np.argmax(cnt)]))
    sample = np.array(sorted(sample), dtype=np.int64)
    if len(sample) == 0:
        raise BioslicerError(
            f"nothing to print: the recipe gives no marks inside {solid.name or 'the mesh'}; "
            "check the units (--units) and that slice_um/hatch_um are smaller than the part")
    tp, _ = plan_toolpath(solid, prec, pr, layer_ids=sample, checked=True)
    tier_of = grid.layer_tier[tp.mark_layer]
    results = {}
    with tempfile.TemporaryDirectory(prefix=".bioslicer-estimate-") as tmp:
        writer = ProgramWriter(pr, blocks, tmp, name="estimate", find_interface=rec.find_interface,
                               tilt_points=rec.tilt_measure_points())
        writer.durable = False        # counted, then thrown away: no fsync, no hashes (same bytes)
        plan = BlockPlan(None, pr, grid.to_dict(), writer, set_source=0)
        runs = []
        for iz in np.unique(tier_of).tolist():       # each tier's blocks select from its own marks
            sub = tp.select_marks(tier_of == iz)
            boxes = mark_boxes(sub)
            runs.append((sub, [b for b in todo if int(blocks.index[b][2]) == iz
                               and grid.marks_for_block(sub, b, boxes).any()]))
        total = sum(len(run) for _, run in runs)
        for sub, run in runs:
            done = len(results)
            results.update(run_blocks_local(sub, plan, run,
                                            lambda k, n, label="", d=done: progress(d + k, total, label)))
    per_block = [None] * len(blocks)
    marks = points = nbytes = 0.0
    by_count = ("jump_s", "laser_delay_s", "marks", "jumps", "jump_length_um")
    for b, r in results.items():
        if r.estimate is None:
            continue
        f_count, f_length, f_layers, n_full = _scale_factors(weights[b], sample)
        e = dict(r.estimate)
        # a block changes layer (its layers with material - 1) times
        f_changes = (n_full - 1) / e["layer_changes"] if e["layer_changes"] > 0 and n_full > 1 else f_layers
        for keys, f in ((by_count, f_count), (("mark_s", "mark_length_um"), f_length),
                        (("layer_change_s", "layer_changes"), f_changes)):
            for key in keys:
                e[key] = e[key] * f
        per_block[b] = e
        marks += r.n_marks * f_count
        points += r.n_points * f_count
        nbytes += (r.part.n_bytes if r.part is not None else 0) * f_count
    est = combine_estimates(blocks, per_block, pr)
    return {"estimate": est.to_dict(), "marks": int(round(marks)), "points": int(round(points)),
            "program_bytes": int(round(nbytes)), "layers": int(len(lz)), "layers_planned": int(len(sample)),
            "blocks": int(sum(1 for e in per_block if e is not None)), "printer": pr.name,
            "elapsed_s": time.perf_counter() - t0}


def _block_span_weights(solid, recipe, grid, lz, todo) -> dict:
    """Per block of ``todo``: (its layers, span count per layer, span length per layer µm) of the
    printed region (``lz``: the grid's commanded layer heights) on hatch rows at each layer's angle, a span counted in the block whose cell
    (:meth:`StitchGrid.cell_owner`) holds its middle. One span-kernel call per block tier."""
    from .strategies import make_region

    region = make_region(solid, recipe)
    angles = recipe.layer_angle_deg(len(lz))
    index = grid.blocks().index
    tiers: dict = {}
    for b in todo:
        tiers.setdefault(int(index[b][2]), []).append(b)
    out = {}
    for bs in tiers.values():
        layers = grid.block_layers(bs[0])
        # spans at the physical layer heights; block ownership in commanded z (the grid's)
        sp = region.spans(lz[layers] / recipe.focal_shift_factor, recipe.hatch_um, angles[layers],
                          0.5 * recipe.hatch_um)
        lay = sp.span_layer()
        x0, y0, x1, y1 = sp.span_xy()
        mx, my, mz = (x0 + x1) / 2, (y0 + y1) / 2, lz[layers][lay]
        del x0, y0, x1, y1
        length = sp.span_u1_um - sp.span_u0_um
        for b in bs:
            own = grid.cell_owner(b)(mx, my, mz)
            out[b] = (layers, np.bincount(lay[own], minlength=len(layers)),
                      np.bincount(lay[own], weights=length[own], minlength=len(layers)))
    return out


def _angle_period(angles, max_period: int = _MAX_ANGLE_PERIOD) -> int:
    """Smallest p <= ``max_period`` with angle[k + p] == angle[k] for every layer; 1 when none."""
    a = np.asarray(angles, dtype=np.float64)
    for p in range(1, max_period + 1):
        if len(a) <= p:
            return p
        d = np.abs(a[p:] - a[:-p])
        if np.all(np.minimum(d, 180.0 - d) < 1e-9):
            return p
    return 1


def _stratified_layers(layers, m: int, period: int) -> list:
    """``m`` of ``layers`` (sorted layer numbers), one from each of m equal strata, the one nearest
    the stratum's middle whose layer number is ``i`` modulo ``period`` for stratum i (so the
    hatch-angle cycle is sampled evenly); the middle one when the stratum has none."""
    layers = np.asarray(layers, dtype=np.int64)
    n = len(layers)
    m = min(int(m), n)
    if m <= 0:
        return []
    edges = (np.arange(m + 1) * n) // m
    out = []
    for i in range(m):
        lo, hi = int(edges[i]), int(edges[i + 1])
        mid = (lo + hi) // 2
        cand = np.arange(lo, hi)
        ok = cand[layers[cand] % period == i % period]
        out.append(int(layers[ok[np.argmin(np.abs(ok - mid))]] if len(ok) else layers[mid]))
    return out


def _scale_factors(weight, sample) -> tuple[float, float, float, int]:
    """(count, length, layers) factors of one block: its spans on all layers over those on the
    sampled layers, the plain layer ratio where the sampled layers hold no spans; and the
    number of its layers with material."""
    layers, cnt, length = weight
    ins = np.isin(layers, sample)
    n_all, n_in = float((cnt > 0).sum()), float((cnt[ins] > 0).sum())
    plain = max(len(layers), 1) / max(int(ins.sum()), 1)
    f_layers = n_all / n_in if n_in > 0 else plain
    c_in, l_in = float(cnt[ins].sum()), float(length[ins].sum())
    return (float(cnt.sum()) / c_in if c_in > 0 else f_layers,
            float(length.sum()) / l_in if l_in > 0 else f_layers, f_layers, int(n_all))


def export_job(job, out_dir, printer, dialect: str | None = None, overwrite: bool = False,
               preview: bool = True) -> JobResult:
    """Write an existing job again for another printer or dialect.

    The job's part as it was sliced (``mesh.stl``: placed, scaled) is sliced again with the job's
    recipe, keeping its position (``placement = "keep"``: same offset on the substrate), for
    ``printer``: the recipe is checked against the new printer (power, speeds: refused in one
    line naming the key), the grid follows its field and the program is validated against it.

    Parameters
    ----------
    job : path
        A job folder written by ``bioslicer slice``.
    out_dir : path
        The new job folder.
    printer : str, path or Printer
    dialect : str, optional

    Returns
    -------
    JobResult
    """
    from .jobs import read_manifest
    from .recipe import Recipe

    job = Path(job)
    m = read_manifest(job)
    pl = m.get("placement") or {}
    if pl.get("mode") in ("array", "plate"):
        raise BioslicerError(f"job {job} is a {pl['mode']} job; write it again with `bioslicer "
                             f"{'array' if pl['mode'] == 'array' else 'slice PLATE.toml'} --printer ...`")
    mesh = job / "mesh.stl"
    if not job.is_dir() or not mesh.is_file():
        raise BioslicerError(f"job {job} has no mesh.stl (a job folder written by `bioslicer slice` has one); "
                             "unpack a zipped job first")
    rec = Recipe.from_dict(m["recipe"], source=f"job {job.name} recipe")
    off = np.asarray(pl.get("offset_um") or [0.0, 0.0, 0.0], dtype=np.float64)
    f = np.asarray(rec.scale or [1.0, 1.0, 1.0], dtype=np.float64)
    changes = {"placement": "keep", "allow_floating": True, "z_offset_um": 0.0, "scale": None}
    if rec.surface_z_um is not None:
        changes["surface_z_um"] = float(rec.surface_z_um * f[2] + off[2])
    if rec.power_field_origin_um is not None:
        changes["power_field_origin_um"] = (np.asarray(rec.power_field_origin_um) * f + off).tolist()
    elif rec.power_field_path is not None:
        changes["power_field_origin_um"] = off.tolist()
    if rec.power_field_voxel_um is not None:
        changes["power_field_voxel_um"] = (np.asarray(rec.power_field_voxel_um) * f).tolist()
    return slice_to_job(mesh, out_dir, printer=printer, recipe=rec.updated(_source="export", **changes),
                        overwrite=overwrite, preview=preview, dialect=dialect)
