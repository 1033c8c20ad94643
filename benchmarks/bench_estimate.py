"""Benchmark: `bioslicer estimate MESH` (pipeline.estimate_mesh) against the job it estimates.

For each mesh: a warm-up (every kernel on a small part), then ``estimate_mesh`` and
``slice_to_job`` (no preview) timed on the same settings, and one row: estimate time / slice
time, and the relative error of the estimate in print time, marks, mark length, program bytes
and blocks against the job's manifest.

    PYTHONPATH=. python benchmarks/bench_estimate.py                        # vessel_tree + channel_block
    PYTHONPATH=. python benchmarks/bench_estimate.py meshes/vessel_tree.stl --hatch 0.4 --slice 1 --json

Settings default to the printer's recipe (0.2 µm hatch x 0.5 µm slices on the 25x); ``--hatch``
and ``--slice`` coarsen them. Wall times on a shared machine vary by tens of per cent.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compare(mesh: Path, printer: str, overrides: dict, workdir: Path) -> dict:
    """Estimate and slice ``mesh``; the estimate's figures, the job's, their relative errors and times."""
    from bioslicer.pipeline import estimate_mesh, slice_to_job

    t = time.perf_counter()
    e = estimate_mesh(mesh, printer, overrides=overrides)
    est_s = time.perf_counter() - t
    t = time.perf_counter()
    r = slice_to_job(mesh, workdir / f"{mesh.stem}_job", printer, overrides=overrides, preview=False, overwrite=True)
    job_s = time.perf_counter() - t
    man = r.manifest
    real = {"total_s": man["estimate"]["total_s"], "marks": man["counts"]["marks"],
            "mark_length_um": man["counts"]["mark_length_um"],
            "program_bytes": sum((r.path / f).stat().st_size for f in man["program"]["files"]),
            "blocks": man["counts"]["blocks"]}
    guess = {"total_s": e["estimate"]["total_s"], "marks": e["marks"],
             "mark_length_um": e["estimate"]["breakdown"]["counts"]["mark_length_um"],
             "program_bytes": e["program_bytes"], "blocks": e["blocks"]}
    shutil.rmtree(r.path, ignore_errors=True)
    err = {k: (guess[k] - real[k]) / real[k] if real[k] else 0.0 for k in real}
    return {"mesh": mesh.name, "printer": printer, "overrides": overrides, "estimate_s": est_s, "slice_s": job_s,
            "ratio": est_s / job_s, "layers": e["layers"], "layers_planned": e["layers_planned"],
            "estimate": guess, "job": real, "rel_error": err}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("meshes", nargs="*", type=Path,
                    default=[ROOT / "meshes" / "vessel_tree.stl", ROOT / "meshes" / "channel_block.stl"])
    ap.add_argument("--printer", default="nanoscribe-gt2-25x")
    ap.add_argument("--hatch", type=float, default=None, help="hatch_um (default: the printer's)")
    ap.add_argument("--slice", type=float, default=None, help="slice_um (default: the printer's)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    ov = {k: v for k, v in (("hatch_um", a.hatch), ("slice_um", a.slice)) if v is not None}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        from bioslicer.pipeline import estimate_mesh, slice_to_job

        warm = ROOT / "meshes" / "calibration.stl"      # compile / load every kernel first
        wov = {"hatch_um": 2.0, "slice_um": 4.0}
        estimate_mesh(warm, a.printer, overrides=wov)
        slice_to_job(warm, Path(tmp) / "warm", a.printer, overrides=wov, preview=False)
        for m in a.meshes:
            rows.append(compare(m, a.printer, ov, Path(tmp)))
            print(f"  {m.name}: done", file=sys.stderr, flush=True)
    if a.json:
        print(json.dumps(rows, indent=1, sort_keys=True))
        return 0
    print("| mesh | settings | estimate s | slice s | ratio | time err | marks err | length err | bytes err | blocks |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e = r["rel_error"]
        s = ", ".join(f"{k}={v:g}" for k, v in r["overrides"].items()) or "printer defaults"
        print(f"| {r['mesh']} | {s} | {r['estimate_s']:.2f} | {r['slice_s']:.2f} | {r['ratio']:.2f} | "
              f"{e['total_s']:+.1%} | {e['marks']:+.1%} | {e['mark_length_um']:+.1%} | {e['program_bytes']:+.1%} | "
              f"{r['estimate']['blocks']} / {r['job']['blocks']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
