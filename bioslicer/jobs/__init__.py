"""Print jobs: the complete, checked, traceable folder that reaches the printer.

A *job* is a folder (optionally also a ``.zip`` of the same files) holding everything an
operator needs: the program file(s) in the printer's dialect, ``manifest.json``,
``report.txt`` (the same facts for people), ``preview.png`` and whatever else the pipeline
puts in (``toolpath.npz``, ``recipe.toml``, a mesh copy).

Life of a job
-------------
* :class:`JobWriter` creates a hidden sibling folder ``.<name>.partial-<random>``; the
  pipeline writes the job's files into ``JobWriter.path``; :meth:`JobWriter.commit` hashes
  every file, writes ``report.txt`` and then ``manifest.json`` (last, so a folder with a
  manifest is always complete), fsyncs, and renames the folder to its final name. An
  exception (crash, Ctrl-C, disk full) before that removes the temporary folder; a hard kill
  leaves only a hidden ``.partial-`` folder, which :func:`read_manifest` refuses.
* :func:`verify_job` re-checks every hash, missing and unexpected files, and re-validates the
  main program against the embedded printer profile or a named one.
* :func:`submit_job` copies a verified job into a spool folder under a hidden temporary name,
  fsyncs, verifies the copy and renames it into place.

Manifest schema, ``format = "bioslicer-job/1"`` (JSON, sorted keys, indent 2, no timestamps,
so the same inputs give byte-identical jobs; units as the key names say)::

    format      "bioslicer-job/1"
    software    {name: "bioslicer", version: str}
    mesh        {file: str (name of the input mesh file), sha256: str (64 hex),
                 units: str (length unit of the file), bounds_um: [[x,y,z],[x,y,z]],
                 report: dict | null (the mesh inspection report)}
    printer     dict: the full Printer.to_dict() of the profile used (embedded copy)
    recipe      dict: every slicing parameter
    program     {dialect: str, main: str (relative POSIX path), files: [str, ...] (all program
                 files, main included, relative POSIX paths)}
    counts      {layers, blocks, marks, segments, points, dropped_segments: int,
                 mark_length_um, jump_length_um: float}
    bounds_um   [[xmin, ymin, zmin], [xmax, ymax, zmax]] of the toolpath, µm
    estimate    {total_s: float, per_block_s: [float] (one per block), breakdown: dict}
    validation  {ok: bool, n_moves: int, violations: [...]} (the check made at slice time)
    preview     "preview.png" or null
    files       {relative POSIX path: sha256 hex} of every file in the job except
                manifest.json itself (report.txt included), added by JobWriter.commit

Other keys (``plan``, ``ordering``, ``toolpath``, ...) are allowed and kept; a string value
of ``toolpath`` or ``preview`` must name a file of the job. Any string naming a path inside the
temporary folder (e.g. a validation report's ``path``) is stored relative to the job folder.
"""

from ._files import PARTIAL_MARK, is_partial, sha256_file
from .manifest import (JOB_FORMAT, MANIFEST_NAME, MANIFEST_SCHEMA, REPORT_NAME, check_manifest, manifest_bytes,
                       printer_from_manifest, read_manifest)
from .report import RECIPE_HIGHLIGHTS, format_hms, job_summary
from .submit import SubmitResult, submit_job
from .verify import VerifyReport, verify_job
from .writer import JobWriter, write_job_zip

__all__ = ["JOB_FORMAT", "MANIFEST_NAME", "MANIFEST_SCHEMA", "PARTIAL_MARK", "RECIPE_HIGHLIGHTS", "REPORT_NAME",
           "JobWriter", "SubmitResult", "VerifyReport", "check_manifest", "format_hms", "is_partial", "job_summary",
           "manifest_bytes", "printer_from_manifest", "read_manifest", "sha256_file", "submit_job", "verify_job",
           "write_job_zip"]
