"""The ceiling of ``python -m bench http``: FastAPI under the service's uvicorn settings,
answering the very same response bytes from memory after checking that a bearer header is
present.

The bench captures, from the running service, each measured route's status, body, content
type and other headers (those uvicorn does not add itself), writes them to a JSON file and
starts this module in a process of its own (:class:`CeilingServer`) with the path of that file
in ``OGCACHE_BENCH_CEILING_ROUTES``. Its app (:func:`create_app_from_environment`) answers
each route with those bytes: ``401`` when the route needs a bearer token and the request has
no ``Authorization: Bearer ...`` header; the token itself is not checked. It is served by
:func:`ogcache.api.server.run`, as ``ogcache serve`` serves the API: the same ``--workers``,
HTTP protocol (the limited httptools one), header limit, log level and log configuration, from
the same ``OGCACHE_*`` settings.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from bench.resilience import AppServer

__all__ = [
    "ROUTES_VARIABLE",
    "CannedRoute",
    "CeilingServer",
    "create_app",
    "create_app_from_environment",
    "load_routes",
    "save_routes",
]

ROUTES_VARIABLE = "OGCACHE_BENCH_CEILING_ROUTES"
ROOT = Path(__file__).resolve().parent.parent  # the repository: the top-level bench package
# Headers uvicorn writes itself (or that describe this body's transfer): not replayed.
_OWN_HEADERS = frozenset({"content-length", "date", "server", "connection", "transfer-encoding"})


@dataclass(frozen=True, slots=True)
class CannedRoute:
    path: str
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]  # as the service sent them, but for _OWN_HEADERS
    needs_bearer: bool

    @classmethod
    def captured(
        cls, path: str, status: int, body: bytes, headers: list[tuple[str, str]], bearer: bool
    ) -> CannedRoute:
        kept = tuple((k.lower(), v) for k, v in headers if k.lower() not in _OWN_HEADERS)
        return cls(path, status, body, kept, bearer)

    def comparable(self) -> tuple[object, ...]:
        """What the ceiling must answer as the service did (headers in any order)."""
        return (self.path, self.status, self.body, sorted(self.headers), self.needs_bearer)

    @property
    def content_type(self) -> str | None:
        return next((v for k, v in self.headers if k == "content-type"), None)


def save_routes(routes: list[CannedRoute], path: Path) -> None:
    document = [
        {
            "path": r.path,
            "status": r.status,
            "body": base64.b64encode(r.body).decode(),
            "headers": [list(pair) for pair in r.headers],
            "needs_bearer": r.needs_bearer,
        }
        for r in routes
    ]
    path.write_text(json.dumps(document))


def load_routes(path: Path) -> list[CannedRoute]:
    return [
        CannedRoute(
            path=item["path"],
            status=item["status"],
            body=base64.b64decode(item["body"]),
            headers=tuple((k, v) for k, v in item["headers"]),
            needs_bearer=item["needs_bearer"],
        )
        for item in json.loads(path.read_text())
    ]


_UNAUTHORIZED = Response(b'{"detail":"Not authenticated"}', 401, media_type="application/json")


def _has_bearer(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _endpoint(route: CannedRoute) -> Any:
    headers = dict(route.headers)

    async def answer(request: Request) -> Response:
        if route.needs_bearer and not _has_bearer(request):
            return _UNAUTHORIZED
        return Response(route.body, route.status, headers=headers)

    return answer


def create_app(routes: list[CannedRoute]) -> FastAPI:
    """An app answering ``GET`` on each route's path with its bytes, nothing else."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for route in routes:
        app.add_api_route(route.path, _endpoint(route), methods=["GET"])
    return app


def create_app_from_environment() -> FastAPI:
    """The factory uvicorn loads (in each worker): the routes of the file the environment
    names (``OGCACHE_BENCH_CEILING_ROUTES``)."""
    return create_app(load_routes(Path(os.environ[ROUTES_VARIABLE])))


class CeilingServer(AppServer):
    """This module's server on a free loopback port, started and stopped as the service is;
    ``settings`` as the service's (the ``OGCACHE_*`` variables), plus the routes file."""

    def __init__(
        self, settings: dict[str, Any], routes_file: Path, log_path: Path, workers: int = 1
    ) -> None:
        super().__init__({**settings, "bench_ceiling_routes": routes_file}, log_path, workers)

    def argv(self) -> list[str]:
        start = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.ceiling import main; main()"
        )
        return [
            sys.executable, "-c", start,
            "--port", str(self.port), "--workers", str(self.workers),
        ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Serve the ceiling as ``ogcache serve`` serves the API (settings from the environment)."""
    parser = argparse.ArgumentParser(prog="bench.ceiling")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    from ogcache.api.server import run
    from ogcache.config import load_settings
    from ogcache.log import configure_logging

    settings = load_settings(_env_file=None)
    configure_logging(settings)
    run(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        app="bench.ceiling:create_app_from_environment",
    )


if __name__ == "__main__":
    main()
