"""Numba line tokenizer: program bytes -> records (keyword code, tagged numbers, line number).

:func:`tokenize` splits program bytes into records, one per non-blank, non-comment line: the
keyword the line starts with (an index into the dialect's keyword list, 0 for a line of bare
numbers, -2 for an unknown word), the numbers on the line with the letter written just before
each (``X1.5`` has tag ``X``), and the 1-based line number. :class:`ChunkReader` streams a file
through it in parallel pieces; the dialect readers run a small Numba state machine over the records.
"""

from __future__ import annotations

import io

import numpy as np
from numba import njit, prange

from ..kernel.pool import run_chunks, wait_for_warmup

MAX_SLOTS = 6          # numbers per line read back
CODE_NUMBERS = 0       # a line of bare numbers (GWL point)
CODE_UNKNOWN = -2      # a line starting with a word not in the dialect
CODE_BAD = -3          # a number that does not parse
CODE_SKIP = -1         # an unused record slot (parallel tokenizing): ignore
SMALL_BYTES = 1 << 16  # chunks below this are tokenized in one serial piece


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


@njit(cache=True)
def _paren_tail(buf, j, n):
    """True when the ``(`` comment at ``buf[j]`` closes and words follow it on the line
    (RS-274 inline comments: ``G1 X1 (note) Y2`` moves Y too)."""
    while j < n and buf[j] != 10 and buf[j] != 41:
        j += 1
    if j >= n or buf[j] != 41:
        return False
    j += 1
    while j < n and buf[j] != 10:
        if not _is_space(buf[j]):
            return True
        j += 1
    return False


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


@njit(cache=True, nogil=True)
def lone_crs(buf):
    """CRs in ``buf`` not followed by LF (a CR at the very end counts): line ends of the classic
    Mac kind. Branch-free, so the loop vectorises (CRLF text is scanned at memory speed)."""
    n = buf.shape[0]
    k = 0
    for i in range(n - 1):
        k += (buf[i] == 13) & (buf[i + 1] != 10)
    if n > 0:
        k += buf[n - 1] == 13
    return k


def count_lines(buf, bounds, counts):
    """Line ends (``\\n``) in each piece ``buf[bounds[t]:bounds[t+1]]``, in parallel threads."""
    wait_for_warmup("read")
    run_chunks(_count_lines_range, bounds.shape[0] - 1, buf, bounds, counts)


@njit(cache=True, nogil=True)
def _count_lf(buf, lo, hi):
    """Line ends (``\\n``) in ``buf[lo:hi]``. The loop runs over a slice from 0, with no index that
    could be negative, so it vectorises (about 9x faster than over ``range(lo, hi)``)."""
    b = buf[lo:hi]
    k = 0
    for i in range(b.shape[0]):
        k += b[i] == 10
    return k


@njit(cache=True, nogil=True)
def _count_lines_range(t_lo, t_hi, buf, bounds, counts):
    """:func:`count_lines` of pieces ``t_lo .. t_hi - 1``."""
    for t in range(t_lo, t_hi):
        counts[t] = _count_lf(buf, bounds[t], bounds[t + 1])


@njit(cache=True, nogil=True, parallel=True)
def tokenize_pieces(buf, bounds, first_lines, rec_off, iscom, kwlo, kwhi, kw_blob, kw_off, kw_order, kw_raw,
                    codes, lines, nvals, vals, tags, starts, ends):
    """:func:`tokenize` of the pieces ``buf[bounds[t]:bounds[t+1]]`` (whole lines) in parallel.

    Piece t fills records ``rec_off[t] .. rec_off[t+1]`` (room for its lines); records it does
    not use get code :data:`CODE_SKIP`, which the readers ignore.

    Kept a ``prange`` kernel (unlike :func:`count_lines`, see :mod:`bioslicer.kernel.pool`): its
    parallel region gets its arrays marked ``noalias``, about 15 % faster per core here.
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


@njit(cache=True, nogil=True)
def _tokenize_range(buf, lo, hi, iscom, kwlo, kwhi, kw_blob, kw_off, kw_order, kw_raw, first_line, r0,
                    codes, lines, nvals, vals, tags, starts, ends):
    """:func:`tokenize` over the whole lines in ``buf[lo:hi]``, records from index ``r0``; returns the count.

    ``iscom`` (256,) bool: bytes that start a comment; ``kwlo``, ``kwhi``: see :func:`char_tables`.
    Each line: a point path for lines of plain numbers (GWL points, about twice as fast), else the
    keyword, then a fast path for what programs mostly hold (blank-separated plain numbers, each
    maybe right after a tag letter: GWL points, ``G1 X.. Y..``); a line the fast path does not
    finish cleanly is read again by the general path, which decides.
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
        if (48 <= c0 <= 57 or c0 == 45) and kwlo[c0] == kwhi[c0] and not iscom[c0]:
            # point path, for the lines programs mostly hold (GWL points): plain numbers ([-]digits
            # [.digits], at most 14 digits) separated by blanks up to the line end. Anything else
            # (a tag letter, a comment, '+', an exponent, too many numbers) leaves the line to the
            # paths below, which read it from the start; where this path finishes a line, its
            # record is the one they make (the number parse of :func:`_fast_number`, written out
            # here: called, even inlined, it makes this loop twice as slow)
            j = s
            nv = 0
            le = s
            ok = True
            while True:
                neg = buf[j] == 45
                q = j + 1 if neg else j
                mi = np.int64(0)
                nd = 0
                scale = 0
                frac = 0
                while q < n:
                    d = np.int64(buf[q]) - 48
                    if 0 <= d <= 9:
                        mi = mi * 10 + d
                        nd += 1
                        scale += frac
                    elif d == -2 and frac == 0:  # the point
                        frac = 1
                    else:
                        break
                    q += 1
                if nd == 0 or nd > 14 or nv >= nslot:
                    ok = False
                    break
                v = float(mi)
                if scale > 0:
                    v = v / _P10F[scale]
                vals[r, nv] = -v if neg else v
                nv += 1
                le = q
                while q < n and (buf[q] == 32 or buf[q] == 9 or buf[q] == 13):
                    q += 1
                if q >= n or buf[q] == 10:
                    j = q
                    break
                c = buf[q]
                if q == le or not (48 <= c <= 57 or c == 45):   # no blank after the number, or no number next
                    ok = False
                    break
                j = q
            if ok:
                codes[r] = CODE_NUMBERS
                nvals[r] = nv
                lines[r] = line
                starts[r] = s
                ends[r] = le
                for k in range(nv, nslot):
                    vals[r, k] = 0.0
                for k in range(nslot):
                    tags[r, k] = 0
                r += 1
                i = j + 1
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
            if iscom[c0] and not (c0 == 40 and _paren_tail(buf, s, n)):  # a comment line
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
                    if c == 40 and _paren_tail(buf, j, n):
                        ok = False
                        break
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
                    if c == 40 and _paren_tail(buf, j, le):
                        codes[r] = CODE_BAD   # words after an inline (comment): the general reader
                    break
                if c == 36 or c == 35 or c == 91:
                    codes[r] = CODE_BAD       # $variable, #parameter, [expression]: the general reader
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

    Any line end is read (LF, CRLF, and lone CR, which is turned into LF as the chunk is read).
    Each chunk is cut at line ends into ``pieces`` pieces tokenized in parallel
    (:func:`tokenize_pieces`); ``pieces=1``: tokenized in the calling thread alone (a reader that
    runs beside other work, where a parallel launch only adds overhead). Yields ``(records dict, buf)`` where records holds the arrays
    filled by :func:`tokenize`, one slot per line of the chunk; slots of blank and comment lines
    have code :data:`CODE_SKIP`. The record arrays are reused for the next chunk: copy what you keep.
    Chunks of about 1 MB keep the records (about 6x the text) in the processor's caches.
    """

    def __init__(self, path, keywords: Keywords, comment: str, chunk_bytes: int = 1 << 20, pieces: int = 16) -> None:
        # path: a file, or the program text itself (bytes)
        self.path = path
        self.kw = keywords
        self.comment = np.frombuffer(comment.encode() or b"\0", dtype=np.uint8).copy()
        self.chunk_bytes = chunk_bytes
        self.pieces = max(1, int(pieces))
        wait_for_warmup("read")
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
        carry = b""
        with (io.BytesIO(self.path) if isinstance(self.path, (bytes, bytearray)) else open(self.path, "rb")) as fh:
            while True:
                data = carry + fh.read(self.chunk_bytes)
                eof = len(data) == len(carry)
                carry = b""
                if not eof and data.endswith(b"\r"):    # a CRLF may be cut here: the CR goes with the next read
                    data, carry = data[:-1], b"\r"
                if b"\r" in data and lone_crs(np.frombuffer(data, np.uint8)):
                    # lone CR line ends (classic Mac, TipSlicer): every CR, CRLF and LF ends one line
                    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                data = rest + data if rest else data
                if not data:
                    if carry:
                        continue
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
                # one serial piece: for a small chunk a parallel launch costs more than it saves
                small = len(part) < SMALL_BYTES or self.pieces == 1
                bounds = np.array([0, len(part)], np.int64) if small else self._bounds(part)
                nlines = counts[:len(bounds) - 1]
                if small:
                    _count_lines_range(0, 1, buf, bounds, nlines)
                else:
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
                args = (self.iscom, self.kwlo, self.kwhi, self.kw.blob, self.kw.off, self.kw.order, self.kw.raw)
                out = (view["codes"], view["lines"], view["nvals"], view["vals"], view["tags"], view["starts"],
                       view["ends"])
                if small:
                    r = _tokenize_range(buf, 0, len(part), *args, int(first[0]), 0, *out)
                    view["codes"][r:] = CODE_SKIP
                    for k in ("lines", "nvals", "vals", "tags"):
                        view[k][r:] = 0
                    view["starts"][r:] = len(part)
                    view["ends"][r:] = len(part)
                else:
                    tokenize_pieces(buf, bounds, first.astype(np.int64), rec_off, *args, *out)
                line += int(nlines.sum())
                yield view, part
                if eof:
                    break
