"""PyVista previews of a mesh, the sliced solid and the toolpath.

Two scenes, each built by a function that returns the :class:`pyvista.Plotter` (so a notebook
can keep working with it) and rendered to PNG by a companion that writes the file atomically:

* :func:`toolpath_plotter` / :func:`render_png` -- the 3-D scene: the mesh (translucent), the
  toolpath as lines coloured by kind, power, layer or block, the stitching blocks as wireframe
  boxes and optionally the sliced solid (a voxel occupancy) as an isosurface.
* :func:`layer_plotter` / :func:`render_layer_png` -- one layer seen from above: marks coloured
  by kind, the jumps between them, the slice contours and the galvo field outline.

The line geometry is built from the toolpath arrays in one vectorised pass
(:func:`toolpath_polydata`): one :class:`pyvista.PolyData` whose cells are the marks (one
polyline per mark), with ``kind``, ``layer`` and ``block`` as cell data and ``power_mw`` as
point data. Large toolpaths are decimated for display -- every n-th layer (counted from the top
so the top layer is always shown) and then every n-th mark -- to stay under ``max_segments``;
what is shown is written on the image, e.g. ``showing 1 in 4 layers, 2.0 M of 8.1 M segments``.

Offscreen rendering works without a display: when no ``DISPLAY`` exists the module selects
VTK's EGL render window and sets ``pyvista.OFF_SCREEN``. PNG files are encoded here (zlib, no
timestamps), so the same inputs give byte-identical images on the same machine.

Units: µm for every length, mW for power.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BioslicerError
from .toolpath import Kind, Toolpath, atomic_write_bytes

# ----------------------------------------------------------------------------- style
#: Colour of jumps (laser off) in the 2-D layer view.
JUMP_COLOR = (150, 150, 160)
#: Colour of the slice contours (the solid's outline) in the 2-D layer view.
SLICE_CONTOUR_COLOR = (235, 235, 235)
#: Colour of the galvo field outline and of the stitching block boxes.
FIELD_COLOR = (240, 215, 60)
#: Colour of the translucent mesh and of the solid isosurface.
MESH_COLOR = (200, 205, 215)
SOLID_COLOR = (120, 210, 200)
#: Window background (top and bottom of a vertical gradient) and text colour.
BACKGROUND = ((22, 24, 32), (52, 56, 70))
TEXT_COLOR = (235, 235, 240)
#: Cycling palette for ``color="block"``; unstitched marks (block -1) are grey.
BLOCK_PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                 (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127))
UNSTITCHED_COLOR = (110, 110, 120)
#: RGB colour (0-255) of each mark kind, used in the 3-D and 2-D views: the kinds of the Kind
#: registry in order take red, blue, green, orange, purple, then the block palette.
KIND_COLORS = dict(zip(Kind, ((230, 75, 60), (60, 150, 240), (80, 200, 110), (245, 170, 40), (175, 110, 230),
                              *BLOCK_PALETTE)))

COLOR_MODES = ("kind", "power", "layer", "block")
DEFAULT_WINDOW = (1200, 900)
#: Fewest distinct layers kept when decimating by layer (the rest is taken by marks).
MIN_LAYERS_SHOWN = 24
#: Layer steps up to this are used alone; larger loads are split between layers and marks.
SQRT_SPLIT_ABOVE = 16


def _rgb(c) -> tuple[float, float, float]:
    return tuple(v / 255.0 for v in c)


# ----------------------------------------------------------------------------- display
def has_display() -> bool:
    """True when an interactive window can open (an X/Wayland display, or Windows/macOS)."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _pyvista():
    """Import pyvista, set up for offscreen rendering when there is no display."""
    if not has_display():
        # Skip VTK's X11 probe (it prints a warning and falls back anyway) and use EGL/OSMesa.
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import pyvista as pv

    if not has_display():
        pv.OFF_SCREEN = True
    return pv


# ----------------------------------------------------------------------------- selection
def _layer_mask(layers, n_layers: int) -> np.ndarray:
    """(L,) bool of the selected layers.

    ``layers`` is None (all), an int K (one layer, negative counts from the top), a ``slice``,
    a ``(a, b)`` pair meaning ``a <= layer < b`` like a slice, or a sequence of layer indices.
    """
    mask = np.zeros(n_layers, bool)
    if layers is None:
        mask[:] = True
        return mask
    if isinstance(layers, (int, np.integer)):
        k = int(layers)
        if not -n_layers <= k < n_layers:
            raise BioslicerError(f"layer {k} does not exist; the toolpath has {n_layers} layers (0..{n_layers - 1})")
        mask[k] = True
        return mask
    if isinstance(layers, tuple) and len(layers) == 2 and all(
            v is None or isinstance(v, (int, np.integer)) for v in layers):
        layers = slice(*layers)
    if isinstance(layers, slice):
        mask[layers] = True
        if not mask.any():
            a = "" if layers.start is None else layers.start
            b = "" if layers.stop is None else layers.stop
            raise BioslicerError(f"layers {a}:{b} select no layer; the toolpath has {n_layers} layers "
                                 f"(0..{n_layers - 1}), and A:B means A <= layer < B")
        return mask
    idx = np.asarray(layers).astype(np.int64).ravel()
    if idx.size == 0:
        raise BioslicerError("the layer list is empty; give at least one layer index")
    if idx.min() < -n_layers or idx.max() >= n_layers:
        raise BioslicerError(f"layer list has indices outside 0..{n_layers - 1}; pick existing layers")
    mask[idx] = True
    return mask


def parse_layers(text: str | None):
    """Parse the CLI form ``K``, ``A:B``, ``A:`` or ``:B`` (half-open, like Python) into a slice or int."""
    if text is None or text.strip() == "":
        return None
    s = text.strip()
    try:
        if ":" not in s:
            return int(s)
        a, b = s.split(":", 1)
        return slice(int(a) if a.strip() else None, int(b) if b.strip() else None)
    except ValueError:
        raise BioslicerError(f"--layers {text!r} is not K, A:B, A: or :B with whole numbers") from None


@dataclass
class PreviewStats:
    """What a preview shows of the toolpath (after layer selection and decimation).

    Attributes
    ----------
    total_segments, shown_segments : int
        Mark segments in the selected layers, and those drawn.
    total_marks, shown_marks : int
        Marks in the selected layers, and those drawn.
    total_layers, shown_layers : int
        Selected layers that have marks, and those drawn.
    layer_step, mark_step : int
        Decimation: 1 in ``layer_step`` layers and then 1 in ``mark_step`` marks are drawn.
    contours_whole : bool
        Contour marks of the drawn layers were all kept (only the other marks were thinned).
    line_pixels : int
        Estimated pixels the drawn lines cover (the render cost), 0 when not estimated.
    """

    total_segments: int = 0
    shown_segments: int = 0
    total_marks: int = 0
    shown_marks: int = 0
    total_layers: int = 0
    shown_layers: int = 0
    layer_step: int = 1
    mark_step: int = 1
    contours_whole: bool = False
    line_pixels: int = 0

    @property
    def decimated(self) -> bool:
        return self.layer_step > 1 or self.mark_step > 1

    def text(self) -> str:
        """One line for the image, e.g. ``showing 1 in 4 layers, 2.0 M of 8.1 M segments``."""
        if self.total_segments == 0:
            return "no marks in the selected layers"
        lay = (f"1 in {self.layer_step} layers" if self.layer_step > 1
               else f"all {self.total_layers} layer" + ("s" if self.total_layers != 1 else ""))
        marks = ""
        if self.mark_step > 1:
            marks = f", 1 in {self.mark_step} " + ("fill marks (all contours)" if self.contours_whole else "marks")
        if self.decimated:
            segs = f"{_count(self.shown_segments)} of {_count(self.total_segments)} segments"
        else:
            segs = f"{_count(self.total_segments)} segments"
        return f"showing {lay}{marks}, {segs}"

    def to_dict(self) -> dict:
        return {k: (bool(v) if isinstance(v, (bool, np.bool_)) else int(v)) for k, v in self.__dict__.items()}


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 100_000:
        return f"{n / 1e3:.0f} k"
    return f"{n:,}"


def mark_lengths_um(toolpath: Toolpath) -> np.ndarray:
    """(M,) polyline length of each mark, µm (:meth:`Toolpath.mark_lengths`)."""
    return toolpath.mark_lengths()


def decimate_marks(mark_layer: np.ndarray, mark_segments: np.ndarray, layer_mask: np.ndarray,
                   max_segments: int, mark_cost: np.ndarray | None = None, max_cost: float = math.inf,
                   protect: np.ndarray | None = None) -> tuple[np.ndarray, PreviewStats]:
    """Choose the marks to draw: selected layers, then every n-th layer and every n-th mark.

    The load of a set of marks is the larger of (segments / ``max_segments``) and
    (cost / ``max_cost``); it must end up at most 1. Layers are thinned first (keeping at
    least ``MIN_LAYERS_SHOWN`` layers, counted from the top layer down so the top is always
    drawn), then marks.

    Parameters
    ----------
    mark_layer : (M,) int
        Layer index of each mark.
    mark_segments : (M,) int
        Segments (points - 1) of each mark.
    layer_mask : (L,) bool
        Selected layers.
    max_segments : int
        Draw at most about this many segments.
    mark_cost : (M,) float, optional
        Render cost of each mark (e.g. the pixels its lines cover).
    max_cost : float
        Budget for the summed ``mark_cost`` of the drawn marks.
    protect : (M,) bool, optional
        Marks (the contours) kept whole in the drawn layers as long as they take at most a
        quarter of the budget; the every-n-th-mark step then applies to the others only.

    Returns
    -------
    keep : (K,) int64
        Indices of the marks to draw, in toolpath order.
    stats : PreviewStats
        What is shown out of what was selected.
    """
    if max_segments < 1:
        raise BioslicerError(f"max_segments must be at least 1, got {max_segments}")
    nlay = len(layer_mask)
    segs = mark_segments.astype(np.int64, copy=False)
    cost = np.zeros(len(segs)) if mark_cost is None else np.asarray(mark_cost, np.float64)
    if not max_cost > 0:
        max_cost = math.inf

    def load(idx) -> float:
        return max(segs[idx].sum() / max_segments, cost[idx].sum() / max_cost)

    # per-layer sums first: the layer step is decided without touching every mark twice
    n_l = np.bincount(mark_layer, minlength=nlay)[:nlay] * layer_mask
    seg_l = np.bincount(mark_layer, weights=segs, minlength=nlay)[:nlay] * layer_mask
    cost_l = (np.bincount(mark_layer, weights=cost, minlength=nlay)[:nlay] * layer_mask
              if mark_cost is not None else np.zeros(nlay))
    present = np.flatnonzero(n_l)
    nl = len(present)
    total = int(round(seg_l.sum()))
    st = PreviewStats(total_segments=total, total_marks=int(n_l.sum()), total_layers=nl)
    layer_step = 1
    total_load = max(seg_l.sum() / max_segments, cost_l.sum() / max_cost)
    if total_load > 1 and nl > 1:
        # thin layers alone while that keeps enough of them, beyond that layers and marks
        # about equally (the square root), so hatch directions stay visible
        layer_step = min(math.ceil(total_load), max(1, nl // MIN_LAYERS_SHOWN),
                         max(math.ceil(math.sqrt(total_load)), SQRT_SPLIT_ABOVE))
    keep_layer = np.zeros(nlay, bool)
    keep_layer[present[::-1][::layer_step]] = True          # counted from the top layer down
    keep = np.flatnonzero(keep_layer[mark_layer]) if len(mark_layer) else np.zeros(0, np.int64)
    mark_step = 1
    prot = np.zeros(len(keep), bool) if protect is None else np.asarray(protect, bool)[keep]
    if load(keep) > 1:
        if prot.any() and not prot.all() and load(keep[prot]) <= 0.25:
            fixed, free = keep[prot], keep[~prot]
            st.contours_whole = True
        else:
            fixed, free = keep[:0], keep
        room = 1.0 - load(fixed)
        cur = load(free)
        while cur > room and mark_step < len(free):
            mark_step = min(len(free), max(mark_step + 1, math.ceil(mark_step * cur / room)))
            cur = load(free[::mark_step])
        keep = np.sort(np.concatenate([fixed, free[::mark_step]]))
    if mark_step == 1:
        st.contours_whole = False
    st.shown_segments = int(segs[keep].sum())
    st.line_pixels = int(round(cost[keep].sum()))
    st.shown_marks = int(len(keep))
    st.shown_layers = int(np.count_nonzero(np.bincount(mark_layer[keep], minlength=nlay)))
    st.layer_step = int(layer_step)
    st.mark_step = int(mark_step)
    return keep, st


# ----------------------------------------------------------------------------- geometry
def _lines_polydata(points: np.ndarray, offsets: np.ndarray):
    """PolyData of polylines: cell c uses points offsets[c]:offsets[c+1] (consecutive)."""
    pv = _pyvista()
    poly = pv.PolyData()
    poly.points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    n = int(offsets[-1]) if len(offsets) else 0
    poly.lines = pv.CellArray.from_arrays(np.ascontiguousarray(offsets, dtype=np.int64),
                                          np.arange(n, dtype=np.int64))
    return poly


#: Render cost of one line segment in pixel-equivalents (per-line set-up of a software rasteriser).
PIXELS_PER_SEGMENT = 10.0
#: Default line budget of a render: this many times the window's pixel count.
LINE_PIXELS_PER_WINDOW_PIXEL = 6.0


def _line_budget(window_size, max_line_pixels) -> float:
    if max_line_pixels is None:
        return LINE_PIXELS_PER_WINDOW_PIXEL * window_size[0] * window_size[1]
    return float(max_line_pixels) if max_line_pixels > 0 else math.inf


def mark_render_cost(toolpath: Toolpath, px_per_um: float) -> np.ndarray:
    """(M,) estimated pixels each mark's lines cover on screen, plus a per-segment set-up cost."""
    return float(px_per_um) * mark_lengths_um(toolpath) + PIXELS_PER_SEGMENT * (np.diff(toolpath.mark_start) - 1)


def toolpath_polydata(toolpath: Toolpath, layers=None, max_segments: int = 2_000_000,
                      px_per_um: float | None = None, max_line_pixels: float = math.inf):
    """The marks of a toolpath as one line PolyData, decimated for display.

    Parameters
    ----------
    toolpath : Toolpath
        The marks (µm, mW).
    layers : None, int, slice, (a, b) or sequence of int
        Layers to show (``(a, b)`` and slices are half-open: a <= layer < b).
    max_segments : int
        Decimate (every n-th layer, then every n-th mark) to draw at most about this many segments.
    px_per_um : float, optional
        Screen scale; with ``max_line_pixels`` it bounds the pixels the lines cover (the
        render time of a software rasteriser), see :func:`mark_render_cost`.
    max_line_pixels : float
        Budget of line pixels (pixel-equivalents) when ``px_per_um`` is given.

    Returns
    -------
    poly : pyvista.PolyData
        One polyline cell per mark, cells sorted by layer (stable, so the toolpath order is kept
        within a layer). Cell data ``kind`` (uint8), ``layer`` (int32), ``block`` (int32); point
        data ``power_mw`` (float32).
    stats : PreviewStats
        What is shown.
    """
    mask = _layer_mask(layers, toolpath.n_layers)
    npts = np.diff(toolpath.mark_start)
    cost = None
    if px_per_um is not None and math.isfinite(max_line_pixels):
        cost = mark_render_cost(toolpath, px_per_um)
    keep, stats = decimate_marks(toolpath.mark_layer, npts - 1, mask, max_segments, cost, max_line_pixels,
                                 protect=toolpath.mark_kind == Kind.CONTOUR)
    keep = keep[np.argsort(toolpath.mark_layer[keep], kind="stable")]
    counts = npts[keep]
    offsets = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    pidx = np.repeat(toolpath.mark_start[keep] - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
    pts = np.empty((len(pidx), 3), np.float32)
    pts[:, 0] = toolpath.x_um[pidx]
    pts[:, 1] = toolpath.y_um[pidx]
    pts[:, 2] = toolpath.z_um[pidx]
    poly = _lines_polydata(pts, offsets)
    poly.cell_data["kind"] = toolpath.mark_kind[keep]
    poly.cell_data["layer"] = toolpath.mark_layer[keep]
    poly.cell_data["block"] = toolpath.mark_block[keep]
    poly.point_data["power_mw"] = toolpath.power_mw[pidx].astype(np.float32)
    return poly, stats


def box_edges_polydata(lo_um: np.ndarray, hi_um: np.ndarray):
    """Wireframe boxes (12 edges each) from (B, 3) lower and upper corners, µm."""
    lo = np.asarray(lo_um, np.float64).reshape(-1, 3)
    hi = np.asarray(hi_um, np.float64).reshape(-1, 3)
    corner = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], bool)  # 8 corners
    pts = np.where(corner[None], hi[:, None, :], lo[:, None, :]).reshape(-1, 3)
    edges = np.array([[0, 1], [2, 3], [4, 5], [6, 7], [0, 2], [1, 3], [4, 6], [5, 7],
                      [0, 4], [1, 5], [2, 6], [3, 7]], np.int64)
    conn = (edges[None] + 8 * np.arange(len(lo))[:, None, None]).reshape(-1)
    pv = _pyvista()
    poly = pv.PolyData()
    poly.points = pts
    poly.lines = pv.CellArray.from_regular_cells(conn.reshape(-1, 2))
    return poly


def mesh_polydata(mesh):
    """A triangle PolyData from a trimesh.Trimesh, a bioslicer Solid or anything with vertices/faces."""
    pv = _pyvista()
    if isinstance(mesh, pv.DataSet):
        return mesh.extract_surface() if not isinstance(mesh, pv.PolyData) else mesh
    verts = getattr(mesh, "vertices_um", None)
    if verts is None:
        verts = getattr(mesh, "vertices", None)
    faces = getattr(mesh, "faces", None)
    if verts is None or faces is None:
        raise BioslicerError(f"cannot show a {type(mesh).__name__} as a mesh; give a trimesh.Trimesh or a bioslicer Solid")
    verts = np.asarray(verts, np.float64).reshape(-1, 3)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    return pv.PolyData.from_regular_faces(verts, faces)


def _voxel_parts(voxels):
    if isinstance(voxels, (tuple, list)) and len(voxels) == 3:
        occ, origin, vox = voxels
    elif hasattr(voxels, "dense"):                     # bioslicer.slicing.VoxelGrid (maybe bit-packed)
        occ, origin, vox = voxels.dense(), getattr(voxels, "origin_um", None), getattr(voxels, "voxel_um", None)
    else:
        occ = next((getattr(voxels, a) for a in ("occupancy", "occ", "data", "matrix") if hasattr(voxels, a)), None)
        origin = getattr(voxels, "origin_um", None)
        vox = getattr(voxels, "voxel_um", None)
        if occ is None or origin is None or vox is None:
            raise BioslicerError("voxels must be (occupancy[z, y, x], origin_um, voxel_um) or an object "
                                 "with occupancy, origin_um and voxel_um")
    occ = np.asarray(occ)
    if occ.ndim != 3:
        raise BioslicerError(f"voxel occupancy must be a 3-D array [z, y, x], got shape {occ.shape}")
    origin = np.broadcast_to(np.asarray(origin, np.float64), (3,))
    vox = np.broadcast_to(np.asarray(vox, np.float64), (3,))
    if np.any(vox <= 0):
        raise BioslicerError(f"voxel size must be positive in x, y and z, got {vox.tolist()} µm")
    return occ, origin, vox


def solid_surface(voxels, max_voxels: int = 8_000_000):
    """Isosurface of a voxel occupancy (the sliced solid).

    Parameters
    ----------
    voxels : (occupancy, origin_um, voxel_um) or object with those attributes
        ``occupancy`` is a bool array [z, y, x]; ``origin_um`` the (x, y, z) lower corner of voxel
        [0, 0, 0]; ``voxel_um`` the voxel size (dx, dy, dz) or one number, µm.
    max_voxels : int
        Larger grids are subsampled (every s-th voxel on each axis) before contouring.

    Returns
    -------
    surface : pyvista.PolyData
        The 0.5 isosurface of the padded occupancy, closed at the grid border.
    stride : int
        The subsampling step used (1 = full resolution).
    """
    pv = _pyvista()
    occ, origin, vox = _voxel_parts(voxels)
    stride = max(1, math.ceil((occ.size / max_voxels) ** (1 / 3))) if occ.size > max_voxels else 1
    occ = occ[::stride, ::stride, ::stride]
    vox = vox * stride
    pad = np.zeros(tuple(s + 2 for s in occ.shape), np.uint8)
    pad[1:-1, 1:-1, 1:-1] = occ.astype(bool)
    grid = pv.ImageData(dimensions=pad.shape[::-1], spacing=tuple(vox),
                        origin=tuple(origin + 0.5 * vox - vox))
    grid.point_data["occ"] = pad.ravel(order="C").astype(np.float32)
    surf = grid.contour([0.5], scalars="occ", method="flying_edges")
    return surf, stride


def voxelize_mesh(mesh, max_cells: int = 128, max_pairs: int = 40_000_000):
    """Rasterise a closed mesh into a coarse voxel occupancy for previews (nonzero winding).

    Each triangle is tested against the voxel-centre columns under its x-y bounding box (all
    pairs at once, vectorised); the crossings' orientation gives the winding number along each
    column, and a voxel is inside where it is not zero.

    Parameters
    ----------
    mesh : trimesh.Trimesh, bioslicer Solid or anything with vertices/faces (µm)
    max_cells : int
        Voxels along the longest side of the mesh bounds.
    max_pairs : int
        Memory guard: the resolution is halved until the triangle-column pairs fit.

    Returns
    -------
    occupancy : (nz, ny, nx) bool
    origin_um : (3,) float64
        Lower corner of voxel [0, 0, 0] (x, y, z), µm.
    voxel_um : (3,) float64
        Voxel size (dx, dy, dz), µm (cubic).
    """
    V = np.asarray(getattr(mesh, "vertices_um", None) if getattr(mesh, "vertices_um", None) is not None
                   else mesh.vertices, np.float64).reshape(-1, 3)
    F = np.asarray(mesh.faces, np.int64).reshape(-1, 3)
    if len(F) == 0:
        raise BioslicerError("the mesh has no faces to voxelise")
    lo, hi = V.min(axis=0), V.max(axis=0)
    ext = float(np.max(hi - lo))
    if not ext > 0:
        raise BioslicerError("the mesh is flat or empty; it has no volume to show")
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    d = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    keep = np.abs(d) > 1e-12 * ext * ext
    a, b, c, d = a[keep], b[keep], c[keep], d[keep]
    txy_lo = np.minimum(np.minimum(a, b), c)[:, :2]
    txy_hi = np.maximum(np.maximum(a, b), c)[:, :2]
    cells = int(max_cells)
    while True:
        h = ext / cells
        n = np.maximum(np.ceil((hi - lo) / h - 1e-9).astype(np.int64), 1)
        # voxel-centre columns; a tiny irrational shift keeps centres off shared mesh edges
        off = lo[:2] + h * (0.5 + 1e-7 * np.array([math.pi, math.e]))
        i0 = np.maximum(np.ceil((txy_lo - off) / h), 0).astype(np.int64)
        i1 = np.minimum(np.floor((txy_hi - off) / h), n[:2] - 1).astype(np.int64)
        cnt_xy = np.maximum(i1 - i0 + 1, 0)
        counts = cnt_xy[:, 0] * cnt_xy[:, 1]
        if counts.sum() <= max_pairs or cells <= 8:
            break
        cells //= 2
    tri = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ii = i0[tri, 0] + local % np.maximum(cnt_xy[tri, 0], 1)
    jj = i0[tri, 1] + local // np.maximum(cnt_xy[tri, 0], 1)
    px = off[0] + ii * h
    py = off[1] + jj * h
    A, B, C, D = a[tri], b[tri], c[tri], d[tri]
    wa = ((B[:, 0] - px) * (C[:, 1] - py) - (B[:, 1] - py) * (C[:, 0] - px)) / D
    wb = ((C[:, 0] - px) * (A[:, 1] - py) - (C[:, 1] - py) * (A[:, 0] - px)) / D
    wc = 1.0 - wa - wb
    hit = (wa >= 0) & (wb >= 0) & (wc >= 0)
    z = wa * A[:, 2] + wb * B[:, 2] + wc * C[:, 2]
    k = np.clip(np.ceil((z - lo[2]) / h - 0.5), 0, n[2]).astype(np.int64)
    sign = np.where(D > 0, -1.0, 1.0)                  # upward-facing: leaving the solid
    col = jj * n[0] + ii
    delta = np.bincount((col * (n[2] + 1) + k)[hit], weights=sign[hit], minlength=n[0] * n[1] * (n[2] + 1))
    wind = np.cumsum(np.rint(delta).astype(np.int64).reshape(n[1], n[0], n[2] + 1), axis=2)[..., :-1]
    occ = np.ascontiguousarray((wind != 0).transpose(2, 0, 1))
    return occ, lo.copy(), np.full(3, h)


# ----------------------------------------------------------------------------- plotter
def _new_plotter(off_screen: bool, window_size, title: str | None):
    pv = _pyvista()
    off = bool(off_screen) or not has_display()
    p = pv.Plotter(off_screen=off, window_size=list(window_size), title=title or "bioslicer preview",
                   theme=pv.themes.Theme())
    p.set_background(_rgb(BACKGROUND[0]), top=_rgb(BACKGROUND[1]))
    return p


def _kind_lut(pv):
    lut = pv.LookupTable()
    table = np.array([(*KIND_COLORS[k], 255) for k in Kind], np.uint8)
    lut.SetNumberOfTableValues(len(table))
    for i, c in enumerate(table):
        lut.SetTableValue(i, *(c / 255.0))
    lut.SetTableRange(-0.5, len(table) - 0.5)
    return lut


def _block_lut(pv):
    lut = pv.LookupTable()
    cols = [UNSTITCHED_COLOR, *BLOCK_PALETTE]
    lut.SetNumberOfTableValues(len(cols))
    for i, c in enumerate(cols):
        lut.SetTableValue(i, *_rgb(c), 1.0)
    lut.SetTableRange(-0.5, len(cols) - 0.5)
    return lut


def _add_lines(p, poly, color: str, line_width: float, name: str = "toolpath"):
    """Add the toolpath lines coloured by ``color``; return the actor."""
    pv = _pyvista()
    common = dict(name=name, line_width=line_width, lighting=False, show_scalar_bar=False)
    if color == "kind":
        return p.add_mesh(poly, scalars="kind", preference="cell", cmap=_kind_lut(pv),
                          clim=[-0.5, len(Kind) - 0.5], **common)
    if color == "block":
        b = poly.cell_data["block"]
        poly.cell_data["block_color"] = np.where(b < 0, 0, b % len(BLOCK_PALETTE) + 1).astype(np.int32)
        return p.add_mesh(poly, scalars="block_color", preference="cell", cmap=_block_lut(pv),
                          clim=[-0.5, len(BLOCK_PALETTE) + 0.5], **common)
    sbar = dict(color=_rgb(TEXT_COLOR), title_font_size=14, label_font_size=12, n_labels=5,
                fmt="%.4g", vertical=True, position_x=0.88, position_y=0.25, width=0.05, height=0.5)
    if color == "power":
        pw = poly.point_data["power_mw"]
        lo, hi = (float(pw.min()), float(pw.max())) if len(pw) else (0.0, 1.0)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        actor = p.add_mesh(poly, scalars="power_mw", preference="point", cmap="plasma", clim=[lo, hi],
                           **common)
        p.add_scalar_bar(title="power (mW)", mapper=actor.mapper, **sbar)
        return actor
    if color == "layer":
        lay = poly.cell_data["layer"]
        lo, hi = (float(lay.min()), float(lay.max())) if len(lay) else (0.0, 1.0)
        if hi - lo < 1:
            lo, hi = lo - 0.5, hi + 0.5
        actor = p.add_mesh(poly, scalars="layer", preference="cell", cmap="viridis", clim=[lo, hi], **common)
        p.add_scalar_bar(title="layer", mapper=actor.mapper, **sbar)
        return actor
    raise BioslicerError(f"unknown colouring {color!r}; use one of {', '.join(COLOR_MODES)}")


def _kind_legend(p, kinds, extra=()):
    labels = [[Kind(int(k)).name.lower(), _rgb(KIND_COLORS[Kind(int(k))])] for k in kinds]
    labels += [[name, _rgb(c)] for name, c in extra]
    if labels:
        n = len(labels)
        w, h = p.window_size
        # VTK scales the legend text to fit the box: size it for ~14 px rows
        rows = 0.028 * n * (900 / h) ** 0.5
        width = min(0.4, (max(len(s) for s, _ in labels) + 3) * 0.0095 * (1200 / w) ** 0.5)
        p.add_legend(labels=labels, bcolor=_rgb(BACKGROUND[0]), border=False, loc="upper right",
                     size=(width, min(0.6, rows)), face="rectangle", background_opacity=0.6,
                     name="legend")


def _nice_axis(lo: float, hi: float, target: int = 5) -> tuple[float, float, int]:
    """Round axis limits to a 1-2-2.5-5 step: the tightest cover of [lo, hi] with 3..8 labels.

    Returns (lo, hi, number of labels).
    """
    span = hi - lo
    if not span > 0:
        return lo - 0.5, hi + 0.5, 2
    raw = span / max(target - 1, 1)
    best = None
    for e in range(math.floor(math.log10(raw)) - 1, math.floor(math.log10(raw)) + 2):
        for m in (1, 2, 2.5, 5):
            step = m * 10.0 ** e
            a = math.floor(lo / step + 1e-9) * step
            b = math.ceil(hi / step - 1e-9) * step
            n = int(round((b - a) / step)) + 1
            key = (round((b - a) / span, 6), abs(n - target))
            if 3 <= n <= 8 and (best is None or key < best[0]):
                best = (key, (a, b, n))
    return best[1] if best is not None else (lo, hi, 2)


def _add_axes_um(p, bounds, three_d: bool):
    """Axes with round labels in µm around ``bounds`` (x0, x1, y0, y1, z0, z1)."""
    x0, x1, nx = _nice_axis(bounds[0], bounds[1])
    y0, y1, ny = _nice_axis(bounds[2], bounds[3])
    if three_d and bounds[5] - bounds[4] < 0.3 * max(bounds[1] - bounds[0], bounds[3] - bounds[2]):
        z0, z1, nz = bounds[4], bounds[5], 2          # a flat part: label the bottom and top only
    elif three_d:
        z0, z1, nz = _nice_axis(bounds[4], bounds[5], 3)
    else:
        z0, z1, nz = bounds[4], bounds[5], 2
    # 3-D axis titles are vector text (ASCII only): write um there, µm in the 2-D view
    u = "µm" if not three_d else "um"
    p.show_bounds(bounds=[x0, x1, y0, y1, z0, z1], xtitle=f"x ({u})", ytitle=f"y ({u})", ztitle=f"z ({u})",
                  show_zaxis=three_d, show_zlabels=three_d, n_xlabels=nx, n_ylabels=ny, n_zlabels=nz,
                  location="outer" if three_d else "front", ticks="outside", color=_rgb(TEXT_COLOR),
                  font_size=10, fmt="%.4g", bold=False, grid=None, use_2d=not three_d,
                  use_3d_text=False)
    return [x0, x1, y0, y1, z0, z1]


def _prefix_lines(poly, n_cells: int):
    """A PolyData sharing ``poly``'s points with only its first ``n_cells`` cells."""
    pv = _pyvista()
    sub = pv.PolyData()
    sub.points = poly.points
    offsets = _offsets(poly)
    n = int(offsets[n_cells])
    sub.lines = pv.CellArray.from_arrays(offsets[: n_cells + 1].astype(np.int64),
                                         _connectivity(poly)[:n].astype(np.int64))
    for k in poly.cell_data.keys():
        sub.cell_data[k] = poly.cell_data[k][:n_cells]
    for k in poly.point_data.keys():
        sub.point_data[k] = poly.point_data[k]
    return sub


def _offsets(poly):
    from vtkmodules.util.numpy_support import vtk_to_numpy

    return vtk_to_numpy(poly.GetLines().GetOffsetsArray())


def _connectivity(poly):
    from vtkmodules.util.numpy_support import vtk_to_numpy

    return vtk_to_numpy(poly.GetLines().GetConnectivityArray())


def show_up_to_layer(plotter, layer: int) -> int:
    """Limit the 3-D toolpath of a :func:`toolpath_plotter` to layers <= ``layer``.

    This is what the layer slider does; it also works offscreen. Returns the number of marks
    drawn afterwards.
    """
    info = plotter.preview_info
    poly = info["toolpath_polydata"]
    actor = plotter.actors.get("toolpath")
    if poly is None or actor is None:
        return 0
    n = int(np.searchsorted(poly.cell_data["layer"], int(layer), side="right"))
    actor.mapper.SetInputData(_prefix_lines(poly, n))
    actor.mapper.Modified()
    info["layer_limit"] = int(layer)
    return n


def _fit_camera_3d(p, bounds):
    p.view_isometric()
    p.reset_camera(bounds=bounds)
    p.camera.zoom(0.9)


def _bounds_of(*datasets):
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for d in datasets:
        if d is None or d.n_points == 0:
            continue
        b = np.asarray(d.bounds).reshape(3, 2)
        lo = np.minimum(lo, b[:, 0])
        hi = np.maximum(hi, b[:, 1])
    if not np.all(np.isfinite(lo)):
        return None
    return [lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]]


def toolpath_plotter(toolpath: Toolpath | None = None, mesh=None, layers=None, color: str = "kind",
                     voxels=None, show_blocks: bool = True, off_screen: bool = False,
                     max_segments: int = 2_000_000, title: str | None = None,
                     window_size=DEFAULT_WINDOW, slider: bool | None = None,
                     max_line_pixels: float | None = None):
    """The 3-D preview scene: mesh, toolpath, blocks and (optionally) the sliced solid.

    Parameters
    ----------
    toolpath : Toolpath, optional
        Marks to draw as lines (µm).
    mesh : trimesh.Trimesh, bioslicer Solid, pyvista.PolyData or anything with vertices/faces, optional
        Drawn translucent (µm).
    layers : None, int, slice, (a, b) or sequence of int
        Toolpath layers to draw; ``(a, b)`` and slices are half-open (a <= layer < b).
    color : {'kind', 'power', 'layer', 'block'}
        Line colouring: categorical per mark kind (with a legend), point power (mW, plasma
        colour map), layer index (viridis) or stitching block (cycling palette).
    voxels : (occupancy[z, y, x], origin_um, voxel_um) or object with those attributes, optional
        The sliced solid, drawn as a translucent isosurface (see :func:`solid_surface`).
    show_blocks : bool
        Draw the stitching blocks (``toolpath.blocks``) as wireframe boxes.
    off_screen : bool
        Render without a window (always the case when no display exists).
    max_segments : int
        Decimate the toolpath to about this many drawn segments; what is shown is written on
        the image.
    title : str, optional
        Text at the top of the image (and window title).
    window_size : (int, int)
        Render size in pixels.
    slider : bool, optional
        Add the layer slider; default: when the plotter is interactive and the toolpath has
        more than one layer.
    max_line_pixels : float, optional
        Render budget: the drawn lines may cover about this many pixels (plus
        ``PIXELS_PER_SEGMENT`` per segment); default ``LINE_PIXELS_PER_WINDOW_PIXEL`` times the
        window's pixels, which keeps a software (llvmpipe) render to seconds; 0 = no limit.

    Returns
    -------
    plotter : pyvista.Plotter
        ``plotter.preview_info`` is a dict with ``stats`` (:class:`PreviewStats` or None),
        ``text`` (the decimation line), ``toolpath_polydata`` and ``solid_stride``.
    """
    if color not in COLOR_MODES:
        raise BioslicerError(f"unknown colouring {color!r}; use one of {', '.join(COLOR_MODES)}")
    if toolpath is None and mesh is None and voxels is None:
        raise BioslicerError("nothing to preview; give a toolpath, a mesh or voxels")
    pv = _pyvista()
    p = _new_plotter(off_screen, window_size, title)
    info = {"stats": None, "text": "", "toolpath_polydata": None, "solid_stride": None, "layer_limit": None}
    pv.set_new_attribute(p, "preview_info", info)
    shown = []
    lines_text = []

    if mesh is not None:
        mpoly = mesh_polydata(mesh)
        p.add_mesh(mpoly, name="mesh", color=_rgb(MESH_COLOR), opacity=0.22, smooth_shading=False,
                   specular=0.2, show_scalar_bar=False)
        shown.append(mpoly)
        lines_text.append(f"mesh: {mpoly.n_cells:,} triangles")

    if voxels is not None:
        surf, stride = solid_surface(voxels)
        info["solid_stride"] = stride
        if surf.n_points:
            p.add_mesh(surf, name="solid", color=_rgb(SOLID_COLOR), opacity=0.35, show_scalar_bar=False)
            shown.append(surf)
        lines_text.append("solid: isosurface" + (f", 1 in {stride} voxels per axis" if stride > 1 else ""))

    kinds_present = []
    if toolpath is not None:
        scene = [toolpath.bounds()] if toolpath.n_points else []
        scene += [np.asarray(d.bounds).reshape(3, 2).T for d in shown]
        px_per_um = None
        if scene:
            sb = np.vstack(scene)
            diag = max(float(np.linalg.norm(sb.max(axis=0) - sb.min(axis=0))), 1e-6)
            px_per_um = min(window_size) / (1.1 * diag)      # camera fits the bounding sphere
        poly, stats = toolpath_polydata(toolpath, layers=layers, max_segments=max_segments, px_per_um=px_per_um,
                                        max_line_pixels=_line_budget(window_size, max_line_pixels))
        info["stats"] = stats
        info["toolpath_polydata"] = poly
        info["text"] = stats.text()
        lines_text.insert(0, stats.text())
        if poly.n_cells:
            lw = 2.0 if stats.shown_segments <= 20_000 else 1.0
            _add_lines(p, poly, color, lw)
            shown.append(poly)
            kinds_present = np.unique(poly.cell_data["kind"]).tolist()
        if show_blocks and toolpath.blocks is not None and len(toolpath.blocks):
            used = np.unique(toolpath.mark_block[toolpath.mark_block >= 0])
            blk = toolpath.blocks
            idx = used if len(used) else np.arange(len(blk))
            boxes = box_edges_polydata(blk.lo_um[idx], blk.hi_um[idx])
            p.add_mesh(boxes, name="blocks", color=_rgb(FIELD_COLOR), line_width=1.0, lighting=False,
                       opacity=0.8)
            lines_text.append(f"{len(idx)} stitching block" + ("s" if len(idx) != 1 else ""))

    if color == "kind" and kinds_present:
        extra = [("blocks", FIELD_COLOR)] if "blocks" in p.actors else []
        _kind_legend(p, kinds_present, extra)
    elif color == "block" and toolpath is not None:
        lines_text.append("coloured by block")

    bounds = _bounds_of(*shown)
    if toolpath is not None and toolpath.n_points:
        # frame the whole toolpath, so that selecting layers keeps the camera and the axes
        tb = toolpath.bounds()
        if bounds is not None:
            tb = np.vstack([tb, np.asarray(bounds).reshape(3, 2).T])
        bounds = [tb[:, 0].min(), tb[:, 0].max(), tb[:, 1].min(), tb[:, 1].max(), tb[:, 2].min(), tb[:, 2].max()]
    if bounds is not None:
        _fit_camera_3d(p, _add_axes_um(p, bounds, three_d=True))
    if title:
        p.add_text(title, position="upper_edge", font_size=12, color=_rgb(TEXT_COLOR), name="title")
    if lines_text:
        # upper left, below the title line (text actors are anchored at their bottom-left corner)
        top = window_size[1] - (44 if title else 10)
        p.add_text("\n".join(lines_text), position=(8, max(top - 15 * len(lines_text), 0)), font_size=9,
                   color=_rgb(TEXT_COLOR), name="info")

    interactive = not p.off_screen
    poly = info["toolpath_polydata"]
    if slider is None:
        slider = interactive
    if slider and poly is not None and poly.n_cells:
        lay = poly.cell_data["layer"]
        lo, hi = int(lay.min()), int(lay.max())
        if hi > lo:
            p.add_slider_widget(lambda v: show_up_to_layer(p, int(round(v))), [lo, hi], value=hi,
                                title="show layers up to", pointa=(0.55, 0.08), pointb=(0.95, 0.08),
                                fmt="%.0f", style="modern", interaction_event="always",
                                color=_rgb(TEXT_COLOR), title_color=_rgb(TEXT_COLOR), title_height=0.02)
    if interactive:
        p.add_axes(color=_rgb(TEXT_COLOR), xlabel="x", ylabel="y", zlabel="z")
    return p


# ----------------------------------------------------------------------------- 2-D layer view
def _field_outline(shape: str, size_um: float, centers_xy: np.ndarray, n_circle: int = 128):
    """Closed outline rings (points, offsets) of the galvo field around each block centre."""
    half = size_um / 2
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, n_circle + 1)
        ring = np.column_stack([half * np.cos(t), half * np.sin(t)])
    else:
        ring = np.array([[-half, -half], [half, -half], [half, half], [-half, half], [-half, -half]])
    pts = (centers_xy[:, None, :] + ring[None]).reshape(-1, 2)
    offsets = np.arange(len(centers_xy) + 1, dtype=np.int64) * len(ring)
    return pts, offsets


def _ring_arrays(contours):
    """Concatenate closed rings (list of (n, 2)) into points and offsets; close open rings."""
    pts, offs = [], [0]
    for r in contours:
        r = np.asarray(r, np.float64).reshape(-1, 2)
        if len(r) < 2:
            continue
        if not np.array_equal(r[0], r[-1]):
            r = np.vstack([r, r[:1]])
        pts.append(r)
        offs.append(offs[-1] + len(r))
    if not pts:
        return np.zeros((0, 2)), np.zeros(1, np.int64)
    return np.vstack(pts), np.asarray(offs, np.int64)


def _with_z(xy: np.ndarray, z: float) -> np.ndarray:
    out = np.empty((len(xy), 3), np.float64)
    out[:, :2] = xy
    out[:, 2] = z
    return out


def layer_plotter(toolpath: Toolpath, layer: int, printer=None, contours=None, off_screen: bool = False,
                  window_size=DEFAULT_WINDOW, max_segments: int = 2_000_000, title: str | None = None,
                  max_line_pixels: float | None = None):
    """One layer seen from above: marks by kind, jumps, slice contours and the galvo field.

    Parameters
    ----------
    toolpath : Toolpath
        The marks (µm). Jumps are drawn between consecutive marks of the layer.
    layer : int
        Layer index (negative counts from the top).
    printer : bioslicer.printers.Printer or str, optional
        Gives the galvo field (shape and size) drawn around each block origin used in the layer;
        without it the field stored in ``toolpath.blocks`` is used, if any. Unstitched toolpaths
        centre the field on the toolpath's x-y bounds (like ``Blocks.single``).
    contours : list of (n, 2) arrays, optional
        The slice outline of this layer (closed rings, µm).
    off_screen : bool
        Render without a window (always the case when no display exists).
    window_size : (int, int)
        Render size in pixels.
    max_segments : int
        Draw only every n-th mark beyond this many segments (said on the image).
    title : str, optional
        Text at the top of the image.
    max_line_pixels : float, optional
        Render budget as for :func:`toolpath_plotter` (contours are kept whole).

    Returns
    -------
    plotter : pyvista.Plotter
        Actors are named ``marks``, ``jumps``, ``contours`` and ``field``;
        ``plotter.preview_info`` holds ``stats``, ``n_marks``, ``n_jumps``, the mark and jump
        lengths (µm) and ``field_centers_um``.
    """
    if toolpath is None:
        raise BioslicerError("the layer view needs a toolpath; slice the mesh first")
    if toolpath.n_layers == 0:
        raise BioslicerError("the toolpath has no layers to show")
    k = int(layer)
    if not -toolpath.n_layers <= k < toolpath.n_layers:
        raise BioslicerError(f"layer {k} does not exist; the toolpath has {toolpath.n_layers} layers "
                             f"(0..{toolpath.n_layers - 1})")
    k %= toolpath.n_layers
    if printer is not None and not hasattr(printer, "field_size_um"):
        from .printers import load_printer

        printer = load_printer(printer)
    pv = _pyvista()
    one = toolpath.select_marks(np.flatnonzero(toolpath.mark_layer == k))
    cost = None
    if one.n_points and math.isfinite(_line_budget(window_size, max_line_pixels)):
        ext = np.maximum(one.bounds()[1, :2] - one.bounds()[0, :2], 1e-6)
        px_per_um = min(window_size[0] / ext[0], window_size[1] / ext[1])
        cost = 2.0 * mark_render_cost(one, px_per_um)            # marks and their jumps
    keep, stats = decimate_marks(one.mark_layer, np.diff(one.mark_start) - 1, np.ones(one.n_layers, bool),
                                 max_segments, cost, _line_budget(window_size, max_line_pixels),
                                 protect=one.mark_kind == Kind.CONTOUR)
    sub = one.select_marks(keep)
    p = _new_plotter(off_screen, window_size, title)
    # the figures are the whole layer's, whatever is drawn
    info = {"stats": stats, "n_marks": one.n_marks, "n_jumps": max(one.n_marks - 1, 0),
            "mark_length_um": float(mark_lengths_um(one).sum()), "jump_length_um": float(one.jump_lengths().sum()),
            "field_centers_um": np.zeros((0, 2)), "layer": k}
    pv.set_new_attribute(p, "preview_info", info)

    xy_all = [np.column_stack([sub.x_um, sub.y_um])]
    # z levels keep the drawing order seen from above:
    # field < jumps < fill marks < slice contours < contour marks
    span = 1.0
    if sub.n_points:
        b = sub.bounds()
        span = max(float(np.max(b[1, :2] - b[0, :2])), 1e-6)
    dz = 1e-3 * span

    # galvo field
    shape, size = None, 0.0
    if printer is not None:
        shape, size = printer.field_shape, float(printer.field_size_um)
    elif toolpath.blocks is not None and toolpath.blocks.field_size_um > 0:
        shape, size = toolpath.blocks.field_shape, float(toolpath.blocks.field_size_um)
    if shape is not None and size > 0:
        if toolpath.blocks is not None and np.any(sub.mark_block >= 0):
            used = np.unique(sub.mark_block[sub.mark_block >= 0])
            centers = toolpath.blocks.origin_um[used, :2]
        else:
            tb = toolpath.bounds()
            centers = ((tb[0, :2] + tb[1, :2]) / 2)[None]
        fpts, foff = _field_outline(shape, size, centers)
        info["field_centers_um"] = centers
        p.add_mesh(_lines_polydata(_with_z(fpts, 0.0), foff), name="field", color=_rgb(FIELD_COLOR),
                   line_width=2.0, lighting=False)
        xy_all.append(fpts)

    if contours is not None:
        cpts, coff = _ring_arrays(contours)
        if len(cpts):
            p.add_mesh(_lines_polydata(_with_z(cpts, 3 * dz), coff), name="contours",
                       color=_rgb(SLICE_CONTOUR_COLOR), line_width=2.0, lighting=False)
            xy_all.append(cpts)

    # the real jumps: after each drawn mark, to the mark that follows it in the layer
    jk = keep[keep < one.n_marks - 1]
    if len(jk):
        end = one.mark_start[jk + 1] - 1
        start = one.mark_start[jk + 1]
        jpts = np.empty((2 * len(jk), 2))
        jpts[0::2, 0], jpts[0::2, 1] = one.x_um[end], one.y_um[end]
        jpts[1::2, 0], jpts[1::2, 1] = one.x_um[start], one.y_um[start]
        p.add_mesh(_lines_polydata(_with_z(jpts, dz), np.arange(0, len(jpts) + 1, 2)), name="jumps",
                   color=_rgb(JUMP_COLOR), line_width=1.0, opacity=0.55, lighting=False)

    if sub.n_marks:
        zlev = np.where(sub.mark_kind == Kind.CONTOUR, 4 * dz, 2 * dz)
        mpts = _with_z(np.column_stack([sub.x_um, sub.y_um]), 0.0)
        mpts[:, 2] = np.repeat(zlev, np.diff(sub.mark_start))
        poly = _lines_polydata(mpts, sub.mark_start)
        poly.cell_data["kind"] = sub.mark_kind
        lw = 2.0 if sub.n_segments <= 5000 else 1.0
        p.add_mesh(poly, name="marks", scalars="kind", preference="cell", cmap=_kind_lut(pv),
                   clim=[-0.5, len(Kind) - 0.5], line_width=lw, lighting=False, show_scalar_bar=False)
        extra = []
        if "jumps" in p.actors:
            extra.append(("jump", JUMP_COLOR))
        if contours is not None and "contours" in p.actors:
            extra.append(("slice contour", SLICE_CONTOUR_COLOR))
        if "field" in p.actors:
            extra.append(("galvo field", FIELD_COLOR))
        _kind_legend(p, np.unique(sub.mark_kind).tolist(), extra)

    xy = np.vstack(xy_all) if sum(len(a) for a in xy_all) else np.zeros((1, 2))
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = 0.04 * max(float(np.max(hi - lo)), 1.0)
    bounds = [lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad, 0.0, 4 * dz]
    bounds = _add_axes_um(p, bounds, three_d=False)
    p.view_xy()
    p.enable_parallel_projection()
    p.reset_camera(bounds=bounds)
    p.camera.zoom(0.92)
    z = float(toolpath.layer_z_um[k])
    head = title or f"layer {k} of {toolpath.n_layers}, z = {z:g} µm"
    p.add_text(head, position="upper_edge", font_size=12, color=_rgb(TEXT_COLOR), name="title")
    text = (f"{info['n_marks']:,} marks, {info['mark_length_um']:,.1f} µm written; "
            f"{info['n_jumps']:,} jumps, {info['jump_length_um']:,.1f} µm")
    if stats.decimated:
        text = stats.text() + "\n" + text
    p.add_text(text, position="lower_left", font_size=9, color=_rgb(TEXT_COLOR), name="info")
    return p


# ----------------------------------------------------------------------------- PNG output
def encode_png(img: np.ndarray) -> bytes:
    """Encode an (H, W, 3|4) uint8 image as PNG bytes (no timestamps: deterministic)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w, c = img.shape
    color_type = {3: 2, 4: 6}[c]
    raw = np.zeros((h, w * c + 1), np.uint8)
    raw[:, 1:] = img.reshape(h, w * c)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + chunk(b"IEND", b""))


def plotter_image(plotter) -> np.ndarray:
    """Render ``plotter`` offscreen and return the (H, W, 3) uint8 image; closes the plotter."""
    try:
        img = plotter.screenshot(return_img=True)
    finally:
        plotter.close()
    return np.asarray(img)[..., :3]


def write_plotter_png(path, plotter) -> Path:
    """Render ``plotter`` offscreen, close it and write the PNG atomically; returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise BioslicerError(f"preview image {path} must end in .png")
    atomic_write_bytes(path, encode_png(plotter_image(plotter)))
    return path


def render_png(path, toolpath: Toolpath | None = None, mesh=None, layers=None, color: str = "kind",
               voxels=None, show_blocks: bool = True, off_screen: bool = True,
               max_segments: int = 2_000_000, title: str | None = None, window_size=DEFAULT_WINDOW,
               max_line_pixels: float | None = None) -> Path:
    """Render the 3-D preview (see :func:`toolpath_plotter`) offscreen to a PNG file.

    Parameters
    ----------
    path : str or Path
        Output ``.png``; written atomically.
    toolpath, mesh, layers, color, voxels, show_blocks, max_segments, title
        As for :func:`toolpath_plotter`.
    off_screen : bool
        Ignored: the render is always offscreen.
    window_size : (int, int)
        Image size in pixels (default 1200 x 900).
    max_line_pixels : float, optional
        Render budget, see :func:`toolpath_plotter`.

    Returns
    -------
    path : Path
        The file written.
    """
    p = toolpath_plotter(toolpath=toolpath, mesh=mesh, layers=layers, color=color, voxels=voxels,
                         show_blocks=show_blocks, off_screen=True, max_segments=max_segments, title=title,
                         window_size=window_size, slider=False, max_line_pixels=max_line_pixels)
    return write_plotter_png(path, p)


def render_layer_png(path, toolpath: Toolpath, layer: int, printer=None, contours=None,
                     window_size=DEFAULT_WINDOW, max_segments: int = 2_000_000, title: str | None = None,
                     max_line_pixels: float | None = None) -> Path:
    """Render the 2-D view of one layer (see :func:`layer_plotter`) offscreen to a PNG file.

    Returns
    -------
    path : Path
        The file written (atomically).
    """
    p = layer_plotter(toolpath, layer, printer=printer, contours=contours, off_screen=True,
                      window_size=window_size, max_segments=max_segments, title=title,
                      max_line_pixels=max_line_pixels)
    return write_plotter_png(path, p)


# ----------------------------------------------------------------------------- inputs
_MESH_SCALE = {"um": 1.0, "mm": 1000.0, "nm": 1e-3}
_MESH_SUFFIXES = (".stl", ".obj", ".ply", ".off", ".3mf", ".glb", ".gltf")


@dataclass
class PreviewSource:
    """What a path to preview holds: a toolpath, a mesh (µm) and the job's printer, if any."""

    name: str
    toolpath: Toolpath | None = None
    mesh: object = None
    printer: object = None
    kind: str = "mesh"          # 'mesh', 'toolpath' or 'job'


def load_mesh_file(path, units: str = "um"):
    """Load a mesh file in µm: ``bioslicer.mesh.load_mesh`` when available, else trimesh."""
    path = Path(path)
    if units not in _MESH_SCALE:
        raise BioslicerError(f"unknown length unit {units!r}; use one of {', '.join(_MESH_SCALE)}")
    try:
        from .mesh import load_mesh
    except ImportError:
        load_mesh = None
    if load_mesh is not None:
        try:
            return load_mesh(path, units=units)
        except BioslicerError:
            # not a valid solid (open, inverted, ...): still worth looking at, so show it as is,
            # unless the file cannot be read at all (trimesh below raises that)
            pass
    import trimesh

    try:
        m = trimesh.load(path, force="mesh")
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise BioslicerError(f"cannot read mesh {path}: {exc}; give an STL/OBJ/PLY/OFF/3MF/GLB file") from None
    if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
        raise BioslicerError(f"{path} holds no triangles; give a mesh file with faces")
    if _MESH_SCALE[units] != 1.0:
        m.apply_scale(_MESH_SCALE[units])
    return m


def _job_printer(manifest: dict):
    try:
        from .jobs import printer_from_manifest

        return printer_from_manifest(manifest)
    except Exception:  # an old or partial manifest: fall back to the profile name
        name = (manifest.get("printer") or {}).get("name")
        if not name:
            return None
        try:
            from .printers import load_printer

            return load_printer(name)
        except BioslicerError:
            return None


def _load_job_folder(folder: Path, units: str) -> PreviewSource:
    import json

    manifest = {}
    mpath = folder / "manifest.json"
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BioslicerError(f"{mpath} is not valid JSON ({exc}); the job is damaged, slice it again") from None
    tp_rel = "toolpath.npz"
    for key in ("toolpath", "preview_toolpath"):        # full toolpath, or the job's thinned one
        if isinstance(manifest.get(key), str):
            tp_rel = manifest[key]
            break
    else:
        if not (folder / tp_rel).is_file() and (folder / "preview_toolpath.npz").is_file():
            tp_rel = "preview_toolpath.npz"
    tp_path = folder / tp_rel
    if not mpath.is_file() and not tp_path.is_file():
        raise BioslicerError(f"{folder} is not a bioslicer job (no manifest.json or toolpath.npz); "
                             "give a job folder, a toolpath .npz or a mesh file")
    tp = Toolpath.load(tp_path) if tp_path.is_file() else None
    mesh = None
    if (folder / "mesh.stl").is_file():
        mesh = load_mesh_file(folder / "mesh.stl", "um")      # the job's copy is in µm
    else:
        mfile = (manifest.get("mesh") or {}).get("file")
        if isinstance(mfile, str) and (folder / mfile).is_file():
            mesh = load_mesh_file(folder / mfile, (manifest.get("mesh") or {}).get("units", units))
    printer = _job_printer(manifest) if manifest else None
    return PreviewSource(folder.resolve().name, tp, mesh, printer, "job")


def load_preview_source(path, units: str = "um") -> PreviewSource:
    """Open what ``bioslicer preview`` is given: a job folder or ``.zip``, a toolpath ``.npz`` or a mesh.

    Parameters
    ----------
    path : str or Path
        A job folder (``toolpath.npz``, ``manifest.json``, optional ``mesh.stl``), a job ``.zip``,
        a toolpath ``.npz`` (``Toolpath.save``) or a mesh file.
    units : str
        Length unit of a plain mesh file ('um', 'mm', 'nm').

    Returns
    -------
    PreviewSource
    """
    path = Path(path)
    if not path.exists():
        raise BioslicerError(f"{path} not found; give a job folder, a toolpath .npz or a mesh file")
    if path.is_dir():
        return _load_job_folder(path, units)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return PreviewSource(path.stem, Toolpath.load(path), None, None, "toolpath")
    if suffix == ".zip":
        import tempfile
        import zipfile

        try:
            with zipfile.ZipFile(path) as zf, tempfile.TemporaryDirectory(prefix="bioslicer-preview-") as tmp:
                names = set(zf.namelist())
                for n in ("manifest.json", "toolpath.npz", "preview_toolpath.npz", "mesh.stl"):
                    if n in names:
                        zf.extract(n, tmp)
                src = _load_job_folder(Path(tmp), units)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BioslicerError(f"cannot read {path}: {exc}; the zip is damaged, copy it again") from None
        src.name = path.stem
        return src
    if suffix not in _MESH_SUFFIXES:
        raise BioslicerError(f"cannot preview {path.name}: give a job folder, a toolpath .npz or a mesh "
                             f"({', '.join(_MESH_SUFFIXES)})")
    return PreviewSource(path.stem, None, load_mesh_file(path, units), None, "mesh")


def default_layer(toolpath: Toolpath) -> int:
    """The middle layer among those with marks (0 when there are none)."""
    if toolpath.n_marks == 0:
        return 0
    present = np.flatnonzero(np.bincount(toolpath.mark_layer, minlength=toolpath.n_layers))
    return int(present[len(present) // 2])


def layer_contours(mesh, z_um: float) -> list[np.ndarray] | None:
    """The mesh's slice outline at height ``z_um`` as closed rings (n, 2), µm; None when it cannot be sliced."""
    try:
        from .slicing import slice_contours
    except ImportError:
        return None
    try:
        return slice_contours(mesh, np.array([float(z_um)])).rings(0)
    except BioslicerError:
        return None
