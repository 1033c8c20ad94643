"""The one exception type for errors a user can cause and fix."""


class BioslicerError(Exception):
    """A user error: bad input, impossible parameters, a program over the limits.

    The message is one line that says what is wrong and how to fix it. The CLI prints it
    as ``error: <message>`` and exits 1; the service answers it with HTTP 4xx. Anything else
    raised inside bioslicer is a bug and keeps its traceback.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every cleanup that runs for Ctrl-C runs for it too."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``str(exc)``, or the exception's type name (never fails)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def environment_error(exc: BaseException) -> str | None:
    """One line for a failure caused by the machine rather than the input or a bug (disk full,
    a file size limit, out of memory, Ctrl-C or SIGTERM), else None.

    Looks through the chain of causes, since some wrappers (Numba's dispatcher interrupted by
    a signal raises ``SystemError`` from the ``KeyboardInterrupt``) hide the real cause.
    """
    import errno

    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, Terminated):
            return "terminated (SIGTERM); nothing was written"
        if isinstance(e, KeyboardInterrupt):
            return "interrupted; nothing was written"
        if isinstance(e, MemoryError):
            what = first_line(e)
            what = "" if what == "MemoryError" else f" ({what})"
            return (f"out of memory{what}; use a coarser recipe (larger hatch_um, slice_um), a smaller "
                    "block_size_um or a machine with more memory")
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
            where = f" writing {e.filename}" if e.filename else ""
            if e.errno == errno.EFBIG:
                return (f"file too large{where}: the file size limit (ulimit -f) or the file system's was reached; "
                        "raise the limit or write the job elsewhere (-o); nothing was written")
            if e.errno == errno.EROFS:
                return f"read-only file system{where}; write the job elsewhere (-o)"
            return (f"no space left on the device{where}; free some space or write the job elsewhere (-o); "
                    "nothing was written")
        e = e.__cause__ or e.__context__
    return None
