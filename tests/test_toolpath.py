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


# ----------------------------------------------------------------------------- per-mark field registry
from bioslicer.toolpath import MARK_FIELDS, POINT_FIELDS  # noqa: E402


def _distinct_marks():
    """6 marks, every per-mark field of the registry with a value unique to its mark."""
    p0 = np.array([[0, 0, 0], [0, 1, 0], [0, 2, 0], [0, 0, 1.0], [0, 1, 1.0], [0, 2, 1.0]])
    tp = Toolpath.from_segments(p0, p0 + [10, 0, 0], Kind.HATCH, [0, 0, 0, 1, 1, 1], 1000.0, 5.0, [0.0, 1.0])
    for name, (dtype, _) in MARK_FIELDS.items():
        if name not in ("mark_layer", "mark_block"):
            setattr(tp, name, (np.arange(tp.n_marks) + 1).astype(dtype))
    return tp


def test_take_marks_moves_every_registered_field():
    tp = _distinct_marks()
    idx = np.array([4, 0, 0, 5])
    got = tp.take_marks(idx)
    assert set(got) == set(MARK_FIELDS)
    for name, (dtype, _) in MARK_FIELDS.items():
        assert got[name].dtype == dtype
        np.testing.assert_array_equal(got[name], getattr(tp, name)[idx])
    # selection, joining and views all go through the registry
    sub = tp.select_marks(idx)
    both = Toolpath.concat([tp, sub])
    view = both.mark_range(6, 10)
    for name in MARK_FIELDS:
        np.testing.assert_array_equal(getattr(sub, name), getattr(tp, name)[idx])
        np.testing.assert_array_equal(getattr(both, name), np.r_[getattr(tp, name), getattr(tp, name)[idx]])
        np.testing.assert_array_equal(getattr(view, name), getattr(sub, name))
    for name in POINT_FIELDS:
        np.testing.assert_array_equal(getattr(view, name), getattr(sub, name))


def test_toolpath_is_built_by_keyword_with_registry_defaults():
    z = np.zeros(2)
    with pytest.raises(TypeError):
        Toolpath(z, z, z, z, [0, 2], [1], [0], [-1], [1.0], [0.0])   # noqa: positional on purpose
    tp = Toolpath(x_um=[0.0, 1.0], y_um=z, z_um=z, power_mw=z, mark_start=[0, 2], mark_kind=[1], mark_layer=[0],
                  layer_z_um=[0.0])
    tp.check()
    for name, (dtype, default) in MARK_FIELDS.items():
        if default is not None:
            np.testing.assert_array_equal(getattr(tp, name), np.full(1, default, dtype))
    with pytest.raises(TypeError, match="mark_kind"):
        Toolpath(x_um=z, y_um=z, z_um=z, power_mw=z, mark_start=[0, 2], mark_kind=None, mark_layer=[0],
                 layer_z_um=[0.0])


def test_stitch_and_order_carry_every_field_of_the_source_mark():
    from bioslicer.ordering import order_marks
    from bioslicer.printers import load_printer
    from bioslicer.stitching import stitch

    ys = np.arange(0.0, 400.0, 7.0)
    p0 = np.column_stack([np.zeros_like(ys), ys, np.zeros_like(ys)])
    tp = Toolpath.from_segments(p0, p0 + [600.0, 0, 0], Kind.HATCH, 0, 1000.0, 5.0, [0.0])
    tp.mark_speed_um_s = 1000.0 + np.arange(tp.n_marks)          # identifies the source mark
    tp.mark_kind = (np.arange(tp.n_marks) % 3).astype(np.uint8)
    out, _ = order_marks(stitch(tp, load_printer("lab-daq-galvo")))
    assert out.n_marks > 2 * tp.n_marks                             # lines cut at the block walls
    src = (out.mark_speed_um_s - 1000.0).astype(np.int64)
    for name in MARK_FIELDS:
        if name != "mark_block":
            np.testing.assert_array_equal(getattr(out, name), getattr(tp, name)[src])
