"""The work a job asks for, estimated from the part's size and the recipe before any planning.

Slicing allocates by the scan row and the segment: a hatch distance a thousand times too
small asks for a million times the memory, a tiny block size for billions of blocks. This
module estimates, from the bounds of what will be printed, the recipe and the printer alone
(no toolpath), the counts that drive the cost (layers, scan rows, blocks, segments), the
peak memory of the largest block, the program size and the print time, and refuses in one
line what cannot run on this machine (memory, disk: never overridable) or makes no physical
sense for the printer (hatch, slice or point distance below the position resolution of its
programs or beyond its field, a block narrower than ten hatch lines, a print of more than
:data:`MAX_PRINT_S`: overridable with ``force``). The figures are estimates within a small
factor (measured on the bundled meshes), meant to catch parameters off by orders of magnitude.

:func:`check_recipe` needs no mesh (the job service calls it at upload); :func:`check_job`
adds the part (the CLI and :func:`bioslicer.pipeline.slice_to_job` call it before planning).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import BioslicerError

#: resident memory of Python, Numba and the libraries before any block, bytes (measured ~250 MB)
BASE_BYTES = 350e6
#: peak bytes per segment of the largest block: spans, marks, ordering, program text (measured ~250)
BYTES_PER_SEGMENT = 300.0
#: bytes per scan row of one layer of a block window (the span kernel's row tables)
BYTES_PER_ROW = 100.0
#: bytes per block of the grid (block table, per-block results and estimates)
BYTES_PER_BLOCK = 2000.0
#: program bytes per segment (measured ~50 for GWL and G-code)
PROGRAM_BYTES_PER_SEGMENT = 60.0
#: µm of contour per contour segment (the mesh's facets cut into each ring; a guess: 10 µm)
CONTOUR_SEGMENT_UM = 10.0
#: the disk check refuses only when a third of the estimated program does not fit (the estimate
#: errs on the high side; a disk that fills up anyway ends in one line and nothing written)
DISK_MARGIN = 3.0
#: a print longer than this (s) is refused unless forced: 30 days
MAX_PRINT_S = 30 * 86400.0
#: a block must be at least this many hatch lines wide
MIN_BLOCK_HATCH_LINES = 10


@dataclass
class Work:
    """Estimated cost of a job (see the module docstring); counts are floats (they may be huge)."""

    size_um: list
    layers: float
    rows_per_layer: float
    blocks: float
    segments: float
    block_segments: float
    mark_length_um: float
    peak_bytes: float
    program_bytes: float
    print_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def position_resolution_um(printer) -> float:
    """The smallest position step the printer's programs can express, µm (``decimals`` digits in
    the dialect's length unit)."""
    from .programs.dialects import load_spec

    spec = load_spec(printer.dialect)
    units = spec.get("units", {})
    if units and spec.get("decimals_refer_to") == "program_unit":
        scale = float(units.get(printer.program.get("unit", "mm"), 1.0))
    else:
        scale = float(spec.get("length_unit_um", 1.0))
    return scale * 10.0 ** -int(printer.decimals)


def machine_memory_bytes() -> float:
    """Memory this process may still use: MemAvailable, capped by ``ulimit -v`` and a cgroup limit, bytes."""
    avail = math.inf
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = float(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if not math.isfinite(avail):
        try:
            avail = float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            avail = 8e9
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            avail = min(avail, float(soft))       # address space, of which Python and Numba take ~1 GB
    except (ImportError, ValueError, OSError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            avail = min(avail, float(text))
    return avail


def estimate_work(bounds_um, recipe, printer, volume_um3: float | None = None) -> Work:
    """Estimate the cost of slicing the box ``bounds_um`` with ``recipe`` on ``printer``.

    Parameters
    ----------
    bounds_um : (2, 3) float
        Lower and upper corner of what will be printed (the part, or the mold block), µm.
    recipe : Recipe
    printer : Printer
    volume_um3 : float, optional
        Volume to fill (default: the box), µm³.

    Returns
    -------
    Work
    """
    b = np.asarray(bounds_um, dtype=np.float64).reshape(2, 3)
    size = np.maximum(b[1] - b[0], 0.0)
    box_volume = float(np.prod(size))
    vol = box_volume if volume_um3 is None else min(abs(float(volume_um3)), box_volume)
    slice_um, hatch_um = float(recipe.slice_um), float(recipe.hatch_um)
    layers = max(1.0, math.ceil(size[2] / slice_um))
    rows_per_layer = max(1.0, (size[0] + size[1]) / 2 / hatch_um)   # hatch angles alternate
    side = float(recipe.block_size_um) if recipe.block_size_um else float(printer.block_side_um)
    step = max(side - float(recipe.overlap_um), side * 1e-3)
    n_xy = [max(1.0, math.ceil(max(size[i] - recipe.overlap_um, 0.0) / step)) for i in (0, 1)]
    tier_um = max(float(printer.z_range_um) / recipe.focal_shift_factor, slice_um)   # physical height of a tier
    tiers = max(1.0, math.ceil(size[2] / tier_um))
    blocks = n_xy[0] * n_xy[1] * tiers
    # segments: every scan row crossing the part once per layer, plus contours (rings around
    # the box, one segment per CONTOUR_SEGMENT_UM); a block holds its share, but at most the
    # rows of its own window over the layers of its tier
    contour_um = layers * recipe.contour_count * 2.0 * (size[0] + size[1])
    segments = layers * rows_per_layer + contour_um / CONTOUR_SEGMENT_UM
    layers_tier = max(1.0, min(layers, math.ceil(tier_um / slice_um)))
    rows_window = max(1.0, math.sqrt(2.0) * side / hatch_um)
    block_segments = min(segments, layers_tier * min(rows_window, rows_per_layer)
                         + layers_tier * recipe.contour_count * 4.0 * min(side, max(size[0], size[1])) / CONTOUR_SEGMENT_UM)
    peak = BASE_BYTES + block_segments * BYTES_PER_SEGMENT + min(rows_window, rows_per_layer) * BYTES_PER_ROW \
        + blocks * BYTES_PER_BLOCK
    fill_um = vol / (slice_um * hatch_um)
    mark_length = fill_um + contour_um
    speed = recipe.speed_um_s
    per_segment_s = float(printer.jump_delay_s + printer.laser_on_delay_s + printer.laser_off_delay_s)
    print_s = fill_um / float(speed.get("hatch", printer.max_speed_um_s)) \
        + contour_um / float(speed.get("contour", printer.max_speed_um_s)) + segments * per_segment_s \
        + layers * blocks / tiers * float(printer.layer_settle_s) + blocks * float(printer.stage_settle_s)
    return Work([float(x) for x in size], float(layers), float(rows_per_layer), float(blocks), float(segments),
                float(block_segments), float(mark_length), float(peak), float(segments * PROGRAM_BYTES_PER_SEGMENT),
                float(print_s))


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.3g} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.3g} MiB"


def _count(n: float) -> str:
    return f"{n:.3g}" if n >= 1e6 else f"{int(n):,}"


def _duration(s: float) -> str:
    if s >= 86400 * 365:
        return f"{s / (86400 * 365):.3g} years"
    if s >= 86400:
        return f"{s / 86400:.3g} days"
    return f"{s / 3600:.3g} h"


def check_recipe(recipe, printer, force: bool = False) -> None:
    """Refuse recipe values that make no physical sense for ``printer`` (no mesh needed).

    Hatch, slice and point distance must be at least the printer's position resolution and at
    most its field; a given block size at least :data:`MIN_BLOCK_HATCH_LINES` hatch lines and at
    most the field. ``force`` lets them through (they are plausibility limits only).

    Raises
    ------
    BioslicerError
        One line naming the parameter, its value and the limit.
    """
    if force:
        return
    res = position_resolution_um(printer)
    field = float(printer.field_size_um)
    limits = (("hatch_um", recipe.hatch_um, field), ("slice_um", recipe.slice_um, max(field, printer.z_range_um)),
              ("contour_spacing_um", recipe.contour_spacing_um, field))
    if recipe.power_field_path is not None or recipe.power_ramp_width_um > 0:
        limits += (("point_distance_um", recipe.point_distance_um, field),)
    for key, value, top in limits:
        if value < res:
            raise BioslicerError(f"{key}={value:g} µm is below the {res:g} µm position resolution of "
                                 f"{printer.name}'s programs; use at least {res:g} (or --force)")
        if value > top:
            raise BioslicerError(f"{key}={value:g} µm is larger than the {top:g} µm field of {printer.name}; "
                                 f"use a value below {top:g} (or --force)")
    if recipe.block_size_um is not None:
        bs = float(recipe.block_size_um)
        if bs < MIN_BLOCK_HATCH_LINES * recipe.hatch_um:
            raise BioslicerError(f"block_size_um={bs:g} µm holds fewer than {MIN_BLOCK_HATCH_LINES} hatch lines of "
                                 f"{recipe.hatch_um:g} µm; use at least {MIN_BLOCK_HATCH_LINES * recipe.hatch_um:g} "
                                 "(or --force)")
        if bs > printer.block_side_um * (1 + 1e-9):
            raise BioslicerError(f"block_size_um={bs:g} µm is larger than the {printer.block_side_um:.4g} µm block "
                                 f"that fits the field of {printer.name}; use a smaller block_size_um")


def check_work(work: Work, recipe, printer, force: bool = False, out_dir=None,
               memory_bytes: float | None = None) -> None:
    """Refuse a job whose estimate cannot run here (memory, disk: always) or is implausible
    (a print longer than :data:`MAX_PRINT_S`: unless ``force``).

    Parameters
    ----------
    work : Work
        From :func:`estimate_work`.
    out_dir : path, optional
        Where the job will be written; its file system must hold the program.
    memory_bytes : float, optional
        Memory available (default :func:`machine_memory_bytes`).
    """
    mem = machine_memory_bytes() if memory_bytes is None else float(memory_bytes)
    if work.peak_bytes > mem:
        who = _driver(work, recipe)
        raise BioslicerError(
            f"{who} would need about {_gib(work.peak_bytes)} of memory ({_count(work.block_segments)} segments in "
            f"the largest block, {_count(work.blocks)} blocks), more than the {_gib(mem)} available here; "
            f"raise {who.split('=')[0]}")
    if out_dir is not None:
        folder = Path(out_dir).absolute()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = math.inf
        if work.program_bytes / DISK_MARGIN > free:
            raise BioslicerError(
                f"the program would take about {_gib(work.program_bytes)} ({_count(work.segments)} segments), more "
                f"than the {_gib(free)} free on {folder}; free some space or raise hatch_um/slice_um")
    if not force and work.print_s > MAX_PRINT_S:
        raise BioslicerError(
            f"the print would take about {_duration(work.print_s)} ({_count(work.segments)} segments, "
            f"{_count(work.mark_length_um / 1000)} mm marked); check hatch_um={recipe.hatch_um:g} and "
            f"slice_um={recipe.slice_um:g} and the part's units (or --force)")


def _driver(work: Work, recipe) -> str:
    """The parameter that most likely drives a huge estimate, as 'key=value'."""
    if work.blocks * BYTES_PER_BLOCK > work.block_segments * BYTES_PER_SEGMENT and recipe.block_size_um:
        return f"block_size_um={recipe.block_size_um:g}"
    if recipe.hatch_um <= recipe.slice_um:
        return f"hatch_um={recipe.hatch_um:g}"
    return f"slice_um={recipe.slice_um:g}"


def check_job(solid, recipe, printer, force: bool = False, out_dir=None) -> Work:
    """:func:`check_recipe` then :func:`check_work` for the part ``solid`` (a Solid); returns the
    estimate. Call before planning: nothing is allocated by the size of the job here."""
    from .strategies import make_region

    check_recipe(recipe, printer, force=force)
    region = make_region(solid, recipe)
    vol = (solid.report or {}).get("volume_um3") if recipe.strategy != "channels" else None
    work = estimate_work(np.asarray(region.bounds_um), recipe, printer, volume_um3=vol)
    check_work(work, recipe, printer, force=force, out_dir=out_dir)
    return work
