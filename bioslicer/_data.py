"""Locate the data folders (`gcode/`, `printers/`) from a source checkout or a wheel."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the folder ``name`` ('gcode' or 'printers').

    In an installed wheel the folders are packaged as ``bioslicer/_data/<name>``; in a source
    checkout (or an editable install) they sit beside the package at the repository root.
    """
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bioslicer data folder {name!r} not found (broken installation?)")


def dialect_names() -> tuple[str, ...]:
    """The program dialects: one per dialect definition ``gcode/<name>.toml``, the one registry
    the printer profile check, the CLI choices and the service take their names from."""
    return tuple(sorted(p.stem for p in data_dir("gcode").glob("*.toml")))
