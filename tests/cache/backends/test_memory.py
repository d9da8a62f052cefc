"""The in-process backend: bounds, LRU order and expiry, with a controllable clock."""

from __future__ import annotations

import pytest

from ogcache.cache import CacheConfigurationError, MemoryBackend


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_at_their_ttl() -> None:
    clock = Clock()
    backend = MemoryBackend(clock=clock)
    await backend.set("k", b"v", 10)
    clock.now += 9.9
    assert await backend.get("k") == b"v"
    clock.now += 0.2
    assert await backend.get("k") is None


async def test_the_least_recently_used_entry_is_evicted_at_the_entry_bound() -> None:
    backend = MemoryBackend(max_entries=2)
    await backend.set("a", b"1", 60)
    await backend.set("b", b"2", 60)
    await backend.get("a")
    await backend.set("c", b"3", 60)
    assert await backend.get_many(["a", "b", "c"]) == [b"1", None, b"3"]


async def test_the_byte_bound_is_honoured() -> None:
    backend = MemoryBackend(max_bytes=3000)
    for i in range(10):
        await backend.set(str(i), b"x" * 1000, 60)
    info = await backend.info()
    assert info.memory_used_bytes is not None
    assert info.memory_used_bytes <= 3000
    assert await backend.get("9") == b"x" * 1000
    assert await backend.get("0") is None


async def test_a_value_larger_than_the_bound_is_not_stored() -> None:
    backend = MemoryBackend(max_bytes=500)
    await backend.set("small", b"s", 60)
    await backend.set("huge", b"x" * 1000, 60)
    assert await backend.get("huge") is None
    assert await backend.get("small") == b"s"


async def test_expired_entries_are_not_counted() -> None:
    clock = Clock()
    backend = MemoryBackend(clock=clock)
    await backend.set("p:a", b"1", 1)
    await backend.set("p:b", b"1", 100)
    clock.now += 2
    assert (await backend.count_prefix("p:", 1000)).count == 1


@pytest.mark.parametrize("options", [{"max_entries": 0}, {"max_bytes": 0}])
def test_nonsense_bounds_are_rejected(options: dict[str, int]) -> None:
    with pytest.raises(CacheConfigurationError):
        MemoryBackend(**options)
