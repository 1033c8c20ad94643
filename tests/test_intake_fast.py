"""The fast intake analysis (issue 20): Numba edge table, face groups, shells by union-find, body
statistics, and the sampled overlap screen, each checked against a plain numpy formula or the
exact manifold3d test on small meshes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from bioslicer import mesh as M
from bioslicer.kernel.meshops import body_stats, edge_table, face_groups


def _cat(parts):
    vs, fs, k = [], [], 0
    for v, f in parts:
        vs.append(np.asarray(v, float))
        fs.append(np.asarray(f, np.int64) + k)
        k += len(v)
    return M.merge_vertices_exact(np.concatenate(vs), np.concatenate(fs))


def _sphere(center=(0, 0, 0), r=10.0, sub=3):
    s = trimesh.creation.icosphere(sub, r)
    return s.vertices + center, s.faces


def _box(lo, hi):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    b = trimesh.creation.box(extents=hi - lo)
    return b.vertices + (lo + hi) / 2, b.faces


def _ell(offset=(0.0, 0.0, 0.0)):
    """An L-shaped prism around the corner of the box (0, 0, 0)..(10, 10, 10) (moved by ``offset``):
    it touches the box on two faces and their bounding boxes overlap."""
    from shapely.geometry import Polygon

    m = trimesh.creation.extrude_polygon(Polygon([(10, 0), (20, 0), (20, 20), (0, 20), (0, 10), (10, 10)]), 10.0)
    return m.vertices + offset, m.faces


def _random_faces(seed=3, n=300, m=2000):
    rng = np.random.default_rng(seed)
    f = rng.integers(0, n, (m, 3))
    f[100:140] = f[:40][:, [1, 2, 0]]   # repeated, same cyclic order
    f[200:210] = f[50:60][:, ::-1]      # repeated, reversed
    return f


def test_edge_table_matches_sorted_keys():
    n = 300
    f = _random_faces(n=n)
    eid, uses, balance = edge_table(np.ascontiguousarray(f), n)
    d = np.stack([f, np.roll(f, -1, axis=1)], axis=2).reshape(-1, 2)
    key = d.min(axis=1) * n + d.max(axis=1)
    uniq, first, inv, cnt = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    # the same grouping, numbered by first use
    order = np.argsort(first)
    ref_id = np.empty(len(uniq), np.int64)
    ref_id[order] = np.arange(len(uniq))
    np.testing.assert_array_equal(eid, ref_id[inv])
    np.testing.assert_array_equal(uses, cnt[order])
    bal = np.bincount(inv, np.where(d[:, 0] < d[:, 1], 1, -1), minlength=len(uniq)).astype(np.int64)
    np.testing.assert_array_equal(balance, bal[order])


def test_face_groups_match_lexsort():
    f = _random_faces()
    rep, n_dup = face_groups(np.ascontiguousarray(f))
    k = np.argmin(f, axis=1)
    rows = np.arange(len(f))
    g = np.stack([f[rows, k], f[rows, (k + 1) % 3], f[rows, (k + 2) % 3]], axis=1)
    for i in range(len(f)):   # smallest face index with the same rotated triple
        assert rep[i] == np.flatnonzero(np.all(g == g[i], axis=1))[0]
    assert np.count_nonzero(rep != rows) >= 40
    assert n_dup == len(f) - len(np.unique(np.sort(f, axis=1), axis=0)) >= 50
    assert M._count_duplicate_faces(f, 300) == n_dup


def test_shells_and_body_stats_of_shuffled_spheres():
    parts = [_sphere((30 * i, 0, 0), 5.0 + i, 2) for i in range(4)]
    v, f = _cat(parts)
    truth = np.repeat(np.arange(4), [len(p[1]) for p in parts])
    perm = np.random.default_rng(1).permutation(len(f))
    f, truth = f[perm], truth[perm]
    nb, body, is_rep = M._shells(v, f, len(v))
    assert nb == 4 and is_rep.all()
    # shells numbered by first face, and exactly the spheres
    first_seen = truth[np.sort(np.unique(truth, return_index=True)[1])]
    np.testing.assert_array_equal(body, np.argsort(first_seen)[truth])
    uses, _, eid = M._edge_balance(f, len(v))
    fvol = M._face_signed_volumes(v, f)
    lo, hi, vol, open_, fewest = body_stats(v, f, body, nb, is_rep, fvol, eid, uses, np.ones(len(f), np.int64))
    for b in range(nb):
        p = v[f[body == b]].reshape(-1, 3)
        np.testing.assert_array_equal(lo[b], p.min(axis=0))
        np.testing.assert_array_equal(hi[b], p.max(axis=0))
    np.testing.assert_array_equal(vol, np.bincount(body, fvol, minlength=nb))
    assert not open_.any() and (fewest == 1).all()


def _pairs(v, f):
    """(overlaps from the screen, from the exact test) over every candidate pair."""
    r = M.analyse(v, f, check_overlaps=False)
    nb, body, is_rep = M._shells(v, f, len(v))
    uses, _, eid = M._edge_balance(f, len(v))
    fvol = M._face_signed_volumes(v, f)
    lo, hi, vols, open_, _ = body_stats(v, f, body, nb, is_rep, fvol, eid, uses, np.ones(len(f), np.int64))
    screened, checked, total = M._overlaps(v, f, body, is_rep, vols, ~open_, lo, hi)
    faces_of = lambda b: np.flatnonzero(body == b)   # noqa: E731
    cand = [(i, j) for i in range(nb) for j in range(i + 1, nb)
            if np.all((lo[i] < hi[j]) & (lo[j] < hi[i]))]
    exact = M._overlaps_exact(v, f, faces_of, cand, vols)
    assert r["bodies"] == nb and checked == total == len(cand)
    return {(i, j): vol for i, j, vol in screened}, exact


CASES = {
    "overlapping spheres": ([_sphere(), _sphere((15, 0, 0))], True),
    "nested spheres": ([_sphere(), _sphere(r=4.0)], True),
    "spheres with overlapping boxes only": ([_sphere(), _sphere((17, 17, 0))], False),
    "boxes sharing a face": ([_box((0, 0, 0), (10, 10, 10)), _box((10, 0, 0), (20, 10, 10))], False),
    "box in the corner of an L, touching two faces": ([_box((0, 0, 0), (10, 10, 10)), _ell()], False),
    "box in the corner of an L, 1 µm into it": ([_box((0, 0, 0), (10, 10, 10)), _ell((-1.0, 0, 0))], True),
    "boxes sharing an edge": ([_box((0, 0, 0), (10, 10, 10)), _box((10, 10, 0), (20, 20, 10))], False),
    "boxes overlapping by 1e-4": ([_box((0, 0, 0), (10, 10, 10)), _box((9.9999, 0, 0), (20, 10, 10))], True),
    "boxes overlapping by 1e-6 (below the threshold)": ([_box((0, 0, 0), (10, 10, 10)),
                                                         _box((9.999999, 0, 0), (20, 10, 10))], False),
    "boxes overlapping by a thin slab": ([_box((0, 0, 0), (10, 10, 10)), _box((9.9, 3, 0), (20, 13, 10))], True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_overlap_screen_gives_the_exact_verdicts(case):
    parts, overlapping = CASES[case]
    v, f = _cat(parts)
    screened, exact = _pairs(v, f)
    assert sorted(screened) == sorted(exact) == ([(0, 1)] if overlapping else [])
    for p, vol in screened.items():   # screened volumes are estimates (a row spacing at the edges)
        assert vol == pytest.approx(exact[p], rel=0.05)


def test_overlap_screen_skips_the_boolean_only_for_clear_overlaps(monkeypatch):
    calls = []
    real = M._overlaps_exact
    monkeypatch.setattr(M, "_overlaps_exact", lambda v, f, fo, pairs, vols: calls.append(pairs) or real(v, f, fo, pairs, vols))
    # spheres 0 and 1 overlap clearly; box 2 touches the L 3 on two faces (their boxes overlap)
    v, f = _cat([_sphere(), _sphere((15, 0, 0)), _box((50, 0, 0), (60, 10, 10)), _ell((50, 0, 0))])
    r = M.analyse(v, f)
    assert [p[:2] for p in r["overlapping_pairs"]] == [[0, 1]]
    assert calls == [[(2, 3)]]
    # the estimate of a lens of two spheres r = 10, 15 apart: pi (4r + d)(2r - d)^2 / 12 of the facets
    lens = np.pi * (40 + 15) * (20 - 15) ** 2 / 12
    assert r["overlapping_pairs"][0][2] == pytest.approx(lens, rel=0.05)


def test_inspect_keeps_the_solid_load_mesh_gives(tmp_path):
    v, f = _cat([_sphere(), _sphere((15, 0, 0))])
    p = tmp_path / "two.stl"
    p.write_bytes(trimesh.Trimesh(v, f, process=False).export(file_type="stl"))
    rep, solid = M.inspect_mesh(p, keep_solid=True)
    ref = M.load_mesh(p)
    assert rep["ok"] and rep == M.inspect_mesh(p)
    np.testing.assert_array_equal(solid.vertices_um, ref.vertices_um)
    np.testing.assert_array_equal(solid.faces, ref.faces)
    assert (solid.name, solid.sha256, solid.fill_rule) == (ref.name, ref.sha256, ref.fill_rule)
    p.write_bytes(trimesh.Trimesh(v, f[3:], process=False).export(file_type="stl"))
    rep, solid = M.inspect_mesh(p, keep_solid=True)
    assert not rep["ok"] and solid is None


def test_winding_number_kernel_matches_the_numpy_formula():
    v, f = _sphere(r=10.0, sub=2)
    f = np.asarray(f, np.int64)
    pts = np.array([[0, 0, 0], [3, -2, 1], [9.5, 0, 0], [12, 0, 0], [40, 5, -3]], float)
    a0, b0, c0 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    ref = []
    for p in pts:
        a, b, c = a0 - p, b0 - p, c0 - p
        la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
        num = np.einsum("ij,ij->i", a, np.cross(b, c))
        den = la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la \
            + np.einsum("ij,ij->i", c, a) * lb
        ref.append(np.arctan2(num, den).sum() / (2 * np.pi))
    w = M._winding_number(pts, v, f)
    np.testing.assert_allclose(w, ref, atol=1e-9)
    np.testing.assert_allclose(w, [1, 1, 1, 0, 0], atol=1e-9)
    half = np.arange(0, len(f), 2)   # a subset of the faces: the same as those faces alone
    np.testing.assert_array_equal(M._winding_number(pts, v, f, half), M._winding_number(pts, v, f[half]))


def test_cavities_inside_solids_and_inside_out_bodies():
    """Two solid spheres with three inward shells: two inside the solids (cavities, one in each),
    one outside both (inside-out), and the report of the repair flips only that one."""
    inner = lambda c: (_sphere(c, 3.0, 2)[0], _sphere(c, 3.0, 2)[1][:, ::-1])   # noqa: E731
    v, f = _cat([_sphere((0, 0, 0)), _sphere((40, 0, 0)), inner((2, 0, 0)), inner((40, 3, 0)), inner((20, 30, 0))])
    r = M.analyse(v, f)
    assert r["bodies"] == 5 and r["cavities"] == 2 and r["inverted_body_ids"] == [4]
    v2, f2, actions = M.repair_arrays(v, f)
    assert actions["flipped_bodies"] == 1
    r2 = M.analyse(v2, f2)
    assert r2["cavities"] == 2 and r2["inverted_bodies"] == 0
