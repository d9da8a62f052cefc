"""Assemble the application from settings: database engine, cache, and the services.

One :class:`Runtime` per process (the HTTP app, a CLI command, a test). Use it as an async
context manager, or call :meth:`Runtime.close`.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from types import TracebackType
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ogcache.cache import Cache, CacheBackend, VerifierSettings, create_backend
from ogcache.cache.backends import create_upstash_backend
from ogcache.changes import CaptureSettings, ChangeCapture
from ogcache.config import Settings, redact_url
from ogcache.db import create_engine, create_session_factory, upgrade
from ogcache.services import (
    AnalyticsService,
    AppNamespaces,
    AuthService,
    ConversationService,
    MenuService,
    ProfileService,
    ServiceContext,
    SessionService,
    StorageLimits,
    WarmupService,
)

__all__ = ["Runtime"]

logger = logging.getLogger("ogcache")


@dataclass(slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    cache: Cache
    namespaces: AppNamespaces
    profiles: ProfileService
    conversations: ConversationService
    auth: AuthService
    sessions: SessionService
    menu: MenuService
    analytics: AnalyticsService
    warmup: WarmupService
    changes: ChangeCapture

    @classmethod
    def open(cls, settings: Settings, *, backend: CacheBackend | None = None) -> Runtime:
        """Build everything; no I/O happens until the first call (connections are lazy).

        ``backend`` replaces the store the settings name: a store of the application's own,
        or one a test observes (the cache's policies still come from the settings)."""
        cache = _cache(settings, backend if backend is not None else _backend(settings))
        engine = create_engine(settings.database_url)
        db = create_session_factory(engine)
        namespaces = AppNamespaces.from_settings(settings)
        context = ServiceContext(
            db=db,
            cache=cache,
            namespaces=namespaces,
            limits=StorageLimits.from_settings(settings),
        )
        secret = _jwt_secret(settings)
        profiles = ProfileService(context)
        conversations = ConversationService(context)
        menu = MenuService(context)
        analytics = AnalyticsService(context)
        return cls(
            settings=settings,
            engine=engine,
            db=db,
            cache=cache,
            namespaces=namespaces,
            profiles=profiles,
            conversations=conversations,
            auth=AuthService(context, secret=secret, token_ttl=settings.token_ttl),
            sessions=SessionService(context),
            menu=menu,
            analytics=analytics,
            warmup=WarmupService(
                cache=cache,
                menu=menu,
                analytics=analytics,
                profiles=profiles,
                conversations=conversations,
            ),
            changes=ChangeCapture(
                settings.database_url, cache, namespaces, _capture_settings(settings, cache)
            ),
        )

    async def check_cache(self) -> None:
        """Warn about a cache configuration that will fail under load (logged, never fatal)."""
        try:
            info = await self.cache.backend.info()
        except Exception as exc:
            logger.warning("cache backend unreachable at start-up (%s); serving without it", exc)
            return
        if info.eviction_policy == "noeviction":
            logger.warning(
                "Redis maxmemory-policy is 'noeviction': once it is full every cache write "
                "fails. Set maxmemory and an evicting policy (e.g. allkeys-lru) for a cache."
            )

    async def migrate(self) -> None:
        """Apply the database migrations (idempotent)."""
        await upgrade(self.engine)

    async def close(self) -> None:
        await self.changes.close()
        await self.cache.close()
        await self.engine.dispose()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _backend(settings: Settings) -> CacheBackend:
    """The store the settings name: Redis, else Upstash's REST API, else in-process memory
    (logged, so an operator sees which one a process uses)."""
    options = settings.backend_options()
    upstash_url = settings.upstash_redis_rest_url
    upstash_token = settings.upstash_redis_rest_token
    if not settings.redis_url and upstash_url and upstash_token is not None:
        logger.info("cache backend: Upstash REST API (%s)", urlsplit(upstash_url).hostname)
        return create_upstash_backend(upstash_url, upstash_token.get_secret_value(), options)
    if settings.redis_url and not settings.redis_url.startswith("memory:"):
        logger.info("cache backend: Redis (%s)", redact_url(settings.redis_url))
    else:
        logger.info(
            "cache backend: in-process memory (OGCACHE_REDIS_URL is not set); "
            "each process has its own cache - set OGCACHE_REDIS_URL for a shared one"
        )
    return create_backend(settings.redis_url, options)


def _cache(settings: Settings, backend: CacheBackend) -> Cache:
    verifier = VerifierSettings(sample=settings.verify_sample, delay=settings.verify_delay)
    return Cache(
        backend,
        prefix=settings.cache_prefix,
        policy=replace(settings.cache_policy(), verifier=verifier),
        breaker=settings.breaker_settings(),
        local=settings.local_settings(),
    )


def _capture_settings(settings: Settings, cache: Cache) -> CaptureSettings:
    return CaptureSettings(
        consumer=settings.cache_prefix,
        apply=settings.change_capture,
        poll_interval=settings.change_poll_interval,
        analytics_interval=settings.change_analytics_interval,
        shared=cache.backend.name != "memory",
        retention=_longest_life(settings),
    )


def _longest_life(settings: Settings) -> float:
    """How long any entry may live (at least a day): SQLite keeps changes that long."""
    ttls = (
        settings.ttl_profile,
        settings.ttl_conversation,
        settings.ttl_auth,
        settings.ttl_menu,
        settings.ttl_session,
        settings.ttl_analytics,
    )
    return max(86400.0, max(ttls) * 1.2 + settings.stale_grace + settings.negative_ttl)


def _jwt_secret(settings: Settings) -> str:
    """The configured secret, or a random one that only this process will accept (warned)."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    logger.warning(
        "OGCACHE_JWT_SECRET is not set: using a random secret for this process only; "
        "tokens will not verify in other processes or after a restart"
    )
    return secrets.token_urlsafe(48)
