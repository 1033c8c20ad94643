"""Dose arrays (issue 19): one job, one cell per combination, relative stage moves, the interface
found per cell, stroke-font labels, array.csv with per-cell estimates, parameter sets per cell."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from bioslicer.cli import cli
from bioslicer.dosearray import array_to_job, parse_vary, make_test_structure
from bioslicer.errors import BioslicerError
from bioslicer.printers import load_printer
from bioslicer.programs import read_program
from bioslicer.recipe import Recipe

P25 = "nanoscribe-gt2-25x"
FAST = {"slice_um": 2.0, "hatch_um": 1.0}


def test_parse_vary_ranges_and_lists():
    assert parse_vary("power_mw.hatch=10:40:5") == ("power_mw.hatch", [10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0])
    assert parse_vary("speed_um_s.hatch=20000,50000") == ("speed_um_s.hatch", [20000, 50000])
    assert parse_vary("depth_mode=none,linear")[1] == ["none", "linear"]
    with pytest.raises(BioslicerError, match="start:stop:step"):
        parse_vary("hatch_um=a:b:c")


def test_array_job_cells_program_and_csv(tmp_path):
    pr = load_printer(P25)
    base = Recipe.from_printer(pr).updated(**FAST)
    varies = [parse_vary("power_mw.hatch=10:20:5"), parse_vary("speed_um_s.hatch=20000,50000")]
    res = array_to_job(make_test_structure("cube"), tmp_path / "dose", pr, base, varies, pitch_um=100.0)
    m = res.manifest
    a = m["array"]
    assert (a["rows"], a["columns"]) == (2, 3) and len(a["cells"]) == 6
    with open(res.path / "array.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["row"], r["column"]) for r in rows] == [("1", "1"), ("1", "2"), ("1", "3"), ("2", "1"), ("2", "2"),
                                                       ("2", "3")]
    assert [float(r["power_mw.hatch"]) for r in rows] == [10, 15, 20, 10, 15, 20]
    assert [float(r["offset_x_um"]) for r in rows[:3]] == [0.0, 100.0, 200.0]
    assert all(float(r["estimate_s"]) > 0 for r in rows)
    assert sum(float(r["estimate_s"]) for r in rows) == pytest.approx(m["estimate"]["total_s"], abs=0.01)
    # the program read back: every cell's hatch power is where the cell is, and the interface is
    # found at every cell (and label)
    main = res.path / m["program"]["main"]
    text = main.read_text()
    assert text.count("FindInterfaceAt") == 12 and "StageGoto" not in text and "MoveStageX" in text
    mv = read_program(main, P25)
    on = mv.laser_on & ~mv.jump
    for cell in a["cells"]:
        ox, oy = cell["offset_um"]
        here = on & (np.abs(mv.x - ox) <= 15.5) & (np.abs(mv.y - oy) <= 15.5)
        powers = set(np.round(mv.power_mw[here], 3))
        assert cell["values"]["power_mw.hatch"] in powers, (cell, powers)
        speeds = set(np.round(mv.speed_um_s[here]))
        assert cell["values"]["speed_um_s.hatch"] in speeds
        # the label: marks below the cell, in the stroke font, at the first two layers
        lab = on & (np.abs(mv.x - ox) < 20.0) & (mv.y < oy - 17.0) & (mv.y > oy - 30.0)
        assert lab.sum() > 0 and set(np.round(mv.z[lab], 3)) == {1.0, 3.0}
    # parameter sets carry their cell
    cells_of_sets = {d["source"]["array_cell"]["cell"] for d in m["parameter_sets"]}
    assert cells_of_sets == set(range(6))
    hatch = [d for d in m["parameter_sets"] if d["source"]["kind"] == "hatch"]
    assert sorted((d["power_mw"], d["speed_um_s"]) for d in hatch) == sorted(
        (p, v) for p in (10.0, 15.0, 20.0) for v in (20000.0, 50000.0))
    assert (res.path / "preview.png").stat().st_size > 1000


@pytest.mark.parametrize("args,msg", [
    (["--vary", "power_mw.hatch=10:90:40"], r"power_mw.hatch=90.0: .*above the maximum 50 mW"),
    (["--vary", "hatch_width=1,2"], r"unknown key 'hatch_width'"),
    (["--vary", "speed_um_s.hatch=50,100"], r"speed_um_s.hatch=50: .*outside the printer's range"),
    (["--vary", "power_mw.hatch=10,20", "--pitch-um", "20"], r"would overlap.*--pitch-um"),
    (["--vary", "power_mw.hatch=1:45:0.05", "--pitch-um", "150"], r"stage travel"),
])
def test_bad_arrays_are_refused_in_one_line_and_write_nothing(tmp_path, args, msg):
    out = tmp_path / "bad"
    r = CliRunner().invoke(cli, ["array", "--test", "cube", "-o", str(out), *args])
    assert isinstance(r.exception, BioslicerError), r.output
    assert len(str(r.exception).splitlines()) == 1
    import re

    assert re.search(msg, str(r.exception)), str(r.exception)
    assert not out.exists()


def test_cli_array_and_test_structures(tmp_path):
    for name in ("woodpile", "resolution-bridges"):
        s = make_test_structure(name)
        assert np.all(s.size_um <= 30.0 + 1e-6) and s.volume_um3() > 0
    r = CliRunner().invoke(cli, ["array", "--test", "resolution-bridges", "--vary", "power_mw.hatch=10,20",
                                 "--set", "slice_um=1", "--set", "hatch_um=0.5", "-o", str(tmp_path / "j"),
                                 "--no-preview", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["array"]["columns"] == 2 and out["array"]["rows"] == 1


def _program_sha(res) -> dict:
    import hashlib

    return {f: hashlib.sha256((res.path / f).read_bytes()).hexdigest() for f in res.manifest["program"]["files"]}


def test_small_cells_run_their_kernels_on_one_thread_with_the_same_bytes(tmp_path, monkeypatch):
    """An array of small cells runs every Numba kernel on one thread (a parallel launch costs more
    than such a block's work); the program is the same as with the kernels in parallel."""
    import numba

    from bioslicer import blockrun, plate

    pr = load_printer(P25)
    base = Recipe.from_printer(pr).updated(**FAST)
    varies = [parse_vary("power_mw.hatch=10,20"), parse_vary("speed_um_s.hatch=20000,50000")]
    seen = []
    run_block = blockrun.run_block

    def counting(*a, **k):
        seen.append(numba.get_num_threads())
        return run_block(*a, **k)

    monkeypatch.setattr(blockrun, "run_block", counting)
    n0 = numba.get_num_threads()
    serial = array_to_job(make_test_structure("cube"), tmp_path / "serial", pr, base, varies, pitch_um=100.0,
                          preview=False)
    assert seen and set(seen) == {1} and numba.get_num_threads() == n0
    split = serial.timings_s["block_stages_s"]
    assert set(split) == {"plan_s", "stitch_s", "order_s", "write_s", "estimate_s"}
    assert all(k in serial.timings_s for k in ("main_s", "validate_s", "manifest_s", "total_s"))
    seen.clear()
    monkeypatch.setattr(plate, "SERIAL_BLOCK_SEGMENTS", 0)
    parallel = array_to_job(make_test_structure("cube"), tmp_path / "parallel", pr, base, varies, pitch_um=100.0,
                            preview=False)
    assert set(seen) == {n0}
    assert _program_sha(serial) == _program_sha(parallel)
    assert len(_program_sha(serial)) == 1 + 8      # main file, a block per cell and per label


def test_array_preview_draws_each_distinct_mark_once_with_the_same_image(tmp_path, monkeypatch):
    """The top view skips marks drawn again later (same kind, same points): same PNG bytes as
    drawing every mark, on layers that repeat and marks of both colours crossing each other."""
    from bioslicer import dosearray
    from bioslicer.dosearray import Cell, array_preview_png
    from bioslicer.toolpath import Kind, Toolpath

    rng = np.random.default_rng(7)
    # 30 marks of 2 to 4 points, both colours, crossing each other; three layers repeat them, the
    # middle one with every colour swapped (so a mark drawn again later changes colour)
    n = rng.integers(2, 5, 30)
    xy = rng.uniform(0, 60, (int(n.sum()), 2))
    kind = np.where(np.arange(30) % 3 == 0, int(Kind.CONTOUR), int(Kind.HATCH))
    swapped = np.where(kind == int(Kind.CONTOUR), int(Kind.HATCH), int(Kind.CONTOUR))
    xy3 = np.concatenate([xy, xy, xy])
    ms = np.concatenate([[0], np.cumsum(np.tile(n, 3))]).astype(np.int64)
    tp = Toolpath(x_um=xy3[:, 0].copy(), y_um=xy3[:, 1].copy(), z_um=np.repeat([0.0, 1.0, 2.0], len(xy)),
                  power_mw=np.ones(len(xy3)), mark_start=ms, mark_kind=np.concatenate([kind, swapped, kind]),
                  mark_layer=np.repeat(np.arange(3), 30), mark_block=None, mark_speed_um_s=np.ones(90),
                  layer_z_um=np.array([0.0, 1.0, 2.0]))
    cells = [Cell(0, 0, 0, (0.0, 0.0), {"k": 1}, None, "1-1"), Cell(1, 0, 1, (50.0, 0.0), {"k": 2}, None, "1-2")]
    array_preview_png(tmp_path / "fast.png", tp, cells, ["k"], "t")
    keep = dosearray._last_distinct_marks
    n_kept = []
    monkeypatch.setattr(dosearray, "_last_distinct_marks",
                        lambda X, Y, ms, mk: n_kept.append(len(keep(X, Y, ms, mk))) or np.arange(len(ms) - 1))
    array_preview_png(tmp_path / "all.png", tp, cells, ["k"], "t")
    assert n_kept and n_kept[0] < tp.n_marks
    assert (tmp_path / "fast.png").read_bytes() == (tmp_path / "all.png").read_bytes()
