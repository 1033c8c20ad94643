"""Mesh intake: load (trimesh), units, inspect report, repair; the :class:`Solid` handed to the kernel.

A :class:`Solid` is a triangle mesh in µm whose exact duplicate vertices are merged (so that
triangles sharing an edge share its vertex indices, which the kernel relies on for
watertight slicing) and whose faces are oriented with outward normals around material.
Several closed shells may overlap (they print as their union); an inward-facing shell
inside another one is a cavity.

The checks run in single passes over the faces (Numba hash tables for edges and repeated
faces, union-find for shells, :mod:`bioslicer.kernel.meshops`), the overlap and self-intersection
checks on coarse grids of scan rows (the slicing kernel), with manifold3d only for the pairs of
bodies the sampled test cannot decide; a report on 2.6 M faces takes a few seconds.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BioslicerError
from .meshio import merge_exact, read_stl

UNITS_TO_UM = {"um": 1.0, "mm": 1000.0, "nm": 0.001}
FORMATS = ("stl", "obj", "ply", "off", "3mf", "glb")
MAX_FILL_HOLE_EDGES = 64       # --repair fills boundary loops with at most this many edges
MAX_OVERLAP_PAIRS = 200        # body pairs checked for overlap
OVERLAP_SAMPLES = 48           # layers and scan rows of the sampled overlap screen (each)
OVERLAP_SURE = 1e-3            # sampled overlap above this share of the smaller body: no exact test


# ============================================================================ Solid
@dataclass(eq=False)
class Solid:
    """A closed triangle mesh in µm, ready for the slicing kernel.

    Attributes
    ----------
    vertices_um : (n, 3) float64
        Merged vertices, µm.
    faces : (m, 3) int32
        Consistently oriented triangles (outward normals = material inside).
    name : str
        File name of the source mesh.
    sha256 : str
        SHA-256 of the source file bytes ("" if built in memory).
    units : str
        Units of the source file ('um', 'mm' or 'nm').
    report : dict
        The inspect report (see :func:`inspect_mesh`).
    fill_rule : 'positive' | 'nonzero'
        Where the slicer puts material: winding number > 0 (default: overlapping shells unite,
        inward shells are cavities), or != 0 (set by ``--repair`` for a self-intersecting
        shell whose parts are inside-out).
    """

    vertices_um: np.ndarray
    faces: np.ndarray
    name: str = ""
    sha256: str = ""
    units: str = "um"
    report: dict = field(default_factory=dict)
    fill_rule: str = "positive"
    _bounds: tuple = field(default=(None, None), init=False, repr=False)

    def __post_init__(self) -> None:
        self.vertices_um = np.ascontiguousarray(self.vertices_um, dtype=np.float64).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32).reshape(-1, 3)

    @property
    def bounds_um(self) -> np.ndarray:
        """(2, 3) min / max corner, µm (computed once per vertex array: the stages ask often)."""
        v, b = self._bounds
        if v is not self.vertices_um:
            v = self.vertices_um
            b = np.array([v.min(axis=0), v.max(axis=0)]) if len(v) else np.zeros((2, 3))
            self._bounds = (v, b)
        return b.copy()

    @property
    def size_um(self) -> np.ndarray:
        b = self.bounds_um
        return b[1] - b[0]

    def volume_um3(self) -> float:
        """Signed enclosed volume (sum of signed tetrahedra), µm³."""
        return float(_face_signed_volumes(self.vertices_um, self.faces).sum())

    def to_trimesh(self):
        """A ``trimesh.Trimesh`` of the same vertices and faces (no processing)."""
        import trimesh

        return trimesh.Trimesh(self.vertices_um.copy(), self.faces.astype(np.int64), process=False)

    def scaled(self, factors) -> "Solid":
        """A copy scaled by ``factors`` (sx, sy, sz) > 0 about the origin (winding kept)."""
        return Solid(self.vertices_um * np.asarray(factors, dtype=np.float64).reshape(3), self.faces.copy(),
                     self.name, self.sha256, self.units, dict(self.report))

    def translated(self, offset_um) -> "Solid":
        """A copy moved by ``offset_um`` (3,), µm."""
        return Solid(self.vertices_um + np.asarray(offset_um, dtype=np.float64), self.faces.copy(), self.name,
                     self.sha256, self.units, dict(self.report), self.fill_rule)


# ============================================================================ reading
def _read_3mf(data: bytes):
    """Minimal 3MF reader (core spec: objects with meshes, build items with transforms).

    Used when trimesh cannot read 3MF (it needs lxml). Returns (vertices, faces) in file units.
    """
    import xml.etree.ElementTree as ET

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BioslicerError("not a 3MF file (not a zip archive); export the mesh again") from None
    names = [n for n in zf.namelist() if n.lower().endswith(".model")]
    if not names:
        raise BioslicerError("3MF file has no 3D model part; export the mesh again")
    objects: dict[str, tuple] = {}
    items = []
    for nm in sorted(names, key=lambda n: (n.lower() != "3d/3dmodel.model", n)):
        root = ET.fromstring(zf.read(nm))
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        for obj in root.iter(f"{ns}object"):
            mesh = obj.find(f"{ns}mesh")
            if mesh is None:
                comps = obj.find(f"{ns}components")
                if comps is not None:
                    objects[obj.get("id")] = ("components", [(c.get("objectid"), c.get("transform"))
                                                             for c in comps.iter(f"{ns}component")])
                continue
            verts = np.array([[float(v.get("x")), float(v.get("y")), float(v.get("z"))]
                              for v in mesh.iter(f"{ns}vertex")], dtype=np.float64).reshape(-1, 3)
            tris = np.array([[int(t.get("v1")), int(t.get("v2")), int(t.get("v3"))]
                             for t in mesh.iter(f"{ns}triangle")], dtype=np.int64).reshape(-1, 3)
            objects[obj.get("id")] = ("mesh", (verts, tris))
        if nm.lower().endswith("3dmodel.model") or not items:
            build = root.find(f"{ns}build")
            if build is not None:
                items = [(it.get("objectid"), it.get("transform")) for it in build.iter(f"{ns}item")]

    def mat(tr):
        m = np.eye(4)
        if tr:
            a = np.array([float(x) for x in tr.split()], dtype=np.float64).reshape(4, 3)
            m[:3, :3] = a[:3].T
            m[:3, 3] = a[3]
        return m

    vs, fs = [], []
    nv = 0

    def emit(oid, m, depth=0):
        nonlocal nv
        if oid not in objects or depth > 16:
            return
        kind, payload = objects[oid]
        if kind == "mesh":
            v, f = payload
            vs.append(v @ m[:3, :3].T + m[:3, 3])
            fs.append(f + nv)
            nv += len(v)
        else:
            for cid, ctr in payload:
                emit(cid, m @ mat(ctr), depth + 1)

    if not items:
        items = [(oid, None) for oid in objects]
    for oid, tr in items:
        emit(oid, mat(tr))
    if not vs:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(vs), np.concatenate(fs)


def _check_3mf_inflate(data: bytes, name: str) -> None:
    """Refuse a 3MF (a zip) whose parts inflate past :func:`bioslicer.fileio.zip_inflate_limit`
    before any reader inflates it (BioslicerError); a file that is no zip is left to the readers."""
    from .fileio import check_zip, zip_inflate_limit

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return
    with zf:
        check_zip(zf, zip_inflate_limit(len(data)), what=f"3MF file {name}")


def _read_file(path: Path) -> tuple[np.ndarray, np.ndarray, bytes]:
    """(vertices, faces, file bytes) of a mesh file, in file units, unprocessed."""
    if not path.is_file():
        raise BioslicerError(f"mesh file {path} not found; check the path")
    ext = path.suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise BioslicerError(f"cannot read {path.name}: unknown mesh format {ext!r}; use one of "
                             f"{', '.join(FORMATS).upper()}")
    data = path.read_bytes()
    if not data:
        raise BioslicerError(f"mesh file {path.name} is empty; export the mesh again")
    # non-finite coordinates make trimesh's normals warn; they are refused below in one line
    with np.errstate(all="ignore"):
        return _parse(path, ext, data)


def _reader_welds(path: Path) -> bool:
    """True when :func:`_read_file` returns this file's vertices welded exactly, in first-use order
    (the STL reader does)."""
    return path.suffix.lower() == ".stl"


def _parse(path: Path, ext: str, data: bytes) -> tuple[np.ndarray, np.ndarray, bytes]:
    if ext == "stl":  # numpy reader, exact duplicates welded (issue 20: no Python work per facet)
        v, f = read_stl(data, path.name)
    elif ext == "3mf":
        import trimesh

        _check_3mf_inflate(data, path.name)
        try:
            m = trimesh.load(io.BytesIO(data), file_type="3mf", force="mesh", process=False)
            v, f = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)
        except Exception:  # trimesh without lxml, or an exotic file: use the core-spec reader
            try:
                v, f = _read_3mf(data)
            except BioslicerError:
                raise
            except Exception as exc:  # malformed XML or numbers
                raise BioslicerError(f"cannot read {path.name} as 3MF: {str(exc).splitlines()[0]}; "
                                     "export it again") from None
    else:
        import trimesh

        try:
            m = trimesh.load(io.BytesIO(data), file_type=ext, force="mesh", process=False)
        except BioslicerError:
            raise
        except Exception as exc:  # trimesh raises many types for broken files
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BioslicerError(f"cannot read {path.name} as {ext.upper()}: {msg}; check the file or export it again") from None
        if isinstance(m, trimesh.Trimesh):
            v, f = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)
        else:
            v, f = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    v = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    f = np.asarray(f, dtype=np.int64).reshape(-1, 3)
    if len(f) == 0:
        raise BioslicerError(f"{path.name} holds no triangles; export the mesh as a triangle surface")
    if not np.all(np.isfinite(v)):
        raise BioslicerError(f"{path.name} has vertices that are not finite numbers; export the mesh again")
    if f.min() < 0 or f.max() >= len(v):
        raise BioslicerError(f"{path.name} has faces pointing at missing vertices; export the mesh again")
    return v, f, data


# ============================================================================ geometry helpers
def merge_vertices_exact(vertices: np.ndarray, faces: np.ndarray):
    """Merge bit-identical vertices and drop unused ones.

    Parameters
    ----------
    vertices : (n, 3) float64; faces : (m, 3) int

    Returns
    -------
    vertices : (n', 3) float64, in first-use order; faces : (m, 3) int64 re-indexed.
    """
    return merge_exact(vertices, faces)


def _face_signed_volumes(v, f):
    """(m,) signed volume of each face's tetrahedron with the origin, µm³ (Numba, one pass)."""
    from .kernel.meshops import face_signed_volumes

    f = np.ascontiguousarray(f, dtype=np.int64).reshape(-1, 3)
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise IndexError("faces point at missing vertices")
    return face_signed_volumes(np.ascontiguousarray(v, dtype=np.float64), f)


def _edges(f: np.ndarray, n: int):
    """Directed edges of faces and their undirected grouping.

    Returns
    -------
    d : (3 m, 2) int64 directed edges (a->b, b->c, c->a of each face); ukey, dkey : (3 m,) int64
        ``min * n + max`` and ``from * n + to`` of each edge.
    """
    d = np.empty((len(f), 3, 2), np.int64)
    d[:, :, 0] = f
    d[:, :2, 1] = f[:, 1:]
    d[:, 2, 1] = f[:, 0]
    d = d.reshape(-1, 2)
    a, b = d[:, 0], d[:, 1]
    ukey = np.minimum(a, b) * n + np.maximum(a, b)
    dkey = a * n + b
    return d, ukey, dkey


def _shells(v: np.ndarray, f: np.ndarray, n: int, edges=None, rep=None):
    """Split faces into closed shells by manifold connectivity (Numba hash tables, union-find).

    Two faces are in one shell when they meet at an edge used by exactly those two faces in
    opposite directions; at an edge used by more faces (shells that touch along it, or share
    whole faces) each face pairs with the next face around the edge on the side of its
    material (the side its normal points away from), so touching shells stay apart even where
    they share vertices, edges or faces. Faces repeated with the same orientation (a shell
    exported twice) are one face here: the copy belongs to the same shell.

    Parameters
    ----------
    v : (n, 3) float64; f : (m, 3) int64; n : number of vertices
    edges : the :func:`_edge_balance` of ``f``, optional (computed when None)
    rep : (m,) int64 representative face of each face (``face_groups``), optional

    Returns
    -------
    n_shells : int
    label : (m,) int64 shell of each face (stable: shells numbered by their first face)
    is_rep : (m,) bool, False for the repeated copies of a face
    """
    from .kernel.meshops import face_groups, rep_edge_uses, shell_labels

    m = len(f)
    if m == 0:
        return 0, np.zeros(0, np.int64), np.zeros(0, bool)
    f = np.ascontiguousarray(f, dtype=np.int64)
    if rep is None:
        rep = face_groups(f)[0]
    is_rep = rep == np.arange(m)
    uses, _, eid = _edge_balance(f, n) if edges is None else edges
    count, first, second = rep_edge_uses(eid, len(uses), is_rep)
    extra = _pairs_at_shared_edges(v, f, eid, count, is_rep)
    nb, label = shell_labels(f, count, first, second, extra, rep)
    return int(nb), label, is_rep


def _pairs_at_shared_edges(v, f, eid, count, is_rep):
    """(p, 2) face pairs joined at edges used by more than two representative faces.

    Exported shells keep their faces together, so first pair the uses in file order (1st with
    2nd, 3rd with 4th ...) where each pair runs both ways; edges where that fails pair by angle:
    each use running b -> a with the next one around the edge on the side of its material.
    """
    ks = np.flatnonzero((count[eid] > 2) & np.repeat(is_rep, 3))
    if len(ks) == 0:
        return np.zeros((0, 2), np.int64)
    face, j = ks // 3, ks % 3
    a, b, c = f[face, j], f[face, (j + 1) % 3], f[face, (j + 2) % 3]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    sign = np.where(a < b, 1, -1)
    key = eid[ks].astype(np.int64)
    o = np.lexsort((face, key))
    ks_ = key[o]
    start = np.ones(len(o), bool)
    start[1:] = ks_[1:] != ks_[:-1]
    gid = np.cumsum(start) - 1
    gstart = np.flatnonzero(start)
    cnt = np.diff(np.append(gstart, len(o)))[gid]
    pairs = []
    many = np.arange(len(o))
    rank = many - gstart[gid]                             # position of the use in its edge (file order)
    ev = many[((rank % 2) == 0) & (rank + 1 < cnt)]
    same = sign[o[ev]] == sign[o[ev + 1]]
    bad_edge = np.zeros(len(gstart), bool)
    bad_edge[gid[ev[same]]] = True
    bad_edge[gid[(cnt % 2) == 1]] = True                  # an odd number of uses: no pairing by order
    good = ev[~bad_edge[gid[ev]]]
    pairs.append(np.stack([face[o[good]], face[o[good + 1]]], axis=1))
    many = many[bad_edge[gid]]
    if len(many):
        u = o[many]
        g = gid[many]
        va, vb, vc = v[lo[u]], v[hi[u]], v[c[u]]
        d = vb - va
        d /= np.linalg.norm(d, axis=1)[:, None]
        w = vc - va
        w -= np.einsum("ij,ij->i", w, d)[:, None] * d
        gfirst = np.searchsorted(g, g, side="left")      # first use of the same edge: reference direction
        ref = w[gfirst]
        ref = ref / np.maximum(np.linalg.norm(ref, axis=1), 1e-300)[:, None]
        perp = np.cross(d, ref)
        theta = np.arctan2(np.einsum("ij,ij->i", w, perp), np.einsum("ij,ij->i", w, ref))
        oo = np.lexsort((-sign[u], theta, g))
        u, g = u[oo], g[oo]
        first_of_group = np.ones(len(u), bool)
        first_of_group[1:] = g[1:] != g[:-1]
        gfirst = np.flatnonzero(first_of_group)[np.cumsum(first_of_group) - 1]
        glast = np.append(np.flatnonzero(first_of_group)[1:], len(u)) - 1
        glast = glast[np.cumsum(first_of_group) - 1]
        nxt = np.where(np.arange(len(u)) == glast, gfirst, np.arange(len(u)) + 1)
        minus = sign[u] < 0
        okm = minus & (sign[u[nxt]] > 0)
        pairs.append(np.stack([face[u[okm]], face[u[nxt[okm]]]], axis=1))
    return np.ascontiguousarray(np.concatenate(pairs), dtype=np.int64)


def _edge_balance(f: np.ndarray, n: int):
    """(uses, balance, edge of each directed edge) per undirected edge (Numba hash, edges numbered
    by first use): how many faces use it, and uses low->high minus high->low. A closed,
    consistently oriented set of shells (touching or not) uses every edge as often in one
    direction as in the other (balance 0): the winding number is defined.

    Returns
    -------
    uses, balance : (E,) int32; eid : (3 m,) int32 edge of directed edge ``3 face + corner``.
    """
    from .kernel.meshops import edge_table

    eid, uses, balance = edge_table(np.ascontiguousarray(f, dtype=np.int64), int(n))
    return uses, balance, eid


def _negative_winding(v: np.ndarray, f: np.ndarray, solid_faces=None, n_layers: int = 48, n_rows: int = 96,
                      bounds=None):
    """Where the winding number is below zero outside every solid shell (inside-out material that
    is no cavity: a shell through itself), sampled on a coarse grid of scan rows.

    Parameters
    ----------
    v, f : the mesh (µm)
    solid_faces : (m,) bool, optional
        Faces of the shells with positive volume; negative winding inside them is overlapping
        cavities (allowed). None: all faces.
    bounds : (lo, hi) of ``v``, optional (computed when None)

    Returns
    -------
    (volume µm³, a point of it µm or None)
    """
    from types import SimpleNamespace

    from .slicing import slice_spans, span_boolean

    if len(f) == 0:
        return 0.0, None
    lo, hi = (v.min(axis=0), v.max(axis=0)) if bounds is None else bounds
    dz = (hi[2] - lo[2]) / n_layers
    dy = (hi[1] - lo[1]) / n_rows
    if not (dz > 0 and dy > 0):
        return 0.0, None
    z = lo[2] + dz * (np.arange(n_layers) + 0.5)
    off = lo[1] + dy / 2
    sl = lambda ff, rule: slice_spans(SimpleNamespace(vertices_um=v, faces=ff), z, dy,   # noqa: E731
                                      row_offset_um=off, fill_rule=rule)
    neg = sl(np.ascontiguousarray(f[:, ::-1], dtype=np.int32), "positive")   # winding < 0: reversed faces, > 0
    if neg.n_spans and solid_faces is not None and np.any(solid_faces):
        neg = span_boolean(neg, sl(f[solid_faces], "positive"), "difference")
    if neg.n_spans == 0:
        return 0.0, None
    x0, y0, x1, y1 = neg.span_xy()
    i = int(np.argmax(neg.span_lengths_um()))
    point = [float((x0[i] + x1[i]) / 2), float((y0[i] + y1[i]) / 2), float(neg.span_z()[i])]
    return float(neg.volume_um3(dz)), point


def _winding_number(points, v, f, faces=None):
    """Generalised winding number of the triangles ``f[faces]`` (all when None) at points (k, 3)
    (solid angle / 4π; Numba, no per-face temporaries)."""
    from .kernel.meshops import winding_numbers

    f = np.ascontiguousarray(f, dtype=np.int64).reshape(-1, 3)
    faces = np.arange(len(f)) if faces is None else np.ascontiguousarray(faces, dtype=np.int64)
    return winding_numbers(np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3),
                           np.ascontiguousarray(v, dtype=np.float64), f, faces)


def _cavities(v, f, body, cand, vols, blo, bhi) -> np.ndarray:
    """Which bodies of ``cand`` (negative volume) are cavities: the winding number of the solid
    (positive) bodies at the centroid of their first face is above 1/2. Only solid bodies whose box
    holds the point are summed (a closed body's winding number is 0 outside its box).

    Returns
    -------
    (len(cand),) bool
    """
    run = np.maximum.accumulate(body)
    first = np.flatnonzero(np.diff(run, prepend=-1) > 0)     # first face of every body (numbered so)
    order = np.argsort(body, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(body, minlength=len(vols)))])
    out = np.zeros(len(cand), bool)
    for q, b in enumerate(cand):
        p = v[f[first[b]]].mean(axis=0)
        near = np.flatnonzero((vols > 0) & np.all((blo <= p) & (p <= bhi), axis=1))
        if len(near):
            faces = np.concatenate([order[starts[c]:starts[c + 1]] for c in near])
            out[q] = _winding_number(p, v, f, faces)[0] > 0.5
    return out


def _boundary_loops(d, ukey, v):
    """Boundary edges (used by one face) grouped into loops, with size and location."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    uniq, inv, cnt = np.unique(ukey, return_inverse=True, return_counts=True)
    bmask = cnt[inv.ravel()] == 1
    be = d[bmask]
    if len(be) == 0:
        return be, []
    verts, local = np.unique(be.ravel(), return_inverse=True)
    local = local.reshape(-1, 2)
    nl = len(verts)
    g = coo_matrix((np.ones(len(local), np.int8), (local[:, 0], local[:, 1])), shape=(nl, nl))
    nc, lab = connected_components(g, directed=False)
    edge_lab = lab[local[:, 0]]
    n_edges = np.bincount(edge_lab, minlength=nc)
    p = v[verts]
    cnt_v = np.bincount(lab, minlength=nc).astype(np.float64)
    cen = np.column_stack([np.bincount(lab, p[:, i], minlength=nc) for i in range(3)]) / cnt_v[:, None]
    lo = np.full((nc, 3), np.inf)
    hi = np.full((nc, 3), -np.inf)
    np.minimum.at(lo, lab, p)
    np.maximum.at(hi, lab, p)
    order = np.lexsort((cen[:, 2], cen[:, 1], cen[:, 0], -n_edges))
    loops = [{"edges": int(n_edges[i]), "centroid_um": [float(x) for x in cen[i]],
              "bbox_um": [[float(x) for x in lo[i]], [float(x) for x in hi[i]]], "_label": int(i)}
             for i in order]
    return (be, lab, local, verts), loops


def _overlaps(v, f, body, is_rep, vols, closed_body, blo, bhi):
    """Pairs of (positive, closed) bodies whose volumes intersect.

    Candidates are the pairs whose bounding boxes overlap (at most :data:`MAX_OVERLAP_PAIRS`
    tested). Each is screened on a grid of scan rows through the overlap of the two boxes
    (:func:`_overlap_estimate`); a pair found overlapping there by far more than the threshold
    keeps that estimate as its volume. Every other pair (no or little sampled overlap: touching,
    nearly disjoint or thinly overlapping shells) gets the exact test, a manifold3d boolean, so
    the verdicts are those of the exact test.

    Parameters
    ----------
    v : (n, 3) float64 µm; f : (m, 3) int64; body : (m,) int64 body of each face
    is_rep : (m,) bool faces that are not repeated copies
    vols : (nb,) float64 body volumes, µm³; closed_body : (nb,) bool
    blo, bhi : (nb, 3) float64 body bounding boxes, µm

    Returns
    -------
    [(i, j, volume_um3)] overlapping pairs, pairs checked, candidate pairs
    """
    cand = np.flatnonzero((vols > 0) & closed_body)
    if len(cand) < 2:
        return [], 0, 0
    pairs = []
    if len(cand) <= 3000:
        L, H = blo[cand], bhi[cand]
        ov = np.all((L[:, None, :] < H[None, :, :]) & (L[None, :, :] < H[:, None, :]), axis=2)
        ii, jj = np.nonzero(np.triu(ov, 1))
        pairs = list(zip(cand[ii].tolist(), cand[jj].tolist()))
    total = len(pairs)
    pairs = pairs[:MAX_OVERLAP_PAIRS]
    if not pairs:
        return [], 0, total
    rep_faces = np.flatnonzero(is_rep)
    rb = body[rep_faces]
    face_order = rep_faces[np.argsort(rb, kind="stable")]
    starts = np.concatenate([[0], np.cumsum(np.bincount(rb, minlength=len(vols)))])
    faces_of = lambda b: face_order[starts[b]:starts[b + 1]]   # noqa: E731
    found: dict[tuple, float] = {}
    exact = []
    frames: dict = {}
    for i, j in pairs:
        est = _overlap_estimate(v, f, faces_of(i), faces_of(j), blo[[i, j]], bhi[[i, j]], frames=frames)
        if est is not None and est > OVERLAP_SURE * min(vols[i], vols[j]):
            found[(i, j)] = est
        else:
            exact.append((i, j))
    if exact:
        found.update(_overlaps_exact(v, f, faces_of, exact, vols))
    out = [(int(i), int(j), found[(i, j)]) for i, j in pairs if (i, j) in found]
    return out, len(pairs), total


def _overlaps_exact(v, f, faces_of, pairs, vols) -> dict:
    """{(i, j): volume µm³} of the pairs whose intersection (a manifold3d boolean) exceeds
    1e-6 of the smaller body; pairs manifold3d cannot take are skipped."""
    try:
        import manifold3d
    except ImportError:  # pragma: no cover
        return {}
    cache: dict[int, object] = {}

    def man(b):
        if b not in cache:
            used, loc = np.unique(f[faces_of(b)].ravel(), return_inverse=True)
            mesh = manifold3d.Mesh(vert_properties=np.ascontiguousarray(v[used], dtype=np.float32),
                                   tri_verts=np.ascontiguousarray(loc.reshape(-1, 3), dtype=np.uint32))
            cache[b] = manifold3d.Manifold(mesh)
        return cache[b]

    out = {}
    for i, j in pairs:
        try:
            vol = float((man(i) ^ man(j)).volume())
        except Exception:  # a body manifold3d cannot take: skip the pair
            continue
        if vol > 1e-6 * min(vols[i], vols[j]):
            out[(i, j)] = vol
    return out


def _overlap_estimate(v, f, fa, fb, lo2, hi2, n_samples: int = OVERLAP_SAMPLES, frames: dict | None = None):
    """Sampled volume common to two closed bodies (faces ``fa`` and ``fb`` of ``f``), µm³, or None.

    Both bodies are sliced (positive winding) on ``n_samples`` layers x ``n_samples`` scan rows
    through the overlap of their bounding boxes ``lo2``, ``hi2`` ((2, 3) µm), the spans
    intersected and summed (midpoint rule; exact along the rows). The rows run along the axis on
    which the overlap box covers the most of the bodies, in a frame rotated cyclically (so the
    winding keeps its sign), and only faces meeting the box across the rows are sliced. Returns
    None when the common material lies in fewer than two layers or two rows (a sheet thinner
    than the grid could be over- or under-counted there: the caller then tests exactly).
    ``frames`` caches the rotated copies of ``v`` between calls.
    """
    from types import SimpleNamespace

    from .kernel.meshops import faces_meeting_box
    from .slicing import slice_spans, span_boolean

    box_lo, box_hi = np.maximum(lo2[0], lo2[1]), np.minimum(hi2[0], hi2[1])
    ext = box_hi - box_lo
    if not np.all(ext > 0):
        return None
    size = np.maximum(np.maximum(hi2[0], hi2[1]) - np.minimum(lo2[0], lo2[1]), 1e-300)
    r = int(np.argmax(ext / size))                    # row axis
    perm = [(0, 1, 2), (1, 2, 0), (2, 0, 1)][r]       # cyclic: new x = row axis
    p_lo, p_hi, p_ext = box_lo[list(perm)], box_hi[list(perm)], ext[list(perm)]

    if frames is None:
        frames = {}
    if perm not in frames:
        frames[perm] = np.ascontiguousarray(v[:, list(perm)])

    def spans(faces):
        sel = faces_meeting_box(v, f, faces, box_lo, box_hi, perm[1], perm[2])
        sub = SimpleNamespace(vertices_um=frames[perm], faces=f[sel])
        dy = p_ext[1] / n_samples
        z = p_lo[2] + p_ext[2] * (np.arange(n_samples) + 0.5) / n_samples
        return slice_spans(sub, z, dy, row_offset_um=p_lo[1] + dy / 2, fill_rule="positive",
                           region_um=((p_lo[0], p_lo[1]), (p_hi[0], p_hi[1])))

    both = span_boolean(spans(fa), spans(fb), "intersection")
    if both.n_spans == 0:
        return None
    if len(np.unique(both.span_layer())) < 2 or len(np.unique(both.row_index())) < 2:
        return None
    return both.volume_um3(p_ext[2] / n_samples)


def _count_duplicate_faces(f: np.ndarray, n: int) -> int:
    """Faces using the same three vertices as an earlier face (any order); ``n`` vertices."""
    from .kernel.meshops import face_groups

    return int(face_groups(np.ascontiguousarray(f, dtype=np.int64))[1]) if len(f) > 1 else 0


# ============================================================================ analysis
def analyse(vertices_um: np.ndarray, faces: np.ndarray, check_overlaps: bool = True) -> dict:
    """The inspect report of a mesh already in µm with merged vertices.

    Parameters
    ----------
    vertices_um : (n, 3) float64; faces : (m, 3) int
    check_overlaps : bool
        Also test pairs of bodies for intersecting volumes (manifold3d).

    Returns
    -------
    dict
        JSON-able: counts, bounds, size, volume, bodies, watertight, winding, holes (with location),
        degenerate/duplicate faces, inverted bodies, cavities, overlapping body pairs, problems.
    """
    from .kernel.meshops import body_stats, degenerate_faces, face_groups

    v = np.ascontiguousarray(vertices_um, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    n, m = len(v), len(f)
    lo = v.min(axis=0) if n else np.zeros(3)
    hi = v.max(axis=0) if n else np.zeros(3)
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    edges = _edge_balance(f, max(n, 1))
    cnt_u, balance, eid = edges
    boundary_edges = int(np.count_nonzero(cnt_u == 1))
    nonmanifold_edges = int(np.count_nonzero(cnt_u > 2))
    misoriented = int(np.count_nonzero((cnt_u >= 2) & (balance != 0)))
    # degenerate: repeated index or zero area (relative to the part size)
    degenerate = degenerate_faces(v, f, 1e-14 * diag * diag)
    rep_face, duplicate = face_groups(f)
    nb, body, is_rep = _shells(v, f, max(n, 1), edges, rep_face)
    fvol = _face_signed_volumes(v, f) if m else np.zeros(0)
    mult = np.bincount(rep_face, minlength=m)[rep_face]      # copies of each face's oriented triple
    blo, bhi, vols, open_body, fewest = body_stats(v, f, body, nb, is_rep, fvol, eid, cnt_u, mult)
    del mult, rep_face
    dup_shells = int(np.sum(fewest - 1))                      # extra copies of shells exported twice
    closed_body = ~open_body
    # a shell through itself whose halves cancel has volume ~0: not inside-out (see self_intersecting)
    scale = np.prod(bhi - blo, axis=1)
    neg = np.flatnonzero((vols < -1e-6 * scale) & closed_body)
    cavities, inverted = [], []
    if len(neg):   # cavities may overlap each other: tested against solid bodies only
        for b, inside in zip(neg[:200], _cavities(v, f, body, neg[:200], vols, blo, bhi)):
            (cavities if inside else inverted).append(int(b))
    overlaps, checked, total_pairs = ([], 0, 0)
    if check_overlaps and nb > 1:
        overlaps, checked, total_pairs = _overlaps(v, f, body, is_rep, vols, closed_body, blo, bhi)
    neg_vol, neg_at = 0.0, None
    if m and boundary_edges == 0 and misoriented == 0:
        neg_vol, neg_at = _negative_winding(v, f, (vols > 0)[body], bounds=(lo, hi))
        if neg_vol <= 1e-6 * max(abs(float(vols.sum())), float(np.prod(np.maximum(hi - lo, 1e-12)))) or inverted:
            neg_vol, neg_at = 0.0, None       # inside-out bodies are reported as such
    loops = []
    del eid, edges
    if boundary_edges:
        d, ukey, _ = _edges(f, max(n, 1))
        _, loops = _boundary_loops(d, ukey, v)
        for lp in loops:
            lp.pop("_label", None)
    rep_dict = {
        "triangles": int(m),
        "vertices": int(n),
        "bounds_um": [[float(x) for x in lo], [float(x) for x in hi]],
        "size_um": [float(x) for x in hi - lo],
        "volume_um3": float(fvol.sum()),
        "bodies": int(nb),
        "body_volumes_um3": [float(x) for x in vols[:1000]],
        "watertight": boundary_edges == 0 and nonmanifold_edges == 0,
        "closed": boundary_edges == 0,
        "winding_consistent": misoriented == 0,
        "misoriented_edges": misoriented,
        "boundary_edges": boundary_edges,
        "nonmanifold_edges": nonmanifold_edges,
        "holes": len(loops),
        "hole_loops": loops[:50],
        "degenerate_faces": int(degenerate),
        "duplicate_faces": int(duplicate),
        "inverted_bodies": len(inverted),
        "inverted_body_ids": inverted,
        "cavities": len(cavities),
        "duplicate_shells": int(dup_shells),
        "self_intersecting": neg_vol > 0,
        "negative_winding_um3": float(neg_vol),
        "negative_winding_at_um": neg_at,
        "overlapping_pairs": [[i, j, vol] for i, j, vol in overlaps],
        "overlap_pairs_checked": int(checked),
        "overlap_pairs_candidate": int(total_pairs),
    }
    rep_dict["problems"] = _problems(rep_dict)
    return rep_dict


def _problems(r: dict) -> list[str]:
    p = []
    if r["boundary_edges"]:
        p.append(f"open: {r['holes']} hole(s), {r['boundary_edges']} boundary edges" + _hole_where(r))
    if r["nonmanifold_edges"]:
        p.append(f"{r['nonmanifold_edges']} non-manifold edges (shared by more than two faces)")
    if not r["winding_consistent"]:
        p.append(f"winding inconsistent: {r['misoriented_edges']} edges whose faces do not pair up in opposite "
                 "directions")
    if r["inverted_bodies"]:
        p.append(f"{r['inverted_bodies']} inside-out bodies (negative volume, not inside another body)")
    if r.get("self_intersecting"):
        p.append(_self_intersection(r))
    if r.get("duplicate_shells"):
        p.append(f"{r['duplicate_shells']} shell(s) repeated face for face (printed once)")
    if r["degenerate_faces"]:
        p.append(f"{r['degenerate_faces']} degenerate (zero-area) faces")
    if r["duplicate_faces"]:
        p.append(f"{r['duplicate_faces']} duplicate faces")
    return p


def _self_intersection(r: dict) -> str:
    at = r.get("negative_winding_at_um") or [0.0, 0.0, 0.0]
    return (f"self-intersecting surface: parts of it are inside-out (winding number below zero in about "
            f"{r['negative_winding_um3']:.4g} µm³ around ({', '.join(f'{x:.4g}' for x in at)}) µm)")


def _hole_where(r: dict) -> str:
    loops = r.get("hole_loops") or []
    if not loops:
        return ""
    parts = [f"{lp['edges']} edges around ({', '.join(f'{x:.4g}' for x in lp['centroid_um'])}) µm" for lp in loops[:3]]
    more = f" and {r['holes'] - 3} more" if r["holes"] > 3 else ""
    return ": " + "; ".join(parts) + more


# ============================================================================ repair
def repair_arrays(vertices_um: np.ndarray, faces: np.ndarray, max_hole_edges: int = MAX_FILL_HOLE_EDGES):
    """Repair a mesh: merge near-duplicate vertices, drop collapsed and duplicate faces, make the
    winding consistent, turn inside-out bodies outward (cavities inside other bodies stay), fill
    holes of at most ``max_hole_edges`` edges.

    Parameters
    ----------
    vertices_um : (n, 3) float64; faces : (m, 3) int
    max_hole_edges : int

    Returns
    -------
    vertices_um, faces : repaired arrays
    actions : dict of what was changed (counts)
    """
    v = np.asarray(vertices_um, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    actions = {}
    # 1. merge vertices closer than 1e-9 of the part diagonal (and exact duplicates)
    diag = float(np.linalg.norm(v.max(axis=0) - v.min(axis=0))) if len(v) else 1.0
    q = max(diag * 1e-9, 1e-12)
    vq = np.round(v / q) * q
    n0 = len(np.unique(f))
    vq, f = merge_vertices_exact(vq, f)
    # keep the original coordinates of the first vertex of each merged group
    v = vq
    actions["merged_vertices"] = int(n0 - len(v))
    # 2. drop collapsed faces (repeated index) and duplicates (same vertex set)
    rep = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])
    f = f[~rep]
    actions["dropped_collapsed_faces"] = int(rep.sum())
    f, dropped = _drop_coincident_faces(f)
    actions["dropped_duplicate_faces"] = dropped
    # 3. winding consistent within each connected surface
    n = len(v)
    cnt_u, balance, _ = _edge_balance(f, max(n, 1))
    if np.any((cnt_u >= 2) & (balance != 0)):
        import trimesh

        tm = trimesh.Trimesh(v, f, process=False)
        before = f.copy()
        trimesh.repair.fix_winding(tm)
        f = np.asarray(tm.faces, dtype=np.int64)
        actions["rewound_faces"] = int(np.sum(np.any(f != before, axis=1)))
    # 4. fill small holes (fan around the loop centroid; oriented like the faces around it)
    d, ukey, _ = _edges(f, max(n, 1))
    res, loops = _boundary_loops(d, ukey, v)
    filled = 0
    if loops:
        be, lab, local, verts = res
        edge_lab = lab[local[:, 0]]
        deg = np.bincount(local.ravel(), minlength=len(verts))
        bad_lab = np.unique(lab[deg != 2])
        new_v, new_f = [v], [f]
        nv = len(v)
        for lp in loops:
            L = lp["_label"]
            if lp["edges"] > max_hole_edges or L in bad_lab:
                continue
            e = be[edge_lab == L]
            c = v[np.unique(e.ravel())].mean(axis=0)
            new_v.append(c[None])
            new_f.append(np.column_stack([e[:, 1], e[:, 0], np.full(len(e), nv)]))
            nv += 1
            filled += 1
        v = np.concatenate(new_v)
        f = np.concatenate(new_f)
    actions["filled_holes"] = filled
    # 5. inside-out bodies that are not inside another body: flip
    nb, body, _ = _shells(v, f, max(len(v), 1))
    fvol = _face_signed_volumes(v, f)
    vols = np.bincount(body, fvol, minlength=nb)
    flipped = 0
    neg = np.flatnonzero(vols < 0)[:1000]
    if len(neg):
        from .kernel.meshops import body_stats

        uses, _, eid = _edge_balance(f, max(len(v), 1))
        ones = np.ones(len(f), np.int64)
        blo, bhi = body_stats(v, np.ascontiguousarray(f, dtype=np.int64), body, nb, ones.astype(bool), fvol, eid,
                              uses, ones)[:2]
        for b, inside in zip(neg, _cavities(v, f, body, neg, vols, blo, bhi)):
            if not inside:
                sel = body == b
                f[sel] = f[sel][:, ::-1]
                flipped += 1
    actions["flipped_bodies"] = flipped
    # 6. a self-intersecting shell with inside-out parts: print every region of nonzero winding
    cnt_u, balance, _ = _edge_balance(f, max(len(v), 1))
    if len(f) and np.all(cnt_u > 1) and not np.any(balance):
        nb, body, _ = _shells(v, f, max(len(v), 1))
        vols = np.bincount(body, _face_signed_volumes(v, f), minlength=nb)
        neg, _ = _negative_winding(v, f, (vols > 0)[body])
        if neg > 1e-6 * float(np.prod(np.maximum(v.max(axis=0) - v.min(axis=0), 1e-12))):
            actions["fill_rule"] = "nonzero"
    return v, f, actions


def _drop_coincident_faces(f: np.ndarray):
    """Faces on the same three vertices: keep one per group, oriented like the majority, or none
    when as many run one way as the other (two shells touching face to face: an inner wall).
    The winding number of the mesh does not change except that repeated copies count once.
    Returns (faces, number dropped)."""
    if len(f) < 2:
        return f, 0
    sf = np.sort(f, axis=1)
    # +1 for an even permutation of the sorted triple (same cyclic order), -1 for an odd one
    k = np.argmin(f, axis=1)
    nxt = f[np.arange(len(f)), (k + 1) % 3]
    par = np.where(nxt == sf[:, 1], 1, -1)
    _, first, inv = np.unique(sf, axis=0, return_index=True, return_inverse=True)
    inv = inv.ravel()
    net = np.bincount(inv, par, minlength=len(first)).astype(np.int64)
    keep = np.sort(first[net != 0])                 # first face of each kept group, in file order
    out = f[keep].copy()
    flip = np.sign(net[inv[keep]]) != par[keep]     # the first face runs against the majority
    out[flip] = out[flip][:, ::-1]
    return out, int(len(f) - len(out))


# ============================================================================ public entry points
def _plausibility(size_um: np.ndarray, printer, units: str, recipe=None) -> str | None:
    """A one-line complaint when the part size does not fit the printer, else None.

    The smallest printable feature is the recipe's hatch or slice distance (without a recipe,
    the printer's defaults)."""
    from .printers import load_printer

    p = load_printer(printer)
    d = p.defaults or {}
    hatch = d.get("hatch_um", 0.1) if recipe is None else recipe.hatch_um
    slc = d.get("slice_um", 0.1) if recipe is None else recipe.slice_um
    voxel = min(float(hatch), float(slc))
    sz = " x ".join(f"{x:.4g}" for x in size_um)
    big = float(np.max(size_um))
    if big < voxel:
        hint = "--units mm" if units != "mm" else "a model in the right units"
        return (f"mesh is only {sz} µm ({units}), smaller than one {voxel:g} µm voxel of {p.name}; "
                f"if the file is in millimetres use {hint}")
    travel = np.array([p.stage_x_um[1] - p.stage_x_um[0], p.stage_y_um[1] - p.stage_y_um[0],
                       max(p.stage_z_um[1] - p.stage_z_um[0], p.z_range_um)])
    if np.any(size_um > travel):
        hint = "--units um or --units nm" if units == "mm" else "--units nm"
        return (f"mesh is {sz} µm ({units}), larger than the travel of {p.name} "
                f"({' x '.join(f'{x:.4g}' for x in travel)} µm); check the units ({hint}) or scale the model")
    return None


def _prepare(v, f, units, name, sha, repair, welded: bool = False):
    """Units to µm, exact weld (skipped when ``welded``: the reader welded already and the units
    are µm, so a weld would change nothing), optional repair, the report."""
    if units not in UNITS_TO_UM:
        raise BioslicerError(f"unknown units {units!r}; use um, mm or nm")
    if not (welded and UNITS_TO_UM[units] == 1.0):
        v, f = merge_vertices_exact(v * UNITS_TO_UM[units], f)
    actions = None
    if repair:
        v, f, actions = repair_arrays(v, f)
    rep = analyse(v, f)
    rep.update({"file": name, "sha256": sha, "units": units})
    if actions is not None:
        rep["repair"] = actions
        rep["fill_rule"] = actions.get("fill_rule", "positive")
    return v, f, rep


def inspect_mesh(path_or_mesh, units="um", repair: bool = False, printer=None, keep_solid: bool = False):
    """The inspect report of a mesh file (or a trimesh already in µm).

    Parameters
    ----------
    path_or_mesh : str | Path | trimesh.Trimesh | Solid
    units : 'um' | 'mm' | 'nm'
        Units of the file (ignored for in-memory meshes, which are taken as µm).
    repair : bool
        Report on the repaired mesh (the report then holds a 'repair' section).
    printer : printer name, path or Printer, optional
        Add a size plausibility check for this printer ('size_problem').
    keep_solid : bool
        Also return the :class:`Solid` that :func:`load_mesh` would give (None when the report is
        not 'ok'), so a caller needing both reads and analyses the file once.

    Returns
    -------
    dict
        JSON-able report; 'problems' lists what would stop slicing, 'ok' is True when nothing does.
        With ``keep_solid``: (report, Solid or None).
    """
    if isinstance(path_or_mesh, (str, os.PathLike)):
        path = Path(path_or_mesh)
        v, f, data = _read_file(path)
        sha = hashlib.sha256(data).hexdigest()
        del data  # the file bytes (131 MB for 2.6 M faces) are not needed during the analysis
        v, f, rep = _prepare(v, f, units, path.name, sha, repair, _reader_welds(path))
    else:
        src = path_or_mesh
        vv = getattr(src, "vertices_um", None)
        vv = np.asarray(src.vertices if vv is None else vv, dtype=np.float64)
        v, f, rep = _prepare(vv, np.asarray(src.faces, dtype=np.int64), "um", getattr(src, "name", "") or "", "",
                             repair)
        rep["units"] = "um"
    if printer is not None:
        msg = _plausibility(np.asarray(rep["size_um"]), printer, rep["units"])
        rep["size_problem"] = msg
        if msg:
            rep["problems"].append(msg)
    rep["ok"] = not _blocking(rep) and not rep.get("size_problem")
    if not keep_solid:
        return rep
    solid = None
    if rep["ok"]:
        solid = Solid(v, f.astype(np.int32), rep["file"], rep["sha256"], rep["units"], dict(rep),
                      rep.get("fill_rule", "positive"))
    return rep, solid


def _blocking(rep: dict) -> str | None:
    """The reason a mesh cannot be sliced, or None."""
    name = rep.get("file") or "mesh"
    if rep["triangles"] == 0:
        return f"{name} holds no triangles"
    if rep["boundary_edges"]:
        return (f"{name} is open and cannot define a solid: {rep['holes']} hole(s), {rep['boundary_edges']} boundary "
                f"edges{_hole_where(rep)}; close them in a mesh editor or retry with --repair")
    if not rep["winding_consistent"]:
        hint = ("; retry with --repair" if not rep.get("repair") else
                "; --repair could not fix them: re-export the mesh with closed, outward-oriented shells")
        return (f"{name} has inconsistently oriented faces ({rep['misoriented_edges']} edges whose faces do not "
                f"pair up in opposite directions){hint}")
    if rep["inverted_bodies"]:
        return (f"{name} has {rep['inverted_bodies']} inside-out bodies (negative volume, not a cavity of another "
                "body); retry with --repair")
    if rep.get("self_intersecting") and rep.get("fill_rule", "positive") == "positive":
        return f"{name} has a {_self_intersection(rep)}; retry with --repair to print every region of nonzero winding"
    return None


def _solid_checked(v, f, rep, name, sha, units) -> Solid:
    why = _blocking(rep)
    if why:
        raise BioslicerError(why)
    return Solid(v, f.astype(np.int32), name, sha, units, rep, rep.get("fill_rule", "positive"))


def load_mesh(path, units="um", repair=False, printer=None, recipe=None) -> Solid:
    """Load a mesh file as a :class:`Solid` in µm, refusing anything that cannot define a solid.

    Parameters
    ----------
    path : str | Path
        STL (ASCII or binary), OBJ, PLY, OFF, 3MF or GLB.
    units : 'um' | 'mm' | 'nm'
        Length unit of the file.
    repair : bool
        Merge vertices, drop collapsed/duplicate faces, fix winding and normals, fill small holes.
    printer : printer name, path or Printer, optional
        Refuse sizes implausible for it (smaller than a voxel, larger than its travel).
    recipe : Recipe, optional
        With ``printer``: the voxel is the recipe's hatch/slice distance, not the printer's default.

    Returns
    -------
    Solid

    Raises
    ------
    BioslicerError
        Unreadable or empty file; mesh still open after (optional) repair (with hole count and
        location); inconsistent winding or inside-out bodies without repair; implausible size.
    """
    path = Path(path)
    v, f, data = _read_file(path)
    sha = hashlib.sha256(data).hexdigest()
    del data
    v, f, rep = _prepare(v, f, units, path.name, sha, repair, _reader_welds(path))
    if printer is not None:
        msg = _plausibility(np.asarray(rep["size_um"]), printer, units, recipe)
        if msg:
            raise BioslicerError(msg)
    rep["ok"] = True
    return _solid_checked(v, f, rep, path.name, sha, units)


def solid_from_trimesh(mesh, name: str = "", repair: bool = False, check: bool = True) -> Solid:
    """A :class:`Solid` from an in-memory mesh already in µm (vertices merged exactly).

    Parameters
    ----------
    mesh : trimesh.Trimesh (or anything with ``vertices`` and ``faces``)
    name : str
    repair : bool
        Run :func:`repair_arrays` first.
    check : bool
        Refuse open / inconsistently wound meshes like :func:`load_mesh` (True), or take the
        mesh as it is (False).

    Returns
    -------
    Solid
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    v, f = merge_vertices_exact(v, f)
    if repair:
        v, f, _ = repair_arrays(v, f)
    if not check:
        return Solid(v, f.astype(np.int32), name, "", "um", {})
    rep = analyse(v, f, check_overlaps=False)
    rep.update({"file": name, "sha256": "", "units": "um"})
    return _solid_checked(v, f, rep, name, "", "um")


def save_mesh(solid: Solid, path) -> Path:
    """Write the solid as a binary STL in µm (atomically); returns the path."""
    from .toolpath import atomic_write_bytes

    path = Path(path)
    ext = path.suffix.lower().lstrip(".") or "stl"
    if ext not in ("stl", "ply", "obj", "off", "glb"):
        raise BioslicerError(f"cannot write {path.name}: use a .stl, .ply, .obj, .off or .glb file name")
    data = solid.to_trimesh().export(file_type=ext)
    if isinstance(data, str):
        data = data.encode()
    atomic_write_bytes(path, data)
    return path
