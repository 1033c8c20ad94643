"""PyVista set-up (offscreen without a display) and the helpers every scene uses: lines, plotter,
colour tables, legend, axes in µm."""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from ..toolpath import Kind
from .style import BACKGROUND, BLOCK_PALETTE, KIND_COLORS, TEXT_COLOR, UNSTITCHED_COLOR, _rgb


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


def _text_legend(p, entries, name: str = "legend", font_size: int = 7, top_px: int = 44) -> None:
    """A legend of coloured text lines at the upper right, right-aligned (long labels stay
    inside the window), the first ``top_px`` below the top edge: ``entries`` are (text, RGB 0-255)."""
    w, h = p.window_size
    step = int(round(2.2 * font_size))
    for k, (text, rgb) in enumerate(entries):
        actor = p.add_text(text, position=(w - 10, h - top_px - step * (k + 1)), font_size=font_size,
                           color=_rgb(rgb), name=f"{name}{k}")
        actor.GetTextProperty().SetJustificationToRight()


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


def _with_z(xy: np.ndarray, z: float) -> np.ndarray:
    out = np.empty((len(xy), 3), np.float64)
    out[:, :2] = xy
    out[:, 2] = z
    return out


def scalar_bar_args() -> dict:
    """Keyword arguments of ``Plotter.add_scalar_bar`` for a colour bar at the right edge."""
    return dict(color=_rgb(TEXT_COLOR), title_font_size=14, label_font_size=12, n_labels=5,
                fmt="%.4g", vertical=True, position_x=0.88, position_y=0.25, width=0.05, height=0.5)
