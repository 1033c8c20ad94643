"""The 2-D layer scene: one layer seen from above (marks, jumps, slice contours, galvo field)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import BioslicerError
from ..toolpath import Kind, Toolpath
from .common import (_add_axes_um, _kind_legend, _kind_lut, _lines_polydata, _new_plotter, _pyvista, _with_z,
                     scalar_bar_args)
from .decimate import _line_budget, decimate_marks, mark_lengths_um, mark_render_cost
from .style import DEFAULT_WINDOW, FIELD_COLOR, JUMP_COLOR, SLICE_CONTOUR_COLOR, TEXT_COLOR, _rgb


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


def layer_plotter(toolpath: Toolpath, layer: int, printer=None, contours=None, off_screen: bool = False,
                  window_size=DEFAULT_WINDOW, max_segments: int = 2_000_000, title: str | None = None,
                  max_line_pixels: float | None = None, color: str = "kind", source: str | None = None,
                  time_s: float | None = None):
    """One layer seen from above: marks by kind (or power), jumps, slice contours and the galvo field.

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
    color : {'kind', 'power'}
        Marks coloured by kind (legend) or by point power (mW, colour bar; what a program
        knows: it does not say what a mark was for).
    source : str, optional
        One line saying what the marks come from (the program, or a thinned toolpath).
    time_s : float, optional
        Estimated time of the layer, s, shown with the figures.

    Returns
    -------
    plotter : pyvista.Plotter
        Actors are named ``marks``, ``jumps``, ``contours`` and ``field``;
        ``plotter.preview_info`` holds ``stats``, ``n_marks``, ``n_jumps``, the mark and jump
        lengths (µm), ``field_centers_um`` and ``caption`` (the text on the image, also written
        into the PNG by :func:`write_plotter_png`).
    """
    if color not in ("kind", "power"):
        raise BioslicerError(f"the layer view colours marks by kind or power, not {color!r}")
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
        from ..printers import load_printer

        printer = load_printer(printer)
    pv = _pyvista()
    p = _new_plotter(off_screen, window_size, title)
    pv.set_new_attribute(p, "preview_info", {})
    redraw_layer(p, toolpath, k, printer=printer, contours=contours, max_segments=max_segments, title=title,
                 max_line_pixels=max_line_pixels, color=color, source=source, time_s=time_s)
    return p


_LAYER_ACTORS = ("marks", "jumps", "contours", "field", "legend", "title", "info")


def redraw_layer(p, toolpath: Toolpath, k: int, printer=None, contours=None, max_segments: int = 2_000_000,
                 title: str | None = None, max_line_pixels: float | None = None, color: str = "kind",
                 source: str | None = None, time_s: float | None = None) -> None:
    """Draw layer ``k`` of ``toolpath`` into the layer plotter ``p`` (replacing what it showed);
    arguments as for :func:`layer_plotter`. The layer window's slider calls this."""
    for name in _LAYER_ACTORS:
        p.remove_actor(name, render=False)
    for name in list(p.scalar_bars.keys()):
        p.remove_scalar_bar(name, render=False)
    pv = _pyvista()
    window_size = p.window_size
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
    # the figures are the whole layer's, whatever is drawn
    info = p.preview_info
    info.clear()
    info.update({"stats": stats, "n_marks": one.n_marks, "n_jumps": max(one.n_marks - 1, 0),
            "mark_length_um": float(mark_lengths_um(one).sum()), "jump_length_um": float(one.jump_lengths().sum()),
            "field_centers_um": np.zeros((0, 2)), "layer": k})

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
        if color == "kind":
            p.add_mesh(poly, name="marks", scalars="kind", preference="cell", cmap=_kind_lut(pv),
                       clim=[-0.5, len(Kind) - 0.5], line_width=lw, lighting=False, show_scalar_bar=False)
        else:
            poly.point_data["power_mw"] = sub.power_mw.astype(np.float32)
            lo_p, hi_p = float(sub.power_mw.min()), float(sub.power_mw.max())
            if hi_p - lo_p < 1e-9:
                lo_p, hi_p = lo_p - 0.5, hi_p + 0.5
            actor = p.add_mesh(poly, name="marks", scalars="power_mw", preference="point", cmap="plasma",
                               clim=[lo_p, hi_p], line_width=lw, lighting=False, show_scalar_bar=False)
            p.add_scalar_bar(title="power (mW)", mapper=actor.mapper, **scalar_bar_args())
        extra = []
        if "jumps" in p.actors:
            extra.append(("jump", JUMP_COLOR))
        if contours is not None and "contours" in p.actors:
            extra.append(("slice contour", SLICE_CONTOUR_COLOR))
        if "field" in p.actors:
            extra.append(("galvo field", FIELD_COLOR))
        _kind_legend(p, np.unique(sub.mark_kind).tolist() if color == "kind" else [], extra)

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
    if time_s is not None:
        text += f"; estimated {format_duration(time_s)}"
        info["time_s"] = float(time_s)
    if stats.decimated:
        text = stats.text() + "\n" + text
    if source:
        text = source + "\n" + text
    p.add_text(text, position="lower_left", font_size=9, color=_rgb(TEXT_COLOR), name="info")
    info["caption"] = head + "\n" + text


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` for a duration in s (``0.4 s`` below a second)."""
    from ..jobs import format_hms

    return f"{seconds:.1f} s" if seconds < 1 else format_hms(seconds)


def default_layer(toolpath: Toolpath) -> int:
    """The middle layer among those with marks (0 when there are none)."""
    if toolpath.n_marks == 0:
        return 0
    present = np.flatnonzero(np.bincount(toolpath.mark_layer, minlength=toolpath.n_layers))
    return int(present[len(present) // 2])


def layer_contours(mesh, z_um: float) -> list[np.ndarray] | None:
    """The mesh's slice outline at height ``z_um`` as closed rings (n, 2), µm; None when it cannot be sliced."""
    from ..slicing import slice_contours

    try:
        return slice_contours(mesh, np.array([float(z_um)])).rings(0)
    except BioslicerError:
        return None
