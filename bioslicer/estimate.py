"""Print-time estimate of a stitched toolpath from the printer profile."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import BioslicerError
from .kernel import stitch as _k
from .printers import Printer, load_printer
from .toolpath import Toolpath


@dataclass
class Estimate:
    """Estimated print time.

    Attributes
    ----------
    total_s : float
        Whole job, s.
    per_block_s : (B,) float64
        Time spent in each block (including the stage move into it), s. One entry for an
        unstitched toolpath.
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


def estimate_print_time(toolpath: Toolpath, printer) -> Estimate:
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
    block it enters.

    Parameters
    ----------
    toolpath : Toolpath
        Usually stitched (``blocks`` set); an unstitched toolpath counts as one block.
    printer : Printer or str

    Returns
    -------
    Estimate
    """
    pr: Printer = load_printer(printer)
    tp = toolpath
    m = tp.n_marks
    stitched = tp.blocks is not None and (m == 0 or tp.mark_block.min() >= 0)
    nb = len(tp.blocks) if stitched else 1
    if m and not np.all(tp.mark_speed_um_s > 0):
        raise BioslicerError("some marks have a scan speed <= 0 µm/s; set a positive speed for every kind")
    blk = tp.mark_block.astype(np.int64) if stitched else np.zeros(m, np.int64)

    length = _k.mark_lengths(tp.x_um, tp.y_um, tp.z_um, tp.mark_start)
    mark_t = length / tp.mark_speed_um_s if m else np.zeros(0)
    delay_t = np.full(m, pr.laser_on_delay_s + pr.laser_off_delay_s)

    # transitions i -> i+1, charged to the block they lead into (one pass in a kernel)
    origin = tp.blocks.origin_um if stitched else np.zeros((1, 3))
    trans, cnt, lens = _k.transition_times(
        tp.x_um, tp.y_um, tp.z_um, tp.mark_start, blk, tp.mark_layer, origin, nb, pr.jump_speed_um_s,
        pr.jump_delay_s, pr.layer_settle_s, pr.stage_speed_um_s, pr.stage_settle_s)
    per_block = np.bincount(blk, weights=mark_t + delay_t, minlength=nb) + trans.sum(axis=1)
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
    return Estimate(float(total), per_block, breakdown)


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
