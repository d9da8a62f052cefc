"""The consistency verifier in the application, on PostgreSQL + Redis with every hit sampled.

A row changed by raw SQL, without the service's invalidation, must show up as inconsistent in
``GET /api/cache`` and ``/metrics``; the menu's ``loaded_at`` (new on every load) must not.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from ogcache.config import Settings
from ogcache.runtime import Runtime
from tests.api.conftest import ADMIN_TOKEN, ALICE
from tests.services.conftest import make_settings

DELAY = 0.05
DEADLINE = 10.0


@pytest.fixture
def stack_settings(postgres_database: str, redis_url: str) -> Settings:
    """PostgreSQL + Redis only (a raw SQL write is the point), every hit sampled."""
    return make_settings(
        postgres_database,
        redis_url,
        admin_token=ADMIN_TOKEN,
        verify_sample=1.0,
        verify_delay=DELAY,
        local_ttl_menu=0,  # every hit from Redis, where the verifier samples them
    )


async def namespace_when(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """``GET /api/cache``'s stats once the namespace has a verified hit (or fail)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        stats = (await http.get("/api/cache")).json()["stats"]
        namespace = stats["namespaces"].get(name, {})
        if namespace.get("verified", 0) >= 1:
            return stats
        assert time.monotonic() < deadline, f"no verified hit of {name}: {stats}"
        await asyncio.sleep(0.02)


async def execute(runtime: Runtime, sql: str, **params: object) -> None:
    """A write straight to the database: no service, so no invalidation."""
    async with runtime.engine.begin() as connection:
        await connection.execute(text(sql), params)


async def test_the_menus_load_time_is_no_inconsistency(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    full = seeded.cache.full_key(seeded.namespaces.menu, "items")
    await client.get("/api/menu")
    before = await seeded.cache.backend.get(full)
    await client.get("/api/menu")  # the hit, checked after DELAY: loaded_at differs by then
    stats = await namespace_when(client, "menu")
    assert (
        stats["namespaces"]["menu"]["verified"],
        stats["namespaces"]["menu"]["inconsistent"],
    ) == (
        1,
        0,
    )
    # The same entry all along: the check compared it with a fresh load, it did not skip it.
    assert await seeded.cache.backend.get(full) == before
    assert stats["verifier"] == {
        "sample": 1.0,
        "delaySeconds": DELAY,
        "verified": 1,
        "inconsistent": 0,
        "maxInconsistencyAgeSeconds": 0.0,
    }


async def test_a_row_changed_without_invalidation_is_reported(
    client: httpx.AsyncClient, seeded: Runtime
) -> None:
    await client.get("/api/menu")
    await client.get("/api/menu")
    await execute(
        seeded,
        "UPDATE menu_items SET price_1g = COALESCE(price_1g, 0) + 1 "
        "WHERE available AND NOT is_concentrate",
    )
    stats = await namespace_when(client, "menu")
    menu = stats["namespaces"]["menu"]
    assert (menu["verified"], menu["inconsistent"]) == (1, 1)
    assert menu["inconsistencyAgeSeconds"] > 0
    verifier = stats["verifier"]
    assert (verifier["verified"], verifier["inconsistent"]) == (1, 1)
    assert verifier["maxInconsistencyAgeSeconds"] == menu["inconsistencyAgeSeconds"]

    metrics = (await client.get("/metrics")).text
    assert re.search(r'^ogcache_cache_verified_total\{namespace="menu"\} 1(\.0)?$', metrics, re.M)
    assert re.search(
        r'^ogcache_cache_inconsistent_total\{namespace="menu"\} 1(\.0)?$', metrics, re.M
    )
    age = re.search(
        r'^ogcache_cache_inconsistency_age_seconds\{namespace="menu"\} (\S+)$', metrics, re.M
    )
    assert age is not None
    assert float(age.group(1)) == pytest.approx(menu["inconsistencyAgeSeconds"])


async def test_a_profiles_inconsistency_is_logged_without_the_user(
    client: httpx.AsyncClient,
    seeded: Runtime,
    alice: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await client.get(f"/api/profiles/{ALICE}", headers=alice)
    await client.get(f"/api/profiles/{ALICE}", headers=alice)
    await execute(
        seeded, "UPDATE user_profiles SET loyalty_points = 4242 WHERE user_id = :user", user=ALICE
    )
    with caplog.at_level(logging.WARNING, logger="ogcache.cache"):
        stats = await namespace_when(client, "user:profile")
    assert stats["namespaces"]["user:profile"]["inconsistent"] == 1
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "cache.inconsistent"]
    assert record.namespace == "user:profile"  # type: ignore[attr-defined]
    shown = record.getMessage() + repr(record.__dict__)
    assert ALICE not in shown
    assert "4242" not in shown


def test_only_namespaces_fit_for_it_are_verified(seeded: Runtime) -> None:
    """The menu without its load time; neither the menu text (loaded through the cache) nor
    the analytics (not invalidated on write, by design)."""
    namespaces = seeded.namespaces
    assert namespaces.menu.compare_key is not None
    unverified = {n.name for n in namespaces.all() if not n.verify}
    assert unverified == {"menu:context", "analytics:today", "analytics:top"}
