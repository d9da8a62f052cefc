"""``Cache.update``: atomic read-modify-write of one entry, run once per backend."""

from __future__ import annotations

import asyncio

import pytest

from ogcache.cache import MISSING, Cache, Namespace, RedisBackend
from ogcache.cache.exceptions import BackendError
from tests.support.servers import free_port

COUNTERS = Namespace("counter", ttl=60)


def increment(current: int | None) -> int:
    return (current or 0) + 1


async def test_update_creates_an_absent_entry(cache: Cache) -> None:
    assert await cache.update(COUNTERS, "c", increment) == 1
    assert await cache.get(COUNTERS, "c") == 1


async def test_update_changes_the_stored_value(cache: Cache) -> None:
    await cache.set(COUNTERS, "c", 41)
    assert await cache.update(COUNTERS, "c", increment) == 42
    assert await cache.get(COUNTERS, "c") == 42


async def test_concurrent_increments_lose_nothing(cache: Cache) -> None:
    await asyncio.gather(*(cache.update(COUNTERS, "c", increment) for _ in range(50)))
    assert await cache.get(COUNTERS, "c") == 50


async def test_concurrent_increments_through_two_caches_lose_nothing(cache: Cache) -> None:
    """Two front ends over one store, as two processes would be."""
    other = Cache(cache.backend, prefix=cache.prefix)
    updates = [(cache if n % 2 else other).update(COUNTERS, "c", increment) for n in range(40)]
    await asyncio.gather(*updates)
    assert await cache.get(COUNTERS, "c") == 40


async def test_returning_none_deletes_the_entry(cache: Cache) -> None:
    await cache.set(COUNTERS, "c", 3)
    assert await cache.update(COUNTERS, "c", lambda current: None) is None
    assert await cache.get(COUNTERS, "c") is MISSING
    assert await cache.update(COUNTERS, "c", lambda current: None) is None  # absent: no-op


async def test_returning_the_same_value_writes_nothing(cache: Cache) -> None:
    await cache.set(COUNTERS, "c", {"n": 1})
    before = await cache.backend.get(cache.full_key(COUNTERS, "c"))
    assert await cache.update(COUNTERS, "c", lambda current: current) == {"n": 1}
    assert await cache.backend.get(cache.full_key(COUNTERS, "c")) == before


async def test_an_exception_in_change_aborts_and_writes_nothing(cache: Cache) -> None:
    await cache.set(COUNTERS, "c", 7)

    def refuse(current: int | None) -> int:
        raise ValueError("over the limit")

    with pytest.raises(ValueError, match="over the limit"):
        await cache.update(COUNTERS, "c", refuse)
    assert await cache.get(COUNTERS, "c") == 7


async def test_an_expired_entry_is_given_as_none(cache: Cache) -> None:
    await cache.set(COUNTERS, "c", 100, ttl=0.05)
    await asyncio.sleep(0.5)
    seen: list[int | None] = []

    def record(current: int | None) -> int:
        seen.append(current)
        return 1

    assert await cache.update(COUNTERS, "c", record) == 1
    assert seen == [None]
    assert await cache.get(COUNTERS, "c") == 1


async def test_update_honours_the_ttl(cache: Cache) -> None:
    await cache.update(COUNTERS, "c", increment, ttl=0.05)
    await asyncio.sleep(0.5)
    assert await cache.get(COUNTERS, "c") is MISSING


async def test_an_undecodable_entry_is_replaced(cache: Cache) -> None:
    await cache.backend.set(cache.full_key(COUNTERS, "c"), b"not an envelope", 60)
    assert await cache.update(COUNTERS, "c", increment) == 1
    assert await cache.get(COUNTERS, "c") == 1


async def test_an_unreachable_store_raises_so_the_caller_knows() -> None:
    down = Cache(RedisBackend(f"redis://127.0.0.1:{free_port()}/0"), prefix="test-update-down")
    with pytest.raises(BackendError):
        await down.update(COUNTERS, "c", increment)
    assert down.stats()["counter"].errors == 1
    await down.close()
