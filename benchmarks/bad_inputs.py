"""Run the bad-input cases of issue 22 (and more) through the real CLI and print a table:
case, exit code, lines on stderr (progress bars left out), anything left on disk.

    PYTHONPATH=. python benchmarks/bad_inputs.py [--quick]

Every case runs ``python -m bioslicer ...`` in a fresh folder of its own; "left" lists what is
in that folder afterwards besides the inputs (hidden files too: a ``.job.partial-*`` folder is
a failure). Disk-full cases mount a small tmpfs when the machine allows it (root), else they
are skipped. Signals are sent once the job's temporary folder exists (``--quick`` skips the
slow cases: signals, Dask, memory limit). Expect every refusal to be exit 1 with one line and
nothing left, and the touching-shell tree, the repaired self-intersecting shell and the
forced cases that fit to be exit 0.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import hard_meshes as H  # noqa: E402
import trimesh  # noqa: E402

from bioslicer import samples  # noqa: E402

CAL = ROOT / "meshes" / "calibration.stl"
BLOCK = ROOT / "meshes" / "channel_block.stl"
PROGRESS = ("blocks", "writing", "slicing", "validat", "ordering", "planning")


def _stl(path: Path, v, f) -> None:
    with np.errstate(all="ignore"):
        path.write_bytes(samples.to_stl_bytes(trimesh.Trimesh(v, f, process=False)))


def make_inputs(folder: Path) -> dict:
    """The hard meshes of issue 22, written as STL files."""
    v, f, _ = H.joint_tree()
    _stl(folder / "tree.stl", v, f)
    v, f, _ = H.figure_eight()
    _stl(folder / "eight.stl", v, f)
    bv, bf, _ = H.box()
    _stl(folder / "twice.stl", np.concatenate([bv, bv]), np.concatenate([bf, bf + len(bv)]))
    nv = bv.copy()
    nv[0] = [np.nan, 1.0, np.inf]
    _stl(folder / "nan.stl", nv, bf)
    return {p.name: p for p in folder.glob("*.stl")}


def run(case: str, args: list[str], inputs: dict, fsize: int | None = None, vmem: int | None = None,
        sig: int | None = None, out_root: Path | None = None) -> tuple:
    work = Path(tempfile.mkdtemp(prefix="bad-"))
    for name, p in inputs.items():
        shutil.copy(p, work / name)
    out = (out_root or work)
    args = [str(a).replace("{out}", str(out / "job")) for a in args]

    def pre():
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if vmem is not None:
            resource.setrlimit(resource.RLIMIT_AS, (vmem, vmem))

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "bioslicer", *args], cwd=work, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, preexec_fn=pre)
    if sig is not None:
        deadline = time.monotonic() + 600
        while p.poll() is None and time.monotonic() < deadline:
            if any(".partial-" in n for n in os.listdir(out)):
                p.send_signal(sig)
                break
            time.sleep(0.01)
    err = p.communicate(timeout=1800)[1].decode(errors="replace")
    lines = [ln for ln in err.replace("\r", "\n").splitlines()
             if ln.strip() and not ln.strip().lower().startswith(PROGRESS)]
    left = sorted(set(os.listdir(work)) - set(inputs)) + (sorted(os.listdir(out)) if out != work else [])
    shutil.rmtree(work, ignore_errors=True)
    return case, p.returncode, len(lines), " ".join(left) or "-", (lines[-1] if lines else "")[:110], \
        time.monotonic() - t0


def main() -> int:
    quick = "--quick" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    inputs = make_inputs(tmp)
    cal = {"part.stl": CAL}
    s = ["slice", "part.stl", "--printer", "nanoscribe-gt2-25x", "-o", "{out}", "--no-preview"]
    cases = [
        ("hatch_um=1e-6", s + ["--set", "hatch_um=1e-6"], cal),
        ("hatch_um=1e-6 --force (memory)", s + ["--set", "hatch_um=1e-6", "--force"], cal),
        ("block_size_um=0.001", s + ["--set", "block_size_um=0.001"], cal),
        ("block_size_um=0.001 --force", s + ["--set", "block_size_um=0.001", "--force"], cal),
        ("hatch_um=1e308", s + ["--set", "hatch_um=1e308"], cal),
        ("hatch_um=5000 (beyond field)", s + ["--set", "hatch_um=5000"], cal),
        ("contour_count=1e22", s + ["--set", "contour_count=10000000000000000000000"], cal),
        ("hatch_um=1e-4", s + ["--set", "hatch_um=1e-4"], cal),
        ("slice_um=0.0005", s + ["--set", "slice_um=0.0005"], cal),
        ("touching shells tree: slice", ["slice", "tree.stl", "-o", "{out}", "--no-preview", "--set", "hatch_um=1",
                                         "--set", "slice_um=2"], inputs),
        ("touching shells tree: slice --repair", ["slice", "tree.stl", "-o", "{out}", "--no-preview", "--repair",
                                                  "--set", "hatch_um=1", "--set", "slice_um=2"], inputs),
        ("repeated shell: slice", ["slice", "twice.stl", "-o", "{out}", "--no-preview"], inputs),
        ("figure eight: inspect --check", ["inspect", "eight.stl", "--check"], inputs),
        ("figure eight: slice", ["slice", "eight.stl", "-o", "{out}", "--no-preview"], inputs),
        ("figure eight: slice --repair", ["slice", "eight.stl", "-o", "{out}", "--no-preview", "--repair",
                                          "--set", "hatch_um=1", "--set", "slice_um=2"], inputs),
        ("non-finite vertices: slice", ["slice", "nan.stl", "-o", "{out}"], inputs),
        ("estimate part.stl", ["estimate", "part.stl"], cal),
        ("validate part.stl", ["validate", "part.stl"], cal),
    ]
    for limit in (20_000, 400_000, 1_500_000, 5_000_000):
        cases.append((f"ulimit -f {limit // 1000} kB", s + ["--set", "hatch_um=0.2"], cal, {"fsize": limit}))
    rows = []
    for c in cases:
        rows.append(run(c[0], c[1], c[2], **(c[3] if len(c) > 3 else {})))
        print(" | ".join(str(x) for x in rows[-1][:5]), file=sys.stderr)
    # disk full: a small tmpfs
    mnt = tmp / "full"
    mnt.mkdir()
    for size in ("4m", "8m"):
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                            capture_output=True).returncode == 0
        if not ok:
            rows.append((f"disk full ({size} tmpfs)", "skipped", 0, "-", "cannot mount a tmpfs here", 0.0))
            break
        try:
            rows.append(run(f"disk full ({size} tmpfs)", s + ["--set", "hatch_um=0.1"], cal, out_root=mnt))
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)
    if not quick:
        blk = {"block.stl": BLOCK}
        sb = ["slice", "block.stl", "-o", "{out}", "--no-preview", "--set", "hatch_um=0.5", "--set", "slice_um=2"]
        for sig in (signal.SIGINT, signal.SIGTERM):
            rows.append(run(f"{sig.name} while slicing", sb, blk, sig=sig))
        rows.append(("--workers 2, ulimit -f 3 MB",) + run("", sb[:-4] + ["--set", "hatch_um=5", "--set", "slice_um=12.5",
                                                                           "--workers", "2"], blk,
                                                           fsize=3_000_000)[1:])
        for gib, hatch in ((3, "0.002"), (2, "0.01")):
            rows.append((f"ulimit -v {gib} GiB, hatch_um={hatch}",) + run("", s + ["--set", f"hatch_um={hatch}"], cal,
                                                                          vmem=gib << 30)[1:])
    shutil.rmtree(tmp, ignore_errors=True)
    w = max(len(r[0]) for r in rows)
    print(f"{'case':<{w}} | exit | stderr lines | left on disk | last stderr line")
    print(f"{'-' * w}-|------|--------------|--------------|-----------------")
    for case, rc, n, left, last, _ in rows:
        print(f"{case:<{w}} | {rc!s:>4} | {n:>12} | {left:<12} | {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
