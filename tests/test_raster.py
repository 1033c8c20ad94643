"""The design-vs-printed rasteriser (kernel/raster.py): which voxels a laser-on move sets."""

import types

import numpy as np

from bioslicer.preview.compare import _rasterise_moves

VOX = np.array([0.2, 0.2, 0.5])


def moves(points, on):
    p = np.asarray(points, np.float64)
    return types.SimpleNamespace(x=p[:, 0], y=p[:, 1], z=p[:, 2], laser_on=np.asarray(on, bool))


def test_a_row_sets_the_voxels_it_crosses_and_a_jump_sets_none():
    # a jump to (0.1, 0.3) then a mark along x to 1.1 on the centre line of voxel row 1, layer 2
    mv = moves([[5.0, 5.0, 1.25], [0.1, 0.3, 1.25], [1.1, 0.3, 1.25]], [0, 0, 1])
    g = np.zeros((4, 10, 10), bool)
    _rasterise_moves(mv, np.zeros(3, np.int64), np.zeros(3), VOX, (4, 10, 10), 0, g)
    assert sorted(zip(*np.nonzero(g))) == [(2, 1, i) for i in range(6)]


def test_a_mark_on_a_voxel_face_prints_neither_neighbour_and_ranges_split_moves():
    mv = moves([[0.1, 0.4, 0.25], [1.1, 0.4, 0.25],      # on the face y = 0.4: nothing
                [0.1, 0.5, 0.25], [0.5, 0.5, 0.25]],     # first move of a new range: no segment into it
               [0, 1, 1, 1])
    g = np.zeros((1, 10, 10), bool)
    _rasterise_moves(mv, np.array([0, 0, 1, 1]), np.zeros(3), VOX, (1, 10, 10), 0, g)
    assert sorted(zip(*np.nonzero(g))) == [(0, 2, 0), (0, 2, 1), (0, 2, 2)]


def test_layers_outside_the_batch_are_left_alone_and_indices_clamp():
    mv = moves([[-3.0, 0.3, 0.25], [0.3, 0.3, 0.25], [0.3, 0.3, 0.75], [0.5, 0.3, 0.75]], [0, 1, 0, 1])
    g = np.zeros((1, 10, 10), bool)                       # the batch holds layer 2 only: nothing from layers 0 and 1
    _rasterise_moves(mv, np.zeros(4, np.int64), np.zeros(3), VOX, (4, 10, 10), 2, g)
    assert not g.any()
    g = np.zeros((4, 10, 10), bool)
    _rasterise_moves(mv, np.zeros(4, np.int64), np.zeros(3), VOX, (4, 10, 10), 0, g)
    assert g[0, 1, 0] and g[0, 1, 1] and g[1, 1, 1] and g[1, 1, 2] and g.sum() == 4
