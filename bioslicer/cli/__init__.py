"""The ``bioslicer`` command line: thin click commands over the Python API.

Conventions for every command: exit 0 on success; a user error prints one line
``error: <what is wrong and how to fix it>`` on stderr and exits 1 (a traceback only with
``bioslicer --debug``); commands that report something take ``--json``.

Each command group lives in its own module of this package and is registered below.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
import traceback
import warnings

import click

from .. import __version__
from ..errors import BioslicerError, Terminated, environment_error, first_line

# module name -> attribute holding the click command/group
_COMMANDS = [
    ("inspect_cmd", "inspect_"),
    ("slice_cmd", "slice_"),
    ("array_cmd", "array"),
    ("printers_cmd", "printers"),
    ("programs_cmd", "validate"),
    ("programs_cmd", "export"),
    ("estimate_cmd", "estimate"),
    ("preview_cmd", "preview"),
    ("job_cmd", "job"),
    ("mesh_cmd", "mesh"),
    ("recipe_cmd", "recipe"),
    ("serve_cmd", "serve"),
]


class _State:
    debug = False


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="bioslicer")
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
def cli(debug: bool) -> None:
    """Slice vascular tissue meshes into two-photon printer programs.

    \b
    Examples:
      bioslicer inspect meshes/vessel_tree.stl
      bioslicer slice meshes/channel_block.stl --printer nanoscribe-gt2-25x -o job/
      bioslicer printers
      bioslicer job verify job/

    Units inside: µm, s, mW. Run `bioslicer COMMAND --help` for each command.
    """
    _State.debug = debug


for _mod, _attr in _COMMANDS:
    try:
        _m = importlib.import_module(f".{_mod}", __name__)
    except ModuleNotFoundError as _exc:  # a command module not written yet
        if _exc.name and _exc.name.endswith(_mod):
            continue
        raise
    cli.add_command(getattr(_m, _attr))


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the CLI and turn user errors into one line and exit 1.

    Errors of the machine rather than the input (disk full, a file size limit, out of memory,
    Ctrl-C, SIGTERM) are one line too (:func:`~bioslicer.errors.environment_error`); SIGTERM is
    raised like Ctrl-C, so a half-written job folder is removed either way.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    with _sigterm_as_interrupt(), _quiet_numeric_warnings():
        try:
            # make_context + invoke rather than cli.main: click's main turns Ctrl-C into Abort after
            # printing an empty line; here it reaches the handlers below as it is
            with cli.make_context("bioslicer", args) as ctx:
                rv = cli.invoke(ctx)
            return int(rv) if isinstance(rv, int) else 0
        except click.exceptions.Exit as exc:
            return exc.exit_code
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            return 1
        except click.ClickException as exc:
            msg = exc.format_message().replace("\n", " ")
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see `{exc.ctx.command_path} --help`)"
            click.echo(f"error: {msg}{hint}", err=True)
            return 1
        except BioslicerError as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {first_line(exc)}", err=True)
            return 1
        except BaseException as exc:  # noqa: B036 - machine errors become one line, bugs keep their traceback
            if isinstance(exc, BrokenPipeError):   # stdout closed early (`| head`): nothing to say
                return 1
            msg = environment_error(exc)
            if msg is None or isinstance(exc, SystemExit):
                raise
            if debug:
                traceback.print_exc()
            click.echo(f"error: {msg}", err=True)
            return 1


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the block SIGTERM raises :class:`~bioslicer.errors.Terminated` (a KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _quiet_numeric_warnings():
    """numpy's RuntimeWarnings (overflow, invalid value) say nothing a user can act on: every
    bad number is refused by a check that prints its own line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def entry() -> None:  # pragma: no cover - console script
    sys.exit(main())
