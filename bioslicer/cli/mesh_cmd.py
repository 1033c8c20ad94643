"""`bioslicer mesh ...`: write the sample constructs (vessel tree, channel block, scaffolds)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import samples
from ..errors import BioslicerError
from ..toolpath import atomic_write_bytes
from .common import echo_json, json_option

_FORMATS = {".stl": "stl", ".ply": "ply", ".obj": "obj", ".off": "off", ".glb": "glb"}


def _mesh_bytes(mesh, path: Path) -> bytes:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BioslicerError(f"cannot tell the mesh format of {str(path)!r}; end -o with one of "
                             f"{', '.join(_FORMATS)}")
    if fmt == "stl":
        return samples.to_stl_bytes(mesh)
    data = mesh.export(file_type=fmt)
    return data.encode() if isinstance(data, str) else bytes(data)


def _write(mesh, output: str, as_json: bool, what: str, params: dict) -> None:
    path = Path(output)
    data = _mesh_bytes(mesh, path)
    atomic_write_bytes(path, data)
    rep = samples.mesh_report(mesh)
    if as_json:
        echo_json({"path": str(path), "bytes": len(data), "sample": what, "parameters": params, **rep})
        return
    shells = f", {rep['shells']} shells (overlapping; volume summed)" if rep["shells"] > 1 else ""
    click.echo(f"wrote {path}: {rep['faces']} faces{shells}, volume {rep['volume_um3']:.6g} µm³, "
               f"watertight: {'yes' if rep['watertight'] else 'NO'}")


output_option = click.option("--output", "-o", "output", required=True, type=click.Path(dir_okay=False),
                             help="Mesh file to write (.stl binary, .ply, .obj, .off, .glb); µm units.")


def _tree_options(f):
    opts = [
        click.option("--levels", type=int, default=4, show_default=True,
                     help="Generations including the root (2**levels - 1 segments)."),
        click.option("--root-radius-um", type=float, default=60.0, show_default=True,
                     help="Radius of the inlet (root) vessel, µm."),
        click.option("--root-length-um", type=float, default=300.0, show_default=True,
                     help="Length of the root vessel inside the block, µm."),
        click.option("--branching-angle-deg", type=float, default=35.0, show_default=True,
                     help="Half angle between the two children of a symmetric branch, degrees."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the asymmetric flow splits and branching planes."),
        click.option("--sections", type=int, default=24, show_default=True,
                     help="Polygon sides per tube."),
        click.option("--size-um", nargs=3, type=float, default=samples.DEFAULT_BLOCK_UM, show_default=True,
                     help="Block the tree perfuses (x y z), µm: inlet on x = 0, outlets on the faces."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.group("mesh")
def mesh() -> None:
    """Write sample constructs: vessel trees, channel blocks, scaffolds, a calibration part.

    All meshes are in µm, watertight, and the same for the same parameters and seed
    (byte-identical files). The files in meshes/ are these commands with default parameters.

    \b
    Examples:
      bioslicer mesh vessel-tree -o tree.stl --levels 5 --seed 3
      bioslicer mesh channel-block -o block.stl --size-um 1000 800 1000
      bioslicer mesh gyroid -o gyroid.stl --cell-um 100 --thickness-um 10
      bioslicer mesh woodpile -o woodpile.stl --pitch-um 60 --layers 10
      bioslicer mesh calibration -o calibration.stl --json
    """


@mesh.command("vessel-tree")
@output_option
@_tree_options
@click.option("--swc", type=click.Path(dir_okay=False), default=None, metavar="TREE.swc",
              help="Also write the tree's centerlines and radii as SWC (µm).")
@json_option
def vessel_tree_cmd(output, levels, root_radius_um, root_length_um, branching_angle_deg, seed, sections,
                    size_um, swc, as_json) -> None:
    """A bifurcating vessel tree (Murray's law), one tube shell per segment, not unioned.

    The tubes overlap at the joints like exported vessel meshes: each shell is closed, the
    solid is their union. The root enters the block face x = 0; leaves end on block faces.

    \b
    Examples:
      bioslicer mesh vessel-tree -o meshes/vessel_tree.stl
      bioslicer mesh vessel-tree -o tree.stl --levels 5 --root-radius-um 80 --seed 7 --json
      bioslicer mesh vessel-tree -o meshes/vessel_tree.stl --swc meshes/vessel_tree.swc
    """
    params = dict(levels=levels, root_radius_um=root_radius_um, root_length_um=root_length_um,
                  branching_angle_deg=branching_angle_deg, seed=seed, sections=sections, box_um=list(size_um))
    if swc is not None:   # the same tree as centerlines, checked before anything is written
        swc_text = samples.vessel_tree_swc(**{k: v for k, v in params.items() if k != "sections"})
    m = samples.vessel_tree(**params)
    _write(m, output, as_json and swc is None, "vessel_tree", params)
    if swc is not None:
        atomic_write_bytes(Path(swc), swc_text.encode("utf-8"))
        if as_json:
            echo_json({"path": str(output), "swc": str(swc), "sample": "vessel_tree", "parameters": params})
        else:
            click.echo(f"wrote {swc}: the centerlines as SWC (µm)")


@mesh.command("channel-block")
@output_option
@_tree_options
@json_option
def channel_block_cmd(output, levels, root_radius_um, root_length_um, branching_angle_deg, seed, sections,
                      size_um, as_json) -> None:
    """A hydrogel block minus a vessel-tree lumen: perfusable channels (manifold3d boolean).

    \b
    Examples:
      bioslicer mesh channel-block -o meshes/channel_block.stl
      bioslicer mesh channel-block -o block.stl --size-um 600 600 600 --root-radius-um 40 --levels 3
    """
    params = dict(size_um=list(size_um), levels=levels, root_radius_um=root_radius_um,
                  root_length_um=root_length_um, branching_angle_deg=branching_angle_deg, seed=seed,
                  sections=sections)
    m = samples.channel_block(**params)
    _write(m, output, as_json, "channel_block", params)


@mesh.command("gyroid")
@output_option
@click.option("--size-um", type=float, default=300.0, show_default=True, help="Side of the cube, µm.")
@click.option("--cell-um", type=float, default=100.0, show_default=True, help="Unit-cell size (period), µm.")
@click.option("--thickness-um", type=float, default=10.0, show_default=True, help="Mean wall thickness, µm.")
@click.option("--resolution", type=int, default=12, show_default=True, help="Samples per cell (grid for clipping).")
@click.option("--max-faces", type=int, default=24000, show_default=True,
              help="Decimate above this many faces (0: keep the full contour).")
@json_option
def gyroid_cmd(output, size_um, cell_um, thickness_um, resolution, max_faces, as_json) -> None:
    """A sheet-gyroid (TPMS) scaffold clipped to a cube, closed at the cube faces.

    Solid fraction about 3.09 x thickness / cell for thin walls.

    \b
    Examples:
      bioslicer mesh gyroid -o meshes/gyroid.stl
      bioslicer mesh gyroid -o g.stl --size-um 200 --cell-um 50 --thickness-um 6 --resolution 24
    """
    params = dict(size_um=size_um, cell_um=cell_um, thickness_um=thickness_um, resolution=resolution,
                  max_faces=max_faces)
    m = samples.gyroid(**params)
    _write(m, output, as_json, "gyroid", params)


@mesh.command("woodpile")
@output_option
@click.option("--size-um", nargs=2, type=float, default=(300.0, 300.0), show_default=True,
              help="Footprint (x y), µm.")
@click.option("--rod-width-um", type=float, default=20.0, show_default=True, help="Rod width, µm.")
@click.option("--rod-height-um", type=float, default=20.0, show_default=True, help="Rod height, µm.")
@click.option("--pitch-um", type=float, default=60.0, show_default=True, help="Rod centre spacing in a layer, µm.")
@click.option("--layers", type=int, default=10, show_default=True, help="Rod layers, alternating 0/90°.")
@click.option("--overlap-um", type=float, default=4.0, show_default=True,
              help="How far each layer sinks into the one below, µm.")
@json_option
def woodpile_cmd(output, size_um, rod_width_um, rod_height_um, pitch_um, layers, overlap_um, as_json) -> None:
    """A woodpile scaffold: rods alternating 0/90° layer by layer, unioned.

    \b
    Examples:
      bioslicer mesh woodpile -o meshes/woodpile.stl
      bioslicer mesh woodpile -o w.stl --size-um 500 400 --pitch-um 80 --layers 16
    """
    params = dict(size_um=list(size_um), rod_width_um=rod_width_um, rod_height_um=rod_height_um,
                  pitch_um=pitch_um, layers=layers, overlap_um=overlap_um)
    m = samples.woodpile(**params)
    _write(m, output, as_json, "woodpile", params)


@mesh.command("calibration")
@output_option
@json_option
def calibration_cmd(output, as_json) -> None:
    """A calibration part: 10/20/50 µm cubes, 1 and 2 µm walls and a staircase on a plate.

    \b
    Examples:
      bioslicer mesh calibration -o meshes/calibration.stl
      bioslicer mesh calibration -o cal.stl --json
    """
    m = samples.calibration()
    _write(m, output, as_json, "calibration", {})


@mesh.command("from-centerline")
@click.argument("tree", type=click.Path(dir_okay=False))
@output_option
@click.option("--units", type=click.Choice(["um", "mm", "nm"]), default="um", show_default=True,
              help="Length unit of the centerline file.")
@click.option("--radius-array", default=None, metavar="NAME", help="Radius point array of a .vtp/.vtk file.")
@click.option("--sections", type=int, default=32, show_default=True, help="Segments per sphere circle.")
@json_option
def from_centerline_cmd(tree, output, units, radius_array, sections, as_json) -> None:
    """The vessel tree of a centerline file (.swc .vtp .vtk .json .csv) as one closed mesh.

    The same geometry the slicer uses (the union of the hulls of each segment's end spheres),
    unioned with manifold3d, for other tools.

    \b
    Examples:
      bioslicer mesh from-centerline meshes/vessel_tree.swc -o tree_union.stl
      bioslicer mesh from-centerline centerlines.vtp --units mm -o vessels.stl
    """
    from ..centerline import load_tree

    if not 6 <= sections <= 256:
        raise BioslicerError(f"sections must be 6..256 (got {sections}); fix --sections")
    t = load_tree(tree, units=units, radius_array=radius_array)
    _write(t.to_trimesh(sections), output, as_json, "from_centerline", {"tree": str(tree), "units": units})
