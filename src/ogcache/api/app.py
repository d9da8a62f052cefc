"""The FastAPI application: routes, error handling, start-up and the background refresh.

On start-up the migrations are applied (``OGCACHE_AUTO_MIGRATE``), demo data is seeded if
asked (``OGCACHE_SEED_DEMO_DATA``), and a background task warms the critical caches (menu,
analytics) without delaying readiness, then refreshes them every ``OGCACHE_REFRESH_INTERVAL``
seconds so they are reloaded before they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ogcache import __version__
from ogcache.api.change_metrics import ChangeCollector
from ogcache.api.errors import (
    BodySizeLimit,
    ErrorResponse,
    install_handlers,
    internal_error_response,
)
from ogcache.api.hot_reads import HotReads
from ogcache.api.http_metrics import HttpCollector, HttpMetrics, HttpStats
from ogcache.api.links import add_links
from ogcache.api.metrics import CacheCollector
from ogcache.api.request_id import RequestId
from ogcache.api.routes import (
    analytics,
    auth,
    cache,
    conversations,
    dashboard,
    health,
    menu,
    profiles,
    sessions,
)
from ogcache.api.worker_stats import DIRECTORY_VARIABLE, WorkerRegistry, publish_forever
from ogcache.cache.memo import Memo
from ogcache.config import Settings, load_settings
from ogcache.db.failures import bound_connect_time, check_database, explained_failures
from ogcache.db.seed import seed_demo_data
from ogcache.errors import ConfigurationError, OgcacheError
from ogcache.log import configure_logging
from ogcache.runtime import Runtime

__all__ = ["create_app", "refresh_forever"]

logger = logging.getLogger("ogcache.api")

_ERRORS = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Invalid input"),
        (401, "Missing or invalid bearer token"),
        (403, "Not allowed for this caller"),
        (404, "Not found"),
        (409, "Conflict with stored data"),
        (413, "Request body too large"),
        (422, "Request validation failed"),
        (500, "Internal error; the body names the request id to look up in the server log"),
    )
}


async def refresh_forever(runtime: Runtime, interval: float) -> None:
    """Warm the critical caches now, then again every ``interval`` seconds (0: only once)."""
    while True:
        try:
            report = await runtime.warmup.warm_critical()
            logger.info("warmed %d cache entries: %s", len(report), ", ".join(report.warmed))
        except Exception as exc:  # the refresh must outlive a database or cache hiccup
            logger.warning("cache warm-up failed, will retry: %s", exc)
        if interval <= 0:
            return
        await asyncio.sleep(interval)


async def prepare(runtime: Runtime) -> None:
    """Migrate and seed as the settings say; a failure says how to fix it, in one line (a
    database that cannot be reached: which, where and why, within its connect timeout)."""
    settings = runtime.settings
    timeout = settings.database_connect_timeout
    bound_connect_time(runtime.engine, timeout)
    if settings.auto_migrate or settings.seed_demo_data:
        await check_database(runtime.engine, settings.database_url, timeout)
    with explained_failures(settings.database_url, timeout):
        await _migrate_and_seed(runtime)


async def _migrate_and_seed(runtime: Runtime) -> None:
    settings = runtime.settings
    if settings.auto_migrate:
        try:
            await runtime.migrate()
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigurationError(
                f"cannot migrate the database ({type(exc).__name__}: {reason}); check "
                "OGCACHE_DATABASE_URL, or run `ogcache db upgrade` yourself and start with "
                "OGCACHE_AUTO_MIGRATE=false"
            ) from exc
    await runtime.check_cache()
    if settings.seed_demo_data:
        report = await seed_demo_data(runtime.db)
        logger.info("demo data added: %s", report)
    shortest = min(settings.ttl_menu, settings.ttl_analytics)
    if settings.refresh_interval >= shortest:
        logger.warning(
            "OGCACHE_REFRESH_INTERVAL (%ss) is not shorter than the menu/analytics TTL (%ss): "
            "those entries will expire before they are refreshed",
            settings.refresh_interval,
            shortest,
        )


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """The application. Give ``runtime`` to share one you manage (tests); otherwise the app
    opens its own from ``settings`` (default: the environment) at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        active = runtime or Runtime.open(settings or load_settings())
        refresher: asyncio.Task[None] | None = None
        publisher: asyncio.Task[None] | None = None
        try:
            if owned:
                try:
                    await prepare(active)
                except OgcacheError as exc:  # one line for the operator: see BriefStartupFailure
                    app.state.startup_failure = str(exc)
                    raise
            app.state.runtime = active
            _install_metrics(app, active)
            if isinstance(app.state.metrics_registry, WorkerRegistry):
                publisher = asyncio.create_task(publish_forever(app.state.metrics_registry))
            if owned:
                active.changes.start()
                refresher = asyncio.create_task(
                    refresh_forever(active, active.settings.refresh_interval)
                )
            yield
        finally:
            for task in (refresher, publisher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if owned:
                await active.close()

    app = FastAPI(
        title="OG Lab agent backend (ogcache)",
        version=__version__,
        description="Profiles, conversations, menu, auth and analytics of the OG Lab AI agent, "
        "read through the ogcache cache layer, with the cache management API.",
        lifespan=lifespan,
        responses=_ERRORS,  # type: ignore[arg-type]
    )
    install_handlers(app)
    app.state.health_checks = Memo[health.Checks]()
    for module in (menu, auth, profiles, conversations, sessions, analytics, cache, health):
        app.include_router(module.router)
    app.include_router(dashboard.router)  # GET /dashboard: the page, its script and styles
    add_links(app)
    limit = (settings or (runtime.settings if runtime else None) or load_settings()).max_body_bytes
    _add_middleware(app, limit)
    if runtime is not None:
        app.state.runtime = runtime
        _install_metrics(app, runtime)
    return app


def _add_middleware(app: FastAPI, body_limit: int) -> None:
    """Innermost first: each one added wraps the ones before it."""
    app.add_middleware(BodySizeLimit, limit=body_limit)
    app.add_middleware(HotReads)  # cache hits of the hottest GETs, before the router
    app.add_middleware(BriefStartupFailure)
    app.add_middleware(RequestId, on_error=internal_error_response)
    app.state.http_stats = HttpStats()
    app.add_middleware(HttpMetrics, stats=app.state.http_stats)  # outermost


class BriefStartupFailure:
    """Starlette hands uvicorn a failed start-up's whole traceback, which uvicorn logs (160-219
    lines for a database that does not exist). For an operator's error (``OgcacheError``: the
    database cannot be reached, a setting) the lifespan keeps its one line, sent instead;
    uvicorn logs it and exits non-zero as before."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def brief(message: Message) -> None:
            line = getattr(scope["app"].state, "startup_failure", None)
            if message["type"] == "lifespan.startup.failed" and line:
                message = {**message, "message": line}
            await send(message)

        await self.app(scope, receive, brief)


def _install_metrics(app: FastAPI, runtime: Runtime) -> None:
    """This process's registry; under ``serve --workers N`` (the directory named in the
    environment) one that adds the other workers' counters (:mod:`ogcache.api.worker_stats`)."""
    registry = CollectorRegistry(auto_describe=True)
    collector = CacheCollector(runtime.cache)
    registry.register(collector)
    registry.register(ChangeCollector(runtime.changes))
    registry.register(HttpCollector(app.state.http_stats))
    directory = os.environ.get(DIRECTORY_VARIABLE)
    previous = getattr(app.state, "metrics_registry", None)  # installed again: same worker
    worker = previous.worker if isinstance(previous, WorkerRegistry) else None
    app.state.metrics_registry = (
        WorkerRegistry(registry, Path(directory), worker) if directory else registry
    )
    app.state.cache_collector = collector


def create_app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (used by ``ogcache serve``, in every worker)."""
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings)
