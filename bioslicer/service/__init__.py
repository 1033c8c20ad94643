"""The job service for printer operators: upload, queue, slice, download (``bioslicer serve``).

* :mod:`.app` - the FastAPI app (:func:`create_app`, :func:`run_server`) and its web page;
* :mod:`.store` - the SQLite job table (:class:`JobStore`) and the data folder layout;
* :mod:`.worker` - worker processes that claim queued jobs and slice them.

Importing this package does not import FastAPI; the app module does.
"""

from .store import STATUSES, JobStore, Layout  # noqa: F401


def create_app(*args, **kwargs):
    """See :func:`bioslicer.service.app.create_app`."""
    from .app import create_app as _create_app

    return _create_app(*args, **kwargs)
