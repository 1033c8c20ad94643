"""Hard meshes built in code, with their volumes known exactly (issue 22).

* :func:`joint_tree`: two tubes meeting at a joint sphere, exported as CAD and vessel-modelling
  tools do: every branch is its own closed shell, each with its own copy of the joint sphere
  (the two copies share every face), and each tube's end ring *is* a latitude ring of the
  sphere (the shells share vertices and edges: edges with four and six faces).
* :func:`figure_eight`: one closed shell that passes through itself: a lemniscate prism whose
  two lobes are oriented oppositely (signed volume 0).
* :func:`box`: an axis-aligned box (repeat it for a coincident duplicate shell).

Each returns ``(vertices_um, faces, volume_um3)``, the volume being that of the solid a slicer
should print (the union of the shells; for the figure eight, both lobes).
"""

from __future__ import annotations

import numpy as np


def _signed_volume(v, f) -> float:
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _fan(center: int, ring: np.ndarray, reverse: bool = False) -> np.ndarray:
    nxt = np.roll(ring, -1)
    tri = np.stack([np.full(len(ring), center), ring, nxt], axis=1)
    return tri[:, [0, 2, 1]] if reverse else tri


def _band(r0: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """Quads between two rings (same count), as triangles, oriented outward when r0 is below r1
    and the rings run counterclockwise seen from above."""
    a, b = r0, np.roll(r0, -1)
    c, d = np.roll(r1, -1), r1
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def joint_tree(radius_um: float = 50.0, sections: int = 24, rings: int = 12, ring_index: int = 3,
               length_um: float = 150.0, offset_um=(0.0, 0.0, 0.0)):
    """Sphere copy + tube up + sphere copy + tube down (see the module docstring)."""
    R, n, J = float(radius_um), int(sections), int(rings)
    phi = 2 * np.pi * np.arange(n) / n
    theta = np.pi * np.arange(1, J) / J
    ring_xyz = np.stack([np.outer(np.sin(theta), np.cos(phi)), np.outer(np.sin(theta), np.sin(phi)),
                         np.outer(np.cos(theta), np.ones(n))], axis=2) * R            # (J-1, n, 3), top first
    sphere_v = np.concatenate([[[0, 0, R]], ring_xyz.reshape(-1, 3), [[0, 0, -R]]])
    ring = lambda j: 1 + j * n + np.arange(n)                                           # noqa: E731
    south = 1 + (J - 1) * n
    sf = [_fan(0, ring(0))]
    for j in range(J - 2):
        sf.append(_band(ring(j + 1), ring(j)))
    sf.append(_fan(south, ring(J - 2), reverse=True))
    sphere_f = np.concatenate(sf)
    if _signed_volume(sphere_v, sphere_f) < 0:
        sphere_f = sphere_f[:, ::-1]

    def tube(j: int, up: bool):
        """A closed prism from sphere ring j to z = +-length (ring vertices shared bit for bit)."""
        base = ring_xyz[j]
        top = base.copy()
        top[:, 2] = length_um if up else -length_um
        v = np.concatenate([base, top, [[0, 0, base[0, 2]], [0, 0, top[0, 2]]]])
        b, t = np.arange(n), n + np.arange(n)
        f = np.concatenate([_band(b, t), _fan(2 * n, b, reverse=True), _fan(2 * n + 1, t)])
        if _signed_volume(v, f) < 0:
            f = f[:, ::-1]
        return v, f

    def cap(j: int, up: bool):
        """The part of the sphere polyhedron beyond ring j (closed by the ring's polygon)."""
        if up:
            keep = np.all(np.isin(sphere_f, np.concatenate([[0], *[ring(i) for i in range(j + 1)]])), axis=1)
        else:
            keep = np.all(np.isin(sphere_f, np.concatenate([[south], *[ring(i) for i in range(j, J - 1)]])), axis=1)
        v = np.concatenate([sphere_v, [[0, 0, ring_xyz[j, 0, 2]]]])
        f = np.concatenate([sphere_f[keep], _fan(len(sphere_v), ring(j), reverse=up)])
        return abs(_signed_volume(v, f))

    j_up, j_down = ring_index, J - 2 - ring_index
    tu, td = tube(j_up, True), tube(j_down, False)
    parts = [(sphere_v, sphere_f), tu, (sphere_v, sphere_f), td]          # branch 1, branch 2
    vs, fs, nv = [], [], 0
    for v, f in parts:
        vs.append(v)
        fs.append(f + nv)
        nv += len(v)
    volume = (_signed_volume(sphere_v, sphere_f) - cap(j_up, True) - cap(j_down, False)
              + _signed_volume(*tu) + _signed_volume(*td))
    return np.concatenate(vs) + np.asarray(offset_um, dtype=np.float64), np.concatenate(fs), volume


def box(lo=(0.0, 0.0, 0.0), hi=(10.0, 10.0, 10.0)):
    import trimesh

    m = trimesh.creation.box(bounds=np.array([lo, hi], dtype=np.float64))
    return np.asarray(m.vertices), np.asarray(m.faces, dtype=np.int64), float(np.prod(np.subtract(hi, lo)))


def figure_eight(size_um: float = 100.0, height_um: float = 20.0, n: int = 96):
    """A prism over the lemniscate x = s sin t, y = s sin t cos t (the two lobes run in opposite
    directions), capped by fans from the crossing point; one closed, consistently oriented
    shell through itself. Returns (v, f, unsigned volume = height * area of both lobes)."""
    t = 2 * np.pi * (np.arange(n) + 0.5) / n            # no sample on the crossing point
    x, y = size_um * np.sin(t), size_um * np.sin(t) * np.cos(t)
    bot = np.stack([x, y, np.zeros(n)], 1)
    top = np.stack([x, y, np.full(n, height_um)], 1)
    v = np.concatenate([bot, top, [[0, 0, 0], [0, 0, height_um]]])
    b, tt = np.arange(n), n + np.arange(n)
    f = np.concatenate([_band(b, tt), _fan(2 * n, b, reverse=True), _fan(2 * n + 1, tt)])
    right = x > 0
    xs, ys = np.append(x[right], 0.0), np.append(y[right], 0.0)
    lobe = 0.5 * abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))
    return v, f, 2 * lobe * height_um
