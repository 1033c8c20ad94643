"""Centerline slicing against meshing: a 10^4-segment vessel tree at 0.2 x 0.5 µm.

Row 1: the exact span kernel on the tree (``bioslicer.centerline``), spans per second.
Row 2: the usual way: mesh the same tree with manifold3d (hull of each segment's end spheres,
one union), then slice the mesh with the mesh span kernel; the time of meshing alone is given
too (the goal: the centerline slice is faster than meshing alone).

    .venv/bin/python benchmarks/bench_centerline.py [--segments 10000] [--hatch 0.2] [--slice 0.5]
        [--sections 16] [--out benchmarks/results/centerline.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def random_tree(n_segments: int, seed: int = 0, root_radius_um: float = 20.0, root_length_um: float = 40.0):
    """A binary vessel tree grown breadth-first (Murray radii, lengths ~ radius, turning branches)."""
    from bioslicer.centerline import Tree

    rng = np.random.default_rng(seed)
    pts = [np.zeros(3), np.array([root_length_um, 0.0, 0.0])]
    rad = [root_radius_um, root_radius_um]
    edges = [(0, 1)]
    dirs = {1: np.array([1.0, 0.0, 0.0])}
    queue = [1]
    while len(edges) < n_segments:
        tip = queue.pop(0)
        d0 = dirs[tip]
        r = rad[tip] * 2 ** (-1 / 3)
        for _ in range(2):
            if len(edges) >= n_segments:
                break
            d = d0 + rng.normal(size=3) * 0.6
            d /= np.linalg.norm(d)
            length = root_length_um * r / root_radius_um * rng.uniform(3.0, 5.0)
            pts.append(pts[tip] + d * length)
            rad.append(r)
            k = len(pts) - 1
            edges.append((tip, k))
            dirs[k] = d
            queue.append(k)
    return Tree(np.array(pts), np.array(rad), np.array(edges))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=10_000)
    ap.add_argument("--hatch", type=float, default=0.2)
    ap.add_argument("--slice", type=float, default=0.5)
    ap.add_argument("--sections", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "centerline.json"))
    a = ap.parse_args()

    from bioslicer.mesh import Solid
    from bioslicer.slicing import layer_heights, slice_spans

    tree = random_tree(a.segments)
    b = tree.bounds_um
    lz = layer_heights(b[0, 2], b[1, 2], a.slice)
    angle = np.mod(np.arange(len(lz)) * 30.0, 180.0)
    small = lz[: 2]
    slice_spans(tree, small, a.hatch, angle[:2], 0.5 * a.hatch)          # compile outside the clock
    t = time.perf_counter()
    sp = slice_spans(tree, lz, a.hatch, angle, 0.5 * a.hatch)
    t_tree = time.perf_counter() - t

    t = time.perf_counter()
    mesh = tree.to_trimesh(a.sections)
    t_mesh = time.perf_counter() - t
    solid = Solid(mesh.vertices, mesh.faces)
    slice_spans(solid, small, a.hatch, angle[:2], 0.5 * a.hatch)
    t = time.perf_counter()
    sm = slice_spans(solid, lz, a.hatch, angle, 0.5 * a.hatch)
    t_slice = time.perf_counter() - t

    res = {
        "segments": tree.n_segments, "size_um": tree.size_um.tolist(), "layers": len(lz), "hatch_um": a.hatch,
        "slice_um": a.slice, "tree_spans": sp.n_spans, "tree_s": t_tree, "tree_spans_per_s": sp.n_spans / t_tree,
        "mesh_faces": int(len(mesh.faces)), "mesh_sections": a.sections, "manifold_mesh_s": t_mesh,
        "mesh_slice_s": t_slice, "mesh_spans": sm.n_spans,
        "mesh_spans_per_s": sm.n_spans / (t_mesh + t_slice),
        "volume_tree_um3": sp.volume_um3(a.slice), "volume_mesh_um3": sm.volume_um3(a.slice),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print("| stage | bioslicer | peer | speed-up |")
    print("|---|---|---|---|")
    print(f"| centerline tree {tree.n_segments} segments, {len(lz)} layers at {a.hatch} x {a.slice} µm | "
          f"{t_tree:.1f} s, {res['tree_spans_per_s'] / 1e6:.2f} M spans/s | manifold3d mesh {t_mesh:.1f} s "
          f"+ mesh slice {t_slice:.1f} s ({res['mesh_spans_per_s'] / 1e6:.2f} M spans/s) | "
          f"{(t_mesh + t_slice) / t_tree:.1f}x (meshing alone {t_mesh / t_tree:.1f}x) |")


if __name__ == "__main__":
    main()
