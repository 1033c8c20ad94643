"""Focal-shift (index mismatch) correction and tilt correction (issue 16): commanded z is
``focal_shift_factor`` x physical z above the interface in every dialect, exposure and slicing
stay physical, tiers and z-drive moves follow commanded z; GWL MeasureTilt/TiltCorrectionOn only
where the machine has them; the readers understand DefocusFactor and the tilt lines."""

import tomllib

import numpy as np
import pytest
import trimesh

from bioslicer.blockrun import plan_blocks
from bioslicer.errors import BioslicerError
from bioslicer.mesh import Solid
from bioslicer.pipeline import plan_job, slice_to_job
from bioslicer.placement import place
from bioslicer.printers import load_printer, parse_printer, printers_dir
from bioslicer.programs import read_program, validate_program
from bioslicer.recipe import Recipe
from bioslicer.slicing import layer_heights

SMALL = {"slice_um": 0.5, "hatch_um": 1.0}


def box_stl(folder, size=(12.0, 12.0, 3.0), name="box.stl"):
    m = trimesh.creation.box(extents=size)
    m.apply_translation([0.0, 0.0, size[2] / 2 + 7.0])     # floats 7 µm up: placement puts it on the substrate
    m.export(folder / name)
    return folder / name


def piezo_profile(folder, base="nanoscribe-gt2-63x"):
    """A copy of a bundled GWL profile in piezo scan mode (which has tilt correction)."""
    text = (printers_dir() / f"{base}.toml").read_text()
    assert 'scan_mode = "galvo"' in text
    path = folder / "piezo.toml"
    path.write_text(text.replace('scan_mode = "galvo"', 'scan_mode = "piezo"'))
    return path


def laser_z(mv):
    """Distinct z of the exposing moves, µm (rounded to the program's resolution)."""
    return np.unique(np.round(mv.z[mv.laser_on], 3))


# ----------------------------------------------------------------------------- recipe keys
@pytest.mark.parametrize("key,value,msg", [
    ("focal_shift_factor", 0.4, "must be between 0.5 and 2"),
    ("focal_shift_factor", 2.5, "must be between 0.5 and 2"),
    ("tilt_correction", "auto", "must be 'off' or 'measure'"),
    ("tilt_points", 1, "must be between 2 and 20"),
])
def test_bad_focal_and_tilt_keys_are_one_line(key, value, msg):
    with pytest.raises(BioslicerError, match=msg) as e:
        Recipe().updated(**{key: value})
    assert "\n" not in str(e.value)


def test_tilt_measure_needs_interface_finding():
    with pytest.raises(BioslicerError, match="needs find_interface 'every-block' or 'once'"):
        Recipe().updated(tilt_correction="measure", find_interface="off")
    assert Recipe().updated(tilt_correction="measure").tilt_measure_points() == 5
    assert Recipe().updated(tilt_points=7).tilt_measure_points() == 0       # off: nothing measured


# ----------------------------------------------------------------------------- commanded z
@pytest.mark.parametrize("printer", ["nanoscribe-gt2-63x", "lab-stage-gcode", "femtika-aerotech-galvo"])
def test_program_z_is_factor_times_physical_z_in_every_dialect(tmp_path, printer):
    stl = box_stl(tmp_path)
    pr = load_printer(printer)
    org = np.zeros(3) if "origin_um" not in pr.program else np.asarray(pr.program["origin_um"], float)
    zs = {}
    for f in (1.0, 1.5):
        res = slice_to_job(stl, tmp_path / f"job_{f}", printer=pr, preview=False,
                           overrides=dict(SMALL, z_offset_um=2.0, focal_shift_factor=f))
        mv = read_program(res.path / res.manifest["program"]["main"], pr)
        zs[f] = laser_z(mv) - org[2]
        assert res.manifest["validation"]["ok"]
        assert res.manifest["placement"]["focal_shift_factor"] == f
        head = [ln for ln in (res.path / res.manifest["program"]["main"]).read_text().splitlines()[:30]]
        assert any("focal_shift_factor" in ln for ln in head) == (f != 1.0)   # the header says z is commanded
    physical = 2.0 + layer_heights(0.0, 3.0, 0.5)        # lifted 2 µm: layer k at 2 + (k + 1/2) slice
    tol = 2e-3 if pr.dialect == "gwl" else 0.051          # G-code and AeroBasic write mm to 0.1 µm
    np.testing.assert_allclose(zs[1.0], physical, atol=tol)
    # scaled about the interface (z = 0), not about the part: layer spacing slice x factor
    np.testing.assert_allclose(zs[1.5], 1.5 * physical, atol=tol)
    np.testing.assert_allclose(np.diff(zs[1.5]), 0.75, atol=2 * tol)


def test_depth_compensation_uses_physical_depth_and_marks_are_unchanged_in_xy(tmp_path):
    stl = box_stl(tmp_path, size=(12.0, 12.0, 4.0))
    rec = dict(SMALL, depth_mode="exponential", attenuation_length_um=20.0)
    a = plan_job(stl, "nanoscribe-gt2-63x", overrides=dict(rec, focal_shift_factor=1.0)).toolpath
    b = plan_job(stl, "nanoscribe-gt2-63x", overrides=dict(rec, focal_shift_factor=1.5)).toolpath
    assert a.n_marks == b.n_marks and a.power_mw.max() > a.power_mw.min()      # power does vary with depth
    np.testing.assert_array_equal(a.power_mw, b.power_mw)   # same physical depth, same power
    np.testing.assert_array_equal(a.x_um, b.x_um)
    np.testing.assert_allclose(b.z_um, 1.5 * a.z_um, rtol=1e-12)
    np.testing.assert_allclose(b.layer_z_um, 1.5 * a.layer_z_um, rtol=1e-12)


def test_tiers_and_z_drive_follow_commanded_z(tmp_path):
    # 250 µm tall: inside the 300 µm piezo range as designed, 375 µm commanded at factor 1.5
    tall = trimesh.creation.box(extents=(8.0, 8.0, 250.0))
    solid = Solid(tall.vertices, tall.faces, name="tall.stl")
    pr = load_printer("nanoscribe-gt2-25x")
    for f, tiers in ((1.0, 1), (1.5, 2)):
        s, rec, _ = place(solid, Recipe(slice_um=5.0, hatch_um=2.0, focal_shift_factor=f))
        grid, lz = plan_blocks(s, rec, pr)
        assert grid.nz == tiers
        assert lz[-1] == pytest.approx(f * 247.5)
    tall.export(tmp_path / "tall.stl")
    for f, drives in ((1.0, 1), (1.5, 2)):     # the first to the lowest layer; at 1.5 one more tier
        res = slice_to_job(tmp_path / "tall.stl", tmp_path / f"j{f}", printer=pr, preview=False,
                           overrides={"slice_um": 5.0, "hatch_um": 2.0, "focal_shift_factor": f})
        main = res.path / res.manifest["program"]["main"]
        lines = main.read_text().splitlines()
        assert sum(ln.startswith("AddZDrivePosition") for ln in lines) == drives
        assert res.manifest["validation"]["ok"]           # every fine z inside the piezo range
        mv = read_program(main, pr)
        assert mv.z[mv.laser_on].max() == pytest.approx(f * 247.5, abs=1e-3)
        assert mv.z[mv.laser_on].min() >= 0.0              # never below the interface
        assert res.manifest["estimate"]["total_s"] > 0


def test_report_and_compare_with_a_focal_shift(tmp_path):
    stl = box_stl(tmp_path)
    res = {f: slice_to_job(stl, tmp_path / f"j{f}", printer="nanoscribe-gt2-63x", preview=False,
                           overrides=dict(SMALL, focal_shift_factor=f)) for f in (1.0, 1.25)}
    rep = {f: (r.path / "report.txt").read_text().splitlines() for f, r in res.items()}
    assert not any(ln.startswith("Focal shift") for ln in rep[1.0])
    hit = [i for i, ln in enumerate(rep[1.25]) if ln.startswith("Focal shift")]
    assert len(hit) == 1 and hit[0] < 20 and "1.25 × physical" in rep[1.25][hit[0]]
    # design vs print is made in physical z: the same figures with and without the factor
    c1, c2 = res[1.0].manifest["compare"], res[1.25].manifest["compare"]
    assert c1["design_um3"] > 0
    for k in ("design_um3", "printed_um3", "missing_um3", "extra_um3"):
        assert c2[k] == pytest.approx(c1[k], rel=1e-6, abs=1e-6), k
    # `bioslicer preview JOB`: the design drawn in commanded z, `--compare` made in physical z
    from bioslicer.preview.compare import compare_source
    from bioslicer.preview.sources import load_preview_source
    from bioslicer.preview.views import source_index

    src = load_preview_source(res[1.25].path)
    assert src.mesh.bounds_um[1][2] == pytest.approx(1.25 * 3.0)
    cmp = compare_source(src, source_index(src)).to_dict()
    assert cmp["missing_um3"] == pytest.approx(c1["missing_um3"], rel=1e-3, abs=1e-3)
    assert cmp["design_um3"] == pytest.approx(c1["design_um3"], rel=1e-3)


# ----------------------------------------------------------------------------- tilt correction
def test_tilt_measure_is_written_before_the_first_interface_finding_in_piezo_mode(tmp_path):
    stl = box_stl(tmp_path)
    pz = piezo_profile(tmp_path)
    res = slice_to_job(stl, tmp_path / "job", printer=pz, preview=False,
                       overrides=dict(SMALL, tilt_correction="measure", tilt_points=4))
    main = res.path / res.manifest["program"]["main"]
    lines = [ln for ln in main.read_text().splitlines() if not ln.startswith("%")]
    i, j, k = lines.index("MeasureTilt 4"), lines.index("TiltCorrectionOn"), \
        next(n for n, ln in enumerate(lines) if ln.startswith("FindInterfaceAt"))
    assert i < j < k and "TiltCorrectionOff" not in lines and "DefocusFactor 1" in lines[:k]
    assert res.manifest["validation"]["ok"] and len(read_program(main, pz)) > 0
    assert res.manifest["placement"]["tilt_correction"] == "measure"
    assert any(ln.startswith("Tilt") and "not in the estimate" in ln
               for ln in (res.path / "report.txt").read_text().splitlines())


@pytest.mark.parametrize("printer,why", [
    ("nanoscribe-gt2-25x", "it scans in GalvoScanMode, which has no tilt correction; use a profile with "
                           "program.scan_mode = \"piezo\", or"),
    ("lab-stage-gcode", "the gcode dialect has no tilt correction"),
    ("femtika-aerotech-galvo", "the aerobasic dialect has no tilt correction"),
    ("lab-daq-galvo", "the waveform dialect has no tilt correction"),
])
def test_tilt_measure_is_refused_without_tilt_correction(tmp_path, printer, why):
    stl = box_stl(tmp_path)
    with pytest.raises(BioslicerError, match=f"tilt_correction = 'measure' cannot be written for {printer}: {why}") \
            as e:
        slice_to_job(stl, tmp_path / "job", printer=printer, preview=False,
                     overrides=dict(SMALL, tilt_correction="measure"))
    assert "\n" not in str(e.value) and 'set tilt_correction = "off"' in str(e.value)
    assert not (tmp_path / "job").exists()


# ----------------------------------------------------------------------------- readers
GWL_DEFOCUS = """% a DefocusFactor program
GalvoScanMode
ScanSpeed 20000
LaserPower 40
TiltCorrectionOff
FindInterfaceAt 0.5
DefocusFactor {f}
0 0 {z}
10 0 {z}
Write
AddZDrivePosition 10
0 0 2
10 0 4
Write
"""


@pytest.mark.parametrize("general", [False, True])
def test_readers_apply_defocus_factor_from_the_interface(tmp_path, general):
    pr = load_printer("nanoscribe-gt2-25x")
    out = {}
    for f in ("1", "1.5"):
        text = GWL_DEFOCUS.format(f=f, z="$z" if general else "2")
        if general:    # a variable: the general reader reads it and hands the fast reader plain lines
            text = "var $z = 2\n" + text
        p = tmp_path / f"d{f}.gwl"
        p.write_text(text)
        mv = read_program(p, pr)
        out[f] = mv.z[mv.laser_on | mv.jump]
        assert validate_program(p, pr).ok
    np.testing.assert_allclose(out["1"], [2, 2, 12, 14])
    np.testing.assert_allclose(out["1.5"], [3, 3, 18, 21])      # z above the interface x 1.5, z drive too


def test_our_programs_read_back_with_defocus_factor_1(tmp_path):
    from test_programs_roundtrip import two_block_toolpath

    from bioslicer.programs import write_program

    tp = two_block_toolpath()
    pf = write_program(tp, "nanoscribe-gt2-25x", tmp_path, name="p")
    lines = pf.main.read_text().splitlines()
    assert "DefocusFactor 1" in lines and "TiltCorrectionOff" in lines
    mv = read_program(pf.main, "nanoscribe-gt2-25x")
    assert np.isin(np.round(mv.z[mv.laser_on], 3), np.round(tp.z_um, 3)).all()


@pytest.mark.parametrize("line,msg", [
    ("DefocusFactor 0", "'DefocusFactor' needs a positive factor"),
    ("InterfacePosition 3", "'InterfacePosition' sets the z origin DefocusFactor scales from, which is not read"),
])
def test_readers_refuse_defocus_lines_they_cannot_read(tmp_path, line, msg):
    p = tmp_path / "bad.gwl"
    p.write_text(GWL_DEFOCUS.format(f="1", z="2").replace("DefocusFactor 1", line))
    rep = validate_program(p, "nanoscribe-gt2-25x")
    assert not rep.ok and [v.line for v in rep.violations if msg in v.message] == [7]


def test_tilt_lines_are_read_and_move_nothing(tmp_path):
    pr = load_printer("nanoscribe-gt2-25x")
    plain = GWL_DEFOCUS.format(f="1", z="2")
    p0, p1 = tmp_path / "a.gwl", tmp_path / "b.gwl"
    p0.write_text(plain)
    p1.write_text(plain.replace("TiltCorrectionOff", "MeasureTilt 5\nTiltCorrectionOn"))
    a, b = read_program(p0, pr), read_program(p1, pr)
    np.testing.assert_array_equal(a.points(), b.points())
    assert validate_program(p1, pr).ok


def test_piezo_profile_text_is_a_copy(tmp_path):
    doc = tomllib.loads(piezo_profile(tmp_path).read_text())
    assert parse_printer(doc, "piezo.toml").program["scan_mode"] == "piezo"


def test_estimate_under_focal_shift_counts_the_same_marks(tmp_path):
    """estimate_mesh samples spans at physical heights (the grid is commanded): the factor
    changes z, not what is printed, so marks and mark length stay those of factor 1."""
    from bioslicer.pipeline import estimate_mesh

    part = box_stl(tmp_path)
    e1 = estimate_mesh(part, "nanoscribe-gt2-25x", overrides=SMALL)
    e2 = estimate_mesh(part, "nanoscribe-gt2-25x", overrides={**SMALL, "focal_shift_factor": 1.5})
    assert e2["marks"] == pytest.approx(e1["marks"], rel=0.02)
    mark_s = [e["estimate"]["breakdown"]["mark_s"] for e in (e1, e2)]
    assert mark_s[1] == pytest.approx(mark_s[0], rel=0.02)
    assert e1["marks"] > 0
