"""Dose arrays: one part printed in a grid of cells, each with its own recipe values.

``bioslicer array PART --vary power_mw.hatch=10:40:5 --vary speed_um_s.hatch=20000,50000`` makes
one job with one cell per combination of the varied values: the first ``--vary`` (and any but
the last) along the columns (+x), the last along the rows (+y), cells ``pitch_um`` apart with
cell (row 0, column 0) at the stage's start position. Each cell is placed on the substrate at
its offset and runs the ordinary block chain (:func:`bioslicer.blockrun.run_block`) with its
recipe; its blocks are rows of the job's one Blocks table, so the program moves the stage
relative to the start and finds the interface at every cell (``find_interface``). A label
beside each cell (``row-column``, 1-based) is written from a small built-in stroke font as its
own block (GWL has no text command this writer relies on). Parameter sets carry the cell
(``paramsets.SOURCE_STRIDE``); ``array.csv`` maps each cell to its offset, values and estimate.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BioslicerError
from .toolpath import Kind, Toolpath

TEST_STRUCTURES = ("cube", "woodpile", "resolution-bridges")
#: label character height and stroke layers
LABEL_HEIGHT_UM = 8.0
LABEL_LAYERS = 2
LABEL_GAP_UM = 4.0

# stroke font on a 4 x 6 grid: polylines per character
_FONT = {
    "0": [[(0, 0), (4, 0), (4, 6), (0, 6), (0, 0)], [(0, 0), (4, 6)]],
    "1": [[(2, 0), (2, 6), (1, 5)]],
    "2": [[(0, 6), (4, 6), (4, 3), (0, 3), (0, 0), (4, 0)]],
    "3": [[(0, 6), (4, 6), (4, 0), (0, 0)], [(0, 3), (4, 3)]],
    "4": [[(0, 6), (0, 3), (4, 3)], [(4, 6), (4, 0)]],
    "5": [[(4, 6), (0, 6), (0, 3), (4, 3), (4, 0), (0, 0)]],
    "6": [[(4, 6), (0, 6), (0, 0), (4, 0), (4, 3), (0, 3)]],
    "7": [[(0, 6), (4, 6), (4, 0)]],
    "8": [[(0, 0), (4, 0), (4, 6), (0, 6), (0, 0)], [(0, 3), (4, 3)]],
    "9": [[(4, 3), (0, 3), (0, 6), (4, 6), (4, 0), (0, 0)]],
    "-": [[(0.5, 3), (3.5, 3)]],
}


def make_test_structure(name: str):
    """A built-in test structure as a Solid (µm): a 30 µm cube, a 30 µm woodpile or resolution bridges
    (two walls joined by bridges 0.5, 1, 2 and 4 µm wide)."""
    import trimesh

    from .mesh import solid_from_trimesh
    from .samples import _union, woodpile

    if name == "cube":
        m = trimesh.creation.box(extents=[30.0, 30.0, 30.0])
    elif name == "woodpile":
        m = woodpile(size_um=(30.0, 30.0), rod_width_um=2.0, rod_height_um=2.0, pitch_um=6.0, layers=8,
                     overlap_um=0.5)
    elif name == "resolution-bridges":
        boxes = [([0, 0, 0], [30, 30, 1.5]), ([0, 0, 0], [4, 30, 8]), ([26, 0, 0], [30, 30, 8])]
        y = 3.0
        for w in (0.5, 1.0, 2.0, 4.0):
            boxes.append(([3, y, 6], [27, y + w, 8]))
            y += w + 5.0
        m = _union([trimesh.creation.box(bounds=np.array(b, dtype=float)) for b in boxes])
    else:
        raise BioslicerError(f"unknown test structure {name!r}; use one of {', '.join(TEST_STRUCTURES)}")
    return solid_from_trimesh(m, name=f"test-{name}")


def parse_vary(spec: str) -> tuple[str, list]:
    """``KEY=a:b:step`` (inclusive) or ``KEY=v1,v2,...`` -> (key, values)."""
    from .recipe import recipe_overrides_from_cli

    if "=" not in spec:
        raise BioslicerError(f"--vary {spec!r} is not KEY=VALUES; write e.g. --vary power_mw.hatch=10:40:5")
    key, text = (s.strip() for s in spec.split("=", 1))
    parts = text.split(":")
    if len(parts) == 3:
        try:
            a, b, step = (float(p) for p in parts)
        except ValueError:
            raise BioslicerError(f"--vary {key}: range {text!r} must be start:stop:step numbers") from None
        if not step > 0 or b < a:
            raise BioslicerError(f"--vary {key}: range {text!r} needs step > 0 and stop >= start")
        n = int(np.floor((b - a) / step + 1e-9)) + 1
        values = [round(a + i * step, 12) for i in range(n)]
    else:
        values = [recipe_overrides_from_cli([f"v={t}"])["v"] for t in text.split(",") if t.strip()]
    if not values:
        raise BioslicerError(f"--vary {key}: no values; give start:stop:step or a comma-separated list")
    return key, values


def _override(key: str, value) -> dict:
    if "." in key:
        top, sub = key.split(".", 1)
        return {top: {sub: value}}
    return {key: value}


@dataclass
class Cell:
    index: int
    row: int
    col: int
    offset_um: tuple
    values: dict       # varied key -> value
    recipe: object     # Recipe
    label: str


def plan_cells(base, printer, varies, pitch_um: float, footprint_um) -> list[Cell]:
    """Every cell of the array with its recipe, checked (one line naming the key on bad input).

    Parameters
    ----------
    base : Recipe
    printer : Printer
    varies : list of (key, values)
    pitch_um : float
        Cell centre distance, µm.
    footprint_um : (2,) float
        Part width in x and y, µm.
    """
    from .exposure import check_exposure

    if not varies:
        raise BioslicerError("give at least one --vary KEY=VALUES, e.g. --vary power_mw.hatch=10:40:5")
    keys = [k for k, _ in varies]
    if len(set(keys)) != len(keys):
        raise BioslicerError("each --vary key may be given once")
    recipes = {}
    for key, values in varies:
        for v in values:
            try:
                rec = base.updated(_source=f"--vary {key}", **_override(key, v))
                check_exposure(rec, printer)
            except BioslicerError as exc:
                raise BioslicerError(f"--vary {key}={v}: {exc}") from None
            recipes[(key, repr(v))] = rec
    col_axes, row_axis = varies[:-1], varies[-1]
    if not col_axes:
        col_axes, row_axis = varies, ("", [None])
    cols = list(itertools.product(*[v for _, v in col_axes]))
    rows = row_axis[1]
    fp = np.asarray(footprint_um, dtype=np.float64)
    need = max(fp[0], fp[1] + LABEL_GAP_UM + LABEL_HEIGHT_UM) + LABEL_GAP_UM
    if pitch_um < need:
        raise BioslicerError(f"cells {pitch_um:g} µm apart would overlap: the part with its label needs {need:.4g} µm; "
                             "raise --pitch-um")
    cell_w = max(fp[0], fp[1] + 2 * (LABEL_GAP_UM + LABEL_HEIGHT_UM))
    if cell_w > printer.field_size_um / (np.sqrt(2.0) if printer.field_shape == "circle" else 1.0):
        raise BioslicerError(f"a cell ({cell_w:.4g} µm with its label) does not fit the {printer.field_shape} field "
                             f"of {printer.field_size_um:g} µm of {printer.name}; use a smaller part")
    span = np.array([(len(cols) - 1) * pitch_um + cell_w, (len(rows) - 1) * pitch_um + cell_w])
    travel = np.array([printer.stage_x_um[1] - printer.stage_x_um[0], printer.stage_y_um[1] - printer.stage_y_um[0]])
    if np.any(span > travel):
        raise BioslicerError(f"the array spans {span[0]:.0f} × {span[1]:.0f} µm, more than the stage travel "
                             f"{travel[0]:.0f} × {travel[1]:.0f} µm of {printer.name}; fewer values or a smaller --pitch-um")
    cells = []
    for r, rv in enumerate(rows):
        for c, cv in enumerate(cols):
            values = {k: v for (k, _), v in zip(col_axes, cv)}
            if row_axis[0]:
                values[row_axis[0]] = rv
            ov: dict = {}
            for k, v in values.items():
                for top, sub in _override(k, v).items():
                    if isinstance(sub, dict):
                        ov.setdefault(top, {}).update(sub)
                    else:
                        ov[top] = sub
            try:
                rec = base.updated(_source="--vary", **ov)
                check_exposure(rec, printer)
            except BioslicerError as exc:
                raise BioslicerError(f"array cell row {r + 1} column {c + 1}: {exc}") from None
            cells.append(Cell(len(cells), r, c, (c * pitch_um, r * pitch_um), values, rec, f"{r + 1}-{c + 1}"))
    return cells


def label_toolpath(text: str, x0_um: float, y0_um: float, layer_z_um, recipe, printer) -> Toolpath:
    """Stroke-font marks of ``text`` (left edge ``x0_um``, baseline ``y0_um``), one copy per layer,
    exposed with the recipe's contour power and speed."""
    from .exposure import apply_exposure

    s = LABEL_HEIGHT_UM / 6.0
    p0, p1 = [], []
    for i, ch in enumerate(text):
        for line in _FONT[ch]:
            pts = np.array(line, dtype=np.float64) * s + [x0_um + i * 6.0 * s, y0_um]
            p0.extend(pts[:-1])
            p1.extend(pts[1:])
    p0 = np.array(p0)
    p1 = np.array(p1)
    lz = np.asarray(layer_z_um, dtype=np.float64)
    n = len(p0)
    a = np.concatenate([np.column_stack([p0, np.full(n, z)]) for z in lz])
    b = np.concatenate([np.column_stack([p1, np.full(n, z)]) for z in lz])
    tp = Toolpath.from_segments(a, b, int(Kind.CONTOUR), np.repeat(np.arange(len(lz)), n), 1.0, 0.0, lz)
    tp, _ = apply_exposure(tp, recipe.updated(_source="label", depth_mode="none", power_field_path=None,
                                              power_ramp_width_um=0.0), printer, checked=False)
    return tp


def array_preview_png(path, toolpath: Toolpath, cells, keys, title: str, size=(1200, 900)) -> None:
    """The grid from above: every mark of the (thinned) preview toolpath, contours red and fills
    blue, the printed labels, and each cell's label and varied values written under it."""
    from PIL import Image, ImageDraw, ImageFont

    from .toolpath import atomic_write_bytes

    img = Image.new("RGB", size, (24, 26, 34))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    b = toolpath.bounds()
    pad_top, pad = 40, 30
    text_h = 14 * (len(keys) + 1)
    sx = (size[0] - pad - 150) / max(b[1, 0] - b[0, 0], 1e-9)   # room for the last column's text
    rows = max(c.row for c in cells) + 1
    sy = (size[1] - pad_top - pad - rows * text_h) / max(b[1, 1] - b[0, 1], 1e-9)
    sc = min(sx, sy)

    def px(x, y):
        return pad + (x - b[0, 0]) * sc, size[1] - pad - rows * text_h - (y - b[0, 1]) * sc

    colours = {int(Kind.CONTOUR): (231, 76, 60)}
    X, Y = px(toolpath.x_um, toolpath.y_um)
    ms = toolpath.mark_start
    for m in _last_distinct_marks(X, Y, ms, toolpath.mark_kind):
        a, e = ms[m], ms[m + 1]
        d.line(list(zip(X[a:e].tolist(), Y[a:e].tolist())),
               fill=colours.get(int(toolpath.mark_kind[m]), (52, 152, 219)), width=1)
    pitch = (cells[1].offset_um[0] - cells[0].offset_um[0]) if len(cells) > 1 else 0.0
    for c in cells:
        x, y = px(c.offset_um[0], c.offset_um[1] - 0.5 * max(pitch, 0.0) * 0.35)
        lines = [f"cell {c.label}"] + [f"{k}={c.values.get(k)}" for k in keys]
        d.multiline_text((x - 40, y + 4), "\n".join(lines), fill=(230, 230, 230), font=font)
    d.text((pad, 10), title, fill=(240, 240, 240), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _last_distinct_marks(X, Y, mark_start, mark_kind) -> np.ndarray:
    """Indices (ascending) of the marks to draw for the same picture as drawing every mark in
    order: of marks with the same kind and the same points (``X``, ``Y``: image coordinates),
    only the last. A pixel takes the colour of the last line drawn over it, and a line drawn
    again later covers the same pixels, so the earlier copies change nothing (the layers of a
    top view repeat each other)."""
    n = np.diff(mark_start)
    keep = []
    for k in np.unique(n):
        ids = np.flatnonzero(n == k)
        pts = mark_start[ids][:, None] + np.arange(k)[None, :]
        key = np.column_stack([X[pts], Y[pts], mark_kind[ids].astype(np.float64)[:, None]])
        rows = np.ascontiguousarray(key[::-1]).view(np.dtype((np.void, key.dtype.itemsize * key.shape[1])))
        _, first = np.unique(rows.ravel(), return_index=True)
        keep.append(ids[::-1][first])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def array_to_job(solid, out_dir, printer, base, varies, pitch_um: float = 150.0, labels: bool = True,
                 overwrite: bool = False, preview: bool = True, dialect: str | None = None):
    """Write a dose-array job (see the module docstring); returns a ``pipeline.JobResult``.

    Parameters
    ----------
    solid : Solid
        The part (µm), as loaded or from :func:`make_test_structure`.
    out_dir : path
    printer : Printer
    base : Recipe
        Recipe every cell starts from.
    varies : list of (key, values)
        From :func:`parse_vary`.
    pitch_um : float
        Cell centre distance, µm.
    labels : bool
        Print ``row-column`` beside each cell.
    """
    from .placement import place
    from .plate import JobPart, parts_to_job

    placed0, _, _ = place(solid, base)
    fp = placed0.bounds_um[1, :2] - placed0.bounds_um[0, :2]
    cells = plan_cells(base, printer, varies, float(pitch_um), fp)
    keys = [k for k, _ in varies]
    parts = [JobPart(solid, c.recipe, c.offset_um, c.label if labels else None,
                     {"cell": c.index, "row": c.row + 1, "column": c.col + 1, "offset_um": list(c.offset_um),
                      "values": c.values, "label": c.label if labels else None}, "array_cell") for c in cells]

    def finish(folder, per_part_s, sets):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["cell", "row", "column", "offset_x_um", "offset_y_um", *keys, "estimate_s", "label"])
        for c, t in zip(cells, per_part_s):
            w.writerow([c.index, c.row + 1, c.col + 1, f"{c.offset_um[0]:.3f}", f"{c.offset_um[1]:.3f}",
                        *[c.values.get(k, "") for k in keys], f"{t:.3f}", c.label if labels else ""])
        (folder / "array.csv").write_text(buf.getvalue(), encoding="utf-8")
        return {"array": {"varies": [{"key": k, "values": v} for k, v in varies], "pitch_um": float(pitch_um),
                          "rows": max(c.row for c in cells) + 1, "columns": max(c.col for c in cells) + 1,
                          "labels": bool(labels), "csv": "array.csv",
                          "cells": [dict(p.record, estimate_s=t) for p, t in zip(parts, per_part_s)]}}

    def draw(path, prev):
        array_preview_png(path, prev, cells, keys,
                          f"dose array of {solid.name or 'part'}: {len(cells)} cells on {printer.name}")

    return parts_to_job(parts, out_dir, printer, base, name=_stem(solid) + "_array", mesh_stl=_stl(solid),
                        mesh_name=solid.name or "part", mesh_sha256=solid.sha256, mode="array",
                        overwrite=overwrite, preview=draw if preview else None, dialect=dialect, finish=finish)


def _stem(solid) -> str:
    from .pipeline import _safe_stem

    return _safe_stem(Path(solid.name or "part").stem)


def _stl(solid) -> bytes:
    return solid.to_trimesh().export(file_type="stl")
