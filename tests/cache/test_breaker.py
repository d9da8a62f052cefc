"""The circuit breaker and the replay of undelivered invalidations.

A real in-process store behind a switch that makes it fail, and a clock the test moves.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ogcache.cache import BackendError, MemoryBackend
from ogcache.cache.breaker import BreakerBackend, BreakerState, CircuitBreaker, CircuitOpenError


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
def guarded(store: Switchable, clock: Clock) -> BreakerBackend:
    breaker = CircuitBreaker(failure_threshold=3, cool_down=2.0, clock=clock)
    return BreakerBackend(store, breaker, clear_prefix="app:", max_pending=3)


async def fail_times(guarded: BreakerBackend, count: int) -> None:
    for _ in range(count):
        with pytest.raises(BackendError):
            await guarded.get("app:k")


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


async def test_after_the_cool_down_one_probe_closes_the_circuit(
    guarded: BreakerBackend, store: Switchable, clock: Clock
) -> None:
    store.down = True
    await fail_times(guarded, 3)
    store.down = False
    clock.now += 1.9
    with pytest.raises(CircuitOpenError):
        await guarded.get("app:k")
    clock.now += 0.2
    assert await guarded.get("app:k") is None  # the probe
    assert guarded.breaker.state is BreakerState.CLOSED
    stats = guarded.stats()
    assert stats.open_seconds == pytest.approx(2.1)


async def test_a_failed_probe_opens_the_circuit_again(
    guarded: BreakerBackend, store: Switchable, clock: Clock
) -> None:
    store.down = True
    await fail_times(guarded, 3)
    clock.now += 2.5
    await fail_times(guarded, 1)  # the probe fails
    assert guarded.breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await guarded.get("app:k")
    clock.now += 2.5
    store.down = False
    await guarded.get("app:k")
    assert guarded.breaker.state is BreakerState.CLOSED
    assert guarded.stats().trips == 1  # one outage, one trip


async def test_transitions_are_logged_once(
    guarded: BreakerBackend, store: Switchable, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store.down = True
    with caplog.at_level(logging.WARNING, logger="ogcache.cache"):
        await fail_times(guarded, 3)
        for _ in range(50):
            with pytest.raises(CircuitOpenError):
                await guarded.get("app:k")
        store.down = False
        clock.now += 3
        await guarded.get("app:k")
        await guarded.get("app:k")
    events = [record.event for record in caplog.records]  # type: ignore[attr-defined]
    assert events == ["cache.circuit_opened", "cache.circuit_closed"]


async def test_undelivered_invalidations_are_replayed_before_anything_else(
    guarded: BreakerBackend, store: Switchable, clock: Clock
) -> None:
    await guarded.set("app:a", b"old", 60)
    store.down = True
    with pytest.raises(BackendError):
        await guarded.delete_many(["app:a"])
    store.down = False  # the store comes back with its data, the old entry included
    assert await guarded.get("app:a") is None  # replayed first, so never served
    assert guarded.stats().replays == 1
    assert guarded.stats().pending_invalidations == 0


async def test_too_many_undelivered_invalidations_clear_the_keyspace(
    guarded: BreakerBackend, store: Switchable, clock: Clock
) -> None:
    for key in ("app:a", "app:b", "app:c", "app:d", "other:x"):
        await guarded.set(key, b"old", 60)
    store.down = True
    for key in ("app:a", "app:b", "app:c", "app:d"):
        with pytest.raises(BackendError):
            await guarded.delete_many([key])  # a fourth key overflows max_pending=3
    store.down = False
    clock.now += 3  # past the cool-down: the next call is the probe, which replays
    await guarded.ping()
    assert await store.get_many(["app:a", "app:b", "app:c", "app:d"]) == [None] * 4
    assert await store.get("other:x") == b"old"  # another application's key survives
