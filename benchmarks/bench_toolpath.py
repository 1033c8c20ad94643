"""Benchmark: mesh -> full toolpath (strategy + exposure) on the bundled vascular block.

Reference job (issue 4): ``meshes/channel_block.stl`` (1000 x 800 x 1000 µm hydrogel block with a
vessel channel tree), solid strategy, hatch 0.2 µm, slices 0.5 µm (2000 layers, ~10^7 hatch
segments), contours from the printer defaults. Target: under 60 s end to end and under 4 GB
peak memory on 2 cores.

Side by side with the usual Python route on the same mesh and parameters:
``trimesh.section_multiplane`` + shapely (contour offsets with ``buffer``, hatch lines clipped
with ``intersection``), timed on a sample of layers and extrapolated to all layers. PySLM
(the metal-AM slicer, published as ``PythonSLM``) is compared by ``benchmarks/run.py`` when it
is installed; this script prints its status.

Usage::

    .venv/bin/python benchmarks/bench_toolpath.py                 # the reference job
    .venv/bin/python benchmarks/bench_toolpath.py --z-max-um 100  # a quick partial run
    .venv/bin/python benchmarks/bench_toolpath.py --json

Run the whole process under ``/usr/bin/time -v`` for an outside view of wall time and peak RSS;
the script also reports its own peak RSS (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/peers.py


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB


def warm_up(printer) -> float:
    """Run every kernel once on a tiny box (numba cache load or compile); seconds taken."""
    import trimesh

    from bioslicer.planning import plan_toolpath
    from bioslicer.recipe import Recipe

    t = time.perf_counter()
    box = trimesh.creation.box(extents=(10, 10, 3))
    plan_toolpath(box, Recipe.from_printer(printer).updated(hatch_um=0.5, slice_um=1.0), printer)
    return time.perf_counter() - t


def run_bioslicer(mesh_path, printer, hatch_um, slice_um, z_max_um=None) -> dict:
    from bioslicer.mesh import load_mesh
    from bioslicer.planning import plan_toolpath
    from bioslicer.recipe import Recipe

    t0 = time.perf_counter()
    solid = load_mesh(mesh_path, printer=printer)
    t1 = time.perf_counter()
    if z_max_um is not None:
        solid = _crop(solid, z_max_um)
    rec = Recipe.from_printer(printer).updated(strategy="solid", hatch_um=hatch_um, slice_um=slice_um)
    tp, rep = plan_toolpath(solid, rec, printer)
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "plan_s": t2 - t1, "total_s": t2 - t0, "layers": tp.n_layers,
            "marks": tp.n_marks, "segments": tp.n_segments, "points": tp.n_points,
            "contours": rep["marks_by_kind"]["contour"], "hatch": rep["marks_by_kind"]["hatch"],
            "mark_length_m": rep["mark_length_um"] / 1e6, "dropped_segments": rep["dropped_segments"],
            "contour_count": rec.contour_count, "angle_step_deg": rec.hatch_angle_step_deg}


def _crop(solid, z_max_um):
    """The solid cut at z_max_um (for quick partial runs)."""
    import trimesh

    from bioslicer.mesh import solid_from_trimesh

    m = solid.to_trimesh()
    b = m.bounds
    keep = trimesh.creation.box(bounds=[b[0] - 1, [b[1][0] + 1, b[1][1] + 1, b[0][2] + z_max_um]])
    return solid_from_trimesh(m.intersection(keep), name=solid.name)


def run_peer(mesh_path, hatch_um, slice_um, contour_count, contour_spacing_um, sample_layers, z_max_um=None,
             angle_step_deg=90.0, contour_offset_um=0.0) -> dict:
    """trimesh.section_multiplane + shapely (``peers.multiplane_toolpath``) on a sample of layers, extrapolated."""
    from peers import multiplane_toolpath, trimesh_load

    from bioslicer.slicing import layer_heights

    mesh = trimesh_load(mesh_path)
    zmin, zmax = mesh.bounds[0, 2], mesh.bounds[1, 2]
    if z_max_um is not None:
        zmax = min(zmax, zmin + z_max_um)
    lz = layer_heights(zmin, zmax, slice_um)
    idx = np.unique(np.linspace(0, len(lz) - 1, min(sample_layers, len(lz))).round().astype(int))
    ang = np.mod(idx * angle_step_deg, 180.0)
    t = time.perf_counter()
    r = multiplane_toolpath(mesh, lz[idx], hatch_um, ang, contour_count, contour_spacing_um, contour_offset_um)
    dt = time.perf_counter() - t
    return {"sample_layers": len(idx), "sample_s": dt, "per_layer_s": dt / len(idx),
            "total_s_extrapolated": dt / len(idx) * len(lz),
            "segments_extrapolated": r["hatch_segments"] / len(idx) * len(lz)}


def pyslm_status() -> str:
    from peers import PYSLM_PIP, pyslm_available

    if not pyslm_available():
        return f"PySLM: not installed, not run ({PYSLM_PIP}); benchmarks/run.py runs it when importable"
    return "PySLM importable: benchmarks/run.py --only toolpath compares it"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", default=str(ROOT / "meshes" / "channel_block.stl"))
    ap.add_argument("--printer", default="nanoscribe-gt2-25x")
    ap.add_argument("--hatch-um", type=float, default=0.2)
    ap.add_argument("--slice-um", type=float, default=0.5)
    ap.add_argument("--sample-layers", type=int, default=12, help="layers timed for the peer (extrapolated)")
    ap.add_argument("--z-max-um", type=float, default=None, help="only the bottom of the part (quick runs)")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    from bioslicer.printers import load_printer

    printer = load_printer(a.printer)
    t0 = time.perf_counter()
    warm_s = warm_up(printer)
    ours = run_bioslicer(a.mesh, printer, a.hatch_um, a.slice_um, a.z_max_um)
    ours["warmup_s"] = warm_s
    ours["end_to_end_s"] = time.perf_counter() - t0
    ours["peak_rss_gb"] = _rss_gb()
    out = {"mesh": Path(a.mesh).name, "hatch_um": a.hatch_um, "slice_um": a.slice_um, "bioslicer": ours,
           "pyslm": pyslm_status()}
    if not a.no_peer:
        peer = run_peer(a.mesh, a.hatch_um, a.slice_um, ours["contour_count"], printer.defaults.get(
            "contour_spacing_um", 0.2), a.sample_layers, a.z_max_um, angle_step_deg=ours["angle_step_deg"])
        out["trimesh_shapely"] = peer
        out["speedup_vs_trimesh_shapely"] = peer["total_s_extrapolated"] / ours["plan_s"]
    if a.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    o = ours
    print(f"mesh {out['mesh']}  hatch {a.hatch_um} µm  slices {a.slice_um} µm  solid, {o['contour_count']} contours")
    print(f"bioslicer: {o['layers']} layers, {o['hatch']:,} hatch + {o['contours']:,} contour marks, "
          f"{o['segments']:,} segments, {o['mark_length_m']:.1f} m of marks, {o['dropped_segments']} dropped")
    print(f"  warm-up (numba cache/compile) {o['warmup_s']:.1f} s | load {o['load_s']:.1f} s | "
          f"plan (strategy + exposure) {o['plan_s']:.1f} s | end to end {o['end_to_end_s']:.1f} s | "
          f"peak RSS {o['peak_rss_gb']:.2f} GB")
    if "trimesh_shapely" in out:
        p = out["trimesh_shapely"]
        print(f"trimesh.section_multiplane + shapely: {p['per_layer_s'] * 1e3:.0f} ms/layer on {p['sample_layers']} "
              f"layers -> {p['total_s_extrapolated']:.0f} s extrapolated "
              f"({p['segments_extrapolated']:,.0f} segments)")
        print(f"ratio (trimesh+shapely / bioslicer plan): {out['speedup_vs_trimesh_shapely']:.1f}x")
    print(out["pyslm"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
