"""Previews: PolyData built from the toolpath arrays, decimation, offscreen renders checked by pixels."""

import json
import struct
import zlib

import numpy as np
import pytest

from bioslicer import preview as pvw
from bioslicer.cli import main
from bioslicer.errors import BioslicerError
from bioslicer.toolpath import Blocks, Kind, Toolpath

SIDE = 100.0      # µm
N_HATCH = 12      # hatch lines per layer
N_LAYERS = 4
DZ = 5.0
SIZE = (600, 450)


def hatched_square(n_layers=N_LAYERS, n_hatch=N_HATCH, side=SIDE, dz=DZ, blocks=False) -> Toolpath:
    """Per layer: a 4-segment contour, then ``n_hatch`` serpentine hatch lines (x in even layers, y in odd)."""
    p0, p1, kind, layer, power = [], [], [], [], []
    ring = np.array([[0, 0], [side, 0], [side, side], [0, side], [0, 0]], float)
    t = (np.arange(n_hatch) + 0.5) * side / n_hatch
    for k in range(n_layers):
        z = k * dz
        p0.append(np.column_stack([ring[:-1], np.full(4, z)]))
        p1.append(np.column_stack([ring[1:], np.full(4, z)]))
        a = np.where(np.arange(n_hatch) % 2 == 0, 0.0, side)
        b = side - a
        if k % 2 == 0:
            p0.append(np.column_stack([a, t, np.full(n_hatch, z)]))
            p1.append(np.column_stack([b, t, np.full(n_hatch, z)]))
        else:
            p0.append(np.column_stack([t, a, np.full(n_hatch, z)]))
            p1.append(np.column_stack([t, b, np.full(n_hatch, z)]))
        kind += [Kind.CONTOUR] * 4 + [Kind.HATCH] * n_hatch
        layer += [k] * (4 + n_hatch)
        power += [10.0 + 5 * k] * (4 + n_hatch)
    tp = Toolpath.from_segments(np.vstack(p0), np.vstack(p1), np.array(kind), np.array(layer), 10000.0,
                                np.array(power), np.arange(n_layers) * dz)
    if blocks:   # two blocks side by side in x
        h = side / 2
        lo = np.array([[0, 0, 0], [h, 0, 0]], float)
        hi = lo + [h, side, n_layers * dz]
        tp.blocks = Blocks(lo + [h / 2, h / 2, 0], [[0, 0, 0], [1, 0, 0]], lo, hi, "square", 80.0)
        mid = (tp.x_um[tp.mark_start[:-1]] + tp.x_um[tp.mark_start[1:] - 1]) / 2
        tp.mark_block[:] = (mid >= h).astype(np.int32)
    tp.check()
    return tp


def color_pixels(img, rgb) -> int:
    return int(np.all(img == np.array(rgb, np.uint8), axis=-1).sum())


def render(plotter) -> np.ndarray:
    return pvw.plotter_image(plotter)


def decode_png(data: bytes) -> np.ndarray:
    """Minimal PNG reader for the files encode_png writes (8-bit RGB, filter 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", None, None
    while pos < len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        if tag == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert (depth, ctype) == (8, 2)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(h, w, 3)


@pytest.fixture(scope="module")
def tp():
    return hatched_square()


# ----------------------------------------------------------------------------- data, no rendering
def test_polydata_is_one_polyline_per_mark_with_cell_data(tp):
    poly, st = pvw.toolpath_polydata(tp)
    assert poly.n_cells == tp.n_marks == N_LAYERS * (4 + N_HATCH)
    assert poly.n_points == tp.n_points
    assert st.shown_segments == st.total_segments == tp.n_segments and not st.decimated
    assert np.bincount(poly.cell_data["kind"]).tolist() == [4 * N_LAYERS, N_HATCH * N_LAYERS]
    np.testing.assert_allclose(np.sort(np.unique(poly.point_data["power_mw"])), [10, 15, 20, 25])
    # a cell's points are the mark's points
    np.testing.assert_allclose(poly.get_cell(5).points, tp.mark_points(5), atol=1e-4)

    sub, st = pvw.toolpath_polydata(tp, layers=(1, 3))
    assert sorted(np.unique(sub.cell_data["layer"]).tolist()) == [1, 2]
    assert sub.n_cells == 2 * (4 + N_HATCH) and st.total_layers == 2
    assert np.unique(pvw.toolpath_polydata(tp, layers=-1)[0].cell_data["layer"]).tolist() == [N_LAYERS - 1]
    assert pvw.parse_layers("1:3") == slice(1, 3) and pvw.parse_layers("2") == 2
    assert pvw.parse_layers(":2") == slice(None, 2)


def test_decimation_keeps_top_layer_and_says_what_is_shown():
    n_layers, per = 100, 50
    layer = np.repeat(np.arange(n_layers), per).astype(np.int32)
    segs = np.ones(len(layer), np.int64)
    keep, st = pvw.decimate_marks(layer, segs, np.ones(n_layers, bool), max_segments=1000)
    # load 5 -> 1 in 4 layers (100 // 24), 1250 segments left -> 1 in 2 marks
    assert (st.layer_step, st.mark_step) == (4, 2)
    assert st.shown_segments == len(keep) == 625 <= 1000
    assert st.text() == "showing 1 in 4 layers, 1 in 2 marks, 625 of 5,000 segments"
    assert set(np.unique(layer[keep]).tolist()) == set(range(99, -1, -4))     # top layer 99 kept

    # contours (1 per layer) stay whole, the step applies to the rest
    protect = np.zeros(len(layer), bool)
    protect[::per] = True
    keep, st = pvw.decimate_marks(layer, segs, np.ones(n_layers, bool), 1000, protect=protect)
    assert st.contours_whole and protect[keep].sum() == 25
    assert st.shown_segments <= 1000

    # a pixel budget thins too; no budget problem -> nothing dropped
    keep, st = pvw.decimate_marks(layer, segs, np.ones(n_layers, bool), 10**9, mark_cost=np.full(len(layer), 100.0),
                                  max_cost=50_000)
    assert st.line_pixels <= 50_000 and st.decimated
    keep, st = pvw.decimate_marks(layer, segs, np.ones(n_layers, bool), 10**9)
    assert len(keep) == len(layer) and st.text() == "showing all 100 layers, 5,000 segments"


def test_mark_lengths_kernel(tp):
    np.testing.assert_allclose(pvw.mark_lengths_um(tp), tp.mark_lengths())


def test_bad_arguments_are_user_errors(tp):
    with pytest.raises(BioslicerError, match="select no layer"):
        pvw.toolpath_polydata(tp, layers=(3, 1))
    with pytest.raises(BioslicerError, match="layer 9 does not exist"):
        pvw.layer_plotter(tp, 9, off_screen=True)
    with pytest.raises(BioslicerError, match="unknown colouring"):
        pvw.toolpath_plotter(tp, color="rainbow", off_screen=True)
    with pytest.raises(BioslicerError, match="nothing to preview"):
        pvw.toolpath_plotter(off_screen=True)
    with pytest.raises(BioslicerError, match="A:B"):
        pvw.parse_layers("a:b")


def test_voxelize_box_and_channel_volumes():
    import trimesh

    box = trimesh.creation.box(extents=[100, 60, 40])
    occ, origin, vox = pvw.voxelize_mesh(box, max_cells=50)
    assert occ.shape == (20, 30, 50) and np.allclose(vox, 2.0) and np.allclose(origin, [-50, -30, -20])
    assert occ.all()
    # a block with a cylindrical channel along z (through both faces): volume within 1 %
    cyl = trimesh.creation.cylinder(radius=15, height=100, sections=64)
    occ, origin, vox = pvw.voxelize_mesh(box.difference(cyl), max_cells=100)
    expect = 100 * 60 * 40 - np.pi * 15 ** 2 * 40
    assert abs(occ.sum() * vox.prod() - expect) / expect < 0.01
    assert not occ[:, 30, 50].any() and occ[:, 2, 2].all()          # channel column empty, corner full
    surf, stride = pvw.solid_surface((occ, origin, vox))
    assert stride == 1 and surf.n_cells > 0
    b = np.asarray(surf.bounds)
    np.testing.assert_allclose(b, [-50, 50, -30, 30, -20, 20], atol=1.01)


# ----------------------------------------------------------------------------- 3-D renders
def test_render_png_file_shows_kind_colours_and_is_deterministic(tp, tmp_path):
    a = pvw.render_png(tmp_path / "a.png", toolpath=tp, window_size=SIZE, title="square")
    b = pvw.render_png(tmp_path / "b.png", toolpath=tp, window_size=SIZE, title="square")
    data = a.read_bytes()
    assert data == b.read_bytes()
    img = decode_png(data)
    assert img.shape == (SIZE[1], SIZE[0], 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50          # not blank
    assert color_pixels(img, pvw.KIND_COLORS[Kind.HATCH]) > 2000
    assert color_pixels(img, pvw.KIND_COLORS[Kind.CONTOUR]) > 300
    assert color_pixels(img, pvw.KIND_COLORS[Kind.LATTICE]) < 50     # only in the legend, if at all


def test_selecting_layers_changes_the_image(tp):
    low = render(pvw.toolpath_plotter(tp, layers=(0, 1), off_screen=True, window_size=SIZE))
    high = render(pvw.toolpath_plotter(tp, layers=(3, 4), off_screen=True, window_size=SIZE))
    blue = pvw.KIND_COLORS[Kind.HATCH]
    rows_low = np.nonzero(np.all(low == blue, axis=-1))[0]
    rows_high = np.nonzero(np.all(high == blue, axis=-1))[0]
    assert len(rows_low) > 500 and len(rows_high) > 500
    assert np.abs(low.astype(int) - high.astype(int)).sum(axis=-1).astype(bool).sum() > 1000
    # same camera for every selection: the top layer is drawn higher up in the image
    assert rows_high.mean() < rows_low.mean() - 3


def test_slider_callback_limits_layers(tp):
    p = pvw.toolpath_plotter(tp, off_screen=True, window_size=SIZE, slider=False)
    assert pvw.show_up_to_layer(p, 1) == 2 * (4 + N_HATCH)
    assert p.actors["toolpath"].mapper.GetInput().GetNumberOfCells() == 2 * (4 + N_HATCH)
    cut = render(p)
    full = render(pvw.toolpath_plotter(tp, off_screen=True, window_size=SIZE, slider=False))
    blue = pvw.KIND_COLORS[Kind.HATCH]
    assert color_pixels(full, blue) > color_pixels(cut, blue) > 0


def test_colour_by_power_block_and_layer(tp):
    img = render(pvw.toolpath_plotter(tp, color="power", off_screen=True, window_size=SIZE))
    assert color_pixels(img, pvw.KIND_COLORS[Kind.HATCH]) == 0
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    tpb = hatched_square(blocks=True)
    p = pvw.toolpath_plotter(tpb, color="block", off_screen=True, window_size=SIZE)
    assert "blocks" in p.actors
    img = render(p)
    c0, c1 = pvw.BLOCK_PALETTE[0], pvw.BLOCK_PALETTE[1]
    assert color_pixels(img, c0) > 200 and color_pixels(img, c1) > 200
    img = render(pvw.toolpath_plotter(tp, color="layer", off_screen=True, window_size=SIZE))
    assert color_pixels(img, pvw.KIND_COLORS[Kind.HATCH]) == 0


def test_mesh_and_solid_scene():
    import trimesh

    box = trimesh.creation.box(extents=[100, 60, 40])
    p = pvw.toolpath_plotter(mesh=box, voxels=pvw.voxelize_mesh(box, 40), off_screen=True, window_size=SIZE)
    assert {"mesh", "solid"} <= set(p.actors)
    img = render(p)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50


# ----------------------------------------------------------------------------- 2-D layer view
def test_layer_view_counts_lines_in_data_and_pixels(tp):
    ring = np.array([[0, 0], [SIDE, 0], [SIDE, SIDE], [0, SIDE]])
    p = pvw.layer_plotter(tp, 0, contours=[ring], off_screen=True, window_size=SIZE)
    marks = p.actors["marks"].mapper.GetInput()
    assert marks.GetNumberOfCells() == 4 + N_HATCH
    assert int((np.asarray(marks.cell_data["kind"]) == Kind.HATCH).sum()) == N_HATCH
    assert p.actors["jumps"].mapper.GetInput().GetNumberOfCells() == 4 + N_HATCH - 1
    assert p.actors["contours"].mapper.GetInput().GetNumberOfCells() == 1
    assert p.preview_info["mark_length_um"] == pytest.approx(4 * SIDE + N_HATCH * SIDE)
    img = render(p)
    # layer 0 hatches along x: a pixel column through the square crosses every hatch line once
    blue = np.all(img == pvw.KIND_COLORS[Kind.HATCH], axis=-1)
    cols = np.nonzero(blue.sum(axis=0) > N_HATCH)[0]          # columns through the square, not the legend
    col = blue[:, (cols.min() + cols.max()) // 2]
    runs = int(np.count_nonzero(np.diff(col.astype(np.int8)) == 1))
    assert runs == N_HATCH
    # layer 1 hatches along y: a pixel row crosses every line
    img1 = render(pvw.layer_plotter(tp, 1, off_screen=True, window_size=SIZE))
    blue1 = np.all(img1 == pvw.KIND_COLORS[Kind.HATCH], axis=-1)
    rows = np.nonzero(blue1.sum(axis=1) > N_HATCH)[0]
    row = blue1[(rows.min() + rows.max()) // 2]
    assert int(np.count_nonzero(np.diff(row.astype(np.int8)) == 1)) == N_HATCH


def test_decimated_layer_view_keeps_whole_layer_figures_and_real_jumps():
    n = 40
    one = hatched_square(n_layers=1, n_hatch=n)
    p = pvw.layer_plotter(one, 0, off_screen=True, window_size=SIZE, max_segments=20)
    info = p.preview_info
    st = info["stats"]
    assert st.decimated and st.contours_whole and st.shown_segments <= 20
    assert info["n_marks"] == 4 + n and info["n_jumps"] == 3 + n          # whole-layer figures
    assert info["mark_length_um"] == pytest.approx((4 + n) * SIDE)
    kinds = np.asarray(p.actors["marks"].mapper.GetInput().cell_data["kind"])
    h = int((kinds == Kind.HATCH).sum())
    assert (kinds == Kind.CONTOUR).sum() == 4 and 0 < h < n
    # the drawn jumps are real ones (to the next mark of the layer): serpentine jumps are one
    # hatch spacing long, not the distance to the next drawn mark
    jp = np.asarray(p.actors["jumps"].mapper.GetInput().points)[:, :2].reshape(-1, 2, 2)
    lengths = np.linalg.norm(jp[:, 1] - jp[:, 0], axis=1)
    assert np.isclose(lengths, SIDE / n, atol=1e-3).sum() in (h - 1, h)
    assert np.all(lengths < SIDE)
    p.close()


def test_layer_view_field_outline_from_printer_and_blocks(tmp_path):
    tpb = hatched_square(blocks=True)
    p = pvw.layer_plotter(tpb, 0, printer="lab-daq-galvo", off_screen=True, window_size=SIZE)
    field = p.actors["field"].mapper.GetInput()
    assert field.GetNumberOfCells() == 2          # one square field (250 µm) per block used
    np.testing.assert_allclose(np.asarray(field.bounds)[:4], [25 - 125, 75 + 125, 25 - 125, 25 + 125])
    img = render(p)
    assert color_pixels(img, pvw.FIELD_COLOR) > 500
    # without a printer the stored block field (80 µm) is used
    p = pvw.layer_plotter(tpb, 0, off_screen=True, window_size=SIZE)
    np.testing.assert_allclose(np.asarray(p.actors["field"].mapper.GetInput().bounds)[:4], [-15, 115, -15, 65])
    p.close()
    out = pvw.render_layer_png(tmp_path / "l.png", tpb, 2, printer="nanoscribe-gt2-63x", window_size=SIZE)
    assert decode_png(out.read_bytes()).shape == (SIZE[1], SIZE[0], 3)


# ----------------------------------------------------------------------------- CLI
BOX_UM = (120.0, 80.0, 12.0)
JOB_SET = {"slice_um": 2, "hatch_um": 2, "block_size_um": 70}     # 6 layers, 4 blocks


def box_mesh():
    import trimesh

    box = trimesh.creation.box(extents=BOX_UM)
    box.apply_translation([0, 0, BOX_UM[2] / 2])
    return box


def make_box_job(folder, printer="nanoscribe-gt2-25x", **kw):
    """A real job (sliced, written, validated) of a 120 x 80 x 12 µm box: 6 layers, 4 blocks."""
    from bioslicer.pipeline import slice_to_job

    folder.mkdir(parents=True, exist_ok=True)
    mesh = folder.parent / f"{folder.name}_box.stl"
    mesh.write_bytes(box_mesh().export(file_type="stl"))
    return slice_to_job(mesh, folder / "job", printer=printer, overrides=dict(JOB_SET), overwrite=True,
                        preview=False, **kw).path


@pytest.fixture(scope="module")
def box_job(tmp_path_factory):
    return make_box_job(tmp_path_factory.mktemp("boxjob"))


def test_cli_job_folder_screenshot_and_2d(box_job, tmp_path, capsys):
    job = box_job
    out = tmp_path / "p.png"
    assert main(["preview", str(job), "--screenshot", str(out), "--size", "400x300", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    prev = Toolpath.load(job / "preview_toolpath.npz")
    assert rep["image"] == str(out) and rep["kind"] == "job" and rep["stats"]["shown_marks"] == prev.n_marks
    img = decode_png(out.read_bytes())
    assert img.shape == (300, 400, 3) and color_pixels(img, pvw.MESH_COLOR) == 0   # mesh is translucent
    two = tmp_path / "l.png"
    assert main(["preview", str(job), "--layer", "1", "--2d", str(two), "--size", "400x300", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["view"] == "layer" and rep["layer"] == 1 and rep["stats"]["shown_marks"] == (prev.mark_layer == 1).sum()
    assert color_pixels(decode_png(two.read_bytes()), pvw.FIELD_COLOR) > 100   # the job's printer field


def test_cli_without_display_writes_stem_preview(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    hatched_square().save(tmp_path / "part.npz")
    assert main(["preview", "part.npz", "--layers", "0:2", "--color", "layer", "--size", "300x200"]) == 0
    text = capsys.readouterr().out
    assert "wrote part_preview.png" in text and "no display" in text and "all 2 layers" in text
    assert (tmp_path / "part_preview.png").stat().st_size > 1000


def test_cli_user_errors(box_job, tmp_path, capsys):
    job = box_job
    assert main(["preview", str(job / "mesh.stl"), "--layer", "1", "--2d", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no toolpath" in err[0]
    assert main(["preview", str(job), "--layers", "7:9", "--screenshot", str(tmp_path / "x.png")]) == 1
    assert "select no layer" in capsys.readouterr().err
    assert main(["preview", str(job), "--screenshot", str(tmp_path / "x.jpg")]) == 1
    assert "must end in .png" in capsys.readouterr().err
    assert main(["preview", str(tmp_path / "missing")]) == 1
    assert "not found" in capsys.readouterr().err
