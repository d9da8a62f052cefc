"""Behaviour of the cache front end, run once per backend (memory and real Redis)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from ogcache.cache import MISSING, Cache, InvalidKeyError, ModelCodec, Namespace

ITEMS = Namespace("item", ttl=60)


class Item(BaseModel):
    id: int
    name: str


TYPED = Namespace("typed", ttl=60, codec=ModelCodec(Item))


async def test_get_of_an_absent_key_is_missing(cache: Cache) -> None:
    assert await cache.get(ITEMS, "nope") is MISSING


async def test_set_then_get_returns_the_value(cache: Cache) -> None:
    await cache.set(ITEMS, "a", {"name": "Gelato 41", "prices": [250, 1100]})
    assert await cache.get(ITEMS, "a") == {"name": "Gelato 41", "prices": [250, 1100]}


async def test_a_cached_none_is_a_value_not_a_miss(cache: Cache) -> None:
    await cache.set(ITEMS, "none", None)
    assert await cache.get(ITEMS, "none") is None


async def test_model_codec_returns_the_model_type(cache: Cache) -> None:
    await cache.set(TYPED, "1", Item(id=1, name="Bubble Hash"))
    value = await cache.get(TYPED, "1")
    assert isinstance(value, Item)
    assert value == Item(id=1, name="Bubble Hash")


async def test_delete_removes_the_value(cache: Cache) -> None:
    await cache.set(ITEMS, "a", 1)
    assert await cache.delete(ITEMS, "a")
    assert await cache.get(ITEMS, "a") is MISSING


async def test_values_expire_after_their_ttl(cache: Cache) -> None:
    await cache.set(ITEMS, "short", 1, ttl=0.1)
    await cache.set(ITEMS, "long", 2)
    await asyncio.sleep(0.25)
    assert await cache.get(ITEMS, "short") is MISSING
    assert await cache.get(ITEMS, "long") == 2


async def test_a_new_namespace_version_does_not_read_old_values(cache: Cache) -> None:
    await cache.set(Namespace("shape", ttl=60, version=1), "k", {"old": True})
    assert await cache.get(Namespace("shape", ttl=60, version=2), "k") is MISSING


async def test_full_keys_carry_prefix_namespace_and_version(cache: Cache) -> None:
    assert cache.full_key(Namespace("user:profile", ttl=5, version=3), "u1") == (
        f"{cache.prefix}:user:profile:v3:u1"
    )


async def test_an_undecodable_value_is_a_miss_and_is_deleted(cache: Cache) -> None:
    full = cache.full_key(TYPED, "bad")
    await cache.backend.set(full, b'{"id": "not a number"}', 60)
    assert await cache.get(TYPED, "bad") is MISSING
    assert await cache.backend.get(full) is None
    assert cache.stats()["typed"].decode_errors == 1


async def test_invalid_json_bytes_are_a_miss(cache: Cache) -> None:
    await cache.backend.set(cache.full_key(ITEMS, "bad"), b"\x80not json", 60)
    assert await cache.get(ITEMS, "bad") is MISSING


async def test_get_many_returns_only_present_keys(cache: Cache) -> None:
    await cache.set_many(ITEMS, {"a": 1, "b": None, "c": [3]})
    assert await cache.get_many(ITEMS, ["a", "b", "c", "d"]) == {"a": 1, "b": None, "c": [3]}


async def test_delete_many_removes_every_key(cache: Cache) -> None:
    await cache.set_many(ITEMS, {"a": 1, "b": 2, "c": 3})
    await cache.delete_many(ITEMS, ["a", "b"])
    assert await cache.get_many(ITEMS, ["a", "b", "c"]) == {"c": 3}


async def test_invalidate_removes_entries_across_namespaces(cache: Cache) -> None:
    other = Namespace("other", ttl=60)
    await cache.set(ITEMS, "a", 1)
    await cache.set(other, "a", 2)
    await cache.invalidate([(ITEMS, "a"), (other, "a")])
    assert await cache.get(ITEMS, "a") is MISSING
    assert await cache.get(other, "a") is MISSING


async def test_set_many_honours_the_ttl(cache: Cache) -> None:
    await cache.set_many(ITEMS, {"a": 1, "b": 2}, ttl=0.1)
    await asyncio.sleep(0.25)
    assert await cache.get_many(ITEMS, ["a", "b"]) == {}


async def test_get_or_load_loads_once_then_hits(cache: Cache) -> None:
    calls = 0

    async def load() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"v": 42}

    assert await cache.get_or_load(ITEMS, "k", load) == {"v": 42}
    assert await cache.get_or_load(ITEMS, "k", load) == {"v": 42}
    assert calls == 1
    stats = cache.stats()["item"]
    assert (stats.hits, stats.misses, stats.loads) == (1, 1, 1)
    assert stats.hit_rate == 0.5


async def test_get_or_load_does_not_cache_a_failed_load(cache: Cache) -> None:
    async def fail() -> int:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        await cache.get_or_load(ITEMS, "k", fail)
    assert await cache.get(ITEMS, "k") is MISSING
    assert cache.stats()["item"].load_errors == 1


async def test_get_or_load_does_not_cache_none_without_negative_ttl(cache: Cache) -> None:
    never = Namespace("never", ttl=60, negative_ttl=None)

    async def absent() -> None:
        return None

    assert await cache.get_or_load(never, "k", absent) is None
    assert await cache.get(never, "k") is MISSING
    assert await cache.backend.get(cache.full_key(never, "k")) is None  # no lease left behind


async def test_get_or_load_caches_none_with_negative_ttl(cache: Cache) -> None:
    negative = Namespace("neg", ttl=60, negative_ttl=0.1)

    async def absent() -> None:
        return None

    await cache.get_or_load(negative, "k", absent)
    assert await cache.get(negative, "k") is None
    await asyncio.sleep(0.25)
    assert await cache.get(negative, "k") is MISSING


async def test_stats_report_latency_of_operations_and_loads(cache: Cache) -> None:
    async def load() -> int:
        await asyncio.sleep(0.01)
        return 1

    await cache.get_or_load(ITEMS, "k", load)
    await cache.get_or_load(ITEMS, "k", load)
    stats = cache.stats()["item"]
    assert stats.operation_latency.count == 3  # get, set, get
    assert stats.operation_latency.p99_ms is not None
    assert stats.load_latency.count == 1
    assert stats.load_latency.mean_ms is not None
    assert stats.load_latency.mean_ms >= 10


async def test_clear_prefix_removes_only_keys_under_the_prefix(cache: Cache) -> None:
    profiles = Namespace("user:profile", ttl=60)
    sessions = Namespace("session", ttl=60)
    await cache.set(profiles, "u1", 1)
    await cache.set(profiles, "u2", 2)
    await cache.set(sessions, "s1", 3)
    assert await cache.clear_prefix("user:profile:") == 2
    assert await cache.get(profiles, "u1") is MISSING
    assert await cache.get(sessions, "s1") == 3


async def test_clear_prefix_treats_glob_characters_literally(cache: Cache) -> None:
    users = Namespace("user", ttl=60)
    await cache.set(users, "alice", 1)
    await cache.set(users, "bob", 2)
    await cache.backend.set(f"{cache.prefix}:user:*star", b"3", 60)
    await cache.backend.set(f"{cache.prefix}:user?x", b"4", 60)
    await cache.backend.set(f"{cache.prefix}:user[ab]", b"5", 60)

    assert await cache.clear_prefix("user:*") == 1
    assert await cache.clear_prefix("user[") == 1
    assert await cache.clear_prefix("use?") == 0
    assert await cache.get(users, "alice") == 1
    assert await cache.get(users, "bob") == 2
    assert await cache.backend.get(f"{cache.prefix}:user?x") == b"4"


@pytest.mark.parametrize("prefix", ["", " ", "user\n", "x" * 600])
async def test_clear_prefix_rejects_unusable_prefixes(cache: Cache, prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        await cache.clear_prefix(prefix)


async def test_clear_removes_only_this_applications_keys(cache: Cache) -> None:
    neighbour = Cache(cache.backend, prefix=cache.prefix + "-neighbour")
    await cache.set(ITEMS, "a", 1)
    await neighbour.set(ITEMS, "a", 2)
    try:
        assert await cache.clear() == 1
        assert await neighbour.get(ITEMS, "a") == 2
    finally:
        await neighbour.clear()


async def test_count_keys_counts_this_applications_keys(cache: Cache) -> None:
    await cache.set_many(ITEMS, {str(i): i for i in range(25)})
    await cache.set(TYPED, "1", Item(id=1, name="x"))
    total = await cache.count_keys()
    assert (total.count, total.complete) == (26, True)
    assert (await cache.count_keys("item:")).count == 25


async def test_report_tells_backend_keys_memory_and_stats(cache: Cache) -> None:
    await cache.set(ITEMS, "a", 1)
    await cache.get(ITEMS, "a")
    report = await cache.report()
    assert report.available
    assert report.keys is not None
    assert report.keys.count == 1
    assert report.info is not None
    assert report.info.memory_used_bytes is not None
    assert report.info.memory_used_bytes > 0
    assert report.namespaces["item"].hits == 1


async def test_debug_log_names_events_and_namespace(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    async def load() -> int:
        return 1

    with caplog.at_level(logging.DEBUG, logger="ogcache.cache"):
        await cache.get_or_load(ITEMS, "k", load)
        await cache.get_or_load(ITEMS, "k", load)
        await cache.delete(ITEMS, "k")
    events = [(r.event, r.namespace) for r in caplog.records]  # type: ignore[attr-defined]
    assert events == [
        ("cache.miss", "item"),
        ("cache.cached", "item"),
        ("cache.hit", "item"),
        ("cache.invalidated", "item"),
    ]


async def test_log_records_of_a_redacted_namespace_hide_keys(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    secret = Namespace("auth", ttl=60, log_keys=False)
    with caplog.at_level(logging.DEBUG, logger="ogcache.cache"):
        await cache.set(secret, "hash-of-a-token", 1)
        await cache.get(secret, "hash-of-a-token")
    assert caplog.records
    assert all("hash-of-a-token" not in r.getMessage() for r in caplog.records)


async def test_unencodable_value_is_not_cached_and_does_not_raise(cache: Cache) -> None:
    assert not await cache.set(ITEMS, "k", {"bad": object()})
    assert await cache.get(ITEMS, "k") is MISSING
    assert cache.stats()["item"].errors == 1


# --- values that could not be read back --------------------------------------------------

FREE_FORM = Namespace("free", ttl=60, codec=ModelCodec(dict[str, Any]))


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


async def test_a_value_too_deep_to_read_back_is_refused_before_it_is_stored(
    cache: Cache,
) -> None:
    await cache.set(FREE_FORM, "k", {"shallow": True})
    assert not await cache.set(FREE_FORM, "k", {"a": nested(220)})  # pydantic reads ~200 back
    assert await cache.get(FREE_FORM, "k") == {"shallow": True}  # the old value, untouched
    assert cache.stats()["free"].errors == 1


async def test_a_loaded_value_too_deep_to_read_back_is_answered_not_cached(
    cache: Cache,
) -> None:
    loads = 0

    async def load() -> dict[str, Any]:
        nonlocal loads
        loads += 1
        return {"a": nested(220)}

    for _ in range(2):
        assert await cache.get_or_load(FREE_FORM, "deep", load) == {"a": nested(220)}
    assert loads == 2
    assert await cache.backend.get(cache.full_key(FREE_FORM, "deep")) is None  # nor a lease


async def test_a_value_with_many_brackets_that_reads_back_is_stored(cache: Cache) -> None:
    value = {"a": nested(150), "many": [[n] for n in range(500)]}
    assert await cache.set(FREE_FORM, "k", value)
    assert await cache.get(FREE_FORM, "k") == value


async def test_peek_reads_like_get_entries_and_counts_nothing(cache: Cache) -> None:
    await cache.set(ITEMS, "here", 1)
    before = cache.stats()["item"]
    assert await cache.peek([(ITEMS, "here"), (ITEMS, "absent")]) == [1, MISSING]
    after = cache.stats()["item"]
    assert (after.hits, after.misses, after.hit_rate) == (before.hits, before.misses, None)
    assert await cache.get_entries([(ITEMS, "here")]) == [1]
    assert cache.stats()["item"].hits == before.hits + 1
