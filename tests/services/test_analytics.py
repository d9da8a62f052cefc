"""Analytics: events are plain inserts; today's metrics and top products are cached aggregates.

The aggregates are deliberately not invalidated by new events (their staleness is bounded by
``ttl_analytics``); ``refresh()`` reloads them.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from ogcache.db.models import Conversation, utc_now
from ogcache.errors import InvalidInputError
from ogcache.runtime import Runtime
from ogcache.schemas import ConversationCreate, TopProduct


async def profile_id(runtime: Runtime, user_id: str) -> uuid.UUID:
    return (await runtime.profiles.get_or_create(user_id=user_id)).id


async def mention(runtime: Runtime, product: str, *, days_ago: float = 0, times: int = 1) -> None:
    at = utc_now() - timedelta(days=days_ago)
    for _ in range(times):
        await runtime.analytics.record_event("product_mentioned", {"product": product}, at=at)


async def order(runtime: Runtime, product: str, *, days_ago: float = 0, times: int = 1) -> None:
    at = utc_now() - timedelta(days=days_ago)
    for _ in range(times):
        await runtime.analytics.record_event("order_created", {"product": product}, at=at)


async def test_today_counts_events_by_type(runtime: Runtime) -> None:
    for _ in range(3):
        await runtime.analytics.record_event("message_sent", {"length": 12}, channel="web")
    await runtime.analytics.record_event("order_created", {"product": "Runtz"})
    await runtime.analytics.record_event("product_mentioned", {"product": "Runtz"})
    await runtime.analytics.record_event("page_view")

    today = await runtime.analytics.today()

    assert today.day == utc_now().date()
    assert today.events_by_type == {
        "message_sent": 3,
        "order_created": 1,
        "product_mentioned": 1,
        "page_view": 1,
    }
    assert today.events_total == 6
    assert (today.messages_sent, today.orders_created) == (3, 1)


async def test_today_leaves_out_earlier_days(runtime: Runtime) -> None:
    await runtime.analytics.record_event("message_sent")
    await runtime.analytics.record_event("message_sent", at=utc_now() - timedelta(days=1))
    await runtime.analytics.record_event("order_created", at=utc_now() - timedelta(days=3))
    today = await runtime.analytics.today()
    assert today.events_by_type == {"message_sent": 1}
    assert (today.events_total, today.messages_sent, today.orders_created) == (1, 1, 0)


async def test_today_counts_distinct_active_users(runtime: Runtime) -> None:
    alice = await profile_id(runtime, "web_alice")
    bob = await profile_id(runtime, "web_bob")
    carol = await profile_id(runtime, "web_carol")
    for user in (alice, alice, bob):
        await runtime.analytics.record_event("message_sent", user_profile_id=user)
    await runtime.analytics.record_event("message_sent")  # anonymous: not a user
    await runtime.analytics.record_event(
        "message_sent", user_profile_id=carol, at=utc_now() - timedelta(days=2)
    )
    assert (await runtime.analytics.today()).active_users == 2


async def test_today_counts_conversations_started_today(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    for _ in range(2):
        await runtime.conversations.create(ConversationCreate(user_id="web_alice", channel="web"))
    old = await runtime.conversations.create(ConversationCreate(user_id="web_alice", channel="web"))
    async with runtime.db.begin() as session:
        row = await session.get(Conversation, old.id)
        assert row is not None
        row.started_at = utc_now() - timedelta(days=2)
    assert (await runtime.analytics.today()).conversations_started == 2


async def test_today_with_no_events_is_all_zero(runtime: Runtime) -> None:
    today = await runtime.analytics.today()
    assert today.events_by_type == {}
    assert (
        today.events_total,
        today.active_users,
        today.conversations_started,
        today.messages_sent,
        today.orders_created,
    ) == (0, 0, 0, 0, 0)


async def test_second_read_of_today_is_a_cache_hit(runtime: Runtime) -> None:
    await runtime.analytics.record_event("message_sent")
    runtime.cache.reset_stats()
    first = await runtime.analytics.today()
    second = await runtime.analytics.today()
    assert first == second
    stats = runtime.cache.stats()["analytics:today"]
    assert (stats.misses, stats.hits, stats.loads) == (1, 1, 1)
    cached = await runtime.cache.get(runtime.namespaces.analytics_today, first.day.isoformat())
    assert cached == first


async def test_top_products_ranks_by_mentions_plus_orders(runtime: Runtime) -> None:
    await mention(runtime, "Runtz", times=3)
    await mention(runtime, "Gelato 41", times=1)
    await order(runtime, "Gelato 41", times=3)
    await mention(runtime, "Blue Dream", times=2, days_ago=3)
    await order(runtime, "Zkittlez", times=1)

    top = await runtime.analytics.top_products(days=7, limit=10)

    assert top == [
        TopProduct(product="Gelato 41", mentions=1, orders=3),
        TopProduct(product="Runtz", mentions=3, orders=0),
        TopProduct(product="Blue Dream", mentions=2, orders=0),
        TopProduct(product="Zkittlez", mentions=0, orders=1),
    ]


async def test_top_products_breaks_ties_by_orders_then_name(runtime: Runtime) -> None:
    await mention(runtime, "Runtz", times=2)
    await mention(runtime, "Amnesia Haze", times=2)
    await mention(runtime, "OG Kush", times=1)
    await order(runtime, "OG Kush", times=1)
    top = await runtime.analytics.top_products(days=7, limit=10)
    assert [product.product for product in top] == ["OG Kush", "Amnesia Haze", "Runtz"]


async def test_top_products_keeps_only_the_limit(runtime: Runtime) -> None:
    for times, product in enumerate(["A", "B", "C", "D"], start=1):
        await mention(runtime, product, times=times)
    top = await runtime.analytics.top_products(days=7, limit=2)
    assert [product.product for product in top] == ["D", "C"]


async def test_top_products_counts_only_the_window(runtime: Runtime) -> None:
    await mention(runtime, "Runtz", times=1, days_ago=1)
    await mention(runtime, "Runtz", times=5, days_ago=10)
    await order(runtime, "Charas", times=1, days_ago=10)

    last_week = await runtime.analytics.top_products(days=7, limit=10)
    last_month = await runtime.analytics.top_products(days=30, limit=10)

    assert last_week == [TopProduct(product="Runtz", mentions=1, orders=0)]
    assert last_month == [
        TopProduct(product="Runtz", mentions=6, orders=0),
        TopProduct(product="Charas", mentions=0, orders=1),
    ]


async def test_top_products_ignores_other_events_and_events_without_a_product(
    runtime: Runtime,
) -> None:
    await runtime.analytics.record_event("message_sent", {"product": "Runtz"})
    await runtime.analytics.record_event("product_mentioned", {"name": "Runtz"})
    await runtime.analytics.record_event("product_mentioned")
    await mention(runtime, "Gelato 41")
    top = await runtime.analytics.top_products(days=7, limit=10)
    assert top == [TopProduct(product="Gelato 41", mentions=1, orders=0)]


async def test_second_read_of_top_products_is_a_cache_hit(runtime: Runtime) -> None:
    await mention(runtime, "Runtz")
    runtime.cache.reset_stats()
    first = await runtime.analytics.top_products(days=7, limit=5)
    second = await runtime.analytics.top_products(days=7, limit=5)
    assert first == second
    stats = runtime.cache.stats()["analytics:top"]
    assert (stats.misses, stats.hits, stats.loads) == (1, 1, 1)
    assert (await runtime.cache.get(runtime.namespaces.analytics_top, "7"))[:5] == first


async def test_each_window_is_cached_apart_and_limits_share_it(runtime: Runtime) -> None:
    await mention(runtime, "Runtz", days_ago=10)
    await mention(runtime, "Gelato 41", days_ago=10)
    assert await runtime.analytics.top_products(days=7, limit=10) == []
    assert len(await runtime.analytics.top_products(days=30, limit=10)) == 2
    assert len(await runtime.analytics.top_products(days=30, limit=1)) == 1
    assert await runtime.cache.get(runtime.namespaces.analytics_top, "7") == []
    assert runtime.cache.stats()["analytics:top"].loads == 2


@pytest.mark.parametrize("days", [0, -1, 366])
async def test_top_products_rejects_days_out_of_range(runtime: Runtime, days: int) -> None:
    with pytest.raises(InvalidInputError, match="days"):
        await runtime.analytics.top_products(days=days)


@pytest.mark.parametrize("limit", [0, -5, 101])
async def test_top_products_rejects_a_limit_out_of_range(runtime: Runtime, limit: int) -> None:
    with pytest.raises(InvalidInputError, match="limit"):
        await runtime.analytics.top_products(limit=limit)


async def test_top_products_accepts_the_bounds(runtime: Runtime) -> None:
    await mention(runtime, "Runtz", days_ago=300)
    assert len(await runtime.analytics.top_products(days=365, limit=100)) == 1
    assert await runtime.analytics.top_products(days=1, limit=1) == []


@pytest.mark.parametrize("event_type", ["", "x" * 65])
async def test_record_event_rejects_a_bad_event_type(runtime: Runtime, event_type: str) -> None:
    with pytest.raises(InvalidInputError, match="event_type"):
        await runtime.analytics.record_event(event_type)


async def test_record_event_does_not_invalidate_todays_metrics(runtime: Runtime) -> None:
    """Documented behaviour: the cached aggregate stays as it was until its TTL or a refresh."""
    await runtime.analytics.record_event("message_sent")
    before = await runtime.analytics.today()
    assert before.messages_sent == 1

    await runtime.analytics.record_event("message_sent")
    await runtime.analytics.record_event("order_created", {"product": "Runtz"})

    assert await runtime.cache.get(runtime.namespaces.analytics_today, before.day.isoformat()) == (
        before
    )
    assert await runtime.analytics.today() == before


async def test_record_event_does_not_invalidate_top_products(runtime: Runtime) -> None:
    await mention(runtime, "Runtz")
    before = await runtime.analytics.top_products()
    await order(runtime, "Gelato 41", times=5)
    assert await runtime.analytics.top_products() == before


async def test_refresh_reloads_todays_metrics_and_top_products(runtime: Runtime) -> None:
    await mention(runtime, "Runtz")
    stale_today = await runtime.analytics.today()
    stale_top = await runtime.analytics.top_products(days=7, limit=10)
    await order(runtime, "Gelato 41", times=2)

    warmed = await runtime.analytics.refresh()

    day = utc_now().date().isoformat()
    assert [(namespace.name, key) for namespace, key in warmed] == [
        ("analytics:today", day),
        ("analytics:top", "7"),
    ]
    runtime.cache.reset_stats()
    today = await runtime.analytics.today()
    top = await runtime.analytics.top_products(days=7, limit=10)
    assert today != stale_today
    assert (today.events_total, today.orders_created) == (3, 2)
    assert top != stale_top
    assert top == [
        TopProduct(product="Gelato 41", mentions=0, orders=2),
        TopProduct(product="Runtz", mentions=1, orders=0),
    ]
    stats = runtime.cache.stats()
    assert (stats["analytics:today"].hits, stats["analytics:today"].loads) == (1, 0)
    assert (stats["analytics:top"].hits, stats["analytics:top"].loads) == (1, 0)
