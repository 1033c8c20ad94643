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
* **Small parts.** A part whose x/y box fits the field around its centre is one column of
  blocks centred on the part (no walls, no shear; the stage moves only between tiers).
* **Order.** Blocks are executed bottom-up by tier; within a tier ``"serpentine"`` goes row by
  row in y, alternating the x direction, and continues the snake into the next tier (which runs
  its rows in the opposite y order); ``"lexical"`` runs every tier and row from low x, low y.
* **Stage.** Part coordinates are stage coordinates plus ``printer.program["origin_um"]`` (if
  the profile has one). The x/y stage position of every block must lie in ``printer.stage_x_um``
  / ``stage_y_um``; in z the fine axis is zeroed at the part bottom (as ``FindInterfaceAt``
  does), so the z stage moves by the tier offsets from the origin z and these must lie in
  ``printer.stage_z_um``.
* **One grid.** :func:`plan_grid` fixes the blocks from the bounds of the part and the layer
  table before any toolpath exists (:class:`StitchGrid`, JSON-able); it is the only planner
  (``stitch`` without a grid calls it on the toolpath's bounds, :func:`grid_for_toolpath`). The
  grid owns its geometry: the window of the marks a block needs
  (:meth:`StitchGrid.block_window_um`, :meth:`StitchGrid.marks_for_block`) and the cell that owns
  a point (:meth:`StitchGrid.cell_owner`). ``stitch(tp,
  grid=g, blocks=[b])`` then writes block ``b`` alone from any subset of the marks that holds
  those meeting ``g.block_window_um(b)`` on ``g.block_layers(b)``, bit-identical to block ``b``
  of ``stitch(tp, grid=g)``: each piece depends only on its source mark and the block's walls,
  and pieces are written straight in block, layer, mark order (count pass, prefix sums, fill
  pass; no sort).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from .errors import BioslicerError
from .kernel import stitch as _k
from .kernel.measure import closed_marks
from .printers import Printer, load_printer
from .progress import Progress, silent
from .toolpath import POINT_FIELDS, Blocks, Toolpath

BLOCK_ORDERS = ("serpentine", "lexical")
_MIN_PIECE_UM = 1e-9
_TOL_UM = 1e-6
_WINDOW_TOL_UM = 1e-3      # margin of block_window_um
_CHUNK_MARKS = 65536       # marks per chunk in the extent reductions
_TASK_ENTRIES = 16384      # (cell, mark) entries per clipping task


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
    iz = np.repeat(np.arange(nz, dtype=np.int64), ny)
    iy = np.tile(np.arange(ny, dtype=np.int64), nz)
    ix = np.arange(nx, dtype=np.int64)
    if order == "lexical":
        return ((iz * ny + iy)[:, None] * nx + ix[None]).reshape(-1)
    iy = np.where(iz % 2 == 0, iy, ny - 1 - iy)            # odd tiers run their rows backwards
    row = np.arange(nz * ny)
    xs = np.where((row % 2 == 0)[:, None], ix[None], (nx - 1 - ix)[None])   # odd rows run backwards
    return ((iz * ny + iy)[:, None] * nx + xs).reshape(-1)


@dataclass
class StitchGrid:
    """Where the blocks of a print are: everything that fixes them, independent of any toolpath.

    Plan one with :func:`plan_grid` (from the bounds of what will be printed) and pass it to
    :func:`stitch`; the same grid, saved with :meth:`to_dict` and read back with
    :meth:`from_dict`, gives byte-identical blocks on any machine, one block at a time or all
    at once. Blocks are numbered by execution rank (row ``b`` of :meth:`blocks`).

    Attributes
    ----------
    printer_name : str
        Printer the grid was planned for.
    block_size_um, block_height_um : float
        Nominal block side (wall to wall) and tier height, µm.
    overlap_um, shear_deg : float
        Overlap strip along every inner wall (µm) and wall tilt (degrees), as asked for (a
        single column has no walls: neither applies).
    order : str
        ``"serpentine"`` or ``"lexical"``.
    nx, ny, nz : int
        Grid size; ``nz`` tiers in z.
    gx0_um, gy0_um : float
        Grid corner in sheared coordinates, µm: cell (i, j) spans ``u`` in
        ``[gx0 + i a, gx0 + (i+1) a)`` and ``v`` in ``[gy0 + j a, gy0 + (j+1) a)``.
    tier_lo_um, tier_z0_um : (nz,) float64
        Lowest layer height of each tier and its fine-axis zero (lowered by ``dz_down_um``), µm.
    layer_tier : (L,) int64
        Tier of every layer of ``layer_z_um``.
    single : bool
        One column of blocks centred on the part: no walls, no shear, no overlap.
    layer_z_um : (L,) float64
        The layer table the grid was planned with; a toolpath stitched on it must have the same.
    shear_height_um : float
        Height over which the walls shear (largest local z of any point), µm.
    xy_lo_um, xy_hi_um : (2,) float64
        x/y bounds of the part the grid was planned from, µm.
    dz_up_um, dz_down_um : float
        How far marks may rise above and dip below their layer height, µm.
    field_shape : str
    field_size_um : float
        The printer's field ('square' side or 'circle' diameter), µm.
    """

    printer_name: str
    block_size_um: float
    block_height_um: float
    overlap_um: float
    shear_deg: float
    order: str
    nx: int
    ny: int
    nz: int
    gx0_um: float
    gy0_um: float
    tier_lo_um: np.ndarray
    tier_z0_um: np.ndarray
    layer_tier: np.ndarray
    single: bool
    layer_z_um: np.ndarray
    shear_height_um: float
    xy_lo_um: np.ndarray
    xy_hi_um: np.ndarray
    dz_up_um: float = 0.0
    dz_down_um: float = 0.0
    field_shape: str = "square"
    field_size_um: float = 0.0

    def __post_init__(self) -> None:
        for name in ("block_size_um", "block_height_um", "overlap_um", "shear_deg", "gx0_um", "gy0_um",
                     "shear_height_um", "dz_up_um", "dz_down_um", "field_size_um"):
            setattr(self, name, float(getattr(self, name)))
        for name in ("nx", "ny", "nz"):
            setattr(self, name, int(getattr(self, name)))
        self.single = bool(self.single)
        self.tier_lo_um = np.ascontiguousarray(self.tier_lo_um, dtype=np.float64).reshape(-1)
        self.tier_z0_um = np.ascontiguousarray(self.tier_z0_um, dtype=np.float64).reshape(-1)
        self.layer_tier = np.ascontiguousarray(self.layer_tier, dtype=np.int64).reshape(-1)
        self.layer_z_um = np.ascontiguousarray(self.layer_z_um, dtype=np.float64).reshape(-1)
        self.xy_lo_um = np.ascontiguousarray(self.xy_lo_um, dtype=np.float64).reshape(2)
        self.xy_hi_um = np.ascontiguousarray(self.xy_hi_um, dtype=np.float64).reshape(2)

    # ------------------------------------------------------------------ derived
    @property
    def tan_shear(self) -> float:
        """Tangent of the wall tilt actually used (0 for a single column)."""
        return 0.0 if self.single else math.tan(math.radians(self.shear_deg))

    @property
    def half_overlap_um(self) -> float:
        """Half the overlap actually used, µm (0 for a single column)."""
        return 0.0 if self.single else self.overlap_um / 2

    def n_blocks(self) -> int:
        """Number of grid cells, empty or not (``nx * ny * nz``)."""
        return self.nx * self.ny * self.nz

    def sequence(self) -> np.ndarray:
        """(B,) int64 dense cell ids ``(iz * ny + iy) * nx + ix`` in execution order."""
        return _block_sequence(self.nx, self.ny, self.nz, self.order)

    def blocks(self) -> Blocks:
        """Every cell of the grid as a :class:`~bioslicer.toolpath.Blocks` table, in execution order
        (row ``b`` is the block of execution rank ``b``)."""
        return self._blocks_of(self.sequence())

    def _blocks_of(self, cells: np.ndarray) -> Blocks:
        """Blocks table of the given dense cell ids, in that order."""
        nx, ny, a = self.nx, self.ny, self.block_size_um
        cells = np.asarray(cells, dtype=np.int64)
        ix = cells % nx
        iy = (cells // nx) % ny
        iz = cells // (nx * ny)
        index = np.column_stack([ix, iy, iz]).astype(np.int32)
        n = len(cells)
        lo = np.empty((n, 3))
        hi = np.empty((n, 3))
        origin = np.empty((n, 3))
        lo[:, 2] = self.tier_lo_um[iz]
        hi[:, 2] = self.tier_lo_um[iz] + self.block_height_um
        origin[:, 2] = self.tier_z0_um[iz]
        if self.single:
            (xlo, ylo), (xhi, yhi) = self.xy_lo_um, self.xy_hi_um
            lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1] = xlo, xhi, ylo, yhi
            origin[:, 0], origin[:, 1] = (xlo + xhi) / 2, (ylo + yhi) / 2
        else:
            lo[:, 0] = self.gx0_um + ix * a
            hi[:, 0] = lo[:, 0] + a
            lo[:, 1] = self.gy0_um + iy * a
            hi[:, 1] = lo[:, 1] + a
            T = self.shear_height_um * self.tan_shear
            origin[:, 0] = (lo[:, 0] + hi[:, 0]) / 2 + T / 2
            origin[:, 1] = (lo[:, 1] + hi[:, 1]) / 2 + T / 2
        single = self.single
        return Blocks(origin, index, lo, hi, field_shape=self.field_shape, field_size_um=self.field_size_um,
                      overlap_um=0.0 if single else self.overlap_um, shear_deg=0.0 if single else self.shear_deg)

    def _cell(self, b: int) -> tuple[int, int, int]:
        nb = self.n_blocks()
        if not (0 <= int(b) < nb):
            raise BioslicerError(f"block {b} is not in the grid; use 0..{nb - 1}")
        c = int(self.sequence()[int(b)])
        return c % self.nx, (c // self.nx) % self.ny, c // (self.nx * self.ny)

    def block_layers(self, b: int) -> np.ndarray:
        """(n,) int64 indices (into ``layer_z_um``) of the layers written in block ``b``: its tier's."""
        return np.flatnonzero(self.layer_tier == self._cell(b)[2])

    def block_window_um(self, b: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """x/y box that holds every point block ``b`` can receive.

        The cell grown by half the overlap on every inner wall (outer walls at the grid edge),
        moved by the shear offset over the tier height, plus 1 nm; for a single column, the
        field's bounding square around the centre.

        Returns
        -------
        ((xmin, ymin), (xmax, ymax)) : floats, µm
        """
        ix, iy, _ = self._cell(b)
        tol = _WINDOW_TOL_UM
        if self.single:
            cx = (self.xy_lo_um[0] + self.xy_hi_um[0]) / 2
            cy = (self.xy_lo_um[1] + self.xy_hi_um[1]) / 2
            r = self.field_size_um / 2 + tol
            return (cx - r, cy - r), (cx + r, cy + r)
        a, hov = self.block_size_um, self.half_overlap_um

        def span(g0, i, n):
            lo = g0 + i * a - hov if i > 0 else g0
            hi = g0 + (i + 1) * a + hov if i < n - 1 else g0 + n * a
            return lo, hi

        ulo, uhi = span(self.gx0_um, ix, self.nx)
        vlo, vhi = span(self.gy0_um, iy, self.ny)
        T = self.shear_height_um * self.tan_shear
        t0, t1 = min(0.0, T), max(0.0, T)
        return (ulo + t0 - tol, vlo + t0 - tol), (uhi + t1 + tol, vhi + t1 + tol)

    def cell_owner(self, b: int) -> "CellOwner":
        """``owner(x, y, z) -> bool array``: where block ``b``'s cell holds the point (see
        :class:`CellOwner`); the cells of a tier tile the plane, so every point has one owner."""
        return CellOwner(self, b)

    def marks_for_block(self, toolpath: Toolpath, b: int, boxes: tuple | None = None) -> np.ndarray:
        """(M,) bool: marks on :meth:`block_layers` whose x/y bounding box meets
        :meth:`block_window_um` -- a sufficient input to ``stitch(..., grid=self, blocks=[b])``.

        ``boxes``: :func:`mark_boxes` of the toolpath, when several blocks select from it."""
        tp = toolpath
        if tp.n_marks == 0:
            return np.zeros(0, bool)
        _, _, iz = self._cell(b)
        if len(self.layer_tier) != tp.n_layers:
            raise BioslicerError(f"toolpath has {tp.n_layers} layers, the grid {len(self.layer_tier)}; "
                                 "plan the grid with the toolpath's layer table")
        (x0, y0), (x1, y1) = self.block_window_um(b)
        xmin, xmax, ymin, ymax = mark_boxes(tp) if boxes is None else boxes
        ok = self.layer_tier[tp.mark_layer] == iz
        ok &= xmax >= x0
        ok &= xmin <= x1
        ok &= ymax >= y0
        ok &= ymin <= y1
        return ok

    # ------------------------------------------------------------------ save / load
    def to_dict(self) -> dict:
        """JSON-able dict (floats round-trip exactly through JSON); see :meth:`from_dict`."""
        d = {"format": GRID_FORMAT}
        for f in fields(self):
            v = getattr(self, f.name)
            d[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StitchGrid":
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or d.get("format") != GRID_FORMAT:
            raise BioslicerError(f"not a stitching grid (expected format {GRID_FORMAT!r}); "
                                 "write it with StitchGrid.to_dict()")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in d and n not in _GRID_OPTIONAL]
        if missing:
            raise BioslicerError(f"stitching grid lacks {', '.join(missing)}; write it with StitchGrid.to_dict()")
        grid = cls(**{n: d[n] for n in names if n in d})
        if grid.order not in BLOCK_ORDERS or len(grid.tier_lo_um) != grid.nz or len(grid.tier_z0_um) != grid.nz \
                or len(grid.layer_tier) != len(grid.layer_z_um) or min(grid.nx, grid.ny, grid.nz) < 1:
            raise BioslicerError("stitching grid is inconsistent (order, tier or layer tables); plan it again")
        return grid


def mark_boxes(toolpath: Toolpath) -> tuple:
    """(xmin, xmax, ymin, ymax) of every mark, µm: four (M,) float64 arrays (not stacked: a unit's
    marks are millions, and a (4, M) copy would be made at the unit's memory peak)."""
    s = toolpath.mark_start[:-1]
    return (np.minimum.reduceat(toolpath.x_um, s), np.maximum.reduceat(toolpath.x_um, s),
            np.minimum.reduceat(toolpath.y_um, s), np.maximum.reduceat(toolpath.y_um, s))


class CellOwner:
    """``owner(x, y, z)``: True where block ``b``'s cell holds the point.

    Cells are the nominal block squares, walls sheared like the stitching walls
    (``wall + (z - z0) tan(shear)``), half-open, the outer walls of the grid open: the cells of
    one tier tile the plane, so every point has exactly one owner. Made by
    :meth:`StitchGrid.cell_owner`.
    """

    def __init__(self, grid: StitchGrid, b: int) -> None:
        ix, iy, iz = grid._cell(b)
        blocks = grid._blocks_of(np.array([(iz * grid.ny + iy) * grid.nx + ix]))
        self.single = bool(grid.single) or grid.n_blocks() == 1
        lo, hi = blocks.lo_um[0], blocks.hi_um[0]
        self.x0 = -np.inf if ix == 0 else float(lo[0])
        self.x1 = np.inf if ix == grid.nx - 1 else float(hi[0])
        self.y0 = -np.inf if iy == 0 else float(lo[1])
        self.y1 = np.inf if iy == grid.ny - 1 else float(hi[1])
        self.z0 = float(blocks.origin_um[0, 2])
        self.tan = math.tan(math.radians(grid.shear_deg))

    def __call__(self, x, y, z):
        x = np.asarray(x, dtype=np.float64)
        if self.single:
            return np.ones(x.shape, dtype=bool)
        shift = (np.asarray(z, dtype=np.float64) - self.z0) * self.tan
        y = np.asarray(y, dtype=np.float64)
        return (x >= self.x0 + shift) & (x < self.x1 + shift) & (y >= self.y0 + shift) & (y < self.y1 + shift)


GRID_FORMAT = "bioslicer-stitch-grid/1"
_GRID_OPTIONAL = ("dz_up_um", "dz_down_um", "field_shape", "field_size_um")


def _check_args(order, overlap_um, shear_deg, block_size_um) -> str:
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
    return order


def _fits_field(printer: Printer, xlo, xhi, ylo, yhi) -> bool:
    """The whole x/y box inside the field around its centre."""
    cx, cy = (xlo + xhi) / 2, (ylo + yhi) / 2
    corners = printer.in_field(np.array([xlo - cx, xhi - cx, xlo - cx, xhi - cx]),
                               np.array([ylo - cy, ylo - cy, yhi - cy, yhi - cy]), tol_um=0.0)
    return bool(np.all(corners))


def _plan(printer: Printer, layer_z: np.ndarray, dz_up: float, dz_down: float, xy_lo, xy_hi, block_size_um,
          overlap_um: float, shear_deg: float, order: str, block_height_um) -> StitchGrid:
    """The grid of :func:`plan_grid` (no stage check)."""
    z_bottom = float(layer_z.min())
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
    layer_tier = np.floor((layer_z - z_bottom) / h + 1e-12).astype(np.int64)
    nz = int(layer_tier.max()) + 1
    tier_lo = z_bottom + h * np.arange(nz)
    tier_z0 = tier_lo - dz_down
    # height over which walls shear (largest local z of any layer)
    H = float(np.max(layer_z - tier_lo[layer_tier])) + dz_up + dz_down

    tan_s = math.tan(math.radians(shear_deg))
    side = printer.block_side_um
    xlo, ylo = (float(v) for v in xy_lo)
    xhi, yhi = (float(v) for v in xy_hi)
    cx, cy = (xlo + xhi) / 2, (ylo + yhi) / 2
    if block_size_um is None:
        single = _fits_field(printer, xlo, xhi, ylo, yhi)
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
    else:
        T = H * tan_s                  # every point has t = (z - z0) tan in [0, H tan]
        ulo, uhi = xlo - max(0.0, T), xhi - min(0.0, T)
        vlo, vhi = ylo - max(0.0, T), yhi - min(0.0, T)
        nx = max(1, int(math.ceil((uhi - ulo) / a - 1e-12)))
        ny = max(1, int(math.ceil((vhi - vlo) / a - 1e-12)))
        gx0 = (ulo + uhi) / 2 - nx * a / 2
        gy0 = (vlo + vhi) / 2 - ny * a / 2
    return StitchGrid(
        printer_name=printer.name, block_size_um=a, block_height_um=h, overlap_um=float(overlap_um),
        shear_deg=float(shear_deg), order=order, nx=nx, ny=ny, nz=nz, gx0_um=gx0, gy0_um=gy0,
        tier_lo_um=tier_lo, tier_z0_um=tier_z0, layer_tier=layer_tier, single=single, layer_z_um=layer_z,
        shear_height_um=H, xy_lo_um=[xlo, ylo], xy_hi_um=[xhi, yhi], dz_up_um=dz_up, dz_down_um=dz_down,
        field_shape=printer.field_shape, field_size_um=printer.field_size_um)


def plan_grid(bounds_um, layer_z_um, printer, block_size_um: float | None = None, overlap_um: float = 2.0,
              shear_deg: float = 0.0, order: str = "serpentine", block_height_um: float | None = None,
              dz_up_um: float = 0.0, dz_down_um: float = 0.0) -> StitchGrid:
    """Plan the stitching grid from the bounds of what will be printed, before any toolpath.

    The one place a grid is planned (``stitch`` without a grid plans it here too, from the
    toolpath's bounds: :func:`grid_for_toolpath`): one column of blocks when the x/y box fits
    the field around its centre (or, with ``block_size_um``, fits one block), tiers of the fine
    z range over the layer heights from the lowest, the fit rule with overlap and shear, and
    the stage range check of every block. The sheared extent is the x/y range widened by the
    shear offset over the tier height.

    Parameters
    ----------
    bounds_um : (2, 3) or (2, 2) float
        Lower and upper corner of the part (e.g. the mesh bounds or the mold block), µm; only
        x and y are used (the tiers come from ``layer_z_um``).
    layer_z_um : (L,) float
        Nominal layer heights, µm: the layer table of the toolpaths to stitch.
    printer : Printer or str
    block_size_um, overlap_um, shear_deg, order, block_height_um
        As for :func:`stitch`.
    dz_up_um, dz_down_um : float
        How far marks may rise above and dip below their layer height (non-planar marks), µm.

    Returns
    -------
    StitchGrid
    """
    printer = load_printer(printer)
    order = _check_args(order, overlap_um, shear_deg, block_size_um)
    b = np.asarray(bounds_um, dtype=np.float64)
    if b.ndim != 2 or b.shape[0] != 2 or b.shape[1] not in (2, 3) or not np.all(np.isfinite(b)) \
            or np.any(b[0, :2] > b[1, :2]):
        raise BioslicerError("bounds must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] in µm with min <= max")
    lz = np.ascontiguousarray(layer_z_um, dtype=np.float64).reshape(-1)
    if len(lz) == 0 or not np.all(np.isfinite(lz)):
        raise BioslicerError("layer heights must be a non-empty list of finite numbers (µm)")
    for name, v in (("dz_up_um", dz_up_um), ("dz_down_um", dz_down_um)):
        if not (math.isfinite(v) and v >= 0):
            raise BioslicerError(f"{name} must be >= 0 µm, got {v}")
    grid = _plan(printer, lz, float(dz_up_um), float(dz_down_um), b[0, :2], b[1, :2], block_size_um, overlap_um,
                 shear_deg, order, block_height_um)
    _check_stage(grid.blocks().origin_um, printer)
    return grid


def _mark_extents(tp: Toolpath) -> np.ndarray:
    """(6,): rise above / dip below the layer height (µm, may be < 0), xmin, xmax, ymin, ymax."""
    e = _k.mark_extents(tp.x_um, tp.y_um, tp.z_um, tp.mark_start, tp.mark_layer, tp.layer_z_um, _CHUNK_MARKS)
    return np.array([e[:, 0].max(), e[:, 1].max(), e[:, 2].min(), e[:, 3].max(), e[:, 4].min(), e[:, 5].max()])


def grid_for_toolpath(toolpath: Toolpath, printer, block_size_um: float | None = None, overlap_um: float = 2.0,
                      shear_deg: float = 0.0, order: str = "serpentine",
                      block_height_um: float | None = None) -> StitchGrid:
    """:func:`plan_grid` from a toolpath's own x/y bounds, layer table and height excursions.

    Parameters
    ----------
    toolpath : Toolpath
        Unstitched marks (at least one), µm.
    printer, block_size_um, overlap_um, shear_deg, order, block_height_um
        As for :func:`plan_grid`.

    Returns
    -------
    StitchGrid
    """
    printer = load_printer(printer)
    if toolpath.n_marks == 0:
        raise BioslicerError("the toolpath has no marks: nothing to plan a stitching grid for")
    ext = _mark_extents(toolpath)
    bounds = [[ext[2], ext[4]], [ext[3], ext[5]]]
    return plan_grid(bounds, toolpath.layer_z_um, printer, block_size_um=block_size_um, overlap_um=overlap_um,
                     shear_deg=shear_deg, order=order, block_height_um=block_height_um,
                     dz_up_um=max(0.0, float(ext[0])), dz_down_um=max(0.0, float(ext[1])))


def _uv_extent(tp: Toolpath, tan_s: float, layer_tier: np.ndarray, tier_z0: np.ndarray):
    e = _k.uv_extents(tp.x_um, tp.y_um, tp.z_um, tp.mark_start, tp.mark_layer, layer_tier, tier_z0, float(tan_s),
                      _CHUNK_MARKS)
    return float(e[:, 0].min()), float(e[:, 1].max()), float(e[:, 2].min()), float(e[:, 3].max())


def _check_fits(tp: Toolpath, grid: StitchGrid, ext: np.ndarray, used: np.ndarray) -> None:
    """Raise BioslicerError when the toolpath reaches outside the grid it is stitched on."""
    if ext[0] > grid.dz_up_um + _TOL_UM or ext[1] > grid.dz_down_um + _TOL_UM:
        raise BioslicerError(
            f"marks rise {max(ext[0], 0):g} µm above and dip {max(ext[1], 0):g} µm below their layer height, more "
            f"than the grid allows ({grid.dz_up_um:g} / {grid.dz_down_um:g} µm); plan the grid with dz_up_um and "
            "dz_down_um at least that")
    if np.any(grid.layer_tier[used] < 0):
        raise BioslicerError("toolpath has marks on layers outside the grid's tiers; plan the grid with all its layers")
    what = "marks reach outside the stitching grid; plan the grid from bounds that contain the whole toolpath"
    if grid.single:
        lo, hi = grid.xy_lo_um, grid.xy_hi_um
        inside = ext[2] >= lo[0] - _TOL_UM and ext[3] <= hi[0] + _TOL_UM and ext[4] >= lo[1] - _TOL_UM \
            and ext[5] <= hi[1] + _TOL_UM
        if not inside:
            cx, cy = (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2
            half = grid.field_size_um / 2
            if grid.field_shape == "circle":
                ok = np.all((tp.x_um - cx) ** 2 + (tp.y_um - cy) ** 2 <= half * half)
            else:
                ok = np.all((np.abs(tp.x_um - cx) <= half) & (np.abs(tp.y_um - cy) <= half))
            if not ok:
                raise BioslicerError(what)
        return
    ulo, uhi, vlo, vhi = _uv_extent(tp, grid.tan_shear, grid.layer_tier, grid.tier_z0_um)
    a = grid.block_size_um
    if ulo < grid.gx0_um - _TOL_UM or uhi > grid.gx0_um + grid.nx * a + _TOL_UM or \
            vlo < grid.gy0_um - _TOL_UM or vhi > grid.gy0_um + grid.ny * a + _TOL_UM:
        raise BioslicerError(what)


def _selection(grid: StitchGrid, blocks) -> np.ndarray:
    nb = grid.n_blocks()
    if blocks is None:
        return np.arange(nb, dtype=np.int64)
    sel = np.asarray(blocks).reshape(-1)
    if len(sel) and sel.dtype.kind not in "iu":
        raise BioslicerError(f"blocks must be integer block indices (execution ranks 0..{nb - 1})")
    sel = np.unique(sel.astype(np.int64))
    if len(sel) and (sel[0] < 0 or sel[-1] >= nb):
        bad = sel[0] if sel[0] < 0 else sel[-1]
        raise BioslicerError(f"block {bad} is not in the grid; use 0..{nb - 1}")
    return sel


def stitch(toolpath: Toolpath, printer, block_size_um: float | None = None, overlap_um: float = 2.0,
           shear_deg: float = 0.0, order: str = "serpentine", progress: Progress = silent,
           block_height_um: float | None = None, grid: StitchGrid | None = None, blocks=None) -> Toolpath:
    """Split a toolpath into blocks that fit the printer's field.

    Parameters
    ----------
    toolpath : Toolpath
        Marks in absolute part coordinates (µm), ``mark_block == -1``.
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
    grid : StitchGrid, optional
        A grid from :func:`plan_grid` (the five geometry arguments above are then ignored);
        default: ``grid_for_toolpath(toolpath, printer, ...)`` with those arguments. The result
        keeps the grid's whole block table, empty blocks included: ``mark_block`` is the
        execution rank in the grid.
    blocks : sequence of int, optional
        With ``grid``: keep only the pieces falling in these blocks (execution ranks). The
        toolpath may then be any subset of the marks (same order) that holds every mark of
        the block's layers meeting :meth:`StitchGrid.block_window_um`
        (:meth:`StitchGrid.marks_for_block`); the result is bit-identical to those blocks' marks
        in a run over the whole toolpath.

    Returns
    -------
    Toolpath
        A new toolpath: marks clipped to blocks, ``mark_block`` set, ``blocks`` a
        :class:`~bioslicer.toolpath.Blocks` of the whole grid in execution order, marks sorted by
        block, then layer, then their original order, each piece with the per-mark fields of its
        source mark.
        ``meta["stitching"]`` records the grid.
    """
    printer = load_printer(printer)
    if toolpath.blocks is not None or (toolpath.n_marks and toolpath.mark_block.max() >= 0):
        raise BioslicerError("toolpath is already stitched; stitch the unstitched toolpath from slicing")
    if grid is None:
        if blocks is not None:
            raise BioslicerError("stitch(blocks=...) needs a grid; plan one with plan_grid() and pass grid=")
        grid = grid_for_toolpath(toolpath, printer, block_size_um, overlap_um, shear_deg, order, block_height_um)
    progress(0, 4, "stitching")
    return stitch_source(toolpath, printer, grid, blocks).stitch(blocks, progress)


def stitch_source(toolpath: Toolpath, printer, grid, blocks=None) -> "StitchSource":
    """An unstitched toolpath checked against a grid and indexed for clipping, once: blocks are
    then cut from it one call at a time (:meth:`StitchSource.stitch`), each bit-identical to
    ``stitch(toolpath, printer, grid=grid, blocks=...)``, without selecting (copying) the marks a
    block needs first. A unit of blocks (``blockrun.unit_marks``) cuts all its blocks from its plan.

    Parameters
    ----------
    toolpath : Toolpath
        Unstitched marks, µm, on the grid's layer table.
    printer : Printer or str
    grid : StitchGrid or dict
    blocks : sequence of int, optional
        The blocks that will be cut (execution ranks; default: all): the marks that may give
        pieces in each are listed once, here.

    Returns
    -------
    StitchSource
    """
    printer = load_printer(printer)
    if toolpath.blocks is not None or (toolpath.n_marks and toolpath.mark_block.max() >= 0):
        raise BioslicerError("toolpath is already stitched; stitch the unstitched toolpath from slicing")
    if isinstance(grid, dict):
        grid = StitchGrid.from_dict(grid)
    if grid.printer_name != printer.name:
        raise BioslicerError(f"the grid was planned for {grid.printer_name}, not {printer.name}; "
                             "plan it again for this printer")
    tp = toolpath
    if not np.array_equal(tp.layer_z_um, grid.layer_z_um):
        raise BioslicerError("the toolpath's layer heights differ from the grid's; plan the grid with the "
                             "toolpath's layer table")
    sel = _selection(grid, blocks)
    if tp.n_marks == 0:
        return StitchSource(tp, grid, sel, None, None, None)
    ext = _mark_extents(tp)
    used = np.bincount(tp.mark_layer, minlength=tp.n_layers) > 0
    _check_fits(tp, grid, ext, used)
    L, layer_tier = tp.n_layers, grid.layer_tier
    # marks by (tier, layer, original order): nothing to do when already so
    used_idx = np.flatnonzero(used)
    if np.all(np.diff(tp.mark_layer) >= 0) and np.all(np.diff(layer_tier[used_idx]) >= 0):
        mord = np.zeros(0, np.int64)
    else:
        mord = np.argsort(layer_tier[tp.mark_layer] * L + tp.mark_layer, kind="stable")
    if grid.single:
        cells = np.zeros((tp.n_marks, 4), np.int32)
    else:
        cells = _k.mark_cells(tp.x_um, tp.y_um, tp.z_um, tp.mark_start, tp.mark_layer, layer_tier, grid.tier_z0_um,
                              grid.tan_shear, grid.gx0_um, grid.gy0_um, grid.block_size_um, grid.nx, grid.ny,
                              grid.half_overlap_um)
    cell_sel = np.zeros(grid.n_blocks(), bool)
    cell_sel[grid.sequence()[sel]] = True
    cell_start, entries = _k.cell_entries(mord, tp.mark_layer, layer_tier, cells, cell_sel, grid.nx, grid.ny,
                                          grid.n_blocks())
    del cells, mord
    closed = closed_marks(tp.x_um, tp.y_um, tp.z_um, tp.mark_start)
    return StitchSource(tp, grid, sel, cell_start, entries, closed)


class StitchSource:
    """A toolpath ready to be cut into blocks (made by :func:`stitch_source`).

    Holds the toolpath (not copied), its grid, the blocks it was made for (``sel``, execution
    ranks), the marks that may give pieces in each of their cells (``kernel.stitch.cell_entries``:
    ``cell_start``, ``entries``) and which marks are closed contours.
    """

    def __init__(self, tp: Toolpath, grid: StitchGrid, sel, cell_start, entries, closed) -> None:
        self.tp, self.grid, self.sel = tp, grid, sel
        self.cell_start, self.entries, self.closed = cell_start, entries, closed

    def stitch(self, blocks=None, progress: Progress = silent) -> Toolpath:
        """The pieces of the toolpath in ``blocks`` (execution ranks; None: every block it was
        made for), as ``stitch(toolpath, printer, grid=grid, blocks=blocks)``."""
        tp, grid = self.tp, self.grid
        sel = self.sel if blocks is None else _selection(grid, blocks)
        if not np.isin(sel, self.sel).all():
            raise ValueError(f"blocks {sel.tolist()} are not all among those the source was made for")
        if tp.n_marks == 0:
            out = Toolpath.empty(tp.layer_z_um)
            out.blocks = grid.blocks()
            out.meta = dict(tp.meta)
        else:
            progress(1, 4, "stitching")
            out = _clip(self, sel, progress)
        out.meta["stitching"] = _grid_meta(grid, blocks, sel)
        progress(4, 4, "stitching")
        return out


def _grid_meta(grid: StitchGrid, blocks, sel) -> dict:
    d = {
        "block_size_um": float(grid.block_size_um), "block_height_um": float(grid.block_height_um),
        "overlap_um": float(grid.overlap_um), "shear_deg": float(grid.shear_deg), "order": grid.order,
        "grid": [grid.nx, grid.ny, grid.nz], "single_column": bool(grid.single), "n_blocks": int(grid.n_blocks()),
    }
    if blocks is not None:
        d["blocks_selected"] = [int(v) for v in sel]
    return d


def _clip(src: StitchSource, sel: np.ndarray, progress: Progress) -> Toolpath:
    """Clip every mark of ``src`` to the selected blocks (execution ranks ``sel``), written in
    block order; every piece takes the per-mark fields of its source mark."""
    tp, grid = src.tp, src.grid
    nx, ny = grid.nx, grid.ny
    a, hov, tan_k = grid.block_size_um, grid.half_overlap_um, grid.tan_shear
    tier_z0 = grid.tier_z0_um
    x, y, z, p, ms = tp.x_um, tp.y_um, tp.z_um, tp.power_mw, tp.mark_start
    cs = grid.sequence()[sel]                         # selected dense cells in execution order
    cell_start, entries, closed = src.cell_start, src.entries, src.closed

    # tasks: runs of at most _TASK_ENTRIES entries of one cell, in output order
    ne = cell_start[cs + 1] - cell_start[cs]
    nch = (ne + _TASK_ENTRIES - 1) // _TASK_ENTRIES
    owner = np.repeat(np.arange(len(cs)), nch)
    j = np.arange(len(owner)) - np.repeat(np.cumsum(nch) - nch, nch)
    task_e0 = cell_start[cs][owner] + j * _TASK_ENTRIES
    task_e1 = np.minimum(task_e0 + _TASK_ENTRIES, cell_start[cs + 1][owner])
    tc = cs[owner]
    task_cell = np.column_stack([tc % nx, (tc // nx) % ny, tc // (nx * ny)]).astype(np.int64)
    common = (x, y, z, p, ms, closed, entries, task_cell, task_e0, task_e1, tier_z0, grid.gx0_um, grid.gy0_um,
              a, nx, ny, hov, tan_k, _MIN_PIECE_UM)
    t_pieces, t_points = _k.stitch_count(*common)
    progress(2, 4, "stitching")

    task_kbase = np.zeros(len(owner) + 1, np.int64)
    np.cumsum(t_pieces, out=task_kbase[1:])
    task_pbase = np.zeros(len(owner) + 1, np.int64)
    np.cumsum(t_points, out=task_pbase[1:])
    K, N = int(task_kbase[-1]), int(task_pbase[-1])
    pts = {name: np.empty(N) for name in POINT_FIELDS}
    piece_start = np.empty(K + 1, np.int64)
    piece_start[K] = N
    source = np.empty(K, np.int64)
    _k.stitch_fill(*common, task_kbase, task_pbase, pts["x_um"], pts["y_um"], pts["z_um"], pts["power_mw"],
                   piece_start, source)
    progress(3, 4, "stitching")
    marks = tp.take_marks(source)
    marks["mark_block"] = np.repeat(sel[owner], t_pieces).astype(np.int32)
    return tp.with_points(pts, piece_start, marks, blocks=grid.blocks())


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
