"""Lattice infill for tissue scaffolds: woodpile (log-pile) and gyroid sheet, clipped to the
part, with contours around.

Woodpile: struts are lines at ``lattice_pitch_um`` (``lattice_strut_lines`` lines ``hatch_um``
apart per strut), along x in even piles and along y in odd piles; a pile is
``lattice_strut_height_um`` tall (all layers inside a pile write the same struts). With
``lattice_stagger`` every second pile of the same direction is shifted by half a pitch (the
face-centred log-pile used for photonic and tissue scaffolds).

Gyroid sheet: hatch rows of the part (angle and serpentine as the solid strategy) are kept
where ``|g| / |grad g| <= gyroid_thickness_um / 2``, g the gyroid of cell ``gyroid_cell_um``
(origin at the part's lower corner).
"""

from __future__ import annotations

import numpy as np

from ..kernel import marks as _k
from ..progress import silent
from ..toolpath import Kind
from .common import (contour_toolpath, hatch_region_inset, layer_ids_of, order_marks, segments_to_toolpath,
                     spans_to_toolpath)


def woodpile_marks(region, layer_z_um, recipe, progress=silent, layer_ids=None):
    """Contour and woodpile strut marks of a region.

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
        Marks ordered layer by layer (contours, struts); report with ``dropped_segments``.
    """
    lz = np.asarray(layer_z_um, dtype=np.float64)
    ids = layer_ids_of(lz, layer_ids)
    z0 = float(region.bounds_um[0, 2])
    pile = np.floor((lz[ids] - z0) / recipe.lattice_strut_height_um).astype(np.int64)
    direction = pile % 2
    shift = (pile // 2) % 2 if recipe.lattice_stagger else np.zeros_like(pile)
    inset = hatch_region_inset(recipe)
    p = recipe.lattice_pitch_um
    n_lines = recipe.lattice_strut_lines
    parts = []
    dropped = 0
    groups = [(d, s) for d in (0, 1) for s in (0, 1)]
    for gi, (d, s) in enumerate(groups):
        layers = ids[(direction == d) & (shift == s)]
        progress(gi, len(groups), "struts")
        if len(layers) == 0:
            continue
        angle = 0.0 if d == 0 else 90.0
        for line in range(n_lines):
            off = 0.5 * p + s * 0.5 * p + (line - 0.5 * (n_lines - 1)) * recipe.hatch_um
            sp = region.inset_spans(lz[layers], inset, p, angle, off)
            tp, dr = spans_to_toolpath(region.final(sp), Kind.LATTICE, layers, lz, recipe.min_segment_um,
                                       recipe.serpentine, owner=region.owner)
            parts.append(tp)
            dropped += dr
    progress(len(groups), len(groups), "struts")
    rings = contour_toolpath(region, lz, recipe, ids)
    struts = order_marks(parts, lz)
    return order_marks([rings, struts], lz), {"dropped_segments": int(dropped)}


def gyroid_marks(region, layer_z_um, recipe, progress=silent, layer_ids=None):
    """Contour and gyroid-sheet marks of a region.

    Parameters / Returns: as :func:`woodpile_marks`.
    """
    lz = np.asarray(layer_z_um, dtype=np.float64)
    ids = layer_ids_of(lz, layer_ids)
    angles = recipe.layer_angle_deg(len(lz))[ids]
    progress(0, 2, "gyroid")
    spans = region.inset_spans(lz[ids], hatch_region_inset(recipe), recipe.hatch_um, angles, 0.5 * recipe.hatch_um)
    rows, _ = spans_to_toolpath(region.final(spans), Kind.LATTICE, ids, lz, 0.0, recipe.serpentine)
    lo = region.bounds_um[0]
    x0 = rows.x_um[0::2] - lo[0]
    y0 = rows.y_um[0::2] - lo[1]
    x1 = rows.x_um[1::2] - lo[0]
    y1 = rows.y_um[1::2] - lo[1]
    z = rows.z_um[0::2] - lo[2]
    cell, t = recipe.gyroid_cell_um, recipe.gyroid_thickness_um
    step = min(t / 4.0, cell / 64.0)
    counts = np.empty(len(x0), np.int64)
    _k.count_gyroid(x0, y0, x1, y1, z, cell, t, step, counts)
    off = np.zeros(len(x0) + 1, np.int64)
    np.cumsum(counts, out=off[1:])
    out = np.empty(4 * int(off[-1]))
    _k.fill_gyroid(x0, y0, x1, y1, z, cell, t, step, off, out)
    q = out.reshape(-1, 4)
    layer = np.repeat(rows.mark_layer, counts)
    keep = np.hypot(q[:, 2] - q[:, 0], q[:, 3] - q[:, 1]) >= recipe.min_segment_um
    q_all = q
    q = q[keep]
    progress(1, 2, "contours")
    sheet = segments_to_toolpath(q[:, 0] + lo[0], q[:, 1] + lo[1], q[:, 2] + lo[0], q[:, 3] + lo[1],
                                 layer[keep], Kind.LATTICE, lz)
    rings = contour_toolpath(region, lz, recipe, ids)
    progress(2, 2, "contours")
    drop = ~keep
    if region.owner is not None and drop.any():
        qd = q_all[drop]
        n_drop = int(np.count_nonzero(region.owner(lo[0] + (qd[:, 0] + qd[:, 2]) / 2, lo[1] + (qd[:, 1] + qd[:, 3]) / 2,
                                                   lz[layer[drop]])))
    else:
        n_drop = int(drop.sum())
    return order_marks([rings, sheet], lz), {"dropped_segments": n_drop}
