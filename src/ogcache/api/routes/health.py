"""Operations endpoints: ``/livez``, ``/readyz``, ``/healthz`` and ``/metrics``.

Liveness and readiness apart, as orchestrators probe them: ``/livez`` answers while the
process does (restart it if not); ``/readyz`` while the database does (send it traffic if so).
A Redis outage is neither: requests are served from the database, slower.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ogcache.api.deps import RuntimeDep
from ogcache.api.metrics import render_metrics
from ogcache.cache.memo import Memo
from ogcache.db.failures import check_database
from ogcache.errors import DatabaseUnreachableError
from ogcache.runtime import Runtime

router = APIRouter(tags=["operations"])

PROBE_TIMEOUT = 2.0
# Health probes answered within this many seconds share one check, so a flood of anonymous
# /healthz calls costs the database one connection per second, not one per call.
HEALTH_MAX_AGE = 1.0

# One probe of both stores: why the database failed (None: it answered), and the cache's up.
Checks = tuple[str | None, bool]


async def _database_failure(runtime: Runtime) -> str | None:
    """``None`` when ``SELECT 1`` is answered within ``PROBE_TIMEOUT``, else why, in one
    line without the password (it is shown to anyone who asks)."""
    try:
        await check_database(runtime.engine, runtime.settings.database_url, PROBE_TIMEOUT)
    except DatabaseUnreachableError as exc:
        return str(exc)
    except Exception as exc:
        return f"the database failed SELECT 1 ({type(exc).__name__})"
    return None


async def _cache_ok(runtime: Runtime) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await runtime.cache.ping()
    except Exception:
        return False
    return True


async def _check(runtime: Runtime) -> Checks:
    return await asyncio.gather(_database_failure(runtime), _cache_ok(runtime))


async def _checks(request: Request, runtime: Runtime) -> Checks:
    """The stores' state at most ``HEALTH_MAX_AGE`` s old, shared by every probe route."""
    memo: Memo[Checks] = request.app.state.health_checks
    return (await memo.get(lambda: _check(runtime), HEALTH_MAX_AGE))[0]


@router.get("/livez", summary="Liveness: the process answers (no I/O)")
async def livez() -> dict[str, str]:
    """Always ``{"status": "ok"}``: touches no store, so a database or Redis outage never
    gets a working process restarted."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers SELECT 1")
async def readyz(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """``ready``, or ``degraded`` with ``cache: down`` (still 200: served from the database);
    503 ``down`` with ``reason`` (one line) when the database does not answer."""
    failure, cache = await _checks(request, runtime)
    body: dict[str, Any] = {
        "status": "down" if failure else "ready" if cache else "degraded",
        "database": "down" if failure else "up",
        "cache": "up" if cache else "down",
    }
    if failure:
        body["reason"] = failure
    return JSONResponse(body, status_code=503 if failure else 200)


@router.get("/healthz", summary="Health of the database and the cache (the seed's probe)")
async def healthz(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """``ok``; ``degraded`` when only the cache is down (requests are served, slower);
    ``down`` (503) when the database is unreachable. At most ``HEALTH_MAX_AGE`` s old."""
    failure, cache = await _checks(request, runtime)
    database = failure is None
    status: Literal["ok", "degraded", "down"] = (
        "down" if not database else "ok" if cache else "degraded"
    )
    body: dict[str, Any] = {
        "status": status,
        "database": "ok" if database else "down",
        "cache": "ok" if cache else "down",
        "backend": runtime.cache.backend.name,
    }
    return JSONResponse(body, status_code=503 if status == "down" else 200)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus text format: per-namespace counters, latency histograms, backend up/down."""
    request.app.state.cache_collector.up = await _cache_ok(runtime)
    return Response(
        render_metrics(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )
