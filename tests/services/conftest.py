"""The application over each storage stack: PostgreSQL + Redis, and SQLite + in-process memory.

Each stack has one migrated database for the whole session; every test gets a fresh
:class:`Runtime` with a keyspace of its own, and the tables are emptied after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ogcache.config import Settings, load_settings
from ogcache.db.seed import seed_demo_data
from ogcache.runtime import Runtime
from tests.conftest import unique_prefix
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    empty_all_tables,
    migrate,
)

TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@pytest.fixture(scope="session")
async def postgres_database(postgres_url: str) -> AsyncIterator[str]:
    url = await create_postgres_database(postgres_url)
    await migrate(url)
    yield url
    await drop_postgres_database(postgres_url, url)


@pytest.fixture(scope="session")
async def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "ogcache.db"
    url = f"sqlite:///{path}"
    await migrate(url)
    return url


def make_settings(database_url: str, redis_url: str | None, **overrides: object) -> Settings:
    return load_settings(
        _env_file=None,
        database_url=database_url,
        redis_url=redis_url,
        jwt_secret=TEST_JWT_SECRET,
        cache_prefix=unique_prefix(),
        **overrides,
    )


@pytest.fixture(params=["postgresql+redis", "sqlite+memory"])
def stack_settings(request: pytest.FixtureRequest) -> Settings:
    """Settings of one stack; tests using it run once per stack."""
    if request.param == "postgresql+redis":
        return make_settings(
            request.getfixturevalue("postgres_database"), request.getfixturevalue("redis_url")
        )
    return make_settings(request.getfixturevalue("sqlite_database"), None)


@pytest.fixture
async def runtime(stack_settings: Settings) -> AsyncIterator[Runtime]:
    app = Runtime.open(stack_settings)
    yield app
    await app.cache.clear()
    await empty_all_tables(app.engine)
    await app.close()


@pytest.fixture
async def seeded(runtime: Runtime) -> Runtime:
    """The runtime with the demo data (menu, users, conversations, events) loaded."""
    await seed_demo_data(runtime.db)
    return runtime
