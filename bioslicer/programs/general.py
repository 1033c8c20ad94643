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
_WORDOPS = [(re.compile(r"\bmod\b"), "%"), (re.compile(r"\beq\b"), "=="), (re.compile(r"\bne\b"), "!="),
            (re.compile(r"\bgt\b"), ">"), (re.compile(r"\bge\b"), ">="), (re.compile(r"\blt\b"), "<"),
            (re.compile(r"\ble\b"), "<="), (re.compile(r"\bxor\b"), "!=")]


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
    t = re.sub(r"(?<![=!<>])=(?!=)", "==", t)   # a lone '=' in a condition compares
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
             "linedistance": "sets the distance of repeated lines (LineNumber 1: none)"}
_GWL_ERR = {"writetext": "writes text whose moves are not read; write the text as points",
            "pulsedmode": "exposes points one by one for ExposureTime, which is not read; write lines instead",
            "stagegotoz": "moves the z stage, which is not read; use AddZDrivePosition",
            "movestagez": "moves the z stage, which is not read; use AddZDrivePosition"}
_GWL_NUM_ROLES = ("laser_power", "scan_speed", "power_scaling", "z_offset", "add_z_offset", "x_offset", "y_offset",
                  "stage_x", "stage_y", "add_z_drive", "find_interface")


class GwlInterpreter(Interpreter):
    """GWL as DeScribe reads it: commands case-insensitive, ``%`` comments, ``var/local/set``
    variables, ``repeat/for/while/if ... end``, ``include`` (inlined), ``MoveStageX/Y``
    relative stage moves, 3- or 4-column points and the old ``-999 -999 -999`` terminator."""

    dialect = "GWL"

    def __init__(self, spec) -> None:
        super().__init__()
        from ._format import Template

        self.cmd = {k: Template.parse(v) for k, v in spec.commands.items()}
        self.roles = {t.keyword.lower(): r for r, t in self.cmd.items() if t.keyword}
        self.vars = _Variables()
        self.power_values = False
        self.stage = [0.0, 0.0]
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
        if low in ("var", "local", "set") or head.startswith("$"):
            m = re.match(r"\$(\w+)\s*=\s*(.+)$", rest if not head.startswith("$") else text)
            if not m:
                raise Problem(node, f"cannot read the assignment {text!r}; write e.g. 'var $power = 20'")
            self.vars.set(m.group(1), self.value(node, m.group(2)), local=low == "local")
            return
        if head[0] in "+-.0123456789$(":
            return self.point(node, text)
        if low == "include":
            return self.include(node, rest)
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
            vals = [evaluate(t) for t in toks]
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
