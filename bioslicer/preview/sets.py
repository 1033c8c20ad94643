"""Parameter sets in the preview (``--color set``): which set every drawn mark belongs to, and a
label naming each set (power, speed, where it came from).

A toolpath planned by bioslicer carries the set of every mark (``Toolpath.mark_set``) and a job
lists its sets with their provenance (manifest ``parameter_sets``). Marks read back from a
program carry no set id: they are matched to the job's sets by their power and speed, and
without a job each distinct (power, speed) pair is a set of its own.
"""

from __future__ import annotations

import numpy as np

from ..toolpath import Toolpath

#: a mark read from a program has a listed set's power and speed when they agree this closely
#: (programs round: GWL writes power as a percentage with a few decimals); neighbouring power
#: levels of a modulated job are 0.4 % of the laser maximum apart
_REL_TOL = 1e-4
_ABS_TOL_MW = 1e-4


def mark_power_speed(toolpath: Toolpath) -> tuple[np.ndarray, np.ndarray]:
    """(M,) power of each mark's first point (mW) and (M,) mark speed (µm/s)."""
    tp = toolpath
    if tp.n_marks == 0:
        return np.zeros(0), np.zeros(0)
    return tp.power_mw[tp.mark_start[:-1]].astype(np.float64), np.asarray(tp.mark_speed_um_s, dtype=np.float64)


def mark_sets(toolpath: Toolpath, sets: list | None = None) -> tuple[np.ndarray, dict]:
    """The parameter set of every mark and a description of each set present.

    Parameters
    ----------
    toolpath : Toolpath
    sets : list of dict, optional
        A job's ``parameter_sets`` (:func:`bioslicer.paramsets.merge_sets`): ``id``,
        ``power_mw``, ``speed_um_s``, ``source``.

    Returns
    -------
    ids : (M,) int64
        Set id per mark: the toolpath's own ids; else the id of the listed set with the mark's
        power and speed; else a number per distinct (power, speed) pair, counted from 0 in order
        of power then speed.
    table : dict
        id -> dict with ``power_mw``, ``speed_um_s``, ``source`` (a dict, {} when unknown),
        ``marks`` (drawn marks of the set) and, for marks matched from a program,
        ``equal_sets``: the other listed sets with the same values (their marks are counted here).
    """
    tp = toolpath
    power, speed = mark_power_speed(tp)
    listed = {int(d["id"]): d for d in (sets or []) if isinstance(d, dict) and "id" in d}
    own = tp.mark_set if tp.mark_set is not None and tp.n_marks else None
    same: dict = {}
    values = None            # (K, 2) power and speed of set k when the sets are the distinct pairs
    if own is not None and np.all(own >= 0):
        ids = own.astype(np.int64)
    elif listed:
        ids = _match(power, speed, listed)
        same = _equal_sets(listed)
    else:
        pairs = np.column_stack([power, speed]) if tp.n_marks else np.zeros((0, 2))
        values, inv = np.unique(np.round(pairs, 9), axis=0, return_inverse=True)
        ids = inv.reshape(-1).astype(np.int64)
    table = {}
    uids, counts = np.unique(ids, return_counts=True)
    for sid, n in zip(uids.tolist(), counts.tolist()):
        d = listed.get(int(sid))
        if d is not None:
            table[int(sid)] = {"power_mw": float(d.get("power_mw", np.nan)),
                               "speed_um_s": float(d.get("speed_um_s", np.nan)),
                               "source": dict(d.get("source") or {}), "marks": int(n),
                               "equal_sets": same.get(int(sid), [])}
            continue
        if sid < 0:
            p = v = float("nan")
        elif values is not None:     # the pair itself (every mark of the set rounds to it)
            p, v = float(values[sid, 0]), float(values[sid, 1])
        else:                        # described by its marks
            sel = ids == sid
            p, v = float(np.median(power[sel])), float(np.median(speed[sel]))
        table[int(sid)] = {"power_mw": p, "speed_um_s": v, "source": {}, "marks": int(n)}
    return ids, table


def _match(power: np.ndarray, speed: np.ndarray, listed: dict) -> np.ndarray:
    """Ids of the listed sets with each mark's power and speed (-1: none matches); the distinct
    (power, speed) pairs of the marks (a few) are matched, not every mark against every set."""
    if len(power) == 0:
        return np.zeros(0, np.int64)
    pairs, inv = np.unique(np.column_stack([power, speed]), axis=0, return_inverse=True)
    ids = np.full(len(pairs), -1, np.int64)
    for sid in sorted(listed):
        d = listed[sid]
        p, v = float(d.get("power_mw", np.nan)), float(d.get("speed_um_s", np.nan))
        hit = ((ids < 0) & np.isclose(pairs[:, 0], p, rtol=_REL_TOL, atol=_ABS_TOL_MW)
               & np.isclose(pairs[:, 1], v, rtol=_REL_TOL))
        ids[hit] = sid
    return ids[inv.reshape(-1)]


def _equal_sets(listed: dict) -> dict:
    """id -> the other listed ids with the same power and speed (a program cannot tell them apart)."""
    groups: dict = {}
    for sid, d in listed.items():
        groups.setdefault((round(float(d.get("power_mw", np.nan)), 9), round(float(d.get("speed_um_s", np.nan)), 6)),
                          []).append(sid)
    return {sid: [o for o in g if o != sid] for g in groups.values() for sid in g}


def set_label(sid: int, d: dict) -> str:
    """One legend line: ``set 1: 20 mW, 50000 µm/s, power_mw.hatch`` (plus the modulation and
    level, or the array cell, when the set came from one)."""
    if sid < 0:
        return "no set: power/speed of no listed set"
    src = d.get("source") or {}
    where = src.get("recipe_key", src.get("kind", ""))
    if src.get("modulation"):
        where += f" × {src['modulation']} level {src.get('level')}"
    cell = src.get("array_cell")
    if isinstance(cell, dict) and "cell" in cell:
        where += f", cell {cell['cell']}"
    elif "source_index" in src:
        where += f", part {src['source_index']}"
    equal = d.get("equal_sets") or []
    text = f"set {sid}" + (f" (+{len(equal)} equal)" if equal else "") + \
        f": {d['power_mw']:.4g} mW, {d['speed_um_s']:.6g} µm/s"
    return text + (f", {where}" if where else "")
