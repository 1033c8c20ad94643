"""Compile the later stages' Numba kernels in a helper process on a first run (empty cache).

Numba compiles on one thread, so a first ``bioslicer slice`` on a fresh machine spent most of
its time compiling, one kernel after another, on one core. When the cache lacks the kernels of
the later stages, :func:`start_background` starts ``python -m bioslicer.warmup PRINTER``: it
stitches, writes, estimates and reads back a tiny synthetic toolpath for that printer,
which compiles (and caches) those kernels while this process loads the mesh and plans its first
block. The helper reports each stage it has finished (stitch, write, estimate, read; the ordering
kernels are compiled by the slicer itself, which balances the two processes); the
kernels of a stage call :func:`bioslicer.kernel.pool.wait_for_warmup` with its name before they
run, so this process waits for that stage of the helper (often done by then) and loads its
compiles from the cache: the two processes never compile the same function at the same time
(functions both use, as ``argsort_stable``, have one signature: the same cache entry).

With a warm cache nothing is started (one file test per sentinel kernel). Set
``BIOSLICER_WARMUP=0`` to never start the helper; ``BIOSLICER_WARMUP_LOG=FILE`` makes the helper
write its wall time, compile time and stage times there (``benchmarks/cold_start.py``).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .kernel import pool

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])


def _sentinels() -> list:
    """Kernels of a job's later stages, last stage last (cache present for all: nothing to do):
    the helper's, and the ordering kernels the slicer compiles itself on a first run."""
    from .kernel import measure, order, stitch
    from .programs import gwl, tokenize

    return [stitch._stitch_tasks, order._order_run_range, measure._run_jump_lengths_range, gwl._render_chunks,
            tokenize.tokenize_pieces, gwl._read]


def cache_is_cold() -> bool:
    """True when a sentinel kernel has no cache index yet (a first run, or a new cache folder)."""
    try:
        for d in _sentinels():
            impl = getattr(d, "_cache", None)
            path = getattr(getattr(impl, "_cache_file", None), "_index_path", None)
            if path is None:     # caching off or another numba layout: do not guess
                return False
            if not os.path.exists(path):
                return True
    except Exception:
        return False
    return False


def start_background(printer) -> bool:
    """Start the warm-up helper for ``printer`` (a bundled name or a profile path) when the cache is
    cold; returns whether it was started. Nothing is printed; a failing helper only costs the
    compiles it did not do."""
    if os.environ.get("BIOSLICER_WARMUP", "1") == "0" or pool._warmup["proc"] is not None:
        return False
    if not isinstance(printer, (str, os.PathLike)) or not cache_is_cold():
        return False
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_PARENT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["NUMBA_NUM_THREADS"] = "1"    # one core for the helper, the other for the slicer
    env["BIOSLICER_WARMUP"] = "0"
    try:
        # unbuffered: a stage line read never drags the next one into a buffer select() cannot see
        proc = subprocess.Popen([sys.executable, "-m", "bioslicer.warmup", os.fspath(printer)], env=env, bufsize=0,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return False
    pool.set_warmup(proc)
    atexit.register(_stop, proc)
    return True


def _stop(proc) -> None:
    """At exit: a helper still running (the slice failed early) is stopped (cache writes are atomic)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def tiny_toolpath(block_um: float):
    """An unstitched toolpath over 2 x 2 blocks of side ``block_um``: hatch lines and a closed
    contour on each of two layers (every kind of mark the ordering treats differently)."""
    from .toolpath import Kind, Toolpath

    span = 1.5 * block_um
    xs, ys, zs, starts, kinds, layers = [], [], [], [0], [], []

    def mark(x, y, z, kind, layer):
        xs.extend(x)
        ys.extend(y)
        zs.extend([z] * len(x))
        starts.append(starts[-1] + len(x))
        kinds.append(int(kind))
        layers.append(layer)

    for layer, z in enumerate((1.0, 1.5)):
        t = np.linspace(0.0, 2 * np.pi, 9)
        mark(list(0.5 * span + 0.4 * span * np.cos(t)), list(0.5 * span + 0.4 * span * np.sin(t)), z, Kind.CONTOUR,
             layer)
        for j, y in enumerate(np.linspace(0.2 * span, 0.8 * span, 5)):
            x0, x1 = (0.15 * span, 0.85 * span) if j % 2 == 0 else (0.85 * span, 0.15 * span)
            mark([x0, x1], [y, y], z, Kind.HATCH, layer)
        mark([0.3 * span, 0.5 * span, 0.7 * span], [0.5 * span, 0.55 * span, 0.5 * span], z, Kind.SCAFFOLD, layer)
    n = len(xs)
    return Toolpath(x_um=np.array(xs), y_um=np.array(ys), z_um=np.array(zs), power_mw=np.full(n, 5.0),
                    mark_start=np.array(starts), mark_kind=np.array(kinds), mark_layer=np.array(layers),
                    mark_speed_um_s=np.full(len(kinds), 50_000.0), layer_z_um=np.array([1.0, 1.5]))


def warm(printer_name: str, done=print) -> None:
    """Stitch, write, estimate and read back a tiny toolpath for the printer (compiles their
    kernels); ``done(stage)`` after each of :data:`~bioslicer.kernel.pool.WARMUP_STAGES`. The
    ordering kernels are left to the slicer process, which balances the two processes' compiles
    (about 12 s and 22 s with ordering moved, 12 s and 28 s with it here)."""
    from .blockrun import block_summary as finish_summary
    from .blockrun import preview_marks
    from .estimate import estimate_block
    from .preview.program import build_program_index
    from .printers import load_printer
    from .programs import ProgramWriter, tokenize, validate_program
    from .programs.dialects import block_runs
    from .stitching import grid_for_toolpath, stitch

    printer = load_printer(printer_name)
    probe = tiny_toolpath(100.0)
    tp = tiny_toolpath(float(grid_for_toolpath(probe, printer).block_size_um))
    st = stitch(tp, printer)
    done("stitch")
    # not ordered: the slicer compiles the ordering kernels itself (it would otherwise sit idle
    # waiting for this process, whose stages take longer than its own compiles)
    blocks = [st.select_marks(np.flatnonzero(st.mark_block == b)) for b in np.unique(st.mark_block)]
    with tempfile.TemporaryDirectory(prefix="bioslicer_warmup_") as d:
        w = ProgramWriter(printer, st.blocks, d, name="warmup")
        parts = [w.write_block(int(one.mark_block[0]), one) for one in blocks]
        done("write")
        for one in blocks:
            estimate_block(one, printer)
            finish_summary(one)
            preview_marks(one, 2, 2)
        done("estimate")
        files = w.finish(parts, validate=False)
        validate_program(files.main, printer)
        build_program_index(files.main, printer)    # the index's range and line-offset kernels
        # a chunk above tokenize.SMALL_BYTES: the parallel tokenizer, as for a real program
        for _ in tokenize.ChunkReader(b"0.5 1.5 2.5\n" * (tokenize.SMALL_BYTES // 8), tokenize.Keywords(["Write"]),
                                      "%"):
            pass
        done("read")


def _report(stage: str) -> None:
    sys.stdout.write(stage + "\n")
    sys.stdout.flush()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m bioslicer.warmup PRINTER", file=sys.stderr)
        return 2
    log = os.environ.get("BIOSLICER_WARMUP_LOG")
    if not log:
        warm(argv[0], _report)
        return 0
    import json
    import time

    from numba.core import event

    stages, compiles, depth = {}, [0, 0.0], [0, 0.0]

    class _Compiles(event.Listener):    # top-level compile time (callees compile inside it)
        def on_start(self, ev):
            if depth[0] == 0:
                depth[1] = time.perf_counter()
            depth[0] += 1

        def on_end(self, ev):
            depth[0] -= 1
            compiles[0] += 1
            if depth[0] == 0:
                compiles[1] += time.perf_counter() - depth[1]

    t0 = time.perf_counter()

    def report(stage):
        stages[stage] = round(time.perf_counter() - t0, 3)
        _report(stage)

    with event.install_listener("numba:compile", _Compiles()):
        warm(argv[0], report)
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    Path(log).write_text(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": ru.ru_utime + ru.ru_stime,
                                     "compile_s": compiles[1], "compiles": compiles[0], "stages_s": stages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
