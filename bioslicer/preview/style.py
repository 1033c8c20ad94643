"""Colours and sizes of the preview scenes (RGB 0-255)."""

from __future__ import annotations

from ..toolpath import Kind

# ----------------------------------------------------------------------------- style
#: Colour of jumps (laser off) in the 2-D layer view.
JUMP_COLOR = (150, 150, 160)
#: Colour of the slice contours (the solid's outline) in the 2-D layer view.
SLICE_CONTOUR_COLOR = (235, 235, 235)
#: Colour of the galvo field outline and of the stitching block boxes.
FIELD_COLOR = (240, 215, 60)
#: Colour of the translucent mesh and of the solid isosurface.
MESH_COLOR = (200, 205, 215)
SOLID_COLOR = (120, 210, 200)
#: Window background (top and bottom of a vertical gradient) and text colour.
BACKGROUND = ((22, 24, 32), (52, 56, 70))
TEXT_COLOR = (235, 235, 240)
#: Cycling palette for ``color="block"``; unstitched marks (block -1) are grey.
BLOCK_PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                 (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127))
UNSTITCHED_COLOR = (110, 110, 120)
#: RGB colour (0-255) of each mark kind, used in the 3-D and 2-D views: the kinds of the Kind
#: registry in order take red, blue, green, orange, purple, then the block palette.
KIND_COLORS = dict(zip(Kind, ((230, 75, 60), (60, 150, 240), (80, 200, 110), (245, 170, 40), (175, 110, 230),
                              *BLOCK_PALETTE)))

#: Palette of ``color="set"`` (parameter sets in id order) up to its length, with a legend naming
#: each set; more sets take a continuous colour map (``SET_CMAP``) with a colour bar. Marks
#: matching no listed set are grey (``UNSTITCHED_COLOR``).
SET_PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (23, 190, 207),
               (227, 119, 194), (188, 189, 34), (140, 86, 75), (174, 199, 232), (255, 187, 120), (152, 223, 138))
SET_CMAP = "turbo"

COLOR_MODES = ("kind", "power", "layer", "block", "set")
DEFAULT_WINDOW = (1200, 900)
#: Fewest distinct layers kept when decimating by layer (the rest is taken by marks).
MIN_LAYERS_SHOWN = 24
#: Layer steps up to this are used alone; larger loads are split between layers and marks.
SQRT_SPLIT_ABOVE = 16


def _rgb(c) -> tuple[float, float, float]:
    return tuple(v / 255.0 for v in c)
