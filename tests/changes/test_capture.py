"""Writes made with SQL outside the app reach the cache: every cached table, on PostgreSQL +
Redis, SQLite + Redis and SQLite + the in-process cache."""

from __future__ import annotations

import sqlite3
import time
import uuid

import pytest
from sqlalchemy import text

from ogcache.config import Settings
from ogcache.db.seed import seed_demo_data
from ogcache.errors import AuthenticationError, NotFoundError
from ogcache.runtime import Runtime
from ogcache.schemas import MenuPublic
from tests.changes.conftest import applied_all, sql, until


def price_of(menu: MenuPublic, name: str) -> int | None:
    return next(item.price_1g for item in menu.items if item.name == name)


async def test_a_menu_price_set_with_sql_shows_in_both_menus_and_the_text(app: Runtime) -> None:
    assert price_of(await app.menu.get_menu(), "Gelato 41") != 4321
    await app.menu.get_menu(include_concentrates=True)
    await app.menu.get_context()
    await sql(app, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
    await until(lambda: _price_is(app, 4321))
    assert price_of(await app.menu.get_menu(include_concentrates=True), "Gelato 41") == 4321
    assert "Gelato 41 (" in await app.menu.get_context()
    assert "1g 4321 THB" in await app.menu.get_context()
    await applied_all(app)
    assert app.cache.stats()["menu"].hits >= 1  # it was served from the cache before


async def _price_is(app: Runtime, price: int) -> bool:
    return price_of(await app.menu.get_menu(), "Gelato 41") == price


async def test_menu_rows_added_and_deleted_with_sql_show(app: Runtime) -> None:
    await app.menu.get_menu()
    await sql(
        app,
        "INSERT INTO menu_items (name, category, price_1g, is_concentrate, our, available, "
        "sort_order, updated_at) VALUES ('SQL Kush', 'TOP SHELF', 999, false, false, true, 0, "
        "CURRENT_TIMESTAMP)",
    )
    await until(lambda: _has_item(app, "SQL Kush"))
    await sql(app, "DELETE FROM menu_items WHERE name = 'SQL Kush'")
    await until(lambda: _lacks_item(app, "SQL Kush"))


async def _has_item(app: Runtime, name: str) -> bool:
    return any(item.name == name for item in (await app.menu.get_menu()).items)


async def _lacks_item(app: Runtime, name: str) -> bool:
    return not await _has_item(app, name)


async def test_a_profile_edited_with_sql_is_fresh_under_both_keys(app: Runtime) -> None:
    assert (await app.profiles.get("tg_100000001")).notes is None  # type: ignore[union-attr]
    await app.profiles.get_by_telegram(100000001)
    await sql(app, "UPDATE user_profiles SET notes = 'vip' WHERE user_id = 'tg_100000001'")

    async def fresh() -> bool:
        by_id = await app.profiles.get("tg_100000001")
        by_telegram = await app.profiles.get_by_telegram(100000001)
        return (
            by_id is not None
            and by_telegram is not None
            and by_id.notes == "vip" == by_telegram.notes
        )

    await until(fresh)


async def test_moving_a_telegram_link_with_sql_drops_the_old_and_the_new_key(
    app: Runtime,
) -> None:
    assert await app.profiles.get_by_telegram(100000001) is not None
    assert await app.profiles.get_by_telegram(777) is None  # "not found", cached
    await sql(
        app, "UPDATE user_profiles SET telegram_user_id = 777 WHERE telegram_user_id = 100000001"
    )

    async def moved() -> bool:
        old = await app.profiles.get_by_telegram(100000001)
        new = await app.profiles.get_by_telegram(777)
        return old is None and new is not None and new.user_id == "tg_100000001"

    await until(moved)


async def test_a_user_blocked_with_sql_is_refused_within_a_second(app: Runtime) -> None:
    token = (await app.auth.issue_token("web_demo_alice")).access_token
    await app.auth.verify(token)
    await app.auth.verify(token)  # cached now
    await sql(app, "UPDATE user_profiles SET is_blocked = true WHERE user_id = 'web_demo_alice'")
    committed = time.monotonic()
    await until(lambda: _refused(app, token))
    assert time.monotonic() - committed < 1.0


async def test_a_session_revoked_with_sql_is_refused_within_a_second(app: Runtime) -> None:
    issued = await app.auth.issue_token("web_demo_alice")
    await app.auth.verify(issued.access_token)
    await app.auth.verify(issued.access_token)
    await sql(
        app,
        "UPDATE auth_sessions SET revoked_at = CURRENT_TIMESTAMP WHERE id = :id",
        id=_db_uuid(app, issued.session_id),
    )
    committed = time.monotonic()
    await until(lambda: _refused(app, issued.access_token))
    assert time.monotonic() - committed < 1.0


def _db_uuid(app: Runtime, value: uuid.UUID) -> str:
    # How each database stores a UUID column: native on PostgreSQL, 32 hex digits on SQLite.
    return str(value) if app.engine.dialect.name == "postgresql" else value.hex


async def _refused(app: Runtime, token: str) -> bool:
    try:
        await app.auth.verify(token)
    except AuthenticationError:
        return True
    return False


async def test_conversation_rows_written_with_sql_show(app: Runtime) -> None:
    [summary, *_] = await app.conversations.recent("web_demo_alice")
    conversation = await app.conversations.get(summary.id)
    assert conversation is not None
    cid = _db_uuid(app, summary.id)
    await sql(
        app,
        "INSERT INTO conversation_messages (conversation_id, seq, role, content, created_at) "
        "VALUES (:cid, :seq, 'assistant', 'added with SQL', CURRENT_TIMESTAMP)",
        "UPDATE conversations SET summary = 'edited with SQL', message_count = :seq "
        "WHERE id = :cid",
        cid=cid,
        seq=conversation.message_count + 1,
    )

    async def fresh() -> bool:
        read = await app.conversations.get(summary.id)
        recent = await app.conversations.recent("web_demo_alice")
        return (
            read is not None
            and read.messages[-1].content == "added with SQL"
            and read.summary == "edited with SQL"
            and any(item.summary == "edited with SQL" for item in recent)
        )

    await until(fresh)


async def test_a_profile_deleted_with_sql_takes_its_entries_along(app: Runtime) -> None:
    [summary, *_] = await app.conversations.recent("web_demo_alice")
    await app.profiles.get("web_demo_alice")
    await app.conversations.get(summary.id)
    await sql(app, "DELETE FROM user_profiles WHERE user_id = 'web_demo_alice'")

    async def gone() -> bool:
        try:
            await app.conversations.recent("web_demo_alice")
        except NotFoundError:
            return (
                await app.profiles.get("web_demo_alice") is None
                and await app.conversations.get(summary.id) is None
            )
        return False

    await until(gone)


async def test_events_inserted_with_sql_reach_the_analytics(app: Runtime) -> None:
    before = await app.analytics.today()
    top = await app.analytics.top_products(days=7, limit=100)
    for _ in range(3):
        await sql(
            app,
            "INSERT INTO agent_events (event_type, event_data, created_at) "
            "VALUES ('product_mentioned', :data, CURRENT_TIMESTAMP)",
            data='{"product": "SQL Haze"}',
        )

    async def counted() -> bool:
        today = await app.analytics.today()
        products = await app.analytics.top_products(days=7, limit=100)
        return today.events_total == before.events_total + 3 and any(
            p.product == "SQL Haze" and p.mentions == 3 for p in products
        )

    await until(counted)
    assert all(p.product != "SQL Haze" for p in top)


async def test_the_sqlite3_command_line_way_of_editing_reaches_the_cache(app: Runtime) -> None:
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    await app.menu.get_menu()
    database = app.engine.url.database
    assert database is not None
    with sqlite3.connect(database) as connection:  # what `sqlite3 ogcache.db "UPDATE …"` does
        connection.execute("UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
    await until(lambda: _price_is(app, 4321))


async def test_the_lag_and_the_counts_are_recorded(app: Runtime) -> None:
    applied = app.changes.stats.applied
    await sql(app, "UPDATE menu_items SET price_1g = 1111 WHERE name = 'Gelato 41'")
    await until(lambda: app.changes.stats.applied > applied)
    stats = app.changes.stats
    lag = stats.lag_summary()
    assert lag.count >= 1
    assert lag.p50_ms is not None
    assert stats.invalidated >= 4  # the two menus and the two texts
    assert stats.role in ("leader", "local")


async def test_with_capture_off_the_outbox_is_drained_and_nothing_invalidated(
    app: Runtime,
) -> None:
    await app.changes.close()
    off = Runtime.open(app.settings.model_copy(update={"change_capture": False}))
    try:
        off.changes.start()
        await until(lambda: off.changes.stats.role in ("leader", "local"))
        await app.menu.get_menu()
        await sql(app, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
        await until(lambda: off.changes.stats.applied >= 1)
        assert await _empty_or_passed(app, off)
        assert price_of(await app.menu.get_menu(), "Gelato 41") != 4321  # stale until the TTL
        assert off.changes.stats.invalidated == 0
    finally:
        await off.close()


async def _empty_or_passed(app: Runtime, off: Runtime) -> bool:
    async with app.engine.connect() as connection:
        newest = await connection.scalar(text("SELECT coalesce(max(id), 0) FROM cache_changes"))
        count = await connection.scalar(text("SELECT count(*) FROM cache_changes"))
    if app.engine.dialect.name == "postgresql":
        return bool(count == 0)
    return off.changes.position >= (newest or 0)


async def test_seeding_a_running_system_shows_without_a_clear(app: Runtime) -> None:
    await sql(app, "DELETE FROM menu_items")
    await sql(app, "DELETE FROM user_profiles WHERE user_id = 'web_demo_alice'")
    await until(lambda: _lacks_item(app, "Runtz"))
    assert await app.profiles.get("web_demo_alice") is None  # "not found", cached
    await seed_demo_data(app.db)  # what `ogcache db seed` does: adds the missing demo rows
    await until(lambda: _has_item(app, "Runtz"))
    await until(lambda: _exists(app, "web_demo_alice"))


async def _exists(app: Runtime, user_id: str) -> bool:
    return await app.profiles.get(user_id) is not None


async def test_an_unreadable_outbox_row_is_skipped_and_later_changes_applied(app: Runtime) -> None:
    await app.menu.get_menu()
    await sql(
        app,
        "INSERT INTO cache_changes (table_name, op, keys) VALUES ('conversations', 'UPDATE', :k)",
        k='{"id": [{"not": "a key"}, null], "user_id": [null, null]}',
    )
    await sql(app, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
    await until(lambda: _price_is(app, 4321))
    await until(lambda: app.changes.stats.skipped == 1)


async def test_changes_queued_before_the_first_start_reach_a_shared_cache(
    capture_settings: Settings,
) -> None:
    if capture_settings.redis_url is None:
        pytest.skip("an in-process cache starts empty: nothing queued before can be stale")
    runtime = Runtime.open(capture_settings)
    try:
        await seed_demo_data(runtime.db)
        await runtime.menu.get_menu()
        await sql(runtime, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
        runtime.changes.start()
        await until(lambda: _price_is(runtime, 4321))
    finally:
        await runtime.cache.clear()
        await runtime.close()


async def test_two_sqlite_processes_on_one_cache_both_keep_up(app: Runtime) -> None:
    if app.engine.dialect.name != "sqlite":
        pytest.skip("SQLite: every process polls")
    second = Runtime.open(app.settings)
    try:
        second.changes.start()
        await until(lambda: second.changes.stats.role == "local")
        await second.menu.get_menu()
        for price in range(5001, 5011):
            await sql(app, "UPDATE menu_items SET price_1g = :p WHERE name = 'Gelato 41'", p=price)
        await until(lambda: _price_is(app, 5010))
        await until(lambda: _price_is(second, 5010))
        assert app.changes.stats.errors == second.changes.stats.errors == 0
    finally:
        await second.close()
