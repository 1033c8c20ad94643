"""No recipe key without effect (issue 16): change every key, one at a time, to a valid other
value on a small part and check that the program or the job's facts change.

The program is compared without its comment lines and the manifest without the recipe itself
(both always carry the recipe or its hash, which would make the test unable to fail). Keys that
matter only in some settings run in them: strategy keys with their strategy (the Recipe
docstring names them), depth keys with their depth mode, stitching keys with a part larger than
one block, ``allow_floating`` with a kept floating part, ``allow_power_clip`` with a power
request above the laser's maximum.
"""

from dataclasses import fields

import numpy as np
import pytest
import trimesh

from bioslicer.errors import BioslicerError
from bioslicer.pipeline import slice_to_job
from bioslicer.recipe import Recipe

PRINTER = "nanoscribe-gt2-25x"
FIELD_FILE = "field.npy"

DEPTH_EXP = {"depth_mode": "exponential"}
FIELD = {"power_field_path": FIELD_FILE, "power_field_voxel_um": [5.0, 5.0, 1.0]}
RAMP = {"power_ramp_width_um": 4.0}
BLOCKS = {"block_size_um": 20.0}          # the 36 µm part spans 2 x 2 blocks
CLIP = {"depth_mode": "exponential", "attenuation_length_um": 1.0, "allow_power_clip": False}
TREE = {"_input": "tree.swc", "strategy": "vessel-wall"}   # centerline keys run on a vessel tree
PIEZO = {"_printer": "piezo.toml"}        # tilt correction: a GWL printer in piezo scan mode

#: key -> (other valid value, the setting it matters in)
CHANGES = {
    "strategy": ("shell-scaffold", {}),
    "slice_um": (1.0, {}),
    "hatch_um": (0.5, {}),
    "hatch_angle_deg": (30.0, {}),
    "hatch_angle_step_deg": (45.0, {}),
    "serpentine": (False, {}),
    "contour_count": (1, {}),
    "contour_spacing_um": (0.4, {}),
    "contour_offset_um": (0.3, {}),
    "hatch_inset_um": (0.5, {}),
    "min_segment_um": (10.0, {}),
    "skin_layers": (2, {"strategy": "shell-scaffold"}),
    "scaffold_pitch_um": (8.0, {"strategy": "shell-scaffold"}),
    "scaffold_every_n_layers": (2, {"strategy": "shell-scaffold"}),
    "scaffold_wall_lines": (2, {"strategy": "shell-scaffold"}),
    "lattice_pitch_um": (6.0, {"strategy": "woodpile"}),
    "lattice_strut_height_um": (1.0, {"strategy": "woodpile"}),
    "lattice_strut_lines": (2, {"strategy": "woodpile"}),
    "lattice_stagger": (False, {"strategy": "woodpile"}),
    "gyroid_cell_um": (12.0, {"strategy": "gyroid"}),
    "gyroid_thickness_um": (2.0, {"strategy": "gyroid"}),
    "channel_block_size_um": ([50.0, 50.0, 10.0], {"strategy": "channels"}),
    "channel_margin_um": (4.0, {"strategy": "channels"}),
    "power_mw": ({"hatch": 15.0}, {}),
    "speed_um_s": ({"hatch": 60000.0}, {}),
    "depth_mode": ("linear", {"depth_slope_per_um": 0.01}),
    "attenuation_length_um": (50.0, DEPTH_EXP),
    "depth_slope_per_um": (0.02, {"depth_mode": "linear"}),
    "depth_table": ([[0.0, 1.0], [6.0, 1.5]], {"depth_mode": "table", "depth_table": [[0.0, 1.0], [6.0, 1.2]]}),
    "surface_z_um": (2.0, DEPTH_EXP),
    "power_field_path": (FIELD_FILE, {"power_field_voxel_um": [5.0, 5.0, 1.0]}),
    "power_field_voxel_um": ([3.0, 3.0, 1.0], FIELD),
    "power_field_origin_um": ([5.0, 0.0, 0.0], FIELD),
    "power_ramp_width_um": (4.0, {}),
    "power_ramp_min_factor": (0.5, RAMP),
    "power_ramp_voxel_um": (0.5, RAMP),
    "point_distance_um": (1.0, RAMP),
    "overlap_um": (4.0, BLOCKS),
    "shear_deg": (10.0, BLOCKS),
    "block_size_um": (20.0, {}),
    "placement": ("keep", {"allow_floating": True}),
    "allow_floating": (True, {"placement": "keep", "z_offset_um": 3.0}),
    "z_offset_um": (5.0, {}),
    "find_interface": ("once", BLOCKS),
    "focal_shift_factor": (1.3, {}),
    "tilt_correction": ("measure", PIEZO),
    "tilt_points": (3, dict(PIEZO, tilt_correction="measure")),
    "allow_power_clip": (True, CLIP),
    "power_levels": (4, DEPTH_EXP),
    "scale": ([1.5, 1.5, 1.2], {}),
    "order": ({"hatch": "inside-out"}, {}),
    "kind_order": (["hatch", "contour"], {}),
    "wall_um": (3.0, TREE),
    "closed_ends": (True, TREE),                  # sealed lumen: refused
    "voxel_lateral_um": (2.0, TREE),              # 4 µm lumens under 3 voxels: refused
    "voxel_axial_um": (3.0, TREE),                # under 2 axial voxels: refused
}


def disc_stl(folder):
    """``folder/disc.stl``: a 36 µm wide, 6 µm high disc lying 10 µm above z = 0 (rows near the rim are short)."""
    m = trimesh.creation.cylinder(radius=18.0, height=6.0, sections=48)
    m.apply_translation([40.0, 0.0, 13.0])
    m.export(folder / "disc.stl")
    return folder / "disc.stl"


@pytest.fixture(scope="module")
def part(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    disc_stl(d)
    (d / "tree.swc").write_text("1 3 0 0 10 3 -1\n2 3 20 0 10 3 1\n3 3 36 8 10 2 2\n4 3 36 -8 10 2 2\n")
    f = np.ones((8, 12, 12))
    f[:, :, 6:] = 0.8
    np.save(d / FIELD_FILE, f)
    from bioslicer.printers import printers_dir

    text = (printers_dir() / f"{PRINTER}.toml").read_text()
    (d / PIEZO["_printer"]).write_text(text.replace('scan_mode = "galvo"', 'scan_mode = "piezo"'))
    return d


def fingerprint(part, overrides, tag):
    """The job's program (comment lines dropped) and manifest facts, or the error text."""
    ov = {k: (str(part / v) if k == "power_field_path" else v) for k, v in overrides.items() if not k.startswith("_")}
    printer = part / overrides["_printer"] if "_printer" in overrides else PRINTER
    try:
        res = slice_to_job(part / overrides.get("_input", "disc.stl"), part / f"job_{tag}", printer=printer,
                           overrides=ov, preview=False, overwrite=True)
    except BioslicerError as exc:
        return ("error", str(exc))
    m = res.manifest
    prog = []
    for rel in m["program"]["files"]:
        text = (res.path / rel).read_text()
        prog.append("\n".join(ln for ln in text.splitlines() if not ln.startswith("%")))
    facts = {k: m.get(k) for k in ("counts", "bounds_um", "placement", "power_clip", "stitching", "plan")}
    return ("ok", tuple(prog), repr(facts))


def test_every_recipe_key_is_in_the_table():
    assert set(CHANGES) == {f.name for f in fields(Recipe)}


@pytest.mark.parametrize("key", sorted(CHANGES))
def test_recipe_key_has_an_effect(part, key):
    value, base = CHANGES[key]
    before = fingerprint(part, base, f"{key}_a")
    after = fingerprint(part, dict(base, **{key: value}), f"{key}_b")
    assert before[0] == "ok" or after[0] == "ok", (before, after)
    assert before != after, f"changing {key} to {value!r} changed neither the program nor the job"
