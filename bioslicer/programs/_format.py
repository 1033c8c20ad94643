"""Fast fixed-point text: line templates rendered by a Numba kernel (reading: :mod:`.tokenize`).

Writing
-------
A *template* is one program line with numeric slots, e.g. ``"G1 X{x} Y{y} Z{z} F{f}"``. The
dialect writers describe their output as a table of lines: the template of each line and up to
:data:`TEMPLATE_SLOTS` integer values per line, already quantized (value x 10**decimals, rounded once
in numpy). :func:`render` turns that table into bytes: integer digits through a two-digit
lookup table, one preallocated buffer per call, no Python per line. Quantizing once makes the
text exact and deterministic (no float formatting, no ``-0.000``).
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit


TEMPLATE_SLOTS = 4     # numbers per written line (put_line's v0..v3)
BOUND_PER_SLOT = 22    # bytes a number can take: sign, 19 digits, point (and one spare)

_POW10 = np.array([10 ** i for i in range(19)], dtype=np.int64)
_DIGITS2 = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), dtype=np.uint8).copy()
_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _milli_tables() -> tuple[np.ndarray, np.ndarray]:
    """Tables of :func:`put_milli`: 4 bytes per value 0..999, the integer's digits (left aligned)
    and their count in the last byte; ``.`` and the three digits of a fraction."""
    ints = np.zeros(4000, np.uint8)
    fracs = np.zeros(4000, np.uint8)
    for i in range(1000):
        s = str(i).encode()
        ints[4 * i:4 * i + len(s)] = np.frombuffer(s, np.uint8)
        ints[4 * i + 3] = len(s)
        fracs[4 * i:4 * i + 4] = np.frombuffer(b"." + f"{i:03d}".encode(), np.uint8)
    return ints, fracs


_INT3, _FRAC3 = _milli_tables()


# ----------------------------------------------------------------------------- templates
@dataclass
class Template:
    """One compiled line template.

    Attributes
    ----------
    text : str
        The template as written in the dialect file.
    pieces : list[str]
        Literal text around the slots (``len(slots) + 1`` pieces).
    slots : list[str]
        Slot names in order of appearance.
    tags : list[str]
        The letter written just before each slot ('' when none), used by the readers.
    keyword : str
        What a line made from the template starts with: the whole text when it has no slot,
        else its first word.
    """

    text: str
    pieces: list
    slots: list
    tags: list
    keyword: str

    @classmethod
    def parse(cls, text: str) -> "Template":
        pieces = _SLOT.split(text)
        lits, slots = pieces[0::2], pieces[1::2]
        if len(slots) > TEMPLATE_SLOTS:
            raise ValueError(f"template {text!r} has more than {TEMPLATE_SLOTS} slots")
        tags = [(p[-1] if p and p[-1].isalpha() else "") for p in lits[:-1]]
        head = text.split("{", 1)[0]
        keyword = text.strip() if not slots else (head.split()[0] if head.split() else "")
        return cls(text, lits, slots, tags, keyword)

    def format(self, **values) -> str:
        """Python formatting for the few header lines (values already strings or numbers)."""
        out = [self.pieces[0]]
        for name, lit in zip(self.slots, self.pieces[1:]):
            out.append(str(values[name]))
            out.append(lit)
        return "".join(out)


class TemplateSet:
    """Templates compiled into the arrays :func:`render` takes.

    Parameters
    ----------
    templates : dict[str, str]
        Name -> template text.
    decimals : dict[str, int]
        Slot name -> digits after the point (slots not listed get 0).
    eol : str
        Line ending, ``"\\n"`` or ``"\\r\\n"`` (the renderer writes the ``\\n``).
    """

    def __init__(self, templates: dict, decimals: dict, eol: str = "\n") -> None:
        self.names = list(templates)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.templates = {n: Template.parse(t) for n, t in templates.items()}
        lit = bytearray()
        ops = []
        starts = [0]
        bound = []
        for n in self.names:
            t = self.templates[n]
            size = 1
            for k, piece in enumerate(t.pieces):
                b = piece.encode()
                if b:
                    ops.append((0, len(lit), len(lit) + len(b)))
                    lit += b
                    size += len(b)
                if k < len(t.slots):
                    ops.append((1, k, int(decimals.get(t.slots[k], 0))))
                    size += BOUND_PER_SLOT
            for b in eol[:-1].encode():            # "\r" of a CRLF ending; put_line adds the "\n"
                ops.append((0, len(lit), len(lit) + 1))
                lit.append(b)
                size += 1
            starts.append(len(ops))
            bound.append(size)
        self.ops = np.array(ops, dtype=np.int64).reshape(-1, 3)
        self.op_start = np.array(starts, dtype=np.int64)
        self.lit = np.frombuffer(bytes(lit) or b" ", dtype=np.uint8).copy()
        self.bound = np.array(bound, dtype=np.int64)

    def __getitem__(self, name: str) -> int:
        return self.index[name]

    def render(self, tpl: np.ndarray, vals: np.ndarray) -> bytes:
        """Bytes of the lines ``tpl`` (template index per line) with quantized ``vals`` (n, k): slot j
        of a line gets ``vals[:, j]`` (columns past k are 0)."""
        if len(tpl) == 0:
            return b""
        size = int(self.bound[tpl].sum())
        out = np.empty(size, dtype=np.uint8)
        v = np.zeros((len(tpl), TEMPLATE_SLOTS), np.int64)
        k = min(TEMPLATE_SLOTS, np.shape(vals)[1])
        v[:, :k] = np.asarray(vals)[:, :k]
        n = _render(self.ops, self.op_start, self.lit, tpl.astype(np.int64, copy=False), v, _POW10, _DIGITS2, out)
        return out[:n].tobytes()


@njit(cache=True, error_model="numpy")
def _put_uint(u, out, pos, digits2):
    """Write int64 ``u >= 0`` in decimal at ``out[pos]``; returns the new end.

    Up to four digits by straight-line code (two digits per table lookup), longer numbers by a
    loop: coordinates in µm with a few decimals are mostly short.
    """
    if u < 10:
        out[pos] = 48 + u
        return pos + 1
    if u < 100:
        out[pos] = digits2[2 * u]
        out[pos + 1] = digits2[2 * u + 1]
        return pos + 2
    if u < 1000:
        h = u // 100
        r = u - h * 100
        out[pos] = 48 + h
        out[pos + 1] = digits2[2 * r]
        out[pos + 2] = digits2[2 * r + 1]
        return pos + 3
    if u < 10000:
        h = u // 100
        r = u - h * 100
        out[pos] = digits2[2 * h]
        out[pos + 1] = digits2[2 * h + 1]
        out[pos + 2] = digits2[2 * r]
        out[pos + 3] = digits2[2 * r + 1]
        return pos + 4
    nd = 5
    t = u // 100000
    while t > 0:
        nd += 1
        t = t // 10
    return _put_frac(u, nd, out, pos, digits2)


@njit(cache=True, error_model="numpy")
def _put_frac(fp, d, out, pos, digits2):
    """Write the ``d`` digits of ``0 <= fp < 10**d`` (leading zeros kept) at ``out[pos]``;
    returns the new end. Also the digits of a long integer part (``d`` its digit count)."""
    q = pos + d
    k = d
    while k >= 2:
        h = fp // 100
        r = fp - h * 100
        fp = h
        q -= 2
        out[q] = digits2[2 * r]
        out[q + 1] = digits2[2 * r + 1]
        k -= 2
    if k == 1:
        out[q - 1] = 48 + fp
    return pos + d


@njit(cache=True, error_model="numpy")
def _put_fixed_const(v, D, P, out, pos, digits2):
    """:func:`put_fixed` for a decimals count ``D`` (and ``P == 10**D``) known when compiling:
    the divisions become multiplications and the digit loops unroll."""
    if v < 0:
        out[pos] = 45  # '-'
        pos += 1
        v = -v
    ip = v // P
    pos = _put_uint(ip, out, pos, digits2)
    out[pos] = 46  # '.'
    return _put_frac(v - ip * P, D, out, pos + 1, digits2)


@njit(cache=True, error_model="numpy", inline="always")
def put_milli(v, out, pos, int3, frac3, digits2):
    """:func:`put_fixed` with 3 decimals by table (``int3``, ``frac3`` = ``_INT3``, ``_FRAC3``):
    fixed-size stores, later ones overwriting the unused bytes (the caller's bound leaves room),
    so the sign and the digit count cost no branch that mispredicts; unsigned arithmetic and
    indices (no floor-division fix-up, no negative-index wrap). Same bytes as put_fixed."""
    out[pos] = 45  # '-', overwritten by the first digit when v >= 0
    if v < 0:
        pos += 1
        v = -v
    u = np.uint64(v)
    ip = u // np.uint64(1000)
    j = (u - ip * np.uint64(1000)) * np.uint64(4)
    if ip < np.uint64(1000):
        i = ip * np.uint64(4)
        out[pos] = int3[i]
        out[pos + 1] = int3[i + np.uint64(1)]
        out[pos + 2] = int3[i + np.uint64(2)]
        pos += np.int64(int3[i + np.uint64(3)])
    else:
        pos = _put_uint(np.int64(ip), out, pos, digits2)
    out[pos] = frac3[j]
    out[pos + 1] = frac3[j + np.uint64(1)]
    out[pos + 2] = frac3[j + np.uint64(2)]
    out[pos + 3] = frac3[j + np.uint64(3)]
    return pos + 4


_EXACT_F = 1 << 52


@njit(cache=True, error_model="numpy")
def put_fixed(v, d, out, pos, pow10, digits2):
    """Write integer ``v`` as a fixed-point number with ``d`` decimals (``v / 10**d``) at ``out[pos]``.

    Returns the new end. The usual decimal counts (3: µm with nm steps; 4 and 6: mm) take code
    specialised for them: a template interpreter pays for a variable ``d`` in every digit loop,
    about 3x the time of the specialised code.
    """
    if d == 3:
        return _put_fixed_const(v, 3, 1000, out, pos, digits2)
    if d == 4:
        return _put_fixed_const(v, 4, 10000, out, pos, digits2)
    if d == 6:
        return _put_fixed_const(v, 6, 1000000, out, pos, digits2)
    if v < 0:
        out[pos] = 45
        pos += 1
        v = -v
    if d == 0:
        return _put_uint(v, out, pos, digits2)
    p = pow10[d]
    if v < _EXACT_F:  # a float estimate of v // p, corrected by one where it rounds across
        ip = np.int64(float(v) * (1.0 / float(p)))
        if ip * p > v:
            ip -= 1
        elif (ip + 1) * p <= v:
            ip += 1
    else:
        ip = v // p
    pos = _put_uint(ip, out, pos, digits2)
    out[pos] = 46
    return _put_frac(v - ip * p, d, out, pos + 1, digits2)


def _put_line(t, v0, v1, v2, v3, ops, op_start, lit, out, pos, pow10, digits2):
    """Render template ``t`` with slot values ``v0..v3`` (slot k gets ``vk``) and a newline at ``out[pos]``.

    Returns the new end. The fused dialect kernels call this once per program line: as
    :func:`put_line_hot` (inlined) for the lines of every point or mark, as :func:`put_line`
    (a call) for the rest: arrays cost many arguments per call, and inlining every site
    bloats the kernels.
    """
    for k in range(op_start[t], op_start[t + 1]):
        if ops[k, 0] == 0:
            for j in range(ops[k, 1], ops[k, 2]):
                out[pos] = lit[j]
                pos += 1
        else:
            s = ops[k, 1]
            v = v0 if s == 0 else (v1 if s == 1 else (v2 if s == 2 else v3))
            pos = put_fixed(v, ops[k, 2], out, pos, pow10, digits2)
    out[pos] = 10
    return pos + 1


put_line = njit(cache=True, error_model="numpy")(_put_line)
put_line_hot = njit(cache=True, error_model="numpy", inline="always")(_put_line)


@njit(cache=True, error_model="numpy")
def _render(ops, op_start, lit, tpl, vals, pow10, digits2, out):
    pos = 0
    for i in range(tpl.shape[0]):
        pos = put_line(tpl[i], vals[i, 0], vals[i, 1], vals[i, 2], vals[i, 3], ops, op_start, lit, out, pos,
                       pow10, digits2)
    return pos


@njit(cache=True, error_model="numpy", inline="always")
def qround(v):
    """``np.rint(v)`` as int64, the scalar form of :func:`quantize` (same IEEE result)."""
    return np.int64(np.rint(v))


def chunk_bounds(mark_start: np.ndarray, m0: int, m1: int, points: int) -> np.ndarray:
    """Mark indices cutting marks [m0, m1) into chunks of about ``points`` points (at least one mark each).

    Returns
    -------
    (K+1,) int64
        ``bounds[0] == m0``, ``bounds[-1] == m1``, strictly increasing.
    """
    ms = mark_start[m0:m1 + 1]
    targets = np.arange(int(ms[0]) + points, int(ms[-1]), points, dtype=np.int64)
    cut = np.searchsorted(ms, targets, side="left") + m0
    return np.unique(np.concatenate([[m0], cut, [m1]]).astype(np.int64))


class ChunkBuffer:
    """One reusable byte buffer holding the rendered chunks of a batch at given offsets."""

    def __init__(self) -> None:
        self.out = np.empty(0, np.uint8)

    def place(self, sizes: np.ndarray) -> np.ndarray:
        """(K+1,) byte offsets of K chunks of ``sizes`` bytes laid end to end; grows the buffer."""
        off = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=off[1:])
        if off[-1] > self.out.shape[0]:
            self.out = np.empty(int(off[-1] * 1.25) + 4096, np.uint8)
        return off

    def views(self, off: np.ndarray, lens: np.ndarray) -> list:
        """The rendered chunks, in order (views of the buffer, no copy)."""
        return [self.out[off[c]:off[c] + lens[c]] for c in range(len(lens))]

    def write(self, fh, off: np.ndarray, lens: np.ndarray) -> None:
        """Write the rendered chunks in order (one ``writev`` when ``fh`` has ``write_views``)."""
        _write_views(fh, self.views(off, lens))


def _write_views(fh, views) -> None:
    if hasattr(fh, "write_views"):
        fh.write_views(views)
    else:
        for v in views:
            fh.write(v)


_writer_lock = threading.Lock()
_writer: ThreadPoolExecutor | None = None


def _forget_writer() -> None:
    global _writer, _writer_lock
    _writer = None     # a forked child has no thread of its parent's executor
    _writer_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writer)


class WriteBehind:
    """Write rendered batches on a background thread while the caller renders the next one.

    Use two :class:`ChunkBuffer` in turn: :meth:`submit` waits for the batch before (so the
    buffer of the batch before that is free again) and queues this one. Leaving the ``with``
    block waits for the last write (and raises its error, if any).
    """

    def __init__(self, fh) -> None:
        self.fh = fh
        self.pending = None

    def submit(self, buf: ChunkBuffer, off: np.ndarray, lens: np.ndarray) -> None:
        global _writer
        self.wait()
        with _writer_lock:
            if _writer is None:
                _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bioslicer-write")
            ex = _writer
        self.pending = ex.submit(_write_views, self.fh, buf.views(off, lens))

    def wait(self) -> None:
        if self.pending is not None:
            p, self.pending = self.pending, None
            p.result()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.wait()
        elif self.pending is not None:
            self.pending.exception()     # let it finish before the file closes; the first error wins
            self.pending = None
        return False


def quantize(a, decimals: int) -> np.ndarray:
    """``a`` x 10**decimals rounded to int64 (half away from zero is not needed: rint is exact enough)."""
    return np.rint(np.asarray(a, dtype=np.float64) * float(10 ** decimals)).astype(np.int64)


def fmt(value: float, decimals: int) -> str:
    """One number exactly as :func:`render` writes it (for the few header lines)."""
    v = int(np.rint(value * 10 ** decimals))
    s = "-" if v < 0 else ""
    v = abs(v)
    if decimals == 0:
        return f"{s}{v}"
    return f"{s}{v // 10 ** decimals}.{v % 10 ** decimals:0{decimals}d}"
