"""The views ``bioslicer preview`` offers of a job or a program: one layer as the printer runs it,
layers in 3-D, the overview, and the interactive layer window (read on demand).

Each function takes a :class:`~bioslicer.preview.sources.PreviewSource` of kind 'job' or
'program' and reads what it shows from the program files through the index
(:mod:`bioslicer.preview.program`); only the overview of a job uses the job's thinned preview
toolpath, and every picture says which it shows.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import BioslicerError
from ..toolpath import Toolpath
from .program import (ProgramIndex, layer_figures, moves_to_toolpath, program_index, read_program_layers)
from .common import _pyvista
from .style import DEFAULT_WINDOW, TEXT_COLOR, _rgb

#: the overview of a program without a preview toolpath reads about this many layers
OVERVIEW_LAYERS = 48


def source_index(src) -> ProgramIndex:
    """The program index of a job or program source (the job's own, cached, or built now)."""
    main = src.program_main
    if main is None:
        raise BioslicerError(f"{src.name} has no program to read; give a job folder or a program with --printer")
    lz = src.toolpath.layer_z_um if src.toolpath is not None else None
    dialect = (src.manifest or {}).get("program", {}).get("dialect") if src.manifest else src.dialect
    return program_index(main, src.printer, dialect, lz, src.folder, src.manifest)


def thinning_text(src) -> str:
    """What the overview of a job shows: its thinned preview toolpath, and how thinned."""
    th = src.thinning
    if src.kind != "job" or not th:
        return ""
    return thinning_note(th.get("layer_step", 1), th.get("mark_step", 1))


def thinning_note(layer_step: int, mark_step: int) -> str:
    """One line for a picture of a job's preview toolpath: thinned how, and where the program is."""
    parts = []
    if layer_step > 1:
        parts.append(f"1 in {layer_step} layers")
    if mark_step > 1:
        parts.append(f"1 in {mark_step} fill marks")
    if not parts:
        return "the job's preview toolpath (every layer and mark of the plan); --layers A:B reads the program"
    return f"the job's thinned preview toolpath ({', '.join(parts)} of the plan); --layers A:B reads the program"


def _program_text(idx: ProgramIndex, what: str, pl=None) -> str:
    full = " (parsed whole: its layers are not self-contained)" if pl is not None and pl.full_parse else ""
    return f"{what} from the program {idx.main.name} ({idx.dialect}){full}"


def program_layer_toolpath(src, idx: ProgramIndex, layers) -> tuple[Toolpath, object]:
    """(Toolpath in part coordinates, ProgramLayers) of some layer numbers read from the program."""
    pl = read_program_layers(idx, src.printer, layers)
    return moves_to_toolpath(pl, idx, src.printer), pl


def default_program_layer(idx: ProgramIndex) -> int:
    """The middle layer among those with marks."""
    present = idx.layers_present()
    return int(present[len(present) // 2])


def program_layer_plotter(src, idx: ProgramIndex, layer: int, off_screen: bool = True,
                          window_size=DEFAULT_WINDOW, max_segments: int = 2_000_000, contours=True):
    """The 2-D view of one layer as the printer will run it (marks coloured by power, jumps,
    the block fields), with its figures (marks, length, estimated time) in the caption."""
    from .layer import layer_contours, layer_plotter

    tp, pl = program_layer_toolpath(src, idx, [layer])
    figs = layer_figures(tp, src.printer)
    rings = None
    if contours and src.mesh is not None:
        rings = layer_contours(src.mesh, tp.layer_z_um[layer])
    p = layer_plotter(tp, layer, printer=src.printer, contours=rings, off_screen=off_screen,
                      window_size=window_size, max_segments=max_segments, color="power",
                      source=_program_text(idx, f"layer {layer} as the printer runs it,", pl), time_s=figs["time_s"])
    p.preview_info.update(figs)
    p.preview_info["program_layers"] = pl
    return p


def parse_program_layers(text: str | None, idx: ProgramIndex) -> np.ndarray:
    """The layer numbers of ``K``, ``A:B``, ``A:`` or ``:B`` (half-open) within the program's layers."""
    from .decimate import _layer_mask, parse_layers

    sel = parse_layers(text)
    if isinstance(sel, int) and not 0 <= sel < idx.n_layers:
        raise BioslicerError(f"layer {sel} is outside the job: it has layers 0..{idx.n_layers - 1}")
    return np.flatnonzero(_layer_mask(sel, idx.n_layers))


def program_overview_layers(idx: ProgramIndex, max_layers: int = OVERVIEW_LAYERS) -> tuple[np.ndarray, int]:
    """Every n-th layer with marks (counted from the top), at most about ``max_layers``; (layers, n)."""
    present = idx.layers_present()
    step = max(1, math.ceil(len(present) / max_layers))
    return np.sort(present[::-1][::step]), step


def attach_layer_slider(p, src, idx: ProgramIndex, layer: int, **kw) -> None:
    """Add a slider over every layer of the program to a 2-D layer window: moving it reads that
    layer from the program and redraws the view; a text box shows its marks, length and time.
    ``p.show_layer(k)`` does what moving the slider to ``k`` does (returns the layer's figures)."""
    from .layer import layer_contours, redraw_layer

    def show(value):
        k = int(round(value))
        tp, pl = program_layer_toolpath(src, idx, [k])
        figs = layer_figures(tp, src.printer)
        rings = layer_contours(src.mesh, tp.layer_z_um[k]) if src.mesh is not None else None
        redraw_layer(p, tp, k, printer=src.printer, contours=rings, color="power",
                     source=_program_text(idx, f"layer {k} as the printer runs it,", pl), time_s=figs["time_s"],
                     **kw)
        p.preview_info.update(figs)
        return figs

    if idx.n_layers > 1:
        _program_slider(p, show, idx.n_layers, layer)
    _pyvista().set_new_attribute(p, "show_layer", show)


def attach_program_slider_3d(p, src, idx: ProgramIndex, layer: int | None = None) -> None:
    """Add a slider over every layer of the program to a 3-D window: moving it reads that layer
    from the program and draws it highlighted over the overview, with a text box of its marks,
    length and estimated time. ``p.show_layer(k)`` does what moving the slider to ``k`` does."""
    from .common import _lines_polydata

    def show(value):
        k = int(round(value))
        tp, pl = program_layer_toolpath(src, idx, [k])
        figs = layer_figures(tp, src.printer)
        p.remove_actor("program_layer", render=False)
        if tp.n_marks:
            poly = _lines_polydata(np.column_stack([tp.x_um, tp.y_um, tp.z_um]), tp.mark_start)
            p.add_mesh(poly, name="program_layer", color=(1.0, 1.0, 1.0), line_width=2.0, lighting=False)
        from .layer import format_duration

        p.add_text(f"layer {k} from the program {idx.main.name}: {figs['n_marks']:,} marks, "
                   f"{figs['mark_length_um']:,.1f} µm written, estimated {format_duration(figs['time_s'])}",
                   position="lower_left", font_size=9, color=_rgb(TEXT_COLOR), name="layer_info")
        return figs

    k0 = default_program_layer(idx) if layer is None else int(layer)
    if idx.n_layers > 1:
        _program_slider(p, show, idx.n_layers, k0)
    else:
        show(k0)
    _pyvista().set_new_attribute(p, "show_layer", show)


def _program_slider(p, show, n_layers: int, value: int) -> None:
    p.add_slider_widget(show, [0, n_layers - 1], value=value, title="layer (read from the program)",
                        pointa=(0.55, 0.08), pointb=(0.95, 0.08), fmt="%.0f", style="modern",
                        interaction_event="end", color=_rgb(TEXT_COLOR), title_color=_rgb(TEXT_COLOR),
                        title_height=0.02)
