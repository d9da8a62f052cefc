"""The in-process tier as the cache serves it: a :class:`~ogcache.cache.local.LocalTier`
gated by the store's :class:`~ogcache.cache.invalidation.InvalidationFeed`.

A namespace with a ``local_ttl`` is served from this process's memory only while the feed is
live; the feed is started by the first such lookup; every change it reports (or "anything may
have changed" when it loses track) is dropped from the tier. On a store without a feed the
tier never serves, and the namespace says so once in the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ogcache.cache.backend import CacheBackend
from ogcache.cache.breaker_backend import BreakerBackend
from ogcache.cache.failures import logger
from ogcache.cache.invalidation import InvalidationFeed, InvalidationSource
from ogcache.cache.local import LocalStats, LocalTier
from ogcache.cache.missing import MISSING, Missing
from ogcache.cache.namespace import Namespace

__all__ = ["L1", "LocalSettings", "ReadScope"]


class ReadScope:
    """``with ReadScope():`` (a web request, say): in-process tier reads inside the block
    reflect every change the store applied before the first such read, in every process.

    The first read waits for its feed's fence (one round trip, shared with concurrent
    scopes); later reads in the block go ahead, or, if the fence failed, read the store
    without trying again. Outside any scope a read may lag a change made in another process
    by the feed's delivery delay (``docs/local-cache.md``).
    """

    __slots__ = ("_token", "fenced")

    def __init__(self) -> None:
        self.fenced: dict[int, bool] = {}  # id() of a feed -> whether its fence held
        self._token: Token[ReadScope | None] | None = None

    def __enter__(self) -> ReadScope:
        self._token = _scope.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._token is not None
        _scope.reset(self._token)


_scope: ContextVar[ReadScope | None] = ContextVar("ogcache_read_scope", default=None)


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """Bounds of the in-process tier: entries, and bytes of the stored payloads."""

    max_entries: int = 10_000
    max_bytes: int = 32 * 1024 * 1024


class L1:
    """The in-process tier in front of one store, for the keys under ``prefix``."""

    __slots__ = (
        "_admits",
        "_feed",
        "_patience",
        "_refused",
        "_started",
        "_store_name",
        "enabled",
        "tier",
    )

    def __init__(
        self,
        store: CacheBackend,
        prefix: str,
        settings: LocalSettings | None,
        breaker: BreakerBackend | None = None,
    ) -> None:
        """``settings=None`` turns the tier off: every namespace is served from the store.
        With a ``breaker`` no request waits for a fence while the breaker holds reads back,
        nor longer than its slow-call threshold: past it the request reads the store, which
        the breaker guards (and learns the store's slowness from)."""
        bounds = settings or LocalSettings()
        self.tier = LocalTier(max_entries=bounds.max_entries, max_bytes=bounds.max_bytes)
        self._feed: InvalidationFeed | None = None
        self.enabled = settings is not None
        if self.enabled and isinstance(store, InvalidationSource):
            self._feed = store.invalidation_feed(prefix)
        self._store_name = store.name
        self._admits = None if breaker is None else breaker.admits_reads
        self._patience = None if breaker is None else (breaker.slow_after or None)  # 0: off
        self._started = False
        self._refused: set[str] = set()

    def live(self, namespace: Namespace[Any]) -> bool:
        """Whether the tier may serve (and be filled) now."""
        feed = self._feed
        if feed is None:
            if self.enabled and namespace.name not in self._refused:
                self._refused.add(namespace.name)
                logger.info(
                    "namespace %s asks for an in-process tier, but the %s backend cannot "
                    "report changes made by other processes; serving it from the backend only",
                    namespace.name,
                    self._store_name,
                    extra={"event": "cache.local_unavailable", "namespace": namespace.name},
                )
            return False
        if not self._started:
            self._started = True
            feed.start(self._changed_elsewhere)
        return feed.live

    async def hit(self, full: str) -> tuple[Any, bytes] | Missing:
        """The value and its bytes if the tier holds them and may serve them now: inside a
        :class:`ReadScope`, after the scope's fence (once per scope, and only for a value the
        tier holds, so a miss goes to the store with no extra round trip). Call after
        :meth:`live`."""
        if self.tier.get(full) is MISSING or not await self._fenced():
            return MISSING
        return self.tier.get(full)  # type: ignore[no-any-return]  # again: after the fence

    async def _fenced(self) -> bool:
        scope = _scope.get()
        feed = self._feed
        if scope is None or feed is None:
            return True
        known = scope.fenced.get(id(feed))
        if known is None:  # fenced (or given up on) once per scope
            known = (self._admits is None or self._admits()) and await feed.fence(self._patience)
            scope.fenced[id(feed)] = known
        return known and feed.live

    def _changed_elsewhere(self, keys: Sequence[str] | None) -> None:
        if keys is None:
            self.tier.flush()
        else:
            self.tier.invalidate(keys)

    def token(self, full: str) -> int:
        return self.tier.token(full)

    def keep(
        self, full: str, value: Any, payload: bytes, size: int, ttl: float, token: int
    ) -> None:
        self.tier.put(full, (value, payload), size, ttl, token)

    def invalidate(self, fulls: Iterable[str]) -> None:
        self.tier.invalidate(fulls)

    def flush(self) -> None:
        self.tier.flush()

    def state(self) -> tuple[LocalStats, bool] | None:
        """The tier's size and counters and whether it may serve now; ``None`` until a
        namespace with a ``local_ttl`` was used on a store with a feed (no I/O)."""
        if not self._started or self._feed is None:
            return None
        return self.tier.stats(), self._feed.live

    @property
    def feed(self) -> InvalidationFeed | None:
        """The store's invalidation feed, if it has one (started by the first lookup)."""
        return self._feed

    async def close(self) -> None:
        if self._feed is not None:
            await self._feed.close()
