"""Design vs printed: the design voxelised and the volume rebuilt from the program's marks.

Both are sampled on the same grid of hatch x hatch x slice voxels (µm) whose layers are the
job's layers (voxel centres at the layer heights) and whose x-y origin is the design's lower
corner (so hatch rows fall on voxel centres):

* design: :func:`bioslicer.slicing.voxelize` of the mesh (the span kernel, nonzero winding);
* printed: every voxel a laser-on move of the program passes through (strictly within half a
  voxel of its centre in x and y), read layer by layer from the program files (:func:`~bioslicer.preview.program.read_program_ranges`).

The signed difference is printed minus design: +1 extra material, -1 missing material. Layers
are processed in batches, so memory follows a batch of layers, not the part; the 3-D picture
uses the difference pooled to at most :data:`MAX_SHOWN_VOXELS` voxels.

Units: µm, µm³.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BioslicerError
from .program import ProgramIndex, read_program_ranges

#: bytes of full-resolution voxels per batch of layers
BATCH_BYTES = 1 << 27
#: the 3-D picture pools the difference to at most this many voxels
MAX_SHOWN_VOXELS = 4_000_000
MISSING_COLOR = (230, 75, 60)
EXTRA_COLOR = (60, 150, 240)


@dataclass
class Comparison:
    """Design vs printed volumes on one voxel grid.

    Attributes
    ----------
    voxel_um : (3,) float64
        (hatch, hatch, slice), µm.
    origin_um : (3,) float64
        Lower corner of voxel [0, 0, 0], µm (part coordinates).
    shape_zyx : tuple
    design_um3, printed_um3, missing_um3, extra_um3 : float
        Volumes: the design, the printed volume, design voxels not printed, printed voxels
        outside the design.
    missing, extra : (nz', ny', nx') bool
        The difference pooled by ``pool`` voxels per axis (for the picture).
    pool : int
    """

    voxel_um: np.ndarray
    origin_um: np.ndarray
    shape_zyx: tuple
    design_um3: float = 0.0
    printed_um3: float = 0.0
    missing_um3: float = 0.0
    extra_um3: float = 0.0
    missing: np.ndarray = field(default=None, repr=False)
    extra: np.ndarray = field(default=None, repr=False)
    pool: int = 1

    @property
    def difference_pct(self) -> float:
        """(printed - design) / design, %."""
        return 100.0 * (self.printed_um3 - self.design_um3) / self.design_um3 if self.design_um3 > 0 else math.nan

    def text(self) -> str:
        v = self.voxel_um
        return (f"design {self.design_um3:,.0f} µm³, printed {self.printed_um3:,.0f} µm³ "
                f"({self.difference_pct:+.2f} %); missing {self.missing_um3:,.0f} µm³, extra {self.extra_um3:,.0f} µm³ "
                f"(voxels {v[0]:g} x {v[1]:g} x {v[2]:g} µm)")

    def to_dict(self) -> dict:
        return {"voxel_um": [float(a) for a in self.voxel_um], "design_um3": float(self.design_um3),
                "printed_um3": float(self.printed_um3), "missing_um3": float(self.missing_um3),
                "extra_um3": float(self.extra_um3), "difference_pct": float(self.difference_pct)}


def _rasterise_moves(mv, rom, origin, vox, shape, k0, grid) -> None:
    """Set the voxels of ``grid`` (layers k0.. of the batch) that laser-on moves pass through
    (:func:`bioslicer.kernel.raster.rasterise_segments`; a move starts at the move before it
    when both are in one range)."""
    from ..kernel.raster import rasterise_segments

    on = mv.laser_on.astype(bool)
    prev_ok = np.concatenate([[False], rom[1:] == rom[:-1]])
    seg = np.flatnonzero(on & prev_ok).astype(np.int64)
    if len(seg) == 0:
        return
    f8 = np.float64
    rasterise_segments(np.ascontiguousarray(mv.x, f8), np.ascontiguousarray(mv.y, f8),
                       np.ascontiguousarray(mv.z, f8), seg, np.asarray(origin, f8), np.asarray(vox, f8),
                       np.asarray(shape, np.int64), np.int64(k0), grid)


def _pool(a: np.ndarray, s: int) -> np.ndarray:
    if s == 1:
        return a
    nz, ny, nx = a.shape
    pad = np.zeros((-(-nz // s) * s, -(-ny // s) * s, -(-nx // s) * s), bool)
    pad[:nz, :ny, :nx] = a
    return pad.reshape(pad.shape[0] // s, s, pad.shape[1] // s, s, pad.shape[2] // s, s).any(axis=(1, 3, 5))


def compare_source(src, index: ProgramIndex, progress=None) -> Comparison:
    """:func:`compare_design` of a job source: its mesh, printer, recipe and layer heights."""
    if src.mesh is None:
        raise BioslicerError("comparing needs the design mesh; give a job folder with mesh.stl")
    rec = (src.manifest or {}).get("recipe") or {}
    if not (rec.get("hatch_um") and rec.get("slice_um")):
        raise BioslicerError("comparing needs the hatch and slice distances; give a job (its recipe has them)")
    lz = src.toolpath.layer_z_um if src.toolpath is not None else None
    return compare_design(physical_mesh(src), index, src.printer, float(rec["hatch_um"]), float(rec["slice_um"]), lz,
                          progress, focal_shift_factor=_focal_shift(src))


def _focal_shift(src) -> float:
    return float(((src.manifest or {}).get("recipe") or {}).get("focal_shift_factor", 1.0))


def physical_mesh(src):
    """The design of a job source in physical z (a job's mesh is shown in commanded z,
    ``focal_shift_factor`` x physical; the comparison is made in physical z)."""
    from ..placement import commanded_mesh

    return commanded_mesh(src.mesh, 1.0 / _focal_shift(src))


def _design_bounds(mesh) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) µm of a design: a Solid or a centerline Tree (``bounds_um``) or a trimesh mesh."""
    b = getattr(mesh, "bounds_um", None)
    if b is None:
        b = getattr(mesh, "bounds", None)
    b = np.asarray(b, np.float64)
    return b[0], b[1]


def grid_voxels(mesh, index: ProgramIndex, hatch_um: float) -> int:
    """About how many voxels :func:`compare_design` samples (the design's x-y extent x the layers)."""
    lo, hi = _design_bounds(mesh)
    ext = hi - lo
    return int(math.ceil(ext[0] / hatch_um) * math.ceil(ext[1] / hatch_um) * index.n_layers)


def job_comparison(mesh, index: ProgramIndex | None, printer, hatch_um: float, slice_um: float, layer_z_um,
                   max_voxels: float = 2.5e8, focal_shift_factor: float = 1.0) -> dict | None:
    """The design-vs-printed figures for the job report (``manifest["compare"]``).

    Above ``max_voxels`` the comparison is not made at slice time (it would take minutes): the
    entry says so and how to make it (``bioslicer preview JOB --compare``).
    """
    if index is None:
        return None
    n = grid_voxels(mesh, index, hatch_um)
    if n > max_voxels:
        return {"skipped": f"{n:.3g} voxels at hatch x slice; run `bioslicer preview JOB --compare`"}
    return compare_design(mesh, index, printer, hatch_um, slice_um, layer_z_um,
                          focal_shift_factor=focal_shift_factor).to_dict()


def compare_design(mesh, index: ProgramIndex, printer, hatch_um: float, slice_um: float, layer_z_um=None,
                   progress=None, focal_shift_factor: float = 1.0) -> Comparison:
    """Compare a design (its mesh) with the volume its program prints.

    Parameters
    ----------
    mesh : Solid or trimesh.Trimesh
        The design, µm (part coordinates).
    index : ProgramIndex
    printer : Printer
        The program's printer (its ``program.origin_um`` maps machine to part coordinates).
    hatch_um, slice_um : float
        Voxel size (the recipe's hatch and slice distances).
    layer_z_um : (n_layers,) float, optional
        The job's layer heights; default from the index.
    progress : callable, optional
        ``progress(done_layers, total_layers, label)``.
    focal_shift_factor : float
        The job's commanded / physical z (recipe ``focal_shift_factor``): the program's z and
        ``layer_z_um`` are commanded and are divided by it, so design and print meet in physical z.

    Returns
    -------
    Comparison
    """
    from ..programs.dialects import program_origin_um
    from ..slicing import voxelize

    h, dz = float(hatch_um), float(slice_um)
    if not (h > 0 and dz > 0):
        raise BioslicerError(f"voxel sizes must be positive, got {hatch_um} x {slice_um} µm")
    pr = printer
    org = program_origin_um(pr)
    lz = np.full(index.n_layers, np.nan)
    lz[index.layer] = index.level_z_um - org[2]
    if layer_z_um is not None and len(layer_z_um) == index.n_layers:
        lz = np.asarray(layer_z_um, np.float64)
    zf = float(focal_shift_factor)
    lz = lz / zf
    ok = np.isfinite(lz)
    k_lo = int(np.flatnonzero(ok)[0])
    z0 = float(lz[k_lo]) - k_lo * dz - dz / 2            # voxel k has its centre at layer k
    lo, hi = _design_bounds(mesh)
    # the printed volume may reach outside the design: take the marks' x-y extent from the index ranges
    first = index.first
    xy_lo = np.minimum(lo[:2], first[:, :2].min(axis=0) - org[:2] - 2 * h)
    xy_hi = np.maximum(hi[:2], first[:, :2].max(axis=0) - org[:2] + 2 * h)
    xy_lo = lo[:2] - np.ceil((lo[:2] - xy_lo) / h) * h          # keep the design's corner on the grid
    nx, ny = (int(v) for v in np.ceil((xy_hi - xy_lo) / h - 1e-9))
    nz = index.n_layers
    origin = np.array([xy_lo[0], xy_lo[1], z0])
    vox = np.array([h, h, dz])
    pool = max(1, math.ceil((nx * ny * nz / MAX_SHOWN_VOXELS) ** (1 / 3)))
    missing = np.zeros((-(-nz // pool), -(-ny // pool), -(-nx // pool)), bool)
    extra = np.zeros_like(missing)
    out = Comparison(vox, origin, (nz, ny, nx), pool=pool)
    batch = max(pool, (BATCH_BYTES // max(nx * ny, 1)) // pool * pool)
    cell = float(vox.prod())
    for k0 in range(0, nz, batch):
        k1 = min(nz, k0 + batch)
        region = ((origin[0], origin[1], z0 + k0 * dz), (origin[0] + nx * h, origin[1] + ny * h, z0 + k1 * dz))
        design = voxelize(mesh, h, dz, region_um=region, max_bytes=4 * BATCH_BYTES, fill_rule="nonzero").dense()
        printed = np.zeros_like(design)
        rs = index.ranges_of(np.arange(k0, k1))
        for a in range(0, len(rs), 256):
            pl = read_program_ranges(index, pr, rs[a:a + 256])
            mv = pl.moves
            mv.x = mv.x - org[0]
            mv.y = mv.y - org[1]
            mv.z = (mv.z - org[2]) / zf
            _rasterise_moves(mv, pl.range_of_move, origin + [0, 0, 0], vox, (nz, ny, nx), k0, printed)
        out.design_um3 += float(design.sum()) * cell
        out.printed_um3 += float(printed.sum()) * cell
        miss = design & ~printed
        ext = printed & ~design
        out.missing_um3 += float(miss.sum()) * cell
        out.extra_um3 += float(ext.sum()) * cell
        missing[k0 // pool:-(-k1 // pool)] |= _pool(miss, pool)
        extra[k0 // pool:-(-k1 // pool)] |= _pool(ext, pool)
        if progress is not None:
            progress(k1, nz, "comparing")
    out.missing, out.extra = missing, extra
    return out


def render_compare_png(path, src, cmp: Comparison, window_size=(1200, 900)) -> Path:
    """The design (translucent) with the missing (red) and extra (blue) material; the volumes in the caption."""
    from .common import _add_axes_um, _kind_legend, _new_plotter, _pyvista
    from .png import write_plotter_png
    from .scene3d import _bounds_of, _fit_camera_3d, mesh_polydata, solid_surface
    from .style import MESH_COLOR, TEXT_COLOR, _rgb

    p = _new_plotter(True, window_size, src.name)
    shown = []
    mp = mesh_polydata(physical_mesh(src))
    p.add_mesh(mp, name="mesh", color=_rgb(MESH_COLOR), opacity=0.2, show_scalar_bar=False)
    shown.append(mp)
    vox = cmp.voxel_um * cmp.pool
    for name, occ, col in (("missing", cmp.missing, MISSING_COLOR), ("extra", cmp.extra, EXTRA_COLOR)):
        if occ is not None and occ.any():
            surf, _ = solid_surface((occ, cmp.origin_um, vox))
            if surf.n_points:
                p.add_mesh(surf, name=name, color=_rgb(col), opacity=0.9, show_scalar_bar=False)
                shown.append(surf)
    b = _bounds_of(*shown)
    _fit_camera_3d(p, _add_axes_um(p, b, three_d=True))
    _kind_legend(p, [], [("missing material", MISSING_COLOR), ("extra material", EXTRA_COLOR),
                         ("design", MESH_COLOR)])
    title = f"{src.name}: design vs printed (from the program)"
    p.add_text(title, position="upper_edge", font_size=12, color=_rgb(TEXT_COLOR), name="title")
    text = cmp.text() + (f"\nshown pooled {cmp.pool} voxels per axis" if cmp.pool > 1 else "")
    p.add_text(text, position="lower_left", font_size=9, color=_rgb(TEXT_COLOR), name="info")
    _pyvista().set_new_attribute(p, "preview_info", {"caption": title + "\n" + text})
    return write_plotter_png(path, p)
