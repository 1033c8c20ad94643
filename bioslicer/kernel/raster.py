"""Numba kernel that rasterises laser-on moves into a voxel grid (design vs printed, ``preview/compare.py``)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def rasterise_segments(x, y, z, seg, origin, vox, shape_zyx, k0, grid):
    """Set the voxels of ``grid`` that the moves ``seg[i] - 1 -> seg[i]`` pass through.

    Each move is sampled at ``n = ceil(4 |Δ/vox|) + 1`` evenly spaced points (both ends
    included); a sample sets the voxel holding it unless it lies on a voxel face in x or y
    (within 1e-6 voxel: a contour on the part's surface prints neither neighbour). Indices are
    clamped to the part's grid ``shape_zyx``; ``grid`` holds layers ``k0 .. k0 + len(grid)``.

    Parameters
    ----------
    x, y, z : (N,) float64
        Move end points, µm, in the grid's frame (before subtracting ``origin``).
    seg : (S,) int64
        Indices of the laser-on moves whose start point is move ``seg - 1``.
    origin, vox : (3,) float64
        Lower corner of voxel [0, 0, 0] and the voxel size (x, y, z), µm.
    shape_zyx : (3,) int64
        The whole grid's shape (the clamp).
    k0 : int
        First layer of ``grid``.
    grid : (nz, ny, nx) bool
        Filled in place.
    """
    nz = grid.shape[0]
    for i in range(len(seg)):
        s = seg[i]
        p0x = x[s - 1] - origin[0]
        p0y = y[s - 1] - origin[1]
        p0z = z[s - 1] - origin[2]
        dx = (x[s] - origin[0]) - p0x
        dy = (y[s] - origin[1]) - p0y
        dz = (z[s] - origin[2]) - p0z
        a = dx / vox[0]
        b = dy / vox[1]
        c = dz / vox[2]
        n = max(np.int64(math.ceil(math.sqrt(a * a + b * b + c * c) * 4)), np.int64(1)) + 1
        den = float(max(n - 1, 1))
        for j in range(n):
            t = j / den
            fx = (p0x + dx * t) / vox[0]
            fy = (p0y + dy * t) / vox[1]
            fz = (p0z + dz * t) / vox[2]
            if abs(fx - np.rint(fx)) < 1e-6 or abs(fy - np.rint(fy)) < 1e-6:
                continue
            ix = min(max(np.int64(math.floor(fx)), 0), shape_zyx[2] - 1)
            iy = min(max(np.int64(math.floor(fy)), 0), shape_zyx[1] - 1)
            iz = min(max(np.int64(math.floor(fz)), 0), shape_zyx[0] - 1) - k0
            if 0 <= iz < nz:
                grid[iz, iy, ix] = True
