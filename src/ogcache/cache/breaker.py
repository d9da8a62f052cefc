"""Circuit breaker around a cache backend, and replay of invalidations it could not deliver.

While the backend keeps failing, waiting on it (up to the call timeout, every call) only
makes requests slower. After ``failure_threshold`` consecutive failures the breaker *opens*:
calls fail at once with :class:`CircuitOpenError` (the cache front end then goes straight to
the loader). After ``cool_down`` seconds one call is let through as a probe (*half-open*); if
it succeeds the breaker *closes*, if it fails it opens again. Transitions are logged once.

Invalidations that fail while the backend is away are remembered (up to ``max_pending``
keys). They must not be forgotten: a Redis that was hung, partitioned or restarted with its
data still holds the old entries. The probe that closes the breaker *is* their replay: the
breaker closes only once every remembered key has been deleted. If more keys failed than
could be remembered, the probe removes every key under the application's prefix instead
(``clear``), so nothing stale survives either way. See ``docs/resilience.md``.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from ogcache.cache.backend import BackendInfo, CacheBackend, KeyCount
from ogcache.cache.exceptions import BackendError

__all__ = ["BreakerBackend", "BreakerState", "BreakerStats", "CircuitBreaker", "CircuitOpenError"]

T = TypeVar("T")

logger = logging.getLogger("ogcache.cache")

DEFAULT_MAX_PENDING: Final = 10_000


class CircuitOpenError(BackendError):
    """The breaker is open: the backend was not called."""


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStats:
    state: BreakerState
    trips: int
    open_seconds: float
    consecutive_failures: int
    pending_invalidations: int
    replays: int


class CircuitBreaker:
    """Closed → open after consecutive failures; half-open probe after a cool-down."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cool_down: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cool_down <= 0:
            raise ValueError("failure_threshold must be >= 1 and cool_down > 0")
        self.failure_threshold = failure_threshold
        self.cool_down = cool_down
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.trips = 0
        self.consecutive_failures = 0
        self._opened_at = 0.0
        self._open_total = 0.0
        self._probing = False

    @property
    def open_seconds(self) -> float:
        """Total time spent not closed (open or half-open), including now."""
        if self.state is BreakerState.CLOSED:
            return self._open_total
        return self._open_total + self._clock() - self._opened_at

    def try_probe(self) -> bool:
        """Whether a call may go to the backend now; in half-open, only one at a time."""
        if self.state is BreakerState.CLOSED:
            return True
        if self._probing or self._clock() - self._opened_at < self.cool_down:
            return False
        if self.state is BreakerState.OPEN:
            self.state = BreakerState.HALF_OPEN
        self._probing = True
        return True

    def release_probe(self) -> None:
        """The probe ended without an answer either way (cancelled): let another try."""
        self._probing = False

    def success(self) -> None:
        self.consecutive_failures = 0
        if self.state is not BreakerState.CLOSED:
            self._open_total += self._clock() - self._opened_at
            self.state = BreakerState.CLOSED
            self._probing = False
            logger.warning(
                "cache circuit closed: the backend answers again (was open %.1f s)",
                self._clock() - self._opened_at,
                extra={"event": "cache.circuit_closed"},
            )

    def failure(self, exc: BaseException) -> None:
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self.state = BreakerState.OPEN
            self._probing = False
            self._open_total += self._clock() - self._opened_at
            self._opened_at = self._clock()
        elif (
            self.state is BreakerState.CLOSED
            and self.consecutive_failures >= self.failure_threshold
        ):
            self.state = BreakerState.OPEN
            self.trips += 1
            self._opened_at = self._clock()
            logger.warning(
                "cache circuit opened after %d consecutive failures (last: %s); serving "
                "without the cache, probing again in %.1f s",
                self.consecutive_failures,
                exc,
                self.cool_down,
                extra={"event": "cache.circuit_opened"},
            )


class BreakerBackend:
    """A backend behind a :class:`CircuitBreaker`, remembering undelivered invalidations.

    ``clear_prefix`` is the application's keyspace prefix (``"{prefix}:"``), removed whole
    when more invalidations failed than could be remembered.
    """

    def __init__(
        self,
        inner: CacheBackend,
        breaker: CircuitBreaker,
        *,
        clear_prefix: str,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.breaker = breaker
        self._clear_prefix = clear_prefix
        self._max_pending = max_pending
        self._pending: dict[str, None] = {}
        self._overflowed = False
        self._generation = 0  # bumped by every remembered failure
        self.replays = 0

    def stats(self) -> BreakerStats:
        return BreakerStats(
            state=self.breaker.state,
            trips=self.breaker.trips,
            open_seconds=self.breaker.open_seconds,
            consecutive_failures=self.breaker.consecutive_failures,
            pending_invalidations=len(self._pending) + (1 if self._overflowed else 0),
            replays=self.replays,
        )

    def _remember(self, keys: Sequence[str]) -> None:
        self._generation += 1
        if self._overflowed:
            return
        for key in keys:
            self._pending[key] = None
        if len(self._pending) > self._max_pending:
            self._pending.clear()
            self._overflowed = True

    async def _replay(self) -> None:
        """Deliver the remembered invalidations (or clear everything after an overflow)."""
        generation = self._generation
        if self._overflowed:
            await self.inner.delete_prefix(self._clear_prefix)
            if self._generation == generation:  # no failure was remembered meanwhile
                self._overflowed = False
            removed = "every key of the application"
        elif self._pending:
            keys = list(self._pending)
            for start in range(0, len(keys), 1000):
                await self.inner.delete_many(keys[start : start + 1000])
            for key in keys:  # keys remembered meanwhile stay for the next replay
                self._pending.pop(key, None)
            removed = f"{len(keys)} keys"
        else:
            return
        self.replays += 1
        logger.warning(
            "replayed invalidations missed while the cache was unreachable: removed %s",
            removed,
            extra={"event": "cache.invalidations_replayed"},
        )

    async def _guard(self, call: Callable[[], Awaitable[T]]) -> T:
        if not self.breaker.try_probe():
            raise CircuitOpenError("cache circuit open: the backend failed recently")
        try:
            if self._pending or self._overflowed:
                await self._replay()  # before anything else reaches a recovered backend
            result = await call()
        except BackendError as exc:
            self.breaker.failure(exc)
            raise
        except BaseException:
            self.breaker.release_probe()
            raise
        self.breaker.success()
        return result

    def _fast(self) -> bool:
        """Closed with nothing to replay: the common case, kept cheap for hits."""
        return self.breaker.state is BreakerState.CLOSED and not (self._pending or self._overflowed)

    async def get(self, key: str) -> bytes | None:
        if not self._fast():
            return await self._guard(lambda: self.inner.get(key))
        try:
            value = await self.inner.get(key)
        except BackendError as exc:
            self.breaker.failure(exc)
            raise
        self.breaker.consecutive_failures = 0
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._guard(lambda: self.inner.get_many(keys))

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._guard(lambda: self.inner.set(key, value, ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        await self._guard(lambda: self.inner.set_many(items))

    async def add(self, key: str, value: bytes, ttl: float) -> bytes | None:
        return await self._guard(lambda: self.inner.add(key, value, ttl))

    async def replace_if(
        self, key: str, expected: bytes, offset: int, value: bytes | None, ttl: float
    ) -> bool:
        return await self._guard(lambda: self.inner.replace_if(key, expected, offset, value, ttl))

    async def delete(self, key: str) -> bool:
        return bool(await self.delete_many([key]))

    async def delete_many(self, keys: Sequence[str]) -> int:
        try:
            return await self._guard(lambda: self.inner.delete_many(keys))
        except BackendError:
            self._remember(keys)  # delivered on recovery, before any other call
            raise

    async def delete_prefix(self, prefix: str) -> int:
        return await self._guard(lambda: self.inner.delete_prefix(prefix))

    async def count_prefix(self, prefix: str, limit: int) -> KeyCount:
        return await self._guard(lambda: self.inner.count_prefix(prefix, limit))

    async def info(self) -> BackendInfo:
        return await self._guard(self.inner.info)

    async def ping(self) -> None:
        await self._guard(self.inner.ping)

    async def close(self) -> None:
        await self.inner.close()

    def __repr__(self) -> str:
        return repr(self.inner)
