"""`bioslicer validate` and `bioslicer export`: check a machine program, write one from a toolpath."""

from __future__ import annotations

from pathlib import Path

import click

from .._data import dialect_names
from ..errors import BioslicerError
from ..printers import load_printer
from ..progress import terminal_bar
from .common import echo_json, json_option, printer_option

_DIALECT_CHOICE = click.Choice(dialect_names())


@click.command("validate")
@click.argument("program", type=click.Path(dir_okay=False))
@printer_option
@click.option("--dialect", type=_DIALECT_CHOICE, default=None,
              help="Program dialect; guessed from the file extension when omitted.")
@click.option("--max-violations", type=click.IntRange(1, 10000), default=20, show_default=True,
              help="How many violations to list.")
@json_option
def validate(program: str, printer: str, dialect: str | None, max_violations: int, as_json: bool) -> None:
    """Parse a machine program back and check every move against a printer profile.

    Checks: galvo field, fine z range, stage travel, laser power within 0..max, scan and jump
    speeds, laser off on every jump, no NaN or inf, and (waveforms) galvo acceleration.
    Exit 0 when the program is within limits, 1 with `error: FILE:LINE: ...` when not.

    \b
    Examples:
      bioslicer validate out/part_job.gwl --printer nanoscribe-gt2-25x
      bioslicer validate part.gcode -p lab-stage-gcode --json
      bioslicer validate out/part_waveform.csv -p lab-daq-galvo
    """
    from ..programs import validate_program

    report = validate_program(program, load_printer(printer), dialect, max_violations=max_violations)
    if as_json:
        echo_json(report.to_dict())
    if not as_json:
        for v in report.notes:
            click.echo(f"note: {v}", err=True)
        if report.n_notes > len(report.notes):
            click.echo(f"note: ... and {report.n_notes - len(report.notes)} more note(s)", err=True)
    if not report.ok:
        if not as_json:
            for v in report.violations[1:]:
                click.echo(f"  {v}", err=True)
        raise BioslicerError(report.summary())
    if not as_json:
        click.echo(f"ok: {report.path}: {report.n_moves} moves within the limits of {report.printer} "
                   f"({report.dialect})")


@click.command("export")
@click.argument("toolpath", type=click.Path(exists=True))
@printer_option
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder for the program files.")
@click.option("--name", default="part", show_default=True, help="Base name of the program files.")
@click.option("--dialect", type=_DIALECT_CHOICE, default=None, help="Override the printer's dialect.")
@json_option
def export(toolpath: str, printer: str, out_dir: str, name: str, dialect: str | None, as_json: bool) -> None:
    """Write a stitched toolpath (.npz), or a whole job for another printer, validated before it appears.

    Nothing is left in the output folder when validation fails (exit 1). Given a job folder,
    its part is written again for --printer (and --dialect) into a new job folder -o: the
    recipe is checked against the new printer and refused in one line where it does not fit.

    \b
    Examples:
      bioslicer export out/channel_job --printer femtika-aerotech-galvo -o out/channel_job_femtika
      bioslicer export part_toolpath.npz --printer nanoscribe-gt2-25x -o out/
      bioslicer export part_toolpath.npz -p lab-daq-galvo --name vessel --json
    """
    from ..programs import write_program
    from ..toolpath import Toolpath

    if Path(toolpath).is_dir():
        from ..pipeline import export_job

        if Path(out_dir).resolve() in (Path(".").resolve(), Path(toolpath).resolve()):
            raise BioslicerError("give the new job folder with -o (not the current folder or the job itself)")
        res = export_job(toolpath, out_dir, load_printer(printer), dialect=dialect)
        if as_json:
            echo_json({"job": str(res.path), "program": res.manifest["program"], "estimate": res.manifest["estimate"]})
        else:
            click.echo(f"job written for {res.manifest['printer']['name']}: {res.path} "
                       f"({res.manifest['program']['dialect']}, {res.manifest['counts']['blocks']} blocks)")
        return
    tp = Toolpath.load(toolpath)
    prov = {"toolpath": str(toolpath)}
    prov.update({k: v for k, v in tp.meta.items() if isinstance(v, (str, int, float))})
    pf = write_program(tp, load_printer(printer), out_dir, name=name, dialect=dialect, provenance=prov,
                       progress=terminal_bar())
    if as_json:
        echo_json(pf.to_dict())
        return
    click.echo(f"wrote {pf.main} ({pf.dialect}, {len(pf.files)} files, {pf.n_bytes} bytes, "
               f"{pf.report.n_moves if pf.report else 0} moves validated)")
