"""Centerline intake: vessel trees as centerlines and radii, sliced without a mesh.

Formats (``load_tree``): SWC (``n type x y z radius parent``), VTK PolyData (``.vtp``,
``.vtk``; polylines with a radius point array, VMTK's ``MaximumInscribedSphereRadius`` by
default, then ``Radius``), and plain graphs (``.json``: ``{"nodes": [{"id", "x", "y", "z",
"radius"}...], "edges": [[a, b], ...]}``; ``.csv``: columns ``id, x, y, z, radius, parent``, or
without ``parent`` and the edges in ``<stem>.edges.csv``, columns ``source, target``).

Geometry: a segment between two centerline points is the convex hull of its two end spheres
(the sweep of spheres with linearly interpolated centre and radius, VMTK's PolyBall); the tree
is the union of its segments. Points that coincide (same position and radius) are one node and
repeated segments (paths sharing a trunk) are kept once, so overlapping paths print once.

A :class:`Tree` answers what the slicer asks of a geometry (``bounds_um``, spans of rows,
contours), so :func:`bioslicer.slicing.slice_spans` and ``slice_contours`` take it where they
take a mesh :class:`~bioslicer.mesh.Solid`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import BioslicerError
from .progress import silent

CENTERLINE_SUFFIXES = (".swc", ".vtp", ".vtk", ".json", ".csv")
DEFAULT_RADIUS_ARRAYS = ("MaximumInscribedSphereRadius", "Radius")
UNITS_TO_UM = {"um": 1.0, "mm": 1000.0, "nm": 0.001}
_PAIRS_PER_BATCH = 20_000_000     # (segment, row) pairs evaluated per batch of layers (bounds memory)
_CONTOUR_TOL_UM = 0.02            # contour rings deviate from the exact section by at most about this


def is_centerline_path(path) -> bool:
    """True when the file name says it holds centerlines (``.swc .vtp .vtk .json .csv``)."""
    return Path(path).suffix.lower() in CENTERLINE_SUFFIXES


# ============================================================================ the tree
@dataclass(eq=False)
class Tree:
    """A vessel tree: nodes with radii joined by segments (hulls of the two end spheres).

    Attributes
    ----------
    points_um : (N, 3) float64
        Node centres, µm (coincident input points merged).
    radius_um : (N,) float64
        Node radii, µm (> 0).
    edges : (E, 2) int64
        Segments as node pairs (i < j), unique, sorted.
    clip : (E,) uint8
        Flat cuts: bit 0 cuts segment e across its axis through node ``edges[e, 0]``, bit 1
        through ``edges[e, 1]`` (open vessel ends); 0 keeps the round caps.
    name, sha256, units : source file name, SHA-256 of its bytes, its length unit.
    report : dict
        What the reader found (paths, repeated segments, ...).
    """

    points_um: np.ndarray
    radius_um: np.ndarray
    edges: np.ndarray
    clip: np.ndarray | None = None
    name: str = ""
    sha256: str = ""
    units: str = "um"
    report: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points_um = np.ascontiguousarray(self.points_um, dtype=np.float64).reshape(-1, 3)
        self.radius_um = np.ascontiguousarray(self.radius_um, dtype=np.float64).reshape(-1)
        self.edges = np.ascontiguousarray(self.edges, dtype=np.int64).reshape(-1, 2)
        if self.clip is None:
            self.clip = np.zeros(len(self.edges), np.uint8)
        self.clip = np.ascontiguousarray(self.clip, dtype=np.uint8).reshape(-1)

    # ------------------------------------------------------------------ basic facts
    @property
    def n_segments(self) -> int:
        return int(len(self.edges))

    def degree(self) -> np.ndarray:
        """(N,) number of segments at each node."""
        return np.bincount(self.edges.ravel(), minlength=len(self.points_um))

    def terminals(self) -> np.ndarray:
        """Indices of the nodes with one segment (inlets and outlets)."""
        return np.flatnonzero(self.degree() == 1)

    def segment_arrays(self):
        """(P0 (E,3), P1 (E,3), R0 (E,), R1 (E,), clip (E,)) contiguous, for the kernels."""
        e = self.edges
        return (np.ascontiguousarray(self.points_um[e[:, 0]]), np.ascontiguousarray(self.points_um[e[:, 1]]),
                np.ascontiguousarray(self.radius_um[e[:, 0]]), np.ascontiguousarray(self.radius_um[e[:, 1]]),
                self.clip)

    def segment_boxes(self):
        """(lo (E,3), hi (E,3)) bounding boxes of the segments (of their end spheres), µm."""
        P0, P1, R0, R1, _ = self.segment_arrays()
        lo = np.minimum(P0 - R0[:, None], P1 - R1[:, None])
        hi = np.maximum(P0 + R0[:, None], P1 + R1[:, None])
        return np.ascontiguousarray(lo), np.ascontiguousarray(hi)

    def segment_lengths_um(self) -> np.ndarray:
        return np.linalg.norm(self.points_um[self.edges[:, 1]] - self.points_um[self.edges[:, 0]], axis=1)

    @property
    def bounds_um(self) -> np.ndarray:
        """(2, 3) min / max corner of the vessels (end spheres), µm."""
        if self.n_segments == 0:
            if len(self.points_um) == 0:
                return np.zeros((2, 3))
            r = self.radius_um[:, None]
            return np.array([(self.points_um - r).min(axis=0), (self.points_um + r).max(axis=0)])
        lo, hi = self.segment_boxes()
        return np.array([lo.min(axis=0), hi.max(axis=0)])

    @property
    def size_um(self) -> np.ndarray:
        b = self.bounds_um
        return b[1] - b[0]

    # ------------------------------------------------------------------ derived trees
    def translated(self, offset_um) -> "Tree":
        """A copy moved by ``offset_um`` (3,), µm."""
        return replace(self, points_um=self.points_um + np.asarray(offset_um, dtype=np.float64),
                       radius_um=self.radius_um.copy(), edges=self.edges.copy(), clip=self.clip.copy(),
                       report=dict(self.report))

    def dilated(self, wall_um: float) -> "Tree":
        """The same tree with every radius grown by ``wall_um`` (the outside of a wall)."""
        return replace(self, radius_um=self.radius_um + float(wall_um), points_um=self.points_um.copy(),
                       edges=self.edges.copy(), clip=self.clip.copy(), report=dict(self.report))

    def open_ended(self) -> "Tree":
        """The same tree with every terminal cut flat across its last segment (open ends)."""
        term = self.degree() == 1
        clip = self.clip.copy()
        clip |= term[self.edges[:, 0]].astype(np.uint8)
        clip |= (term[self.edges[:, 1]].astype(np.uint8) << 1)
        return replace(self, clip=clip, points_um=self.points_um.copy(), radius_um=self.radius_um.copy(),
                       edges=self.edges.copy(), report=dict(self.report))

    def extended_through(self, lo_um, hi_um, margin_um: float) -> tuple["Tree", list]:
        """Carry every terminal vessel that ends within ``margin_um`` of a face of the block
        ``[lo_um, hi_um]`` straight out through that face (a cylinder of its end radius, along
        the face normal, to ``radius + margin`` beyond it): open inlets and outlets.

        Returns
        -------
        (Tree, openings) : the extended tree, and per opening ``{node, face, point_um, radius_um}``
        (face as ``'-x'``, ``'+y'``, ...).
        """
        lo = np.asarray(lo_um, dtype=np.float64)
        hi = np.asarray(hi_um, dtype=np.float64)
        pts = [self.points_um]
        rad = [self.radius_um]
        new_edges = [self.edges]
        openings = []
        n = len(self.points_um)
        normals = np.vstack([-np.eye(3), np.eye(3)])        # -x -y -z +x +y +z
        for t in self.terminals():
            p = self.points_um[t]
            r = float(self.radius_um[t])
            dist = np.concatenate([p - lo, hi - p])
            near = dist - r <= margin_um + 1e-9
            if not (near.any() and np.all(dist > -r)):
                continue
            # of the faces within the margin, the one the vessel heads for (then the nearest)
            e = self.edges[np.any(self.edges == t, axis=1)][0]
            d = p - self.points_um[e[0] if e[1] == t else e[1]]
            heading = normals @ (d / max(float(np.linalg.norm(d)), 1e-300))
            f = int(np.lexsort((dist, -np.where(near, heading, -np.inf)))[0])
            axis, sign = f % 3, (-1.0 if f < 3 else 1.0)
            q = p.copy()
            q[axis] = (lo[axis] if sign < 0 else hi[axis]) + sign * (r + margin_um)
            pts.append(q[None, :])
            rad.append(np.array([r]))
            new_edges.append(np.array([[t, n]]))
            face_pt = p.copy()
            face_pt[axis] = lo[axis] if sign < 0 else hi[axis]
            openings.append({"node": int(t), "face": ("-" if sign < 0 else "+") + "xyz"[axis],
                             "point_um": face_pt.tolist(), "radius_um": r})
            n += 1
        tree = Tree(np.concatenate(pts), np.concatenate(rad), np.concatenate(new_edges), None, self.name,
                    self.sha256, self.units, dict(self.report))
        return tree, openings

    # ------------------------------------------------------------------ slicing
    def slice_spans(self, layer_z_um, row_spacing_um, angle_deg=0.0, row_offset_um=0.0, region_um=None,
                    progress=silent, fill_rule: str = "positive", row_window_um=None):
        """Exact spans of the union of the segments along every scan row (see
        :func:`bioslicer.slicing.slice_spans`; ``fill_rule`` is ignored: the tree is a union)."""
        return tree_spans(self, layer_z_um, row_spacing_um, angle_deg, row_offset_um, region_um, progress,
                          row_window_um)

    def slice_contours(self, layer_z_um, progress=silent, fill_rule: str = "positive", resolve: bool = True):
        """Outline of the union per layer (see :func:`bioslicer.slicing.slice_contours`)."""
        return tree_contours(self, layer_z_um, progress)

    # ------------------------------------------------------------------ meshes
    def to_manifold(self, sections: int = 32):
        """The tree as one closed manifold3d solid (union of the hulls of sphere pairs)."""
        import manifold3d

        if self.n_segments == 0:
            raise BioslicerError("the centerline has no segments; nothing to mesh")
        P0, P1, R0, R1, clip = self.segment_arrays()
        parts = []
        for a, b, ra, rb, c in zip(P0, P1, R0, R1, clip):
            s0 = manifold3d.Manifold.sphere(float(ra), int(sections)).translate(tuple(float(x) for x in a))
            s1 = manifold3d.Manifold.sphere(float(rb), int(sections)).translate(tuple(float(x) for x in b))
            hull = manifold3d.Manifold.batch_hull([s0, s1])
            if c:
                d = b - a
                L = float(np.linalg.norm(d))
                if L > 0:
                    t = d / L
                    if c & 1:
                        hull = hull.trim_by_plane(tuple(float(x) for x in t), float(np.dot(t, a)))
                    if c & 2:
                        hull = hull.trim_by_plane(tuple(float(x) for x in -t), float(-np.dot(t, b)))
            parts.append(hull)
        return manifold3d.Manifold.batch_boolean(parts, manifold3d.OpType.Add)

    def to_trimesh(self, sections: int = 32):
        """The tree as a closed ``trimesh.Trimesh`` in µm (see :meth:`to_manifold`)."""
        import trimesh

        m = self.to_manifold(sections).to_mesh()
        return trimesh.Trimesh(np.asarray(m.vert_properties)[:, :3].astype(np.float64),
                               np.asarray(m.tri_verts).astype(np.int64), process=False)

    def to_graph_json(self) -> str:
        """The nodes (µm) and segments as a JSON graph that :func:`load_tree` reads back."""
        nodes = [{"id": i, "x": float(p[0]), "y": float(p[1]), "z": float(p[2]), "radius": float(r)}
                 for i, (p, r) in enumerate(zip(self.points_um, self.radius_um))]
        return json.dumps({"nodes": nodes, "edges": self.edges.tolist()}, separators=(",", ":")) + "\n"

    def tube_polydata(self, sections: int = 24):
        """A PyVista PolyData of the vessels as tubes by radius, spheres at the joints (for
        previews; not exact)."""
        import pyvista as pv

        P0, P1, R0, R1, _ = self.segment_arrays()
        blocks = []
        for a, b, ra, rb in zip(P0, P1, R0, R1):
            L = float(np.linalg.norm(b - a))
            if L <= 0:
                continue
            cone = pv.Cylinder(center=(a + b) / 2, direction=(b - a), radius=1.0, height=L, resolution=sections,
                               capping=True)
            # a frustum: scale each point's distance to the axis by the interpolated radius
            pts = np.asarray(cone.points)
            t = (b - a) / L
            s = np.clip((pts - a) @ t, 0.0, L)
            axis_pt = a + s[:, None] * t
            radial = pts - axis_pt
            nr = np.linalg.norm(radial, axis=1)
            r = ra + (rb - ra) * s / L
            with np.errstate(invalid="ignore", divide="ignore"):
                radial = np.where(nr[:, None] > 0, radial / nr[:, None], 0.0)
            cone.points = axis_pt + radial * r[:, None]
            blocks.append(cone)
        joints = self.degree() > 1          # round joints; vessel ends are drawn flat (open)
        for p, r in zip(self.points_um[joints], self.radius_um[joints]):
            blocks.append(pv.Sphere(radius=float(r), center=p, theta_resolution=sections, phi_resolution=sections // 2))
        return pv.merge(blocks) if blocks else pv.PolyData()


# ============================================================================ slicing drivers
def _layer_buckets(tree: Tree, z: np.ndarray):
    """The segments whose z extent holds each layer: (pos (L,) position of each layer in sorted
    order, bstart (L+1,), bseg) as ``crossings.bucket_triangles`` (CSR over the sorted layers)."""
    from .kernel import crossings as kx

    lo, hi = tree.segment_boxes()
    order = np.argsort(z, kind="stable")
    pos = np.empty(len(z), np.int64)
    pos[order] = np.arange(len(z))
    bstart, bseg = kx.bucket_triangles(np.ascontiguousarray(lo[:, 2]), np.ascontiguousarray(hi[:, 2]),
                                       np.ascontiguousarray(z[order]))
    return pos, bstart, bseg


def tree_spans(tree: Tree, layer_z_um, row_spacing_um, angle_deg=0.0, row_offset_um=0.0, region_um=None,
               progress=silent, row_window_um=None):
    """Spans of the union of a tree's segments on every scan row (exact, no mesh).

    Per layer, the segments whose z extent holds the layer (a bucket), and per segment only the
    rows its box crosses: the cost follows the (segment, row) pairs near each row. Arguments
    and result as :func:`bioslicer.slicing.slice_spans`.
    """
    from . import slicing as S
    from .kernel import capsules as kc

    z = np.ascontiguousarray(np.asarray(layer_z_um, dtype=np.float64).reshape(-1))
    if not np.all(np.isfinite(z)):
        raise BioslicerError("layer heights must be finite numbers of µm")
    dy, off = S._check_row_params(row_spacing_um, row_offset_um)
    L = len(z)
    ang = S._layer_angles(angle_deg, L)
    box = S._region_box(region_um)
    if L == 0 or tree.n_segments == 0:
        return S._empty_spans(z, ang, dy, off)
    cos_a, sin_a = S.frame_cos_sin(ang)
    jr0, jr1, _ = S._row_limits(cos_a, sin_a, off, dy, None)
    if box is not None:
        jr0, jr1 = S._row_window(cos_a, sin_a, off, dy, ((box[0], box[1]), (box[2], box[3])))
    elif row_window_um is not None:
        jr0, jr1 = S._row_window(cos_a, sin_a, off, dy, row_window_um)
    P0, P1, R0, R1, clip = tree.segment_arrays()
    pos, bstart, bseg = _layer_buckets(tree, z)
    nseg = np.diff(bstart)[pos]
    npairs, jmin, jmax = kc.count_pass(P0, P1, R0, R1, bstart, bseg, pos, z, cos_a, sin_a, off, dy, jr0, jr1,
                                       S._chunks(nseg, S._n_chunks()))
    parts = []
    k = 0
    while k < L:
        cum = np.cumsum(npairs[k:])
        k1 = k + max(1, int(np.searchsorted(cum, _PAIRS_PER_BATCH, side="right")))
        ks = slice(k, k1)
        rows = np.where(npairs[ks] > 0, np.minimum(jmax[ks] - jmin[ks] + 1, npairs[ks]), 0)
        row_base, span_base = S._bases(rows), S._bases(npairs[ks])
        row_v = np.empty(int(rows.sum()))
        row_end = np.empty(int(rows.sum()) + 1, np.int64)
        u0 = np.empty(int(npairs[ks].sum()))
        u1 = np.empty(int(npairs[ks].sum()))
        nrows = np.zeros(k1 - k, np.int64)
        nspans = np.zeros(k1 - k, np.int64)
        kc.fill_pass(P0, P1, R0, R1, clip, bstart, bseg, pos[ks], z[ks], cos_a[ks], sin_a[ks], off, dy,
                     jr0[ks], jr1[ks], S._chunks(npairs[ks], S._n_chunks()), npairs[ks], jmin[ks], row_base,
                     span_base, row_v, row_end, u0, u1, nrows, nspans)
        parts.append(S._finish(z[ks], ang[ks], dy, off, nrows, nspans, row_base, span_base, row_v, row_end, u0, u1))
        progress(k1, L, "slicing")
        k = k1
    sp = S.Spans.concat(parts)
    if box is not None:
        sp = _clip_to_box(sp, box)
    return sp


def _clip_to_box(sp, box):
    """Spans cut to the half-open xy box (x0, y0, x1, y1): intersection with the box's spans."""
    import trimesh

    from .slicing import slice_spans
    from .strategies.common import span_boolean    # copes with layers that hold no rows

    x0, y0, x1, y1 = box
    z = sp.layer_z_um
    zlo, zhi = float(z.min()) - 1.0, float(z.max()) + 1.0
    b = trimesh.creation.box(bounds=[[x0, y0, zlo], [x1, y1, zhi]])
    bs = slice_spans(b, z, sp.row_spacing_um, sp.angle_deg, sp.row_offset_um)
    return span_boolean(sp, bs, "intersection")


def _union_disjoint_groups(polys: list):
    """Union of convex polygons, group by group: polygons that touch (transitively) are united,
    groups that do not are just collected (about twice as fast as one union of them all)."""
    import shapely
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(polys) <= 1:
        return polys[0] if polys else shapely.MultiPolygon()
    arr = np.empty(len(polys), dtype=object)
    arr[:] = polys
    a, b = shapely.STRtree(arr).query(arr, predicate="intersects")
    n_groups, group = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(len(arr), len(arr))),
                                           directed=False)
    parts = []
    for g in range(n_groups):
        idx = np.flatnonzero(group == g)
        u = arr[idx[0]] if len(idx) == 1 else shapely.union_all(arr[idx])
        parts.extend(p for p in shapely.get_parts(u) if p.geom_type == "Polygon" and not p.is_empty)
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def tree_contours(tree: Tree, layer_z_um, progress=silent):
    """Outlines of the union of the segments on each layer (the same model as the spans).

    Each segment's section is convex; its ring is sampled from exact row intervals at
    Chebyshev-spaced rows between the section's exact extremes (within about
    :data:`_CONTOUR_TOL_UM` of the true boundary), and the rings of a layer are united with
    shapely (outer rings CCW, holes CW).
    """
    import shapely

    from .kernel import capsules as kc
    from .slicing import Contours

    z = np.ascontiguousarray(np.asarray(layer_z_um, dtype=np.float64).reshape(-1))
    if not np.all(np.isfinite(z)):
        raise BioslicerError("layer heights must be finite numbers of µm")
    L = len(z)
    if L == 0 or tree.n_segments == 0:
        return Contours(z, np.zeros(L + 1, np.int64), np.zeros(1, np.int64), np.zeros((0, 2)))
    P0, P1, R0, R1, clip = tree.segment_arrays()
    pos, bstart, bseg = _layer_buckets(tree, z)
    rmax = np.maximum(R0, R1)
    n_ring = np.clip(np.ceil(math.pi / np.arccos(np.clip(1.0 - _CONTOUR_TOL_UM / rmax, -1.0, 1.0))), 16, 512)
    n_ring = n_ring.astype(np.int64)
    geoms = []
    for k in range(L):
        p = pos[k]
        segs = bseg[bstart[p]:bstart[p + 1]]
        room = 2 * n_ring[segs]
        offsets = np.zeros(len(segs) + 1, np.int64)
        np.cumsum(room, out=offsets[1:])
        out = np.empty((int(offsets[-1]), 2))
        counts = np.zeros(len(segs), np.int64)
        kc.layer_rings(P0, P1, R0, R1, clip, np.ascontiguousarray(segs, np.int64), float(z[k]), n_ring, offsets, out,
                       counts)
        ok = counts >= 3
        pts = np.concatenate([out[o:o + c] for o, c in zip(offsets[:-1][ok], counts[ok])]) if ok.any() else out[:0]
        ring_id = np.repeat(np.arange(int(ok.sum())), counts[ok])
        polys = list(shapely.polygons(shapely.linearrings(pts, indices=ring_id))) if len(pts) else []
        geoms.append(_union_disjoint_groups(polys))
        if k % 64 == 63:
            progress(k + 1, L, "contours")
    progress(L, L, "contours")
    return Contours.from_polygons(geoms, z)


# ============================================================================ readers
def _fail(name: str, what: str) -> BioslicerError:
    return BioslicerError(f"{name}: {what}")


def _check_values(name, ids, xyz, r):
    bad = ~np.all(np.isfinite(xyz), axis=1)
    if bad.any():
        raise _fail(name, f"node {ids[np.flatnonzero(bad)[0]]} has a coordinate that is not a finite number; "
                          "fix the file")
    badr = ~(np.isfinite(r) & (r > 0))
    if badr.any():
        i = np.flatnonzero(badr)[0]
        raise _fail(name, f"node {ids[i]} has radius {float(r[i]):g}; every radius must be a positive number")


def _read_swc(text: str, name: str):
    rows = []
    for ln, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        parts = s.split()
        if len(parts) < 7:
            raise _fail(name, f"line {ln} has {len(parts)} columns; SWC lines are 'n type x y z radius parent'")
        try:
            rows.append((int(parts[0]), float(parts[2]), float(parts[3]), float(parts[4]), float(parts[5]),
                         int(parts[6])))
        except ValueError:
            raise _fail(name, f"line {ln} is not 'n type x y z radius parent' numbers: {s[:60]!r}") from None
    if not rows:
        raise _fail(name, "no SWC samples found; is this an SWC file?")
    a = np.array(rows, dtype=np.float64)
    ids = a[:, 0].astype(np.int64)
    parent = a[:, 5].astype(np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise _fail(name, f"sample id {uniq[counts > 1][0]} appears {counts[counts > 1][0]} times; ids must be unique")
    index = {int(i): k for k, i in enumerate(ids)}
    xyz, r = a[:, 1:4], a[:, 4]
    _check_values(name, ids, xyz, r)
    edges = []
    for k, p in enumerate(parent):
        if p == -1:
            continue
        if int(p) not in index:
            raise _fail(name, f"sample {ids[k]} names parent {p}, which is not in the file; fix the parent column")
        if int(p) == ids[k]:
            raise _fail(name, f"sample {ids[k]} is its own parent; fix the parent column")
        edges.append((index[int(p)], k))
    # cycles: follow parents; an SWC is a forest
    state = np.zeros(len(ids), np.int8)          # 0 unseen, 1 on the current path, 2 done
    par = np.array([index[int(p)] if p != -1 else -1 for p in parent], np.int64)
    for start in range(len(ids)):
        path = []
        k = start
        while k != -1 and state[k] == 0:
            state[k] = 1
            path.append(k)
            k = par[k]
        if k != -1 and state[k] == 1:
            raise _fail(name, f"the parent links loop through sample {ids[k]}; an SWC must be a tree (no cycles)")
        for q in path:
            state[q] = 2
    return xyz, r, np.array(edges, np.int64).reshape(-1, 2), {"format": "swc", "samples": int(len(ids)),
                                                              "roots": int(np.sum(parent == -1))}


def _read_vtk(path: Path, name: str, radius_array: str | None):
    import pyvista as pv

    try:
        mesh = pv.read(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise _fail(name, f"cannot be read as VTK PolyData ({type(exc).__name__}); give a .vtp/.vtk file of "
                          "centerlines") from None
    if not isinstance(mesh, pv.PolyData):
        mesh = mesh.extract_geometry() if hasattr(mesh, "extract_geometry") else mesh
    names = list(mesh.point_data.keys())
    want = [radius_array] if radius_array else list(DEFAULT_RADIUS_ARRAYS)
    arr = next((n for n in want if n in names), None)
    if arr is None:
        have = ", ".join(names) if names else "none"
        raise _fail(name, f"no radius point array {' or '.join(repr(w) for w in want)} (arrays: {have}); "
                          "pass --radius-array NAME")
    r = np.asarray(mesh.point_data[arr], dtype=np.float64).reshape(len(mesh.points), -1)[:, 0]
    xyz = np.asarray(mesh.points, dtype=np.float64)
    lines = np.asarray(mesh.lines, dtype=np.int64)
    edges = []
    i = 0
    n_paths = 0
    while i < len(lines):
        n = int(lines[i])
        ids = lines[i + 1:i + 1 + n]
        edges.extend(zip(ids[:-1], ids[1:]))
        n_paths += 1
        i += n + 1
    if not edges:
        raise _fail(name, "holds no polylines; VTK centerlines are PolyData lines (one per inlet-outlet path)")
    ids = np.arange(len(xyz))
    used = np.unique(np.array(edges).ravel())
    _check_values(name, ids[used], xyz[used], r[used])
    return xyz, r, np.array(edges, np.int64).reshape(-1, 2), {"format": path.suffix.lower()[1:], "paths": n_paths,
                                                              "radius_array": arr}


def _graph_from_records(name, ids, xyz, r, pairs, fmt):
    ids = np.asarray(ids)
    uniq, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise _fail(name, f"node id {uniq[counts > 1][0]!r} appears more than once; ids must be unique")
    index = {i: k for k, i in enumerate(ids.tolist())}
    _check_values(name, ids, xyz, r)
    edges = []
    for a, b in pairs:
        if a not in index or b not in index:
            miss = a if a not in index else b
            raise _fail(name, f"edge ({a!r}, {b!r}) names node {miss!r}, which is not in the nodes (a dangling edge)")
        edges.append((index[a], index[b]))
    return xyz, r, np.array(edges, np.int64).reshape(-1, 2), {"format": fmt}


def _read_json(text: str, name: str):
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(name, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or "nodes" not in doc or "edges" not in doc:
        raise _fail(name, 'must be {"nodes": [{"id", "x", "y", "z", "radius"}, ...], "edges": [[a, b], ...]}')
    ids, xyz, r = [], [], []
    for k, nd in enumerate(doc["nodes"]):
        try:
            if isinstance(nd, dict):
                ids.append(nd.get("id", k))
                xyz.append([float(nd["x"]), float(nd["y"]), float(nd["z"])])
                r.append(float(nd.get("radius", nd.get("r", math.nan))))
            else:
                ids.append(k)
                xyz.append([float(nd[0]), float(nd[1]), float(nd[2])])
                r.append(float(nd[3]))
        except (KeyError, IndexError, TypeError, ValueError):
            raise _fail(name, f"node {k} needs x, y, z and radius numbers") from None
    pairs = []
    for e in doc["edges"]:
        if isinstance(e, dict):
            e = (e.get("source"), e.get("target"))
        if not isinstance(e, (list, tuple)) or len(e) != 2:
            raise _fail(name, f"edge {e!r} is not a pair of node ids")
        pairs.append((e[0], e[1]))
    return _graph_from_records(name, ids, np.array(xyz, np.float64).reshape(-1, 3), np.array(r, np.float64), pairs,
                               "json")


def _csv_rows(text: str, name: str, need: tuple):
    rd = csv.DictReader(io.StringIO(text))
    cols = [c.strip().lower() for c in (rd.fieldnames or [])]
    if any(c not in cols for c in need):
        raise _fail(name, f"needs the columns {', '.join(need)} (has {', '.join(cols) or 'none'})")
    for ln, row in enumerate(rd, 2):
        yield ln, {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}


def _read_csv(text: str, name: str, path: Path | None = None):
    """Nodes ``id,x,y,z,radius`` with a ``parent`` column (a tree), or without it and the edges in
    ``<stem>.edges.csv`` beside the file (columns ``source,target``: any graph)."""
    first = text.splitlines()[0].lower() if text.strip() else ""
    has_parent = "parent" in [c.strip() for c in first.split(",")]
    edges_file = path.with_name(path.stem + ".edges.csv") if path is not None else None
    if not has_parent and (edges_file is None or not edges_file.is_file()):
        raise _fail(name, "needs the columns id, x, y, z, radius, parent (or the edges in "
                          f"{path.stem if path else '<name>'}.edges.csv with columns source, target)")
    ids, xyz, r, pairs = [], [], [], []
    need = ("id", "x", "y", "z", "radius") + (("parent",) if has_parent else ())
    for ln, row in _csv_rows(text, name, need):
        try:
            i = int(row["id"])
            ids.append(i)
            xyz.append([float(row["x"]), float(row["y"]), float(row["z"])])
            r.append(float(row["radius"]))
            p = row.get("parent", "")
            if p not in ("", "-1"):
                pairs.append((int(p), i))
        except ValueError:
            raise _fail(name, f"line {ln}: {', '.join(need)} must be numbers") from None
    if not ids:
        raise _fail(name, "holds no nodes")
    if not has_parent:
        ename = edges_file.name
        for ln, row in _csv_rows(edges_file.read_text(encoding="utf-8"), ename, ("source", "target")):
            try:
                pairs.append((int(row["source"]), int(row["target"])))
            except ValueError:
                raise _fail(ename, f"line {ln}: source and target must be node ids") from None
    return _graph_from_records(name, ids, np.array(xyz, np.float64).reshape(-1, 3), np.array(r, np.float64), pairs,
                               "csv")


def _merge(xyz, r, edges):
    """Coincident points (same centre and radius) become one node; repeated and zero-length
    segments go. Returns (points, radius, edges (i < j, sorted, unique), repeated count)."""
    key = np.column_stack([xyz, r])
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    e = inv[edges] if len(edges) else np.zeros((0, 2), np.int64)
    e = np.sort(e, axis=1)
    e = e[e[:, 0] != e[:, 1]]
    ue = np.unique(e, axis=0) if len(e) else e
    used = np.unique(ue.ravel())
    remap = np.full(len(uniq), -1, np.int64)
    remap[used] = np.arange(len(used))
    return (uniq[used, :3].copy(), uniq[used, 3].copy(), remap[ue].reshape(-1, 2), int(len(e) - len(ue)))


def load_tree(path, units: str = "um", radius_array: str | None = None) -> Tree:
    """Read a centerline file into a :class:`Tree` (µm).

    Parameters
    ----------
    path : str or Path
        ``.swc``, ``.vtp``/``.vtk`` (PolyData lines), ``.json`` or ``.csv`` graph.
    units : 'um' | 'mm' | 'nm'
        Length unit of the file (coordinates and radii).
    radius_array : str, optional
        VTK point array holding the radius (default ``MaximumInscribedSphereRadius``, then ``Radius``).

    Returns
    -------
    Tree

    Raises
    ------
    BioslicerError
        One line naming the problem: unreadable file, cycles or missing/duplicate ids in an SWC,
        non-finite coordinates, a radius that is not positive, a VTK file without a radius array
        (naming the arrays it has), a graph edge naming a missing node.
    """
    path = Path(path)
    name = path.name
    if units not in UNITS_TO_UM:
        raise BioslicerError(f"unknown units {units!r}; use um, mm or nm")
    if not path.is_file():
        raise BioslicerError(f"centerline file {path} not found")
    suf = path.suffix.lower()
    if suf not in CENTERLINE_SUFFIXES:
        raise BioslicerError(f"{name}: not a centerline file; use .swc, .vtp, .vtk, .json or .csv")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    if suf in (".vtp", ".vtk"):
        xyz, r, edges, rep = _read_vtk(path, name, radius_array)
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(name, "is not UTF-8 text") from None
        if suf == ".csv":
            xyz, r, edges, rep = _read_csv(text, name, path)
        else:
            xyz, r, edges, rep = (_read_swc if suf == ".swc" else _read_json)(text, name)
    s = UNITS_TO_UM[units]
    pts, rad, e, repeated = _merge(xyz * s, r * s, edges)
    if len(e) == 0:
        raise _fail(name, "holds no vessel segments (no two connected points)")
    rep.update({"file": name, "sha256": sha, "units": units, "repeated_segments": repeated})
    return Tree(pts, rad, e, None, name, sha, units, rep)


def load_geometry(path, units: str = "um", repair: bool = False, printer=None, radius_array: str | None = None,
                  recipe=None):
    """A centerline file as a :class:`Tree`, any other file as a mesh :class:`~bioslicer.mesh.Solid`
    (``load_mesh`` with ``repair``, ``printer``, ``recipe``)."""
    if is_centerline_path(path):
        return load_tree(path, units=units, radius_array=radius_array)
    from .mesh import load_mesh

    return load_mesh(path, units=units, repair=repair, printer=printer, recipe=recipe)


# ============================================================================ writers
def tree_to_swc(points_um, radius_um, parent, comment: str = "") -> str:
    """SWC text of a tree given per node its parent index (-1 for a root; ids are index + 1)."""
    lines = [f"# {c}" for c in comment.splitlines()] if comment else []
    lines.append("# n type x y z radius parent  (µm)")
    for i, (p, r, q) in enumerate(zip(np.asarray(points_um), np.asarray(radius_um), np.asarray(parent))):
        lines.append(f"{i + 1} 3 {p[0]:.6f} {p[1]:.6f} {p[2]:.6f} {r:.6f} {int(q) + 1 if q >= 0 else -1}")
    return "\n".join(lines) + "\n"


# ============================================================================ inspect
def _branches(tree: Tree):
    """Vessels: chains of segments between nodes whose degree is not 2.

    Returns a list of (node list, segment list) per vessel."""
    deg = tree.degree()
    N = len(tree.points_um)
    adj: list[list[tuple[int, int]]] = [[] for _ in range(N)]
    for g, (a, b) in enumerate(tree.edges):
        adj[a].append((int(b), g))
        adj[b].append((int(a), g))
    seen = np.zeros(tree.n_segments, bool)
    out = []
    starts = [i for i in range(N) if deg[i] != 2] or [int(tree.edges[0, 0])]
    for s in starts:
        for nb, g in adj[s]:
            if seen[g]:
                continue
            nodes, segs = [s], []
            cur, gg = nb, g
            while True:
                seen[gg] = True
                segs.append(gg)
                nodes.append(cur)
                if deg[cur] != 2 or cur == s:
                    break
                nxt = [(n2, g2) for n2, g2 in adj[cur] if not seen[g2]]
                if not nxt:
                    break
                cur, gg = nxt[0]
            out.append((nodes, segs))
    return out


def murray_exponent(r_parent: float, r_children) -> float | None:
    """The k with ``r_parent**k == sum(r_child**k)`` (bisection), or None when no k > 0 fits."""
    rc = np.asarray(r_children, dtype=np.float64) / float(r_parent)
    if np.any(rc >= 1.0) or len(rc) < 2:
        return None
    f = lambda k: float(np.sum(rc ** k) - 1.0)  # noqa: E731  (decreasing in k)
    lo, hi = 1e-6, 1.0
    while f(hi) > 0 and hi < 1e3:
        hi *= 2
    if f(hi) > 0:
        return None
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def inspect_tree(tree: Tree, recipe=None) -> dict:
    """The inspect report of a centerline tree.

    Vessels (chains between branch points and ends), bifurcations, terminals, length, radius
    range, a Murray's-law exponent per bifurcation (parent: the widest of the three vessels,
    radii as each vessel's mean node radius), paths that overlap (repeated segments), and with a
    recipe the lumen checks of :func:`bioslicer.perfusion.lumen_checks`.
    """
    deg = tree.degree()
    branches = _branches(tree)
    vessel_r = [float(np.mean(tree.radius_um[nodes[1:-1]] if len(nodes) > 2 else tree.radius_um[nodes]))
                for nodes, _ in branches]
    at_node: dict[int, list[int]] = {}
    for v, (nodes, _) in enumerate(branches):
        for end in (nodes[0], nodes[-1]):
            if deg[end] >= 3:
                at_node.setdefault(int(end), []).append(v)
    bif = []
    for node in sorted(at_node):
        vs = at_node[node]
        rs = sorted((vessel_r[v] for v in vs), reverse=True)
        bif.append({"node": node, "point_um": tree.points_um[node].tolist(), "vessels": len(vs),
                    "radii_um": rs, "murray_exponent": murray_exponent(rs[0], rs[1:])})
    ks = [b["murray_exponent"] for b in bif if b["murray_exponent"] is not None]
    rep = {
        "file": tree.name, "sha256": tree.sha256, "units": tree.units, "format": tree.report.get("format"),
        "nodes": int(len(tree.points_um)), "segments": tree.n_segments, "vessels": len(branches),
        "bifurcations": int(np.sum(deg == 3)), "multifurcations": int(np.sum(deg > 3)),
        "terminals": int(np.sum(deg == 1)), "length_um": float(tree.segment_lengths_um().sum()),
        "radius_um": [float(tree.radius_um.min()), float(tree.radius_um.max())],
        "bounds_um": tree.bounds_um.tolist(), "size_um": tree.size_um.tolist(),
        "murray": bif, "murray_exponent_median": float(np.median(ks)) if ks else None,
        "repeated_segments": int(tree.report.get("repeated_segments", 0)),
        "paths": tree.report.get("paths"),
        "cycles": int(tree.n_segments - len(tree.points_um) + _n_components(tree)),
        "components": _n_components(tree),
    }
    rep["overlapping_paths"] = rep["repeated_segments"] > 0
    if recipe is not None:
        from .perfusion import lumen_checks

        lc = lumen_checks(tree, recipe)
        rep["narrow_lumens"] = lc["narrow"]
        rep["warnings"] = lc["warnings"]
    return rep


def _n_components(tree: Tree) -> int:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    N = len(tree.points_um)
    e = tree.edges
    m = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(N, N))
    return int(connected_components(m, directed=False)[0])
