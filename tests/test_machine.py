"""Programs that are right on the real machine (issue 16): placement on the substrate, relative
stage moves, interface finding, explicit machine state, honest dose, controller-legal headers."""

import math

import numpy as np
import pytest
import trimesh

from bioslicer.errors import BioslicerError
from bioslicer.mesh import Solid
from bioslicer.placement import place, placement_offset_um
from bioslicer.printers import load_printer, parse_printer
from bioslicer.programs import ProgramWriter, read_program, validate_program, write_program
from bioslicer.recipe import Recipe
from bioslicer.toolpath import Blocks, Toolpath

from test_programs_roundtrip import PRINTERS, two_block_toolpath


def box_solid(lo, hi) -> Solid:
    b = trimesh.creation.box(bounds=np.array([lo, hi], dtype=float))
    return Solid(b.vertices, b.faces, name="box.stl")


# ----------------------------------------------------------------------------- placement
def test_default_placement_puts_the_part_on_the_substrate_centred_at_the_start():
    # a vessel tree whose lowest point is at z = 50 µm would float: it goes down to the interface
    s = box_solid([100.0, -40.0, 50.0], [160.0, 20.0, 80.0])
    placed, rec, info = place(s, Recipe())
    lo, hi = placed.bounds_um
    np.testing.assert_allclose(lo, [-30.0, -30.0, 0.0])
    np.testing.assert_allclose(hi, [30.0, 30.0, 30.0])
    assert info["mode"] == "substrate" and not info["floating"]
    # z_offset_um lifts the whole print
    placed, _, info = place(s, Recipe(z_offset_um=5.0))
    assert placed.bounds_um[0, 2] == pytest.approx(5.0) and info["floating"]


def test_keep_position_refuses_floating_and_substrate_parts():
    floating = box_solid([0.0, 0.0, 50.0], [10.0, 10.0, 60.0])
    with pytest.raises(BioslicerError, match=r"lowest point is at z = 50 µm.*--allow-floating") as e:
        placement_offset_um(floating, Recipe(placement="keep"))
    assert "\n" not in str(e.value)
    off, info = placement_offset_um(floating, Recipe(placement="keep", allow_floating=True))
    assert list(off) == [0.0, 0.0, 0.0] and info["floating"]
    sunk = box_solid([0.0, 0.0, -220.0], [10.0, 10.0, 60.0])
    with pytest.raises(BioslicerError, match=r"reaches z = -220 µm, below the substrate interface"):
        placement_offset_um(sunk, Recipe(placement="keep", allow_floating=True))
    on = box_solid([0.0, 0.0, 0.0], [10.0, 10.0, 60.0])
    off, info = placement_offset_um(on, Recipe(placement="keep"))
    assert not np.any(off) and not info["floating"]


def test_placement_moves_coordinates_given_in_mesh_space():
    s = box_solid([0.0, 0.0, 50.0], [10.0, 10.0, 60.0])
    _, rec, _ = place(s, Recipe(surface_z_um=55.0, power_field_path="f.npy", power_field_voxel_um=[1, 1, 1],
                                power_field_origin_um=[1.0, 2.0, 50.0]))
    assert rec.surface_z_um == pytest.approx(5.0)
    assert rec.power_field_origin_um == pytest.approx([-4.0, -3.0, 0.0])


@pytest.mark.parametrize("key,value,msg", [
    ("find_interface", "sometimes", "must be one of every-block, once, off"),
    ("placement", "float", "must be 'substrate'"),
    ("z_offset_um", -1.0, "must not be negative"),
])
def test_bad_machine_recipe_keys_are_one_line(key, value, msg):
    with pytest.raises(BioslicerError, match=msg) as e:
        Recipe().updated(**{key: value})
    assert "\n" not in str(e.value)


def test_old_boolean_find_interface_still_reads():
    assert Recipe().updated(find_interface=False).find_interface == "off"
    assert Recipe().updated(find_interface=True).find_interface == "every-block"


# ----------------------------------------------------------------------------- validator: interface
def test_focus_below_the_interface_is_refused_on_every_text_dialect(tmp_path):
    # the z drive 1 µm down: fine z stays in the piezo range, the second point is 0.5 µm under the interface
    gwl = ("% below\nGalvoScanMode\nScanSpeed 20000\nLaserPower 40\nAddZDrivePosition -1.000\n0 0 1.5\n"
           "10 0 0.5\nWrite\n")
    p = tmp_path / "b.gwl"
    p.write_text(gwl)
    rep = validate_program(p, "nanoscribe-gt2-25x")
    assert rep.n_violations == 1 and rep.violations[0].line == 7
    assert "below the substrate interface" in rep.violations[0].message
    # G-code: the interface is the profile origin's z (1000 µm); Z0.9995 mm is 0.5 µm under it
    gc = ("G21\nG94\nG90\nM5\nG0 X12.5 Y12.5 Z1.001\nM3 S30\nG1 X12.6 Y12.5 Z0.9995 F300\nM5\n")
    p = tmp_path / "b.gcode"
    p.write_text(gc)
    rep = validate_program(p, "lab-stage-gcode")
    assert {v.line for v in rep.violations} == {7}
    assert any("below the substrate interface" in v.message for v in rep.violations)
    ab = ("METRIC\nSECONDS\nABSOLUTE\nRAPID X0 Y0 Z0\nRAPID A0 B0 Z0.001\n$AO[0].A = 2\n"
          "GALVO LASEROVERRIDE A ON\nLINEAR A0.1 B0 Z-0.001 F10\nGALVO LASEROVERRIDE A OFF\n")
    p = tmp_path / "b.pgm"
    p.write_text(ab)
    rep = validate_program(p, "femtika-aerotech-galvo")
    assert any(v.line == 8 and "below the substrate interface" in v.message for v in rep.violations)


# ----------------------------------------------------------------------------- headers
GOLDEN = {
    # every non-comment line before the first block: the machine state the program sets
    "gwl": ["InvertZAxis 1", "GalvoScanMode", "ContinuousMode", "GalvoAcceleration 5.00", "PiezoSettlingTime 10.0",
            "StageVelocity 1000.0", "XOffset 0.000", "YOffset 0.000", "ZOffset 0.000", "PowerScaling 1.000",
            "DefocusFactor 1", "TiltCorrectionOff", "MoveStageX 0.000", "MoveStageY 0.000", "FindInterfaceAt 0.500"],
    "gcode": ["G21", "G94", "G90", "M5"],
    "aerobasic": ["METRIC", "SECONDS", "ABSOLUTE", "POSOFFSET SET X 0 Y 0 Z 0", "VELOCITY ON",
                  "GALVO LASEROVERRIDE A OFF"],
}
#: settings each dialect must set at its top (first word or whole line)
MUST_SET = {
    "gwl": {"InvertZAxis", "GalvoScanMode", "ContinuousMode", "GalvoAcceleration", "PiezoSettlingTime",
            "StageVelocity", "XOffset", "YOffset", "ZOffset", "PowerScaling", "DefocusFactor", "TiltCorrectionOff",
            "FindInterfaceAt"},
    "gcode": {"G21", "G94", "G90", "M5"},
    "aerobasic": {"METRIC", "SECONDS", "ABSOLUTE", "POSOFFSET", "VELOCITY", "GALVO"},
}


def _header(path, comment):
    out = []
    for ln in path.read_text().splitlines():
        if ln.startswith(comment):
            continue
        if ln.startswith(("include", "RAPID X", "G0 ")):
            break
        out.append(ln)
    return out


@pytest.mark.parametrize("dialect", ["gwl", "gcode", "aerobasic"])
def test_golden_header_per_dialect(tmp_path, dialect):
    pr = load_printer(PRINTERS[dialect])
    long = {"recipe": "x" * 1500}       # a 1.5 kB provenance value becomes its SHA-256
    pf = write_program(two_block_toolpath(), pr, tmp_path, name="h", provenance=long)
    cm = {"gwl": "%", "gcode": ";", "aerobasic": "'"}[dialect]
    head = _header(pf.main, cm)
    assert head == GOLDEN[dialect]
    assert MUST_SET[dialect] <= {ln.split()[0] for ln in head}
    for ln in pf.main.read_text().splitlines():
        assert len(ln) <= (200 if ln.startswith(cm) else 255), ln[:60]
    assert any(ln.startswith(f"{cm} recipe sha256: ") for ln in pf.main.read_text().splitlines())


def test_invert_z_follows_the_immersion_and_connect_points_only_in_piezo_mode(tmp_path):
    pr = load_printer("nanoscribe-gt2-63x")                         # oil immersion
    pf = write_program(two_block_toolpath(), pr, tmp_path / "a", name="p")
    lines = pf.main.read_text().splitlines()
    assert "InvertZAxis 0" in lines and not any(ln.startswith("ConnectPoints") for ln in lines)
    doc = _profile_doc("nanoscribe-gt2-25x")
    doc["program"]["scan_mode"] = "piezo"
    pz = parse_printer(doc, "piezo.toml")
    pf = write_program(two_block_toolpath(), pz, tmp_path / "b", name="p")
    lines = pf.main.read_text().splitlines()
    assert "PiezoScanMode" in lines and "ConnectPointsOff" in lines and "InvertZAxis 1" in lines


def _profile_doc(name):
    import tomllib

    from bioslicer.printers import printers_dir

    return tomllib.loads((printers_dir() / f"{name}.toml").read_text())


def test_gwl_profile_without_immersion_is_refused(tmp_path):
    doc = _profile_doc("nanoscribe-gt2-25x")
    doc["objective"] = "25x NA0.8"
    pr = parse_printer(doc, "old.toml")
    with pytest.raises(BioslicerError, match=r"old.toml: the gwl dialect needs \[objective\] immersion") as e:
        write_program(two_block_toolpath(), pr, tmp_path, name="p")
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())


@pytest.mark.parametrize("mode,count", [("every-block", 2), ("once", 1), ("off", 0)])
def test_find_interface_modes(tmp_path, mode, count):
    pr = load_printer("nanoscribe-gt2-25x")
    pf = write_program(two_block_toolpath(), pr, tmp_path, name="p", find_interface=mode)
    main = pf.main.read_text().splitlines()
    assert sum(ln.startswith("FindInterfaceAt") for ln in main) == count
    if count:   # after the stage has moved to the block, before its file
        i = main.index("FindInterfaceAt 0.500")
        assert main[i - 1].startswith("MoveStageY") and main[i + 1].startswith("include")
    assert validate_program(pf.main, pr).ok


def test_unknown_find_interface_is_refused():
    pr = load_printer("nanoscribe-gt2-25x")
    with pytest.raises(BioslicerError, match="find_interface must be one of every-block, once, off"):
        ProgramWriter(pr, two_block_toolpath().blocks, "/nonexistent", find_interface="sometimes")


def test_absolute_stage_only_with_a_stage_origin(tmp_path):
    doc = _profile_doc("nanoscribe-gt2-25x")
    doc["program"]["origin_um"] = [1000.0, 2000.0, 0.0]
    pf = write_program(two_block_toolpath(), parse_printer(doc, "o.toml"), tmp_path, name="p")
    main = pf.main.read_text().splitlines()
    assert "StageGotoX 1100.000" in main and not any(ln.startswith("MoveStage") for ln in main)


# ----------------------------------------------------------------------------- G-code / AeroBasic
@pytest.mark.parametrize("key,value,alts", [("unit", "um", "'mm' or 'inch'"), ("feed_per", "s", "'min'")])
def test_gcode_profile_outside_rs274_is_refused_at_load(key, value, alts):
    doc = _profile_doc("lab-stage-gcode")
    doc["program"][key] = value
    with pytest.raises(BioslicerError, match=f"'program.{key}' = '{value}' cannot be written in the gcode "
                                             f"dialect; use {alts}"):
        parse_printer(doc, "g.toml")


def test_aerobasic_time_base_units_and_analog_axis(tmp_path):
    doc = _profile_doc("femtika-aerotech-galvo")
    doc["program"]["feed_per"] = "min"
    doc["program"]["unit"] = "inch"
    pr = parse_printer(doc, "ab.toml")
    pf = write_program(two_block_toolpath(), pr, tmp_path, name="p")
    lines = pf.main.read_text().splitlines()
    assert "ENGLISH" in lines and "MINUTES" in lines
    assert any(ln.startswith("$AO[0].A = ") for ln in lines)
    mv = read_program(pf.main, pr)
    tp = two_block_toolpath()
    assert mv.speed_um_s[~mv.jump & mv.laser_on].max() == pytest.approx(tp.mark_speed_um_s.max(), rel=1e-3)


# ----------------------------------------------------------------------------- power calibration
def test_sin2_and_table_calibrations_round_trip():
    daq = load_printer("lab-daq-galvo")             # Pockels cell: sin², 0.5 % extinction, 2 V full
    p = np.array([0.4, 1.0, 20.0, 40.0, 80.0])
    v = daq.power_to_program(p)
    np.testing.assert_allclose(daq.power_from_program(v), p, rtol=1e-9)
    # half the power is not half the volts: sin²(π/2 · V/2) = (0.5 - 0.005) / 0.995
    assert daq.power_to_program(40.0) == pytest.approx(2.0 * 2 / math.pi * math.asin(math.sqrt(0.495 / 0.995)))
    assert daq.power_to_program(0.0) == 0.0 and daq.power_to_program(80.0) == pytest.approx(2.0)
    doc = _profile_doc("lab-daq-galvo")
    doc["laser"]["calibration"] = "table"
    doc["laser"].pop("calibration_min_fraction")
    doc["laser"]["calibration_table"] = [[0.0, 0.0], [0.1, 0.5], [0.5, 1.2], [1.0, 2.0]]
    tab = parse_printer(doc, "t.toml")
    assert tab.power_to_program(24.0) == pytest.approx(0.85)     # fraction 0.3: halfway 0.5 .. 1.2 V
    np.testing.assert_allclose(tab.power_from_program(tab.power_to_program(p)), p, rtol=1e-9)
    doc["laser"]["calibration_table"] = [[0.0, 0.0], [0.5, 1.5], [0.4, 2.0]]
    with pytest.raises(BioslicerError, match="calibration_table' must be"):
        parse_printer(doc, "t.toml")


def test_calibrated_program_reads_back_in_mw(tmp_path):
    pr = load_printer("lab-daq-galvo")
    tp = two_block_toolpath()
    pf = write_program(tp, pr, tmp_path, name="wf")
    mv = read_program(pf.main, pr)
    on = mv.laser_on
    assert mv.power_mw[on].min() >= tp.power_mw.min() - 1e-6 and mv.power_mw[on].max() <= tp.power_mw.max() + 1e-6
    assert np.isin(np.round(tp.power_mw[:6], 6), np.round(mv.power_mw[on], 6)).all()


def test_depth_compensation_needs_the_light_side():
    from bioslicer.exposure import check_exposure

    doc = _profile_doc("nanoscribe-gt2-25x")
    doc["objective"] = {"name": "25x", "immersion": "dill"}
    pr = parse_printer(doc, "nolight.toml")
    check_exposure(Recipe(), pr)      # no depth compensation: no need to know
    with pytest.raises(BioslicerError, match=r"nolight.toml: depth compensation needs \[objective\] light_from"):
        check_exposure(Recipe(depth_mode="linear", depth_slope_per_um=0.01), pr)
    doc["objective"]["focal_shift"] = 0.9
    with pytest.raises(BioslicerError, match="unknown key 'objective.focal_shift'"):
        parse_printer(doc, "x.toml")


# ----------------------------------------------------------------------------- through the CLI
@pytest.fixture(scope="module")
def disc(tmp_path_factory):
    """A 36 µm disc, 6 µm high, lying 10 µm above z = 0 (a part that would float if kept)."""
    from test_recipe_keys import disc_stl

    return disc_stl(tmp_path_factory.mktemp("disc"))


def test_cli_power_request_above_the_laser_fails_or_is_reported_once(disc, tmp_path, capsys):
    from bioslicer.cli import main as cli_main
    from bioslicer.jobs import read_manifest

    args = ["slice", str(disc), "-p", "nanoscribe-gt2-25x", "--no-preview", "--set", "depth_mode=\"exponential\"",
            "--set", "attenuation_length_um=2.0"]
    assert cli_main(args + ["-o", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: block 0: power request up to ")
    assert "above the laser's maximum 50 mW" in err and "--allow-power-clip" in err
    assert not (tmp_path / "a").exists()
    assert cli_main(args + ["-o", str(tmp_path / "b"), "--allow-power-clip"]) == 0
    out = capsys.readouterr().out
    assert out.count("POWER CLIPPED") == 1
    m = read_manifest(tmp_path / "b")
    clip = m["power_clip"]
    assert clip["points"] > 0 and 0 < clip["share_of_mark_length"] < 1
    assert clip["max_request_mw"] == pytest.approx(22.5 * math.exp(m["bounds_um"][1][2] / 2.0), rel=0.05)
    report = (tmp_path / "b" / "report.txt").read_text().splitlines()
    assert report[3].startswith("POWER CLIPPED") and sum("POWER CLIPPED" in ln for ln in report) == 1
    assert m["plan"]["warnings"] == []          # not repeated per block
    from bioslicer.service.worker import job_summary

    assert job_summary(m)["power_clip"].startswith("POWER CLIPPED")


def test_cli_keep_position_refuses_a_floating_part(disc, tmp_path, capsys):
    from bioslicer.cli import main as cli_main
    from bioslicer.jobs import read_manifest

    base = ["slice", str(disc), "-p", "nanoscribe-gt2-25x", "--no-preview"]
    assert cli_main(base + ["-o", str(tmp_path / "a"), "--keep-position"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "lowest point is at z = 10 µm" in err and "--allow-floating" in err
    assert cli_main(base + ["-o", str(tmp_path / "b"), "--keep-position", "--allow-floating"]) == 0
    m = read_manifest(tmp_path / "b")
    assert m["placement"]["floating"] and m["placement"]["mode"] == "keep"
    assert m["bounds_um"][0][2] > 9.9               # printed where the mesh is
    assert cli_main(base + ["-o", str(tmp_path / "c")]) == 0
    m = read_manifest(tmp_path / "c")
    assert m["bounds_um"][0][2] < 0.5 and not m["placement"]["floating"]   # on the substrate
    lo, hi = np.array(m["bounds_um"])
    np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, [0.0, 0.0], atol=0.5)  # centred at the start


@pytest.mark.parametrize("dialect,eol", [("gwl", b"\r\n"), ("aerobasic", b"\r\n"), ("gcode", b"\n")])
def test_line_endings_per_dialect_and_profile(tmp_path, dialect, eol):
    pr = load_printer(PRINTERS[dialect])
    pf = write_program(two_block_toolpath(), pr, tmp_path / "a", name="p")
    for f in pf.files:
        data = f.read_bytes()
        assert data.count(b"\n") == data.count(eol) > 0, f.name      # every line, header and body alike
    doc = _profile_doc(PRINTERS[dialect])
    doc["program"]["line_ending"] = "lf" if eol == b"\r\n" else "crlf"
    other = parse_printer(doc, "le.toml")
    pf2 = write_program(two_block_toolpath(), other, tmp_path / "b", name="p")
    flip = (lambda b: b.replace(b"\r\n", b"\n")) if eol == b"\r\n" else (lambda b: b.replace(b"\n", b"\r\n"))
    assert pf2.main.read_bytes().split(b"\n")[5:] == flip(pf.main.read_bytes()).split(b"\n")[5:]
    assert validate_program(pf2.main, other).ok


def test_inspect_reports_floating_parts_and_blocks_starting_in_mid_air(tmp_path):
    from bioslicer.placement import airborne_report

    col = trimesh.creation.box(bounds=[[0.0, 0.0, 0.0], [10.0, 10.0, 30.0]])
    arm = trimesh.creation.box(bounds=[[5.0, 0.0, 24.0], [60.0, 10.0, 30.0]])     # an overhang off the column
    loose = trimesh.creation.box(bounds=[[0.0, 40.0, 12.0], [10.0, 50.0, 18.0]])  # not touching anything
    m = trimesh.util.concatenate([col, arm, loose])
    s = Solid(m.vertices, m.faces, name="l.stl")
    pr = load_printer("nanoscribe-gt2-25x")
    rep = airborne_report(s, Recipe(slice_um=1.0, hatch_um=1.0, block_size_um=20.0), pr)
    assert rep["mesh_lowest_z_um"] == 0.0
    assert len(rep["floating_parts"]) == 1
    fp = rep["floating_parts"][0]
    assert fp["lowest_z_um"] == pytest.approx(12.0, abs=1.01)
    # the arm's blocks beyond the column start at the arm's underside; the column's block does not
    # (the loose part's block starts in mid-air too)
    mid = {tuple(b["index"]): b["z_um"] for b in rep["midair_blocks"]}
    assert set(mid) == {(1, 0, 0), (2, 0, 0), (0, 2, 0)}
    assert mid[(1, 0, 0)] == mid[(2, 0, 0)] == pytest.approx(24.0, abs=1.01)
    assert mid[(0, 2, 0)] == pytest.approx(12.0, abs=1.01)
    single = Solid(col.vertices, col.faces)
    rep = airborne_report(single, Recipe(slice_um=1.0, hatch_um=1.0), pr)
    assert rep["floating_parts"] == [] and rep["midair_blocks"] == []


@pytest.mark.skipif(__import__("shutil").which("rs274") is None, reason="LinuxCNC's rs274 interpreter not installed")
def test_linuxcnc_interpreter_runs_a_sliced_gcode_job(disc, tmp_path):
    import subprocess

    from bioslicer.pipeline import slice_to_job

    res = slice_to_job(disc, tmp_path / "job", printer="lab-stage-gcode", preview=False)
    prog = res.path / res.manifest["program"]["main"]
    run = subprocess.run(["rs274", "-g", str(prog), str(tmp_path / "canon.txt")], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    canon = (tmp_path / "canon.txt").read_text()
    assert "PROGRAM_END" in canon and "USE_LENGTH_UNITS(CANON_UNITS_MM)" in canon


def test_a_kept_part_beyond_the_stage_travel_is_refused_before_anything_is_written(tmp_path):
    from bioslicer.pipeline import slice_to_job

    far = trimesh.creation.box(bounds=[[60000.0, 0.0, 0.0], [60020.0, 20.0, 4.0]])   # x = 60 mm, travel ±50 mm
    far.export(tmp_path / "far.stl")
    with pytest.raises(BioslicerError, match=r"stage x positions .* outside the nanoscribe-gt2-25x stage range") as e:
        slice_to_job(tmp_path / "far.stl", tmp_path / "job", printer="nanoscribe-gt2-25x",
                     overrides={"placement": "keep"}, preview=False)
    assert "\n" not in str(e.value) and not (tmp_path / "job").exists()
    # placed on the substrate at the start position it fits
    res = slice_to_job(tmp_path / "far.stl", tmp_path / "job", printer="nanoscribe-gt2-25x", preview=False)
    assert res.manifest["placement"]["offset_um"][0] == pytest.approx(-60010.0)


def test_waveform_and_voxel_headers_carry_what_a_rig_needs(tmp_path):
    import csv
    import json

    pf = write_program(two_block_toolpath(), load_printer("lab-daq-galvo"), tmp_path / "w", name="w")
    rows = list(csv.reader(l for l in pf.main.read_text().splitlines() if not l.startswith("#")))
    chans = {r[0]: r for r in rows[1:]}
    assert set(chans) == {"galvo_x", "galvo_y", "piezo_z", "laser"}
    assert all(float(r[3]) > 0 and float(r[5]) == 200000.0 for r in chans.values())
    assert "# laser_v calibration sin2" in pf.main.read_text()      # volts are not linear in power
    tp = Toolpath.from_segments([[0.0, 0.0, 0.5]], [[10.0, 0.0, 0.5]], 1, [0], 2000.0, [10.0], [0.5])
    tp.blocks = Blocks.single([-50.0, -50.0, 0.0], [50.0, 50.0, 1.0], "circle", 400.0)
    tp.mark_block[:] = 0
    pf = write_program(tp, load_printer("nanoscribe-gt2-25x"), tmp_path / "v", name="v", dialect="voxel")
    side = json.loads(pf.main.read_text())
    assert {"voxel_um", "origin_um", "stage_um", "axis_order", "max_power_mw", "value"} <= set(side)
    assert all(len(p) <= 200 for p in side["provenance"])
