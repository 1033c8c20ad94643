"""Re-target a job (issue 19): `bioslicer export JOB --printer P2 [--dialect D] -o NEW` writes the
job's part for another printer, checked against it; refused in one line where it does not fit."""

import json

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from bioslicer.cli import cli
from bioslicer.errors import BioslicerError
from bioslicer.pipeline import slice_to_job
from bioslicer.toolpath import Kind


@pytest.fixture()
def job(tmp_path):
    trimesh.creation.box(extents=[260.0, 40.0, 6.0]).export(tmp_path / "bar.stl")
    ov = {"slice_um": 2.0, "hatch_um": 2.0, "speed_um_s": dict.fromkeys(Kind.names(), 15000.0)}
    return slice_to_job(tmp_path / "bar.stl", tmp_path / "job25", overrides=ov, preview=False)


def test_export_job_to_another_printer_and_dialect(job, tmp_path):
    r = CliRunner().invoke(cli, ["export", str(job.path), "-p", "nanoscribe-gt2-63x", "-o", str(tmp_path / "j63"),
                                 "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    m = json.loads((tmp_path / "j63" / "manifest.json").read_text())
    assert m["printer"]["name"] == "nanoscribe-gt2-63x" and m["validation"]["ok"]
    # the 260 µm bar fits one 400 µm field of the 25x objective, not the 200 µm field of the 63x
    assert job.manifest["counts"]["blocks"] == 1 and m["counts"]["blocks"] >= 2
    np.testing.assert_allclose(m["bounds_um"], job.manifest["bounds_um"], atol=1e-3)
    assert m["counts"]["mark_length_um"] == pytest.approx(job.manifest["counts"]["mark_length_um"], rel=0.02)
    r = CliRunner().invoke(cli, ["export", str(job.path), "-p", "femtika-aerotech-galvo", "-o", str(tmp_path / "jf")])
    assert r.exit_code == 0, (r.output, r.exception)
    m = json.loads((tmp_path / "jf" / "manifest.json").read_text())
    assert m["program"]["dialect"] == "aerobasic" and m["validation"]["ok"]


def test_export_that_does_not_fit_is_refused(job, tmp_path):
    # the job's 22.5 mW hatch on a 63x profile whose laser gives only 10 mW: refused, nothing written
    from pathlib import Path

    import bioslicer

    weak = tmp_path / "weak.toml"
    repo = Path(bioslicer.__file__).resolve().parents[1]
    text = (repo / "printers" / "nanoscribe-gt2-63x.toml").read_text().replace("max_power_mw = 50.0", "max_power_mw = 10.0")
    text = text.replace('name = "nanoscribe-gt2-63x"', 'name = "weak-63x"')
    weak.write_text(text)
    r = CliRunner().invoke(cli, ["export", str(job.path), "-p", str(weak), "-o", str(tmp_path / "daq")])
    assert isinstance(r.exception, BioslicerError)
    assert "power_mw.contour" in str(r.exception) and "10 mW" in str(r.exception), str(r.exception)
    assert len(str(r.exception).splitlines()) == 1 and not (tmp_path / "daq").exists()
