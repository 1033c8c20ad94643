"""The operator's report of a job (``report.txt``): the manifest's facts for people."""

from __future__ import annotations

import math

#: recipe keys the operator's report shows, in this order, when present and set
RECIPE_HIGHLIGHTS = ("strategy", "slice_um", "hatch_um", "hatch_angle_deg", "hatch_angle_step_deg", "contour_count",
                     "contour_spacing_um", "power_mw", "speed_um_s", "block_size_um", "overlap_um", "shear_deg",
                     "depth_mode", "power_field_path", "z_offset_um")


def format_hms(seconds: float) -> str:
    """Seconds as ``h:mm:ss`` (rounded to the second)."""
    if seconds is None or not math.isfinite(float(seconds)):
        return "?"
    s = int(round(float(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"



def _fmt_num(v, unit: str = "") -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}{unit}"
    if isinstance(v, float):
        return f"{v:.6g}{unit}"
    return f"{v}{unit}"


def _fmt_value(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt_value(x)}" for k, x in sorted(v.items()))
    if isinstance(v, list):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _fmt_len_um(v) -> str:
    if not isinstance(v, (int, float)):
        return "?"
    return f"{v / 1000:.3f} mm" if abs(v) >= 1000 else f"{v:.3f} µm"


def rec_levels(manifest: dict):
    """The job's ``power_levels`` (from its recipe), or '?'."""
    rec = manifest.get("recipe")
    return rec.get("power_levels", "?") if isinstance(rec, dict) else "?"


def power_clip_line(clip: dict | None) -> str | None:
    """The one line a person reads about power clipping in a job (None: nothing clipped)."""
    if not clip:
        return None
    w = clip["where"]
    return (f"POWER CLIPPED at the laser maximum {clip['max_power_mw']:g} mW: {clip['points']:,} points, "
            f"{100 * clip['share_of_mark_length']:.1f} % of the mark length; largest request "
            f"{clip['max_request_mw']:.4g} mW (block {w['block']}, layer {w['layer']}, depth {w['depth_um']:.1f} µm)")


def job_summary(manifest: dict) -> str:
    """The operator's report of a job: part, printer, program, size, time, checks, recipe.

    Parameters
    ----------
    manifest : dict
        A job manifest (``files`` may be absent: the report is written before the manifest).

    Returns
    -------
    str
        Plain UTF-8 text, one fact per line, ending with a newline. Deterministic.
    """
    g = lambda d, k, default=None: d.get(k, default) if isinstance(d, dict) else default  # noqa: E731
    mesh = manifest.get("mesh") or {}
    pr = manifest.get("printer") or {}
    prog = manifest.get("program") or {}
    counts = manifest.get("counts") or {}
    est = manifest.get("estimate") or {}
    val = manifest.get("validation") or {}
    sw = manifest.get("software") or {}
    lines = ["bioslicer print job", "===================", ""]
    clip = power_clip_line(manifest.get("power_clip"))
    if clip:
        lines += [clip, ""]

    def row(label, text):
        lines.append(f"{label:<14}{text}")

    sha = g(mesh, "sha256") or ""
    row("Part", f"{g(mesh, 'file', '?')} (file units {g(mesh, 'units', '?')}, sha256 {sha[:16]}…)"
        if sha else f"{g(mesh, 'file', '?')}")
    row("Printer", f"{g(pr, 'name', '?')} — objective {g(pr, 'objective') or '?'}")
    if g(pr, "description"):
        row("", str(pr["description"]))
    if "field_size_um" in pr:
        row("Field", f"{g(pr, 'field_shape', '?')} {_fmt_num(pr['field_size_um'])} µm, "
            f"z range {_fmt_num(g(pr, 'z_range_um'))} µm")
    files = prog.get("files") or []
    row("Program", f"{g(prog, 'dialect', '?')}, main file {g(prog, 'main', '?')} ({len(files)} program file"
        f"{'s' if len(files) != 1 else ''})")
    pl = manifest.get("placement")
    if isinstance(pl, dict):
        row("Placement", f"{'on the substrate, centred at the start position' if pl.get('mode') == 'substrate' else 'mesh coordinates kept'}"
            f"{', FLOATING above the interface' if pl.get('floating') else ''}; interface finding "
            f"{pl.get('find_interface', '?')}")
        zf = pl.get("focal_shift_factor")
        if isinstance(zf, (int, float)) and zf != 1:
            row("Focal shift", f"z commanded = {zf:g} × physical z above the interface (focal_shift_factor, "
                "index mismatch); program, size, estimate and preview are in commanded z")
        if pl.get("tilt_correction") == "measure":
            n = pl.get("tilt_points") or "?"
            row("Tilt", f"MeasureTilt {n} ({n} × {n} interface points) and TiltCorrectionOn before the first "
                "FindInterfaceAt; measuring time is not in the estimate")
        if pl.get("scale"):
            row("Scale", "part scaled × " + " × ".join(f"{f:g}" for f in pl["scale"])
                + " (x × y × z, shrink/swell compensation, before slicing)")
    b = manifest.get("bounds_um")
    if isinstance(b, list) and len(b) == 2:
        lo, hi = b
        size = [h - l for l, h in zip(lo, hi)]
        row("Size", " × ".join(f"{s:.1f}" for s in size) + " µm (x × y × z)")
        row("Bounding box", "(" + ", ".join(f"{v:.1f}" for v in lo) + ") to ("
            + ", ".join(f"{v:.1f}" for v in hi) + ") µm")
    grid = g(counts, "grid_blocks")
    row("Blocks", f"{_fmt_num(g(counts, 'blocks'))} stage positions with marks"
        + (f" (of {_fmt_num(grid)} in the stitching grid)" if grid else ""))
    row("Layers", _fmt_num(g(counts, "layers")))
    row("Marks", f"{_fmt_num(g(counts, 'marks'))} ({_fmt_num(g(counts, 'segments'))} segments, "
        f"{_fmt_num(g(counts, 'points'))} points)")
    row("Mark length", _fmt_len_um(g(counts, "mark_length_um")))
    row("Jump length", _fmt_len_um(g(counts, "jump_length_um")))
    dropped = g(counts, "dropped_segments", 0)
    if dropped:
        row("Dropped", f"{_fmt_num(dropped)} segments shorter than min_segment_um (not written)")
    sets = manifest.get("parameter_sets")
    if isinstance(sets, list) and sets:
        mod = sorted({str((d.get("source") or {}).get("modulation")) for d in sets} - {"None"})
        row("Parameters", f"{len(sets)} parameter set{'s' if len(sets) != 1 else ''}"
            + (f" (power modulated by {', '.join(mod)}, {rec_levels(manifest)} levels)" if mod else "")
            + "; `bioslicer job info --sets` lists them")
    per = est.get("per_block_s") or []
    row("Print time", f"{format_hms(g(est, 'total_s'))} (h:mm:ss, estimated)")
    if per:
        if len(per) <= 12:
            row("Per block", ", ".join(format_hms(s) for s in per))
        else:
            row("Per block", f"{len(per)} blocks, shortest {format_hms(min(per))}, "
                f"longest {format_hms(max(per))}")
    bd = est.get("breakdown")
    if isinstance(bd, dict):
        split = [(k[:-2] if k.endswith("_s") else k, v) for k, v in sorted(bd.items())
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if split:
            row("Time split", ", ".join(f"{k} {format_hms(v)}" for k, v in split))
    viol = val.get("violations") or []
    if val.get("ok") is True:
        row("Validation", f"OK against {g(pr, 'name', '?')} ({_fmt_num(g(val, 'n_moves', 0))} moves checked)")
    else:
        row("Validation", f"FAILED: {len(viol)} violation(s) against {g(pr, 'name', '?')} — do not print")
        for v in viol[:5]:
            if isinstance(v, dict):
                row("", f"{v.get('file', '?')}:{v.get('line', '?')}: {v.get('message', '')}")
            else:
                row("", str(v))
    pf = manifest.get("perfusion")
    if isinstance(pf, dict) and "enclosed_void_um3" in pf:
        ends = f", {len(pf['openings'])} open vessel end(s)" if isinstance(pf.get("openings"), list) else ""
        row("Perfusion", f"enclosed voids {pf['enclosed_void_um3']:.4g} µm³{ends} (unprinted space flooded from "
            "outside)")
    cmp = manifest.get("compare")
    if isinstance(cmp, dict) and "design_um3" in cmp:
        v = cmp.get("voxel_um") or [0, 0, 0]
        row("Design/print", f"printed {cmp['printed_um3']:,.0f} of {cmp['design_um3']:,.0f} µm³ designed "
            f"({cmp['difference_pct']:+.2f} %): missing {cmp['missing_um3']:,.0f}, extra {cmp['extra_um3']:,.0f} µm³ "
            f"(voxels {v[0]:g} x {v[1]:g} x {v[2]:g} µm, from the program)")
    elif isinstance(cmp, dict) and cmp.get("skipped"):
        row("Design/print", f"not compared at slice time: {cmp['skipped']}")
    rec = manifest.get("recipe") or {}
    if isinstance(rec, dict) and rec:
        keys = [k for k in RECIPE_HIGHLIGHTS if rec.get(k) is not None]
        if not keys:  # an unfamiliar recipe: show every set value
            keys = sorted(k for k in rec if rec[k] is not None)
        lines.append("")
        lines.append("Recipe (highlights; every parameter is in manifest.json)")
        for k in keys:
            lines.append(f"  {k:<24}{_fmt_value(rec[k])}")
    lines.append("")
    lines.append(f"Software      {g(sw, 'name', 'bioslicer')} {g(sw, 'version', '?')}")
    lines.append(f"Preview       {manifest.get('preview') or 'none'}")
    if manifest.get("content_sha256"):
        lines.append(f"Manifest      sha256 {manifest['content_sha256']} (its content without 'files')")
    fl = manifest.get("files")
    if isinstance(fl, dict) and fl:
        lines.append("")
        lines.append("Files (SHA-256)")
        for rel in sorted(fl):
            lines.append(f"  {fl[rel]}  {rel}")
    return "\n".join(lines) + "\n"

