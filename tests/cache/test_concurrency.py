"""Stampede and stale-set protection, run once per backend (memory and real Redis).

Two :class:`Cache` objects over one backend stand for two processes: they share the store
but not their in-process single-flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from ogcache.cache import MISSING, Cache, Namespace, Policy
from ogcache.cache.envelope import WRITE_ID_OFFSET, Entry, lease, new_token, unwrap
from tests.support.hooked_backend import HookedBackend

ITEMS = Namespace("item", ttl=60)


class Database:
    """A versioned value per key, with a load counter and an optional gate to hold loads."""

    def __init__(self, delay: float = 0.0) -> None:
        self.version: dict[str, int] = {}
        self.loads = 0
        self.delay = delay
        self.gate: asyncio.Event | None = None
        self.loading = asyncio.Event()

    async def loads_started(self, count: int) -> None:
        while self.loads < count:
            self.loading.clear()
            await self.loading.wait()

    def loader(self, key: str) -> Callable[[], Awaitable[int | None]]:
        async def load() -> int | None:
            self.loads += 1
            self.loading.set()
            value = self.version.get(key)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.gate is not None:
                await self.gate.wait()
            return value

        return load


def twin(cache: Cache, **policy: float) -> Cache:
    """Another "process": same store and prefix, its own single-flight."""
    return Cache(cache.backend, prefix=cache.prefix, policy=Policy(**policy))


async def test_a_herd_of_cold_readers_sends_one_read_not_one_each(cache: Cache) -> None:
    """Callers that find a fill of their key in flight join it without asking the store
    (cashews-style coalescing; before, each of them sent its own GET first)."""
    inner = cache.backend
    reads = 0
    get = inner.get

    async def counted(key: str) -> bytes | None:
        nonlocal reads
        reads += 1
        return await get(key)

    inner.get = counted  # type: ignore[method-assign]
    db = Database(delay=0.05)
    db.version["k"] = 1
    results = await asyncio.gather(
        *(cache.get_or_load(ITEMS, "k", db.loader("k")) for _ in range(500))
    )
    assert results == [1] * 500
    assert db.loads == 1
    assert reads == 1
    assert cache.stats()["item"].coalesced == 499


async def test_concurrent_misses_in_one_process_share_one_load(cache: Cache) -> None:
    db = Database()
    db.version["k"] = 1
    db.gate = asyncio.Event()  # the load finishes only once all 200 have missed, however slow
    calls = asyncio.gather(*(cache.get_or_load(ITEMS, "k", db.loader("k")) for _ in range(200)))
    for _ in range(2000):  # until every caller has looked and missed (HTTP takes a while)
        if (stats := cache.stats().get("item")) is not None and stats.misses == 200:
            break
        await asyncio.sleep(0.005)
    db.gate.set()
    results = await calls
    assert results == [1] * 200
    assert db.loads == 1
    assert cache.stats()["item"].coalesced == 199


async def test_concurrent_misses_across_processes_load_once(cache: Cache) -> None:
    db = Database(delay=0.05)
    db.version["k"] = 1
    caches = [cache, twin(cache), twin(cache), twin(cache)]
    results = await asyncio.gather(
        *(c.get_or_load(ITEMS, "k", db.loader("k")) for c in caches for _ in range(50))
    )
    assert results == [1] * 200
    assert db.loads == 1


async def test_a_load_overtaken_by_an_invalidation_is_not_stored(cache: Cache) -> None:
    db = Database()
    db.version["k"] = 1
    db.gate = asyncio.Event()
    reader = asyncio.create_task(cache.get_or_load(ITEMS, "k", db.loader("k")))
    await db.loads_started(1)
    db.version["k"] = 2  # the writer commits...
    await cache.delete(ITEMS, "k")  # ...then invalidates, while the reader still loads
    db.gate.set()
    assert await reader == 1  # the reader began before the write: it may see the old row
    assert await cache.get(ITEMS, "k") is MISSING  # but the old row is not cached
    assert cache.stats()["item"].sets_rejected == 1
    db.gate = None
    assert await cache.get_or_load(ITEMS, "k", db.loader("k")) == 2


async def test_a_caller_arriving_after_an_invalidation_never_gets_the_older_load(
    cache: Cache,
) -> None:
    db = Database()
    db.version["k"] = 1
    db.gate = asyncio.Event()
    first = asyncio.create_task(cache.get_or_load(ITEMS, "k", db.loader("k")))
    await db.loads_started(1)
    db.version["k"] = 2
    await cache.delete(ITEMS, "k")
    late = asyncio.create_task(cache.get_or_load(ITEMS, "k", db.loader("k")))
    await asyncio.sleep(0.01)
    db.gate.set()
    assert await first == 1
    assert await late == 2


async def test_a_dead_lease_holder_delays_others_only_for_lease_wait(cache: Cache) -> None:
    db = Database()
    db.version["k"] = 7
    await cache.backend.add(cache.full_key(ITEMS, "k"), lease(new_token()), 30)
    impatient = twin(cache, lease_wait=0.1)
    started = time.monotonic()
    assert await impatient.get_or_load(ITEMS, "k", db.loader("k")) == 7
    assert 0.1 <= time.monotonic() - started < 1.0
    assert impatient.stats()["item"].lease_timeouts == 1
    assert await impatient.get(ITEMS, "k") is MISSING  # loaded without the lease: not stored


async def test_an_expired_lease_is_taken_over(cache: Cache) -> None:
    db = Database()
    db.version["k"] = 7
    await cache.backend.add(cache.full_key(ITEMS, "k"), lease(new_token()), 0.15)
    assert await cache.get_or_load(ITEMS, "k", db.loader("k")) == 7
    assert await cache.get(ITEMS, "k") == 7


async def test_a_failed_load_releases_the_lease_at_once(cache: Cache) -> None:
    async def fail() -> int:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await cache.get_or_load(ITEMS, "k", fail)
    assert await cache.backend.get(cache.full_key(ITEMS, "k")) is None


async def test_joiners_share_the_loaders_exception(cache: Cache) -> None:
    calls = 0

    async def fail() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("database down")

    results = await asyncio.gather(
        *(cache.get_or_load(ITEMS, "k", fail) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == 1


async def test_a_cancelled_leader_does_not_fail_the_joiners(cache: Cache) -> None:
    db = Database(delay=0.05)
    db.version["k"] = 3
    leader = asyncio.create_task(cache.get_or_load(ITEMS, "k", db.loader("k")))
    await asyncio.sleep(0.01)
    joiner = asyncio.create_task(cache.get_or_load(ITEMS, "k", db.loader("k")))
    await asyncio.sleep(0.01)
    leader.cancel()
    assert await joiner == 3


async def lifetimes(cache: Cache, namespace: Namespace[object], count: int) -> list[float]:
    raws = await cache.backend.get_many([cache.full_key(namespace, str(i)) for i in range(count)])
    now = time.time()
    result = []
    for raw in raws:
        assert raw is not None
        entry = unwrap(raw)
        assert isinstance(entry, Entry)
        result.append(entry.expires_at - now)
    return result


async def test_namespace_ttls_are_jittered_both_ways(cache: Cache) -> None:
    jittered = twin(cache, ttl_jitter=0.1)
    hundred = Namespace("hundred", ttl=100)
    await jittered.set_many(hundred, {str(i): i for i in range(100)})
    spread = await lifetimes(cache, hundred, 100)
    assert 89 <= min(spread) < 99
    assert 101 < max(spread) <= 110.5


async def test_a_ttl_given_by_the_caller_is_only_shortened(cache: Cache) -> None:
    jittered = twin(cache, ttl_jitter=0.1)
    await jittered.set_many(ITEMS, {str(i): i for i in range(100)}, ttl=100)
    spread = await lifetimes(cache, ITEMS, 100)
    assert 89 <= min(spread) < 99
    assert max(spread) <= 100.01


async def test_not_found_is_cached_for_the_negative_ttl(cache: Cache) -> None:
    negative = Namespace("neg", ttl=60, negative_ttl=30)
    db = Database()
    assert await cache.get_or_load(negative, "k", db.loader("k")) is None
    assert await cache.get_or_load(negative, "k", db.loader("k")) is None
    assert db.loads == 1
    db.version["k"] = 1  # the row is created...
    await cache.delete(negative, "k")  # ...and invalidated like any value
    assert await cache.get_or_load(negative, "k", db.loader("k")) == 1


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_an_entry_near_expiry_is_refreshed_early_by_one_caller(cache: Cache) -> None:
    clock = Clock()
    early = Cache(cache.backend, prefix=cache.prefix, clock=clock, policy=Policy(ttl_jitter=0))
    db = Database(delay=0.02)
    db.version["k"] = 1
    assert await early.get_or_load(ITEMS, "k", db.loader("k")) == 1
    db.version["k"] = 2
    clock.now += ITEMS.ttl - 0.001  # a millisecond before expiry: XFetch fires almost surely
    results = await asyncio.gather(
        *(early.get_or_load(ITEMS, "k", db.loader("k")) for _ in range(20))
    )
    assert results == [1] * 20  # everyone got the cached value at once
    for _ in range(100):
        if db.loads == 2 and early.stats()["item"].early_refreshes == 1:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert db.loads == 2
    assert await early.get(ITEMS, "k") == 2


async def test_no_early_refresh_far_from_expiry_or_when_disabled(cache: Cache) -> None:
    db = Database(delay=0.01)
    db.version["k"] = 1
    off = twin(cache, early_refresh_beta=0)
    await cache.get_or_load(ITEMS, "k", db.loader("k"))
    for _ in range(50):
        await cache.get_or_load(ITEMS, "k", db.loader("k"))
        await off.get_or_load(ITEMS, "k", db.loader("k"))
    await asyncio.sleep(0.05)
    assert db.loads == 1


async def test_an_expired_value_is_served_when_the_loader_fails(cache: Cache) -> None:
    clock = Clock()
    graceful = Cache(cache.backend, prefix=cache.prefix, clock=clock, policy=Policy(ttl_jitter=0))
    forgiving = Namespace("forgiving", ttl=10, stale_ttl=60)
    db = Database()
    db.version["k"] = 1
    await graceful.get_or_load(forgiving, "k", db.loader("k"))
    clock.now += 20  # expired 10 s ago, within the 60 s grace

    async def fail() -> int:
        raise RuntimeError("database down")

    assert await graceful.get_or_load(forgiving, "k", fail) == 1
    assert graceful.stats()["forgiving"].stale_served == 1
    clock.now += 100  # past the grace
    with pytest.raises(RuntimeError):
        await graceful.get_or_load(forgiving, "k", fail)


async def test_an_invalidated_value_is_never_served_stale(cache: Cache) -> None:
    clock = Clock()
    graceful = Cache(cache.backend, prefix=cache.prefix, clock=clock, policy=Policy(ttl_jitter=0))
    forgiving = Namespace("forgiving", ttl=10, stale_ttl=60)
    db = Database()
    db.version["k"] = 1
    await graceful.get_or_load(forgiving, "k", db.loader("k"))
    await graceful.delete(forgiving, "k")
    clock.now += 20

    async def fail() -> int:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await graceful.get_or_load(forgiving, "k", fail)


async def test_stale_values_are_not_served_unless_the_namespace_allows(cache: Cache) -> None:
    clock = Clock()
    strict = Cache(cache.backend, prefix=cache.prefix, clock=clock, policy=Policy(ttl_jitter=0))
    db = Database()
    db.version["k"] = 1
    await strict.get_or_load(ITEMS, "k", db.loader("k"))
    clock.now += 61

    async def fail() -> int:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await strict.get_or_load(ITEMS, "k", fail)


async def test_refresh_stores_a_new_value(cache: Cache) -> None:
    db = Database()
    db.version["k"] = 1
    await cache.get_or_load(ITEMS, "k", db.loader("k"))
    db.version["k"] = 2
    assert await cache.refresh(ITEMS, "k", db.loader("k")) == 2
    assert await cache.get(ITEMS, "k") == 2


async def test_refresh_overtaken_by_an_invalidation_stores_nothing(cache: Cache) -> None:
    db = Database()
    db.version["k"] = 1
    await cache.get_or_load(ITEMS, "k", db.loader("k"))
    db.gate = asyncio.Event()
    refreshing = asyncio.create_task(cache.refresh(ITEMS, "k", db.loader("k")))
    await db.loads_started(2)
    db.version["k"] = 2
    await cache.delete(ITEMS, "k")
    db.gate.set()
    await refreshing
    assert await cache.get(ITEMS, "k") is MISSING


# --- interleavings forced with a hooked backend ----------------------------------------------


async def test_an_expired_value_invalidated_during_takeover_is_neither_served_nor_restored(
    cache: Cache,
) -> None:
    hooked = HookedBackend(cache.backend)
    clock = Clock()
    reader = Cache(hooked, prefix=cache.prefix, clock=clock, policy=Policy(ttl_jitter=0))  # type: ignore[arg-type]
    forgiving = Namespace("forgiving", ttl=10, stale_ttl=60)
    db = Database()
    db.version["k"] = 1
    await reader.get_or_load(forgiving, "k", db.loader("k"))
    clock.now += 11  # v1 expired, within its grace

    async def write_lands_first(key: str, expected: bytes, offset: int, *_: object) -> None:
        if offset == WRITE_ID_OFFSET and hooked.hooks.pop("replace_if", None) is not None:
            db.version["k"] = 2
            await cache.delete(forgiving, "k")  # the write's invalidation returns first

    hooked.hooks["replace_if"] = write_lands_first

    async def fail() -> int:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):  # v1 was invalidated: it must not be served...
        await reader.get_or_load(forgiving, "k", fail)
    assert await cache.backend.get(cache.full_key(forgiving, "k")) is None  # ...nor put back
    assert reader.stats()["forgiving"].stale_served == 0


async def test_early_refresh_loads_once_per_key(cache: Cache) -> None:
    clock = Clock()
    first = Cache(cache.backend, prefix=cache.prefix, clock=clock, policy=Policy(ttl_jitter=0))
    second = Cache(cache.backend, prefix=cache.prefix, clock=clock, policy=Policy(ttl_jitter=0))
    refreshes = 0

    async def initial() -> int:
        await asyncio.sleep(0.05)
        return 1

    async def slow_refresh() -> int:  # the database is slow today: longer than a second
        nonlocal refreshes
        refreshes += 1
        await asyncio.sleep(1.2)
        return 2

    await first.get_or_load(ITEMS, "k", initial)
    clock.now += ITEMS.ttl - 0.001
    await asyncio.gather(*(first.get_or_load(ITEMS, "k", slow_refresh) for _ in range(5)))
    await asyncio.sleep(1.05)
    await second.get_or_load(ITEMS, "k", slow_refresh)  # another process, still mid-refresh
    await asyncio.sleep(0.4)
    assert refreshes == 1
    assert await first.get(ITEMS, "k") == 2


async def test_a_caller_joining_after_a_lease_timeout_does_not_wait_again(cache: Cache) -> None:
    wait, load = 0.3, 0.3
    patient = Cache(cache.backend, prefix=cache.prefix, policy=Policy(lease_wait=wait))
    await cache.backend.add(cache.full_key(ITEMS, "k"), lease(new_token()), 30)  # a dead holder

    async def loader() -> int:
        await asyncio.sleep(load)
        return 1

    async def timed(delay: float) -> float:
        await asyncio.sleep(delay)
        started = time.monotonic()
        await patient.get_or_load(ITEMS, "k", loader)
        return time.monotonic() - started

    _, joiner = await asyncio.gather(timed(0), timed(wait + 0.05))
    assert joiner < wait + load + 0.15  # waiting twice would take about 2 * wait + load


async def test_a_request_cancelled_during_its_store_leaves_no_lease(cache: Cache) -> None:
    hooked = HookedBackend(cache.backend)
    cancellable = Cache(hooked, prefix=cache.prefix)  # type: ignore[arg-type]
    stalled = asyncio.Event()

    async def stall_the_store(
        key: str, expected: bytes, offset: int, value: object, *_: object
    ) -> None:
        if offset == 0 and value is not None:
            stalled.set()
            await asyncio.sleep(10)

    hooked.hooks["replace_if"] = stall_the_store

    async def load() -> int:
        return 1

    request = asyncio.create_task(cancellable.get_or_load(ITEMS, "k", load))
    await stalled.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    hooked.hooks.clear()
    full = cache.full_key(ITEMS, "k")
    for _ in range(100):  # the lease is released in the background, right after the cancel
        if await cache.backend.get(full) is None:
            break
        await asyncio.sleep(0.01)
    assert await cache.backend.get(full) is None
