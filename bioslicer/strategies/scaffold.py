"""Shell-and-scaffold strategy: contours, solid top/bottom skins, the interior only as walls.

As commercial 2PP slicers offer to cut print time: every layer gets its contours; the part of
a layer within ``skin_layers`` layers of a top or bottom surface is hatched solid (kind SKIN);
the interior gets vertical walls on a square grid of pitch ``scaffold_pitch_um`` (kind
SCAFFOLD; walls along x and y, each ``scaffold_wall_lines`` lines ``hatch_um`` apart), written
on every ``scaffold_every_n_layers``-th layer. The enclosed resin or hydrogel is cured
afterwards (UV flood).

Skin detection: layer k's core is the intersection of the region at heights
``z_k + d * slice_um`` for ``|d| <= skin_layers``, sliced on layer k's own row grid; the skin is
the layer minus its core (span booleans, no polygon clipping).
"""

from __future__ import annotations

import numpy as np

from ..progress import silent
from ..toolpath import Kind
from .common import (contour_toolpath, hatch_region_inset, layer_ids_of, order_marks, same_layers,
                     span_boolean, spans_to_toolpath)


def core_spans(region, layer_z_um, base, recipe, row_spacing_um, angle_deg, row_offset_um):
    """``base`` intersected with the region ``skin_layers`` layers above and below.

    Parameters
    ----------
    region : Region
    layer_z_um : (L,) float64
    base : Spans
        The layer's own spans on the row grid (possibly inset).
    row_spacing_um, angle_deg, row_offset_um :
        The grid of ``base``.

    Returns
    -------
    Spans
    """
    core = base
    for d in range(1, recipe.skin_layers + 1):
        for sign in (1.0, -1.0):
            other = region.spans(layer_z_um + sign * d * recipe.slice_um, row_spacing_um, angle_deg, row_offset_um)
            core = span_boolean(core, same_layers(other, base.layer_z_um), "intersection")
    return core


def scaffold_marks(region, layer_z_um, recipe, progress=silent, layer_ids=None):
    """Contour, skin and scaffold-wall marks of a region.

    Parameters
    ----------
    region : strategies.common.Region
    layer_z_um : (L,) float64
        The layer table (heights), µm.
    recipe : Recipe
    layer_ids : (K,) int, optional
        Layers of the table to make (default all).

    Returns
    -------
    (Toolpath, dict)
        Marks ordered layer by layer (contours, skin, walls); report with ``dropped_segments``,
        ``skin_layers``, ``wall_layers``.
    """
    lz = np.asarray(layer_z_um, dtype=np.float64)
    ids = layer_ids_of(lz, layer_ids)
    inset = hatch_region_inset(recipe)
    h = recipe.hatch_um
    angles = recipe.layer_angle_deg(len(lz))[ids]
    steps = 2 + 2 * recipe.scaffold_wall_lines
    progress(0, steps, "skins")
    base = region.inset_spans(lz[ids], inset, h, angles, 0.5 * h)
    core = core_spans(region, lz[ids], base, recipe, h, angles, 0.5 * h)
    skin = span_boolean(base, core, "difference")
    skin_tp, dropped = spans_to_toolpath(region.final(skin), Kind.SKIN, ids, lz, recipe.min_segment_um,
                                         recipe.serpentine, owner=region.owner)
    progress(1, steps, "walls")
    wall_layers = ids[ids % recipe.scaffold_every_n_layers == 0]
    walls = []
    p = recipe.scaffold_pitch_um
    done = 1
    if len(wall_layers):
        wz = lz[wall_layers]
        for angle in (0.0, 90.0):
            for line in range(recipe.scaffold_wall_lines):
                off = 0.5 * p + (line - 0.5 * (recipe.scaffold_wall_lines - 1)) * h
                b = region.inset_spans(wz, inset, p, angle, off)
                c = core_spans(region, wz, b, recipe, p, angle, off)
                tp, dr = spans_to_toolpath(region.final(c), Kind.SCAFFOLD, wall_layers, lz, recipe.min_segment_um,
                                           recipe.serpentine, owner=region.owner)
                walls.append(tp)
                dropped += dr
                done += 1
                progress(done, steps, "walls")
    rings = contour_toolpath(region, lz, recipe, ids)
    progress(steps, steps, "contours")
    report = {"dropped_segments": int(dropped), "wall_layers": int(len(wall_layers))}
    return order_marks([rings, skin_tp, *walls], lz), report
