"""Solid strategy: contours plus hatch lines filling each layer.

Hatch rows are at ``hatch_um`` (rows at ``v = (j + 1/2) * hatch_um`` in the layer's rotated
frame), the angle of layer k is ``hatch_angle_deg + k * hatch_angle_step_deg``, rows are
serpentine (alternate directions) unless ``serpentine`` is false. ``contour_count`` rings sit at
``contour_offset_um + i * contour_spacing_um`` inside the surface; the hatch is inset by
``hatch_inset_um`` from the outer contour. Without inset the spans come straight from the mesh
(the fastest path).
"""

from __future__ import annotations

import numpy as np

from ..progress import silent
from ..toolpath import Kind
from .common import contour_toolpath, hatch_region_inset, layer_ids_of, spans_to_toolpath


def solid_marks(region, layer_z_um, recipe, progress=silent, layer_ids=None):
    """Contour and hatch marks of a region.

    Parameters
    ----------
    region : strategies.common.Region
    layer_z_um : (L,) float64
        The layer table (heights), µm.
    recipe : Recipe
    layer_ids : (K,) int, optional
        Layers of the table to make (default all); marks keep their global layer index.

    Returns
    -------
    (Toolpath, dict)
        Marks ordered layer by layer (contours first), power/speed unset; report with
        ``dropped_segments``.
    """
    lz = np.asarray(layer_z_um, dtype=np.float64)
    ids = layer_ids_of(lz, layer_ids)
    angles = recipe.layer_angle_deg(len(lz))[ids]
    progress(0, 3, "hatch")
    spans = region.final_spans(lz[ids], hatch_region_inset(recipe), recipe.hatch_um, angles, 0.5 * recipe.hatch_um,
                               cut=False)
    progress(1, 3, "contours")
    rings = contour_toolpath(region, lz, recipe, ids)
    progress(2, 3, "hatch marks")
    # contours first within a layer: the hatch is written straight into the joined arrays
    marks, dropped = spans_to_toolpath(spans, Kind.HATCH, ids, lz, recipe.min_segment_um,
                                       recipe.serpentine, owner=region.owner, before=rings, window_um=region.window_um)
    progress(3, 3, "hatch marks")
    return marks, {"dropped_segments": int(dropped)}
