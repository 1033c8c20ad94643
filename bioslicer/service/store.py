"""The job table of the service: SQLite in ``DIR/jobs.sqlite3`` through the standard library.

Every process (the web service and each worker) opens its own :class:`JobStore`. State changes
are single SQL statements guarded by the current status (``UPDATE ... WHERE status = 'queued'``),
so two workers never claim the same job and a worker that lost its claim (the job was re-queued
after a restart, or cancelled) cannot overwrite the newer state: every write from a worker
carries the claim token it got with the job.

Statuses: ``queued`` -> ``slicing`` -> ``done`` | ``failed`` | ``cancelled``; a queued job can be
cancelled directly. Times are Unix seconds (``*_s``) in the table and ISO 8601 UTC in the API.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from ..errors import BioslicerError

#: marker file of the service's temporary folders (the only ones start-up removes)
TEMP_MARK = ".bioslicer-temp"
STATUSES = ("queued", "slicing", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    seq              INTEGER NOT NULL,
    owner            TEXT NOT NULL,
    label            TEXT NOT NULL,
    kind             TEXT NOT NULL,
    input_name       TEXT NOT NULL,
    input_bytes      INTEGER NOT NULL,
    printer          TEXT NOT NULL,
    units            TEXT NOT NULL,
    repair           INTEGER NOT NULL,
    params           TEXT NOT NULL,
    status           TEXT NOT NULL,
    stage            TEXT NOT NULL DEFAULT '',
    done             INTEGER NOT NULL DEFAULT 0,
    total            INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    note             TEXT,
    summary          TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    claim            TEXT,
    worker_pid       INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_s         REAL,
    created_s        REAL NOT NULL,
    started_s        REAL,
    finished_s       REAL,
    updated_s        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
"""


def iso(t_s: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC with seconds (``2025-01-31T12:00:00Z``), None stays None."""
    if t_s is None:
        return None
    return datetime.fromtimestamp(t_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_job_id() -> str:
    """A fresh job id: 12 lowercase hex digits (never derived from user input)."""
    return secrets.token_hex(6)


def is_job_id(s: str) -> bool:
    """True when ``s`` has the shape of a job id (so it is safe as a file name)."""
    return len(s) == 12 and all(c in "0123456789abcdef" for c in s)


class JobStore:
    """The job table. One instance per process; cheap to create.

    Parameters
    ----------
    path : path
        The SQLite file (created with its table when missing).
    """

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout=30000")
            ok = self._db.execute("PRAGMA quick_check").fetchone()
            if ok is None or ok[0] != "ok":
                raise sqlite3.DatabaseError(ok[0] if ok else "quick_check gave no answer")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            cols = {r[1] for r in self._x("PRAGMA table_info(jobs)").fetchall()}
            if "summary" not in cols:  # a table made by an earlier version
                self._x("ALTER TABLE jobs ADD COLUMN summary TEXT")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise BioslicerError(f"the job table {self.path} is damaged ({exc}); restore it from a backup, or move "
                                 "it aside to start with an empty table (finished jobs are then re-adopted from "
                                 "their manifests); nothing was changed") from None

    def close(self) -> None:
        self._db.close()

    def _x(self, sql: str, args=()) -> sqlite3.Cursor:
        return self._db.execute(sql, args)

    # ------------------------------------------------------------------ create / read
    def add(self, job_id: str, *, owner: str, label: str, kind: str, input_name: str, input_bytes: int,
            printer: str, units: str = "um", repair: bool = False, params: dict | None = None,
            status: str = "queued") -> dict:
        """Insert a job (its input file must already be in place) and return it."""
        now = time.time()
        self._x("BEGIN IMMEDIATE")
        try:
            seq = self._x("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            self._x(
                "INSERT INTO jobs (id, seq, owner, label, kind, input_name, input_bytes, printer, units, repair,"
                " params, status, created_s, updated_s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, seq, owner, label, kind, input_name, int(input_bytes), printer, units, int(bool(repair)),
                 json.dumps(params or {}, sort_keys=True), status, now, now))
            self._x("COMMIT")
        except BaseException:
            self._x("ROLLBACK")
            raise
        return self.get(job_id)

    def adopt(self, job_id: str, *, label: str, kind: str, input_name: str, input_bytes: int, printer: str,
              units: str, summary: dict, note: str, finished_s: float) -> dict:
        """Enter a finished job found on disk without a row (its table was lost) as 'done'."""
        self.add(job_id, owner="restored", label=label, kind=kind, input_name=input_name, input_bytes=input_bytes,
                 printer=printer, units=units, status="done")
        self._x("UPDATE jobs SET summary = ?, note = ?, stage = 'done', created_s = ?, finished_s = ?"
                " WHERE id = ?", (json.dumps(summary, sort_keys=True), note, finished_s, finished_s, job_id))
        return self.get(job_id)

    def get(self, job_id: str) -> dict | None:
        """One job as a dict of its columns (``params`` decoded), or None."""
        row = self._x("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _row(row)

    def list(self, status: str | None = None, owner: str | None = None, limit: int = 200) -> list[dict]:
        """Jobs, newest first, optionally filtered by status and owner."""
        sql, args = "SELECT * FROM jobs", []
        where = []
        if status:
            where.append("status = ?")
            args.append(status)
        if owner:
            where.append("owner = ?")
            args.append(owner)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(int(limit))
        return [_row(r) for r in self._x(sql, args).fetchall()]

    def ids(self) -> set[str]:
        return {r[0] for r in self._x("SELECT id FROM jobs").fetchall()}

    # ------------------------------------------------------------------ worker side
    def claim_next(self, worker_pid: int) -> dict | None:
        """Atomically take the oldest queued job: status -> slicing, with a fresh claim token.

        Returns the job (with its ``claim``) or None when nothing is queued.
        """
        token = secrets.token_hex(8)
        now = time.time()
        row = self._x(
            "UPDATE jobs SET status = 'slicing', claim = ?, worker_pid = ?, attempts = attempts + 1,"
            " started_s = ?, updated_s = ?, done = 0, total = 0, stage = 'starting', error = NULL"
            " WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1)"
            " AND status = 'queued' RETURNING id",
            (token, worker_pid, now, now)).fetchone()
        return None if row is None else self.get(row[0])

    def progress(self, job_id: str, claim: str, done: int, total: int, stage: str) -> bool:
        """Store progress of a claimed job; False when the claim is no longer valid."""
        cur = self._x(
            "UPDATE jobs SET done = ?, total = ?, stage = ?, updated_s = ?"
            " WHERE id = ? AND claim = ? AND status = 'slicing'",
            (int(done), int(total), str(stage)[:80], time.time(), job_id, claim))
        return cur.rowcount == 1

    def set_printer(self, job_id: str, claim: str, printer: str) -> bool:
        """Record the printer of a claimed job (a bundle names it in its manifest)."""
        cur = self._x("UPDATE jobs SET printer = ? WHERE id = ? AND claim = ?", (str(printer)[:100], job_id, claim))
        return cur.rowcount == 1

    def should_stop(self, job_id: str, claim: str) -> bool:
        """True when the claimed job was cancelled, deleted or taken away (re-queued)."""
        row = self._x("SELECT status, claim, cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is None or row["claim"] != claim or row["status"] != "slicing" or bool(row["cancel_requested"])

    def finish(self, job_id: str, claim: str, status: str, error: str | None = None,
               summary: dict | None = None) -> bool:
        """End a claimed job as done, failed or cancelled (with a short ``summary`` of a done job);
        False when the claim was lost."""
        assert status in FINAL
        now = time.time()
        cur = self._x(
            "UPDATE jobs SET status = ?, error = ?, finished_s = ?, updated_s = ?, claim = NULL,"
            " worker_pid = NULL, stage = ?, done = CASE WHEN ? = 'done' THEN MAX(total, done) ELSE done END,"
            " summary = ? WHERE id = ? AND claim = ? AND status = 'slicing'",
            (status, error, now, now, status, status, None if summary is None else json.dumps(summary, sort_keys=True),
             job_id, claim))
        return cur.rowcount == 1

    # ------------------------------------------------------------------ service side
    def cancel(self, job_id: str) -> str | None:
        """Cancel a job: a queued one at once, a slicing one by flagging it for its worker.

        Returns the status after the call ('cancelled', or 'slicing' when flagged), or None when
        the job does not exist. A job already finished keeps its status (returned as is).
        """
        now = time.time()
        self._x("UPDATE jobs SET status = 'cancelled', finished_s = ?, updated_s = ?, stage = 'cancelled'"
                " WHERE id = ? AND status = 'queued'", (now, now, job_id))
        self._x("UPDATE jobs SET cancel_requested = 1, cancel_s = ?, updated_s = ?"
                " WHERE id = ? AND status = 'slicing' AND cancel_requested = 0", (now, now, job_id))
        job = self.get(job_id)
        return None if job is None else job["status"]

    def force_end(self, job_id: str, status: str, error: str | None = None, worker_pid: int | None = None) -> bool:
        """End a slicing job from the service side (its worker was stopped or died)."""
        now = time.time()
        sql = ("UPDATE jobs SET status = ?, error = ?, finished_s = ?, updated_s = ?, claim = NULL, worker_pid = NULL,"
               " stage = ? WHERE id = ? AND status = 'slicing'")
        args = [status, error, now, now, status, job_id]
        if worker_pid is not None:
            sql += " AND worker_pid = ?"
            args.append(worker_pid)
        return self._x(sql, args).rowcount == 1

    def requeue(self, job_id: str, note: str, worker_pid: int | None = None) -> bool:
        """Put a slicing job back in the queue (its progress is reset), with a note saying why."""
        sql = ("UPDATE jobs SET status = 'queued', claim = NULL, worker_pid = NULL, done = 0, total = 0,"
               " stage = 'requeued', note = ?, started_s = NULL, updated_s = ? WHERE id = ? AND status = 'slicing'")
        args = [note, time.time(), job_id]
        if worker_pid is not None:
            sql += " AND worker_pid = ?"
            args.append(worker_pid)
        return self._x(sql, args).rowcount == 1

    def requeue_interrupted(self) -> list[str]:
        """At start-up: every job left 'slicing' by a previous run goes back to the queue.

        A job whose cancellation was requested before the stop becomes 'cancelled' instead.
        Returns the ids re-queued.
        """
        now = time.time()
        self._x("BEGIN IMMEDIATE")
        try:
            self._x("UPDATE jobs SET status = 'cancelled', claim = NULL, worker_pid = NULL, finished_s = ?,"
                    " updated_s = ?, stage = 'cancelled' WHERE status = 'slicing' AND cancel_requested = 1", (now, now))
            ids = [r[0] for r in self._x("SELECT id FROM jobs WHERE status = 'slicing' ORDER BY seq").fetchall()]
            self._x("UPDATE jobs SET status = 'queued', claim = NULL, worker_pid = NULL, done = 0, total = 0,"
                    " stage = 'requeued', started_s = NULL, updated_s = ?,"
                    " note = 'interrupted by a service restart at ' || ? || '; re-queued'"
                    " WHERE status = 'slicing'", (now, iso(now)))
            self._x("COMMIT")
        except BaseException:
            self._x("ROLLBACK")
            raise
        return ids

    def delete(self, job_id: str) -> str | None:
        """Delete a job that is not slicing. Returns None when deleted, else the blocking status
        ('slicing') or 'missing'."""
        cur = self._x("DELETE FROM jobs WHERE id = ? AND status != 'slicing'", (job_id,))
        if cur.rowcount == 1:
            return None
        job = self.get(job_id)
        return "missing" if job is None else job["status"]

    def slicing(self) -> list[dict]:
        """Jobs being sliced now."""
        return [_row(r) for r in self._x("SELECT * FROM jobs WHERE status = 'slicing' ORDER BY seq").fetchall()]

    def counts(self) -> dict:
        """Number of jobs per status (every status present, zero when none)."""
        out = {s: 0 for s in STATUSES}
        for r in self._x("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall():
            out[r[0]] = r[1]
        return out


def _row(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    d["summary"] = None if d.get("summary") is None else json.loads(d["summary"])
    d["repair"] = bool(d["repair"])
    d["cancel_requested"] = bool(d["cancel_requested"])
    return d


class Layout:
    """Where the service keeps things under its data folder ``DIR``.

    ``DIR/jobs.sqlite3`` the table; ``DIR/uploads/<id>/input.<ext>`` the stored upload;
    ``DIR/jobs/<id>/`` the finished job folder and ``DIR/jobs/<id>.zip`` its bundle;
    ``DIR/incoming/upload-*/`` uploads being received; ``DIR/work/<id>.<claim>/`` a job being sliced;
    ``DIR/orphans/<time>/`` what start-up found without a row and could not re-adopt.
    Every name on disk is generated (job ids, fixed names); a user's file name is only a label.
    The service's temporary folders (in ``incoming/`` and ``work/``) hold the marker file
    :data:`TEMP_MARK`, written before any work starts: start-up removes only those.
    """

    def __init__(self, data_dir) -> None:
        self.root = Path(data_dir).resolve()
        self.db = self.root / "jobs.sqlite3"
        self.uploads = self.root / "uploads"
        self.incoming = self.root / "incoming"
        self.jobs = self.root / "jobs"
        self.work = self.root / "work"
        self.orphans = self.root / "orphans"

    def make(self) -> "Layout":
        for d in (self.root, self.uploads, self.incoming, self.jobs, self.work):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def upload_dir(self, job_id: str) -> Path:
        return self.uploads / _checked(job_id)

    def job_dir(self, job_id: str) -> Path:
        return self.jobs / _checked(job_id)

    def job_zip(self, job_id: str) -> Path:
        return self.jobs / f"{_checked(job_id)}.zip"

    def make_temp_dir(self, path: Path) -> Path:
        """Create the temporary folder ``path`` (inside ``incoming/`` or ``work/``) holding the
        service's marker, so that start-up may remove it; refused if ``path`` exists."""
        new = path.with_name(f".{path.name}.new-{secrets.token_hex(4)}")
        new.mkdir(parents=True)
        (new / TEMP_MARK).write_text("bioslicer service temporary work; removed at start-up\n")
        os.rename(new, path)  # the folder appears with its marker, never without
        return path

    def work_dir(self, job_id: str, claim: str) -> Path:
        """Scratch folder of one attempt (one claim), so that a worker left over from a previous
        run can never touch the folder of the attempt that replaced it."""
        if not claim.isalnum():
            raise ValueError(f"not a claim token: {claim!r}")
        return self.work / f"{_checked(job_id)}.{claim}"

    def remove_work(self, job_id: str) -> None:
        """Remove the scratch folders of every attempt of a job."""
        import shutil

        for p in self.work.glob(f"{_checked(job_id)}.*"):
            shutil.rmtree(p, ignore_errors=True)


def _checked(job_id: str) -> str:
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id
