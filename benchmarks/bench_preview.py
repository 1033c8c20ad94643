"""Benchmark: preview of a large toolpath (default 10^7 hatch segments) rendered offscreen.

Builds a synthetic hatched block (2000 layers x 5000 lines, alternating 0/90 degrees, a contour
per layer, 2 x 2 stitching blocks), then times the pieces of ``render_png``:
decimation + PolyData build, scene set-up, and the render + PNG write. Run with

    .venv/bin/python benchmarks/bench_preview.py [--layers 2000] [--lines 5000] [--max-segments 2000000]

and the whole process under ``/usr/bin/time -v`` for peak memory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bioslicer.toolpath import Blocks, Kind, Toolpath


def hatched_block(n_layers: int, n_lines: int, side_um: float = 1000.0, dz_um: float = 0.5) -> Toolpath:
    """A square block: per layer one closed contour and ``n_lines`` serpentine hatch lines (µm).

    Layers alternate 0/90 degree hatching; 2 x 2 stitching blocks; power ramps with depth.
    """
    k = np.arange(n_layers)
    z = k * dz_um
    per = 5 + 2 * n_lines                         # points per layer: contour (5) + hatch
    t = (np.arange(n_lines) + 0.5) * side_um / n_lines
    u0 = np.where(np.arange(n_lines) % 2 == 0, 0.0, side_um)
    ring = np.array([[0, 0], [side_um, 0], [side_um, side_um], [0, side_um], [0, 0]], float)
    x = np.empty((n_layers, per))
    y = np.empty((n_layers, per))
    x[:, :5], y[:, :5] = ring[:, 0], ring[:, 1]
    hu = np.empty(2 * n_lines)
    hu[0::2], hu[1::2] = u0, side_um - u0
    hv = np.repeat(t, 2)
    even = (k % 2 == 0)[:, None]
    x[:, 5:] = np.where(even, hu[None], hv[None])
    y[:, 5:] = np.where(even, hv[None], hu[None])
    zz = np.repeat(z, per)
    starts_layer = np.concatenate([[0], 5 + 2 * np.arange(n_lines + 1)])[:-1]     # marks of one layer
    mark_start = (np.arange(n_layers)[:, None] * per + starts_layer[None]).ravel()
    mark_start = np.append(mark_start, n_layers * per)
    kind = np.tile(np.r_[Kind.CONTOUR, np.full(n_lines, Kind.HATCH)], n_layers)
    layer = np.repeat(k, n_lines + 1)
    power = 20.0 + 10.0 * zz / max(z[-1], 1e-9)
    xm = x.ravel()[mark_start[:-1]]
    ym = y.ravel()[mark_start[:-1]]
    half = side_um / 2
    block = (xm >= half).astype(np.int32) + 2 * (ym >= half).astype(np.int32)
    block[kind == Kind.CONTOUR] = 0
    tp = Toolpath(x_um=x.ravel(), y_um=y.ravel(), z_um=zz, power_mw=power, mark_start=mark_start, mark_kind=kind,
                  mark_layer=layer, mark_block=block, mark_speed_um_s=np.where(kind == Kind.CONTOUR, 5000.0, 20000.0),
                  layer_z_um=z)
    lo = np.array([[0, 0, 0], [half, 0, 0], [0, half, 0], [half, half, 0]], float)
    hi = lo + [half, half, n_layers * dz_um]
    tp.blocks = Blocks(lo + [half / 2, half / 2, 0], np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]),
                       lo, hi, "square", 600.0)
    return tp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2000)
    ap.add_argument("--lines", type=int, default=5000)
    ap.add_argument("--max-segments", type=int, default=2_000_000)
    ap.add_argument("--size", default="1200x900")
    ap.add_argument("--out", default=None, help="keep the PNG here")
    a = ap.parse_args()
    from bioslicer import preview as pvw

    w, h = (int(v) for v in a.size.split("x"))
    t = time.perf_counter()
    tp = hatched_block(a.layers, a.lines)
    print(f"toolpath: {tp.n_layers} layers, {tp.n_marks:,} marks, {tp.n_segments:,} segments "
          f"(built in {time.perf_counter() - t:.1f} s)")

    # warm up VTK/pyvista (first render pays the OpenGL context set-up)
    t = time.perf_counter()
    small = hatched_block(4, 10)
    with tempfile.TemporaryDirectory() as tmp:
        pvw.render_png(Path(tmp) / "warm.png", toolpath=small, window_size=(200, 150))
    print(f"warm-up render: {time.perf_counter() - t:.2f} s")

    t = time.perf_counter()
    poly, st = pvw.toolpath_polydata(tp, max_segments=a.max_segments)
    t_poly = time.perf_counter() - t
    print(f"decimate + PolyData: {t_poly:.2f} s -> {st.text()}")
    del poly

    t = time.perf_counter()
    p = pvw.toolpath_plotter(tp, off_screen=True, max_segments=a.max_segments, window_size=(w, h),
                             title="benchmark block", slider=False)
    t_scene = time.perf_counter() - t
    t = time.perf_counter()
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp()) / "bench_preview.png"
    pvw.write_plotter_png(out, p)
    t_render = time.perf_counter() - t
    print(f"scene set-up (incl. PolyData): {t_scene:.2f} s; render + PNG: {t_render:.2f} s; "
          f"total {t_scene + t_render:.2f} s -> {out} ({out.stat().st_size / 1e3:.0f} kB)")

    t = time.perf_counter()
    mid = pvw.default_layer(tp)
    pvw.render_layer_png(out.with_name("bench_layer.png"), tp, mid, window_size=(w, h))
    print(f"2-D layer view ({tp.n_marks // tp.n_layers:,} marks): {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
