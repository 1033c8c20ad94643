"""Previews of what the printer gets: layers read from the program through the layer index,
design vs printed, the print as a film, bad input (issue 24)."""

import json
import re
import shutil

import numpy as np
import pytest

from bioslicer.cli import main
from bioslicer.jobs import printer_from_manifest, read_manifest
from bioslicer.preview import views
from bioslicer.preview.png import png_text
from bioslicer.preview.program import (INDEX_NAME, ProgramIndex, build_program_index, move_arrays, program_index,
                                       read_program_layers)
from bioslicer.programs import read_program
from bioslicer.programs.dialects import program_origin_um
from bioslicer.toolpath import Toolpath

from test_preview import make_box_job

SIZE = ["--size", "320x240"]


@pytest.fixture(scope="module")
def gwl_job(tmp_path_factory):
    return make_box_job(tmp_path_factory.mktemp("gwljob"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _job_printer(job):
    m = read_manifest(job)
    return m, printer_from_manifest(m)


def reader_layer_figures(main_path, printer, z_machine_um):
    """Marks (runs of laser-on moves) and their written length at one machine z, from a full parse."""
    mv = read_program(main_path, printer)
    on = mv.laser_on.astype(bool)
    start = on & ~np.concatenate([[False], on[:-1]])
    run = np.cumsum(start) - 1
    lev = np.where(on, mv.z[np.flatnonzero(start)[np.maximum(run, 0)]], np.nan)
    at = on & np.isclose(lev, z_machine_um, atol=1e-3)
    seg = np.flatnonzero(at)
    length = np.linalg.norm(np.column_stack([mv.x[seg] - mv.x[seg - 1], mv.y[seg] - mv.y[seg - 1],
                                             mv.z[seg] - mv.z[seg - 1]]), axis=1).sum()
    return int((start & at).sum()), float(length)


def caption_figures(png_path):
    text = png_text(png_path.read_bytes())["Description"]
    m = re.search(r"([\d,]+) marks, ([\d,.]+) µm written", text)
    return int(m.group(1).replace(",", "")), float(m.group(2).replace(",", "")), text


# ----------------------------------------------------------------------------- index
def test_job_carries_its_index_and_it_matches_a_full_parse(gwl_job):
    m, pr = _job_printer(gwl_job)
    assert m["program_index"] == INDEX_NAME and INDEX_NAME in m["files"]
    idx = ProgramIndex.load(gwl_job / INDEX_NAME, gwl_job / m["program"]["main"])
    assert idx.is_current() and idx.n_layers == m["counts"]["layers"] == 6
    assert idx.layers_present().tolist() == list(range(6))
    assert idx.n_ranges == 6 * 4                     # every layer in each of the 4 block files
    full = read_program(gwl_job / m["program"]["main"], pr)
    assert idx.n_moves == len(full)
    # every layer through the index, in program order, is the full parse move for move
    got = read_program_layers(idx, pr, range(6))
    assert got.exact_ranges == idx.n_ranges and not got.full_parse
    for k in move_arrays(full):
        if k != "file":
            np.testing.assert_allclose(getattr(got.moves, k), getattr(full, k), rtol=0, atol=1e-9, err_msg=k)
    # one layer: only its ranges, and exactly the moves of the full parse at its height
    one = read_program_layers(idx, pr, [3])
    z3 = Toolpath.load(gwl_job / "preview_toolpath.npz").layer_z_um[3] + program_origin_um(pr)[2]
    assert len(one.ranges) == 4 and np.all(np.isclose(one.moves.z[one.moves.laser_on], z3))


@pytest.mark.parametrize("printer", ["lab-stage-gcode", "femtika-aerotech-galvo"])
def test_index_of_other_dialects_matches_a_full_parse(tmp_path, printer):
    job = make_box_job(tmp_path / "j", printer=printer)
    m, pr = _job_printer(job)
    main_path = job / m["program"]["main"]
    idx = build_program_index(main_path, pr)                       # built from the text, no job layers
    full = read_program(main_path, pr)
    got = read_program_layers(idx, pr, range(idx.n_layers))
    assert idx.n_layers == 6 and got.exact_ranges == idx.n_ranges
    for k in ("x", "y", "z", "power_mw", "speed_um_s", "laser_on", "jump", "block", "line"):
        np.testing.assert_allclose(getattr(got.moves, k), getattr(full, k), rtol=0, atol=1e-9, err_msg=k)


# ----------------------------------------------------------------------------- 2-D layer from the program
def test_layer_png_shows_the_programs_marks(gwl_job, tmp_path, capsys):
    m, pr = _job_printer(gwl_job)
    out = tmp_path / "l4.png"
    assert main(["preview", str(gwl_job), "--layer", "4", "--2d", str(out), *SIZE, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["view"] == "layer" and rep["layer"] == 4
    n_marks, length, text = caption_figures(out)
    z4 = Toolpath.load(gwl_job / "preview_toolpath.npz").layer_z_um[4] + program_origin_um(pr)[2]
    want_marks, want_length = reader_layer_figures(gwl_job / m["program"]["main"], pr, z4)
    assert n_marks == want_marks > 0
    assert length == pytest.approx(want_length, abs=0.06)            # one decimal on the image
    assert f"from the program {m['program']['main']}" in text and "estimated" in text


def test_overview_says_it_is_thinned_and_layers_come_from_the_program(gwl_job, tmp_path, capsys):
    assert main(["preview", str(gwl_job), "--screenshot", str(tmp_path / "o.png"), *SIZE, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert "preview toolpath (every layer and mark of the plan)" in rep["caption"]     # too small to thin
    assert "--layers A:B reads the program" in png_text((tmp_path / "o.png").read_bytes())["Description"]
    assert views.thinning_note(13, 2).startswith("the job's thinned preview toolpath (1 in 13 layers, 1 in 2 fill")
    assert main(["preview", str(gwl_job), "--layers", "2:4", "--screenshot", str(tmp_path / "p.png"), *SIZE,
                 "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert "layers 2..3 from the program" in rep["caption"] and rep["stats"]["total_layers"] == 2


def test_third_party_program_with_printer(gwl_job, tmp_path, capsys):
    # the program alone, away from its job: indexed on first use (in the cache), then reused
    m, pr = _job_printer(gwl_job)
    prog = tmp_path / "prog"
    shutil.copytree(gwl_job, prog, ignore=shutil.ignore_patterns("manifest.json", "*.npz", "*.txt", "*.toml",
                                                                  "*.stl"))
    main_path = prog / m["program"]["main"]
    out = tmp_path / "t.png"
    args = ["preview", str(main_path), "--printer", "nanoscribe-gt2-25x", "--layer", "1", "--2d", str(out), *SIZE]
    assert main(args) == 0
    capsys.readouterr()
    assert list((tmp_path / "cache").rglob("*.npz"))
    n_marks, _, _ = caption_figures(out)
    z1 = sorted({round(float(z), 3) for z in read_program(main_path, pr).z})[1]
    assert n_marks == reader_layer_figures(main_path, pr, z1)[0]
    assert main(args) == 0                                               # from the cached index


def test_layer_window_slider_reads_layers_on_demand(gwl_job):
    from bioslicer.preview import load_preview_source

    src = load_preview_source(gwl_job)
    idx = views.source_index(src)
    p = views.program_layer_plotter(src, idx, 0, off_screen=True, window_size=(320, 240))
    views.attach_layer_slider(p, src, idx, 0)
    first = p.preview_info["n_marks"]
    figs = p.show_layer(1)                 # what moving the slider to 1 does
    want = views.program_layer_toolpath(src, idx, [1])[0]
    assert figs["n_marks"] == want.n_marks != first
    assert p.actors["marks"].mapper.GetInput().GetNumberOfCells() == want.n_marks
    assert "layer 1 as the printer runs it" in p.preview_info["caption"] and figs["time_s"] > 0
    p.close()
    # the 3-D window: the slider walks through every layer of the job, read from the program
    from bioslicer.preview import toolpath_plotter

    p = toolpath_plotter(src.toolpath, off_screen=True, window_size=(320, 240), slider=False)
    views.attach_program_slider_3d(p, src, idx, 0)
    figs = p.show_layer(5)
    assert figs["n_marks"] == views.program_layer_toolpath(src, idx, [5])[0].n_marks
    assert p.actors["program_layer"].mapper.GetInput().GetNumberOfCells() == figs["n_marks"]
    p.close()


# ----------------------------------------------------------------------------- compare, movie
def test_compare_exact_part_is_within_one_percent(gwl_job, tmp_path, capsys):
    out = tmp_path / "c.png"
    assert main(["preview", str(gwl_job), "--compare", str(out), *SIZE, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    c = rep["compare"]
    box = 120.0 * 80.0 * 12.0
    assert c["design_um3"] == pytest.approx(box, rel=1e-9)
    assert abs(c["difference_pct"]) < 1.0 and c["missing_um3"] < 0.01 * box
    assert "design" in png_text(out.read_bytes())["Description"]
    # the same numbers are in the job report
    m = read_manifest(gwl_job)
    assert m["compare"].pop("voxel_um") == c.pop("voxel_um") and m["compare"] == pytest.approx(c)
    assert f"{c['difference_pct']:+.2f} %" in (gwl_job / "report.txt").read_text(encoding="utf-8")


def test_short_gif_has_one_frame_per_block_layer(gwl_job, tmp_path, capsys):
    import imageio.v3 as iio

    out = tmp_path / "m.gif"
    assert main(["preview", str(gwl_job), "--movie", str(out), "--layers", "0:2", "--fps", "5",
                 "--size", "160x120", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    frames = iio.imread(out, index=None)
    assert rep["frames"] == 2 * 4 == frames.shape[0]                     # 2 layers x 4 blocks
    assert frames.shape[1:3] == (120, 160)
    assert len({f.tobytes() for f in frames}) == 8                        # the print moves on
    m = read_manifest(gwl_job)
    assert 0 < rep["time_s"] < m["estimate"]["total_s"]


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_one_line(gwl_job, tmp_path, capsys, monkeypatch):
    def err(args):
        assert main(args) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    assert "outside the job: it has layers 0..5" in err(["preview", str(gwl_job), "--layer", "9", "--2d",
                                                          str(tmp_path / "x.png")])
    bad = tmp_path / "bad.gwl"
    bad.write_text("GalvoScanMode\nFlyTo 1 2\n1 2\nWrite\n")
    assert "reader refuses" in err(["preview", str(bad), "--printer", "nanoscribe-gt2-25x", "--layer", "0",
                                    "--2d", str(tmp_path / "x.png")])
    assert "--printer" in err(["preview", str(bad), "--layer", "0"])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "imageio_ffmpeg" else real(n, *a))
    assert "bioslicer[movie]" in err(["preview", str(gwl_job), "--movie", str(tmp_path / "m.mp4"), "--layers", "0:1"])
    assert not (tmp_path / "m.mp4").exists() and not list(tmp_path.glob(".m.*"))
    assert ".gif or an .mp4" in err(["preview", str(gwl_job), "--movie", str(tmp_path / "m.avi")])


def test_stale_cached_index_is_rebuilt(gwl_job, tmp_path):
    m, pr = _job_printer(gwl_job)
    prog = tmp_path / "p"
    shutil.copytree(gwl_job, prog)
    main_path = prog / m["program"]["main"]
    a = program_index(main_path, pr)
    blk = prog / a.files[1]
    blk.write_bytes(blk.read_bytes() + b"% appended\n")
    assert not a.is_current() and program_index(main_path, pr).is_current()


def test_index_made_while_the_job_was_read_back_equals_a_full_parse_index(tmp_path, monkeypatch):
    # the job's index comes from the moves its validation read block by block (no second parse;
    # the byte offsets of each file's ranges found by the reading thread, not by reading the
    # files again afterwards); it is the index build_program_index makes from the finished
    # program, array for array
    import threading

    import bioslicer.preview.program as pp
    from bioslicer.pipeline import slice_to_job
    from test_preview import JOB_SET, box_mesh

    seen = []
    line_starts = pp._line_starts

    def spy(*args, **kw):
        seen.append(threading.current_thread().name)
        return line_starts(*args, **kw)

    monkeypatch.setattr(pp, "_line_starts", spy)
    mesh = tmp_path / "box.stl"
    mesh.write_bytes(box_mesh().export(file_type="stl"))
    res = slice_to_job(mesh, tmp_path / "job", printer="nanoscribe-gt2-25x", overrides=dict(JOB_SET),
                       preview=False)
    assert res.timings_s["check_streamed"] is True
    assert seen == ["bioslicer-stream-check"] * 4           # once per block file, in the thread
    monkeypatch.setattr(pp, "_line_starts", line_starts)
    m, pr = _job_printer(res.path)
    main = res.path / m["program"]["main"]
    got = ProgramIndex.load(res.path / INDEX_NAME, main)
    lz = Toolpath.load(res.path / "preview_toolpath.npz").layer_z_um
    want = build_program_index(main, pr, m["program"]["dialect"], lz)
    for k in ("file_bytes", "header_bytes", "level_z_um", "layer", "r_file", "r_start", "r_end", "r_line0",
              "r_level", "first", "sums"):
        assert np.array_equal(getattr(got, k), getattr(want, k)), k
    assert (got.files, got.n_layers, got.n_moves, got.dialect) == (want.files, want.n_layers, want.n_moves,
                                                                     want.dialect)
