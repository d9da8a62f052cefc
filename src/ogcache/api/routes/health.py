"""Operations endpoints: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from ogcache.api.deps import RuntimeDep
from ogcache.api.metrics import render_metrics
from ogcache.cache.memo import Memo
from ogcache.runtime import Runtime

router = APIRouter(tags=["operations"])

PROBE_TIMEOUT = 2.0
# Health probes answered within this many seconds share one check, so a flood of anonymous
# /healthz calls costs the database one connection per second, not one per call.
HEALTH_MAX_AGE = 1.0


async def _database_ok(runtime: Runtime) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT), runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


async def _cache_ok(runtime: Runtime) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await runtime.cache.ping()
    except Exception:
        return False
    return True


async def _check(runtime: Runtime) -> tuple[bool, bool]:
    return await asyncio.gather(_database_ok(runtime), _cache_ok(runtime))


@router.get("/healthz")
async def healthz(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """``ok``; ``degraded`` when only the cache is down (requests are served, slower);
    ``down`` (503) when the database is unreachable. At most ``HEALTH_MAX_AGE`` s old."""
    memo: Memo[tuple[bool, bool]] = request.app.state.health_checks
    (database, cache), _ = await memo.get(lambda: _check(runtime), HEALTH_MAX_AGE)
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


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, runtime: RuntimeDep) -> Response:
    """Prometheus text format: per-namespace counters, latency histograms, backend up/down."""
    request.app.state.cache_collector.up = await _cache_ok(runtime)
    return Response(
        render_metrics(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )
