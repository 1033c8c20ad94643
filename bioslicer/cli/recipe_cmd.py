"""`bioslicer recipe`: show the effective recipe (printer defaults, recipe file, overrides)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json, json_option, printer_option


@click.group("recipe")
def recipe() -> None:
    """Slicing recipes: every slicing parameter in one TOML file.

    \b
    Examples:
      bioslicer recipe show --printer nanoscribe-gt2-63x > my_recipe.toml
      bioslicer recipe show --recipe my_recipe.toml --set hatch_um=0.15 --json
      bioslicer slice part.stl --recipe my_recipe.toml
    """


@recipe.command("show")
@printer_option
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe TOML file over the printer defaults.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one recipe key (TOML value; power_mw.hatch=25 for one kind); repeatable.")
@json_option
def show(printer: str, recipe_path: Path | None, sets: tuple[str, ...], as_json: bool) -> None:
    """Print the effective recipe: built-in defaults < printer [defaults] < --recipe < --set.

    The output is a valid recipe file (TOML; keys left out mean the default).

    \b
    Examples:
      bioslicer recipe show
      bioslicer recipe show --printer lab-daq-galvo --set strategy=woodpile --set lattice_pitch_um=15
      bioslicer recipe show --recipe my_recipe.toml --json
    """
    from ..printers import load_printer
    from ..recipe import Recipe, load_recipe, recipe_overrides_from_cli

    p = load_printer(printer)
    rec = load_recipe(recipe_path, printer=p) if recipe_path is not None else Recipe.from_printer(p)
    ov = recipe_overrides_from_cli(list(sets))
    if ov:
        rec = rec.updated(_source="--set", **ov)
    if as_json:
        echo_json(rec.to_dict())
    else:
        click.echo(rec.to_toml(), nl=False)
