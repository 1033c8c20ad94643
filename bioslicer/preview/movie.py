"""The print as a film: the program's marks in print order, one frame per layer of a block.

:func:`render_movie` reads the selected layers from the program (through the index), in the
order the printer runs them (block after block, layer after layer within a block), and renders
one offscreen frame per (block, layer) run: the marks printed so far (coloured by power, the
run just printed highlighted), the current block's galvo field, the design mesh (translucent)
and the elapsed estimated print time in the corner. Frames go to imageio's writers: GIF through
pillow, MP4 through imageio-ffmpeg (``pip install 'bioslicer[movie]'``).

Units: µm, s.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import BioslicerError
from ..progress import silent
from .program import FIRST_FIELDS, ProgramIndex, moves_to_toolpath, read_program_ranges
from .style import FIELD_COLOR, MESH_COLOR, TEXT_COLOR, _rgb

MOVIE_FORMATS = {".gif": "imageio (pillow)", ".mp4": "imageio-ffmpeg"}
#: movie frame size when none is given
MOVIE_WINDOW = (800, 600)
#: the accumulated marks are thinned (every n-th mark) beyond this many segments per frame
MAX_MOVIE_SEGMENTS = 400_000


def _writer(path: Path, fps: int):
    """An imageio writer for ``path`` (temporary name handled by the caller)."""
    suffix = path.suffix.lower()
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise BioslicerError("writing a movie needs imageio; install it: pip install imageio") from None
    if suffix == ".gif":
        return imageio.get_writer(path, format="GIF", mode="I", duration=1000.0 / fps, loop=0)
    import importlib.util

    if importlib.util.find_spec("imageio_ffmpeg") is None:
        raise BioslicerError("an MP4 movie needs imageio-ffmpeg; install the extra: pip install 'bioslicer[movie]' "
                             "(or write a .gif)")
    return imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=8,
                              quality=7)


def movie_frames(index: ProgramIndex, layers=None) -> np.ndarray:
    """The index ranges a movie shows, one frame each, in print order (of ``layers``, else all)."""
    if layers is None:
        return np.arange(index.n_ranges)
    return index.ranges_of(layers)


def _field_ring(printer, center_xy, z: float, n: int = 96) -> np.ndarray:
    half = float(printer.field_size_um) / 2
    if printer.field_shape == "circle":
        t = np.linspace(0, 2 * np.pi, n + 1)
        ring = np.column_stack([half * np.cos(t), half * np.sin(t)])
    else:
        ring = np.array([[-half, -half], [half, -half], [half, half], [-half, half], [-half, -half]])
    return np.column_stack([ring + np.asarray(center_xy)[None, :2], np.full(len(ring), z)])


def render_movie(path, src, index: ProgramIndex, layers=None, fps: int = 8, window_size=None,
                 progress=silent) -> dict:
    """Render the print of ``layers`` (all when None) as a GIF or MP4 film, one frame per block layer.

    Parameters
    ----------
    path : str or Path
        ``.gif`` or ``.mp4``; written under a temporary name and renamed when complete.
    src : PreviewSource
        A job or program source (printer, optional design mesh).
    index : ProgramIndex
    layers : sequence of int, optional
        Layer numbers to film.
    fps : int
        Frames per second.
    window_size : (int, int), optional
        Frame size in pixels (default 800 x 600).
    progress : callable
        ``progress(done, total, label)`` per frame.

    Returns
    -------
    dict
        ``path``, ``frames`` (count) and ``time_s`` (estimated print time of what is filmed).

    Raises
    ------
    BioslicerError
        An unknown movie format, a writer that is not installed (names the extra), no frames.
    """
    from ..estimate import estimate_print_time
    from .common import _add_axes_um, _lines_polydata, _new_plotter, scalar_bar_args
    from .scene3d import _fit_camera_3d, mesh_polydata

    path = Path(path)
    if path.suffix.lower() not in MOVIE_FORMATS:
        raise BioslicerError(f"movie {path.name}: write a .gif or an .mp4")
    if not 1 <= int(fps) <= 60:
        raise BioslicerError(f"--fps {fps} is out of range; use 1..60 frames per second")
    frames = movie_frames(index, layers)
    if len(frames) == 0:
        raise BioslicerError("the selected layers have no marks to film; pick layers of the job")
    window_size = tuple(window_size or MOVIE_WINDOW)
    pr = src.printer
    pl = read_program_ranges(index, pr, frames)
    tp = moves_to_toolpath(pl, index, pr)
    # marks of each frame (range): runs start at moves of that range
    mark_range = _mark_ranges(pl)
    cuts = np.searchsorted(mark_range, np.arange(len(frames) + 1), side="left")
    # elapsed estimated time after each frame: estimates of consecutive pairs charge each transition once
    t_frame = np.zeros(len(frames))
    prev = None
    for i in range(len(frames)):
        cur = tp.select_marks(np.arange(cuts[i], cuts[i + 1]))
        if prev is None or prev.n_marks == 0:
            t_frame[i] = estimate_print_time(cur, pr).total_s if cur.n_marks else 0.0
        else:
            both = tp.select_marks(np.arange(cuts[i - 1], cuts[i + 1]))
            t_frame[i] = estimate_print_time(both, pr).total_s - estimate_print_time(prev, pr).total_s
        prev = cur
    elapsed = np.cumsum(t_frame)

    p = _new_plotter(True, window_size, src.name)
    if src.mesh is not None:
        p.add_mesh(mesh_polydata(src.mesh), name="mesh", color=_rgb(MESH_COLOR), opacity=0.15,
                   show_scalar_bar=False)
    b = tp.bounds()
    bounds = [b[0, 0], b[1, 0], b[0, 1], b[1, 1], b[0, 2], b[1, 2]]
    _fit_camera_3d(p, _add_axes_um(p, bounds, three_d=True))
    pw = tp.power_mw
    clim = [float(pw.min()), float(pw.max())] if len(pw) else [0.0, 1.0]
    if clim[1] - clim[0] < 1e-9:
        clim = [clim[0] - 0.5, clim[1] + 0.5]
    tmp = None
    n = len(frames)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent or ".")
        os.close(fd)
        w = _writer(Path(tmp), int(fps))
        try:
            bar = False
            for i in range(n):
                done = tp.select_marks(np.arange(0, cuts[i]))
                step = max(1, int(np.ceil(done.n_segments / MAX_MOVIE_SEGMENTS)))
                if step > 1:
                    done = done.select_marks(np.arange(0, done.n_marks, step))
                now = tp.select_marks(np.arange(cuts[i], cuts[i + 1]))
                for name, part, width in (("done", done, 1.0), ("now", now, 3.0)):
                    p.remove_actor(name, render=False)
                    if part.n_marks:
                        poly = _lines_polydata(np.column_stack([part.x_um, part.y_um, part.z_um]), part.mark_start)
                        poly.point_data["power_mw"] = part.power_mw.astype(np.float32)
                        p.add_mesh(poly, name=name, scalars="power_mw", cmap="plasma", clim=clim, line_width=width,
                                   lighting=False, show_scalar_bar=False)
                        if not bar:
                            p.add_scalar_bar(title="power (mW)", mapper=p.actors[name].mapper, **scalar_bar_args())
                            bar = True
                if now.n_marks:
                    c = now.blocks.origin_um[int(now.mark_block[0])]
                    ring = _field_ring(pr, c, float(now.z_um[0]))
                    p.add_mesh(_lines_polydata(ring, np.array([0, len(ring)])), name="field",
                               color=_rgb(FIELD_COLOR), line_width=2.0, lighting=False)
                r = int(frames[i])
                k = int(index.r_layer[r])
                blk = int(index.first[r, FIRST_FIELDS.index("block")])
                p.add_text(f"layer {k}, block {blk}   frame {i + 1}/{n}\n"
                           f"elapsed {_hms(elapsed[i])} of {_hms(elapsed[-1])} (estimated)",
                           position="upper_left", font_size=10, color=_rgb(TEXT_COLOR), name="clock")
                p.add_text(f"from the program {index.main.name} ({index.dialect}); marks in print order",
                           position="lower_left", font_size=8, color=_rgb(TEXT_COLOR), name="source")
                img = np.asarray(p.screenshot(return_img=True))[..., :3]
                w.append_data(img)
                progress(i + 1, n, "rendering frames")
        finally:
            w.close()
        os.replace(tmp, path)
        tmp = None
    finally:
        p.close()
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return {"path": path, "frames": int(n), "time_s": float(elapsed[-1])}


def _hms(seconds: float) -> str:
    from .layer import format_duration

    return format_duration(seconds)


def _mark_ranges(pl) -> np.ndarray:
    """Range (frame) of each mark of :func:`moves_to_toolpath` of ``pl``: the range of its first laser-on move."""
    on = pl.moves.laser_on.astype(bool)
    rom = pl.range_of_move
    same = np.concatenate([[False], rom[1:] == rom[:-1]])
    run_start = on & ~(np.concatenate([[False], on[:-1]]) & same)
    return rom[run_start]
