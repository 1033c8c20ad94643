"""The general reader: programs that are more than the plain lines the fast tokenizer reads.

The fast readers (Numba, :mod:`.tokenize` + the dialect state machines) read the lines our
writers write and most programs hold: one command word and tagged numbers. When they meet a
line they cannot read exactly (another spelling, a variable, a loop, a unit or mode change,
words without blanks, ...) they raise :class:`NeedsGeneral` and the program is read again here.

This module interprets what the controllers define, line by line in Python: variables and
arithmetic, loops and conditions (GWL ``var/local/set/repeat/for/while/if``, RS-274 ``#``
parameters and ``O`` words, AeroBasic ``DVAR``/``$`` variables and ``FOR/WHILE/REPEAT/IF``),
``include`` of other GWL files, units (G20/G21, METRIC/ENGLISH), relative modes (G91,
INCREMENTAL, MoveStageX/Y), work offsets (G54-G59, G10 L2, G92). The result is the program
rewritten as the dialect's own plain lines (:class:`Canonical`) with a map back to the source
file and line, which the fast reader then reads: the moves keep one definition. Every source
line is either understood, skipped with a note naming it (it cannot move, expose or change
units, power or speed), or reported as an error naming it.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BioslicerError


class NeedsGeneral(Exception):
    """Raised by a fast reader at a line only the general reader can read."""


MAX_LINES = 20_000_000     # canonical lines one program may expand to (loops)
MAX_DEPTH = 8              # include / subroutine nesting


@dataclass
class Canonical:
    """A program rewritten as plain dialect lines.

    Attributes
    ----------
    text : bytes
        The plain lines (LF ends).
    src_file, src_line : (n + 1,) int64
        For canonical line k (1-based), the source file index and line (index 0 unused).
    files : list[str]
        Source files (main first).
    notes, errors : list of (file index, line, message)
    """

    text: bytes
    src_file: np.ndarray
    src_line: np.ndarray
    files: list
    notes: list = field(default_factory=list)
    errors: list = field(default_factory=list)


# ----------------------------------------------------------------------------- expressions
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Mod: math.fmod, ast.Pow: operator.pow, ast.FloorDiv: operator.floordiv}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}
_FUNCS = {"abs": abs, "acos": lambda v: math.degrees(math.acos(v)), "asin": lambda v: math.degrees(math.asin(v)),
          "atan": lambda v: math.degrees(math.atan(v)), "cos": lambda v: math.cos(math.radians(v)),
          "sin": lambda v: math.sin(math.radians(v)), "tan": lambda v: math.tan(math.radians(v)),
          "sqrt": math.sqrt, "exp": math.exp, "ln": math.log, "log": math.log, "round": lambda v: float(round(v)),
          "fix": math.floor, "fup": math.ceil, "floor": math.floor, "ceil": math.ceil, "int": math.trunc}
# word operators; RS-274 drops blanks, so 'LT5' must read as 'LT 5': a word ends where letters end
_WORDOPS = [(re.compile(rf"(?<![a-z_]){w}(?![a-z_])"), op) for w, op in
            (("mod", " % "), ("eq", " == "), ("ne", " != "), ("gt", " > "), ("ge", " >= "), ("lt", " < "),
             ("le", " <= "), ("xor", " != "), ("and", " and "), ("or", " or "), ("not", " not "))]


def evaluate(text: str) -> float:
    """Value of an arithmetic expression (numbers only: variables already substituted).

    ``+ - * / ** ^ % MOD``, parentheses or ``[ ]``, comparisons (``== != < <= > >= EQ NE LT LE
    GT GE <>``), ``and or not`` (``&& || !``), functions ``abs sqrt exp ln sin cos tan asin acos
    atan round fix fup floor ceil int`` (angles in degrees, as RS-274 and AeroBasic define them).
    Raises ValueError for anything else.
    """
    t = text.strip().lower().replace("[", "(").replace("]", ")").replace("^", "**").replace("<>", "!=")
    t = t.replace("&&", " and ").replace("||", " or ")
    t = re.sub(r"!(?!=)", " not ", t)
    for rx, rep in _WORDOPS:
        t = rx.sub(rep, t)
    t = re.sub(r"(?<![=!<>])=(?!=)", "==", t).strip()   # a lone '=' in a condition compares
    try:
        tree = ast.parse(t, mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot evaluate {text.strip()!r}") from None
    return float(_ev(tree.body, text))


def _ev(node, text):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        return _BIN[type(node.op)](_ev(node.left, text), _ev(node.right, text))
    if isinstance(node, ast.UnaryOp):
        v = _ev(node.operand, text)
        if isinstance(node.op, ast.USub):
            return -v
        if isinstance(node.op, ast.UAdd):
            return v
        if isinstance(node.op, ast.Not):
            return float(not v)
    if isinstance(node, ast.Compare):
        left = _ev(node.left, text)
        for op, comp in zip(node.ops, node.comparators):
            right = _ev(comp, text)
            if type(op) not in _CMP or not _CMP[type(op)](left, right):
                return 0.0
            left = right
        return 1.0
    if isinstance(node, ast.BoolOp):
        vals = [_ev(v, text) for v in node.values]
        return float(all(vals) if isinstance(node.op, ast.And) else any(vals))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
            and len(node.args) == 1 and not node.keywords:
        return float(_FUNCS[node.func.id](_ev(node.args[0], text)))
    if isinstance(node, ast.Name) and node.id in ("pi", "true", "false"):
        return {"pi": math.pi, "true": 1.0, "false": 0.0}[node.id]
    raise ValueError(f"cannot evaluate {text.strip()!r}")


def num(v: float) -> str:
    """A number as canonical text (exact enough: 12 significant digits)."""
    return format(float(v), ".12g")


# ----------------------------------------------------------------------------- control flow
@dataclass
class Node:
    """One statement: a plain line, or a block (repeat/for/while/if/sub) with its body."""

    kind: str
    fi: int
    ln: int
    text: str
    arg: object = None
    body: list = field(default_factory=list)
    branches: list = field(default_factory=list)   # if: [(condition text or None, body)]


class Problem(Exception):
    """A line the general reader refuses: (file index, line, message)."""

    def __init__(self, node: Node, msg: str) -> None:
        super().__init__(msg)
        self.fi, self.ln, self.msg = node.fi, node.ln, msg


class Interpreter:
    """Shared machinery: parse lines into a statement tree, run it, collect canonical lines.

    A dialect subclass defines ``comment_strip(text)``, ``classify(text) -> (kind, arg)``
    (kinds: line, repeat, for, while, if, elif, else, end, sub, stop) and ``line(node)`` which
    interprets one plain line and calls :meth:`out`.
    """

    dialect = ""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.out_lines: list[str] = []
        self.src_f: list[int] = [0]
        self.src_l: list[int] = [0]
        self.notes: list = []
        self.errors: list = []
        self._noted: set = set()
        self.stopped = False

    # -- output
    def out(self, node: Node, text: str) -> None:
        if len(self.out_lines) >= MAX_LINES:
            raise Problem(node, f"the program expands to more than {MAX_LINES} lines (a loop that does not "
                                "end?); it is not read")
        self.out_lines.append(text)
        self.src_f.append(node.fi)
        self.src_l.append(node.ln)

    def note(self, node: Node, msg: str, once_key=None) -> None:
        key = once_key if once_key is not None else (node.fi, node.ln, msg)
        if key in self._noted:
            return
        self._noted.add(key)
        self.notes.append((node.fi, node.ln, msg))

    def error(self, node: Node, msg: str) -> None:
        self.errors.append((node.fi, node.ln, msg))

    # -- parsing
    def read_lines(self, path: Path) -> tuple[int, list]:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BioslicerError(f"cannot read program {path}: {exc}") from None
        fi = len(self.files)
        self.files.append(str(path))
        text = raw.decode("utf-8", "replace")
        return fi, text.splitlines()

    def parse(self, fi: int, lines: list) -> list:
        root: list = []
        stack = [(None, root)]
        for k, raw in enumerate(lines):
            text = self.comment_strip(raw).strip()
            if not text:
                continue
            kind, arg = self.classify(text)
            node = Node(kind, fi, k + 1, text, arg)
            parent, body = stack[-1]
            if kind in ("repeat", "for", "while", "if", "sub"):
                body.append(node)
                if kind == "if":
                    node.branches.append((arg, []))
                    stack.append((node, node.branches[-1][1]))
                else:
                    stack.append((node, node.body))
            elif kind in ("elif", "else"):
                if parent is None or parent.kind != "if":
                    self.error(node, f"{text.split()[0]!r} without its if")
                    continue
                parent.branches.append((arg if kind == "elif" else None, []))
                stack[-1] = (parent, parent.branches[-1][1])
            elif kind == "end":
                if parent is None:
                    self.error(node, f"{text.split()[0]!r} closes no block")
                    continue
                stack.pop()
            else:
                body.append(node)
        for parent, _ in stack[1:]:
            self.error(parent, f"the {parent.kind} block opened here is never closed")
        return root

    # -- running
    def run(self, nodes: list, depth: int = 0) -> None:
        for node in nodes:
            if self.stopped:
                return
            k = node.kind
            if k == "line":
                try:
                    self.line(node)
                except Problem as exc:
                    self.errors.append((exc.fi, exc.ln, exc.msg))
            elif k == "stop":
                self.stopped = True
                return
            elif k == "repeat":
                n = self.value(node, node.arg)
                for _ in range(max(0, int(round(n)))):
                    self.run(node.body, depth)
            elif k == "for":
                var, a, b, step = node.arg
                v, hi = self.value(node, a), self.value(node, b)
                s = self.value(node, step) if step else 1.0
                if s == 0:
                    raise Problem(node, "for loop with step 0")
                while (v <= hi + 1e-12) if s > 0 else (v >= hi - 1e-12):
                    self.assign(node, var, v)
                    self.run(node.body, depth)
                    v += s
            elif k == "while":
                count = 0
                while self.value(node, node.arg):
                    self.run(node.body, depth)
                    count += 1
                    if count > MAX_LINES:
                        raise Problem(node, "the while loop does not end")
            elif k == "if":
                for cond, body in node.branches:
                    if cond is None or self.value(node, cond):
                        self.run(body, depth)
                        break
            elif k == "sub":
                self.define(node)

    def value(self, node: Node, text: str) -> float:
        try:
            return evaluate(self.substitute(node, text))
        except ValueError as exc:
            raise Problem(node, str(exc)) from None

    def canonical(self) -> Canonical:
        text = ("\n".join(self.out_lines) + "\n").encode() if self.out_lines else b""
        return Canonical(text, np.array(self.src_f, np.int64), np.array(self.src_l, np.int64), self.files,
                         self.notes, self.errors)

    def read(self, path: Path) -> Canonical:
        fi, lines = self.read_lines(path)
        try:
            self.run(self.parse(fi, lines))
        except Problem as exc:
            self.errors.append((exc.fi, exc.ln, exc.msg))
        return self.canonical()

    # hooks
    def comment_strip(self, text: str) -> str:  # pragma: no cover - per dialect
        raise NotImplementedError

    def classify(self, text: str):  # pragma: no cover
        raise NotImplementedError

    def line(self, node: Node) -> None:  # pragma: no cover
        raise NotImplementedError

    def substitute(self, node: Node, text: str) -> str:
        return text

    def assign(self, node: Node, name: str, value: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def define(self, node: Node) -> None:
        self.error(node, "subroutine definitions are not read in this dialect")


_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class _Variables:
    """``$name`` variables of GWL and AeroBasic (names case-insensitive), with a local scope per file."""

    def __init__(self) -> None:
        self.globals: dict = {}
        self.locals: list = [{}]

    def get(self, node: Node, name: str) -> float:
        k = name.lower()
        for scope in (self.locals[-1], self.globals):
            if k in scope:
                return scope[k]
        raise Problem(node, f"variable ${name} is used before it is given a value")

    def set(self, name: str, value: float, local: bool = False) -> None:
        k = name.lower()
        if local or k in self.locals[-1]:
            self.locals[-1][k] = value
        else:
            self.globals[k] = value

    def substitute(self, node: Node, text: str) -> str:
        if "$" not in text:
            return text
        m = re.search(r"\$(\w+)\s*\[([^\]]*)\]", text)
        if m:
            raise Problem(node, f"array variable ${m.group(1)}[{m.group(2)}] is set outside the program (by the host "
                                "or another task); its value is not known here")
        return _VAR.sub(lambda m: f"({num(self.get(node, m.group(1)))})", text)


# ----------------------------------------------------------------------------- GWL
_GWL_NOTE = {"capturephoto": "takes a camera picture", "messageout": "shows a message", "wait": "waits",
             "piezosettlingtime": "sets the piezo settling time", "tiltcorrectionoff": "switches tilt correction off",
             "tiltcorrectionon": "switches the machine's tilt correction on (z is checked as written)",
             "stagevelocity": "sets the stage speed between blocks", "galvoacceleration": "sets the galvo "
             "acceleration", "exposuretime": "sets the exposure time of pulsed mode", "updaterate": "sets the "
             "point rate", "debugmodeon": "debug output", "debugmodeoff": "debug output", "timestampon": "time stamps",
             "timestampoff": "time stamps", "savemessage": "saves a message", "showmessage": "shows a message",
             "zdrivemode": "sets the z-drive mode", "interfacemode": "sets the interface finder mode",
             "linedistance": "sets the distance of repeated lines (LineNumber 1: none)",
             "newstructure": "starts a new structure in the log", "showparameter": "logs the parameters",
             "savemessages": "saves the log",
             "measuretilt": "measures the substrate tilt without exposing; its time is not in the estimate"}
_GWL_ERR = {"writetext": "writes text whose moves are not read; write the text as points",
            "pulsedmode": "exposes points one by one for ExposureTime, which is not read; write lines instead",
            "stagegotoz": "moves the z stage, which is not read; use AddZDrivePosition",
            "movestagez": "moves the z stage, which is not read; use AddZDrivePosition",
            "interfaceposition": "sets the z origin DefocusFactor scales from, which is not read; use "
                                 "FindInterfaceAt (or bioslicer's focal_shift_factor with DefocusFactor 1)"}
_GWL_NUM_ROLES = ("laser_power", "scan_speed", "power_scaling", "z_offset", "add_z_offset", "x_offset", "y_offset",
                  "stage_x", "stage_y", "add_z_drive", "find_interface", "defocus_factor")


class GwlInterpreter(Interpreter):
    """GWL as DeScribe reads it: commands case-insensitive, ``%`` comments, ``var/local/set``
    variables, ``repeat/for/while/if ... end``, ``include`` (inlined), ``MoveStageX/Y``
    relative stage moves, ``AddXOffset/AddYOffset``, ``MultLaserPower``, 3- or 4-column points
    and the old ``-999 -999 -999`` terminator."""

    dialect = "GWL"

    def __init__(self, spec) -> None:
        super().__init__()
        from ._format import Template

        self.cmd = {k: Template.parse(v) for k, v in spec.commands.items()}
        self.roles = {t.keyword.lower(): r for r, t in self.cmd.items() if t.keyword}
        self.vars = _Variables()
        self.power_values = False
        self.stage = [0.0, 0.0]
        self.offset = [0.0, 0.0]
        self.laser_power = None
        self.depth = 0

    def comment_strip(self, text: str) -> str:
        return text.split("%", 1)[0]

    def classify(self, text: str):
        w = text.split(None, 1)
        head, rest = w[0].lower(), (w[1] if len(w) > 1 else "")
        if head == "repeat":
            return "repeat", rest
        if head == "for":
            m = re.match(r"\$(\w+)\s*=\s*(.+?)\s+to\s+(.+?)(?:\s+step\s+(.+))?$", rest, re.I)
            return ("for", (m.group(1), m.group(2), m.group(3), m.group(4))) if m else ("line", text)
        if head in ("while", "if"):
            return head, rest
        if head in ("elif", "elseif"):
            return "elif", rest
        if head in ("else", "end"):
            return head, None
        return "line", text

    def substitute(self, node, text):
        return self.vars.substitute(node, text)

    def assign(self, node, name, value):
        self.vars.set(name, value)

    def emit(self, node, role, **values):
        self.out(node, self.cmd[role].format(**{k: num(v) for k, v in values.items()}))

    def line(self, node: Node) -> None:
        text = node.text
        parts = text.split(None, 1)
        head, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        low = head.lower()
        if low in ("var", "local", "set") or (head.startswith("$") and "=" in text):
            m = re.match(r"\$(\w+)\s*=\s*(.+)$", rest if not head.startswith("$") else text)
            if not m:
                raise Problem(node, f"cannot read the assignment {text!r}; write e.g. 'var $power = 20'")
            self.vars.set(m.group(1), self.value(node, m.group(2)), local=low == "local")
            return
        if head[0] in "+-.0123456789$(":
            return self.point(node, text)
        if low == "include":
            return self.include(node, rest)
        if low in ("addxoffset", "addyoffset"):
            k = 0 if low == "addxoffset" else 1
            self.offset[k] += self.value(node, rest)
            return self.emit(node, "x_offset" if k == 0 else "y_offset", **{"xy"[k]: self.offset[k]})
        if low == "multlaserpower":     # multiplies the laser power in effect
            if self.laser_power is None:
                raise Problem(node, "MultLaserPower before any LaserPower")
            self.laser_power *= self.value(node, rest)
            return self.emit(node, "laser_power", p=self.laser_power)
        if low in ("movestagex", "movestagey"):
            k = 0 if low.endswith("x") else 1
            self.stage[k] += self.value(node, rest)
            return self.emit(node, "stage_x" if k == 0 else "stage_y", **{"xy"[k]: self.stage[k]})
        if low == "invertzaxis":
            if self.value(node, rest or "1"):
                self.note(node, "GWL command 'InvertZAxis' inverts the z axis on the machine; z is checked as written")
            return
        if low == "linenumber":
            if self.value(node, rest) != 1:
                raise Problem(node, "GWL command 'LineNumber' above 1 writes every line several times, which is "
                                    "not read; write the lines out")
            return
        role = self.roles.get(low)
        if role is not None and role in _GWL_NUM_ROLES:
            v = self.value(node, rest)
            if role in ("stage_x", "stage_y"):
                self.stage[0 if role == "stage_x" else 1] = v
            elif role in ("x_offset", "y_offset"):
                self.offset[0 if role == "x_offset" else 1] = v
            elif role == "laser_power":
                self.laser_power = v
            elif role == "defocus_factor" and not v > 0:
                raise Problem(node, f"GWL command '{head}' needs a positive factor, got {num(v)}")
            slot = self.cmd[role].slots[0]
            return self.emit(node, role, **{slot: v})
        if role is not None and not self.cmd[role].slots:
            if role == "power_values_on":
                self.power_values = True
            elif role == "power_values_off":
                self.power_values = False
            return self.out(node, self.cmd[role].text)
        if low in _GWL_ERR:
            raise Problem(node, f"GWL command '{head}' {_GWL_ERR[low]}")
        if low in _GWL_NOTE or low.startswith("text"):
            what = _GWL_NOTE.get(low, "sets text options")
            return self.note(node, f"GWL command '{head}' is not checked (skipped: it {what} and does not move)")
        raise Problem(node, f"GWL command '{head}' is not known; it could move or expose, so the program is "
                            "not passed")

    def point(self, node: Node, text: str) -> None:
        toks = self.substitute(node, text).replace(",", " ").split()
        try:
            vals = [float(t) for t in toks]      # plain numbers (most points): no expression to evaluate
        except ValueError:
            vals = None
        if vals is not None and len(vals) == (4 if self.power_values else 3) and vals[:3] != [-999.0] * 3:
            return self.out(node, text)            # already a plain point line
        try:
            vals = vals if vals is not None else [evaluate(t) for t in toks]
        except ValueError:
            raise Problem(node, f"cannot read the point {text!r}; a point is 3 numbers x y z (4 with a power)") \
                from None
        if len(vals) >= 3 and vals[0] == vals[1] == vals[2] == -999:
            return self.out(node, self.cmd["write"].text)   # the old list terminator
        if len(vals) == 4 and not self.power_values:
            self.note(node, "4-column points without PowerValuesOn: the 4th column is ignored, as the "
                            "controller does", once_key="gwl4")
            vals = vals[:3]
        if len(vals) == 3:
            return self.emit(node, "point", x=vals[0], y=vals[1], z=vals[2])
        if len(vals) == 4:
            return self.emit(node, "point_power", x=vals[0], y=vals[1], z=vals[2], p=vals[3])
        raise Problem(node, f"a point needs 3 numbers (x y z), or 4 (x y z power) after PowerValuesOn; got {len(vals)}")

    def include(self, node: Node, rest: str) -> None:
        rel = rest.strip().strip('"').strip("'").replace("\\", "/")
        if self.depth >= MAX_DEPTH:
            raise Problem(node, f"includes nest deeper than {MAX_DEPTH} levels; flatten the program")
        base = Path(self.files[node.fi]).parent
        sub = base / rel
        if not sub.is_file():
            # Windows paths are case-insensitive: find the file whatever its case
            hits = [p for p in sub.parent.glob("*") if p.name.lower() == sub.name.lower()] if sub.parent.is_dir() else []
            if not hits:
                raise Problem(node, f"included file {rel} not found")
            sub = hits[0]
        fi, lines = self.read_lines(sub)
        self.depth += 1
        self.vars.locals.append({})
        try:
            self.run(self.parse(fi, lines))
        finally:
            self.vars.locals.pop()
            self.depth -= 1


def remap(mv, can: Canonical) -> None:
    """Point the lines of moves read from ``can.text`` back at their source files and lines."""
    canon = mv.line
    mv.file = can.src_file[canon].astype(np.int32)
    mv.line = can.src_line[canon]
    pl = mv.power_line
    mv.power_line = np.where(pl > 0, can.src_line[np.clip(pl, 0, len(can.src_line) - 1)], pl)
    mv.files = can.files
    mv.problems = [(int(can.src_file[ln]), int(can.src_line[ln]), msg) if 0 < ln < len(can.src_line) else (0, ln, msg)
                   for _, ln, msg in mv.problems]


# ----------------------------------------------------------------------------- step dialects
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _bracket(text: str, i: int) -> int:
    """Index just past the ``]`` closing the ``[`` at ``text[i]`` (-1 when it does not close)."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "[":
            depth += 1
        elif text[j] == "]":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


class StepInterpreter(Interpreter):
    """Moves of RS-274 and AeroBasic: units, absolute/relative, feed time base, power and laser,
    written back as the dialect's plain lines (absolute, in the profile's unit and feed unit).

    ``fmt`` is the :class:`~bioslicer.programs.gcode.StepFormat` of the printer.
    """

    def __init__(self, fmt, printer) -> None:
        super().__init__()
        self.fmt = fmt
        self.printer = printer
        self.unit_um = fmt.scale_um          # µm per source length unit (profile's until the program says)
        self.feed_time_s = fmt.feed_s        # s per source feed time unit
        self.relative = False
        self.pos: dict = {}                  # axis letter -> µm (source coordinates, offsets applied)
        self.feed_um_s = math.nan
        self.power = 0.0
        self.laser_on = False
        self.power_slot = fmt.power_slot

    def c(self, v_um: float) -> str:
        return num(v_um / self.fmt.scale_um)

    def target(self, node, letter: str, value: float, offset_um: float = 0.0) -> None:
        v = value * self.unit_um
        self.pos[letter] = self.pos.get(letter, 0.0) + v if self.relative else v + offset_um

    def emit_power(self, node) -> None:
        self.out(node, self.fmt.cmd["power"].format(**{self.power_slot: num(self.power)}))
        if "laser_on" in self.fmt.cmd:
            self.out(node, self.fmt.cmd["laser_on"].format())
        self.laser_on = True

    def emit_off(self, node) -> None:
        self.out(node, self.fmt.cmd["laser_off"].format())
        self.laser_on = False

    def feed(self, value: float) -> None:
        self.feed_um_s = value * self.unit_um / self.feed_time_s

    def emit_move(self, node, role: str, letters) -> None:
        vals = {k: self.c(self.pos.get(a, 0.0)) for k, a in zip(("x", "y", "z"), letters)}
        if role == "mark":
            if math.isnan(self.feed_um_s):
                raise Problem(node, "a feed move before any feed (F) is set; the controller's default is not "
                                    "known here, set F")
            vals["f"] = num(self.feed_um_s * self.fmt.feed_s / self.fmt.scale_um)
        self.out(node, self.fmt.cmd[role].format(**vals))


class GcodeInterpreter(StepInterpreter):
    """RS-274/NGC as LinuxCNC reads it: words with or without blanks, any case, leading zeros,
    ``N`` numbers, ``( )`` and ``;`` comments, ``%`` delimiters, modal motion (a line of axis
    words repeats the last G0/G1/G2/G3), G2/G3 arcs in G17 (as chords), G17-G19, G20/G21, G90/G91, G93/G94, G4, G54-G59 with G10 L2/L20,
    G92, G53, ``#`` parameters with ``[ ]`` expressions and ``O`` subroutines, loops and conditions.
    """

    dialect = "RS-274"

    def __init__(self, fmt, printer) -> None:
        super().__init__(fmt, printer)
        self.params: dict = {}
        self.subs: dict = {}
        self.motion = None
        self.cs = 1                      # G54
        self.offsets: dict = {}          # coordinate system -> {letter: µm}
        self.g92: dict = {}
        self.spindle_style = False
        self.unit_set = False
        t = fmt.cmd["power"]
        self.power_word = self._norm_word(t.keyword)
        self.power_tag = dict(zip(t.slots, t.tags)).get(self.power_slot, "")
        self.spindle_style = bool(re.fullmatch(r"M0*[34]", self.power_word)) and self.power_tag == "S"
        self.off_word = self._norm_word(fmt.cmd["laser_off"].keyword) if "laser_off" in fmt.cmd else ""
        self.s_value = 0.0
        self.started = False            # a word was read (a bare O number before it is a program number)
        self.plane = 17
        self.arc_absolute = False

    @staticmethod
    def _norm_word(w: str) -> str:
        m = re.fullmatch(r"([A-Za-z])\s*0*(\d+(?:\.\d+)?)", w.strip())
        return f"{m.group(1).upper()}{m.group(2)}" if m else w.strip().upper()

    def comment_strip(self, text: str) -> str:
        t = re.sub(r"\([^)]*\)", " ", text).split(";", 1)[0]
        if "(" in t:       # an open comment runs to the line end
            t = t.split("(", 1)[0]
        t = t.strip()
        if t == "%":
            return ""
        return t[1:] if t.startswith("/") else t

    def classify(self, text: str):
        t = re.sub(r"\s+", "", text).upper()
        m = re.match(r"O(\d+|<[^>]*>)(SUB|ENDSUB|CALL|IF|ELSEIF|ELSE|ENDIF|WHILE|ENDWHILE|DO|REPEAT|ENDREPEAT|RETURN|"
                     r"BREAK|CONTINUE)(.*)$", t)
        if not m:
            if re.fullmatch(r"(N\d+)?M0*(2|30)", t):
                return "stop", None
            return "line", t
        label, word, rest = m.group(1).lower(), m.group(2), m.group(3)
        kind = {"SUB": "sub", "ENDSUB": "end", "IF": "if", "ELSEIF": "elif", "ELSE": "else", "ENDIF": "end",
                "WHILE": "while", "ENDWHILE": "end", "REPEAT": "repeat", "ENDREPEAT": "end"}.get(word)
        if kind is None:
            return "line", t            # call, or a word line() refuses by name
        return kind, (label if kind == "sub" else rest)

    def define(self, node):
        self.subs[node.arg] = node.body

    def substitute(self, node, text):
        for _ in range(8):
            if "#" not in text:
                return text
            text = re.sub(r"#<([^>]*)>|#(\d+)", lambda m: f"[{num(self.param(node, m))}]", text)
        raise Problem(node, f"cannot resolve the parameters of {text!r}")

    def param(self, node, m) -> float:
        if m.group(1) is not None:
            k = m.group(1).lower()
            if k not in self.params:
                raise Problem(node, f"parameter #<{m.group(1)}> is used before it is given a value")
            return self.params[k]
        return self.params.get(int(m.group(2)), 0.0)

    def assign(self, node, name, value):
        self.params[name] = value

    def line(self, node: Node) -> None:
        t = node.arg
        if re.fullmatch(r"O\d+", t) and not self.started:
            return self.note(node, f"{t} is a program number (Fanuc style), not an RS-274/NGC O word: skipped")
        if t.startswith("O"):
            m = re.match(r"O(\d+|<[^>]*>)CALL(.*)$", t)
            if not m:
                raise Problem(node, f"RS-274 O-word {t!r} is not read: O words open subroutines, loops and "
                                    "conditions here (do-while, return, break, continue and program numbers are not read)")
            return self.call(node, m.group(1).lower(), m.group(2))
        # parameter assignments: '#1=...#2=...' (values use the parameters before the line)
        if t.startswith("#"):
            parts = re.split(r"(?=#(?:\d+|<[^>]*>)=)", t)
            sets = []
            for p in parts:
                if not p:
                    continue
                m = re.match(r"#(?:(\d+)|<([^>]*)>)=(.*)$", p)
                if not m:
                    raise Problem(node, f"cannot read the parameter line {t!r}")
                key = int(m.group(1)) if m.group(1) else m.group(2).lower()
                sets.append((key, self.value(node, m.group(3))))
            for k, v in sets:
                self.params[k] = v
            return
        self.started = True
        self.words(node, self.substitute(node, t))

    def call(self, node, label, args) -> None:
        if label not in self.subs:
            raise Problem(node, f"subroutine O{label} is called before it is defined")
        vals = []
        i = 0
        while i < len(args):
            j = _bracket(args, i) if args[i] == "[" else -1
            if j < 0:
                raise Problem(node, f"cannot read the arguments {args!r} of O{label} call")
            vals.append(self.value(node, args[i:j]))
            i = j
        if self.depth_calls >= MAX_DEPTH:
            raise Problem(node, f"subroutine calls nest deeper than {MAX_DEPTH}")
        # #1-#30 and named parameters without a leading '_' are local to the call (as LinuxCNC scopes them)
        local = [k for k in self.params if (isinstance(k, int) and 1 <= k <= 30)
                 or (isinstance(k, str) and not k.startswith("_"))]
        saved = {k: self.params.pop(k) for k in local}
        for k in range(1, 31):
            self.params[k] = vals[k - 1] if k <= len(vals) else 0.0
        self.depth_calls += 1
        try:
            self.run(self.subs[label])
        finally:
            self.depth_calls -= 1
            for k in [k for k in self.params if (isinstance(k, int) and 1 <= k <= 30)
                      or (isinstance(k, str) and not k.startswith("_"))]:
                del self.params[k]
            self.params.update(saved)

    depth_calls = 0

    def words(self, node, t: str) -> None:
        w: list = []
        i = 0
        while i < len(t):
            ch = t[i]
            if not ch.isalpha():
                raise Problem(node, f"cannot read {t[i:]!r}: RS-274 words are a letter and a number")
            i += 1
            if i < len(t) and t[i] == "[":
                j = _bracket(t, i)
                if j < 0:
                    raise Problem(node, f"unclosed [ in {t!r}")
                w.append((ch, self.value(node, t[i:j])))
                i = j
                continue
            m = _NUMBER.match(t, i)
            if not m:
                raise Problem(node, f"the word {ch} has no number in {t!r}")
            w.append((ch, float(m.group(0))))
            i = m.end()
        self.execute(node, w)

    def execute(self, node, w: list) -> None:
        g = [v for k, v in w if k == "G"]
        mm = [v for k, v in w if k == "M"]
        val = {}
        for k, v in w:
            if k not in "GMN":
                if k in val:
                    raise Problem(node, f"the word {k} appears twice on the line")
                val[k] = v
        for v in mm:
            self.m_code(node, v, val)
        if "F" in val:
            self.feed(val["F"])
        if "S" in val and self.spindle_style:
            self.s_value = val["S"]
            if self.laser_on and not any(round(v) in (3, 4) for v in mm):
                self.power = self.s_value
                self.emit_power(node)
        machine = False
        axes_used = False
        for v in g:
            code = round(v * 10) / 10
            if code in (0, 1, 2, 3):
                self.motion = int(code)
            elif code in (17, 18, 19):
                self.plane = int(code)
            elif code in (90.1, 91.1):
                self.arc_absolute = code == 90.1
            elif code in (40, 49, 80, 61, 61.1, 64, 97, 98, 99):
                pass                       # cancels, path control: no effect on the path
            elif code == 20 or code == 21:
                self.unit_um = 25400.0 if code == 20 else 1000.0
                self.unit_set = True
            elif code == 90 or code == 91:
                self.relative = code == 91
            elif code == 94:
                self.feed_time_s = 60.0
            elif code in (93, 95):
                raise Problem(node, f"feed mode G{int(code)} (inverse time / per revolution) is not read; use G94")
            elif code == 4:
                axes_used = True           # dwell: P is the time, no move
            elif 54 <= code <= 59.3:
                self.cs = {54: 1, 55: 2, 56: 3, 57: 4, 58: 5, 59: 6, 59.1: 7, 59.2: 8, 59.3: 9}[code]
                if self.cs not in self.offsets and self.cs != 1:
                    self.note(node, f"G{v:g} selects a work offset the program does not set (G10 L2): taken as 0",
                              once_key=("cs", self.cs))
            elif code == 10:
                self.g10(node, val)
                axes_used = True
            elif code == 92:
                for a in "XYZ":     # the current point becomes val: machine = program + work offset + G92
                    if a in val:
                        self.g92[a] = self.pos.get(a, 0.0) - self.offsets.get(self.cs, {}).get(a, 0.0) \
                            - val[a] * self.unit_um
                axes_used = True
            elif code in (92.1, 92.2):
                self.g92 = {}
            elif code == 53:
                machine = True
            else:
                raise Problem(node, f"RS-274 G{v:g} is not read; it could move, so the program is not passed")
        axes = [a for a in val if a in "XYZABCUVW"]
        if self.motion in (2, 3) and not axes_used and (axes or any(k in val for k in "IJKR")):
            return self.arc(node, val, axes, machine)
        if not axes or axes_used:
            return
        bad = [a for a in axes if a not in "XYZ"]
        if bad:
            raise Problem(node, f"axis {bad[0]} moves, which is not read (only X, Y, Z)")
        if self.motion is None:
            raise Problem(node, "axis words before any G0/G1 motion mode")
        if not self.unit_set:
            self.note(node, f"no G20/G21: lengths are read in the profile's unit ({self.fmt.unit})", once_key="unit")
            self.unit_set = True
        for a in axes:
            self.target(node, a, val[a], 0.0 if machine else self.off(a))
        self.emit_move(node, "jump" if self.motion == 0 else "mark", "XYZ")

    def arc(self, node, val, axes, machine) -> None:
        """G2/G3 in the XY plane (G17): chords to the profile's precision, a helix in Z."""
        if self.plane != 17:
            raise Problem(node, f"arc move G{self.motion} in plane G{self.plane} is not read (only G17, XY)")
        bad = [a for a in axes if a not in "XYZ"]
        if bad:
            raise Problem(node, f"axis {bad[0]} moves, which is not read (only X, Y, Z)")
        x0, y0, z0 = (self.pos.get(a, 0.0) for a in "XYZ")
        for a in axes:
            self.target(node, a, val[a], 0.0 if machine else self.off(a))
        x1, y1, z1 = (self.pos.get(a, 0.0) for a in "XYZ")
        cw = self.motion == 2
        if "R" in val:
            r = val["R"] * self.unit_um
            d = math.hypot(x1 - x0, y1 - y0)
            if d == 0 or d > 2 * abs(r) * (1 + 1e-9):
                raise Problem(node, f"arc radius R{val['R']:g} does not reach the end point")
            h = math.sqrt(max(r * r - d * d / 4, 0.0))
            s = 1.0 if (cw == (r < 0)) else -1.0        # which side of the chord the centre lies on
            cx = (x0 + x1) / 2 - s * h * (y1 - y0) / d
            cy = (y0 + y1) / 2 + s * h * (x1 - x0) / d
        else:
            if "I" not in val and "J" not in val:
                raise Problem(node, "an arc needs I and J (the centre) or R")
            if self.arc_absolute:
                cx, cy = val.get("I", 0.0) * self.unit_um + self.off("X"), val.get("J", 0.0) * self.unit_um + self.off("Y")
            else:
                cx, cy = x0 + val.get("I", 0.0) * self.unit_um, y0 + val.get("J", 0.0) * self.unit_um
        r0, r1 = math.hypot(x0 - cx, y0 - cy), math.hypot(x1 - cx, y1 - cy)
        if r0 == 0 or abs(r0 - r1) > max(0.5, 1e-3 * r0):
            raise Problem(node, "the arc's start and end are not on one circle around its centre")
        a0, a1 = math.atan2(y0 - cy, x0 - cx), math.atan2(y1 - cy, x1 - cx)
        sweep = a1 - a0
        if cw and sweep >= -1e-12:
            sweep -= 2 * math.pi
        elif not cw and sweep <= 1e-12:
            sweep += 2 * math.pi
        tol = 10.0 ** -self.fmt.coord_decimals * self.fmt.scale_um      # one printed digit, µm
        step = 2 * math.acos(max(-1.0, 1 - max(tol, 1e-3) / r0))
        n = max(1, math.ceil(abs(sweep) / step))
        if n > 100_000:
            raise Problem(node, "the arc needs more than 100000 chords at this precision")
        for k in range(1, n + 1):
            t = k / n
            if k < n:
                ang = a0 + sweep * t
                self.pos["X"], self.pos["Y"] = cx + r0 * math.cos(ang), cy + r0 * math.sin(ang)
            else:
                self.pos["X"], self.pos["Y"] = x1, y1
            self.pos["Z"] = z0 + (z1 - z0) * t
            self.emit_move(node, "mark", "XYZ")

    def off(self, a: str) -> float:
        return self.offsets.get(self.cs, {}).get(a, 0.0) + self.g92.get(a, 0.0)

    def g10(self, node, val) -> None:
        L, P = int(val.get("L", -1)), int(val.get("P", 0))
        if L not in (2, 20):
            raise Problem(node, f"G10 L{L} is not read (only L2 and L20 work offsets)")
        cs = self.cs if P == 0 else P
        o = self.offsets.setdefault(cs, {})
        for a in "XYZ":
            if a in val:
                if L == 2:
                    o[a] = val[a] * self.unit_um
                else:
                    o[a] = self.pos.get(a, 0.0) - val[a] * self.unit_um

    def m_code(self, node, v, val) -> None:
        code = int(round(v))
        word = f"M{code}"
        if self.spindle_style and code in (3, 4):
            self.power = val.get("S", self.s_value)
            self.s_value = self.power
            return self.emit_power(node)
        if word == self.power_word and not self.spindle_style:
            if self.power_tag not in val:
                raise Problem(node, f"the power command {word} has no {self.power_tag} value")
            self.power = val[self.power_tag]
            return self.emit_power(node)
        if word == self.off_word or (self.spindle_style and code == 5):
            return self.emit_off(node)
        if code in (2, 30):
            self.stopped = True     # program end: what follows is not run
            return
        if code in (0, 1, 6, 7, 8, 9, 48, 49):
            return self.note(node, f"RS-274 M{code} is not checked (skipped: it does not move or expose)")
        raise Problem(node, f"RS-274 M{code} is not read; it could switch the laser, so the program is not passed")


class AeroBasicInterpreter(StepInterpreter):
    """AeroBasic as the A3200 reads it: any case, ``'`` and ``//`` comments, ``DVAR`` and ``$``
    variables, ``FOR/NEXT``, ``WHILE/ENDWHILE``, ``REPEAT/ENDREPEAT``, ``IF/ELSEIF/ELSE/END IF``,
    ``INCREMENTAL``/``ABSOLUTE``, ``METRIC``/``ENGLISH``, ``SECONDS``/``MINUTES``, ``CRITICAL``
    sections, ``RAPID``/``LINEAR`` (``G0``/``G1``), the profile's galvo laser gate and analog-output power."""

    dialect = "AeroBasic"

    def __init__(self, fmt, printer, axes: dict) -> None:
        super().__init__(fmt, printer)
        self.vars = _Variables()
        self.ax = axes
        self.posoff: dict = {}     # axis letter -> µm added to absolute targets (POSOFFSET SET)
        norm = lambda s: re.sub(r"\s+", " ", s.strip().upper())  # noqa: E731
        self.norm = norm
        t = fmt.cmd["power"]
        self.power_word = re.sub(r"\s+", "", t.keyword.upper())
        self.on_text = norm(fmt.cmd["laser_on"].text)
        self.off_text = norm(fmt.cmd["laser_off"].text)

    def comment_strip(self, text: str) -> str:
        return text.split("'", 1)[0].split("//", 1)[0]

    def classify(self, text: str):
        t = self.norm(text)
        head = t.split(" ", 1)[0]
        rest = t[len(head):].strip()
        if head == "FOR":
            m = re.match(r"\$(\w+)\s*=\s*(.+?)\s+TO\s+(.+?)(?:\s+STEP\s+(.+))?$", rest)
            return ("for", (m.group(1), m.group(2), m.group(3), m.group(4))) if m else ("line", t)
        if head == "NEXT" or head in ("ENDWHILE", "WEND", "ENDREPEAT", "ENDIF") or t in ("END IF", "END WHILE"):
            return "end", None
        if head == "WHILE":
            return "while", re.sub(r"\s+DO$", "", rest)
        if head == "REPEAT":
            return "repeat", rest
        if head == "IF":
            return "if", re.sub(r"\s+THEN$", "", rest)
        if head == "ELSEIF":
            return "elif", re.sub(r"\s+THEN$", "", rest)
        if head == "ELSE":
            return "else", None
        if t in ("END PROGRAM", "END", "M2", "M30"):
            return "stop", None
        return "line", t

    def substitute(self, node, text):
        return self.vars.substitute(node, text)

    def assign(self, node, name, value):
        self.vars.set(name, value)

    def line(self, node: Node) -> None:
        t = node.arg
        head = t.split(" ", 1)[0]
        rest = t[len(head):].strip()
        if head == "POSOFFSET":
            return self.posoffset(node, rest)
        if head == "DVAR":
            for name in re.findall(r"\$(\w+)", rest):
                self.vars.set(name, 0.0)
            return
        if t.startswith("$"):
            lhs, _, rhs = t.partition("=")
            key = re.sub(r"\s+", "", lhs)
            if key == self.power_word:
                self.power = self.value(node, rhs)
                self.out(node, self.fmt.cmd["power"].format(**{self.power_slot: num(self.power)}))
                return
            m = re.fullmatch(r"\$(\w+)", key)
            if m and rhs:
                self.vars.set(m.group(1), self.value(node, rhs))
                return
            raise Problem(node, f"AeroBasic {key} is not read; it could set the laser power, so the program is not "
                                f"passed (the profile's power command is {self.power_word})")
        if t == self.on_text:
            self.laser_on = True
            return self.out(node, self.fmt.cmd["laser_on"].format())
        if t == self.off_text:
            self.laser_on = False
            return self.out(node, self.fmt.cmd["laser_off"].format())
        if head in ("RAPID", "LINEAR", "G0", "G1", "G00", "G01"):
            return self.move(node, "jump" if head in ("RAPID", "G0", "G00") else "mark", rest)
        if head in ("ABSOLUTE", "G90", "INCREMENTAL", "G91"):
            self.relative = head in ("INCREMENTAL", "G91")
            return
        if head in ("METRIC", "G71", "ENGLISH", "G70"):
            self.unit_um = 25400.0 if head in ("ENGLISH", "G70") else 1000.0
            return
        if head == "PRIMARY":
            if self.fmt.unit == "mm":
                self.unit_um = 1000.0
                return
            return self.note(node, f"PRIMARY selects the controller's primary units: read in the profile's unit "
                                   f"({self.fmt.unit})", once_key="primary")
        if head in ("SECONDS", "G76", "MINUTES", "G75"):
            self.feed_time_s = 60.0 if head in ("MINUTES", "G75") else 1.0
            return
        if t == "VELOCITY ON":
            return                 # velocity profiling: the fast reader reads it too
        if head in ("CRITICAL", "VELOCITY", "LOOKAHEAD", "ENABLE", "DWELL", "G4", "WAIT", "MSGDISPLAY", "G108", "G109", "G9",
                    "SCURVE", "RAMP", "PROGRAM", "PLANE", "G17", "TIMESCALE"):
            if head == "TIMESCALE":
                raise Problem(node, "AeroBasic TIMESCALE changes every speed, which is not read")
            return self.note(node, f"AeroBasic {head} is not checked (skipped: it does not move or expose)",
                             once_key=("ab", head))
        raise Problem(node, f"AeroBasic {head} is not read; it could move or expose, so the program is not passed")

    def posoffset(self, node, rest: str) -> None:
        """``POSOFFSET SET <axis> <value> ...``: the current point of each axis becomes ``value``
        (later absolute targets are shifted by the difference); ``POSOFFSET CLEAR [axes]`` ends it."""
        sub, _, args = rest.partition(" ")
        toks = re.findall(r"([A-Z]+)\s*(\$\w+|[-+]?(?:\d+\.?\d*|\.\d+)(?:E[-+]?\d+)?)", args)
        if sub == "CLEAR":
            for a in ([a for a, _ in toks] or list(self.posoff)):
                self.posoff.pop(a, None)
            return
        if sub != "SET" or not toks:
            raise Problem(node, f"AeroBasic POSOFFSET {sub} is not read; it could move, so the program is not passed")
        for a, v in toks:
            self.posoff[a] = self.pos.get(a, 0.0) - self.value(node, v) * self.unit_um

    def move(self, node, role, rest: str) -> None:
        toks = re.findall(r"([A-Z]+)\s*(\[[^\]]*\]|\$\w+|[-+]?(?:\d+\.?\d*|\.\d+)(?:E[-+]?\d+)?)", rest)
        if not toks or re.sub(r"([A-Z]+)\s*(\[[^\]]*\]|\$\w+|[-+]?(?:\d+\.?\d*|\.\d+)(?:E[-+]?\d+)?)", "", rest).strip():
            raise Problem(node, f"cannot read the axis words of {node.text!r}")
        ax = self.ax
        stage_xy = {ax["SX"], ax["SY"]}
        galvo = {ax["GX"], ax["GY"], ax["SZ"]}
        letters = []
        for a, v in toks:
            val = self.value(node, v)
            if a == "F":
                self.feed(val)
                continue
            if a not in stage_xy and a not in galvo:
                raise Problem(node, f"axis {a} moves, which is not read (axes {', '.join(sorted(stage_xy | galvo))})")
            self.target(node, a, val, self.posoff.get(a, 0.0))
            letters.append(a)
        if not letters:
            return
        if stage_xy & set(letters):
            if role == "mark":
                raise Problem(node, "a LINEAR move of the x, y stage is not read; the stage moves with RAPID")
            if self.laser_on:
                pass   # the fast reader reports a stage move with the laser on
            vals = {k: self.c(self.pos.get(a, 0.0)) for k, a in zip("xyz", (ax["SX"], ax["SY"], ax["SZ"]))}
            return self.out(node, self.fmt.cmd["stage_move"].format(**vals))
        self.emit_move(node, role, (ax["GX"], ax["GY"], ax["SZ"]))


def canonical_chunks(chunks, can: Canonical):
    """The :class:`Moves` chunks a fast reader read from ``can.text``, pointed back at the source
    (:func:`remap`), the general reader's errors and notes on the first chunk (an empty chunk
    carries them when the program has no plain line at all)."""
    from .dialects import Moves

    first = True
    for mv in chunks:
        remap(mv, can)
        if first:
            mv.problems = [*can.errors, *mv.problems]
            mv.notes = list(can.notes)
            first = False
        yield mv
    if first:
        mv = Moves.empty(can.files)
        mv.problems, mv.notes = list(can.errors), list(can.notes)
        yield mv
