"""`bioslicer job`: show, verify and submit print jobs."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import BioslicerError
from .common import echo_json, json_option

_job_arg = click.argument("job_path", metavar="JOB", type=click.Path(path_type=Path))


@click.group("job")
def job() -> None:
    """Show, verify and submit print jobs written by `bioslicer slice`.

    \b
    Examples:
      bioslicer job info out/channel_job
      bioslicer job verify out/channel_job --printer nanoscribe-gt2-63x
      bioslicer job submit out/channel_job --to /mnt/printer/spool
    """


@job.command("info")
@_job_arg
@click.option("--sets", "show_sets", is_flag=True,
              help="List the job's parameter sets (power, speed, marks, where each came from).")
@json_option
def info(job_path: Path, show_sets: bool, as_json: bool) -> None:
    """Show the manifest of JOB (a job folder or .zip) as a readable summary.

    \b
    Examples:
      bioslicer job info out/channel_job
      bioslicer job info out/channel_job --sets
      bioslicer job info out/channel_job.zip --json
    """
    from ..jobs import job_summary, read_manifest

    m = read_manifest(job_path)
    if show_sets:
        sets = m.get("parameter_sets")
        if not isinstance(sets, list):
            raise BioslicerError(f"job {job_path} lists no parameter sets (written before bioslicer recorded "
                                 "them); slice it again")
        if as_json:
            echo_json(sets)
        else:
            from ..paramsets import sets_text

            click.echo(sets_text(sets), nl=False)
        return
    if as_json:
        echo_json(m)
        return
    click.echo(f"job {job_path}")
    click.echo(job_summary(m), nl=False)


@job.command("verify")
@_job_arg
@click.option("--printer", "-p", "printer", default=None,
              help="Validate against this profile (bundled name or .toml) instead of the job's embedded one.")
@click.option("--trust-embedded-printer", is_flag=True,
              help="Accept a printer profile embedded in the job that differs from the installed one of its name.")
@json_option
def verify(job_path: Path, printer: str | None, trust_embedded_printer: bool, as_json: bool) -> None:
    """Re-check every file hash of JOB and re-validate its program against a printer.

    Exits 1 with `error: ...` naming the first problem when anything is wrong.

    \b
    Examples:
      bioslicer job verify out/channel_job
      bioslicer job verify out/channel_job.zip --printer nanoscribe-gt2-63x --json
    """
    from ..jobs import verify_job

    rep = verify_job(job_path, printer=printer, trust_embedded_printer=trust_embedded_printer)
    if as_json:
        echo_json(rep.to_dict())
    else:
        for p in rep.problems:
            click.echo(f"  problem: {p}")
        if rep.ok:
            n = (rep.validation or {}).get("n_moves")
            moves = f", {n:,} moves" if isinstance(n, int) else ""
            click.echo(f"ok: {rep.n_files} files match their SHA-256; program valid on {rep.printer}{moves}")
    if not rep.ok:
        more = f" (+{len(rep.problems) - 1} more)" if len(rep.problems) > 1 else ""
        raise BioslicerError(f"job {job_path} fails verification: {rep.problems[0]}{more}")


@job.command("submit")
@_job_arg
@click.option("--to", "spool", required=True, type=click.Path(path_type=Path),
              help="The printer's spool (queue) folder, e.g. a mounted network share.")
@click.option("--trust-embedded-printer", is_flag=True,
              help="Accept a printer profile embedded in the job that differs from the installed one of its name.")
@json_option
def submit(job_path: Path, spool: Path, trust_embedded_printer: bool, as_json: bool) -> None:
    """Verify JOB and put it into a printer's spool folder atomically.

    The copy is written under a hidden temporary name, fsynced, re-checked and renamed; a job
    already there with the same content is left alone, a different one of that name is refused.

    \b
    Examples:
      bioslicer job submit out/channel_job --to /mnt/printer/spool
      bioslicer job submit out/channel_job.zip --to //printer-pc/queue --json
    """
    from ..jobs import submit_job

    res = submit_job(job_path, spool, trust_embedded_printer=trust_embedded_printer)
    if as_json:
        echo_json(res.to_dict())
    elif res.submitted:
        click.echo(f"submitted: {res.dest} ({res.n_files} files, {res.bytes:,} bytes)")
    else:
        click.echo(f"already in the spool, unchanged: {res.dest}")
