"""Which marks a preview draws: layer selection and decimation (every n-th layer, then mark)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import BioslicerError
from ..toolpath import Toolpath
from .style import MIN_LAYERS_SHOWN, SQRT_SPLIT_ABOVE


# ----------------------------------------------------------------------------- selection
def _layer_mask(layers, n_layers: int) -> np.ndarray:
    """(L,) bool of the selected layers.

    ``layers`` is None (all), an int K (one layer, negative counts from the top), a ``slice``,
    a ``(a, b)`` pair meaning ``a <= layer < b`` like a slice, or a sequence of layer indices.
    """
    mask = np.zeros(n_layers, bool)
    if layers is None:
        mask[:] = True
        return mask
    if isinstance(layers, (int, np.integer)):
        k = int(layers)
        if not -n_layers <= k < n_layers:
            raise BioslicerError(f"layer {k} does not exist; the toolpath has {n_layers} layers (0..{n_layers - 1})")
        mask[k] = True
        return mask
    if isinstance(layers, tuple) and len(layers) == 2 and all(
            v is None or isinstance(v, (int, np.integer)) for v in layers):
        layers = slice(*layers)
    if isinstance(layers, slice):
        mask[layers] = True
        if not mask.any():
            a = "" if layers.start is None else layers.start
            b = "" if layers.stop is None else layers.stop
            raise BioslicerError(f"layers {a}:{b} select no layer; the toolpath has {n_layers} layers "
                                 f"(0..{n_layers - 1}), and A:B means A <= layer < B")
        return mask
    idx = np.asarray(layers).astype(np.int64).ravel()
    if idx.size == 0:
        raise BioslicerError("the layer list is empty; give at least one layer index")
    if idx.min() < -n_layers or idx.max() >= n_layers:
        raise BioslicerError(f"layer list has indices outside 0..{n_layers - 1}; pick existing layers")
    mask[idx] = True
    return mask


def parse_layers(text: str | None):
    """Parse the CLI form ``K``, ``A:B``, ``A:`` or ``:B`` (half-open, like Python) into a slice or int."""
    if text is None or text.strip() == "":
        return None
    s = text.strip()
    try:
        if ":" not in s:
            return int(s)
        a, b = s.split(":", 1)
        return slice(int(a) if a.strip() else None, int(b) if b.strip() else None)
    except ValueError:
        raise BioslicerError(f"--layers {text!r} is not K, A:B, A: or :B with whole numbers") from None


@dataclass
class PreviewStats:
    """What a preview shows of the toolpath (after layer selection and decimation).

    Attributes
    ----------
    total_segments, shown_segments : int
        Mark segments in the selected layers, and those drawn.
    total_marks, shown_marks : int
        Marks in the selected layers, and those drawn.
    total_layers, shown_layers : int
        Selected layers that have marks, and those drawn.
    layer_step, mark_step : int
        Decimation: 1 in ``layer_step`` layers and then 1 in ``mark_step`` marks are drawn.
    contours_whole : bool
        Contour marks of the drawn layers were all kept (only the other marks were thinned).
    line_pixels : int
        Estimated pixels the drawn lines cover (the render cost), 0 when not estimated.
    """

    total_segments: int = 0
    shown_segments: int = 0
    total_marks: int = 0
    shown_marks: int = 0
    total_layers: int = 0
    shown_layers: int = 0
    layer_step: int = 1
    mark_step: int = 1
    contours_whole: bool = False
    line_pixels: int = 0

    @property
    def decimated(self) -> bool:
        return self.layer_step > 1 or self.mark_step > 1

    def text(self) -> str:
        """One line for the image, e.g. ``showing 1 in 4 layers, 2.0 M of 8.1 M segments``."""
        if self.total_segments == 0:
            return "no marks in the selected layers"
        lay = (f"1 in {self.layer_step} layers" if self.layer_step > 1
               else f"all {self.total_layers} layer" + ("s" if self.total_layers != 1 else ""))
        marks = ""
        if self.mark_step > 1:
            marks = f", 1 in {self.mark_step} " + ("fill marks (all contours)" if self.contours_whole else "marks")
        if self.decimated:
            segs = f"{_count(self.shown_segments)} of {_count(self.total_segments)} segments"
        else:
            segs = f"{_count(self.total_segments)} segments"
        return f"showing {lay}{marks}, {segs}"

    def to_dict(self) -> dict:
        return {k: (bool(v) if isinstance(v, (bool, np.bool_)) else int(v)) for k, v in self.__dict__.items()}


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 100_000:
        return f"{n / 1e3:.0f} k"
    return f"{n:,}"


def mark_lengths_um(toolpath: Toolpath) -> np.ndarray:
    """(M,) polyline length of each mark, µm (:meth:`Toolpath.mark_lengths`)."""
    return toolpath.mark_lengths()


def decimate_marks(mark_layer: np.ndarray, mark_segments: np.ndarray, layer_mask: np.ndarray,
                   max_segments: int, mark_cost: np.ndarray | None = None, max_cost: float = math.inf,
                   protect: np.ndarray | None = None) -> tuple[np.ndarray, PreviewStats]:
    """Choose the marks to draw: selected layers, then every n-th layer and every n-th mark.

    The load of a set of marks is the larger of (segments / ``max_segments``) and
    (cost / ``max_cost``); it must end up at most 1. Layers are thinned first (keeping at
    least ``MIN_LAYERS_SHOWN`` layers, counted from the top layer down so the top is always
    drawn), then marks.

    Parameters
    ----------
    mark_layer : (M,) int
        Layer index of each mark.
    mark_segments : (M,) int
        Segments (points - 1) of each mark.
    layer_mask : (L,) bool
        Selected layers.
    max_segments : int
        Draw at most about this many segments.
    mark_cost : (M,) float, optional
        Render cost of each mark (e.g. the pixels its lines cover).
    max_cost : float
        Budget for the summed ``mark_cost`` of the drawn marks.
    protect : (M,) bool, optional
        Marks (the contours) kept whole in the drawn layers as long as they take at most a
        quarter of the budget; the every-n-th-mark step then applies to the others only.

    Returns
    -------
    keep : (K,) int64
        Indices of the marks to draw, in toolpath order.
    stats : PreviewStats
        What is shown out of what was selected.
    """
    if max_segments < 1:
        raise BioslicerError(f"max_segments must be at least 1, got {max_segments}")
    nlay = len(layer_mask)
    segs = mark_segments.astype(np.int64, copy=False)
    cost = np.zeros(len(segs)) if mark_cost is None else np.asarray(mark_cost, np.float64)
    if not max_cost > 0:
        max_cost = math.inf

    def load(idx) -> float:
        return max(segs[idx].sum() / max_segments, cost[idx].sum() / max_cost)

    # per-layer sums first: the layer step is decided without touching every mark twice
    n_l = np.bincount(mark_layer, minlength=nlay)[:nlay] * layer_mask
    seg_l = np.bincount(mark_layer, weights=segs, minlength=nlay)[:nlay] * layer_mask
    cost_l = (np.bincount(mark_layer, weights=cost, minlength=nlay)[:nlay] * layer_mask
              if mark_cost is not None else np.zeros(nlay))
    present = np.flatnonzero(n_l)
    nl = len(present)
    total = int(round(seg_l.sum()))
    st = PreviewStats(total_segments=total, total_marks=int(n_l.sum()), total_layers=nl)
    layer_step = 1
    total_load = max(seg_l.sum() / max_segments, cost_l.sum() / max_cost)
    if total_load > 1 and nl > 1:
        # thin layers alone while that keeps enough of them, beyond that layers and marks
        # about equally (the square root), so hatch directions stay visible
        layer_step = min(math.ceil(total_load), max(1, nl // MIN_LAYERS_SHOWN),
                         max(math.ceil(math.sqrt(total_load)), SQRT_SPLIT_ABOVE))
    keep_layer = np.zeros(nlay, bool)
    keep_layer[present[::-1][::layer_step]] = True          # counted from the top layer down
    keep = np.flatnonzero(keep_layer[mark_layer]) if len(mark_layer) else np.zeros(0, np.int64)
    mark_step = 1
    prot = np.zeros(len(keep), bool) if protect is None else np.asarray(protect, bool)[keep]
    if load(keep) > 1:
        if prot.any() and not prot.all() and load(keep[prot]) <= 0.25:
            fixed, free = keep[prot], keep[~prot]
            st.contours_whole = True
        else:
            fixed, free = keep[:0], keep
        room = 1.0 - load(fixed)
        cur = load(free)
        while cur > room and mark_step < len(free):
            mark_step = min(len(free), max(mark_step + 1, math.ceil(mark_step * cur / room)))
            cur = load(free[::mark_step])
        keep = np.sort(np.concatenate([fixed, free[::mark_step]]))
    if mark_step == 1:
        st.contours_whole = False
    st.shown_segments = int(segs[keep].sum())
    st.line_pixels = int(round(cost[keep].sum()))
    st.shown_marks = int(len(keep))
    st.shown_layers = int(np.count_nonzero(np.bincount(mark_layer[keep], minlength=nlay)))
    st.layer_step = int(layer_step)
    st.mark_step = int(mark_step)
    return keep, st


#: Render cost of one line segment in pixel-equivalents (per-line set-up of a software rasteriser).
PIXELS_PER_SEGMENT = 10.0
#: Default line budget of a render: this many times the window's pixel count.
LINE_PIXELS_PER_WINDOW_PIXEL = 6.0


def _line_budget(window_size, max_line_pixels) -> float:
    if max_line_pixels is None:
        return LINE_PIXELS_PER_WINDOW_PIXEL * window_size[0] * window_size[1]
    return float(max_line_pixels) if max_line_pixels > 0 else math.inf


def mark_render_cost(toolpath: Toolpath, px_per_um: float) -> np.ndarray:
    """(M,) estimated pixels each mark's lines cover on screen, plus a per-segment set-up cost."""
    return float(px_per_um) * mark_lengths_um(toolpath) + PIXELS_PER_SEGMENT * (np.diff(toolpath.mark_start) - 1)
