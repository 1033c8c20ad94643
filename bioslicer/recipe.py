"""Recipes: every slicing parameter in one TOML-able dataclass.

A :class:`Recipe` holds what :func:`bioslicer.planning.plan_toolpath` (strategies, exposure)
and the stitching stage need, with units in the names (µm, s, mW, degrees). It starts from
the built-in defaults, then the printer profile's ``[defaults]`` table, then a recipe file,
then overrides (CLI ``--set key=value`` or keyword arguments); every step is validated and an
impossible value raises :class:`~bioslicer.errors.BioslicerError` naming the key.

The recipe travels in the job (``Toolpath.meta['recipe']``), so any job can be re-sliced
exactly: ``Recipe.from_dict(meta['recipe'])``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .errors import BioslicerError
from .strategies import STRATEGY_FUNCTIONS
from .toolpath import Kind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: strategy names, from the strategy registry (``strategies.STRATEGY_FUNCTIONS``)
STRATEGIES = tuple(STRATEGY_FUNCTIONS)
_STRATEGY_ALIASES = {"scaffold": "shell-scaffold", "shell_scaffold": "shell-scaffold", "lattice": "woodpile",
                     "log-pile": "woodpile", "logpile": "woodpile", "mold": "channels",
                     "vessel_wall": "vessel-wall", "wall": "vessel-wall"}
DEPTH_MODES = ("none", "exponential", "linear", "table")
FIND_INTERFACE = ("every-block", "once", "off")
TILT_CORRECTION = ("off", "measure")
#: bounds of ``focal_shift_factor`` (commanded / physical z; index mismatch of common optics)
FOCAL_SHIFT_RANGE = (0.5, 2.0)
PLACEMENTS = ("substrate", "keep")

# per-kind defaults for every kind of the Kind registry: contours slower and weaker than fills
_DEFAULT_POWER_MW = {k: 20.0 if k == "contour" else 22.5 for k in Kind.names()}
_DEFAULT_SPEED_UM_S = {k: 50000.0 if k == "contour" else 100000.0 for k in Kind.names()}


@dataclass
class Recipe:
    """Every slicing parameter (units in the names). See the module docstring.

    Attributes (groups)
    -------------------
    strategy : 'solid' | 'shell-scaffold' | 'woodpile' | 'gyroid' | 'channels'
        (aliases accepted on input: scaffold, lattice = woodpile, log-pile, mold = channels)
    slice_um : layer distance, µm (layers sampled at mid-layer heights).
    hatch_um, hatch_angle_deg, hatch_angle_step_deg, serpentine :
        hatch distance (µm); angle of layer k is ``hatch_angle_deg + k * hatch_angle_step_deg``;
        bidirectional (serpentine) rows or all rows in one direction.
    contour_count, contour_spacing_um, contour_offset_um, hatch_inset_um :
        contour ring i sits ``contour_offset_um + i * contour_spacing_um`` inside the surface;
        hatching is inset by ``hatch_inset_um`` from the outer contour (0: hatch up to it).
    min_segment_um : hatch segments shorter than this are dropped (and counted).
    skin_layers, scaffold_pitch_um, scaffold_every_n_layers, scaffold_wall_lines :
        shell-and-scaffold: solid skins ``skin_layers`` thick at top and bottom surfaces, the
        interior only as vertical walls on a square grid of pitch ``scaffold_pitch_um`` (each
        wall ``scaffold_wall_lines`` lines at ``hatch_um``), written on every n-th layer.
    lattice_pitch_um, lattice_strut_height_um, lattice_strut_lines, lattice_stagger :
        woodpile: struts at ``lattice_pitch_um`` along x then y, alternating every
        ``lattice_strut_height_um`` of height; ``lattice_stagger`` shifts every second pair of
        piles by half a pitch (face-centred log-pile).
    gyroid_cell_um, gyroid_thickness_um : gyroid sheet cell size and sheet thickness, µm.
    channel_block_size_um, channel_margin_um :
        channels (mold) mode: the block printed around the lumen mesh, either a fixed size
        (x, y, z) centred on the mesh or the mesh bounds plus a margin.
    wall_um, closed_ends : vessel-wall mode (centerline input): a wall ``wall_um`` thick outside
        the lumen; terminals cut open unless ``closed_ends``.
    voxel_lateral_um, voxel_axial_um : the printed voxel; lumens narrower than 3 lateral (or 2
        axial) voxels close when printed and are refused.
    power_mw, speed_um_s : dicts keyed by :class:`~bioslicer.toolpath.Kind` names.
    depth_mode, attenuation_length_um, depth_slope_per_um, depth_table, surface_z_um :
        depth compensation of power; depth is ``z - surface_z_um`` (default: the part bottom).
        exponential: ``P * exp(depth / attenuation_length_um)``; linear:
        ``P * (1 + depth_slope_per_um * depth)``; table: ``P * interp(depth, table)`` with
        ``depth_table = [[depth_um, factor], ...]``.
    power_field_path, power_field_voxel_um, power_field_origin_um :
        a grayscale power factor volume (.npy or 3-D .tif, [z, y, x]) multiplying the power.
    power_ramp_width_um, power_ramp_min_factor, power_ramp_voxel_um :
        built-in ramp: the power factor rises from ``power_ramp_min_factor`` at the surface to 1
        at ``power_ramp_width_um`` inside (0 width: off).
    point_distance_um : point spacing along marks when a power field is used, µm.
    power_levels : when depth compensation or a power field modulates the power, it is rounded
        to this many levels between 0 and the laser's maximum, so marks fall into a bounded
        number of parameter sets (``bioslicer.paramsets``); at least 2.
    overlap_um, shear_deg, block_size_um : stitching (held for ``bioslicer.stitching``).
    placement, allow_floating, z_offset_um : where the part is printed (``bioslicer.placement``):
        'substrate' puts its lowest point on the interface (z = 0) and its x/y centre at the
        stage's start position; 'keep' keeps the mesh coordinates (z = 0 is the interface) and
        refuses a part that does not reach the interface unless ``allow_floating``;
        ``z_offset_um`` (>= 0) lifts the whole print by that much.
    find_interface : 'every-block' | 'once' | 'off': where the program finds the interface.
    focal_shift_factor : refractive-index mismatch (focal shift) correction, 0.5 .. 2 (1: none).
        Focusing from a medium of index n1 (immersion, substrate) into a resin or hydrogel of
        index n2, the focus moves about n2/n1 (paraxial; more at high NA) of the relative
        objective-sample travel, so every z above the interface is written as ``commanded =
        focal_shift_factor * physical`` with the factor about n1/n2 (DeScribe's
        ``DefocusFactor``): about 1.14 for an oil objective (1.518) focusing into a
        water-like hydrogel (1.33); 1 for dip-in (the objective sits in the resin). Applied to
        the z bioslicer writes, in every dialect (GWL jobs set ``DefocusFactor 1`` so NanoWrite
        does not apply its own again): the interface
        (z = 0) stays, layers are ``slice_um * factor`` apart in the program, the block tiers,
        z-drive moves, piezo range check and time estimate use commanded z; slicing, power
        fields and depth compensation use physical z.
    tilt_correction, tilt_points : 'off' | 'measure': 'measure' writes ``MeasureTilt
        tilt_points`` (an n x n array of interface measurements over the print area) and
        ``TiltCorrectionOn`` before the first ``FindInterfaceAt`` (GWL in piezo scan mode only;
        refused elsewhere); 'off' writes ``TiltCorrectionOff``.
    order, kind_order : scan order (``bioslicer.ordering``): ``order`` per kind, one of auto
        (serpentine fill rows, nearest neighbour otherwise), serpentine, nearest, as-sliced,
        inside-out, outside-in; ``kind_order`` lists the kinds written first within a layer
        (e.g. ["contour", "hatch"]; empty: order of appearance).
    scale : [sx, sy, sz] shrink/swell compensation: the part is scaled by these factors about
        the mesh origin before placement and slicing (e.g. [1.25, 1.25, 1.25] for a hydrogel
        that shrinks to 80 %); None or all ones: unscaled.
    allow_power_clip : proceed when a power request exceeds the laser's maximum (clipped and
        reported once per job); by default such a slice fails.
    """

    strategy: str = "solid"
    slice_um: float = 0.5
    hatch_um: float = 0.2
    hatch_angle_deg: float = 0.0
    hatch_angle_step_deg: float = 90.0
    serpentine: bool = True
    contour_count: int = 1
    contour_spacing_um: float = 0.2
    contour_offset_um: float = 0.0
    hatch_inset_um: float = 0.0
    min_segment_um: float = 0.1
    # shell and scaffold
    skin_layers: int = 4
    scaffold_pitch_um: float = 20.0
    scaffold_every_n_layers: int = 1
    scaffold_wall_lines: int = 1
    # lattice
    lattice_pitch_um: float = 10.0
    lattice_strut_height_um: float = 2.0
    lattice_strut_lines: int = 1
    lattice_stagger: bool = True
    gyroid_cell_um: float = 20.0
    gyroid_thickness_um: float = 1.0
    # channels
    channel_block_size_um: list | None = None
    channel_margin_um: float = 10.0
    # vessel walls (centerline input) and the voxel lumens are checked against
    wall_um: float = 5.0
    closed_ends: bool = False
    voxel_lateral_um: float = 0.3
    voxel_axial_um: float = 1.0
    # exposure
    power_mw: dict = field(default_factory=lambda: dict(_DEFAULT_POWER_MW))
    speed_um_s: dict = field(default_factory=lambda: dict(_DEFAULT_SPEED_UM_S))
    depth_mode: str = "none"
    attenuation_length_um: float = 1000.0
    depth_slope_per_um: float = 0.0
    depth_table: list = field(default_factory=list)
    surface_z_um: float | None = None
    power_field_path: str | None = None
    power_field_voxel_um: list | None = None
    power_field_origin_um: list | None = None
    power_ramp_width_um: float = 0.0
    power_ramp_min_factor: float = 0.7
    power_ramp_voxel_um: float | None = None
    point_distance_um: float = 0.5
    power_levels: int = 256
    # stitching (used by bioslicer.stitching)
    overlap_um: float = 2.0
    shear_deg: float = 0.0
    block_size_um: float | None = None
    placement: str = "substrate"
    allow_floating: bool = False
    z_offset_um: float = 0.0
    find_interface: str = "every-block"
    focal_shift_factor: float = 1.0
    tilt_correction: str = "off"
    tilt_points: int = 5
    allow_power_clip: bool = False
    scale: list | None = None
    order: dict = field(default_factory=lambda: {k: "auto" for k in Kind.names()})
    kind_order: list = field(default_factory=list)

    # ------------------------------------------------------------------ construction
    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_printer(cls, printer) -> "Recipe":
        """Built-in defaults, overridden by the printer profile's ``[defaults]`` table."""
        base = cls()
        if printer is None:
            return base
        return base.updated(_source=f"printer profile {getattr(printer, 'name', '')} [defaults]",
                            **dict(printer.defaults))

    @classmethod
    def from_dict(cls, d: dict, base: "Recipe | None" = None, source: str = "recipe") -> "Recipe":
        """A recipe from a plain dict (as from :meth:`to_dict` or a TOML file) over ``base``."""
        return (base or cls()).updated(_source=source, **dict(d))

    def updated(self, _source: str = "recipe", **overrides) -> "Recipe":
        """A copy with ``overrides`` applied and validated.

        Per-kind dicts (``power_mw``, ``speed_um_s``) merge key by key. Raises
        BioslicerError naming the key for unknown keys and impossible values.
        """
        known = {f.name: f for f in fields(self)}
        changes = {}
        for key, value in overrides.items():
            if key not in known:
                raise BioslicerError(f"{_source}: unknown key {key!r}; see `bioslicer recipe show` for the keys")
            changes[key] = _coerce(key, value, getattr(self, key), _source)
        return replace(self, **changes)

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict:
        """Plain dict (JSON/TOML-able), keys in field order."""
        d = asdict(self)
        d["power_mw"] = {k: float(d["power_mw"][k]) for k in sorted(d["power_mw"])}
        d["speed_um_s"] = {k: float(d["speed_um_s"][k]) for k in sorted(d["speed_um_s"])}
        d["order"] = {k: d["order"][k] for k in sorted(d["order"])}
        return d

    def to_toml(self) -> str:
        """Deterministic TOML text; keys whose value is None are left out (they mean 'default')."""
        lines = ["# bioslicer recipe (units in the key names: um, s, mW, deg)"]
        tables = []
        for k, v in self.to_dict().items():
            if v is None:
                continue
            if isinstance(v, dict):
                tables.append((k, v))
                continue
            lines.append(f"{k} = {_toml_value(v)}")
        for name, tab in tables:
            lines.append("")
            lines.append(f"[{name}]")
            for k, v in tab.items():
                lines.append(f"{k} = {_toml_value(v)}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ helpers
    def commanded_z_um(self, z_um):
        """Physical z above the interface (µm) -> the z the machine is commanded to
        (``focal_shift_factor * z``); ``z_um`` itself when the factor is 1 (nothing copied)."""
        import numpy as np

        if self.focal_shift_factor == 1.0:
            return z_um
        return np.asarray(z_um, dtype=np.float64) * self.focal_shift_factor

    def tilt_measure_points(self) -> int:
        """n of ``MeasureTilt n`` (n x n points) when tilt correction is measured, else 0."""
        return int(self.tilt_points) if self.tilt_correction == "measure" else 0

    def layer_angle_deg(self, n_layers: int):
        """(L,) hatch angle of each layer, degrees in [0, 180)."""
        import numpy as np

        k = np.arange(n_layers, dtype=np.float64)
        return np.mod(self.hatch_angle_deg + k * self.hatch_angle_step_deg, 180.0)


def load_recipe(path, printer=None) -> Recipe:
    """Read a recipe TOML file over the printer defaults (or the built-in defaults).

    Parameters
    ----------
    path : str or Path
        The TOML file; every key must be a :class:`Recipe` field.
    printer : Printer, optional
        Its ``[defaults]`` fill what the file leaves out.

    Returns
    -------
    Recipe
    """
    p = Path(path)
    doc = read_toml(p, "recipe file")
    return Recipe.from_dict(doc, base=Recipe.from_printer(printer), source=f"recipe file {p.name}")


def read_toml(path, what: str) -> dict:
    """A TOML file as a dict; BioslicerError naming ``what`` when it is missing or not TOML."""
    p = Path(path)
    if not p.is_file():
        raise BioslicerError(f"{what} {p} not found; give an existing .toml file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BioslicerError(f"{what} {p.name} is not valid TOML: {str(exc).splitlines()[0]}") from None


def recipe_overrides_from_cli(pairs) -> dict:
    """Turn CLI ``key=value`` strings into a dict for :meth:`Recipe.updated`.

    Values are read as TOML values (``0.2``, ``true``, ``[1, 2, 3]``, ``"text"``); a bare word
    that is not TOML is taken as a string. ``power_mw.hatch=25`` sets one kind of a per-kind
    dict. Unknown keys are refused later by :meth:`Recipe.updated`.
    """
    out: dict = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise BioslicerError(f"override {pair!r} is not key=value; write e.g. --set hatch_um=0.2")
        key, text = pair.split("=", 1)
        key = key.strip()
        text = text.strip()
        if not key:
            raise BioslicerError(f"override {pair!r} has no key; write e.g. --set hatch_um=0.2")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        if "." in key:
            top, sub = key.split(".", 1)
            out.setdefault(top, {})
            if not isinstance(out[top], dict):
                raise BioslicerError(f"override {pair!r} conflicts with another --set of {top!r}")
            out[top][sub] = value
        else:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- checking
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(a) for a in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


_FLOAT_LIST3 = ("channel_block_size_um", "power_field_voxel_um", "power_field_origin_um", "scale")


def _order_modes():
    from .ordering import ORDER_MODES

    return ORDER_MODES


def _num(key, v, src):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BioslicerError(f"{src}: key {key!r} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise BioslicerError(f"{src}: key {key!r} must be finite, got {v!r}")
    return v


def _coerce(key: str, value, current, src: str):
    """Type-convert one override against the field's current value (validation after)."""
    if key in ("power_mw", "speed_um_s"):
        if not isinstance(value, dict):
            raise BioslicerError(f"{src}: key {key!r} must be a table of kinds ({', '.join(Kind.names())})")
        merged = dict(current)
        for k, v in value.items():
            if k not in Kind.names():
                raise BioslicerError(f"{src}: key '{key}.{k}' is not a mark kind; use {', '.join(Kind.names())}")
            merged[k] = _num(f"{key}.{k}", v, src)
        return merged
    if key == "order":
        if not isinstance(value, dict):
            raise BioslicerError(f"{src}: key 'order' must be a table of kinds ({', '.join(Kind.names())}), "
                                 "e.g. order.hatch = \"nearest\"")
        merged = dict(current)
        for k, v in value.items():
            if k not in Kind.names():
                raise BioslicerError(f"{src}: key 'order.{k}' is not a mark kind; use {', '.join(Kind.names())}")
            if v not in _order_modes():
                raise BioslicerError(f"{src}: key 'order.{k}' = {v!r} is not a scan order; use one of "
                                     f"{', '.join(_order_modes())}")
            merged[k] = v
        return merged
    if key == "kind_order":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or any(v not in Kind.names() for v in value) \
                or len(set(value)) != len(value):
            raise BioslicerError(f"{src}: key 'kind_order' must list distinct mark kinds ({', '.join(Kind.names())}), "
                                 f"e.g. [\"contour\", \"hatch\"], got {value!r}")
        return list(value)
    if key in _FLOAT_LIST3:
        if value is None:
            return None
        if key == "scale" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value] * 3       # one factor for all three axes
        if not (isinstance(value, (list, tuple)) and len(value) == 3):
            raise BioslicerError(f"{src}: key {key!r} must be [x, y, z]{'' if key == 'scale' else ' in µm'}, "
                                 f"got {value!r}")
        return [_num(key, a, src) for a in value]
    if key == "depth_table":
        if not isinstance(value, (list, tuple)):
            raise BioslicerError(f"{src}: key 'depth_table' must be [[depth_um, factor], ...]")
        rows = []
        for row in value:
            if not (isinstance(row, (list, tuple)) and len(row) == 2):
                raise BioslicerError(f"{src}: key 'depth_table' must be [[depth_um, factor], ...], got {row!r}")
            rows.append([_num(key, row[0], src), _num(key, row[1], src)])
        return rows
    if key in ("surface_z_um", "block_size_um", "power_ramp_voxel_um", "power_field_path") and value is None:
        return None
    if key == "find_interface" and isinstance(value, bool):   # older recipes: true / false
        return "every-block" if value else "off"
    if isinstance(current, bool) or key in ("serpentine", "lattice_stagger", "allow_floating", "allow_power_clip",
                                            "closed_ends"):
        if not isinstance(value, bool):
            raise BioslicerError(f"{src}: key {key!r} must be true or false, got {value!r}")
        return value
    if isinstance(current, int) and key in ("contour_count", "skin_layers", "scaffold_every_n_layers",
                                            "scaffold_wall_lines", "lattice_strut_lines", "power_levels",
                                            "tilt_points"):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise BioslicerError(f"{src}: key {key!r} must be a whole number, got {value!r}")
        return int(value)
    if isinstance(current, str) or key == "power_field_path":
        if not isinstance(value, str):
            raise BioslicerError(f"{src}: key {key!r} must be text, got {value!r}")
        if key == "strategy":
            value = _STRATEGY_ALIASES.get(value.lower(), value.lower())
        return value
    return _num(key, value, src)


#: every length in a recipe is at most this, µm (1 m: no two-photon print comes near it)
MAX_LENGTH_UM = 1e6
#: upper bounds of the counts (contours and lines are drawn one by one; layers of skin and the
#: scaffold period are limited by the layers a part can have)
MAX_COUNTS = {"contour_count": 1000, "scaffold_wall_lines": 1000, "lattice_strut_lines": 1000,
              "skin_layers": 1_000_000, "scaffold_every_n_layers": 1_000_000}
_LENGTH_KEYS = ("slice_um", "hatch_um", "contour_spacing_um", "contour_offset_um", "hatch_inset_um", "min_segment_um",
                "scaffold_pitch_um", "lattice_pitch_um", "lattice_strut_height_um", "gyroid_cell_um",
                "gyroid_thickness_um", "channel_margin_um", "attenuation_length_um", "surface_z_um",
                "power_ramp_width_um", "power_ramp_voxel_um", "point_distance_um", "overlap_um", "block_size_um",
                "z_offset_um")


def _check_bounds(r: Recipe, bad) -> None:
    """Every count and size of the recipe within a bound (huge values are refused here, before
    anything is allocated by them)."""
    for key, top in MAX_COUNTS.items():
        if getattr(r, key) > top:
            bad(key, f"must be at most {top:,}, got {getattr(r, key)!r}")
    for key in _LENGTH_KEYS:
        v = getattr(r, key)
        if v is not None and abs(v) > MAX_LENGTH_UM:
            bad(key, f"must be at most {MAX_LENGTH_UM:g} µm in size, got {v!r}")
    for key in _FLOAT_LIST3:
        v = getattr(r, key)
        if v is not None and max(abs(a) for a in v) > MAX_LENGTH_UM:
            bad(key, f"must be at most {MAX_LENGTH_UM:g} µm in size, got {v!r}")
    for key in ("hatch_angle_deg", "hatch_angle_step_deg"):
        if abs(getattr(r, key)) > 3600:
            bad(key, f"must be between -3600 and 3600 degrees, got {getattr(r, key)!r}")
    if abs(r.depth_slope_per_um) > 1:
        bad("depth_slope_per_um", f"must be between -1 and 1 per µm, got {r.depth_slope_per_um!r}")
    if len(r.depth_table) > 10000:
        bad("depth_table", f"must have at most 10000 rows, got {len(r.depth_table)}")
    for key, top in (("power_mw", 1e6), ("speed_um_s", 1e9)):
        for k, v in getattr(r, key).items():
            if v > top:
                bad(f"{key}.{k}", f"must be at most {top:g}, got {v!r}")


def _validate(r: Recipe) -> None:
    def bad(key, why):
        raise BioslicerError(f"recipe key {key!r} {why}")

    _check_bounds(r, bad)

    if r.strategy not in STRATEGIES:
        bad("strategy", f"must be one of {', '.join(STRATEGIES)}, got {r.strategy!r}")
    if r.find_interface not in FIND_INTERFACE:
        bad("find_interface", f"must be one of {', '.join(FIND_INTERFACE)}, got {r.find_interface!r}")
    lo, hi = FOCAL_SHIFT_RANGE
    if not lo <= r.focal_shift_factor <= hi:
        bad("focal_shift_factor", f"must be between {lo:g} and {hi:g} (commanded z / physical z above the "
                                  f"interface; 1 = no correction), got {r.focal_shift_factor!r}")
    if r.tilt_correction not in TILT_CORRECTION:
        bad("tilt_correction", f"must be 'off' or 'measure' (MeasureTilt + TiltCorrectionOn), "
                               f"got {r.tilt_correction!r}")
    if not 2 <= r.tilt_points <= 20:
        bad("tilt_points", f"must be between 2 and 20 (MeasureTilt n measures n x n points), got {r.tilt_points!r}")
    if r.tilt_correction == "measure" and r.find_interface == "off":
        bad("tilt_correction", "= 'measure' needs find_interface 'every-block' or 'once' (TiltCorrectionOn must be "
                               "followed by FindInterfaceAt); set find_interface or tilt_correction = 'off'")
    if r.placement not in PLACEMENTS:
        bad("placement", f"must be 'substrate' (on the interface, centred at the start position) or 'keep' "
                         f"(mesh coordinates), got {r.placement!r}")
    if r.depth_mode not in DEPTH_MODES:
        bad("depth_mode", f"must be one of {', '.join(DEPTH_MODES)}, got {r.depth_mode!r}")
    for key in ("slice_um", "hatch_um", "contour_spacing_um", "scaffold_pitch_um", "lattice_pitch_um",
                "lattice_strut_height_um", "gyroid_cell_um", "gyroid_thickness_um", "attenuation_length_um",
                "point_distance_um", "wall_um", "voxel_lateral_um", "voxel_axial_um"):
        if not getattr(r, key) > 0:
            bad(key, f"must be positive (µm), got {getattr(r, key)!r}")
    for key in ("contour_offset_um", "hatch_inset_um", "min_segment_um", "channel_margin_um", "overlap_um",
                "power_ramp_width_um", "contour_count", "skin_layers", "z_offset_um"):
        if getattr(r, key) < 0:
            bad(key, f"must not be negative, got {getattr(r, key)!r}")
    for key in ("scaffold_every_n_layers", "scaffold_wall_lines", "lattice_strut_lines"):
        if getattr(r, key) < 1:
            bad(key, f"must be at least 1, got {getattr(r, key)!r}")
    if r.scale is not None and not all(0.1 <= f <= 10.0 for f in r.scale):
        bad("scale", f"factors must be between 0.1 and 10 (1 = unscaled), got {r.scale!r}")
    for k, v in r.order.items():
        if k not in Kind.names() or v not in _order_modes():
            bad(f"order.{k}", f"must be a mark kind and one of {', '.join(_order_modes())}, got {v!r}")
    if not 2 <= r.power_levels <= 65536:
        bad("power_levels", f"must be between 2 and 65536, got {r.power_levels!r}")
    if not 0 < r.power_ramp_min_factor <= 1:
        bad("power_ramp_min_factor", f"must be in (0, 1], got {r.power_ramp_min_factor!r}")
    if not -60 < r.shear_deg < 60:
        bad("shear_deg", f"must be between -60 and 60 degrees, got {r.shear_deg!r}")
    for key in ("block_size_um", "power_ramp_voxel_um"):
        v = getattr(r, key)
        if v is not None and not v > 0:
            bad(key, f"must be positive (µm) or left out, got {v!r}")
    if r.channel_block_size_um is not None and min(r.channel_block_size_um) <= 0:
        bad("channel_block_size_um", "must be three positive sizes [x, y, z] in µm")
    if r.power_field_voxel_um is not None and min(r.power_field_voxel_um) <= 0:
        bad("power_field_voxel_um", "must be three positive voxel sizes [dx, dy, dz] in µm")
    for key in ("power_mw", "speed_um_s"):
        d = getattr(r, key)
        missing = [k for k in Kind.names() if k not in d]
        if missing:
            bad(key, f"lacks kind(s) {', '.join(missing)}; give a value for every kind")
        for k, v in d.items():
            if key == "power_mw" and v < 0:
                bad(f"{key}.{k}", f"must not be negative, got {v!r}")
            if key == "speed_um_s" and not v > 0:
                bad(f"{key}.{k}", f"must be positive, got {v!r}")
    if r.depth_mode == "table":
        if len(r.depth_table) < 1:
            bad("depth_table", "needs at least one [depth_um, factor] row when depth_mode is 'table'")
        depths = [a for a, _ in r.depth_table]
        if any(b <= a for a, b in zip(depths, depths[1:])):
            bad("depth_table", "depths must increase strictly from row to row")
        if any(f < 0 for _, f in r.depth_table):
            bad("depth_table", "factors must not be negative")
    if r.power_field_path is not None and r.power_field_voxel_um is None:
        bad("power_field_voxel_um", "is required with power_field_path (voxel size [dx, dy, dz] in µm)")
