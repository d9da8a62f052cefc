"""The in-process tier (L1): bounds and generations, and invalidation from other processes.

Two :class:`Cache` objects on one Redis stand for two processes: each has its own pool and
its own invalidation feed connection, exactly what Redis sees of two processes
(``bench/invalidation.py`` measures the delay across real processes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from ogcache.cache import MISSING, Cache, CacheBackend, MemoryBackend, Namespace, RedisBackend
from ogcache.cache.backend import BackendOptions
from ogcache.cache.backends.redis_cluster import RedisClusterBackend
from ogcache.cache.backends.redis_tracking import RedisTrackingFeed
from ogcache.cache.breaker import BreakerState
from ogcache.cache.l1 import ReadScope
from ogcache.cache.local import LocalTier
from tests.conftest import unique_prefix
from tests.support.servers import RedisProcess, start_redis

NS = Namespace("menu", ttl=60, local_ttl=30)
PLAIN = Namespace("plain", ttl=60)


# --- the tier itself -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_kept_until_its_ttl() -> None:
    clock = Clock()
    tier = LocalTier(clock=clock)
    assert tier.put("k", {"a": 1}, 10, ttl=5, token=tier.token("k"))
    assert tier.get("k") == {"a": 1}
    clock.now += 5
    assert tier.get("k") is MISSING
    assert len(tier) == 0


def test_none_is_a_value() -> None:
    tier = LocalTier()
    tier.put("k", None, 4, ttl=5, token=tier.token("k"))
    assert tier.get("k") is None


def test_least_recently_used_go_first_when_entries_or_bytes_overflow() -> None:
    tier = LocalTier(max_entries=3, max_bytes=100)
    for key in "abc":
        tier.put(key, key, 10, ttl=60, token=tier.token(key))
    tier.get("a")  # b is now the least recently used
    tier.put("d", "d", 10, ttl=60, token=tier.token("d"))
    assert [tier.get(key) for key in "abcd"] == ["a", MISSING, "c", "d"]
    tier.put("big", "big", 85, ttl=60, token=tier.token("big"))
    assert tier.stats().bytes <= 100
    assert tier.get("big") == "big"
    assert tier.stats().evictions >= 3


def test_a_value_larger_than_the_whole_tier_is_refused() -> None:
    tier = LocalTier(max_bytes=100)
    assert not tier.put("k", "v", 101, ttl=60, token=tier.token("k"))


def test_a_value_read_before_an_invalidation_is_refused() -> None:
    tier = LocalTier()
    token = tier.token("k")
    tier.invalidate(["k"])
    assert not tier.put("k", "old", 3, ttl=60, token=token)
    assert tier.put("k", "new", 3, ttl=60, token=tier.token("k"))


def test_a_flush_refuses_every_value_read_before_it() -> None:
    tier = LocalTier()
    tokens = {key: tier.token(key) for key in "abc"}
    tier.put("a", "a", 1, ttl=60, token=tokens["a"])
    tier.flush()
    assert tier.get("a") is MISSING
    assert not any(tier.put(k, k, 1, ttl=60, token=t) for k, t in tokens.items())


def test_namespace_rejects_a_negative_local_ttl() -> None:
    with pytest.raises(ValueError, match="local_ttl"):
        Namespace("x", ttl=60, local_ttl=-1)


# --- two processes on one Redis --------------------------------------------------------------


@pytest.fixture(params=["redis", "redis-cluster"])
def make_backend(request: pytest.FixtureRequest) -> Callable[[], CacheBackend]:
    if request.param == "redis-cluster":
        url = request.getfixturevalue("redis_cluster").url
        return lambda: RedisClusterBackend(url)
    url = request.getfixturevalue("redis_url")
    return lambda: RedisBackend(url)


@pytest.fixture
async def pair(make_backend: Callable[[], CacheBackend]) -> AsyncIterator[tuple[Cache, Cache]]:
    prefix = unique_prefix()
    first, second = Cache(make_backend(), prefix=prefix), Cache(make_backend(), prefix=prefix)
    yield first, second
    await first.clear()
    await first.close()
    await second.close()


async def until(condition: Callable[[], bool], within: float = 5.0) -> float:
    """Seconds until ``condition()`` held (polled on every loop iteration)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.001)
    return time.monotonic() - start


async def warm(cache: Cache, key: str, loader: Callable[[], Awaitable[Any]]) -> None:
    """Read until the value is served from the tier (the feed goes live first)."""
    await until(lambda: (state := cache.local_state()) is None or state[1])
    for _ in range(200):
        before = cache.stats().get(NS.name)
        await cache.get_or_load(NS, key, loader)
        after = cache.stats()[NS.name]
        if before is not None and after.local_hits > before.local_hits:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the value never came from the in-process tier")


def counter_loader() -> tuple[Callable[[], Awaitable[dict[str, int]]], list[int]]:
    calls: list[int] = []

    async def load() -> dict[str, int]:
        calls.append(1)
        return {"version": len(calls)}

    return load, calls


async def test_a_hit_in_the_tier_makes_no_round_trip(pair: tuple[Cache, Cache]) -> None:
    cache, _ = pair
    load, calls = counter_loader()
    await warm(cache, "k", load)
    operations = cache.stats()[NS.name].operation_latency.count
    for _ in range(100):
        assert await cache.get_or_load(NS, "k", load) == {"version": 1}
    stats = cache.stats()[NS.name]
    assert stats.operation_latency.count == operations  # no backend call
    assert stats.local_hits >= 100
    assert calls == [1]


async def test_an_invalidation_in_one_process_reaches_the_others(
    pair: tuple[Cache, Cache],
) -> None:
    first, second = pair
    load, _ = counter_loader()
    await warm(first, "k", load)
    await warm(second, "k", load)
    await first.delete(NS, "k")
    assert await first.get_or_load(NS, "k", load) == {"version": 2}  # own process: at once
    delay = await until(lambda: len(second.l1.tier) == 0)
    assert delay < 1.0
    assert await second.get_or_load(NS, "k", load) == {"version": 2}


async def test_a_change_made_outside_ogcache_is_seen(
    pair: tuple[Cache, Cache], make_backend: Callable[[], CacheBackend]
) -> None:
    cache, _ = pair
    load, _ = counter_loader()
    await warm(cache, "k", load)
    other = Cache(make_backend(), prefix=cache.prefix)  # any client: a plain UNLINK
    await other.backend.delete_many([cache.full_key(NS, "k")])
    await other.close()
    await until(lambda: len(cache.l1.tier) == 0)
    assert await cache.get_or_load(NS, "k", load) == {"version": 2}


async def test_batches_mix_tier_hits_and_backend_reads(pair: tuple[Cache, Cache]) -> None:
    cache, _ = pair
    load, _ = counter_loader()
    await warm(cache, "a", load)
    await cache.set(PLAIN, "b", {"plain": True})
    await cache.set(NS, "c", {"c": True})
    values = await cache.get_entries([(NS, "a"), (PLAIN, "b"), (NS, "c"), (NS, "absent")])
    assert values[:3] == [{"version": 1}, {"plain": True}, {"c": True}]
    assert cache.stats()[NS.name].local_hits >= 2
    hits = cache.stats()[NS.name].local_hits
    assert (await cache.get_many(NS, ["a", "c"])) == {"a": {"version": 1}, "c": {"c": True}}
    assert cache.stats()[NS.name].local_hits == hits + 2  # c came from the tier this time


async def test_the_tier_never_outlives_the_entry(pair: tuple[Cache, Cache]) -> None:
    cache, _ = pair
    load, _ = counter_loader()
    await cache.get_or_load(NS, "k", load, ttl=0.3)
    await warm(cache, "k", load)
    await asyncio.sleep(0.35)
    assert cache.l1.tier.get(cache.full_key(NS, "k")) is MISSING


class ReplyAfter(RedisBackend):
    """Runs ``meanwhile`` after Redis answered a GET and before the caller sees the reply."""

    meanwhile: Callable[[], Awaitable[None]] | None = None

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        if self.meanwhile is not None:
            await self.meanwhile()
        return value


async def test_a_value_read_before_a_concurrent_invalidation_is_not_kept(
    redis_url: str,
) -> None:
    """Our GET returns the old value; another process's invalidation reaches our feed before
    we handle that reply: the tier must not keep the old value (the generation check)."""
    prefix = unique_prefix()
    backend = ReplyAfter(redis_url)
    reader, writer = Cache(backend, prefix=prefix), Cache(RedisBackend(redis_url), prefix=prefix)
    try:
        load, _ = counter_loader()
        await warm(reader, "k", load)
        full = reader.full_key(NS, "k")
        reader.l1.tier.invalidate([full])  # the next read goes to Redis
        feed = reader.l1.feed
        assert isinstance(feed, RedisTrackingFeed)

        async def invalidated_meanwhile() -> None:
            seen = feed.messages
            await writer.delete(NS, "k")
            await until(lambda: feed.messages > seen)

        backend.meanwhile = invalidated_meanwhile
        assert await reader.get_or_load(NS, "k", load) == {"version": 1}  # what the GET said
        assert reader.l1.tier.get(full) is MISSING  # ...but not kept
    finally:
        await writer.clear()
        await reader.close()
        await writer.close()


async def test_a_lost_feed_empties_the_tier_and_it_serves_again_once_back(
    pair: tuple[Cache, Cache], make_backend: Callable[[], CacheBackend], redis_url: str
) -> None:
    cache, _ = pair
    if not isinstance(cache.backend, RedisBackend):
        pytest.skip("CLIENT KILL of the feed is shown on a single node")
    load, _ = counter_loader()
    await warm(cache, "k", load)
    client = Redis.from_url(redis_url)
    try:
        killed = await client.client_kill_filter(_type="pubsub")
    finally:
        await client.aclose()
    assert killed >= 1
    assert cache.l1.feed is not None
    await until(lambda: not cache.l1.feed.live)  # type: ignore[union-attr]
    assert len(cache.l1.tier) == 0
    await warm(cache, "k", load)  # live again: serving from the tier again
    assert cache.l1.feed.reconnects >= 1  # type: ignore[attr-defined]


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[tuple[RedisProcess, Cache]]:
    """A redis-server of the test's own (to stop or hang), and a cache on it."""
    server = start_redis(tmp_path)
    cache = Cache(RedisBackend(server.url, BackendOptions(timeout=0.2)), prefix=unique_prefix())
    try:
        yield server, cache
    finally:
        if server.process is not None:
            server.resume()
        await cache.close()
        server.stop()


@pytest.mark.slow
async def test_a_hung_redis_stops_the_tier_within_the_silence_bound(
    own_server: tuple[RedisProcess, Cache],
) -> None:
    server, cache = own_server
    load, calls = counter_loader()
    await warm(cache, "k", load)
    server.pause()
    hung = time.monotonic()
    assert cache.l1.feed is not None
    await until(lambda: not cache.l1.feed.live, within=3)  # type: ignore[union-attr]
    assert time.monotonic() - hung <= 1.2  # max_silence 1.0 s, heartbeat 0.2 s
    # Not served from the tier any more: from the loader (Redis does not answer).
    assert await cache.get_or_load(NS, "k", load) == {"version": 2}
    assert len(calls) == 2
    server.resume()
    await warm(cache, "k", load)


async def test_an_invalidation_that_fails_still_empties_this_process_tier(
    own_server: tuple[RedisProcess, Cache],
) -> None:
    server, cache = own_server
    load, _ = counter_loader()
    await warm(cache, "k", load)
    server.stop()
    assert not await cache.delete(NS, "k")
    assert cache.l1.tier.get(cache.full_key(NS, "k")) is MISSING


async def test_without_an_invalidation_feed_the_namespace_uses_the_backend_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = Cache(MemoryBackend(), prefix=unique_prefix())
    load, calls = counter_loader()
    with caplog.at_level(logging.INFO, logger="ogcache.cache"):
        for _ in range(3):
            assert await cache.get_or_load(NS, "k", load) == {"version": 1}
    assert cache.stats()[NS.name].local_hits == 0
    assert [r for r in caplog.records if r.__dict__.get("event") == "cache.local_unavailable"]
    assert len(caplog.records) == 1  # logged once
    assert calls == [1]
    await cache.close()


async def test_the_report_shows_the_tier(pair: tuple[Cache, Cache]) -> None:
    cache, _ = pair
    load, _ = counter_loader()
    await warm(cache, "k", load)
    report = await cache.report()
    assert report.local is not None
    assert report.local.entries == 1
    assert report.local_live is True


@pytest.mark.slow
async def test_an_outage_is_logged_once_and_the_tier_comes_back_after_a_restart(
    own_server: tuple[RedisProcess, Cache], caplog: pytest.LogCaptureFixture
) -> None:
    server, cache = own_server
    load, _ = counter_loader()
    await warm(cache, "k", load)
    with caplog.at_level(logging.WARNING, logger="ogcache.cache"):
        server.stop()
        await asyncio.sleep(1.6)  # several reconnection attempts
        assert cache.l1.feed is not None
        assert cache.l1.feed.reconnects >= 3  # type: ignore[attr-defined]
        server.start()  # same port, empty
        await warm(cache, "k", load)
    events = [r.__dict__.get("event") for r in caplog.records]
    assert events.count("cache.feed_interrupted") == 1
    assert events.count("cache.feed_restored") == 1


@pytest.mark.slow
async def test_a_blocked_event_loop_is_not_taken_for_a_silent_server(redis_url: str) -> None:
    """A stretch of CPU work longer than the silence bound must not cost a reconnection (and
    an emptied tier): the server answered, this process just could not listen."""
    backend = RedisBackend(redis_url)
    feed = backend.invalidation_feed(f"{unique_prefix()}:")
    feed.start(lambda keys: None)
    try:
        await until(lambda: feed.live)
        for _ in range(2):
            await asyncio.sleep(0.3)  # idle: the feed pings, the answer comes back
            time.sleep(1.3)  # noqa: ASYNC251  # the event loop blocked past max_silence
            await until(lambda: feed.live)
        assert feed.reconnects == 0
    finally:
        await feed.close()
        await backend.close()


async def test_a_cache_closed_while_its_feed_subscribes_leaves_no_connection_open(
    redis_url: str,
) -> None:
    """A CLI command opens a cache, reads once (which starts the invalidation feed) and closes
    it at once: the feed's connection, cancelled mid-subscribe, must be closed, not left to
    the garbage collector ("unclosed Connection")."""
    import gc
    import warnings

    menu = Namespace("menu", 60, local_ttl=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(5):
            cache = Cache(RedisBackend(redis_url), prefix=unique_prefix())
            await cache.get(menu, "items")
            await cache.close()
        gc.collect()
    unclosed = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == [], [str(w.message) for w in unclosed]


# --- reads that must see every earlier change: the read scope and the feed's fence -----------


async def test_in_a_read_scope_a_change_made_elsewhere_is_seen_at_once(
    pair: tuple[Cache, Cache],
) -> None:
    writer, reader = pair
    keys = [f"k{i}" for i in range(30)]
    loaders = {key: counter_loader() for key in keys}
    for key in keys:
        await warm(reader, key, loaders[key][0])
    for key in keys:
        await writer.delete(NS, key)  # Redis has applied it: the reader's feed may lag
        with ReadScope():
            assert await reader.get_or_load(NS, key, loaders[key][0]) == {"version": 2}


async def test_a_read_scope_waits_for_one_fence_whatever_it_reads(
    pair: tuple[Cache, Cache],
) -> None:
    cache, _ = pair
    load, _ = counter_loader()
    await warm(cache, "k", load)
    feed = cache.l1.feed
    assert isinstance(feed, RedisTrackingFeed)
    fences: list[bool] = []
    fence = feed.fence

    async def counted(patience: float | None = None) -> bool:
        fences.append(await fence(patience))
        return fences[-1]

    feed.fence = counted  # type: ignore[method-assign]
    for _ in range(10):
        await cache.get_or_load(NS, "k", load)  # outside a scope: no fence
    assert fences == []
    with ReadScope():
        for _ in range(10):
            await cache.get_or_load(NS, "k", load)
            await cache.get_entries([(NS, "k")])
            await cache.get_local(NS, "k")
    assert fences == [True]
    assert cache.stats()[NS.name].local_hits >= 30
    with ReadScope():  # a key the tier does not hold: one read of Redis, no fence before it
        await cache.get_or_load(NS, "not-held", load)
        await cache.get_entries([(NS, "also-not-held")])
    assert fences == [True]


async def test_concurrent_fences_share_rounds_and_each_sees_earlier_changes(
    pair: tuple[Cache, Cache],
) -> None:
    writer, reader = pair
    load, _ = counter_loader()
    await warm(reader, "k", load)
    feed = reader.l1.feed
    assert feed is not None
    assert all(await asyncio.gather(*(feed.fence() for _ in range(200))))
    for round_index in range(20):
        await writer.set(NS, "k", {"version": 100 + round_index})
        assert await feed.fence()
        assert len(reader.l1.tier) == 0  # the change was reported before the fence returned
        await reader.get_or_load(NS, "k", load)


@pytest.mark.slow
async def test_a_fence_on_a_hung_redis_answers_false_and_the_scope_reads_the_store(
    own_server: tuple[RedisProcess, Cache],
) -> None:
    server, cache = own_server
    load, calls = counter_loader()
    await warm(cache, "k", load)
    feed = cache.l1.feed
    assert feed is not None
    server.pause()
    try:
        started = time.monotonic()
        assert await feed.fence() is False
        assert time.monotonic() - started < 5  # max_silence 1 s plus a heartbeat, loaded
    finally:
        server.resume()
    await warm(cache, "k", load)
    await feed.close()
    assert await feed.fence() is False
    with ReadScope():  # the tier cannot serve: read from the store (or the loader)
        assert await cache.get_or_load(NS, "k", load) is not None
    assert len(calls) >= 1


_ADMITTING = (BreakerState.CLOSED, BreakerState.SETTLING)


@pytest.mark.slow
async def test_while_the_breaker_holds_reads_back_a_read_scope_does_not_wait_on_the_fence(
    own_server: tuple[RedisProcess, Cache],
) -> None:
    server, cache = own_server
    load, calls = counter_loader()
    await warm(cache, "k", load)
    server.pause()
    try:
        plain_load, _ = counter_loader()  # concurrent reads left unanswered: a stall
        await asyncio.gather(*(cache.get_or_load(PLAIN, f"p{i}", plain_load) for i in range(10)))
        stats = cache.breaker_stats()
        assert stats is not None
        assert stats.state not in _ADMITTING, stats
        assert cache.l1.feed is not None
        assert cache.l1.feed.live  # a fence would wait about a second
        with ReadScope():
            started = time.monotonic()
            assert await cache.get_or_load(NS, "k", load) == {"version": 2}  # the loader's
            assert time.monotonic() - started < 0.5  # not the fence's second on a hung Redis
        assert len(calls) == 2
    finally:
        server.resume()


async def test_a_closed_feed_connection_turns_the_tier_off_at_once(
    own_server: tuple[RedisProcess, Cache],
) -> None:
    """Not a heartbeat later: the feed's other task (its fence rounds) never ends, so the
    subscription must wake on the first of its tasks to end, not on all of them."""
    server, cache = own_server
    load, _ = counter_loader()
    await warm(cache, "k", load)
    feed = cache.l1.feed
    assert feed is not None
    server.stop()  # the server has exited: its sockets are closed, the EOF is there to read
    turns = 0
    while feed.live:
        await asyncio.sleep(0)
        turns += 1
        assert turns < 1_000, "still live: the lost connection was not noticed"
    assert len(cache.l1.tier) == 0
