"""Sample constructs for tests, benchmarks and demos: vessel trees, channel blocks, scaffolds.

Every function returns a :class:`trimesh.Trimesh` in µm and is deterministic: the same
parameters (and seed) give the same vertices and faces, so the same STL bytes. The files in
``meshes/`` are these functions with their default parameters (``bioslicer mesh ...``).

=====================  =====================================================================
``vessel_tree``        bifurcating tree of tubes following Murray's law, one closed shell per
                       segment, shells overlapping at the joints and NOT unioned
``channel_block``      a hydrogel block minus the union of such a tree: perfusable channels
``gyroid``             a sheet-gyroid (TPMS) scaffold clipped to a cube
``woodpile``           stacked rods alternating 0/90°, unioned
``calibration``        cubes, thin walls and a staircase on a base plate, unioned
=====================  =====================================================================

Booleans use manifold3d (exact, always a closed manifold result); the gyroid is contoured with
VTK through pyvista.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

from .errors import BioslicerError

#: Default hydrogel block of the reference job (x, y, z), µm.
DEFAULT_BLOCK_UM = (1000.0, 800.0, 1000.0)

#: Area of the gyroid nodal surface ``f = 0`` per unit-cell volume, times the cell size
#: (dimensionless; 3.0919 measured by contouring ``f`` at 160 samples per cell).
GYROID_AREA_PER_CELL = 3.0919
#: ``d/dt`` of the volume fraction of ``|f| < t`` at small t, ``2 p_f(0)`` (dimensionless;
#: measured on a 256^3 grid over one period, linear within 1 % up to t = 0.6).
GYROID_DFRACTION_DT = 0.6441


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------

def _libm(fn, x):
    """``fn`` (a :mod:`math` function) element by element.

    numpy picks SIMD loops for ``cbrt``, ``power``, ``sin``... by the CPU it runs on, and
    their last bits differ between machines; the C library's results do not, so the sample
    meshes are the same bytes everywhere. Only for small arrays (a few hundred values).
    """
    a = np.asarray(x, dtype=np.float64)
    return np.array([fn(float(t)) for t in a.ravel()], dtype=np.float64).reshape(a.shape)


def _dot_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of (..., 3) arrays in a fixed order (no BLAS, no SIMD reduction)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _unit_rows(a: np.ndarray) -> np.ndarray:
    """``a`` (..., 3) divided by its row lengths, bit-reproducible (see :func:`_dot_rows`)."""
    return a / np.sqrt(_dot_rows(a, a))[..., None]


def _positive(name: str, value: float, flag: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise BioslicerError(f"{name} must be a positive number (got {value:g}); pass a value > 0 to {flag}")
    return value


def _size3(size_um, flag: str) -> np.ndarray:
    arr = np.asarray(size_um, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise BioslicerError(f"size must be three positive lengths in µm (got {size_um!r}); fix {flag}")
    return arr


def _to_manifold(mesh: trimesh.Trimesh):
    import manifold3d

    m = manifold3d.Manifold(manifold3d.Mesh64(
        vert_properties=np.ascontiguousarray(mesh.vertices, dtype=np.float64),
        tri_verts=np.ascontiguousarray(mesh.faces, dtype=np.uint64)))
    if m.status() != manifold3d.Error.NoError:  # our own meshes are closed: a bug, not user error
        raise RuntimeError(f"mesh is not a closed manifold for manifold3d: {m.status()}")
    return m


def _from_manifold(m) -> trimesh.Trimesh:
    out = m.to_mesh64()
    # copies: views would keep the nanobind Mesh64 alive until interpreter exit
    verts = np.array(np.asarray(out.vert_properties)[:, :3], dtype=np.float64, order="C")
    faces = np.array(out.tri_verts, dtype=np.int64, order="C")
    return trimesh.Trimesh(verts, faces, process=False)


def _union(meshes: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Union of closed meshes with manifold3d: one closed manifold mesh."""
    import manifold3d

    return _from_manifold(manifold3d.Manifold.batch_boolean([_to_manifold(m) for m in meshes],
                                                            manifold3d.OpType.Add))


def _boxes(lo_um: np.ndarray, hi_um: np.ndarray) -> list[trimesh.Trimesh]:
    """Axis-aligned boxes from (K, 3) corner arrays, µm."""
    return [trimesh.creation.box(bounds=np.array([lo, hi])) for lo, hi in zip(lo_um, hi_um)]


def _tubes(start_um: np.ndarray, end_um: np.ndarray, radius_um: np.ndarray, sections: int) -> trimesh.Trimesh:
    """Capped cylinders, one closed shell each, concatenated (not unioned).

    Parameters
    ----------
    start_um, end_um : (S, 3) float64
        Axis end points of each tube, µm.
    radius_um : (S,) float64
        Radius of each tube, µm.
    sections : int
        Polygon sides of each tube.

    Returns
    -------
    mesh : trimesh.Trimesh
        ``S`` closed shells, ``4 * sections`` faces each, outward normals.
    """
    s = np.asarray(start_um, np.float64)
    e = np.asarray(end_um, np.float64)
    r = np.asarray(radius_um, np.float64)
    n_seg, n = len(s), int(sections)
    d = _unit_rows(e - s)
    # a frame (u, v) perpendicular to each axis, chosen without branches on the data
    helper = np.where(np.abs(d[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    u = _unit_rows(np.cross(d, helper))
    v = np.cross(d, u)
    ang = 2.0 * np.pi * np.arange(n) / n
    ring = (_libm(math.cos, ang)[None, :, None] * u[:, None, :]
            + _libm(math.sin, ang)[None, :, None] * v[:, None, :]) * r[:, None, None]
    # per tube: n bottom ring, n top ring, bottom centre, top centre
    verts = np.concatenate([s[:, None] + ring, e[:, None] + ring, s[:, None], e[:, None]], axis=1)
    i = np.arange(n)
    j = (i + 1) % n
    b0, b1, t0, t1, cb, ct = i, j, n + i, n + j, np.full(n, 2 * n), np.full(n, 2 * n + 1)
    local = np.concatenate([
        np.stack([b0, b1, t1], 1), np.stack([b0, t1, t0], 1),  # side, outward (u, v, d right-handed)
        np.stack([cb, b1, b0], 1),                              # bottom cap, normal -d
        np.stack([ct, t0, t1], 1),                              # top cap, normal +d
    ])
    faces = local[None] + (np.arange(n_seg) * (2 * n + 2))[:, None, None]
    return trimesh.Trimesh(verts.reshape(-1, 3), faces.reshape(-1, 3), process=False)


def _export_check(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    if not mesh.is_watertight or mesh.volume <= 0:  # pragma: no cover - a bug if it happens
        raise RuntimeError("sample mesh is not a closed, outward-oriented solid")
    return mesh


# ---------------------------------------------------------------------------------------------
# vessel tree
# ---------------------------------------------------------------------------------------------

@dataclass
class TreeSegments:
    """The centre-line table of a vessel tree, in heap order (children of i are 2i+1, 2i+2).

    Attributes
    ----------
    start_um, end_um : (S, 3) float64
        Centre-line end points, µm. A child starts exactly where its parent ends; the root
        starts on the block face x = 0 (the inlet) and every leaf ends on a block face (an outlet).
    radius_um : (S,) float64
        Lumen radius, µm; at each branch ``radius[p]**3 == radius[c1]**3 + radius[c2]**3``.
    parent : (S,) int64
        Index of the parent segment, -1 for the root.
    level : (S,) int64
        Generation, 0 for the root.
    """

    start_um: np.ndarray
    end_um: np.ndarray
    radius_um: np.ndarray
    parent: np.ndarray
    level: np.ndarray

    def __len__(self) -> int:
        return len(self.radius_um)

    @property
    def is_leaf(self) -> np.ndarray:
        """(S,) bool: segments without children."""
        idx = np.arange(len(self))
        return 2 * idx + 1 >= len(self)


def _rotate(vec: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of ``vec`` about the unit ``axis`` by ``angle`` radians."""
    c, s = math.cos(angle), math.sin(angle)
    return vec * c + np.cross(axis, vec) * s + axis * _dot_rows(axis, vec) * (1 - c)


def _exit_distance(p: np.ndarray, d: np.ndarray, box: np.ndarray) -> tuple[float, int]:
    """Distance along ``d`` from ``p`` (inside ``[0, box]``) to the box boundary, and the axis hit."""
    with np.errstate(divide="ignore"):
        t = np.where(d > 1e-12, (box - p) / d, np.where(d < -1e-12, -p / d, np.inf))
    k = int(np.argmin(t))
    return float(t[k]), k


def vessel_tree_segments(levels: int = 4, root_radius_um: float = 60.0, root_length_um: float = 300.0,
                         branching_angle_deg: float = 35.0, seed: int = 0,
                         box_um=DEFAULT_BLOCK_UM) -> TreeSegments:
    """Centre lines of a bifurcating vessel tree that perfuses a block.

    The root enters the block through the centre of the face x = 0 along +x. Each branch
    splits the flow ``q`` of its parent into fractions ``f`` and ``1 - f`` (``f`` drawn from
    U(0.3, 0.7) with ``seed``); Murray's law ``r^3 ∝ q`` gives the child radii, so
    ``r_parent^3 = r_1^3 + r_2^3`` exactly. The two children leave at angles that add to
    ``2 * branching_angle_deg``, the thinner one turning more (``θ_1 ∝ r_2^2``). Successive
    branching planes turn by 90° (± 20° drawn from the seed) about the parent axis, as in
    real arterial trees. Segment lengths follow the radius (``L = root_length * r / r_root``,
    ± 10 %, all shrunk by one factor when the inner generations would need more than 60 % of
    the block depth left after the root); leaves run on until they leave the block, so every
    leaf is an outlet.

    Parameters
    ----------
    levels : int
        Generations including the root (1..8); the tree has ``2**levels - 1`` segments.
    root_radius_um : float
        Radius of the root (inlet) segment, µm.
    root_length_um : float
        Length of the root segment inside the block, µm.
    branching_angle_deg : float
        Half the angle between the two children of a symmetric branch, degrees (0..80).
    seed : int
        Seed of the flow splits, length jitter and branching-plane jitter.
    box_um : (3,) float
        The block the tree perfuses, ``[0, box_um]``, µm.

    Returns
    -------
    segments : TreeSegments
        The centre-line table (start, end, radius, parent, level).

    Raises
    ------
    BioslicerError
        Parameters out of range, or a branch point that falls outside the block (with a hint
        to use fewer levels or a shorter root).
    """
    levels = int(levels)
    if not 1 <= levels <= 8:
        raise BioslicerError(f"levels must be 1..8 (got {levels}); pass --levels between 1 and 8")
    r0 = _positive("root radius", root_radius_um, "--root-radius-um")
    l0 = _positive("root length", root_length_um, "--root-length-um")
    angle = float(branching_angle_deg)
    if not 0.0 < angle <= 80.0:
        raise BioslicerError(f"branching angle must be in (0, 80] degrees (got {angle:g}); fix --branching-angle-deg")
    box = _size3(box_um, "--size-um")
    if 2 * r0 >= min(box[1], box[2]):
        raise BioslicerError(f"root diameter {2 * r0:g} µm does not fit the {box[1]:g} x {box[2]:g} µm inlet face; "
                             "use a smaller --root-radius-um or a larger block")
    if l0 >= box[0]:
        raise BioslicerError(f"root length {l0:g} µm does not fit the block length {box[0]:g} µm; "
                             "use a shorter --root-length-um")

    rng = np.random.default_rng(int(seed))
    n = 2 ** levels - 1
    start = np.zeros((n, 3))
    end = np.zeros((n, 3))
    radius = np.zeros(n)
    parent = np.full(n, -1, dtype=np.int64)
    level = np.zeros(n, dtype=np.int64)
    dirs = np.zeros((n, 3))
    normals = np.zeros((n, 3))  # unit vector ⟂ axis, in the plane of the segment's own branching

    radius[0] = r0
    start[0] = (0.0, box[1] / 2, box[2] / 2)
    dirs[0] = (1.0, 0.0, 0.0)
    normals[0] = (0.0, 1.0, 0.0)  # the first split is horizontal
    length = np.zeros(n)
    length[0] = l0
    half = np.deg2rad(angle)
    # inner generations 1..levels-2 take at most 60 % of the depth left after the root, so
    # deep trees shrink to fit and the leaves keep room to run out to the faces
    inner = l0 * math.fsum(2.0 ** (-k / 3.0) for k in range(1, max(levels - 1, 1)))
    scale = min(1.0, 0.6 * (box[0] - l0) / inner) if inner > 0 else 1.0
    for i in range(n):  # at most 255 segments: a tree, not a job-sized loop
        if i > 0:
            p = (i - 1) // 2
            parent[i], level[i] = p, level[p] + 1
            start[i] = end[p]
        is_leaf = 2 * i + 1 >= n
        if is_leaf:  # an outlet: run on to the block boundary
            length[i], _ = _exit_distance(start[i], dirs[i], box)
        elif i > 0:
            length[i] = l0 * scale * radius[i] / r0 * rng.uniform(0.9, 1.1)
        end[i] = start[i] + dirs[i] * length[i]
        if is_leaf:
            continue
        margin = radius[i]
        if np.any(end[i] < margin) or np.any(end[i] > box - margin):
            raise BioslicerError(
                f"the vessel tree leaves the {box[0]:g} x {box[1]:g} x {box[2]:g} µm block at level {level[i]}; "
                "use fewer --levels, a shorter --root-length-um or a smaller --branching-angle-deg")
        # split: flow fractions -> Murray radii -> angles
        f = rng.uniform(0.3, 0.7)
        r1, r2 = radius[i] * math.cbrt(f), radius[i] * math.cbrt(1.0 - f)
        th1 = 2 * half * r2 ** 2 / (r1 ** 2 + r2 ** 2)
        th2 = 2 * half * r1 ** 2 / (r1 ** 2 + r2 ** 2)
        w = normals[i]
        for c, r_c, th, sign in ((2 * i + 1, r1, th1, 1.0), (2 * i + 2, r2, th2, -1.0)):
            radius[c] = r_c
            dirs[c] = _unit_rows(math.cos(th) * dirs[i] + sign * math.sin(th) * w)
            # next branching plane: 90° (± 20°) about the child's axis from this one
            nxt = np.cross(dirs[c], w)
            nxt = _unit_rows(nxt)
            normals[c] = _rotate(nxt, dirs[c], np.deg2rad(rng.uniform(-20.0, 20.0)))
    return TreeSegments(start, end, radius, parent, level)


def vessel_tree(levels: int = 4, root_radius_um: float = 60.0, root_length_um: float = 300.0,
                branching_angle_deg: float = 35.0, seed: int = 0, sections: int = 24,
                box_um=DEFAULT_BLOCK_UM) -> trimesh.Trimesh:
    """A bifurcating vessel tree as separate, overlapping tube shells (not unioned).

    One capped cylinder per segment of :func:`vessel_tree_segments`. Each child tube starts a
    little inside its parent (by ``r_parent * sin θ`` along its own axis) so the tubes overlap
    at the joints, as exported vessel-tree meshes do; the root starts one radius before the
    inlet face and leaves run ``r (1 + tan φ)`` past their outlet face (φ: angle to the face
    normal) so a boolean against the block cuts clean openings. The shells are concatenated,
    so the mesh is watertight shell by shell but self-overlapping: the solid is the union
    (nonzero winding), the hard case for a slicer.

    Parameters
    ----------
    levels, root_radius_um, root_length_um, branching_angle_deg, seed, box_um
        See :func:`vessel_tree_segments` (µm, degrees).
    sections : int
        Polygon sides per tube (6..256); each tube has ``4 * sections`` faces.

    Returns
    -------
    mesh : trimesh.Trimesh
        ``2**levels - 1`` closed shells, µm.
    """
    sections = int(sections)
    if not 6 <= sections <= 256:
        raise BioslicerError(f"sections must be 6..256 (got {sections}); fix --sections")
    seg = vessel_tree_segments(levels, root_radius_um, root_length_um, branching_angle_deg, seed, box_um)
    box = _size3(box_um, "--size-um")
    d = _unit_rows(seg.end_um - seg.start_um)
    start = seg.start_um.copy()
    end = seg.end_um.copy()
    r = seg.radius_um
    # joints: back each child into its parent
    child = seg.parent >= 0
    p = seg.parent[child]
    cos_th = np.clip(_dot_rows(d[child], d[p]), -1.0, 1.0)
    start[child] -= d[child] * (r[p] * np.sqrt(1.0 - cos_th ** 2) + 0.05 * r[child])[:, None]
    # inlet: the root starts one radius outside the face x = 0
    start[0] -= d[0] * r[0]
    # outlets: run each leaf past its exit face
    leaf = seg.is_leaf
    on_face = np.minimum(np.abs(seg.end_um[leaf]), np.abs(seg.end_um[leaf] - box))
    axis = np.argmin(on_face, axis=1)
    cos_phi = np.maximum(np.abs(d[leaf][np.arange(leaf.sum()), axis]), math.cos(math.radians(80.0)))
    end[leaf] += d[leaf] * (r[leaf] * (1.0 + np.sqrt(1.0 - cos_phi ** 2) / cos_phi))[:, None]
    return _export_check(_tubes(start, end, r, sections))


def vessel_tree_swc(levels: int = 4, root_radius_um: float = 60.0, root_length_um: float = 300.0,
                    branching_angle_deg: float = 35.0, seed: int = 0, box_um=DEFAULT_BLOCK_UM) -> str:
    """The centre lines of :func:`vessel_tree_segments` as SWC text (µm).

    Node 1 is the inlet (radius of the root); every segment ends in a node with its own
    radius, and every child starts with a node at its parent's end carrying the child's radius
    (so each vessel is a cylinder of its own radius, as in the mesh; the joint is the parent's
    end sphere). Parameters as :func:`vessel_tree_segments`.
    """
    from .centerline import tree_to_swc

    seg = vessel_tree_segments(levels, root_radius_um, root_length_um, branching_angle_deg, seed, box_um)
    pts, rad, par = [seg.start_um[0]], [seg.radius_um[0]], [-1]
    end_node = np.zeros(len(seg), np.int64)
    for i in range(len(seg)):          # parents come before children (breadth-first numbering)
        if seg.parent[i] >= 0:
            pts.append(seg.start_um[i])
            rad.append(seg.radius_um[i])
            par.append(int(end_node[seg.parent[i]]))
        start = len(pts) - 1
        pts.append(seg.end_um[i])
        rad.append(seg.radius_um[i])
        par.append(start)
        end_node[i] = len(pts) - 1
    comment = (f"bioslicer sample vessel tree: levels={levels} root_radius_um={root_radius_um:g} "
               f"root_length_um={root_length_um:g} branching_angle_deg={branching_angle_deg:g} seed={seed}")
    return tree_to_swc(np.array(pts), np.array(rad), np.array(par), comment)


def channel_block(size_um=DEFAULT_BLOCK_UM, tree: trimesh.Trimesh | None = None, levels: int = 4,
                  root_radius_um: float = 60.0, root_length_um: float = 300.0,
                  branching_angle_deg: float = 35.0, seed: int = 0, sections: int = 24) -> trimesh.Trimesh:
    """A hydrogel block ``[0, size_um]`` minus the lumen of a vessel tree: perfusable channels.

    Parameters
    ----------
    size_um : (3,) float
        Block size (x, y, z), µm; the block spans ``[0, size_um]``.
    tree : trimesh.Trimesh or None
        Lumen to remove, as closed (possibly overlapping) shells in µm; None builds
        :func:`vessel_tree` with the parameters below, sized to this block.
    levels, root_radius_um, root_length_um, branching_angle_deg, seed, sections
        Passed to :func:`vessel_tree` when ``tree`` is None.

    Returns
    -------
    mesh : trimesh.Trimesh
        One closed manifold mesh, µm; its volume is the block volume minus the volume of the
        union of the tubes inside the block.
    """
    import manifold3d

    size = _size3(size_um, "--size-um")
    if tree is None:
        tree = vessel_tree(levels, root_radius_um, root_length_um, branching_angle_deg, seed, sections, size)
    shells = tree.split(only_watertight=False) if tree.body_count > 1 else [tree]
    if not all(sh.is_watertight for sh in shells):
        raise BioslicerError("the lumen mesh has open shells; pass closed tubes (repair the mesh) as the tree")
    lumen = manifold3d.Manifold.batch_boolean([_to_manifold(s) for s in shells], manifold3d.OpType.Add)
    block = manifold3d.Manifold.cube(tuple(float(v) for v in size), False)
    out = _from_manifold(block - lumen)
    if len(out.faces) == 0:
        raise BioslicerError("the channels remove the whole block; use a larger --size-um or thinner vessels")
    return _export_check(out)


# ---------------------------------------------------------------------------------------------
# gyroid
# ---------------------------------------------------------------------------------------------

def gyroid_level(thickness_um: float, cell_um: float) -> float:
    """Level ``t`` of the sheet ``|f| < t`` whose mean wall thickness is ``thickness_um``.

    With ``f = sin kx cos ky + sin ky cos kz + sin kz cos kx`` (``k = 2π / cell``), the volume
    fraction of ``|f| < t`` is ``GYROID_DFRACTION_DT * t`` for thin sheets, and a sheet of
    mean thickness ``h`` around the minimal surface fills ``h * GYROID_AREA_PER_CELL / cell``.

    Parameters
    ----------
    thickness_um, cell_um : float
        Mean wall thickness and unit-cell size, µm.

    Returns
    -------
    t : float
        Level of ``|f|`` (dimensionless).
    """
    return float(thickness_um) * GYROID_AREA_PER_CELL / float(cell_um) / GYROID_DFRACTION_DT


def gyroid_solid_fraction(thickness_um: float, cell_um: float) -> float:
    """Thin-sheet solid fraction of a sheet gyroid: ``thickness * 3.0919 / cell``."""
    return float(thickness_um) * GYROID_AREA_PER_CELL / float(cell_um)


def gyroid(size_um: float = 300.0, cell_um: float = 100.0, thickness_um: float = 10.0,
           resolution: int = 12, max_faces: int = 24000) -> trimesh.Trimesh:
    """A sheet-gyroid (TPMS) scaffold: the sheet ``|f| < t`` clipped to the cube ``[0, size]^3``.

    ``f`` is sampled on a VTK ImageData with nodes on the cube faces (``resolution`` per
    cell) and the volume is clipped twice, ``f < t`` then ``f > -t`` (linear interpolation
    on every cell edge); the boundary of the clipped cells is the closed surface, cube
    faces included. Clipping the two smooth level sets separately, rather than contouring
    ``|f| - t``, keeps walls thinner than a voxel: an edge that crosses the whole sheet is
    cut at both levels instead of being skipped. When the surface has more than
    ``max_faces`` faces it is reduced with VTK quadric decimation (a result that is not
    watertight is rejected: the target is relaxed up to twice, then the full surface is kept)
    and vertices are clamped back onto the cube.

    Parameters
    ----------
    size_um : float
        Side of the cube, µm.
    cell_um : float
        Unit-cell size (period), µm.
    thickness_um : float
        Mean wall thickness, µm (see :func:`gyroid_level`); must be below ``cell_um / 4``.
    resolution : int
        Samples per cell (6..64).
    max_faces : int
        Face budget for decimation; 0 keeps the full surface.

    Returns
    -------
    mesh : trimesh.Trimesh
        A closed mesh, µm, without loose chips (see :func:`_orient`); solid fraction about
        :func:`gyroid_solid_fraction` (+2 % at the default resolution, from the linear
        interpolation of ``f``).
    """
    import pyvista as pv

    size = _positive("gyroid size", size_um, "--size-um")
    cell = _positive("cell size", cell_um, "--cell-um")
    th = _positive("wall thickness", thickness_um, "--thickness-um")
    if th >= cell / 4:
        raise BioslicerError(f"wall thickness {th:g} µm is too thick for a {cell:g} µm cell; "
                             f"use --thickness-um below {cell / 4:g}")
    resolution = int(resolution)
    if not 6 <= resolution <= 64:
        raise BioslicerError(f"resolution must be 6..64 samples per cell (got {resolution}); fix --resolution")
    n = max(1, int(np.ceil(size * resolution / cell - 1e-9)))
    if n > 400:
        raise BioslicerError(f"the gyroid grid would be {n + 1}^3 samples; use a smaller --size-um or --resolution")
    max_faces = int(max_faces)
    if max_faces < 0:
        raise BioslicerError(f"max faces must be 0 (no decimation) or positive (got {max_faces}); fix --max-faces")
    h = size / n  # nodes fall on the cube faces
    c = np.arange(n + 1) * h
    k = 2.0 * np.pi / cell
    t = gyroid_level(th, cell)
    sx, cx = _libm(math.sin, k * c), _libm(math.cos, k * c)
    f = (sx[:, None, None] * cx[None, :, None] + sx[None, :, None] * cx[None, None, :]
         + sx[None, None, :] * cx[:, None, None])
    img = pv.ImageData(dimensions=f.shape, spacing=(h, h, h), origin=(0.0, 0.0, 0.0))
    img.point_data["f"] = f.ravel(order="F")
    sheet = img.clip_scalar(scalars="f", value=t, invert=True).clip_scalar(scalars="f", value=-t, invert=False)
    if sheet.n_cells == 0:
        raise BioslicerError("the gyroid sheet is empty at this resolution; raise --resolution or --thickness-um")
    surf = sheet.extract_surface(algorithm=None).triangulate().clean()
    if max_faces and surf.n_cells > max_faces:
        for target in (max_faces, max_faces * 5 // 4, max_faces * 3 // 2):
            if target >= surf.n_cells:
                break
            dec = _pv_to_trimesh(surf.decimate(1.0 - target / surf.n_cells, volume_preservation=True))
            if dec.is_watertight and dec.is_winding_consistent:
                # decimation drifts vertices about a voxel/20 off the cube faces: clamp back
                dec.vertices = np.clip(dec.vertices, 0.0, size)
                return _orient(dec)
    mesh = _pv_to_trimesh(surf)
    if not mesh.is_watertight:  # pragma: no cover - the boundary of clipped cells is closed
        raise RuntimeError("gyroid surface is not watertight")
    return _orient(mesh)


def _pv_to_trimesh(poly) -> trimesh.Trimesh:
    faces = np.asarray(poly.faces).reshape(-1, 4)[:, 1:]
    return trimesh.Trimesh(np.asarray(poly.points, dtype=np.float64), faces, process=True)


def _orient(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Outward normals, and no chips: shells under 1 % of the largest shell's volume are
    dropped (where the sheet grazes a cube corner it leaves a loose tetrahedron that would
    float away in the bath)."""
    if mesh.volume < 0:
        mesh = trimesh.Trimesh(mesh.vertices, mesh.faces[:, ::-1], process=False)
    if mesh.body_count > 1:
        shells = mesh.split(only_watertight=False)
        vol = np.array([abs(sh.volume) for sh in shells])
        keep = [sh for sh, v in zip(shells, vol) if v >= 0.01 * vol.max()]
        if len(keep) < len(shells):
            mesh = keep[0] if len(keep) == 1 else trimesh.util.concatenate(keep)
    return _export_check(mesh)


# ---------------------------------------------------------------------------------------------
# woodpile and calibration
# ---------------------------------------------------------------------------------------------

def woodpile_rods(size_um=(300.0, 300.0), rod_width_um: float = 20.0, rod_height_um: float = 20.0,
                  pitch_um: float = 60.0, layers: int = 10, overlap_um: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """The rods of a woodpile as box corners.

    Layer ``i`` holds rods along x (even i) or y (odd i), centred at ``pitch/2 + j*pitch``
    across the footprint; layer ``i`` spans z ``[i (h - o), i (h - o) + h]`` so it sinks
    ``o = overlap_um`` into the layer below and the union is connected.

    Parameters
    ----------
    size_um : (2,) float
        Footprint (x, y), µm; rods span it end to end.
    rod_width_um, rod_height_um, pitch_um, overlap_um : float
        Rod cross-section, centre-to-centre spacing in a layer, overlap with the layer below, µm.
    layers : int
        Number of rod layers (1..200).

    Returns
    -------
    lo_um, hi_um : (R, 3) float64
        Corners of every rod, µm.
    """
    fp = np.asarray(size_um, dtype=np.float64).reshape(-1)
    if fp.size == 1:
        fp = np.repeat(fp, 2)
    if fp.shape != (2,) or not np.all(np.isfinite(fp)) or np.any(fp <= 0):
        raise BioslicerError(f"woodpile size must be one or two positive lengths in µm (got {size_um!r}); fix --size-um")
    w = _positive("rod width", rod_width_um, "--rod-width-um")
    h = _positive("rod height", rod_height_um, "--rod-height-um")
    pitch = _positive("pitch", pitch_um, "--pitch-um")
    o = float(overlap_um)
    layers = int(layers)
    if not 1 <= layers <= 200:
        raise BioslicerError(f"layers must be 1..200 (got {layers}); fix --layers")
    if pitch <= w:
        raise BioslicerError(f"pitch {pitch:g} µm must exceed the rod width {w:g} µm or the rods merge; fix --pitch-um")
    if not 0 < o < h:
        raise BioslicerError(f"overlap must be between 0 and the rod height {h:g} µm (got {o:g}); fix --overlap-um")
    if pitch > min(fp):
        raise BioslicerError(f"pitch {pitch:g} µm is larger than the footprint; use a larger --size-um")
    lo, hi = [], []
    for i in range(layers):  # per layer, rods vectorised
        across = 1 if i % 2 == 0 else 0      # rods along x vary in y, and vice versa
        along = 1 - across
        m = int(np.floor(fp[across] / pitch + 1e-9))
        centre = pitch / 2 + pitch * np.arange(m)
        l = np.zeros((m, 3))
        u = np.zeros((m, 3))
        l[:, along], u[:, along] = 0.0, fp[along]
        l[:, across], u[:, across] = centre - w / 2, centre + w / 2
        l[:, 2], u[:, 2] = i * (h - o), i * (h - o) + h
        lo.append(l)
        hi.append(u)
    return np.concatenate(lo), np.concatenate(hi)


def woodpile(size_um=(300.0, 300.0), rod_width_um: float = 20.0, rod_height_um: float = 20.0,
             pitch_um: float = 60.0, layers: int = 10, overlap_um: float = 4.0) -> trimesh.Trimesh:
    """A woodpile scaffold: rods alternating 0/90° layer by layer, unioned with manifold3d.

    Parameters
    ----------
    size_um, rod_width_um, rod_height_um, pitch_um, layers, overlap_um
        See :func:`woodpile_rods` (µm).

    Returns
    -------
    mesh : trimesh.Trimesh
        One closed manifold mesh, µm; z from 0 to ``layers (h - o) + o``.
    """
    lo, hi = woodpile_rods(size_um, rod_width_um, rod_height_um, pitch_um, layers, overlap_um)
    return _export_check(_union(_boxes(lo, hi)))


def calibration_boxes() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The boxes of :func:`calibration`: corners (µm) and a name for each.

    A 260 x 120 x 10 µm base plate; on it cubes of 10, 20 and 50 µm, thin walls 1 and 2 µm
    thick (60 µm long, 20 µm tall), and a staircase of five 10 µm steps (20 µm wide, 10 µm
    deep). Every part sinks 1 µm into the plate so the union is one solid; the heights above
    are the stated sizes.
    """
    plate = 10.0
    sink = 1.0
    z0 = plate - sink
    parts = [
        ("base plate", (0, 0, 0), (260, 120, plate)),
        ("cube 10", (10, 10, z0), (20, 20, plate + 10)),
        ("cube 20", (40, 10, z0), (60, 30, plate + 20)),
        ("cube 50", (80, 10, z0), (130, 60, plate + 50)),
        ("wall 1", (150, 10, z0), (151, 70, plate + 20)),
        ("wall 2", (170, 10, z0), (172, 70, plate + 20)),
    ]
    for i in range(5):  # staircase: nested boxes sharing the back and the floor
        parts.append((f"step {i + 1}", (190, 80, z0), (190 + 10 * (5 - i), 100, plate + 10 * (i + 1))))
    names = [p[0] for p in parts]
    lo = np.array([p[1] for p in parts], dtype=np.float64)
    hi = np.array([p[2] for p in parts], dtype=np.float64)
    return lo, hi, names


def calibration() -> trimesh.Trimesh:
    """A small calibration part: cubes, thin walls and a staircase on a base plate (unioned).

    Returns
    -------
    mesh : trimesh.Trimesh
        One closed manifold mesh, µm; see :func:`calibration_boxes` for the layout.
    """
    lo, hi, _ = calibration_boxes()
    return _export_check(_union(_boxes(lo, hi)))


def calibration_volume_um3() -> float:
    """Exact volume of :func:`calibration`: the plate plus each part above it, µm³."""
    lo, hi, names = calibration_boxes()
    plate = hi[0, 2]
    vol = np.prod(hi[0] - lo[0])
    single = [i for i, n in enumerate(names) if n.startswith(("cube", "wall"))]
    ext = hi[single] - lo[single]
    vol += np.sum(ext[:, 0] * ext[:, 1] * (hi[single, 2] - plate))
    # the staircase boxes are nested: each 10 µm run of 20 µm width stands at its step height
    steps = [i for i, n in enumerate(names) if n.startswith("step")]
    vol += np.sum(10.0 * 20.0 * (hi[steps, 2] - plate))
    return float(vol)


#: Sample name -> builder, for the CLI and the tests.
SAMPLES = {
    "vessel_tree": vessel_tree,
    "channel_block": channel_block,
    "gyroid": gyroid,
    "woodpile": woodpile,
    "calibration": calibration,
}


def to_stl_bytes(mesh: trimesh.Trimesh) -> bytes:
    """Binary STL of ``mesh`` (µm), byte-identical for identical meshes on every machine.

    The vertices are rounded to float32 first (what STL stores) and each facet normal is
    computed from those rounded corners with correctly rounded operations only (no BLAS,
    no SIMD reductions), so the bytes do not depend on the CPU or the library build.
    """
    tri = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces, dtype=np.int64)]
    tri = tri.astype(np.float32).astype(np.float64)
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.sqrt(_dot_rows(nrm, nrm))
    nrm = np.divide(nrm, length[:, None], out=np.zeros_like(nrm), where=length[:, None] > 0)
    rec = np.zeros(len(tri), dtype=np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)),
                                             ("attribute", "<u2")]))
    rec["normal"] = nrm
    rec["corners"] = tri
    return bytes(80) + np.uint32(len(tri)).astype("<u4").tobytes() + rec.tobytes()


def mesh_report(mesh: trimesh.Trimesh) -> dict:
    """Faces, vertices, shells, volume (µm³), bounds (µm) and watertightness of ``mesh``."""
    return {
        "faces": int(len(mesh.faces)),
        "vertices": int(len(mesh.vertices)),
        "shells": int(mesh.body_count),
        "volume_um3": float(mesh.volume),
        "bounds_um": np.asarray(mesh.bounds, dtype=np.float64).tolist(),
        "watertight": bool(mesh.is_watertight),
    }
