"""A cache is composed of parts the caller can see and choose: the store, the breaker, the L1."""

from __future__ import annotations

import pytest

from ogcache.cache import (
    BackendOptions,
    BreakerSettings,
    Cache,
    CacheBackend,
    CacheConfigurationError,
    LocalSettings,
    MemoryBackend,
    Namespace,
    Policy,
    backend_schemes,
    create_backend,
    register_backend,
)
from ogcache.cache.backends import RedisBackend
from tests.conftest import unique_prefix
from tests.support.hooked_backend import HookedBackend

ITEMS: Namespace[int] = Namespace("item", ttl=60)
LOCAL: Namespace[int] = Namespace("near", ttl=60, local_ttl=5)


async def test_the_backend_is_the_one_given_and_the_breaker_is_a_part_of_its_own() -> None:
    backend = MemoryBackend()
    async with Cache(backend, prefix=unique_prefix()) as cache:
        assert cache.backend is backend
        stats = cache.breaker_stats()
        assert stats is not None
        assert stats.state.value == "closed"
    async with Cache(backend, prefix=unique_prefix(), breaker=None) as bare:
        assert bare.breaker_stats() is None
        assert await bare.get_or_load(ITEMS, "k", _one) == 1
        assert (await bare.report()).breaker is None


async def test_async_with_closes_the_store_even_when_the_block_raises(redis_url: str) -> None:
    closed: list[str] = []

    async def record(*_: object) -> None:
        closed.append("close")

    store = HookedBackend(RedisBackend(redis_url))
    store.hooks["close"] = record

    async def use() -> None:
        async with Cache(store, prefix=unique_prefix()) as cache:  # type: ignore[arg-type]
            await cache.set(ITEMS, "k", 1)
            assert await cache.get(ITEMS, "k") == 1
            await cache.clear()
            raise RuntimeError("inside the block")

    with pytest.raises(RuntimeError, match="inside"):
        await use()
    assert closed == ["close"]


async def test_without_an_l1_a_local_namespace_is_served_from_the_store(redis_url: str) -> None:
    prefix = unique_prefix()
    async with Cache(RedisBackend(redis_url), prefix=prefix, local=None) as cache:
        assert await cache.get_or_load(LOCAL, "k", _one) == 1
        assert await cache.get_or_load(LOCAL, "k", _one) == 1
        assert cache.stats()["near"].local_hits == 0
        assert cache.local_state() is None
        await cache.clear()
    async with Cache(RedisBackend(redis_url), prefix=prefix, local=LocalSettings()) as tiered:
        assert tiered.l1.feed is not None  # Redis can feed invalidations: the tier may serve


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Policy(ttl_jitter=1), "ttl_jitter"),
        (lambda: Policy(lease_ttl=0), "lease_ttl"),
        (lambda: Policy(lease_wait=-1), "lease_wait"),
        (lambda: Policy(max_value_bytes=0), "max_value_bytes"),
        (lambda: BreakerSettings(failure_threshold=0), "failure_threshold"),
        (lambda: BreakerSettings(stall_threshold=-1), "stall_threshold"),
        (lambda: BackendOptions(timeout=0), "timeout"),
        (lambda: BackendOptions(max_connections=0), "max_connections"),
        (lambda: Cache(MemoryBackend(), prefix="a:b"), "prefix"),
    ],
)
def test_settings_that_cannot_work_are_refused_when_built(make: object, message: str) -> None:
    with pytest.raises(CacheConfigurationError, match=message):
        make()  # type: ignore[operator]


async def test_a_registered_scheme_builds_its_store() -> None:
    built: list[tuple[str, BackendOptions]] = []

    def factory(url: str, options: BackendOptions) -> CacheBackend:
        built.append((url, options))
        return MemoryBackend()

    register_backend("Test-Store", factory)
    assert "test-store" in backend_schemes()
    options = BackendOptions(timeout=2)
    backend = create_backend("test-store://anything", options)
    assert isinstance(backend, MemoryBackend)
    assert built == [("test-store://anything", options)]
    with pytest.raises(CacheConfigurationError, match="not a URL scheme"):
        register_backend("no spaces", factory)
    with pytest.raises(CacheConfigurationError, match="test-store://"):
        create_backend("nope://x")  # the message lists every registered scheme


async def _one() -> int:
    return 1
