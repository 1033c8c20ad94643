"""The whole-part helpers are loops over run_block: the same marks, program and estimate as a job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bioslicer.pipeline import job_provenance, plan_job, slice_to_job
from bioslicer.programs import write_program

MESH = Path(__file__).resolve().parents[1] / "meshes" / "calibration.stl"
SETTINGS = dict(printer="nanoscribe-gt2-63x", overrides={"slice_um": 6.0, "hatch_um": 3.0})


def test_plan_job_is_the_toolpath_the_job_writes(tmp_path):
    res = slice_to_job(MESH, tmp_path / "job", preview=False, **SETTINGS)
    job = plan_job(MESH, **SETTINGS)
    tp = job.toolpath
    tp.check()
    m = res.manifest
    assert len(tp.blocks) == job.grid.n_blocks() == m["counts"]["grid_blocks"]
    assert tp.n_marks == m["counts"]["marks"] and tp.n_points == m["counts"]["points"]
    assert sorted(np.unique(tp.mark_block).tolist()) == m["estimate"]["blocks"]
    assert job.estimate.total_s == pytest.approx(m["estimate"]["total_s"], rel=1e-12)
    # written on its own, the joined toolpath gives the job's program byte for byte
    prov = job_provenance(MESH.name, job.solid, job.printer, job.recipe, job.placement)
    files = write_program(tp, job.printer, tmp_path / "again", name="calibration", provenance=prov)
    names = sorted(p.relative_to(tmp_path / "again").as_posix() for p in files.files)
    assert names == m["program"]["files"]
    for name in names:
        assert (tmp_path / "again" / name).read_bytes() == (res.path / name).read_bytes(), name


def _fields(tp) -> dict:
    from bioslicer.toolpath import MARK_FIELDS, POINT_FIELDS

    return {n: getattr(tp, n) for n in (*POINT_FIELDS, *MARK_FIELDS, "mark_start")}


def test_a_unit_is_planned_once_and_gives_the_blocks_of_their_own_plans():
    """Blocks of a unit (blocks of one row of one tier) planned together are bit-identical to the
    same blocks planned one by one, and the units are the todo list cut at tier and row changes
    and at UNIT_MAX_BLOCKS blocks."""
    from bioslicer.blockrun import UNIT_MAX_BLOCKS, BlockPlan, plan_blocks, plan_units, unit_marks
    from bioslicer.mesh import load_mesh
    from bioslicer.pipeline import cells_to_run, resolve_recipe
    from bioslicer.printers import load_printer

    printer = load_printer(SETTINGS["printer"])
    rec = resolve_recipe(printer, None, dict(SETTINGS["overrides"], shear_deg=5.0, hatch_angle_step_deg=30.0))
    solid = load_mesh(MESH, printer=printer, recipe=rec)
    grid, _ = plan_blocks(solid, rec, printer)
    todo = cells_to_run(solid, rec, grid)
    units = plan_units(grid, todo)
    idx = grid.blocks().index
    assert [b for u in units for b in u] == todo
    for u in units:
        assert len({(int(idx[b, 2]), int(idx[b, 1])) for b in u}) == 1
    assert all(1 <= len(u) <= UNIT_MAX_BLOCKS for u in units)
    for u0, u1 in zip(units[:-1], units[1:]):    # cut at a tier or row change, or when full
        assert (idx[u0[-1], 2], idx[u0[-1], 1]) != (idx[u1[0], 2], idx[u1[0], 1]) or len(u0) == UNIT_MAX_BLOCKS
    big = max(units, key=len)
    assert len(big) > 1
    plan = BlockPlan(rec.to_dict(), printer, grid.to_dict())
    together = list(unit_marks(solid, plan, big))
    assert [bm.block for bm in together] == big
    assert sum(bm.report["dropped_segments"] for bm in together) == sum(
        next(unit_marks(solid, plan, [b])).report["dropped_segments"] for b in big)
    for bm in together:
        alone = next(unit_marks(solid, plan, [bm.block]))
        assert bm.toolpath.n_marks > 0
        for name, arr in _fields(alone.toolpath).items():
            assert np.array_equal(getattr(bm.toolpath, name), arr), (bm.block, name)


def test_local_run_by_units_equals_blocks_one_by_one(tmp_path):
    """run_blocks_local (units of blocks planned once) gives each block's files and results
    exactly as run_block one block at a time; the job reports its time split."""
    from bioslicer.blockrun import BlockPlan, plan_blocks, run_block
    from bioslicer.cluster import run_blocks_local
    from bioslicer.mesh import load_mesh
    from bioslicer.pipeline import cells_to_run, resolve_recipe
    from bioslicer.printers import load_printer
    from bioslicer.programs import ProgramWriter

    printer = load_printer(SETTINGS["printer"])
    rec = resolve_recipe(printer, None, SETTINGS["overrides"])
    solid = load_mesh(MESH, printer=printer, recipe=rec)
    grid, _ = plan_blocks(solid, rec, printer)
    todo = cells_to_run(solid, rec, grid)
    got = {}
    for name in ("a", "b"):
        w = ProgramWriter(printer, grid.blocks(), tmp_path / name, name="part")
        plan = BlockPlan(rec.to_dict(), printer, grid.to_dict(), w, keep_toolpath=True)
        if name == "a":
            got[name] = run_blocks_local(solid, plan, todo)
        else:
            got[name] = {b: run_block(solid, plan, b) for b in todo}
    a, b = got["a"], got["b"]
    assert sorted(a) == sorted(b) == todo
    for k in todo:
        assert a[k].part.sha256 == b[k].part.sha256 and a[k].part.files == b[k].part.files
        assert a[k].estimate == b[k].estimate and a[k].n_points == b[k].n_points
        for f in a[k].part.files:
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
        assert {"stitch_s", "order_s", "write_s", "estimate_s"} <= set(a[k].timings_s)
    assert sum(r.dropped_segments for r in a.values()) == sum(r.dropped_segments for r in b.values())
    res = slice_to_job(MESH, tmp_path / "job", preview=False, **SETTINGS)
    t = res.timings_s
    assert {"validate_s", "main_s", "manifest_s", "block_stages_s"} <= set(t)
    assert set(t["block_stages_s"]) == {"plan_s", "stitch_s", "order_s", "write_s", "estimate_s"}
    assert all(v >= 0 for v in t["block_stages_s"].values())


def test_plan_units_cuts_a_long_row_of_blocks():
    """A row of 5 blocks of one tier becomes units of UNIT_MAX_BLOCKS (the last one shorter);
    a tier or row change always starts a new unit."""
    from types import SimpleNamespace

    from bioslicer.blockrun import UNIT_MAX_BLOCKS, plan_units

    index = np.array([[i, 0, 0] for i in range(5)] + [[0, 1, 0], [1, 1, 0], [0, 1, 1]], np.int32)
    grid = SimpleNamespace(blocks=lambda: SimpleNamespace(index=index))
    units = plan_units(grid, list(range(8)))
    row = list(range(5))
    want = [row[i:i + UNIT_MAX_BLOCKS] for i in range(0, 5, UNIT_MAX_BLOCKS)] + [[5, 6], [7]]
    assert units == want
