"""`bioslicer slice`: mesh -> checked job folder (program, manifest, report, preview)."""

from __future__ import annotations

from pathlib import Path

import click

from ..progress import terminal_bar
from ..recipe import STRATEGIES
from .common import echo_json, json_option, printer_option, units_option


def _overrides(strategy, slice_um, hatch_um, hatch_angle_deg, contours, sets):
    from ..recipe import recipe_overrides_from_cli

    ov = recipe_overrides_from_cli(list(sets))
    for key, val in (("strategy", strategy), ("slice_um", slice_um), ("hatch_um", hatch_um),
                     ("hatch_angle_deg", hatch_angle_deg), ("contour_count", contours)):
        if val is not None:
            ov[key] = val
    return ov


def parse_scale(text: str) -> list:
    """``--scale``: one factor or three comma-separated factors -> [sx, sy, sz]."""
    from ..errors import BioslicerError

    try:
        f = [float(a) for a in text.split(",")]
    except ValueError:
        f = []
    if len(f) not in (1, 3):
        raise BioslicerError(f"--scale {text!r} must be one factor or three, e.g. 1.25 or 1.2,1.2,1.1")
    return f * 3 if len(f) == 1 else f


@click.command("slice")
@click.argument("mesh", type=click.Path(dir_okay=False, path_type=Path))
@printer_option
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Job folder to write [default: <mesh stem>_job beside the current folder].")
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe TOML with slicing parameters (options below override it).")
@click.option("--strategy", type=click.Choice(STRATEGIES),
              default=None, help="Scan strategy [default: from the recipe, else solid].")
@click.option("--slice-um", type=float, default=None, help="Slice (layer) distance, µm.")
@click.option("--hatch-um", type=float, default=None, help="Hatch distance, µm.")
@click.option("--hatch-angle-deg", type=float, default=None, help="Hatch angle of the first layer, degrees.")
@click.option("--contours", type=int, default=None, help="Number of contours around each layer.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Any recipe field (see `bioslicer recipe show`); repeatable.")
@click.option("--keep-position", is_flag=True,
              help="Keep the mesh coordinates (z = 0 is the substrate interface) instead of placing the part on "
                   "the substrate, centred at the stage's start position.")
@click.option("--allow-floating", is_flag=True,
              help="With --keep-position: accept a part that does not reach the interface (printing onto an "
                   "existing structure).")
@click.option("--allow-power-clip", is_flag=True,
              help="Proceed when a power request exceeds the laser's maximum (clipped; the job reports it).")
@click.option("--scale", "scale", default=None, metavar="S|SX,SY,SZ",
              help="Scale the part before slicing (shrink/swell compensation), e.g. 1.25 or 1.2,1.2,1.1 "
                   "(recipe key scale).")
@click.option("--dialect", default=None, help="Program dialect [default: the printer's].")
@units_option
@click.option("--repair", is_flag=True, help="Repair the mesh (merge, drop degenerate faces, fix winding, fill small holes).")
@click.option("--radius-array", default=None, metavar="NAME",
              help="Radius point array of a .vtp/.vtk centerline [default: MaximumInscribedSphereRadius, then Radius].")
@click.option("--allow-sealed", is_flag=True, help="Slice a vessel-wall/channels job even when it encloses sealed voids.")
@click.option("--allow-narrow", is_flag=True, help="Slice even when a lumen is too narrow to stay open when printed.")
@click.option("--zip", "as_zip", is_flag=True, help="Also write <job>.zip.")
@click.option("--overwrite", is_flag=True, help="Replace an existing job folder.")
@click.option("--force", is_flag=True,
              help="Slice with parameters that look implausible for the printer (below its resolution, "
                   "beyond its field, a print of months); never past this machine's memory or disk.")
@click.option("--no-preview", is_flag=True, help="Skip the preview PNG.")
@click.option("--workers", type=int, default=None,
              help="Slice the blocks on a local Dask cluster of N worker processes.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Slice the blocks on a running Dask scheduler (tcp://HOST:PORT); the job folder must be "
                   "on storage the workers see.")
@click.option("--cluster-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Start a dask-jobqueue cluster (Slurm/PBS/SGE) from a TOML/YAML file.")
@json_option
def slice_(mesh, printer, out_dir, recipe, strategy, slice_um, hatch_um, hatch_angle_deg, contours, sets,
           keep_position, allow_floating, allow_power_clip, scale, dialect, units, repair, radius_array, allow_sealed,
           allow_narrow, as_zip, overwrite, force, no_preview, workers, scheduler, cluster_config, as_json):
    """Slice MESH (a mesh, vessel centerlines: .swc .vtp .vtk .json .csv, or a plate.toml listing several
    parts) into a job folder.

    The job holds the program in the printer's dialect, manifest.json (hashes, parameters, counts,
    estimate, validation), report.txt and preview.png. Nothing is left behind on an error.

    \b
    Examples:
      bioslicer slice meshes/channel_block.stl --printer nanoscribe-gt2-25x -o out/channel_job
      bioslicer slice vessel.stl --units mm --strategy shell-scaffold --set skin_layers=4
      bioslicer slice part.stl --recipe my_recipe.toml --hatch-um 0.3 --zip
      bioslicer slice onto_base.stl --keep-position --allow-floating --set find_interface=once
      bioslicer slice hydrogel_part.stl --scale 1.25,1.25,1.18
      bioslicer slice plate.toml -o out/plate_job
      bioslicer slice meshes/channel_block.stl --workers 2 -o out/job
      bioslicer slice big_tree.stl --scheduler tcp://head-node:8786 -o /shared/jobs/tree
      bioslicer slice tree.swc --strategy vessel-wall --set wall_um=8 -o out/wall_job
      bioslicer slice centerlines.vtp --units mm --strategy channels -o out/chip_job
    """
    from ..pipeline import slice_to_job

    out_dir = out_dir or Path(f"{mesh.stem}_job")
    ov = _overrides(strategy, slice_um, hatch_um, hatch_angle_deg, contours, sets)
    for flag, key, val in ((keep_position, "placement", "keep"), (allow_floating, "allow_floating", True),
                           (allow_power_clip, "allow_power_clip", True)):
        if flag:
            ov[key] = val
    if scale is not None:
        ov["scale"] = parse_scale(scale)
    kwargs = dict(printer=printer, recipe=recipe, overrides=ov, units=units, repair=repair, zip=as_zip,
                  overwrite=overwrite, force=force, preview=not no_preview, progress=terminal_bar(), dialect=dialect,
                  radius_array=radius_array, allow_sealed=allow_sealed, allow_narrow=allow_narrow)
    if mesh.suffix.lower() == ".toml":       # a plate: several parts, each with its own recipe
        from ..plate import plate_to_job
        from ..printers import load_printer

        if workers is not None or scheduler is not None or cluster_config is not None:
            raise click.UsageError("a plate file is sliced in this process; drop --workers/--scheduler")
        res = plate_to_job(mesh, out_dir, load_printer(printer), recipe=recipe, overrides=ov, overwrite=overwrite,
                           preview=not no_preview, dialect=dialect)
    elif workers is None and scheduler is None and cluster_config is None:
        from ..warmup import start_background

        start_background(printer)    # first run only: compile the later stages on the other core
        res = slice_to_job(mesh, out_dir, **kwargs)
    else:
        from ..cluster import dask_client

        if not mesh.is_file():
            raise click.UsageError(f"mesh file {mesh} not found")
        with dask_client(workers=workers, scheduler=scheduler, cluster_config=cluster_config) as client:
            res = slice_to_job(mesh, out_dir, client=client, **kwargs)
    try:
        _summary(res, as_json)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM after the job folder was published: the job is complete, so say
        # nothing was lost rather than "nothing was written" (exit 0: the job is there)
        click.echo(f"job written: {res.path} (interrupted while printing its summary)", err=True)
        return 0


def _summary(res, as_json: bool) -> None:
    """Print what a finished slice wrote (a JSON object with ``--json``)."""
    m = res.manifest
    if as_json:
        echo_json({"job": str(res.path), "zip": str(res.zip_path) if res.zip_path else None,
                   "counts": m["counts"], "estimate": m["estimate"], "validation": m["validation"],
                   "program": m["program"], "timings_s": res.timings_s})
        return
    c = m["counts"]
    est = m["estimate"]["total_s"]
    from ..jobs.report import power_clip_line

    click.echo(f"job written: {res.path}" + (f" (+ {res.zip_path})" if res.zip_path else ""))
    clip = power_clip_line(m.get("power_clip"))
    if clip:
        click.echo(f"  warning  {clip}")
    click.echo(f"  program  {m['program']['main']} ({m['program']['dialect']}, {len(m['program']['files'])} files)")
    click.echo(f"  toolpath {c['layers']} layers, {c['blocks']} blocks, {c['segments']:,} segments, "
               f"{c['mark_length_um'] / 1000:.1f} mm marked")
    click.echo(f"  estimate {int(est // 3600)}:{int(est % 3600 // 60):02d}:{int(est % 60):02d} (h:mm:ss)")
    click.echo(f"  checked  against {m['printer']['name']}: ok, {m['validation'].get('n_moves', 0):,} moves")
    pf = m.get("perfusion") or {}
    if pf:
        ends = f", {len(pf['openings'])} open vessel ends" if pf.get("openings") is not None else ""
        click.echo(f"  perfusion enclosed voids {pf['enclosed_void_um3']:.4g} µm³{ends} "
                   f"(flooded at {pf['voxel_um'][0]:g} x {pf['voxel_um'][2]:g} µm)")
        for w in pf.get("warnings", []):
            click.echo(f"  warning  {w}")
    click.echo(f"  took     {res.timings_s['total_s']:.1f} s")
