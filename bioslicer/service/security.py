"""Who may talk to the service: the bind check, the token (bearer header or page session cookie)
and the loopback host check."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request
from fastapi.responses import JSONResponse

from ..errors import BioslicerError

TOKEN_COOKIE = "bioslicer_token"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost`` (the only hosts that may run without a token)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve on a non-loopback address without a token (BioslicerError)."""
    if token is not None and len(token) < 8:
        raise BioslicerError("the --token is too short; use at least 8 characters (e.g. `openssl rand -hex 16`)")
    if not is_loopback(host) and not token:
        raise BioslicerError(f"serving on {host} (not loopback) needs a token; pass --token SECRET or set "
                             "BIOSLICER_TOKEN, or serve on --host 127.0.0.1")


async def guard(request: Request, call_next):
    """HTTP middleware: the token when the service has one, else loopback host names only."""
    token = request.app.state.config.token
    if token:
        given = None
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None:
            given = request.cookies.get(TOKEN_COOKIE)
        if given is None and request.url.path == "/" and "token" in request.query_params:
            given = request.query_params["token"]
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"detail": "missing or wrong token; send 'Authorization: Bearer <token>' "
                                           "(in a browser open /?token=<token> once)"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
    else:
        # without a token only loopback names are answered (no DNS rebinding from web pages)
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not is_loopback(name):
            return JSONResponse({"detail": f"host {host!r} is not served without a token; use "
                                           "http://127.0.0.1 or start the service with --token"},
                                status_code=400)
    response = await call_next(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
