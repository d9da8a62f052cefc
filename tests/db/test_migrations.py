"""The Alembic migrations: on a fresh PostgreSQL database and a fresh SQLite file they build
exactly the schema the models describe, idempotently, and downgrade removes it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Integer,
    Text,
    Uuid,
    column,
    func,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from ogcache.db import create_engine, upgrade
from ogcache.db.migrate import alembic_config
from ogcache.db.models import (
    Base,
    Conversation,
    ConversationMessage,
    MenuItem,
    UserProfile,
    utc_now,
)
from tests.support.databases import create_postgres_database, drop_postgres_database

TABLES = {
    "user_profiles",
    "conversations",
    "conversation_messages",
    "menu_items",
    "auth_sessions",
    "agent_events",
    "cache_changes",
    "cache_change_progress",
}
HEAD = "0003"


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


async def test_upgrade_creates_all_tables(engine: AsyncEngine) -> None:
    await upgrade(engine)
    assert await table_names(engine) == TABLES | {"alembic_version"}
    assert await current_revision(engine) == HEAD


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
    assert await current_revision(engine) == HEAD
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


# --- 0002: messages move from the JSON list to rows, and back on downgrade ----------------

JSON_CONVERSATIONS = table(
    "conversations",
    column("id", Uuid()),
    column("user_profile_id", Uuid()),
    column("channel", Text()),
    column("language", Text()),
    column("started_at", DateTime(timezone=True)),
    column("last_message_at", DateTime(timezone=True)),
    column("messages", JSON().with_variant(JSONB(), "postgresql")),
    column("message_count", Integer()),
)


async def insert_json_conversations(engine: AsyncEngine) -> dict[uuid.UUID, list[dict]]:
    """A profile with three conversations in the 0001 layout: five messages, none, one."""
    start = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)
    profile_id = uuid.uuid4()
    stored: dict[uuid.UUID, list[dict]] = {
        uuid.uuid4(): [
            {
                "role": "user" if n % 2 == 0 else "assistant",
                "content": f"message {n} ✓",
                "timestamp": (start + timedelta(minutes=n, microseconds=n)).isoformat(),
            }
            for n in range(5)
        ],
        uuid.uuid4(): [],
        uuid.uuid4(): [{"role": "user", "content": "only", "timestamp": start.isoformat()}],
    }
    async with engine.begin() as connection:
        await connection.execute(
            UserProfile.__table__.insert().values(
                id=profile_id, user_id="migrated", created_at=start, updated_at=start,
                first_visit=start, last_visit=start, total_conversations=3, total_messages=6,
                total_orders=0, total_spent=0, preferences={}, loyalty_points=0,
                is_active=True, is_blocked=False,
            )
        )  # fmt: skip
        for cid, messages in stored.items():
            await connection.execute(
                JSON_CONVERSATIONS.insert().values(
                    id=cid, user_profile_id=profile_id, channel="web", language="en",
                    started_at=start, last_message_at=start, messages=messages,
                    message_count=len(messages) + 1,  # off: the upgrade recounts
                )
            )  # fmt: skip
    return stored


async def test_0002_moves_every_message_into_rows_and_back(engine: AsyncEngine) -> None:
    await upgrade(engine, "0001")
    stored = await insert_json_conversations(engine)

    await upgrade(engine)

    assert await schema_differences(engine) == []
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(ConversationMessage).order_by(
                    ConversationMessage.conversation_id, ConversationMessage.seq
                )
            )
        ).all()
        counts = dict(
            (await connection.execute(select(Conversation.id, Conversation.message_count))).all()
        )
    for cid, messages in stored.items():
        mine = [row for row in rows if row.conversation_id == cid]
        assert [row.seq for row in mine] == list(range(1, len(messages) + 1))
        assert [(row.role, row.content) for row in mine] == [
            (m["role"], m["content"]) for m in messages
        ]
        assert [row.created_at for row in mine] == [
            datetime.fromisoformat(m["timestamp"]) for m in messages
        ]
        assert counts[cid] == len(messages)

    await downgrade(engine, "0001")

    assert "conversation_messages" not in await table_names(engine)
    async with engine.connect() as connection:
        back = dict(
            (
                await connection.execute(
                    select(JSON_CONVERSATIONS.c.id, JSON_CONVERSATIONS.c.messages)
                )
            ).all()
        )
    assert back.keys() == stored.keys()
    for cid, messages in stored.items():
        assert [(m["role"], m["content"]) for m in back[cid]] == [
            (m["role"], m["content"]) for m in messages
        ]
        assert [datetime.fromisoformat(m["timestamp"]) for m in back[cid]] == [
            datetime.fromisoformat(m["timestamp"]) for m in messages
        ]


async def test_0002_downgrade_then_upgrade_keeps_new_messages(engine: AsyncEngine) -> None:
    # Messages written as rows survive a round trip through the JSON layout.
    await upgrade(engine, "0001")
    stored = await insert_json_conversations(engine)
    await upgrade(engine)
    await downgrade(engine, "0001")
    await upgrade(engine)
    async with engine.connect() as connection:
        total = await connection.scalar(select(func.count()).select_from(ConversationMessage))
    assert total == sum(len(messages) for messages in stored.values())
    assert await schema_differences(engine) == []
