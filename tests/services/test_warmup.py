"""Warm-up: load what every chat turn reads from the database into the cache, ahead of time."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ogcache.db.models import MenuItem, utc_now
from ogcache.errors import InvalidInputError, NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import (
    ConversationCreate,
    MenuItemPublic,
    MenuPublic,
    MessageCreate,
    TodayMetrics,
    TopProduct,
)

TELEGRAM_USER = "tg_100000001"  # a demo user with a Telegram link and two conversations
TELEGRAM_ID = 100000001


def hits_and_loads(runtime: Runtime, namespace: str) -> tuple[int, int, int]:
    stats = runtime.cache.stats()[namespace]
    return stats.hits, stats.misses, stats.loads


async def read_critical(runtime: Runtime) -> None:
    for include_concentrates in (False, True):
        await runtime.menu.get_menu(include_concentrates)
        await runtime.menu.get_context(include_concentrates)
    await runtime.analytics.today()
    await runtime.analytics.top_products()


async def test_warm_critical_names_every_entry_it_warmed(seeded: Runtime) -> None:
    report = await seeded.warmup.warm_critical()
    day = utc_now().date().isoformat()
    assert report.warmed == [
        "menu:items",
        "menu:context:text",
        "menu:items:concentrates",
        "menu:context:text:concentrates",
        f"analytics:today:{day}",
        "analytics:top:7",
    ]
    assert len(report) == 6


async def test_after_warm_critical_every_critical_read_is_a_hit(seeded: Runtime) -> None:
    await seeded.warmup.warm_critical()
    seeded.cache.reset_stats()

    await read_critical(seeded)

    assert hits_and_loads(seeded, "menu") == (2, 0, 0)
    assert hits_and_loads(seeded, "menu:context") == (2, 0, 0)
    assert hits_and_loads(seeded, "analytics:today") == (1, 0, 0)
    assert hits_and_loads(seeded, "analytics:top") == (1, 0, 0)


async def test_warm_critical_caches_what_a_load_would_return(seeded: Runtime) -> None:
    await seeded.warmup.warm_critical()
    warm_menu = await seeded.menu.get_menu(True)
    warm_context = await seeded.menu.get_context()
    warm_today = await seeded.analytics.today()
    warm_top = await seeded.analytics.top_products()

    await seeded.cache.clear()

    assert (await seeded.menu.get_menu(True)).items == warm_menu.items
    assert await seeded.menu.get_context() == warm_context
    assert await seeded.analytics.today() == warm_today
    assert await seeded.analytics.top_products() == warm_top
    assert warm_today.events_total > 0
    assert warm_top


async def test_warm_critical_works_on_an_empty_database(runtime: Runtime) -> None:
    assert len(await runtime.warmup.warm_critical()) == 6
    runtime.cache.reset_stats()
    assert (await runtime.menu.get_menu()).items == []
    assert (await runtime.analytics.today()).events_total == 0
    assert await runtime.analytics.top_products() == []
    assert hits_and_loads(runtime, "menu") == (1, 0, 0)
    assert hits_and_loads(runtime, "analytics:top") == (1, 0, 0)


async def test_warm_user_names_every_entry_it_warmed(seeded: Runtime) -> None:
    report = await seeded.warmup.warm_user(TELEGRAM_USER)
    recent = await seeded.conversations.recent(TELEGRAM_USER)
    assert len(recent) == 2
    assert report.warmed == [
        f"user:profile:{TELEGRAM_USER}",
        f"user:telegram:{TELEGRAM_ID}",
        f"conversation:recent:{TELEGRAM_USER}",
        *(f"conversation:{summary.id}" for summary in recent),
    ]


async def test_after_warm_user_the_users_reads_are_hits(seeded: Runtime) -> None:
    await seeded.warmup.warm_user(TELEGRAM_USER)
    seeded.cache.reset_stats()

    profile = await seeded.profiles.get(TELEGRAM_USER)
    by_telegram = await seeded.profiles.get_by_telegram(TELEGRAM_ID)
    recent = await seeded.conversations.recent(TELEGRAM_USER)
    conversations = [await seeded.conversations.get(summary.id) for summary in recent]

    assert profile is not None
    assert by_telegram == profile
    assert len(recent) == 2
    assert all(c is not None and c.messages for c in conversations)
    assert hits_and_loads(seeded, "user:profile") == (1, 0, 0)
    assert hits_and_loads(seeded, "user:telegram") == (1, 0, 0)
    assert hits_and_loads(seeded, "conversation:recent") == (1, 0, 0)
    assert hits_and_loads(seeded, "conversation") == (2, 0, 0)


async def test_warm_user_without_conversations_caches_an_empty_list(runtime: Runtime) -> None:
    await runtime.profiles.get_or_create(user_id="web_alice")
    report = await runtime.warmup.warm_user("web_alice")
    assert report.warmed == ["user:profile:web_alice", "conversation:recent:web_alice"]
    assert await runtime.cache.get(runtime.namespaces.recent_conversations, "web_alice") == []


async def test_warm_user_of_an_unknown_user_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFoundError):
        await runtime.warmup.warm_user("nobody")


async def test_warm_user_rejects_an_invalid_user_id(runtime: Runtime) -> None:
    with pytest.raises(InvalidInputError, match="user_id"):
        await runtime.warmup.warm_user("has space")


async def test_warm_critical_overwrites_stale_cached_values(seeded: Runtime) -> None:
    ns = seeded.namespaces
    day = utc_now().date()
    await seeded.cache.set(
        ns.menu, "items", MenuPublic(include_concentrates=False, items=[], loaded_at=utc_now())
    )
    await seeded.cache.set(ns.menu_context, "text:concentrates", "stale menu text")
    await seeded.cache.set(
        ns.analytics_today,
        day.isoformat(),
        TodayMetrics(
            day=day,
            events_total=999,
            events_by_type={"stale": 999},
            active_users=0,
            conversations_started=0,
            messages_sent=0,
            orders_created=0,
        ),
    )
    await seeded.cache.set(ns.analytics_top, "7", [TopProduct(product="x", mentions=1, orders=0)])

    await seeded.warmup.warm_critical()

    async with seeded.db() as session:
        available = [
            MenuItemPublic.model_validate(row)
            for row in await session.scalars(
                select(MenuItem)
                .where(MenuItem.available.is_(True), MenuItem.is_concentrate.is_(False))
                .order_by(MenuItem.id)
            )
        ]
    menu = await seeded.menu.get_menu()
    assert sorted(menu.items, key=lambda item: item.id) == available
    context = await seeded.menu.get_context(True)
    assert context != "stale menu text"
    assert "Live Rosin" in context
    today = await seeded.analytics.today()
    assert "stale" not in today.events_by_type
    assert today.events_total != 999
    assert "x" not in {top.product for top in await seeded.analytics.top_products()}


async def test_warm_user_overwrites_stale_cached_values(seeded: Runtime) -> None:
    ns = seeded.namespaces
    profile = await seeded.profiles.get(TELEGRAM_USER)
    assert profile is not None
    recent = await seeded.conversations.recent(TELEGRAM_USER)
    newest = recent[0]
    conversation = await seeded.conversations.get(newest.id)
    assert conversation is not None
    stale_profile = profile.model_copy(update={"loyalty_points": profile.loyalty_points + 1000})
    await seeded.cache.set(ns.profile, TELEGRAM_USER, stale_profile)
    await seeded.cache.set(ns.profile_by_telegram, str(TELEGRAM_ID), stale_profile)
    await seeded.cache.set(ns.recent_conversations, TELEGRAM_USER, [])
    await seeded.cache.set(
        ns.conversation, str(newest.id), conversation.model_copy(update={"messages": []})
    )

    await seeded.warmup.warm_user(TELEGRAM_USER)

    assert await seeded.profiles.get(TELEGRAM_USER) == profile
    assert await seeded.profiles.get_by_telegram(TELEGRAM_ID) == profile
    assert await seeded.conversations.recent(TELEGRAM_USER) == recent
    assert await seeded.conversations.get(newest.id) == conversation


async def test_warm_user_reflects_writes_made_since_the_last_read(seeded: Runtime) -> None:
    """Warm-up reads the database, not whatever the cache holds."""
    before = await seeded.conversations.recent(TELEGRAM_USER)
    created = await seeded.conversations.create(
        ConversationCreate(user_id=TELEGRAM_USER, channel="telegram")
    )
    await seeded.conversations.add_message(created.id, MessageCreate(role="user", content="hi"))
    await seeded.cache.set(seeded.namespaces.recent_conversations, TELEGRAM_USER, before)

    await seeded.warmup.warm_user(TELEGRAM_USER)

    recent = await seeded.conversations.recent(TELEGRAM_USER)
    assert [s.id for s in recent] == [created.id, *(s.id for s in before)]
    assert recent[0].message_count == 1
