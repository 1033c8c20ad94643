"""`bioslicer serve`: the job service (web page + HTTP API) for printer operators."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback requires --token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--data", "data_dir", default="bioslicer-data", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding the job table (jobs.sqlite3), uploads and finished jobs.")
@click.option("--token", envvar="BIOSLICER_TOKEN", default=None,
              help="Shared secret every request must carry (Authorization: Bearer TOKEN); "
                   "also read from BIOSLICER_TOKEN.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes slicing jobs in parallel.")
@click.option("--max-upload-mb", default=200.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Largest accepted upload, MB.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="Server log detail.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Send slicing to a running Dask scheduler (tcp://HOST:PORT); blocks become tasks. "
                   "The --data folder must be on storage the Dask workers see.")
def serve(host, port, data_dir, token, workers, max_upload_mb, log_level, scheduler):
    """Run the job service: a web page and an HTTP API to upload, slice and collect jobs.

    Operators open the printed URL, upload a mesh (STL/OBJ/PLY/3MF) or a ready job bundle (.zip),
    pick the printer and the parameters and download the checked job. The API is described at
    /docs (OpenAPI at /openapi.json). Jobs and files live in --data and survive restarts.

    \b
    Examples:
      bioslicer serve
      bioslicer serve --data /srv/bioslicer --workers 2
      bioslicer serve --data /shared/bioslicer --scheduler tcp://head-node:8786
      BIOSLICER_TOKEN=$(openssl rand -hex 16) bioslicer serve --host 0.0.0.0 --port 8080
      curl -F file=@part.stl -F printer=nanoscribe-gt2-25x -F hatch_um=0.3 http://127.0.0.1:8000/api/jobs
    """
    from ..service.app import run_server

    client_spec = None
    if scheduler:
        import functools

        from ..cluster import check_scheduler, connect_scheduler

        check_scheduler(scheduler)
        client_spec = functools.partial(connect_scheduler, scheduler)
    run_server(data_dir, host=host, port=port, token=token, workers=workers, max_upload_mb=max_upload_mb,
               log_level=log_level, client_spec=client_spec)
