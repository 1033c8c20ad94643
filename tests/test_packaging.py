"""gcode/ and printers/ must work from an installed wheel, not only from a source checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(out)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip().splitlines()[-1:]}")
    return next(out.glob("bioslicer-*.whl"))


def test_wheel_carries_dialects_and_printers(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    for stem in (p.stem for p in (ROOT / "printers").glob("*.toml")):
        assert f"bioslicer/_data/printers/{stem}.toml" in names
    for stem in (p.stem for p in (ROOT / "gcode").glob("*.toml")):
        assert f"bioslicer/_data/gcode/{stem}.toml" in names
    # unpack and run from elsewhere: profiles and dialects are found inside the package
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = ("import bioslicer, bioslicer._data as d, sys;"
            "from bioslicer.printers import list_printers;"
            "from bioslicer.programs import DIALECTS;"
            "assert str(d.data_dir('printers')).startswith(sys.argv[1]), d.data_dir('printers');"
            "assert str(d.data_dir('gcode')).startswith(sys.argv[1]);"
            "print(len(list_printers()), len(DIALECTS))")
    r = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, sys.argv[1]); {code}",
                        str(tmp_path / "site")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    n_printers, n_dialects = map(int, r.stdout.split())
    assert n_printers == len(list((ROOT / "printers").glob("*.toml")))
    assert n_dialects >= 5
