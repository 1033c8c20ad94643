"""Benchmark: program text writing and validation speed per dialect.

Builds a synthetic stitched toolpath of hatch lines (2-point marks, as solid infill gives) over
a grid of blocks and times ``write_program`` (which includes validation) and
``validate_program`` alone. JIT compile is excluded by a warm-up on a tiny toolpath.

The machine is shared: CPU time (process_time) is reported beside wall time.

Run:  .venv/bin/python benchmarks/bench_programs.py [--segments 2000000] [--dialect gwl ...]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np

from bioslicer.printers import load_printer
from bioslicer.programs import validate_program, write_program
from bioslicer.toolpath import Blocks, Toolpath

PRINTERS = {"gwl": "nanoscribe-gt2-25x", "gcode": "lab-stage-gcode", "aerobasic": "femtika-aerotech-galvo"}


def hatch_toolpath(n_segments: int, blocks_per_side: int = 4, side_um: float = 200.0, dz_um: float = 0.5,
                   speed_um_s: float = 5000.0):
    """Serpentine hatch lines, hatch 0.2 µm, ``blocks_per_side``² blocks of ``side_um``."""
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", type=int, default=2_000_000)
    ap.add_argument("--dialect", action="append", choices=list(PRINTERS))
    args = ap.parse_args()
    small = hatch_toolpath(1600)
    tp = hatch_toolpath(args.segments)
    for d in args.dialect or list(PRINTERS):
        pr = load_printer(PRINTERS[d])
        tmp = tempfile.mkdtemp(prefix="bench_programs_")
        try:
            write_program(small, pr, tmp, name="warm", dialect=d)
            t0, c0 = time.perf_counter(), time.process_time()
            pf = write_program(tp, pr, tmp, name="part", dialect=d)
            t1, c1 = time.perf_counter(), time.process_time()
            rep = validate_program(pf.main, pr, d)
            t2, c2 = time.perf_counter(), time.process_time()
            mb = pf.n_bytes / 1e6
            w_wall, w_cpu = (t1 - t0) - (t2 - t1), (c1 - c0) - (c2 - c1)
            print(f"{d:10s} {tp.n_segments:>9d} segments {mb:7.1f} MB | write+validate {t1 - t0:5.2f} s wall "
                  f"{c1 - c0:5.2f} s cpu | write alone ~{mb / max(w_wall, 1e-9):6.1f} MB/s wall "
                  f"~{mb / max(w_cpu, 1e-9):6.1f} MB/s cpu | validate {mb / (t2 - t1):6.1f} MB/s wall "
                  f"{mb / max(c2 - c1, 1e-9):6.1f} MB/s cpu, {rep.n_moves / max(c2 - c1, 1e-9) / 1e6:4.1f} M moves/s cpu")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
