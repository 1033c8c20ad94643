"""Scan strategies: from the region of a part to marks (geometry only; exposure comes after).

Each strategy is a function ``marks(region, layer_z_um, recipe, progress) -> (Toolpath, report)``
returning marks ordered layer by layer, bottom-up, with ``mark_block = -1`` and power/speed
still unset. :func:`bioslicer.planning.plan_toolpath` picks one by ``recipe.strategy``.
"""

from __future__ import annotations

from .channels import channels_marks
from .common import Region, make_region
from .lattice import gyroid_marks, woodpile_marks
from .scaffold import scaffold_marks
from .solid import solid_marks
from .vessel_wall import vessel_wall_marks

STRATEGY_FUNCTIONS = {
    "solid": solid_marks,
    "shell-scaffold": scaffold_marks,
    "woodpile": woodpile_marks,
    "gyroid": gyroid_marks,
    "channels": channels_marks,
    "vessel-wall": vessel_wall_marks,
}

__all__ = ["Region", "make_region", "solid_marks", "scaffold_marks", "woodpile_marks", "gyroid_marks",
           "channels_marks", "vessel_wall_marks", "STRATEGY_FUNCTIONS"]
