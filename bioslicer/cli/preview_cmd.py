"""`bioslicer preview`: look at a mesh, a toolpath or a job before printing it."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import BioslicerError
from .common import echo_json, json_option, units_option


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BioslicerError(f"--size {text!r} is not WIDTHxHEIGHT in pixels, e.g. 1200x900") from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise BioslicerError(f"--size {text} is out of range; use 64..8192 pixels per side")
    return w, h


def _load_source(pvw, source: Path, units: str):
    """(PreviewSource, Tree or None): a centerline file or a job sliced from one shows the tree as
    tubes by radius (and its exact outline in the layer view)."""
    from ..centerline import is_centerline_path, load_tree

    if source.is_file() and is_centerline_path(source):
        tree = load_tree(source, units=units)
        return pvw.PreviewSource(source.stem, None, tree.tube_polydata(), None, "centerline"), tree
    src = pvw.load_preview_source(source, units=units)
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
@click.argument("source", metavar="MESH_OR_JOB", type=click.Path(path_type=Path))
@click.option("--layers", default=None, metavar="A:B",
              help="Toolpath layers to show: K, A:B (A <= layer < B, like Python), A: or :B.")
@click.option("--layer", "layer", type=int, default=None,
              help="Show one layer from above (2-D view) [default with --2d: the middle layer].")
@click.option("--2d", "two_d", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="OUT.png",
              help="Write the 2-D view of --layer to this PNG.")
@click.option("--color", type=click.Choice(["kind", "power", "layer", "block"]), default="kind",
              show_default=True, help="Colour the toolpath lines by mark kind, power, layer or block.")
@click.option("--solid", is_flag=True, help="Also show the solid (the mesh voxelised) as an isosurface.")
@click.option("--screenshot", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="OUT.png",
              help="Render offscreen to this PNG instead of opening a window.")
@click.option("--printer", "-p", "printer", default=None,
              help="Printer profile for the galvo field outline [default: the job's printer].")
@click.option("--max-segments", type=int, default=2_000_000, show_default=True,
              help="Draw at most about this many segments (every n-th layer, then mark, beyond).")
@click.option("--size", "size", default="1200x900", show_default=True, help="Image size WIDTHxHEIGHT in pixels.")
@units_option
@json_option
def preview(source, layers, layer, two_d, color, solid, screenshot, printer, max_segments, size, units, as_json):
    """Show MESH_OR_JOB: a job folder (or .zip), a toolpath .npz, a mesh or a centerline file.

    Opens an interactive window (rotate, zoom, a layer slider) when a display exists; with
    --screenshot, --2d or without a display it renders offscreen to a PNG
    (<name>_preview.png in the current folder unless a file is given). Toolpath lines are
    coloured by kind (legend), power, layer or block; blocks are yellow boxes; the mesh is
    translucent. Large toolpaths are thinned for display and the image says what is shown.

    \b
    Examples:
      bioslicer preview out/channel_job
      bioslicer preview out/channel_job --layers 100:200 --color power --screenshot p.png
      bioslicer preview out/channel_job --layer 40 --2d layer40.png
      bioslicer preview meshes/vessel_tree.stl --solid --screenshot vessel.png
    """
    from .. import preview as pvw
    from ..printers import load_printer

    wsize = _size(size)
    screenshot = _png_path(screenshot, "--screenshot")
    two_d = _png_path(two_d, "--2d")
    src, tree = _load_source(pvw, source, units)
    pr = load_printer(printer) if printer else src.printer
    interactive = pvw.has_display() and screenshot is None and two_d is None
    report = {"source": str(source), "kind": src.kind, "image": None, "view": None, "stats": None}

    if layer is not None or two_d is not None:
        if src.toolpath is None:
            raise BioslicerError(f"{source} has no toolpath to show a layer of; give a job folder or a "
                                 "toolpath .npz (slice the mesh first)")
        k = pvw.default_layer(src.toolpath) if layer is None else layer
        report["view"] = "layer"
        report["layer"] = k
        n = src.toolpath.n_layers
        contours = None
        if src.mesh is not None and -n <= k < n:
            contours = pvw.layer_contours(tree if tree is not None else src.mesh, src.toolpath.layer_z_um[k])
        if interactive:
            p = pvw.layer_plotter(src.toolpath, k, printer=pr, contours=contours, window_size=wsize,
                                  max_segments=max_segments)
            report["stats"] = p.preview_info["stats"].to_dict()
            p.show()
        else:
            out = two_d or screenshot or Path(f"{src.name}_layer{k % n if n else k}_preview.png")
            p = pvw.layer_plotter(src.toolpath, k, printer=pr, contours=contours, off_screen=True,
                                  window_size=wsize, max_segments=max_segments)
            report["stats"] = p.preview_info["stats"].to_dict()
            report["image"] = str(pvw.write_plotter_png(out, p))
    else:
        if solid and src.mesh is None:
            raise BioslicerError(f"--solid needs the mesh, and {source} has none; give the mesh file or a job "
                                 "folder with mesh.stl")
        if src.toolpath is None and layers is not None:
            raise BioslicerError(f"--layers needs a toolpath, and {source} is a mesh; give a job folder or "
                                 "toolpath .npz")
        voxels = pvw.voxelize_mesh(src.mesh) if solid else None
        kw = dict(toolpath=src.toolpath, mesh=src.mesh, layers=pvw.parse_layers(layers), color=color,
                  voxels=voxels, max_segments=max_segments, title=src.name, window_size=wsize)
        report["view"] = "3d"
        p = pvw.toolpath_plotter(off_screen=not interactive, slider=interactive, **kw)
        st = p.preview_info["stats"]
        report["stats"] = st.to_dict() if st is not None else None
        if interactive:
            p.show()
        else:
            out = screenshot or Path(f"{src.name}_preview.png")
            report["image"] = str(pvw.write_plotter_png(out, p))

    if as_json:
        echo_json(report)
        return
    if report["image"]:
        why = "" if (screenshot or two_d) else " (no display; choose the file with --screenshot)"
        click.echo(f"wrote {report['image']}{why}")
    st = report["stats"]
    if st:
        click.echo("  " + pvw.PreviewStats(**st).text())
