"""The cache front end: namespaced, typed, cache-aside operations over one store.

A :class:`Cache` is composed of parts, a module each: :mod:`~ogcache.cache.fill` (lease,
load, compare-and-set), :mod:`~ogcache.cache.flight` (one call per key in this process),
:mod:`~ogcache.cache.refresh` (early refresh), :mod:`~ogcache.cache.breaker_backend` (the
circuit breaker and the replay of invalidations), :mod:`~ogcache.cache.l1` (the in-process
tier), :mod:`~ogcache.cache.stored` (what is stored) and :mod:`~ogcache.cache.batch` (many keys).

Data-path calls degrade instead of failing: a store error counts, is logged sparingly and
behaves as a miss. Administrative calls and ``update`` raise
:class:`~ogcache.cache.exceptions.BackendError` so the caller learns that nothing happened.
Guarantees: ``docs/consistency.md``, ``docs/resilience.md``, ``docs/local-cache.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Final, TypeVar, cast, overload

from ogcache.cache.admin import Administration
from ogcache.cache.backend import CacheBackend
from ogcache.cache.batch import invalidate_entries, read_entries, write_entries
from ogcache.cache.breaker import BreakerSettings, CircuitBreaker
from ogcache.cache.breaker_backend import BreakerBackend
from ogcache.cache.failures import Failures, log_key, logger
from ogcache.cache.fill import Fill, Parts
from ogcache.cache.flight import Flights
from ogcache.cache.l1 import L1, LocalSettings
from ogcache.cache.memo import Memo
from ogcache.cache.missing import MISSING, Missing
from ogcache.cache.namespace import Namespace
from ogcache.cache.policy import Policy, check_prefix
from ogcache.cache.refresh import EarlyRefresh
from ogcache.cache.report import CacheReport, Probe
from ogcache.cache.stats import NamespaceStats, NamespaceStatsSnapshot
from ogcache.cache.stored import Found, State, Stored, check_ttl
from ogcache.cache.update import Update
from ogcache.cache.verifier import Verifier

__all__ = ["Cache", "CacheReport"]

T = TypeVar("T")

_now = time.perf_counter
_DEFAULT_POLICY: Final = Policy()
_DEFAULT_BREAKER: Final = BreakerSettings()
_DEFAULT_LOCAL: Final = LocalSettings()


class Cache(Administration):
    """Namespaced cache over a :class:`~ogcache.cache.backend.CacheBackend`.

    ``prefix`` is this application's keyspace in the store; ``clear`` removes only keys under
    it. ``policy`` sets how entries are filled, stored and verified; ``breaker`` puts a
    circuit breaker around the store (``None``: none); ``local`` bounds the in-process tier
    used by namespaces with a ``local_ttl`` (``None``: off). ``clock`` is the wall clock
    stored expiries use. Use it as ``async with Cache(...) as cache:`` or call :meth:`close`.
    """

    def __init__(
        self,
        backend: CacheBackend,
        *,
        prefix: str = "ogcache",
        policy: Policy = _DEFAULT_POLICY,
        breaker: BreakerSettings | None = _DEFAULT_BREAKER,
        local: LocalSettings | None = _DEFAULT_LOCAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.prefix = check_prefix(prefix)
        self.policy = policy
        self._guarded: BreakerBackend | None = None
        store = backend
        if breaker is not None:
            store = self._guarded = BreakerBackend(
                backend, CircuitBreaker(breaker), clear_prefix=f"{prefix}:"
            )
        self._store = store
        self._stats: dict[str, NamespaceStats] = {}
        self._l1 = L1(backend, f"{prefix}:", local, self._guarded)
        failures = Failures(
            interval=policy.error_log_interval, max_value_bytes=policy.max_value_bytes
        )
        self._parts = Parts(store, Stored(policy, clock), self._l1, failures, policy)
        self._early = EarlyRefresh(self._parts, prefix)
        self._fills: Flights[Any] = Flights()
        self._reads: Flights[bytes | None] = Flights()
        self._probe: Memo[Probe] = Memo()
        verify = policy.verifier  # None when off: the hit path then only tests for None
        self._verifier = Verifier(verify, self._parts) if verify and verify.sample else None

    # --- keys and statistics -------------------------------------------------------------

    def full_key(self, namespace: Namespace[Any], key: str) -> str:
        """The key as stored: ``{prefix}:{namespace}:v{version}:{key}``."""
        return f"{self.prefix}:{namespace.stored_prefix}{key}"

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

    @property
    def l1(self) -> L1:
        """The in-process tier and the invalidation feed that gates it."""
        return self._l1

    def _count(
        self,
        namespace: Namespace[Any],
        stats: NamespaceStats,
        key: str,
        hit: bool,
        local: bool = False,
    ) -> None:
        stats.local_hits += local
        if hit:
            stats.hits += 1
        else:
            stats.misses += 1
        if logger.isEnabledFor(logging.DEBUG):
            log_key("cache.hit" if hit else "cache.miss", namespace, key)

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
        check_ttl(ttl)
        stats, full = self._stats_for(namespace), self.full_key(namespace, key)
        return await Update(self._parts, namespace, stats, full, ttl).run(change)

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
        return await read_entries(self._parts, self._stats_for, entries, fulls)

    async def peek(self, entries: Sequence[tuple[Namespace[Any], str]]) -> list[Any]:
        """:meth:`get_entries` without counting hits or misses: for a report of what is
        cached (warm-up's), which must not move the hit rate readers are judged by."""
        if not entries:
            return []
        fulls = [self.full_key(namespace, key) for namespace, key in entries]
        return await read_entries(self._parts, self._stats_for, entries, fulls, count=False)

    async def set_many(
        self, namespace: Namespace[T], values: Mapping[str, T | None], ttl: float | None = None
    ) -> bool:
        """Store every ``key -> value`` in one round trip; False if nothing was stored."""
        check_ttl(ttl)
        if not values:
            return True
        stats = self._stats_for(namespace)
        items = [(key, self.full_key(namespace, key), value) for key, value in values.items()]
        return await write_entries(self._parts, namespace, stats, items, ttl)

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
        return await invalidate_entries(self._parts, self._stats_for, pairs, fulls)

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

        A hit is one round trip, or none from the in-process tier. The loader's exceptions
        propagate (unless the namespace serves a recently expired value on error) and nothing
        is cached. ``None`` is cached for the namespace's ``negative_ttl``.
        """
        check_ttl(ttl)
        return (await self._lookup(namespace, key, loader, ttl, False))[0]

    async def get_or_load_encoded(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T | None]],
        *,
        ttl: float | None = None,
    ) -> bytes | None:
        """:meth:`get_or_load` as the codec's bytes (JSON), ``None`` for "not found": for a
        route whose response is the value, a hit answers the stored bytes, not decoded and
        encoded again. Bytes from the store are still decoded once: a value the codec refuses
        is a miss, never served."""
        check_ttl(ttl)
        found = await self._lookup(namespace, key, loader, ttl, True)
        return None if found[0] is None else found[1]

    async def get_local(self, namespace: Namespace[T], key: str) -> T | Missing | None:
        """The value from the in-process tier alone (no read of the store), else
        :data:`MISSING`. A hit counts; a miss does not (the caller reads the store next)."""
        held = await self._local(namespace, key)
        return held if held is MISSING else held[0]

    async def get_local_encoded(
        self, namespace: Namespace[Any], key: str
    ) -> bytes | Missing | None:
        """:meth:`get_local` as the codec's bytes (``None``: a cached "not found")."""
        held = await self._local(namespace, key)
        return MISSING if held is MISSING else (None if held[0] is None else held[1])

    async def _local(self, namespace: Namespace[Any], key: str) -> tuple[Any, bytes] | Missing:
        if not namespace.local_ttl or not self._l1.live(namespace):
            return MISSING
        held = await self._l1.hit(f"{self.prefix}:{namespace.stored_prefix}{key}")
        if held is not MISSING:
            self._count(namespace, self._stats_for(namespace), key, hit=True, local=True)
        return held

    async def _lookup(
        self,
        namespace: Namespace[T],
        key: str,
        loader: Callable[[], Awaitable[T | None]],
        ttl: float | None,
        encode: bool,
    ) -> tuple[T | None, bytes]:
        """The value and, when ``encode``, its bytes as the codec writes them (else b"")."""
        stats = self._stats_for(namespace)
        full = f"{self.prefix}:{namespace.stored_prefix}{key}"
        token = None
        if namespace.local_ttl and self._l1.live(namespace):
            held = await self._l1.hit(full)
            if held is not MISSING:
                self._count(namespace, stats, key, hit=True, local=True)
                return held
            token = self._l1.token(full)
        found: Found[T] | None
        if self._fills.in_flight(full):
            # A miss of this key is being filled in this process: share that fill rather than
            # send one more GET (a herd of cold readers then costs Redis one read, not one
            # each). The flight's decide() rule keeps its result no older than our start.
            found = Found(State.MISSING)
        else:
            found = await self._read(namespace, stats, full)  # None: the store failed
        hit = found is not None and found.state is State.FRESH
        self._count(namespace, stats, key, hit=hit)
        if not hit:  # the Fill is built on a miss only: a hit allocates nothing more
            fill = Fill(self._parts, namespace, stats, key, full, loader, ttl)
            value = await self._shared(fill, found)
            return value, (self._parts.stored.payload(namespace, value) if encode else b"")
        assert found is not None
        assert found.entry is not None
        assert found.raw is not None
        if token is not None:
            ttl_left = min(namespace.local_ttl, found.entry.expires_at - self._parts.stored.now())
            self._l1.keep(full, found.value, found.entry.payload, len(found.raw), ttl_left, token)
        if self._early.due(namespace, found.entry):
            fill = Fill(self._parts, namespace, stats, key, full, loader, ttl)
            self._early.start(fill, found.entry)
        if self._verifier is not None:
            self._verifier.sample(namespace, stats, full, loader, found.entry, ttl)
        return found.value, found.entry.payload

    async def _read(
        self, namespace: Namespace[T], stats: NamespaceStats, full: str
    ) -> Found[T] | None:
        """The key as read (shared with concurrent readers); ``None`` if the store failed."""
        start = _now()
        try:
            # A caller that waited for a read which found the key missing joins the load
            # that read started (as absent: the fill's atomic lease add sees any value).
            raw, _ = await self._reads.run(
                full, lambda _: self._store.get(full), defer_to=self._fills
            )
        except Exception as exc:
            self._parts.failed(stats, "get", exc)
            return None
        stats.operations.record(_now() - start)
        if raw is MISSING:
            raw = None
        return self._parts.stored.inspect(namespace, stats, raw)

    async def _shared(self, fill: Fill[T], found: Found[T] | None) -> T | None:
        """Run ``fill`` once in this process for every concurrent caller (``found=None``: the
        store failed, so load without caching)."""
        value, joined = await self._fills.run(fill.full, partial(fill.run, found))
        if joined:
            fill.stats.coalesced += 1
        return cast("T | None", value)

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
        check_ttl(ttl)
        stats, full = self._stats_for(namespace), self.full_key(namespace, key)
        fill = Fill(self._parts, namespace, stats, key, full, loader, ttl)
        try:
            raw = await self._store.get(full)
        except Exception as exc:
            self._parts.failed(stats, "get", exc)
            return await fill.load()
        found = self._parts.stored.inspect(namespace, stats, raw)
        if found.entry is not None:  # fresh or stale: replace that very write, or nothing
            value, _ = await fill.replace(found.entry)
            return value
        return await self._shared(fill, found)

    # --- life ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Let lease releases and refreshes finish (briefly), stop the invalidation feed and
        release the store's connections; cancel the verifier's pending checks."""
        if self._verifier is not None:
            await self._verifier.close()
        await self._parts.background.close()
        await self._l1.close()
        await self._store.close()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Cache({self.backend!r}, prefix={self.prefix!r})"

    # --- the library's sugar: a decorator ------------------------------------------------

    def cached(
        self, namespace: Namespace[Any], *, key: str, ttl: float | None = None
    ) -> CacheDecorator:
        """Cache an async function's results: ``@cache.cached(users, key="user:{user_id}")``
        (see :func:`ogcache.cache.decorator.cached`)."""
        return CacheDecorator(self, namespace, key, ttl)


# Here, not at the top: the decorator's one addition to this module stays in one place.
from ogcache.cache.decorator import CacheDecorator  # noqa: E402
