"""Plan a centimetre-scale job for a cluster: blocks, per-block cost, projected wall time.

A 1 cm³ hydrogel block with a vessel-tree channel network (the sample channel block scaled ten
times) sliced for the Nanoscribe 25x at 0.2 µm hatch and 0.5 µm slices is far too large to run
here, so this script plans its stitching grid, runs a sample of its blocks exactly as a Dask
worker would (``blockrun.run_block``, one block per child process so each block's peak memory is
its own), and projects the wall time on 8, 32 and 128 workers.

Usage::

    .venv/bin/python benchmarks/cluster_plan.py [--blocks 6] [--hatch-um 0.2] [--slice-um 0.5]
        [--out benchmarks/results/cluster_plan.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_solid():
    from bioslicer.mesh import solid_from_trimesh
    from bioslicer.samples import channel_block

    size = (10000.0, 10000.0, 10000.0)
    mesh = channel_block(size_um=size, levels=6, root_radius_um=600.0, root_length_um=3000.0, seed=0)
    return solid_from_trimesh(mesh, name="channel_block_1cm")


def plan_printer():
    """The 25x GT2 profile with a z drive long enough for a 1 cm tall part (the bundled
    profile's ±5 mm is refused for it, as it should be)."""
    import dataclasses

    from bioslicer.printers import load_printer

    return dataclasses.replace(load_printer("nanoscribe-gt2-25x"), stage_z_um=(-1000.0, 20000.0))


def _child(args, q):
    b, hatch, slc, out = args
    from bioslicer.blockrun import BlockPlan, plan_blocks, preview_steps, run_block
    from bioslicer.programs import ProgramWriter
    from bioslicer.recipe import Recipe

    solid = build_solid()
    pr = plan_printer()
    rec = Recipe.from_printer(pr).updated(hatch_um=hatch, slice_um=slc)
    grid, lz = plan_blocks(solid, rec, pr)
    writer = ProgramWriter(pr, grid.blocks(), out, name="plan")
    ls, ms = preview_steps(solid.bounds_um, len(lz), rec.hatch_um)
    plan = BlockPlan(rec.to_dict(), pr, grid.to_dict(), writer, ls, ms)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    r = run_block(solid, plan, b)
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q.put({"block": b, "seconds": dt, "segments": r.n_segments, "bytes": r.part.n_bytes,
           "peak_rss_mb": rss / 1024.0, "rss_before_mb": rss0 / 1024.0})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=6, help="blocks to run as a sample")
    ap.add_argument("--hatch-um", type=float, default=0.2)
    ap.add_argument("--slice-um", type=float, default=0.5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cluster_plan.json"))
    a = ap.parse_args(argv)

    from bioslicer.blockrun import plan_blocks
    from bioslicer.cluster import projected_wall_s
    from bioslicer.pipeline import cells_to_run
    from bioslicer.recipe import Recipe

    t = time.perf_counter()
    solid = build_solid()
    pr = plan_printer()
    rec = Recipe.from_printer(pr).updated(hatch_um=a.hatch_um, slice_um=a.slice_um)
    grid, lz = plan_blocks(solid, rec, pr)
    todo = cells_to_run(solid, rec, grid)
    plan_s = time.perf_counter() - t
    # a sample spread over the job: middle tiers and interior cells
    rng = np.random.default_rng(0)
    sample = sorted(int(b) for b in rng.choice(todo, size=min(a.blocks, len(todo)), replace=False))
    ctx = mp.get_context("spawn")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bioslicer-plan-") as tmp:
        for b in sample:
            q = ctx.Queue()
            p = ctx.Process(target=_child, args=((b, a.hatch_um, a.slice_um, tmp), q))
            p.start()
            rows.append(q.get())
            p.join()
            print(f"block {b}: {rows[-1]['seconds']:.1f} s, {rows[-1]['segments']:,} segments, "
                  f"{rows[-1]['peak_rss_mb']:.0f} MB peak", flush=True)
    per_block = float(np.mean([r["seconds"] for r in rows]))
    seg = float(np.mean([r["segments"] for r in rows]))
    mb = float(np.mean([r["bytes"] for r in rows])) / 1e6
    doc = {
        "construct": "channel block 10 x 10 x 10 mm (sample channel block scaled x10, 6-level tree)",
        "printer": pr.name, "hatch_um": a.hatch_um, "slice_um": a.slice_um,
        "faces": int(len(solid.faces)), "layers": int(len(lz)),
        "grid": [grid.nx, grid.ny, grid.nz], "blocks_in_grid": grid.n_blocks(), "blocks_to_run": len(todo),
        "plan_s": plan_s, "sample": rows,
        "per_block_s": per_block, "per_block_segments": seg, "per_block_program_mb": mb,
        "projected_segments": seg * len(todo), "projected_program_gb": mb * len(todo) / 1e3,
        "projected_wall_s": {str(w): projected_wall_s(per_block, len(todo), w) for w in (1, 8, 32, 128)},
        "per_worker_peak_mb": max(r["peak_rss_mb"] for r in rows),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"grid {grid.nx} x {grid.ny} x {grid.nz} = {grid.n_blocks()} blocks, {len(todo)} to run; "
          f"{per_block:.1f} s and {doc['per_worker_peak_mb']:.0f} MB per block; projected "
          + ", ".join(f"{w} workers {doc['projected_wall_s'][str(w)] / 3600:.2f} h" for w in (1, 8, 32, 128)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
