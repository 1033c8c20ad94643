"""The web page (``GET /``): one static HTML file; the token login by URL."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..security import TOKEN_COOKIE
from . import service

_STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page(request: Request):
    token = service(request).config.token
    if token and "token" in request.query_params:
        # the token arrived in the URL once: keep it in a cookie and drop it from the address bar
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        return resp
    html = (_STATIC / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Cache-Control": "no-store",
                                       "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})
