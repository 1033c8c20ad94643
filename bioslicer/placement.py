"""Placement: where on the machine the part is printed, applied to the geometry before planning.

Part coordinates after placement are machine coordinates relative to the job's start: z = 0 is
the substrate interface (where ``FindInterfaceAt`` or the operator put the focus) and (0, 0) is
the stage position where the operator starts the job (or the profile's stage origin).

- ``placement = "substrate"`` (default): the lowest point of what is printed (the part, or for
  channel molds the block around the lumen) sits on the interface and its x/y centre at (0, 0).
- ``placement = "keep"``: mesh coordinates are kept (the mesh's z = 0 is the interface). A part
  that does not reach the interface is refused unless ``allow_floating`` (printing onto an
  existing structure); a part below the interface is always refused.
- ``z_offset_um`` lifts the whole print by that much in either mode.
- ``scale = [sx, sy, sz]`` (shrink/swell compensation) scales the part about the mesh origin
  first, so the mesh's z = 0 stays the interface with ``keep``.

Recipe keys given in mesh coordinates (``surface_z_um``, ``power_field_origin_um``,
``power_field_voxel_um``) are scaled and moved with the part, so a depth table or a power field
stays attached to the same material.
"""

from __future__ import annotations

import numpy as np

from .errors import BioslicerError


def printed_bounds_um(solid, recipe) -> np.ndarray:
    """(2, 3) bounds of what the recipe prints from ``solid`` (the mold block for channels), µm."""
    from .strategies import make_region

    return np.asarray(make_region(solid, recipe).bounds_um, dtype=np.float64).reshape(2, 3)


def placement_offset_um(solid, recipe, tol_um: float = 1e-3) -> tuple[np.ndarray, dict]:
    """The translation that places the part, and a record of the placement for the manifest.

    Parameters
    ----------
    solid : Solid
        The part in mesh coordinates, µm.
    recipe : Recipe
        ``placement``, ``allow_floating``, ``z_offset_um`` (and what decides the printed region).
    tol_um : float
        How far from the interface a kept part's lowest point may be and still count as on it.

    Returns
    -------
    (offset_um (3,), info dict)
        ``info``: ``mode``, ``offset_um``, ``bounds_um`` (placed, printed region), ``z_offset_um``,
        ``floating`` (lowest point above the interface).

    Raises
    ------
    BioslicerError
        A kept part below the interface, or floating without ``allow_floating``.
    """
    b = printed_bounds_um(solid, recipe)
    zoff = float(recipe.z_offset_um)
    if recipe.placement == "substrate":
        off = np.array([-(b[0, 0] + b[1, 0]) / 2, -(b[0, 1] + b[1, 1]) / 2, zoff - b[0, 2]])
    else:
        off = np.array([0.0, 0.0, zoff])
        low = b[0, 2] + zoff
        if low < -tol_um:
            raise BioslicerError(
                f"the part reaches z = {low:.4g} µm, below the substrate interface (z = 0) with --keep-position; "
                "drop --keep-position to place it on the substrate, or move the mesh up")
        if low > tol_um and not recipe.allow_floating:
            raise BioslicerError(
                f"the part's lowest point is at z = {low:.4g} µm, above the substrate interface: it would float "
                "and wash away; drop --keep-position to place it on the substrate, or pass --allow-floating when "
                "printing onto an existing structure")
    placed = b + off
    info = {"mode": recipe.placement, "offset_um": off.tolist(), "bounds_um": placed.tolist(),
            "z_offset_um": zoff, "floating": bool(placed[0, 2] > tol_um)}
    return off, info


def place(solid, recipe):
    """Apply :func:`placement_offset_um`: ``(placed solid, recipe for planning, info)``.

    The recipe returned has ``surface_z_um`` and ``power_field_origin_um`` moved with the part
    (the caller keeps the user's recipe for the job record).
    """
    solid, recipe, scale = _scaled(solid, recipe)
    off, info = placement_offset_um(solid, recipe)
    info["scale"] = scale
    if not np.any(off):
        return solid, recipe, info
    changes = {}
    if recipe.surface_z_um is not None:
        changes["surface_z_um"] = float(recipe.surface_z_um + off[2])
    if recipe.power_field_origin_um is not None:
        changes["power_field_origin_um"] = [float(a + d) for a, d in zip(recipe.power_field_origin_um, off)]
    elif recipe.power_field_path is not None:
        changes["power_field_origin_um"] = off.tolist()
    rec = recipe.updated(_source="placement", **changes) if changes else recipe
    return solid.translated(off), rec, info


def _scaled(solid, recipe):
    """``(solid, recipe, scale)`` with the recipe's ``scale`` applied (scale None when unscaled)."""
    if recipe.scale is None or all(f == 1.0 for f in recipe.scale):
        return solid, recipe, None
    f = np.asarray(recipe.scale, dtype=np.float64)
    changes = {"scale": None}
    if recipe.surface_z_um is not None:
        changes["surface_z_um"] = float(recipe.surface_z_um * f[2])
    if recipe.power_field_origin_um is not None:
        changes["power_field_origin_um"] = (np.asarray(recipe.power_field_origin_um) * f).tolist()
    if recipe.power_field_voxel_um is not None:
        changes["power_field_voxel_um"] = (np.asarray(recipe.power_field_voxel_um) * f).tolist()
    if hasattr(solid, "scaled"):
        scaled = solid.scaled(f)
    else:   # a centerline tree (bioslicer.centerline.Tree): points and radii, one factor
        from dataclasses import replace

        if not f[0] == f[1] == f[2]:
            raise BioslicerError(f"recipe key 'scale' {recipe.scale!r}: a centerline tree scales by one factor "
                                 "(scale = [s, s, s]); its vessels stay round")
        scaled = replace(solid, points_um=solid.points_um * f, radius_um=solid.radius_um * f[0],
                         edges=solid.edges.copy(), clip=solid.clip.copy(), report=dict(solid.report))
    return scaled, recipe.updated(_source="scale", **changes), [float(a) for a in f]


def commanded_mesh(mesh, factor: float):
    """A design mesh in commanded z (stretched in z by ``focal_shift_factor``), as previews of the
    program draw it: a Solid, a trimesh or a PyVista mesh; the mesh itself when the factor is 1."""
    if factor == 1.0:
        return mesh
    if hasattr(mesh, "scaled"):                 # Solid
        return mesh.scaled([1.0, 1.0, factor])
    m = mesh.copy()
    if hasattr(m, "apply_transform"):           # trimesh
        m.apply_transform(np.diag([1.0, 1.0, float(factor), 1.0]))
    else:                                       # PyVista
        pts = np.array(m.points, dtype=np.float64)
        pts[:, 2] *= factor
        m.points = pts
    return m


def airborne_report(solid, recipe, printer, max_voxels: float = 4e6) -> dict:
    """What would print in mid-air once the part is placed (for ``bioslicer inspect``).

    The placed part is voxelised coarsely (at most ``max_voxels``; at least the hatch and slice
    distances). *Floating parts* are connected pieces of material that do not reach the
    interface (z = 0); a block *starts in mid-air* when no voxel of its lowest printed layer has
    material directly below it and that layer is not on the interface (DeScribe calls these
    flying blocks).

    Parameters
    ----------
    solid : Solid
        The part in mesh coordinates, µm.
    recipe : Recipe
        Placement keys and what decides the stitching grid.
    printer : Printer

    Returns
    -------
    dict
        ``mesh_lowest_z_um`` (where a kept part would start), ``voxel_um``, ``floating_parts``
        (list of {``lowest_z_um``, ``lo_um``, ``hi_um``}), ``midair_blocks`` (list of {``block``,
        ``index``, ``z_um``}), ``blocks``.
    """
    from scipy import ndimage

    from .blockrun import plan_blocks
    from .slicing import voxelize

    lowest = float(printed_bounds_um(solid, recipe)[0, 2])
    rec = recipe.updated(_source="inspect", placement="substrate", z_offset_um=0.0)
    solid, rec, _ = place(solid, rec)
    b = printed_bounds_um(solid, rec)
    size = np.maximum(b[1] - b[0], 1e-6)
    dz = max(rec.slice_um, size[2] / 200.0)
    dxy = max(rec.hatch_um, float(np.sqrt(size[0] * size[1] * (size[2] / dz) / max_voxels)))
    grid = voxelize(solid, dxy, dz, region_um=(b[0], b[1]))
    occ = np.asarray(grid.dense(), dtype=bool)
    org, vox = np.asarray(grid.origin_um), np.asarray(grid.voxel_um)
    out = {"mesh_lowest_z_um": lowest, "voxel_um": vox.tolist(), "floating_parts": [], "midair_blocks": []}
    if not occ.any():
        out["blocks"] = 0
        return out
    labels, n = ndimage.label(occ)
    grounded = set(np.unique(labels[0][labels[0] > 0]).tolist())
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if k in grounded or sl is None:
            continue
        lo = org + vox * np.array([sl[2].start, sl[1].start, sl[0].start])
        hi = org + vox * np.array([sl[2].stop, sl[1].stop, sl[0].stop])
        out["floating_parts"].append({"lowest_z_um": float(lo[2]), "lo_um": lo.tolist(), "hi_um": hi.tolist()})
    sg, lz = plan_blocks(solid, rec, printer)
    lz = lz / rec.focal_shift_factor        # commanded -> physical heights, as the voxels
    blocks = sg.blocks()
    out["blocks"] = len(blocks)
    ny, nx = occ.shape[1:]
    for i in range(len(blocks)):
        (x0, y0), (x1, y1) = sg.block_window_um(i)
        layers = sg.block_layers(i)
        if len(layers) == 0:
            continue
        ix = np.clip(((np.array([x0, x1]) - org[0]) / vox[0]).round().astype(int), 0, nx)
        iy = np.clip(((np.array([y0, y1]) - org[1]) / vox[1]).round().astype(int), 0, ny)
        kz = np.clip(((np.array([lz[layers[0]], lz[layers[-1]]]) - org[2]) / vox[2]).astype(int), 0, occ.shape[0] - 1)
        sub = occ[kz[0]:kz[1] + 1, iy[0]:iy[1], ix[0]:ix[1]]
        filled = np.flatnonzero(sub.reshape(len(sub), -1).any(axis=1))
        if len(filled) == 0:
            continue
        k = kz[0] + int(filled[0])
        if k == 0 or (occ[k, iy[0]:iy[1], ix[0]:ix[1]] & occ[k - 1, iy[0]:iy[1], ix[0]:ix[1]]).any():
            continue
        out["midair_blocks"].append({"block": i, "index": [int(v) for v in blocks.index[i]],
                                     "z_um": float(org[2] + k * vox[2])})
    return out
