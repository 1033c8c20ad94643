"""From a solid and a recipe to an exposed toolpath: the one public entry :func:`plan_toolpath`."""

from __future__ import annotations

from .errors import BioslicerError
from .exposure import apply_exposure, check_exposure, power_field_from_recipe
from .kernel.measure import kind_tally
from .progress import silent
from .recipe import Recipe, _validate
from .strategies import STRATEGY_FUNCTIONS, make_region
from .strategies.common import check_layers
from .toolpath import Kind, Toolpath


def plan_toolpath(solid, recipe: Recipe, printer, progress=silent, power_field=None, layer_ids=None,
                  window_um=None, owner=None, checked: bool = False) -> tuple[Toolpath, dict]:
    """Run the recipe's scan strategy and exposure on a solid.

    Parameters
    ----------
    solid : bioslicer.mesh.Solid
        The part (µm, outward normals).
    recipe : Recipe
        Every slicing parameter (validated again here).
    printer : Printer
        Power and speed limits; per-kind power above ``max_power_mw`` or speeds outside the
        printer's range raise BioslicerError.
    progress : callable, optional
        ``progress(done, total, label)``.
    power_field : callable, optional
        ``f(x_um, y_um, z_um) -> factor`` (arrays) multiplying the power; overrides the field
        the recipe names (``power_field_path`` / ramp).
    layer_ids : (K,) int, optional
        Plan only these layers of the part's layer table (marks keep their global layer index
        and the toolpath keeps the whole table).
    window_um : ((xmin, ymin), (xmax, ymax)), optional
        Plan only the scan rows crossing this box (kept whole) and the contours of the layers.
        With ``layer_ids`` this is one stitching block's share of the part: every mark reaching
        the box is bit-identical to the same mark of the whole plan, in the same order.
    owner : callable, optional
        ``owner(x, y, z) -> bool array`` of the block's cell: dropped short segments are counted
        only where it holds their midpoint (so block counts add up to the part's).
    checked : bool
        The recipe was already validated and checked against the printer
        (:func:`~bioslicer.exposure.check_exposure`) once for the whole job: skip both here.

    Returns
    -------
    (Toolpath, dict)
        The toolpath in absolute part coordinates (µm; z as commanded: ``focal_shift_factor``
        times the physical height above the interface), ``mark_block = -1``, marks ordered layer
        by layer bottom-up (contours first within a layer), ``meta['recipe']`` holding the recipe;
        and a report: ``strategy``, ``layers``, ``marks``, ``points``, ``marks_by_kind``,
        ``length_um_by_kind``, ``mark_length_um``, ``dropped_segments``, ``warnings``,
        ``power_min_mw``, ``power_max_mw``, ``cap_first_layer`` (all deterministic).
    """
    if not checked:
        _validate(recipe)
        check_exposure(recipe, printer)
    if recipe.strategy not in STRATEGY_FUNCTIONS:
        raise BioslicerError(f"recipe key 'strategy' must be one of {', '.join(STRATEGY_FUNCTIONS)}")
    region = make_region(solid, recipe, window_um, owner)
    lz = check_layers(region, recipe)
    tp, srep = STRATEGY_FUNCTIONS[recipe.strategy](region, lz, recipe, progress, layer_ids=layer_ids)
    field = power_field if power_field is not None else power_field_from_recipe(recipe, solid)
    surface = recipe.surface_z_um
    if surface is None:   # depth 0 where the light enters: the part bottom, or its top for upright optics
        surface = float(region.bounds_um[1 if getattr(printer, "light_from", "") == "above" else 0, 2])
    tp, erep = apply_exposure(tp, recipe, printer, power_field=field, surface_z_um=surface, checked=True)
    if recipe.focal_shift_factor != 1.0:   # exposure saw physical depth; from here on z is what is commanded
        tp.z_um = recipe.commanded_z_um(tp.z_um)
        tp.layer_z_um = recipe.commanded_z_um(tp.layer_z_um)
    tp.meta = dict(tp.meta)
    tp.meta["recipe"] = recipe.to_dict()
    tp.meta["strategy"] = recipe.strategy
    if region.is_mold:
        tp.meta["channel_block_um"] = region.bounds_um.tolist()

    lengths = tp.mark_lengths()
    n_kind, l_kind = kind_tally(tp.mark_kind, lengths, max(len(Kind), int(tp.mark_kind.max(initial=0)) + 1))
    by_kind = {k.name.lower(): int(n_kind[int(k)]) for k in Kind}
    len_kind = {k.name.lower(): float(l_kind[int(k)]) for k in Kind}
    warnings = list(srep.get("warnings", [])) + list(erep["warnings"])
    if srep.get("dropped_segments", 0):
        warnings.append(f"dropped {srep['dropped_segments']} segments shorter than "
                        f"min_segment_um = {recipe.min_segment_um:g} µm")
    report = {
        "strategy": recipe.strategy,
        "layers": tp.n_layers,
        "marks": tp.n_marks,
        "points": tp.n_points,
        "marks_by_kind": by_kind,
        "length_um_by_kind": len_kind,
        "mark_length_um": float(lengths.sum()),
        "dropped_segments": int(srep.get("dropped_segments", 0)),
        "warnings": warnings,
        "power_min_mw": erep["power_min_mw"],
        "power_max_mw": erep["power_max_mw"],
        "cap_first_layer": erep["cap_first_layer"],
        "power_clip": erep["clip"],
        "surface_z_um": erep["surface_z_um"],
        "subdivided": erep["subdivided"],
        "modulation": erep["modulation"],
    }
    for key, val in srep.items():
        if key not in ("dropped_segments", "warnings"):
            report[key] = val
    if region.is_mold:
        report["channel_block_um"] = region.bounds_um.tolist()
    return tp, report
