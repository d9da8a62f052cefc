"""The built-in dashboard: ``GET /dashboard``, for operators without Grafana.

One HTML page, one script and one style sheet, shipped in the package (``ogcache/api/static``)
and served from it: nothing is fetched from the internet, nothing is built. The page polls
``GET /api/cache`` every 2 s (with the admin token when the operator entered one, kept in the
browser's ``sessionStorage``), keeps the last 5 minutes and draws them on ``<canvas>``; its
admin buttons ``POST /api/cache`` with that token. The responses carry a strict
``Content-Security-Policy``: scripts, styles and requests from this origin only, no inline code.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Final

from fastapi import APIRouter
from fastapi.responses import Response

__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "router"]

router = APIRouter(tags=["dashboard"], include_in_schema=False)

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

# File name in ogcache/api/static -> media type. Only these are served (no path from the URL).
ASSETS: Final = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}

_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return files("ogcache.api").joinpath("static", name).read_bytes()


def _asset(name: str) -> Response:
    return Response(_read(name), media_type=ASSETS[name], headers=_HEADERS)


@router.get("/dashboard")
async def dashboard() -> Response:
    """The page; its script and style sheet are the two routes below (relative links)."""
    return _asset("dashboard.html")


@router.get("/dashboard/dashboard.js")
async def dashboard_script() -> Response:
    return _asset("dashboard.js")


@router.get("/dashboard/dashboard.css")
async def dashboard_style() -> Response:
    return _asset("dashboard.css")
