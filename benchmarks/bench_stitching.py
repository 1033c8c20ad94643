"""Benchmark: stitching, scan ordering and print-time estimate on synthetic sample constructs.

For each construct (built directly as toolpaths, no mesh needed) the table gives the jump
length inside (block, layer) runs and the estimated print time before and after ordering, the
share of the time spent on stage moves, and the wall time of stitch / order / estimate (JIT
warm; the first call, which compiles or loads the Numba cache, is reported separately).

    .venv/bin/python benchmarks/bench_stitching.py                 # sample constructs
    .venv/bin/python benchmarks/bench_stitching.py --big 10000000  # + stitching 10^7 segments
    .venv/bin/python benchmarks/bench_stitching.py --toolpath job_toolpath.npz   # a saved planned job

Wall times on a shared machine are noisy: the CPU time of the process (user + system) and the
peak resident memory are printed as well. Much of the system time is the kernel handing out
fresh pages for the outputs (about 3 GB for the 11.5 M-segment reference job).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from bioslicer.estimate import estimate_print_time
from bioslicer.ordering import order_marks
from bioslicer.printers import load_printer
from bioslicer.stitching import stitch
from bioslicer.toolpath import Kind, Toolpath


def _circles(c, r, z, n=64):
    """Closed circle contours (K, n+1, 3)."""
    th = np.linspace(0, 2 * np.pi, n + 1)
    th[-1] = 0.0
    p = np.empty((len(c), n + 1, 3))
    p[..., 0] = c[:, 0, None] + r[:, None] * np.cos(th)
    p[..., 1] = c[:, 1, None] + r[:, None] * np.sin(th)
    p[..., 2] = z
    return p


def _contours_tp(polys, layer, layer_z, speed, power):
    k, n = polys.shape[:2]
    pts = polys.reshape(-1, 3)
    return Toolpath(x_um=pts[:, 0], y_um=pts[:, 1], z_um=pts[:, 2], power_mw=np.full(len(pts), power),
                    mark_start=np.arange(0, k * n + 1, n), mark_kind=np.full(k, Kind.CONTOUR),
                    mark_layer=np.full(k, layer), mark_block=np.full(k, -1), mark_speed_um_s=np.full(k, speed),
                    layer_z_um=layer_z)


def _rows_minus_circles(ys, x0, x1, c, r):
    """Hatch rows y in ys from x0 to x1 with the discs (centres c, radii r) cut out; discs must
    not overlap in x on a row. Returns (p0, p1) as (S, 2) x/y arrays, rows in order, left to right."""
    dy = ys[:, None] - c[None, :, 1]
    cross = np.abs(dy) < r[None]
    hc = np.sqrt(np.clip(r[None] ** 2 - dy ** 2, 0, None))
    left = np.where(cross, c[None, :, 0] - hc, np.inf)
    right = np.where(cross, c[None, :, 0] + hc, np.inf)
    o = np.argsort(left, axis=1, kind="stable")
    left = np.take_along_axis(left, o, 1)
    right = np.take_along_axis(right, o, 1)
    k = cross.sum(1)
    S = np.concatenate([np.full((len(ys), 1), x0), right], 1)
    E = np.concatenate([left, np.full((len(ys), 1), x1)], 1)
    E = np.where(np.isinf(E), x1, E)
    valid = (np.arange(S.shape[1])[None] <= k[:, None]) & (E > S)
    yy = np.broadcast_to(ys[:, None], S.shape)
    return np.column_stack([S[valid], yy[valid]]), np.column_stack([E[valid], yy[valid]])


def channel_block(size=(1000.0, 800.0, 200.0), slice_um=1.0, hatch_um=0.5):
    """A hydrogel block with a 4 x 3 array of vertical channels (r 40-70 µm): outer contour,
    channel contours, then x hatch rows left to right, every layer."""
    sx, sy, sz = size
    layer_z = np.arange(slice_um / 2, sz, slice_um)
    gx, gy = np.meshgrid(np.linspace(150, sx - 150, 4), np.linspace(150, sy - 150, 3))
    c = np.column_stack([gx.ravel(), gy.ravel()])
    r = 40.0 + 30.0 * (np.arange(len(c)) % 3) / 2
    ys = np.arange(hatch_um / 2, sy, hatch_um)
    p0, p1 = _rows_minus_circles(ys, 0.0, sx, c, r)
    outer = np.array([[[0, 0, 0], [sx, 0, 0], [sx, sy, 0], [0, sy, 0], [0, 0, 0]]], float)
    parts = []
    for li, z in enumerate(layer_z):
        o = outer.copy()
        o[..., 2] = z
        parts.append(_contours_tp(o, li, layer_z, 50000.0, 20.0))
        parts.append(_contours_tp(_circles(c, r, z), li, layer_z, 50000.0, 20.0))
        zc = np.full((len(p0), 1), z)
        parts.append(Toolpath.from_segments(np.hstack([p0, zc]), np.hstack([p1, zc]), Kind.HATCH, li, 100000.0,
                                            22.5, layer_z))
    return Toolpath.concat(parts, layer_z_um=layer_z)


def pillar_array(n=16, pitch=60.0, radius=12.0, height=100.0, slice_um=1.0, hatch_um=0.5):
    """n x n pillars (many islands per layer): contours then hatch rows across the whole layer."""
    layer_z = np.arange(slice_um / 2, height, slice_um)
    gx, gy = np.meshgrid(np.arange(n) * pitch, np.arange(n) * pitch)
    c = np.column_stack([gx.ravel(), gy.ravel()])
    r = np.full(len(c), radius)
    ys = np.arange(-radius + hatch_um / 2, (n - 1) * pitch + radius, hatch_um)
    dy = ys[:, None] - c[None, :, 1]
    cross = np.abs(dy) < r[None]
    hc = np.sqrt(np.clip(r[None] ** 2 - dy ** 2, 0, None))
    ri, ci = np.nonzero(cross)                                   # row-major: rows in order, left to right
    p0 = np.column_stack([c[ci, 0] - hc[ri, ci], ys[ri]])
    p1 = np.column_stack([c[ci, 0] + hc[ri, ci], ys[ri]])
    parts = []
    for li, z in enumerate(layer_z):
        parts.append(_contours_tp(_circles(c, r, z, 32), li, layer_z, 50000.0, 20.0))
        zc = np.full((len(p0), 1), z)
        parts.append(Toolpath.from_segments(np.hstack([p0, zc]), np.hstack([p1, zc]), Kind.HATCH, li, 100000.0,
                                            22.5, layer_z))
    return Toolpath.concat(parts, layer_z_um=layer_z)


def woodpile(size=1500.0, spacing=25.0, layers=60, slice_um=1.5):
    """A woodpile scaffold: parallel scaffold lines, x and y on alternate layers, each line
    written from the same side (a raster)."""
    layer_z = np.arange(layers) * slice_um + slice_um / 2
    t = np.arange(spacing / 2, size, spacing)
    parts = []
    for li, z in enumerate(layer_z):
        a = np.column_stack([np.zeros_like(t), t, np.full_like(t, z)])
        b = a + [size, 0, 0]
        if li % 2:
            a, b = a[:, [1, 0, 2]], b[:, [1, 0, 2]]
        parts.append(Toolpath.from_segments(a, b, Kind.SCAFFOLD, li, 100000.0, 22.5, layer_z))
    return Toolpath.concat(parts, layer_z_um=layer_z)


def _timed(f, *a, **k):
    t = time.perf_counter()
    r = f(*a, **k)
    return r, time.perf_counter() - t


def _usage() -> str:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return f"cpu user {r.ru_utime:.1f} s, sys {r.ru_stime:.1f} s, peak {r.ru_maxrss / 1024:,.0f} MB"


def bench_file(path, printer):
    """Stitch, order in place and estimate a saved (planned, unstitched) toolpath."""
    tp = Toolpath.load(path)
    print(f"\n{path}: {tp.n_marks:,} marks, {tp.n_segments:,} segments; {_usage()}")
    s, t_st = _timed(stitch, tp, printer)
    print(f"stitch   {t_st:6.2f} s -> {s.n_segments:,} segments in {len(s.blocks)} blocks; {_usage()}", flush=True)
    del tp
    (o, rep), t_or = _timed(order_marks, s, inplace=True)
    print(f"order    {t_or:6.2f} s (in place), jumps {rep['jump_um_before'] / 1e3:,.0f} -> "
          f"{rep['jump_um_after'] / 1e3:,.0f} mm; {_usage()}", flush=True)
    e, t_es = _timed(estimate_print_time, o, printer)
    print(f"estimate {t_es:6.2f} s -> {e.total_s / 3600:.2f} h; {_usage()}")


def bench(name, tp, printer):
    s, t_st = _timed(stitch, tp, printer)
    e0 = estimate_print_time(s, printer)
    (o, rep), t_or = _timed(order_marks, s)
    e1, t_es = _timed(estimate_print_time, o, printer)
    share = e1.breakdown["stage_move_s"] / e1.total_s
    return (f"| {name} | {printer.name} | {tp.n_segments:,} | {len(s.blocks)} | "
            f"{rep['jump_um_before'] / 1e3:,.1f} | {rep['jump_um_after'] / 1e3:,.1f} | "
            f"{e0.total_s / 60:,.2f} | {e1.total_s / 60:,.2f} | {100 * share:.1f} % | "
            f"{t_st:.2f} / {t_or:.2f} / {t_es:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--printer", default="nanoscribe-gt2-25x")
    ap.add_argument("--big", type=int, default=0, help="also stitch a hatch job of about this many segments")
    ap.add_argument("--toolpath", help="only time a saved planned toolpath (.npz from Toolpath.save)")
    args = ap.parse_args()
    pr = load_printer(args.printer)
    # warm-up (compile or load the Numba cache) on a tiny job
    tiny = woodpile(size=600.0, spacing=50.0, layers=2)
    t0 = time.perf_counter()
    order_marks(stitch(tiny, pr))
    estimate_print_time(stitch(tiny, pr), pr)
    print(f"JIT warm-up (compile or cache load): {time.perf_counter() - t0:.2f} s\n")
    if args.toolpath:
        bench_file(args.toolpath, pr)
        return
    print("| construct | printer | segments | blocks | jump before (mm) | jump after (mm) | "
          "time before (min) | time after (min) | stage share | stitch / order / estimate (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, tp in (("channel block 1000x800x200 µm", channel_block()),
                     ("pillar array 16x16, 100 µm", pillar_array()),
                     ("woodpile 1.5 mm, 60 layers", woodpile())):
        print(bench(name, tp, pr), flush=True)
    if args.big:
        rows = 4000
        nl = max(1, args.big // rows)
        ys = np.arange(rows) * 0.2
        lay = np.repeat(np.arange(nl), rows)
        p0 = np.column_stack([np.zeros(rows * nl), np.tile(ys, nl), lay * 0.5])
        p1 = p0 + [1000.0, 0, 0]
        tp = Toolpath.from_segments(p0, p1, Kind.HATCH, lay, 100000.0, 22.5, np.arange(nl) * 0.5)
        del p0, p1, lay
        s, t_st = _timed(stitch, tp, pr, shear_deg=5.0)
        o, t_or = _timed(order_marks, s)
        e, t_es = _timed(estimate_print_time, o[0], pr)
        print(f"\nbig hatch job: {tp.n_segments:,} segments -> {s.n_segments:,} after stitching into "
              f"{len(s.blocks)} blocks; stitch {t_st:.2f} s, order {t_or:.2f} s, estimate {t_es:.2f} s")


if __name__ == "__main__":
    main()
