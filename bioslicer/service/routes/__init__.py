"""The service's routes, one module per group: the web page, printers (and health), jobs.

Each module has a ``router`` (a FastAPI ``APIRouter``); the handlers reach the running service
through :func:`service` (the :class:`ServiceState` that ``create_app`` puts on ``app.state``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request


@dataclass
class ServiceState:
    """What the handlers of one service instance share (set up by the app's lifespan)."""

    config: object
    layout: object
    store: object = None
    pool: object = None
    estimator: object = None   # estimator.Estimator (POST /api/estimate)


def service(request: Request) -> ServiceState:
    """The running service of the app that received ``request``."""
    return request.app.state.service
