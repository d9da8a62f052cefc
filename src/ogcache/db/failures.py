"""A database that cannot be reached, said in one line, within a bounded time.

asyncpg waits 60 s for a server that accepts TCP and never answers, and a failure to connect
surfaces as a chain of three or four wrapped exceptions (SQLAlchemy's ``DBAPIError`` around
its adapter's ``Error`` around asyncpg's), which the CLI and uvicorn printed as hundreds of
lines of traceback. Here connecting is bounded by ``OGCACHE_DATABASE_CONNECT_TIMEOUT`` and a
failure to connect becomes :class:`~ogcache.errors.DatabaseUnreachableError`, whose message
names the database, the host and the cause, never the password.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from ogcache.cache import CacheError
from ogcache.db.url import async_database_url
from ogcache.errors import DatabaseUnreachableError

__all__ = [
    "bound_connect_time",
    "check_database",
    "describe_failure",
    "explained_failures",
]

# SQLSTATEs of a failure to connect (as opposed to a statement the server refused):
# connection exceptions, authorization (unknown role, wrong password), unknown database,
# too many connections, a server shutting down or starting up.
_CONNECT_SQLSTATES = ("08", "28", "3D000", "53300", "57P01", "57P02", "57P03")
# Clients of the cache stores: their connection errors are the cache's, not the database's.
_CACHE_MODULES = ("redis", "httpx", "httpcore")


def bound_connect_time(engine: AsyncEngine, seconds: float) -> None:
    """Give each new asyncpg connection ``seconds`` to connect and authenticate (asyncpg's
    own default is 60 s). SQLite opens a local file: nothing to bound there."""
    if engine.dialect.name != "postgresql":
        return

    def bounded(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        params["timeout"] = seconds

    event.listen(engine.sync_engine, "do_connect", bounded)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, what it wraps (``orig``) and what caused it, even where suppressed."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        link = pending.pop(0)
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        orig = getattr(link, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None]
        pending += [link.__cause__, link.__context__]


def _cause(link: BaseException, timeout: float) -> str | None:
    """What went wrong in words, if ``link`` is a failure to connect."""
    if isinstance(link, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(link, ConnectionRefusedError):
        return "connection refused"
    if isinstance(link, OSError):
        return link.strerror or str(link) or type(link).__name__
    sqlstate = getattr(link, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith(_CONNECT_SQLSTATES):
        return str(link).strip().splitlines()[0] if str(link).strip() else type(link).__name__
    if isinstance(link, sqlite3.OperationalError) and "unable to open" in str(link):
        return str(link)
    return None


def _where(url: URL) -> tuple[str, str]:
    """The database and the place it is looked for, as asyncpg's defaults fill them in."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:", "this machine"
    return (
        url.database or url.username or "postgres",
        f"{url.host or 'localhost'}:{url.port or 5432}",
    )


def describe_failure(exc: BaseException, database_url: str, timeout: float) -> str | None:
    """One line for a failure to connect anywhere in ``exc``'s chain; ``None`` for any other
    error (a refused statement, a missing row), which the caller reports as it did."""
    for link in _chain(exc):
        if isinstance(link, DatabaseUnreachableError):
            return str(link)
        if isinstance(link, CacheError) or type(link).__module__.startswith(_CACHE_MODULES):
            return None  # the cache's failure (its refused socket is no database's)
        cause = _cause(link, timeout)
        if cause is not None:
            break
    else:
        return None
    url = async_database_url(database_url)
    if url.password:
        cause = cause.replace(url.password, "***")
    database, place = _where(url)
    return f"cannot reach the database {database} on {place}: {cause} (check OGCACHE_DATABASE_URL)"


@contextmanager
def explained_failures(database_url: str, timeout: float) -> Iterator[None]:
    """Re-raise a failure to connect as :class:`DatabaseUnreachableError` (one line); let
    every other error through unchanged."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, DatabaseUnreachableError):
            raise
        line = describe_failure(exc, database_url, timeout)
        if line is None:
            raise
        raise DatabaseUnreachableError(line) from exc


async def check_database(engine: AsyncEngine, database_url: str, seconds: float) -> None:
    """Connect and ``SELECT 1`` within ``seconds``, so that start-up fails in one line
    rather than hanging on a server that accepts connections and never answers."""
    with explained_failures(database_url, seconds):
        async with asyncio.timeout(seconds), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
