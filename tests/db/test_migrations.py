"""The Alembic migrations: on a fresh PostgreSQL database and a fresh SQLite file they build
exactly the schema the models describe, idempotently, and downgrade removes it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ogcache.db import create_engine, upgrade
from ogcache.db.migrate import alembic_config
from ogcache.db.models import Base, MenuItem, utc_now
from tests.support.databases import create_postgres_database, drop_postgres_database

TABLES = {"user_profiles", "conversations", "menu_items", "auth_sessions", "agent_events"}


@pytest.fixture(params=["postgresql", "sqlite"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on an empty database of its own, never migrated."""
    if request.param == "postgresql":
        server_url: str = request.getfixturevalue("postgres_url")
        url = await create_postgres_database(server_url)
    else:
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    instance = create_engine(url)
    yield instance
    await instance.dispose()
    if request.param == "postgresql":
        await drop_postgres_database(server_url, url)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


async def schema_differences(engine: AsyncEngine) -> list[Any]:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "target_metadata": Base.metadata,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        return await connection.run_sync(compare)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def test_a_fresh_database_has_no_tables(engine: AsyncEngine) -> None:
    assert await table_names(engine) == set()
    assert await current_revision(engine) is None


async def test_upgrade_creates_all_five_tables(engine: AsyncEngine) -> None:
    await upgrade(engine)
    assert await table_names(engine) == TABLES | {"alembic_version"}
    assert await current_revision(engine) == "0001"


async def test_upgrading_twice_changes_nothing_and_keeps_the_data(engine: AsyncEngine) -> None:
    await upgrade(engine)
    async with engine.begin() as connection:
        await connection.execute(
            MenuItem.__table__.insert().values(
                name="Kept", category="Flowers", is_concentrate=False, our=True,
                available=True, sort_order=1, updated_at=utc_now(),
            )
        )  # fmt: skip

    await upgrade(engine)

    assert await table_names(engine) == TABLES | {"alembic_version"}
    assert await current_revision(engine) == "0001"
    async with engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(MenuItem)) == 1
    assert await schema_differences(engine) == []


async def test_the_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    await upgrade(engine)
    assert await schema_differences(engine) == []


async def test_the_comparison_notices_a_schema_that_differs(engine: AsyncEngine) -> None:
    # Guards the test above: an unmigrated database must show every table as missing.
    differences = await schema_differences(engine)
    added = {diff[1].name for diff in differences if diff[0] == "add_table"}
    assert added == TABLES


async def test_the_comparison_notices_a_missing_index(engine: AsyncEngine) -> None:
    await upgrade(engine)
    async with engine.begin() as connection:
        await connection.execute(text("DROP INDEX ix_agent_events_created_at"))
    differences = await schema_differences(engine)
    assert [(diff[0], diff[1].name) for diff in differences] == [
        ("add_index", "ix_agent_events_created_at")
    ]


async def test_downgrade_to_base_removes_the_tables(engine: AsyncEngine) -> None:
    await upgrade(engine)
    await downgrade(engine)
    assert await table_names(engine) - {"alembic_version"} == set()
    assert await current_revision(engine) is None


async def test_upgrade_after_downgrade_rebuilds_the_schema(engine: AsyncEngine) -> None:
    await upgrade(engine)
    await downgrade(engine)
    await upgrade(engine)
    assert await table_names(engine) == TABLES | {"alembic_version"}
    assert await schema_differences(engine) == []
