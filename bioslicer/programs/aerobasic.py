"""Aerotech A3200 AeroBasic for stage + galvo systems (Femtika-class).

Per block: the stage moves (``RAPID X.. Y.. Z..`` on the profile's stage axes, laser off); per
mark: a galvo jump (``RAPID A.. B.. Z..``), the profile's analog-output power command (only
where the power changes), ``GALVO LASEROVERRIDE <axis> ON``, ``LINEAR A.. B.. Z.. F..`` to the
following points, ``GALVO LASEROVERRIDE <axis> OFF``. Galvo axes are block-local; Z is the
absolute z stage (it moves the focus inside the block). Header: ``METRIC``/``ENGLISH`` (profile
unit mm / inch), ``SECONDS``/``MINUTES`` (feed per s / min), ``ABSOLUTE``, and without a profile
stage origin ``POSOFFSET SET`` (the start position becomes part (0, 0, 0)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BioslicerError
from . import _format as F
from .dialects import program_origin_um, provenance_lines
from .general import AeroBasicInterpreter, NeedsGeneral
from .gcode import AXIS_FOCUS_STAGE, AXIS_GALVO, StepFormat, StepReader, emit_marks, finish_main, write_fragment


def _axes(printer):
    p = printer.program
    g, s, la = p["galvo_axes"], p["stage_axes"], p["laser_axis"]
    if not (isinstance(g, list) and len(g) == 2 and isinstance(s, list) and len(s) == 3
            and all(isinstance(a, str) and len(a) == 1 and a.isalpha() for a in g + s)):
        raise BioslicerError(f"printer profile {printer.name}: 'program.galvo_axes' must be 2 axis letters and "
                             "'program.stage_axes' 3 axis letters, e.g. [\"A\", \"B\"] and [\"X\", \"Y\", \"Z\"]")
    return {"GX": g[0], "GY": g[1], "SX": s[0], "SY": s[1], "SZ": s[2], "LA": str(la)}


ONE_FILE = True   # one main file: write_program writes the blocks straight into it

def _format(printer, spec) -> StepFormat:
    spec.check_printer(printer)
    fmt = StepFormat(printer, spec, subst=_axes(printer))
    if "laser_on" not in fmt.templates or "laser_off" not in fmt.templates:
        raise BioslicerError("the aerobasic dialect needs laser_on and laser_off commands")
    return fmt


def prepare(printer, spec) -> None:
    """Refuse a profile the AeroBasic writer cannot use (checked once, before any block is written)."""
    _format(printer, spec)


def _head(w, counts: dict) -> str:
    printer, spec = w.printer, w.spec
    fmt = _format(printer, spec)
    cm = spec.comment[0]
    head = [f"{cm} {t}" for t in provenance_lines(counts, printer, w.provenance, "aerobasic")]
    fp = printer.program.get("feed_per", spec.get("default_feed_per", "s"))
    head += [fmt.cmd["units_" + fmt.unit].format(), fmt.cmd["time_" + fp].format(), fmt.cmd["absolute"].format()]
    if "origin_um" not in printer.program:
        head += [f"{cm} part origin = where the stages stand at the start", fmt.cmd["set_origin"].format()]
    head += [fmt.cmd["velocity_on"].format(), fmt.cmd["laser_off"].format()]
    return fmt.eol.join(head) + fmt.eol


def write_block(w, b: int, toolpath, staging: Path) -> tuple[list, dict]:
    """Write block ``b``'s AeroBasic under ``staging``: the stage move, then its marks (galvo x, y
    relative to the block, z stage absolute; the first mark sets the power)."""
    printer, spec = w.printer, w.spec
    fmt = _format(printer, spec)
    origin = program_origin_um(printer)
    d = fmt.coord_decimals
    s = fmt.scale_um
    o = w.blocks.origin_um[b]
    stage = o + origin

    def emit(fh):
        fh.write(f"{spec.comment[0]} block {b}, {toolpath.n_marks} marks{fmt.eol}")
        fh.write(fmt.cmd["stage_move"].format(x=F.fmt(stage[0] / s, d), y=F.fmt(stage[1] / s, d),
                                              z=F.fmt(stage[2] / s, d)) + fmt.eol)
        emit_marks(fmt, printer, toolpath, 0, toolpath.n_marks, np.array([-o[0], -o[1], origin[2]]), fh)

    return write_fragment(w, b, staging, emit, lambda: _head(w, w.direct.counts))


def write_main(w, parts, counts: dict, staging: Path) -> list[Path]:
    """Write ``<name>.pgm``: header, the blocks' text in order, end. Returns [main]."""
    fmt = _format(w.printer, w.spec)
    return finish_main(w, parts, counts, staging, _head(w, counts), fmt.cmd["end"].format() + fmt.eol)


def iter_moves(path, printer, spec, check=None):
    """Yield :class:`Moves` chunks of an AeroBasic program (only the failing moves when ``check``
    is (lim, flags) from :func:`~bioslicer.programs.checks.limits`).

    Galvo x, y are block-local on top of the x, y stage; Z is the absolute z stage, so the fine z
    is Z minus the block's z stage position.
    """
    fmt = _format(printer, spec)
    ax = _axes(printer)
    args = (fmt, spec, printer, [AXIS_GALVO, AXIS_GALVO, AXIS_FOCUS_STAGE], np.zeros(3))
    kw = dict(stage_letters=(ax["SX"], ax["SY"], ax["SZ"]), check=check)
    try:
        yield from StepReader(*args, **kw, fast_words=_fast_words(fmt, printer)).iter_moves(path)
    except NeedsGeneral:
        yield None
        can = AeroBasicInterpreter(fmt, printer, ax).read(Path(path))
        yield from StepReader(*args, **kw, canonical=can).iter_moves(path)


def _fast_words(fmt, printer) -> list[str]:
    """Header words of the plain AeroBasic the fast reader reads (they agree with the profile)."""
    words = ["ABSOLUTE", "VELOCITY ON", "END PROGRAM"]
    if fmt.unit == "mm":    # PRIMARY: the controller's primary units, mm on these systems (the profile says mm)
        words += ["METRIC", "PRIMARY"]
    words.append("MINUTES" if printer.program.get("feed_per", "s") == "min" else "SECONDS")
    return words
