"""Numba kernels: rasterise spans into a voxel grid (boolean or bit-packed along x)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .pool import run_chunks


@njit(cache=True)
def _first_center_at_or_above(u, ox, dx):
    """Smallest i with ``ox + (i + 0.5) * dx >= u``."""
    i = np.int64(np.ceil((u - ox) / dx - 0.5))
    while ox + (np.float64(i - 1) + 0.5) * dx >= u:
        i -= 1
    while ox + (np.float64(i) + 0.5) * dx < u:
        i += 1
    return i


def fill_voxels_bool(layer_row_start, row_iy, row_span_start, u0, u1, ox, dx, nx, grid):
    """Mark voxels whose centre x lies in a span ``[u0, u1)`` of their row.

    Parameters
    ----------
    layer_row_start : (nz+1,) int64; row_iy : (R,) int64 y index of each row;
    row_span_start : (R+1,) int64; u0, u1 : (S,) float64 span ends, µm.
    ox, dx : grid origin and voxel size along x, µm; nx : voxels along x.
    grid : (nz, ny, nx) bool, written in place.
    """
    run_chunks(_fill_voxels_bool_range, layer_row_start.shape[0] - 1, layer_row_start, row_iy, row_span_start, u0, u1,
               float(ox), float(dx), int(nx), grid)


@njit(cache=True, nogil=True)
def _fill_voxels_bool_range(k_lo, k_hi, layer_row_start, row_iy, row_span_start, u0, u1, ox, dx, nx, grid):
    """:func:`fill_voxels_bool` of layers ``k_lo .. k_hi - 1``."""
    for k in range(k_lo, k_hi):
        for r in range(layer_row_start[k], layer_row_start[k + 1]):
            iy = row_iy[r]
            for s in range(row_span_start[r], row_span_start[r + 1]):
                a = max(_first_center_at_or_above(u0[s], ox, dx), 0)
                b = min(_first_center_at_or_above(u1[s], ox, dx), nx)
                for i in range(a, b):
                    grid[k, iy, i] = True


@njit(cache=True, parallel=True)
def fill_voxels_packed(layer_row_start, row_iy, row_span_start, u0, u1, ox, dx, nx, grid):
    """As :func:`fill_voxels_bool` into (nz, ny, ceil(nx/8)) uint8, MSB first like ``numpy.packbits``."""
    nz = layer_row_start.shape[0] - 1
    for k in prange(nz):
        for r in range(layer_row_start[k], layer_row_start[k + 1]):
            iy = row_iy[r]
            for s in range(row_span_start[r], row_span_start[r + 1]):
                a = max(_first_center_at_or_above(u0[s], ox, dx), 0)
                b = min(_first_center_at_or_above(u1[s], ox, dx), nx)
                i = a
                while i < b and (i & 7) != 0:
                    grid[k, iy, i >> 3] |= np.uint8(0x80 >> (i & 7))
                    i += 1
                while i + 8 <= b:
                    grid[k, iy, i >> 3] = np.uint8(0xFF)
                    i += 8
                while i < b:
                    grid[k, iy, i >> 3] |= np.uint8(0x80 >> (i & 7))
                    i += 1
