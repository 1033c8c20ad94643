"""The whole-part helpers are loops over run_block: the same marks, program and estimate as a job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bioslicer.pipeline import job_provenance, plan_job, slice_to_job
from bioslicer.programs import write_program

MESH = Path(__file__).resolve().parents[1] / "meshes" / "calibration.stl"
SETTINGS = dict(printer="nanoscribe-gt2-63x", overrides={"slice_um": 6.0, "hatch_um": 3.0})


def test_plan_job_is_the_toolpath_the_job_writes(tmp_path):
    res = slice_to_job(MESH, tmp_path / "job", preview=False, **SETTINGS)
    job = plan_job(MESH, **SETTINGS)
    tp = job.toolpath
    tp.check()
    m = res.manifest
    assert len(tp.blocks) == job.grid.n_blocks() == m["counts"]["grid_blocks"]
    assert tp.n_marks == m["counts"]["marks"] and tp.n_points == m["counts"]["points"]
    assert sorted(np.unique(tp.mark_block).tolist()) == m["estimate"]["blocks"]
    assert job.estimate.total_s == pytest.approx(m["estimate"]["total_s"], rel=1e-12)
    # written on its own, the joined toolpath gives the job's program byte for byte
    prov = job_provenance(MESH.name, job.solid, job.printer, job.recipe, job.placement)
    files = write_program(tp, job.printer, tmp_path / "again", name="calibration", provenance=prov)
    names = sorted(p.relative_to(tmp_path / "again").as_posix() for p in files.files)
    assert names == m["program"]["files"]
    for name in names:
        assert (tmp_path / "again" / name).read_bytes() == (res.path / name).read_bytes(), name
