"""Touching shells, repeated shells and a shell through itself (issue 22), on meshes built in
code (tests/hard_meshes.py) with exactly known volumes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from bioslicer import samples
from bioslicer.cli import main
from bioslicer.errors import BioslicerError
from bioslicer.mesh import inspect_mesh, load_mesh, repair_arrays
from bioslicer.slicing import layer_heights, slice_spans

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hard_meshes as H  # noqa: E402


def write_stl(path: Path, v, f) -> Path:
    with np.errstate(all="ignore"):
        path.write_bytes(samples.to_stl_bytes(trimesh.Trimesh(v, f, process=False)))
    return path


def sliced_volume(solid, dz=1.0, dy=0.5) -> float:
    b = solid.bounds_um
    z = layer_heights(b[0, 2], b[1, 2], dz)
    return slice_spans(solid, z, dy, row_offset_um=dy / 2).volume_um3(dz)


def built(factory, name: str, build):
    """(path of the STL file, exact volume) of a mesh from hard_meshes."""
    v, f, vol = build()
    return write_stl(factory.mktemp(name) / f"{name}.stl", v, f), vol


def _fixture(name: str, build):
    @pytest.fixture(scope="module", name=name)
    def fx(tmp_path_factory):
        return built(tmp_path_factory, name, build)
    return fx


tree_fixture = _fixture("tree", H.joint_tree)
eight_fixture = _fixture("eight", H.figure_eight)


def test_touching_shells_with_repeated_joint_sphere_are_ok(tree):
    path, vol = tree
    rep = inspect_mesh(path)
    assert rep["ok"] and rep["winding_consistent"] and rep["problems"] == [
        "792 non-manifold edges (shared by more than two faces)",
        "1 shell(s) repeated face for face (printed once)",
        "528 duplicate faces"]
    # one sphere (its two copies are one shell here) and two tubes
    assert rep["bodies"] == 3 and rep["duplicate_shells"] == 1 and not rep["self_intersecting"]
    sphere = 4 / 3 * np.pi * 50 ** 3
    v = sorted(rep["body_volumes_um3"])
    assert v[0] == pytest.approx(sphere, rel=0.03) and v[1] == pytest.approx(v[2], rel=1e-12)


@pytest.mark.parametrize("repair", [False, True])
def test_touching_shells_print_as_their_union(tree, repair):
    path, vol = tree
    solid = load_mesh(path, repair=repair)
    assert solid.fill_rule == "positive"
    # the sphere's second copy doubles the winding number inside it, which prints once
    assert sliced_volume(solid) == pytest.approx(vol, rel=0.01)


def test_repeated_shell_prints_once(tmp_path):
    v, f, vol = H.box((0, 0, 0), (10, 10, 10))
    path = write_stl(tmp_path / "twice.stl", np.concatenate([v, v]), np.concatenate([f, f + len(v)]))
    rep = inspect_mesh(path)
    assert rep["ok"] and rep["bodies"] == 1 and rep["duplicate_shells"] == 1
    assert sliced_volume(load_mesh(path)) == pytest.approx(vol, abs=1e-9)
    fixed = load_mesh(path, repair=True)
    assert len(fixed.faces) == 12 and fixed.report["repair"]["dropped_duplicate_faces"] == 12


def test_boxes_touching_face_to_face(tmp_path):
    """Each box keeps its own face on the shared wall (opposite orientations): balanced edges."""
    a = trimesh.creation.box(bounds=[[0, 0, 0], [10, 10, 10]])
    b = trimesh.creation.box(bounds=[[10, 0, 0], [20, 10, 10]])
    m = trimesh.util.concatenate([a, b])
    path = write_stl(tmp_path / "pair.stl", m.vertices, m.faces)
    rep = inspect_mesh(path)
    assert rep["ok"] and rep["winding_consistent"]
    assert sliced_volume(load_mesh(path)) == pytest.approx(2000.0, abs=1e-9)
    fixed = load_mesh(path, repair=True)
    assert fixed.report["winding_consistent"] and fixed.report["closed"]
    assert sliced_volume(fixed) == pytest.approx(2000.0, rel=1e-9)


def test_repair_drops_a_wall_shared_face_for_face():
    """Two boxes whose shared wall uses the same two triangles, once each way: repair removes
    both (they cancel), leaving one closed 20 x 10 x 10 box."""
    a = trimesh.creation.box(bounds=[[0, 0, 0], [10, 10, 10]])
    b = a.copy()
    b.vertices[:, 0] = 20.0 - b.vertices[:, 0]            # mirror: the x = 10 wall uses the same triangles
    b.invert()
    v, f = np.concatenate([a.vertices, b.vertices]), np.concatenate([a.faces, b.faces + len(a.vertices)])
    from bioslicer.mesh import analyse, merge_vertices_exact

    v, f = merge_vertices_exact(v, f)
    assert analyse(v, f)["winding_consistent"]
    v2, f2, actions = repair_arrays(v, f)
    assert actions["dropped_duplicate_faces"] == 4 and len(f2) == 20
    rep = analyse(v2, f2)
    assert rep["closed"] and rep["bodies"] == 1 and rep["volume_um3"] == pytest.approx(2000.0)


def test_self_intersecting_shell_is_reported(eight):
    path, vol = eight
    rep = inspect_mesh(path)
    assert not rep["ok"] and rep["self_intersecting"] and rep["bodies"] == 1
    assert abs(rep["volume_um3"]) < 1e-6 * vol               # the halves cancel
    assert rep["negative_winding_um3"] == pytest.approx(vol / 2, rel=0.05)
    assert any(p.startswith("self-intersecting surface") for p in rep["problems"])


def test_self_intersecting_shell_refused_then_repaired(eight):
    path, vol = eight
    with pytest.raises(BioslicerError, match=r"self-intersecting surface.*retry with --repair to print every region"):
        load_mesh(path)
    solid = load_mesh(path, repair=True)
    assert solid.fill_rule == "nonzero" and solid.report["repair"]["fill_rule"] == "nonzero"
    assert sliced_volume(solid, dz=1.0, dy=0.25) == pytest.approx(vol, rel=0.02)   # both lobes


def test_cli_slice_of_self_intersecting_shell_is_one_line(eight, tmp_path, capsys):
    path, _ = eight
    assert main(["slice", str(path), "-o", str(tmp_path / "job")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: eight.stl has a self-intersecting surface") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    assert main(["inspect", str(path)]) != 0 or "self-intersecting" in capsys.readouterr().out


def test_error_does_not_suggest_repair_after_repair():
    from bioslicer.mesh import _blocking

    rep = {"triangles": 4, "boundary_edges": 0, "winding_consistent": False, "misoriented_edges": 3,
           "inverted_bodies": 0, "file": "x.stl"}
    assert _blocking(rep).endswith("retry with --repair")
    rep["repair"] = {"rewound_faces": 2}
    assert "--repair could not fix them" in _blocking(rep) and not _blocking(rep).endswith("--repair")
