"""Peer implementations the benchmark compares bioslicer with (used only by ``benchmarks/run.py``).

Each peer is the usual Python route to the same result, written as well as those libraries
allow (vectorised shapely 2 calls per layer, no per-line Python objects where the library
offers arrays), so that the ratios measure the approach and not a careless use of it:

* :func:`trimesh_load` -- ``trimesh.load`` of the mesh file;
* :func:`trimesh_voxels` -- ``Trimesh.voxelized(pitch).fill()``, trimesh's voxelizer plus fill;
* :func:`multiplane_hatch` -- ``trimesh.section_multiplane`` and shapely clipping of scan rows
  (the same rows and angles as :func:`bioslicer.slicing.slice_spans`);
* :func:`multiplane_toolpath` -- the same plus contour offsets with ``shapely.buffer``, i.e. a
  solid slice-and-hatch toolpath;
* :func:`pyslm_toolpath` -- PySLM slice + hatch (+ contours) when ``pyslm`` is importable;
* :func:`text_peers` -- ``numpy.savetxt`` and f-strings writing ``x y z`` lines.

Every function returns counts of what it made, so the caller can check that the peer did the
same work as bioslicer. Lengths are µm (the meshes are in µm), times are measured by the caller.
"""

from __future__ import annotations

import os
import time

import numpy as np

#: what installing PySLM does in this environment (checked with pip 23.2.1, Python 3.11.7)
PYSLM_PIP = ("PySLM is published as 'PythonSLM': `pip install pyslm` gets a 404 from the index (no distribution); "
             "`pip install PythonSLM` installs 0.6.1, building pyclipr 0.1.8 from source (C++ compiler needed)")


# ============================================================================ mesh loading
def trimesh_load(path):
    """Load a mesh file with trimesh (``process=True``: merged vertices, the usual default).

    Parameters
    ----------
    path : str or Path
        Mesh file (µm).

    Returns
    -------
    trimesh.Trimesh
    """
    import trimesh

    return trimesh.load(str(path), force="mesh", process=True)


# ============================================================================ voxels
def trimesh_voxels(mesh, pitch_um: float) -> dict:
    """trimesh's voxelizer with interior fill at an isotropic pitch.

    Parameters
    ----------
    mesh : trimesh.Trimesh
        Closed mesh, µm.
    pitch_um : float
        Voxel edge, µm.

    Returns
    -------
    dict
        ``occupied`` (voxels filled), ``grid`` (voxels in its bounding grid), ``shape`` (3,).
    """
    vg = mesh.voxelized(float(pitch_um)).fill()
    shape = [int(a) for a in vg.shape]
    return {"occupied": int(np.count_nonzero(vg.matrix)), "grid": int(np.prod(shape)), "shape": shape}


def cut_box(mesh, side_um: float, center_um=None):
    """The part of a closed mesh inside an axis-aligned cube (capped, so still closed).

    Parameters
    ----------
    mesh : trimesh.Trimesh
    side_um : float
        Cube side, µm.
    center_um : (3,) float, optional
        Cube centre, µm. Default: the mesh vertex nearest the centre of its bounding box, so
        the cube holds surface and material even when the middle of the part is empty.

    Returns
    -------
    trimesh.Trimesh
    """
    import trimesh

    if center_um is None:
        v = np.asarray(mesh.vertices)
        mid = mesh.bounds.mean(axis=0)
        center_um = v[int(np.argmin(((v - mid) ** 2).sum(axis=1)))]
    box = trimesh.creation.box(extents=[float(side_um)] * 3)
    box.apply_translation(np.asarray(center_um, dtype=float))
    return mesh.slice_plane(box.facets_origin, -box.facets_normal, cap=True)


# ============================================================================ sections + shapely
def _sections(mesh, z_um):
    """One shapely (Multi)Polygon per height: trimesh sections, overlapping shells united."""
    import shapely

    secs = mesh.section_multiplane(plane_origin=[0.0, 0.0, 0.0], plane_normal=[0.0, 0.0, 1.0],
                                   heights=[float(z) for z in z_um])
    out = []
    for sec in secs:
        if sec is None:
            out.append(None)
            continue
        # section_multiplane returns paths in the plane frame; for a +z normal through the
        # origin that frame is the part's x/y (its to_3D only adds z), so no transform here
        polys = list(sec.polygons_full)
        out.append(shapely.union_all(polys) if polys else None)
    return out


def _row_frame(geom, angle_deg: float):
    """The geometry in bioslicer's row frame (u along the rows, v across them).

    The row frame is that of :func:`bioslicer.slicing.slice_spans`: x = u cos a - v sin a,
    y = u sin a + v cos a. Rotating the few hundred vertices of a layer is cheap, and clipping
    axis-aligned rows is the fast case for GEOS (rotated rows are about 20x slower to clip).
    """
    import shapely.affinity

    a = float(angle_deg) % 360.0
    return geom if a == 0.0 else shapely.affinity.rotate(geom, -a, origin=(0.0, 0.0))


def _row_lines(geom, row_spacing_um: float, row_offset_um: float = 0.0):
    """Rows ``v = off + j * dy`` across a geometry already in the row frame, as one
    MultiLineString (None when no row crosses its extent)."""
    import shapely

    u0, v0, u1, v1 = geom.bounds
    j0 = int(np.ceil((v0 - row_offset_um) / row_spacing_um))
    j1 = int(np.floor((v1 - row_offset_um) / row_spacing_um))
    if j1 < j0:
        return None
    vv = row_offset_um + np.arange(j0, j1 + 1) * row_spacing_um
    coords = np.empty((len(vv), 2, 2))
    coords[:, 0, 0] = u0 - 1.0
    coords[:, 1, 0] = u1 + 1.0
    coords[:, 0, 1] = vv
    coords[:, 1, 1] = vv
    return shapely.multilinestrings(shapely.linestrings(coords))


def multiplane_hatch(mesh, z_um, row_spacing_um: float, angle_deg=0.0, row_offset_um: float = 0.0) -> dict:
    """Material along scan rows of each layer: trimesh.section_multiplane + shapely clipping.

    Parameters
    ----------
    mesh : trimesh.Trimesh
        Closed mesh, µm.
    z_um : (L,) float
        Layer heights, µm.
    row_spacing_um : float
        Row (hatch) distance, µm.
    angle_deg : float or (L,) float
        Row direction per layer, degrees from +x (as in ``slice_spans``).
    row_offset_um : float
        v of row 0, µm.

    Returns
    -------
    dict
        ``segments`` (clipped row pieces, the peer's spans) and ``length_um`` (their total length).
    """
    import shapely

    z = np.asarray(z_um, dtype=float).reshape(-1)
    ang = np.broadcast_to(np.asarray(angle_deg, dtype=float), z.shape)
    n_seg = 0
    length = 0.0
    for geom, a in zip(_sections(mesh, z), ang):
        if geom is None or geom.is_empty:
            continue
        geom = _row_frame(geom, a)
        lines = _row_lines(geom, row_spacing_um, row_offset_um)
        if lines is None:
            continue
        clipped = shapely.intersection(lines, geom)
        n_seg += int(shapely.get_num_geometries(clipped))
        length += float(clipped.length)
    return {"segments": n_seg, "length_um": length}


def multiplane_toolpath(mesh, z_um, hatch_um: float, angle_deg, contour_count: int, contour_spacing_um: float,
                        contour_offset_um: float = 0.0) -> dict:
    """A solid slice-and-hatch toolpath the shapely way: sections, contour offsets, clipped rows.

    Contour ring i is the boundary of the layer polygon buffered by
    ``-(contour_offset_um + i * contour_spacing_um)`` (mitre joins); hatch rows at ``hatch_um``
    and the layer's angle are clipped to the layer polygon (as bioslicer's solid strategy with
    ``hatch_inset_um = 0``).

    Parameters
    ----------
    mesh : trimesh.Trimesh
    z_um : (L,) float, layer heights, µm.
    hatch_um : float, hatch distance, µm.
    angle_deg : float or (L,) float, hatch angle per layer, degrees.
    contour_count : int
    contour_spacing_um, contour_offset_um : float, µm.

    Returns
    -------
    dict
        ``hatch_segments``, ``contour_rings``, ``contour_points``.
    """
    import shapely

    z = np.asarray(z_um, dtype=float).reshape(-1)
    ang = np.broadcast_to(np.asarray(angle_deg, dtype=float), z.shape)
    n_seg = rings = pts = 0
    for geom, a in zip(_sections(mesh, z), ang):
        if geom is None or geom.is_empty:
            continue
        for i in range(int(contour_count)):
            d = contour_offset_um + i * contour_spacing_um
            ring = shapely.buffer(geom, -d, join_style="mitre") if d > 0 else geom
            b = ring.boundary
            rings += int(shapely.get_num_geometries(b))
            pts += int(shapely.get_num_coordinates(b))
        geom = _row_frame(geom, a)
        lines = _row_lines(geom, hatch_um)
        if lines is not None:
            n_seg += int(shapely.get_num_geometries(shapely.intersection(lines, geom)))
    return {"hatch_segments": n_seg, "contour_rings": rings, "contour_points": pts}


# ============================================================================ PySLM
def pyslm_available() -> bool:
    """True when ``import pyslm`` works."""
    try:
        import pyslm  # noqa: F401
    except ImportError:
        return False
    return True


def pyslm_toolpath(path, z_um, hatch_um: float, angle_deg, contour_count: int, contour_spacing_um: float) -> dict:
    """PySLM slice + hatch (+ inner contours) on the given layers (only when PySLM is installed).

    Parameters
    ----------
    path : str or Path
        Mesh file (µm; PySLM does not care about the unit).
    z_um : (L,) float, layer heights, µm.
    hatch_um : float
    angle_deg : (L,) float, hatch angle per layer, degrees.
    contour_count : int
    contour_spacing_um : float

    Returns
    -------
    dict
        ``hatch_segments`` and ``contour_rings`` counted from the layer geometry, and ``layers_s``:
        seconds spent slicing and hatching the layers (loading the part excluded).
    """
    import pyslm
    from pyslm import hatching

    part = pyslm.Part("bench")
    part.setGeometry(str(path))
    h = hatching.Hatcher()
    h.hatchDistance = float(hatch_um)
    h.numInnerContours = max(int(contour_count) - 1, 0)
    h.numOuterContours = 1 if contour_count else 0
    h.contourOffset = float(contour_spacing_um)
    h.spotCompensation = 0.0
    h.volumeOffsetHatch = 0.0
    z = np.asarray(z_um, dtype=float).reshape(-1)
    ang = np.broadcast_to(np.asarray(angle_deg, dtype=float), z.shape)
    n_seg = rings = 0
    t = time.perf_counter()
    for zz, a in zip(z, ang):
        h.hatchAngle = float(a)
        geom = part.getVectorSlice(float(zz))
        if not geom:
            continue
        layer = h.hatch(geom)
        for g in layer.geometry:
            coords = np.asarray(g.coords)
            if type(g).__name__ == "HatchGeometry":
                n_seg += len(coords) // 2
            else:
                rings += 1
    return {"hatch_segments": n_seg, "contour_rings": rings, "layers_s": time.perf_counter() - t}


# ============================================================================ program text
def text_peers(n_points: int, folder, repeat: int = 3, seed: int = 0) -> dict:
    """MB/s of ``numpy.savetxt`` and of Python f-strings writing ``x y z`` lines, 3 decimals.

    Parameters
    ----------
    n_points : int
        Lines written per run.
    folder : str or Path
        Where the scratch file goes (removed afterwards).
    repeat : int
        Runs per writer; the median time is used.

    Returns
    -------
    dict
        name -> ``{"mb": file size MB, "s": median seconds, "mb_s": MB/s}``.
    """
    rng = np.random.default_rng(seed)
    xyz = np.column_stack([rng.uniform(-200, 200, n_points), rng.uniform(-200, 200, n_points),
                           rng.uniform(0, 300, n_points)])
    path = os.path.join(str(folder), "peer_xyz.txt")

    def savetxt():
        np.savetxt(path, xyz, fmt="%.3f")

    def fstrings():
        with open(path, "w") as fh:
            fh.write("".join([f"{x:.3f} {y:.3f} {z:.3f}\n" for x, y, z in xyz.tolist()]))

    out = {}
    try:
        for name, fn in (("numpy.savetxt", savetxt), ("f-strings", fstrings)):
            ts = []
            for _ in range(max(1, repeat)):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            mb = os.path.getsize(path) / 1e6
            s = float(np.median(ts))
            out[name] = {"mb": mb, "s": s, "mb_s": mb / s}
    finally:
        if os.path.exists(path):
            os.remove(path)
    return out
