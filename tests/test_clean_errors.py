"""Errors of the machine (disk, file size limit, memory, signals) end in one line, nothing left (issue 22)."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from bioslicer import pipeline, samples
from bioslicer.cli import main
from bioslicer.errors import Terminated, environment_error, first_line

ROOT = Path(__file__).resolve().parents[1]
CAL = ROOT / "meshes" / "calibration.stl"


def test_first_line_never_fails():
    assert first_line(MemoryError()) == "MemoryError"
    assert first_line(ValueError("\n\n  two\nthree")) == "two"


def test_environment_error_looks_through_wrappers():
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as ki:   # what Numba's dispatcher does when a signal lands inside it
            raise SystemError("CPUDispatcher(<function x>) returned a result with an exception set") from ki
    except SystemError as exc:
        assert environment_error(exc) == "interrupted; nothing was written"
    assert environment_error(Terminated()).startswith("terminated (SIGTERM)")
    assert environment_error(MemoryError()).startswith("out of memory; use a coarser recipe")
    assert "(Unable to allocate 27 GiB)" in environment_error(MemoryError("Unable to allocate 27 GiB"))
    assert environment_error(OSError(errno.ENOSPC, "No space left on device", "/x/a.gwl")).startswith(
        "no space left on the device writing /x/a.gwl")
    assert environment_error(OSError(errno.EFBIG, "File too large")).startswith("file too large")
    assert environment_error(ValueError("a bug")) is None


@pytest.mark.parametrize("exc,text", [
    (MemoryError(), "error: out of memory; use a coarser recipe"),
    (OSError(errno.ENOSPC, "No space left on device"), "error: no space left on the device"),
    (SystemError("CPUDispatcher returned a result with an exception set"), "error: interrupted"),
])
def test_cli_prints_one_line_for_machine_errors(monkeypatch, tmp_path, capsys, exc, text):
    def failing(*a, **k):
        if isinstance(exc, SystemError):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as ki:
                raise exc from ki
        raise exc

    monkeypatch.setattr(pipeline, "slice_to_job", failing)
    assert main(["slice", str(CAL), "-o", str(tmp_path / "job")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(text) and err.count("\n") == 1


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    def failing(*a, **k):
        raise ValueError("a bug")

    monkeypatch.setattr(pipeline, "slice_to_job", failing)
    with pytest.raises(ValueError):
        main(["slice", str(CAL), "-o", str(tmp_path / "job")])


def _run(args, tmp_path, limit_bytes=None):
    def pre():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "bioslicer", *args], capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), preexec_fn=pre, timeout=600)


@pytest.mark.parametrize("limit", [20_000, 400_000, 1_500_000])
def test_file_size_limit_is_one_line_and_nothing_left(tmp_path, limit):
    r = _run(["slice", str(CAL), "-o", "job", "--no-preview", "--set", "hatch_um=0.2"], tmp_path, limit)
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:") or "Traceback" in ln]
    assert lines == [lines[0]] and lines[0].startswith("error: file too large")
    assert os.listdir(tmp_path) == []


def test_non_finite_coordinates_one_line(tmp_path):
    m = trimesh.creation.box(extents=(10, 10, 10))
    v = m.vertices.copy()
    v[0] = [np.nan, 1.0, np.inf]
    with np.errstate(invalid="ignore"):
        (tmp_path / "nan.stl").write_bytes(samples.to_stl_bytes(trimesh.Trimesh(v, m.faces, process=False)))
    r = _run(["slice", "nan.stl", "-o", "job"], tmp_path)
    assert r.returncode == 1
    assert r.stderr == "error: nan.stl has vertices that are not finite numbers; export the mesh again\n"
    assert sorted(os.listdir(tmp_path)) == ["nan.stl"]


def test_estimate_of_a_file_it_cannot_read_says_what_it_takes(capsys, tmp_path):
    # a mesh is estimated (issue 19: estimate before slicing); anything else gets one clean line
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["estimate", str(tmp_path / "notes.txt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read notes.txt: unknown mesh format") and "pickle" not in err
    (tmp_path / "fake.npz").write_text("hello")
    assert main(["estimate", str(tmp_path / "fake.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: fake.npz is not a saved toolpath (.npz)") and "pickle" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_removes_the_partial_job(tmp_path, sig):
    """The signal is sent once the job's temporary folder exists (an event, not a delay). The job
    is big enough (about 10 s) to be interrupted, but on a busy machine the signal may still come
    after the job is done; then the job must be whole."""
    p = subprocess.Popen([sys.executable, "-m", "bioslicer", "slice", str(ROOT / "meshes" / "channel_block.stl"),
                          "-o", "job", "--no-preview", "--set", "hatch_um=0.25", "--set", "slice_um=1"],
                         cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        import time

        deadline = time.monotonic() + 300
        while not any(".partial-" in n for n in os.listdir(tmp_path)):
            assert p.poll() is None and time.monotonic() < deadline, "the job folder never appeared"
            time.sleep(0.01)
        p.send_signal(sig)
        err = p.communicate(timeout=300)[1].decode()
    finally:
        if p.poll() is None:
            p.kill()
    errors = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("error:") or "Traceback" in ln]
    if p.returncode in (0, -sig):
        # finished before the signal was handled (0), or the signal came while the interpreter was
        # exiting after the job, when Python has given the signal its default action back (-sig):
        # a complete job, nothing partial
        assert os.listdir(tmp_path) == ["job"] and not errors, (p.returncode, os.listdir(tmp_path), err[-3000:])
        assert (tmp_path / "job" / "manifest.json").is_file()
        return
    assert p.returncode == 1 and len(errors) == 1, (p.returncode, os.listdir(tmp_path), err[-3000:])
    assert errors[0].startswith("error: interrupted" if sig == signal.SIGINT else "error: terminated (SIGTERM)")
    assert os.listdir(tmp_path) == []


def test_an_interrupt_after_the_job_is_published_keeps_it_and_says_so(tmp_path, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM) while the summary prints: the job folder is complete, so the exit is 0
    and the line says where it is, never "nothing was written"."""
    from bioslicer.cli import slice_cmd

    def interrupted(res, as_json):
        raise KeyboardInterrupt

    monkeypatch.setattr(slice_cmd, "_summary", interrupted)
    rc = main(["slice", str(ROOT / "meshes" / "calibration.stl"), "-o", str(tmp_path / "job"), "--no-preview",
               "--set", "hatch_um=2", "--set", "slice_um=4"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "nothing was written" not in err and f"job written: {tmp_path / 'job'}" in err
    assert (tmp_path / "job" / "manifest.json").is_file()
