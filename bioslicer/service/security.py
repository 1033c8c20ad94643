"""Who may talk to the service: the bind check, the token (bearer header or page session cookie)
and the loopback host check."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from urllib.parse import urlsplit

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


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "x-csrf-token"
_TOKEN_QUERY = re.compile(r"([?&](?:token|access_token)=)[^&\s\"']*", re.IGNORECASE)


def session_value(token: str) -> str:
    """The page's session cookie value: derived from the token (HMAC-SHA256), never the token."""
    return hmac.new(token.encode(), b"bioslicer-session-cookie/1", hashlib.sha256).hexdigest()


def csrf_value(secret: bytes) -> str:
    """The CSRF token the web page sends with its state-changing requests (``X-CSRF-Token``)."""
    return hmac.new(secret, b"bioslicer-csrf/1", hashlib.sha256).hexdigest()


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` / ``access_token=`` query parameter replaced."""
    return _TOKEN_QUERY.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Logging filter: no query token reaches a log line (uvicorn's access log shows the URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_log_redaction() -> RedactTokens:
    """Add :class:`RedactTokens` to uvicorn's loggers (access and error) and to the root logger's
    handlers; returns the filter (see :func:`remove_log_redaction`)."""
    f = RedactTokens()
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn", ""):
        logging.getLogger(name).addFilter(f)
        for h in logging.getLogger(name).handlers:
            h.addFilter(f)
    return f


def remove_log_redaction(f: RedactTokens) -> None:
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn", ""):
        logging.getLogger(name).removeFilter(f)
        for h in logging.getLogger(name).handlers:
            h.removeFilter(f)


def _same_origin(value: str, host: str) -> bool:
    """True when the Origin / Referer ``value`` names this service (its host:port is ``host``)."""
    try:
        u = urlsplit(value)
    except ValueError:
        return False
    return u.scheme in ("http", "https") and bool(host) and u.netloc.lower() == host.lower()


def _refuse(status: int, detail: str, **headers) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


async def guard(request: Request, call_next):
    """HTTP middleware: who may ask what.

    * with a token: ``Authorization: Bearer <token>`` or the page's session cookie (derived from
      the token); ``/?token=<token>`` only sets that cookie;
    * without a token: loopback host names only (no DNS rebinding);
    * state-changing requests (POST, PUT, PATCH, DELETE) from a browser (they carry Origin,
      Referer or a cookie) must come from the service's own origin and carry the bearer header
      or the page's CSRF token (``X-CSRF-Token``); a cross-site write is refused (403).
    """
    cfg = request.app.state.config
    token = cfg.token
    host = request.headers.get("host", "")
    bearer = None
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        bearer = auth[7:].strip()
    if token:
        ok = bearer is not None and hmac.compare_digest(bearer.encode(), token.encode())
        cookie = request.cookies.get(TOKEN_COOKIE)
        if not ok and bearer is None and cookie is not None:
            ok = hmac.compare_digest(cookie.encode(), session_value(token).encode())
        if not ok and bearer is None and request.url.path == "/" and "token" in request.query_params:
            ok = hmac.compare_digest(request.query_params["token"].encode(), token.encode())
        if not ok:
            return _refuse(401, "missing or wrong token; send 'Authorization: Bearer <token>' "
                                "(in a browser open /?token=<token> once)", **{"WWW-Authenticate": "Bearer"})
    else:
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not is_loopback(name):
            return _refuse(400, f"host {host!r} is not served without a token; use "
                                "http://127.0.0.1 or start the service with --token")
    if request.method in UNSAFE_METHODS:
        origin = request.headers.get("origin")
        referer = request.headers.get("referer")
        browser = origin is not None or referer is not None or "cookie" in request.headers
        if origin is not None and not _same_origin(origin, host):
            return _refuse(403, "cross-site request refused: its Origin is not this service")
        if origin is None and referer is not None and not _same_origin(referer, host):
            return _refuse(403, "cross-site request refused: its Referer is not this service")
        if browser and bearer is None:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), csrf_value(cfg.csrf_secret).encode()):
                return _refuse(403, "missing or wrong CSRF token; use the service's web page, or send "
                                    "'Authorization: Bearer <token>' from scripts")
    response = await call_next(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
