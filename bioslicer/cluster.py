"""Block-parallel runs on Dask distributed: one task per unit of stitching blocks.

The default run is local (:func:`run_blocks_local`: the units of blocks one after another,
Numba's own threads inside each). Past one machine, :func:`run_blocks_dask` sends every unit
(``blockrun.plan_units``: up to two neighbouring blocks of a row of one tier, planned once) to a Dask cluster as a
task: the mesh is scattered to the workers once, each task gets the small
:class:`~bioslicer.blockrun.BlockPlan` (recipe, printer, grid, program writer) and its block
indices, writes its program file(s) into the job's temporary folder (temporary name, then
rename) and hands back statistics and file hashes. The client
assembles the rest in block order, so the job is byte-identical to the local run whatever the
number of workers or the order in which blocks finish. A unit task stops before its next block
when the job folder is gone (another task failed and the job was given up).

Dask (``pip install 'bioslicer[cluster]'``) is imported only here and only when asked for.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import sys
import time
import warnings
from pathlib import Path

from .errors import BioslicerError
from .progress import Progress, silent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: seconds to wait for a scheduler before giving up
CONNECT_TIMEOUT_S = 10.0
#: seconds to wait, after a failure, for blocks still running on workers to end
CANCEL_WAIT_S = 300.0
#: times a block whose task was lost (not failed) with a dying worker is submitted again
LOST_RETRIES = 3
JOBQUEUE_KINDS = ("slurm", "pbs", "sge", "lsf", "htcondor", "moab", "oar")


def run_blocks_local(solid, plan, block_ids, progress: Progress = silent, on_result=None) -> dict:
    """Run every block here, unit by unit (:func:`~bioslicer.blockrun.plan_units`: part of a row of
    blocks of one tier, planned once), as a two-stage pipeline: this thread plans, stitches and
    orders block k+1 (``blockrun.unit_marks``) while a second thread writes and estimates block
    k (``blockrun.finish_block``). Both stages spend their time in Numba kernels and numpy calls
    that release the GIL, so the serial parts of one overlap the other; the blocks are still
    finished one after another in execution order, so the files and results are the same as a
    one-thread run. At most two blocks' marks are held besides the unit's plan.
    ``on_result(BlockResult)`` is called (in this thread, in block order) as each block is done.

    Returns
    -------
    dict
        block index -> BlockResult
    """
    from concurrent.futures import ThreadPoolExecutor

    import numba

    from .blockrun import finish_block, plan_units, unit_marks

    out = {}
    total = len(block_ids)
    progress(0, total, "blocks")
    threads = numba.get_num_threads()      # thread-local: the finishing thread runs kernels as this one

    def finish(bm):
        if numba.get_num_threads() != threads:
            numba.set_num_threads(threads)
        return finish_block(plan, bm)

    def collect(fut) -> None:
        r = fut.result()
        out[r.block] = r
        if on_result is not None:
            on_result(r)
        progress(len(out), total, "blocks")

    ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bioslicer-finish")
    pending = None
    try:
        for unit in plan_units(plan.grid_obj(), block_ids):
            for bm in unit_marks(solid, plan, unit):
                fut = ex.submit(finish, bm)
                del bm
                if pending is not None:
                    collect(pending)
                pending = fut
        if pending is not None:
            fut, pending = pending, None
            collect(fut)
    finally:
        # on an error: let the block being written end (its files sit in the job's staging
        # folder, which the caller removes), drop the ones not started
        ex.shutdown(wait=True, cancel_futures=True)
    return out


def _dask():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise BioslicerError("cluster runs need Dask: pip install 'bioslicer[cluster]' "
                             "(dask[distributed] and dask-jobqueue)") from None
    return distributed


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, cluster_config=None,
                timeout_s: float = CONNECT_TIMEOUT_S):
    """A ``distributed.Client`` for the options the CLI and the service accept, closed on exit.

    Parameters
    ----------
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes (one thread each; Numba in each
        worker gets an equal share of the cores).
    scheduler : str, optional
        Address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``.
    cluster_config : path, optional
        TOML or YAML file describing a dask-jobqueue cluster (``kind = "slurm"``, ``jobs = 8``,
        and the keyword arguments of the cluster class, e.g. ``cores``, ``memory``, ``queue``).
    timeout_s : float
        How long to wait for the scheduler (and, for ``scheduler``, to connect).
    """
    distributed = _dask()
    given = [x is not None for x in (workers, scheduler, cluster_config)]
    if sum(given) != 1:
        raise BioslicerError("give exactly one of --workers, --scheduler, --cluster-config")
    cluster = None
    client = None
    try:
        if workers is not None:
            if workers < 1:
                raise BioslicerError(f"--workers must be at least 1, got {workers}")
            # worker logs off below CRITICAL: a failing block is reported once, in one line, by
            # run_blocks_dask (the workers' "Compute Failed" tracebacks would come first otherwise)
            cores = os.cpu_count() or 1
            threads = max(1, cores // workers)
            old = os.environ.get("NUMBA_NUM_THREADS")
            os.environ["NUMBA_NUM_THREADS"] = str(threads)   # inherited by the spawned workers
            try:
                with warnings.catch_warnings():   # "Port 8787 is already in use": its metrics page moves, fine
                    warnings.filterwarnings("ignore", message="Port .* is already in use")
                    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=None, silence_logs=logging.CRITICAL)
            finally:
                if old is None:
                    os.environ.pop("NUMBA_NUM_THREADS", None)
                else:
                    os.environ["NUMBA_NUM_THREADS"] = old
            client = distributed.Client(cluster, timeout=timeout_s)
        elif scheduler is not None:
            client = connect_scheduler(scheduler, timeout_s)
        else:
            cluster = jobqueue_cluster(cluster_config)
            client = distributed.Client(cluster, timeout=timeout_s)
        yield client
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


def connect_scheduler(address: str, timeout_s: float = CONNECT_TIMEOUT_S):
    """A ``distributed.Client`` connected to a running scheduler (for long-lived callers such as
    the job service's workers); an unreachable scheduler is a BioslicerError."""
    distributed = _dask()
    try:
        return distributed.Client(address, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BioslicerError(
            f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s ({type(exc).__name__}); "
            "start one with `dask scheduler` or check the address") from None


def check_scheduler(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect once and disconnect: fail early (one line) when the scheduler is unreachable."""
    connect_scheduler(address, timeout_s).close()


def load_cluster_config(path) -> dict:
    """Read a dask-jobqueue cluster description (TOML, or YAML when PyYAML is installed)."""
    path = Path(path)
    if not path.is_file():
        raise BioslicerError(f"cluster config {path} not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BioslicerError(f"cluster config {path.name} is not valid TOML: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise BioslicerError(f"cluster config {path.name}: YAML needs PyYAML (pip install pyyaml), "
                                 "or write it as TOML") from None
        doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise BioslicerError(f"cluster config {path.name} must be a table of settings")
    return doc


def jobqueue_cluster(path):
    """Start the dask-jobqueue cluster a config file describes (``kind``, ``jobs``, class kwargs)."""
    cfg = dict(load_cluster_config(path))
    kind = str(cfg.pop("kind", "")).lower()
    jobs = cfg.pop("jobs", 1)
    if kind not in JOBQUEUE_KINDS:
        raise BioslicerError(f"cluster config {Path(path).name}: key 'kind' must be one of {', '.join(JOBQUEUE_KINDS)}")
    if not isinstance(jobs, int) or jobs < 1:
        raise BioslicerError(f"cluster config {Path(path).name}: key 'jobs' must be a whole number >= 1")
    try:
        import dask_jobqueue
    except ImportError:
        raise BioslicerError("--cluster-config needs dask-jobqueue: pip install 'bioslicer[cluster]'") from None
    cls = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
           "htcondor": "HTCondorCluster", "moab": "MoabCluster", "oar": "OARCluster"}[kind]
    try:
        cluster = getattr(dask_jobqueue, cls)(**cfg)
    except TypeError as exc:
        raise BioslicerError(f"cluster config {Path(path).name}: {exc}") from None
    cluster.scale(jobs=jobs)
    return cluster


def run_blocks_dask(client, solid, plan, block_ids, progress: Progress = silent, on_result=None) -> dict:
    """Run every unit of blocks (:func:`~bioslicer.blockrun.plan_units`) as a task on ``client``'s
    cluster (``blockrun.run_unit``: the same blocks, bytes and results as a local run).
    ``on_result(BlockResult)`` is called here as each block's result arrives (in any order).

    A worker that dies mid-block has its block re-run by Dask (tasks are pure functions of their
    inputs and write through temporary names, so a re-run leaves no torn file). An exception in
    a block cancels the other tasks and raises one line naming the block and the cause.

    Returns
    -------
    dict
        block index -> BlockResult
    """
    distributed = _dask()
    from .blockrun import plan_units

    total = len(block_ids)
    progress(0, total, "blocks")
    if total == 0:
        return {}
    token = secrets.token_hex(6)
    solid_f = client.scatter(solid, broadcast=True, hash=False)
    futures = {}
    attempts = {}

    def submit(unit):
        u = unit[0]
        attempts[u] = attempts.get(u, 0) + 1
        f = client.submit(_unit_task, solid_f, plan, unit, key=f"bioslicer-unit-{u:05d}-{token}-{attempts[u]}",
                          pure=False)
        futures[f] = unit
        return f

    out = {}
    try:
        ac = distributed.as_completed([submit(u) for u in plan_units(plan.grid_obj(), block_ids)])
        for f in ac:
            unit = futures[f]
            if f.status != "finished":
                exc = f.exception() if f.status == "error" else None
                if exc is None and attempts[unit[0]] < LOST_RETRIES:
                    ac.add(submit(unit))   # lost with a dying worker (not an error of the unit): run it again
                    continue
                if isinstance(exc, BlockFailed):
                    raise BioslicerError(f"block {exc.args[0]} failed: {exc.args[1]}")
                raise BioslicerError(f"block {unit[0]} failed: {_one_line(exc) if exc is not None else f.status}")
            for r in f.result():
                out[r.block] = r
                if on_result is not None:
                    on_result(r)
            progress(len(out), total, "blocks")
    except BaseException:
        client.cancel(list(futures), force=True)
        _wait_cancelled(client, token)
        raise
    finally:
        with contextlib.suppress(Exception):
            client.cancel([solid_f], force=True)
    return out


def _tasks_running(token: str, dask_worker=None) -> list[str]:
    """Keys of this run's tasks a worker is still executing (a cancelled task runs to its end)."""
    return [str(k) for k, ts in dask_worker.state.tasks.items()
            if token in str(k) and ts.state in ("executing", "long-running", "cancelled", "resumed")]


def _wait_cancelled(client, token: str, timeout_s: float = CANCEL_WAIT_S) -> None:
    """Wait until no worker runs a block of this run any more, so the caller may remove the
    job's temporary folder without a block writing into it afterwards (Dask cannot interrupt
    a running task: cancelling only forgets its result)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            busy = client.run(_tasks_running, token)
        except Exception:  # workers gone or unreachable: nothing more to wait for here
            return
        if not any(busy.values()):
            return
        time.sleep(0.1)


class BlockFailed(Exception):
    """``BlockFailed(block, one_line)``: a block of a unit task failed (pickles to the client)."""


def _unit_task(source, plan, unit) -> list:
    """``blockrun.run_unit`` on a worker; an error names the block it happened in (BlockFailed)."""
    from .blockrun import finish_block, unit_marks

    out = []
    try:
        for bm in unit_marks(source, plan, unit):
            if plan.writer is not None and not plan.writer.out_dir.is_dir():
                # the job was given up (another task failed) and its folder removed: write nothing more
                raise BioslicerError(f"the job folder {plan.writer.out_dir} is gone; the job was stopped")
            out.append(finish_block(plan, bm))
    except Exception as exc:
        raise BlockFailed(unit[len(out)], _one_line(exc)) from None
    return out


def _one_line(exc) -> str:
    from .errors import environment_error

    env = environment_error(exc)           # disk full, file size limit, out of memory on a worker
    if env is not None:
        return env.replace("; nothing was written", "")
    text = str(exc).strip().splitlines()
    what = text[0] if text else ""
    name = type(exc).__name__
    if name == "KilledWorker":
        return f"its worker died repeatedly ({what}); check the workers' memory limit and logs"
    if name == "BioslicerError":
        return what
    return f"{name}: {what}" if what else name


def projected_wall_s(per_block_s: float, n_blocks: int, n_workers: int) -> float:
    """Wall time of ``n_blocks`` equal blocks on ``n_workers`` workers (whole waves), s."""
    return per_block_s * math.ceil(n_blocks / max(1, n_workers))
