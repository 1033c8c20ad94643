"""Benchmark the span kernel against trimesh's voxelizer and section_multiplane + shapely.

Run from the repository root:  .venv/bin/python benchmarks/bench_kernel.py [--quick]

Prints, in one run:
* whole-job figures on the sample constructs (meshes/*.stl) at 0.2 µm hatch x 0.5 µm slices:
  spans/s and voxel-equivalents/s (bounding-grid voxels covered per second), JIT/cache load
  included (first call in this process) and excluded (second call);
* the same mesh at the same resolution through trimesh's voxelizer (+ fill) and through
  trimesh.section_multiplane + shapely hatch clipping, on a subset that those can finish, as
  ratios against bioslicer on exactly that subset.
Not a timed test: figures depend on the machine (2 shared cores here).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bioslicer.mesh import load_mesh, solid_from_trimesh  # noqa: E402
from bioslicer.slicing import layer_heights, slice_spans, voxelize  # noqa: E402


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="coarser grid (1 x 1 µm) for a fast look")
    args = ap.parse_args(argv)
    dy, dz = (1.0, 1.0) if args.quick else (0.2, 0.5)
    meshes = sorted((ROOT / "meshes").glob("*.stl"))
    solids = [load_mesh(p) for p in meshes] or [_vessel_fallback()]
    print(f"bioslicer span kernel, hatch {dy} µm x slice {dz} µm, rows rotated 30° per layer")
    print(f"{'mesh':22s} {'faces':>7s} {'layers':>6s} {'spans':>12s} {'first s':>8s} {'warm s':>8s} "
          f"{'Mspans/s':>9s} {'Gvox-eq/s':>10s}")
    for s in solids:
        t_first, n, vox, L, _ = _job(s, dy, dz)
        t_warm, n2, _, _, vol = _job(s, dy, dz)
        assert n == n2
        print(f"{s.name:22s} {len(s.faces):7d} {L:6d} {n:12d} {t_first:8.2f} {t_warm:8.2f} "
              f"{n / t_warm / 1e6:9.1f} {vox / t_warm / 1e9:10.2f}")
    ref = next((s for s in solids if "channel" in s.name), solids[0])
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
