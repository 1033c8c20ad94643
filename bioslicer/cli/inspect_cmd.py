"""`bioslicer inspect`: report on a mesh file (and optionally repair it)."""

from __future__ import annotations

import click

from .common import echo_json, json_option, printer_option, units_option


def _fmt3(a) -> str:
    return " x ".join(f"{x:.6g}" for x in a)


@click.command("inspect")
@click.argument("mesh", type=click.Path(dir_okay=False))
@units_option
@click.option("--repair", is_flag=True,
              help="Merge vertices, drop collapsed and duplicate faces, fix winding and normals, fill holes of up to 64 edges.")
@printer_option
@click.option("--radius-array", default=None, metavar="NAME",
              help="Radius point array of a .vtp/.vtk centerline [default: MaximumInscribedSphereRadius, then Radius].")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Recipe fields for the centerline checks (strategy, wall_um, voxel_lateral_um, ...).")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the (repaired) mesh in µm to this file (.stl, .ply, .obj, .off, .glb).")
@click.option("--check", is_flag=True,
              help="Exit 1 with the reason when the mesh cannot be sliced (the check slicing commands run).")
@json_option
def inspect_(mesh: str, units: str, repair: bool, printer: str, radius_array, sets, out: str | None, check: bool,
             as_json: bool) -> None:
    """Report what is in a mesh and whether it can be sliced.

    Counts, bounds and size in µm, volume, bodies, watertightness, winding, holes (with their
    location), degenerate and duplicate faces, inside-out bodies, cavities and bodies that
    overlap each other (they print as their union); once placed on the substrate for the
    printer: parts that float (do not reach the interface) and stitching blocks that start in
    mid-air (nothing printed under their lowest layer). Exits 0 even for a broken mesh; problems
    are listed. Slicing commands run the same checks and refuse meshes that cannot define a solid.

    \b
    Examples:
      bioslicer inspect meshes/vessel_tree.stl
      bioslicer inspect part.stl --units mm --printer nanoscribe-gt2-63x
      bioslicer inspect broken.obj --repair --out fixed.stl
      bioslicer inspect meshes/channel_block.stl --json
      bioslicer inspect part.stl --check && bioslicer slice part.stl -o job/
      bioslicer inspect tree.swc --set strategy=vessel-wall --set wall_um=4
    """
    from ..centerline import is_centerline_path

    if is_centerline_path(mesh):
        return _inspect_tree(mesh, units, printer, radius_array, sets, check, as_json)
    from ..mesh import Solid, _prepare, _read_file, inspect_mesh, load_mesh, save_mesh

    report, solid = inspect_mesh(mesh, units=units, repair=repair, printer=printer, keep_solid=True)
    if out:
        import hashlib
        from pathlib import Path

        v, f, data = _read_file(Path(mesh))
        v, f, _ = _prepare(v, f, units, Path(mesh).name, hashlib.sha256(data).hexdigest(), repair)
        save_mesh(Solid(v, f), out)
        report["written"] = str(out)
    if report["ok"]:
        from ..pipeline import resolve_recipe
        from ..placement import airborne_report
        from ..printers import load_printer

        pr = load_printer(printer)
        report["airborne"] = airborne_report(solid, resolve_recipe(pr), pr)   # the inspected mesh, not read again
    if as_json:
        echo_json(report)
        if check and not report["ok"]:
            load_mesh(mesh, units=units, repair=repair, printer=printer)
        return
    r = report
    click.echo(f"mesh        {r['file']}  ({r['units']}, sha256 {r['sha256'][:12]})")
    click.echo(f"triangles   {r['triangles']}    vertices {r['vertices']}    bodies {r['bodies']}")
    click.echo(f"bounds      {_fmt3(r['bounds_um'][0])}  ..  {_fmt3(r['bounds_um'][1])} µm")
    click.echo(f"size        {_fmt3(r['size_um'])} µm")
    click.echo(f"volume      {r['volume_um3']:.6g} µm³")
    click.echo(f"watertight  {'yes' if r['watertight'] else 'no'}    winding consistent "
               f"{'yes' if r['winding_consistent'] else 'no'}    boundary edges {r['boundary_edges']}"
               f" in {r['holes']} hole(s)")
    click.echo(f"faces       degenerate {r['degenerate_faces']}    duplicate {r['duplicate_faces']}")
    click.echo(f"bodies      inside-out {r['inverted_bodies']}    cavities {r['cavities']}    overlapping pairs "
               f"{len(r['overlapping_pairs'])}" + (" (print as their union)" if r["overlapping_pairs"] else ""))
    for lp in r["hole_loops"][:10]:
        click.echo(f"  hole: {lp['edges']} edges around ({_fmt3(lp['centroid_um'])}) µm, "
                   f"box {_fmt3(lp['bbox_um'][0])} .. {_fmt3(lp['bbox_um'][1])}")
    if "repair" in r:
        done = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r["repair"].items() if v)
        click.echo(f"repair      {done or 'nothing to change'}")
    if "written" in r:
        click.echo(f"written     {r['written']}")
    if "airborne" in r:
        a = r["airborne"]
        low = a["mesh_lowest_z_um"]
        click.echo(f"placement   lowest point z = {low:.6g} µm"
                   + (" (floats above the interface with --keep-position)" if low > 1e-3 else "")
                   + (" (below the interface: --keep-position refuses it)" if low < -1e-3 else ""))
        click.echo(f"mid-air     {len(a['floating_parts'])} floating part(s), {len(a['midair_blocks'])} of "
                   f"{a['blocks']} block(s) start in mid-air on {printer} (voxels {a['voxel_um'][0]:.3g} µm)")
        for fp in a["floating_parts"][:10]:
            click.echo(f"  floating part from z = {fp['lowest_z_um']:.4g} µm, box {_fmt3(fp['lo_um'])} .. "
                       f"{_fmt3(fp['hi_um'])} µm")
        for mb in a["midair_blocks"][:10]:
            click.echo(f"  block {mb['block']} {tuple(mb['index'])} starts in mid-air at z = {mb['z_um']:.4g} µm")
    if r["problems"]:
        click.echo("problems:")
        for p in r["problems"]:
            click.echo(f"  - {p}")
    click.echo("status      " + ("ok: can be sliced" if r["ok"] else "NOT sliceable as is"))
    if check and not r["ok"]:
        load_mesh(mesh, units=units, repair=repair, printer=printer)  # raises the one-line reason


def _inspect_tree(path, units, printer, radius_array, sets, check, as_json) -> None:
    """`bioslicer inspect` of a centerline file: the tree, Murray exponents and the perfusion checks."""
    from ..centerline import inspect_tree, load_tree
    from ..errors import BioslicerError
    from ..perfusion import check_perfusion
    from ..pipeline import resolve_recipe
    from ..printers import load_printer
    from ..recipe import recipe_overrides_from_cli

    tree = load_tree(path, units=units, radius_array=radius_array)
    rec = resolve_recipe(load_printer(printer), None, recipe_overrides_from_cli(list(sets)))
    r = inspect_tree(tree, rec)
    try:
        pf = check_perfusion(tree, rec)
        pf.pop("voids", None)
        r["perfusion"] = pf
        r["ok"] = True
    except BioslicerError as exc:
        r["perfusion"] = {"error": str(exc)}
        r["ok"] = False
    if as_json:
        echo_json(r)
    else:
        click.echo(f"centerline  {r['file']}  ({r['format']}, {r['units']}, sha256 {r['sha256'][:12]})")
        click.echo(f"tree        {r['vessels']} vessels, {r['segments']} segments, {r['bifurcations']} bifurcations"
                   f" (+{r['multifurcations']} multi), {r['terminals']} terminals, {r['components']} part(s),"
                   f" {r['cycles']} loop(s)")
        click.echo(f"length      {r['length_um']:.6g} µm    radius {r['radius_um'][0]:.4g} .. {r['radius_um'][1]:.4g} µm")
        click.echo(f"bounds      {_fmt3(r['bounds_um'][0])}  ..  {_fmt3(r['bounds_um'][1])} µm")
        if r["murray"]:
            ks = ", ".join("-" if b["murray_exponent"] is None else f"{b['murray_exponent']:.2f}" for b in r["murray"][:12])
            more = " ..." if len(r["murray"]) > 12 else ""
            click.echo(f"murray      exponent per bifurcation: {ks}{more} (median {r['murray_exponent_median']})")
        click.echo(f"overlap     {r['repeated_segments']} repeated segment(s)"
                   + (" (overlapping paths print once)" if r["overlapping_paths"] else ""))
        pf = r["perfusion"]
        if "error" in pf:
            click.echo(f"perfusion   {rec.strategy}: REFUSED: {pf['error']}")
        else:
            ends = f", open ends {len(pf['openings'])}, sealed ends {len(pf['sealed_ends'])}" if "openings" in pf else ""
            click.echo(f"perfusion   {rec.strategy}: enclosed voids {pf['enclosed_void_um3']:.4g} µm³{ends}")
        for w in r.get("warnings", []):
            click.echo(f"warning     {w}")
        click.echo("status      " + ("ok: can be sliced" if r["ok"] else "NOT sliceable as is"))
    if check and not r["ok"]:
        raise BioslicerError(r["perfusion"]["error"])
