"""The cache front end: namespaced, typed, cache-aside operations over one backend.

Reads that miss are protected against stampedes and stale sets (``docs/consistency.md``):

- **single-flight**: concurrent misses of one key in this process share one load;
- **leases**: across processes, the caller that misses stores a lease placeholder on the key
  (atomically, only if the key is empty) and is the only one to load; others wait briefly for
  the value, then load without caching. The loaded value replaces the lease by
  compare-and-set, so if an invalidation deleted the key (and the lease with it) meanwhile,
  the possibly stale value is not stored;
- **TTL jitter**, **negative caching** of ``None``, **early refresh** (XFetch) of entries near
  their expiry by one caller while others keep reading the cached value, and optionally
  **serving a recently expired value** when the loader fails.

Every data-path call degrades instead of failing: a backend error or timeout is counted in
the namespace's statistics, logged (at most once per ``error_log_interval`` seconds), and the
call behaves as a miss, so ``get_or_load`` still returns the loader's value. Administrative
calls (``clear``, ``clear_prefix``, ``count_keys``, ``ping``) raise
:class:`~ogcache.cache.exceptions.BackendError` instead, so an operator learns that nothing
happened.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, overload

from ogcache.cache.backend import BackendInfo, CacheBackend, KeyCount
from ogcache.cache.breaker import BreakerBackend, BreakerStats, CircuitBreaker, CircuitOpenError
from ogcache.cache.coalesce import ReadCoalescer
from ogcache.cache.envelope import WRITE_ID_OFFSET, Entry, Lease, lease, new_token, unwrap, wrap
from ogcache.cache.exceptions import BackendError, DecodeError, InvalidKeyError
from ogcache.cache.invalidation import InvalidationFeed, InvalidationSource
from ogcache.cache.local import NOT_FOUND, LocalStats, LocalTier
from ogcache.cache.memo import Memo
from ogcache.cache.missing import MISSING, Missing
from ogcache.cache.namespace import MAX_TTL as _MAX_TTL
from ogcache.cache.namespace import Namespace, validate_prefix
from ogcache.cache.singleflight import Decide, SingleFlight
from ogcache.cache.stats import NamespaceStats, NamespaceStatsSnapshot

__all__ = ["Cache", "CacheReport"]

T = TypeVar("T")

logger = logging.getLogger("ogcache.cache")

_APP_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_now = time.perf_counter
# A cached None ("not found") is stored as JSON null whatever the namespace's codec, so
# negative caching works for typed namespaces too.
_NULL: Final = b"null"
_MAX_LEASE_ATTEMPTS: Final = 1000
# Compare-and-set rounds of one update(): each lost round means another writer succeeded, so
# this bounds the writers an update waits behind, not the time a lone writer takes.
_MAX_UPDATE_ATTEMPTS: Final = 100
# Leases this process has already waited out, so a caller that finds the same dead lease
# again loads at once instead of waiting a second time.
_ABANDONED_LEASES_KEPT: Final = 1024


class _State(enum.Enum):
    MISSING = enum.auto()
    LEASED = enum.auto()
    FRESH = enum.auto()
    STALE = enum.auto()


@dataclass(slots=True)  # not frozen: built on every read, and never changed
class _Found(Generic[T]):
    """What a read of one key found."""

    state: _State
    raw: bytes | None = None
    entry: Entry | None = None
    value: T | None = None


_ABSENT: Final[_Found[Any]] = _Found(_State.MISSING)


# A payload with fewer JSON openers than this cannot nest deep enough for a codec to refuse
# reading it back (pydantic stops near 200 levels, orjson near 1,024), so only payloads with
# more are decoded once before they are stored. Two byte counts: ~1 us per 100 KB.
_ROUND_TRIP_CHECK_FROM: Final = 128


class _Unreadable(Exception):
    """A value the namespace's codec encodes but could not decode (nested too deep)."""


class _TooLarge(Exception):
    def __init__(self, namespace: Namespace[Any], size: int) -> None:
        super().__init__(f"{size}-byte value of {namespace.name} is too large to cache")
        self.size = size


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
    breaker: BreakerStats | None = None
    error: str | None = None
    local: LocalStats | None = None
    local_live: bool | None = None
    # Seconds since ``available``, ``keys``, ``info`` and ``error`` were measured.
    age: float = 0.0


@dataclass(frozen=True, slots=True)
class _Probe:
    """What :meth:`Cache.report` asks the backend: the costly part, shared between callers."""

    keys: KeyCount | None
    info: BackendInfo | None
    error: str | None = None


class Cache:
    """Namespaced cache over a :class:`~ogcache.cache.backend.CacheBackend`.

    ``prefix`` is this application's keyspace in the store; ``clear`` removes only keys under
    it. ``ttl_jitter`` spreads each TTL by ± that fraction; ``lease_ttl`` bounds how long a
    crashed loader's lease blocks a key; ``lease_wait`` is how long other callers wait for the
    lease holder's value before loading themselves; ``early_refresh_beta`` is XFetch's beta
    (0 turns early refresh off).
    """

    def __init__(
        self,
        backend: CacheBackend,
        *,
        prefix: str = "ogcache",
        key_count_limit: int = 100_000,
        error_log_interval: float = 10.0,
        ttl_jitter: float = 0.1,
        lease_ttl: float = 10.0,
        lease_wait: float = 2.0,
        early_refresh_beta: float = 1.0,
        failure_threshold: int = 5,
        cool_down: float = 2.0,
        slow_call_threshold: float = 0.0,
        stall_threshold: float = 0.0,
        recovery_settle: float | None = None,
        max_value_bytes: int = 1024 * 1024,
        local_max_entries: int = 10_000,
        local_max_bytes: int = 32 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _APP_PREFIX.match(prefix):
            raise InvalidKeyError(
                f"cache prefix {prefix!r} must be 1-64 letters, digits or '_.-' "
                "(no ':'; it separates the prefix from namespaces)"
            )
        if not 0 <= ttl_jitter < 1:
            raise InvalidKeyError("ttl_jitter must be at least 0 and below 1")
        if not (lease_ttl > 0 and lease_wait >= 0 and early_refresh_beta >= 0):
            raise InvalidKeyError("lease_ttl must be > 0; lease_wait and beta must be >= 0")
        self.backend = BreakerBackend(
            backend,
            CircuitBreaker(
                failure_threshold=failure_threshold,
                cool_down=cool_down,
                slow_call_threshold=slow_call_threshold,
                stall_threshold=stall_threshold,
                recovery_settle=recovery_settle,
            ),
            clear_prefix=f"{prefix}:",
        )
        self.prefix = prefix
        self.max_value_bytes = max_value_bytes
        self._oversized_logged: set[str] = set()
        self.key_count_limit = key_count_limit
        self.ttl_jitter = ttl_jitter
        self.lease_ttl = lease_ttl
        self.lease_wait = lease_wait
        self.early_refresh_beta = early_refresh_beta
        self._clock = clock
        self._stats: dict[str, NamespaceStats] = {}
        self._error_log_interval = error_log_interval
        self._last_error_log = -float("inf")
        self._suppressed_errors = 0
        self._flights: SingleFlight[Any] = SingleFlight()
        self._reads: ReadCoalescer[bytes | None] = ReadCoalescer()
        self._background: set[asyncio.Task[None]] = set()
        self._refreshing: set[str] = set()
        # A generator of our own: jitter and early refresh must not touch (or be steered by)
        # the application's global random state.
        self._random = random.Random()
        self._abandoned: dict[str, bytes] = {}
        # The in-process tier, for namespaces with a local_ttl, served only while the
        # backend's invalidation feed is live (started at the first such lookup).
        self._local = LocalTier(max_entries=local_max_entries, max_bytes=local_max_bytes)
        self._probe: Memo[_Probe] = Memo()
        self._feed: InvalidationFeed | None = (
            backend.invalidation_feed(f"{prefix}:")
            if isinstance(backend, InvalidationSource)
            else None
        )
        self._feed_started = False
        self._local_refused: set[str] = set()

    # --- keys, statistics, logging -------------------------------------------------------

    def full_key(self, namespace: Namespace[Any], key: str) -> str:
        """The key as stored: ``{prefix}:{namespace}:v{version}:{key}``."""
        return f"{self.prefix}:{namespace.stored_prefix}{key}"

    def _stats_for(self, namespace: Namespace[Any]) -> NamespaceStats:
        stats = self._stats.get(namespace.name)
        if stats is None:
            stats = self._stats[namespace.name] = NamespaceStats()
        return stats

    def _local_live(self, namespace: Namespace[Any]) -> bool:
        """Whether the in-process tier may serve (and be filled) now."""
        feed = self._feed
        if feed is None:
            if namespace.name not in self._local_refused:
                self._local_refused.add(namespace.name)
                logger.info(
                    "namespace %s asks for an in-process tier, but the %s backend cannot "
                    "report changes made by other processes; serving it from the backend only",
                    namespace.name,
                    self.backend.name,
                    extra={"event": "cache.local_unavailable", "namespace": namespace.name},
                )
            return False
        if not self._feed_started:
            self._feed_started = True
            feed.start(self._changed_elsewhere)
        return feed.live

    def _changed_elsewhere(self, keys: Sequence[str] | None) -> None:
        if keys is None:
            self._local.flush()
        else:
            self._local.invalidate(keys)

    def _keep_local(
        self, namespace: Namespace[Any], full: str, found: _Found[Any], token: int
    ) -> None:
        """Keep a fresh value read from the backend, for no longer than it stays fresh."""
        assert found.entry is not None
        assert found.raw is not None
        ttl = min(namespace.local_ttl, found.entry.expires_at - self._clock())
        self._local.put(full, found.value, len(found.raw), ttl, token)

    def stats(self) -> dict[str, NamespaceStatsSnapshot]:
        """Counters and latencies of every namespace used so far (no I/O)."""
        return {name: stats.snapshot(name) for name, stats in sorted(self._stats.items())}

    def reset_stats(self) -> None:
        self._stats.clear()

    def _backend_failed(self, stats: NamespaceStats | None, operation: str, exc: Exception) -> None:
        if isinstance(exc, CircuitOpenError):
            if stats is not None:  # the breaker logs its transitions; nothing per call
                stats.short_circuited += 1
            return
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

    # --- encoding ------------------------------------------------------------------------

    @staticmethod
    def _check_ttl(ttl: float | None) -> None:
        if ttl is not None and not 0 < ttl <= _MAX_TTL:
            raise InvalidKeyError(f"ttl must be > 0 and at most {_MAX_TTL:.0f} seconds, not {ttl}")

    def _encode(
        self, namespace: Namespace[T], value: T | None, ttl: float | None, load_time: float
    ) -> tuple[bytes, float]:
        """The stored bytes and the key's lifetime (the logical TTL plus any stale grace).

        A value its codec could not read back is refused here, before anything is stored: a
        stored one would be a miss on every read, reloaded and refused again.
        A namespace's TTL is jittered both ways; a TTL given by the caller is an upper bound
        (a token's remaining life, say), so it is only ever shortened.
        """
        payload = _NULL if value is None else namespace.codec.dumps(value)
        if value is None and namespace.negative_ttl is not None and ttl is None:
            ttl = namespace.negative_ttl
        seconds = namespace.ttl if ttl is None else ttl
        if self.ttl_jitter:
            spread = self._random.random() if ttl is None else self._random.random() / 2
            seconds *= 1 + self.ttl_jitter * (2 * spread - 1)
        if len(payload) > self.max_value_bytes:
            raise _TooLarge(namespace, len(payload))
        if payload.count(b"[") + payload.count(b"{") >= _ROUND_TRIP_CHECK_FROM:
            try:
                namespace.codec.loads(payload)
            except DecodeError as exc:
                raise _Unreadable(f"it could not be read back ({exc})") from exc
        data = wrap(
            payload, write_id=new_token(), expires_at=self._clock() + seconds, load_time=load_time
        )
        return data, seconds + namespace.stale_ttl

    def _not_encoded(
        self, namespace: Namespace[Any], stats: NamespaceStats, exc: Exception
    ) -> None:
        """A value that is not cached: too large (counted, logged once per namespace), or
        not encodable (a bug in the caller: counted and logged as an error)."""
        if isinstance(exc, _TooLarge):
            stats.oversized += 1
            if namespace.name not in self._oversized_logged:
                self._oversized_logged.add(namespace.name)
                logger.warning(
                    "not caching a %d-byte value of %s: larger than max_value_bytes (%d); "
                    "further ones are counted, not logged",
                    exc.size,
                    namespace.name,
                    self.max_value_bytes,
                    extra={"event": "cache.oversized", "namespace": namespace.name},
                )
            return
        stats.errors += 1
        logger.error(
            "cannot encode a value for %s, not caching it: %s",
            namespace.name,
            exc,
            extra={"event": "cache.encode_error", "namespace": namespace.name},
        )

    def _inspect(
        self,
        namespace: Namespace[T],
        stats: NamespaceStats,
        raw: bytes | None,
        now: float | None = None,
    ) -> _Found[T]:
        """Classify stored bytes (fresh at ``now``, by default the clock's time); an
        undecodable entry counts as absent (and is reported)."""
        if raw is None:
            return _ABSENT
        try:
            stored = unwrap(raw)
            if isinstance(stored, Lease):
                return _Found(_State.LEASED, raw)
            if stored.expires_at <= (self._clock() if now is None else now):
                return _Found(_State.STALE, raw, stored)
            payload = stored.payload
            value = None if payload == _NULL else namespace.codec.loads(payload)
        except DecodeError as exc:
            stats.decode_errors += 1
            logger.warning(
                "dropping undecodable cache entry in %s: %s",
                namespace.name,
                exc,
                extra={"event": "cache.decode_error", "namespace": namespace.name},
            )
            return _Found(_State.MISSING, raw)
        return _Found(_State.FRESH, raw, stored, value)

    def _decode_stale(self, namespace: Namespace[T], entry: Entry) -> T | None:
        payload = entry.payload
        return None if payload == _NULL else namespace.codec.loads(payload)

    def _count(self, namespace: Namespace[Any], stats: NamespaceStats, key: str, hit: bool) -> None:
        if hit:
            stats.hits += 1
        else:
            stats.misses += 1
        if logger.isEnabledFor(logging.DEBUG):
            self._log("cache.hit" if hit else "cache.miss", namespace, key)

    async def _discard_undecodable(self, stats: NamespaceStats, full: str, raw: bytes) -> None:
        """Delete an undecodable entry, unless it has been replaced meanwhile."""
        try:
            await self.backend.replace_if(full, raw, 0, None, 1)
        except Exception as exc:
            self._backend_failed(stats, "delete", exc)

    # --- single keys ---------------------------------------------------------------------

    async def get(self, namespace: Namespace[T], key: str) -> T | Missing | None:
        """The cached value, or :data:`MISSING` (also on a backend error or undecodable value).

        ``None`` is returned only for a cached "not found" (see ``Namespace.negative_ttl``).
        """
        return (await self.get_entries([(namespace, key)]))[0]  # type: ignore[no-any-return]

    async def set(
        self, namespace: Namespace[T], key: str, value: T | None, ttl: float | None = None
    ) -> bool:
        """Store ``value`` for ``ttl`` seconds (default: the namespace's); False if not stored.

        An unconditional write: for values derived from the database prefer
        :meth:`get_or_load` or :meth:`refresh`, which cannot store a value an invalidation
        has made stale meanwhile.
        """
        return await self.set_many(namespace, {key: value}, ttl)

    async def delete(self, namespace: Namespace[Any], key: str) -> bool:
        """Invalidate one entry; False if the backend could not be reached."""
        return await self.invalidate([(namespace, key)])

    async def update(
        self,
        namespace: Namespace[T],
        key: str,
        change: Callable[[T | None], T | None],
        ttl: float | None = None,
    ) -> T | None:
        """Atomic read-modify-write of one entry: store ``change(current)`` only if the entry
        still holds the ``current`` it was given, else read again and retry (bounded).

        For small shared records (per-user counters, quotas) whose writers must not lose each
        other's changes. ``current`` is ``None`` when the entry is absent, expired or
        undecodable. ``change`` returning ``None`` deletes the entry; returning ``current``
        itself (the same object) writes nothing; raising aborts with nothing written and the
        exception propagates. It may run several times, so it must have no side effects.
        ``ttl`` as in :meth:`set`. Returns what was stored.

        Unlike the other data-path calls this raises :class:`BackendError` when the store
        cannot be reached or the entry kept changing for every attempt, so the caller knows
        the change was not made.
        """
        self._check_ttl(ttl)
        stats = self._stats_for(namespace)
        full = self.full_key(namespace, key)
        delay = 0.001
        for _ in range(_MAX_UPDATE_ATTEMPTS):
            start = _now()
            try:
                raw = await self.backend.get(full)
            except Exception as exc:
                raise self._update_failed(stats, exc) from exc
            found = self._inspect(namespace, stats, raw)
            current = found.value if found.state is _State.FRESH else None
            new = change(current)
            if new is current and (current is not None or raw is None):
                return current  # unchanged (or absent and still to be absent): nothing to write
            data, lifetime = None, 1.0
            if new is not None:
                try:
                    data, lifetime = self._encode(namespace, new, ttl, 0.0)
                except Exception as exc:
                    self._not_encoded(namespace, stats, exc)
                    raise
            try:
                if raw is None:
                    # Nothing to compare with: create it only if it is still absent.
                    assert data is not None
                    done = await self.backend.add(full, data, lifetime) is None
                elif found.entry is not None:  # every write has a new random write id
                    done = await self.backend.replace_if(
                        full, found.entry.write_id, WRITE_ID_OFFSET, data, lifetime
                    )
                else:  # a lease or undecodable bytes: replace that very value
                    done = await self.backend.replace_if(full, raw, 0, data, lifetime)
            except Exception as exc:
                raise self._update_failed(stats, exc) from exc
            finally:
                self._local.invalidate([full])
            stats.operations.record(_now() - start)
            if done:
                if data is None:
                    stats.invalidations += 1
                else:
                    stats.sets += 1
                return new
            stats.sets_rejected += 1
            await asyncio.sleep(self._random.uniform(0, delay))  # spread the contenders out
            delay = min(delay * 2, 0.05)
        raise BackendError(
            f"cache update of {namespace.name} gave up: the entry was changed by other writers "
            f"{_MAX_UPDATE_ATTEMPTS} times in a row; retry later"
        )

    def _update_failed(self, stats: NamespaceStats, exc: Exception) -> BackendError:
        self._backend_failed(stats, "update", exc)
        if isinstance(exc, BackendError):
            return exc
        return BackendError(f"cache update failed: {exc}")

    # --- many keys, one round trip each --------------------------------------------------

    async def get_many(self, namespace: Namespace[T], keys: Sequence[str]) -> dict[str, T | None]:
        """The cached values among ``keys`` (absent ones are left out), in one round trip."""
        values = await self.get_entries([(namespace, key) for key in keys])
        return {key: value for key, value in zip(keys, values, strict=True) if value is not MISSING}

    async def get_entries(self, entries: Sequence[tuple[Namespace[Any], str]]) -> list[Any]:
        """Values of entries of any namespaces, in order, in one round trip.

        Each absent, expired, leased, undecodable or unreachable entry is :data:`MISSING`.
        """
        if not entries:
            return []
        fulls = [self.full_key(namespace, key) for namespace, key in entries]
        values: list[Any] = [MISSING] * len(entries)
        wanted = list(range(len(entries)))
        tokens: dict[int, int] = {}
        if any(namespace.local_ttl for namespace, _ in entries):
            live = {ns.name: self._local_live(ns) for ns, _ in entries if ns.local_ttl}
            wanted = []
            for index, ((namespace, key), full) in enumerate(zip(entries, fulls, strict=True)):
                if live.get(namespace.name):
                    value = self._local.get(full)
                    if value is not NOT_FOUND:
                        stats = self._stats_for(namespace)
                        stats.local_hits += 1
                        self._count(namespace, stats, key, hit=True)
                        values[index] = value
                        continue
                    tokens[index] = self._local.token(full)
                wanted.append(index)
            if not wanted:
                return values
        asked = {entries[index][0].name: entries[index][0] for index in wanted}.values()
        start = _now()
        try:
            if len(wanted) == 1:  # get(): the single-key command is leaner than MGET
                raws = [await self.backend.get(fulls[wanted[0]])]
            else:
                raws = await self.backend.get_many(
                    fulls if len(wanted) == len(fulls) else [fulls[index] for index in wanted]
                )
        except Exception as exc:
            for index in wanted:
                self._stats_for(entries[index][0]).misses += 1
            for namespace in asked:
                self._backend_failed(self._stats_for(namespace), "get_many", exc)
            return values
        elapsed = _now() - start
        for namespace in asked:
            self._stats_for(namespace).operations.record(elapsed)
        now = self._clock()
        debug = logger.isEnabledFor(logging.DEBUG)
        for index, raw in zip(wanted, raws, strict=True):
            namespace, key = entries[index]
            stats = self._stats[namespace.name]  # created above, for every asked namespace
            found = self._inspect(namespace, stats, raw, now)
            hit = found.state is _State.FRESH
            if hit:
                stats.hits += 1
            else:
                stats.misses += 1
            if debug:
                self._log("cache.hit" if hit else "cache.miss", namespace, key)
            if hit:
                values[index] = found.value
                token = tokens.get(index)
                if token is not None:
                    self._keep_local(namespace, fulls[index], found, token)
            elif found.state is _State.MISSING and raw is not None:
                await self._discard_undecodable(stats, fulls[index], raw)
        return values

    async def set_many(
        self, namespace: Namespace[T], values: Mapping[str, T | None], ttl: float | None = None
    ) -> bool:
        """Store every ``key -> value`` in one round trip; False if nothing was stored."""
        self._check_ttl(ttl)
        if not values:
            return True
        stats = self._stats_for(namespace)
        try:
            items = []
            for key, value in values.items():
                data, lifetime = self._encode(namespace, value, ttl, 0.0)
                items.append((self.full_key(namespace, key), data, lifetime))
        except Exception as exc:
            self._not_encoded(namespace, stats, exc)
            return False
        start = _now()
        try:
            await self.backend.set_many(items)
        except Exception as exc:
            self._backend_failed(stats, "set", exc)
            return False
        finally:
            self._local.invalidate([full for full, _, _ in items])
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

        Deleting a key also destroys any lease on it, so a load that began before this call
        cannot store its result afterwards. A failed invalidation is logged as a warning: the
        entry may then be served until its TTL ends.
        """
        pairs = list(entries)
        if not pairs:
            return True
        fulls = [self.full_key(namespace, key) for namespace, key in pairs]
        start = _now()
        try:
            await self.backend.delete_many(fulls)
        except Exception as exc:
            for namespace in {namespace.name: namespace for namespace, _ in pairs}.values():
                self._backend_failed(self._stats_for(namespace), "invalidate", exc)
            return False
        finally:  # here at once, whatever happened there; other processes hear it from the feed
            self._local.invalidate(fulls)
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

        A hit is one round trip. The loader's exceptions propagate (unless the namespace serves
        a recently expired value on error) and nothing is cached. ``None`` is cached for the
        namespace's ``negative_ttl``.
        """
        self._check_ttl(ttl)
        stats = self._stats_for(namespace)
        full = self.full_key(namespace, key)
        token = None
        if namespace.local_ttl and self._local_live(namespace):
            value = self._local.get(full)
            if value is not NOT_FOUND:
                stats.local_hits += 1
                self._count(namespace, stats, key, hit=True)
                return value  # type: ignore[no-any-return]
            token = self._local.token(full)
        if self._flights.in_flight(full):
            # A miss of this key is being filled in this process: share that fill rather than
            # send one more GET (a herd of cold readers then costs Redis one read, not one
            # each). The flight's decide() rule keeps its result no older than our start.
            self._count(namespace, stats, key, hit=False)
            return await self._shared(
                stats,
                full,
                lambda decide: self._fill(
                    namespace, stats, key, full, loader, ttl, _ABSENT, decide
                ),
            )
        start = _now()
        try:
            # A caller that waited for a read which found the key missing joins the load
            # that read started (as absent: the fill's atomic lease add sees any value).
            raw = await self._reads.read(
                full, self.backend.get, unless=lambda: self._flights.in_flight(full)
            )
        except Exception as exc:
            self._backend_failed(stats, "get", exc)
            self._count(namespace, stats, key, hit=False)
            return await self._shared(stats, full, lambda decide: self._load(stats, loader, decide))
        stats.operations.record(_now() - start)
        found = self._inspect(namespace, stats, raw)
        if found.state is _State.FRESH:
            self._count(namespace, stats, key, hit=True)
            assert found.entry is not None
            if token is not None:
                self._keep_local(namespace, full, found, token)
            if self._due_for_early_refresh(namespace, found.entry):
                self._refresh_in_background(namespace, stats, key, full, loader, ttl, found.entry)
            return found.value
        self._count(namespace, stats, key, hit=False)
        return await self._shared(
            stats,
            full,
            lambda decide: self._fill(namespace, stats, key, full, loader, ttl, found, decide),
        )

    async def refresh(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T | None]],
        *,
        ttl: float | None = None,
    ) -> T | None:
        """Load now and store the result unless the entry was invalidated or replaced
        meanwhile (warm-up). Returns what the loader returned."""
        self._check_ttl(ttl)
        stats = self._stats_for(namespace)
        full = self.full_key(namespace, key)
        try:
            raw = await self.backend.get(full)
        except Exception as exc:
            self._backend_failed(stats, "get", exc)
            return await self._load(stats, loader)
        found = self._inspect(namespace, stats, raw)
        if found.entry is not None:  # fresh or stale: replace that very write, or nothing
            start = _now()
            value = await self._load(stats, loader)
            await self._store_if(
                namespace, stats, key, full, value, ttl, _now() - start,
                found.entry.write_id, WRITE_ID_OFFSET,
            )  # fmt: skip
            return value
        return await self._shared(
            stats,
            full,
            lambda decide: self._fill(namespace, stats, key, full, loader, ttl, found, decide),
        )

    async def _shared(
        self, stats: NamespaceStats, full: str, work: Callable[[Decide], Awaitable[T]]
    ) -> T:
        value, joined = await self._flights.run(full, work)
        if joined:
            stats.coalesced += 1
        return value  # type: ignore[no-any-return]

    async def _fill(
        self,
        namespace: Namespace[T],
        stats: NamespaceStats,
        key: str,
        full: str,
        loader: Callable[[], Awaitable[T | None]],
        ttl: float | None,
        found: _Found[T],
        decide: Decide,
    ) -> T | None:
        """After a miss: take the key's lease and load, or wait for the holder's value.

        ``decide`` is called before every operation the result may come from (see
        :mod:`ogcache.cache.singleflight`).
        """
        token = lease(new_token())
        deadline = time.monotonic() + self.lease_wait
        delay = 0.002
        waited = False
        for _ in range(_MAX_LEASE_ATTEMPTS):
            if found.state is _State.FRESH:
                return found.value
            if found.state is _State.LEASED and self._abandoned.get(full) == found.raw:
                return await self._load(stats, loader, decide)  # waited out once already
            decide()
            sent_at = time.monotonic()
            try:
                acquired, current = await self._acquire(full, token, found)
            except BackendError as exc:
                # The lease may have been taken before the failure: give it back.
                self._in_background(self._release(namespace, stats, full, token, None, None))
                self._backend_failed(stats, "lease", exc)
                return await self._load(stats, loader, decide)
            except BaseException:
                self._in_background(self._release(namespace, stats, full, token, None, None))
                raise
            if acquired:
                # A stale entry is ours to serve on a load error only if our lease replaced
                # it, i.e. no invalidation removed it first.
                stale = found.entry if found.state is _State.STALE else None
                return await self._load_under_lease(
                    namespace, stats, key, full, loader, ttl, token,
                    stale, found.raw if stale else None, sent_at, decide,
                )  # fmt: skip
            found = self._inspect(namespace, stats, current)
            if found.state is not _State.LEASED:
                continue  # filled, expired or emptied meanwhile: look again
            if not waited:
                stats.lease_waits += 1
                waited = True
            if time.monotonic() >= deadline:
                stats.lease_timeouts += 1
                self._remember_abandoned(full, found.raw)
                return await self._load(stats, loader, decide)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            decide()
            try:
                found = self._inspect(namespace, stats, await self.backend.get(full))
            except BackendError as exc:
                self._backend_failed(stats, "get", exc)
                return await self._load(stats, loader, decide)
        stats.lease_timeouts += 1  # the key kept changing under us: load without caching
        return await self._load(stats, loader, decide)

    async def _acquire(
        self, full: str, token: bytes, found: _Found[Any]
    ) -> tuple[bool, bytes | None]:
        """Put our lease on the key if it is empty, expired or undecodable, atomically.

        Returns ``(True, None)`` when the lease is ours, else ``(False, what the key holds)``.
        """
        if found.state is _State.LEASED:
            return False, found.raw
        if found.state is _State.STALE:
            assert found.entry is not None
            expected, offset = found.entry.write_id, WRITE_ID_OFFSET
        elif found.raw is not None:  # undecodable: replace that very value
            expected, offset = found.raw, 0
        else:
            current = await self.backend.add(full, token, self.lease_ttl)
            return current is None, current
        if await self.backend.replace_if(full, expected, offset, token, self.lease_ttl):
            return True, None
        return False, await self.backend.get(full)

    def _remember_abandoned(self, full: str, raw: bytes | None) -> None:
        if raw is None:
            return
        self._abandoned[full] = raw
        if len(self._abandoned) > _ABANDONED_LEASES_KEPT:
            del self._abandoned[next(iter(self._abandoned))]

    async def _load_under_lease(
        self,
        namespace: Namespace[T],
        stats: NamespaceStats,
        key: str,
        full: str,
        loader: Callable[[], Awaitable[T | None]],
        ttl: float | None,
        token: bytes,
        stale: Entry | None,
        stale_raw: bytes | None,
        leased_at: float,
        decide: Decide,
    ) -> T | None:
        decide()  # if the value is not stored, it is as fresh as the moment the load began
        start = _now()
        try:
            value = await self._call_loader(stats, loader)
        except Exception as exc:
            # Give the key back: the stale value for the rest of its grace, else nothing.
            await self._release(namespace, stats, full, token, stale, stale_raw)
            if stale is None or namespace.stale_ttl <= 0:
                raise
            served = self._serve_stale(namespace, stats, stale, exc)
            # The stale value was still in place when our lease replaced it: valid only for
            # callers that arrived before that moment.
            decide(leased_at)
            return served
        except BaseException:  # cancelled: release without delaying the cancellation
            self._in_background(self._release(namespace, stats, full, token, stale, stale_raw))
            raise
        sent_at = time.monotonic()
        try:
            stored = await self._store_if(
                namespace, stats, key, full, value, ttl, _now() - start, token, 0
            )
        except BaseException:  # cancelled while the compare-and-set was in flight
            self._in_background(self._release(namespace, stats, full, token, None, None))
            raise
        if stored:
            # Stored: no invalidation came between the lease and now, so the value is valid
            # for every caller that arrived before the compare-and-set was sent.
            decide(sent_at)
        return value

    async def _store_if(
        self,
        namespace: Namespace[T],
        stats: NamespaceStats,
        key: str,
        full: str,
        value: T | None,
        ttl: float | None,
        load_time: float,
        expected: bytes,
        offset: int,
    ) -> bool:
        """Compare-and-set: store only if the key still holds ``expected`` at ``offset``."""
        if value is None and namespace.negative_ttl is None:
            data, lifetime = None, 0.0  # not cached: just give the lease back
        else:
            try:
                data, lifetime = self._encode(namespace, value, ttl, load_time)
            except Exception as exc:
                self._not_encoded(namespace, stats, exc)
                data, lifetime = None, 0.0
        start = _now()
        try:
            stored = await self.backend.replace_if(full, expected, offset, data, lifetime or 1)
        except Exception as exc:
            self._backend_failed(stats, "set", exc)
            return False
        finally:
            self._local.invalidate([full])
        stats.operations.record(_now() - start)
        if data is None:
            return False
        if stored:
            stats.sets += 1
            if logger.isEnabledFor(logging.DEBUG):
                self._log("cache.cached", namespace, key)
        else:
            stats.sets_rejected += 1
            if logger.isEnabledFor(logging.DEBUG):
                self._log("cache.set_rejected", namespace, key)
        return bool(stored)

    async def _release(
        self,
        namespace: Namespace[Any],
        stats: NamespaceStats,
        full: str,
        token: bytes,
        stale: Entry | None,
        stale_raw: bytes | None,
    ) -> None:
        """Remove our lease, or put back the stale value it replaced (for its remaining grace)."""
        restore, lifetime = None, 1.0
        if stale is not None and stale_raw is not None:
            lifetime = stale.expires_at + namespace.stale_ttl - self._clock()
            if lifetime > 0.001:
                restore = stale_raw
        try:
            await self.backend.replace_if(full, token, 0, restore, max(lifetime, 0.001))
        except Exception as exc:
            self._backend_failed(stats, "release lease", exc)

    def _serve_stale(
        self, namespace: Namespace[T], stats: NamespaceStats, stale: Entry, exc: Exception
    ) -> T | None:
        """The expired value in place of the loader's error, within the namespace's grace."""
        age = self._clock() - stale.expires_at
        if age > namespace.stale_ttl:
            raise exc
        try:
            value = self._decode_stale(namespace, stale)
        except DecodeError:
            raise exc from None
        stats.stale_served += 1
        logger.warning(
            "loader for %s failed (%s); serving a value expired %.1f s ago",
            namespace.name,
            exc,
            age,
            extra={"event": "cache.stale_served", "namespace": namespace.name},
        )
        return value

    async def _call_loader(
        self, stats: NamespaceStats, loader: Callable[[], Awaitable[T | None]]
    ) -> T | None:
        start = _now()
        try:
            value = await loader()
        except Exception:
            stats.load_errors += 1
            raise
        stats.loads += 1
        stats.load_times.record(_now() - start)
        return value

    async def _load(
        self,
        stats: NamespaceStats,
        loader: Callable[[], Awaitable[T | None]],
        decide: Decide | None = None,
    ) -> T | None:
        """Load without caching (the cache is unreachable, or another holds the lease)."""
        if decide is not None:
            decide()
        return await self._call_loader(stats, loader)

    # --- early refresh (XFetch) ----------------------------------------------------------

    def _due_for_early_refresh(self, namespace: Namespace[Any], entry: Entry) -> bool:
        """XFetch: refresh when ``now - delta * beta * ln(rand) >= expiry``."""
        if not namespace.early_refresh or self.early_refresh_beta <= 0 or entry.load_time <= 0:
            return False
        gap = -entry.load_time * self.early_refresh_beta * math.log(1.0 - self._random.random())
        return self._clock() + gap >= entry.expires_at

    def _refresh_in_background(
        self,
        namespace: Namespace[T],
        stats: NamespaceStats,
        key: str,
        full: str,
        loader: Callable[[], Awaitable[T | None]],
        ttl: float | None,
        entry: Entry,
    ) -> None:
        if full in self._refreshing:
            return
        self._refreshing.add(full)  # marked before any await: one refresh per key here

        async def refresh() -> None:
            # One refresher across processes: a marker key (outside every namespace, since
            # namespace names cannot start with '#') elects it and is removed when it ends.
            marker = f"{self.prefix}:#refresh:{full[len(self.prefix) + 1 :]}"
            mark = new_token()
            try:
                if await self.backend.add(marker, mark, self.lease_ttl) is not None:
                    return
                try:
                    start = _now()
                    value = await self._call_loader(stats, loader)
                    if await self._store_if(
                        namespace, stats, key, full, value, ttl, _now() - start,
                        entry.write_id, WRITE_ID_OFFSET,
                    ):  # fmt: skip
                        stats.early_refreshes += 1
                finally:
                    await self.backend.replace_if(marker, mark, 0, None, 1)
            except BackendError as exc:
                self._backend_failed(stats, "early refresh", exc)
            except Exception as exc:
                logger.warning(
                    "early refresh of %s failed: %s", namespace.name, exc,
                    extra={"event": "cache.refresh_error", "namespace": namespace.name},
                )  # fmt: skip
            finally:
                self._refreshing.discard(full)

        self._in_background(refresh())

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- administration (these raise BackendError) ---------------------------------------

    async def clear_prefix(self, prefix: str) -> int:
        """Remove this application's keys whose part after ``{prefix}:`` starts with ``prefix``.

        ``prefix`` is literal: glob characters match only themselves. Returns keys removed.
        """
        validate_prefix(prefix)
        try:
            return await self._admin(
                "clear_prefix", self.backend.delete_prefix(f"{self.prefix}:{prefix}")
            )
        finally:
            self._local.flush()
            self._probe.forget()

    async def clear_namespace(self, namespace: Namespace[Any]) -> int:
        """Remove every entry of the namespace's current version."""
        return await self.clear_prefix(namespace.key_prefix)

    async def clear(self) -> int:
        """Remove every key of this application (never other applications' keys)."""
        try:
            return await self._admin("clear", self.backend.delete_prefix(f"{self.prefix}:"))
        finally:
            self._local.flush()
            self._probe.forget()

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

    async def report(self, *, max_age: float = 0.0) -> CacheReport:
        """Availability, key count, memory and statistics; never raises for a down backend.

        The key count (a bounded ``SCAN``) and ``INFO`` may be up to ``max_age`` seconds old:
        callers that allow it share one measurement, so asking often costs the backend at most
        one per ``max_age``. The statistics of this process are always current.
        """
        probe, age = await self._probe.get(self._measure, max_age)
        return CacheReport(
            backend=self.backend.name,
            available=probe.error is None,
            prefix=self.prefix,
            keys=probe.keys,
            info=probe.info,
            namespaces=self.stats(),
            breaker=self.backend.stats(),
            error=probe.error,
            age=age,
            **self._local_report(),
        )

    async def _measure(self) -> _Probe:
        try:
            keys = await self.count_keys()
            info = await self._admin("info", self.backend.info())
        except BackendError as exc:
            return _Probe(keys=None, info=None, error=str(exc))
        return _Probe(keys=keys, info=info)

    def local_state(self) -> tuple[LocalStats, bool] | None:
        """The in-process tier's size and counters, and whether it may serve now; ``None``
        until a namespace with a ``local_ttl`` was used on a backend with an invalidation feed
        (no I/O)."""
        if not self._feed_started or self._feed is None:
            return None
        return self._local.stats(), self._feed.live

    def _local_report(self) -> dict[str, Any]:
        state = self.local_state()
        return {} if state is None else {"local": state[0], "local_live": state[1]}

    async def close(self) -> None:
        """Stop background refreshes and release the backend's connections."""
        if self._background:  # lease releases and refreshes: a moment to finish, then cancel
            _, pending = await asyncio.wait(list(self._background), timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._feed is not None:
            await self._feed.close()
        await self.backend.close()

    def __repr__(self) -> str:
        return f"Cache({self.backend!r}, prefix={self.prefix!r})"

    # --- the library's sugar: a decorator, and `async with` for the cache's life ----------

    def cached(
        self, namespace: Namespace[Any], *, key: str, ttl: float | None = None
    ) -> CacheDecorator:
        """Cache an async function's results: ``@cache.cached(users, key="user:{user_id}")``
        (see :func:`ogcache.cache.decorator.cached`)."""
        return CacheDecorator(self, namespace, key, ttl)

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# At the end: decorator.py refers to Cache, so it is imported once Cache exists.
from ogcache.cache.decorator import CacheDecorator  # noqa: E402
