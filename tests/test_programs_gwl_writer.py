"""The GWL block writer's fast paths give the bytes of the plain template renderer."""

import numpy as np
import pytest

from bioslicer.printers import load_printer
from bioslicer.programs import DIALECTS, gwl
from bioslicer.programs import _format as F

from test_programs_roundtrip import two_block_toolpath


def _awkward_toolpath():
    """Coordinates that exercise every digit path: negatives, values rounding to (minus) zero,
    decimal ties, integer parts of 1 to 5 digits; runs of equal and of varying power."""
    tp = two_block_toolpath(speed=1000.0)
    tp.power_mw[:40] = 10.0
    n = tp.n_points
    special = np.array([-0.0004, 0.0004, -0.0005, 0.0005, -0.0006, 2.0005, -2.0005, 999.9995, -999.9996,
                        1000.0, -1234.5675, 98765.4321, 0.1235, -7.0])
    k = np.arange(n)
    tp.x_um[k % 3 == 0] *= 37.125                          # up to about +-2000 µm
    tp.y_um[: len(special)] = special
    tp.z_um[5: 5 + len(special)] += special[::-1] * 1e-3   # z a little off the layer
    return tp


def _write(tmp_path, name, line_ending):
    pr = load_printer("nanoscribe-gt2-25x")
    pr.program["line_ending"] = line_ending
    d = DIALECTS["gwl"]
    out = tmp_path / name
    out.mkdir()
    files = d.write(_awkward_toolpath(), pr, d.spec, out, "p", None, lambda *a: None)
    return [f.read_bytes() for f in files]


@pytest.mark.parametrize("line_ending", ["lf", "crlf"])
def test_plain_point_lines_and_chunk_fallback_match_the_template_renderer(tmp_path, monkeypatch, line_ending):
    seen = []
    init = gwl._Lines.__init__

    def spy(self, printer, spec):
        init(self, printer, spec)
        seen.append(self.plain)

    monkeypatch.setattr(gwl._Lines, "__init__", spy)
    monkeypatch.setattr(gwl, "CHUNK_POINTS", 7)     # many chunks and batches
    monkeypatch.setattr(gwl, "BATCH_CHUNKS", 3)
    fast = _write(tmp_path, "fast", line_ending)
    assert seen and all(seen)                        # the plain path wrote it

    def template_only(self, printer, spec):
        init(self, printer, spec)
        self.plain = False

    monkeypatch.setattr(gwl._Lines, "__init__", template_only)
    slow = _write(tmp_path, "slow", line_ending)
    assert fast == slow

    # typical chunk sizes far too small: every batch is rendered again with the upper bound
    monkeypatch.setattr(gwl._Lines, "__init__", init)
    bytes_ = gwl._Lines.chunk_bytes
    monkeypatch.setattr(gwl._Lines, "chunk_bytes",
                        lambda self, pts, marks, ppw, safe: bytes_(self, pts, marks, ppw, safe) if safe
                        else np.full(len(pts), self.room, np.int64))
    assert _write(tmp_path, "fallback", line_ending) == fast
    text = b"".join(fast)
    assert b"-1234.568" in text or b"-1234.567" in text
    assert (b"\r\n" in text) == (line_ending == "crlf")
    assert b"-0.000" not in text


def test_put_milli_writes_what_put_fixed_writes():
    from numba import njit

    @njit
    def both(v, out, int3, frac3, pow10, digits2):
        n = v.shape[0]
        pos = 0
        for i in range(n):
            pos = F.put_milli(v[i], out, pos, int3, frac3, digits2)
            out[pos] = 10
            pos += 1
        mid = pos
        for i in range(n):
            pos = F.put_fixed(v[i], 3, out, pos, pow10, digits2)
            out[pos] = 10
            pos += 1
        return mid, pos

    rng = np.random.default_rng(3)
    v = np.concatenate([rng.integers(-10 ** 7, 10 ** 7, 2000), rng.integers(-10 ** 15, 10 ** 15, 200),
                        [0, 1, -1, 999, -999, 1000, -1000, 999999, 1000000, -1000001, 2 ** 62]]).astype(np.int64)
    out = np.zeros(len(v) * 2 * 24, np.uint8)
    mid, end = both(v, out, F._INT3, F._FRAC3, F._POW10, F._DIGITS2)
    assert out[:mid].tobytes() == out[mid:end].tobytes()
    want = "".join(f"{'-' if x < 0 else ''}{abs(x) // 1000}.{abs(x) % 1000:03d}\n" for x in v.tolist())
    assert out[:mid].tobytes().decode() == want


@pytest.mark.parametrize("field,what", [("x_um", "x"), ("y_um", "y"), ("z_um", "z"), ("power_mw", "power"),
                                        ("mark_speed_um_s", "speed")])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_block_writer_refuses_non_finite_values_and_leaves_nothing(tmp_path, field, what, value):
    from bioslicer.errors import BioslicerError
    from bioslicer.programs import ProgramWriter

    tp = two_block_toolpath(speed=1000.0)
    arr = getattr(tp, field)
    arr[len(arr) - 2] = value            # late in the last block: found while rendering
    w = ProgramWriter(load_printer("nanoscribe-gt2-25x"), tp.blocks, tmp_path, name="p")
    b = int(tp.mark_block[-1])
    with pytest.raises(BioslicerError, match=f"NaN or infinite {what};"):
        w.write_block(b, tp.select_marks(tp.mark_block == b))
    assert not [f for f in tmp_path.rglob("*") if f.is_file() and f.suffix in (".gwl", ".tmp")]
