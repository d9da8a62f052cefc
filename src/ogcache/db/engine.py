"""Create the async engine and session factory for PostgreSQL (asyncpg) or SQLite (aiosqlite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from ogcache.db.url import async_database_url

__all__ = ["create_engine", "create_session_factory"]


def create_engine(url: str, *, echo: bool = False, connect_timeout: float = 5.0) -> AsyncEngine:
    """An engine for ``url`` in any form :func:`async_database_url` accepts. PostgreSQL
    connections get ``connect_timeout`` s to connect and authenticate (asyncpg's default, 60 s,
    is how long a server that accepts TCP and never answers hung every command)."""
    async_url = async_database_url(url)
    if async_url.get_backend_name() == "sqlite":
        database = async_url.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = _create_async_engine(async_url, echo=echo)
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    return _create_async_engine(
        async_url,
        echo=echo,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        connect_args={"timeout": connect_timeout},
    )


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; busy_timeout waits for the write lock instead
    # of failing; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit (they are turned into models)."""
    return async_sessionmaker(engine, expire_on_commit=False)
