"""Cold start: time a CLI command with an empty Numba cache and list every JIT compile it does.

Runs the command in this process (the README Quick start ``slice`` by default) with
``NUMBA_CACHE_DIR`` pointing at a fresh empty folder, and records numba's ``numba:compile``
events (fired only for real compiles, not for cache loads): which dispatcher, which argument
types, inclusive and exclusive seconds (a kernel that calls another ``@njit`` function compiles
the callee inside its own compile; exclusive time subtracts that). Functions compiled for more
than one signature (int32 vs int64, C vs A layout, readonly arrays, ...) are marked: each extra
signature is a full extra compile.

Run ``--cache-dir DIR`` twice to see the warm figure (second run: cache loads only). The sha256
of the job's program files (every ``.gwl``/``.nc``/``.pgm`` ... under the job folder, by
relative path) is recorded, so runs of two branches can be checked for identical programs.
When the run starts the warm-up helper (:mod:`bioslicer.warmup`, the later stages' kernels
compiled in a second process), its compiles are not in the table: the time this process waited
for it per stage and the helper's own figures (``BIOSLICER_WARMUP_LOG``) are printed instead.

Run:  .venv/bin/python benchmarks/cold_start.py [--json FILE] [--cache-dir DIR] [-- CLI ARGS ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_args(out_dir: str) -> list[str]:
    """The README Quick start slice command (output into ``out_dir``)."""
    return ["slice", str(ROOT / "meshes" / "vessel_tree.stl"), "--printer", "nanoscribe-gt2-25x", "-o", out_dir,
            "--overwrite"]


def _name(dispatcher) -> str:
    f = dispatcher.py_func
    return f"{f.__module__.replace('bioslicer.', '')}.{f.__qualname__}"


PROGRAM_SUFFIXES = (".gwl", ".nc", ".ngc", ".gcode", ".pgm", ".ab", ".txt.wave", ".csv")


def programs_sha256(job_dir: str | Path) -> tuple[int, str]:
    """(files, sha256) over the program files of a job folder: relative path and bytes of each, sorted."""
    job = Path(job_dir)
    h = hashlib.sha256()
    files = sorted(p for p in job.rglob("*") if p.is_file() and p.name.endswith(PROGRAM_SUFFIXES)
                   and p.name != "report.txt")
    for p in files:
        h.update(p.relative_to(job).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return len(files), h.hexdigest()


def run(cli_args: list[str]) -> dict:
    """Run ``bioslicer CLI_ARGS`` here and record the Numba compiles (NUMBA_CACHE_DIR must be set already)."""
    t_import = time.perf_counter()
    from numba.core import event

    sys.path.insert(0, str(ROOT))
    from bioslicer.cli import main

    import_s = time.perf_counter() - t_import
    stack, records = [], []

    class Compiles(event.Listener):
        def on_start(self, ev):
            stack.append([time.perf_counter(), 0.0])

        def on_end(self, ev):
            t0, inner = stack.pop()
            s = time.perf_counter() - t0
            if stack:
                stack[-1][1] += s
            d = ev.data
            records.append({"function": _name(d["dispatcher"]), "args": str(tuple(d["args"])), "incl_s": s,
                            "excl_s": s - inner})

    listener = Compiles()
    event.register("numba:compile", listener)
    t = time.perf_counter()
    rc = main(cli_args)
    wall = time.perf_counter() - t
    event.unregister("numba:compile", listener)
    try:
        from bioslicer.kernel.pool import warmup_wait_s
    except ImportError:   # a branch without the warm-up helper
        def warmup_wait_s():
            return {}
    per_fn: dict[str, list] = {}
    for r in records:
        per_fn.setdefault(r["function"], []).append(r)
    return {"command": "bioslicer " + " ".join(cli_args), "exit_code": rc, "run_s": wall, "import_s": import_s,
            "compile_s": sum(r["excl_s"] for r in records), "compiles": len(records),
            "warmup_wait_s": warmup_wait_s(),
            "functions": len(per_fn), "records": records}


def table(res: dict, top: int = 40) -> str:
    """Markdown table of the compiles, grouped per function, largest exclusive time first."""
    per_fn: dict[str, list] = {}
    for r in res["records"]:
        per_fn.setdefault(r["function"], []).append(r)
    rows = sorted(per_fn.items(), key=lambda kv: -sum(r["excl_s"] for r in kv[1]))
    out = ["| function | signatures | compile s (excl.) | note |", "|---|---:|---:|---|"]
    for fn, rs in rows[:top]:
        note = ""
        if len(rs) > 1:
            note = "; ".join(r["args"][:120] for r in rs)
        out.append(f"| `{fn}` | {len(rs)} | {sum(r['excl_s'] for r in rs):.2f} | {note} |")
    if len(rows) > top:
        rest = rows[top:]
        out.append(f"| ({len(rest)} more) | {sum(len(r) for _, r in rest)} | "
                   f"{sum(x['excl_s'] for _, r in rest for x in r):.2f} | |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache-dir", default=None, help="Numba cache folder (default: a fresh empty one)")
    ap.add_argument("--json", default=None, help="write the records to this JSON file")
    ap.add_argument("cli", nargs="*", help="bioslicer CLI arguments (default: the README Quick start slice)")
    a = ap.parse_args(argv)
    cache = a.cache_dir or tempfile.mkdtemp(prefix="numba_cold_")
    os.environ["NUMBA_CACHE_DIR"] = cache   # before numba is imported
    helper_log = Path(tempfile.mkdtemp(prefix="cold_start_warmup_")) / "warmup.json"
    os.environ["BIOSLICER_WARMUP_LOG"] = str(helper_log)   # the warm-up helper (if started) reports here
    out_dir = str(Path(tempfile.mkdtemp(prefix="cold_start_")) / "job")   # a new folder: --overwrite takes only jobs
    res = run(a.cli or quick_start_args(out_dir))
    res["cache_dir"] = cache
    res["load_average"] = os.getloadavg()[0]
    if not a.cli:
        res["program_files"], res["programs_sha256"] = programs_sha256(out_dir)
    print(f"{res['command']}\nexit {res['exit_code']}; run {res['run_s']:.1f} s (imports {res['import_s']:.1f} s "
          f"before), {res['compiles']} compiles of {res['functions']} functions, {res['compile_s']:.1f} s compiling "
          f"(run without compiling {res['run_s'] - res['compile_s']:.1f} s, of which "
          f"{sum(res['warmup_wait_s'].values()):.1f} s waiting for the warm-up helper: "
          f"{ {k: round(v, 1) for k, v in res['warmup_wait_s'].items()} }); load average {res['load_average']:.1f}")
    if helper_log.exists():
        res["warmup_helper"] = json.loads(helper_log.read_text())
        h = res["warmup_helper"]
        print(f"warm-up helper (the other core): {h['wall_s']:.1f} s, {h['compiles']} compiles, {h['compile_s']:.1f} s "
              f"compiling; stages done at {h['stages_s']} s")
    if "programs_sha256" in res:
        print(f"programs: {res['program_files']} files, sha256 {res['programs_sha256']}")
    print()
    print(table(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
