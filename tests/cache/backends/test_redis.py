"""The Redis backend against real redis-server processes: round trips, timeouts, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from ogcache.cache import MISSING, BackendBusyError, BackendError, Cache, Namespace, RedisBackend
from ogcache.cache.backend import BackendOptions
from ogcache.cache.backends.redis import escape_glob
from ogcache.cache.breaker import BreakerSettings
from ogcache.cache.policy import Policy
from tests.conftest import unique_prefix
from tests.support.redis_commands import counting_connection_class
from tests.support.servers import RedisProcess, free_port

ITEMS = Namespace("item", ttl=60)


@pytest.fixture
async def counted(redis_url: str) -> AsyncIterator[tuple[Cache, type]]:
    connection_class = counting_connection_class()
    backend = RedisBackend(redis_url, connection_class=connection_class)
    cache = Cache(backend, prefix=unique_prefix())
    await cache.ping()  # opens the connection and sends its handshake
    connection_class.writes = 0
    yield cache, connection_class
    await cache.clear()
    await cache.close()


async def test_get_many_is_one_round_trip(counted: tuple[Cache, type]) -> None:
    cache, connection = counted
    await cache.get_many(ITEMS, [str(i) for i in range(100)])
    assert connection.writes == 1


async def test_set_many_is_one_round_trip(counted: tuple[Cache, type]) -> None:
    cache, connection = counted
    await cache.set_many(ITEMS, {str(i): {"i": i} for i in range(100)})
    assert connection.writes == 1
    assert len(await cache.get_many(ITEMS, [str(i) for i in range(100)])) == 100


async def test_delete_many_is_one_round_trip(counted: tuple[Cache, type]) -> None:
    cache, connection = counted
    await cache.delete_many(ITEMS, [str(i) for i in range(100)])
    assert connection.writes == 1


async def test_a_hit_is_one_round_trip(counted: tuple[Cache, type]) -> None:
    cache, connection = counted
    await cache.set(ITEMS, "k", 1)
    connection.writes = 0

    async def load() -> int:
        raise AssertionError("a hit must not load")

    assert await cache.get_or_load(ITEMS, "k", load) == 1
    assert connection.writes == 1


def test_escape_glob_escapes_every_special_character() -> None:
    assert escape_glob("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"


async def test_clear_prefix_scans_in_batches_across_many_keys(redis_url: str) -> None:
    cache = Cache(RedisBackend(redis_url), prefix=unique_prefix())
    try:
        await cache.set_many(ITEMS, {str(i): i for i in range(2500)})
        assert await cache.clear_prefix("item:") == 2500
        assert (await cache.count_keys()).count == 0
    finally:
        await cache.clear()
        await cache.close()


async def test_count_keys_stops_at_its_bound(redis_url: str) -> None:
    backend = RedisBackend(redis_url, BackendOptions(scan_batch=10))
    cache = Cache(backend, prefix=unique_prefix(), policy=Policy(key_count_limit=10))
    try:
        await cache.set_many(ITEMS, {str(i): i for i in range(100)})
        counted = await cache.count_keys()
        assert not counted.complete
        assert counted.count < 100
    finally:
        await cache.clear()
        await cache.close()


async def test_a_thousand_concurrent_misses_wait_for_the_pool_instead_of_failing(
    redis_url: str,
) -> None:
    # Timeouts far above the burst's length: the test is about waiting for the pool, not
    # about how long a busy machine (a starved event loop) takes to serve 1,000 calls
    # through 8 connections.
    backend = RedisBackend(
        redis_url,
        BackendOptions(max_connections=8, pool_timeout=30, timeout=10, connect_timeout=10),
    )
    cache = Cache(backend, prefix=unique_prefix())
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0)
        return 1

    try:
        results = await asyncio.gather(
            *(cache.get_or_load(ITEMS, str(i), load) for i in range(1000))
        )
        assert results == [1] * 1000
        assert cache.stats()["item"].errors == 0
        await cache.clear()
    finally:
        await cache.close()


async def test_a_new_connection_sends_nothing_before_its_first_command(redis_url: str) -> None:
    """No HELLO, no CLIENT SETINFO: each is a round trip before a new connection's first
    command (a burst opening connections to a Redis far away waited for them)."""
    backend = RedisBackend(redis_url)
    try:
        info = await backend.client.client_info()
    finally:
        await backend.close()
    assert info["resp"] == "2"
    assert info.get("lib-name", "") == ""
    assert info.get("lib-ver", "") == ""


async def test_a_full_pool_fails_after_pool_timeout_and_does_not_open_the_circuit(
    redis_url: str,
) -> None:
    """A burst that finds every connection busy is this process's overload, not a failed
    Redis: the call fails (the data path degrades to a miss) and the breaker stays closed."""
    backend = RedisBackend(redis_url, BackendOptions(max_connections=1, pool_timeout=0.1))
    cache = Cache(backend, prefix=unique_prefix(), breaker=BreakerSettings(failure_threshold=1))
    await cache.ping()
    held = await backend.pool.get_connection()
    try:
        started = time.monotonic()
        with pytest.raises(BackendBusyError, match=r"pool_timeout=0\.1"):
            await backend.get("k")
        assert 0.09 < time.monotonic() - started < 1
        assert await cache.get(ITEMS, "k") is MISSING  # degraded to a miss
        assert cache.stats()["item"].errors == 1
        assert (breaker := cache.breaker_stats()) is not None
        assert breaker.state.value == "closed"
        await backend.pool.release(held)
        await cache.set(ITEMS, "k", 1)
        assert await cache.get(ITEMS, "k") == 1
        await cache.clear()
    finally:
        await backend.pool.release(held)  # (released already: a no-op)
        await cache.close()


# --- failures: servers of the test's own on other loopback ports ----------------------------


async def _load() -> str:
    return "from the database"


@pytest.mark.slow
async def test_a_stopped_redis_only_makes_calls_slower(own_redis: RedisProcess) -> None:
    cache = Cache(
        RedisBackend(own_redis.url, BackendOptions(timeout=0.2, connect_timeout=0.2)), prefix="t"
    )
    await cache.set(ITEMS, "k", "cached")
    assert await cache.get_or_load(ITEMS, "k", _load) == "cached"

    own_redis.stop()
    started = time.monotonic()
    for _ in range(20):
        assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
        await cache.set(ITEMS, "k", "ignored")
        await cache.delete(ITEMS, "k")
        assert await cache.get_many(ITEMS, ["k"]) == {}
    elapsed = time.monotonic() - started
    stats = cache.stats()["item"]
    assert stats.errors == 5  # then the circuit opened: no more waiting on a dead server
    assert stats.errors + stats.short_circuited >= 80
    assert stats.loads == 20
    assert elapsed < 5 * 0.5 + 1  # five bounded failures, the rest skip the cache at once
    assert (await cache.report()).breaker.state.value == "open"  # type: ignore[union-attr]
    await cache.close()


@pytest.mark.slow
async def test_a_hung_redis_is_bounded_by_the_call_timeout(own_redis: RedisProcess) -> None:
    cache = Cache(
        RedisBackend(own_redis.url, BackendOptions(timeout=0.2, connect_timeout=0.2)), prefix="t"
    )
    await cache.ping()
    own_redis.pause()
    try:
        started = time.monotonic()
        assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
        assert time.monotonic() - started < 1.5
        assert cache.stats()["item"].errors == 1
    finally:
        own_redis.resume()
    await cache.close()


async def test_an_unreachable_redis_serves_from_the_loader() -> None:
    cache = Cache(RedisBackend(f"redis://127.0.0.1:{free_port()}/0"), prefix="t")
    assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
    assert cache.stats()["item"].errors == 1
    report = await cache.report()
    assert not report.available
    assert report.error is not None
    await cache.close()


async def test_administrative_calls_raise_when_redis_is_unreachable() -> None:
    cache = Cache(RedisBackend(f"redis://127.0.0.1:{free_port()}/0"), prefix="t")
    with pytest.raises(BackendError, match="redis"):
        await cache.clear()
    with pytest.raises(BackendError):
        await cache.clear_prefix("item:")
    with pytest.raises(BackendError):
        await cache.ping()
    await cache.close()


@pytest.mark.slow
async def test_the_cache_recovers_when_redis_comes_back(own_redis: RedisProcess) -> None:
    cache = Cache(
        RedisBackend(own_redis.url, BackendOptions(timeout=0.2, connect_timeout=0.2)), prefix="t"
    )
    await cache.ping()
    port, directory = own_redis.port, own_redis.directory
    own_redis.stop()
    assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
    restarted = RedisProcess(port=port, directory=directory).start()
    try:
        assert await cache.get_or_load(ITEMS, "k", _load) == "from the database"
        assert await cache.get(ITEMS, "k") == "from the database"
    finally:
        restarted.stop()
        await cache.close()
