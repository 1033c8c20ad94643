"""The Numba fixed-point formatter and line tokenizer used by every text dialect."""

import numpy as np
import pytest

from bioslicer.programs import _format as F
from bioslicer.programs import tokenize as T


def _py_fixed(v: int, d: int) -> str:
    s = "-" if v < 0 else ""
    v = abs(v)
    return f"{s}{v}" if d == 0 else f"{s}{v // 10 ** d}.{v % 10 ** d:0{d}d}"


@pytest.mark.parametrize("d", range(0, 10))
def test_render_matches_python_formatting(d):
    rng = np.random.default_rng(d)
    v = np.concatenate([rng.integers(-10 ** 12, 10 ** 12, 300), [0, 1, -1, 9, 10, 99, 100, -100, 10 ** d, -(10 ** d) + 1]])
    ts = F.TemplateSet({"p": "P {a} Q{b}"}, {"a": d, "b": d})
    vals = np.zeros((len(v), F.TEMPLATE_SLOTS), np.int64)
    vals[:, 0] = v
    vals[:, 1] = v[::-1]
    text = ts.render(np.zeros(len(v), np.int64), vals).decode()
    want = "".join(f"P {_py_fixed(int(a), d)} Q{_py_fixed(int(b), d)}\n" for a, b in zip(v, v[::-1]))
    assert text == want


def test_templates_take_at_most_the_slots_a_line_renders():
    ts = F.TemplateSet({"g": "G1 A{a} B{b} C{c} D{d}"}, {k: 1 for k in "abcd"})
    vals = np.array([[11, -22, 33, 44]])
    assert ts.render(np.zeros(1, np.int64), vals) == b"G1 A1.1 B-2.2 C3.3 D4.4\n"
    with pytest.raises(ValueError, match="more than 4 slots"):
        F.Template.parse("G1 A{a} B{b} C{c} D{d} E{e}")


def test_quantize_and_fmt_agree_and_have_no_negative_zero():
    ts = F.TemplateSet({"pt": "{x} {y} {z}"}, {"x": 3, "y": 3, "z": 3})
    xyz = np.array([[-0.0001, 1.0005, -2.3456], [12.34549, -0.0, 1e5]])
    q = np.zeros((2, F.TEMPLATE_SLOTS), np.int64)
    q[:, :3] = F.quantize(xyz, 3)
    text = ts.render(np.zeros(2, np.int64), q).decode()
    assert text == "0.000 1.000 -2.346\n12.345 0.000 100000.000\n"  # rint: 1.0005 -> 1.000 (half to even)
    assert F.fmt(-2.3456, 3) == "-2.346" and F.fmt(-0.0001, 3) == "0.000"


def _tok(text: str, words, comment=";", raw=()):
    kw = T.Keywords(words, raw=raw)
    buf = np.frombuffer(text.encode(), np.uint8)
    n = text.count("\n") + 1
    out = dict(codes=np.empty(n, np.int64), lines=np.empty(n, np.int64), nvals=np.empty(n, np.int64),
               vals=np.zeros((n, T.MAX_SLOTS)), tags=np.zeros((n, T.MAX_SLOTS), np.uint8),
               starts=np.empty(n, np.int64), ends=np.empty(n, np.int64))
    r = T.tokenize(buf, np.frombuffer(comment.encode(), np.uint8), kw.blob, kw.off, kw.order, kw.raw, 1, *out.values())
    return kw, {k: v[:r] for k, v in out.items()}


def test_tokenize_keywords_numbers_tags_and_lines():
    text = ("; header comment\n"
            "G1 X1.5 Y-2 Z.25 F600 ; trailing\n"
            "\n"
            "G10 P1\n"
            "  -1.000 2.5 3e2\n"
            "FOO 3\n"
            "$AO[0].X = 4.25\n"
            "G1 X1.2.3\n")
    kw, r = _tok(text, ["G1", "G10", "$AO[0].X"])
    assert list(r["lines"]) == [2, 4, 5, 6, 7, 8]
    assert list(r["codes"]) == [kw.code["G1"], kw.code["G10"], T.CODE_NUMBERS, T.CODE_UNKNOWN, kw.code["$AO[0].X"],
                                T.CODE_BAD]
    assert list(r["nvals"][:3]) == [4, 1, 3]
    np.testing.assert_array_equal(r["vals"][0, :4], [1.5, -2.0, 0.25, 600.0])
    assert bytes(r["tags"][0, :4]) == b"XYZF"
    np.testing.assert_array_equal(r["vals"][2, :3], [-1.0, 2.5, 300.0])
    assert r["nvals"][4] == 1 and r["vals"][4, 0] == 4.25 and r["tags"][4, 0] == 0


def test_chunk_reader_keeps_line_numbers_across_chunks(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"".join(b"%d 0 0\n" % i for i in range(1, 5001)))
    lines, first = [], []
    for rec, _ in T.ChunkReader(p, T.Keywords([]), "%", chunk_bytes=1000):
        lines.append(rec["lines"].copy())      # the reader reuses its arrays for the next chunk
        first.append(rec["vals"][:, 0].copy())
    assert len(lines) > 5
    np.testing.assert_array_equal(np.concatenate(lines), np.arange(1, 5001))
    np.testing.assert_array_equal(np.concatenate(first), np.arange(1, 5001))


def test_chunk_bounds_cover_marks_with_at_least_one_mark_each():
    ms = np.array([0, 2, 4, 500, 502, 510, 512])
    cb = F.chunk_bounds(ms, 1, 6, 4)
    assert cb[0] == 1 and cb[-1] == 6 and np.all(np.diff(cb) >= 1)
    # a chunk takes the marks that start before its next multiple of 4 points: marks 1-2 (the
    # 496-point mark is not split), then one mark per 4 points
    assert list(cb) == [1, 3, 4, 5, 6]


def test_parallel_tokenizer_matches_the_serial_one(tmp_path):
    text = ("% c\nG1 X1.5 Y-2 Z.25\n\n  -1.000 2.5 3e2\nFOO 3\n% x\n12345678901234567 0.1 -0.0\n"
            "G1 X1.2.3\n" * 1 + "".join(f"{i}.{i % 1000:03d} {-i} 7\n" for i in range(3000)))
    p = tmp_path / "t.txt"
    p.write_bytes(text.encode())
    kw, want = _tok(text, ["G1", "FOO"], comment="%")
    got = {k: [] for k in want}
    for rec, _ in T.ChunkReader(p, kw, "%", chunk_bytes=5000, pieces=7):
        keep = rec["codes"] != T.CODE_SKIP
        for k in got:
            got[k].append(rec[k][keep])
    for k in ("codes", "lines", "nvals", "vals", "tags"):
        np.testing.assert_array_equal(np.concatenate(got[k]), want[k])
    # beyond 2**53 the digits accumulate as floats (m * 10 + d), as the reader always did
    m = 0.0
    for ch in "12345678901234567":
        m = m * 10.0 + int(ch)
    assert want["vals"][3, 0] == m and want["vals"][3, 1] == 0.1 and want["lines"][3] == 7


# ----------------------------------------------------------------------------- tokenizer fuzz
_NUM = __import__("re").compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _ref_line(line: str, words, comment: str, raw=()):
    """What the tokenizer should make of one line, written plainly: (code, values, tags) or None."""
    s = line.strip(" \t\r")
    if not s:
        return None
    kw = [w for w in words if w]
    code, kend = T.CODE_UNKNOWN, 0
    for w in sorted(kw, key=len, reverse=True):
        if s.startswith(w) and (len(s) == len(w) or s[len(w)] in " \t\r=(" or s[len(w)] in comment):
            code, kend = kw.index(w) + 1, len(w)
            break
    if code == T.CODE_UNKNOWN:
        if s[0] in comment:
            return None
        if s[0] in "0123456789+-.":
            code = T.CODE_NUMBERS
        else:
            return code, [], []
    if code > 0 and kw[code - 1] in raw:
        return code, [], []
    vals, tags = [], []
    j, prev = kend, " "
    while j < len(s):
        c = s[j]
        if c in comment:
            break
        if c in "0123456789+-.":
            if prev.isdigit() or prev in "._$":
                prev, j = c, j + 1
                continue
            m = _NUM.match(s, j)
            end = m.end() if m else j
            if not m or (end < len(s) and not (s[end] in " \t\r,;" or s[end].isascii() and s[end].isalpha())):
                return T.CODE_BAD, None, None
            vals.append(float(m.group(0)))
            t = prev.upper() if prev.isascii() and prev.isalpha() and (j < 2 or s[j - 2] in " \t\r=,") else ""
            tags.append(ord(t) if t else 0)
            prev, j = "0", end
            continue
        prev, j = c, j + 1
    if len(vals) > T.MAX_SLOTS:
        return T.CODE_BAD, None, None
    return code, vals, tags


def test_tokenizer_matches_a_plain_reading_of_random_lines():
    rng = np.random.default_rng(7)
    words = ["G1", "G10", "G0", "M3", "LaserPower", "$AO[0].X", "include"]
    comment = ";%"
    pieces = ["G1", "G10", "G0", "M3", "LaserPower", "$AO[0].X", "include", "X", "Y", "F", "Write", "=", "(",
              ";", "%", "e", "E", "_7", "1.5", "-2", "+.25", "3.", "12.345", "-0.000", "7e3", "1.5e-2", "2E",
              "99999999999999", ".", "-", "1.2.3", "X1.5", "Y-2.25", "Z.5", "A7", "x3", "1,2", "5;c", "\t", "  ",
              "\r", "abc", "4X", "X-", "S20.000"]
    lines = []
    for _ in range(3000):
        k = int(rng.integers(1, 7))
        toks = [pieces[int(rng.integers(len(pieces)))] for _ in range(k)]
        seps = [" " if rng.random() < 0.8 else "" for _ in range(k)]
        lines.append("".join(t + sp for t, sp in zip(toks, seps)).rstrip("\n"))
    text = "\n".join(lines) + "\n"
    _, out = _tok(text, words, comment=comment, raw=["include"])   # 'include' takes text: no numbers read
    r = len(out["codes"])
    want = [(i + 1, _ref_line(ln, words, comment, raw=("include",))) for i, ln in enumerate(lines)]
    want = [(i, w) for i, w in want if w is not None]
    assert r == len(want)
    for q, (line_no, (code, vals, tags)) in enumerate(want):
        assert out["lines"][q] == line_no
        assert out["codes"][q] == code, (lines[line_no - 1], out["codes"][q], code)
        if code == T.CODE_BAD:
            continue
        nv = out["nvals"][q]
        assert nv == len(vals), lines[line_no - 1]
        # plain numbers read exactly; past 2**49 the mantissa accumulates in floats (within an ulp or two)
        np.testing.assert_allclose(out["vals"][q, :nv], vals, rtol=1e-15, atol=0, err_msg=lines[line_no - 1])
        short = [abs(v) < 1e13 and v == round(v, 6) for v in vals]
        np.testing.assert_array_equal(out["vals"][q, :nv][short], np.array(vals)[short])
        assert list(out["tags"][q, :nv]) == tags, lines[line_no - 1]
        assert not out["vals"][q, nv:].any() and not out["tags"][q, nv:].any()
