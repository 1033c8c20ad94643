"""Parameter sets: which laser parameters a mark is written with, and where they came from.

A *parameter set* is one combination of power (mW), scan speed (µm/s) and the printer's laser
delays. Every mark carries the id of its set (``Toolpath.mark_set``, set by
:func:`bioslicer.exposure.apply_exposure`); the job manifest lists the sets with their
provenance (``parameter_sets``) and ``bioslicer job info --sets`` prints them.

Ids are computed from the recipe alone, so every block of a job (here or on a cluster) gives the
same mark the same id without talking to the others:

- power not modulated (``depth_mode = "none"`` and no power field): one set per mark kind,
  ``id = kind`` (0 contour, 1 hatch, ...), power and speed from ``power_mw.<kind>`` and
  ``speed_um_s.<kind>``;
- depth compensation and/or a power field: the power is rounded to ``power_levels`` levels
  between 0 and the laser's maximum (:func:`quantize_power`) and ``id = n_kinds + kind *
  power_levels + level``, the level being that of the mark's first point (a power field may
  step the power along a mark through neighbouring levels; those points are written point by
  point as before).

Jobs of several recipes (dose arrays) add ``source * SOURCE_STRIDE`` to the ids of source
``source`` (an array cell), so ids stay unique across the job (``BlockPlan.set_source``).

Program writers emit a power or speed command only where the written value changes, so a
parameter change appears in a program only where the set changes (never more often; two sets
with equal values need none).
"""

from __future__ import annotations

import numpy as np

from .toolpath import Kind

#: ids of source k (array cell k) are k * SOURCE_STRIDE + the id within its recipe
SOURCE_STRIDE = 2**20


def modulation(recipe, has_field: bool) -> str | None:
    """What modulates the nominal per-kind power: None, 'depth', 'power-field' or 'depth+power-field'."""
    parts = []
    if recipe.depth_mode != "none":
        parts.append("depth")
    if has_field:
        parts.append("power-field")
    return "+".join(parts) or None


def power_step_mw(recipe, printer) -> float:
    """Power between neighbouring levels when the power is modulated, mW."""
    return float(printer.max_power_mw) / (int(recipe.power_levels) - 1)


def quantize_power(power_mw: np.ndarray, recipe, printer) -> tuple[np.ndarray, np.ndarray]:
    """Round a modulated power to ``recipe.power_levels`` levels over [0, laser maximum].

    Parameters
    ----------
    power_mw : (N,) float
        Requested power per point (already clipped to the laser's maximum), mW.

    Returns
    -------
    (power_mw, level) : (N,) float64, (N,) int32
        The rounded power (mW) and its level 0 .. power_levels-1.
    """
    n = int(recipe.power_levels) - 1
    top = float(printer.max_power_mw)
    level = np.clip(np.rint(np.asarray(power_mw, dtype=np.float64) * (n / top)), 0, n)
    return level * top / n, level.astype(np.int32)     # the top level is exactly the maximum


def mark_set_ids(mark_kind: np.ndarray, first_level: np.ndarray | None, recipe) -> np.ndarray:
    """(M,) int32 set id of every mark (see the module docstring); ``first_level`` None: not modulated."""
    if first_level is None:
        return np.array(mark_kind, dtype=np.int32)      # one copy
    kind = np.asarray(mark_kind, dtype=np.int32)
    return (len(Kind) + kind * int(recipe.power_levels) + np.asarray(first_level, dtype=np.int32)).astype(np.int32)


def describe_set(set_id: int, recipe, printer, mod: str | None) -> dict:
    """The parameter set ``set_id``: power, speed, delays and where they came from."""
    source, set_id = divmod(int(set_id), SOURCE_STRIDE)
    n = len(Kind)
    if set_id < n:
        kind, level = set_id, None
    else:
        kind, level = divmod(set_id - n, int(recipe.power_levels))
    name = Kind(kind).name.lower()
    nominal = float(recipe.power_mw[name])
    power = nominal if level is None else level * float(printer.max_power_mw) / (int(recipe.power_levels) - 1)
    source_d = {"kind": name, "recipe_key": f"power_mw.{name}", "speed_key": f"speed_um_s.{name}",
              "nominal_power_mw": nominal}
    if level is not None:
        source_d.update(modulation=mod, level=int(level), power_levels=int(recipe.power_levels),
                      factor=(power / nominal) if nominal > 0 else None)
    if source:
        source_d["source_index"] = source
    return {"id": int(source * SOURCE_STRIDE + set_id), "power_mw": float(power),
            "speed_um_s": float(recipe.speed_um_s[name]),
            "laser_on_delay_s": float(printer.laser_on_delay_s), "laser_off_delay_s": float(printer.laser_off_delay_s),
            "source": source_d}


def block_sets(tp, recipe, printer, mod: str | None, mark_lengths_um=None, summary=None) -> dict:
    """The sets the marks of ``tp`` use, with their mark count, mark length and z range
    (``mark_lengths_um``: ``tp.mark_lengths()`` when the caller has it already; ``summary``:
    ``kernel.measure.block_summary`` of ``tp`` with its sets tallied, idem).

    Returns
    -------
    dict
        set id -> :func:`describe_set` plus ``marks``, ``length_um``, ``z_um`` [min, max] of
        the marks' first points (for modulated sets this is the depth band).
    """
    if tp.n_marks == 0:
        return {}
    if summary is not None and len(summary["set_marks"]):
        used = np.flatnonzero(summary["set_marks"])
        ids = used + summary["set_lo"]
        counts, lens = summary["set_marks"][used], summary["set_length"][used]
        zmin, zmax = summary["set_zmin"][used], summary["set_zmax"][used]
    else:
        lengths = tp.mark_lengths() if mark_lengths_um is None else mark_lengths_um
        z0 = tp.z_um[tp.mark_start[:-1]]
        ids, inv = np.unique(tp.mark_set, return_inverse=True)
        counts = np.bincount(inv, minlength=len(ids))
        lens = np.bincount(inv, weights=lengths, minlength=len(ids))
        zmin = np.full(len(ids), np.inf)
        zmax = np.full(len(ids), -np.inf)
        np.minimum.at(zmin, inv, z0)
        np.maximum.at(zmax, inv, z0)
    out = {}
    for i, sid in enumerate(ids.tolist()):
        d = describe_set(int(sid), recipe, printer, mod) if sid >= 0 else {"id": -1, "source": {"kind": "unset"}}
        d.update(marks=int(counts[i]), length_um=float(lens[i]), z_um=[float(zmin[i]), float(zmax[i])])
        out[int(sid)] = d
    return out


def merge_sets(tables) -> list[dict]:
    """Join the per-block tables of :func:`block_sets` into the job's list, sorted by id."""
    merged: dict = {}
    for tab in tables:
        for sid, d in (tab or {}).items():
            if sid not in merged:
                merged[sid] = dict(d, z_um=list(d["z_um"]))
                continue
            m = merged[sid]
            m["marks"] += d["marks"]
            m["length_um"] += d["length_um"]
            m["z_um"] = [min(m["z_um"][0], d["z_um"][0]), max(m["z_um"][1], d["z_um"][1])]
    return [merged[k] for k in sorted(merged)]


def sets_text(sets: list[dict]) -> str:
    """One line per parameter set (``bioslicer job info --sets``)."""
    lines = [f"{'set':>8}  {'power mW':>9}  {'speed µm/s':>11}  {'marks':>9}  {'length µm':>11}  source"]
    for d in sets or []:
        src = d.get("source") or {}
        where = src.get("recipe_key", src.get("kind", "?"))
        if src.get("modulation"):
            where += f" × {src['modulation']} (level {src['level']} of {src['power_levels']}, " \
                     f"z {d['z_um'][0]:.2f}..{d['z_um'][1]:.2f} µm)"
        if "array_cell" in src:
            ac = src["array_cell"]
            where += f", array cell {ac['cell']} (row {ac['row']}, column {ac['column']})"
        lines.append(f"{d['id']:>8}  {d.get('power_mw', float('nan')):>9.4g}  {d.get('speed_um_s', float('nan')):>11.6g}  "
                     f"{d.get('marks', 0):>9,}  {d.get('length_um', 0.0):>11.1f}  {where}")
    return "\n".join(lines) + "\n"
