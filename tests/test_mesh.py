"""Mesh intake: formats, units, report, repair, refusals, the inspect command."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import trimesh

from bioslicer.errors import BioslicerError
from bioslicer.mesh import inspect_mesh, load_mesh, merge_vertices_exact, solid_from_trimesh
from bioslicer.slicing import layer_heights, slice_spans


def _box(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    b = trimesh.creation.box(extents=hi - lo)
    b.apply_translation((lo + hi) / 2)
    return b


def _write_3mf(path, m):
    verts = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in m.vertices.tolist())
    tris = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in m.faces)
    model = ('<?xml version="1.0" encoding="UTF-8"?>'
             '<model unit="micron" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
             f'<resources><object id="1" type="model"><mesh><vertices>{verts}</vertices>'
             f'<triangles>{tris}</triangles></mesh></object></resources>'
             '<build><item objectid="1" transform="1 0 0 0 1 0 0 0 1 10 0 0"/></build></model>')
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("3D/3dmodel.model", model)


@pytest.mark.parametrize("fmt", ["stl", "stl_ascii", "obj", "ply", "off", "glb", "3mf"])
def test_formats_load_the_same_solid(tmp_path, fmt):
    m = _box((0, 0, 0), (10, 20, 30))
    p = tmp_path / f"part.{fmt.split('_')[0]}"
    if fmt == "3mf":
        _write_3mf(p, m)
    else:
        data = m.export(file_type=fmt)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    s = load_mesh(p)
    assert s.faces.shape == (12, 3) and s.vertices_um.shape == (8, 3)  # STL vertices merged
    assert s.volume_um3() == pytest.approx(6000.0)
    assert s.name == p.name and len(s.sha256) == 64 and s.report["watertight"]
    shift = 10.0 if fmt == "3mf" else 0.0  # the 3MF build item moves the part by 10 in x
    np.testing.assert_allclose(s.bounds_um, [[shift, 0, 0], [10 + shift, 20, 30]])


def test_units_scale_to_um(tmp_path):
    p = tmp_path / "mm.stl"
    p.write_bytes(_box((0, 0, 0), (0.1, 0.2, 0.05)).export(file_type="stl"))
    s = load_mesh(p, units="mm")
    np.testing.assert_allclose(s.bounds_um[1] - s.bounds_um[0], [100, 200, 50])
    assert s.units == "mm"
    s_nm = load_mesh(p, units="nm")
    np.testing.assert_allclose(s_nm.size_um, [1e-4, 2e-4, 5e-5])


def test_implausible_size_suggests_units(tmp_path):
    p = tmp_path / "tiny.stl"
    p.write_bytes(_box((0, 0, 0), (0.1, 0.1, 0.05)).export(file_type="stl"))  # a 0.1 mm part saved in mm
    with pytest.raises(BioslicerError, match=r"0\.1 x 0\.1 x 0\.05 µm.*--units mm"):
        load_mesh(p, printer="nanoscribe-gt2-25x")
    assert load_mesh(p, units="mm", printer="nanoscribe-gt2-25x").size_um[0] == pytest.approx(100)
    big = tmp_path / "big.stl"
    big.write_bytes(_box((0, 0, 0), (200000, 10, 10)).export(file_type="stl"))
    with pytest.raises(BioslicerError, match="larger than the travel"):
        load_mesh(big, printer="nanoscribe-gt2-25x")


def test_unreadable_and_empty_files(tmp_path):
    with pytest.raises(BioslicerError, match="not found"):
        load_mesh(tmp_path / "missing.stl")
    e = tmp_path / "empty.stl"
    e.write_bytes(b"")
    with pytest.raises(BioslicerError, match="empty"):
        load_mesh(e)
    g = tmp_path / "garbage.ply"
    g.write_bytes(b"this is not a ply file at all")
    with pytest.raises(BioslicerError):
        load_mesh(g)
    x = tmp_path / "part.xyz1"
    x.write_text("1 2 3")
    with pytest.raises(BioslicerError, match="unknown mesh format"):
        load_mesh(x)


def _open_box():
    m = _box((0, 0, 0), (10, 10, 10))
    top = np.flatnonzero(m.triangles_center[:, 2] == 10)
    keep = np.setdiff1d(np.arange(len(m.faces)), top)
    return trimesh.Trimesh(m.vertices, m.faces[keep], process=False)


def test_open_mesh_is_refused_with_hole_count_and_location(tmp_path):
    p = tmp_path / "open.stl"
    p.write_bytes(_open_box().export(file_type="stl"))
    with pytest.raises(BioslicerError) as exc:
        load_mesh(p)
    msg = str(exc.value)
    assert "open" in msg and "1 hole(s)" in msg and "(5, 5, 10) µm" in msg and "--repair" in msg
    assert "\n" not in msg
    rep = inspect_mesh(p)
    assert rep["holes"] == 1 and rep["boundary_edges"] == 4 and not rep["watertight"] and not rep["ok"]
    assert rep["hole_loops"][0]["centroid_um"] == [5, 5, 10]
    # repair closes it and the solid slices to the full box
    s = load_mesh(p, repair=True)
    assert s.report["watertight"] and s.report["repair"]["filled_holes"] == 1
    sp = slice_spans(s, layer_heights(0, 10, 1.0), 0.5)
    assert sp.volume_um3(1.0) == pytest.approx(1000.0)


def test_cli_open_mesh_check_exits_1_and_inspect_exits_0(tmp_path):
    p = tmp_path / "open.stl"
    p.write_bytes(_open_box().export(file_type="stl"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "bioslicer", "inspect", str(p), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    r = run()
    assert r.returncode == 0 and "NOT sliceable" in r.stdout and "hole" in r.stdout
    r = run("--check")
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: open.stl is open and cannot define a solid: 1 hole(s)")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    out = tmp_path / "fixed.stl"
    r = run("--repair", "--json", "--out", str(out))
    assert r.returncode == 0
    rep = json.loads(r.stdout)
    assert rep["ok"] and rep["watertight"] and rep["repair"]["filled_holes"] == 1
    assert load_mesh(out).volume_um3() == pytest.approx(1000.0)


def test_report_counts_bodies_cavities_overlaps():
    outer = trimesh.creation.icosphere(3, radius=20.0)
    inner = trimesh.creation.icosphere(3, radius=10.0)
    inner.invert()
    t1 = trimesh.creation.cylinder(radius=3.0, height=30.0)
    t1.apply_translation((60, 0, 0))
    t2 = t1.copy()
    t2.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0], point=(60, 0, 0)))
    far = _box((100, 100, 100), (101, 101, 101))
    m = trimesh.util.concatenate([outer, inner, t1, t2, far])
    r = inspect_mesh(m)
    assert r["bodies"] == 5 and r["cavities"] == 1 and r["inverted_bodies"] == 0
    assert r["watertight"] and r["winding_consistent"] and r["ok"]
    assert [p[:2] for p in r["overlapping_pairs"]] == [[2, 3]]
    assert r["overlapping_pairs"][0][2] == pytest.approx(16 / 3 * 27, rel=0.05)  # Steinmetz solid
    assert r["triangles"] == len(m.faces)
    json.dumps(r)  # JSON-able


def test_report_degenerate_duplicate_inverted_and_repair():
    b = _box((0, 0, 0), (10, 10, 10))
    f = np.vstack([b.faces, b.faces[:2], [[0, 0, 1]]])
    m = trimesh.Trimesh(b.vertices, f, process=False)
    r = inspect_mesh(m)
    assert r["duplicate_faces"] == 2 and r["degenerate_faces"] == 1
    inv = _box((0, 0, 0), (10, 10, 10))
    inv.invert()
    r = inspect_mesh(inv)
    assert r["inverted_bodies"] == 1 and not r["ok"]
    with pytest.raises(BioslicerError, match="inside-out"):
        solid_from_trimesh(inv)
    s = solid_from_trimesh(inv, repair=True)
    assert s.volume_um3() == pytest.approx(1000.0)
    # a few faces flipped: winding inconsistent, repaired
    w = _box((0, 0, 0), (10, 10, 10))
    ff = w.faces.copy()
    ff[3] = ff[3][::-1]
    bad = trimesh.Trimesh(w.vertices, ff, process=False)
    r = inspect_mesh(bad)
    assert not r["winding_consistent"] and r["misoriented_edges"] > 0
    with pytest.raises(BioslicerError, match="inconsistently oriented"):
        solid_from_trimesh(bad)
    assert solid_from_trimesh(bad, repair=True).volume_um3() == pytest.approx(1000.0)


def test_repair_keeps_cavities():
    outer = _box((0, 0, 0), (20, 20, 20))
    inner = _box((5, 5, 5), (15, 15, 15))
    inner.invert()
    s = solid_from_trimesh(trimesh.util.concatenate([outer, inner]), repair=True)
    assert s.volume_um3() == pytest.approx(7000.0)


def test_merge_vertices_exact_is_exact():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1e-12, 0, 0], [1, 0, 0.0]])
    f = np.array([[0, 1, 2], [3, 4, 2]])
    nv, nf = merge_vertices_exact(v, f)
    assert len(nv) == 4  # 1e-12 is not a duplicate; [1, 0, 0] is
    np.testing.assert_array_equal(nv[nf], v[f])
