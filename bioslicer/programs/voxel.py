"""Voxel power volume for rigs that scan a volume themselves.

``<name>_power.npy``: float32 array [z, y, x] of laser power as a fraction of the printer's
``max_power_mw`` (0 = laser off). ``<name>_power.json``: voxel size, the machine position of
voxel (0, 0, 0)'s centre, the stage position, axis order and provenance. Marks are rasterised
by sampling every segment at a quarter of the smallest voxel edge; a voxel takes the highest
power of the samples that fall in it. The volume is written through a memory map, marks in
runs, so memory does not hold the volume twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from numba import njit

from ..errors import BioslicerError
from ..fileio import AtomicFile, AtomicPath
from .dialects import mark_chunks, moves_from_arrays, program_origin_um, provenance_lines

MAX_VOXELS = 1 << 31


@njit(cache=True)
def _raster(P, frac, ms, lo, vox, vol):
    """Max-splat the marks (P (N, 3) µm, frac (N,)) into ``vol`` [z, y, x] with voxel (0,0,0) at ``lo``."""
    step = min(vox[0], min(vox[1], vox[2])) / 4.0
    nz, ny, nx = vol.shape
    for m in range(ms.shape[0] - 1):
        for i in range(ms[m], ms[m + 1] - 1):
            L = math.sqrt((P[i + 1, 0] - P[i, 0]) ** 2 + (P[i + 1, 1] - P[i, 1]) ** 2 + (P[i + 1, 2] - P[i, 2]) ** 2)
            k = max(1, int(math.ceil(L / step)))
            for j in range(k + 1):
                f = j / k
                ix = int(math.floor((P[i, 0] + (P[i + 1, 0] - P[i, 0]) * f - lo[0]) / vox[0] + 0.5))
                iy = int(math.floor((P[i, 1] + (P[i + 1, 1] - P[i, 1]) * f - lo[1]) / vox[1] + 0.5))
                iz = int(math.floor((P[i, 2] + (P[i + 1, 2] - P[i, 2]) * f - lo[2]) / vox[2] + 0.5))
                if 0 <= ix < nx and 0 <= iy < ny and 0 <= iz < nz:
                    v = frac[i] + (frac[i + 1] - frac[i]) * f
                    if v > vol[iz, iy, ix]:
                        vol[iz, iy, ix] = v


def voxel_size_um(printer, recipe=None) -> np.ndarray:
    """(x, y, z) voxel edges: ``program.voxel_um`` or [hatch_um, hatch_um, slice_um] of the recipe
    (a dict, as in ``toolpath.meta["recipe"]``), else of the printer's defaults."""
    v = printer.program.get("voxel_um")
    if v is None:
        d = recipe if recipe is not None else printer.defaults
        v = [d.get("hatch_um", 0.5), d.get("hatch_um", 0.5), d.get("slice_um", 1.0)]
    try:
        v = np.asarray(v, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        raise BioslicerError(f"printer profile {printer.name}: 'program.voxel_um' must be [x, y, z] in µm") from None
    if np.any(~(v > 0)):
        raise BioslicerError(f"printer profile {printer.name}: voxel edges must be positive")
    return v


ONE_BLOCK = ("the voxel dialect writes one volume per program; stitch the part into a single block "
             "(one field) or use another dialect")


def prepare(printer, spec) -> None:
    """Refuse a profile the voxel writer cannot use (checked once, before any block is written)."""
    spec.check_printer(printer)
    voxel_size_um(printer)


def write_block(w, b: int, toolpath, staging: Path) -> tuple[list, dict]:
    """Rasterise block ``b``'s marks into ``<name>_power.npy`` under ``staging``.

    Returns ([Written], info) with what the JSON sidecar needs (shape, voxel (0, 0, 0) position).
    """
    printer, spec = w.printer, w.spec
    vox = voxel_size_um(printer, toolpath.meta.get("recipe"))     # the recipe the marks were planned with
    origin = program_origin_um(printer)
    bounds = toolpath.bounds()
    lo = np.round(bounds[0] / vox) * vox
    shape_xyz = np.floor((bounds[1] - lo) / vox + 0.5).astype(np.int64) + 1
    if np.prod(shape_xyz.astype(np.float64)) > MAX_VOXELS:
        raise BioslicerError(f"the voxel volume would have {int(np.prod(shape_xyz.astype(np.float64)))} voxels "
                             f"(over {MAX_VOXELS}); use larger voxels (program.voxel_um) or a smaller part")
    npy = staging / f"{w.name}{spec.get('array_suffix', '_power.npy')}"
    shape = (int(shape_xyz[2]), int(shape_xyz[1]), int(shape_xyz[0]))
    ap = AtomicPath(npy, hashed=w.durable, fsync=w.durable, root=w.out_dir)
    with ap as tmp:
        vol = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(spec.get("dtype", "float32")), shape=shape)
        arr = np.asarray(vol)
        for a, c in mark_chunks(toolpath.mark_start, 0, toolpath.n_marks):
            p0, p1 = int(toolpath.mark_start[a]), int(toolpath.mark_start[c])
            P = np.column_stack([toolpath.x_um[p0:p1], toolpath.y_um[p0:p1], toolpath.z_um[p0:p1]])
            frac = (toolpath.power_mw[p0:p1] / printer.max_power_mw).astype(arr.dtype)
            _raster(P, frac, toolpath.mark_start[a:c + 1] - p0, lo, vox, arr)
        vol.flush()
        del arr, vol
    info = {"shape": list(shape), "voxel_um": [float(v) for v in vox], "origin_um": [float(v) for v in lo + origin],
            "stage_um": [float(v) for v in w.blocks.origin_um[b] + origin]}
    return [ap.written], info


def write_main(w, parts, counts: dict, staging: Path) -> list[Path]:
    """Write ``<name>_power.json`` beside the one block's volume. Returns [json, npy] (staging paths)."""
    printer, spec = w.printer, w.spec
    if len(parts) != 1:
        raise BioslicerError(ONE_BLOCK if parts else "the voxel dialect needs marks to make a volume; nothing to write")
    part = parts[0]
    npy = w.out_dir / part.files[0]
    side = {
        "array": npy.name,
        "axis_order": spec.get("axis_order", "zyx"),
        "shape": part.info["shape"],
        "dtype": spec.get("dtype", "float32"),
        "value": "laser power as a fraction of max_power_mw",
        "max_power_mw": printer.max_power_mw,
        "voxel_um": part.info["voxel_um"],
        "origin_um": part.info["origin_um"],
        "stage_um": part.info["stage_um"],
        "block": int(part.block),
        "provenance": provenance_lines(counts, printer, w.provenance, "voxel"),
    }
    js = staging / f"{w.name}{spec.get('main_suffix', '_power.json')}"
    with AtomicFile(js, hashed=False, fsync=w.durable) as fm:
        fm.write(json.dumps(side, indent=2, sort_keys=True) + "\n")
    return [js, npy]


def iter_moves(path, printer, spec, slab_voxels: int = 1 << 22):
    """Yield :class:`Moves` for every non-zero voxel (one move per voxel, z slab by z slab).

    ``path`` may be the JSON sidecar or the .npy (then the sidecar beside it is used).
    """
    path = Path(path)
    if path.suffix == ".npy":
        path = path.with_name(path.name[: -len(spec.get("array_suffix", "_power.npy"))] + spec.get("main_suffix", "_power.json"))
    try:
        side = json.loads(path.read_text(encoding="utf-8"))
        vox = np.asarray(side["voxel_um"], np.float64).reshape(3)
        org = np.asarray(side["origin_um"], np.float64).reshape(3)
        stage = np.asarray(side["stage_um"], np.float64).reshape(3)
        maxp = float(side["max_power_mw"])
        npy = path.parent / side["array"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BioslicerError(f"{path}: not a voxel sidecar ({exc}); expected the JSON written with the .npy") from None
    if side.get("axis_order", "zyx") != "zyx":
        raise BioslicerError(f"{path}: axis_order must be 'zyx'")
    try:
        vol = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BioslicerError(f"{npy}: cannot read the voxel array: {exc}") from None
    if vol.ndim != 3:
        raise BioslicerError(f"{npy}: the voxel array must be 3-D [z, y, x]")
    files = [str(path), str(npy)]
    nz, ny, nx = vol.shape
    per = max(1, slab_voxels // max(1, ny * nx))
    for z0 in range(0, nz, per):
        slab = np.asarray(vol[z0:z0 + per], dtype=np.float64)
        iz, iy, ix = np.nonzero(slab)
        val = slab[iz, iy, ix]
        iz = iz + z0
        n = len(val)
        x, y, z = org[0] + ix * vox[0], org[1] + iy * vox[1], org[2] + iz * vox[2]
        flat = (iz.astype(np.int64) * ny + iy) * nx + ix
        yield moves_from_arrays(
            n, 1, files, x=x, y=y, z=z, sx=np.full(n, stage[0]), sy=np.full(n, stage[1]), sz=np.full(n, stage[2]),
            lx=x - stage[0], ly=y - stage[1], lz=z - stage[2], power_mw=val * maxp, speed_um_s=np.zeros(n),
            laser_on=np.ones(n, bool), jump=np.zeros(n, bool), block=np.full(n, int(side.get("block", 0)), np.int32),
            line=flat, power_line=flat)
