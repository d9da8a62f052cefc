"""The server side of change capture: apply every committed database change to the cache.

PostgreSQL: one process per cache (prefix) is the **leader**: it holds a session advisory lock
on a connection of its own, wakes on ``NOTIFY ogcache_changes`` (and polls as a safety net),
and drains the outbox. The others are on **standby** and try the lock every second, so when
the leader dies (its connection closes, PostgreSQL releases the lock) one takes over within
about a second. Other processes' in-process tiers hear the invalidations through the cache's
invalidation feed, as for any other write.

SQLite: every process polls the outbox (no NOTIFY there); invalidating twice is harmless.

An invalidation that fails (Redis down, breaker open) leaves the changes in the outbox; the
pass is retried until it succeeds. Changes committed while no server runs wait in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ogcache.cache import CacheLike
from ogcache.cache.stats import LatencySummary, LatencyWindow
from ogcache.changes.mapping import ANALYTICS_TABLE, Change, ChangeMap
from ogcache.changes.outbox import BATCH, CHANNEL, PostgresOutbox, SqliteOutbox
from ogcache.db.models import utc_now
from ogcache.db.url import async_database_url
from ogcache.services.namespaces import AppNamespaces, CacheEntry

__all__ = ["CaptureSettings", "CaptureStats", "ChangeCapture"]

logger = logging.getLogger("ogcache.changes")

Role = Literal["starting", "leader", "standby", "local", "reconnecting", "stopped"]
TAKEOVER_INTERVAL: Final = 1.0  # standbys try the leader's lock this often
MAX_BACKOFF: Final = 5.0


class InvalidationFailed(Exception):
    """The cache did not confirm an invalidation: the changes stay queued for a retry."""


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """``apply``: False drains the outbox without invalidating (capture off: entries live
    until their TTL). ``analytics_interval``: analytics entries are invalidated at most this
    often. ``shared``: the cache is shared between processes (SQLite resumes from its saved
    position only then)."""

    consumer: str
    apply: bool = True
    poll_interval: float = 0.25
    analytics_interval: float = 10.0
    shared: bool = True


@dataclass(slots=True)
class CaptureStats:
    role: Role = "starting"
    applied: int = 0  # changes applied (or drained, when not applying)
    invalidated: int = 0  # cache entries invalidated
    passes: int = 0
    failures: int = 0  # passes whose invalidation failed, retried
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
        cache: CacheLike,
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
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._analytics_due = 0.0  # monotonic time from which analytics may be invalidated
        self._analytics_pending = False
        self._position = 0  # SQLite: the last change applied
        self._failed = False  # the last invalidation failed: retry after the poll interval
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
        return self._position

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
                try:
                    async with engine.connect() as connection:
                        if self._postgres:
                            await self._lead(connection)
                        else:
                            await self._poll(connection)
                except Exception as exc:  # database gone or restarted: reconnect
                    if self._stats.role != "reconnecting":  # it was working: retry soon
                        backoff = self._settings.poll_interval
                    self._stats.errors += 1
                    self._stats.last_error = f"{type(exc).__name__}: {exc}"
                    self._stats.role = "reconnecting"
                    hint = " (run `ogcache db upgrade`)" if "cache_changes" in str(exc) else ""
                    logger.warning(
                        "change capture lost the database, reconnecting: %s%s", exc, hint
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            await engine.dispose()

    def _engine(self) -> AsyncEngine:
        # Its own connection, never pooled: closing it releases the leader's lock.
        if self._postgres:
            return create_async_engine(
                self._url,
                poolclass=NullPool,
                connect_args={
                    "timeout": 5,
                    "command_timeout": 10,
                    "server_settings": {"application_name": "ogcache-change-capture"},
                },
            )
        return create_async_engine(self._url, poolclass=NullPool)

    # --- PostgreSQL ------------------------------------------------------------------------

    async def _lead(self, connection: AsyncConnection) -> None:
        pg: Any = (await connection.get_raw_connection()).driver_connection
        self._stats.role = "standby"
        while not await pg.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):  # noqa: ASYNC110 (polls the database, not a local flag)
            await asyncio.sleep(TAKEOVER_INTERVAL)
        self._stats.role = "leader"
        logger.info("change capture: this process applies the database's changes")
        outbox = PostgresOutbox(pg)
        await pg.add_listener(CHANNEL, self._notified)
        try:
            while True:
                await self._drain(outbox)
                await self._sleep()
        finally:
            with contextlib.suppress(Exception):
                await pg.remove_listener(CHANNEL, self._notified)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _sleep(self) -> None:
        """Until a notification, the poll interval, or the moment deferred analytics changes
        are due; after a failed invalidation, the poll interval whatever is due."""
        timeout = self._settings.poll_interval
        if self._analytics_pending and not self._failed:
            timeout = min(timeout, max(0.0, self._analytics_due - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def _drain(self, outbox: PostgresOutbox) -> None:
        """Apply every queued change, a batch per transaction; a batch whose invalidation
        fails is rolled back (it stays queued) and retried after the poll interval."""
        while True:
            try:
                async with outbox.transaction():
                    analytics = time.monotonic() >= self._analytics_due
                    changes = await outbox.take(analytics=analytics)
                    if not changes:
                        break
                    started = time.monotonic()
                    await self._apply(changes, outbox.sessions_of)
                    await outbox.done(changes)
            except InvalidationFailed:
                self._failed = True
                self._stats.failures += 1
                break
            self._failed = False
            self._record(changes, started)
        self._stats.backlog = await outbox.backlog()
        self._analytics_pending = self._stats.backlog > 0

    # --- SQLite ----------------------------------------------------------------------------

    async def _poll(self, connection: AsyncConnection) -> None:
        outbox = SqliteOutbox(connection, self._settings.consumer)
        if not self._position:  # after a reconnect, go on from where this process stood
            self._position = await outbox.position(resume=self._settings.shared)
        position = self._position
        self._stats.role = "local"
        while True:
            changes = await outbox.take(position)
            if position and changes and changes[0].id > position + 1:  # ids have no gaps
                await self._missed(position, changes[0].id)
            if changes:
                started = time.monotonic()
                try:
                    await self._apply(changes, outbox.sessions_of)
                except InvalidationFailed:
                    self._failed = True
                    self._stats.failures += 1
                else:
                    self._failed = False
                    position = self._position = changes[-1].id
                    await outbox.save(position)
                    self._record(changes, started)
            elif self._analytics_pending and time.monotonic() >= self._analytics_due:
                await self._apply([], outbox.sessions_of)
            self._stats.backlog = 0 if len(changes) < BATCH else len(changes)
            if len(changes) < BATCH:
                await self._sleep()

    async def _missed(self, position: int, first: int) -> None:
        """Changes after ``position`` were trimmed unseen (this process stopped polling for a
        day): nothing in the cache can be trusted."""
        logger.warning(
            "change capture missed changes %d-%d (trimmed); clearing the cache", position, first
        )
        clear = getattr(self._cache, "clear", None)
        if clear is not None:
            await clear()

    # --- both ------------------------------------------------------------------------------

    async def _apply(self, changes: Sequence[Change], sessions_of: Any) -> None:
        """Invalidate what ``changes`` affect; :class:`InvalidationFailed` if the cache did not
        confirm it."""
        if not self._settings.apply:
            return
        users = self._map.users_to_log_out(changes)
        sessions = await sessions_of(users) if users else []
        entries: list[CacheEntry] = self._map.entries(changes, sessions)
        if any(change.table == ANALYTICS_TABLE for change in changes):
            self._analytics_pending = True
        if self._analytics_pending and time.monotonic() >= self._analytics_due:
            entries += self._map.analytics_entries(utc_now().date())
        if entries and not await self._cache.invalidate(entries):
            raise InvalidationFailed
        if self._analytics_pending and time.monotonic() >= self._analytics_due:
            self._analytics_pending = False
            self._analytics_due = time.monotonic() + self._settings.analytics_interval
        self._stats.invalidated += len(entries)

    def _record(self, changes: Sequence[Change], started: float) -> None:
        applied = time.monotonic() - started
        for change in changes:
            self._stats.lag.record(change.age + applied)
        self._stats.applied += len(changes)
        self._stats.passes += 1
