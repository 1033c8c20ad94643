import numpy as np
import pytest

from bioslicer.toolpath import Blocks, Kind, Toolpath


def _tp():
    p0 = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    p1 = np.array([[3, 0, 0], [4, 1, 0], [5, 0, 1.0]])
    return Toolpath.from_segments(p0, p1, Kind.HATCH, [0, 0, 1], 1000.0, [1.0, 2.0, 3.0], [0.0, 1.0])


def test_from_segments_sizes_and_lengths():
    tp = _tp()
    tp.check()
    assert (tp.n_marks, tp.n_points, tp.n_segments, tp.n_layers) == (3, 6, 3, 2)
    np.testing.assert_allclose(tp.mark_lengths(), [3, 4, 5])
    np.testing.assert_allclose(tp.jump_lengths(), [np.sqrt(9 + 1), np.sqrt(16 + 1 + 1)])
    np.testing.assert_allclose(tp.power_mw, [1, 1, 2, 2, 3, 3])


def test_select_iter_concat():
    tp = _tp()
    sub = tp.select_marks(np.array([2, 0]))
    np.testing.assert_allclose(sub.mark_lengths(), [5, 3])
    layers = [(k, t.n_marks) for k, t in tp.iter_layers()]
    assert layers == [(0, 2), (1, 1)]
    both = Toolpath.concat([tp, sub])
    both.check()
    assert both.n_marks == 5
    np.testing.assert_allclose(both.mark_lengths(), [3, 4, 5, 5, 3])


def test_save_load_round_trip_with_blocks(tmp_path):
    tp = _tp()
    tp.blocks = Blocks.single([0, 0, 0], [5, 1, 1], "circle", 400.0)
    tp.mark_block[:] = 0
    tp.meta["strategy"] = "solid"
    path = tp.save(tmp_path / "t.npz")
    back = Toolpath.load(path)
    for name in ("x_um", "y_um", "z_um", "power_mw", "mark_start", "mark_kind", "mark_layer", "mark_block",
                 "mark_speed_um_s", "layer_z_um"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tp, name))
    assert back.meta == {"strategy": "solid"}
    assert back.blocks.field_shape == "circle" and back.blocks.field_size_um == 400.0
    np.testing.assert_allclose(back.local_xyz()[0], [0 - 2.5, 0 - 0.5, 0])
    # byte-identical saves
    assert (tmp_path / "t.npz").read_bytes() == tp.save(tmp_path / "u.npz").read_bytes()


def test_check_catches_bad_marks():
    tp = _tp()
    tp.mark_start[1] = 1
    with pytest.raises(ValueError):
        tp.check()
