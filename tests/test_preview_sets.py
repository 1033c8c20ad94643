"""`bioslicer preview --color set` (issue 19): marks coloured by parameter set, the sets named."""

import json

import numpy as np

from bioslicer import preview as pvw
from bioslicer.cli import main
from bioslicer.preview.scene3d import set_colors
from bioslicer.preview.sets import mark_sets
from bioslicer.toolpath import Kind, Toolpath

SIZE = (600, 450)
SETS = [{"id": 0, "power_mw": 12.0, "speed_um_s": 20000.0, "source": {"kind": "contour", "recipe_key": "power_mw.contour"}},
        {"id": 1, "power_mw": 20.0, "speed_um_s": 50000.0, "source": {"kind": "hatch", "recipe_key": "power_mw.hatch"}},
        {"id": 7, "power_mw": 30.0, "speed_um_s": 50000.0,
         "source": {"kind": "hatch", "recipe_key": "power_mw.hatch", "modulation": "depth", "level": 40}}]


def three_set_toolpath(with_ids: bool = True) -> Toolpath:
    """4 layers of 10 x-lines (hatch) and a contour line per layer; contour = set 0, hatch of
    layers 0-1 = set 1, of layers 2-3 = set 7; power and speed as in SETS."""
    p0, p1, kind, layer, power, speed, sid = [], [], [], [], [], [], []
    for k in range(4):
        z = 5.0 * k
        y = np.arange(10) * 10.0 + 5
        p0 += [[0, 0, z]] + [[0, v, z] for v in y]
        p1 += [[100, 0, z]] + [[100, v, z] for v in y]
        hs = SETS[1] if k < 2 else SETS[2]
        kind += [Kind.CONTOUR] + [Kind.HATCH] * 10
        layer += [k] * 11
        power += [SETS[0]["power_mw"]] + [hs["power_mw"]] * 10
        speed += [SETS[0]["speed_um_s"]] + [hs["speed_um_s"]] * 10
        sid += [0] + [hs["id"]] * 10
    tp = Toolpath.from_segments(np.array(p0, float), np.array(p1, float), np.array(kind), np.array(layer),
                                np.array(speed), np.array(power), np.arange(4) * 5.0)
    if with_ids:
        tp.mark_set[:] = sid
    return tp


def test_marks_of_a_set_share_a_colour_and_sets_differ():
    tp = three_set_toolpath()
    p = pvw.toolpath_plotter(tp, color="set", sets=SETS, off_screen=True, window_size=SIZE)
    info = p.preview_info
    cols = info["set_colors"]
    assert sorted(cols) == [0, 1, 7] and len(set(cols.values())) == 3
    poly = info["toolpath_polydata"]
    lut = p.actors["toolpath"].mapper.lookup_table
    drawn = [tuple(int(round(255 * c)) for c in lut.map_value(float(r))[:3]) for r in poly.cell_data["set_rank"]]
    for sid, rgb in zip(poly.cell_data["set"].tolist(), drawn):     # what the renderer gets per mark
        assert rgb == cols[sid]
    assert "20 mW" in info["set_labels"][1] and "power_mw.hatch" in info["set_labels"][1]
    assert "depth level 40" in info["set_labels"][7] and "50000 µm/s" in info["set_labels"][7]
    assert "3 sets, 12-30 mW" in info["caption"]
    img = pvw.plotter_image(p)
    for rgb in cols.values():                                        # each set visible in the picture
        assert int(np.all(np.abs(img.astype(int) - rgb) <= 8, axis=-1).sum()) > 150, rgb


def test_program_marks_are_matched_to_the_jobs_sets_by_power_and_speed():
    tp = three_set_toolpath(with_ids=False)            # as read back from a program: no set ids
    ids, table = mark_sets(tp, SETS)
    assert np.array_equal(ids, three_set_toolpath().mark_set)
    assert table[7]["source"]["modulation"] == "depth" and table[1]["marks"] == 20
    ids, table = mark_sets(tp)                         # no job: one set per (power, speed)
    assert len(table) == 3 and [table[i]["power_mw"] for i in sorted(table)] == [12.0, 20.0, 30.0]
    assert np.array_equal(ids == ids[0], three_set_toolpath().mark_set == 0)


def test_many_sets_take_a_colour_bar_with_distinct_colours():
    tp = three_set_toolpath()
    tp.mark_set[:] = np.arange(tp.n_marks) % 30           # 30 sets
    p = pvw.toolpath_plotter(tp, color="set", off_screen=True, window_size=SIZE)
    cols = p.preview_info["set_colors"]
    assert len(cols) == 30 and len(set(cols.values())) == 30
    assert len(p.scalar_bars) == 1
    assert set_colors([-1, 3])[-1] == pvw.UNSTITCHED_COLOR


def test_cli_color_set_png_and_bad_colour_is_one_line(tmp_path, capsys):
    tp = three_set_toolpath()
    tp.save(tmp_path / "tp.npz")
    out = tmp_path / "sets.png"
    assert main(["preview", str(tmp_path / "tp.npz"), "--color", "set", "--screenshot", str(out),
                 "--size", "600x450", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert out.is_file() and "coloured by parameter set: 3 sets" in rep["caption"]
    assert main(["preview", str(tmp_path / "tp.npz"), "--color", "sets"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "'set'" in err[0]


def test_sets_a_program_cannot_tell_apart_are_named_together():
    tp = three_set_toolpath(with_ids=False)
    tp.power_mw *= 1 + 3e-6                             # as a program rounds the power
    twin = dict(SETS[1], id=1 + 2**20, source=dict(SETS[1]["source"], array_cell={"cell": 1}))
    ids, table = mark_sets(tp, SETS + [twin])
    assert np.array_equal(ids, three_set_toolpath().mark_set)   # the lower id takes the shared marks
    assert table[1]["equal_sets"] == [1 + 2**20]
    from bioslicer.preview.sets import set_label

    assert set_label(1, table[1]).startswith("set 1 (+1 equal): 20 mW")
