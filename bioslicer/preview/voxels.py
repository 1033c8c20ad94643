"""The sliced solid for the 3-D scene: a coarse voxel occupancy from the project's voxel kernel."""

from __future__ import annotations

import numpy as np

from ..errors import BioslicerError


def voxelize_mesh(mesh, max_cells: int = 128, max_bytes: int = 1 << 28):
    """Rasterise a closed mesh into a coarse cubic voxel occupancy for previews (nonzero winding).

    A thin wrapper of :func:`bioslicer.slicing.voxelize` (the span kernel) with cubic voxels
    sized so the longest side of the mesh bounds has ``max_cells`` voxels.

    Parameters
    ----------
    mesh : trimesh.Trimesh, bioslicer Solid or anything with vertices/faces (µm)
    max_cells : int
        Voxels along the longest side of the mesh bounds.
    max_bytes : int
        Refuse a grid larger than this many bytes (one byte per voxel).

    Returns
    -------
    occupancy : (nz, ny, nx) bool
    origin_um : (3,) float64
        Lower corner of voxel [0, 0, 0] (x, y, z), µm.
    voxel_um : (3,) float64
        Voxel size (dx, dy, dz), µm (cubic).
    """
    from ..slicing import voxelize

    V = getattr(mesh, "vertices_um", None)
    V = np.asarray(V if V is not None else mesh.vertices, np.float64).reshape(-1, 3)
    if len(np.asarray(mesh.faces)) == 0:
        raise BioslicerError("the mesh has no faces to voxelise")
    ext = float(np.max(V.max(axis=0) - V.min(axis=0)))
    if not ext > 0:
        raise BioslicerError("the mesh is flat or empty; it has no volume to show")
    h = ext / int(max_cells)
    g = voxelize(mesh, h, h, max_bytes=max_bytes, fill_rule="nonzero")
    return g.dense(), np.asarray(g.origin_um, np.float64).copy(), np.asarray(g.voxel_um, np.float64).copy()
