"""Scan order control (issue 19): recipe ``order`` per kind and ``kind_order`` within a layer,
checked by reading the written program back."""

import numpy as np
import pytest
import trimesh

from bioslicer.errors import BioslicerError
from bioslicer.pipeline import slice_to_job
from bioslicer.programs import read_program
from bioslicer.recipe import Recipe

P25 = "nanoscribe-gt2-25x"
BASE = {"slice_um": 2.0, "hatch_um": 1.0, "power_mw": {"contour": 8.0, "hatch": 10.0}}


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    d = tmp_path_factory.mktemp("order")
    trimesh.creation.box(extents=[20.0, 16.0, 6.0]).export(d / "cube.stl")
    return d


def program_marks(cube, tag, **ov):
    """[(z, power_mw, (k, 3) points)] of every mark of the job's program, in program order."""
    res = slice_to_job(cube / "cube.stl", cube / tag, printer=P25, overrides=dict(BASE, **ov), preview=False,
                       overwrite=True)
    mv = read_program(res.path / res.manifest["program"]["main"], P25)
    out = []
    starts = np.flatnonzero(mv.jump)
    ends = np.append(starts[1:], len(mv.x))
    for a, b in zip(starts, ends):
        on = np.arange(a + 1, b)[mv.laser_on[a + 1:b]]
        if len(on) == 0:
            continue
        pts = np.column_stack([mv.x[a:b], mv.y[a:b], mv.z[a:b]])
        out.append((round(float(mv.z[a]), 3), round(float(mv.power_mw[on[0]]), 3), pts))
    return out


def by_layer(marks):
    layers = {}
    for z, p, pts in marks:
        layers.setdefault(z, []).append((p, pts))
    return layers


def test_default_contours_first_and_kind_order_puts_hatch_first(cube):
    for z, ms in by_layer(program_marks(cube, "default")).items():
        powers = [p for p, _ in ms]
        assert powers[0] == 8.0 and 10.0 in powers
        assert max(i for i, p in enumerate(powers) if p == 8.0) < min(i for i, p in enumerate(powers) if p == 10.0)
    for z, ms in by_layer(program_marks(cube, "hatch_first", kind_order=["hatch", "contour"])).items():
        powers = [p for p, _ in ms]
        assert powers[0] == 10.0 and powers[-1] == 8.0, (z, powers)


@pytest.mark.parametrize("mode,sign", [("inside-out", 1), ("outside-in", -1)])
def test_radial_orders_read_back(cube, mode, sign):
    for z, ms in by_layer(program_marks(cube, mode, order={"hatch": mode})).items():
        hatch = [pts for p, pts in ms if p == 10.0]
        centres = np.array([pts.mean(axis=0)[:2] for pts in hatch])
        c = 0.5 * (centres.min(axis=0) + centres.max(axis=0))
        r = np.linalg.norm(centres - c, axis=1)
        assert len(r) > 5 and np.all(sign * np.diff(r) >= -1e-3), (z, r)


def test_serpentine_nearest_and_as_sliced_read_back(cube):
    serp = by_layer(program_marks(cube, "serp", order={"hatch": "serpentine"}))
    sliced = by_layer(program_marks(cube, "sliced", order={"hatch": "as-sliced"}))
    for z in serp:
        hs = [pts for p, pts in serp[z] if p == 10.0]
        # serpentine: consecutive rows alternate direction, each jump is one row over
        d = np.array([pts[-1, :2] - pts[0, :2] for pts in hs])
        main = np.argmax(np.abs(d).sum(axis=0))
        assert np.all(np.sign(d[1:, main]) == -np.sign(d[:-1, main]))
        assert len([pts for p, pts in sliced[z] if p == 10.0]) == len(hs)
    # as sliced: the strategy's own order, written as is (no mark reversed or moved)
    from bioslicer.mesh import load_mesh
    from bioslicer.placement import place
    from bioslicer.planning import plan_toolpath
    from bioslicer.printers import load_printer
    from bioslicer.toolpath import Kind

    pr = load_printer(P25)
    rec = Recipe.from_printer(pr).updated(**BASE)
    solid, prec, _ = place(load_mesh(cube / "cube.stl"), rec)
    raw, _ = plan_toolpath(solid, prec, pr)
    for k, z in enumerate(sorted(sliced)):
        got = np.array([pts[0] for p, pts in sliced[z] if p == 10.0])
        sel = np.flatnonzero((raw.mark_layer == k) & (raw.mark_kind == int(Kind.HATCH)))
        want = np.column_stack([raw.x_um, raw.y_um, raw.z_um])[raw.mark_start[sel]]
        np.testing.assert_allclose(got[:, :2], want[:, :2], atol=2e-3)
    near = program_marks(cube, "near", order={"hatch": "nearest", "contour": "nearest"})
    assert len(near) == sum(len(v) for v in serp.values())


def test_unknown_order_names_are_refused_in_one_line():
    with pytest.raises(BioslicerError, match=r"order.hatch.*'zigzag'.*serpentine, nearest, as-sliced"):
        Recipe().updated(order={"hatch": "zigzag"})
    with pytest.raises(BioslicerError, match="kind_order"):
        Recipe().updated(kind_order=["hatch", "walls"])
    assert Recipe().updated(order={"hatch": "nearest"}).order["contour"] == "auto"
