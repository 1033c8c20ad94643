"""Run a serial Numba kernel over chunks of its work on a thread pool (instead of ``prange``).

A ``parallel=True`` kernel costs numba a second optimisation of its whole body (and of every
callee inlined into it) for the parallel region, and that was half of the cold-start compile
time. A serial ``@njit(nogil=True, cache=True)`` kernel that takes its chunk range
``(i0, i1)`` compiles once, releases the GIL while it runs, and is called here from
``n_threads()`` threads at once, so run time keeps both cores busy as ``prange`` did.
Chunks write disjoint parts of preallocated outputs, so results do not depend on the thread
count or schedule.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    global _pool, _lock
    _pool = None   # a forked child has no threads of its parent's pool (nor their lock holder)
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def n_threads() -> int:
    """Threads kernels use: numba's setting (``NUMBA_NUM_THREADS``, default: the cores)."""
    return max(1, int(numba.config.NUMBA_NUM_THREADS))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="bioslicer-kernel")
        return _pool


def run_chunks(kernel, n: int, *args, parts: int | None = None) -> None:
    """Call ``kernel(i0, i1, *args)`` on contiguous ranges covering ``0..n``, in parallel.

    Parameters
    ----------
    kernel : numba dispatcher (``nogil=True``) whose first two arguments are the range.
    n : int
        Work items (chunks, runs, tasks, ...).
    *args
        The kernel's other arguments.
    parts : int, optional
        Ranges to split ``0..n`` into (at most ``n``); default 4 per thread, so uneven items
        even out.
    """
    n = int(n)
    if n <= 0:
        return
    t = min(n_threads(), numba.get_num_threads())     # ``numba.set_num_threads`` of this thread caps it
    parts = min(n, parts if parts is not None else 4 * t)
    if t == 1 or parts <= 1:
        kernel(0, n, *args)
        return
    bounds = [i * n // parts for i in range(parts + 1)]
    pool = _executor()
    futures = [pool.submit(kernel, bounds[i], bounds[i + 1], *args) for i in range(parts) if bounds[i + 1] > bounds[i]]
    for f in futures:
        f.result()


# ----------------------------------------------------------------------------- warm-up gate
# A first run with an empty Numba cache may start a helper process that compiles the later
# stages' kernels while this process slices (:mod:`bioslicer.warmup`). The helper prints the name
# of every stage it has finished (``WARMUP_STAGES``, in that order); the kernels of a stage call
# :func:`wait_for_warmup` with its name first, so this process never compiles a function the
# helper may still be compiling: it waits for that stage, then loads the helper's compiles from
# the cache.
WARMUP_STAGES = ("stitch", "write", "estimate", "read")
_warmup = {"proc": None, "done": set(), "wait_s": {}, "reading": False}
# guards _warmup; one waiting thread at a time reads the helper's pipe *outside* it and notifies
# the others after each line, so a thread waiting for a late stage (the stream check's "read")
# never holds up a thread whose stage is already done
_warmup_lock = threading.Condition()


def set_warmup(proc) -> None:
    """Register the running warm-up helper (a ``subprocess.Popen`` with ``stdout`` an unbuffered
    pipe, ``bufsize=0``), or None."""
    with _warmup_lock:
        _warmup["proc"] = proc
        _warmup["done"] = set()
        _warmup["reading"] = False
        _warmup_lock.notify_all()


def wait_for_warmup(stage: str, timeout_s: float = 600.0) -> None:
    """Wait until the warm-up helper, if one runs, has finished ``stage`` (or ended). No cost otherwise.

    Threads wait for their own stage only: while one of them reads the helper's next report,
    the others wait on the condition and are woken by every report. A helper silent for
    ``timeout_s`` is stopped (then this process compiles what it needs)."""
    if _warmup["proc"] is None or stage not in WARMUP_STAGES:
        return
    import select
    import time

    with _warmup_lock:
        if _warmup["proc"] is None or stage in _warmup["done"]:
            return
        t = time.perf_counter()
        while True:
            proc = _warmup["proc"]
            if proc is None or stage in _warmup["done"]:
                break
            if _warmup["reading"]:          # another thread reads the pipe: it notifies per line
                _warmup_lock.wait()
                continue
            _warmup["reading"] = True
            line = b""
            _warmup_lock.release()
            try:
                if os.name == "posix" and not select.select([proc.stdout], [], [], timeout_s)[0]:
                    proc.kill()
                else:
                    line = proc.stdout.readline()
            finally:
                _warmup_lock.acquire()
                _warmup["reading"] = False
                _warmup_lock.notify_all()
            if _warmup["proc"] is not proc:     # set_warmup replaced it meanwhile
                continue
            if not line:       # the helper ended (done, or failed: its missing compiles happen here)
                proc.wait()
                _warmup["proc"] = None
                break
            _warmup["done"].add(line.decode(errors="replace").strip())
        _warmup["wait_s"][stage] = _warmup["wait_s"].get(stage, 0.0) + time.perf_counter() - t


def warmup_wait_s() -> dict:
    """Seconds this process has waited for the warm-up helper, per stage."""
    return dict(_warmup["wait_s"])
