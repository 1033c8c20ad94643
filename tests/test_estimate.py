import json

import numpy as np
import pytest

from bioslicer.cli import main
from bioslicer.errors import BioslicerError
from bioslicer.estimate import estimate_print_time
from bioslicer.printers import parse_printer
from bioslicer.toolpath import Blocks, Kind, Toolpath

PRINTER = parse_printer({
    "name": "hand", "dialect": "gwl",
    "field": {"shape": "square", "size_um": 500.0}, "z": {"range_um": 100.0},
    "stage": {"x_um": [-1000.0, 1000.0], "y_um": [-1000.0, 1000.0], "z_um": [-100.0, 100.0],
              "speed_um_s": 100.0, "settle_s": 0.5},
    "laser": {"max_power_mw": 50.0, "power_unit": "mW"},
    "scan": {"max_speed_um_s": 1000.0, "jump_speed_um_s": 1000.0, "laser_on_delay_s": 0.001,
             "laser_off_delay_s": 0.002, "jump_delay_s": 0.01, "layer_settle_s": 0.1},
})


def _two_blocks_three_layers():
    p0 = [[0, 0, 0], [10, 5, 0], [0, 5, 1], [200, 0, 1], [230, 0, 2]]
    p1 = [[10, 0, 0], [0, 5, 0], [0, 25, 1], [230, 0, 1], [230, 40, 2]]
    tp = Toolpath.from_segments(p0, p1, Kind.HATCH, [0, 0, 1, 1, 2], [10, 10, 10, 10, 20], 5.0, [0.0, 1.0, 2.0],
                                block=[0, 0, 0, 1, 1])
    tp.blocks = Blocks([[0, 0, 0], [200, 0, 0]], [[0, 0, 0], [1, 0, 0]], [[-100, -100, 0], [100, -100, 0]],
                       [[100, 100, 100], [300, 100, 100]], "square", 500.0)
    return tp


def test_estimate_matches_hand_computation():
    est = estimate_print_time(_two_blocks_three_layers(), PRINTER)
    b = est.breakdown
    # marks: 10/10 + 10/10 + 20/10 + 30/10 + 40/20 s
    assert b["mark_s"] == pytest.approx(9.0)
    assert b["laser_delay_s"] == pytest.approx(5 * 0.003)
    # jumps: 5 µm in layer 0; 0 µm xy at each layer change; 25 µm galvo jump after the stage move
    assert b["jump_s"] == pytest.approx((0.005 + 0.01) + 0.01 + (0.025 + 0.01) + 0.01)
    # two layer changes of 1 µm
    assert b["layer_change_s"] == pytest.approx(2 * (0.001 + 0.1))
    # one stage move of 200 µm
    assert b["stage_move_s"] == pytest.approx(200 / 100 + 0.5)
    assert est.total_s == pytest.approx(11.787)
    np.testing.assert_allclose(est.per_block_s, [4.135, 7.652])
    c = b["counts"]
    assert (c["marks"], c["jumps"], c["layer_changes"], c["block_changes"], c["blocks"]) == (5, 4, 2, 1, 2)
    assert c["mark_length_um"] == pytest.approx(110.0) and c["stage_move_um"] == pytest.approx(200.0)
    d = json.loads(json.dumps(est.to_dict()))
    assert d["total_s"] == pytest.approx(11.787) and len(d["per_block_s"]) == 2


def test_unstitched_counts_as_one_block_without_stage_moves():
    tp = _two_blocks_three_layers()
    tp.blocks = None
    tp.mark_block = np.full(5, -1, np.int32)
    est = estimate_print_time(tp, PRINTER)
    assert len(est.per_block_s) == 1 and est.per_block_s[0] == pytest.approx(est.total_s)
    assert est.breakdown["stage_move_s"] == 0.0
    # the 3 -> 4 transition is now an in-layer jump of |(200, -25, 0)|
    assert est.breakdown["jump_s"] == pytest.approx(0.015 + 0.01 + (np.hypot(200, 25) / 1000 + 0.01) + 0.01)


def test_bad_speed_is_user_error():
    tp = _two_blocks_three_layers()
    tp.mark_speed_um_s = np.array([10.0, 10.0, 0.0, 10.0, 20.0])
    with pytest.raises(BioslicerError, match="speed"):
        estimate_print_time(tp, PRINTER)


def test_cli_estimate_stitches_and_reports(tmp_path, capsys):
    ys = np.arange(0.0, 400.0, 2.5)   # no line inside the 2 µm strip at the y wall (198.75)
    p0 = np.column_stack([np.zeros_like(ys), ys, np.zeros_like(ys)])
    tp = Toolpath.from_segments(p0, p0 + [600.0, 0, 0], Kind.HATCH, 0, 5000.0, 20.0, [0.0])
    path = tp.save(tmp_path / "t.npz")
    assert main(["estimate", str(path), "--printer", "lab-daq-galvo", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["stitched_here"] is True and d["printer"] == "lab-daq-galvo"
    assert len(d["per_block_s"]) == d["breakdown"]["counts"]["blocks"] == 6
    # 160 lines of 600 µm plus 2 µm overlap at each of the 2 x walls they cross, at 5000 µm/s
    assert d["breakdown"]["mark_s"] == pytest.approx(160 * 604.0 / 5000.0)
    assert sum(d["per_block_s"]) == pytest.approx(d["total_s"])
    assert main(["estimate", str(path), "-p", "lab-daq-galvo"]) == 0
    text = capsys.readouterr().out
    assert "stage moves" in text and "total" in text
    assert main(["estimate", str(tmp_path / "missing.npz")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
