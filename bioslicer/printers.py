"""Printer profiles: read and check ``printers/*.toml`` into a :class:`Printer`.

A profile says what a machine can do (field, travel, power, speeds, delays), how its program
expresses things (dialect, power unit, number precision) and which process parameters it
starts from. Units: µm, s, mW (as the key names say). A malformed profile is refused with the
key and the reason.
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._data import data_dir, dialect_names
from .errors import BioslicerError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DIALECTS = dialect_names()   # from the dialect definitions gcode/*.toml
POWER_UNITS = ("mW", "percent", "V")


@dataclass(frozen=True)
class Printer:
    """A printer and objective, as read from a profile. Every length in µm, time in s, power in mW."""

    name: str
    description: str
    dialect: str
    objective: str
    # galvo (or scan) field of one block; 'square' side or 'circle' diameter
    field_shape: str
    field_size_um: float
    # fine z axis (piezo) travel inside one block, from 0
    z_range_um: float
    # stage travel, absolute stage coordinates
    stage_x_um: tuple[float, float]
    stage_y_um: tuple[float, float]
    stage_z_um: tuple[float, float]
    stage_speed_um_s: float
    stage_settle_s: float
    # laser
    max_power_mw: float
    power_unit: str                 # how the program expresses power: mW, percent, V
    reference_power_mw: float       # 100 % (percent) or the mW per max_volts (V)
    max_volts: float
    # scanning
    min_speed_um_s: float
    max_speed_um_s: float
    jump_speed_um_s: float
    galvo_acceleration_um_s2: float
    laser_on_delay_s: float
    laser_off_delay_s: float
    jump_delay_s: float
    layer_settle_s: float           # fine-axis z step and settle per layer
    # program output
    decimals: int                   # digits after the point for coordinates in text programs
    program: dict = field(default_factory=dict)    # dialect options (power command, DAQ rate, ...)
    defaults: dict = field(default_factory=dict)   # default process parameters (recipe keys)
    source: str = ""

    # --------------------------------------------------------------- conversions
    def power_to_program(self, power_mw: float) -> float:
        """Convert mW to the unit the program writes (mW, percent of reference, volts)."""
        if self.power_unit == "mW":
            return power_mw
        if self.power_unit == "percent":
            return 100.0 * power_mw / self.reference_power_mw
        return self.max_volts * power_mw / self.reference_power_mw

    def power_from_program(self, value: float) -> float:
        """Inverse of :meth:`power_to_program`: program unit back to mW (``value * a / b``)."""
        a, b = self.power_from_program_ratio()
        return value * a / b

    def power_from_program_ratio(self) -> tuple[float, float]:
        """(a, b) with mW = program value * a / b, for kernels that convert as they read."""
        if self.power_unit == "mW":
            return 1.0, 1.0
        if self.power_unit == "percent":
            return float(self.reference_power_mw), 100.0
        return float(self.reference_power_mw), float(self.max_volts)

    def in_field(self, x_um, y_um, tol_um: float = 1e-6):
        """True where galvo coordinates (block-local x, y, µm) lie inside the field."""
        import numpy as np

        half = self.field_size_um / 2 + tol_um
        x = np.asarray(x_um)
        y = np.asarray(y_um)
        if self.field_shape == "circle":
            return x * x + y * y <= half * half
        return (np.abs(x) <= half) & (np.abs(y) <= half)

    @property
    def block_side_um(self) -> float:
        """Side of the largest square block that fits the field."""
        if self.field_shape == "circle":
            return self.field_size_um / math.sqrt(2.0)
        return self.field_size_um

    def to_dict(self) -> dict:
        return asdict(self)

    def sha256(self) -> str:
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------- schema
# key path -> (type, required, default, check)
def _pos(v):
    return v > 0


def _nonneg(v):
    return v >= 0


_SCHEMA = {
    "name": (str, True, None, None),
    "description": (str, False, "", None),
    "dialect": (str, True, None, lambda v: v in DIALECTS),
    "objective": (str, False, "", None),
    "field.shape": (str, True, None, lambda v: v in ("square", "circle")),
    "field.size_um": (float, True, None, _pos),
    "z.range_um": (float, True, None, _pos),
    "stage.x_um": (list, True, None, None),
    "stage.y_um": (list, True, None, None),
    "stage.z_um": (list, False, [0.0, 0.0], None),
    "stage.speed_um_s": (float, True, None, _pos),
    "stage.settle_s": (float, False, 0.0, _nonneg),
    "laser.max_power_mw": (float, True, None, _pos),
    "laser.power_unit": (str, True, None, lambda v: v in POWER_UNITS),
    "laser.reference_power_mw": (float, False, None, _pos),
    "laser.max_volts": (float, False, 10.0, _pos),
    "scan.min_speed_um_s": (float, False, 0.0, _nonneg),
    "scan.max_speed_um_s": (float, True, None, _pos),
    "scan.jump_speed_um_s": (float, True, None, _pos),
    "scan.galvo_acceleration_um_s2": (float, False, 0.0, _nonneg),
    "scan.laser_on_delay_s": (float, False, 0.0, _nonneg),
    "scan.laser_off_delay_s": (float, False, 0.0, _nonneg),
    "scan.jump_delay_s": (float, False, 0.0, _nonneg),
    "scan.layer_settle_s": (float, False, 0.0, _nonneg),
    "program.decimals": (int, False, 3, lambda v: 0 <= v <= 9),
}
_CHECK_TEXT = {
    "dialect": f"must be one of {', '.join(DIALECTS)}",
    "field.shape": "must be 'square' or 'circle'",
    "laser.power_unit": f"must be one of {', '.join(POWER_UNITS)}",
    "program.decimals": "must be a whole number from 0 to 9",
}


def _get(doc: dict, dotted: str):
    cur = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _range2(src: str, key: str, v) -> tuple[float, float]:
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(a, (int, float)) for a in v) and v[0] <= v[1]):
        raise BioslicerError(f"printer profile {src}: key '{key}' must be [min, max] in µm with min <= max")
    return float(v[0]), float(v[1])


def parse_printer(doc: dict, source: str = "<dict>") -> Printer:
    """Check a profile document (the parsed TOML) and return the :class:`Printer`."""
    vals = {}
    for key, (typ, required, default, check) in _SCHEMA.items():
        v = _get(doc, key)
        if v is None:
            if required:
                raise BioslicerError(f"printer profile {source}: missing key '{key}'; add it (see printers/README.md)")
            vals[key] = default
            continue
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if typ is int and isinstance(v, bool) or not isinstance(v, typ):
            raise BioslicerError(f"printer profile {source}: key '{key}' must be a {typ.__name__}, got {v!r}")
        if typ is float and not math.isfinite(v):
            raise BioslicerError(f"printer profile {source}: key '{key}' must be finite, got {v!r}")
        if check is not None and not check(v):
            why = _CHECK_TEXT.get(key, "must be positive" if check is _pos else "must not be negative")
            raise BioslicerError(f"printer profile {source}: key '{key}' {why}, got {v!r}")
        vals[key] = v
    unit = vals["laser.power_unit"]
    ref = vals["laser.reference_power_mw"]
    if unit != "mW" and ref is None:
        raise BioslicerError(
            f"printer profile {source}: key 'laser.reference_power_mw' is required when power_unit is {unit!r}")
    if ref is None:
        ref = vals["laser.max_power_mw"]
    if vals["scan.min_speed_um_s"] > vals["scan.max_speed_um_s"]:
        raise BioslicerError(f"printer profile {source}: key 'scan.min_speed_um_s' is above 'scan.max_speed_um_s'")
    program = dict(doc.get("program", {}))
    program.pop("decimals", None)
    defaults = dict(doc.get("defaults", {}))
    if not isinstance(defaults, dict):
        raise BioslicerError(f"printer profile {source}: [defaults] must be a table")
    return Printer(
        name=vals["name"],
        description=vals["description"],
        dialect=vals["dialect"],
        objective=vals["objective"],
        field_shape=vals["field.shape"],
        field_size_um=vals["field.size_um"],
        z_range_um=vals["z.range_um"],
        stage_x_um=_range2(source, "stage.x_um", vals["stage.x_um"]),
        stage_y_um=_range2(source, "stage.y_um", vals["stage.y_um"]),
        stage_z_um=_range2(source, "stage.z_um", vals["stage.z_um"]),
        stage_speed_um_s=vals["stage.speed_um_s"],
        stage_settle_s=vals["stage.settle_s"],
        max_power_mw=vals["laser.max_power_mw"],
        power_unit=unit,
        reference_power_mw=float(ref),
        max_volts=vals["laser.max_volts"],
        min_speed_um_s=vals["scan.min_speed_um_s"],
        max_speed_um_s=vals["scan.max_speed_um_s"],
        jump_speed_um_s=vals["scan.jump_speed_um_s"],
        galvo_acceleration_um_s2=vals["scan.galvo_acceleration_um_s2"],
        laser_on_delay_s=vals["scan.laser_on_delay_s"],
        laser_off_delay_s=vals["scan.laser_off_delay_s"],
        jump_delay_s=vals["scan.jump_delay_s"],
        layer_settle_s=vals["scan.layer_settle_s"],
        decimals=vals["program.decimals"],
        program=program,
        defaults=defaults,
        source=source,
    )


def printers_dir() -> Path:
    return data_dir("printers")


def list_printers() -> list[Printer]:
    """Every bundled profile, sorted by name."""
    return sorted((load_printer(p) for p in sorted(printers_dir().glob("*.toml"))), key=lambda p: p.name)


def load_printer(name_or_path) -> Printer:
    """Load a bundled profile by name (``nanoscribe-gt2-25x``) or a TOML file by path."""
    if isinstance(name_or_path, Printer):
        return name_or_path
    s = str(name_or_path)
    path = Path(s)
    if not (s.endswith(".toml") or path.is_file()):
        path = printers_dir() / f"{s}.toml"
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in printers_dir().glob("*.toml")))
            raise BioslicerError(f"unknown printer {s!r}; use one of {names}, or a path to your own .toml profile")
    if not path.is_file():
        raise BioslicerError(f"printer profile {s} not found; give a bundled name (bioslicer printers) or an existing .toml file")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BioslicerError(f"printer profile {path.name} is not valid TOML: {exc}") from None
    return parse_printer(doc, source=path.name)
