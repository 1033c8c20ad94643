"""Can the printed construct be perfused? Enclosed voids, open vessel ends, narrow lumens, thin walls.

The region a job prints (what the strategy fills: the part, the wall of a vessel tree, or a
block minus its lumens) is sampled on the job's hatch x slice grid (voxel centres on rows at
``hatch_um``, layers at ``slice_um``; coarsened by a whole factor when the grid would exceed a
voxel budget), padded by one empty voxel on every side, and the unprinted space is flooded from
outside (6-connected, ``scipy.ndimage.label``). Unprinted space the flood does not reach is an
enclosed void: resin or gel sealed inside the part. A ``vessel-wall`` or ``channels`` job with an
enclosed void larger than :data:`MIN_VOID_VOXELS` voxels is refused unless sealed voids are
allowed.

Lumen checks (centerline input): a lumen narrower than 3 lateral voxels (or whose height across
the layers is under 2 axial voxels) closes when printed; walls thinner than two hatch lines are
flagged.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import BioslicerError

#: enclosed voids of at most this many voxels are taken as sampling noise
MIN_VOID_VOXELS = 8
#: voxel budget of the flood grid (coarsened by a whole factor above it)
MAX_VOXELS = 24_000_000
#: strategies whose purpose is an open lumen
LUMEN_STRATEGIES = ("vessel-wall", "channels")


_OPEN_HINT = {
    "tree": "open the vessel ends (closed_ends = false; terminals within channel_margin_um of a block face)",
    "mesh": "let the lumen mesh run out through the block faces (or give channel_block_size_um smaller than "
            "the lumen along its flow)",
}


def _fmt(p) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in p) + ")"


def flood_voids(region, hatch_um: float, slice_um: float, max_voxels: int = MAX_VOXELS) -> dict:
    """Flood the unprinted space of ``region`` from outside on the hatch x slice grid.

    Parameters
    ----------
    region : strategies.common.Region
        What the job prints.
    hatch_um, slice_um : float
        Lateral and axial sampling, µm (coarsened by one whole factor above ``max_voxels``).

    Returns
    -------
    dict
        ``voxel_um`` [dx, dy, dz], ``grid`` [nx, ny, nz], ``enclosed_void_um3``, ``voids`` (largest
        first, each ``volume_um3``, ``voxels``, ``centre_um``, ``box_um``), and the arrays
        ``_outside`` (nz, ny, nx) bool and ``_origin`` (3,) for point queries (dropped from reports).
    """
    from scipy import ndimage

    from .kernel import voxels as kv

    b = np.asarray(region.bounds_um, dtype=np.float64)
    dx, dz = float(hatch_um), float(slice_um)
    size = b[1] - b[0]
    n = np.ceil(size / np.array([dx, dx, dz])).astype(np.int64) + 2
    f = 1
    while int(np.prod(np.ceil(size / np.array([f * dx, f * dx, f * dz])) + 2)) > max_voxels:
        f += 1
    dx, dz = f * dx, f * dz
    n = (np.ceil(size / np.array([dx, dx, dz])).astype(np.int64) + 2)
    nx, ny, nz = (int(a) for a in n)
    origin = b[0] - np.array([dx, dx, dz])          # one empty voxel of padding on every side
    z = origin[2] + (np.arange(nz) + 0.5) * dz
    inside_z = (z >= b[0, 2]) & (z <= b[1, 2])
    grid = np.zeros((nz, ny, nx), np.bool_)
    ks = np.flatnonzero(inside_z)
    if len(ks):
        off = origin[1] + 0.5 * dx
        sp = region.spans(z[ks], dx, 0.0, off)
        iy = np.rint((sp.row_v_um - off) / dx).astype(np.int64)
        if len(iy) and (iy.min() < 0 or iy.max() >= ny):
            raise AssertionError("flood grid row outside the grid")
        sub = np.zeros((len(ks), ny, nx), np.bool_)
        kv.fill_voxels_bool(sp.layer_row_start, iy, sp.row_span_start, sp.span_u0_um, sp.span_u1_um,
                            float(origin[0]), dx, nx, sub)
        grid[ks] = sub
    labels, n_lab = ndimage.label(~grid)
    border = np.unique(np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(),
                                       labels[:, -1].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    outside_ids = border[border > 0]
    is_out = np.zeros(n_lab + 1, np.bool_)
    is_out[outside_ids] = True
    outside = is_out[labels]
    vox = dx * dx * dz
    voids = []
    enclosed = (labels > 0) & ~outside
    if enclosed.any():
        lab = np.where(enclosed, labels, 0)
        ids = np.unique(lab[lab > 0])
        counts = ndimage.sum_labels(np.ones_like(lab), lab, ids)
        centres = ndimage.center_of_mass(np.ones_like(lab), lab, ids)
        boxes = ndimage.find_objects(lab)
        for i, c, cen in sorted(zip(ids, counts, centres), key=lambda t: -t[1]):
            sl = boxes[i - 1]
            lo = origin + np.array([sl[2].start * dx, sl[1].start * dx, sl[0].start * dz])
            hi = origin + np.array([sl[2].stop * dx, sl[1].stop * dx, sl[0].stop * dz])
            cz, cy, cx = cen
            voids.append({"voxels": int(c), "volume_um3": float(c * vox),
                          "centre_um": (origin + (np.array([cx, cy, cz]) + 0.5) * np.array([dx, dx, dz])).tolist(),
                          "box_um": [lo.tolist(), hi.tolist()]})
    return {"sampled": "what the strategy fills, on rows along x at the voxel pitch", "voxel_um": [dx, dx, dz],
            "grid": [nx, ny, nz], "coarsened": f,
            "enclosed_void_um3": float(sum(v["volume_um3"] for v in voids)),
            "enclosed_voids": len(voids), "voids": voids[:10], "_outside": outside, "_origin": origin}


def _point_outside(flood: dict, p) -> bool:
    """Whether the unprinted voxel at point p is reached from outside (False if printed or sealed)."""
    dx, _, dz = flood["voxel_um"]
    o = flood["_origin"]
    out = flood["_outside"]
    i = int(math.floor((p[0] - o[0]) / dx))
    j = int(math.floor((p[1] - o[1]) / dx))
    k = int(math.floor((p[2] - o[2]) / dz))
    nz, ny, nx = out.shape
    if not (0 <= i < nx and 0 <= j < ny and 0 <= k < nz):
        return True
    return bool(out[k, j, i])


def lumen_checks(tree, recipe) -> dict:
    """Narrow lumens and thin walls of a centerline tree for a recipe.

    Returns
    -------
    dict
        ``narrow`` (list of ``{segment, from_um, to_um, diameter_um, limit_um, axis}``) and
        ``warnings`` (list of str).
    """
    P0, P1, R0, R1, _ = tree.segment_arrays()
    d = P1 - P0
    L = np.linalg.norm(d, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tz = np.where(L > 0, np.abs(d[:, 2]) / L, 1.0)
    sin_t = np.sqrt(np.maximum(1.0 - tz * tz, 0.0))
    diam = 2.0 * np.minimum(R0, R1)
    lat = 3.0 * recipe.voxel_lateral_um
    ax = 2.0 * recipe.voxel_axial_um
    height = np.where(sin_t > 0, diam / np.maximum(sin_t, 1e-300), np.inf)
    narrow = []
    for g in np.flatnonzero((diam < lat) | (height < ax)):
        by_lat = diam[g] < lat
        narrow.append({"segment": int(g), "from_um": P0[g].tolist(), "to_um": P1[g].tolist(),
                       "diameter_um": float(diam[g] if by_lat else height[g]),
                       "limit_um": float(lat if by_lat else ax), "axis": "lateral" if by_lat else "axial"})
    warnings = []
    if recipe.strategy == "vessel-wall" and recipe.wall_um < 2.0 * recipe.hatch_um:
        warnings.append(f"wall_um = {recipe.wall_um:g} µm is thinner than two hatch lines "
                        f"({2 * recipe.hatch_um:g} µm); the wall may print with gaps")
    return {"narrow": narrow, "warnings": warnings}


def check_perfusion(geometry, recipe, allow_sealed: bool = False, allow_narrow: bool = False,
                    max_voxels: int = MAX_VOXELS) -> dict:
    """The perfusability report of a job, refusing what cannot be perfused.

    Parameters
    ----------
    geometry : Solid or centerline Tree
    recipe : Recipe
    allow_sealed : bool
        Report, do not refuse, enclosed voids of ``vessel-wall`` / ``channels`` jobs.
    allow_narrow : bool
        Report, do not refuse, lumens too narrow to stay open.

    Returns
    -------
    dict
        ``voxel_um``, ``grid``, ``enclosed_void_um3``, ``enclosed_voids``, ``voids``,
        ``openings`` (open vessel ends, centerline input), ``sealed_ends``, ``narrow_lumens``,
        ``warnings``.

    Raises
    ------
    BioslicerError
        One line naming where: a sealed void or end, or a narrow lumen (see the flags).
    """
    from .strategies import make_region

    region = make_region(geometry, recipe)
    lumen = recipe.strategy in LUMEN_STRATEGIES
    tree = geometry if hasattr(geometry, "terminals") else None
    rep: dict = {"warnings": []}
    if tree is not None and lumen:
        lc = lumen_checks(tree, recipe)
        rep["narrow_lumens"] = lc["narrow"]
        rep["warnings"] += lc["warnings"]
        if lc["narrow"] and not allow_narrow:
            g = lc["narrow"][0]
            more = f" (and {len(lc['narrow']) - 1} more)" if len(lc["narrow"]) > 1 else ""
            raise BioslicerError(
                f"segment {g['segment']} from {_fmt(g['from_um'])} to {_fmt(g['to_um'])} µm has a lumen "
                f"{g['diameter_um']:.3g} µm across ({g['axis']}), under {g['limit_um']:.3g} µm "
                f"({'3 lateral' if g['axis'] == 'lateral' else '2 axial'} voxels): it closes when printed{more}; "
                "widen it, set voxel_*_um, or pass --allow-narrow")
    flood = flood_voids(region, recipe.hatch_um, recipe.slice_um, max_voxels)
    outside = flood.pop("_outside")
    origin = flood.pop("_origin")
    rep.update(flood)
    if tree is not None and lumen:
        q = dict(flood, _outside=outside, _origin=origin)
        if recipe.strategy == "channels":
            ends = [(o["node"], o["point_um"]) for o in (getattr(region, "openings", None) or [])]
            pts = [tree.points_um[t] for t, _ in ends]
        else:
            ends = [(int(t), tree.points_um[t].tolist()) for t in tree.terminals()]
            pts = [tree.points_um[t] for t, _ in ends]
        opened = [_point_outside(q, p) for p in pts]
        rep["openings"] = [{"node": int(t), "point_um": list(map(float, pt))} for (t, pt), ok in zip(ends, opened) if ok]
        rep["sealed_ends"] = [{"node": int(t), "point_um": list(map(float, pt))}
                              for (t, pt), ok in zip(ends, opened) if not ok]
    elif getattr(region, "openings", None) is not None:          # a lumen mesh opened through the faces
        rep["openings"] = region.openings
    big = [v for v in flood["voids"] if v["voxels"] > MIN_VOID_VOXELS]
    if lumen and big and not allow_sealed:
        v = big[0]
        more = f" (and {len(big) - 1} more)" if len(big) > 1 else ""
        raise BioslicerError(
            f"the printed {recipe.strategy} encloses a sealed void of {v['volume_um3']:.4g} µm³ around "
            f"{_fmt(v['centre_um'])} µm (box {_fmt(v['box_um'][0])} .. {_fmt(v['box_um'][1])}){more}: it cannot be "
            f"perfused; {_OPEN_HINT['tree' if tree is not None else 'mesh']} or pass --allow-sealed")
    if big:
        rep["warnings"].append(f"{len(big)} enclosed void(s), {sum(v['volume_um3'] for v in big):.4g} µm³ in all, "
                               f"the largest around {_fmt(big[0]['centre_um'])} µm")
    return rep
