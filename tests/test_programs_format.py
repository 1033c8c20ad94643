"""The Numba fixed-point formatter and line tokenizer used by every text dialect."""

import numpy as np
import pytest

from bioslicer.programs import _format as F


def _py_fixed(v: int, d: int) -> str:
    s = "-" if v < 0 else ""
    v = abs(v)
    return f"{s}{v}" if d == 0 else f"{s}{v // 10 ** d}.{v % 10 ** d:0{d}d}"


@pytest.mark.parametrize("d", range(0, 10))
def test_render_matches_python_formatting(d):
    rng = np.random.default_rng(d)
    v = np.concatenate([rng.integers(-10 ** 12, 10 ** 12, 300), [0, 1, -1, 9, 10, 99, 100, -100, 10 ** d, -(10 ** d) + 1]])
    ts = F.TemplateSet({"p": "P {a} Q{b}"}, {"a": d, "b": d})
    vals = np.zeros((len(v), F.MAX_SLOTS), np.int64)
    vals[:, 0] = v
    vals[:, 1] = v[::-1]
    text = ts.render(np.zeros(len(v), np.int64), vals).decode()
    want = "".join(f"P {_py_fixed(int(a), d)} Q{_py_fixed(int(b), d)}\n" for a, b in zip(v, v[::-1]))
    assert text == want


def test_quantize_and_fmt_agree_and_have_no_negative_zero():
    ts = F.TemplateSet({"pt": "{x} {y} {z}"}, {"x": 3, "y": 3, "z": 3})
    xyz = np.array([[-0.0001, 1.0005, -2.3456], [12.34549, -0.0, 1e5]])
    q = np.zeros((2, F.MAX_SLOTS), np.int64)
    q[:, :3] = F.quantize(xyz, 3)
    text = ts.render(np.zeros(2, np.int64), q).decode()
    assert text == "0.000 1.000 -2.346\n12.345 0.000 100000.000\n"  # rint: 1.0005 -> 1.000 (half to even)
    assert F.fmt(-2.3456, 3) == "-2.346" and F.fmt(-0.0001, 3) == "0.000"


def _tok(text: str, words, comment=";"):
    kw = F.Keywords(words)
    buf = np.frombuffer(text.encode(), np.uint8)
    n = text.count("\n") + 1
    out = dict(codes=np.empty(n, np.int64), lines=np.empty(n, np.int64), nvals=np.empty(n, np.int64),
               vals=np.zeros((n, F.MAX_SLOTS)), tags=np.zeros((n, F.MAX_SLOTS), np.uint8),
               starts=np.empty(n, np.int64), ends=np.empty(n, np.int64))
    r = F.tokenize(buf, np.frombuffer(comment.encode(), np.uint8), kw.blob, kw.off, kw.order, kw.raw, 1, *out.values())
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
    assert list(r["codes"]) == [kw.code["G1"], kw.code["G10"], F.CODE_NUMBERS, F.CODE_UNKNOWN, kw.code["$AO[0].X"],
                                F.CODE_BAD]
    assert list(r["nvals"][:3]) == [4, 1, 3]
    np.testing.assert_array_equal(r["vals"][0, :4], [1.5, -2.0, 0.25, 600.0])
    assert bytes(r["tags"][0, :4]) == b"XYZF"
    np.testing.assert_array_equal(r["vals"][2, :3], [-1.0, 2.5, 300.0])
    assert r["nvals"][4] == 1 and r["vals"][4, 0] == 4.25 and r["tags"][4, 0] == 0


def test_chunk_reader_keeps_line_numbers_across_chunks(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"".join(b"%d 0 0\n" % i for i in range(1, 5001)))
    lines, first = [], []
    for rec, _ in F.ChunkReader(p, F.Keywords([]), "%", chunk_bytes=1000):
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
    for rec, _ in F.ChunkReader(p, kw, "%", chunk_bytes=5000, pieces=7):
        keep = rec["codes"] != F.CODE_SKIP
        for k in got:
            got[k].append(rec[k][keep])
    for k in ("codes", "lines", "nvals", "vals", "tags"):
        np.testing.assert_array_equal(np.concatenate(got[k]), want[k])
    # beyond 2**53 the digits accumulate as floats (m * 10 + d), as the reader always did
    m = 0.0
    for ch in "12345678901234567":
        m = m * 10.0 + int(ch)
    assert want["vals"][3, 0] == m and want["vals"][3, 1] == 0.1 and want["lines"][3] == 7
