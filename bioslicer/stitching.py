"""Stitching: split a toolpath larger than the galvo field into blocks the printer writes one
by one, moving the stage in between.

Geometry (all µm)
-----------------
* **Tiers in z.** Layers are grouped bottom-up into tiers of height ``h`` (at most the fine
  z range of the printer): a layer at height ``lz`` goes to tier ``floor((lz - z_bottom) / h)``.
  Every layer lies in exactly one tier; there is no overlap in z. The fine-axis zero of a tier
  is its bottom (lowered by how far marks dip below their layer height), so local z of every
  point is in ``[0, printer.z_range_um]``.
* **Grid in x/y.** Block walls are the lines ``u = gx0 + i * a`` and ``v = gy0 + j * a`` in
  sheared coordinates ``u = x - t``, ``v = y - t`` with ``t = (z - z0) * tan(shear_deg)`` and
  ``z0`` the tier's fine-axis zero: walls tilt in x and y by the shear angle over z and restart at
  each tier, so seams do not line up vertically. Block (i, j) writes its cell grown by half the
  overlap on every inner wall (the outer walls are open), so a strip of width ``overlap_um``
  centred on every inner wall is written by both neighbours and everything else by exactly one
  block. A mark crossing a wall is cut there (plus the half overlap); cut points are interpolated
  in x, y, z and power. A closed contour that is cut becomes open polylines.
* **Fit.** The written region of a block over the tier height ``H`` spans
  ``a + overlap + H * |tan(shear)|`` in x and in y; it must fit the largest square in the field
  (``printer.block_side_um``). The stage sits at the centre of that region.
* **Small parts.** A part whose points all fit the field around its x/y centre is one column of
  blocks centred on the part (no walls, no shear; the stage moves only between tiers).
* **Order.** Blocks are executed bottom-up by tier; within a tier ``"serpentine"`` goes row by
  row in y, alternating the x direction, and continues the snake into the next tier (which runs
  its rows in the opposite y order); ``"lexical"`` runs every tier and row from low x, low y.
* **Stage.** Part coordinates are stage coordinates plus ``printer.program["origin_um"]`` (if
  the profile has one). The x/y stage position of every block must lie in ``printer.stage_x_um``
  / ``stage_y_um``; in z the fine axis is zeroed at the part bottom (as ``FindInterfaceAt``
  does), so the z stage moves by the tier offsets from the origin z and these must lie in
  ``printer.stage_z_um``.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import BioslicerError
from .kernel import stitch as _k
from .printers import Printer, load_printer
from .progress import Progress, silent
from .toolpath import Blocks, Toolpath

BLOCK_ORDERS = ("serpentine", "lexical")
_MIN_PIECE_UM = 1e-9
_TOL_UM = 1e-6


def default_block_size_um(printer: Printer, overlap_um: float = 2.0, shear_deg: float = 0.0,
                          height_um: float | None = None) -> float:
    """Largest nominal block side that fits the printer's field.

    Parameters
    ----------
    printer : Printer
    overlap_um : float
        Overlap between neighbouring blocks, µm.
    shear_deg : float
        Shear angle of the block walls, degrees.
    height_um : float, optional
        Height over which the walls shear, µm (default: the printer's fine z range).

    Returns
    -------
    float
        ``printer.block_side_um - overlap_um - height_um * |tan(shear_deg)|``, µm (may be <= 0
        when the overlap and shear leave no room).
    """
    h = printer.z_range_um if height_um is None else height_um
    return printer.block_side_um - overlap_um - h * abs(math.tan(math.radians(shear_deg)))


def _block_sequence(nx: int, ny: int, nz: int, order: str) -> np.ndarray:
    """(nx*ny*nz,) dense cell ids ``(iz*ny + iy)*nx + ix`` in execution order."""
    seq = []
    row = 0
    for iz in range(nz):
        ys = range(ny) if (order == "lexical" or iz % 2 == 0) else range(ny - 1, -1, -1)
        for iy in ys:
            xs = range(nx) if (order == "lexical" or row % 2 == 0) else range(nx - 1, -1, -1)
            for ix in xs:
                seq.append((iz * ny + iy) * nx + ix)
            row += 1
    return np.asarray(seq, dtype=np.int64)


def stitch(toolpath: Toolpath, printer, block_size_um: float | None = None, overlap_um: float = 2.0,
           shear_deg: float = 0.0, order: str = "serpentine", progress: Progress = silent,
           block_height_um: float | None = None) -> Toolpath:
    """Split a toolpath into blocks that fit the printer's field.

    Parameters
    ----------
    toolpath : Toolpath
        Marks in absolute part coordinates (µm), ``mark_block == -1``, ordered layer by layer.
    printer : Printer or str
        Printer profile (or its name / path).
    block_size_um : float, optional
        Nominal block side (wall to wall), µm. Default: the largest that fits the field with the
        overlap and the shear offset (:func:`default_block_size_um`).
    overlap_um : float
        Width of the strip along every inner wall written by both neighbours, µm.
    shear_deg : float
        Tilt of the block walls over z, degrees (``|shear_deg| < 45``).
    order : str
        Block order: ``"serpentine"`` (meander in x/y, bottom-up in z) or ``"lexical"``.
    progress : callable
        ``progress(done, total, label)``.
    block_height_um : float, optional
        Tier height, µm (default and maximum: the printer's fine z range minus how far marks
        leave their layer height).

    Returns
    -------
    Toolpath
        A new toolpath: marks clipped to blocks, ``mark_block`` set, ``blocks`` a
        :class:`~bioslicer.toolpath.Blocks` in execution order (empty blocks dropped), marks sorted
        by block, then layer, then their original order. ``meta["stitching"]`` records the grid.
    """
    printer = load_printer(printer)
    if order == "meander":
        order = "serpentine"
    if order not in BLOCK_ORDERS:
        raise BioslicerError(f"unknown block order {order!r}; use one of {', '.join(BLOCK_ORDERS)}")
    if not (math.isfinite(overlap_um) and overlap_um >= 0):
        raise BioslicerError(f"block overlap must be >= 0 µm, got {overlap_um}")
    if not (math.isfinite(shear_deg) and abs(shear_deg) < 45.0):
        raise BioslicerError(f"block shear angle must be between -45 and 45 degrees, got {shear_deg}")
    if block_size_um is not None and not (math.isfinite(block_size_um) and block_size_um > 0):
        raise BioslicerError(f"block size must be > 0 µm, got {block_size_um}")
    if toolpath.blocks is not None or (toolpath.n_marks and toolpath.mark_block.max() >= 0):
        raise BioslicerError("toolpath is already stitched; stitch the unstitched toolpath from slicing")
    tp = toolpath
    field_meta = dict(field_shape=printer.field_shape, field_size_um=printer.field_size_um,
                      overlap_um=float(overlap_um), shear_deg=float(shear_deg))
    if tp.n_marks == 0:
        out = Toolpath.empty(tp.layer_z_um)
        out.blocks = Blocks(np.zeros((0, 3)), np.zeros((0, 3), np.int32), np.zeros((0, 3)), np.zeros((0, 3)),
                            **field_meta)
        out.meta = dict(tp.meta)
        return out
    progress(0, 4, "stitching")

    # ---------------------------------------------------------------- z tiers
    zb = _k.mark_z_bounds(tp.z_um, tp.mark_start)
    mark_lz = tp.layer_z_um[tp.mark_layer]
    dz_up = max(0.0, float((zb[:, 1] - mark_lz).max()))
    dz_down = max(0.0, float((mark_lz - zb[:, 0]).max()))
    used_layers = np.unique(tp.mark_layer)
    lz_used = tp.layer_z_um[used_layers]
    z_bottom = float(lz_used.min())
    part_h = float(lz_used.max()) - z_bottom
    h_max = printer.z_range_um - dz_up - dz_down
    if h_max <= 0:
        raise BioslicerError(
            f"marks leave their layer height by {dz_up + dz_down:g} µm, more than the printer's fine z range "
            f"{printer.z_range_um:g} µm; use thinner non-planar features or another printer")
    if block_height_um is None:
        h = h_max
    else:
        if not (math.isfinite(block_height_um) and 0 < block_height_um <= h_max + _TOL_UM):
            raise BioslicerError(
                f"block height {block_height_um:g} µm does not fit the fine z range; use 0 < height <= {h_max:g} µm")
        h = float(block_height_um)
    layer_tier = np.zeros(tp.n_layers, np.int64)
    layer_tier[used_layers] = np.floor((lz_used - z_bottom) / h + 1e-12).astype(np.int64)
    nz = int(layer_tier.max()) + 1
    tier_lo = z_bottom + h * np.arange(nz)
    tier_z0 = tier_lo - dz_down
    # height over which walls shear (largest local z of any layer)
    H = float(np.max(lz_used - tier_lo[layer_tier[used_layers]])) + dz_up + dz_down
    mark_tier = layer_tier[tp.mark_layer]
    mark_z0 = tier_z0[mark_tier]

    # ---------------------------------------------------------------- x/y grid
    tan_s = math.tan(math.radians(shear_deg))
    side = printer.block_side_um
    x, y, z, p = tp.x_um, tp.y_um, tp.z_um, tp.power_mw
    xlo, xhi = float(x.min()), float(x.max())
    ylo, yhi = float(y.min()), float(y.max())
    cx, cy = (xlo + xhi) / 2, (ylo + yhi) / 2
    if block_size_um is None:
        single = bool(np.all(printer.in_field(x - cx, y - cy, tol_um=0.0)))
        a = default_block_size_um(printer, overlap_um, shear_deg, H)
        if not single and a <= 0:
            raise BioslicerError(
                f"overlap {overlap_um:g} µm and shear {shear_deg:g}° over {H:g} µm leave no room in the "
                f"{side:g} µm block side of {printer.name}; reduce the overlap or the shear")
    else:
        a = float(block_size_um)
        need = a + overlap_um + H * abs(tan_s)
        if need > side + _TOL_UM:
            raise BioslicerError(
                f"block size {a:g} µm (+ overlap {overlap_um:g} µm + shear offset {H * abs(tan_s):g} µm) exceeds the "
                f"{side:g} µm block side of {printer.name}; use a block size <= "
                f"{default_block_size_um(printer, overlap_um, shear_deg, H):g} µm")
        single = (xhi - xlo) <= a and (yhi - ylo) <= a
    if single:
        nx = ny = 1
        gx0, gy0 = cx - a / 2, cy - a / 2
        tan_k = 0.0
        uvb = np.zeros((tp.n_marks, 4))
        uvb[:] = [cx, cx, cy, cy]
    else:
        tan_k = tan_s
        uvb = _k.mark_uv_bounds(x, y, z, tp.mark_start, mark_z0, tan_k)
        ulo, uhi = float(uvb[:, 0].min()), float(uvb[:, 1].max())
        vlo, vhi = float(uvb[:, 2].min()), float(uvb[:, 3].max())
        nx = max(1, int(math.ceil((uhi - ulo) / a - 1e-12)))
        ny = max(1, int(math.ceil((vhi - vlo) / a - 1e-12)))
        gx0 = (ulo + uhi) / 2 - nx * a / 2
        gy0 = (vlo + vhi) / 2 - ny * a / 2
    progress(1, 4, "stitching")

    # ---------------------------------------------------------------- clip (count, fill)
    closed = _k.closed_marks(x, y, z, tp.mark_start)
    half_ov = overlap_um / 2 if not single else 0.0
    args = (x, y, z, p, tp.mark_start, closed, mark_z0, mark_tier, uvb, gx0, gy0, a, nx, ny, half_ov, tan_k,
            _MIN_PIECE_UM)
    n_pieces, n_points = _k.stitch_count(*args)
    piece_off = np.zeros(tp.n_marks + 1, np.int64)
    np.cumsum(n_pieces, out=piece_off[1:])
    point_off = np.zeros(tp.n_marks + 1, np.int64)
    np.cumsum(n_points, out=point_off[1:])
    K, N = int(piece_off[-1]), int(point_off[-1])
    ox, oy, oz, op = (np.empty(N) for _ in range(4))
    piece_start = np.empty(K + 1, np.int64)
    piece_start[K] = N
    piece_cell = np.empty(K, np.int64)
    piece_src = np.empty(K, np.int64)
    _k.stitch_fill(*args, piece_off, point_off, ox, oy, oz, op, piece_start, piece_cell, piece_src)
    progress(2, 4, "stitching")

    # ---------------------------------------------------------------- blocks, order
    seq = _block_sequence(nx, ny, nz, order)
    rank = np.empty(len(seq), np.int64)
    rank[seq] = np.arange(len(seq))
    present = np.zeros(len(seq), bool)
    present[piece_cell] = True
    kept = seq[present[seq]]                      # dense cell ids in execution order
    new_id = np.full(len(seq), -1, np.int64)
    new_id[kept] = np.arange(len(kept))
    piece_block = new_id[piece_cell]
    piece_layer = tp.mark_layer[piece_src]
    if np.all(np.diff(tp.mark_layer) >= 0):   # layer by layer already: a stable sort by block suffices
        perm = np.argsort(piece_block, kind="stable")
    else:
        perm = np.lexsort((np.arange(K), piece_layer, piece_block))
    counts = np.diff(piece_start)[perm]
    dst = np.zeros(K + 1, np.int64)
    np.cumsum(counts, out=dst[1:])
    fx, fy, fz, fp = (np.empty(N) for _ in range(4))
    _k.gather_marks(piece_start, dst, perm, ox, oy, oz, op, fx, fy, fz, fp)
    src = piece_src[perm]
    progress(3, 4, "stitching")

    ix = kept % nx
    iy = (kept // nx) % ny
    iz = kept // (nx * ny)
    index = np.column_stack([ix, iy, iz]).astype(np.int32)
    lo = np.empty((len(kept), 3))
    hi = np.empty((len(kept), 3))
    origin = np.empty((len(kept), 3))
    lo[:, 2] = tier_lo[iz]
    hi[:, 2] = tier_lo[iz] + h
    origin[:, 2] = tier_z0[iz]
    if single:
        lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1] = xlo, xhi, ylo, yhi
        origin[:, 0], origin[:, 1] = cx, cy
    else:
        lo[:, 0] = gx0 + ix * a
        hi[:, 0] = lo[:, 0] + a
        lo[:, 1] = gy0 + iy * a
        hi[:, 1] = lo[:, 1] + a
        T = H * tan_k
        origin[:, 0] = (lo[:, 0] + hi[:, 0]) / 2 + T / 2
        origin[:, 1] = (lo[:, 1] + hi[:, 1]) / 2 + T / 2
    if single:
        field_meta.update(overlap_um=0.0, shear_deg=0.0)   # no walls: nothing overlaps or shears
    blocks = Blocks(origin, index, lo, hi, **field_meta)
    _check_stage(origin, printer)

    out = Toolpath(fx, fy, fz, fp, dst, tp.mark_kind[src], tp.mark_layer[src], piece_block[perm].astype(np.int32),
                   tp.mark_speed_um_s[src], tp.layer_z_um, blocks, dict(tp.meta))
    out.meta["stitching"] = {
        "block_size_um": float(a), "block_height_um": float(h), "overlap_um": float(overlap_um),
        "shear_deg": float(shear_deg), "order": order, "grid": [int(nx), int(ny), int(nz)],
        "single_column": bool(single), "n_blocks": int(len(kept)),
    }
    progress(4, 4, "stitching")
    return out


def _check_stage(origin_um: np.ndarray, printer: Printer) -> None:
    """Raise BioslicerError if a block's stage position is outside the printer's travel."""
    off = np.zeros(3)
    po = printer.program.get("origin_um") if isinstance(printer.program, dict) else None
    if po is not None:
        off[: len(po)] = np.asarray(po, dtype=np.float64)[:3]
    stage = origin_um.copy()
    stage[:, :2] += off[:2]
    stage[:, 2] = off[2] + (origin_um[:, 2] - origin_um[0, 2])
    for axis, name, rng in ((0, "x", printer.stage_x_um), (1, "y", printer.stage_y_um), (2, "z", printer.stage_z_um)):
        lo, hi = float(stage[:, axis].min()), float(stage[:, axis].max())
        if lo < rng[0] - _TOL_UM or hi > rng[1] + _TOL_UM:
            what = ("the part is taller than the fine z range and the z stage cannot move that far"
                    if axis == 2 else "move the part towards the stage centre (or set program.origin_um)")
            raise BioslicerError(
                f"block stage {name} positions {lo:g}..{hi:g} µm are outside the {printer.name} stage range "
                f"{rng[0]:g}..{rng[1]:g} µm; {what}")


def block_walls_um(blocks: Blocks, block: int, z_um: float) -> tuple[float, float, float, float]:
    """Nominal walls of one block at height z (after shear, before overlap).

    Parameters
    ----------
    blocks : Blocks
    block : int
    z_um : float
        Height in part coordinates, µm.

    Returns
    -------
    (x_lo, x_hi, y_lo, y_hi) : floats, µm
    """
    t = (z_um - blocks.origin_um[block, 2]) * math.tan(math.radians(blocks.shear_deg))
    lo, hi = blocks.lo_um[block], blocks.hi_um[block]
    return lo[0] + t, hi[0] + t, lo[1] + t, hi[1] + t
