"""One stitching block, start to finish: the unit of work of every slicing run.

A job is planned as a grid of stitching blocks *before* anything is sliced
(:func:`plan_blocks`). Each block is then planned, stitched, ordered and written on its own
(:func:`run_block`): in this process one after another for a local run, or as separate tasks on
Dask workers (``bioslicer.cluster``). A block depends only on the mesh, the recipe, the
printer, the grid and its own index, so the job is byte-identical whatever runs it, and the
memory of a run follows the block, not the part.

Block b's marks are the marks of the whole part that fall in it: ``plan_toolpath`` makes only
the layers of b's tier and only the scan rows crossing b's window (whole rows, so every mark is
bit-identical to the same mark of the whole plan), ``stitch`` keeps only the pieces inside b, and
``order_marks`` orders each (block, layer) run on its own. A block can also start from an
already planned, unstitched toolpath (``bioslicer estimate`` of a saved toolpath): then the
marks the block needs are selected instead of planned, and the rest is the same.

Blocks that share scan rows (runs of consecutive blocks in one tier and one grid row,
:func:`plan_units`) are one unit of work: the unit is planned once over the union of their
windows and each block's marks are then selected from that plan (:func:`unit_marks`), which
gives the same marks, so a row crossing several blocks is planned once; memory follows the
unit. :func:`run_block` is a unit of one block.

The whole-part helpers are loops over units (:func:`run_unit`): :func:`run_blocks` here,
``cluster.run_blocks_dask`` on a cluster, ``pipeline.slice_to_job`` and ``pipeline.plan_job``
on top of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .printers import Printer
from .toolpath import Kind, Toolpath

#: blocks in one unit of work at most (``plan_units``)
UNIT_MAX_BLOCKS = 2
#: layers kept in the preview toolpath (every n-th layer, n from the layer count)
PREVIEW_LAYERS = 120
#: hatch-like marks kept per µm of part width in a preview layer
PREVIEW_LINES_PER_UM = 1.0


@dataclass
class BlockPlan:
    """Everything a block task needs besides the solid (small, picklable)."""

    recipe: dict | None       # None when the blocks start from a planned toolpath
    printer: Printer
    grid: dict
    writer: object = None     # programs.ProgramWriter; None: write no program
    preview_layer_step: int = 0     # 0: no preview toolpath
    preview_mark_step: int = 1
    keep_toolpath: bool = False     # hand back the block's stitched, ordered marks
    set_source: int = 0             # parameter-set source (array cell + 1; paramsets.SOURCE_STRIDE)

    def recipe_obj(self):
        from .recipe import Recipe

        return Recipe.from_dict(self.recipe)

    def grid_obj(self):
        from .stitching import StitchGrid

        return StitchGrid.from_dict(self.grid)


@dataclass
class BlockResult:
    """What a block task hands back (small: statistics, file hashes and a decimated preview)."""

    block: int
    part: object               # programs.BlockPart
    n_marks: int
    n_points: int
    n_segments: int
    mark_length_um: float
    jump_length_um: float      # jumps inside the block
    first_point_um: list | None
    last_point_um: list | None
    lo_um: list | None
    hi_um: list | None
    dropped_segments: int
    warnings: list
    marks_by_kind: dict
    estimate: dict             # estimate_block(...)
    preview: Toolpath | None = None
    extra: dict = field(default_factory=dict)
    toolpath: Toolpath | None = None   # with BlockPlan.keep_toolpath
    timings_s: dict = field(default_factory=dict)   # wall seconds per stage of the block (BLOCK_STAGES)


#: the stages of :func:`run_block`, keys of ``BlockResult.timings_s`` (``<stage>_s``)
BLOCK_STAGES = ("plan", "stitch", "order", "write", "estimate")


def stage_times(results) -> dict:
    """``{"<stage>_s": seconds}`` summed over block results (worker seconds on a cluster)."""
    out = {f"{s}_s": 0.0 for s in BLOCK_STAGES}
    for r in results:
        for k, v in r.timings_s.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def plan_blocks(solid, recipe, printer: Printer):
    """The stitching grid of a job, from the bounds of what will be printed and the layer table.

    The grid is planned in commanded z (``recipe.focal_shift_factor`` times the physical
    height above the interface): tiers, z-drive moves and the fine z range hold what the
    machine moves, as the toolpaths ``plan_toolpath`` hands back.

    Returns
    -------
    (StitchGrid, layer_z_um)
        ``layer_z_um``: the commanded layer heights (the grid's ``layer_z_um``), µm.
    """
    from .stitching import plan_grid
    from .strategies import make_region
    from .strategies.common import check_layers

    region = make_region(solid, recipe)
    lz = recipe.commanded_z_um(check_layers(region, recipe))
    grid = plan_grid(region.bounds_um, lz, printer, block_size_um=recipe.block_size_um,
                     overlap_um=recipe.overlap_um, shear_deg=recipe.shear_deg)
    return grid, lz


def preview_steps(bounds_um, n_layers: int, hatch_um: float) -> tuple[int, int]:
    """(layer step, mark step) of the preview toolpath: about :data:`PREVIEW_LAYERS` layers and
    :data:`PREVIEW_LINES_PER_UM` hatch lines per µm of part width, whatever the block."""
    b = np.asarray(bounds_um, dtype=np.float64)
    width = float(max(b[1, 0] - b[0, 0], b[1, 1] - b[0, 1], 1.0))
    layer_step = max(1, int(math.ceil(n_layers / PREVIEW_LAYERS)))
    lines = width / max(hatch_um, 1e-9)
    mark_step = max(1, int(math.ceil(lines / (width * PREVIEW_LINES_PER_UM))))
    return layer_step, mark_step


def preview_marks(tp: Toolpath, layer_step: int, mark_step: int) -> Toolpath:
    """Every ``layer_step``-th layer; in it every contour and every ``mark_step``-th other mark of
    each (block, layer) run. Depends only on the marks of the run, so block-wise previews
    concatenate into the preview of the whole job."""
    if tp.n_marks == 0:
        return tp
    from .kernel.measure import preview_keep

    return tp.select_marks(preview_keep(tp.mark_kind, tp.mark_layer, tp.mark_block, layer_step, mark_step,
                                        int(Kind.CONTOUR)))


def run_block(source, plan: BlockPlan, b: int, progress=None) -> BlockResult:
    """Plan (or select), stitch, order, estimate and write block ``b`` (a unit of one block,
    :func:`run_unit`).

    Parameters
    ----------
    source : bioslicer.mesh.Solid or Toolpath
        The part: a solid is planned with ``plan.recipe`` (only the block's layers and window);
        an unstitched toolpath on the grid's layer table gives the marks the block needs.
    plan : BlockPlan
    b : int
        Row of the grid's Blocks table (execution rank).

    Returns
    -------
    BlockResult
        ``part`` is None without a writer; ``preview`` None without preview steps.
    """
    return run_unit(source, plan, [b])[0]


def run_unit(source, plan: BlockPlan, blocks) -> list:
    """Run a unit of blocks (:func:`plan_units`): planned once, then every block stitched,
    ordered, written and estimated on its own (:func:`unit_marks`, :func:`finish_block`).

    Returns
    -------
    list[BlockResult]
        One per block, in the order of ``blocks``.
    """
    return [finish_block(plan, bm) for bm in unit_marks(source, plan, blocks)]


def plan_units(grid, block_ids) -> list:
    """Group blocks into units of work that share their scan rows: runs of consecutive
    ``block_ids`` (execution order) in the same tier and the same row of the grid (same ``iy``).

    A unit is planned once over the union of its blocks' windows, so a scan row crossing a row
    of blocks is planned once per unit, not once per block; memory follows the unit, not the
    part. A unit holds at most :data:`UNIT_MAX_BLOCKS` blocks: on the reference job (rows of 4
    blocks) units of 2 cost about 1 s more CPU (the row's crossings found twice) and hold the
    peak about 85 MB lower (the plan of 2 blocks, not 4, beside the block being stitched).

    Returns
    -------
    list[list[int]]
    """
    idx = grid.blocks().index
    units: list = []
    key = None
    for b in block_ids:
        k = (int(idx[b, 2]), int(idx[b, 1]))
        if units and k == key and len(units[-1]) < UNIT_MAX_BLOCKS:
            units[-1].append(int(b))
        else:
            units.append([int(b)])
            key = k
    return units


@dataclass
class BlockMarks:
    """The first half of a block (:func:`unit_marks`): its stitched, ordered marks."""

    block: int
    toolpath: Toolpath
    report: dict
    clock: "_Clock"


class _UnitOwner:
    """``owner(x, y, z)``: True where one of the unit's cells holds the point (cells tile the plane)."""

    def __init__(self, owners) -> None:
        self.owners = owners

    def __call__(self, x, y, z):
        out = self.owners[0](x, y, z)
        for o in self.owners[1:]:
            out = out | o(x, y, z)
        return out


def unit_window_um(grid, blocks):
    """The box holding every block window of ``blocks`` (µm, as ``StitchGrid.block_window_um``)."""
    w = np.array([grid.block_window_um(b) for b in blocks], dtype=np.float64)    # (n, 2, 2)
    lo, hi = w[:, 0].min(axis=0), w[:, 1].max(axis=0)
    return (float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1]))


def unit_marks(source, plan: BlockPlan, blocks):
    """Yield the :class:`BlockMarks` of every block of a unit (blocks of one tier): the unit is
    planned (or selected) once over :func:`unit_window_um`, then each block is cut from that plan
    (``stitching.stitch_source``: checked and indexed once per unit) and ordered.

    Every mark reaching a block window is bit-identical whatever the planning window holding it
    (``plan_toolpath``), and ``stitch(..., blocks=[b])`` gives block b from any superset of the
    marks it needs: each block is exactly the block of a plan of its own. Dropped short
    segments are counted for the unit's cells and reported with its first block.
    """
    from .ordering import order_marks
    from .planning import plan_toolpath
    from .stitching import stitch_source

    blocks = [int(b) for b in blocks]
    grid = plan.grid_obj()
    if len(blocks) > 1 and len(set(grid.blocks().index[blocks, 2].tolist())) > 1:
        raise ValueError(f"the blocks of a unit must share their tier, got {blocks}; group them with plan_units")
    printer = plan.printer
    rec = plan.recipe_obj() if plan.recipe is not None else None
    clock = _Clock()
    if isinstance(source, Toolpath):
        tp, rep = source, {}
    else:
        from .exposure import PowerClipError

        owner = grid.cell_owner(blocks[0]) if len(blocks) == 1 else _UnitOwner([grid.cell_owner(b) for b in blocks])
        try:
            tp, rep = plan_toolpath(source, rec, printer, layer_ids=grid.block_layers(blocks[0]),
                                    window_um=unit_window_um(grid, blocks), owner=owner, checked=True)
        except PowerClipError as exc:
            what = f"block {blocks[0]}" if len(blocks) == 1 else f"blocks {blocks[0]}..{blocks[-1]}"
            raise PowerClipError(f"{what}: {exc}") from None
        if plan.set_source:     # once per unit: the blocks' marks are selected from this toolpath
            from .paramsets import SOURCE_STRIDE

            tp.mark_set += np.int32(plan.set_source * SOURCE_STRIDE)
    clock("plan")
    # the unit's marks are checked and indexed once; each block is cut straight from them
    # (no selected copy of the marks a block needs)
    src = stitch_source(tp, printer, grid, blocks)
    del tp
    for i, b in enumerate(blocks):
        if i:
            clock = _Clock()
            rep = dict(rep, dropped_segments=0)
        tpb = src.stitch([b])
        if i == len(blocks) - 1:
            src = None                  # the unit's last block: its plan is not needed any more
        clock("stitch")
        tpb, _ = order_marks(tpb, inplace=True, recipe=rec)
        clock("order")
        yield BlockMarks(b, tpb, rep, clock)
        del tpb


def finish_block(plan: BlockPlan, bm: BlockMarks) -> BlockResult:
    """Write block ``bm.block``'s program file(s), estimate it and sum it up (second half of
    :func:`run_block`)."""
    from .estimate import estimate_block

    b, tp, rep, clock = bm.block, bm.toolpath, bm.report, bm.clock
    printer = plan.printer
    rec = plan.recipe_obj() if plan.recipe is not None else None
    clock.restart()
    part = plan.writer.write_block(b, tp) if plan.writer is not None else None
    clock("write")
    n = tp.n_marks
    summary = block_summary(tp) if n else None    # one pass: lengths, bounds, kinds, jumps, times, sets
    lengths = summary["lengths"] if n else np.zeros(0)
    est = estimate_block(tp, plan.printer, lengths, summary=summary)
    if n:
        by_kind = {k.name.lower(): int(summary["kinds"][int(k)]) for k in Kind}
        first = [float(tp.x_um[0]), float(tp.y_um[0]), float(tp.z_um[0])]
        last = [float(tp.x_um[-1]), float(tp.y_um[-1]), float(tp.z_um[-1])]
        lo, hi = summary["bounds"][0].tolist(), summary["bounds"][1].tolist()
    else:
        by_kind = {k.name.lower(): 0 for k in Kind}
        first = last = lo = hi = None
    clip = rep.get("power_clip")
    if clip is not None:   # count what this block writes (the plan's rows reach past its walls)
        from .exposure import clipped_length_um

        at_max = tp.power_mw >= plan.printer.max_power_mw * (1 - 1e-12)
        clip = dict(clip, points=int(at_max.sum()), length_um=clipped_length_um(tp, at_max))
    sets = {}
    if rec is not None:
        from .paramsets import block_sets

        sets = block_sets(tp, rec, printer, rep.get("modulation"), lengths, summary)
    prev = None
    if plan.preview_layer_step:
        prev = preview_marks(tp, plan.preview_layer_step, plan.preview_mark_step)
        prev.meta = {}
    jump_um = float(summary["jumps"].sum()) if n else 0.0    # pairwise, as Toolpath.jump_lengths().sum()
    clock("estimate")
    return BlockResult(
        block=b, part=part, n_marks=n, n_points=tp.n_points, n_segments=tp.n_segments,
        mark_length_um=float(lengths.sum()), jump_length_um=jump_um,
        first_point_um=first, last_point_um=last, lo_um=lo, hi_um=hi,
        dropped_segments=int(rep.get("dropped_segments", 0)), warnings=list(rep.get("warnings", [])),
        marks_by_kind=by_kind, estimate=est, preview=prev,
        extra={"power_min_mw": rep.get("power_min_mw"), "power_max_mw": rep.get("power_max_mw"),
               "cap_first_layer": rep.get("cap_first_layer"), "power_clip": clip,
               "sets": sets},
        toolpath=tp if plan.keep_toolpath else None, timings_s=clock.times,
    )


def block_summary(tp: Toolpath) -> dict:
    """``kernel.measure.block_summary`` of a block's marks (every kind counted; the parameter sets
    tallied when their ids span a small range, as they do within one recipe)."""
    from .kernel.measure import block_summary as _summary

    n_kinds = max(len(Kind), int(tp.mark_kind.max()) + 1)
    lo, hi = int(tp.mark_set.min()), int(tp.mark_set.max())
    n_sets = hi - lo + 1 if hi - lo < 4096 else 0
    return _summary(tp.x_um, tp.y_um, tp.z_um, tp.mark_start, tp.mark_kind, tp.mark_speed_um_s, tp.mark_set, n_kinds,
                    lo, n_sets)


class _Clock:
    """``clock(stage)`` adds the wall time since the last call to ``times[stage + "_s"]``."""

    def __init__(self) -> None:
        self.times: dict = {}
        self.t = time.perf_counter()

    def restart(self) -> None:
        """Start timing the next stage now (time since the last stage is not counted)."""
        self.t = time.perf_counter()

    def __call__(self, stage: str) -> None:
        t = time.perf_counter()
        key = f"{stage}_s"
        self.times[key] = self.times.get(key, 0.0) + (t - self.t)
        self.t = t


def run_toolpath(toolpath: Toolpath, printer, grid=None, keep_toolpath: bool = True, progress=None):
    """Stitch, order and estimate an unstitched toolpath block by block, as a job does.

    The grid is ``grid_for_toolpath(toolpath, printer)`` (default block size, overlap and shear)
    unless given; each block then runs through :func:`run_block` (no program written).

    Parameters
    ----------
    toolpath : Toolpath
        Unstitched marks (µm), e.g. loaded from an ``.npz``.
    printer : Printer or str
    grid : StitchGrid, optional
    keep_toolpath : bool
        Also return the stitched, ordered toolpath of the whole part.
    progress : callable, optional
        ``progress(done, total, label)`` per block.

    Returns
    -------
    (StitchGrid, dict[int, BlockResult], Toolpath or None)
        The grid, the result of every block with marks' candidates (by execution rank) and,
        with ``keep_toolpath``, the blocks' marks joined in execution order.
    """
    from .cluster import run_blocks_local
    from .printers import load_printer
    from .progress import silent
    from .stitching import grid_for_toolpath

    printer = load_printer(printer)
    if grid is None:
        grid = grid_for_toolpath(toolpath, printer)
    plan = BlockPlan(None, printer, grid.to_dict(), keep_toolpath=keep_toolpath)
    todo = [b for b in range(grid.n_blocks()) if grid.marks_for_block(toolpath, b).any()]
    results = run_blocks_local(toolpath, plan, todo, progress or silent)
    return grid, results, (joined_toolpath(grid, results) if keep_toolpath else None)


def combined_estimate(blocks, results: dict, printer):
    """The job's :class:`~bioslicer.estimate.Estimate` from the blocks' ``BlockResult.estimate``
    (``combine_estimates`` over the whole Blocks table, empty rows None)."""
    from .estimate import combine_estimates

    per_block = [None] * len(blocks)
    for b, r in results.items():
        per_block[b] = r.estimate
    return combine_estimates(blocks, per_block, printer)


def joined_toolpath(grid, results: dict) -> Toolpath:
    """The kept toolpaths of block results, joined in execution order, with the grid's Blocks."""
    tp = Toolpath.concat([results[b].toolpath for b in sorted(results)], layer_z_um=grid.layer_z_um)
    tp.blocks = grid.blocks()
    return tp
