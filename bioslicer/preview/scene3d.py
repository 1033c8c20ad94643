"""The 3-D scene: mesh, toolpath lines, stitching blocks and the sliced solid."""

from __future__ import annotations

import math

import numpy as np

from ..errors import BioslicerError
from ..toolpath import Kind, Toolpath
from .common import (_add_axes_um, scalar_bar_args, _block_lut, _kind_legend, _kind_lut, _lines_polydata, _new_plotter, _pyvista,
                     _text_legend)
from .decimate import _layer_mask, _line_budget, decimate_marks, mark_render_cost
from .style import (BLOCK_PALETTE, COLOR_MODES, DEFAULT_WINDOW, FIELD_COLOR, MESH_COLOR, SET_CMAP, SET_PALETTE,
                    SOLID_COLOR, TEXT_COLOR, UNSTITCHED_COLOR, _rgb)


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
        data ``power_mw`` (float32); ``set`` (int32, the parameter set) when the toolpath has it.
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
    if toolpath.mark_set is not None:
        poly.cell_data["set"] = toolpath.mark_set[keep]
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
    sbar = scalar_bar_args()
    if color == "set":
        ids = poly.cell_data["set"]
        uniq = np.unique(ids)
        poly.cell_data["set_rank"] = np.searchsorted(uniq, ids).astype(np.int32)
        lut = _set_lut(pv, uniq)
        actor = p.add_mesh(poly, scalars="set_rank", preference="cell", cmap=lut, clim=[-0.5, len(uniq) - 0.5],
                           **common)
        if len(uniq) > len(SET_PALETTE):
            p.add_scalar_bar(title="parameter set", mapper=actor.mapper, **dict(sbar, n_labels=0))
        return actor
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


def set_colors(ids) -> dict:
    """RGB (0-255) of each parameter set id of ``ids`` (sorted, unique): the palette in id order
    up to its length, else the continuous map over the rank; id -1 (no set) grey."""
    ids = [int(i) for i in ids]
    real = [i for i in ids if i >= 0]
    out = {i: UNSTITCHED_COLOR for i in ids if i < 0}
    if len(ids) <= len(SET_PALETTE):
        out.update({i: SET_PALETTE[k] for k, i in enumerate(real)})
        return out
    import matplotlib

    cmap = matplotlib.colormaps[SET_CMAP]
    n = max(len(ids) - 1, 1)
    for i in real:
        rgba = cmap(ids.index(i) / n)
        out[i] = tuple(int(round(255 * c)) for c in rgba[:3])
    return out


def _set_lut(pv, uniq):
    cols = set_colors(uniq)
    lut = pv.LookupTable()
    lut.SetNumberOfTableValues(len(uniq))
    for k, sid in enumerate(uniq.tolist()):
        lut.SetTableValue(k, *_rgb(cols[int(sid)]), 1.0)
    lut.SetTableRange(-0.5, len(uniq) - 0.5)
    return lut


def _set_legend(p, poly, table: dict, info: dict) -> str:
    """Name the parameter sets drawn: a legend (palette) or colour-bar annotations (colour map);
    records ``set_colors`` and ``set_labels`` in ``info``; returns the caption line."""
    from .sets import set_label

    uniq = np.unique(poly.cell_data["set"]).tolist()
    cols = set_colors(uniq)
    labels = [set_label(int(i), table.get(int(i), {"power_mw": np.nan, "speed_um_s": np.nan})) for i in uniq]
    info["set_colors"] = {int(i): cols[int(i)] for i in uniq}
    info["set_labels"] = dict(zip((int(i) for i in uniq), labels))
    if len(uniq) <= len(SET_PALETTE):
        _text_legend(p, [(t, cols[int(i)]) for i, t in zip(uniq, labels)], name="set_legend")
    else:   # every ~n/8-th set named on the colour bar
        lut = p.actors["toolpath"].mapper.lookup_table
        step = max(1, len(uniq) // 8)
        for k in list(range(0, len(uniq), step)) + [len(uniq) - 1]:
            lut.SetAnnotation(float(k), labels[k].split(",")[0] + "," + labels[k].split(",")[1])
    pw = [table[i]["power_mw"] for i in uniq if i in table and np.isfinite(table[i]["power_mw"])]
    span = f", {min(pw):.4g}-{max(pw):.4g} mW" if pw else ""
    return f"coloured by parameter set: {len(uniq)} set{'s' if len(uniq) != 1 else ''}{span}"


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
                     max_line_pixels: float | None = None, source: str | None = None, sets: list | None = None):
    """The 3-D preview scene: mesh, toolpath, blocks and (optionally) the sliced solid.

    Parameters
    ----------
    toolpath : Toolpath, optional
        Marks to draw as lines (µm).
    mesh : trimesh.Trimesh, bioslicer Solid, pyvista.PolyData or anything with vertices/faces, optional
        Drawn translucent (µm).
    layers : None, int, slice, (a, b) or sequence of int
        Toolpath layers to draw; ``(a, b)`` and slices are half-open (a <= layer < b).
    color : {'kind', 'power', 'layer', 'block', 'set'}
        Line colouring: categorical per mark kind (with a legend), point power (mW, plasma
        colour map), layer index (viridis), stitching block (cycling palette) or parameter set
        (a colour per set with a legend naming its power, speed and origin; see :mod:`.sets`).
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
    source : str, optional
        One line saying what the toolpath is (the program, or a job's thinned preview toolpath).
    sets : list of dict, optional
        A job's ``parameter_sets`` (manifest): names the sets for ``color="set"`` and gives
        marks read from a program (which carry no set id) their set by power and speed.

    Returns
    -------
    plotter : pyvista.Plotter
        ``plotter.preview_info`` is a dict with ``stats`` (:class:`PreviewStats` or None),
        ``text`` (the decimation line), ``toolpath_polydata`` and ``solid_stride``; with
        ``color="set"`` also ``set_colors`` (id -> RGB 0-255) and ``set_labels`` (id -> text).
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
    set_table = {}
    if toolpath is not None and color == "set":
        import dataclasses

        from .sets import mark_sets

        ids, set_table = mark_sets(toolpath, sets)
        toolpath = dataclasses.replace(toolpath, mark_set=ids.astype(np.int32))
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
    elif color == "set" and "toolpath" in p.actors:
        lines_text.append(_set_legend(p, info["toolpath_polydata"], set_table, info))

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
    if source:
        lines_text.insert(0, source)
    info["caption"] = "\n".join(([title] if title else []) + lines_text)
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
