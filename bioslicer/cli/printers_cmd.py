"""`bioslicer printers`: list and show printer profiles."""

from __future__ import annotations

import click

from ..printers import list_printers, load_printer
from .common import echo_json, json_option


@click.command("printers")
@click.argument("name", required=False)
@json_option
def printers(name: str | None, as_json: bool) -> None:
    """List the bundled printer profiles, or show one in full.

    \b
    Examples:
      bioslicer printers
      bioslicer printers nanoscribe-gt2-63x --json
      bioslicer printers ./my_printer.toml
    """
    if name:
        p = load_printer(name)
        if as_json:
            echo_json(p.to_dict())
            return
        for k, v in p.to_dict().items():
            click.echo(f"{k:28s} {v}")
        return
    items = list_printers()
    if as_json:
        echo_json([p.to_dict() for p in items])
        return
    click.echo(f"{'name':26s} {'dialect':10s} {'field':>16s} {'z range':>9s} {'max power':>10s}  description")
    for p in items:
        field = f"{p.field_shape} {p.field_size_um:g} µm"
        click.echo(f"{p.name:26s} {p.dialect:10s} {field:>16s} {p.z_range_um:>6g} µm {p.max_power_mw:>7g} mW  {p.description}")
