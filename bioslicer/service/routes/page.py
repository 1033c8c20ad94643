"""The web page (``GET /``): one static HTML file; the token login by URL."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..security import TOKEN_COOKIE, csrf_value, session_value
from . import service

_STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page(request: Request):
    token = service(request).config.token
    if token and "token" in request.query_params:
        # the token arrived in the URL once: keep it in a cookie and drop it from the address bar
        # (a session value derived from it, never the token itself; the log never shows the query)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(TOKEN_COOKIE, session_value(token), httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
        return resp
    html = (_STATIC / "index.html").read_text(encoding="utf-8")
    html = html.replace("__CSRF_TOKEN__", csrf_value(service(request).config.csrf_secret))
    return HTMLResponse(html, headers={"Cache-Control": "no-store",
                                       "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})
