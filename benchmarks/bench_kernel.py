"""Benchmark the span kernel against trimesh's voxelizer and section_multiplane + shapely.

Run from the repository root:  .venv/bin/python benchmarks/bench_kernel.py [--quick] [--reps N] [--cold]

Prints, in one run (medians of --reps runs; the machine is shared, so CPU seconds are shown too):
* whole-part ``slice_spans`` on the sample constructs (meshes/*.stl) at 0.2 µm hatch x 0.5 µm
  slices, rows rotated 30° per layer: spans/s end to end (Python wrapper included) with the JIT
  excluded (warm calls), and the first call in a fresh process with the on-disk Numba cache
  (import + cache load included; ``--cold`` also compiles from scratch in an empty cache);
* the same job in 200-layer chunks (constant memory), voxel-equivalents/s (bounding-grid voxels
  covered per second);
* ``spans_from_contours`` (the hatching-with-insets path) and ``slice_contours`` raw and with
  ``resolve=True`` (per-layer cost of the resolve, and how many layers still need shapely);
* the same mesh at the same resolution through trimesh's voxelizer (+ fill) and through
  trimesh.section_multiplane + shapely hatch clipping, on a subset that those can finish, as
  ratios against bioslicer on exactly that subset.
Not a timed test: figures depend on the machine (2 shared cores here).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bioslicer.mesh import load_mesh, solid_from_trimesh  # noqa: E402
from bioslicer.slicing import (layer_heights, slice_contours, slice_spans, spans_from_contours,  # noqa: E402
                               voxelize)


def _vessel_fallback():
    """A vessel-like mesh of overlapping cylinders (used when meshes/ is empty)."""
    import trimesh

    parts = []
    rng = np.random.default_rng(0)
    for _ in range(15):
        c = trimesh.creation.cylinder(radius=rng.uniform(20, 60), height=600, sections=24)
        c.apply_transform(trimesh.transformations.random_rotation_matrix(rng.random(3)))
        c.apply_translation(rng.uniform(200, 800, 3))
        parts.append(c)
    return solid_from_trimesh(trimesh.util.concatenate(parts), name="vessel_fallback")


def _job(solid, dy, dz, angle_step=30.0, layer_chunk=200):
    """Slice the whole part in layer chunks (constant memory); returns (s, spans, crossings-ish, grid voxels)."""
    lo, hi = solid.bounds_um
    z = layer_heights(lo[2], hi[2], dz)
    ang = (np.arange(len(z)) * angle_step) % 180.0
    t = time.perf_counter()
    n_spans = 0
    length = 0.0
    for k in range(0, len(z), layer_chunk):
        sp = slice_spans(solid, z[k:k + layer_chunk], dy, angle_deg=ang[k:k + layer_chunk])
        n_spans += sp.n_spans
        length += sp.total_length_um()
    dt = time.perf_counter() - t
    nx, ny = np.ceil((hi[:2] - lo[:2]) / dy)
    voxels = float(nx * ny * len(z))
    return dt, n_spans, voxels, len(z), length * dy * dz


def _trimesh_voxel_ratio(solid, pitch, sub_um):
    """trimesh voxelized(pitch).fill() vs bioslicer voxelize on a sub-box of the part."""
    import trimesh

    lo, hi = solid.bounds_um
    c = (lo + hi) / 2
    box = trimesh.creation.box(extents=[sub_um] * 3)
    box.apply_translation(c)
    part = solid.to_trimesh().slice_plane(box.facets_origin, -box.facets_normal, cap=True)
    sub = solid_from_trimesh(part, check=False)
    t = time.perf_counter()
    vg = part.voxelized(pitch).fill()
    t_tm = time.perf_counter() - t
    n_tm = int(vg.matrix.sum())
    voxelize(sub, pitch, pitch)  # warm
    t = time.perf_counter()
    mine = voxelize(sub, pitch, pitch, packed=True)
    t_me = time.perf_counter() - t
    return t_tm, t_me, n_tm, mine.count(), int(np.prod(mine.shape_zyx))


def _multiplane_ratio(solid, dy, dz, n_layers):
    """trimesh.section_multiplane + shapely hatch clipping vs bioslicer on the same layers."""
    import shapely
    from shapely.geometry import MultiLineString

    tm = solid.to_trimesh()
    lo, hi = solid.bounds_um
    z = layer_heights(lo[2], hi[2], dz)
    mid = len(z) // 2
    zz = z[mid:mid + n_layers]
    t = time.perf_counter()
    secs = tm.section_multiplane(plane_origin=[0, 0, 0], plane_normal=[0, 0, 1], heights=list(zz))
    n_seg = 0
    ys = np.arange(np.floor(lo[1] / dy), np.ceil(hi[1] / dy)) * dy
    lines = MultiLineString([[(lo[0] - 1, y), (hi[0] + 1, y)] for y in ys])
    for s in secs:
        if s is None:
            continue
        for poly in s.polygons_full:
            clip = shapely.intersection(lines, poly)
            n_seg += len(shapely.get_parts(clip))
    t_tm = time.perf_counter() - t
    slice_spans(solid, zz, dy)  # warm
    t = time.perf_counter()
    sp = slice_spans(solid, zz, dy)
    t_me = time.perf_counter() - t
    return t_tm, t_me, n_seg, sp.n_spans


def _timed(f, reps):
    """Median wall and CPU seconds of reps calls, and the last result."""
    wall, cpu = [], []
    r = None
    for _ in range(reps):
        c0 = time.process_time()
        t0 = time.perf_counter()
        r = f()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu)), r


_FIRST_CALL = """
import sys, time
t0 = time.perf_counter()
import numpy as np
sys.path.insert(0, {root!r})
from bioslicer.mesh import load_mesh
from bioslicer.slicing import layer_heights, slice_spans
s = load_mesh({path!r})
z = layer_heights(s.bounds_um[0][2], s.bounds_um[1][2], {dz})
t1 = time.perf_counter()
sp = slice_spans(s, z, {dy}, angle_deg=(np.arange(len(z)) * 30.0) % 180.0)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, sp.n_spans)
"""


def _first_call(path, dy, dz, cache_dir=None):
    """(import + load s, first slice_spans s) in a fresh process; cache_dir: empty Numba cache (compile)."""
    env = dict(os.environ)
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    code = _FIRST_CALL.format(root=str(ROOT), path=str(path), dy=dy, dz=dz)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    a, b, _ = out.stdout.split()
    return float(a), float(b)


def _whole(solid, dy, dz, reps):
    lo, hi = solid.bounds_um
    z = layer_heights(lo[2], hi[2], dz)
    ang = (np.arange(len(z)) * 30.0) % 180.0
    slice_spans(solid, z[:20], dy, angle_deg=ang[:20])  # JIT / cache load
    return _timed(lambda: slice_spans(solid, z, dy, angle_deg=ang), reps), len(z)


def _contour_figures(solid, dy, dz, reps):
    lo, hi = solid.bounds_um
    z = layer_heights(lo[2], hi[2], dz)
    ang = (np.arange(len(z)) * 30.0) % 180.0
    slice_contours(solid, z[:20])
    t_raw, _, raw = _timed(lambda: slice_contours(solid, z, resolve=False), reps)
    t_res, _, res = _timed(lambda: slice_contours(solid, z), reps)
    spans_from_contours(res, dy, angle_deg=ang[:])  # warm
    t_sfc, c_sfc, sp = _timed(lambda: spans_from_contours(res, dy, angle_deg=ang), reps)
    multi = int(np.sum(np.diff(raw.layer_ring_start) > 1))
    return len(z), t_raw, t_res, multi, t_sfc, c_sfc, sp.n_spans


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="coarser grid (1 x 1 µm) for a fast look")
    ap.add_argument("--reps", type=int, default=5, help="runs per figure (medians are printed)")
    ap.add_argument("--cold", action="store_true", help="also time a first call that compiles into an empty cache")
    args = ap.parse_args(argv)
    dy, dz = (1.0, 1.0) if args.quick else (0.2, 0.5)
    meshes = sorted((ROOT / "meshes").glob("*.stl"))
    solids = [load_mesh(p) for p in meshes] or [_vessel_fallback()]
    paths = dict(zip([s.name for s in solids], meshes))
    import numba

    print(f"bioslicer span kernel, hatch {dy} µm x slice {dz} µm, rows rotated 30° per layer, "
          f"{numba.get_num_threads()} threads, medians of {args.reps} runs (CPU s = all threads)")
    print(f"{'mesh':22s} {'faces':>7s} {'layers':>6s} {'spans':>11s} {'wall s':>7s} {'CPU s':>7s} "
          f"{'Mspans/s':>9s} {'1st call s':>10s} {'import s':>8s}")
    for s in solids:
        (t, c, sp), L = _whole(s, dy, dz, args.reps)
        if s.name in paths:
            t_imp, t_first = _first_call(paths[s.name], dy, dz)
        else:
            t_imp = t_first = float("nan")
        print(f"{s.name:22s} {len(s.faces):7d} {L:6d} {sp.n_spans:11d} {t:7.3f} {c:7.3f} {sp.n_spans / t / 1e6:9.1f} "
              f"{t_first:10.2f} {t_imp:8.2f}")
    ref = next((s for s in solids if "channel" in s.name), solids[0])
    if args.cold and ref.name in paths:
        with tempfile.TemporaryDirectory() as d:
            _, t_cold = _first_call(paths[ref.name], dy, dz, cache_dir=d)
        print(f"first call compiling into an empty Numba cache ({ref.name}): {t_cold:.1f} s")

    print("\nin 200-layer chunks (constant memory), JIT excluded:")
    print(f"{'mesh':22s} {'spans':>11s} {'wall s':>7s} {'Mspans/s':>9s} {'Gvox-eq/s':>10s}")
    for s in solids:
        _job(s, dy, dz)
        ts = [_job(s, dy, dz) for _ in range(max(1, args.reps // 2))]
        t = float(np.median([r[0] for r in ts]))
        n, vox = ts[0][1], ts[0][2]
        print(f"{s.name:22s} {n:11d} {t:7.3f} {n / t / 1e6:9.1f} {vox / t / 1e9:10.2f}")

    print("\ncontours (every layer) and spans from contours (hatching with insets), JIT excluded:")
    print(f"{'mesh':22s} {'layers':>6s} {'raw s':>7s} {'resolve s':>9s} {'ms/layer':>8s} {'multi-ring':>10s} "
          f"{'sfc s':>7s} {'sfc CPU':>7s} {'Mspans/s':>9s}")
    for s in solids:
        L, t_raw, t_res, multi, t_sfc, c_sfc, n = _contour_figures(s, dy, dz, args.reps)
        print(f"{s.name:22s} {L:6d} {t_raw:7.3f} {t_res:9.3f} {(t_res - t_raw) / max(L, 1) * 1e3:8.3f} {multi:10d} "
              f"{t_sfc:7.3f} {c_sfc:7.3f} {n / t_sfc / 1e6:9.1f}")

    print(f"\nreference construct {ref.name}: {np.prod(ref.size_um) / 1e9:.2f} mm³ bounding box")
    t_tm, t_me, n_tm, n_me, n_grid = _trimesh_voxel_ratio(ref, 2.0 if not args.quick else 4.0, 200.0)
    print(f"trimesh voxelized().fill() vs bioslicer voxelize, pitch {2.0 if not args.quick else 4.0} µm on a "
          f"200 µm cube of it ({n_grid} voxels): trimesh {t_tm:.3f} s, bioslicer {t_me:.4f} s, "
          f"ratio {t_tm / t_me:.0f}x (occupied {n_tm} vs {n_me})")
    t_tm, t_me, n_tm, n_me = _multiplane_ratio(ref, dy, dz, 10)
    print(f"section_multiplane + shapely vs bioslicer, 10 layers at {dy} µm hatch: trimesh {t_tm:.3f} s, "
          f"bioslicer {t_me:.4f} s, ratio {t_tm / t_me:.0f}x (segments {n_tm} vs spans {n_me})")


if __name__ == "__main__":
    main()
