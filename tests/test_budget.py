"""Absurd sizes are refused in one line before anything is allocated by them (issue 22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bioslicer import budget
from bioslicer.cli import main
from bioslicer.errors import BioslicerError
from bioslicer.printers import list_printers, load_printer
from bioslicer.recipe import MAX_COUNTS, Recipe

ROOT = Path(__file__).resolve().parents[1]
CAL = ROOT / "meshes" / "calibration.stl"
P25 = load_printer("nanoscribe-gt2-25x")
CAL_BOUNDS = [[0.0, 0.0, 0.0], [260.0, 120.0, 60.0]]


def test_every_printer_default_recipe_passes():
    for p in list_printers():
        rec = Recipe.from_printer(p)
        budget.check_recipe(rec, p)
        w = budget.estimate_work(CAL_BOUNDS, rec, p)
        budget.check_work(w, rec, p)
        assert w.layers == np.ceil(60.0 / rec.slice_um)


@pytest.mark.parametrize("key,value,text", [
    ("hatch_um", 1e-6, "hatch_um=1e-06 µm is below the 0.001 µm position resolution"),
    ("slice_um", 1e-4, "slice_um=0.0001 µm is below"),
    ("hatch_um", 500.0, "hatch_um=500 µm is larger than the 400 µm field"),
    ("block_size_um", 0.001, "block_size_um=0.001 µm holds fewer than 10 hatch lines"),
])
def test_implausible_values_refused_unless_forced(key, value, text):
    rec = Recipe.from_printer(P25).updated(**{key: value})
    with pytest.raises(BioslicerError, match=text.replace("(", r"\(")):
        budget.check_recipe(rec, P25)
    budget.check_recipe(rec, P25, force=True)


def test_block_larger_than_field_refused_even_forced_by_stitching_rules():
    rec = Recipe.from_printer(P25).updated(block_size_um=1000.0)
    with pytest.raises(BioslicerError, match="larger than the 282.8 µm block that fits the field"):
        budget.check_recipe(rec, P25)


def test_memory_is_never_forced():
    rec = Recipe.from_printer(P25).updated(hatch_um=1e-6)
    w = budget.estimate_work(CAL_BOUNDS, rec, P25)
    assert w.peak_bytes > 1e12                     # 283 µm window / 1e-6 µm = 2.8e8 rows per layer
    with pytest.raises(BioslicerError, match=r"^hatch_um=1e-06 would need about .* GiB of memory"):
        budget.check_work(w, rec, P25, force=True, memory_bytes=16e9)
    tiny = Recipe.from_printer(P25).updated(block_size_um=0.001)
    w = budget.estimate_work(CAL_BOUNDS, tiny, P25)
    assert w.blocks > 1e15
    with pytest.raises(BioslicerError, match="^block_size_um=0.001 would need"):
        budget.check_work(w, tiny, P25, force=True, memory_bytes=16e9)


def test_disk_and_print_time():
    rec = Recipe.from_printer(P25).updated(hatch_um=0.002, slice_um=0.002)
    w = budget.estimate_work([[0, 0, 0], [5000, 5000, 1000]], rec, P25)
    with pytest.raises(BioslicerError, match="the print would take about .* years"):
        budget.check_work(w, rec, P25, memory_bytes=1e30)
    budget.check_work(w, rec, P25, memory_bytes=1e30, force=True)


def test_estimate_matches_a_real_job_within_a_small_factor(tmp_path, capsys):
    """Calibration part at hatch 0.4 µm: 41,770 segments, 3.2 MB of program, 33 s (measured)."""
    import json

    assert main(["slice", str(CAL), "--printer", "nanoscribe-gt2-25x", "-o", str(tmp_path / "job"),
                 "--no-preview", "--set", "hatch_um=0.4", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    rec = Recipe.from_printer(P25).updated(hatch_um=0.4)
    w = budget.estimate_work(CAL_BOUNDS, rec, P25, volume_um3=479600.0)
    seg = got["counts"]["segments"]
    assert seg / 4 < w.segments < seg * 4
    assert got["estimate"]["total_s"] / 4 < w.print_s < got["estimate"]["total_s"] * 4
    files = sum(p.stat().st_size for p in (tmp_path / "job").rglob("*.gwl"))
    assert files / 4 < w.program_bytes < files * 4


@pytest.mark.parametrize("setting,text", [
    ("hatch_um=1e-6", "error: hatch_um=1e-06 µm is below the 0.001 µm position resolution"),
    ("block_size_um=0.001", "error: block_size_um=0.001 µm holds fewer than 10 hatch lines"),
    ("hatch_um=1e308", "error: recipe key 'hatch_um' must be at most 1e+06 µm"),
    ("contour_count=10000000000000000000000", "error: recipe key 'contour_count' must be at most 1,000"),
])
def test_cli_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, setting, text):
    out = tmp_path / "job"
    assert main(["slice", str(CAL), "--printer", "nanoscribe-gt2-25x", "-o", str(out), "--set", setting]) == 1
    err = capsys.readouterr().err
    assert err.startswith(text) and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_force_still_refuses_memory(tmp_path, capsys):
    assert main(["slice", str(CAL), "--printer", "nanoscribe-gt2-25x", "-o", str(tmp_path / "job"), "--force",
                 "--set", "hatch_um=1e-6"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: hatch_um=1e-06 would need about") and "GiB of memory" in err
    assert list(tmp_path.iterdir()) == []


def test_recipe_bounds_on_every_count():
    for key, top in MAX_COUNTS.items():
        Recipe().updated(**{key: top})
        with pytest.raises(BioslicerError, match=f"'{key}' must be at most"):
            Recipe().updated(**{key: top + 1})
    for key in ("slice_um", "hatch_um", "overlap_um", "block_size_um", "gyroid_cell_um"):
        with pytest.raises(BioslicerError, match=f"'{key}' must be at most 1e\\+06"):
            Recipe().updated(**{key: 2e6})
    with pytest.raises(BioslicerError, match="speed_um_s.hatch"):
        Recipe().updated(speed_um_s={"hatch": 1e12})
