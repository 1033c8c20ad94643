"""The toolpath: every laser mark a printer writes, as a struct of numpy arrays.

A toolpath is a sequence of *marks*, executed in array order. A mark is a polyline of two or
more points written with the laser on; between consecutive marks the printer *jumps* with the
laser off (jumps are implied, never stored). A hatch line is a 2-point mark; a contour is a
closed polyline whose last point repeats the first.

Coordinates are absolute part coordinates in µm. After stitching (``bioslicer.stitching``)
every mark belongs to one block of a :class:`Blocks` table; the printer's galvo/fine-axis
coordinates of a point are ``point - blocks.origin_um[block]`` and the stage sits at the
block origin (see :meth:`Toolpath.local_xyz`).

Layout (N points, M marks, L layers, B blocks)::

    x_um, y_um, z_um   float64 (N,)   point coordinates, µm
    power_mw           float64 (N,)   laser power at each point, mW (the segment from point i
                                      to i+1 is written at power_mw[i] .. power_mw[i+1])
    mark_start         int64   (M+1,) points of mark m are mark_start[m]:mark_start[m+1]
    mark_kind          uint8   (M,)   a :class:`Kind`
    mark_layer         int32   (M,)   layer index into layer_z_um
    mark_block         int32   (M,)   block index into Blocks, -1 before stitching
    mark_speed_um_s    float64 (M,)   scan speed of the mark, µm/s
    mark_set           int32   (M,)   parameter set of the mark (``bioslicer.paramsets``), -1 unset
    layer_z_um         float64 (L,)   nominal height of each layer, µm
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import BioslicerError
from .fileio import umask as _umask


class Kind(IntEnum):
    """What a mark is for; exposure (power, speed) is set per kind."""

    CONTOUR = 0
    HATCH = 1
    SCAFFOLD = 2
    SKIN = 3
    LATTICE = 4

    @classmethod
    def names(cls) -> list[str]:
        return [k.name.lower() for k in cls]

    @classmethod
    def parse(cls, name: str) -> "Kind":
        try:
            return cls[name.upper()]
        except KeyError:
            raise BioslicerError(
                f"unknown mark kind {name!r}; use one of {', '.join(cls.names())}"
            ) from None


#: Per-point fields (N,) and their dtypes: moved point by point (stitching interpolates them at a cut).
POINT_FIELDS = {
    "x_um": np.float64,
    "y_um": np.float64,
    "z_um": np.float64,
    "power_mw": np.float64,
}
#: Per-mark fields (M,): dtype and the value a producer that does not set the field gives every
#: mark (None: the producer must set it). Every step that moves marks (selection, joining,
#: stitching, ordering, save/load) moves all of them through :meth:`Toolpath.take_marks`, so a new
#: per-mark field is one entry here, one dataclass field below, and the code that sets it.
MARK_FIELDS = {
    "mark_kind": (np.uint8, None),
    "mark_layer": (np.int32, None),
    "mark_block": (np.int32, -1),
    "mark_speed_um_s": (np.float64, 0.0),
    "mark_set": (np.int32, -1),
}
_POINT_FIELDS = tuple(POINT_FIELDS)
_MARK_FIELDS = tuple(MARK_FIELDS)
_DTYPES = {**POINT_FIELDS, "mark_start": np.int64, **{k: v[0] for k, v in MARK_FIELDS.items()},
           "layer_z_um": np.float64}


@dataclass
class Blocks:
    """The stitching blocks of a part: fields the galvo writes with the stage held still.

    Attributes
    ----------
    origin_um : (B, 3) float64
        Stage position (x, y) and fine-axis zero (z) of each block, µm. A point p of block b is
        written at galvo/fine-axis coordinates ``p - origin_um[b]``.
    index : (B, 3) int32
        Grid index (ix, iy, iz) of each block.
    lo_um, hi_um : (B, 3) float64
        Nominal extent of each block in part coordinates (before overlap and shear), µm.
    field_shape : str
        'square' or 'circle'; ``field_size_um`` is the side or the diameter.
    overlap_um, shear_deg : float
        Overlap between neighbouring blocks and shear angle of the block walls.
    """

    origin_um: np.ndarray
    index: np.ndarray
    lo_um: np.ndarray
    hi_um: np.ndarray
    field_shape: str = "square"
    field_size_um: float = 0.0
    overlap_um: float = 0.0
    shear_deg: float = 0.0

    def __post_init__(self) -> None:
        self.origin_um = np.ascontiguousarray(self.origin_um, dtype=np.float64).reshape(-1, 3)
        self.index = np.ascontiguousarray(self.index, dtype=np.int32).reshape(-1, 3)
        self.lo_um = np.ascontiguousarray(self.lo_um, dtype=np.float64).reshape(-1, 3)
        self.hi_um = np.ascontiguousarray(self.hi_um, dtype=np.float64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.origin_um)

    @classmethod
    def single(cls, lo_um, hi_um, field_shape: str = "square", field_size_um: float = 0.0) -> "Blocks":
        """One block centred on the part (x, y), fine-axis zero at the part bottom."""
        lo = np.asarray(lo_um, dtype=np.float64)
        hi = np.asarray(hi_um, dtype=np.float64)
        origin = np.array([[(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]])
        return cls(origin, np.zeros((1, 3), np.int32), lo[None], hi[None], field_shape, field_size_um)

    def to_meta(self) -> dict:
        return {
            "field_shape": self.field_shape,
            "field_size_um": float(self.field_size_um),
            "overlap_um": float(self.overlap_um),
            "shear_deg": float(self.shear_deg),
        }


@dataclass(kw_only=True)
class Toolpath:
    """Marks as a struct of arrays; see the module docstring for the layout.

    Built by keyword only (``Toolpath(x_um=..., ..., mark_start=..., mark_kind=..., ...)``);
    per-mark fields with a default in :data:`MARK_FIELDS` may be left out (None) and are filled
    for every mark.
    """

    x_um: np.ndarray
    y_um: np.ndarray
    z_um: np.ndarray
    power_mw: np.ndarray
    mark_start: np.ndarray
    mark_kind: np.ndarray
    mark_layer: np.ndarray
    mark_block: np.ndarray | None = None
    mark_speed_um_s: np.ndarray | None = None
    mark_set: np.ndarray | None = None
    layer_z_um: np.ndarray
    blocks: Blocks | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(self.mark_start) - 1
        for name, (dtype, default) in MARK_FIELDS.items():
            if getattr(self, name) is None:
                if default is None:
                    raise TypeError(f"Toolpath needs {name}")
                setattr(self, name, np.full(max(m, 0), default, dtype=dtype))
        for name, dtype in _DTYPES.items():
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, layer_z_um=()) -> "Toolpath":
        """No marks, the given layer table."""
        z = np.zeros(0)
        return cls(**dict.fromkeys(POINT_FIELDS, z), mark_start=np.zeros(1, np.int64),
                   **{k: np.zeros(0, v[0]) for k, v in MARK_FIELDS.items()},
                   layer_z_um=np.asarray(layer_z_um, dtype=np.float64))

    @classmethod
    def from_segments(cls, p0, p1, kind, layer, speed_um_s, power_mw, layer_z_um, block=None) -> "Toolpath":
        """Build a toolpath of 2-point marks from segment end points.

        Parameters
        ----------
        p0, p1 : (M, 3) float
            Start and end of each mark, µm.
        kind, layer : (M,) int or scalar
            Mark kind and layer index.
        speed_um_s, power_mw : (M,) float or scalar
            Scan speed (µm/s) and constant power (mW) of each mark.
        layer_z_um : (L,) float
            Nominal layer heights, µm.
        block : (M,) int or scalar, optional
            Block of each mark (default -1, unstitched).
        """
        p0 = np.asarray(p0, dtype=np.float64).reshape(-1, 3)
        p1 = np.asarray(p1, dtype=np.float64).reshape(-1, 3)
        m = len(p0)
        pts = np.empty((2 * m, 3))
        pts[0::2] = p0
        pts[1::2] = p1
        power = np.repeat(np.broadcast_to(np.asarray(power_mw, dtype=np.float64), (m,)), 2)
        each = lambda v: np.broadcast_to(np.asarray(v), (m,)).copy()  # noqa: E731
        return cls(
            x_um=pts[:, 0].copy(), y_um=pts[:, 1].copy(), z_um=pts[:, 2].copy(), power_mw=power,
            mark_start=np.arange(0, 2 * m + 1, 2, dtype=np.int64), mark_kind=each(kind), mark_layer=each(layer),
            mark_block=None if block is None else each(block),
            mark_speed_um_s=each(np.asarray(speed_um_s, dtype=np.float64)), layer_z_um=layer_z_um,
        )

    @classmethod
    def concat(cls, parts: list["Toolpath"], layer_z_um=None) -> "Toolpath":
        """Join toolpaths mark after mark (same layer table unless ``layer_z_um`` is given)."""
        parts = [p for p in parts if p is not None]
        if not parts:
            return cls.empty(() if layer_z_um is None else layer_z_um)
        lz = parts[0].layer_z_um if layer_z_um is None else layer_z_um
        starts = [np.zeros(1, np.int64)]
        off = 0
        for p in parts:
            starts.append(p.mark_start[1:] + off)
            off += p.n_points
        cat = {name: np.concatenate([getattr(p, name) for p in parts]) for name in (*POINT_FIELDS, *MARK_FIELDS)}
        return cls(**cat, mark_start=np.concatenate(starts), layer_z_um=lz, blocks=parts[0].blocks,
                   meta=dict(parts[0].meta))

    def take_marks(self, idx) -> dict:
        """Every per-mark field of :data:`MARK_FIELDS` at source marks ``idx``.

        The one place marks are moved: selection, stitching (``idx`` = the source mark of every
        piece) and ordering (``idx`` = the order) build their result from it, so a field added
        to the registry travels through every step.

        Parameters
        ----------
        idx : (K,) int
            Source mark of each output mark (repeats allowed).

        Returns
        -------
        dict
            Field name -> (K,) array, ready for ``Toolpath(**fields, ...)``.
        """
        idx = np.asarray(idx, dtype=np.int64)
        return {name: getattr(self, name).take(idx) for name in MARK_FIELDS}    # take: faster than [idx]

    def with_points(self, points: dict, mark_start, marks: dict, blocks="same") -> "Toolpath":
        """A toolpath with new points and marks, the same layer table, blocks and metadata.

        Parameters
        ----------
        points : dict
            Every field of :data:`POINT_FIELDS` -> (N,) array.
        mark_start : (K+1,) int64
        marks : dict
            Every field of :data:`MARK_FIELDS` -> (K,) array (usually :meth:`take_marks`).
        blocks : Blocks or None
            Default: this toolpath's.
        """
        return Toolpath(**points, mark_start=mark_start, **marks, layer_z_um=self.layer_z_um,
                        blocks=self.blocks if isinstance(blocks, str) else blocks, meta=dict(self.meta))

    def mark_range(self, m0: int, m1: int) -> "Toolpath":
        """Marks ``m0:m1`` as a toolpath of views (no copy of the point arrays), same metadata."""
        p0, p1 = int(self.mark_start[m0]), int(self.mark_start[m1])
        return self.with_points({k: getattr(self, k)[p0:p1] for k in POINT_FIELDS},
                                self.mark_start[m0:m1 + 1] - p0, {k: getattr(self, k)[m0:m1] for k in MARK_FIELDS})

    # ------------------------------------------------------------------ sizes
    @property
    def n_points(self) -> int:
        return int(len(self.x_um))

    @property
    def n_marks(self) -> int:
        return int(len(self.mark_kind))

    @property
    def n_layers(self) -> int:
        return int(len(self.layer_z_um))

    @property
    def n_segments(self) -> int:
        """Number of straight mark segments (points minus marks)."""
        return self.n_points - self.n_marks

    def __len__(self) -> int:
        return self.n_marks

    def points(self) -> np.ndarray:
        """(N, 3) float64 copy of the point coordinates, µm."""
        return np.column_stack([self.x_um, self.y_um, self.z_um])

    def mark_points(self, m: int) -> np.ndarray:
        s, e = self.mark_start[m], self.mark_start[m + 1]
        return np.column_stack([self.x_um[s:e], self.y_um[s:e], self.z_um[s:e]])

    def point_mark(self) -> np.ndarray:
        """(N,) int64 index of the mark each point belongs to."""
        return np.repeat(np.arange(self.n_marks, dtype=np.int64), np.diff(self.mark_start))

    def segment_lengths(self) -> np.ndarray:
        """(N-1,) length of every point-to-point step, µm; steps that cross marks are jumps."""
        p = self.points()
        return np.linalg.norm(np.diff(p, axis=0), axis=1) if len(p) > 1 else np.zeros(0)

    def mark_lengths(self) -> np.ndarray:
        """(M,) polyline length of each mark, µm (one Numba pass, no (N, 3) temporaries)."""
        from .kernel.measure import mark_lengths

        return mark_lengths(self.x_um, self.y_um, self.z_um, self.mark_start)

    def jump_lengths(self) -> np.ndarray:
        """(M-1,) length of the jump from the end of mark m to the start of mark m+1, µm (one
        Numba pass: the marks as one run of ``kernel.measure.run_jump_lengths``)."""
        if self.n_marks < 2:
            return np.zeros(0)
        from .kernel.measure import run_jump_lengths

        return run_jump_lengths(self.x_um, self.y_um, self.z_um, self.mark_start,
                                np.array([0, self.n_marks], dtype=np.int64))

    def bounds(self) -> np.ndarray:
        """(2, 3) min and max of all points, µm (zeros when empty)."""
        if self.n_points == 0:
            return np.zeros((2, 3))
        p = (self.x_um, self.y_um, self.z_um)
        return np.array([[a.min() for a in p], [a.max() for a in p]])

    # ------------------------------------------------------------------ selection
    def select_marks(self, mask_or_index) -> "Toolpath":
        """A new toolpath with the chosen marks (boolean mask or index array, in that order)."""
        idx = np.asarray(mask_or_index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        counts = self.mark_start[idx + 1] - self.mark_start[idx]
        starts = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(counts, out=starts[1:])
        # point gather index: for each selected mark, its point range
        if len(idx):
            base = np.repeat(self.mark_start[idx] - starts[:-1], counts)
            pidx = base + np.arange(starts[-1], dtype=np.int64)
        else:
            pidx = np.zeros(0, np.int64)
        return self.with_points({k: getattr(self, k)[pidx] for k in POINT_FIELDS}, starts, self.take_marks(idx))

    def iter_blocks(self) -> Iterator[tuple[int, "Toolpath"]]:
        """Yield (block index, sub-toolpath) for each run of marks of one block, in order."""
        yield from self._iter_runs(self.mark_block)

    def iter_layers(self) -> Iterator[tuple[int, "Toolpath"]]:
        """Yield (layer index, sub-toolpath) for each run of marks of one layer, in order."""
        yield from self._iter_runs(self.mark_layer)

    def _iter_runs(self, key: np.ndarray):
        if self.n_marks == 0:
            return
        cut = np.flatnonzero(np.diff(key)) + 1
        bounds = np.concatenate([[0], cut, [self.n_marks]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            yield int(key[a]), self.select_marks(np.arange(a, b))

    def local_xyz(self, block: int | None = None) -> np.ndarray:
        """(N, 3) galvo/fine-axis coordinates: points minus their block's origin, µm."""
        p = self.points()
        if self.blocks is None:
            return p
        b = self.mark_block[self.point_mark()] if block is None else np.full(self.n_points, block)
        if np.any(b < 0):
            raise ValueError("toolpath has marks outside any block; stitch it first")
        return p - self.blocks.origin_um[b]

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        """Raise ValueError if the arrays are inconsistent (a bug, not a user error)."""
        n, m = self.n_points, self.n_marks
        if self.mark_start[0] != 0 or self.mark_start[-1] != n or len(self.mark_start) != m + 1:
            raise ValueError("mark_start does not cover the points")
        if np.any(np.diff(self.mark_start) < 2):
            raise ValueError("a mark has fewer than 2 points")
        for name in _POINT_FIELDS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has the wrong length")
        for name in _MARK_FIELDS:
            if len(getattr(self, name)) != m:
                raise ValueError(f"{name} has the wrong length")
        if m and (self.mark_layer.min() < 0 or self.mark_layer.max() >= self.n_layers):
            raise ValueError("mark_layer out of range")

    # ------------------------------------------------------------------ save / load
    def save(self, path) -> Path:
        """Write an ``.npz`` (arrays + JSON metadata) atomically; returns the path."""
        path = Path(path)
        arrays = {name: getattr(self, name) for name in _DTYPES}
        meta = dict(self.meta)
        if self.blocks is not None:
            arrays.update(block_origin_um=self.blocks.origin_um, block_index=self.blocks.index,
                          block_lo_um=self.blocks.lo_um, block_hi_um=self.blocks.hi_um)
            meta["blocks"] = self.blocks.to_meta()
        arrays["meta_json"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path) -> "Toolpath":
        import zipfile

        if Path(path).is_file() and not zipfile.is_zipfile(path):
            raise BioslicerError(f"{Path(path).name} is not a saved toolpath (.npz); give the .npz a job holds "
                                 "(JOB/preview_toolpath.npz) or slice a mesh with `bioslicer slice`")
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise BioslicerError(f"cannot read toolpath {path}: {exc}; expected an .npz written by bioslicer") from None
        meta = json.loads(bytes(data.pop("meta_json")).decode())
        blocks = None
        if "block_origin_um" in data:
            bm = meta.pop("blocks", {})
            blocks = Blocks(data.pop("block_origin_um"), data.pop("block_index"), data.pop("block_lo_um"),
                            data.pop("block_hi_um"), **bm)
        missing = [k for k in _DTYPES if k not in data and MARK_FIELDS.get(k, (0, None))[1] is None]
        if missing:
            raise BioslicerError(f"toolpath {path} lacks {', '.join(missing)}; expected an .npz written by bioslicer")
        tp = cls(**{k: data[k] for k in _DTYPES if k in data}, blocks=blocks, meta=meta)
        tp.check()
        return tp


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
