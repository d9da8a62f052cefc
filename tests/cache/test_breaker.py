"""The circuit breaker: detection, the background probe, settling, and the replay of
undelivered invalidations.

The state machine is tested with a clock the test moves. What depends on real I/O runs
against redis-servers of the test's own: one hung with SIGSTOP, one behind the latency
proxy (``tests/support/latency_proxy.py``). The background probe runs on real time, with
short cool-downs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ogcache.cache import BackendError, MemoryBackend, RedisBackend
from ogcache.cache.backend import BackendOptions
from ogcache.cache.breaker import (
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    SlowCallError,
)
from ogcache.cache.breaker_backend import BreakerBackend
from tests.support.latency_proxy import LatencyProxy
from tests.support.servers import RedisProcess


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Switchable(MemoryBackend):
    """The memory store, failing every command while ``down`` (as a dead Redis would)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if name in {"get", "get_many", "set", "set_many", "add", "replace_if", "delete_many",
                    "delete_prefix", "count_prefix", "info", "ping"}:  # fmt: skip

            async def command(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                if self.down:
                    raise BackendError("connection refused")
                return await attribute(*args, **kwargs)

            return command
        return attribute


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> Switchable:
    return Switchable()


@pytest.fixture
async def guarded(store: Switchable, clock: Clock) -> AsyncIterator[BreakerBackend]:
    """A breaker on the test's clock, whose probe never comes due unless the test says so."""
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=3, cool_down=2.0), clock=clock)
    backend = BreakerBackend(store, breaker, clear_prefix="app:", max_pending=3)
    yield backend
    await backend.close()


@pytest.fixture
async def probed(store: Switchable) -> AsyncIterator[BreakerBackend]:
    """A breaker on real time with a 50 ms cool-down and 100 ms of settling."""
    breaker = CircuitBreaker(
        BreakerSettings(failure_threshold=3, cool_down=0.05, recovery_settle=0.1)
    )
    backend = BreakerBackend(store, breaker, clear_prefix="app:", max_pending=3)
    yield backend
    await backend.close()


async def fail_times(guarded: BreakerBackend, count: int) -> None:
    for _ in range(count):
        with pytest.raises(BackendError):
            await guarded.get("app:k")


async def until(condition: Any, within: float = 5.0) -> float:
    """Seconds until ``condition()`` holds (polled every millisecond)."""
    started = time.perf_counter()
    while not condition():
        assert time.perf_counter() - started < within, "condition not reached in time"
        await asyncio.sleep(0.001)
    return time.perf_counter() - started


# --- the state machine -----------------------------------------------------------------------


async def test_the_circuit_opens_after_consecutive_failures(
    guarded: BreakerBackend, store: Switchable
) -> None:
    store.down = True
    await fail_times(guarded, 3)
    assert guarded.breaker.state is BreakerState.OPEN
    calls = store.calls
    with pytest.raises(CircuitOpenError):
        await guarded.get("app:k")
    assert store.calls == calls  # open: the store is not even asked
    assert guarded.stats().trips == 1


async def test_a_success_resets_the_failure_count(
    guarded: BreakerBackend, store: Switchable
) -> None:
    store.down = True
    await fail_times(guarded, 2)
    store.down = False
    await guarded.get("app:k")
    store.down = True
    await fail_times(guarded, 2)
    assert guarded.breaker.state is BreakerState.CLOSED


def test_slow_answers_in_a_row_make_the_backend_suspect() -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=3, slow_call_threshold=0.1))
    breaker.slow(0.2)
    breaker.slow(0.2)
    breaker.success()  # a timely answer in between resets the count
    breaker.slow(0.2)
    breaker.slow(0.2)
    assert breaker.state is BreakerState.CLOSED
    breaker.slow(0.2)
    assert breaker.state is BreakerState.SUSPECT  # the probe decides (see below)
    assert breaker.slow_calls == 5


def test_after_recovery_reads_are_held_back_while_writes_go_through(clock: Clock) -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=1, cool_down=2.0), clock=clock)
    breaker.failure(BackendError("down"))
    assert breaker.probe_delay() == 2.0  # user calls never probe; the probe is due then
    clock.now += 2.0
    breaker.probe_started()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.admits(read=False)
    breaker.probe_succeeded()
    assert breaker.state is BreakerState.SETTLING
    assert breaker.admits(read=False)  # invalidations reach the backend at once
    clock.now += 3.9
    assert not breaker.admits(read=True)  # reads wait two cool-downs (by default)
    clock.now += 0.1
    assert breaker.admits(read=True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.open_seconds == pytest.approx(2.0)


def test_a_false_alarm_while_settling_does_not_end_the_settling(clock: Clock) -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=1, cool_down=2.0), clock=clock)
    breaker.failure(BackendError("down"))
    breaker.probe_started()
    breaker.probe_succeeded()
    clock.now += 1.0
    breaker.suspect()
    breaker.probe_succeeded()
    assert breaker.state is BreakerState.SETTLING
    assert not breaker.admits(read=True)


def test_probes_run_at_a_fixed_rate_while_open(clock: Clock) -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=1, cool_down=2.0), clock=clock)
    breaker.failure(BackendError("down"))
    clock.now += 2.0
    breaker.probe_started()
    clock.now += 0.5  # the probe waited for its timeout
    breaker.probe_failed(SlowCallError("no answer"))
    assert breaker.state is BreakerState.OPEN
    assert breaker.probe_delay() == pytest.approx(1.5)  # two seconds after the last start
    assert breaker.trips == 1


def test_a_suspicion_is_settled_by_the_probe(clock: Clock) -> None:
    breaker = CircuitBreaker(clock=clock)
    assert breaker.suspect()
    assert breaker.state is BreakerState.SUSPECT
    assert not breaker.admits(read=False)
    assert breaker.probe_delay() == 0.0  # at once
    breaker.probe_succeeded()
    assert (breaker.state, breaker.false_alarms, breaker.trips) == (BreakerState.CLOSED, 1, 0)
    breaker.suspect()
    breaker.probe_started()
    breaker.probe_failed(SlowCallError("no answer"))
    assert (breaker.state, breaker.trips) == (BreakerState.OPEN, 1)


async def test_transitions_are_logged_once(
    probed: BreakerBackend, store: Switchable, caplog: pytest.LogCaptureFixture
) -> None:
    store.down = True
    with caplog.at_level(logging.WARNING, logger="ogcache.cache"):
        await fail_times(probed, 3)
        for _ in range(50):
            with pytest.raises(CircuitOpenError):
                await probed.get("app:k")
        await asyncio.sleep(0.12)  # two failed probes: nothing logged
        store.down = False
        await until(lambda: probed.breaker.state is BreakerState.CLOSED)  # settled
        await probed.get("app:k")
    events = [record.event for record in caplog.records]  # type: ignore[attr-defined]
    assert events == ["cache.circuit_opened", "cache.circuit_closed"]


# --- the background probe --------------------------------------------------------------------


async def test_user_calls_never_probe_a_background_probe_closes_the_circuit(
    probed: BreakerBackend, store: Switchable
) -> None:
    store.down = True
    await fail_times(probed, 3)
    store.down = False
    started = time.perf_counter()
    while probed.breaker.state is BreakerState.OPEN:  # every call fails at once, unasked
        calls = store.calls
        with pytest.raises(CircuitOpenError):
            await probed.get("app:k")
        assert store.calls == calls
        await asyncio.sleep(0.002)
    assert time.perf_counter() - started < 0.5
    await until(lambda: probed.breaker.state is BreakerState.SETTLING)
    assert probed.stats().probes >= 1
    with pytest.raises(CircuitOpenError, match="held back"):
        await probed.get("app:k")  # settling: reads still skip the backend
    await until(lambda: probed.breaker.state is BreakerState.CLOSED)  # settled
    assert await probed.get("app:k") is None


async def test_undelivered_invalidations_are_replayed_before_anything_is_read(
    probed: BreakerBackend, store: Switchable
) -> None:
    await probed.set("app:a", b"old", 60)
    store.down = True
    with pytest.raises(BackendError):
        await probed.delete_many(["app:a"])
    await fail_times(probed, 3)
    store.down = False  # the store comes back with its data, the old entry included
    await until(lambda: probed.breaker.state is not BreakerState.OPEN)
    await until(lambda: probed.breaker.state is BreakerState.SETTLING)
    assert await store.get("app:a") is None  # delivered by the probe, before closing
    assert probed.stats().replays == 1
    assert probed.stats().pending_invalidations == 0


async def test_a_replay_pending_while_closed_is_delivered_without_further_calls(
    store: Switchable,
) -> None:
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=3, cool_down=0.05))
    backend = BreakerBackend(store, breaker, clear_prefix="app:")
    try:
        await backend.set("app:a", b"old", 60)
        store.down = True
        with pytest.raises(BackendError):
            await backend.delete_many(["app:a"])  # one failure: the breaker stays closed
        assert breaker.state is BreakerState.CLOSED
        store.down = False
        # An idle process still delivers it: other processes rely on it (docs/resilience.md).
        await until(lambda: backend.stats().pending_invalidations == 0)
        assert await store.get("app:a") is None
    finally:
        await backend.close()


async def test_too_many_undelivered_invalidations_clear_the_keyspace(
    probed: BreakerBackend, store: Switchable
) -> None:
    for key in ("app:a", "app:b", "app:c", "app:d", "other:x"):
        await probed.set(key, b"old", 60)
    store.down = True
    for key in ("app:a", "app:b", "app:c", "app:d"):
        with pytest.raises(BackendError):
            await probed.delete_many([key])  # a fourth key overflows max_pending=3
    store.down = False
    await until(lambda: probed.stats().pending_invalidations == 0)
    assert await store.get_many(["app:a", "app:b", "app:c", "app:d"]) == [None] * 4
    assert await store.get("other:x") == b"old"  # another application's key survives


async def test_close_cancels_the_probe(store: Switchable) -> None:
    backend = BreakerBackend(
        store,
        CircuitBreaker(BreakerSettings(failure_threshold=1, cool_down=60)),
        clear_prefix="app:",
    )
    store.down = True
    await fail_times(backend, 1)
    probes = [t for t in asyncio.all_tasks() if "probe" in t.get_name()]
    assert len(probes) == 1
    await backend.close()
    assert probes[0].done()


async def test_the_probe_of_a_backend_dropped_without_close_ends(store: Switchable) -> None:
    backend = BreakerBackend(
        store,
        CircuitBreaker(BreakerSettings(failure_threshold=1, cool_down=0.05)),
        clear_prefix="app:",
    )
    store.down = True
    await fail_times(backend, 1)
    probe = next(t for t in asyncio.all_tasks() if "probe" in t.get_name())
    del backend
    gc.collect()
    await until(probe.done, within=1)


# --- real I/O: a hung, a slow and a recovered Redis ------------------------------------------


async def _steady_reads(
    backend: BreakerBackend, seconds: float, interval: float = 0.002
) -> list[tuple[float, float, str]]:
    """Reads started every ``interval`` for ``seconds``, concurrently, like requests:
    (start, duration, outcome) each."""
    results: list[tuple[float, float, str]] = []
    t0 = time.perf_counter()

    async def one() -> None:
        start = time.perf_counter()
        try:
            await backend.get("app:k")
            outcome = "ok"
        except CircuitOpenError:
            outcome = "skipped"
        except BackendError:
            outcome = "failed"
        results.append((start - t0, time.perf_counter() - start, outcome))

    tasks = []
    while time.perf_counter() - t0 < seconds:
        tasks.append(asyncio.ensure_future(one()))
        await asyncio.sleep(interval)
    await asyncio.gather(*tasks)
    return results


@pytest.mark.slow
async def test_a_hung_redis_costs_only_the_calls_already_in_flight(
    own_redis: RedisProcess,
) -> None:
    timeout = 0.3
    backend = BreakerBackend(
        RedisBackend(own_redis.url, BackendOptions(timeout=timeout, connect_timeout=timeout)),
        CircuitBreaker(
            BreakerSettings(cool_down=0.5, stall_threshold=0.02, slow_call_threshold=0.1)
        ),
        clear_prefix="app:",
    )
    try:
        await backend.set("app:k", b"v", 60)
        own_redis.pause()
        results = await _steady_reads(backend, 0.6)
        waited = [r for r in results if r[1] > 0.05]
        # Before: every read waited for the timeout until five had failed (0.3 s here).
        # Now: only reads begun within the stall threshold (plus scheduling) wait.
        assert all(start < 0.06 for start, _, _ in waited), waited
        assert all(outcome == "skipped" for start, _, outcome in results if start > 0.06)
        assert backend.breaker.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
        assert backend.stats().suspicions == 1
        assert backend.stats().trips == 1

        own_redis.resume()  # the background probe notices, no read waits for it
        await until(lambda: backend.breaker.state is BreakerState.SETTLING, within=2)
    finally:
        own_redis.resume()
        await backend.close()


@pytest.mark.slow
async def test_a_redis_slower_than_the_threshold_but_within_the_timeout_is_skipped(
    own_redis: RedisProcess,
) -> None:
    proxy = LatencyProxy(own_redis.port).start()
    backend = BreakerBackend(
        RedisBackend(proxy.url, BackendOptions(timeout=0.5, connect_timeout=0.5)),
        CircuitBreaker(
            BreakerSettings(cool_down=0.3, slow_call_threshold=0.1, stall_threshold=0.02)
        ),
        clear_prefix="app:",
    )
    try:
        await backend.set("app:k", b"v", 60)
        proxy.set_delay(0.2)  # answers come, 0.2 s late: below the 0.5 s timeout
        results = await _steady_reads(backend, 0.8)
        late = [r for r in results if r[1] > 0.05]
        assert all(start < 0.06 for start, _, _ in late), late  # before: every read, 0.2 s
        assert all(outcome == "skipped" for start, _, outcome in results if start > 0.06)
        assert backend.breaker.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
        await asyncio.sleep(0.4)  # probes keep finding it slow: it stays open
        assert backend.breaker.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)

        proxy.set_delay(0)
        await until(lambda: backend.breaker.state is BreakerState.SETTLING, within=2)
    finally:
        await backend.close()
        proxy.stop()


@pytest.mark.slow
async def test_steadily_slow_answers_open_the_circuit(own_redis: RedisProcess) -> None:
    proxy = LatencyProxy(own_redis.port).start()
    backend = BreakerBackend(
        RedisBackend(proxy.url, BackendOptions(timeout=0.5, connect_timeout=0.5)),
        CircuitBreaker(BreakerSettings(failure_threshold=3, cool_down=5, slow_call_threshold=0.1)),
        clear_prefix="app:",
    )
    try:
        assert await backend.get("app:k") is None  # in time: the detections are armed
        proxy.set_delay(0.15)
        for _ in range(3):  # one at a time: no stall to see, only slow answers
            assert await backend.get("app:k") is None
        assert backend.breaker.state is BreakerState.SUSPECT
        await until(lambda: backend.breaker.state is BreakerState.OPEN, within=1)  # probed
        assert backend.stats().slow_calls == 3
    finally:
        await backend.close()
        proxy.stop()


@pytest.mark.slow
async def test_a_blocked_loop_is_not_taken_for_a_hung_backend(own_redis: RedisProcess) -> None:
    proxy = LatencyProxy(own_redis.port).start()
    backend = BreakerBackend(
        RedisBackend(proxy.url),
        CircuitBreaker(BreakerSettings(stall_threshold=0.02, slow_call_threshold=0.5)),
        clear_prefix="app:",
    )
    try:
        await backend.set("app:k", b"v", 60)
        proxy.set_delay(0.05)
        first = asyncio.ensure_future(backend.get("app:k"))
        await asyncio.sleep(0.01)  # sent; its answer comes 50 ms later
        # The loop is blocked (a CPU-bound request, say): the answer arrives but waits
        # unread, and the next call sees a call outstanding with no answer for 200 ms.
        time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop is the point
        proxy.set_delay(0)
        assert await backend.get("app:k") == b"v"  # it gave the loop a turn: answered
        assert await first == b"v"
        assert backend.stats().suspicions == 0
    finally:
        await backend.close()
        proxy.stop()


@pytest.mark.slow
async def test_a_queue_for_connections_is_not_taken_for_a_slow_backend(
    own_redis: RedisProcess,
) -> None:
    """A burst through a small pool: answers come late because calls wait for a
    connection, not because the backend is slow: no trip, the cache in use throughout."""
    backend = BreakerBackend(
        RedisBackend(own_redis.url, BackendOptions(max_connections=2, pool_timeout=30)),
        CircuitBreaker(BreakerSettings(failure_threshold=3, cool_down=5, slow_call_threshold=0.01)),
        clear_prefix="app:",
    )
    try:
        await backend.set("app:k", b"v", 60)
        results = await asyncio.gather(
            *(backend.get("app:k") for _ in range(1000)), return_exceptions=True
        )
        # Answers late because of the queue are excused by the ones answered in time; if
        # the breaker suspected the backend anyway, the probe cleared it.
        assert all(r == b"v" or isinstance(r, CircuitOpenError) for r in results)
        await until(lambda: backend.breaker.state is BreakerState.CLOSED, within=2)
        stats = backend.stats()
        assert stats.trips == 0
        assert stats.false_alarms == stats.suspicions
        assert await backend.get("app:k") == b"v"
    finally:
        await backend.close()


@pytest.mark.slow
async def test_another_process_s_missed_invalidation_is_delivered_before_we_read_again(
    own_redis: RedisProcess,
) -> None:
    """Two breakers over one Redis stand for two processes: the writer's invalidation
    fails while Redis hangs; the reader must not read the old entry after recovery."""

    def process() -> BreakerBackend:
        return BreakerBackend(
            RedisBackend(own_redis.url, BackendOptions(timeout=0.1, connect_timeout=0.1)),
            CircuitBreaker(BreakerSettings(cool_down=0.2, stall_threshold=0.02)),
            clear_prefix="app:",
        )

    writer, reader = process(), process()
    seen: list[bytes | None] = []
    try:
        await writer.set("app:k", b"old", 60)
        assert await reader.get("app:k") == b"old"
        own_redis.pause()
        with pytest.raises(BackendError):
            await writer.delete_many(["app:k"])  # remembered by the writer only
        reading = asyncio.ensure_future(_steady_reads(reader, 1.5, interval=0.005))
        await asyncio.sleep(0.3)
        own_redis.resume()
        await asyncio.sleep(0.05)

        async def poll() -> None:
            while not reading.done():
                with contextlib.suppress(BackendError):
                    seen.append(await reader.get("app:k"))
                await asyncio.sleep(0.002)

        await asyncio.gather(reading, poll())
        assert seen, "the reader never read after the recovery"
        assert b"old" not in seen
        assert await reader.get("app:k") is None
    finally:
        own_redis.resume()
        await writer.close()
        await reader.close()
