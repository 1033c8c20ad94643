"""bioslicer benchmark suite: every pipeline stage on the sample constructs, side by side with peers.

Run from the repository root::

    .venv/bin/python benchmarks/run.py                       # realistic settings (10-20 min on 2 cores)
    .venv/bin/python benchmarks/run.py --quick               # coarse settings, about 2 min (smoke test)
    .venv/bin/python benchmarks/run.py --only kernel toolpath
    .venv/bin/python benchmarks/run.py --out benchmarks/results/latest.json --update-readme

Stages (each runs in its own child process, so their peak memory does not mix):

``load``      ``bioslicer.mesh.load_mesh`` vs ``trimesh.load``
``intake``    a big binary STL (icosphere chain, 2.6 M faces; 0.66 M with ``--quick``): ``read_stl`` (read +
              exact weld) vs ``trimesh.load`` with merging, and ``inspect_mesh`` end to end
``kernel``    ``slice_spans`` over the whole part (rows turned 30° per layer), first and second call;
              vs ``section_multiplane`` + shapely row clipping (sampled layers, extrapolated) and
              ``voxelize`` vs trimesh ``voxelized().fill()`` on the same cube of the part, same pitch
``toolpath``  ``load_mesh`` + ``plan_toolpath`` (solid, contours from the printer) vs
              ``section_multiplane`` + shapely offsets and clipping (sampled layers, extrapolated); PySLM
``order``     ``stitch`` + ``order_marks`` + ``estimate_print_time``: jump length and print time
              before and after ordering, share of time on stage moves
``export``    ``write_program`` (write + parse-back validation) for GWL, G-code, AeroBasic, MB/s, vs
              ``numpy.savetxt`` and f-strings writing ``x y z`` lines
``preview``   ``render_png`` of the reference toolpath (offscreen)
``job``       ``bioslicer.pipeline.slice_to_job`` end to end, locally and with ``--workers 2`` (Dask), with the
              time split of the job (plan, stitch, order, write, estimate, main, validate, preview, manifest)
``array``     ``bioslicer array --test cube``, 10 x 10 cells at 0.2 x 0.5 µm (issue 19: under 15 s), with the
              same time split (``benchmarks/bench_array.py``)

Times are wall clock (``time.perf_counter``). "1st call" includes Numba compile or cache load: for
the kernel it is the first call on the part in a fresh process; for the other stages it is the
time of a tiny warm-up job (all kernels of the stage) plus the warm time. Peak memory is the
process's peak resident set (VmHWM, reset before each measurement through
``/proc/self/clear_refs``; ``ru_maxrss`` where that is not possible), imports included, as
``/usr/bin/time -v`` would show for a process doing only that step. Ratios are peer time / our
time on equal work (same mesh, layers, rows and angles); > 1 means bioslicer is faster.

Results go to a JSON file (sorted keys) with the machine it ran on; the Markdown table goes to
stdout. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
STAGES = ("load", "intake", "kernel", "toolpath", "order", "export", "preview", "job", "array")
CONSTRUCTS = ("channel_block", "vessel_tree", "gyroid", "woodpile", "calibration")
REFERENCE = "channel_block"
FORMAT = "bioslicer-bench/1"


class Settings:
    """Benchmark parameters (plain attributes). ``quick`` coarsens everything for a smoke test.

    Attributes
    ----------
    mode : 'full' | 'quick'
    hatch_um, slice_um : hatch (row) distance and layer distance, µm (lateral x axial voxel).
    angle_step_deg : row angle step per layer for the kernel stage, degrees.
    printer : printer profile of the toolpath, order, preview and job stages.
    peer_layers : layers the section_multiplane + shapely peers run on (spread over the part).
    voxel_pitch_um, voxel_box_um : pitch and cube side of the voxelizer comparison, µm.
    text_points : lines written by each text peer.
    dialects : dialect -> printer profile for the export stage.
    workers : Dask workers of the cluster run.
    window : preview image size, pixels.
    stage_timeout_s : a stage still running after this is stopped and recorded as failed.
    """

    def __init__(self, quick: bool = False):
        self.mode = "quick" if quick else "full"
        self.hatch_um = 1.0 if quick else 0.2
        self.slice_um = 2.0 if quick else 0.5
        self.angle_step_deg = 30.0
        self.printer = "nanoscribe-gt2-25x"
        self.peer_layers = 3 if quick else 8
        self.voxel_pitch_um = 2.0 if quick else 0.5
        self.voxel_box_um = 60.0 if quick else 40.0
        self.text_points = 50_000 if quick else 500_000
        self.dialects = {"gwl": "nanoscribe-gt2-25x", "gcode": "lab-stage-gcode",
                         "aerobasic": "femtika-aerotech-galvo"}
        self.workers = 2
        self.window = [1200, 900]
        self.stage_timeout_s = 600.0 if quick else 3600.0

    def to_dict(self) -> dict:
        return dict(vars(self))

    @property
    def label(self) -> str:
        return f"{self.hatch_um:g} x {self.slice_um:g} µm"


# ============================================================================ child side: helpers
_PEAK = {"mb": 0.0}   # the child's peak RSS over the whole run (VmHWM is reset per measurement)


def _hwm_reset() -> bool:
    _PEAK["mb"] = max(_PEAK["mb"], _peak_mb())
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for ln in fh:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    """``with Meter() as m: ...`` -> ``m.s`` wall seconds and ``m.peak_mb`` peak RSS of the block."""

    def __enter__(self):
        _hwm_reset()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0
        self.peak_mb = _peak_mb()
        _PEAK["mb"] = max(_PEAK["mb"], self.peak_mb)
        return False


def _best_of(fn, repeat: int = 3, min_total_s: float = 0.3) -> float:
    """Smallest wall time of ``fn()`` over at least ``repeat`` runs (more while under min_total_s)."""
    ts = []
    t_all = time.perf_counter()
    while len(ts) < repeat or (time.perf_counter() - t_all < min_total_s and len(ts) < 50):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def _log(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def _row(stage, construct, settings, time_s, first_s=None, throughput="", peak_mb=None, peer="", peer_s=None,
         ratio=None, note="", **details) -> dict:
    return {"stage": stage, "construct": construct, "settings": settings, "time_s": time_s, "first_s": first_s,
            "throughput": throughput, "peak_mb": peak_mb, "peer": peer, "peer_s": peer_s, "ratio": ratio,
            "note": note, "details": details}


def _mesh_path(name: str) -> Path:
    return ROOT / "meshes" / f"{name}.stl"


def _sample_idx(n: int, k: int):
    import numpy as np

    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))


def _recipe(S: Settings, printer):
    from bioslicer.recipe import Recipe

    return Recipe.from_printer(printer).updated(strategy="solid", hatch_um=S.hatch_um, slice_um=S.slice_um)


def _tiny_toolpath(printer):
    """A few hatch lines on 2 layers with a speed and power every bundled printer accepts."""
    import numpy as np

    from bioslicer.toolpath import Kind, Toolpath

    y = np.arange(10) * 2.0
    p0 = np.column_stack([np.zeros(20), np.tile(y, 2), np.repeat([0.25, 0.75], 10)])
    p1 = p0 + [40.0, 0.0, 0.0]
    speed = min(max(1000.0, printer.min_speed_um_s), printer.max_speed_um_s)
    return Toolpath.from_segments(p0, p1, Kind.HATCH, np.repeat([0, 1], 10), speed,
                                  min(10.0, printer.max_power_mw), np.array([0.25, 0.75]))


def _planned(S: Settings, name: str, workdir: Path):
    """The planned (unstitched) toolpath of a construct: from the toolpath stage's file, else planned now."""
    from bioslicer.mesh import load_mesh
    from bioslicer.planning import plan_toolpath
    from bioslicer.printers import load_printer
    from bioslicer.toolpath import Toolpath

    f = workdir / f"{name}.planned.npz"
    if f.exists():
        return Toolpath.load(f)
    pr = load_printer(S.printer)
    _log(f"planning {name} (not timed; run the toolpath stage first to reuse its result)")
    tp, _ = plan_toolpath(load_mesh(_mesh_path(name), printer=pr), _recipe(S, pr), pr)
    return tp


def _stitch_args(tp) -> dict:
    rec = tp.meta.get("recipe", {})
    return {"block_size_um": rec.get("block_size_um"), "overlap_um": rec.get("overlap_um", 2.0),
            "shear_deg": rec.get("shear_deg", 0.0)}


def _stitched_reference(S: Settings, workdir: Path):
    """The reference construct stitched and ordered for the default printer (file from the order stage)."""
    from bioslicer.ordering import order_marks
    from bioslicer.printers import load_printer
    from bioslicer.stitching import stitch
    from bioslicer.toolpath import Toolpath

    f = workdir / f"{REFERENCE}.stitched.npz"
    if f.exists():
        return Toolpath.load(f)
    tp = _planned(S, REFERENCE, workdir)
    _log(f"stitching {REFERENCE} (not timed; run the order stage first to reuse its result)")
    return order_marks(stitch(tp, load_printer(S.printer), **_stitch_args(tp)))[0]


def _mb(n_bytes: float) -> float:
    return n_bytes / 1e6


# ============================================================================ stages
def stage_load(S: Settings, workdir: Path) -> dict:
    import peers
    from bioslicer.mesh import load_mesh

    rows = []
    for name in CONSTRUCTS:
        path = _mesh_path(name)
        size = path.stat().st_size
        with Meter() as m1:
            solid = load_mesh(path)
        with Meter() as m2:
            solid = load_mesh(path)
        peers.trimesh_load(path)
        t_peer = _best_of(lambda: peers.trimesh_load(path), repeat=2, min_total_s=0.0)
        nf = len(solid.faces)
        rows.append(_row("load", name, f"{nf:,} faces, {_mb(size):.2f} MB", m2.s, m1.s,
                         f"{nf / m2.s / 1e6:.3f} M faces/s, {_mb(size) / m2.s:.1f} MB/s", max(m1.peak_mb, m2.peak_mb),
                         "trimesh.load", t_peer, t_peer / m2.s,
                         "ours also checks closedness, winding and overlaps",
                         faces=nf, file_bytes=size))
        _log(f"load {name}: {m2.s:.3f} s (trimesh {t_peer:.3f} s)")
    return {"rows": rows}


def stage_intake(S: Settings, workdir: Path) -> dict:
    import trimesh

    from bench_intake import make_mesh
    from bioslicer.mesh import inspect_mesh
    from bioslicer.meshio import read_stl

    sub = 6 if S.mode == "quick" else 7
    path = workdir / f"icosphere_chain_sub{sub}.stl"
    nf = make_mesh(path, 8, sub)   # not timed; the scratch folder is removed afterwards
    size = path.stat().st_size
    data = path.read_bytes()
    with Meter() as m1:
        read_stl(data)
    with Meter() as m2:
        v, f = read_stl(data)
    del data
    n_vertices = len(v)
    del v, f
    with Meter() as mi1:   # before trimesh runs: its freed memory would stay in the process's RSS
        inspect_mesh(path)  # first call: Numba cache loads
    with Meter() as mi:
        rep = inspect_mesh(path)
    t_raw = _best_of(lambda: trimesh.load(str(path), force="mesh", process=False), repeat=1, min_total_s=0.0)
    with Meter() as mp:
        tm = trimesh.load(str(path), force="mesh", process=True)
    same = len(tm.vertices) == n_vertices
    del tm
    settings = f"icosphere chain, {nf:,} faces, {_mb(size):.0f} MB binary STL"
    rows = [_row("intake read", "icosphere_chain", settings, m2.s, m1.s,
                 f"{nf / m2.s / 1e6:.1f} M faces/s, {_mb(size) / m2.s:.0f} MB/s", max(m1.peak_mb, m2.peak_mb),
                 "trimesh.load (merged)", mp.s, mp.s / m2.s,
                 f"read + exact weld; trimesh.load without merging {t_raw:.2f} s; trimesh peak {mp.peak_mb:.0f} MB; "
                 f"same vertex count: {'yes' if same else 'NO'}", faces=nf, vertices=n_vertices, file_bytes=size,
                 peer_peak_mb=mp.peak_mb, trimesh_unmerged_s=t_raw)]
    rows.append(_row("intake inspect", "icosphere_chain", settings, mi.s, mi1.s, f"{nf / mi.s / 1e6:.2f} M faces/s",
                     max(mi.peak_mb, mi1.peak_mb), "", None, None, f"{rep['bodies']} bodies, {len(rep['overlapping_pairs'])} overlapping "
                     "pairs; goal (issue 20, 2.6 M faces): <= 3 s, <= 1 GB; per-phase breakdown: "
                     "benchmarks/bench_intake.py", faces=nf))
    _log(f"intake: read {m2.s:.2f} s (trimesh merged {mp.s:.2f} s), inspect {mi.s:.2f} s")
    path.unlink()
    return {"rows": rows}

def stage_kernel(S: Settings, workdir: Path) -> dict:
    import numpy as np

    import peers
    from bioslicer.mesh import load_mesh, solid_from_trimesh
    from bioslicer.slicing import layer_heights, slice_spans, voxelize

    rows = []
    for name in CONSTRUCTS:
        path = _mesh_path(name)
        solid = load_mesh(path)
        tm = peers.trimesh_load(path)
        lo, hi = solid.bounds_um
        z = layer_heights(lo[2], hi[2], S.slice_um)
        ang = np.mod(np.arange(len(z)) * S.angle_step_deg, 180.0)
        with Meter() as m1:
            sp = slice_spans(solid, z, S.hatch_um, angle_deg=ang)
        n_spans = sp.n_spans
        del sp
        with Meter() as m2:
            sp = slice_spans(solid, z, S.hatch_um, angle_deg=ang)
        assert sp.n_spans == n_spans
        del sp
        nx, ny = (int(np.ceil(a / S.hatch_um)) for a in (hi - lo)[:2])
        vox = float(nx) * ny * len(z)
        # peer 1: section_multiplane + shapely on sampled layers, same rows and angles
        idx = _sample_idx(len(z), S.peer_layers)
        t = time.perf_counter()
        pr_ = peers.multiplane_hatch(tm, z[idx], S.hatch_um, ang[idx])
        t_peer_sample = time.perf_counter() - t
        t_ours_sample = _best_of(lambda: slice_spans(solid, z[idx], S.hatch_um, angle_deg=ang[idx]))
        ours_sample = slice_spans(solid, z[idx], S.hatch_um, angle_deg=ang[idx]).n_spans
        t_peer = t_peer_sample / len(idx) * len(z)
        dev = (pr_["segments"] - ours_sample) / max(ours_sample, 1)
        target = {}
        note = (f"peer extrapolated from {len(idx)} of {len(z)} layers (pieces {pr_['segments']:,} vs our spans "
                f"{ours_sample:,}, {100 * dev:+.1f} %); equal-work ratio on those layers "
                f"{t_peer_sample / t_ours_sample:.0f}x")
        if name == REFERENCE and S.mode == "full":
            ok = m2.s < 30.0
            target = {"goal": "~1 mm^3 at 0.2 x 0.2 x 0.5 um spanned in < 30 s", "met": ok}
            note += f"; goal < 30 s: {'met' if ok else 'NOT met'}"
        rows.append(_row("kernel spans", name, f"{S.label}, {len(z)} layers, rows +{S.angle_step_deg:g}°/layer",
                         m2.s, m1.s, f"{n_spans / m2.s / 1e6:.1f} M spans/s, {vox / m2.s / 1e9:.2f} G vox-eq/s",
                         max(m1.peak_mb, m2.peak_mb), "section_multiplane + shapely", t_peer, t_peer / m2.s, note,
                         spans=n_spans, layers=len(z), voxel_equivalents=vox, spans_per_s=n_spans / m2.s,
                         voxel_equivalents_per_s=vox / m2.s, peer_sample_layers=int(len(idx)),
                         peer_sample_s=t_peer_sample, ours_sample_s=t_ours_sample, peer_pieces=pr_["segments"],
                         our_spans_sample=ours_sample, target=target))
        _log(f"kernel {name}: {n_spans:,} spans in {m2.s:.2f} s (first {m1.s:.2f} s); peer x{t_peer / m2.s:.0f}")
        # peer 2: trimesh voxelizer + fill vs voxelize, same cube of the part, same isotropic pitch
        sub = peers.cut_box(tm, S.voxel_box_um)
        p = S.voxel_pitch_um
        t = time.perf_counter()
        tv = peers.trimesh_voxels(sub, p)
        t_tv = time.perf_counter() - t
        ssub = solid_from_trimesh(sub, check=False)
        with Meter() as mv:
            g = voxelize(ssub, p, p, packed=True)
        t_v = _best_of(lambda: voxelize(ssub, p, p, packed=True))
        n_grid = int(np.prod(g.shape_zyx))
        # overlapping shells (vessel_tree) cut with caps are not watertight: trimesh then fills only
        # the surface voxels, which is not the same work, so no ratio is claimed
        equal = bool(sub.is_watertight)
        note = (f"occupied {g.count():,} vs trimesh {tv['occupied']:,}; trimesh {tv['grid'] / t_tv / 1e6:.3f} "
                f"M voxels/s vs our whole-part kernel {vox / m2.s / 1e6:,.0f} M vox-eq/s")
        if not equal:
            note = ("no ratio: the cube cut of overlapping shells is not watertight, trimesh fills only its "
                    f"surface (not equal work; raw time ratio {t_tv / t_v:.0f}x); ") + note
        ratio = t_tv / t_v if equal else None
        rows.append(_row("kernel voxels", name, f"pitch {p:g} µm, {S.voxel_box_um:g} µm cube ({n_grid:,} voxels)",
                         t_v, mv.s, f"{n_grid / t_v / 1e6:.1f} M voxels/s", mv.peak_mb, "trimesh voxelized().fill()",
                         t_tv, ratio, note, grid_voxels=n_grid, occupied=g.count(), peer_occupied=tv["occupied"],
                         peer_grid=tv["grid"], peer_voxels_per_s=tv["grid"] / t_tv, equal_work=equal,
                         raw_ratio=t_tv / t_v, goal="trimesh voxelizer ratio >= 100x",
                         goal_met=bool(equal and t_tv / t_v >= 100)))
        _log(f"voxels {name}: {t_v:.4f} s vs trimesh {t_tv:.2f} s")
    return {"rows": rows}


def stage_toolpath(S: Settings, workdir: Path) -> dict:
    import numpy as np
    import trimesh

    import peers
    from bioslicer.mesh import load_mesh
    from bioslicer.planning import plan_toolpath
    from bioslicer.printers import load_printer

    pr = load_printer(S.printer)
    t = time.perf_counter()
    plan_toolpath(trimesh.creation.box(extents=(10, 10, 3)), _recipe(S, pr).updated(hatch_um=0.5, slice_um=1.0), pr)
    jit_s = time.perf_counter() - t
    rows = []
    for name in CONSTRUCTS:
        path = _mesh_path(name)
        rec = _recipe(S, pr)
        with Meter() as m:
            t0 = time.perf_counter()
            solid = load_mesh(path, printer=pr)
            t1 = time.perf_counter()
            tp, rep = plan_toolpath(solid, rec, pr)
            plan_s = time.perf_counter() - t1
        load_s = t1 - t0
        L = tp.n_layers
        idx = _sample_idx(L, S.peer_layers)
        ang = rec.layer_angle_deg(L)
        tm = peers.trimesh_load(path)
        t = time.perf_counter()
        pp = peers.multiplane_toolpath(tm, tp.layer_z_um[idx], rec.hatch_um, ang[idx], rec.contour_count,
                                       rec.contour_spacing_um, rec.contour_offset_um)
        t_peer = (time.perf_counter() - t) / len(idx) * L
        hatch = int(rep["marks_by_kind"]["hatch"])
        hatch_sample = int(np.isin(tp.mark_layer[tp.mark_kind == 1], idx).sum())
        note = (f"peer extrapolated from {len(idx)} of {L} layers (hatch pieces {pp['hatch_segments']:,} vs ours "
                f"{hatch_sample:,}); ratio on plan time (load excluded)")
        target = {}
        if name == REFERENCE and S.mode == "full":
            ok_t, ok_m = m.s < 60.0, m.peak_mb < 4096
            target = {"goal": "reference job < 60 s end to end, peak < 4 GB", "time_met": ok_t, "memory_met": ok_m}
            note += f"; goals < 60 s: {'met' if ok_t else 'NOT met'}, < 4 GB: {'met' if ok_m else 'NOT met'}"
        rows.append(_row("toolpath", name, f"solid {S.label}, {rec.contour_count} contours, {L} layers", m.s,
                         m.s + jit_s, f"{tp.n_segments / m.s / 1e6:.2f} M segments/s ({tp.n_segments:,})", m.peak_mb,
                         "section_multiplane + shapely", t_peer, t_peer / plan_s, note, load_s=load_s, plan_s=plan_s,
                         jit_s=jit_s, layers=L, marks=tp.n_marks, segments=tp.n_segments, points=tp.n_points,
                         marks_by_kind=rep["marks_by_kind"], mark_length_um=rep["mark_length_um"],
                         dropped_segments=rep["dropped_segments"], peer_sample_layers=int(len(idx)),
                         peer_hatch_pieces_sample=pp["hatch_segments"], our_hatch_marks_sample=hatch_sample,
                         target=target))
        _log(f"toolpath {name}: {tp.n_segments:,} segments, load {load_s:.2f} s + plan {plan_s:.2f} s; "
             f"peer ~{t_peer:.0f} s")
        tp_z = tp.layer_z_um
        tp.save(workdir / f"{name}.planned.npz")
        del tp
        if name == REFERENCE:
            if peers.pyslm_available():
                py = peers.pyslm_toolpath(path, tp_z[idx], rec.hatch_um, ang[idx], rec.contour_count,
                                          rec.contour_spacing_um)
                t_py = py["layers_s"] / len(idx) * L
                rows.append(_row("toolpath", name, f"solid {S.label}, {rec.contour_count} contours, {L} layers", plan_s,
                                 None, "", None, "PySLM slice + hatch", t_py, t_py / plan_s,
                                 f"peer extrapolated from {len(idx)} of {L} layers (hatch pieces "
                                 f"{py['hatch_segments']:,} vs ours {hatch_sample:,}); time s = our plan time",
                                 peer_hatch_pieces_sample=py["hatch_segments"], peer_sample_layers=int(len(idx))))
            else:
                rows.append(_row("toolpath", name, f"solid {S.label}", None, None, "", None, "PySLM slice + hatch",
                                 None, None, f"n/a: PySLM is not installed ({peers.PYSLM_PIP})"))
    return {"rows": rows, "jit_s": jit_s}


def stage_order(S: Settings, workdir: Path) -> dict:
    from bioslicer.estimate import estimate_print_time
    from bioslicer.ordering import order_marks
    from bioslicer.printers import load_printer
    from bioslicer.stitching import stitch

    pr = load_printer(S.printer)
    t = time.perf_counter()
    tiny = stitch(_tiny_toolpath(pr), pr)
    estimate_print_time(order_marks(tiny)[0], pr)
    jit_s = time.perf_counter() - t
    rows = []
    for name in CONSTRUCTS:
        tp = _planned(S, name, workdir)
        with Meter() as m_st:
            st = stitch(tp, pr, **_stitch_args(tp))
        e0 = estimate_print_time(st, pr)
        n_seg = tp.n_segments
        del tp
        with Meter() as m_or:
            o, orep = order_marks(st)
        del st
        with Meter() as m_es:
            e1 = estimate_print_time(o, pr)
        total = m_st.s + m_or.s + m_es.s
        share = e1.breakdown["stage_move_s"] / e1.total_s if e1.total_s else 0.0
        rows.append(_row(
            "stitch+order", name, f"{S.printer}, {len(o.blocks)} blocks", total, total + jit_s,
            f"{n_seg / total / 1e6:.2f} M segments/s", max(m_st.peak_mb, m_or.peak_mb, m_es.peak_mb), "", None, None,
            f"jump {orep['jump_um_before'] / 1e3:,.1f} -> {orep['jump_um_after'] / 1e3:,.1f} mm, print "
            f"{e0.total_s / 60:,.1f} -> {e1.total_s / 60:,.1f} min, stage moves {100 * share:.2f} %",
            stitch_s=m_st.s, order_s=m_or.s, estimate_s=m_es.s, jit_s=jit_s, segments=n_seg, blocks=len(o.blocks),
            jump_um_before=orep["jump_um_before"], jump_um_after=orep["jump_um_after"],
            print_s_before=e0.total_s, print_s_after=e1.total_s, stage_move_share=share,
            breakdown_after={k: v for k, v in e1.breakdown.items() if not isinstance(v, dict)}))
        _log(f"order {name}: stitch {m_st.s:.2f} s, order {m_or.s:.2f} s, estimate {m_es.s:.2f} s")
        if name == REFERENCE:
            o.save(workdir / f"{REFERENCE}.stitched.npz")
        del o
    return {"rows": rows, "jit_s": jit_s}


def _for_printer(tp, printer):
    """The toolpath with speeds and powers clipped into a printer's range (same geometry)."""
    import dataclasses

    import numpy as np

    return dataclasses.replace(
        tp, mark_speed_um_s=np.clip(tp.mark_speed_um_s, printer.min_speed_um_s, printer.max_speed_um_s),
        power_mw=np.minimum(tp.power_mw, printer.max_power_mw))


def stage_export(S: Settings, workdir: Path) -> dict:
    import shutil

    import peers
    from bioslicer.printers import load_printer
    from bioslicer.programs import DIALECTS, write_program
    from bioslicer.progress import silent
    from bioslicer.stitching import stitch

    text = peers.text_peers(S.text_points, workdir)
    best_name = max(text, key=lambda k: text[k]["mb_s"])
    best = text[best_name]["mb_s"]
    ref = None
    rows = []
    for dialect, pname in S.dialects.items():
        pr = load_printer(pname)
        if pname == S.printer:
            tp = _stitched_reference(S, workdir)
        else:
            if ref is None:
                ref = _planned(S, REFERENCE, workdir)
            tp = stitch(_for_printer(ref, pr), pr, **_stitch_args(ref))
        out = workdir / f"export_{dialect}"
        t = time.perf_counter()
        write_program(stitch(_tiny_toolpath(pr), pr), pr, out / "warm", name="warm", dialect=dialect)
        jit_s = time.perf_counter() - t
        d = DIALECTS[dialect]
        w_s = None
        try:  # the writer alone (no parse-back), through the dialect table
            (out / "w").mkdir(parents=True)
            with Meter() as mw:
                files = d.write(tp, pr, d.spec, out / "w", "part", None, silent)
            w_bytes = sum(Path(f).stat().st_size for f in files)
            w_s = mw.s
        except Exception as exc:  # noqa: BLE001 - an internal signature changed: report, keep going
            _log(f"writer-only timing skipped for {dialect}: {type(exc).__name__}: {exc}")
        shutil.rmtree(out / "w", ignore_errors=True)
        with Meter() as m:
            pf = write_program(tp, pr, out / "e", name="part", dialect=dialect)
        mbs = _mb(pf.n_bytes) / m.s
        w_mbs = _mb(w_bytes) / w_s if w_s else None
        ok = w_mbs is not None and w_mbs >= 100.0
        rows.append(_row(
            f"export {dialect}", REFERENCE, f"{pname}, {tp.n_segments:,} segments, {_mb(pf.n_bytes):,.0f} MB",
            m.s, m.s + jit_s, f"{mbs:.0f} MB/s write+validate" + (f", {w_mbs:.0f} MB/s write" if w_mbs else ""),
            max(m.peak_mb, mw.peak_mb if w_s else 0.0), best_name, _mb(pf.n_bytes) / best, mbs / best,
            f"peer x y z text at {best:.1f} MB/s, time scaled to the same bytes; goal write >= 100 MB/s: "
            f"{'met' if ok else 'NOT met'}",
            bytes=pf.n_bytes, files=len(pf.files), export_s=m.s, write_s=w_s, jit_s=jit_s, export_mb_s=mbs,
            write_mb_s=w_mbs, moves=pf.report.n_moves if pf.report else None, peers=text, goal_met=ok))
        _log(f"export {dialect}: {_mb(pf.n_bytes):.0f} MB in {m.s:.2f} s")
        shutil.rmtree(out, ignore_errors=True)
        del tp
    return {"rows": rows}


def stage_preview(S: Settings, workdir: Path) -> dict:
    from bioslicer.mesh import load_mesh
    from bioslicer.preview import render_png
    from bioslicer.printers import load_printer
    from bioslicer.stitching import stitch

    pr = load_printer(S.printer)
    tp = _stitched_reference(S, workdir)
    solid = load_mesh(_mesh_path(REFERENCE))
    t = time.perf_counter()
    render_png(workdir / "warm.png", toolpath=stitch(_tiny_toolpath(pr), pr), window_size=(200, 150))
    jit_s = time.perf_counter() - t
    with Meter() as m:
        out = render_png(workdir / "preview.png", toolpath=tp, mesh=solid, window_size=tuple(S.window))
    size = out.stat().st_size
    out.unlink()
    row = _row("preview", REFERENCE, f"{S.window[0]}x{S.window[1]} offscreen, with mesh", m.s, m.s + jit_s,
               f"{tp.n_segments / m.s / 1e6:.2f} M segments/s in", m.peak_mb, "", None, None,
               f"PNG {size / 1e3:.0f} kB; first-call column includes the VTK context set-up",
               segments=tp.n_segments, png_bytes=size, jit_s=jit_s)
    _log(f"preview: {m.s:.2f} s")
    return {"rows": [row]}


def _program_digest(job_path: Path, files) -> str:
    import hashlib

    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode())
        h.update((job_path / rel).read_bytes())
    return h.hexdigest()


def _layer_preview_row(res, S: Settings) -> dict:
    """Issue 24: time to show one layer of the job's program (`bioslicer preview JOB --layer K --2d`)."""
    try:
        from bioslicer.preview import load_preview_source, views, write_plotter_png

        with Meter() as m:
            src = load_preview_source(res.path)
            idx = views.source_index(src)
            k = views.default_program_layer(idx)
            p = views.program_layer_plotter(src, idx, k, window_size=(1200, 900))
            write_plotter_png(res.path.parent / "bench_program_layer.png", p)
        info = p.preview_info
        n_bytes = int(idx.file_bytes.sum())
        _log(f"preview layer {k}: {m.s:.2f} s")
        return _row("preview layer", REFERENCE, f"one layer ({k}) of the {idx.dialect} program through "
                    "program_index.npz, 2-D PNG 1200 x 900", m.s, None,
                    f"{info['n_marks']:,} marks of a {_mb(n_bytes):.0f} MB program", m.peak_mb, "", None, None,
                    f"index built with the job in {res.timings_s.get('program_index_s', float('nan')):.1f} s",
                    layer=k, program_bytes=n_bytes, n_marks=info["n_marks"],
                    ranges=int(len(info["program_layers"].ranges)))
    except Exception as exc:  # noqa: BLE001 - a stage being restructured: record and move on
        return _row("preview layer", REFERENCE, "one layer of the job's program", None, None, "", None, "", None,
                    None, f"failed: {_one_line(exc)}", error=_one_line(exc))


def job_split_s(timings: dict) -> dict:
    """The time split of a job from ``JobResult.timings_s``: plan, stitch, order, write, estimate (each
    summed over the blocks; on a cluster, worker seconds), then the main program, what is left of the
    parse-back validation after the blocks, the program index, the preview and the manifest (wall
    seconds); ``check_thread``: seconds the parse-back thread read while the blocks ran (overlapped,
    not part of the total)."""
    blocks = timings.get("block_stages_s", {})
    split = {k: float(blocks.get(f"{k}_s", 0.0)) for k in ("plan", "stitch", "order", "write", "estimate")}
    for k in ("main", "validate", "program_index", "preview", "manifest"):
        split[k] = float(timings.get(f"{k}_s", 0.0))
    split["check_thread"] = float(timings.get("check_thread_s", 0.0))
    return split


def stage_job(S: Settings, workdir: Path) -> dict:
    import shutil

    overrides = {"strategy": "solid", "hatch_um": S.hatch_um, "slice_um": S.slice_um}
    mesh = _mesh_path(REFERENCE)
    rows = []
    local = None
    try:
        from bioslicer.pipeline import slice_to_job

        # warm-up: every kernel and the program writer on a small part, without its preview: VTK's
        # offscreen renderer stays about 0.3 GB resident once started, which `bioslicer slice`
        # has only after its blocks (at the preview), so the job's peak RSS is measured as a
        # fresh process has it (its preview starts VTK, as the CLI's does)
        t = time.perf_counter()
        slice_to_job(_mesh_path("calibration"), workdir / "job_warm", printer=S.printer, overwrite=True,
                     overrides={"strategy": "solid", "hatch_um": 2.0, "slice_um": 4.0}, preview=False)
        jit_s = time.perf_counter() - t
        shutil.rmtree(workdir / "job_warm", ignore_errors=True)
        with Meter() as m:
            res = slice_to_job(mesh, workdir / "job_local", printer=S.printer, overrides=overrides, overwrite=True)
        man = res.manifest
        prog = man.get("program", {}).get("files", [])
        n_bytes = sum((res.path / f).stat().st_size for f in prog)
        seg = man.get("counts", {}).get("segments")
        local = (m.s, _program_digest(res.path, prog))
        split = job_split_s(res.timings_s)
        note = (f"{_mb(n_bytes):.0f} MB of program; split (block stages summed) "
                + ", ".join(f"{k} {v:.1f} s" for k, v in split.items())
                + " (check_thread: the parse-back of each block file beside the block loop, overlapped; "
                f"streamed reading confirmed: {'yes' if res.timings_s.get('check_streamed') else 'no'})")
        target = {}
        if S.mode == "full":
            ok_t, ok_m = m.s <= 15.0, m.peak_mb <= 1024
            target = {"goal": "reference job <= 15 s, peak <= 1 GB (issue 20)", "time_met": ok_t, "memory_met": ok_m}
            note += f"; goals <= 15 s: {'met' if ok_t else 'NOT met'}, <= 1 GB: {'met' if ok_m else 'NOT met'}"
        rows.append(_row("job", REFERENCE, f"slice_to_job, solid {S.label}, {S.printer}", m.s, m.s + jit_s,
                         (f"{seg / m.s / 1e6:.2f} M segments/s, " if seg else "") + f"{_mb(n_bytes) / m.s:.0f} MB/s "
                         "program", m.peak_mb, "", None, None, note,
                         timings_s=res.timings_s, split_s=split, program_bytes=n_bytes, segments=seg, jit_s=jit_s,
                         target=target))
        _log(f"job local: {m.s:.2f} s")
        rows.append(_layer_preview_row(res, S))
        shutil.rmtree(res.path, ignore_errors=True)
    except Exception as exc:  # noqa: BLE001 - a stage being restructured: record and move on
        rows.append(_row("job", REFERENCE, f"slice_to_job, solid {S.label}", None, None, "", None, "", None, None,
                         f"failed: {_one_line(exc)}", error=_one_line(exc)))
        _log(f"job local failed: {_one_line(exc)}")
    # issue 12: the same job on a local Dask cluster
    settings = f"--workers {S.workers} (Dask LocalCluster)"
    if local is None:
        rows.append(_row("job cluster", REFERENCE, settings, None, None, "", None, "local run", None, None,
                         "n/a: the local job failed"))
        return {"rows": rows}
    try:
        from bioslicer.cluster import dask_client
        from bioslicer.pipeline import slice_to_job

        with Meter() as m:
            with dask_client(workers=S.workers) as client:
                res = slice_to_job(mesh, workdir / "job_dask", printer=S.printer, overrides=overrides,
                                   overwrite=True, client=client)
        prog = res.manifest.get("program", {}).get("files", [])
        same = _program_digest(res.path, prog) == local[1]
        ok = same and local[0] / m.s >= 1.6
        rows.append(_row("job cluster", REFERENCE, settings, m.s, None, "", m.peak_mb, "local run", local[0],
                         local[0] / m.s, f"program bytes identical to the local run: {'yes' if same else 'NO'}; "
                         "peak MB is the client process only (workers are separate processes); includes "
                         f"cluster start-up; goal >= 1.6x on 2 cores, same bytes: {'met' if ok else 'NOT met'}",
                         identical=same, timings_s=res.timings_s, split_s=job_split_s(res.timings_s),
                         goal_met=ok))
        shutil.rmtree(res.path, ignore_errors=True)
        _log(f"job dask: {m.s:.2f} s")
    except Exception as exc:  # noqa: BLE001
        rows.append(_row("job cluster", REFERENCE, settings, None, None, "", None, "local run", local[0], None,
                         f"n/a: {_one_line(exc)}", error=_one_line(exc)))
        _log(f"job dask failed: {_one_line(exc)}")
    return {"rows": rows}


def stage_array(S: Settings, workdir: Path) -> dict:
    """Issue 19: a 10 x 10 dose array of the 30 µm cube at 0.2 x 0.5 µm (the profile's defaults, in
    quick mode too: it is small), sliced, written, validated, with its preview; goal <= 15 s."""
    try:
        from bench_array import GOAL_S, PRINTER, run_array

        t = time.perf_counter()
        run_array(workdir / "array_warm", varies=("power_mw.hatch=10,12",))
        jit_s = time.perf_counter() - t
        with Meter() as m:
            r = run_array(workdir / "array")
        ok = m.s <= GOAL_S
        note = (f"{r['blocks']} blocks, {r['program_files']} program files; CPU {r['cpu_s']:.1f} s; split "
                + ", ".join(f"{k} {v:.2f} s" for k, v in r["split_s"].items())
                + f"; goal <= {GOAL_S:g} s: {'met' if ok else 'NOT met'}")
        _log(f"array: {m.s:.2f} s")
        return {"rows": [_row("array", "test cube", f"10 x 10 cells, 0.2 x 0.5 µm, {PRINTER}", m.s, m.s + jit_s,
                              f"{r['marks'] / m.s / 1e6:.2f} M marks/s", m.peak_mb, "", None, None, note,
                              split_s=r["split_s"], cpu_s=r["cpu_s"], digest=r["digest"], jit_s=jit_s,
                              program_bytes=r["program_bytes"], goal_met=ok)]}
    except Exception as exc:  # noqa: BLE001 - record and move on
        return {"rows": [_row("array", "test cube", "10 x 10 cells", None, None, "", None, "", None, None,
                              f"failed: {_one_line(exc)}", error=_one_line(exc))]}


def _one_line(exc) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:300]


STAGE_FUNCS = {"load": stage_load, "intake": stage_intake, "kernel": stage_kernel, "toolpath": stage_toolpath, "order": stage_order,
               "export": stage_export, "preview": stage_preview, "job": stage_job, "array": stage_array}


def child_main(stage: str, quick: bool, workdir: Path, result: Path) -> int:
    sys.path.insert(0, str(BENCH))
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("PYVISTA_OFF_SCREEN", "true")
    S = Settings(quick)
    t = time.perf_counter()
    import numpy  # noqa: F401  - imports outside the measured blocks

    import bioslicer  # noqa: F401
    out = STAGE_FUNCS[stage](S, workdir)
    out["child_s"] = time.perf_counter() - t
    out["process_peak_mb"] = max(_PEAK["mb"], _peak_mb())
    result.write_text(json.dumps(out, sort_keys=True, default=_jsonable))
    return 0


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


# ============================================================================ parent side
def machine_info() -> dict:
    """CPU, cores, memory, versions and date (read without importing the numeric stack)."""
    from importlib import metadata

    cpu = ""
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    mem_gb = None
    try:
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal:"):
                mem_gb = round(int(ln.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    versions = {}
    for pkg in ("bioslicer", "numpy", "numba", "trimesh", "shapely", "pyvista", "vtk", "manifold3d", "distributed",
                "PythonSLM"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    commit = None
    try:
        head = (ROOT / ".git" / "HEAD").read_text().strip()
        commit = (ROOT / ".git" / head[5:]).read_text().strip() if head.startswith("ref: ") else head
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": commit,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
    }


def run_stage(stage: str, S: Settings, workdir: Path) -> dict:
    """Run one stage in a child process; returns its rows and process figures (wall, peak RSS)."""
    result = workdir / f"{stage}.result.json"
    log = workdir / f"{stage}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--workdir", str(workdir),
           "--result", str(result)] + (["--quick"] if S.mode == "quick" else [])
    t0 = time.perf_counter()
    with open(log, "w") as fh, open(log, "r", errors="replace") as tail:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT),
                             start_new_session=True)
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            sys.stderr.write(tail.read())   # the child's progress lines, as they come
            if pid:
                break
            if time.perf_counter() - t0 > S.stage_timeout_s:
                os.killpg(p.pid, signal.SIGKILL)  # the child's own process group (it and its workers)
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.2)
        sys.stderr.write(tail.read())
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    info = {"wall_s": wall, "process_peak_mb": ru.ru_maxrss / 1024, "exit_code": p.returncode}
    if p.returncode == 0 and result.exists():
        out = json.loads(result.read_text())
        info.update(status="ok", child_s=out.get("child_s"), jit_s=out.get("jit_s"),
                    process_peak_mb=max(info["process_peak_mb"], out.get("process_peak_mb") or 0.0))
        return {"info": info, "rows": out["rows"]}
    tail = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or ["no output"]
    reason = "timed out" if wall > S.stage_timeout_s else f"exit code {p.returncode}"
    info.update(status="failed", error=f"{reason}: {tail[0][:300]}")
    return {"info": info, "rows": [_row(stage, "-", "", None, None, "", None, "", None, None,
                                        f"stage failed ({info['error']})")]}


def _fmt_s(v) -> str:
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _fmt_ratio(v) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}x" if v >= 10 else f"{v:.2f}x"


def markdown(doc: dict) -> str:
    """The results as Markdown: machine line, the main table, the ordering table."""
    m = doc["machine"]
    v = m["versions"]
    lines = [f"bioslicer benchmarks, `{doc['mode']}` settings ({doc['settings_label']}), {m['date_utc']}",
             "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}, numpy "
             f"{v.get('numpy')}, numba {v.get('numba')}, trimesh {v.get('trimesh')}, shapely {v.get('shapely')}; "
             f"load average at start {m['load_average_at_start'][0]} (shared machine: times vary run to run)",
             "",
             "| stage | construct | settings | time s | 1st call s | throughput | peak MB | peer | peer s | ratio "
             "| note |",
             "|---|---|---|---:|---:|---|---:|---|---:|---:|---|"]
    for r in doc["rows"]:
        peak = "—" if r["peak_mb"] is None else f"{r['peak_mb']:,.0f}"
        lines.append(f"| {r['stage']} | {r['construct']} | {r['settings']} | {_fmt_s(r['time_s'])} | "
                     f"{_fmt_s(r['first_s'])} | {r['throughput'] or '—'} | {peak} | {r['peer'] or '—'} | "
                     f"{_fmt_s(r['peer_s'])} | {_fmt_ratio(r['ratio'])} | {r['note']} |")
    order = [r for r in doc["rows"] if r["stage"] == "stitch+order" and r["time_s"] is not None]
    if order:
        lines += ["", "Ordering and print time (estimated, before -> after `order_marks`):", "",
                  "| construct | segments | blocks | jump before mm | jump after mm | print before | print after | "
                  "stage moves | stitch / order / estimate s |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in order:
            d = r["details"]
            lines.append(f"| {r['construct']} | {d['segments']:,} | {d['blocks']} | "
                         f"{d['jump_um_before'] / 1e3:,.1f} | {d['jump_um_after'] / 1e3:,.1f} | "
                         f"{_dur(d['print_s_before'])} | {_dur(d['print_s_after'])} | "
                         f"{100 * d['stage_move_share']:.2f} % | {d['stitch_s']:.2f} / {d['order_s']:.2f} / "
                         f"{d['estimate_s']:.2f} |")
    failed = [f"{k}: {i['error']}" for k, i in doc["stages"].items() if i.get("status") != "ok"]
    if failed:
        lines += ["", "Failed stages: " + "; ".join(failed)]
    return "\n".join(lines) + "\n"


def _dur(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


README_BEGIN = "<!-- latest-results:begin -->"
README_END = "<!-- latest-results:end -->"


def update_readme(md: str, out: Path) -> None:
    """Put the table between the markers of benchmarks/README.md."""
    readme = BENCH / "README.md"
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"error: {readme} has no {README_BEGIN} ... {README_END} markers")
    a = text.index(README_BEGIN) + len(README_BEGIN)
    b = text.index(README_END)
    try:
        rel = out.resolve().relative_to(ROOT)
    except ValueError:
        rel = out
    body = f"\n(from `{rel}`, written by `benchmarks/run.py`)\n\n{md}"
    _atomic_write(readme, text[:a] + body + text[b:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: .venv/bin/python benchmarks/run.py --quick --only kernel")
    ap.add_argument("--quick", action="store_true", help="coarse settings (1 x 2 µm), about 2 minutes")
    ap.add_argument("--only", nargs="+", choices=STAGES, metavar="STAGE",
                    help=f"run only these stages ({', '.join(STAGES)})")
    ap.add_argument("--out", default=None, help="JSON results file (default benchmarks/results/latest[-quick].json)")
    ap.add_argument("--update-readme", action="store_true", help="also put the table into benchmarks/README.md")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (toolpaths, logs)")
    ap.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child_main(a.child, a.quick, Path(a.workdir), Path(a.result))

    S = Settings(a.quick)
    stages = [s for s in STAGES if not a.only or s in a.only]
    out = Path(a.out) if a.out else BENCH / "results" / ("latest-quick.json" if a.quick else "latest.json")
    doc = {"format": FORMAT, "mode": S.mode, "settings": S.to_dict(), "settings_label": S.label,
           "machine": machine_info(), "stages": {}, "rows": []}
    workdir = Path(tempfile.mkdtemp(prefix="bioslicer_bench_"))
    print(f"bioslicer benchmarks ({S.mode}: {S.label}); scratch {workdir}", file=sys.stderr, flush=True)
    t_all = time.perf_counter()
    try:
        for st in stages:
            print(f"[{st}]", file=sys.stderr, flush=True)
            r = run_stage(st, S, workdir)
            doc["stages"][st] = r["info"]
            doc["rows"].extend(r["rows"])
            print(f"[{st}] {r['info']['status']} in {r['info']['wall_s']:.1f} s, process peak "
                  f"{r['info']['process_peak_mb']:.0f} MB", file=sys.stderr, flush=True)
    finally:
        if a.keep:
            print(f"scratch kept in {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    doc["total_s"] = time.perf_counter() - t_all
    _atomic_write(out, json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    md = markdown(doc)
    print(md)
    print(f"results written to {out}", file=sys.stderr)
    if a.update_readme:
        update_readme(md, out)
    return 0 if all(i.get("status") == "ok" for i in doc["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
