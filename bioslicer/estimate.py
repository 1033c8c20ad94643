"""Print-time estimate of a stitched toolpath from the printer profile."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import BioslicerError
from .kernel import measure as _k
from .printers import Printer, load_printer
from .toolpath import Blocks, Toolpath


@dataclass
class Estimate:
    """Estimated print time.

    Attributes
    ----------
    total_s : float
        Whole job, s.
    per_block_s : (B,) float64
        Time spent in each block (including the stage move into it), s: one entry per row of
        the Blocks table, 0 for blocks without marks; one entry for an unstitched toolpath.
    breakdown : dict
        ``mark_s``, ``jump_s``, ``laser_delay_s``, ``layer_change_s``, ``stage_move_s`` (s; they
        sum to ``total_s``) and ``counts``: ``marks``, ``jumps``, ``layer_changes``,
        ``block_changes``, ``blocks``, ``mark_length_um``, ``jump_length_um``, ``stage_move_um``.
    """

    total_s: float
    per_block_s: np.ndarray
    breakdown: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able dict (plain floats and lists)."""
        return {
            "total_s": float(self.total_s),
            "per_block_s": [float(v) for v in self.per_block_s],
            "breakdown": {k: (dict(v) if isinstance(v, dict) else float(v)) for k, v in self.breakdown.items()},
        }


def estimate_print_time(toolpath: Toolpath, printer, mark_lengths_um=None) -> Estimate:
    """Estimate how long the printer takes to write a toolpath, in toolpath order.

    Model (every figure from the printer profile; lengths µm, times s):

    * each mark: ``length / mark_speed_um_s + laser_on_delay_s + laser_off_delay_s``
      (``mark_s`` and ``laser_delay_s``);
    * each transition between consecutive marks of the same block and layer is a jump:
      ``|Δxyz| / jump_speed_um_s + jump_delay_s`` (``jump_s``);
    * a transition to another layer of the same block is a jump in x/y
      (``|Δxy| / jump_speed_um_s + jump_delay_s``, in ``jump_s``) plus a layer change: the z move
      ``|Δz| / jump_speed_um_s + layer_settle_s`` (``layer_change_s``);
    * a transition to another block is a stage move ``|Δorigin| / stage_speed_um_s +
      stage_settle_s`` (``stage_move_s``, 3D distance between block origins) plus a galvo jump
      between the local (galvo) positions (``jump_s``).

    The job starts with the stage at the first block and the galvo at the first point; galvo
    acceleration and stage acceleration are not modelled. Each transition is charged to the
    block it enters. Blocks of the table without marks are skipped: the stage moves straight
    between the blocks that have marks. Per-block parts computed apart can be put together
    with :func:`estimate_block` and :func:`combine_estimates`.

    Parameters
    ----------
    toolpath : Toolpath
        Usually stitched (``blocks`` set); an unstitched toolpath counts as one block.
    printer : Printer or str
    mark_lengths_um : (M,) float64, optional
        ``toolpath.mark_lengths()`` when the caller has it already.

    Returns
    -------
    Estimate
    """
    return _estimate(toolpath, load_printer(printer), mark_lengths_um)


def _estimate(tp: Toolpath, pr: Printer, mark_lengths_um=None, summary=None, per_block: bool = True) -> Estimate:
    """:func:`estimate_print_time`; ``summary``: ``kernel.measure.block_summary`` of ``tp`` (its
    ``mark_time`` and ``speed_ok``); ``per_block`` False leaves ``per_block_s`` out (empty)."""
    m = tp.n_marks
    stitched = tp.blocks is not None and (m == 0 or tp.mark_block.min() >= 0)
    nb = len(tp.blocks) if stitched else 1
    speed_ok = summary["speed_ok"] if summary is not None else bool(np.all(tp.mark_speed_um_s > 0))
    if m and not speed_ok:
        raise BioslicerError("some marks have a scan speed <= 0 µm/s; set a positive speed for every kind")
    blk = tp.mark_block if stitched else np.zeros(m, np.int32)
    length = tp.mark_lengths() if mark_lengths_um is None else mark_lengths_um
    if summary is not None:
        mark_t = summary["mark_time"]
    else:
        mark_t = length / tp.mark_speed_um_s if m else np.zeros(0)
    delay_t = np.full(m, pr.laser_on_delay_s + pr.laser_off_delay_s)
    # transitions i -> i+1, charged to the block they lead into (one pass in a kernel)
    origin = tp.blocks.origin_um if stitched else np.zeros((1, 3))
    trans, cnt, lens = _k.transition_times(
        tp.x_um, tp.y_um, tp.z_um, tp.mark_start, blk, tp.mark_layer, origin, nb, pr.jump_speed_um_s,
        pr.jump_delay_s, pr.layer_settle_s, pr.stage_speed_um_s, pr.stage_settle_s)
    if per_block:
        per_block_s = np.bincount(blk, weights=mark_t + delay_t, minlength=nb) + trans.sum(axis=1)
    else:
        per_block_s = np.zeros(0)
    breakdown = {
        "mark_s": float(mark_t.sum()),
        "jump_s": float(trans[:, 0].sum()),
        "laser_delay_s": float(delay_t.sum()),
        "layer_change_s": float(trans[:, 1].sum()),
        "stage_move_s": float(trans[:, 2].sum()),
        "counts": {
            "marks": int(m),
            "jumps": int(cnt[2]),
            "layer_changes": int(cnt[0]),
            "block_changes": int(cnt[1]),
            "blocks": int(nb if m else 0),
            "mark_length_um": float(length.sum()),
            "jump_length_um": float(lens[0]),
            "stage_move_um": float(lens[1]),
        },
    }
    total = sum(v for k, v in breakdown.items() if k != "counts")
    return Estimate(float(total), per_block_s, breakdown)


_PART_TIMES = ("mark_s", "jump_s", "laser_delay_s", "layer_change_s")
_PART_COUNTS = ("marks", "jumps", "layer_changes", "mark_length_um", "jump_length_um")


def estimate_block(toolpath: Toolpath, printer, mark_lengths_um=None, summary=None) -> dict | None:
    """The additive parts of the print time of one block, for :func:`combine_estimates`.

    Lets each block of a job be estimated where it was stitched (a separate task or machine)
    and the whole job be put together afterwards.

    Parameters
    ----------
    toolpath : Toolpath
        Stitched marks of one block (``blocks`` set, every ``mark_block`` equal), in writing
        order, e.g. ``stitch(..., grid=g, blocks=[b])`` after ordering.
    printer : Printer or str
    mark_lengths_um : (M,) float64, optional
        ``toolpath.mark_lengths()`` when the caller has it already.
    summary : dict, optional
        ``kernel.measure.block_summary`` of the marks when the caller has it already.

    Returns
    -------
    dict or None
        None for a toolpath without marks. Otherwise JSON-able: ``block`` (its row in the
        Blocks table); ``mark_s``, ``jump_s``, ``laser_delay_s``, ``layer_change_s`` (s, inside
        the block); ``marks``, ``jumps``, ``layer_changes``, ``mark_length_um``,
        ``jump_length_um``; ``first_um`` and ``last_um``, the first and last point written
        (part coordinates, µm).
    """
    tp = toolpath
    if tp.n_marks == 0:
        return None
    if tp.blocks is None or tp.mark_block.min() < 0 or tp.mark_block.min() != tp.mark_block.max():
        raise BioslicerError("estimate_block needs the stitched marks of exactly one block; select them with "
                             "toolpath.select_marks(toolpath.mark_block == b)")
    est = _estimate(tp, load_printer(printer), mark_lengths_um, summary, per_block=False)
    b, c = est.breakdown, est.breakdown["counts"]
    d = {"block": int(tp.mark_block[0])}
    d.update({k: float(b[k]) for k in _PART_TIMES})
    d.update({k: c[k] for k in _PART_COUNTS})
    d["first_um"] = [float(tp.x_um[0]), float(tp.y_um[0]), float(tp.z_um[0])]
    d["last_um"] = [float(tp.x_um[-1]), float(tp.y_um[-1]), float(tp.z_um[-1])]
    return d


def combine_estimates(blocks: Blocks, per_block: list, printer) -> Estimate:
    """Put together the :func:`estimate_block` parts of every block into the job's estimate.

    Blocks are written in table order; between two consecutive blocks that have marks the stage
    moves (``|Δorigin| / stage_speed_um_s + stage_settle_s``) and the galvo jumps from the last
    local point of one to the first local point of the next, both charged to the block entered,
    as in :func:`estimate_print_time` (the result equals it on the whole toolpath, up to
    rounding in the sums).

    Parameters
    ----------
    blocks : Blocks
        The block table (e.g. ``StitchGrid.blocks()``).
    per_block : list of dict or None
        One entry per table row: :func:`estimate_block` of that block's marks, None when empty.
    printer : Printer or str

    Returns
    -------
    Estimate
        ``per_block_s`` has one entry per table row (0 for empty blocks).
    """
    pr: Printer = load_printer(printer)
    nb = len(blocks)
    if len(per_block) != nb:
        raise BioslicerError(f"combine_estimates needs one entry per block ({nb}), got {len(per_block)}")
    per = np.zeros(nb)
    tot = dict.fromkeys(_PART_TIMES + ("stage_move_s",), 0.0)
    cnt = dict.fromkeys(_PART_COUNTS, 0)
    cnt.update(marks=0, jumps=0, layer_changes=0, mark_length_um=0.0, jump_length_um=0.0)
    block_changes = 0
    stage_um = 0.0
    prev = None
    for i, d in enumerate(per_block):
        if d is None:
            continue
        if int(d.get("block", i)) != i:
            raise BioslicerError(f"estimate of block {d.get('block')} given for block {i}; keep the list in table order")
        t = sum(float(d[k]) for k in _PART_TIMES)
        for k in _PART_TIMES:
            tot[k] += float(d[k])
        for k in _PART_COUNTS:
            cnt[k] += d[k]
        if prev is not None:
            j, last = prev
            o = blocks.origin_um[i] - blocks.origin_um[j]
            sd = float(np.sqrt(o @ o))
            g = (np.asarray(d["first_um"], dtype=np.float64) - np.asarray(last, dtype=np.float64)) - o
            jl = float(np.sqrt(g @ g))
            stage_s = sd / pr.stage_speed_um_s + pr.stage_settle_s
            jump_s = jl / pr.jump_speed_um_s + pr.jump_delay_s
            tot["stage_move_s"] += stage_s
            tot["jump_s"] += jump_s
            t += stage_s + jump_s
            cnt["jumps"] += 1
            cnt["jump_length_um"] += jl
            block_changes += 1
            stage_um += sd
        per[i] = t
        prev = (i, d["last_um"])
    breakdown = {k: float(tot[k]) for k in ("mark_s", "jump_s", "laser_delay_s", "layer_change_s", "stage_move_s")}
    breakdown["counts"] = {
        "marks": int(cnt["marks"]), "jumps": int(cnt["jumps"]), "layer_changes": int(cnt["layer_changes"]),
        "block_changes": block_changes, "blocks": int(nb if cnt["marks"] else 0),
        "mark_length_um": float(cnt["mark_length_um"]), "jump_length_um": float(cnt["jump_length_um"]),
        "stage_move_um": stage_um,
    }
    total = sum(v for k, v in breakdown.items() if k != "counts")
    return Estimate(float(total), per, breakdown)


def format_duration(seconds: float) -> str:
    """``1 h 02 min 03.4 s`` style text for a duration in seconds."""
    s = float(seconds)
    h, rem = divmod(s, 3600.0)
    mnt, sec = divmod(rem, 60.0)
    if h >= 1:
        return f"{int(h)} h {int(mnt):02d} min {sec:04.1f} s"
    if mnt >= 1:
        return f"{int(mnt)} min {sec:04.1f} s"
    return f"{sec:.3g} s"
