"""Fast fixed-point text: line templates rendered by a Numba kernel, and a Numba line tokenizer.

Writing
-------
A *template* is one program line with numeric slots, e.g. ``"G1 X{x} Y{y} Z{z} F{f}"``. The
dialect writers describe their output as a table of lines: the template of each line and up to
:data:`TEMPLATE_SLOTS` integer values per line, already quantized (value x 10**decimals, rounded once
in numpy). :func:`render` turns that table into bytes: integer digits through a two-digit
lookup table, one preallocated buffer per call, no Python per line. Quantizing once makes the
text exact and deterministic (no float formatting, no ``-0.000``).

Reading
-------
:func:`tokenize` splits program bytes into records, one per non-blank, non-comment line: the
keyword the line starts with (an index into the dialect's keyword list, 0 for a line of bare
numbers, -2 for an unknown word), the numbers on the line with the letter written just before
each (``X1.5`` has tag ``X``), and the 1-based line number. The dialect readers run a small
Numba state machine over the records.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit, prange

from ..fileio import sha256_file  # noqa: F401  (re-exported for the writers)

MAX_SLOTS = 6          # numbers per line read back
TEMPLATE_SLOTS = 4     # numbers per written line (put_line's v0..v3)
CODE_NUMBERS = 0       # a line of bare numbers (GWL point)
CODE_UNKNOWN = -2      # a line starting with a word not in the dialect
CODE_BAD = -3          # a number that does not parse
CODE_SKIP = -1         # an unused record slot (parallel tokenizing): ignore

_POW10 = np.array([10 ** i for i in range(19)], dtype=np.int64)
_DIGITS2 = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), dtype=np.uint8).copy()
_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
                    size += 22
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
    """One reusable byte buffer holding the rendered chunks of a batch at precomputed offsets.

    Parameters
    ----------
    bound_per_point, bound_per_mark : int
        Upper bounds of the bytes a chunk can take per point and per mark.
    """

    def __init__(self, bound_per_point: int, bound_per_mark: int) -> None:
        self.bp = int(bound_per_point)
        self.bm = int(bound_per_mark)
        self.out = np.empty(0, np.uint8)

    def offsets(self, mark_start: np.ndarray, cb: np.ndarray) -> np.ndarray:
        """(K+1,) byte offset of each chunk of marks ``cb`` (global mark bounds); grows the buffer."""
        pts = mark_start[cb[1:]] - mark_start[cb[:-1]]
        size = pts * self.bp + np.diff(cb) * self.bm
        off = np.zeros(len(cb), np.int64)
        np.cumsum(size, out=off[1:])
        if off[-1] > self.out.shape[0]:
            self.out = np.empty(int(off[-1] * 1.25) + 4096, np.uint8)
        return off

    def write(self, fh, off: np.ndarray, lens: np.ndarray) -> None:
        """Write the rendered chunks in order."""
        for c in range(len(lens)):
            fh.write(self.out[off[c]:off[c] + lens[c]])


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


# ----------------------------------------------------------------------------- reading
class Keywords:
    """The words a dialect's lines start with, as arrays for :func:`tokenize` (codes from 1).

    ``raw`` lists the words whose argument is text (GWL ``include <path>``): the tokenizer reads
    no number on those lines, so a file name with digits (``part7_blocks\\part7_block_0000.gwl``)
    is not a malformed number; the readers take the text from the line's byte range.
    """

    def __init__(self, words: list[str], raw=()) -> None:
        uniq = []
        for w in words:
            if w and w not in uniq:
                uniq.append(w)
        self.words = uniq
        self.code = {w: i + 1 for i, w in enumerate(uniq)}
        # keywords whose argument is text (a file name), not numbers: the tokenizer reads no number there
        self.raw = np.array([w in raw for w in uniq] or [False], dtype=np.bool_)
        blob = "".join(uniq).encode()
        self.blob = np.frombuffer(blob or b" ", dtype=np.uint8).copy()
        off = np.zeros(len(uniq) + 1, np.int64)
        np.cumsum([len(w.encode()) for w in uniq], out=off[1:])
        self.off = off
        # grouped by first byte, longest first within a group, so 'G10' is tried before 'G1'
        enc = [w.encode() for w in uniq]
        self.order = np.array(sorted(range(len(uniq)), key=lambda k: (enc[k][0], -len(enc[k]), k)), dtype=np.int64)


@njit(cache=True)
def _is_space(c):
    return c == 32 or c == 9 or c == 13


_P10F = np.array([10.0 ** k for k in range(23)])
_EXACT_INT = 1 << 49   # below this, mant * 10 + digit is exact both as int64 and as float64


@njit(cache=True)
def _parse_number(buf, i, end):
    """Parse a decimal number at buf[i]; returns (value, next index, ok).

    Digits accumulate in an int64 while that is exact, then in a float64 as ``mant * 10 + d``;
    powers of ten up to 1e22 come from a table (exact), so values match plain float parsing.
    """
    neg = False
    if buf[i] == 45 or buf[i] == 43:
        neg = buf[i] == 45
        i += 1
    mi = 0
    mant = 0.0
    isint = True
    nd = 0
    scale = 0
    frac = False
    while i < end:
        c = buf[i]
        if 48 <= c <= 57:
            if isint:
                mi = mi * 10 + (c - 48)
                if mi >= _EXACT_INT:
                    isint = False
                    mant = float(mi)
            else:
                mant = mant * 10.0 + (c - 48)
            nd += 1
            if frac:
                scale += 1
            i += 1
        elif c == 46 and not frac:
            frac = True
            i += 1
        else:
            break
    if isint:
        mant = float(mi)
    if nd == 0:
        return 0.0, i, False
    if i < end and (buf[i] == 101 or buf[i] == 69):  # exponent
        j = i + 1
        eneg = False
        if j < end and (buf[j] == 45 or buf[j] == 43):
            eneg = buf[j] == 45
            j += 1
        e = 0
        ne = 0
        while j < end and 48 <= buf[j] <= 57:
            e = e * 10 + (buf[j] - 48)
            j += 1
            ne += 1
        if ne > 0:
            scale += -e if not eneg else e
            i = j
    if scale > 0:
        v = mant / (_P10F[scale] if scale <= 22 else 10.0 ** scale)
    elif scale < 0:
        v = mant * (_P10F[-scale] if scale >= -22 else 10.0 ** (-scale))
    else:
        v = mant
    # the number must end at a separator
    if i < end and not (_is_space(buf[i]) or buf[i] == 44 or buf[i] == 59):
        c = buf[i]
        if not ((65 <= c <= 90) or (97 <= c <= 122)):
            return 0.0, i, False
    return (-v if neg else v), i, True


@njit(cache=True, inline="always")
def _fast_number(buf, i, hi):
    """Parse a plain decimal at ``buf[i]``: optional sign, at most 14 digits, at most one point.

    Returns (value, next index, ok). ``ok`` False leaves the number to :func:`_parse_number`
    (exponents, long mantissas, malformed text); where ok, the value is the one
    :func:`_parse_number` gives (same integer mantissa, same division by an exact power of ten).
    """
    neg = False
    c = buf[i]
    if c == 45 or c == 43:
        neg = c == 45
        i += 1
    mi = np.int64(0)
    nd = 0
    scale = 0
    frac = 0
    while i < hi:
        d = np.int64(buf[i]) - 48
        if 0 <= d <= 9:
            mi = mi * 10 + d
            nd += 1
            scale += frac
        elif d == -2 and frac == 0:  # the point
            frac = 1
        else:
            break
        i += 1
    if nd == 0 or nd > 14:
        return 0.0, i, False
    v = float(mi)
    if scale > 0:
        v = v / _P10F[scale]
    return (-v if neg else v), i, True


@njit(cache=True, inline="always")
def _num_start(c):
    return (48 <= c <= 57) or c == 45 or c == 43 or c == 46


@njit(cache=True)
def char_tables(comment, kw_blob, kw_off, kw_order):
    """(256,) tables: bytes in ``comment`` (bool); for each byte, the range ``kwlo[b]:kwhi[b]``
    of ``kw_order`` holding the keywords that start with it (``kw_order`` is sorted by first byte)."""
    iscom = np.zeros(256, np.bool_)
    for q in range(comment.shape[0]):
        iscom[comment[q]] = True
    kwlo = np.zeros(256, np.int64)
    kwhi = np.zeros(256, np.int64)
    for oi in range(kw_order.shape[0] - 1, -1, -1):
        k = kw_order[oi]
        if kw_off[k + 1] > kw_off[k]:
            b = kw_blob[kw_off[k]]
            if kwhi[b] == 0:
                kwhi[b] = oi + 1
            kwlo[b] = oi
    return iscom, kwlo, kwhi


@njit(cache=True)
def tokenize(buf, comment, kw_blob, kw_off, kw_order, kw_raw, first_line,
             codes, lines, nvals, vals, tags, starts, ends):
    """Split ``buf`` (whole lines) into records; returns the number of records.

    Parameters
    ----------
    buf : uint8 (n,)
        Program bytes, ending at a line end (or the end of the file).
    comment : uint8 (k,)
        Bytes that start a comment (rest of the line ignored).
    kw_blob, kw_off, kw_order, kw_raw
        Keywords (see :class:`Keywords`).
    first_line : int
        Line number of the first line in ``buf``.
    codes, lines, nvals, vals, tags, starts, ends
        Output arrays with one row per line of ``buf`` at least: keyword code, line number,
        count of numbers, numbers (R, MAX_SLOTS) float64 (unused slots 0), letter tag of each
        number (uint8), byte range of the line in ``buf``.
    """
    iscom, kwlo, kwhi = char_tables(comment, kw_blob, kw_off, kw_order)
    return _tokenize_range(buf, 0, buf.shape[0], iscom, kwlo, kwhi, kw_blob, kw_off, kw_order, kw_raw, first_line, 0,
                           codes, lines, nvals, vals, tags, starts, ends)


@njit(cache=True, parallel=True)
def count_lines(buf, bounds, counts):
    """Line ends (``\\n``) in each piece ``buf[bounds[t]:bounds[t+1]]``, in parallel."""
    for t in prange(bounds.shape[0] - 1):
        k = 0
        for i in range(bounds[t], bounds[t + 1]):
            k += buf[i] == 10
        counts[t] = k


@njit(cache=True, parallel=True)
def tokenize_pieces(buf, bounds, first_lines, rec_off, iscom, kwlo, kwhi, kw_blob, kw_off, kw_order, kw_raw,
                    codes, lines, nvals, vals, tags, starts, ends):
    """:func:`tokenize` of the pieces ``buf[bounds[t]:bounds[t+1]]`` (whole lines) in parallel.

    Piece t fills records ``rec_off[t] .. rec_off[t+1]`` (room for its lines); records it does
    not use get code :data:`CODE_SKIP`, which the readers ignore.
    """
    for t in prange(bounds.shape[0] - 1):
        r = _tokenize_range(buf, bounds[t], bounds[t + 1], iscom, kwlo, kwhi, kw_blob, kw_off, kw_order, kw_raw,
                            first_lines[t], rec_off[t], codes, lines, nvals, vals, tags, starts, ends)
        for q in range(rec_off[t] + r, rec_off[t + 1]):
            codes[q] = CODE_SKIP
            lines[q] = 0
            nvals[q] = 0
            starts[q] = bounds[t + 1]
            ends[q] = bounds[t + 1]
            for k in range(vals.shape[1]):
                vals[q, k] = 0.0
                tags[q, k] = 0


@njit(cache=True)
def _tokenize_range(buf, lo, hi, iscom, kwlo, kwhi, kw_blob, kw_off, kw_order, kw_raw, first_line, r0,
                    codes, lines, nvals, vals, tags, starts, ends):
    """:func:`tokenize` over the whole lines in ``buf[lo:hi]``, records from index ``r0``; returns the count.

    ``iscom`` (256,) bool: bytes that start a comment; ``kwlo``, ``kwhi``: see :func:`char_tables`.
    Each line: the keyword, then a fast path for what programs mostly hold (blank-separated plain
    numbers, each maybe right after a tag letter: GWL points, ``G1 X.. Y..``); a line the fast
    path does not finish cleanly is read again by the general path, which decides.
    """
    n = hi
    r = r0
    i = lo
    line = first_line
    nslot = vals.shape[1]
    while i < n:
        s = i
        while s < n and _is_space(buf[s]):
            s += 1
        if s >= n:
            break
        c0 = buf[s]
        if c0 == 10:
            i = s + 1
            line += 1
            continue
        # keyword (checked before comments so that a keyword may begin with the comment mark)
        code = CODE_UNKNOWN
        kend = s
        for oi in range(kwlo[c0], kwhi[c0]):
            k = kw_order[oi]
            a = kw_off[k]
            L = kw_off[k + 1] - a
            if s + L > n:
                continue
            ok = True
            for j in range(1, L):
                if buf[s + j] != kw_blob[a + j]:
                    ok = False
                    break
            if not ok:
                continue
            if s + L < n:
                c = buf[s + L]
                if not (_is_space(c) or c == 10 or c == 61 or c == 40 or iscom[c]):
                    continue
            code = k + 1
            kend = s + L
            break
        if code == CODE_UNKNOWN:
            if iscom[c0]:  # a comment line
                while s < n and buf[s] != 10:
                    s += 1
                i = s + 1
                line += 1
                continue
            if _num_start(c0):
                code = CODE_NUMBERS
        # fast path: blank-separated tokens, each a plain number or a tag letter and a plain number
        # (a token always starts after a blank: the keyword and every number must end at one)
        if code != CODE_UNKNOWN and not (code > 0 and kw_raw[code - 1]):
            j = kend
            nv = 0
            ok = True
            le = kend
            while True:
                while j < n and _is_space(buf[j]):
                    j += 1
                if j >= n or buf[j] == 10:
                    break
                c = buf[j]
                if iscom[c]:
                    while j < n and buf[j] != 10:
                        j += 1
                    le = j
                    while le > s and _is_space(buf[le - 1]):
                        le -= 1
                    break
                t = 0
                if not _num_start(c):
                    if ((65 <= c <= 90) or (97 <= c <= 122)) and j + 1 < n and _num_start(buf[j + 1]) \
                            and not iscom[buf[j + 1]]:
                        t = c & 0xDF
                        j += 1
                    else:
                        ok = False
                        break
                v, j, good = _fast_number(buf, j, n)
                if not good or (j < n and not (buf[j] == 10 or _is_space(buf[j]))):
                    ok = False
                    break
                if nv < nslot:
                    vals[r, nv] = v
                    tags[r, nv] = t
                nv += 1
                le = j
            if ok:
                codes[r] = code if nv <= nslot else CODE_BAD
                for k in range(min(nv, nslot), nslot):
                    vals[r, k] = 0.0
                    tags[r, k] = 0
                nvals[r] = min(nv, nslot)
                lines[r] = line
                starts[r] = s
                ends[r] = le
                r += 1
                i = j + 1
                line += 1
                continue
        # general path: numbers with their tag letters, anywhere on the line
        e = s
        while e < n and buf[e] != 10:
            e += 1
        i = e + 1
        ln = line
        line += 1
        le = e
        while le > s and _is_space(buf[le - 1]):
            le -= 1
        codes[r] = code
        lines[r] = ln
        starts[r] = s
        ends[r] = le
        nv = 0
        if code != CODE_UNKNOWN and not (code > 0 and kw_raw[code - 1]):
            j = kend
            prev = 32
            while j < le:
                c = buf[j]
                if iscom[c]:
                    break
                if _num_start(c):
                    if (48 <= prev <= 57) or prev == 46 or prev == 95 or prev == 36:
                        # part of a word like $AO[0] or a name with digits: skip the char
                        prev = c
                        j += 1
                        continue
                    v, j2, ok = _fast_number(buf, j, le)
                    if not ok or (j2 < le and not (_is_space(buf[j2]) or buf[j2] == 44 or buf[j2] == 59)):
                        v, j2, ok = _parse_number(buf, j, le)
                    if not ok:
                        codes[r] = CODE_BAD
                        break
                    if nv < nslot:
                        vals[r, nv] = v
                        t = 0
                        if (65 <= prev <= 90) or (97 <= prev <= 122):
                            t = prev & 0xDF  # upper case
                            # a tag letter must itself start a word
                            if j >= 2:
                                pp = buf[j - 2]
                                if not (_is_space(pp) or pp == 61 or pp == 44):
                                    t = 0
                        tags[r, nv] = t
                    nv += 1
                    prev = 48
                    j = j2
                    continue
                prev = c
                j += 1
            if nv > nslot:
                codes[r] = CODE_BAD
        for k in range(min(nv, nslot), nslot):
            vals[r, k] = 0.0
            tags[r, k] = 0
        nvals[r] = min(nv, nslot)
        r += 1
    return r - r0


class ChunkReader:
    """Read a text file in whole-line chunks of about ``chunk_bytes`` and tokenize each in parallel.

    Each chunk is cut at line ends into ``pieces`` pieces tokenized in parallel
    (:func:`tokenize_pieces`). Yields ``(records dict, buf)`` where records holds the arrays
    filled by :func:`tokenize`, one slot per line of the chunk; slots of blank and comment lines
    have code :data:`CODE_SKIP`. The record arrays are reused for the next chunk: copy what you keep.
    Chunks of about 1 MB keep the records (about 6x the text) in the processor's caches.
    """

    def __init__(self, path, keywords: Keywords, comment: str, chunk_bytes: int = 1 << 20, pieces: int = 16) -> None:
        self.path = path
        self.kw = keywords
        self.comment = np.frombuffer(comment.encode() or b"\0", dtype=np.uint8).copy()
        self.chunk_bytes = chunk_bytes
        self.pieces = max(1, int(pieces))
        self.iscom, self.kwlo, self.kwhi = char_tables(self.comment, keywords.blob, keywords.off, keywords.order)

    def _bounds(self, part: bytes) -> np.ndarray:
        n = len(part)
        cuts = [0]
        for k in range(1, self.pieces):
            j = part.find(b"\n", max(k * n // self.pieces, cuts[-1]))
            if j < 0 or j + 1 >= n:
                break
            if j + 1 > cuts[-1]:
                cuts.append(j + 1)
        cuts.append(n)
        return np.array(cuts, np.int64)

    def __iter__(self):
        line = 1
        rest = b""
        cap = 0
        rec = {}
        counts = np.zeros(self.pieces, np.int64)
        with open(self.path, "rb") as fh:
            while True:
                data = fh.read(self.chunk_bytes)
                eof = not data
                data = rest + data if rest else data
                if not data:
                    break
                if eof:
                    cut = len(data)
                else:
                    cut = data.rfind(b"\n") + 1
                    if cut == 0:
                        rest = data
                        continue
                part, rest = (data[:cut], data[cut:]) if cut < len(data) else (data, b"")
                buf = np.frombuffer(part, dtype=np.uint8)
                bounds = self._bounds(part)
                nlines = counts[:len(bounds) - 1]
                count_lines(buf, bounds, nlines)
                room = nlines.copy()
                if not part.endswith(b"\n"):
                    room[-1] += 1  # the last line has no line end
                rec_off = np.zeros(len(bounds), np.int64)
                np.cumsum(room, out=rec_off[1:])
                first = line + np.concatenate([[0], np.cumsum(nlines)[:-1]])
                nl = int(rec_off[-1])
                if nl > cap:  # record arrays are reused from chunk to chunk
                    cap = max(nl, int(cap * 1.25))
                    rec = {"codes": np.empty(cap, np.int64), "lines": np.empty(cap, np.int64),
                           "nvals": np.empty(cap, np.int64), "vals": np.empty((cap, MAX_SLOTS)),
                           "tags": np.empty((cap, MAX_SLOTS), np.uint8),
                           "starts": np.empty(cap, np.int64), "ends": np.empty(cap, np.int64)}
                view = {k: v[:nl] for k, v in rec.items()}
                tokenize_pieces(buf, bounds, first.astype(np.int64), rec_off, self.iscom, self.kwlo, self.kwhi,
                                self.kw.blob, self.kw.off, self.kw.order, self.kw.raw, view["codes"], view["lines"],
                                view["nvals"], view["vals"], view["tags"], view["starts"], view["ends"])
                line += int(nlines.sum())
                yield view, part
                if eof:
                    break


class StreamWriter:
    """A binary file written as buffers fill; counts bytes."""

    def __init__(self, path, buffer_bytes: int = 1 << 22) -> None:
        self.fh = open(path, "wb", buffering=buffer_bytes)
        self.n_bytes = 0

    def write(self, data) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.fh.write(data)
        self.n_bytes += len(data)

    def close(self) -> None:
        self.fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------- atomic files
@dataclass(frozen=True)
class Written:
    """A file written and renamed into place: its path, sha256 (hex) and size in bytes."""

    path: Path
    sha256: str
    n_bytes: int


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask




def _commit(fd_or_fh, tmp: str, path: Path, fsync: bool = True) -> None:
    """fsync an open temporary file, close it, give it the usual permissions and rename it to ``path``."""
    fd_or_fh.flush()
    if fsync:
        os.fsync(fd_or_fh.fileno())
    fd_or_fh.close()
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


class AtomicFile:
    """A binary file streamed under a temporary name beside ``path`` and hashed as it is written.

    On a clean exit of the ``with`` block the data is flushed, fsynced and renamed to ``path``
    (a reader, or a retried task, never sees a torn file); on an error the temporary file is
    removed. After the block, :attr:`written` is the :class:`Written` record (sha256 '' when
    ``hashed`` is False). ``fsync=False`` skips the fsync (a file nothing outlives a crash for).
    """

    def __init__(self, path, buffer_bytes: int = 1 << 22, hashed: bool = True, fsync: bool = True) -> None:
        self.fsync = fsync
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.fh = os.fdopen(fd, "wb", buffering=buffer_bytes)
        self.hash = hashlib.sha256() if hashed else None
        self.n_bytes = 0
        self.written: Written | None = None

    def write(self, data) -> None:
        if isinstance(data, str):
            data = data.encode()
        self.fh.write(data)
        if self.hash is not None:
            self.hash.update(data)
        self.n_bytes += len(data)

    def append_file(self, path, chunk_bytes: int = 1 << 24) -> None:
        """Append the bytes of file ``path`` (in the kernel where it can: ``copy_file_range``)."""
        if self.hash is not None:
            raise ValueError("append_file copies without hashing; open the AtomicFile with hashed=False")
        self.fh.flush()
        dst = self.fh.fileno()
        with open(path, "rb", buffering=0) as src:
            size = os.fstat(src.fileno()).st_size
            done = 0
            try:
                while done < size:
                    k = os.copy_file_range(src.fileno(), dst, min(chunk_bytes, size - done))
                    if k == 0:
                        break
                    done += k
            except (AttributeError, OSError):
                pass       # no in-kernel copy here: finish in user space from where it stopped
            src.seek(done)
            buf = bytearray(min(chunk_bytes, 1 << 22))
            view = memoryview(buf)
            while True:
                k = src.readinto(buf)
                if not k:
                    break
                mv = view[:k]
                while len(mv):
                    mv = mv[os.write(dst, mv):]
                done += k
        self.fh.seek(0, os.SEEK_END)
        self.n_bytes += done

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            _commit(self.fh, self.tmp, self.path, self.fsync)
            self.written = Written(self.path, self.hash.hexdigest() if self.hash is not None else "", self.n_bytes)
            return False
        try:
            self.fh.close()
        finally:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
        return False


class AtomicPath:
    """A temporary path beside ``path`` for writers that want a file name (zipfile, memory maps).

    ``with AtomicPath(p) as tmp: <write tmp>``; on a clean exit the file is hashed, fsynced and
    renamed to ``p`` (:attr:`written` set; ``hashed``/``fsync`` False skip those); on an error
    it is removed.
    """

    def __init__(self, path, hashed: bool = True, fsync: bool = True) -> None:
        self.hashed = hashed
        self.fsync = fsync
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.written: Written | None = None

    def __enter__(self) -> Path:
        return Path(self.tmp)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            sha, n = sha256_file(self.tmp) if self.hashed else ("", os.path.getsize(self.tmp))
            _commit(open(self.tmp, "rb+"), self.tmp, self.path, self.fsync)
            self.written = Written(self.path, sha, n)
            return False
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass
        return False
