"""The consistency verifier on a real Redis: sampled hits re-checked against their loader.

The "database" is a dict the loaders read. Checks run ``DELAY`` seconds after a hit (and a
suspect once more after as long); the tests wait for the verifier's counters with a generous
deadline instead of sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ogcache.cache import (
    Cache,
    CacheConfigurationError,
    Namespace,
    NamespaceStatsSnapshot,
    Policy,
    RedisBackend,
    VerifierSettings,
)
from tests.conftest import unique_prefix

DELAY = 0.05
DEADLINE = 10.0
ITEMS = Namespace("item", ttl=60)

Make = Callable[..., Awaitable[Cache]]


class Database:
    """Rows by key; counts the loads of each key."""

    def __init__(self, **rows: Any) -> None:
        self.rows = dict(rows)
        self.loads: dict[str, int] = {}
        self.failing = False

    def loader(self, key: str) -> Callable[[], Awaitable[Any]]:
        async def load() -> Any:
            self.loads[key] = self.loads.get(key, 0) + 1
            if self.failing:
                raise RuntimeError(f"database down while reading secret-{key}")
            return self.rows[key]

        return load


@pytest.fixture
async def make(redis_url: str) -> AsyncIterator[Make]:
    """Caches on the session's Redis, each in a keyspace of its own, closed after the test."""
    made: list[Cache] = []

    async def build(**settings: Any) -> Cache:
        jitter = settings.pop("ttl_jitter", 0.1)
        verifier = VerifierSettings(**{"sample": 1.0, "delay": DELAY, **settings})
        cache = Cache(
            RedisBackend(redis_url),
            prefix=unique_prefix(),
            policy=Policy(verifier=verifier, ttl_jitter=jitter),
        )
        made.append(cache)
        return cache

    yield build
    for cache in made:
        await cache.clear()
        await cache.close()


async def stats_when(
    cache: Cache, name: str, done: Callable[[NamespaceStatsSnapshot], bool]
) -> NamespaceStatsSnapshot:
    """The namespace's statistics once ``done`` holds for them (fails after ``DEADLINE``)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        stats = cache.stats()[name]
        if done(stats):
            return stats
        assert time.monotonic() < deadline, f"verifier counters never got there: {stats}"
        await asyncio.sleep(0.01)


def checked(stats: NamespaceStatsSnapshot) -> bool:
    return stats.verified + stats.verify_errors >= 1


async def hit(cache: Cache, db: Database, key: str, namespace: Namespace[Any] = ITEMS) -> Any:
    """Fill ``key`` (a miss), then read it again: the hit that the verifier samples."""
    await cache.get_or_load(namespace, key, db.loader(key))
    return await cache.get_or_load(namespace, key, db.loader(key))


async def test_a_consistent_hit_is_verified_without_counting_as_a_load(make: Make) -> None:
    cache, db = await make(), Database(a={"name": "Gelato 41", "price": 250})
    assert await hit(cache, db, "a") == {"name": "Gelato 41", "price": 250}
    stats = await stats_when(cache, "item", checked)
    assert (stats.verified, stats.inconsistent, stats.verify_errors) == (1, 0, 0)
    assert db.loads["a"] == 2  # the fill and the check
    assert (stats.hits, stats.misses, stats.loads, stats.sets) == (1, 1, 1, 1)
    assert stats.inconsistency_age_last is None


async def test_a_row_changed_without_invalidation_is_inconsistent_and_logged(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    cache, db = await make(ttl_jitter=0.0), Database(a={"price": 250})
    written = time.time()
    await hit(cache, db, "a")
    db.rows["a"] = {"price": 300}  # committed, never invalidated
    with caplog.at_level(logging.WARNING, logger="ogcache.cache"):
        stats = await stats_when(cache, "item", checked)
    assert (stats.verified, stats.inconsistent) == (1, 1)
    assert stats.inconsistency_age_max == stats.inconsistency_age_last
    age = stats.inconsistency_age_max
    assert 2 * DELAY <= age <= time.time() - written + 1  # no jitter: the bound is tight
    # The verifier reports; it does not repair: the entry still serves the old value.
    assert await cache.get(ITEMS, "a") == {"price": 250}

    full = cache.full_key(ITEMS, "a")
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "cache.inconsistent"]
    assert record.levelno == logging.WARNING
    assert record.namespace == "item"  # type: ignore[attr-defined]
    assert record.key_hash == hashlib.sha256(full.encode()).hexdigest()[:16]  # type: ignore[attr-defined]
    assert record.key_hash in record.getMessage()  # type: ignore[attr-defined]
    # The message and the fields the cache added; not the record's own timestamps, whose
    # digits may contain "300" by chance.
    own = {"msg", "args", "created", "msecs", "relativeCreated", "thread", "process"}
    shown = record.getMessage() + repr({k: v for k, v in record.__dict__.items() if k not in own})
    assert full not in shown
    assert "250" not in shown
    assert "300" not in shown


async def test_a_change_with_its_invalidation_is_not_inconsistent(make: Make) -> None:
    cache, db = await make(), Database(a={"price": 250})
    await hit(cache, db, "a")
    db.rows["a"] = {"price": 300}
    await cache.delete(ITEMS, "a")
    stats = await stats_when(cache, "item", checked)
    assert (stats.verified, stats.inconsistent) == (1, 0)
    assert db.loads["a"] == 1  # the entry was gone: nothing to compare, no load


async def test_a_replaced_entry_is_not_compared(make: Make) -> None:
    cache, db = await make(), Database(a={"price": 250})
    await hit(cache, db, "a")
    db.rows["a"] = {"price": 300}
    await cache.refresh(ITEMS, "a", db.loader("a"))  # a new write id
    stats = await stats_when(cache, "item", checked)
    assert (stats.verified, stats.inconsistent) == (1, 0)


async def test_a_projection_ignores_a_field_that_changes_on_every_load(make: Make) -> None:
    async def menu() -> dict[str, Any]:
        return {"items": ["Gelato 41"], "loaded_at": time.time()}

    def without_load_time(value: dict[str, Any]) -> object:
        return value["items"]

    projected = Namespace("menu", ttl=60, compare_key=without_load_time)
    whole = Namespace("menu:whole", ttl=60)
    cache = await make()
    for namespace in (projected, whole):
        await cache.get_or_load(namespace, "m", menu)
        await cache.get_or_load(namespace, "m", menu)
    assert (await stats_when(cache, "menu", checked)).inconsistent == 0
    assert (await stats_when(cache, "menu:whole", checked)).inconsistent == 1


async def test_a_different_key_order_is_no_difference(make: Make) -> None:
    cache, db = await make(), Database(a={"name": "x", "price": 1})
    await hit(cache, db, "a")
    db.rows["a"] = {"price": 1, "name": "x"}  # other bytes, equal value
    stats = await stats_when(cache, "item", checked)
    assert (stats.verified, stats.inconsistent) == (1, 0)


async def test_a_cached_none_is_compared_too(make: Make) -> None:
    cache, db = await make(), Database(a=None)
    await hit(cache, db, "a")
    db.rows["a"] = {"price": 1}  # created without invalidating the cached "not found"
    stats = await stats_when(cache, "item", checked)
    assert stats.inconsistent == 1


async def test_a_failing_loader_is_counted_never_raised(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    cache, db = await make(), Database(a={"price": 250})
    await hit(cache, db, "a")
    db.failing = True
    with caplog.at_level(logging.WARNING, logger="ogcache.cache"):
        stats = await stats_when(cache, "item", checked)
        # The caller is not disturbed: hits still answer while the database is down.
        assert await cache.get_or_load(ITEMS, "a", db.loader("a")) == {"price": 250}
    assert (stats.verify_errors, stats.verified, stats.inconsistent) == (1, 0, 0)
    assert stats.load_errors == 0
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "cache.verify_error"]
    assert "RuntimeError" in record.getMessage()
    assert "secret-a" not in record.getMessage()  # the exception's message may hold user data


async def test_sample_zero_schedules_nothing(make: Make) -> None:
    cache, db = await make(sample=0.0), Database(a=1)
    for _ in range(20):
        await hit(cache, db, "a")
    await asyncio.sleep(4 * DELAY)
    stats = cache.stats()["item"]
    assert (stats.verified, stats.verify_skipped, stats.verify_errors) == (0, 0, 0)
    assert db.loads["a"] == 1


async def test_a_namespace_may_opt_out(make: Make) -> None:
    cache, db = await make(), Database(a=1)
    await hit(cache, db, "a", Namespace("aggregate", ttl=60, verify=False))
    await asyncio.sleep(4 * DELAY)
    assert cache.stats()["aggregate"].verified == 0
    assert db.loads["a"] == 1


async def test_checks_in_flight_are_bounded_and_close_cancels_them(make: Make) -> None:
    # A long delay: the checks are still pending when the test closes the cache.
    cache, db = await make(delay=30.0, max_pending=2), Database(a=1)
    await cache.get_or_load(ITEMS, "a", db.loader("a"))  # the fill
    for _ in range(5):  # 5 hits sampled: 2 checks scheduled, 3 skipped
        await cache.get_or_load(ITEMS, "a", db.loader("a"))
    stats = cache.stats()["item"]
    assert (stats.hits, stats.verify_skipped, stats.verified) == (5, 3, 0)
    started = time.monotonic()
    await cache.close()
    assert time.monotonic() - started < 5  # cancelled, not awaited for 30 s
    assert db.loads["a"] == 1
    assert cache.stats()["item"].verified == 0


async def test_close_cancels_a_check_before_it_loads(make: Make) -> None:
    cache, db = await make(delay=0.2), Database(a=1)
    await hit(cache, db, "a")
    await cache.close()
    await asyncio.sleep(0.5)
    assert db.loads["a"] == 1
    stats = cache.stats()["item"]
    assert (stats.verified, stats.verify_errors) == (0, 0)


@pytest.mark.parametrize(
    "settings",
    [
        {"sample": -0.1},
        {"sample": 1.5},
        {"sample": math.nan},
        {"delay": 0},
        {"delay": -1},
        {"delay": math.nan},
        {"delay": math.inf},
        {"max_pending": 0},
        {"max_pending": 1.5},
        {"max_pending": True},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(CacheConfigurationError):
        VerifierSettings(**settings)


def test_the_verifier_is_off_by_default() -> None:
    assert Policy().verifier is None
    assert VerifierSettings() == VerifierSettings(sample=0.001, delay=2.0, max_pending=100)
