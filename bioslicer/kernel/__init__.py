"""Numba kernels of the slicer: plain functions over arrays, no validation, no allocation policy.

* :mod:`.crossings` - triangle buckets per layer, plane/triangle segments, row crossings with
  winding, span run-length encoding (two passes: count, then fill).
* :mod:`.contours` - chaining plane/triangle segments into closed rings by mesh edge id.
* :mod:`.voxels` - rasterising spans into boolean or bit-packed voxel grids.
* :mod:`.boolean` - union / intersection / difference of span sets on one row grid.
* :mod:`.marks` - spans to hatch marks, joining marks, subdivision, volume sampling, gyroid sheets.
* :mod:`.stitch` - clipping marks to the sheared cells of a block grid (pieces and their source mark).
* :mod:`.order` - scan order inside every (block, layer) run (the order, reversals, rotations).
* :mod:`.measure` - mark lengths (the one kernel), closed contours, jumps, transition times.
* :mod:`.meshops` - mesh intake: exact vertex welding (hash table), per-face signed volumes.
* :mod:`.pool` - parallel kernels: a serial ``nogil`` kernel per chunk of work on a thread pool
  (no ``prange``: each compiles once, fast), and the gate of the first-run warm-up helper.
* :mod:`.sorting` - the one stable argsort the kernels use (numba's own sorts compile per caller).

The Python drivers (:mod:`bioslicer.slicing`, :mod:`bioslicer.stitching`, :mod:`bioslicer.ordering`,
:mod:`bioslicer.estimate`) validate inputs, size the outputs and call these; per-mark fields are
moved by the callers with ``Toolpath.take_marks``, never by a kernel.
"""
