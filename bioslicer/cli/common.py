"""Options and output helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys

import click
import numpy as np

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")

printer_option = click.option(
    "--printer", "-p", "printer", default="nanoscribe-gt2-25x", show_default=True,
    help="Printer profile: a bundled name (see `bioslicer printers`) or a path to a .toml file.")

units_option = click.option(
    "--units", type=click.Choice(["um", "mm", "nm"]), default="um", show_default=True,
    help="Length unit of the mesh file; bioslicer works in µm inside.")


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(obj) -> str:
    """Deterministic JSON (sorted keys, numpy scalars and arrays as plain numbers and lists)."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_default, ensure_ascii=False)


def echo_json(obj) -> None:
    click.echo(to_json(obj))


def is_tty() -> bool:
    return sys.stderr.isatty()
