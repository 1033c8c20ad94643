"""Benchmark: mesh intake of a big binary STL (read, weld, inspect), wall clock and peak RSS.

Writes a synthetic vessel-like mesh into a scratch folder (never into the repository): a chain
of ``--spheres`` overlapping icospheres of ``--subdivisions`` (8 x subdivision 7 = 2 621 440
faces, 131 MB, the size named in issue 20), then runs, each in a fresh child process:

* ``read``     :func:`bioslicer.meshio.read_stl` (binary read + exact weld), best of 3;
* ``trimesh``  ``trimesh.load(process=False)`` (read only, no merge) and ``process=True`` (merged);
* ``inspect``  :func:`bioslicer.mesh.inspect_mesh` with a per-function breakdown (time and peak
  RSS of each phase, found by wrapping the module's helpers: read, sha256 + rest, merge (skipped
  for an STL in µm: the reader welds), edge table, shells, signed volumes, cavity winding,
  negative winding, overlaps, holes, and what ``analyse`` does itself: repeated and degenerate
  faces, body boxes and volumes, bookkeeping);
* ``cli``      ``python -m bioslicer inspect FILE`` end to end under ``/usr/bin/time -v``
  (imports and Numba cache load included), as a user runs it.

Peak RSS is ``VmHWM`` (reset per phase through ``/proc/self/clear_refs``), imports included.
The machine is shared: wall times vary run to run.

* ``slice``    (``--slice``) ``python -m bioslicer slice FILE`` at hatch 1 µm x slice 2 µm, with the
  pipeline's own time split.

``--against DIR`` runs inspect (and slice) from another checkout too (``--against ../main``),
each right after ours, and prints the ratios: on a shared machine only figures measured side by
side compare. CLI runs also give CPU time (user + system), which varies less with the load.

Run:  .venv/bin/python benchmarks/bench_intake.py [--spheres 8] [--subdivisions 7] [--workdir DIR]
      [--against DIR] [--slice] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("_read_file", "merge_vertices_exact", "analyse", "_edge_balance", "_shells", "_face_signed_volumes",
          "_winding_number", "_negative_winding", "_overlaps", "_boundary_loops")


def make_mesh(path: Path, spheres: int = 8, subdivisions: int = 7, radius_um: float = 100.0) -> int:
    """Write a chain of overlapping icospheres as a binary STL (float32, like any exporter); returns faces."""
    import numpy as np
    import trimesh

    from bioslicer.meshio import STL_RECORD

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius_um)
    tri = s.vertices[s.faces]
    m1 = len(tri)
    rec = np.zeros(spheres * m1, STL_RECORD)
    for k in range(spheres):  # 1.5 radii apart along x with a small wiggle: each shell overlaps the next
        rec["vertices"][k * m1:(k + 1) * m1] = tri + [1.5 * radius_um * k, 0.2 * radius_um * np.sin(k), 0.0]
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        fh.write(b"bioslicer bench_intake: icosphere chain".ljust(80, b" "))
        fh.write(np.uint32(len(rec)).tobytes())
        fh.write(rec.tobytes())
    os.replace(tmp, path)
    return len(rec)


# ============================================================================ child side
def _hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for ln in fh:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1]) / 1024
    return 0.0


def _hwm_reset() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _child_read(path: Path) -> dict:
    from bioslicer.meshio import read_stl

    data = path.read_bytes()
    read_stl(data)  # first call: Numba cache load (or compile)
    best, peak = None, 0.0
    for _ in range(3):
        _hwm_reset()
        t = time.perf_counter()
        v, f = read_stl(data)
        s = time.perf_counter() - t
        peak = max(peak, _hwm_mb())
        best = s if best is None else min(best, s)
    return {"read_weld_s": best, "peak_mb": peak, "faces": len(f), "vertices": len(v)}


def _child_trimesh(path: Path) -> dict:
    import trimesh

    out = {}
    for process in (False, True):
        _hwm_reset()
        t = time.perf_counter()
        m = trimesh.load(str(path), force="mesh", process=process)
        out[f"process_{process}"] = {"s": time.perf_counter() - t, "peak_mb": _hwm_mb(), "vertices": len(m.vertices)}
        del m
    return out


def _child_inspect(path: Path) -> dict:
    import numpy as np  # noqa: F401  - imports outside the timed block

    from bioslicer import mesh

    stack, rows = [], {}

    def wrap(name, fn):
        def timed(*a, **k):
            _hwm_reset()
            stack.append(0.0)
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                s = time.perf_counter() - t
                peak = max(_hwm_mb(), stack.pop())
                if stack:
                    stack[-1] = max(stack[-1], peak)
                r = rows.setdefault(name, {"s": 0.0, "calls": 0, "peak_mb": 0.0})
                r["s"] += s
                r["calls"] += 1
                r["peak_mb"] = max(r["peak_mb"], peak)
        return timed

    for name in PHASES:
        if hasattr(mesh, name):
            setattr(mesh, name, wrap(name, getattr(mesh, name)))
    _hwm_reset()
    t = time.perf_counter()
    rep = mesh.inspect_mesh(path)
    total = time.perf_counter() - t
    inner = sum(rows[n]["s"] for n in PHASES[3:] if n in rows)
    rows["analyse (own lines: face groups, degenerate, body stats)"] = {
        "s": rows.get("analyse", {}).get("s", 0.0) - inner, "calls": 1, "peak_mb": None}
    top = sum(rows[n]["s"] for n in PHASES[:3] if n in rows)
    rows["inspect_mesh (own lines: sha256, units, report)"] = {"s": total - top, "calls": 1, "peak_mb": None}
    return {"total_s": total, "peak_mb": _hwm_mb(), "phases": rows, "ok": rep["ok"], "triangles": rep["triangles"],
            "bodies": rep["bodies"], "overlapping_pairs": len(rep["overlapping_pairs"])}


def child_main(kind: str, path: Path) -> None:
    sys.path.insert(0, os.environ.get("BENCH_INTAKE_ROOT", str(ROOT)))
    fn = {"read": _child_read, "trimesh": _child_trimesh, "inspect": _child_inspect}[kind]
    print(json.dumps(fn(path)))


# ============================================================================ parent side
def _env(root: Path) -> dict:
    return dict(os.environ, BENCH_INTAKE_ROOT=str(root),
                PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _child(kind: str, path: Path, root: Path = ROOT) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(path)], capture_output=True, text=True,
                         env=_env(root), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _timed_cli(args: list, root: Path) -> tuple[dict, str]:
    """Wall time, CPU time (user + system) and peak RSS of ``python -m bioslicer ARGS`` run from
    ``root`` (``/usr/bin/time -v`` when present), and its standard output."""
    cmd = [sys.executable, "-m", "bioslicer"] + [str(x) for x in args]
    if Path("/usr/bin/time").exists():
        r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=_env(root),
                           cwd=root, check=True)
        wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
        h, m, s = (float(x or 0) for x in wall.groups())
        cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", r.stderr).group(1)) for k in ("User", "System"))
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
        return {"s": h * 3600 + m * 60 + s, "cpu_s": cpu, "peak_mb": rss / 1024}, r.stdout
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(root), cwd=root, check=True)
    return {"s": time.perf_counter() - t, "cpu_s": None, "peak_mb": None}, r.stdout


def cli_inspect(path: Path, root: Path = ROOT) -> dict:
    """``bioslicer inspect FILE`` end to end (imports, Numba cache load, placement check)."""
    return _timed_cli(["inspect", path], root)[0]


def cli_slice(path: Path, job: Path, root: Path = ROOT) -> dict:
    """``bioslicer slice FILE`` at coarse settings (hatch 1 µm, slice 2 µm), end to end, with the
    pipeline's own time split (``timings_s``)."""
    res, out = _timed_cli(["slice", path, "-o", job, "--overwrite", "--set", "hatch_um=1", "--set", "slice_um=2",
                           "--json"], root)
    try:
        res["timings_s"] = json.loads(out).get("timings_s", {})
    except ValueError:
        res["timings_s"] = {}
    return res


def _fmt(r: dict | None) -> str:
    if not r:
        return ""
    cpu = f", {r['cpu_s']:.1f} s CPU" if r.get("cpu_s") is not None else ""
    pk = f", {r['peak_mb']:.0f} MB" if r.get("peak_mb") is not None else ""
    return f"{r['s']:.2f} s{cpu}{pk}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spheres", type=int, default=8)
    ap.add_argument("--subdivisions", type=int, default=7)
    ap.add_argument("--workdir", default=None, help="scratch folder for the mesh (default: a temp folder)")
    ap.add_argument("--against", default=None, metavar="DIR",
                    help="also run inspect (and slice) from this checkout (e.g. main), interleaved, and give ratios")
    ap.add_argument("--slice", action="store_true", help="also time `bioslicer slice` at hatch 1 µm x slice 2 µm")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        child_main(a.child[0], Path(a.child[1]))
        return 0
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_intake_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"spheres{a.spheres}_sub{a.subdivisions}.stl"
    if not path.exists():
        sys.path.insert(0, str(ROOT))
        n = make_mesh(path, a.spheres, a.subdivisions)
        print(f"wrote {path} ({n:,} faces, {path.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    other = Path(a.against).resolve() if a.against else None
    res = {"file": str(path), "file_mb": path.stat().st_size / 1e6, "load_average": os.getloadavg()[0]}
    res["read"] = _child("read", path)
    res["trimesh"] = _child("trimesh", path)
    res["inspect"] = _child("inspect", path)
    if other:
        res["against"] = {"root": str(other), "inspect": _child("inspect", path, other)}
    res["cli_inspect"] = cli_inspect(path)
    if other:
        res["against"]["cli_inspect"] = cli_inspect(path, other)
    if a.slice:
        res["cli_slice"] = cli_slice(path, work / "job")
        if other:
            res["against"]["cli_slice"] = cli_slice(path, work / "job_against", other)
    res["load_average_end"] = os.getloadavg()[0]
    r, tm = res["read"], res["trimesh"]
    print(f"{r['faces']:,} faces, {res['file_mb']:.0f} MB binary STL (load average {res['load_average']:.1f} .. "
          f"{res['load_average_end']:.1f}; shared machine, times vary)\n")
    print("| step | s | peak MB | vs |")
    print("|---|---:|---:|---|")
    t0, t1 = tm["process_False"], tm["process_True"]
    print(f"| read_stl (read + exact weld) | {r['read_weld_s']:.2f} | {r['peak_mb']:.0f} | "
          f"trimesh.load process=False {t0['s']:.2f} s / {t0['peak_mb']:.0f} MB (x{t0['s'] / r['read_weld_s']:.1f}), "
          f"process=True {t1['s']:.2f} s / {t1['peak_mb']:.0f} MB (x{t1['s'] / r['read_weld_s']:.1f}) |")
    ins = res["inspect"]
    for name, ph in ins["phases"].items():
        pk = f"{ph['peak_mb']:.0f}" if ph["peak_mb"] is not None else ""
        print(f"| inspect: {name.strip('_')} ({ph['calls']}x) | {ph['s']:.2f} | {pk} | |")
    ag = res.get("against", {})
    vs = ""
    if ag:
        o = ag["inspect"]
        vs = f"{other.name}: {o['total_s']:.2f} s, {o['peak_mb']:.0f} MB (x{o['total_s'] / ins['total_s']:.1f})"
    print(f"| inspect_mesh in-process total | {ins['total_s']:.2f} | {ins['peak_mb']:.0f} | {vs} |")
    for key, label, goal in (("cli_inspect", "`bioslicer inspect` CLI (imports, cache load)", "goal <= 3 s, <= 1 GB"),
                             ("cli_slice", "`bioslicer slice` hatch 1 x slice 2 µm", "goal <= 10 s, <= 1.5 GB")):
        c = res.get(key)
        if not c:
            continue
        vs = goal
        if key in ag:
            o = ag[key]
            vs += f"; {other.name}: {_fmt(o)} (x{o['s'] / c['s']:.1f} wall"
            vs += f", x{o['cpu_s'] / c['cpu_s']:.1f} CPU)" if c.get("cpu_s") else ")"
        pk = "" if c["peak_mb"] is None else f"{c['peak_mb']:.0f}"
        print(f"| {label} | {c['s']:.2f} ({c['cpu_s'] or 0:.1f} CPU) | {pk} | {vs} |")
        for side, rr in (("now", c), (other.name if other else "", ag.get(key))):
            if rr and rr.get("timings_s"):
                ts = {k: round(v, 2) for k, v in rr["timings_s"].items() if isinstance(v, (int, float))}
                print(f"|   {side} slice timings_s | {ts} | | |")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
