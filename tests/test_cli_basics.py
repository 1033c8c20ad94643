"""The CLI as a user starts it: a real subprocess."""

import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "bioslicer", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    assert "printers" in r.stdout


def test_version():
    from bioslicer import __version__

    r = run("--version")
    assert r.returncode == 0 and __version__ in r.stdout


def test_unknown_printer_is_one_line_error():
    r = run("printers", "no-such-printer")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown printer 'no-such-printer'")
    assert "Traceback" not in r.stderr


def test_bad_option_is_one_line_error():
    r = run("printers", "--bogus")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("error: ")


@pytest.mark.parametrize("cmd", [["--help"], ["printers", "--help"]])
def test_help_has_examples(cmd):
    r = run(*cmd)
    assert r.returncode == 0
