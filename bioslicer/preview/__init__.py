"""PyVista previews of a mesh, the sliced solid, the toolpath and the program.

Two scenes, each built by a function that returns the :class:`pyvista.Plotter` (so a notebook
can keep working with it) and rendered to PNG by a companion that writes the file atomically:

* :func:`toolpath_plotter` / :func:`render_png` (:mod:`.scene3d`) -- the 3-D scene: the mesh
  (translucent), the toolpath as lines coloured by kind, power, layer or block, the stitching
  blocks as wireframe boxes and optionally the sliced solid (a voxel occupancy) as an isosurface.
* :func:`layer_plotter` / :func:`render_layer_png` (:mod:`.layer`) -- one layer seen from above:
  marks coloured by kind, the jumps between them, the slice contours and the galvo field outline.

The line geometry is built from the toolpath arrays in one vectorised pass
(:func:`toolpath_polydata`): one :class:`pyvista.PolyData` whose cells are the marks (one
polyline per mark), with ``kind``, ``layer`` and ``block`` as cell data and ``power_mw`` as
point data. Large toolpaths are decimated for display (:mod:`.decimate`) -- every n-th layer
(counted from the top so the top layer is always shown) and then every n-th mark -- to stay
under ``max_segments``; what is shown is written on the image, e.g. ``showing 1 in 4 layers,
2.0 M of 8.1 M segments``.

Offscreen rendering works without a display: when no ``DISPLAY`` exists the package selects
VTK's EGL render window and sets ``pyvista.OFF_SCREEN``. PNG files are encoded here (:mod:`.png`:
zlib, no timestamps), so the same inputs give byte-identical images on the same machine.

Modules: :mod:`.style` (colours), :mod:`.common` (PyVista set-up, shared scene helpers),
:mod:`.decimate`, :mod:`.scene3d`, :mod:`.layer`, :mod:`.voxels` (the solid, from the project's
voxel kernel), :mod:`.png`, :mod:`.sources` (jobs, toolpaths and meshes to preview).

Units: µm for every length, mW for power.
"""

from __future__ import annotations

from .common import has_display
from .decimate import (PIXELS_PER_SEGMENT, PreviewStats, decimate_marks, mark_lengths_um, mark_render_cost,
                       parse_layers)
from .layer import default_layer, layer_contours, layer_plotter
from .png import encode_png, plotter_image, render_layer_png, render_png, write_plotter_png
from .scene3d import (box_edges_polydata, mesh_polydata, show_up_to_layer, solid_surface, toolpath_plotter,
                      toolpath_polydata)
from .sources import PreviewSource, load_mesh_file, load_preview_source
from .style import (BACKGROUND, BLOCK_PALETTE, COLOR_MODES, DEFAULT_WINDOW, FIELD_COLOR, JUMP_COLOR, KIND_COLORS,
                    MESH_COLOR, SLICE_CONTOUR_COLOR, SOLID_COLOR, TEXT_COLOR, UNSTITCHED_COLOR)
from .voxels import voxelize_mesh

__all__ = [
    "BACKGROUND", "BLOCK_PALETTE", "COLOR_MODES", "DEFAULT_WINDOW", "FIELD_COLOR", "JUMP_COLOR", "KIND_COLORS",
    "MESH_COLOR", "PIXELS_PER_SEGMENT", "PreviewSource", "PreviewStats", "SLICE_CONTOUR_COLOR", "SOLID_COLOR",
    "TEXT_COLOR", "UNSTITCHED_COLOR", "box_edges_polydata", "decimate_marks", "default_layer", "encode_png",
    "has_display", "layer_contours", "layer_plotter", "load_mesh_file", "load_preview_source", "mark_lengths_um",
    "mark_render_cost", "mesh_polydata", "parse_layers", "plotter_image", "render_layer_png", "render_png",
    "show_up_to_layer", "solid_surface", "toolpath_plotter", "toolpath_polydata", "voxelize_mesh",
    "write_plotter_png",
]
