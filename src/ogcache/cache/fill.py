"""Filling one key after a miss: the lease, the load and the compare-and-set.

Across processes, the caller that misses stores a lease placeholder on the key (atomically,
only if the key is empty, expired or undecodable) and is the only one to load; others wait
briefly for its value, then load without caching. The loaded value replaces the lease by
compare-and-set, so if an invalidation deleted the key (and the lease with it) meanwhile, the
possibly stale value is not stored (``docs/consistency.md``). A :class:`Fill` is one such call:
what every step needs rides in it instead of through a dozen parameters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from ogcache.cache.backend import CacheBackend
from ogcache.cache.envelope import WRITE_ID_OFFSET, Entry, lease, new_token
from ogcache.cache.exceptions import BackendError, DecodeError
from ogcache.cache.failures import Failures, log_key, logger
from ogcache.cache.flight import Decide
from ogcache.cache.l1 import L1
from ogcache.cache.namespace import Namespace
from ogcache.cache.policy import Policy
from ogcache.cache.stats import NamespaceStats
from ogcache.cache.stored import Found, State, Stored

__all__ = ["Background", "Fill", "Parts"]

T = TypeVar("T")

_now = time.perf_counter
_MAX_LEASE_ATTEMPTS: Final = 1000
# Leases this process has already waited out, so a caller that finds the same dead lease
# again loads at once instead of waiting a second time.
_ABANDONED_LEASES_KEPT: Final = 1024


class Background:
    """Tasks a cache runs after answering (lease releases, early refreshes), awaited at close."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, grace: float = 1.0) -> None:
        """A moment to finish, then cancel what is left."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


@dataclass(slots=True)
class Parts:
    """What every fill of one cache shares."""

    store: CacheBackend  # as the cache uses it: behind the circuit breaker, if any
    stored: Stored
    l1: L1
    failures: Failures
    policy: Policy
    background: Background = field(default_factory=Background)
    abandoned: dict[str, bytes] = field(default_factory=dict)

    def failed(self, stats: NamespaceStats | None, operation: str, exc: Exception) -> None:
        self.failures.backend(stats, operation, exc, self.store.name)

    def remember_abandoned(self, full: str, raw: bytes | None) -> None:
        if raw is None:
            return
        self.abandoned[full] = raw
        if len(self.abandoned) > _ABANDONED_LEASES_KEPT:
            del self.abandoned[next(iter(self.abandoned))]


@dataclass(slots=True)
class Fill(Generic[T]):
    """One cache-aside load of ``key`` in ``namespace``."""

    parts: Parts
    namespace: Namespace[T]
    stats: NamespaceStats
    key: str
    full: str
    loader: Callable[[], Awaitable[T | None]]
    ttl: float | None

    async def run(self, found: Found[T] | None, decide: Decide) -> T | None:
        """After a miss: take the key's lease and load, or wait for the holder's value
        (``found=None``: the store failed, so load without caching).

        ``decide`` is called before every operation the result may come from (see
        :mod:`ogcache.cache.flight`).
        """
        if found is None:
            return await self.load(decide)
        token = lease(new_token())
        deadline = time.monotonic() + self.parts.policy.lease_wait
        delay, waited = 0.002, False
        for _ in range(_MAX_LEASE_ATTEMPTS):
            if found.state is State.FRESH:
                return found.value
            if found.state is State.LEASED and self.parts.abandoned.get(self.full) == found.raw:
                return await self.load(decide)  # waited out once already
            decide()
            sent_at = time.monotonic()
            try:
                acquired, current = await self._acquire(token, found)
            except BaseException as exc:
                # The lease may have been taken before the failure: give it back.
                self.parts.background.run(self._release(token, None))
                if not isinstance(exc, BackendError):
                    raise
                self.parts.failed(self.stats, "lease", exc)
                return await self.load(decide)
            if acquired:
                # A stale entry is ours to serve on a load error only if our lease replaced
                # it, i.e. no invalidation removed it first.
                stale = found if found.state is State.STALE else None
                return await self._load_under_lease(token, stale, sent_at, decide)
            found = self.parts.stored.inspect(self.namespace, self.stats, current)
            if found.state is not State.LEASED:
                continue  # filled, expired or emptied meanwhile: look again
            if not waited:
                self.stats.lease_waits += 1
                waited = True
            if time.monotonic() >= deadline:
                self.stats.lease_timeouts += 1
                self.parts.remember_abandoned(self.full, found.raw)
                return await self.load(decide)
            try:
                found = await self._look_again(delay, decide)
            except BackendError as exc:
                self.parts.failed(self.stats, "get", exc)
                return await self.load(decide)
            delay = min(delay * 2, 0.05)
        self.stats.lease_timeouts += 1  # the key kept changing under us: load without caching
        return await self.load(decide)

    async def _look_again(self, delay: float, decide: Decide) -> Found[T]:
        """Wait ``delay`` for the lease holder, then read the key again."""
        await asyncio.sleep(delay)
        decide()
        raw = await self.parts.store.get(self.full)
        return self.parts.stored.inspect(self.namespace, self.stats, raw)

    async def _acquire(self, token: bytes, found: Found[Any]) -> tuple[bool, bytes | None]:
        """Put our lease on the key if it is empty, expired or undecodable, atomically.

        Returns ``(True, None)`` when the lease is ours, else ``(False, what the key holds)``.
        """
        store, lease_ttl = self.parts.store, self.parts.policy.lease_ttl
        if found.state is State.LEASED:
            return False, found.raw
        if found.state is State.STALE:
            assert found.entry is not None
            expected, offset = found.entry.write_id, WRITE_ID_OFFSET
        elif found.raw is not None:  # undecodable: replace that very value
            expected, offset = found.raw, 0
        else:
            current = await store.add(self.full, token, lease_ttl)
            return current is None, current
        if await store.replace_if(self.full, expected, offset, token, lease_ttl):
            return True, None
        return False, await store.get(self.full)

    async def _load_under_lease(
        self, token: bytes, stale: Found[T] | None, leased_at: float, decide: Decide
    ) -> T | None:
        decide()  # if the value is not stored, it is as fresh as the moment the load began
        start = _now()
        try:
            value = await self.call_loader()
        except Exception as exc:
            # Give the key back: the stale value for the rest of its grace, else nothing.
            await self._release(token, stale)
            if stale is None or self.namespace.stale_ttl <= 0:
                raise
            assert stale.entry is not None
            served = self._serve_stale(stale.entry, exc)
            # The stale value was still in place when our lease replaced it: valid only for
            # callers that arrived before that moment.
            decide(leased_at)
            return served
        except BaseException:  # cancelled: release without delaying the cancellation
            self.parts.background.run(self._release(token, stale))
            raise
        sent_at = time.monotonic()
        try:
            stored = await self.store_if(value, _now() - start, token, 0)
        except BaseException:  # cancelled while the compare-and-set was in flight
            self.parts.background.run(self._release(token, None))
            raise
        if stored:
            # Stored: no invalidation came between the lease and now, so the value is valid
            # for every caller that arrived before the compare-and-set was sent.
            decide(sent_at)
        return value

    async def store_if(
        self, value: T | None, load_time: float, expected: bytes, offset: int
    ) -> bool:
        """Compare-and-set: store only if the key still holds ``expected`` at ``offset``."""
        data, lifetime = self._encode(value, load_time)
        start = _now()
        try:
            stored = await self.parts.store.replace_if(
                self.full, expected, offset, data, lifetime or 1
            )
        except Exception as exc:
            self.parts.failed(self.stats, "set", exc)
            return False
        finally:
            self.parts.l1.invalidate([self.full])
        self.stats.operations.record(_now() - start)
        if data is None:
            return False
        if stored:
            self.stats.sets += 1
        else:
            self.stats.sets_rejected += 1
        if logger.isEnabledFor(logging.DEBUG):
            event = "cache.cached" if stored else "cache.set_rejected"
            log_key(event, self.namespace, self.key)
        return bool(stored)

    def _encode(self, value: T | None, load_time: float) -> tuple[bytes | None, float]:
        """The bytes to store, or ``None`` to just give the lease back (not cached)."""
        if value is None and self.namespace.negative_ttl is None:
            return None, 0.0
        try:
            return self.parts.stored.encode(self.namespace, value, self.ttl, load_time)
        except Exception as exc:
            self.parts.failures.not_encoded(self.namespace, self.stats, exc)
            return None, 0.0

    async def _release(self, token: bytes, stale: Found[T] | None) -> None:
        """Remove our lease, or put back the stale value it replaced (for its remaining grace)."""
        restore, lifetime = None, 1.0
        if stale is not None and stale.entry is not None and stale.raw is not None:
            lifetime = stale.entry.expires_at + self.namespace.stale_ttl - self.parts.stored.now()
            if lifetime > 0.001:
                restore = stale.raw
        try:
            await self.parts.store.replace_if(self.full, token, 0, restore, max(lifetime, 0.001))
        except Exception as exc:
            self.parts.failed(self.stats, "release lease", exc)

    def _serve_stale(self, stale: Entry, exc: Exception) -> T | None:
        """The expired value in place of the loader's error, within the namespace's grace."""
        age = self.parts.stored.now() - stale.expires_at
        if age > self.namespace.stale_ttl:
            raise exc
        try:
            value = self.parts.stored.decode(self.namespace, stale)
        except DecodeError:
            raise exc from None
        self.stats.stale_served += 1
        logger.warning(
            "loader for %s failed (%s); serving a value expired %.1f s ago",
            self.namespace.name,
            exc,
            age,
            extra={"event": "cache.stale_served", "namespace": self.namespace.name},
        )
        return value

    async def call_loader(self) -> T | None:
        start = _now()
        try:
            value = await self.loader()
        except Exception:
            self.stats.load_errors += 1
            raise
        self.stats.loads += 1
        self.stats.load_times.record(_now() - start)
        return value

    async def load(self, decide: Decide | None = None) -> T | None:
        """Load without caching (the cache is unreachable, or another holds the lease)."""
        if decide is not None:
            decide()
        return await self.call_loader()

    async def replace(self, entry: Entry) -> tuple[T | None, bool]:
        """Load now and store the result only over ``entry`` (warm-up, early refresh);
        the value and whether it was stored."""
        start = _now()
        value = await self.call_loader()
        stored = await self.store_if(value, _now() - start, entry.write_id, WRITE_ID_OFFSET)
        return value, stored
