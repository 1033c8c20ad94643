"""Numba kernels of the slicer: plain functions over arrays, no validation, no allocation policy.

* :mod:`.crossings` - triangle buckets per layer, plane/triangle segments, row crossings with
  winding, span run-length encoding (two passes: count, then fill).
* :mod:`.contours` - chaining plane/triangle segments into closed rings by mesh edge id.
* :mod:`.voxels` - rasterising spans into boolean or bit-packed voxel grids.
* :mod:`.boolean` - union / intersection / difference of span sets on one row grid.

The Python drivers in :mod:`bioslicer.slicing` validate inputs, size the outputs and call these.
"""
