"""The cache front end: namespaced, typed, cache-aside operations over one backend.

Every data-path call degrades instead of failing: a backend error or timeout is counted in
the namespace's statistics, logged (at most once per ``error_log_interval`` seconds), and the
call behaves as a miss, so ``get_or_load`` still returns the loader's value. Administrative
calls (``clear``, ``clear_prefix``, ``count_keys``, ``ping``) raise
:class:`~ogcache.cache.exceptions.BackendError` instead, so an operator learns that nothing
happened.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, overload

from ogcache.cache.backend import BackendInfo, CacheBackend, KeyCount
from ogcache.cache.exceptions import BackendError, DecodeError, InvalidKeyError
from ogcache.cache.missing import MISSING, Missing
from ogcache.cache.namespace import Namespace, validate_prefix
from ogcache.cache.stats import NamespaceStats, NamespaceStatsSnapshot

__all__ = ["Cache", "CacheReport"]

T = TypeVar("T")

logger = logging.getLogger("ogcache.cache")

_APP_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_now = time.perf_counter
# A cached None ("not found") is stored as JSON null whatever the namespace's codec, so
# negative caching works for typed namespaces too.
_NULL: Final = b"null"


@dataclass(frozen=True, slots=True)
class CacheReport:
    """What the cache can say about itself: availability, size, memory and per-namespace stats.

    ``keys`` is ``None`` when the backend could not be reached; ``keys.complete`` is False when
    counting stopped at its bound (a huge shared Redis), in which case the count is a lower bound.
    """

    backend: str
    available: bool
    prefix: str
    keys: KeyCount | None
    info: BackendInfo | None
    namespaces: dict[str, NamespaceStatsSnapshot]
    error: str | None = None


class Cache:
    """Namespaced cache over a :class:`~ogcache.cache.backend.CacheBackend`.

    ``prefix`` is this application's keyspace in the store; ``clear`` removes only keys under it.
    """

    def __init__(
        self,
        backend: CacheBackend,
        *,
        prefix: str = "ogcache",
        key_count_limit: int = 100_000,
        error_log_interval: float = 10.0,
    ) -> None:
        if not _APP_PREFIX.match(prefix):
            raise InvalidKeyError(
                f"cache prefix {prefix!r} must be 1-64 letters, digits or '_.-' "
                "(no ':'; it separates the prefix from namespaces)"
            )
        self.backend = backend
        self.prefix = prefix
        self.key_count_limit = key_count_limit
        self._stats: dict[str, NamespaceStats] = {}
        self._error_log_interval = error_log_interval
        self._last_error_log = -float("inf")
        self._suppressed_errors = 0

    # --- keys and statistics -------------------------------------------------------------

    def full_key(self, namespace: Namespace[Any], key: str) -> str:
        """The key as stored: ``{prefix}:{namespace}:v{version}:{key}``."""
        return f"{self.prefix}:{namespace.key_prefix}{key}"

    def _stats_for(self, namespace: Namespace[Any]) -> NamespaceStats:
        stats = self._stats.get(namespace.name)
        if stats is None:
            stats = self._stats[namespace.name] = NamespaceStats()
        return stats

    def stats(self) -> dict[str, NamespaceStatsSnapshot]:
        """Counters and latencies of every namespace used so far (no I/O)."""
        return {name: stats.snapshot(name) for name, stats in sorted(self._stats.items())}

    def reset_stats(self) -> None:
        self._stats.clear()

    def _backend_failed(self, stats: NamespaceStats | None, operation: str, exc: Exception) -> None:
        if stats is not None:
            stats.errors += 1
        now = time.monotonic()
        if now - self._last_error_log < self._error_log_interval:
            self._suppressed_errors += 1
            return
        suppressed, self._suppressed_errors = self._suppressed_errors, 0
        self._last_error_log = now
        logger.warning(
            "cache %s failed, serving without the cache: %s%s",
            operation,
            exc,
            f" ({suppressed} similar errors not logged)" if suppressed else "",
            extra={"event": "cache.error", "operation": operation, "backend": self.backend.name},
        )

    @staticmethod
    def _log(event: str, namespace: Namespace[Any], key: str | None, **fields: Any) -> None:
        shown = key if namespace.log_keys else "<redacted>"
        logger.debug(
            "%s %s %s",
            event,
            namespace.name,
            shown,
            extra={"event": event, "namespace": namespace.name, "key": shown, **fields},
        )

    # --- single keys ---------------------------------------------------------------------

    async def get(self, namespace: Namespace[T], key: str) -> T | Missing | None:
        """The cached value, or :data:`MISSING` (also on a backend error or undecodable value).

        ``None`` is returned only for a cached "not found" (see ``Namespace.negative_ttl``).
        """
        stats = self._stats_for(namespace)
        full = self.full_key(namespace, key)
        start = _now()
        try:
            raw = await self.backend.get(full)
        except Exception as exc:
            self._backend_failed(stats, "get", exc)
            stats.misses += 1
            return MISSING
        stats.operations.record(_now() - start)
        return await self._decode(namespace, stats, key, full, raw)

    async def _decode(
        self, namespace: Namespace[T], stats: NamespaceStats, key: str, full: str, raw: bytes | None
    ) -> T | Missing | None:
        if raw is not None:
            try:
                value = None if raw == _NULL else namespace.codec.loads(raw)
            except DecodeError as exc:
                stats.decode_errors += 1
                logger.warning(
                    "dropping undecodable cache entry in %s: %s",
                    namespace.name,
                    exc,
                    extra={"event": "cache.decode_error", "namespace": namespace.name},
                )
                await self._discard(stats, full)
            else:
                stats.hits += 1
                if logger.isEnabledFor(logging.DEBUG):
                    self._log("cache.hit", namespace, key)
                return value
        stats.misses += 1
        if logger.isEnabledFor(logging.DEBUG):
            self._log("cache.miss", namespace, key)
        return MISSING

    async def _discard(self, stats: NamespaceStats, full: str) -> None:
        try:
            await self.backend.delete(full)
        except Exception as exc:
            self._backend_failed(stats, "delete", exc)

    async def set(
        self, namespace: Namespace[T], key: str, value: T | None, ttl: float | None = None
    ) -> bool:
        """Store ``value`` for ``ttl`` seconds (default: the namespace's); False if not stored."""
        stats = self._stats_for(namespace)
        full = self.full_key(namespace, key)
        try:
            data = _NULL if value is None else namespace.codec.dumps(value)
        except Exception as exc:
            stats.errors += 1
            logger.error(
                "cannot encode a value for %s, not caching it: %s",
                namespace.name,
                exc,
                extra={"event": "cache.encode_error", "namespace": namespace.name},
            )
            return False
        start = _now()
        try:
            await self.backend.set(full, data, namespace.ttl if ttl is None else ttl)
        except Exception as exc:
            self._backend_failed(stats, "set", exc)
            return False
        stats.operations.record(_now() - start)
        stats.sets += 1
        if logger.isEnabledFor(logging.DEBUG):
            self._log("cache.cached", namespace, key)
        return True

    async def delete(self, namespace: Namespace[Any], key: str) -> bool:
        """Invalidate one entry; False if the backend could not be reached."""
        return await self.invalidate([(namespace, key)])

    # --- many keys, one round trip each --------------------------------------------------

    async def get_many(self, namespace: Namespace[T], keys: Sequence[str]) -> dict[str, T | None]:
        """The cached values among ``keys`` (absent ones are left out), in one round trip."""
        values = await self.get_entries([(namespace, key) for key in keys])
        return {key: value for key, value in zip(keys, values, strict=True) if value is not MISSING}

    async def get_entries(self, entries: Sequence[tuple[Namespace[Any], str]]) -> list[Any]:
        """Values of entries of any namespaces, in order, in one round trip.

        Each absent, undecodable or unreachable entry is :data:`MISSING`.
        """
        if not entries:
            return []
        fulls = [self.full_key(namespace, key) for namespace, key in entries]
        start = _now()
        try:
            raws = await self.backend.get_many(fulls)
        except Exception as exc:
            for namespace, _ in entries:
                stats = self._stats_for(namespace)
                stats.misses += 1
                stats.errors += 1
            self._backend_failed(None, "get_many", exc)
            return [MISSING] * len(entries)
        elapsed = _now() - start
        for namespace in {namespace.name: namespace for namespace, _ in entries}.values():
            self._stats_for(namespace).operations.record(elapsed)
        return [
            await self._decode(namespace, self._stats_for(namespace), key, full, raw)
            for (namespace, key), full, raw in zip(entries, fulls, raws, strict=True)
        ]

    async def set_many(
        self, namespace: Namespace[T], values: Mapping[str, T | None], ttl: float | None = None
    ) -> bool:
        """Store every ``key -> value`` in one round trip; False if nothing was stored."""
        if not values:
            return True
        stats = self._stats_for(namespace)
        seconds = namespace.ttl if ttl is None else ttl
        try:
            items = [
                (
                    self.full_key(namespace, key),
                    _NULL if value is None else namespace.codec.dumps(value),
                    seconds,
                )
                for key, value in values.items()
            ]
        except Exception as exc:
            stats.errors += 1
            logger.error("cannot encode values for %s, not caching them: %s", namespace.name, exc)
            return False
        start = _now()
        try:
            await self.backend.set_many(items)
        except Exception as exc:
            self._backend_failed(stats, "set_many", exc)
            return False
        stats.operations.record(_now() - start)
        stats.sets += len(items)
        if logger.isEnabledFor(logging.DEBUG):
            for key in values:
                self._log("cache.cached", namespace, key)
        return True

    async def delete_many(self, namespace: Namespace[Any], keys: Iterable[str]) -> bool:
        """Invalidate several entries of one namespace in one round trip."""
        return await self.invalidate([(namespace, key) for key in keys])

    async def invalidate(self, entries: Iterable[tuple[Namespace[Any], str]]) -> bool:
        """Invalidate entries of any namespaces in one round trip; False if it failed.

        A failed invalidation is logged as a warning: the entry may then be served until its
        TTL ends.
        """
        pairs = list(entries)
        if not pairs:
            return True
        fulls = [self.full_key(namespace, key) for namespace, key in pairs]
        start = _now()
        try:
            await self.backend.delete_many(fulls)
        except Exception as exc:
            for namespace, _ in pairs:
                self._stats_for(namespace).errors += 1
            self._backend_failed(None, "invalidate", exc)
            return False
        elapsed = _now() - start
        for namespace in {namespace.name: namespace for namespace, _ in pairs}.values():
            self._stats_for(namespace).operations.record(elapsed)
        debug = logger.isEnabledFor(logging.DEBUG)
        for namespace, key in pairs:
            self._stats_for(namespace).invalidations += 1
            if debug:
                self._log("cache.invalidated", namespace, key)
        return True

    # --- cache-aside ---------------------------------------------------------------------

    @overload
    async def get_or_load(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
    ) -> T: ...

    @overload
    async def get_or_load(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T | None]],
        *,
        ttl: float | None = None,
    ) -> T | None: ...

    async def get_or_load(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T | None]],
        *,
        ttl: float | None = None,
    ) -> T | None:
        """The cached value; on a miss, ``await loader()``, cache its result and return it.

        The loader's exceptions propagate and nothing is cached. A ``None`` result is cached
        only if the namespace has a ``negative_ttl``.
        """
        stats = self._stats_for(namespace)
        full = self.full_key(namespace, key)
        start = _now()
        reachable = True
        try:
            raw = await self.backend.get(full)
        except Exception as exc:
            self._backend_failed(stats, "get", exc)
            reachable = False
            raw = None
            stats.misses += 1
        else:
            stats.operations.record(_now() - start)
            cached = await self._decode(namespace, stats, key, full, raw)
            if cached is not MISSING:
                return cached
        value = await self._load(namespace, stats, loader)
        if value is None:
            if namespace.negative_ttl is None:
                return value
            ttl = namespace.negative_ttl
        if reachable:
            await self.set(namespace, key, value, ttl)
        return value

    async def _load(
        self,
        namespace: Namespace[T],
        stats: NamespaceStats,
        loader: Callable[[], Awaitable[T | None]],
    ) -> T | None:
        start = _now()
        try:
            value = await loader()
        except BaseException:
            stats.load_errors += 1
            raise
        stats.loads += 1
        stats.load_times.record(_now() - start)
        return value

    # --- administration (these raise BackendError) ---------------------------------------

    async def clear_prefix(self, prefix: str) -> int:
        """Remove this application's keys whose part after ``{prefix}:`` starts with ``prefix``.

        ``prefix`` is literal: glob characters match only themselves. Returns keys removed.
        """
        validate_prefix(prefix)
        return await self._admin(
            "clear_prefix", self.backend.delete_prefix(f"{self.prefix}:{prefix}")
        )

    async def clear_namespace(self, namespace: Namespace[Any]) -> int:
        """Remove every entry of the namespace's current version."""
        return await self.clear_prefix(namespace.key_prefix)

    async def clear(self) -> int:
        """Remove every key of this application (never other applications' keys)."""
        return await self._admin("clear", self.backend.delete_prefix(f"{self.prefix}:"))

    async def count_keys(self, prefix: str = "") -> KeyCount:
        """Keys of this application (under ``prefix`` if given), at bounded cost."""
        if prefix:
            validate_prefix(prefix)
        return await self._admin(
            "count_keys",
            self.backend.count_prefix(f"{self.prefix}:{prefix}", self.key_count_limit),
        )

    async def ping(self) -> None:
        await self._admin("ping", self.backend.ping())

    async def _admin(self, operation: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cache {operation} failed: {exc}") from exc

    async def report(self) -> CacheReport:
        """Availability, key count, memory and statistics; never raises for a down backend."""
        try:
            keys = await self.count_keys()
            info = await self._admin("info", self.backend.info())
        except BackendError as exc:
            return CacheReport(
                backend=self.backend.name,
                available=False,
                prefix=self.prefix,
                keys=None,
                info=None,
                namespaces=self.stats(),
                error=str(exc),
            )
        return CacheReport(
            backend=self.backend.name,
            available=True,
            prefix=self.prefix,
            keys=keys,
            info=info,
            namespaces=self.stats(),
        )

    async def close(self) -> None:
        await self.backend.close()

    def __repr__(self) -> str:
        return f"Cache({self.backend!r}, prefix={self.prefix!r})"
