"""Open the lumen of a mesh ``channels`` job where it meets the margin of its block.

A channel block made from the lumen's bounds plus ``channel_margin_um`` seals every lumen: no
vessel reaches a face. For each face, the lumen's sections in a slab ``depth_um`` thick just inside
the margin plane (the lumen's own bounding plane) are united into a shadow; each compact piece of
the shadow (an end of a vessel meeting the margin, not the side of one running along it: the
piece's bounding rectangle at most :data:`MAX_ASPECT` times longer than wide) is extruded from
the slab out through the face and united with the lumen (manifold3d). A vessel end cut flat
across the face normal opens with its whole section; a tilted or rounded end with the part of
it inside the slab.
"""

from __future__ import annotations

import numpy as np

from ..errors import BioslicerError

#: planes per slab whose sections make the shadow of a face
N_PLANES = 6
#: longest / shortest side of a shadow piece's rectangle for it to count as a vessel end
MAX_ASPECT = 3.0


def _face_shadow(V, F, axis: int, plane_lo: float, plane_hi: float):
    """Union of the mesh's sections at N_PLANES planes ``x_axis = c`` in [plane_lo, plane_hi], as
    shapely geometry in the (axis+1, axis+2) coordinates, and the axis permutation used."""
    import shapely

    from ..mesh import Solid
    from ..slicing import slice_contours

    perm = [(axis + 1) % 3, (axis + 2) % 3, axis]   # a cyclic permutation keeps the orientation
    z = plane_lo + (np.arange(N_PLANES) + 0.5) * (plane_hi - plane_lo) / N_PLANES
    con = slice_contours(Solid(V[:, perm], F), z)
    return shapely.union_all([con.polygons(k) for k in range(con.n_layers)]), perm


def _compact(poly) -> bool:
    import shapely

    rect = shapely.minimum_rotated_rectangle(poly)
    xy = np.asarray(rect.exterior.coords) if rect.geom_type == "Polygon" else np.zeros((0, 2))
    if len(xy) < 4:
        return False
    a = np.linalg.norm(xy[1] - xy[0])
    b = np.linalg.norm(xy[2] - xy[1])
    return min(a, b) > 0 and max(a, b) <= MAX_ASPECT * min(a, b)


def open_mesh_lumen(solid, lo_um, hi_um, depth_um: float):
    """The lumen mesh united with prisms carrying its ends out through the block faces they meet.

    Parameters
    ----------
    solid : bioslicer.mesh.Solid (or trimesh in µm)
        The lumen (closed shells, may overlap), µm.
    lo_um, hi_um : (3,) float
        The channel block; its faces lie ``channel_margin_um`` beyond the lumen's bounds.
    depth_um : float
        Thickness of the slab inside each bounding plane whose sections open, µm.

    Returns
    -------
    (Solid, openings) : the opened lumen and per opening ``{face, point_um, area_um2}`` (the lumen
    unchanged and no openings when nothing meets a face).
    """
    import manifold3d
    import shapely
    import trimesh

    from ..mesh import Solid
    from ..samples import _from_manifold, _to_manifold
    from ..slicing import _as_solid_arrays

    V, F = _as_solid_arrays(solid)
    b = np.array([V.min(axis=0), V.max(axis=0)])
    lo = np.asarray(lo_um, dtype=np.float64)
    hi = np.asarray(hi_um, dtype=np.float64)
    prisms, openings = [], []
    for axis in range(3):
        for side in (-1, 1):
            bound = b[0, axis] if side < 0 else b[1, axis]
            face = lo[axis] if side < 0 else hi[axis]
            if side * (face - bound) <= 0:          # the lumen reaches or crosses this face already
                continue
            a, c = (bound, bound + depth_um) if side < 0 else (bound - depth_um, bound)
            shadow, perm = _face_shadow(V, F, axis, a, c)
            polys = [g for g in shapely.get_parts(shadow)
                     if g.geom_type == "Polygon" and g.area > 0 and _compact(g)]
            if not polys:
                continue
            contours = []
            for g in polys:
                g = shapely.orient_polygons(g)
                contours.append(np.asarray(g.exterior.coords)[:-1])
                contours.extend(np.asarray(r.coords)[:-1] for r in g.interiors)
                pt = np.zeros(3)
                pt[perm[0]], pt[perm[1]], pt[axis] = g.centroid.x, g.centroid.y, face
                openings.append({"face": ("-" if side < 0 else "+") + "xyz"[axis], "point_um": pt.tolist(),
                                 "area_um2": float(g.area)})
            # from the far side of the slab (inside the lumen) to 1 µm beyond the face
            z0, z1 = (face - 1.0, c) if side < 0 else (a, face + 1.0)
            prism = manifold3d.CrossSection(contours, manifold3d.FillRule.Positive).extrude(float(z1 - z0))
            pm = _from_manifold(prism.translate((0.0, 0.0, float(z0))))
            prisms.append(trimesh.Trimesh(pm.vertices[:, np.argsort(perm)], pm.faces, process=False))
    if not prisms:
        return solid, openings
    tm = trimesh.Trimesh(V, F.astype(np.int64), process=False)
    shells = tm.split(only_watertight=False) if tm.body_count > 1 else [tm]
    try:
        parts = [_to_manifold(s) for s in shells] + [_to_manifold(p) for p in prisms]
    except RuntimeError:
        raise BioslicerError(f"{getattr(solid, 'name', '') or 'the lumen mesh'} is not made of closed manifold "
                             "shells, so its ends cannot be opened through the block; repair it (--repair) or give "
                             "channel_block_size_um smaller than the lumen along its flow") from None
    out = _from_manifold(manifold3d.Manifold.batch_boolean(parts, manifold3d.OpType.Add))
    opened = Solid(out.vertices, out.faces, getattr(solid, "name", ""), getattr(solid, "sha256", ""),
                   getattr(solid, "units", "um"), dict(getattr(solid, "report", {}) or {}))
    return opened, openings


def opened_lumen(solid, lo_um, hi_um, recipe):
    """:func:`open_mesh_lumen` with a slab ``channel_margin_um`` deep (at least two slices and two
    hatch lines), cached on the solid (every block of a job asks for the same one)."""
    depth = max(recipe.channel_margin_um, 2.0 * recipe.slice_um, 2.0 * recipe.hatch_um)
    key = (tuple(np.asarray(lo_um, dtype=np.float64).tolist()), tuple(np.asarray(hi_um, dtype=np.float64).tolist()),
           depth)
    cache = solid.__dict__.setdefault("_opened_lumen", {})
    if key not in cache:
        cache.clear()
        cache[key] = open_mesh_lumen(solid, lo_um, hi_um, depth)
    return cache[key]
