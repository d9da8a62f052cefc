"""Nothing lost on PostgreSQL: transactions committing out of id order, changes made while no
server runs, a listener killed mid-stream, Redis stopped, the leader dying; and a fill that
read the old row is not stored after the change's invalidation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from ogcache.config import Settings
from ogcache.db.models import MenuItem, utc_now
from ogcache.db.seed import seed_demo_data
from ogcache.errors import AuthenticationError
from ogcache.runtime import Runtime
from ogcache.schemas import MenuItemPublic, MenuPublic
from tests.changes.conftest import applied_all, sql, until
from tests.changes.test_capture import price_of
from tests.services.conftest import make_settings
from tests.support.databases import create_postgres_database, drop_postgres_database, migrate
from tests.support.servers import RedisProcess


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    url = await create_postgres_database(postgres_url)
    await migrate(url)
    yield url
    await drop_postgres_database(postgres_url, url)


@pytest.fixture
def settings(database: str, redis_url: str) -> Settings:
    return make_settings(database, redis_url, change_poll_interval=0.05)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Runtime]:
    """Seeded; its capture is not started (each test starts it when it needs it)."""
    runtime = Runtime.open(settings)
    await seed_demo_data(runtime.db)
    yield runtime
    await runtime.cache.clear()
    await runtime.close()


async def start(runtime: Runtime) -> None:
    runtime.changes.start()
    await until(lambda: runtime.changes.stats.role in ("leader", "standby"))
    if runtime.changes.stats.role == "leader":
        await applied_all(runtime)


async def gelato(runtime: Runtime) -> int | None:
    return price_of(await runtime.menu.get_menu(), "Gelato 41")


async def test_a_transaction_that_commits_after_a_newer_one_is_not_skipped(app: Runtime) -> None:
    await start(app)
    await app.menu.get_menu()
    await app.profiles.get("web_demo_alice")
    async with app.engine.connect() as slow, app.engine.connect() as fast:
        await slow.execute(text("UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'"))
        await fast.execute(
            text("UPDATE user_profiles SET notes = 'x' WHERE user_id = 'web_demo_alice'")
        )
        await fast.commit()  # the higher id commits first and is applied
        await until(lambda: _notes_are(app, "x"))
        await app.menu.get_menu()  # the old price, cached again
        await slow.commit()  # the lower id commits last
    await until(lambda: _gelato_is(app, 4321))


async def _notes_are(app: Runtime, notes: str) -> bool:
    profile = await app.profiles.get("web_demo_alice")
    return profile is not None and profile.notes == notes


async def _gelato_is(app: Runtime, price: int) -> bool:
    return await gelato(app) == price


async def test_changes_committed_while_no_server_runs_are_applied_at_start(app: Runtime) -> None:
    await app.menu.get_menu()
    await sql(app, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
    await asyncio.sleep(0.3)
    assert await gelato(app) != 4321  # nobody applies it yet
    app.changes.start()
    await until(lambda: _gelato_is(app, 4321))


async def test_a_listener_killed_mid_stream_loses_nothing(app: Runtime) -> None:
    await start(app)
    await app.menu.get_menu()
    for price in range(5001, 5021):
        await sql(app, "UPDATE menu_items SET price_1g = :p WHERE name = 'Gelato 41'", p=price)
        if price == 5010:
            await sql(
                app,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'ogcache-change-capture' "
                "AND datname = current_database()",
            )
            await until(lambda: app.changes.stats.errors >= 1)  # the rest while it reconnects
    await until(lambda: _gelato_is(app, 5020))
    await until(lambda: app.changes.stats.role == "leader")
    await sql(app, "UPDATE menu_items SET price_1g = 6000 WHERE name = 'Gelato 41'")
    await until(lambda: _gelato_is(app, 6000))


async def test_changes_made_while_redis_is_stopped_are_applied_when_it_is_back(
    settings: Settings, own_redis: RedisProcess
) -> None:
    runtime = Runtime.open(settings.model_copy(update={"redis_url": own_redis.url}))
    try:
        await seed_demo_data(runtime.db)
        await start(runtime)
        assert await gelato(runtime) != 4321
        assert runtime.cache.stats()["menu"].hits + runtime.cache.stats()["menu"].misses >= 1
        own_redis.pause()  # hung: every call times out
        await sql(runtime, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
        await until(lambda: runtime.changes.stats.failures >= 1)
        own_redis.resume()  # still holding the old menu
        await until(lambda: _gelato_is(runtime, 4321))
        await applied_all(runtime)
    finally:
        await runtime.close()


async def test_of_two_servers_one_applies_and_the_other_takes_over_when_it_dies(
    settings: Settings, app: Runtime
) -> None:
    await start(app)
    second = Runtime.open(settings)
    try:
        await start(second)
        assert (app.changes.stats.role, second.changes.stats.role) == ("leader", "standby")
        await second.menu.get_menu()
        await sql(app, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
        await until(lambda: _gelato_is(second, 4321))
        assert second.changes.stats.applied == 0
        await app.changes.close()  # the leader dies
        await until(lambda: second.changes.stats.role == "leader", within=10)
        await sql(app, "UPDATE menu_items SET price_1g = 4322 WHERE name = 'Gelato 41'")
        await until(lambda: _gelato_is(second, 4322))
        await until(lambda: second.changes.stats.applied >= 1)  # counted after its commit
    finally:
        await second.close()


async def test_a_fill_that_read_the_old_row_is_not_stored_after_the_invalidation(
    app: Runtime,
) -> None:
    await start(app)
    read, release = asyncio.Event(), asyncio.Event()

    async def slow_load() -> MenuPublic:
        menu = await menu_from_database(app)
        read.set()
        await release.wait()
        return menu

    fill = asyncio.create_task(app.cache.get_or_load(app.namespaces.menu, "items", slow_load))
    await read.wait()  # the fill holds the lease and the old price
    applied = app.changes.stats.applied
    await sql(app, "UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
    await until(lambda: app.changes.stats.applied > applied)
    release.set()
    assert price_of(await fill, "Gelato 41") != 4321  # its caller started before the write
    assert app.cache.stats()["menu"].sets_rejected == 1  # but it is not stored
    assert await gelato(app) == 4321


async def menu_from_database(runtime: Runtime) -> MenuPublic:
    async with runtime.db() as session:
        rows = await session.scalars(
            select(MenuItem).where(MenuItem.available.is_(True), MenuItem.is_concentrate.is_(False))
        )
        items = [MenuItemPublic.model_validate(row) for row in rows]
    return MenuPublic(include_concentrates=False, items=items, loaded_at=utc_now())


async def test_a_truncate_drops_the_entries_of_the_tables_it_empties(app: Runtime) -> None:
    await start(app)
    token = (await app.auth.issue_token("web_demo_alice")).access_token
    await app.auth.verify(token)
    await app.profiles.get("web_demo_alice")
    await sql(app, "TRUNCATE user_profiles CASCADE")

    async def gone() -> bool:
        try:
            await app.auth.verify(token)
        except AuthenticationError:
            return await app.profiles.get("web_demo_alice") is None
        return False

    await until(gone)


async def test_a_writer_without_rights_on_the_outbox_still_writes_and_cannot_read_it(
    app: Runtime,
) -> None:
    role = f"ogcache_writer_{uuid.uuid4().hex[:8]}"
    await sql(app, f"CREATE ROLE {role}", f"GRANT SELECT, UPDATE ON menu_items TO {role}")
    try:
        async with app.engine.begin() as connection:
            await connection.execute(text(f"SET LOCAL ROLE {role}"))
            await connection.execute(
                text("UPDATE menu_items SET price_1g = 4321 WHERE name = 'Gelato 41'")
            )
            with pytest.raises(DBAPIError, match="permission denied"):
                async with connection.begin_nested():
                    await connection.execute(text("SELECT count(*) FROM cache_changes"))
        await start(app)
        await until(lambda: _gelato_is(app, 4321))
    finally:
        await sql(app, f"DROP OWNED BY {role}", f"DROP ROLE {role}")
