"""What ``bioslicer preview`` is given: a job folder or zip, a toolpath ``.npz`` or a mesh file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BioslicerError
from ..toolpath import Toolpath


_MESH_SUFFIXES = (".stl", ".obj", ".ply", ".off", ".3mf", ".glb", ".gltf")


@dataclass
class PreviewSource:
    """What a path to preview holds.

    Attributes
    ----------
    name : str
    toolpath : Toolpath or None
        The toolpath of a ``.npz``, or a job's (thinned) preview toolpath.
    mesh : Solid, trimesh.Trimesh or None
        The design, µm.
    printer : Printer or None
        The job's embedded profile.
    kind : str
        'mesh', 'toolpath' or 'job'.
    folder : Path or None
        The job folder (a zip is extracted into a temporary folder that lives with this object).
    manifest : dict or None
        The job's manifest (:func:`bioslicer.jobs.read_manifest`).
    """

    name: str
    toolpath: Toolpath | None = None
    mesh: object = None
    printer: object = None
    kind: str = "mesh"
    folder: Path | None = None
    manifest: dict | None = None
    program: Path | None = None
    dialect: str | None = None
    _tmp: object = field(default=None, repr=False)

    @property
    def program_main(self) -> Path | None:
        """The main program file of a job or program source, or None."""
        if self.program is not None:
            return self.program
        if self.folder is None or not self.manifest:
            return None
        main = (self.manifest.get("program") or {}).get("main")
        return self.folder / main if isinstance(main, str) else None

    @property
    def thinning(self) -> dict:
        """``{"layer_step", "mark_step"}`` of a job's preview toolpath ({} when not thinned)."""
        if self.toolpath is None:
            return {}
        return dict((self.toolpath.meta or {}).get("preview") or {})


def load_mesh_file(path, units: str = "um"):
    """Load a mesh file in µm: ``bioslicer.mesh.load_mesh``, else (not a valid solid) trimesh as is."""
    from ..mesh import UNITS_TO_UM, load_mesh

    path = Path(path)
    if units not in UNITS_TO_UM:
        raise BioslicerError(f"unknown length unit {units!r}; use one of {', '.join(UNITS_TO_UM)}")
    try:
        return load_mesh(path, units=units)
    except BioslicerError:
        # not a valid solid (open, inverted, ...): still worth looking at, so show it as is,
        # unless the file cannot be read at all (trimesh below raises that)
        pass
    import trimesh

    try:
        m = trimesh.load(path, force="mesh")
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise BioslicerError(f"cannot read mesh {path}: {exc}; give an STL/OBJ/PLY/OFF/3MF/GLB file") from None
    if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
        raise BioslicerError(f"{path} holds no triangles; give a mesh file with faces")
    if UNITS_TO_UM[units] != 1.0:
        m.apply_scale(UNITS_TO_UM[units])
    return m


def _load_job_folder(folder: Path, units: str) -> PreviewSource:
    from ..jobs import printer_from_manifest, read_manifest

    manifest = read_manifest(folder)
    tp_rel = next((manifest[k] for k in ("toolpath", "preview_toolpath") if isinstance(manifest.get(k), str)), None)
    tp = Toolpath.load(folder / tp_rel) if tp_rel and (folder / tp_rel).is_file() else None
    mesh = None
    if (folder / "mesh.stl").is_file():
        mesh = load_mesh_file(folder / "mesh.stl", "um")      # the job's copy is in µm
    else:
        mfile = (manifest.get("mesh") or {}).get("file")
        if isinstance(mfile, str) and (folder / mfile).is_file():
            mesh = load_mesh_file(folder / mfile, (manifest.get("mesh") or {}).get("units", units))
    if mesh is not None:     # drawn with the program's commanded z (recipe focal_shift_factor)
        from ..placement import commanded_mesh

        mesh = commanded_mesh(mesh, float((manifest.get("recipe") or {}).get("focal_shift_factor", 1.0)))
    return PreviewSource(folder.resolve().name, tp, mesh, printer_from_manifest(manifest), "job", folder, manifest)


def _program_dialect(path: Path) -> str | None:
    """The text dialect whose main-file extension ``path`` has, else None."""
    from ..programs import DIALECTS
    from ..programs.dialects import load_spec

    name = path.name.lower()
    for d in DIALECTS:
        if d not in ("voxel", "waveform") and any(name.endswith(e) for e in load_spec(d).extensions):
            return d
    return None


def load_preview_source(path, units: str = "um", printer=None) -> PreviewSource:
    """Open what ``bioslicer preview`` is given: a job folder or ``.zip``, a program, a toolpath ``.npz``
    or a mesh.

    Parameters
    ----------
    path : str or Path
        A job folder (``manifest.json``, the program, ``preview_toolpath.npz``, ``mesh.stl``),
        a job ``.zip``, a program's main file (any program the readers understand: ``.gwl``,
        ``.gcode``/``.nc``/``.ngc``, ``.pgm``/``.ab``), a toolpath ``.npz`` (``Toolpath.save``)
        or a mesh file.
    units : str
        Length unit of a plain mesh file ('um', 'mm', 'nm').
    printer : Printer or str, optional
        The profile a program was written for (needed for a program; a job has its own).

    Returns
    -------
    PreviewSource
    """
    path = Path(path)
    if not path.exists():
        raise BioslicerError(f"{path} not found; give a job folder, a toolpath .npz or a mesh file")
    if path.is_dir():
        return _load_job_folder(path, units)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return PreviewSource(path.stem, Toolpath.load(path), None, None, "toolpath")
    if suffix == ".zip":
        import tempfile
        import zipfile

        tmp = tempfile.TemporaryDirectory(prefix="bioslicer-preview-")
        try:
            with zipfile.ZipFile(path) as zf:
                zf.extractall(tmp.name)
        except (zipfile.BadZipFile, OSError) as exc:
            tmp.cleanup()
            raise BioslicerError(f"cannot read {path}: {exc}; the zip is damaged, copy it again") from None
        src = _load_job_folder(Path(tmp.name), units)
        src.name = path.stem
        src._tmp = tmp
        return src
    dialect = _program_dialect(path)
    if dialect is not None:
        if printer is None:
            raise BioslicerError(f"{path.name} is a {dialect} program: say which printer it is for with --printer P")
        from ..printers import load_printer

        pr = load_printer(printer)
        return PreviewSource(path.stem, None, None, pr, "program", program=path, dialect=dialect)
    if suffix not in _MESH_SUFFIXES:
        raise BioslicerError(f"cannot preview {path.name}: give a job folder, a program, a toolpath .npz or a "
                             f"mesh ({', '.join(_MESH_SUFFIXES)})")
    return PreviewSource(path.stem, None, load_mesh_file(path, units), None, "mesh")
