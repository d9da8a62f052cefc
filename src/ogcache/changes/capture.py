"""The server side of change capture: apply every committed database change to the cache.

PostgreSQL: one process per cache (prefix) is the **leader**: it holds a session advisory lock
on a connection of its own, probes the outbox every ``poll_interval`` (one index lookup) and
drains it. The others are on **standby** and try the lock every second, so when the leader
dies (its connection closes, PostgreSQL releases the lock) one takes over within about a
second. Other processes' in-process tiers hear the invalidations through the cache's
invalidation feed, as for any other write. (No ``LISTEN/NOTIFY`` wake-up: ``NOTIFY`` in the
triggers serialises the commits of every writer; see migration 0003.)

SQLite: every process polls the outbox after the last id it applied (no locks there).

An invalidation that fails (Redis down, breaker open) leaves the changes in the outbox and is
retried with a growing delay. A change that names no valid entry is counted and skipped, never
retried forever. Changes committed while no server runs wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ogcache.cache import Cache
from ogcache.cache.stats import LatencySummary, LatencyWindow
from ogcache.changes.mapping import Change, ChangeMap
from ogcache.changes.outbox import BATCH, PostgresOutbox, SqliteOutbox
from ogcache.db.models import utc_now
from ogcache.db.url import async_database_url
from ogcache.services.namespaces import AppNamespaces, CacheEntry

__all__ = ["CaptureSettings", "CaptureStats", "ChangeCapture"]

logger = logging.getLogger("ogcache.changes")

Role = Literal["starting", "leader", "standby", "local", "reconnecting", "stopped"]
SessionsOf = Callable[[set[str]], Awaitable[list[str]]]
TAKEOVER_INTERVAL: Final = 1.0  # standbys try the leader's lock this often
MAX_BACKOFF: Final = 5.0
TRIM_INTERVAL: Final = 60.0


class InvalidationFailed(Exception):
    """The cache did not confirm an invalidation: the changes stay queued for a retry."""


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """``apply``: False drains the outbox without invalidating (capture off: entries live
    until their TTL). ``analytics_interval``: analytics entries are invalidated at most this
    often. ``shared``: the cache is shared between processes (SQLite resumes from its saved
    position only then). ``retention``: seconds after which SQLite trims a change (longer
    than any entry lives)."""

    consumer: str
    apply: bool = True
    poll_interval: float = 0.05
    analytics_interval: float = 10.0
    shared: bool = True
    retention: float = 86400.0


@dataclass(slots=True)
class CaptureStats:
    role: Role = "starting"
    applied: int = 0  # changes applied (or drained, when not applying)
    invalidated: int = 0  # cache entries invalidated
    passes: int = 0
    failures: int = 0  # passes whose invalidation failed, retried
    skipped: int = 0  # changes that named no valid entry
    errors: int = 0  # database errors (reconnected)
    backlog: int = 0  # changes waiting after the last pass
    last_error: str | None = None
    lag: LatencyWindow = field(default_factory=LatencyWindow)

    def lag_summary(self) -> LatencySummary:
        return self.lag.summary()


class ChangeCapture:
    """Runs in the server process: :meth:`start` it in the event loop, :meth:`close` it."""

    def __init__(
        self,
        database_url: str,
        cache: Cache,
        namespaces: AppNamespaces,
        settings: CaptureSettings,
    ) -> None:
        url = async_database_url(database_url)
        self._postgres = url.get_backend_name() == "postgresql"
        self._url = url
        self._cache = cache
        self._map = ChangeMap(namespaces)
        self._settings = settings
        self._stats = CaptureStats()
        self._task: asyncio.Task[None] | None = None
        self._analytics_due = 0.0  # monotonic time from which analytics may be invalidated
        self._analytics_pending = False
        self._position: int | None = None  # SQLite: the last change applied
        self._retry = 0.0  # after a failed invalidation: the delay before the next try
        self._working = False  # a pass succeeded since the last (re)connection
        self._lock_key = int.from_bytes(
            hashlib.sha256(f"ogcache.changes:{settings.consumer}".encode()).digest()[:8],
            "big",
            signed=True,
        )

    @property
    def stats(self) -> CaptureStats:
        return self._stats

    @property
    def position(self) -> int:
        """SQLite: the id of the last change applied (0 on PostgreSQL, whose outbox is a
        queue: what is applied is deleted)."""
        return self._position or 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ogcache-change-capture")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._stats.role = "stopped"

    async def _run(self) -> None:
        engine = self._engine()
        backoff = self._settings.poll_interval
        try:
            while True:
                self._working = False
                try:
                    async with engine.connect() as connection:
                        if self._postgres:
                            await self._lead(connection)
                        else:
                            await self._poll(connection)
                except Exception as exc:  # database gone or restarted: reconnect
                    backoff = self._settings.poll_interval if self._working else backoff
                    self._lost(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            await engine.dispose()

    def _lost(self, exc: Exception) -> None:
        self._stats.errors += 1
        self._stats.last_error = f"{type(exc).__name__}: {exc}"
        if self._working or self._stats.role != "reconnecting":  # once per outage
            hint = " (run `ogcache db upgrade`)" if "cache_changes" in str(exc) else ""
            logger.warning("change capture lost the database, reconnecting: %s%s", exc, hint)
        self._stats.role = "reconnecting"

    def _engine(self) -> AsyncEngine:
        # Its own connection, never pooled: closing it releases the leader's lock.
        if self._postgres:
            options = {"application_name": "ogcache-change-capture"}
            return create_async_engine(
                self._url,
                poolclass=NullPool,
                connect_args={"timeout": 5, "command_timeout": 10, "server_settings": options},
            )
        return create_async_engine(self._url, poolclass=NullPool)

    # --- PostgreSQL ------------------------------------------------------------------------

    async def _lead(self, connection: AsyncConnection) -> None:
        pg: Any = (await connection.get_raw_connection()).driver_connection
        self._stats.role = "standby"
        while not await pg.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
            self._working = True
            await asyncio.sleep(TAKEOVER_INTERVAL)
        self._stats.role = "leader"
        logger.info("change capture: this process applies the database's changes")
        outbox = PostgresOutbox(pg)
        while True:
            if await outbox.pending():
                await self._drain(outbox)
            else:
                self._stats.backlog = 0
                await self._deferred_analytics(outbox.sessions_of)
            self._working = True
            await self._sleep()

    async def _drain(self, outbox: PostgresOutbox) -> None:
        """Apply every queued change, a batch per transaction; a batch whose invalidation
        fails is rolled back (it stays queued) and retried after :meth:`_sleep`."""
        while True:
            try:
                async with outbox.transaction():
                    changes = await outbox.take()
                    if not changes:
                        break
                    started = time.monotonic()
                    await self._apply(changes, outbox.sessions_of)
                    await outbox.done(changes)
            except InvalidationFailed:
                break
            self._record(changes, started)
            if len(changes) < BATCH:
                break
        self._stats.backlog = await outbox.backlog()

    # --- SQLite ----------------------------------------------------------------------------

    async def _poll(self, connection: AsyncConnection) -> None:
        outbox = SqliteOutbox(connection, self._settings.consumer)
        if self._position is None:  # after a reconnect, go on from where this process stood
            self._position = await outbox.position(resume=self._settings.shared)
        self._stats.role = "local"
        trimmed = 0.0
        while True:
            changes = await outbox.take(self._position)
            if changes:
                started = time.monotonic()
                with contextlib.suppress(InvalidationFailed):
                    await self._apply(changes, outbox.sessions_of)
                    self._position = changes[-1].id
                    await outbox.save(self._position)
                    self._record(changes, started)
                self._stats.backlog = await outbox.backlog(self._position)
            else:
                self._stats.backlog = 0
                await self._deferred_analytics(outbox.sessions_of)
            if time.monotonic() - trimmed > TRIM_INTERVAL:
                await outbox.trim(self._settings.retention)
                trimmed = time.monotonic()
            self._working = True
            if len(changes) < BATCH or self._retry:
                await self._sleep()

    # --- both ------------------------------------------------------------------------------

    async def _sleep(self) -> None:
        """The poll interval; after a failed invalidation a delay growing to 2 s; or until
        deferred analytics changes are due."""
        delay = self._retry or self._settings.poll_interval
        if self._analytics_pending and not self._retry:
            delay = min(delay, max(0.0, self._analytics_due - time.monotonic()))
        await asyncio.sleep(delay)

    async def _deferred_analytics(self, sessions_of: SessionsOf) -> None:
        if self._analytics_pending and time.monotonic() >= self._analytics_due:
            with contextlib.suppress(InvalidationFailed):
                await self._apply([], sessions_of)

    async def _apply(self, changes: Sequence[Change], sessions_of: SessionsOf) -> None:
        """Invalidate what ``changes`` affect; :class:`InvalidationFailed` (counted, the retry
        delay grown) if the cache did not confirm it."""
        if not self._settings.apply:
            return
        entries = await self._entries(changes, sessions_of)
        if any(self._map.touches_analytics(change) for change in changes):
            self._analytics_pending = True
        analytics = self._analytics_pending and time.monotonic() >= self._analytics_due
        if analytics:
            entries += self._map.analytics_entries(utc_now().date())
        try:
            for namespace in self._map.truncated(changes):
                await self._cache.clear_prefix(namespace.stored_prefix)
            confirmed = not entries or await self._cache.invalidate(entries)
        except Exception as exc:  # clear_prefix raises when the store fails
            logger.debug("change capture: invalidation failed: %s", exc)
            confirmed = False
        if not confirmed:
            self._stats.failures += 1
            self._retry = min(max(self._retry * 2, self._settings.poll_interval), 2.0)
            raise InvalidationFailed
        self._retry = 0.0
        if analytics:
            self._analytics_pending = False
            self._analytics_due = time.monotonic() + self._settings.analytics_interval
        self._stats.invalidated += len(entries)

    async def _entries(
        self, changes: Sequence[Change], sessions_of: SessionsOf
    ) -> list[CacheEntry]:
        """The entries ``changes`` name; a change that cannot be read (a row written by hand
        into the outbox, say) is counted, logged and skipped."""
        found: dict[tuple[str, str], CacheEntry] = {}
        users: set[str] = set()
        for change in changes:
            try:
                entries = self._map.entries([change])
                users |= self._map.users_to_log_out([change])
            except Exception as exc:
                self._stats.skipped += 1
                logger.warning(
                    "change capture skips change %d (%s): %s", change.id, change.table, exc
                )
                continue
            found.update(((ns.name, key), (ns, key)) for ns, key in entries)
        if users:
            sessions = self._map.entries([], await sessions_of(users))
            found.update(((ns.name, key), (ns, key)) for ns, key in sessions)
        return list(found.values())

    def _record(self, changes: Sequence[Change], started: float) -> None:
        applied = time.monotonic() - started
        for change in changes:
            self._stats.lag.record(change.age + applied)
        self._stats.applied += len(changes)
        self._stats.passes += 1
