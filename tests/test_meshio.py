"""Fast STL intake and exact vertex welding: same Solid as the trimesh path, clear refusals."""

import io
from pathlib import Path

import numpy as np
import pytest
import trimesh

from bioslicer.errors import BioslicerError
from bioslicer.mesh import load_mesh
from bioslicer.meshio import STL_RECORD, merge_exact, read_stl

MESHES = sorted((Path(__file__).resolve().parents[1] / "meshes").glob("*.stl"))


def _reference_merge(v, f):
    """The former numpy merge (np.unique over the vertex bytes, then first-use order)."""
    v = np.ascontiguousarray(v, dtype=np.float64) + 0.0
    _, first, inv = np.unique(v.view(np.dtype((np.void, 24))).ravel(), return_index=True, return_inverse=True)
    fu = inv.ravel()[f.ravel()]
    seen = fu[np.sort(np.unique(fu, return_index=True)[1])]
    remap = np.full(len(first), -1, np.int64)
    remap[seen] = np.arange(len(seen))
    return v[first[seen]], remap[fu].reshape(-1, 3)


def _trimesh_path(data: bytes):
    m = trimesh.load(io.BytesIO(data), file_type="stl", force="mesh", process=False)
    return _reference_merge(np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64))


def _binary_stl(tri, header=b"bioslicer test") -> bytes:
    tri = np.asarray(tri, np.float32).reshape(-1, 3, 3)
    rec = np.zeros(len(tri), STL_RECORD)
    rec["vertices"] = tri
    return header.ljust(80, b" ")[:80] + np.uint32(len(tri)).tobytes() + rec.tobytes()


def _ascii_stl(tri, newline="\n", upper=False) -> bytes:
    lines = ["solid part"]
    for t in np.asarray(tri, np.float64).reshape(-1, 3, 3):
        lines += ["facet normal 0 0 0", "  outer loop"]
        lines += [f"    vertex {x!r} {y!r} {z!r}" for x, y, z in t.tolist()]
        lines += ["  endloop", "endfacet"]
    lines.append("endsolid part")
    text = newline.join(lines) + newline
    return (text.upper() if upper else text).encode()


def _assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].dtype == np.float64 and a[1].dtype == np.int64


@pytest.mark.parametrize("path", MESHES, ids=[p.stem for p in MESHES])
def test_bundled_meshes_read_like_trimesh(path):
    data = path.read_bytes()
    _assert_same(read_stl(data), _trimesh_path(data))
    m = trimesh.load(io.BytesIO(data), file_type="stl", force="mesh", process=False)
    ascii_data = trimesh.exchange.stl.export_stl_ascii(m).encode()
    _assert_same(read_stl(ascii_data), _trimesh_path(ascii_data))


def test_hard_cases_match_trimesh():
    rng = np.random.default_rng(1)
    box = trimesh.creation.box(extents=(10, 20, 30))
    tri = box.vertices[box.faces]
    degenerate = np.array([[[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[5, 5, 5], [5, 5, 5], [5, 5, 5]]], float)
    signed_zero = np.array([[[-0.0, 0, 0], [0, 1, 0], [0, 0, -0.0]]])
    tri = np.concatenate([tri, tri[:3], degenerate, signed_zero, tri[::-1, ::-1]])  # duplicated and flipped faces
    tri = tri + rng.integers(0, 2, tri.shape) * 1e-6  # some vertices differ in the last bits only
    as32 = np.asarray(tri, np.float32).astype(np.float64) + 0.0
    for data, corners in ((_binary_stl(tri), as32), (_binary_stl(tri, header=b"solid but binary"), as32),
                          (_ascii_stl(tri), tri + 0.0), (_ascii_stl(tri, "\r\n", upper=True), tri + 0.0)):
        v, f = read_stl(data)
        _assert_same((v, f), _trimesh_path(data))
        np.testing.assert_array_equal(v[f], corners)
    assert len(v) < 3 * len(tri)  # duplicates were welded


def test_multi_solid_ascii_is_read_in_file_order():
    a = trimesh.creation.box(extents=(1, 1, 1))
    b = trimesh.creation.box(extents=(1, 1, 1))
    b.apply_translation((5, 0, 0))
    data = _ascii_stl(a.vertices[a.faces]) + _ascii_stl(b.vertices[b.faces]).replace(b"part", b"second")
    v, f = read_stl(data)
    assert f.shape == (24, 3) and v.shape == (16, 3)
    _assert_same((v, f), _trimesh_path(data))


def test_merge_exact_is_exact_and_order_free():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(5000, 3))
    v = base[rng.integers(0, 5000, 40000)]  # many exact duplicates
    v[::7] = np.nextafter(v[::7], np.inf)    # neighbours one ulp away stay apart
    f = rng.integers(0, len(v), (30000, 3))
    got = merge_exact(v, f)
    _assert_same(got, _reference_merge(v, f))
    perm = rng.permutation(len(v))  # the vertex array order does not matter, only the faces
    inv = np.argsort(perm)
    _assert_same(merge_exact(v[perm], inv[f]), got)
    with pytest.raises(BioslicerError, match="missing vertices"):
        merge_exact(v, np.array([[0, 1, len(v)]]))


def test_refusals(tmp_path):
    tri = trimesh.creation.box(extents=(1, 2, 3)).triangles
    good = _binary_stl(tri)
    with pytest.raises(BioslicerError, match=r"header says 12 triangles \(684 bytes\) but the file has 634 bytes"):
        read_stl(good[:-50])
    with pytest.raises(BioslicerError, match="header says 12 triangles"):
        read_stl(good + b"\0")
    with pytest.raises(BioslicerError, match="shorter than a binary STL header"):
        read_stl(b"abc")
    lines = _ascii_stl(tri).split(b"\n")   # line 4 is the first 'vertex' line

    def edited(i, new):
        return b"\n".join(lines[:i - 1] + [new] + lines[i:])

    with pytest.raises(BioslicerError, match="line 5 has 2 numbers"):
        read_stl(edited(5, b"vertex 1 2"))
    with pytest.raises(BioslicerError, match="line 4 has 4 numbers"):
        read_stl(edited(4, b"  vertex 1 2 3 4"))
    with pytest.raises(BioslicerError, match="line 6 has a vertex coordinate that is not a number"):
        read_stl(edited(6, b"vertex 1 abc 3"))
    with pytest.raises(BioslicerError, match=r"two 'vertex' keywords on one line \(line 5\)"):
        read_stl(b"\n".join(lines[:4] + [b"vertex 1 2 3 vertex 4 5 6"] + lines[6:]))
    with pytest.raises(BioslicerError, match="35 vertex lines, not 3 per facet"):
        read_stl(edited(4, b"vortex 1 2 3"))
    # through load_mesh: NaN coordinates, no triangles, empty file
    nan = tri.copy()
    nan[3, 1, 2] = np.nan
    (tmp_path / "nan.stl").write_bytes(_binary_stl(nan))
    with pytest.raises(BioslicerError, match="not finite"):
        load_mesh(tmp_path / "nan.stl")
    (tmp_path / "zero.stl").write_bytes(_binary_stl(np.zeros((0, 3, 3))))
    with pytest.raises(BioslicerError, match="no triangles"):
        load_mesh(tmp_path / "zero.stl")
    (tmp_path / "zero_ascii.stl").write_bytes(b"solid empty\nendsolid empty\n")
    with pytest.raises(BioslicerError, match="no triangles"):
        load_mesh(tmp_path / "zero_ascii.stl")
    (tmp_path / "empty.stl").write_bytes(b"")
    with pytest.raises(BioslicerError, match="empty"):
        load_mesh(tmp_path / "empty.stl")


def test_solid_equals_the_trimesh_path_in_mm(tmp_path):
    p = tmp_path / "part.stl"
    p.write_bytes(MESHES[0].read_bytes())
    s = load_mesh(p, units="mm")
    v, f = _trimesh_path(p.read_bytes())
    v, f = _reference_merge(v * 1000.0, f)
    np.testing.assert_array_equal(s.vertices_um, v)
    np.testing.assert_array_equal(s.faces, f.astype(np.int32))


def test_analysis_helpers_match_the_plain_numpy_formulas():
    from bioslicer.mesh import _count_duplicate_faces, _edges, _face_signed_volumes

    rng = np.random.default_rng(3)
    v = rng.normal(size=(300, 3)) * 100
    f = rng.integers(0, 300, (2000, 3))
    f[100:140] = f[:40][:, [1, 2, 0]]   # 40 duplicates (rotated)
    f[200:210] = f[50:60][:, ::-1]      # 10 duplicates (flipped)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cr = np.cross(b, c)
    np.testing.assert_array_equal(_face_signed_volumes(v, f),
                                  ((a[:, 0] * cr[:, 0] + a[:, 2] * cr[:, 2]) + a[:, 1] * cr[:, 1]) / 6.0)
    np.testing.assert_array_equal(_face_signed_volumes(v, f.astype(np.int32)), _face_signed_volumes(v, f))
    assert _face_signed_volumes(v, f[:0]).shape == (0,)
    n_dup = len(f) - len(np.unique(np.sort(f, axis=1), axis=0))
    assert n_dup >= 50
    assert _count_duplicate_faces(f, 300) == n_dup == _count_duplicate_faces(f, 1 << 22)  # both key paths
    d, ukey, dkey = _edges(f, 300)
    np.testing.assert_array_equal(d, np.stack([f, np.roll(f, -1, axis=1)], axis=2).reshape(-1, 2))
    np.testing.assert_array_equal(ukey, d.min(axis=1) * 300 + d.max(axis=1))
    np.testing.assert_array_equal(dkey, d[:, 0] * 300 + d[:, 1])
