"""Scan ordering: reorder the marks of every (block, layer) run to keep jumps short.

Within a run, marks are grouped by kind in order of first appearance (so contours written
before hatches stay before them). Straight 2-point marks of the fill kinds (hatch, skin,
scaffold) are written serpentine: rows ordered across the hatch direction, alternating the
direction row by row, starting from the corner nearest to where the previous group ended.
Everything else (contours, islands, lattice struts, polylines) is ordered greedily by nearest
neighbour over a spatial grid of candidate start points: both ends of an open mark (it is
reversed when its far end is nearer) and every vertex of a closed contour (it is rotated to
start there). Each run starts from the first point of its first mark, so runs are independent
and ordered in parallel. The result is deterministic.

Recipes choose otherwise (:func:`order_options`): ``order`` per kind (``auto`` = the above,
``serpentine``, ``nearest``, ``as-sliced``, ``inside-out``, ``outside-in``: by the distance of
each mark's centre from the centre of its group) and ``kind_order``, the kinds written first
within a layer (e.g. ``["contour", "hatch"]``); kinds not listed follow in order of appearance.
"""

from __future__ import annotations

import numpy as np

from .kernel import measure as _measure
from .kernel import order as _k
from .progress import Progress, silent
from .toolpath import POINT_FIELDS, Kind, Toolpath

#: kinds whose 2-point marks are ordered serpentine
SERPENTINE_KINDS = (Kind.HATCH, Kind.SKIN, Kind.SCAFFOLD)
#: order mode names (recipe ``order``), in the kernel's code order (``kernel.order.AUTO`` ...)
ORDER_MODES = ("auto", "serpentine", "nearest", "as-sliced", "inside-out", "outside-in")


def order_options(recipe=None) -> tuple[np.ndarray, np.ndarray]:
    """(mode per kind (int8), rank per kind (int64)) from a recipe's ``order`` and ``kind_order``
    (None or a recipe without them: auto everywhere, kinds in order of appearance)."""
    nk = max(int(k) for k in Kind) + 1
    modes = np.zeros(nk, np.int8)
    rank = np.full(nk, nk, np.int64)
    for name, mode in (getattr(recipe, "order", None) or {}).items():
        modes[int(Kind.parse(name))] = ORDER_MODES.index(mode)
    for i, name in enumerate(getattr(recipe, "kind_order", None) or ()):
        rank[int(Kind.parse(name))] = i
    return modes, rank


def run_bounds(toolpath: Toolpath) -> np.ndarray:
    """(R+1,) mark index where each run of equal (block, layer) starts, plus ``n_marks``."""
    m = toolpath.n_marks
    if m == 0:
        return np.zeros(1, np.int64)
    change = (np.diff(toolpath.mark_block) != 0) | (np.diff(toolpath.mark_layer) != 0)
    return np.concatenate([[0], np.flatnonzero(change) + 1, [m]]).astype(np.int64)


def run_jump_length_um(toolpath: Toolpath, runs: np.ndarray | None = None) -> float:
    """Total length of the jumps between marks of the same block and layer, µm.

    ``runs``: :func:`run_bounds` of the toolpath, when already known.
    """
    if toolpath.n_marks < 2:
        return 0.0
    if runs is None:
        runs = run_bounds(toolpath)
    tp = toolpath
    return float(np.sum(_measure.run_jump_lengths(tp.x_um, tp.y_um, tp.z_um, tp.mark_start, runs)))


def order_marks(toolpath: Toolpath, progress: Progress = silent, inplace: bool = False, recipe=None
                ) -> tuple[Toolpath, dict]:
    """Reorder marks within each (block, layer) run to shorten the jumps.

    Parameters
    ----------
    toolpath : Toolpath
        Any toolpath (stitched or not); runs are maximal sequences of marks with equal
        ``mark_block`` and ``mark_layer``.
    progress : callable
        ``progress(done, total, label)``.
    inplace : bool
        Reorder the toolpath's own arrays instead of allocating new ones (half the memory for
        a large job; the input toolpath is returned, reordered).
    recipe : Recipe, optional
        Its ``order`` and ``kind_order`` (:func:`order_options`); default: auto, kinds in order of
        appearance.

    Returns
    -------
    toolpath : Toolpath
        A new toolpath (or the input one with ``inplace``) with the same marks (some reversed,
        closed contours possibly rotated), same runs in the same order, same blocks and
        metadata.
    report : dict
        ``jump_um_before``, ``jump_um_after`` (total jump length inside runs, µm),
        ``n_runs``, ``n_marks``, ``n_reversed``, ``n_rotated``.
    """
    tp = toolpath
    runs = run_bounds(tp)
    before = run_jump_length_um(tp, runs)
    progress(0, 2, "ordering")
    if tp.n_marks == 0:
        out = tp if inplace else tp.select_marks(np.zeros(0, np.int64))
        return out, {
            "jump_um_before": 0.0, "jump_um_after": 0.0, "n_runs": 0, "n_marks": 0, "n_reversed": 0, "n_rotated": 0}
    closed = _measure.closed_marks(tp.x_um, tp.y_um, tp.z_um, tp.mark_start)
    serp = np.zeros(max(int(k) for k in Kind) + 1, np.bool_)
    serp[[int(k) for k in SERPENTINE_KINDS]] = True
    modes, rank = order_options(recipe)
    order, flip, rot = _k.order_runs(runs, tp.x_um, tp.y_um, tp.z_um, tp.mark_start, tp.mark_kind, closed, serp,
                                     modes, rank)
    del closed
    progress(1, 2, "ordering")
    n_chunks = int(min(len(runs) - 1, 256))
    marks = tp.take_marks(order)
    if inplace:
        out = tp
        _k.apply_order(runs, tp.mark_start, order, flip, rot, tp.x_um, tp.y_um, tp.z_um, tp.power_mw, True, n_chunks,
                       tp.x_um, tp.y_um, tp.z_um, tp.power_mw, tp.mark_start)
        for name, arr in marks.items():
            setattr(out, name, arr)
    else:
        n = tp.n_points
        pts = {name: np.empty(n) for name in POINT_FIELDS}
        dst = np.empty(tp.n_marks + 1, np.int64)
        dst[-1] = n
        _k.apply_order(runs, tp.mark_start, order, flip, rot, tp.x_um, tp.y_um, tp.z_um, tp.power_mw, False, n_chunks,
                       pts["x_um"], pts["y_um"], pts["z_um"], pts["power_mw"], dst)
        out = tp.with_points(pts, dst, marks)
    after = run_jump_length_um(out, runs)
    report = {
        "jump_um_before": before,
        "jump_um_after": after,
        "n_runs": int(len(runs) - 1),
        "n_marks": int(tp.n_marks),
        "n_reversed": int(np.count_nonzero(flip)),
        "n_rotated": int(np.count_nonzero(rot)),
    }
    out.meta["ordering"] = {"jump_um_before": before, "jump_um_after": after}
    progress(2, 2, "ordering")
    return out, report
