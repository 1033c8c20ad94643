"""`bioslicer preview`: look at a mesh, a toolpath or a job before printing it."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import BioslicerError
from ..preview.style import COLOR_MODES
from ..progress import terminal_bar
from .common import echo_json, json_option, units_option


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BioslicerError(f"--size {text!r} is not WIDTHxHEIGHT in pixels, e.g. 1200x900") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise BioslicerError(f"--size {text} is out of range; use 64..8192 pixels per side")
    return w, h


def _load_source(pvw, source: Path, units: str, printer):
    """(PreviewSource, Tree or None): a centerline file or a job sliced from one shows the tree as
    tubes by radius (and its exact outline in the layer view)."""
    from ..centerline import is_centerline_path, load_tree

    if source.is_file() and is_centerline_path(source):
        tree = load_tree(source, units=units)
        return pvw.PreviewSource(source.stem, None, tree.tube_polydata(), None, "centerline"), tree
    src = pvw.load_preview_source(source, units=units, printer=printer)
    if source.is_dir() and (source / "centerline.json").is_file():
        tree = load_tree(source / "centerline.json")
        src.mesh = tree.tube_polydata()
        return src, tree
    return src, None


def _png_path(p: Path | None, option: str) -> Path | None:
    if p is not None and p.suffix.lower() != ".png":
        raise BioslicerError(f"{option} {p} must end in .png")
    return p


@click.command("preview")
@click.argument("source", metavar="MESH_JOB_OR_PROGRAM", type=click.Path(path_type=Path))
@click.option("--layers", default=None, metavar="A:B",
              help="Layers to show in 3-D: K, A:B (A <= layer < B, like Python), A: or :B; a job or a "
                   "program reads them from the program.")
@click.option("--layer", "layer", type=int, default=None,
              help="Show one layer from above (2-D view), as the printer runs it [default with --2d: the "
                   "middle layer].")
@click.option("--2d", "two_d", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="OUT.png",
              help="Write the 2-D view of --layer to this PNG.")
@click.option("--compare", "compare", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="OUT.png", help="Design vs printed: the job's mesh and the volume rebuilt from the "
                                      "program's marks, coloured by missing and extra material.")
@click.option("--movie", "movie", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="OUT.mp4|OUT.gif", help="Render the print as a film, layer by layer in print order.")
@click.option("--fps", type=int, default=8, show_default=True, help="Frames per second of --movie.")
@click.option("--color", type=click.Choice(COLOR_MODES), default="kind", show_default=True,
              help="Colour the toolpath lines by mark kind, power, layer, block or parameter set (set: a "
                   "legend names each set's power, speed and origin; program marks are matched to the job's "
                   "sets by power and speed).")
@click.option("--solid", is_flag=True, help="Also show the solid (the mesh voxelised) as an isosurface.")
@click.option("--screenshot", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="OUT.png",
              help="Render offscreen to this PNG instead of opening a window.")
@click.option("--printer", "-p", "printer", default=None,
              help="Printer profile: the one a PROGRAM is for; for a job, the galvo field outline "
                   "[default: the job's printer].")
@click.option("--max-segments", type=int, default=2_000_000, show_default=True,
              help="Draw at most about this many segments (every n-th layer, then mark, beyond).")
@click.option("--size", "size", default="1200x900", show_default=True, help="Image size WIDTHxHEIGHT in pixels.")
@units_option
@json_option
def preview(source, layers, layer, two_d, compare, movie, fps, color, solid, screenshot, printer, max_segments, size,
            units, as_json):
    """Show MESH_JOB_OR_PROGRAM: a job folder (or .zip), a program (with --printer), a toolpath
    .npz, a mesh or a centerline file (.swc .vtp .vtk .json .csv, drawn as tubes by radius).

    A job or a program is shown as the printer gets it: --layer K and --layers A:B read those
    layers from the program files (through an index of layer offsets, so one layer of a large
    program appears in about a second); only the 3-D overview of a job uses its thinned preview
    toolpath, and the picture says so. Opens an interactive window (rotate, zoom, a layer slider)
    when a display exists; with --screenshot, --2d or without a display it renders offscreen to a
    PNG (<name>_preview.png in the current folder unless a file is given).

    \b
    Examples:
      bioslicer preview out/channel_job
      bioslicer preview out/channel_job --layer 40 --2d layer40.png
      bioslicer preview out/channel_job --layers 100:200 --color power --screenshot p.png
      bioslicer preview out/dose_array --color set --screenshot sets.png
      bioslicer preview out/channel_job --compare diff.png
      bioslicer preview out/channel_job --movie print.gif --layers 0:20 --fps 5
      bioslicer preview part.gcode --printer lab-stage-gcode --layer 3 --2d l3.png
      bioslicer preview meshes/vessel_tree.stl --solid --screenshot vessel.png
    """
    from .. import preview as pvw
    from ..printers import load_printer
    from ..preview import views

    wsize = _size(size)
    screenshot = _png_path(screenshot, "--screenshot")
    two_d = _png_path(two_d, "--2d")
    compare = _png_path(compare, "--compare")
    src, tree = _load_source(pvw, source, units, printer)
    pr = load_printer(printer) if printer else src.printer
    # waveform and voxel programs have no text layers: their jobs are shown from the preview toolpath
    from_program = src.kind == "program" or (
        src.kind == "job" and (src.manifest.get("program") or {}).get("dialect") not in ("waveform", "voxel"))
    interactive = pvw.has_display() and screenshot is None and two_d is None
    report = {"source": str(source), "kind": src.kind, "image": None, "view": None, "stats": None}

    if movie is not None:
        from ..preview.movie import render_movie

        if not from_program:
            raise BioslicerError(f"--movie needs a job or a program, and {source} is a {src.kind}")
        idx = views.source_index(src)
        sel = views.parse_program_layers(layers, idx) if layers else None
        res = render_movie(movie, src, idx, layers=sel, fps=fps, window_size=wsize, progress=terminal_bar())
        report.update(view="movie", image=str(res["path"]), frames=res["frames"], time_s=res["time_s"])
    elif compare is not None:
        from ..preview.compare import compare_source, render_compare_png

        if not from_program or src.mesh is None:
            raise BioslicerError(f"--compare needs a job with its mesh (mesh.stl), and {source} has none")
        idx = views.source_index(src)
        cmp = compare_source(src, idx, progress=terminal_bar())
        report.update(view="compare", image=str(render_compare_png(compare, src, cmp, window_size=wsize)),
                      compare=cmp.to_dict(), caption=cmp.text())
    elif layer is not None or two_d is not None:
        report["view"] = "layer"
        if from_program:
            idx = views.source_index(src)
            k = views.default_program_layer(idx) if layer is None else layer
            if not 0 <= k < idx.n_layers:
                raise BioslicerError(f"layer {k} is outside the job: it has layers 0..{idx.n_layers - 1}")
            p = views.program_layer_plotter(src, idx, k, off_screen=not interactive, window_size=wsize,
                                            max_segments=max_segments)
            if interactive:
                views.attach_layer_slider(p, src, idx, k, max_segments=max_segments)
        else:
            if src.toolpath is None:
                raise BioslicerError(f"{source} has no toolpath to show a layer of; give a job folder, a program or "
                                     "a toolpath .npz (slice the mesh first)")
            k = pvw.default_layer(src.toolpath) if layer is None else layer
            n = src.toolpath.n_layers
            contours = None
            if src.mesh is not None and -n <= k < n:
                contours = pvw.layer_contours(tree if tree is not None else src.mesh,
                                                src.toolpath.layer_z_um[k])
            p = pvw.layer_plotter(src.toolpath, k, printer=pr, contours=contours, off_screen=not interactive,
                                  window_size=wsize, max_segments=max_segments)
            k = k % n if n else k
        report["layer"] = k
        info = p.preview_info
        report["stats"] = info["stats"].to_dict()
        report["caption"] = info.get("caption")
        if interactive:
            p.show()
        else:
            out = two_d or screenshot or Path(f"{src.name}_layer{k}_preview.png")
            report["image"] = str(pvw.write_plotter_png(out, p))
    else:
        if solid and src.mesh is None:
            raise BioslicerError(f"--solid needs the mesh, and {source} has none; give the mesh file or a job "
                                 "folder with mesh.stl")
        if src.toolpath is None and layers is not None and not from_program:
            raise BioslicerError(f"--layers needs a toolpath, and {source} is a mesh; give a job folder, a program "
                                 "or a toolpath .npz")
        tp, sel, note = src.toolpath, pvw.parse_layers(layers), None
        if from_program and (layers is not None or src.toolpath is None):
            idx = views.source_index(src)
            if layers is not None:
                want = views.parse_program_layers(layers, idx)
                note = f"layers {want[0]}..{want[-1]}"
            else:
                want, step = views.program_overview_layers(idx)
                note = "every layer" if step == 1 else f"1 in {step} layers"
            tp, pl = views.program_layer_toolpath(src, idx, want)
            note = views._program_text(idx, note, pl)
            sel = None
        elif src.kind == "job":
            note = views.thinning_text(src)
        voxels = pvw.voxelize_mesh(src.mesh) if solid else None
        kw = dict(toolpath=tp, mesh=src.mesh, layers=sel, color=color, voxels=voxels, max_segments=max_segments,
                  title=src.name, window_size=wsize, source=note,
                  sets=(src.manifest or {}).get("parameter_sets") if color == "set" else None)
        report["view"] = "3d"
        p = pvw.toolpath_plotter(off_screen=not interactive, slider=interactive and not from_program, **kw)
        if interactive and from_program:
            views.attach_program_slider_3d(p, src, views.source_index(src))
        st = p.preview_info["stats"]
        report["stats"] = st.to_dict() if st is not None else None
        report["caption"] = p.preview_info.get("caption")
        if interactive:
            p.show()
        else:
            out = screenshot or Path(f"{src.name}_preview.png")
            report["image"] = str(pvw.write_plotter_png(out, p))

    if as_json:
        echo_json(report)
        return
    if report["image"]:
        why = "" if (screenshot or two_d or compare or movie) else " (no display; choose the file with --screenshot)"
        click.echo(f"wrote {report['image']}{why}")
    if report.get("caption"):
        click.echo("  " + report["caption"].replace("\n", "\n  "))
    elif report["stats"]:
        click.echo("  " + pvw.PreviewStats(**report["stats"]).text())
