"""`bioslicer array`: a dose array (one part in a grid of cells, recipe values varied per cell)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json, json_option, printer_option, units_option


@click.command("array")
@click.argument("part", required=False, type=click.Path(dir_okay=False, path_type=Path))
@printer_option
@click.option("--test", "test_name", type=click.Choice(["cube", "woodpile", "resolution-bridges"]), default=None,
              help="Print a built-in test structure instead of PART (30 µm).")
@click.option("--vary", "varies", multiple=True, required=True, metavar="KEY=A:B:STEP|V1,V2,...",
              help="A recipe key and its values (inclusive range or list); the first along the columns, the "
                   "last along the rows; repeatable.")
@click.option("--pitch-um", type=float, default=150.0, show_default=True, help="Distance between cell centres, µm.")
@click.option("--recipe", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe every cell starts from.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Recipe field for every cell; repeatable.")
@click.option("--no-labels", is_flag=True, help="Do not print the row-column label beside each cell.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Job folder to write.")
@click.option("--dialect", default=None, help="Program dialect [default: the printer's].")
@units_option
@click.option("--overwrite", is_flag=True, help="Replace an existing job folder.")
@click.option("--no-preview", is_flag=True, help="Skip the preview PNG.")
@json_option
def array(part, printer, test_name, varies, pitch_um, recipe, sets, no_labels, out_dir, dialect, units, overwrite,
          no_preview, as_json):
    """Write a dose array: PART (or --test) once per combination of the --vary values.

    One job: the cells in rows and columns, relative stage moves, the interface found at every
    cell, a label beside each, array.csv (cell, row, column, offset -> values, estimate) and a
    preview of the grid.

    \b
    Examples:
      bioslicer array --test cube --vary power_mw.hatch=10:40:5 --vary speed_um_s.hatch=20000,50000,100000 -o out/dose
      bioslicer array part.stl --vary hatch_um=0.1,0.2,0.3 --pitch-um 200 -o out/hatch_array
    """
    from ..dosearray import array_to_job, parse_vary, make_test_structure
    from ..errors import BioslicerError
    from ..mesh import load_mesh
    from ..pipeline import resolve_recipe
    from ..printers import load_printer
    from ..recipe import recipe_overrides_from_cli

    if (part is None) == (test_name is None):
        raise BioslicerError("give a PART mesh or --test cube|woodpile|resolution-bridges (one of them)")
    pr = load_printer(printer)
    base = resolve_recipe(pr, recipe, recipe_overrides_from_cli(list(sets)))
    vary = [parse_vary(v) for v in varies]
    solid = make_test_structure(test_name) if test_name else load_mesh(part, units=units, printer=pr, recipe=base)
    res = array_to_job(solid, out_dir, pr, base, vary, pitch_um=pitch_um, labels=not no_labels,
                       overwrite=overwrite, preview=not no_preview, dialect=dialect)
    a = res.manifest["array"]
    if as_json:
        echo_json({"job": str(res.path), "array": a, "estimate": res.manifest["estimate"]})
        return
    click.echo(f"array written: {res.path} ({a['rows']} rows × {a['columns']} columns, pitch {a['pitch_um']:g} µm)")
    click.echo(f"  cells    array.csv; estimate {res.manifest['estimate']['total_s']:.1f} s in all")
