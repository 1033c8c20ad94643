"""Cold start pieces: the shared stable argsort, the kernel thread pool, the warm-up helper and its gate."""

import subprocess
import sys

import numpy as np
import pytest

from bioslicer.kernel import pool
from bioslicer.kernel.sorting import argsort_stable


@pytest.mark.parametrize("n", [0, 1, 2, 15, 16, 17, 33, 100, 1000])
def test_argsort_stable_matches_numpy_stable(n):
    rng = np.random.default_rng(n)
    keys = rng.integers(0, max(1, n // 3), n).astype(np.float64)   # many ties
    keys[::7] = -keys[::7] - 0.5
    assert np.array_equal(argsort_stable(keys), np.argsort(keys, kind="stable"))


def test_argsort_stable_sorted_and_reversed_input():
    a = np.arange(200, dtype=np.float64)
    assert np.array_equal(argsort_stable(a), np.arange(200))
    assert np.array_equal(argsort_stable(a[::-1].copy()), np.arange(199, -1, -1))


def _mark_ranges(lo, hi, seen):
    seen.append((lo, hi))


@pytest.mark.parametrize("n,parts", [(1, None), (7, None), (100, None), (100, 3), (5, 50), (0, None)])
def test_run_chunks_covers_every_item_once(n, parts):
    seen = []
    pool.run_chunks(_mark_ranges, n, seen, parts=parts)
    covered = np.zeros(n, int)
    for lo, hi in seen:
        assert 0 <= lo < hi <= n
        covered[lo:hi] += 1
    assert np.all(covered == 1)


def test_run_chunks_runs_in_the_caller_when_its_numba_threads_are_one():
    """``plate.kernel_threads(1)`` (small array blocks) caps the pool: one call, in this thread."""
    import threading

    from bioslicer.plate import kernel_threads

    seen = []
    with kernel_threads(1):
        pool.run_chunks(lambda lo, hi: seen.append((lo, hi, threading.get_ident())), 100)
    assert seen == [(0, 100, threading.get_ident())]
    if pool.n_threads() > 1:                       # and without the cap, the pool splits it
        seen.clear()
        pool.run_chunks(lambda lo, hi: seen.append((lo, hi, threading.get_ident())), 100)
        assert len(seen) > 1


def test_run_chunks_raises_the_kernel_error():
    def bad(lo, hi):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        pool.run_chunks(bad, 10)


def test_wait_for_warmup_follows_the_helper_stages():
    code = "import sys; print('stitch'); print('write'); sys.stdout.flush()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, bufsize=0)
    pool.set_warmup(proc)
    try:
        pool.wait_for_warmup("write")
        assert pool._warmup["done"] >= {"stitch", "write"}
        pool.wait_for_warmup("order")       # not a helper stage: no wait
        pool.wait_for_warmup("read")        # never reported: returns when the helper ends
        assert pool._warmup["proc"] is None
        assert proc.returncode == 0
        pool.wait_for_warmup("estimate")    # no helper: nothing to wait for
    finally:
        pool.set_warmup(None)


def test_a_thread_waiting_for_a_late_stage_does_not_hold_up_one_whose_stage_is_done():
    """The stream check thread waits for "read" (the helper's last stage) from the first block on;
    the block loop must still get past "stitch" as soon as the helper reports it."""
    import threading
    import time

    code = "import sys; print('stitch'); sys.stdout.flush(); sys.stdin.readline(); print('read'); sys.stdout.flush()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    pool.set_warmup(proc)
    late = threading.Thread(target=pool.wait_for_warmup, args=("read",), daemon=True)
    try:
        late.start()
        deadline = time.monotonic() + 120
        while "stitch" not in pool._warmup["done"] and time.monotonic() < deadline:
            time.sleep(0.01)         # the late waiter has read "stitch" and now blocks for "read"
        assert "stitch" in pool._warmup["done"]
        early = threading.Thread(target=pool.wait_for_warmup, args=("stitch",), daemon=True)
        early.start()
        early.join(timeout=60)
        assert not early.is_alive(), "a thread waiting for 'read' held up the wait for 'stitch'"
        assert late.is_alive()       # "read" is not reported yet
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        late.join(timeout=120)
        assert not late.is_alive() and "read" in pool._warmup["done"]
    finally:
        proc.stdin.close()
        proc.wait(timeout=120)
        pool.set_warmup(None)


def test_warm_reports_every_stage_in_order():
    from bioslicer.warmup import warm

    stages = []
    warm("nanoscribe-gt2-25x", stages.append)
    assert tuple(stages) == pool.WARMUP_STAGES


def test_tiny_toolpath_spans_several_blocks():
    from bioslicer.printers import load_printer
    from bioslicer.stitching import grid_for_toolpath, stitch
    from bioslicer.warmup import tiny_toolpath

    printer = load_printer("nanoscribe-gt2-25x")
    size = float(grid_for_toolpath(tiny_toolpath(100.0), printer).block_size_um)
    st = stitch(tiny_toolpath(size), printer)
    assert len(np.unique(st.mark_block)) == 4


def test_start_background_does_nothing_when_disabled(monkeypatch):
    from bioslicer import warmup

    monkeypatch.setenv("BIOSLICER_WARMUP", "0")
    assert warmup.start_background("nanoscribe-gt2-25x") is False
    assert pool._warmup["proc"] is None
