"""Vessel-wall strategy (centerline input): print a wall ``wall_um`` thick outside the lumen.

The wall is the sweep at ``r + wall_um`` minus the sweep at ``r`` (span booleans on the row
grid; polygons for contours). Each terminal point is cut flat across its last segment so inlets
and outlets are open; ``closed_ends = true`` keeps the round caps (a sealed vessel). The wall is
filled like the solid strategy (contours, hatch between).
"""

from __future__ import annotations

import numpy as np
import shapely

from ..errors import BioslicerError
from ..progress import silent
from .common import Region, span_boolean, window_rows
from .solid import solid_marks


class WallRegion(Region):
    """The wall of a vessel tree: ``outer`` (the dilated, open-ended tree) minus ``lumen``."""

    def __init__(self, outer, lumen, window_um=None, owner=None) -> None:
        super().__init__(outer, window_um=window_um, owner=owner)
        self.lumen = lumen

    def spans(self, layer_z_um, row_spacing_um, angle_deg, row_offset_um=0.0):
        from ..slicing import slice_spans

        w = self.window_um
        out = window_rows(slice_spans(self.solid, layer_z_um, row_spacing_um, angle_deg=angle_deg,
                                      row_offset_um=row_offset_um, row_window_um=w), w)
        lum = window_rows(slice_spans(self.lumen, layer_z_um, row_spacing_um, angle_deg=angle_deg,
                                      row_offset_um=row_offset_um, row_window_um=w), w)
        return span_boolean(out, lum, "difference")

    def polygons(self, layer_z_um) -> list:
        from ..slicing import slice_contours

        key = np.asarray(layer_z_um, dtype=np.float64).tobytes()
        if key in self._poly_cache:
            return self._poly_cache[key]
        outer = slice_contours(self.solid, layer_z_um)
        lumen = slice_contours(self.lumen, layer_z_um)
        polys = [shapely.difference(outer.polygons(k), lumen.polygons(k)) for k in range(outer.n_layers)]
        self._poly_cache = {key: polys}
        return polys


def wall_region(tree, recipe, window_um=None, owner=None) -> WallRegion:
    """The :class:`WallRegion` of a centerline tree for ``recipe`` (``wall_um``, ``closed_ends``)."""
    if not hasattr(tree, "dilated"):
        raise BioslicerError("strategy 'vessel-wall' needs a centerline input (.swc, .vtp, .vtk, .json, .csv); "
                             "for a mesh use solid or shell-scaffold")
    outer = tree.dilated(recipe.wall_um)
    if not recipe.closed_ends:
        outer = outer.open_ended()
    return WallRegion(outer, tree, window_um=window_um, owner=owner)


def vessel_wall_marks(region, layer_z_um, recipe, progress=silent, layer_ids=None):
    """Contours and hatch of the wall region.

    Parameters / Returns: as :func:`bioslicer.strategies.solid.solid_marks`.
    """
    if not isinstance(region, WallRegion):
        raise ValueError("vessel_wall_marks needs a WallRegion (make_region with strategy 'vessel-wall')")
    return solid_marks(region, layer_z_um, recipe, progress, layer_ids)
