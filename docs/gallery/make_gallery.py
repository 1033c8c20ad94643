"""Regenerate the preview gallery (docs/gallery/*.png) from the sample meshes in meshes/.

Each construct is sliced with the printer and recipe named below (coarser than production
settings where noted, so the script runs in a few minutes) through ``pipeline.plan_job`` (the
job's blocks run by ``blockrun.run_block`` and joined: the toolpath a job writes) and rendered
with ``bioslicer.preview``. Run from the repository root:

    .venv/bin/python docs/gallery/make_gallery.py
"""

from __future__ import annotations

import time
from pathlib import Path

from bioslicer import preview as pvw
from bioslicer.mesh import load_mesh
from bioslicer.pipeline import plan_job

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
SIZE = (1000, 750)

# name, mesh, printer, recipe overrides, 3-D colouring
CASES = [
    ("channel_block", "channel_block.stl", "nanoscribe-gt2-25x", {"slice_um": 2.0, "hatch_um": 1.0}, "kind"),
    ("woodpile", "woodpile.stl", "nanoscribe-gt2-25x", {"slice_um": 1.0, "hatch_um": 0.5}, "layer"),
    ("gyroid", "gyroid.stl", "nanoscribe-gt2-63x", {"slice_um": 1.0, "hatch_um": 0.5}, "block"),
    ("vessel_tree", "vessel_tree.stl", "nanoscribe-gt2-25x",
     {"slice_um": 2.0, "hatch_um": 1.0, "depth_mode": "exponential", "attenuation_length_um": 800.0}, "power"),
    ("calibration", "calibration.stl", "lab-daq-galvo", {"slice_um": 0.5, "hatch_um": 0.3}, "kind"),
]


def main() -> None:
    for name, mesh_file, printer, overrides, color in CASES:
        t = time.perf_counter()
        job = plan_job(ROOT / "meshes" / mesh_file, printer, overrides=overrides)
        tp, solid = job.toolpath, job.solid
        t_plan = time.perf_counter() - t
        t = time.perf_counter()
        title = f"{mesh_file} on {printer} (colour: {color})"
        pvw.render_png(OUT / f"{name}_3d.png", toolpath=tp, mesh=solid, color=color, title=title, window_size=SIZE)
        k = pvw.default_layer(tp)
        rings = pvw.layer_contours(solid, tp.layer_z_um[k])
        pvw.render_layer_png(OUT / f"{name}_layer.png", tp, k, printer=job.printer, contours=rings,
                             window_size=SIZE, title=f"{mesh_file}: layer {k} of {tp.n_layers}, "
                                                     f"z = {tp.layer_z_um[k]:g} µm")
        print(f"{name}: {tp.n_segments:,} segments, planned in {t_plan:.1f} s, rendered in "
              f"{time.perf_counter() - t:.1f} s")
    # the mesh alone with its voxelised solid (what `bioslicer preview MESH --solid` shows)
    solid = load_mesh(ROOT / "meshes" / "vessel_tree.stl")
    pvw.render_png(OUT / "vessel_tree_solid.png", mesh=solid, voxels=pvw.voxelize_mesh(solid, 160),
                   title="vessel_tree.stl: mesh and voxelised solid", window_size=SIZE)


if __name__ == "__main__":
    main()
