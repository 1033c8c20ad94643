"""Exposure: laser power per point and scan speed per mark, applied to a toolpath.

Power of a point = ``power_mw[kind]`` x depth factor x power-field factor. A request above the
printer's maximum fails the slice (:class:`PowerClipError`, one line naming the largest request,
its layer and depth) unless ``recipe.allow_power_clip``: then it is clipped and counted (points,
mark length, largest request) for the job summary. Speed of a mark = ``speed_um_s[kind]``.
Everything is vectorised over the toolpath arrays.

Depth compensation (``recipe.depth_mode``) counts depth from the side the light enters
(``printer.light_from``): ``depth = z - surface_z_um`` from below (default surface: the part
bottom), ``depth = surface_z_um - z`` from above (default surface: the part top); negative depths
count as 0:

- ``none``: factor 1
- ``exponential``: ``exp(depth / attenuation_length_um)`` (compensates Beer-Lambert loss)
- ``linear``: ``1 + depth_slope_per_um * depth``
- ``table``: ``interp(depth, depth_table)``, held constant beyond the first and last rows

Power fields (grayscale) multiply the power by a factor given over space: any callable
``f(x_um, y_um, z_um) -> factor`` (numpy arrays in, array out), a :class:`VolumeField` (a
[z, y, x] volume of factors, e.g. from a .npy or 3-D TIFF file), or the built-in
distance-from-surface ramp (:func:`ramp_field`). When a field is used, marks are subdivided
so that points are at most ``point_distance_um`` apart and the field is sampled at every point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BioslicerError
from .kernel import marks as _k
from .toolpath import Kind, Toolpath


# ----------------------------------------------------------------------------- depth
class PowerClipError(BioslicerError):
    """A power request above the laser's maximum (the slice fails unless allow_power_clip)."""


def depth_factor(z_um, recipe, surface_z_um: float = 0.0, from_above: bool = False) -> np.ndarray:
    """Depth compensation factor of the power at heights ``z_um``.

    Parameters
    ----------
    z_um : (N,) float
        Heights of the points, µm.
    recipe : Recipe
        ``depth_mode``, ``attenuation_length_um``, ``depth_slope_per_um``, ``depth_table``.
    surface_z_um : float
        Height of the surface the light enters from / the interface (depth 0), µm.
    from_above : bool
        The light enters from above (upright optics): depth grows downwards from the surface.

    Returns
    -------
    (N,) float64
        Factor multiplying the nominal power (1 at depth 0 for exponential and linear).
    """
    z = np.asarray(z_um, dtype=np.float64)
    depth = np.maximum(surface_z_um - z if from_above else z - surface_z_um, 0.0)
    mode = recipe.depth_mode
    if mode == "none":
        return np.ones_like(depth)
    if mode == "exponential":
        return np.exp(depth / recipe.attenuation_length_um)
    if mode == "linear":
        return np.maximum(1.0 + recipe.depth_slope_per_um * depth, 0.0)
    if mode == "table":
        tab = np.asarray(recipe.depth_table, dtype=np.float64).reshape(-1, 2)
        return np.interp(depth, tab[:, 0], tab[:, 1])
    raise BioslicerError(f"recipe key 'depth_mode' must be none, exponential, linear or table, got {mode!r}")


# ----------------------------------------------------------------------------- fields
class VolumeField:
    """A power factor over space sampled on a voxel grid, trilinear between voxel centres.

    Attributes
    ----------
    values : (nz, ny, nx) float64
        Factor per voxel (1 = nominal power).
    voxel_um : (3,) float64
        Voxel size (dx, dy, dz), µm.
    origin_um : (3,) float64
        Centre of voxel [0, 0, 0] (x, y, z), µm. Points outside take the nearest edge value.
    """

    def __init__(self, values, voxel_um, origin_um=(0.0, 0.0, 0.0)) -> None:
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 3 or min(v.shape) < 1:
            raise BioslicerError(f"power field must be a 3-D volume [z, y, x], got shape {v.shape}")
        if not np.all(np.isfinite(v)) or v.min() < 0:
            raise BioslicerError("power field values must be finite factors >= 0 (1 = nominal power)")
        self.values = np.ascontiguousarray(v)
        self.voxel_um = np.asarray(voxel_um, dtype=np.float64).reshape(3)
        self.origin_um = np.asarray(origin_um, dtype=np.float64).reshape(3)
        if np.any(self.voxel_um <= 0):
            raise BioslicerError("power field voxel size must be three positive values [dx, dy, dz] in µm")

    @classmethod
    def load(cls, path, voxel_um, origin_um=(0.0, 0.0, 0.0)) -> "VolumeField":
        """Read a .npy or 3-D .tif/.tiff volume ([z, y, x] factors)."""
        p = Path(path)
        if not p.is_file():
            raise BioslicerError(f"power field file {p} not found; give a .npy or .tif volume")
        suffix = p.suffix.lower()
        try:
            if suffix == ".npy":
                vol = np.load(p, allow_pickle=False)
            elif suffix in (".tif", ".tiff"):
                import tifffile

                vol = tifffile.imread(str(p))
            else:
                raise BioslicerError(f"power field {p.name}: unknown format; use .npy or .tif/.tiff")
        except (OSError, ValueError) as exc:
            raise BioslicerError(f"cannot read power field {p.name}: {exc}") from None
        return cls(np.asarray(vol, dtype=np.float64), voxel_um, origin_um)

    def __call__(self, x_um, y_um, z_um) -> np.ndarray:
        x = np.ascontiguousarray(x_um, dtype=np.float64)
        y = np.ascontiguousarray(y_um, dtype=np.float64)
        z = np.ascontiguousarray(z_um, dtype=np.float64)
        out = np.empty(len(x))
        _k.sample_volume(self.values, self.origin_um, self.voxel_um, x, y, z, out)
        return out


def ramp_field(solid, width_um: float, min_factor: float, voxel_um: float | None = None,
               max_voxels: float = 2e7, max_bytes: int = 2**30) -> VolumeField:
    """A factor rising from ``min_factor`` at the part surface to 1 at ``width_um`` inside.

    Tames proximity over-exposure next to walls (e.g. around channel lumens). The distance to
    the surface is a Euclidean distance transform of the voxelised part.

    Parameters
    ----------
    solid : Solid
    width_um : float
        Ramp width, µm (> 0).
    min_factor : float
        Factor at the surface, (0, 1].
    voxel_um : float, optional
        Voxel size for the distance transform, µm; default ``width_um / 4``, coarsened so the
        grid stays under ``max_voxels`` (the transform needs ~20 bytes per voxel).
    max_voxels : float
        Largest grid; an explicit ``voxel_um`` above it is refused (BioslicerError).

    Returns
    -------
    VolumeField
    """
    from scipy.ndimage import distance_transform_edt

    from .slicing import voxelize

    if not width_um > 0:
        raise BioslicerError("recipe key 'power_ramp_width_um' must be positive for a ramp field")
    b = _bounds(solid)
    box_um3 = float(np.prod(b[1] - b[0] + 2 * width_um))
    if voxel_um:
        vox = float(voxel_um)
        if box_um3 / vox**3 > max_voxels:
            raise BioslicerError(
                f"power ramp grid at {vox:g} µm voxels needs {box_um3 / vox**3:.3g} voxels (limit {max_voxels:.0e}); "
                f"raise recipe key 'power_ramp_voxel_um' to at least {(box_um3 / max_voxels) ** (1 / 3):.3g} µm")
    else:
        vox = max(width_um / 4.0, (box_um3 / max_voxels) ** (1.0 / 3.0))
    # one empty voxel around the part (also keeps the part's faces off the grid edge)
    grid = voxelize(solid, vox, vox, region_um=(b[0] - vox, b[1] + vox), max_bytes=max_bytes)
    occ = np.asarray(grid.dense(), dtype=bool)
    occ = np.pad(occ, 1)  # outside the grid is outside the part
    dz, dy, dx = grid.voxel_um[2], grid.voxel_um[1], grid.voxel_um[0]
    dist = distance_transform_edt(occ, sampling=(dz, dy, dx))
    dist = np.maximum(dist - 0.5 * min(dx, dy, dz), 0.0)
    factor = min_factor + (1.0 - min_factor) * np.clip(dist / width_um, 0.0, 1.0)
    origin = _voxel_centre_origin(grid) - np.array([dx, dy, dz])
    return VolumeField(factor, (dx, dy, dz), origin)


def _bounds(solid) -> np.ndarray:
    b = getattr(solid, "bounds_um", None)
    return np.asarray(solid.bounds if b is None else b, dtype=np.float64).reshape(2, 3)


def _voxel_centre_origin(grid) -> np.ndarray:
    """Centre of voxel [0, 0, 0] of a slicing.VoxelGrid (origin_um is its corner)."""
    return np.asarray(grid.origin_um, dtype=np.float64) + 0.5 * np.asarray(grid.voxel_um, dtype=np.float64)


def power_field_from_recipe(recipe, solid=None):
    """The power field a recipe names (file or ramp), or None.

    A file field and a ramp multiply each other when both are set.
    """
    fields = []
    if recipe.power_field_path:
        origin = recipe.power_field_origin_um or [0.0, 0.0, 0.0]
        fields.append(VolumeField.load(recipe.power_field_path, recipe.power_field_voxel_um, origin))
    if recipe.power_ramp_width_um > 0:
        if solid is None:
            raise BioslicerError("a power ramp needs the part mesh; give it to plan_toolpath")
        fields.append(ramp_field(solid, recipe.power_ramp_width_um, recipe.power_ramp_min_factor,
                                 recipe.power_ramp_voxel_um))
    if not fields:
        return None
    if len(fields) == 1:
        return fields[0]
    return _Product(fields)


class _Product:
    def __init__(self, fields) -> None:
        self.fields = fields

    def __call__(self, x, y, z):
        out = np.ones(len(x))
        for f in self.fields:
            out *= f(x, y, z)
        return out


# ----------------------------------------------------------------------------- subdivision
def subdivide_marks(tp: Toolpath, point_distance_um: float, max_points: float = 1.5e8) -> Toolpath:
    """Split every step of every mark so that points are at most ``point_distance_um`` apart.

    Parameters
    ----------
    tp : Toolpath
    point_distance_um : float
        Largest distance between consecutive points of a mark, µm.
    max_points : float
        Refuse (BioslicerError) a result with more points (48 bytes per point in the toolpath).

    Returns
    -------
    Toolpath
        Same marks (kinds, layers, speeds, blocks), more points; power is copied from the
        first point of each mark (exposure sets it afterwards).
    """
    if not point_distance_um > 0:
        raise BioslicerError("recipe key 'point_distance_um' must be positive")
    m = tp.n_marks
    counts = np.empty(m, np.int64)
    _k.count_subdivided(tp.x_um, tp.y_um, tp.z_um, tp.mark_start, float(point_distance_um), counts)
    starts = np.zeros(m + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    n = int(starts[-1])
    if n > max_points:
        raise BioslicerError(
            f"sampling the power field every {point_distance_um:g} µm gives {n:.3g} points (limit {max_points:.0e}, "
            f"~{n * 48 / 1e9:.0f} GB); raise recipe key 'point_distance_um'")
    nx, ny, nz = np.empty(n), np.empty(n), np.empty(n)
    _k.fill_subdivided(tp.x_um, tp.y_um, tp.z_um, tp.mark_start, float(point_distance_um), starts, nx, ny, nz)
    power = np.repeat(tp.power_mw[tp.mark_start[:-1]], counts) if m else np.zeros(0)
    return tp.with_points({"x_um": nx, "y_um": ny, "z_um": nz, "power_mw": power}, starts,
                          tp.take_marks(np.arange(m)))


# ----------------------------------------------------------------------------- checks
def check_exposure(recipe, printer) -> None:
    """Refuse per-kind power above the printer's maximum, speeds outside its limits, and depth
    compensation on a profile that does not say which side the light enters from."""
    if recipe.depth_mode != "none" and getattr(printer, "light_from", "") not in ("below", "above"):
        raise BioslicerError(f"printer profile {printer.source or printer.name}: depth compensation needs "
                             "[objective] light_from = \"below\" or \"above\" (the side the light enters from)")
    for k in Kind.names():
        p = recipe.power_mw[k]
        if p > printer.max_power_mw:
            raise BioslicerError(f"recipe key 'power_mw.{k}' = {p:g} mW is above the maximum "
                                 f"{printer.max_power_mw:g} mW of printer {printer.name}; lower it")
        v = recipe.speed_um_s[k]
        if not printer.min_speed_um_s <= v <= printer.max_speed_um_s:
            raise BioslicerError(f"recipe key 'speed_um_s.{k}' = {v:g} µm/s is outside the printer's range "
                                 f"{printer.min_speed_um_s:g}..{printer.max_speed_um_s:g} µm/s; change it")


def clipped_length_um(tp: Toolpath, clipped: np.ndarray) -> float:
    """Mark length written at clipped power: the segments whose end point is in ``clipped`` (N,), µm."""
    if tp.n_points < 2:
        return 0.0
    d = np.sqrt(np.diff(tp.x_um) ** 2 + np.diff(tp.y_um) ** 2 + np.diff(tp.z_um) ** 2)
    d[tp.mark_start[1:-1] - 1] = 0.0          # no segment from one mark to the next
    return float(d[clipped[1:]].sum())


# ----------------------------------------------------------------------------- apply
def apply_exposure(tp: Toolpath, recipe, printer, power_field=None, surface_z_um: float | None = None,
                   checked: bool = False):
    """Set ``power_mw`` per point, ``mark_speed_um_s`` and ``mark_set`` per mark.

    Modulated power (depth compensation, power field) is rounded to ``recipe.power_levels``
    levels (:func:`bioslicer.paramsets.quantize_power`) after the clip check.

    Parameters
    ----------
    tp : Toolpath
        Geometry with ``mark_kind`` and ``mark_layer`` set.
    recipe : Recipe
        ``power_mw``, ``speed_um_s``, depth compensation, ``point_distance_um``.
    printer : Printer
        ``max_power_mw`` caps the power; speeds are checked against its limits.
    power_field : callable, optional
        ``f(x_um, y_um, z_um) -> factor``; when given, marks are subdivided at
        ``recipe.point_distance_um`` first.
    surface_z_um : float, optional
        Depth 0 height, µm; default ``recipe.surface_z_um``, else the lowest layer bottom (light
        from below) or the highest layer top (light from above).
    checked : bool
        :func:`check_exposure` already ran for this recipe and printer (skip it).

    Returns
    -------
    (Toolpath, dict)
        The exposed toolpath and a report: ``power_min_mw``, ``power_max_mw``,
        ``capped_points``, ``cap_first_layer``, ``clip`` (None, or the clipped points, their mark
        length ``length_um``, the largest request ``max_request_mw`` and its ``layer``, ``z_um``
        and ``depth_um``), ``subdivided``, ``warnings`` (list of str).

    Raises
    ------
    PowerClipError
        A request above the printer's maximum without ``recipe.allow_power_clip``.
    """
    if not checked:
        check_exposure(recipe, printer)
    report = {"warnings": [], "subdivided": False, "capped_points": 0, "cap_first_layer": None, "clip": None}
    from_above = getattr(printer, "light_from", "") == "above"
    if power_field is not None:
        tp = subdivide_marks(tp, recipe.point_distance_um)
        report["subdivided"] = True
    if surface_z_um is None:
        surface_z_um = recipe.surface_z_um
    if surface_z_um is None:
        if not tp.n_layers:
            surface_z_um = 0.0
        elif from_above:
            surface_z_um = float(tp.layer_z_um[-1] + 0.5 * recipe.slice_um)
        else:
            surface_z_um = float(tp.layer_z_um[0] - 0.5 * recipe.slice_um)
    report["surface_z_um"] = float(surface_z_um)

    kind_power = np.array([recipe.power_mw[k] for k in Kind.names()], dtype=np.float64)
    kind_speed = np.array([recipe.speed_um_s[k] for k in Kind.names()], dtype=np.float64)
    if tp.n_marks and int(tp.mark_kind.max()) >= len(kind_power):
        raise ValueError(f"mark kind {int(tp.mark_kind.max())} is not a Kind")
    power = np.empty(tp.n_points)
    _k.kind_power(tp.mark_start, tp.mark_kind, kind_power, power)     # nominal power of each point's kind
    if recipe.depth_mode != "none":    # (a factor 1 everywhere changes nothing)
        power = power * depth_factor(tp.z_um, recipe, surface_z_um, from_above)
    if power_field is not None and tp.n_points:
        f = np.asarray(power_field(tp.x_um, tp.y_um, tp.z_um), dtype=np.float64).reshape(-1)
        if f.shape != (tp.n_points,):
            raise BioslicerError(f"power field returned {f.shape[0]} values for {tp.n_points} points; "
                                 "it must return one factor per point")
        if not np.all(np.isfinite(f)) or f.min() < 0:
            raise BioslicerError("power field returned negative or non-finite factors; return factors >= 0")
        power = power * f
    limit = printer.max_power_mw * (1 + 1e-12)
    if len(power) and power.max() > limit:
        over = power > limit
        top = int(np.argmax(power))
        mark = int(np.searchsorted(tp.mark_start, top, side="right") - 1)
        layer = int(tp.mark_layer[mark])
        z = float(tp.z_um[top])
        depth = max(surface_z_um - z if from_above else z - surface_z_um, 0.0)
        req = float(power[top])
        if not getattr(recipe, "allow_power_clip", False):
            raise PowerClipError(
                f"power request up to {req:.4g} mW is above the laser's maximum {printer.max_power_mw:g} mW "
                f"(layer {layer}, z = {z:.3f} µm, depth {depth:.1f} µm); lower power_mw or the depth "
                "compensation, or pass --allow-power-clip to clip it")
        first_point = int(np.argmax(over))
        n_over = int(over.sum())
        report["capped_points"] = n_over
        report["cap_first_layer"] = int(tp.mark_layer[int(np.searchsorted(tp.mark_start, first_point, "right") - 1)])
        report["clip"] = {"points": n_over, "length_um": clipped_length_um(tp, over), "max_request_mw": req,
                          "layer": layer, "z_um": z, "depth_um": float(depth)}
        power = np.minimum(power, printer.max_power_mw)
    from . import paramsets

    mod = paramsets.modulation(recipe, power_field is not None)
    first_level = None
    if mod is not None:     # bounded number of parameter sets: power on recipe.power_levels levels
        power, level = paramsets.quantize_power(power, recipe, printer)
        first_level = level[tp.mark_start[:-1]]
    tp.power_mw = np.ascontiguousarray(power)
    tp.mark_speed_um_s = np.ascontiguousarray(kind_speed[tp.mark_kind])
    tp.mark_set = paramsets.mark_set_ids(tp.mark_kind, first_level, recipe)
    report["modulation"] = mod
    report["power_min_mw"] = float(power.min()) if len(power) else 0.0
    report["power_max_mw"] = float(power.max()) if len(power) else 0.0
    return tp, report
