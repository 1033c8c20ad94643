"""`bioslicer estimate`: how long a toolpath takes to print."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..errors import BioslicerError
from ..estimate import estimate_print_time, format_duration
from ..printers import load_printer
from ..progress import terminal_bar
from ..toolpath import Toolpath
from .common import echo_json, json_option, printer_option


@click.command("estimate")
@click.argument("toolpath", type=click.Path(dir_okay=False, path_type=Path))
@printer_option
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="For a mesh: recipe TOML (as for `bioslicer slice`).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="For a mesh: recipe field; repeatable.")
@click.option("--units", type=click.Choice(["um", "mm", "nm"]), default="um", show_default=True,
              help="For a mesh: length unit of the file.")
@click.option("--force", is_flag=True,
              help="For a mesh: estimate with parameters that look implausible for the printer (as "
                   "`slice --force`); never past this machine's memory.")
@json_option
def estimate(toolpath: Path, printer: str, recipe, sets, units, force: bool, as_json: bool) -> None:
    """Estimate the print time of a mesh's job, or of a toolpath (.npz saved by bioslicer).

    For a mesh (STL/OBJ/PLY/3MF/...): the job's grid is planned as `bioslicer slice` does, the
    span kernel runs on every layer (span count and length per block and layer, no marks), a
    dozen layers of every block tier (stratified over the layers with material, balanced over
    the hatch-angle cycle) are planned, ordered and written to a temporary folder, and each
    block's time, marks and program size are scaled by its spans on all layers over those on
    the sampled ones; no program is kept.

    An unstitched toolpath is first split into blocks with the default block size, overlap and
    shear for the printer and ordered, block by block as `bioslicer slice` does. Time = marks at
    their speed, laser on/off delays, jumps, layer changes and stage moves between blocks, from
    the printer profile.

    \b
    Examples:
      bioslicer estimate meshes/vessel_tree.stl --printer nanoscribe-gt2-25x
      bioslicer estimate part.stl --set hatch_um=0.3 --json
      bioslicer estimate part_toolpath.npz --printer nanoscribe-gt2-25x
      bioslicer estimate part_toolpath.npz -p lab-daq-galvo --json
    """
    if not toolpath.is_file():
        raise BioslicerError(f"file {toolpath} not found; give a mesh or a .npz written by bioslicer")
    if toolpath.suffix.lower() != ".npz":
        from ..pipeline import estimate_mesh
        from ..recipe import recipe_overrides_from_cli

        r = estimate_mesh(toolpath, printer, recipe, recipe_overrides_from_cli(list(sets)), units=units,
                          progress=terminal_bar(), force=force)
        if as_json:
            echo_json(dict(r, mesh=str(toolpath)))
            return
        click.echo(f"mesh       {toolpath}  ({r['layers']} layers, {r['layers_planned']} planned, {r['blocks']} blocks)")
        click.echo(f"printer    {r['printer']}")
        click.echo(f"total      {format_duration(r['estimate']['total_s'])}  ({r['estimate']['total_s']:.6g} s)")
        click.echo(f"marks      {r['marks']:,} ({r['points']:,} points)")
        click.echo(f"program    about {r['program_bytes'] / 1e6:.3g} MB")
        return
    pr = load_printer(printer)
    tp = Toolpath.load(toolpath)
    stitched_here = tp.blocks is None or (tp.n_marks and tp.mark_block.min() < 0)
    if stitched_here:
        if tp.blocks is not None:
            raise BioslicerError(f"{toolpath} has blocks but some marks belong to none; re-run stitching")
        from ..blockrun import combined_estimate, run_toolpath

        grid, results, _ = run_toolpath(tp, pr, keep_toolpath=False, progress=terminal_bar())
        est = combined_estimate(grid.blocks(), results, pr)
    else:
        est = estimate_print_time(tp, pr)
    if as_json:
        d = est.to_dict()
        d.update(printer=pr.name, toolpath=str(toolpath), stitched_here=bool(stitched_here))
        echo_json(d)
        return
    b = est.breakdown
    c = b["counts"]
    click.echo(f"toolpath   {toolpath}  ({c['marks']} marks, {c['blocks']} blocks"
               f"{', stitched with defaults' if stitched_here else ''})")
    click.echo(f"printer    {pr.name}")
    click.echo(f"total      {format_duration(est.total_s)}  ({est.total_s:.6g} s)")
    for key, label in (("mark_s", "marking"), ("laser_delay_s", "laser delays"), ("jump_s", "jumps"),
                       ("layer_change_s", "layer changes"), ("stage_move_s", "stage moves")):
        share = 100.0 * b[key] / est.total_s if est.total_s > 0 else 0.0
        click.echo(f"  {label:14s} {b[key]:12.6g} s  {share:5.1f} %")
    click.echo(f"  mark length {c['mark_length_um']:.6g} µm, jump length {c['jump_length_um']:.6g} µm, "
               f"stage travel {c['stage_move_um']:.6g} µm")
    if len(est.per_block_s):
        pb = est.per_block_s
        click.echo(f"per block  min {pb.min():.4g} s, median {float(np.median(pb)):.4g} s, max {pb.max():.4g} s "
                   f"(block {int(np.argmax(pb))})")
