"""``cached_many``: one entry per id, one call of the function for the misses, and
``get_or_load``'s guarantees per id, on the memory backend and real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest

from ogcache.cache import (
    MISSING,
    Cache,
    CacheBackend,
    CacheConfigurationError,
    CachedManyFunction,
    MemoryBackend,
    Namespace,
    RedisBackend,
    cached_many,
)
from tests.support.servers import free_port

USERS = Namespace("user", ttl=60)


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[CacheBackend]:
    store: CacheBackend = (
        MemoryBackend()
        if request.param == "memory"
        else RedisBackend(request.getfixturevalue("redis_url"))
    )
    yield store
    await store.close()


class Users:
    """A table of user names; records each call's ids; an optional gate holds calls."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {1: "Ann", 2: "Bob", 3: "Cid"}
        self.calls: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.loading = asyncio.Event()

    async def load(self, ids: Sequence[int]) -> Mapping[int, str]:
        self.calls.append(sorted(ids))
        found = {id_: self.names[id_] for id_ in ids if id_ in self.names}
        self.loading.set()
        if self.gate is not None:
            await self.gate.wait()
        return found


def batches(backend: CacheBackend, db: Users) -> list[list[int]]:
    """The calls of the function; over Redis, ids whose reads were slow may come in a later
    call (correct, only less batched), so there only the ids loaded are compared."""
    if isinstance(backend, MemoryBackend):
        return db.calls
    return [sorted(id_ for ids in db.calls for id_ in ids)]


def decorate(cache: Cache, db: Users) -> CachedManyFunction[int, str]:
    @cached_many(cache, USERS, key="user:{id}")
    async def names(ids: Sequence[int]) -> Mapping[int, str]:
        return await db.load(ids)

    return names


async def test_one_call_loads_only_the_missed_ids(cache: Cache, backend: CacheBackend) -> None:
    db = Users()
    names = decorate(cache, db)
    assert await names([1]) == {1: "Ann"}
    assert await names([3, 1, 2, 1, 9]) == {3: "Cid", 1: "Ann", 2: "Bob"}
    assert list(await names([3, 1, 2])) == [3, 1, 2]  # in the order asked
    loaded = batches(backend, db)
    assert loaded in ([[1], [2, 3, 9]], [[1, 2, 3, 9]])
    assert await names([9]) == {}  # not found: cached as such, not loaded again
    assert batches(backend, db) == loaded
    assert await cache.get(USERS, "user:2") == "Bob"
    assert await names([]) == {}


async def test_invalidate_makes_those_ids_reload(cache: Cache, backend: CacheBackend) -> None:
    db = Users()
    names = decorate(cache, db)
    await names([1, 2, 3])
    db.names[1], db.names[3] = "Anna", "Cyd"
    assert await names.invalidate(1, 3)
    assert await names([1, 2, 3]) == {1: "Anna", 2: "Bob", 3: "Cyd"}
    assert batches(backend, db) in ([[1, 2, 3], [1, 3]], [[1, 1, 2, 3, 3]])
    assert names.key(7) == "user:7"


async def test_overlapping_concurrent_calls_load_each_id_once(cache: Cache) -> None:
    db = Users()
    db.gate = asyncio.Event()
    names = decorate(cache, db)
    calls = asyncio.gather(names([1, 2]), names([2, 1]), names([2, 3]), names([3]))
    for _ in range(2000):  # until every id has a load in flight
        if sorted(id_ for ids in db.calls for id_ in ids) == [1, 2, 3]:
            break
        await asyncio.sleep(0.005)
    db.gate.set()
    assert await calls == [
        {1: "Ann", 2: "Bob"},
        {2: "Bob", 1: "Ann"},
        {2: "Bob", 3: "Cid"},
        {3: "Cid"},
    ]
    assert sorted(id_ for ids in db.calls for id_ in ids) == [1, 2, 3]


async def test_a_load_overtaken_by_an_invalidation_stores_only_the_untouched_ids(
    cache: Cache,
) -> None:
    db = Users()
    db.gate = asyncio.Event()
    names = decorate(cache, db)
    reader = asyncio.create_task(names([1, 2]))
    await db.loading.wait()  # the reader is loading the old rows
    db.names[1] = "Anna"  # a writer commits...
    await names.invalidate(1)  # ...then invalidates, while the reader still loads
    db.gate.set()
    assert await reader == {1: "Ann", 2: "Bob"}  # it began before the write
    assert await cache.get(USERS, "user:1") is MISSING  # but the old row is not cached
    assert await cache.get(USERS, "user:2") == "Bob"
    db.gate = None
    assert await names([1, 2]) == {1: "Anna", 2: "Bob"}


async def test_a_failed_call_caches_nothing(cache: Cache) -> None:
    @cached_many(cache, USERS, key="user:{id}")
    async def broken(ids: Sequence[int]) -> Mapping[int, str]:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        await broken([1, 2])
    assert await cache.get_many(USERS, ["user:1", "user:2"]) == {}


async def test_with_redis_down_the_function_still_answers() -> None:
    db = Users()
    async with Cache(
        RedisBackend(f"redis://127.0.0.1:{free_port()}/0"), prefix="test-many-down"
    ) as down:
        names = decorate(down, db)
        assert await names([1, 2]) == {1: "Ann", 2: "Bob"}
        assert await names([1, 2]) == {1: "Ann", 2: "Bob"}
        assert db.calls == [[1, 2], [1, 2]]


async def two_lists(ids: Sequence[int], more: Sequence[int]) -> Mapping[int, str]:
    return {}


async def keyword_ids(*, ids: Sequence[int]) -> Mapping[int, str]:
    return {}


async def fine(ids: Sequence[int]) -> Mapping[int, str]:
    return {}


def not_async(ids: Sequence[int]) -> Mapping[int, str]:
    return {}


@pytest.mark.parametrize(
    ("template", "function", "says"),
    [
        ("user:{id}:{region}", fine, "exactly one plain field"),
        ("user:{id.value}", fine, "exactly one plain field"),
        ("user:{id}", two_lists, "exactly one required positional argument"),
        ("user:{id}", keyword_ids, "exactly one required positional argument"),
        ("user:{id}", not_async, "declare it with 'async def"),
    ],
)
def test_what_cannot_work_fails_at_decoration(
    template: str, function: Callable[..., Awaitable[Any]], says: str
) -> None:
    with pytest.raises(CacheConfigurationError) as error:
        cached_many(Cache(MemoryBackend()), USERS, key=template)(function)
    assert says in str(error.value)
