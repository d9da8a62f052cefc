"""Change capture over a database of its own per test (captures drain the shared outbox, so
they must not share one with other tests), on PostgreSQL + Redis and on SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ogcache.config import Settings
from ogcache.db.seed import seed_demo_data
from ogcache.runtime import Runtime
from tests.api.conftest import ADMIN_TOKEN
from tests.services.conftest import make_settings
from tests.support.databases import create_postgres_database, drop_postgres_database, migrate

DEADLINE = 10.0  # seconds a test waits for something expected within ~1 s


@pytest.fixture(params=["postgresql+redis", "sqlite+redis", "sqlite+memory"])
async def capture_settings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Settings]:
    if request.param == "postgresql+redis":
        server: str = request.getfixturevalue("postgres_url")
        url = await create_postgres_database(server)
    else:
        url = f"sqlite:///{tmp_path / 'capture.db'}"
    await migrate(url)
    redis = None if request.param.endswith("memory") else request.getfixturevalue("redis_url")
    yield make_settings(
        url,
        redis,
        change_poll_interval=0.05,
        change_analytics_interval=0.2,
        admin_token=ADMIN_TOKEN,
    )
    if request.param == "postgresql+redis":
        await drop_postgres_database(server, url)


@pytest.fixture
async def app(capture_settings: Settings) -> AsyncIterator[Runtime]:
    """A seeded runtime whose change capture runs."""
    runtime = Runtime.open(capture_settings)
    await seed_demo_data(runtime.db)
    runtime.changes.start()
    await until(lambda: runtime.changes.stats.role in ("leader", "local"))
    await applied_all(runtime)
    yield runtime
    await runtime.cache.clear()
    await runtime.close()


async def until(condition: Callable[[], bool | Awaitable[bool]], within: float = DEADLINE) -> None:
    """Wait until ``condition`` holds, polling; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s")
        await asyncio.sleep(0.02)


async def sql(runtime: Runtime, *statements: str, **params: Any) -> None:
    """A write made outside the app: plain SQL in one transaction of its own, committed."""
    async with runtime.engine.begin() as connection:
        for statement in statements:
            await connection.execute(text(statement), params)


async def applied_all(runtime: Runtime) -> None:
    """Wait until the outbox has nothing the capture has not applied."""

    async def caught_up() -> bool:
        async with runtime.engine.connect() as connection:
            newest = await connection.scalar(text("SELECT coalesce(max(id), 0) FROM cache_changes"))
        if runtime.engine.dialect.name == "postgresql":
            return newest == 0 or await _empty(runtime)
        return runtime.changes.position >= (newest or 0)

    await until(caught_up)


async def _empty(runtime: Runtime) -> bool:
    async with runtime.engine.connect() as connection:
        return bool(await connection.scalar(text("SELECT count(*) FROM cache_changes")) == 0)
