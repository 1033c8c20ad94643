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
IMMERSIONS = ("dill", "oil", "water", "air")
LIGHT_SIDES = ("below", "above")
CALIBRATIONS = ("linear", "sin2", "table")


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
    # objective: immersion ('dill' | 'oil' | 'water' | 'air', '' unknown) and the side the light
    # enters the sample from ('below' | 'above', '' unknown)
    immersion: str = ""
    light_from: str = ""
    # power calibration: command value as a function of the power fraction (P / reference):
    # 'linear'; 'sin2' (Pockels cell / polarizer: fraction = f0 + (1 - f0) sin^2(pi/2 c / c_full));
    # 'table' (measured [[fraction, command], ...], both increasing)
    calibration: str = "linear"
    calibration_min_fraction: float = 0.0
    calibration_table: list = field(default_factory=list)

    # --------------------------------------------------------------- conversions
    @property
    def power_full_scale(self) -> float:
        """Program value at the reference power: mW, 100 (percent) or max_volts (V)."""
        if self.power_unit == "mW":
            return float(self.reference_power_mw)
        if self.power_unit == "percent":
            return 100.0
        return float(self.max_volts)

    def power_to_program(self, power_mw):
        """Convert mW (scalar or array) to the value the program writes, through the calibration."""
        import numpy as np

        f = np.asarray(power_mw, dtype=np.float64) / self.reference_power_mw
        if self.calibration == "linear":
            out = f * self.power_full_scale
        elif self.calibration == "sin2":
            f0 = self.calibration_min_fraction
            t = np.clip((f - f0) / (1.0 - f0), 0.0, 1.0)
            out = self.power_full_scale * (2.0 / np.pi) * np.arcsin(np.sqrt(t))
        else:
            tab = np.asarray(self.calibration_table, dtype=np.float64)
            out = np.interp(f, tab[:, 0], tab[:, 1])
        return float(out) if np.ndim(out) == 0 else out

    def power_from_program(self, value):
        """Inverse of :meth:`power_to_program`: program value (scalar or array) back to mW."""
        import numpy as np

        c = np.asarray(value, dtype=np.float64)
        if self.calibration == "linear":
            f = c / self.power_full_scale
        elif self.calibration == "sin2":
            f0 = self.calibration_min_fraction
            u = c / self.power_full_scale
            # past full scale the cell transmits less again; read it as above the maximum (it is
            # outside the calibration), so the limit check catches it
            f = np.where(u > 1.0, u, f0 + (1.0 - f0) * np.sin(0.5 * np.pi * np.clip(u, 0.0, 1.0)) ** 2)
        else:
            tab = np.asarray(self.calibration_table, dtype=np.float64)
            f = np.where(c > tab[-1, 1], tab[-1, 0] * c / tab[-1, 1], np.interp(c, tab[:, 1], tab[:, 0]))
        out = f * self.reference_power_mw
        return float(out) if np.ndim(out) == 0 else out

    def power_from_program_ratio(self) -> tuple[float, float]:
        """(a, b) with mW = program value * a / b, for kernels that convert as they read.

        Only for a linear calibration; readers of a calibrated profile read program values
        (``(1, 1)``) and convert with :meth:`power_from_program` (see
        :func:`bioslicer.programs.dialects.reader_power`).
        """
        if self.calibration != "linear":
            return 1.0, 1.0
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
    "laser.calibration": (str, False, "linear", lambda v: v in CALIBRATIONS),
    "laser.calibration_min_fraction": (float, False, 0.0, lambda v: 0 <= v < 1),
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
    "laser.calibration": f"must be one of {', '.join(CALIBRATIONS)}",
    "laser.calibration_min_fraction": "must be a fraction from 0 up to (not including) 1",
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
    obj = _objective(doc, source)
    table = _calibration_table(doc, source, vals["laser.calibration"])
    program = dict(doc.get("program", {}))
    program.pop("decimals", None)
    defaults = dict(doc.get("defaults", {}))
    if not isinstance(defaults, dict):
        raise BioslicerError(f"printer profile {source}: [defaults] must be a table")
    p = Printer(
        name=vals["name"],
        description=vals["description"],
        dialect=vals["dialect"],
        objective=obj["name"],
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
        immersion=obj["immersion"],
        light_from=obj["light_from"],
        calibration=vals["laser.calibration"],
        calibration_min_fraction=vals["laser.calibration_min_fraction"],
        calibration_table=table,
    )
    _check_dialect_options(p)
    return p


def _objective(doc: dict, source: str) -> dict:
    """``objective = "name"`` (no optics facts) or an ``[objective]`` table with ``name``,
    ``immersion`` and ``light_from``."""
    v = doc.get("objective", "")
    if isinstance(v, str):
        return {"name": v, "immersion": "", "light_from": ""}
    if not isinstance(v, dict):
        raise BioslicerError(f"printer profile {source}: 'objective' must be a name or a table [objective]")
    unknown = sorted(set(v) - {"name", "immersion", "light_from"})
    if unknown:
        raise BioslicerError(f"printer profile {source}: unknown key 'objective.{unknown[0]}'; [objective] takes "
                             "name, immersion and light_from")
    out = {"name": str(v.get("name", "")), "immersion": v.get("immersion", ""), "light_from": v.get("light_from", "")}
    if out["immersion"] not in IMMERSIONS + ("",):
        raise BioslicerError(f"printer profile {source}: key 'objective.immersion' must be one of "
                             f"{', '.join(IMMERSIONS)}, got {out['immersion']!r}")
    if out["light_from"] not in LIGHT_SIDES + ("",):
        raise BioslicerError(f"printer profile {source}: key 'objective.light_from' must be 'below' (through the "
                             f"substrate) or 'above' (upright optics), got {out['light_from']!r}")
    return out


def _calibration_table(doc: dict, source: str, kind: str) -> list:
    """The measured ``laser.calibration_table`` [[fraction, command], ...] (checked), or ()."""
    tab = _get(doc, "laser.calibration_table")
    if kind != "table":
        if tab is not None:
            raise BioslicerError(f"printer profile {source}: 'laser.calibration_table' needs calibration = \"table\"")
        return []
    ok = isinstance(tab, list) and len(tab) >= 2 and all(
        isinstance(r, list) and len(r) == 2 and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                                    for a in r) for r in tab)
    if ok:
        fr = [float(r[0]) for r in tab]
        cm = [float(r[1]) for r in tab]
        ok = all(b > a for a, b in zip(fr, fr[1:])) and all(b > a for a, b in zip(cm, cm[1:])) and fr[0] >= 0
    if not ok:
        raise BioslicerError(f"printer profile {source}: 'laser.calibration_table' must be [[fraction, command], ...] "
                             "with at least 2 rows, fraction (power / reference_power_mw) and command both increasing")
    return [[float(a), float(b)] for a, b in tab]


def _check_dialect_options(printer: "Printer") -> None:
    """Refuse [program] units and feed modes the dialect cannot express (named with the valid ones)."""
    from .programs.dialects import load_spec

    spec = load_spec(printer.dialect)
    for key, table in (("unit", "units"), ("feed_per", "feed_per")):
        allowed = spec.get(table)
        if allowed is None or key not in printer.program:
            continue
        if printer.program[key] not in allowed:
            raise BioslicerError(
                f"printer profile {printer.source or printer.name}: 'program.{key}' = {printer.program[key]!r} "
                f"cannot be written in the {spec.name} dialect; use {' or '.join(repr(a) for a in allowed)}")


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
