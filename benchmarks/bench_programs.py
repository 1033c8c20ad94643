"""Benchmark: program text writing and validation speed per dialect, wall clock, medians.

Builds a synthetic stitched toolpath of hatch lines (2-point marks, as solid infill gives) over
a grid of blocks and times, per dialect, in a fresh child process each:

* ``write``: the dialect writer alone (rendering + file I/O, no parse-back);
* ``validate``: :func:`validate_program` of what it wrote (parse-back + checks);
* ``export``: :func:`write_program` (write + validate + rename), what a user waits for;
* ``corpus``: :func:`validate_program` of every program in ``tests/data/programs/`` (hand-written
  in the spellings of third-party tools; most go through the general reader), files and moves/s;

with JIT compile excluded (warm-up on a tiny toolpath first, median of ``--repeat`` runs) and
included (a child with an empty Numba cache, first call). Peak memory is the child's peak RSS
minus its RSS once the toolpath is built (what writing and validating add). Peers, measured in
the same run on the same ``x y z`` lines (3 decimals): ``np.savetxt`` and Python f-strings.

The machine is shared: wall times vary run to run (the second core is not always ours); the
median and the best of the repeats are reported, CPU time beside them.

Run:  .venv/bin/python benchmarks/bench_programs.py [--segments 2000000] [--dialect gwl ...] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PRINTERS = {"gwl": "nanoscribe-gt2-25x", "gcode": "lab-stage-gcode", "aerobasic": "femtika-aerotech-galvo"}


def hatch_toolpath(n_segments: int, blocks_per_side: int = 4, side_um: float = 200.0, dz_um: float = 0.5,
                   speed_um_s: float = 5000.0):
    """Serpentine hatch lines, hatch 0.2 µm, ``blocks_per_side``² blocks of ``side_um``."""
    from bioslicer.toolpath import Blocks, Toolpath

    nb = blocks_per_side * blocks_per_side
    per_block = n_segments // nb
    lines_per_layer = int(side_um / 0.2)
    p0s, p1s, blk, lay = [], [], [], []
    for b in range(nb):
        ix, iy = divmod(b, blocks_per_side)
        k = np.arange(per_block)
        layer = k // lines_per_layer
        row = k % lines_per_layer
        x0 = ix * side_um + 0.5
        y = iy * side_um + 0.1 + row * 0.2
        xa = np.where(row % 2 == 0, x0, x0 + side_um - 1.0)
        xb = np.where(row % 2 == 0, x0 + side_um - 1.0, x0)
        z = layer * dz_um
        p0s.append(np.column_stack([xa, y, z]))
        p1s.append(np.column_stack([xb, y, z]))
        blk.append(np.full(per_block, b))
        lay.append(layer)
    p0, p1 = np.concatenate(p0s), np.concatenate(p1s)
    layer = np.concatenate(lay)
    nl = int(layer.max()) + 1
    tp = Toolpath.from_segments(p0, p1, 1, layer, speed_um_s, 20.0, np.arange(nl) * dz_um, block=np.concatenate(blk))
    org = np.array([[(b // blocks_per_side + 0.5) * side_um, (b % blocks_per_side + 0.5) * side_um, 0.0] for b in range(nb)])
    idx = np.array([[b // blocks_per_side, b % blocks_per_side, 0] for b in range(nb)])
    tp.blocks = Blocks(org, idx, org - side_um / 2, org + side_um / 2, "circle", 400.0)
    return tp


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for ln in fh:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) / 1024
    return 0.0


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def child(dialect: str, segments: int, repeat: int, cold: bool) -> dict:
    """Measurements of one dialect in this (fresh) process."""
    from bioslicer.printers import load_printer
    from bioslicer.programs import DIALECTS, validate_program, write_program

    pr = load_printer(PRINTERS[dialect])
    d = DIALECTS[dialect]
    tp = hatch_toolpath(segments)
    base = _rss_mb()
    tmp = Path(tempfile.mkdtemp(prefix="bench_programs_"))
    res = {"dialect": dialect, "segments": tp.n_segments}
    try:
        if cold:  # empty Numba cache: the first export pays the compile
            pf, w, c = _timed(lambda: write_program(tp, pr, tmp / "cold", name="part", dialect=dialect))
            res.update(export_cold_s=w, mb=pf.n_bytes / 1e6)
            return res
        write_program(hatch_toolpath(1600), pr, tmp / "warm", name="warm", dialect=dialect)
        runs = {"write": [], "validate": [], "export": []}
        for r in range(repeat):
            out = tmp / f"w{r}"
            out.mkdir()
            files, w, c = _timed(lambda: d.write(tp, pr, d.spec, out, "part", None, lambda *a: None))
            runs["write"].append((w, c))
            rep, w, c = _timed(lambda: validate_program(files[0], pr, dialect))
            runs["validate"].append((w, c))
            assert rep.ok, rep.first()
            shutil.rmtree(out)
            pf, w, c = _timed(lambda: write_program(tp, pr, tmp / f"e{r}", name="part", dialect=dialect))
            runs["export"].append((w, c))
            shutil.rmtree(tmp / f"e{r}")
        res["mb"] = pf.n_bytes / 1e6
        res["moves"] = rep.n_moves
        for k, v in runs.items():
            res[k] = {"wall_s": float(np.median([a for a, _ in v])), "best_s": float(min(a for a, _ in v)),
                      "cpu_s": float(np.median([b for _, b in v]))}
        res["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def peers(n_points: int, repeat: int) -> dict:
    """MB/s of np.savetxt and f-strings writing ``x y z`` lines (3 decimals) to a file."""
    rng = np.random.default_rng(0)
    xyz = np.column_stack([rng.uniform(-200, 200, n_points), rng.uniform(-200, 200, n_points),
                           rng.uniform(0, 300, n_points)])
    out = {}
    tmp = tempfile.mkdtemp(prefix="bench_peers_")
    try:
        path = os.path.join(tmp, "p.txt")

        def savetxt():
            np.savetxt(path, xyz, fmt="%.3f")

        def fstrings():
            with open(path, "w") as fh:
                fh.write("".join([f"{x:.3f} {y:.3f} {z:.3f}\n" for x, y, z in xyz.tolist()]))

        for name, fn in (("np.savetxt", savetxt), ("f-string", fstrings)):
            t = []
            for _ in range(repeat):
                _, w, _ = _timed(fn)
                t.append(w)
            out[name] = os.path.getsize(path) / 1e6 / float(np.median(t))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def corpus(repeat: int) -> dict:
    """Validate every corpus program (tests/data/programs) ``repeat`` times after a warm-up: files, moves, moves/s."""
    from bioslicer.programs import validate_program

    root = Path(__file__).resolve().parent.parent / "tests" / "data" / "programs"
    prof = {".gwl": "corpus-gwl", ".ngc": "corpus-gcode", ".gcode": "corpus-gcode", ".nc": "corpus-gcode",
            ".pgm": "corpus-aerobasic"}
    files = sorted(p for p in root.glob("*") if p.suffix in prof)

    def once():
        return sum(validate_program(f, root / f"{prof[f.suffix]}.toml").n_moves for f in files)

    moves = once()
    t = [_timed(once)[1] for _ in range(repeat)]
    return {"files": len(files), "moves": moves, "wall_s": float(np.median(t))}


def _run_child(args: list[str], env=None) -> dict:
    p = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=2_000_000)
    ap.add_argument("--dialect", action="append", choices=list(PRINTERS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cold", action="store_true", help="skip the compile-included run")
    ap.add_argument("--child", choices=list(PRINTERS), help=argparse.SUPPRESS)
    ap.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--corpus-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.segments, args.repeat, args.cold)))
        return
    if args.corpus_child:
        print(json.dumps(corpus(args.repeat)))
        return
    pe = peers(200_000, args.repeat)
    print(f"peers (x y z, 3 decimals, 200k lines, median of {args.repeat}): "
          + ", ".join(f"{k} {v:.1f} MB/s" for k, v in pe.items()))
    slow_peer = max(pe.values())
    print(f"{'dialect':10s} {'MB':>7s} | {'write':>23s} | {'validate':>23s} | {'export (w+v)':>23s} | "
          f"{'export cold':>11s} | {'peak':>7s} | x best peer")
    for d in args.dialect or list(PRINTERS):
        r = _run_child(["--child", d, "--segments", str(args.segments), "--repeat", str(args.repeat)])
        cold = float("nan")
        if not args.no_cold:
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, NUMBA_CACHE_DIR=cache)
                c = _run_child(["--child", d, "--segments", str(args.segments), "--cold"], env=env)
                cold = c["mb"] / c["export_cold_s"]
        mb = r["mb"]

        def col(k):
            return f"{mb / r[k]['wall_s']:6.1f} / {mb / r[k]['best_s']:4.0f} ({mb / r[k]['cpu_s']:4.0f} cpu)"

        print(f"{d:10s} {mb:7.1f} | {col('write')} | {col('validate')} | {col('export')} | {cold:6.1f} MB/s | "
              f"{r['peak_mb']:5.0f}MB | {mb / r['export']['wall_s'] / slow_peer:5.1f}")
    c = _run_child(["--corpus-child", "--repeat", str(args.repeat)])
    print(f"corpus     {c['files']} files, {c['moves']} moves: {c['wall_s'] * 1e3:.1f} ms, "
          f"{c['moves'] / c['wall_s']:,.0f} moves/s (validate_program, median of {args.repeat})")
    print("MB/s wall clock, median / best of the repeats, with MB/s of CPU time (median) in brackets;"
          " 'export cold' includes JIT compile; peak = RSS added over the toolpath in memory")


if __name__ == "__main__":
    main()
