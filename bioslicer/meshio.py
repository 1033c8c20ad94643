"""Fast mesh intake: STL read with numpy (no Python work per facet) and exact vertex welding.

* Binary STL: the 50-byte facet records are read with one ``numpy.frombuffer`` over a
  structured dtype, after checking the face count in the header against the file size.
* ASCII STL: the ``vertex`` lines are found with numpy on the raw bytes and their numbers are
  parsed by ``numpy.fromstring`` (the C float parser trimesh uses too, so the coordinates are
  the same floats), a chunk of about a million vertex lines at a time.
* Welding (:func:`merge_exact`): vertices whose coordinates are equal floats become one
  vertex (bit-exact, -0.0 equals 0.0, no tolerance), numbered in order of first use by the
  faces; a Numba hash table (:mod:`bioslicer.kernel.meshops`), O(n).

A binary STL of 2.6 M faces (131 MB) reads and welds in well under a second; ``trimesh.load``
followed by ``numpy.unique`` over the vertex bytes took several.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import BioslicerError

STL_HEADER_BYTES = 84
STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attributes", "<u2")])
ASCII_CHUNK_LINES = 1 << 20     # vertex lines parsed per numpy pass of an ASCII STL


def weld(coords: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weld bit-identical vertices (see :func:`bioslicer.kernel.meshops.weld_first_use`).

    Parameters
    ----------
    coords : (n, 3) float32 or float64, C-contiguous, -0.0 already turned into 0.0
    corners : (k,) int64, every value in ``0 <= c < n``

    Returns
    -------
    ids : (k,) int64 welded vertex id of every corner; first : (k',) int32 vertex of each id.
    """
    from .kernel.meshops import weld_first_use

    words = coords.view(np.uint32).reshape(len(coords), coords.shape[1] * coords.itemsize // 4)
    return weld_first_use(words, corners)


def merge_exact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge bit-identical vertices (-0.0 equal to 0.0) and drop unused ones.

    Parameters
    ----------
    vertices : (n, 3) float64, any units
    faces : (m, 3) int, indices into ``vertices``

    Returns
    -------
    vertices : (n', 3) float64, in order of first use by the faces
    faces : (m, 3) int64, re-indexed (same face order)
    """
    v = np.ascontiguousarray(vertices, dtype=np.float64).reshape(-1, 3) + 0.0   # -0.0 -> 0.0
    corners = np.ascontiguousarray(faces, dtype=np.int64).reshape(-1)
    if len(corners) and (corners.min() < 0 or corners.max() >= len(v)):
        raise BioslicerError(f"faces point at missing vertices (indices must be 0..{len(v) - 1}); "
                             "export the mesh again")
    ids, first = weld(v, corners)
    return v[first], ids.reshape(-1, 3)


# ============================================================================ STL
def read_stl(data: bytes, name: str = "mesh.stl") -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of a binary or ASCII STL, exact duplicate vertices welded.

    A file whose size is exactly 84 + 50 x (face count in its header) bytes is binary (even
    when its header starts with "solid", as many exporters write); otherwise a text file that
    starts with "solid" is ASCII.

    Parameters
    ----------
    data : bytes
        The whole file.
    name : str
        File name for messages.

    Returns
    -------
    vertices : (n, 3) float64, file units, in order of first use
    faces : (m, 3) int64 (file order; facet normals are ignored, the winding counts)

    Raises
    ------
    BioslicerError
        Truncated or padded binary file, malformed ASCII file.
    """
    if len(data) >= STL_HEADER_BYTES:
        m = int(np.frombuffer(data, "<u4", 1, 80)[0])
        if len(data) == STL_HEADER_BYTES + m * STL_RECORD.itemsize:
            rec = np.frombuffer(data, STL_RECORD, m, STL_HEADER_BYTES)
            return _welded(rec["vertices"])
    head = data[:1024].lstrip().lower()
    if head.startswith(b"solid") and b"\0" not in data:
        return _welded(_ascii_stl_vertices(data, name))
    if len(data) < STL_HEADER_BYTES:
        raise BioslicerError(f"{name} is not an STL file ({len(data)} bytes, shorter than a binary STL header "
                             "and not ASCII 'solid ...' text); export the mesh again")
    raise BioslicerError(f"{name} is not a complete binary STL: its header says {m} triangles "
                         f"({STL_HEADER_BYTES + m * STL_RECORD.itemsize} bytes) but the file has {len(data)} bytes "
                         "(truncated or corrupt); export the mesh again")


def _welded(corner_xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weld corner coordinates ((m, 3, 3) or (3 m, 3), face by face) into (vertices float64, faces int64)."""
    xyz = (corner_xyz + corner_xyz.dtype.type(0)).reshape(-1, 3)   # -0.0 -> 0.0, in a C-contiguous copy
    ids, first = weld(xyz, np.arange(len(xyz), dtype=np.int64))
    return xyz[first].astype(np.float64), ids.reshape(-1, 3)


_SPACE = np.zeros(256, bool)
_SPACE[[9, 10, 11, 12, 13, 32]] = True


def _is_space(b: np.ndarray) -> np.ndarray:
    """Whitespace mask of a uint8 array (what ``bytes.split()`` splits on)."""
    return _SPACE[b]


def _ascii_stl_vertices(data: bytes, name: str) -> np.ndarray:
    """(3 m, 3) float64 coordinates of the ``vertex`` lines of an ASCII STL, in file order."""
    buf = np.frombuffer(data, np.uint8)
    n = len(buf)
    kw = b"vertex"
    # a 'vertex' keyword: the six letters (any case), whitespace (or file start) before, whitespace after
    cand = np.flatnonzero((buf[: max(n - len(kw), 0)] | 0x20) == kw[0])
    for i, ch in enumerate(kw[1:], 1):
        cand = cand[(buf[cand + i] | 0x20) == ch]
    cand = cand[_is_space(buf[cand + len(kw)])]
    cand = cand[(cand == 0) | _is_space(buf[np.maximum(cand - 1, 0)])]
    if len(cand) % 3:
        raise BioslicerError(f"{name}: ASCII STL with {len(cand)} vertex lines, not 3 per facet; export the mesh again")
    starts = cand + len(kw)
    newline = np.flatnonzero(buf == 10)
    ends = np.append(newline, n - 1)[np.searchsorted(newline, starts)] + 1   # past the newline (or file end)
    out = np.empty((len(starts), 3), np.float64)
    for c0 in range(0, len(starts), ASCII_CHUNK_LINES):
        s, e = starts[c0:c0 + ASCII_CHUNK_LINES], ends[c0:c0 + ASCII_CHUNK_LINES]
        lo, hi = int(s[0]), int(e[-1])
        mark = np.zeros(hi - lo + 1, np.int8)
        mark[s - lo] = 1
        mark[e - lo] -= 1
        keep = np.cumsum(mark[:-1], dtype=np.int8) != 0
        text = buf[lo:hi][keep]              # the text after each 'vertex', newline included
        lens = e - s
        if len(text) != int(lens.sum()):
            raise BioslicerError(f"{name}: ASCII STL has two 'vertex' keywords on one line (line "
                                 f"{_line_of(newline, s[np.flatnonzero(s[1:] < e[:-1])[0] + 1])}); export the mesh again")
        sp = _is_space(text)
        tok = np.flatnonzero(~sp[1:] & sp[:-1]) + 1   # a number starts after a space (each line starts with one)
        per_line = np.diff(np.searchsorted(tok, np.r_[0, np.cumsum(lens)]))
        bad = np.flatnonzero(per_line != 3)
        if len(bad):
            raise BioslicerError(f"{name}: ASCII STL line {_line_of(newline, s[bad[0]])} has {int(per_line[bad[0]])} "
                                 "numbers after 'vertex', not 3; export the mesh again")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # older numpy warns and stops at text that is not a number
                xyz = np.fromstring(text.tobytes(), dtype=np.float64, sep=" ")
        except ValueError:  # newer numpy raises
            xyz = np.zeros(0)
        if len(xyz) != 3 * len(s):
            raise BioslicerError(f"{name}: ASCII STL line {_line_of(newline, s[_first_bad_line(text, lens)])} has a "
                                 "vertex coordinate that is not a number; export the mesh again")
        out[c0:c0 + len(s)] = xyz.reshape(-1, 3)
    return out


def _line_of(newline: np.ndarray, pos) -> int:
    """1-based line number of byte ``pos`` given the positions of the newlines."""
    return int(np.searchsorted(newline, pos)) + 1


def _first_bad_line(text: np.ndarray, lens: np.ndarray) -> int:
    """Index of the first line of ``text`` (line lengths ``lens``) with a token float() cannot read."""
    off = np.r_[0, np.cumsum(lens)]
    for i in range(len(lens)):  # only on the error path
        try:
            [float(t) for t in text[off[i]:off[i + 1]].tobytes().split()]
        except ValueError:
            return i
    return len(lens) - 1
