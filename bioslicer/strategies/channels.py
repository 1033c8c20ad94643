"""Channels (mold) strategy: print a block minus the mesh, so vessel-lumen meshes become
empty, perfusable channels in a hydrogel block.

The block is ``channel_block_size_um`` (x, y, z) centred on the mesh, or the mesh bounds plus
``channel_margin_um`` on every side. Inlets and outlets are opened: a centerline tree's terminals
within the margin of a face are carried out through it (any block); a lumen mesh in a margin
block is carried out wherever it meets the margin (compact sections next to its bounds, see
``strategies/openings.py``); with a given block size a lumen mesh must reach the faces itself.
The block is filled like the solid strategy (contours around the block and around every
channel, hatch between).
"""

from __future__ import annotations

from ..progress import silent
from .solid import solid_marks


def channels_marks(region, layer_z_um, recipe, progress=silent, layer_ids=None):
    """Contours and hatch of ``region`` (a mold :class:`~bioslicer.strategies.common.Region`).

    Parameters / Returns: as :func:`bioslicer.strategies.solid.solid_marks`.
    """
    if not region.is_mold:
        raise ValueError("channels_marks needs a mold region (make_region with strategy 'channels')")
    return solid_marks(region, layer_z_um, recipe, progress, layer_ids)
