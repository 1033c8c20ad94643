"""Several parts in one job, each with its own recipe: plates (``plate.toml``) and dose arrays.

A plate file lists parts::

    printer = "nanoscribe-gt2-25x"      # optional (--printer wins)
    recipe = "base.toml"                # optional: what every part starts from
    [[part]]
    mesh = "tube.stl"                   # a mesh or a centerline tree (.swc, .vtp, ...), relative to the plate file
    position = [0.0, 0.0]               # centre of its footprint on the substrate, µm; or "auto"
    rotation_deg = 90.0                 # about z, optional
    recipe = "soft.toml"                # optional, over the plate's recipe
    units = "um"                        # optional
    [part.set]                          # optional recipe overrides
    hatch_um = 0.3

Every part is placed on the substrate (its lowest point on the interface) with its footprint
centred at its position; ``auto`` parts follow in a row along +x after the others, ``gap_um``
apart. Footprints may not overlap (refused in one line). :func:`parts_to_job` then writes one
program: each part's stitching grid becomes rows of the job's one Blocks table, every block runs
the ordinary chain (:func:`bioslicer.blockrun.run_block`) with its part's recipe, and the
manifest records each part and its parameter sets (``paramsets.SOURCE_STRIDE``).
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BioslicerError

#: distance between the footprints of ``auto`` parts, µm
AUTO_GAP_UM = 20.0
#: parts whose blocks hold fewer segments than this (``budget.estimate_work``) run every Numba
#: kernel on one thread: on such blocks a kernel takes well under a millisecond, and a parallel
#: launch costs more than that (milliseconds of waiting for the other threads on a busy machine)
SERIAL_BLOCK_SEGMENTS = 100_000


@dataclass
class JobPart:
    """One part of a multi-part job.

    solid : Solid in mesh coordinates (placed on the substrate here, centred at ``offset_um``).
    recipe : its Recipe. offset_um : (x, y) footprint centre, µm. label : text printed beside it
    (stroke font) or None. record : what the manifest records about it. kind : the key its
    parameter sets name it under ('part' or 'array_cell').
    """

    solid: object
    recipe: object
    offset_um: tuple
    label: str | None = None
    record: dict = field(default_factory=dict)
    kind: str = "part"


class _RowWriter:
    """The job's ProgramWriter seen by one part: the part's block b is row ``first + b`` of the job."""

    def __init__(self, writer, first: int) -> None:
        self.writer = writer
        self.first = first

    def write_block(self, b, tp):
        tp.mark_block = np.full(tp.n_marks, self.first + int(b), np.int32)
        tp.blocks = self.writer.blocks
        return self.writer.write_block(self.first + int(b), tp)


@contextmanager
def kernel_threads(n: int | None):
    """``with kernel_threads(n):`` Numba's parallel kernels use ``n`` threads in this thread (None:
    as they are); the count is restored after. Results do not depend on the thread count."""
    import numba

    if n is None:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), old)))
    try:
        yield
    finally:
        numba.set_num_threads(old)


def small_blocks(solid, recipe, printer) -> bool:
    """True when the estimated segments per block of ``solid`` (placed, µm) stay under
    :data:`SERIAL_BLOCK_SEGMENTS`."""
    from .budget import estimate_work

    return estimate_work(solid.bounds_um, recipe, printer).block_segments < SERIAL_BLOCK_SEGMENTS


def placed_part(part: JobPart):
    """``(solid, planning recipe)`` of a part on the substrate, footprint centred at its offset."""
    from .placement import place

    s, prec, _ = place(part.solid, part.recipe.updated(_source="plate", placement="substrate"))
    off = np.array([part.offset_um[0], part.offset_um[1], 0.0])
    if prec.power_field_path is not None:
        prec = prec.updated(_source="plate", power_field_origin_um=(np.asarray(
            prec.power_field_origin_um or [0.0, 0.0, 0.0]) + off).tolist())
    return s.translated(off), prec


def parts_to_job(parts, out_dir, printer, base, *, name: str, mesh_stl: bytes, mesh_name: str, mesh_sha256: str,
                 mode: str, overwrite: bool = False, preview=None, dialect: str | None = None, finish=None):
    """Write one job of several parts (see the module docstring).

    Parameters
    ----------
    parts : list[JobPart]
    out_dir : path
    printer : Printer
    base : Recipe
        The job's recipe (``recipe.toml``, header hash, interface finding).
    name : str
        Base name of the program files.
    mesh_stl, mesh_name, mesh_sha256
        The job's ``mesh.stl`` bytes, the name the manifest gives the input and its SHA-256 ("":
        the hash of ``mesh_stl``).
    mode : str
        The placement mode the manifest records ('array' or 'plate').
    preview : callable, optional
        ``preview(path, preview_toolpath)`` draws ``preview.png``; None: no preview.
    finish : callable, optional
        ``finish(job_folder, per_part_estimate_s, parameter_sets) -> dict`` writes extra files and
        returns extra manifest keys.

    Returns
    -------
    pipeline.JobResult
        ``timings_s``: wall seconds of ``setup_s`` (placing and gridding the parts), the block
        stages summed over the blocks (``block_stages_s``, as ``slice_to_job``), ``main_s``,
        ``validate_s``, ``preview_s``, ``manifest_s`` (with the commit) and ``total_s``. Parts
        with small blocks (:func:`small_blocks`) run every Numba kernel on one thread.
    """
    t0 = time.perf_counter()
    placed = [placed_part(part) for part in parts]
    with kernel_threads(1 if all(small_blocks(s, prec, printer) for s, prec in placed) else None):
        return _parts_to_job(parts, placed, out_dir, printer, base, name, mesh_stl, mesh_name, mesh_sha256, mode,
                             overwrite, preview, dialect, finish, t0)


def _parts_to_job(parts, placed, out_dir, printer, base, name, mesh_stl, mesh_name, mesh_sha256, mode, overwrite,
                  preview, dialect, finish, t0):
    from .blockrun import BlockPlan, combined_estimate, plan_blocks, preview_steps, run_block, stage_times
    from .dosearray import LABEL_GAP_UM, LABEL_HEIGHT_UM, LABEL_LAYERS, label_toolpath
    from .jobs import JobWriter
    from .jobs.manifest import build_manifest
    from .paramsets import SOURCE_STRIDE, block_sets, merge_sets
    from .pipeline import (JobResult, _block_counts, _plan_summary, _power_clip, cells_to_run, estimate_record,
                           job_provenance)
    from .programs import ProgramWriter
    from .stitching import plan_grid
    from .toolpath import Blocks, Toolpath, atomic_write_bytes

    plans = []
    n_rows = 0
    for i, (part, (s, prec)) in enumerate(zip(parts, placed)):
        grid, lz = plan_blocks(s, prec, printer)
        plans.append(("part", i, s, prec, grid, lz, n_rows))
        n_rows += grid.n_blocks()
        if part.label:
            b = s.bounds_um
            lzl = lz[:LABEL_LAYERS]
            ltp = label_toolpath(part.label, float(b[0, 0]), float(b[0, 1] - LABEL_GAP_UM - LABEL_HEIGHT_UM), lzl,
                                 part.recipe, printer)
            lgrid = plan_grid(ltp.bounds(), lzl, printer, overlap_um=0.0)
            plans.append(("label", i, ltp, None, lgrid, lzl, n_rows))
            n_rows += lgrid.n_blocks()
    grids = [p[4].blocks() for p in plans]
    index = np.concatenate([np.column_stack([np.full(len(g), i), np.zeros(len(g)), g.index[:, 2]])
                            for i, g in enumerate(grids)]).astype(np.int32)
    blocks = Blocks(np.concatenate([g.origin_um for g in grids]), index, np.concatenate([g.lo_um for g in grids]),
                    np.concatenate([g.hi_um for g in grids]), grids[0].field_shape, grids[0].field_size_um,
                    grids[0].overlap_um, grids[0].shear_deg)
    sha = mesh_sha256 or hashlib.sha256(mesh_stl).hexdigest()
    lz0 = plans[0][5]
    b0 = plans[0][2].bounds_um
    layer_step, mark_step = preview_steps(b0, len(lz0), base.hatch_um)
    results = {}
    part_rows = {i: [] for i in range(len(parts))}
    label_sets = []
    with JobWriter(out_dir, overwrite=overwrite) as jw:
        prov = job_provenance(mesh_name, parts[0].solid, printer, base, {"mode": mode, "offset_um": [0, 0, 0]})
        prov["mesh_sha256"] = sha
        writer = ProgramWriter(printer, blocks, jw.path, name=name, dialect=dialect, provenance=prov,
                               find_interface=base.find_interface, tilt_points=base.tilt_measure_points())
        writer.durable = False    # one process: the parts are the ones just written, the job's commit fsyncs
        timings = {"setup_s": time.perf_counter() - t0}
        for kind, i, src, prec, grid, lz, first in plans:
            rw = _RowWriter(writer, first)
            if kind == "part":
                plan = BlockPlan(prec.to_dict(), printer, grid.to_dict(), rw, layer_step, mark_step, set_source=i + 1)
                todo = cells_to_run(src, prec, grid)
            else:
                src.mark_set += np.int32((i + 1) * SOURCE_STRIDE)
                label_sets.append(block_sets(src, parts[i].recipe, printer, None))
                plan = BlockPlan(None, printer, grid.to_dict(), rw, 1, 1)
                todo = [b for b in range(grid.n_blocks()) if grid.marks_for_block(src, b).any()]
            for b in todo:
                r = run_block(src, plan, b)
                r.block = first + b
                results[first + b] = r
                part_rows[i].append(first + b)
        used = [results[b] for b in sorted(results) if results[b].n_marks]
        if not used:
            raise BioslicerError("nothing to print: the recipes give no marks inside the parts")
        timings["block_stages_s"] = stage_times(results.values())
        files = writer.finish([r.part for r in used])
        timings["main_s"] = writer.timings_s.get("main_s", 0.0)
        timings["validate_s"] = writer.timings_s.get("validate_s", 0.0)
        t = time.perf_counter()
        est = combined_estimate(blocks, results, printer)
        prev = Toolpath.concat([r.preview for r in used if r.preview is not None], layer_z_um=lz0)
        prev.blocks = blocks
        prev.save(jw.path / "preview_toolpath.npz")
        (jw.path / "recipe.toml").write_text(base.to_toml(), encoding="utf-8")
        atomic_write_bytes(jw.path / "mesh.stl", mesh_stl)
        if preview is not None:
            t1 = time.perf_counter()
            preview(jw.path / "preview.png", prev)
            timings["preview_s"] = time.perf_counter() - t1
        per_part_s = [float(sum(est.per_block_s[b] for b in part_rows[i])) for i in range(len(parts))]
        sets = merge_sets([r.extra.get("sets") for r in used] + label_sets)
        for d in sets:
            p = parts[d["id"] // SOURCE_STRIDE - 1]
            d["source"][p.kind] = {k: v for k, v in p.record.items() if k in ("cell", "row", "column", "part", "name")}
        extra = finish(jw.path, per_part_s, sets) if finish is not None else {}
        rel = lambda p: Path(p).resolve().relative_to(jw.path.resolve()).as_posix()  # noqa: E731
        manifest = build_manifest(
            mesh_file=mesh_name, mesh_sha256=sha, units="um", mesh_bounds_um=parts[0].solid.bounds_um,
            mesh_report=parts[0].solid.report, printer=printer, recipe=base.to_dict(), dialect=files.dialect,
            main=rel(files.main), program_files=[rel(f) for f in files.files],
            counts=_block_counts(list(results.values()), used, len(lz0), len(blocks)),
            bounds_um=[np.min([r.lo_um for r in used], axis=0), np.max([r.hi_um for r in used], axis=0)],
            estimate=estimate_record(est, used), validation=files.report.to_dict(),
            preview="preview.png" if preview else None, placement={"mode": mode, "find_interface": base.find_interface, "scale": None},
            plan=_plan_summary(base, used), power_clip=_power_clip(used, printer), parameter_sets=sets,
            preview_toolpath="preview_toolpath.npz", **extra)
        path = jw.commit(manifest)
    timings["manifest_s"] = time.perf_counter() - t - timings.get("preview_s", 0.0)
    timings["total_s"] = time.perf_counter() - t0
    return JobResult(path, None, manifest, timings)


# ----------------------------------------------------------------------------- plate files
def _rotated(solid, deg: float):
    """The solid rotated by ``deg`` about z through its bounding-box centre."""
    from dataclasses import replace

    from .mesh import Solid

    if not deg:
        return solid
    a = np.radians(deg)
    c = solid.bounds_um.mean(axis=0)
    r = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    if not hasattr(solid, "vertices_um"):      # a centerline tree: its points turn, radii stay
        return replace(solid, points_um=(solid.points_um - c) @ r.T + c, radius_um=solid.radius_um.copy(),
                       edges=solid.edges.copy(), clip=solid.clip.copy(), report=dict(solid.report))
    v = (solid.vertices_um - c) @ r.T + c
    return Solid(v, solid.faces.copy(), solid.name, solid.sha256, solid.units, dict(solid.report))


def load_plate(path, printer, recipe=None, overrides=None) -> tuple[list[JobPart], object]:
    """Read a plate file into placed, checked parts and the plate's base recipe.

    Raises BioslicerError (one line) for a missing file, an unknown key, a bad position or
    rotation, and overlapping footprints.
    """
    from .exposure import check_exposure
    from .centerline import load_geometry
    from .pipeline import resolve_recipe
    from .placement import printed_bounds_um
    from .recipe import load_recipe, read_toml

    path = Path(path)
    doc = read_toml(path, "plate file")
    unknown = set(doc) - {"printer", "recipe", "part", "gap_um"}
    if unknown:
        raise BioslicerError(f"plate file {path.name}: unknown key {sorted(unknown)[0]!r}; use printer, recipe, "
                             "gap_um and [[part]] tables")
    here = path.parent
    base_file = recipe or (here / doc["recipe"] if "recipe" in doc else None)
    if base_file is not None and not Path(base_file).is_file():
        raise BioslicerError(f"plate file {path.name}: recipe file {base_file} not found")
    base = resolve_recipe(printer, base_file, overrides)
    entries = doc.get("part")
    if not isinstance(entries, list) or not entries:
        raise BioslicerError(f"plate file {path.name} lists no parts; add [[part]] tables with mesh = \"...\"")
    gap = float(doc.get("gap_um", AUTO_GAP_UM))
    parts = []
    for i, e in enumerate(entries):
        where = f"plate file {path.name}, part {i + 1}"
        bad = set(e) - {"mesh", "position", "rotation_deg", "recipe", "set", "units", "name"}
        if bad:
            raise BioslicerError(f"{where}: unknown key {sorted(bad)[0]!r}; use mesh, position, rotation_deg, "
                                 "recipe, set, units, name")
        if "mesh" not in e:
            raise BioslicerError(f"{where}: no mesh = \"file.stl\"")
        mesh = here / e["mesh"]
        if not mesh.is_file():
            raise BioslicerError(f"{where}: mesh file {mesh} not found")
        rec = base
        if "recipe" in e:
            rf = here / e["recipe"]
            if not rf.is_file():
                raise BioslicerError(f"{where}: recipe file {rf} not found")
            rec = load_recipe(rf, printer=printer)
            if overrides:
                rec = rec.updated(**overrides)
        if "set" in e:
            if not isinstance(e["set"], dict):
                raise BioslicerError(f"{where}: set must be a table of recipe keys")
            rec = rec.updated(_source=where, **e["set"])
        check_exposure(rec, printer)
        rot = e.get("rotation_deg", 0.0)
        if isinstance(rot, bool) or not isinstance(rot, (int, float)):
            raise BioslicerError(f"{where}: rotation_deg must be a number of degrees, got {rot!r}")
        pos = e.get("position", "auto")
        if not (pos == "auto" or (isinstance(pos, list) and len(pos) == 2
                                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pos))):
            raise BioslicerError(f"{where}: position must be [x_um, y_um] or \"auto\", got {pos!r}")
        solid = _rotated(load_geometry(mesh, units=e.get("units", "um"), printer=printer, recipe=rec), float(rot))
        name = str(e.get("name", mesh.stem))
        parts.append(JobPart(solid, rec, None if pos == "auto" else (float(pos[0]), float(pos[1])), None,
                             {"part": i, "name": name, "mesh": e["mesh"], "mesh_sha256": getattr(solid, "sha256", ""),
                              "rotation_deg": float(rot), "position": pos, "recipe": rec.to_dict()}))
    # footprints (after scale and rotation), auto positions, overlap
    sizes = []
    for p in parts:
        from .placement import _scaled

        s, r, _ = _scaled(p.solid, p.recipe)
        b = printed_bounds_um(s, r)
        sizes.append(b[1, :2] - b[0, :2])
    fixed = [i for i, p in enumerate(parts) if p.offset_um is not None]
    x = max((parts[i].offset_um[0] + sizes[i][0] / 2 for i in fixed), default=None)
    for i, p in enumerate(parts):
        if p.offset_um is None:
            x = (-sizes[i][0] / 2 - gap) if x is None else x
            p.offset_um = (x + gap + sizes[i][0] / 2, 0.0)
            x = p.offset_um[0] + sizes[i][0] / 2
        p.record["position_um"] = list(p.offset_um)
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            lo_i, hi_i = np.subtract(parts[i].offset_um, sizes[i] / 2), np.add(parts[i].offset_um, sizes[i] / 2)
            lo_j, hi_j = np.subtract(parts[j].offset_um, sizes[j] / 2), np.add(parts[j].offset_um, sizes[j] / 2)
            if np.all(lo_i < hi_j) and np.all(lo_j < hi_i):
                raise BioslicerError(f"plate file {path.name}: parts {i + 1} ({parts[i].record['name']}) and {j + 1} "
                                     f"({parts[j].record['name']}) overlap on the substrate; move one (position) or "
                                     "use position = \"auto\"")
    return parts, base


def plate_to_job(plate_path, out_dir, printer, recipe=None, overrides=None, overwrite: bool = False,
                 preview: bool = True, dialect: str | None = None):
    """Slice a plate file into one job (see the module docstring); returns a ``pipeline.JobResult``."""
    import trimesh

    from .pipeline import _safe_stem

    parts, base = load_plate(plate_path, printer, recipe, overrides)
    placed = []
    for p in parts:
        s, _ = placed_part(p)
        placed.append(s.to_trimesh())
    stl = trimesh.util.concatenate(placed).export(file_type="stl")
    sha = hashlib.sha256(Path(plate_path).read_bytes()).hexdigest()

    def finish(folder, per_part_s, sets):
        return {"parts": [dict(p.record, estimate_s=t) for p, t in zip(parts, per_part_s)]}

    def draw(path, prev):
        from .preview import render_png

        render_png(path, toolpath=prev, title=f"{Path(plate_path).name}: {len(parts)} parts on {printer.name}")

    return parts_to_job(parts, out_dir, printer, base, name=_safe_stem(Path(plate_path).stem), mesh_stl=stl,
                        mesh_name=Path(plate_path).name, mesh_sha256=sha, mode="plate", overwrite=overwrite,
                        preview=draw if preview else None, dialect=dialect, finish=finish)
