"""A store behind a :class:`~ogcache.cache.breaker.CircuitBreaker`, and the replay of
invalidations it could not deliver.

Invalidations that fail while the store is away are remembered (up to ``max_pending`` keys).
They must not be forgotten: a Redis that was hung, partitioned or restarted with its data
still holds the old entries. The probe delivers them before the breaker closes; while closed,
the first call after a failed invalidation delivers them before its own command, and the probe
task retries every cool-down even if no call comes. If more keys failed than could be
remembered, every key under the application's prefix is removed instead (``clear``). See
``docs/resilience.md``.

The probe task is started when first needed (from a running loop) and cancelled by
:meth:`BreakerBackend.close`. The common case, ``get`` while closed, costs two clock reads
and a few attribute updates: no lock, no task, no extra await.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from ogcache.cache.backend import BackendInfo, CacheBackend, KeyCount
from ogcache.cache.breaker import (
    SKIPPING,
    BreakerState,
    BreakerStats,
    CircuitBreaker,
    CircuitOpenError,
    SlowCallError,
)
from ogcache.cache.exceptions import BackendBusyError, BackendError

__all__ = ["DEFAULT_MAX_PENDING", "BreakerBackend"]

T = TypeVar("T")

logger = logging.getLogger("ogcache.cache")

DEFAULT_MAX_PENDING: Final = 10_000
_REPLAY_BATCH: Final = 1000
# Before suspecting the backend, a call gives answers that arrived (or calls not yet sent)
# this long, then the turns of the loop it takes to read an answer and resume its caller.
_CONFIRM_WAIT: Final = 0.002
_TURNS_TO_DELIVER: Final = 2
_now = time.perf_counter


async def _probe_loop(ref: weakref.ref[BreakerBackend], wake: asyncio.Event) -> None:
    """The probe task. It holds its backend only while probing, so one dropped without
    ``close()`` is collected, and the task ends at its next wake-up instead of leaking."""
    while True:
        backend = ref()
        # The task's own backend (held weakly): its private state is this module's.
        if backend is None or backend._closed:  # noqa: SLF001
            return
        delay = backend._next_wake()  # noqa: SLF001
        if delay is None:
            return
        if delay == 0:
            await backend._probe()  # noqa: SLF001
            continue
        del backend
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()
        wake.clear()


async def _loop_delay() -> float:
    """How long two turns of the event loop take now: what a PING's measured time owes to a
    busy loop (a burst of requests) rather than to the backend."""
    start = _now()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return _now() - start


class BreakerBackend:
    """A backend behind a :class:`CircuitBreaker`, remembering undelivered invalidations.

    ``clear_prefix`` is the application's keyspace prefix (``"{prefix}:"``), removed whole
    when more invalidations failed than could be remembered. The probe runs in a task of its
    own, started when first needed (from a running loop) and cancelled by :meth:`close`.
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
        # The fast path's state, read on every call: plain attributes of this object.
        self._fast = True  # closed, nothing to replay
        self._slow_after = breaker.slow_call_threshold
        self._stall_after = breaker.stall_threshold
        self._inflight = 0  # calls sent and not answered
        self._busy_since = 0.0  # when _inflight last rose from 0
        self._replied = 0.0  # when the last timely answer came (0: none yet)
        self._prober: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._replaying: asyncio.Lock | None = None
        self._replay_due = 0.0
        self._closed = False
        breaker.on_change = self._changed

    def stats(self) -> BreakerStats:
        breaker = self.breaker
        return BreakerStats(
            state=breaker.state,
            trips=breaker.trips,
            open_seconds=breaker.open_seconds,
            consecutive_failures=breaker.consecutive_failures,
            pending_invalidations=len(self._pending) + (1 if self._overflowed else 0),
            replays=self.replays,
            suspicions=breaker.suspicions,
            false_alarms=breaker.false_alarms,
            slow_calls=breaker.slow_calls,
            probes=breaker.probes,
        )

    # --- state ---------------------------------------------------------------------------

    def _changed(self) -> None:
        self._fast = self.breaker.state is BreakerState.CLOSED and not (
            self._pending or self._overflowed
        )
        if self.breaker.state in SKIPPING:
            self._start_prober()

    def _start_prober(self) -> None:
        """Start the probe task (once), or wake it; only from a running loop."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        prober = self._prober
        if prober is not None and not prober.done() and prober.get_loop() is loop:
            if self._wake is not None:
                self._wake.set()
            return
        self._wake = asyncio.Event()
        self._prober = loop.create_task(
            _probe_loop(weakref.ref(self), self._wake), name=f"ogcache {self.name} probe"
        )

    def _remember(self, keys: Sequence[str]) -> None:
        self._generation += 1
        if not self._overflowed:
            for key in keys:
                self._pending[key] = None
            if len(self._pending) > self._max_pending:
                self._pending.clear()
                self._overflowed = True
        if not (self._pending or self._overflowed):
            return
        self._fast = False
        if self._replay_due <= _now():
            self._replay_due = _now() + self.breaker.cool_down
        self._start_prober()

    def _failed(self, exc: BaseException) -> None:
        # Not failures of the backend: a breaker in front of another one, and a burst that
        # found every connection busy (the call never reached the backend).
        if isinstance(exc, BackendError) and not isinstance(
            exc, (CircuitOpenError, BackendBusyError)
        ):
            self.breaker.failure(exc)

    def _answered_late(self, start: float, end: float) -> None:
        """Slow, unless another call was answered in time meanwhile: then this one waited
        for a connection or for the loop (a burst), not for the backend."""
        if 0 < self._replied < start:  # (armed by a first answer in time: see _stalled)
            self.breaker.slow(end - start)

    def _stalled(self, now: float) -> bool:
        """Calls are outstanding and nothing answered in time since they were sent.

        Not before a first answer in time: a process's first calls also wait for
        connections to be set up, which a burst of them makes look like a stall."""
        after = self._stall_after
        return self._replied > 0 and now - self._replied > after and now - self._busy_since > after

    # --- the probe -----------------------------------------------------------------------

    def _next_wake(self) -> float | None:
        """Seconds until the probe task has something to do; None: nothing more (it ends)."""
        while True:
            delay = self.breaker.probe_delay()
            if delay is None and (self._pending or self._overflowed):
                delay = max(0.0, self._replay_due - _now())
            if delay is not None:
                return delay
            settling = self.breaker.settle_left()
            if settling is None:
                if self._prober is asyncio.current_task():
                    self._prober = None
                return None
            if settling > 0:
                return settling
            self.breaker.admits(read=True)  # settled: shown as closed even when idle

    async def _probe(self) -> None:
        """One probe: a PING (bounded by the backend's own timeout) answered within the
        slow-call threshold, not counting the loop's own delay, then the replay; or, while
        closed or settling, only the replay."""
        breaker = self.breaker
        if breaker.probe_delay() is None:  # closed or settling, with a replay pending
            self._replay_due = _now() + breaker.cool_down
            try:
                await self._replay()
            except Exception as exc:
                self._failed(exc)
            else:
                self._changed()
            return
        suspected = breaker.state is BreakerState.SUSPECT
        breaker.probe_started()
        try:
            if suspected:
                # No new calls go out now: let those in flight end, then measure the
                # backend alone. A queue drains at once; a hung backend fails them.
                deadline = _now() + breaker.cool_down
                while self._inflight and _now() < deadline:  # noqa: ASYNC110 - polled:
                    await asyncio.sleep(0.005)  # an event would cost every call a signal
                if breaker.failed_while_suspect is not None:
                    raise BackendError(f"calls in flight failed: {breaker.failed_while_suspect}")
            answered, loop_delay = await asyncio.gather(self._ping(), _loop_delay())
            if answered - loop_delay > self._slow_after:
                raise SlowCallError(
                    f"PING answered in {answered * 1000:.0f} ms "
                    f"(the loop itself took {loop_delay * 1000:.0f} ms)"
                )
            await self._replay()
        except Exception as exc:  # whatever it is, the backend is not usable
            breaker.probe_failed(exc)
            return
        self._replied = _now()
        breaker.probe_succeeded()

    async def _ping(self) -> float:
        """Seconds until the backend answered a PING (bounded by its own call timeout)."""
        start = _now()
        await self.inner.ping()
        return _now() - start

    async def _replay(self) -> None:
        """Deliver the remembered invalidations (or clear everything after an overflow),
        one replay at a time."""
        if not (self._pending or self._overflowed):
            return
        if self._replaying is None:
            self._replaying = asyncio.Lock()
        async with self._replaying:
            generation = self._generation
            if self._overflowed:
                await self.inner.delete_prefix(self._clear_prefix)
                if self._generation == generation:  # no failure was remembered meanwhile
                    self._overflowed = False
                removed = "every key of the application"
            elif self._pending:
                keys = list(self._pending)
                for start in range(0, len(keys), _REPLAY_BATCH):
                    await self.inner.delete_many(keys[start : start + _REPLAY_BATCH])
                for key in keys:  # keys remembered meanwhile stay for the next replay
                    self._pending.pop(key, None)
                removed = f"{len(keys)} keys"
            else:
                return
            self.replays += 1
        self._changed()
        logger.warning(
            "replayed invalidations missed while the cache was unreachable: removed %s",
            removed,
            extra={"event": "cache.invalidations_replayed"},
        )

    # --- calls ---------------------------------------------------------------------------

    async def _guard(self, call: Callable[[], Awaitable[T]], *, read: bool = False) -> T:
        """Every call but a closed-state ``get``: admission, replay, then as ``get``."""
        if not self.breaker.admits(read):
            raise CircuitOpenError(
                "cache reads held back after recovery"
                if self.breaker.state is BreakerState.SETTLING
                else "cache circuit open: the backend failed recently"
            )
        if self._pending or self._overflowed:
            try:
                await self._replay()  # before anything else reaches a recovered backend
            except BackendError as exc:
                self._failed(exc)
                raise
        start = _now()
        if self._inflight:
            if self._stalled(start):
                start = await self._confirm_stall(start)
        else:
            self._busy_since = start
        self._inflight += 1
        try:
            result = await call()
        except BaseException as exc:
            self._inflight -= 1
            self._failed(exc)
            raise
        self._answered(start)
        return result

    @property
    def slow_after(self) -> float:
        """Seconds after which an answer counts as slow (``slow_call_threshold``)."""
        return self._slow_after

    def admits_reads(self) -> bool:
        """Whether a read may go to the store now (the breaker closed, not settling)."""
        return self.breaker.admits(read=True)

    def _answered(self, start: float) -> None:
        """A call sent at ``start`` was answered: in time, or late (see ``_answered_late``)."""
        end = _now()
        self._inflight -= 1
        if end - start > self._slow_after:
            self._answered_late(start, end)
        else:
            self._replied = end
            self.breaker.success()

    async def _confirm_stall(self, seen_at: float) -> float:
        """A stall seen: give the loop the turns it needs to deliver answers that were only
        waiting for it (a burst of calls started in one turn, a loop blocked by CPU work);
        still none, suspect the backend. Returns the time the call may go ahead."""
        await asyncio.sleep(_CONFIRM_WAIT)
        for _ in range(_TURNS_TO_DELIVER):
            await asyncio.sleep(0)
        now = _now()
        if self.breaker.state is BreakerState.CLOSED and self._replied < seen_at and self._inflight:
            self.breaker.suspect()
        if not self.breaker.admits(read=False):
            raise CircuitOpenError("cache backend suspected: no answer in time; probing")
        if not self._inflight:
            self._busy_since = now
        return now

    async def get(self, key: str) -> bytes | None:
        if not self._fast:
            return await self._guard(lambda: self.inner.get(key), read=True)
        start = _now()
        if self._inflight:
            if start - self._replied > self._stall_after and self._stalled(start):
                start = await self._confirm_stall(start)
        else:
            self._busy_since = start
        self._inflight += 1
        try:
            value = await self.inner.get(key)
        except BaseException as exc:
            self._inflight -= 1
            self._failed(exc)
            raise
        self._answered(start)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._guard(lambda: self.inner.get_many(keys), read=True)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._guard(lambda: self.inner.set(key, value, ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        await self._guard(lambda: self.inner.set_many(items))

    async def add(self, key: str, value: bytes, ttl: float) -> bytes | None:
        return await self._guard(lambda: self.inner.add(key, value, ttl), read=True)

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

    # Administrative calls scan or span many round trips: not timed, never probes.

    async def _admin(self, call: Callable[[], Awaitable[T]]) -> T:
        if self.breaker.state is not BreakerState.SUSPECT and not self.breaker.admits(False):
            raise CircuitOpenError("cache circuit open: the backend failed recently")
        if self._pending or self._overflowed:
            try:
                await self._replay()
            except BackendError as exc:
                self._failed(exc)
                raise
        try:
            return await call()
        except BackendError as exc:
            self._failed(exc)
            raise

    async def delete_prefix(self, prefix: str) -> int:
        return await self._admin(lambda: self.inner.delete_prefix(prefix))

    async def count_prefix(self, prefix: str, limit: int) -> KeyCount:
        return await self._admin(lambda: self.inner.count_prefix(prefix, limit))

    async def info(self) -> BackendInfo:
        return await self._admin(self.inner.info)

    async def ping(self) -> None:
        await self._guard(self.inner.ping)

    async def close(self) -> None:
        """Stop the probe, then release the backend's connections."""
        self._closed = True
        prober, self._prober = self._prober, None
        if prober is not None and not prober.done():
            prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prober
        await self.inner.close()

    def __repr__(self) -> str:
        return repr(self.inner)
